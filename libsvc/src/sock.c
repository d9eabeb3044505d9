/* sock.c — socket plumbing for the transports (see sock.h). */
#include "sock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "internal.h"
#include "sys.h"
#include "url.h"

#define DIAL_TIMEOUT_NS (5 * (int64_t)1000000000) /* when no deadline */

int svc__sock_wait(int fd, short events, int64_t deadline) {
  for (;;) {
    int64_t now = svc__now_ns();
    if (now >= deadline)
      return SVC_ETIMEDOUT;
    int64_t ms = (deadline - now + 999999) / 1000000;
    struct pollfd p = {.fd = fd, .events = events};
    int n = poll(&p, 1, ms > 1000 ? 1000 : (int)ms);
    if (n > 0)
      return 0;
    if (n < 0 && errno != EINTR)
      return svc__from_errno(errno);
  }
}

static int make_unix_addr(const char *path, struct sockaddr_un *a) {
  memset(a, 0, sizeof *a);
  a->sun_family = AF_UNIX;
  if (strlen(path) >= sizeof a->sun_path)
    return SVC_EINVAL;
  strcpy(a->sun_path, path);
  return 0;
}

/* Connects fd to addr, waiting up to the deadline for a nonblocking fd. */
static int connect_wait(int fd, const struct sockaddr *addr, socklen_t len,
                        int64_t deadline) {
  if (svc__connect(fd, addr, len) == 0)
    return 0;
  if (errno != EINPROGRESS && errno != EAGAIN)
    return svc__from_errno(errno);
  int rc = svc__sock_wait(fd, POLLOUT, deadline);
  if (rc < 0)
    return rc;
  int err = 0;
  socklen_t elen = sizeof err;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0)
    return svc__from_errno(errno);
  return err ? svc__from_errno(err) : 0;
}

static int64_t dial_deadline(int64_t deadline) {
  int64_t d = svc__now_ns() + DIAL_TIMEOUT_NS;
  return deadline < d ? deadline : d;
}

int svc__sock_unix_dial(const char *path, int64_t deadline, int *out) {
  struct sockaddr_un a;
  int rc = make_unix_addr(path, &a);
  if (rc < 0)
    return rc;
  int fd = svc__socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0)
    return svc__from_errno(errno);
  rc = connect_wait(fd, (struct sockaddr *)&a, sizeof a,
                    dial_deadline(deadline));
  if (rc < 0) {
    close(fd);
    return rc == SVC_EPERM ? SVC_EPERM : SVC_ECONNREFUSED;
  }
  *out = fd;
  return 0;
}

int svc__sock_unix_listen(const char *path, int *out) {
  struct sockaddr_un a;
  int rc = make_unix_addr(path, &a);
  if (rc < 0)
    return rc;
  int probe = -1;
  if (svc__sock_unix_dial(path, svc__now_ns() + 1000000000, &probe) == 0) {
    close(probe);
    return SVC_EADDRINUSE;
  }
  struct stat st;
  if (lstat(path, &st) == 0) {
    if (!S_ISSOCK(st.st_mode))
      return SVC_EADDRINUSE; /* never delete something that is not ours */
    unlink(path);
  }
  int fd = svc__socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0)
    return svc__from_errno(errno);
  mode_t old = umask(0177); /* socket file 0600 */
  int b = bind(fd, (struct sockaddr *)&a, sizeof a);
  int e = errno;
  umask(old);
  if (b != 0 || listen(fd, 128) != 0) {
    rc = svc__from_errno(b != 0 ? e : errno);
    close(fd);
    return rc;
  }
  *out = fd;
  return 0;
}

static int resolve(const char *host, uint16_t port, int passive,
                   struct addrinfo **res) {
  char ps[8];
  snprintf(ps, sizeof ps, "%u", port);
  struct addrinfo hints = {.ai_family = AF_UNSPEC,
                           .ai_socktype = SOCK_STREAM,
                           .ai_flags = passive ? AI_PASSIVE : 0};
  int g = getaddrinfo(host, ps, &hints, res);
  return g == 0 ? 0 : SVC_ECONNREFUSED;
}

static void tcp_tune(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

int svc__sock_tcp_dial(const char *host, uint16_t port, int64_t deadline,
                       int *out) {
  struct addrinfo *res, *ai;
  int rc = resolve(host, port, 0, &res);
  if (rc < 0)
    return rc;
  rc = SVC_ECONNREFUSED;
  for (ai = res; ai; ai = ai->ai_next) {
    int fd = svc__socket(ai->ai_family,
                         ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
      continue;
    tcp_tune(fd);
    rc = connect_wait(fd, ai->ai_addr, ai->ai_addrlen, dial_deadline(deadline));
    if (rc == 0) {
      *out = fd;
      break;
    }
    close(fd);
  }
  freeaddrinfo(res);
  return rc == SVC_ETIMEDOUT || rc == 0 ? rc : SVC_ECONNREFUSED;
}

int svc__sock_tcp_listen(const char *host, uint16_t port, int *out) {
  struct addrinfo *res;
  int rc = resolve(host, port, 1, &res);
  if (rc < 0)
    return SVC_EINVAL;
  int fd = svc__socket(res->ai_family,
                       res->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    freeaddrinfo(res);
    return svc__from_errno(errno);
  }
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 128) != 0) {
    rc = svc__from_errno(errno);
    close(fd);
  } else {
    *out = fd;
  }
  freeaddrinfo(res);
  return rc;
}

int svc__sock_is_loopback(int fd) {
  struct sockaddr_storage ss = {0};
  socklen_t sl = sizeof ss;
  if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0)
    return 0;
  if (ss.ss_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
    return (ntohl(a->sin_addr.s_addr) >> 24) == 127;
  }
  if (ss.ss_family == AF_INET6) {
    const struct in6_addr *a = &((const struct sockaddr_in6 *)&ss)->sin6_addr;
    if (IN6_IS_ADDR_LOOPBACK(a))
      return 1;
    return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
  }
  return ss.ss_family == AF_UNIX;
}

int svc__sock_set_blocking(int fd, int blocking) {
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0)
    return svc__from_errno(errno);
  fl = blocking ? fl & ~O_NONBLOCK : fl | O_NONBLOCK;
  return fcntl(fd, F_SETFL, fl) == 0 ? 0 : svc__from_errno(errno);
}

int svc__sock_accept(int lfd, int check_uid, int *out) {
  int fd;
  for (;;) {
    fd = svc__accept4(lfd, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd >= 0)
      break;
    if (errno == EINTR || errno == ECONNABORTED)
      continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK)
      return 1;
    return svc__from_errno(errno);
  }
  *out = fd;
  struct sockaddr_storage ss = {0};
  socklen_t sl = sizeof ss;
  if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0 &&
      ss.ss_family != AF_UNIX) {
    tcp_tune(fd);
    return 0;
  }
  if (check_uid) {
    struct ucred cred;
    socklen_t cl = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) != 0 ||
        cred.uid != getuid())
      return SVC_EPERM;
  }
  return 0;
}

/* Without a deadline a blocking fd may block in the call itself: one
 * syscall instead of three on the client's hot path. */
static int dontwait_if(int64_t deadline) {
  return deadline == INT64_MAX ? 0 : MSG_DONTWAIT;
}

void svc__iov_advance(struct iovec **iov, int *n, size_t done) {
  while (*n > 0 && done >= (*iov)->iov_len) {
    done -= (*iov)->iov_len;
    (*iov)++;
    (*n)--;
  }
  if (*n > 0) {
    (*iov)->iov_base = (char *)(*iov)->iov_base + done;
    (*iov)->iov_len -= done;
  }
}

int svc__sock_writev_all(int fd, struct iovec *iov, int n, int64_t deadline) {
  while (n > 0) {
    struct msghdr m = {.msg_iov = iov, .msg_iovlen = (size_t)n};
    ssize_t w = svc__sendmsg(fd, &m, MSG_NOSIGNAL | dontwait_if(deadline));
    if (w < 0) {
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        int rc = svc__sock_wait(fd, POLLOUT, deadline);
        if (rc < 0)
          return rc;
        continue;
      }
      return svc__from_errno(errno); /* EPIPE, ECONNRESET: SVC_EPEERGONE */
    }
    svc__iov_advance(&iov, &n, (size_t)w);
  }
  return 0;
}

int svc__sock_read_all(int fd, void *buf, size_t n, int64_t deadline) {
  size_t got = 0;
  while (got < n) {
    ssize_t r =
        svc__recv(fd, (char *)buf + got, n - got, dontwait_if(deadline));
    if (r > 0) {
      got += (size_t)r;
      continue;
    }
    if (r == 0)
      return SVC_EPEERGONE;
    if (errno == EINTR)
      continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      int rc = svc__sock_wait(fd, POLLIN, deadline);
      if (rc < 0)
        return rc;
      continue;
    }
    return svc__from_errno(errno); /* ECONNRESET: SVC_EPEERGONE */
  }
  return 0;
}

int svc__sock_rendezvous_path(const char *name, int create, char *out,
                              size_t n) {
  char dir[SVC__PATH_MAX];
  int rc = svc__runtime_dir(dir, sizeof dir);
  if (rc < 0)
    return rc;
  if (create && mkdir(dir, 0700) != 0 && errno != EEXIST)
    return svc__from_errno(errno);
  if (create) {
    struct stat st;
    if (lstat(dir, &st) != 0)
      return svc__from_errno(errno);
    /* A shared directory (sticky, like /tmp) is never made private: that
     * would lock everybody else out of it. */
    if (!S_ISDIR(st.st_mode) || st.st_uid != getuid() || (st.st_mode & S_ISVTX))
      return SVC_EPERM;
    if ((st.st_mode & 0777) != 0700 && chmod(dir, 0700) != 0)
      return svc__from_errno(errno);
  }
  int len = snprintf(out, n, "%s/%s.sock", dir, name);
  return len < 0 || (size_t)len >= n ? SVC_EINVAL : 0;
}

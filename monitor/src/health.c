/* health.c — the health probes (HTTP status line, TCP connect, exit code of
 * a check command) and the thread that runs them for the event loop. Every
 * wait polls one deadline and a cancel pipe, so a probe ends by its timeout
 * or at once when its result is no longer wanted. */
#include "health.h"

#include "bgthread.h"
#include "mon_sys.h"
#include "spawn.h"
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

extern char **environ;

/* What one probe needs, independent of the config it came from. */
typedef struct health_spec {
  mon_health_kind kind;
  mon_net_url url; /* HTTP and TCP */
  char **argv;     /* EXEC: NULL-terminated; in the healther one block */
  int timeout_ms;
  bool oom; /* the copy failed: the probe reports it instead of running */
} health_spec;

/* Outcome of a wait for an fd, a child or a lookup. */
enum { HEALTH_READY = 1, HEALTH_TIMEOUT = 0, HEALTH_CANCEL = -2 };

static uint64_t health_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int health_left_ms(uint64_t deadline) {
  uint64_t now = health_now_ms();
  return now >= deadline ? 0 : (int)(deadline - now);
}

static int health_fail(char *why, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int health_fail(char *why, size_t len, const char *fmt, ...) {
  if (len) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, len, fmt, ap);
    va_end(ap);
  }
  return 0;
}

static int health_timed_out(const health_spec *sp, char *why, size_t len) {
  return health_fail(why, len, "timed out after %d ms", sp->timeout_ms);
}

/* The reason for a wait that did not end ready; always 0 (a failure). */
static int health_wait_failed(const health_spec *sp, int w, bool *cancelled,
                              char *why, size_t len) {
  if (w == HEALTH_CANCEL) {
    *cancelled = true;
    return health_fail(why, len, "cancelled");
  }
  if (w == HEALTH_TIMEOUT)
    return health_timed_out(sp, why, len);
  return health_fail(why, len, "poll: %s", strerror(errno));
}

/* Waits until fd has events, the deadline passes or cancel_fd (if >= 0)
 * becomes readable. HEALTH_READY, _TIMEOUT, _CANCEL, or -1 (errno). */
static int health_wait_fd(int fd, short events, uint64_t deadline,
                          int cancel_fd) {
  for (;;) {
    struct pollfd p[2] = {{.fd = fd, .events = events},
                          {.fd = cancel_fd, .events = POLLIN}};
    int r = poll(p, cancel_fd >= 0 ? 2 : 1, health_left_ms(deadline));
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0)
      return -1;
    if (cancel_fd >= 0 && (p[1].revents & POLLIN))
      return HEALTH_CANCEL;
    if (p[0].revents)
      return HEALTH_READY;
    if (r == 0 || health_left_ms(deadline) == 0)
      return HEALTH_TIMEOUT;
  }
}

/* A name lookup on a thread of its own: getaddrinfo has no timeout, so the
 * probe waits for this one only until its deadline and then abandons it;
 * the last of the two to let go frees it. At most HEALTH_LOOKUPS_MAX run
 * at a time, so a resolver that never answers costs a bounded number of
 * threads. */
#define HEALTH_LOOKUPS_MAX 8
static atomic_int health_lookups;

typedef struct health_lookup {
  pthread_mutex_t mu; /* guards refs, rc, err, res */
  int refs;
  int rc, err; /* getaddrinfo's result, errno for EAI_SYSTEM */
  struct addrinfo *res;
  int done[2]; /* pipe: readable once the lookup finished */
  char host[256], port[8];
} health_lookup;

static void health_lookup_release(health_lookup *l) {
  pthread_mutex_lock(&l->mu);
  bool last = --l->refs == 0;
  pthread_mutex_unlock(&l->mu);
  if (!last)
    return;
  if (l->res)
    freeaddrinfo(l->res);
  close(l->done[0]);
  close(l->done[1]);
  pthread_mutex_destroy(&l->mu);
  free(l);
}

static void *health_lookup_main(void *arg) {
  health_lookup *l = arg;
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                           .ai_flags = AI_NUMERICSERV};
  struct addrinfo *res = NULL;
  int rc = getaddrinfo(l->host, l->port, &hints, &res);
  int err = errno;
  pthread_mutex_lock(&l->mu);
  l->rc = rc;
  l->err = err;
  l->res = rc == 0 ? res : NULL;
  pthread_mutex_unlock(&l->mu);
  ssize_t w = write(l->done[1], "", 1);
  (void)w; /* the pipe is empty: this cannot fail short */
  atomic_fetch_sub(&health_lookups, 1);
  health_lookup_release(l);
  return NULL;
}

static int health_gai_fail(const char *host, int rc, int err, char *why,
                           size_t len) {
  return health_fail(why, len, "resolve %s: %s", host,
                     rc == EAI_SYSTEM ? strerror(err) : gai_strerror(rc));
}

/* Resolves u into *res (free with freeaddrinfo). 1, or a health_fail 0
 * (why set), or HEALTH_CANCEL. Literal addresses need no thread. */
static int health_resolve(const health_spec *sp, uint64_t deadline,
                          int cancel_fd, struct addrinfo **res, char *why,
                          size_t len) {
  const mon_net_url *u = &sp->url;
  char port[8];
  snprintf(port, sizeof port, "%d", u->port);
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                           .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV};
  int rc = getaddrinfo(u->host, port, &hints, res);
  if (rc == 0)
    return 1;
  if (rc != EAI_NONAME)
    return health_gai_fail(u->host, rc, errno, why, len);

  if (atomic_fetch_add(&health_lookups, 1) >= HEALTH_LOOKUPS_MAX) {
    atomic_fetch_sub(&health_lookups, 1);
    return health_fail(why, len, "resolve %s: earlier lookups still stuck",
                       u->host);
  }
  health_lookup *l = mon__calloc(1, sizeof *l);
  if (!l || mon__pipe2(l->done, O_CLOEXEC | O_NONBLOCK) != 0) {
    atomic_fetch_sub(&health_lookups, 1);
    free(l);
    return health_fail(why, len, "resolve %s: out of resources", u->host);
  }
  pthread_mutex_init(&l->mu, NULL);
  l->refs = 2;
  snprintf(l->host, sizeof l->host, "%s", u->host);
  snprintf(l->port, sizeof l->port, "%s", port);
  pthread_attr_t attr;
  pthread_t t;
  int started = pthread_attr_init(&attr) == 0;
  if (started) {
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    started = mon__pthread_create(&t, &attr, health_lookup_main, l) == 0;
    pthread_attr_destroy(&attr);
  }
  if (!started) {
    atomic_fetch_sub(&health_lookups, 1);
    l->refs = 1;
    health_lookup_release(l);
    return health_fail(why, len, "resolve %s: out of resources", u->host);
  }
  int w = health_wait_fd(l->done[0], POLLIN, deadline, cancel_fd);
  int out;
  if (w == HEALTH_READY) {
    pthread_mutex_lock(&l->mu);
    *res = l->res;
    l->res = NULL;
    rc = l->rc;
    int err = l->err;
    pthread_mutex_unlock(&l->mu);
    out = rc == 0 ? 1 : health_gai_fail(u->host, rc, err, why, len);
  } else if (w == HEALTH_CANCEL) {
    out = HEALTH_CANCEL;
  } else if (w == HEALTH_TIMEOUT) {
    out = health_fail(why, len, "resolve %s: timed out after %d ms", u->host,
                      sp->timeout_ms);
  } else {
    out = health_fail(why, len, "poll: %s", strerror(errno));
  }
  health_lookup_release(l);
  return out;
}

/* Connects to sp->url, trying each address in turn within the one
 * deadline. A connected nonblocking fd, or -1 with why set (or
 * HEALTH_CANCEL as the return of *cancelled). */
static int health_connect(const health_spec *sp, uint64_t deadline,
                          int cancel_fd, bool *cancelled, char *why,
                          size_t len) {
  struct addrinfo *res = NULL;
  int r = health_resolve(sp, deadline, cancel_fd, &res, why, len);
  if (r != 1) {
    *cancelled = r == HEALTH_CANCEL;
    return -1;
  }
  int fd = -1;
  health_fail(why, len, "connect: no address");
  for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                ai->ai_protocol);
    if (fd < 0) {
      health_fail(why, len, "socket: %s", strerror(errno));
      continue;
    }
    int err = 0;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
      err = errno;
      if (err == EINPROGRESS) {
        int w = health_wait_fd(fd, POLLOUT, deadline, cancel_fd);
        socklen_t el = sizeof err;
        if (w == HEALTH_READY &&
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0)
          err = errno;
        else if (w != HEALTH_READY) {
          health_wait_failed(sp, w, cancelled, why, len);
          close(fd);
          fd = -1;
          break; /* the deadline is shared: no time left for the others */
        }
      }
    }
    if (err == 0)
      break;
    health_fail(why, len, "connect: %s", strerror(err));
    close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  return fd;
}

/* "HTTP/1.x NNN[ reason]": the status code, or -1. */
static int health_status_code(const char *line, size_t got) {
  if (got < 12 || strncmp(line, "HTTP/1.", 7) != 0 || line[8] != ' ')
    return -1;
  int code = 0;
  for (int k = 9; k < 12; k++) {
    if (line[k] < '0' || line[k] > '9')
      return -1;
    code = code * 10 + (line[k] - '0');
  }
  if (got > 12 && line[12] != ' ' && line[12] != '\r' && line[12] != '\n')
    return -1;
  return code;
}

/* Sends the GET and reads only the status line: 1 on 2xx. */
static int health_http(const health_spec *sp, int fd, uint64_t deadline,
                       int cancel_fd, bool *cancelled, char *why, size_t len) {
  const mon_net_url *u = &sp->url;
  bool v6 = strchr(u->host, ':') != NULL;
  char port[16] = "";
  if (u->port != 80)
    snprintf(port, sizeof port, ":%d", u->port);
  char req[1024];
  int n = snprintf(req, sizeof req,
                   "GET %s HTTP/1.1\r\nHost: %s%s%s%s\r\n"
                   "User-Agent: svc-monitor\r\nAccept: */*\r\n"
                   "Connection: close\r\n\r\n",
                   u->path, v6 ? "[" : "", u->host, v6 ? "]" : "", port);
  if (n < 0 || (size_t)n >= sizeof req)
    return health_fail(why, len, "request too long");
  size_t off = 0;
  while (off < (size_t)n) {
    ssize_t w = send(fd, req + off, (size_t)n - off, MSG_NOSIGNAL);
    if (w > 0) {
      off += (size_t)w;
      continue;
    }
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0 && errno != EAGAIN)
      return health_fail(why, len, "send: %s", strerror(errno));
    int r = health_wait_fd(fd, POLLOUT, deadline, cancel_fd);
    if (r != HEALTH_READY)
      return health_wait_failed(sp, r, cancelled, why, len);
  }
  /* "HTTP/1.1 200 OK\r\n": the code is all we need; a longer line is cut
   * at the buffer, which still holds the code */
  char line[64];
  size_t got = 0;
  while (got < sizeof line - 1 && !memchr(line, '\n', got)) {
    ssize_t r = recv(fd, line + got, sizeof line - 1 - got, 0);
    if (r > 0) {
      got += (size_t)r;
      continue;
    }
    if (r == 0)
      break;
    if (errno == EINTR)
      continue;
    if (errno != EAGAIN)
      return health_fail(why, len, "recv: %s", strerror(errno));
    int w = health_wait_fd(fd, POLLIN, deadline, cancel_fd);
    if (w != HEALTH_READY)
      return health_wait_failed(sp, w, cancelled, why, len);
  }
  if (got == 0)
    return health_fail(why, len, "HTTP: connection closed without a reply");
  int code = health_status_code(line, got);
  if (code < 0)
    return health_fail(why, len, "HTTP: bad status line");
  if (code >= 200 && code <= 299)
    return 1;
  return health_fail(why, len, "HTTP %d", code);
}

/* The exec child: async-signal-safe calls only, since other threads may
 * hold locks at the moment of fork. Reports an exec failure as its errno
 * on errfd, then exits 127. */
static void health_child(const char *path, char *const *argv, int devnull,
                         int errfd, pid_t parent, int maxfd) {
  setpgid(0, 0); /* its own group: a timeout kills what it started too */
  /* the death signal follows the forking thread, the probe thread, which
   * outlives every check it starts: this fires only if the monitor dies */
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent)
    _exit(127);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL); /* the monitor blocks some */
  signal(SIGPIPE, SIG_DFL);              /* an ignored signal survives exec */
  if (dup2(devnull, 0) < 0 || dup2(devnull, 1) < 0 || dup2(devnull, 2) < 0)
    goto fail;
  /* everything else closes at exec, including fds the monitor inherited
   * without the flag; errfd already has it */
  if (syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) != 0)
    for (int fd = 3; fd < maxfd; fd++)
      fcntl(fd, F_SETFD, FD_CLOEXEC);
  execve(path, argv, environ);
fail:;
  int e = errno;
  ssize_t w = write(errfd, &e, sizeof e);
  (void)w;
  _exit(127);
}

/* Waits for the child to exit without reaping it (so its pid, and with it
 * the process group id, stays reserved until we have killed the group). */
static int health_wait_child(pid_t pid, uint64_t deadline, int cancel_fd) {
  int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (pidfd >= 0) {
    int r = health_wait_fd(pidfd, POLLIN, deadline, cancel_fd);
    close(pidfd);
    if (r != -1)
      return r;
  }
  /* no pidfd (kernel before 5.3): look every 10 ms */
  for (;;) {
    siginfo_t si = {0};
    if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) != 0 &&
        errno != EINTR)
      return HEALTH_READY; /* gone (reaped elsewhere): waitpid says so */
    if (si.si_pid == pid)
      return HEALTH_READY;
    int left = health_left_ms(deadline);
    if (left == 0)
      return HEALTH_TIMEOUT;
    struct pollfd p = {.fd = cancel_fd, .events = POLLIN};
    if (poll(&p, cancel_fd >= 0, left < 10 ? left : 10) > 0)
      return HEALTH_CANCEL;
  }
}

static int health_exec(const health_spec *sp, uint64_t deadline, int cancel_fd,
                       char *why, size_t len) {
  if (!sp->argv || !sp->argv[0])
    return health_fail(why, len, "no command");
  char *path = mon_spawn_resolve(sp->argv[0], getenv("PATH"));
  int devnull = mon__open("/dev/null", O_RDWR | O_CLOEXEC, 0);
  int errp[2] = {-1, -1};
  int ok = 0;
  if (!path || devnull < 0 || mon__pipe2(errp, O_CLOEXEC) != 0) {
    ok = health_fail(why, len, "exec: %s",
                     path ? strerror(errno) : "out of memory");
    goto out;
  }
  long maxfd = sysconf(_SC_OPEN_MAX);
  if (maxfd < 0 || maxfd > 65536)
    maxfd = 65536;
  pid_t parent = getpid();
  pid_t pid = mon__fork();
  if (pid < 0) {
    ok = health_fail(why, len, "fork: %s", strerror(errno));
    goto out;
  }
  if (pid == 0)
    health_child(path, sp->argv, devnull, errp[1], parent, (int)maxfd);
  close(errp[1]);
  errp[1] = -1;
  setpgid(pid, pid); /* also here, so the group exists before we kill it */

  int w = health_wait_child(pid, deadline, cancel_fd);
  /* the check's leftovers go with it, whether it finished or not */
  kill(-pid, SIGKILL);
  if (w != HEALTH_READY)
    kill(pid, SIGKILL);
  int st = 0;
  pid_t r;
  do
    r = waitpid(pid, &st, 0);
  while (r < 0 && errno == EINTR);
  if (r != pid) {
    ok = health_fail(why, len, "exec: exit status lost (%s)", strerror(errno));
  } else if (w == HEALTH_TIMEOUT) {
    ok = health_timed_out(sp, why, len);
  } else if (w == HEALTH_CANCEL) {
    ok = health_fail(why, len, "cancelled");
  } else if (w != HEALTH_READY) {
    ok = health_fail(why, len, "poll: %s", strerror(errno));
  } else if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
    ok = 1;
  } else if (WIFEXITED(st)) {
    int e = 0;
    if (WEXITSTATUS(st) == 127 && read(errp[0], &e, sizeof e) == sizeof e)
      ok = health_fail(why, len, "exec %s: %s", path, strerror(e));
    else
      ok = health_fail(why, len, "exit code %d", WEXITSTATUS(st));
  } else {
    ok = health_fail(why, len, "killed by signal %d",
                     WIFSIGNALED(st) ? WTERMSIG(st) : 0);
  }
out:
  if (errp[0] >= 0)
    close(errp[0]);
  if (errp[1] >= 0)
    close(errp[1]);
  if (devnull >= 0)
    close(devnull);
  free(path);
  return ok;
}

/* One probe; cancel_fd < 0 for none. */
static int health_run(const health_spec *sp, int cancel_fd, char *why,
                      size_t len) {
  if (len)
    why[0] = '\0';
  if (sp->oom)
    return health_fail(why, len, "out of memory");
  uint64_t deadline = health_now_ms() + (uint64_t)sp->timeout_ms;
  if (sp->kind == MON_HEALTH_EXEC)
    return health_exec(sp, deadline, cancel_fd, why, len);
  if (sp->kind != MON_HEALTH_HTTP && sp->kind != MON_HEALTH_TCP)
    return 1;
  bool cancelled = false;
  int fd = health_connect(sp, deadline, cancel_fd, &cancelled, why, len);
  int ok = 0;
  if (fd >= 0 && sp->kind == MON_HEALTH_TCP)
    ok = 1;
  else if (fd >= 0)
    ok = health_http(sp, fd, deadline, cancel_fd, &cancelled, why, len);
  if (fd >= 0)
    close(fd);
  if (cancelled)
    ok = health_fail(why, len, "cancelled");
  return ok;
}

int mon_health_check(const mon_service_cfg *s, char *why, size_t len) {
  health_spec sp = {.kind = s->health,
                    .url = s->health_url,
                    .argv = s->health_argv,
                    .timeout_ms =
                        s->health_timeout_ms > 0 ? s->health_timeout_ms : 1};
  return health_run(&sp, -1, why, len);
}

/* ---- the probe thread ---- */

typedef struct health_slot {
  health_spec spec; /* the healther's own copy; argv is one block */
  bool wanted;      /* begin asked for a probe */
  int result;       /* -1 none waiting, else 1 or 0 */
  char why[128];    /* with result 0 */
  uint64_t gen;     /* unique per run: a probe's result finds its slot */
} health_slot;

struct mon_healther {
  mon_bgthread bg;    /* bg.mu guards everything below but cancel[0] */
  health_slot *slots; /* one per service of the current config */
  size_t n;
  size_t next;       /* round-robin: the scan for work starts here */
  bool busy;         /* a probe is in flight ... */
  uint64_t busy_gen; /* ... for the slot with this gen (if any left) */
  uint64_t gens;     /* last gen handed out */
  int cancel[2];     /* pipe: a byte cuts the probe in flight short */
};

/* NULL-terminated copy of argv in one allocation; NULL for none or OOM. */
static char **health_argv_dup(char *const *argv) {
  if (!argv)
    return NULL;
  size_t n = 0, bytes = 0;
  for (; argv[n]; n++)
    bytes += strlen(argv[n]) + 1;
  char **out = mon__malloc((n + 1) * sizeof *out + bytes);
  if (!out)
    return NULL;
  char *p = (char *)(out + n + 1);
  for (size_t k = 0; k < n; k++) {
    size_t l = strlen(argv[k]) + 1;
    memcpy(p, argv[k], l);
    out[k] = p;
    p += l;
  }
  out[n] = NULL;
  return out;
}

static void health_spec_copy(health_spec *d, const health_spec *s) {
  *d = *s;
  d->argv = NULL;
  if (s->kind == MON_HEALTH_EXEC && !s->oom && s->argv) {
    d->argv = health_argv_dup(s->argv);
    d->oom = d->argv == NULL;
  }
}

static void health_spec_from_cfg(health_spec *d, const mon_service_cfg *c) {
  health_spec s = {.kind = c->health,
                   .url = c->health_url,
                   .argv = c->health_argv,
                   .timeout_ms =
                       c->health_timeout_ms > 0 ? c->health_timeout_ms : 1};
  health_spec_copy(d, &s);
}

static bool health_spec_same(const health_spec *a, const health_spec *b) {
  if (a->kind != b->kind || a->timeout_ms != b->timeout_ms || a->oom || b->oom)
    return false;
  if (a->kind == MON_HEALTH_HTTP || a->kind == MON_HEALTH_TCP)
    return !strcmp(a->url.host, b->url.host) && a->url.port == b->url.port &&
           !strcmp(a->url.path, b->url.path);
  return a->kind != MON_HEALTH_EXEC || mon_argv_same(a->argv, b->argv);
}

static void health_slots_free(health_slot *slots, size_t n) {
  for (size_t k = 0; slots && k < n; k++)
    free(slots[k].spec.argv);
  free(slots);
}

/* Called with mu held: cuts the probe in flight short. */
static void health_cancel_locked(mon_healther *h) {
  ssize_t w = write(h->cancel[1], "", 1);
  (void)w; /* a full pipe already says the same */
}

static void health_drain(int fd) {
  char buf[64];
  while (read(fd, buf, sizeof buf) > 0)
    ;
}

/* Called with mu held: the next slot that wants a probe, from h->next on. */
static health_slot *health_pick_locked(mon_healther *h) {
  for (size_t k = 0; k < h->n; k++) {
    size_t i = (h->next + k) % h->n;
    if (h->slots[i].wanted) {
      h->next = (i + 1) % h->n;
      return &h->slots[i];
    }
  }
  return NULL;
}

static void *health_main(void *arg) {
  mon_healther *h = arg;
  pthread_mutex_lock(&h->bg.mu);
  while (!h->bg.quit) {
    health_slot *s = health_pick_locked(h);
    if (!s) {
      pthread_cond_wait(&h->bg.cv, &h->bg.mu);
      continue;
    }
    s->wanted = false;
    health_spec sp;
    health_spec_copy(&sp, &s->spec); /* reconfigure may free s meanwhile */
    h->busy = true;
    h->busy_gen = s->gen;
    health_drain(h->cancel[0]); /* under mu: cancels from now on count */
    pthread_mutex_unlock(&h->bg.mu);

    char why[sizeof s->why];
    int ok = health_run(&sp, h->cancel[0], why, sizeof why);
    free(sp.argv);

    pthread_mutex_lock(&h->bg.mu);
    h->busy = false;
    for (size_t k = 0; k < h->n; k++) {
      if (h->slots[k].gen == h->busy_gen) { /* still the same run */
        h->slots[k].result = ok;
        snprintf(h->slots[k].why, sizeof h->slots[k].why, "%s", why);
        break;
      }
    }
  }
  pthread_mutex_unlock(&h->bg.mu);
  return NULL;
}

/* Fresh slots for cfg's services (gens assigned by the caller). */
static health_slot *health_slots_new(const mon_config *cfg) {
  health_slot *slots =
      mon__calloc(cfg->nservices ? cfg->nservices : 1, sizeof *slots);
  for (size_t k = 0; slots && k < cfg->nservices; k++) {
    health_spec_from_cfg(&slots[k].spec, &cfg->services[k]);
    slots[k].result = -1;
  }
  return slots;
}

mon_healther *mon_healther_new(const mon_config *cfg) {
  mon_healther *h = mon__calloc(1, sizeof *h);
  if (!h)
    return NULL;
  h->cancel[0] = h->cancel[1] = -1;
  h->slots = health_slots_new(cfg);
  if (!h->slots || mon__pipe2(h->cancel, O_CLOEXEC | O_NONBLOCK) != 0)
    goto fail;
  h->n = cfg->nservices;
  for (size_t k = 0; k < h->n; k++)
    h->slots[k].gen = ++h->gens;
  if (mon_bgthread_start(&h->bg, health_main, h) != 0)
    goto fail;
  return h;
fail:
  health_slots_free(h->slots, cfg->nservices);
  if (h->cancel[0] >= 0) {
    close(h->cancel[0]);
    close(h->cancel[1]);
  }
  free(h);
  return NULL;
}

void mon_healther_free(mon_healther *h) {
  if (!h)
    return;
  /* quit and the cancel byte together: the thread cannot drain the byte
   * and then start another probe without seeing quit */
  pthread_mutex_lock(&h->bg.mu);
  h->bg.quit = true;
  health_cancel_locked(h);
  pthread_mutex_unlock(&h->bg.mu);
  mon_bgthread_stop(&h->bg);
  health_slots_free(h->slots, h->n);
  close(h->cancel[0]);
  close(h->cancel[1]);
  free(h);
}

void mon_healther_begin(mon_healther *h, size_t i) {
  pthread_mutex_lock(&h->bg.mu);
  if (i < h->n) {
    health_slot *s = &h->slots[i];
    bool in_flight = h->busy && h->busy_gen == s->gen;
    if (!s->wanted && !in_flight) {
      s->wanted = true;
      pthread_cond_signal(&h->bg.cv);
    }
  }
  pthread_mutex_unlock(&h->bg.mu);
}

int mon_healther_take(mon_healther *h, size_t i, char *why, size_t len) {
  int r = -1;
  pthread_mutex_lock(&h->bg.mu);
  if (i < h->n && h->slots[i].result >= 0) {
    r = h->slots[i].result;
    h->slots[i].result = -1;
    if (len)
      snprintf(why, len, "%s", r ? "" : h->slots[i].why);
  }
  pthread_mutex_unlock(&h->bg.mu);
  return r;
}

void mon_healther_reset(mon_healther *h, size_t i) {
  pthread_mutex_lock(&h->bg.mu);
  if (i < h->n) {
    health_slot *s = &h->slots[i];
    if (h->busy && h->busy_gen == s->gen)
      health_cancel_locked(h);
    s->wanted = false;
    s->result = -1;
    s->gen = ++h->gens;
  }
  pthread_mutex_unlock(&h->bg.mu);
}

void mon_healther_reconfigure(mon_healther *h, const mon_config *cfg,
                              const int *old_of_new) {
  health_slot *ns = health_slots_new(cfg); /* outside mu: it allocates */
  pthread_mutex_lock(&h->bg.mu);
  health_slot *old = h->slots;
  size_t nold = h->n;
  if (!ns) {
    /* keep nothing that could be misread under the new indices */
    for (size_t k = 0; k < nold; k++)
      free(old[k].spec.argv);
    memset(old, 0, nold * sizeof *old);
    h->n = 0;
    if (h->busy)
      health_cancel_locked(h);
    pthread_mutex_unlock(&h->bg.mu);
    fprintf(stderr, "svc-monitor: health probes off: out of memory\n");
    return;
  }
  bool kept_busy = false;
  for (size_t j = 0; j < cfg->nservices; j++) {
    int k = old_of_new ? old_of_new[j] : -1;
    health_slot *o = k >= 0 && (size_t)k < nold ? &old[k] : NULL;
    if (o && health_spec_same(&o->spec, &ns[j].spec)) {
      ns[j].wanted = o->wanted;
      ns[j].result = o->result;
      memcpy(ns[j].why, o->why, sizeof ns[j].why);
      ns[j].gen = o->gen;
      kept_busy |= h->busy && h->busy_gen == o->gen;
    } else {
      ns[j].gen = ++h->gens;
    }
  }
  if (h->busy && !kept_busy)
    health_cancel_locked(h);
  h->slots = ns;
  h->n = cfg->nservices;
  h->next = 0;
  pthread_mutex_unlock(&h->bg.mu);
  health_slots_free(old, nold);
}

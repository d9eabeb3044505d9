/* transport_stream.c — unix:// and tcp://, and the framing tls:// shares
 * (stream.h): frames (frame.c) over a byte stream, many calls in flight
 * matched by the frame's call id. The server side is nonblocking and
 * driven by the server's epoll: it runs every complete request it has read
 * and sends their replies in one write. The client side blocks in the
 * kernel only where a call has to wait. Any malformed frame closes that
 * connection with SVC_EPROTO and touches nothing else. Bytes move through
 * the stream's io: the socket calls here, or TLS records. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "frame.h"
#include "internal.h"
#include "sock.h"
#include "stream.h"
#include "sys.h"
#include "transport.h"

#define WRITE_TIMEOUT_NS (30 * (int64_t)1000000000) /* a client not reading */
#define MIN_BUF 65536
#define FLUSH_AT (256 * 1024) /* send batched frames at this size */
#define BATCH_MAX 16384       /* client: larger requests are written at once */
/* Server: how long a thread waits in a blocking read for a connection's
 * next request before handing it back to epoll. A client calling in a loop
 * is back well within it, and is then served for one read and one write
 * per call (no epoll_wait, no re-arm, no other thread's wakeup); a quiet
 * connection that goes quiet costs one timed-out read. It also bounds how long
 * a stop or a retire waits for such a thread. */
#define STAY_WAIT_US 2000
/* Server: reads one connection may take in a row while the other
 * connections have no spare thread, before it queues behind them. */
#define SERVE_BUDGET_READS 16
/* Client: within this long of the last reply the server was there, so the
 * check for a close or a GOAWAY before the next call is skipped: it cannot
 * see a close that lands after it either, and costs a syscall per call. */
#define IDLE_CHECK_AFTER_NS 100000

typedef svc__stream stream_conn;

static int grow(uint8_t **buf, size_t *cap, size_t want) {
  if (want <= *cap)
    return 0;
  size_t n = *cap ? *cap : MIN_BUF;
  while (n < want)
    n *= 2;
  uint8_t *p = svc__realloc(*buf, n);
  if (!p)
    return SVC_ENOMEM;
  *buf = p;
  *cap = n;
  return 0;
}

/* ---- the socket io of unix:// and tcp:// ---- */

static long plain_read(svc__stream *c, void *buf, size_t n, int block) {
  for (;;) {
    ssize_t r = svc__recv(c->base.fd, buf, n, block ? 0 : MSG_DONTWAIT);
    if (r > 0)
      return r;
    if (r == 0)
      return SVC_EPEERGONE;
    if (errno == EINTR)
      continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      c->io_wait = POLLIN;
      return 0;
    }
    return svc__from_errno(errno); /* ECONNRESET: SVC_EPEERGONE */
  }
}

static long plain_writev(svc__stream *c, const struct iovec *iov, int n) {
  for (;;) {
    struct msghdr m = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)n};
    ssize_t w = svc__sendmsg(c->base.fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w >= 0)
      return w;
    if (errno == EINTR)
      continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      c->io_wait = POLLOUT;
      return 0;
    }
    return svc__from_errno(errno); /* EPIPE, ECONNRESET: SVC_EPEERGONE */
  }
}

static int plain_peek(svc__stream *c) {
  uint8_t b;
  for (;;) {
    ssize_t r = svc__recv(c->base.fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (r >= 0)
      return 1; /* a byte, or the end of the stream */
    if (errno == EAGAIN || errno == EWOULDBLOCK)
      return 0;
    if (errno != EINTR)
      return svc__from_errno(errno);
  }
}

static int plain_pending(const svc__stream *c) {
  (void)c;
  return 0;
}

static void plain_close(svc__stream *c) { (void)c; }

const svc__stream_io svc__stream_plain_io = {
    .read = plain_read,
    .writev = plain_writev,
    .peek = plain_peek,
    .pending = plain_pending,
    .close = plain_close,
    .drains = 1,
};

/* ---- the stream ---- */

svc__stream *svc__stream_new(const svc__transport *tp, int fd,
                             const svc__stream_io *io, size_t max_payload,
                             int client) {
  stream_conn *c = svc__calloc(1, sizeof *c);
  if (!c || (client && (svc__sock_set_blocking(fd, 1) < 0 ||
                        grow(&c->in, &c->in_cap, MIN_BUF) < 0))) {
    free(c);
    close(fd);
    return NULL;
  }
  c->base.tp = tp;
  c->base.fd = fd;
  c->io = io;
  c->max_payload = max_payload;
  return c;
}

void svc__stream_close(svc__conn *base) {
  stream_conn *c = (stream_conn *)base;
  if (!c)
    return;
  c->io->close(c);
  if (c->base.fd >= 0)
    close(c->base.fd);
  free(c->in);
  free(c->old_in);
  free(c->out);
  free(c);
}

/* Waits up to the deadline for what the io's last 0 awaits. */
static int wait_io(stream_conn *c, int64_t deadline) {
  return svc__sock_wait(c->base.fd, c->io_wait ? c->io_wait : POLLIN, deadline);
}

int svc__stream_write_all(svc__stream *c, struct iovec *iov, int n,
                          int64_t deadline) {
  while (n > 0) {
    long w = c->io->writev(c, iov, n);
    if (w < 0)
      return (int)w;
    if (w == 0) {
      int rc = wait_io(c, deadline);
      if (rc < 0)
        return rc;
      continue;
    }
    svc__iov_advance(&iov, &n, (size_t)w);
  }
  return 0;
}

static void consume(stream_conn *c, size_t n) {
  c->in_off += n;
  if (c->in_off == c->in_len)
    c->in_off = c->in_len = 0;
}

/* Room for want unconsumed bytes from in_off: moves them to the front or
 * grows the buffer. Only while no reply is handed out from it. */
static int make_room(stream_conn *c, size_t want) {
  if (c->in_off + want <= c->in_cap)
    return 0;
  if (c->in_off) {
    memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
    c->in_len -= c->in_off;
    c->in_off = 0;
  }
  return grow(&c->in, &c->in_cap, want);
}

/* Decodes the frame at in_off: > 0 its size, 0 need more (want says how
 * many bytes from in_off), SVC_ETOOBIG when a well-formed header announces
 * more than our limit (f holds the header: the caller drops the rest and
 * the connection lives on), or SVC_EPROTO. */
static long next_frame(stream_conn *c, svc__frame *f, size_t *want) {
  const uint8_t *p = c->in ? c->in + c->in_off : NULL;
  size_t have = c->in_len - c->in_off;
  long n = svc__frame_decode(p, have, SVC__MAX_MSG_LIMIT, f);
  if (n < 0)
    return n;
  if (have >= SVC__FRAME_HDR && f->payload_len > c->max_payload)
    return SVC_ETOOBIG;
  if (n == 0 && want)
    *want = have < SVC__FRAME_HDR
                ? SVC__FRAME_HDR
                : svc__frame_size(f->method_len, f->payload_len);
  return n;
}

/* One nonblocking (or, with block, blocking) read into the buffer's tail:
 * 1 got bytes, 0 none yet, SVC_EPEERGONE at the end of the stream. */
static int read_some(stream_conn *c, int block) {
  size_t room = c->in_cap - c->in_len;
  long r = c->io->read(c, c->in + c->in_len, room, block);
  c->drained = c->io->drains && r >= 0 && (size_t)r < room;
  if (r <= 0)
    return (int)r;
  c->in_len += (size_t)r;
  return 1;
}

/* ---- client ---- */

static int dial_common(const svc__transport *tp, int fd,
                       const svc__conn_opts *o, const svc__dial_opts *d,
                       svc__conn **out) {
  stream_conn *c =
      svc__stream_new(tp, fd, &svc__stream_plain_io, o->max_payload, 1);
  if (!c)
    return SVC_ENOMEM;
  c->why = d->why;
  c->why_len = d->why_len;
  *out = &c->base;
  return 0;
}

static int unix_dial(const svc__url *u, const svc__conn_opts *o,
                     const svc__dial_opts *d, int64_t deadline,
                     svc__conn **out) {
  int fd, rc = svc__sock_unix_dial(u->path, deadline, &fd);
  return rc < 0 ? rc : dial_common(&svc__transport_unix, fd, o, d, out);
}

static int tcp_dial(const svc__url *u, const svc__conn_opts *o,
                    const svc__dial_opts *d, int64_t deadline,
                    svc__conn **out) {
  int fd, rc = svc__sock_tcp_dial(u->host, u->port, deadline, &fd);
  return rc < 0 ? rc : dial_common(&svc__transport_tcp, fd, o, d, out);
}

/* A reply to call 0 (never a real call id) with an error is the server
 * refusing the connection itself (SVC_EPERM for a peer of another uid,
 * SVC_ETLS for a plain client on a tls:// port): returns that code, or 0
 * for any other frame. A code the server has no business sending here (one
 * that would read as "time out" or "try again") is SVC_EPROTO: found by
 * fuzz_replies, SVC_ETIMEDOUT made the client retry the same frame until
 * its deadline. */
static int refusal(stream_conn *c, const svc__frame *f) {
  if (f->type != SVC__FRAME_REPLY || f->call_id != 0 || f->status >= 0)
    return 0;
  if (f->status == SVC_ETLS && c->why)
    snprintf(c->why, c->why_len,
             "the server speaks TLS on this port: call it with tls://");
  return f->status == SVC_EPERM || f->status == SVC_ECONNREFUSED ||
                 f->status == SVC_ETLS
             ? f->status
             : SVC_EPROTO;
}

/* Between calls nothing should arrive but a GOAWAY, a refusal or the end of
 * the stream: each means "do not send here". One cheap syscall. */
static int check_idle(stream_conn *c) {
  if (c->goaway)
    return SVC_EPEERGONE;
  size_t beyond = c->in_off + (c->old_in ? 0 : c->held);
  if (beyond == c->in_len) {
    if (c->reply_ns && svc__now_ns() - c->reply_ns < IDLE_CHECK_AFTER_NS)
      return 0;
    int news = c->io->peek(c);
    if (news == 0)
      return 0;
    if (news < 0) /* the socket failed: no frame will come to explain it */
      return SVC_EPEERGONE;
  }
  if (c->held) /* news while a reply is handed out: start afresh */
    return SVC_EPEERGONE;
  svc__frame f;
  long n;
  /* Something came: read the whole frame (it is small) within a second. */
  int64_t end = svc__now_ns() + 1000000000;
  size_t want = 0;
  while ((n = next_frame(c, &f, &want)) == 0) {
    int rc = make_room(c, want);
    if (rc == 0 && (rc = read_some(c, 0)) == 0)
      rc = wait_io(c, end);
    if (rc < 0)
      return rc;
  }
  int refused = n > 0 ? refusal(c, &f) : 0;
  if (refused)
    return refused;
  if (n > 0 && f.type == SVC__FRAME_GOAWAY) {
    consume(c, (size_t)n);
    c->goaway = 1;
    return SVC_EPEERGONE;
  }
  return n < 0 ? (int)n : SVC_EPROTO;
}

/* While a request waits for room in the socket, replies are read so the
 * server, which may be blocked writing them, keeps going. A reply handed
 * out stays where it is: the rest moves to a new buffer. */
static int read_while_sending(stream_conn *c) {
  if (c->in_len == c->in_cap) {
    if (c->held && !c->old_in) {
      size_t rest = c->in_len - c->in_off - c->held, cap = c->in_cap * 2;
      uint8_t *p = svc__malloc(cap);
      if (!p)
        return SVC_ENOMEM;
      memcpy(p, c->in + c->in_off + c->held, rest);
      c->old_in = c->in;
      c->in = p;
      c->in_cap = cap;
      c->in_off = 0;
      c->in_len = rest;
    } else { /* no reply handed out lies in c->in: it may move */
      int rc = make_room(c, c->in_len - c->in_off + 1);
      if (rc < 0)
        return rc;
    }
  }
  int rc = read_some(c, 0);
  return rc < 0 ? rc : 0;
}

static int send_frame(stream_conn *c, struct iovec *iov, int n,
                      int64_t deadline) {
  while (n > 0) {
    long w = c->io->writev(c, iov, n);
    if (w < 0)
      return (int)w;
    if (w == 0) {
      struct pollfd p = {.fd = c->base.fd, .events = c->io_wait | POLLIN};
      int64_t now = svc__now_ns();
      if (now >= deadline)
        return SVC_ETIMEDOUT;
      int64_t ms = deadline == INT64_MAX ? -1 : (deadline - now) / 1000000 + 1;
      if (poll(&p, 1, ms > 1000 ? 1000 : (int)ms) < 0 && errno != EINTR)
        return svc__from_errno(errno);
      if (p.revents & POLLIN) {
        int rc = read_while_sending(c);
        if (rc < 0 && rc != SVC_EPEERGONE)
          return rc;
      }
      continue;
    }
    svc__iov_advance(&iov, &n, (size_t)w);
  }
  return 0;
}

/* Client: a whole reply (or an error for recv to report) lies in the
 * buffer beyond the one handed out. */
static int reply_buffered(const stream_conn *c) {
  size_t off = c->in_off + (c->old_in ? 0 : c->held);
  if (off == c->in_len)
    return 0;
  svc__frame f;
  return svc__frame_decode(c->in + off, c->in_len - off, SVC__MAX_MSG_LIMIT,
                           &f) != 0;
}

/* Client: writes the requests held back, reading replies meanwhile. */
static int flush_requests(stream_conn *c, int64_t deadline) {
  if (c->out_len == 0)
    return 0;
  struct iovec iov = {c->out, c->out_len};
  int rc = send_frame(c, &iov, 1, deadline);
  c->out_len = 0;
  return rc;
}

/* A write found the stream closed, with a request (the last written) not
 * wholly gone, so the server never ran it. The connection takes no more
 * requests, but replies to calls already in flight may still lie unread in
 * the socket: recv hands them out before it reports the end. SVC_EPEERGONE
 * for the client: with nothing in flight it reconnects and sends again;
 * with calls in flight the caller receives them first. */
static int closed_under_write(stream_conn *c) {
  c->goaway = 1;
  return SVC_EPEERGONE;
}

int svc__stream_send(svc__conn *base, uint32_t seq, const char *method,
                     size_t method_len, const void *req, size_t len, int flags,
                     int64_t deadline) {
  stream_conn *c = (stream_conn *)base;
  if (len > c->max_payload)
    return SVC_ETOOBIG;
  if (c->goaway)
    return SVC_EPEERGONE;
  int rc = flags & SVC__SEND_IDLE ? check_idle(c) : 0;
  if (rc < 0)
    return rc;
  svc__frame f = {.type = SVC__FRAME_REQUEST,
                  .call_id = seq,
                  .method_len = (uint32_t)method_len,
                  .payload_len = (uint32_t)len};
  size_t size = svc__frame_size(method_len, len);
  /* While replies already read wait to be received, the caller is working
   * through a burst: requests wait for the next recv (or for the last of
   * those replies to be taken) and leave together, so a window kept full
   * costs one write per burst, as a careful user of a raw socket would
   * make it. Otherwise a request leaves at once. */
  if (!(flags & SVC__SEND_ALONE) && len <= BATCH_MAX &&
      c->out_len + size <= FLUSH_AT) {
    if (grow(&c->out, &c->out_cap, c->out_len + size) < 0)
      return SVC_ENOMEM;
    uint8_t *at = c->out + c->out_len;
    svc__frame_encode_header(&f, at);
    memcpy(at + SVC__FRAME_HDR, method, method_len);
    memcpy(at + SVC__FRAME_HDR + method_len, req, len);
    c->out_len += size;
    if (reply_buffered(c))
      return 0;
    rc = flush_requests(c, deadline);
    return rc == SVC_EPEERGONE ? closed_under_write(c) : rc;
  }
  /* Requests held back go first; if the stream breaks under them, this
   * one has not left. */
  if ((rc = flush_requests(c, deadline)) < 0)
    return rc == SVC_EPEERGONE ? closed_under_write(c) : rc;
  uint8_t hdr[SVC__FRAME_HDR];
  svc__frame_encode_header(&f, hdr);
  struct iovec iov[3] = {
      {hdr, sizeof hdr}, {(void *)method, method_len}, {(void *)req, len}};
  rc = send_frame(c, iov, len ? 3 : 2, deadline);
  return rc == SVC_EPEERGONE ? closed_under_write(c) : rc;
}

/* Drops n bytes of input (an oversized reply), reading as needed. */
static int discard(stream_conn *c, size_t n, int64_t deadline) {
  for (;;) {
    size_t k = c->in_len - c->in_off;
    k = n < k ? n : k;
    consume(c, k);
    n -= k;
    if (n == 0)
      return 0;
    c->in_off = c->in_len = 0;
    int rc = read_some(c, 0);
    if (rc == 0)
      rc = wait_io(c, deadline);
    if (rc < 0)
      return rc;
  }
}

int svc__stream_recv(svc__conn *base, int64_t deadline, svc__result *res) {
  stream_conn *c = (stream_conn *)base;
  for (;;) {
    svc__frame r;
    size_t want = 0;
    long n = next_frame(c, &r, &want);
    if (n == SVC_ETOOBIG && r.type == SVC__FRAME_REPLY) {
      size_t total = svc__frame_size(r.method_len, r.payload_len);
      int rc = discard(c, total,
                       deadline ? deadline : svc__now_ns() + WRITE_TIMEOUT_NS);
      if (rc < 0) /* cut mid-frame: the stream is lost either way */
        return rc == SVC_ETIMEDOUT ? SVC_EPEERGONE : rc;
      *res = (svc__result){.call_id = r.call_id, .status = SVC_ETOOBIG};
      return 0;
    }
    if (n < 0)
      return n == SVC_ETOOBIG ? SVC_EPROTO : (int)n;
    if (n > 0) {
      if (r.type == SVC__FRAME_GOAWAY) { /* replies in flight still follow */
        c->goaway = 1;
        consume(c, (size_t)n);
        continue;
      }
      int refused = refusal(c, &r);
      if (refused)
        return refused;
      if (r.type != SVC__FRAME_REPLY)
        return SVC_EPROTO;
      if (r.status == SVC_ETOOBIG)
        c->goaway = 1; /* the server closes after refusing a request */
      res->call_id = r.call_id;
      res->status = r.status;
      res->payload = r.payload;
      res->len = r.payload_len;
      c->held = (size_t)n; /* stays in c->in until release */
      c->reply_ns = svc__now_ns();
      return 0;
    }
    int rc = flush_requests(c, deadline ? deadline : INT64_MAX);
    if (rc == SVC_EPEERGONE) { /* read the replies that came before the end */
      c->goaway = 1;
      rc = 0;
    }
    if (rc == 0)
      rc = make_room(c, want);
    if (rc < 0)
      return rc;
    /* No deadline: block in recv itself (one syscall, as a plain socket
     * client would); else read what is there and poll for the rest. */
    rc = read_some(c, deadline == INT64_MAX);
    if (rc == 0 && deadline == 0)
      return SVC_ETIMEDOUT;
    if (rc == 0)
      rc = wait_io(c, deadline);
    if (rc < 0)
      return rc;
  }
}

void svc__stream_release(svc__conn *base) {
  stream_conn *c = (stream_conn *)base;
  if (c->old_in) { /* the reply lay in the replaced buffer */
    free(c->old_in);
    c->old_in = NULL;
  } else if (c->held) {
    consume(c, c->held);
  }
  c->held = 0;
}

int svc__stream_taken(svc__conn *base, uint32_t seq) {
  (void)base;
  (void)seq;
  return 1; /* a request that left may have been read */
}

int svc__stream_request(svc__conn *base, uint32_t seq, svc__frame *f) {
  (void)base;
  (void)seq;
  (void)f;
  return SVC_ESTATE; /* requests are not kept once written */
}

void *svc__stream_request_space(svc__conn *base, size_t len) {
  (void)base;
  (void)len;
  return NULL; /* the client's buffer, sent with writev from where it is */
}

void svc__stream_watch(svc__conn *base) { (void)base; }

int svc__stream_buffered(const svc__conn *base) {
  const stream_conn *c = (const stream_conn *)base;
  /* recv sends what is held, and reads what the io layer holds */
  return c->out_len > 0 || reply_buffered(c) || c->io->pending(c);
}

/* ---- server ---- */

int svc__stream_listener(const svc__transport *tp, int fd, const char *path,
                         svc__listener **out) {
  svc__listener *l = svc__calloc(1, sizeof *l);
  if (!l) {
    close(fd);
    return SVC_ENOMEM;
  }
  l->tp = tp;
  l->fd = fd;
  if (path)
    snprintf(l->path, sizeof l->path, "%s", path);
  *out = l;
  return 0;
}

static int unix_listen(const svc__url *u, char *why, size_t why_len,
                       svc__listener **out) {
  (void)why;
  (void)why_len;
  int fd, rc = svc__sock_unix_listen(u->path, &fd);
  return rc < 0 ? rc
                : svc__stream_listener(&svc__transport_unix, fd, u->path, out);
}

/* tcp:// has no authentication and no encryption: fine on loopback, a
 * hole anywhere else, so a listener elsewhere says so once. */
static int tcp_listen(const svc__url *u, char *why, size_t why_len,
                      svc__listener **out) {
  (void)why;
  (void)why_len;
  int fd, rc = svc__sock_tcp_listen(u->host, u->port, &fd);
  if (rc < 0)
    return rc;
  if (!svc__sock_is_loopback(fd))
    fprintf(stderr,
            "svc: warning: tcp://%s:%u is reachable from other hosts and "
            "unauthenticated: anyone who can connect can call every method, "
            "in clear; use tls:// (with client_ca= for mutual TLS)\n",
            u->host, (unsigned)u->port);
  return svc__stream_listener(&svc__transport_tcp, fd, NULL, out);
}

void svc__stream_unlisten(svc__listener *l) {
  if (l->path[0])
    unlink(l->path);
  close(l->fd);
  free(l);
}

/* Sends every batched reply. */
static int flush(stream_conn *c) {
  if (c->out_len == 0)
    return 0;
  struct iovec iov = {c->out, c->out_len};
  int rc = svc__stream_write_all(c, &iov, 1, svc__now_ns() + WRITE_TIMEOUT_NS);
  c->out_len = 0;
  return rc;
}

/* Appends a reply whose payload (if any) is already at reply_at + header. */
static int add_reply(stream_conn *c, uint32_t call_id, int status, size_t len) {
  if (grow(&c->out, &c->out_cap, c->reply_at + SVC__FRAME_HDR) < 0)
    return SVC_ENOMEM;
  svc__frame rep = {.type = SVC__FRAME_REPLY,
                    .call_id = call_id,
                    .status = status,
                    .payload_len = (uint32_t)len};
  svc__frame_encode_header(&rep, c->out + c->reply_at);
  c->out_len = c->reply_at + SVC__FRAME_HDR + len;
  return 0;
}

void svc__stream_refuse(int fd, int code) {
  svc__frame f = {.type = SVC__FRAME_REPLY, .status = code};
  uint8_t hdr[SVC__FRAME_HDR];
  svc__frame_encode_header(&f, hdr);
  struct iovec iov = {hdr, sizeof hdr};
  (void)svc__sock_writev_all(fd, &iov, 1, svc__now_ns() + 100000000);
}

int svc__stream_accept_fd(svc__listener *l, const svc__conn_opts *o, int *fd) {
  int rc = svc__sock_accept(l->fd, !o->allow_any_uid, fd);
  if (rc == SVC_EPERM) { /* say why before closing, as shm's ack does */
    svc__stream_refuse(*fd, SVC_EPERM);
    close(*fd);
  }
  return rc;
}

static int stream_accept(svc__listener *l, const svc__conn_opts *o,
                         svc__conn **out) {
  int fd, rc = svc__stream_accept_fd(l, o, &fd);
  if (rc != 0)
    return rc;
  /* Blocking, with a receive timeout: serve's wait for the next request
   * is one read. Every other read and write says MSG_DONTWAIT. */
  struct timeval stay = {0, STAY_WAIT_US};
  if (svc__sock_set_blocking(fd, 1) < 0 ||
      setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &stay, sizeof stay) != 0) {
    close(fd);
    return svc__from_errno(errno);
  }
  stream_conn *c =
      svc__stream_new(l->tp, fd, &svc__stream_plain_io, o->max_payload, 0);
  if (!c)
    return SVC_ENOMEM;
  *out = &c->base;
  return 0;
}

static void *stream_reply_alloc(svc_reply *r, size_t len) {
  stream_conn *c = r->conn;
  if (len > c->max_payload) {
    r->error = SVC_ETOOBIG;
    return NULL;
  }
  if (grow(&c->out, &c->out_cap, c->reply_at + SVC__FRAME_HDR + len) < 0) {
    r->error = SVC_ENOMEM;
    return NULL;
  }
  r->error = 0;
  r->len = len;
  return c->out + c->reply_at + SVC__FRAME_HDR;
}

static int handle_request(stream_conn *c, const svc__frame *f,
                          const svc__serve_ops *ops, void *ctx) {
  c->reply_at = c->out_len;
  svc_reply r = {.alloc = stream_reply_alloc, .conn = c};
  int status = svc__run_request(ops, ctx, f, &r);
  int rc = add_reply(c, f->call_id, status, status == 0 ? r.len : 0);
  svc__request_posted(ops, ctx);
  return rc == 0 && c->out_len >= FLUSH_AT ? flush(c) : rc;
}

int svc__stream_serve(svc__conn *base, const svc__serve_ops *ops, void *ctx) {
  stream_conn *c = (stream_conn *)base;
  int reads = 0;
  c->drained = 0; /* epoll said readable: what the last read saw is old */
  /* Hot: this request came within the wait, so waiting would have caught
   * it. Only hot connections keep a thread: a burst of connections making
   * one call each must not grow the pool by one thread each. */
  int hot = c->idle_ns && svc__now_ns() - c->idle_ns < STAY_WAIT_US * 1000;
  for (;;) {
    svc__frame f;
    long n = 0;
    size_t want = 0;
    if (c->skip) { /* draining an oversized request, then closing */
      size_t k = c->in_len - c->in_off;
      k = c->skip < k ? c->skip : k;
      consume(c, k);
      if ((c->skip -= k) == 0)
        return SVC_EPROTO;
    } else if ((n = next_frame(c, &f, &want)) == SVC_ETOOBIG) {
      /* Over the limit: say so at once, close our side, and read (without
       * keeping) what the client still sends, so the reply is not lost to a
       * reset. The client reconnects on its next call. */
      if (f.type != SVC__FRAME_REQUEST) {
        (void)flush(c); /* the calls before it ran: send their replies */
        return SVC_EPROTO;
      }
      c->reply_at = c->out_len;
      int rc = add_reply(c, f.call_id, SVC_ETOOBIG, 0);
      if (rc == 0)
        rc = flush(c);
      if (rc < 0 || shutdown(c->base.fd, SHUT_WR) != 0)
        return SVC_EPROTO;
      consume(c, SVC__FRAME_HDR);
      c->skip = (size_t)f.method_len + f.payload_len;
      continue;
    }
    if (n > 0 && f.type != SVC__FRAME_REQUEST)
      n = SVC_EPROTO;
    if (n < 0) { /* the calls before the garbage ran: send their replies */
      (void)flush(c);
      return (int)n;
    }
    if (n > 0) {
      int rc = handle_request(c, &f, ops, ctx);
      if (rc < 0)
        return rc;
      consume(c, (size_t)n);
      continue;
    }
    /* Every complete request is answered: send the batch, then read. */
    int rc = flush(c);
    if (rc == 0 && !c->skip)
      rc = make_room(c, want);
    else if (rc == 0 && c->in_len == c->in_cap)
      c->in_off = c->in_len = 0;
    if (rc == 0 && c->in_cap == 0)
      rc = grow(&c->in, &c->in_cap, MIN_BUF);
    if (rc < 0)
      return rc;
    /* Drained: a read now would only say "nothing". The thread waits for
     * the next request itself if the connection is hot and another thread
     * polls the rest; else epoll does. Not drained: read on, unless this
     * connection has had its turn and the others have no spare thread:
     * epoll reports it again, after them (what is left waits in the
     * socket, not in the io layer, so the fd shows it). */
    int block = c->drained;
    if (block && (!hot || !ops->stay || !ops->stay(ctx))) {
      c->idle_ns = svc__now_ns();
      return 0;
    }
    if (!block && !c->io->pending(c) && ++reads > SERVE_BUDGET_READS) {
      if (!ops->stay || !ops->stay(ctx))
        return 0;
      reads = 0;
    }
    rc = read_some(c, block);
    if (rc < 0)
      return rc;
    if (rc == 0 && block)
      c->idle_ns = 0; /* the wait ran out: not hot until it pays again */
    if (rc == 0)
      return 0;
  }
}

int svc__stream_goaway(svc__conn *base) {
  svc__frame f = {.type = SVC__FRAME_GOAWAY};
  uint8_t hdr[SVC__FRAME_HDR];
  svc__frame_encode_header(&f, hdr);
  struct iovec iov = {hdr, sizeof hdr};
  (void)svc__stream_write_all((stream_conn *)base, &iov, 1,
                              svc__now_ns() + 100000000);
  return 0;
}

/* unix:// and tcp:// differ only in how they dial and listen. */
/* clang-format off */
#define STREAM_OPS(name, dial_fn, listen_fn)                                   \
  {                                                                            \
    .scheme = (name), .dial = (dial_fn), .send = svc__stream_send,             \
    .recv = svc__stream_recv, .release = svc__stream_release,                  \
    .taken = svc__stream_taken, .request = svc__stream_request,                \
    .request_space = svc__stream_request_space, .watch = svc__stream_watch,    \
    .buffered = svc__stream_buffered, .listen = (listen_fn),                   \
    .accept = stream_accept, .serve = svc__stream_serve,                       \
    .goaway = svc__stream_goaway, .close = svc__stream_close,                  \
    .unlisten = svc__stream_unlisten,                                          \
  }

const svc__transport svc__transport_unix =
    STREAM_OPS("unix", unix_dial, unix_listen);
const svc__transport svc__transport_tcp =
    STREAM_OPS("tcp", tcp_dial, tcp_listen);
/* clang-format on */

/* transport_stream.c — unix:// and tcp://: frames (frame.c) over a byte
 * stream. The server side is nonblocking and driven by the server's epoll;
 * the client side blocks in the kernel. Any malformed frame closes that
 * connection with SVC_EPROTO and touches nothing else. */
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
#include "transport.h"

#define WRITE_TIMEOUT_NS (30 * (int64_t)1000000000) /* a client not reading */
#define MIN_BUF 65536

typedef struct stream_conn {
  svc__conn base;
  size_t max_payload;
  uint8_t *in; /* bytes received, not yet consumed */
  size_t in_len;
  size_t in_cap;
  uint8_t *out; /* server: reply frame under construction */
  size_t out_cap;
  uint32_t next_id; /* client: id of the next call */
  int goaway;       /* client: server asked us to reconnect */
  size_t skip;      /* server: bytes of an oversized request to drop */
  size_t held;      /* client: bytes of the last reply, kept for the caller */
} stream_conn;

static int grow(uint8_t **buf, size_t *cap, size_t want) {
  if (want <= *cap)
    return 0;
  size_t n = *cap ? *cap : MIN_BUF;
  while (n < want)
    n *= 2;
  uint8_t *p = realloc(*buf, n);
  if (!p)
    return SVC_ENOMEM;
  *buf = p;
  *cap = n;
  return 0;
}

static stream_conn *conn_new(const svc__transport *tp, int fd,
                             size_t max_payload) {
  stream_conn *c = calloc(1, sizeof *c);
  if (!c)
    return NULL;
  c->base.tp = tp;
  c->base.fd = fd;
  c->max_payload = max_payload;
  c->next_id = 1;
  return c;
}

static void stream_close(svc__conn *base) {
  stream_conn *c = (stream_conn *)base;
  if (!c)
    return;
  if (c->base.fd >= 0)
    close(c->base.fd);
  free(c->in);
  free(c->out);
  free(c);
}

/* Drops the first n bytes of the input buffer. */
static void consume(stream_conn *c, size_t n) {
  memmove(c->in, c->in + n, c->in_len - n);
  c->in_len -= n;
}

/* Decodes the frame at the start of the input buffer: > 0 its size, 0 need
 * more (with room made for it), SVC_ETOOBIG when a well-formed header
 * announces more than our limit (f holds the header: the caller drops the
 * rest and the connection lives on), or SVC_EPROTO / SVC_ENOMEM. */
static long next_frame(stream_conn *c, svc__frame *f) {
  long n = svc__frame_decode(c->in, c->in_len, SVC__MAX_MSG_LIMIT, f);
  if (n < 0)
    return n;
  if (c->in_len >= SVC__FRAME_HDR && f->payload_len > c->max_payload)
    return SVC_ETOOBIG;
  if (n > 0)
    return n;
  size_t want = SVC__FRAME_HDR;
  if (c->in_len >= SVC__FRAME_HDR)
    want = svc__frame_size(f->method_len, f->payload_len);
  int rc = grow(&c->in, &c->in_cap, want);
  return rc < 0 ? rc : 0;
}

/* ---- client ---- */

static int dial_common(const svc__transport *tp, int fd,
                       const svc__conn_opts *o, svc__conn **out) {
  int rc = svc__sock_set_blocking(fd, 1);
  stream_conn *c = rc == 0 ? conn_new(tp, fd, o->max_payload) : NULL;
  if (!c || grow(&c->in, &c->in_cap, MIN_BUF) < 0) {
    if (c)
      stream_close(&c->base);
    else
      close(fd);
    return rc < 0 ? rc : SVC_ENOMEM;
  }
  *out = &c->base;
  return 0;
}

static int unix_dial(const svc__url *u, const svc__conn_opts *o,
                     int64_t deadline, svc__conn **out) {
  int fd, rc = svc__sock_unix_dial(u->path, deadline, &fd);
  return rc < 0 ? rc : dial_common(&svc__transport_unix, fd, o, out);
}

static int tcp_dial(const svc__url *u, const svc__conn_opts *o,
                    int64_t deadline, svc__conn **out) {
  int fd, rc = svc__sock_tcp_dial(u->host, u->port, deadline, &fd);
  return rc < 0 ? rc : dial_common(&svc__transport_tcp, fd, o, out);
}

/* Reads one whole frame into the input buffer (blocking up to deadline). */
static long read_frame(stream_conn *c, svc__frame *f, int64_t deadline) {
  for (;;) {
    long n = next_frame(c, f);
    if (n != 0)
      return n;
    ssize_t r = recv(c->base.fd, c->in + c->in_len, c->in_cap - c->in_len,
                     deadline == INT64_MAX ? 0 : MSG_DONTWAIT);
    if (r > 0) {
      c->in_len += (size_t)r;
      continue;
    }
    if (r == 0)
      return SVC_EPEERGONE;
    if (errno == EINTR)
      continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK)
      return errno == ECONNRESET ? SVC_EPEERGONE : svc__from_errno(errno);
    int rc = svc__sock_wait(c->base.fd, POLLIN, deadline);
    if (rc < 0)
      return rc;
  }
}

/* A reply to call 0 (never a real call id) with an error: the server
 * refused the connection itself, e.g. SVC_EPERM for a peer of another uid. */
static int refusal(const svc__frame *f) {
  return f->type == SVC__FRAME_REPLY && f->call_id == 0 && f->status < 0;
}

/* Drops n bytes of input (an oversized reply), reading as needed. */
static int discard(stream_conn *c, size_t n, int64_t deadline) {
  for (;;) {
    size_t k = n < c->in_len ? n : c->in_len;
    consume(c, k);
    n -= k;
    if (n == 0)
      return 0;
    int rc = svc__sock_read_all(c->base.fd, c->in, 1, deadline);
    if (rc < 0)
      return rc;
    c->in_len = 1;
  }
}

/* Between calls nothing should arrive but a GOAWAY or the end of the
 * stream: either means "reconnect before sending". One cheap syscall. */
static int check_idle(stream_conn *c) {
  consume(c, c->held); /* the previous reply is released now */
  c->held = 0;
  if (c->goaway)
    return SVC_EPEERGONE;
  svc__frame f;
  if (c->in_len > 0) { /* read along with the last reply */
    long n = next_frame(c, &f);
    if (n > 0 && f.type == SVC__FRAME_GOAWAY) {
      consume(c, (size_t)n);
      c->goaway = 1;
      return SVC_EPEERGONE;
    }
    return SVC_EPROTO;
  }
  uint8_t b;
  ssize_t r = recv(c->base.fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
  if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
    return 0;
  if (r <= 0)
    return SVC_EPEERGONE;
  long n = read_frame(c, &f, svc__now_ns() + 1000000000);
  if (n > 0 && refusal(&f))
    return f.status;
  if (n > 0 && f.type == SVC__FRAME_GOAWAY) {
    consume(c, (size_t)n);
    c->goaway = 1;
    return SVC_EPEERGONE;
  }
  return n < 0 ? (int)n : SVC_EPROTO;
}

static uint32_t next_call_id(stream_conn *c) {
  if (c->next_id == 0) /* 0 marks a refusal of the connection */
    c->next_id = 1;
  return c->next_id++;
}

static int stream_call(svc__conn *base, const char *method, size_t method_len,
                       const void *req, size_t len, int64_t deadline,
                       svc__result *res) {
  stream_conn *c = (stream_conn *)base;
  memset(res, 0, sizeof *res);
  if (len > c->max_payload)
    return SVC_ETOOBIG;
  int rc = check_idle(c);
  if (rc < 0) {
    res->not_taken = rc == SVC_EPEERGONE;
    return rc;
  }
  svc__frame f = {.type = SVC__FRAME_REQUEST,
                  .call_id = next_call_id(c),
                  .method_len = (uint32_t)method_len,
                  .payload_len = (uint32_t)len};
  uint8_t hdr[SVC__FRAME_HDR];
  svc__frame_encode_header(&f, hdr);
  struct iovec iov[3] = {
      {hdr, sizeof hdr}, {(void *)method, method_len}, {(void *)req, len}};
  rc = svc__sock_writev_all(c->base.fd, iov, len ? 3 : 2, deadline);
  if (rc < 0) {
    res->not_taken = rc == SVC_EPEERGONE; /* unsent: the server never saw it */
    return rc;
  }
  for (;;) {
    svc__frame r;
    long n = read_frame(c, &r, deadline);
    if (n == SVC_ETOOBIG && r.type == SVC__FRAME_REPLY &&
        r.call_id == f.call_id) {
      rc = discard(c, svc__frame_size(r.method_len, r.payload_len), deadline);
      return rc < 0 ? rc : SVC_ETOOBIG;
    }
    if (n < 0)
      return n == SVC_ETOOBIG ? SVC_EPROTO : (int)n;
    if (r.type == SVC__FRAME_GOAWAY) { /* the reply still follows */
      c->goaway = 1;
      consume(c, (size_t)n);
      continue;
    }
    if (refusal(&r))
      return r.status;
    if (r.type != SVC__FRAME_REPLY || r.call_id != f.call_id)
      return SVC_EPROTO;
    if (r.status == SVC_ETOOBIG)
      c->goaway = 1; /* the server closes after refusing a request */
    res->status = r.status;
    res->payload = r.payload;
    res->len = r.payload_len;
    c->held = (size_t)n; /* stays in c->in until the next call */
    return 0;
  }
}

/* ---- server ---- */

static int listen_common(const svc__transport *tp, int fd, const char *path,
                         svc__listener **out) {
  svc__listener *l = calloc(1, sizeof *l);
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

static int unix_listen(const svc__url *u, svc__listener **out) {
  int fd, rc = svc__sock_unix_listen(u->path, &fd);
  return rc < 0 ? rc : listen_common(&svc__transport_unix, fd, u->path, out);
}

static int tcp_listen(const svc__url *u, svc__listener **out) {
  int fd, rc = svc__sock_tcp_listen(u->host, u->port, &fd);
  return rc < 0 ? rc : listen_common(&svc__transport_tcp, fd, NULL, out);
}

static void stream_unlisten(svc__listener *l) {
  if (l->path[0])
    unlink(l->path);
  close(l->fd);
  free(l);
}

static int send_reply(stream_conn *c, uint32_t call_id, int status, size_t len);

static int stream_accept(svc__listener *l, const svc__conn_opts *o,
                         svc__conn **out) {
  int fd, rc = svc__sock_accept(l->fd, !o->allow_any_uid, &fd);
  if (rc == SVC_EPERM) { /* say why before closing, as shm's ack does */
    stream_conn tmp = {.base = {.fd = fd}};
    (void)send_reply(&tmp, 0, SVC_EPERM, 0);
    free(tmp.out);
    close(fd);
  }
  if (rc != 0)
    return rc;
  stream_conn *c = conn_new(l->tp, fd, o->max_payload);
  if (!c) {
    close(fd);
    return SVC_ENOMEM;
  }
  *out = &c->base;
  return 0;
}

static void *stream_reply_alloc(svc_reply *r, size_t len) {
  stream_conn *c = r->conn;
  if (len > c->max_payload) {
    r->error = SVC_ETOOBIG;
    return NULL;
  }
  if (grow(&c->out, &c->out_cap, SVC__FRAME_HDR + len) < 0) {
    r->error = SVC_ENOMEM;
    return NULL;
  }
  r->error = 0;
  r->len = len;
  return c->out + SVC__FRAME_HDR;
}

/* Sends the reply whose payload (if any) is already in c->out. */
static int send_reply(stream_conn *c, uint32_t call_id, int status,
                      size_t len) {
  if (grow(&c->out, &c->out_cap, SVC__FRAME_HDR) < 0)
    return SVC_ENOMEM;
  svc__frame rep = {.type = SVC__FRAME_REPLY,
                    .call_id = call_id,
                    .status = status,
                    .payload_len = (uint32_t)len};
  svc__frame_encode_header(&rep, c->out);
  struct iovec iov = {c->out, SVC__FRAME_HDR + len};
  return svc__sock_writev_all(c->base.fd, &iov, 1,
                              svc__now_ns() + WRITE_TIMEOUT_NS);
}

static int handle_request(stream_conn *c, const svc__frame *f,
                          svc__dispatch_fn fn, void *ctx) {
  svc_reply r = {.alloc = stream_reply_alloc, .conn = c};
  int status = svc__run_request(fn, ctx, f, &r);
  return send_reply(c, f->call_id, status, status == 0 ? r.len : 0);
}

static int stream_serve(svc__conn *base, svc__dispatch_fn fn, void *ctx) {
  stream_conn *c = (stream_conn *)base;
  for (;;) {
    svc__frame f;
    long n = 0;
    if (c->skip) { /* draining an oversized request, then closing */
      size_t k = c->skip < c->in_len ? c->skip : c->in_len;
      consume(c, k);
      if ((c->skip -= k) == 0)
        return SVC_EPROTO;
    } else if ((n = next_frame(c, &f)) == SVC_ETOOBIG) {
      /* Over the limit: say so at once, close our side, and read (without
       * keeping) what the client still sends, so the reply is not lost to a
       * reset. The client reconnects on its next call. */
      if (f.type != SVC__FRAME_REQUEST)
        return SVC_EPROTO;
      int rc = send_reply(c, f.call_id, SVC_ETOOBIG, 0);
      if (rc < 0 || shutdown(c->base.fd, SHUT_WR) != 0)
        return SVC_EPROTO;
      consume(c, SVC__FRAME_HDR);
      c->skip = (size_t)f.method_len + f.payload_len;
      continue;
    }
    if (n < 0)
      return (int)n;
    if (n > 0) {
      if (f.type != SVC__FRAME_REQUEST)
        return SVC_EPROTO;
      int rc = handle_request(c, &f, fn, ctx);
      if (rc < 0)
        return rc;
      consume(c, (size_t)n);
      continue;
    }
    ssize_t r = recv(c->base.fd, c->in + c->in_len, c->in_cap - c->in_len,
                     MSG_DONTWAIT);
    if (r > 0) {
      c->in_len += (size_t)r;
      continue;
    }
    if (r == 0)
      return SVC_EPEERGONE;
    if (errno == EINTR)
      continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK)
      return 0;
    return SVC_EPEERGONE;
  }
}

static int stream_goaway(svc__conn *base) {
  svc__frame f = {.type = SVC__FRAME_GOAWAY};
  uint8_t hdr[SVC__FRAME_HDR];
  svc__frame_encode_header(&f, hdr);
  struct iovec iov = {hdr, sizeof hdr};
  (void)svc__sock_writev_all(base->fd, &iov, 1, svc__now_ns() + 100000000);
  return 0;
}

const svc__transport svc__transport_unix = {
    .scheme = "unix",
    .dial = unix_dial,
    .call = stream_call,
    .listen = unix_listen,
    .accept = stream_accept,
    .serve = stream_serve,
    .goaway = stream_goaway,
    .close = stream_close,
    .unlisten = stream_unlisten,
};

const svc__transport svc__transport_tcp = {
    .scheme = "tcp",
    .dial = tcp_dial,
    .call = stream_call,
    .listen = tcp_listen,
    .accept = stream_accept,
    .serve = stream_serve,
    .goaway = stream_goaway,
    .close = stream_close,
    .unlisten = stream_unlisten,
};

/* transport_shm.c — shm://NAME: one memfd region per connection (region.c),
 * handed to the server over the rendezvous Unix socket with SCM_RIGHTS.
 * That socket stays open for the connection's life: it is the doorbell for
 * a sleeping side and tells each side when the other dies. Calls between
 * two spinning sides make no syscall at all (wait.c). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"
#include "region.h"
#include "sock.h"
#include "transport.h"
#include "wait.h"

#define HELLO_MAGIC 0x4c454853u /* "SHEL" */
#define HANDSHAKE_TIMEOUT_NS (5 * (int64_t)1000000000)

/* client -> server, with the region's fd attached */
typedef struct hello_msg {
  uint32_t magic;
  uint32_t version;
} hello_msg;

/* server -> client */
typedef struct ack_msg {
  uint32_t magic;
  int32_t status;       /* 0 or SVC_E* */
  uint64_t max_payload; /* what the server accepts */
} ack_msg;

typedef struct shm_conn {
  svc__conn base;
  svc__region region;
  svc__waiter waiter;
  uint32_t seq;       /* client: last call posted; server: last taken */
  int ready;          /* server: handshake done */
  size_t reply_off;   /* server: where the current reply frame goes */
  int64_t idle_since; /* server: when it last went to sleep */
  const _Atomic int *stopping; /* server: stop serving when set */
} shm_conn;

static shm_conn *conn_new(int fd, const svc__conn_opts *o) {
  shm_conn *c = calloc(1, sizeof *c);
  if (!c)
    return NULL;
  c->base.tp = &svc__transport_shm;
  c->base.fd = fd;
  c->region.fd = -1;
  svc__waiter_init(&c->waiter, o->wait);
  c->waiter.spinners = o->spinners;
  c->waiter.max_spinners = o->max_spinners;
  c->stopping = o->stopping;
  return c;
}

static void shm_close(svc__conn *base) {
  shm_conn *c = (shm_conn *)base;
  if (!c)
    return;
  svc__region_fini(&c->region);
  if (c->base.fd >= 0)
    close(c->base.fd);
  free(c);
}

/* ---- client ---- */

static int send_hello(int sock, int memfd) {
  hello_msg h = {HELLO_MAGIC, SVC__REGION_VERSION};
  struct iovec iov = {&h, sizeof h};
  union {
    struct cmsghdr align;
    char buf[CMSG_SPACE(sizeof(int))];
  } u;
  memset(&u, 0, sizeof u);
  struct msghdr m = {.msg_iov = &iov,
                     .msg_iovlen = 1,
                     .msg_control = u.buf,
                     .msg_controllen = sizeof u.buf};
  struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
  cm->cmsg_level = SOL_SOCKET;
  cm->cmsg_type = SCM_RIGHTS;
  cm->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(cm), &memfd, sizeof(int));
  ssize_t n;
  do
    n = sendmsg(sock, &m, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  return n == (ssize_t)sizeof h ? 0 : SVC_EPEERGONE;
}

static int shm_dial(const svc__url *u, const svc__conn_opts *o,
                    int64_t deadline, svc__conn **out) {
  char path[SVC__PATH_MAX];
  int fd, rc = svc__sock_rendezvous_path(u->name, 0, path, sizeof path);
  if (rc < 0)
    return rc;
  if ((rc = svc__sock_unix_dial(path, deadline, &fd)) < 0)
    return rc;
  shm_conn *c = conn_new(fd, o);
  if (!c) {
    close(fd);
    return SVC_ENOMEM;
  }
  rc = svc__region_create(&c->region, o->max_payload);
  int sent = rc == 0 ? send_hello(fd, c->region.fd) : rc;
  ack_msg ack = {0};
  int64_t hs = svc__now_ns() + HANDSHAKE_TIMEOUT_NS;
  /* Read the ack even if the hello could not be sent: a server that
   * refused us (another uid) said why before it closed. */
  if (rc == 0)
    rc =
        svc__sock_read_all(fd, &ack, sizeof ack, deadline < hs ? deadline : hs);
  if (rc == 0 && sent < 0 && ack.status == 0)
    rc = sent;
  if (rc == 0 && ack.magic != HELLO_MAGIC)
    rc = SVC_EPROTO;
  if (rc == 0 && ack.status < 0)
    rc = ack.status;
  if (rc == SVC_EPEERGONE)
    rc = SVC_ECONNREFUSED; /* the server closed before accepting us */
  if (rc == SVC_ETIMEDOUT && svc__now_ns() < deadline)
    rc = SVC_ECONNREFUSED; /* no answer in time: not the caller's timeout */
  if (rc < 0) {
    shm_close(&c->base);
    return rc;
  }
  if (ack.max_payload < c->region.max_payload)
    c->region.max_payload = (size_t)ack.max_payload;
  *out = &c->base;
  return 0;
}

static int shm_call(svc__conn *base, const char *method, size_t method_len,
                    const void *req, size_t len, int64_t deadline,
                    svc__result *res) {
  shm_conn *c = (shm_conn *)base;
  svc__region *r = &c->region;
  svc__region_hdr *h = svc__region_hdr_of(r);
  memset(res, 0, sizeof *res);
  if (atomic_load_explicit(&h->closing, memory_order_relaxed)) {
    res->not_taken = 1;
    return SVC_EPEERGONE;
  }
  if (len > r->max_payload)
    return SVC_ETOOBIG;
  /* Room for the request and for the reply slot's header after it; the
   * server grows the region if the reply's payload needs more. */
  size_t size = svc__frame_size(method_len, len);
  size_t slot = svc__region_reply_slot(size);
  int rc = svc__region_ensure(r, slot + SVC__SLOT_HDR + SVC__FRAME_HDR);
  if (rc < 0)
    return rc;
  uint32_t seq = c->seq + 1 ? c->seq + 1 : 1; /* 0 marks "no reply yet" */
  svc__frame f = {.type = SVC__FRAME_REQUEST,
                  .call_id = seq,
                  .method_len = (uint32_t)method_len,
                  .payload_len = (uint32_t)len};
  uint8_t *at = r->base + SVC__REGION_REQ;
  svc__frame_encode_header(&f, at);
  memcpy(at + SVC__FRAME_HDR, method, method_len);
  if (len)
    memcpy(at + SVC__FRAME_HDR + method_len, req, len);
  _Atomic uint32_t *reply_seq = svc__region_seq(r, slot);
  atomic_store_explicit(reply_seq, 0, memory_order_relaxed);
  c->seq = seq;
  rc = svc__wake(svc__region_seq(r, SVC__REGION_DATA), seq, &h->server_sleeping,
                 c->base.fd);
  if (rc == 0)
    rc = svc__wait(&c->waiter, reply_seq, 0, &h->client_sleeping, c->base.fd,
                   deadline);
  if (rc == SVC_EPEERGONE)
    res->not_taken = atomic_load(&h->taken_seq) != seq;
  if (rc < 0)
    return rc;
  svc__frame rep;
  if (atomic_load_explicit(reply_seq, memory_order_acquire) != seq)
    return SVC_EPROTO;
  rc = svc__region_read_frame(r, slot + SVC__SLOT_HDR, SVC__FRAME_REPLY, &rep);
  if (rc < 0 || rep.call_id != seq)
    return SVC_EPROTO;
  res->status = rep.status;
  res->payload = rep.payload;
  res->len = rep.payload_len;
  return 0;
}

/* ---- server ---- */

static int shm_listen(const svc__url *u, svc__listener **out) {
  char path[SVC__PATH_MAX];
  int fd, rc = svc__sock_rendezvous_path(u->name, 1, path, sizeof path);
  if (rc < 0 || (rc = svc__sock_unix_listen(path, &fd)) < 0)
    return rc;
  svc__listener *l = calloc(1, sizeof *l);
  if (!l) {
    close(fd);
    unlink(path);
    return SVC_ENOMEM;
  }
  l->tp = &svc__transport_shm;
  l->fd = fd;
  snprintf(l->path, sizeof l->path, "%s", path);
  *out = l;
  return 0;
}

static void shm_unlisten(svc__listener *l) {
  unlink(l->path);
  close(l->fd);
  free(l);
}

static void send_ack(int fd, int status, size_t max_payload) {
  ack_msg a = {HELLO_MAGIC, status, max_payload};
  (void)send(fd, &a, sizeof a, MSG_NOSIGNAL | MSG_DONTWAIT);
}

static int shm_accept(svc__listener *l, const svc__conn_opts *o,
                      svc__conn **out) {
  int fd, rc = svc__sock_accept(l->fd, !o->allow_any_uid, &fd);
  if (rc == SVC_EPERM) {
    send_ack(fd, SVC_EPERM, 0);
    close(fd);
  }
  if (rc != 0)
    return rc;
  shm_conn *c = conn_new(fd, o);
  if (!c) {
    close(fd);
    return SVC_ENOMEM;
  }
  c->region.max_payload = o->max_payload; /* until the handshake */
  *out = &c->base;
  return 0;
}

/* Receives the hello and the region fd: 0 done, 1 not yet, or an error. */
static int handshake(shm_conn *c) {
  hello_msg h;
  struct iovec iov = {&h, sizeof h};
  union {
    struct cmsghdr align;
    char buf[CMSG_SPACE(sizeof(int))];
  } u;
  struct msghdr m = {.msg_iov = &iov,
                     .msg_iovlen = 1,
                     .msg_control = u.buf,
                     .msg_controllen = sizeof u.buf};
  ssize_t n = recvmsg(c->base.fd, &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
    return 1;
  if (n <= 0)
    return SVC_EPEERGONE;
  int memfd = -1;
  struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
  if (cm && cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS &&
      cm->cmsg_len == CMSG_LEN(sizeof(int)))
    memcpy(&memfd, CMSG_DATA(cm), sizeof(int));
  int rc = 0;
  if (memfd < 0 || (m.msg_flags & MSG_CTRUNC) || n != (ssize_t)sizeof h ||
      h.magic != HELLO_MAGIC || h.version != SVC__REGION_VERSION) {
    if (memfd >= 0)
      close(memfd);
    rc = SVC_EPROTO;
  } else {
    rc = svc__region_attach(&c->region, memfd, c->region.max_payload);
  }
  if (rc == 0) { /* before the ack: the client may post at once */
    c->ready = 1;
    c->seq = atomic_load(svc__region_seq(&c->region, SVC__REGION_DATA));
  }
  send_ack(c->base.fd, rc, rc == 0 ? c->region.max_payload : 0);
  return rc;
}

static void *shm_reply_alloc(svc_reply *rep, size_t len) {
  shm_conn *c = rep->conn;
  if (len > c->region.max_payload) {
    rep->error = SVC_ETOOBIG;
    return NULL;
  }
  int rc = svc__region_ensure(&c->region, c->reply_off + SVC__FRAME_HDR + len);
  if (rc < 0) {
    rep->error = rc == SVC_ETOOBIG ? SVC_ETOOBIG : SVC_ENOMEM;
    return NULL;
  }
  rep->error = 0;
  rep->len = len;
  return c->region.base + c->reply_off + SVC__FRAME_HDR;
}

/* Takes the posted request, runs it and posts the reply. */
static int handle_request(shm_conn *c, svc__dispatch_fn fn, void *ctx) {
  svc__region *r = &c->region;
  svc__region_hdr *h = svc__region_hdr_of(r);
  atomic_store_explicit(&h->taken_seq, c->seq, memory_order_relaxed);
  svc__frame f;
  int rc = svc__region_read_frame(r, SVC__REGION_REQ, SVC__FRAME_REQUEST, &f);
  if (rc < 0)
    return SVC_EPROTO;
  size_t slot =
      svc__region_reply_slot(svc__frame_size(f.method_len, f.payload_len));
  c->reply_off = slot + SVC__SLOT_HDR;
  svc_reply rep = {.alloc = shm_reply_alloc, .conn = c};
  int status = svc__run_request(fn, ctx, &f, &rep);
  svc__frame out = {.type = SVC__FRAME_REPLY,
                    .call_id = f.call_id,
                    .status = status,
                    .payload_len = status == 0 ? (uint32_t)rep.len : 0};
  /* The client made room for a bare header; a region that lacks it is a
   * client that lied, and loses its connection. */
  if (svc__region_ensure(r, c->reply_off + SVC__FRAME_HDR) < 0)
    return SVC_EPROTO;
  svc__region_write_header(r, c->reply_off, &out);
  return svc__wake(svc__region_seq(r, slot), c->seq, &h->client_sleeping,
                   c->base.fd);
}

static int shm_serve(svc__conn *base, svc__dispatch_fn fn, void *ctx) {
  shm_conn *c = (shm_conn *)base;
  if (!c->ready) {
    int rc = handshake(c);
    if (rc != 0)
      return rc > 0 ? 0 : rc;
  }
  svc__region_hdr *h = svc__region_hdr_of(&c->region);
  int rc = svc__doorbell_drain(c->base.fd);
  if (rc < 0)
    return rc;
  atomic_store(&h->server_sleeping, 0);
  if (c->idle_since)
    svc__waiter_learn(&c->waiter, svc__now_ns() - c->idle_since);
  _Atomic uint32_t *req_seq = svc__region_seq(&c->region, SVC__REGION_DATA);
  for (;;) {
    uint32_t cur = atomic_load_explicit(req_seq, memory_order_acquire);
    if (cur != c->seq) {
      c->seq = cur;
      if ((rc = handle_request(c, fn, ctx)) < 0)
        return rc;
      continue;
    }
    if (c->stopping && atomic_load_explicit(c->stopping, memory_order_relaxed))
      return 0;
    if (svc__spin(&c->waiter, req_seq, cur))
      continue;
    atomic_store(&h->server_sleeping, 1); /* then re-check: see wait.c */
    if (atomic_load(req_seq) != cur) {
      atomic_store(&h->server_sleeping, 0);
      continue;
    }
    c->idle_since = svc__now_ns();
    return 0;
  }
}

static int shm_goaway(svc__conn *base) {
  shm_conn *c = (shm_conn *)base;
  if (!c->ready)
    return 1;
  svc__region_hdr *h = svc__region_hdr_of(&c->region);
  atomic_store(&h->closing, 1); /* checked by the client before each call */
  return 0;
}

const svc__transport svc__transport_shm = {
    .scheme = "shm",
    .dial = shm_dial,
    .call = shm_call,
    .listen = shm_listen,
    .accept = shm_accept,
    .serve = shm_serve,
    .goaway = shm_goaway,
    .close = shm_close,
    .unlisten = shm_unlisten,
};

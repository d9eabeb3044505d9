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
#include "sys.h"
#include "transport.h"
#include "wait.h"

#define HELLO_MAGIC 0x4c454853u /* "SHEL" */
/* For announce_copy: a conservative copy rate (this VM copies 5-10 GB/s)
 * and slack for the work around the copy. */
#define COPY_BYTES_PER_NS 1
#define COPY_SLACK_NS 50000
#define HANDSHAKE_TIMEOUT_NS (5 * (int64_t)1000000000)

/* Says in the header that call seq's message of len bytes is being copied
 * now, and when that should be done: the peer spins through it. A peer
 * asleep is rung now, not when the message is posted, so its wake-up
 * overlaps the copy instead of following it. */
SVC__COLD static void announce_copy(_Atomic uint32_t *copy_for,
                                    _Atomic uint64_t *eta_ns, uint32_t seq,
                                    size_t len, _Atomic uint32_t *peer_sleeping,
                                    int fd) {
  atomic_store_explicit(eta_ns,
                        (uint64_t)(svc__now_ns() + COPY_SLACK_NS) +
                            len / COPY_BYTES_PER_NS,
                        memory_order_relaxed);
  atomic_store(copy_for, seq); /* after the estimate it vouches for */
  /* A dead peer is seen where the message is posted. */
  (void)svc__ring(peer_sleeping, fd);
}

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

/* A client's call in flight, at index seq % ring slots. */
typedef struct shm_call {
  uint32_t seq;  /* the call posted */
  uint16_t slot; /* the ring slot it lies in */
  uint8_t live;  /* it awaits its reply */
  uint8_t lane;  /* 1 + the request lane it lies in, or 0 */
} shm_call;

typedef struct shm_conn {
  svc__conn base;
  svc__region region;
  svc__waiter waiter;
  /* client; calls in flight are indexed by seq % ring slots */
  uint32_t posted;    /* the last call posted */
  uint32_t oldest;    /* no call before this one is in flight */
  uint32_t nlive;     /* calls in flight */
  shm_call *calls;    /* per index (seq % ring slots): the call posted */
  uint8_t *slot_busy; /* per ring slot: a call in flight lies there */
  uint32_t next_slot; /* where the next call goes (the last one said) */
  int held_slot;      /* the slot of the reply handed out, or -1 */
  uint32_t scans;     /* checks while waiting, for the full scans */
  uint32_t req_busy;  /* request lanes holding a request in flight (bits) */
  int req_lent;       /* the request lane lent to the caller, or -1 */
  int held_lane;      /* the reply lane of the reply handed out, or -1 */
  int watched;        /* event-loop mode: keep client_sleeping armed */
  /* server */
  uint32_t seq;                /* the last call taken */
  uint32_t next;               /* the slot the next call will be in */
  int ready;                   /* handshake done */
  size_t reply_off;            /* the slot half the current reply goes in */
  uint32_t reply_where;        /* where the current reply's payload lies */
  int reply_lane;              /* the reply lane taken for this call, or -1 */
  int64_t idle_since;          /* when it last went to sleep */
  const _Atomic int *stopping; /* stop serving when set */
} shm_conn;

static shm_conn *conn_new(int fd, const svc__conn_opts *o) {
  shm_conn *c = svc__calloc(1, sizeof *c);
  if (!c)
    return NULL;
  c->base.tp = &svc__transport_shm;
  c->base.fd = fd;
  c->region.fd = -1;
  svc__waiter_init(&c->waiter, o->wait);
  c->waiter.spinners = o->spinners;
  c->waiter.max_spinners = o->max_spinners;
  c->stopping = o->stopping;
  c->held_lane = c->req_lent = c->reply_lane = -1;
  return c;
}

static void shm_close(svc__conn *base) {
  shm_conn *c = (shm_conn *)base;
  if (!c)
    return;
  svc__region_fini(&c->region);
  if (c->base.fd >= 0)
    close(c->base.fd);
  free(c->calls);
  free(c->slot_busy);
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
    n = svc__sendmsg(sock, &m, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  return n == (ssize_t)sizeof h ? 0 : SVC_EPEERGONE;
}

static int shm_dial(const svc__url *u, const svc__conn_opts *o,
                    const svc__dial_opts *d, int64_t deadline,
                    svc__conn **out) {
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
  c->calls = svc__calloc(d->slots, sizeof *c->calls);
  c->slot_busy = svc__calloc(d->slots, 1);
  c->oldest = 1;
  c->held_slot = -1;
  rc = c->calls && c->slot_busy ? 0 : SVC_ENOMEM;
  if (rc == 0)
    rc = svc__region_create(&c->region, o->max_payload, d->slots);
  int sent = rc == 0 ? send_hello(fd, c->region.fd) : rc;
  /* No hello will come: the server's EOF ends our wait for an ack at
   * once, where it would otherwise last the handshake timeout. */
  if (rc == 0 && sent < 0)
    shutdown(fd, SHUT_WR);
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

/* A request lane neither in flight nor lent, or -1. */
static int free_request_lane(const shm_conn *c) {
  for (uint32_t i = 0; i < c->region.lanes; i++)
    if (!(c->req_busy & 1u << i) && (int)i != c->req_lent)
      return (int)i;
  return -1;
}

static int shm_send(svc__conn *base, uint32_t seq, const char *method,
                    size_t method_len, const void *req, size_t len, int flags,
                    int64_t deadline) {
  (void)deadline;
  shm_conn *c = (shm_conn *)base;
  svc__region *r = &c->region;
  svc__region_hdr *h = svc__region_hdr_of(r);
  if (atomic_load_explicit(&h->closing, memory_order_relaxed))
    return SVC_EPEERGONE;
  if (len > r->max_payload)
    return SVC_ETOOBIG;
  uint32_t mask = r->slots - 1, k = c->next_slot;
  if (c->slot_busy[k] || (int)k == c->held_slot)
    return SVC_EAGAIN; /* its reply is still read, or its call in flight */
  size_t slot = svc__region_slot(r, k);
  size_t size = svc__frame_size(method_len, len), payload_len = len;
  uint32_t where = SVC__WHERE_INLINE;
  uint8_t *at = r->base + slot + SVC__SLOT_REQ + SVC__SLOT_HDR;
  int lane = -1;
  if (flags & SVC__SEND_PREPARED) {
    /* Written in place: the payload is where request_space put it; the
     * header and method go just before it. */
    lane = c->req_lent;
    if (lane < 0 ||
        req != svc__region_lane(r, SVC__LANE_ID(SVC__LANE_REQ, lane)) +
                   SVC__PREPARED_AT)
      return SVC_EAGAIN;
    c->req_lent = -1;
    if (size > SVC__SLOT_FRAME_MAX) {
      size_t skip = SVC__PREPARED_AT - SVC__FRAME_HDR - method_len;
      where = SVC__WHERE_LANE_N_AT(lane, skip);
      at = svc__region_lane(r, SVC__LANE_ID(SVC__LANE_REQ, lane)) + skip;
      len = 0; /* nothing to copy below */
    } else {
      /* Small enough for the slot: copying it beside its sequence word
       * moves fewer cache lines than pointing the server at the lane. */
      lane = -1;
    }
  } else if (size > SVC__SLOT_FRAME_MAX) {
    if ((lane = free_request_lane(c)) < 0)
      return SVC_EAGAIN; /* every lane holds a large request in flight */
    int rc =
        svc__region_lane_ensure(r, SVC__LANE_ID(SVC__LANE_REQ, lane), size);
    if (rc < 0)
      return rc;
    where = SVC__WHERE_LANE_N_AT(lane, 0);
    at = svc__region_lane(r, SVC__LANE_ID(SVC__LANE_REQ, lane));
  }
  /* A caller that waits for each reply alternates between two slots (its
   * reply stays readable while the next call is written); calls in flight
   * take the slots in turn. */
  uint32_t follow = flags & SVC__SEND_ALONE ? k ^ 1 : (k + 1) & mask;
  svc__frame f = {.type = SVC__FRAME_REQUEST,
                  .call_id = seq,
                  .method_len = (uint32_t)method_len,
                  .payload_len = (uint32_t)payload_len};
  if (len > SVC__SLOT_FRAME_MAX) /* the server may spin through it */
    announce_copy(&h->request_for, &h->request_eta_ns, seq, len,
                  &h->server_sleeping, c->base.fd);
  svc__frame_encode_header(&f, at);
  memcpy(at + SVC__FRAME_HDR, method, method_len);
  if (len)
    memcpy(at + SVC__FRAME_HDR + method_len, req, len);
  *svc__region_info(r, slot + SVC__SLOT_REQ) = SVC__INFO(where, follow);
  uint32_t i = seq & mask;
  c->calls[i] = (shm_call){
      .seq = seq, .slot = (uint16_t)k, .live = 1, .lane = (uint8_t)(lane + 1)};
  if (lane >= 0)
    c->req_busy |= 1u << lane;
  c->slot_busy[k] = 1;
  c->nlive++;
  c->posted = seq;
  c->next_slot = follow;
  /* Armed before the call is visible: its reply must find the flag set. */
  if (c->watched)
    atomic_store(&h->client_sleeping, 1);
  /* A server found gone here is seen by recv, with the call accounted. */
  (void)svc__wake(svc__region_seq(r, slot + SVC__SLOT_REQ), seq,
                  &h->server_sleeping, c->base.fd);
  return 0;
}

/* The reply half of call seq's slot (seq in flight). */
static size_t reply_half(const shm_conn *c, uint32_t seq) {
  const svc__region *r = &c->region;
  return svc__region_slot(r, c->calls[seq & (r->slots - 1)].slot) +
         SVC__SLOT_REP;
}

static int reply_arrived(const shm_conn *c, uint32_t seq) {
  return atomic_load_explicit(svc__region_seq(&c->region, reply_half(c, seq)),
                              memory_order_acquire) == seq;
}

/* A call in flight whose reply arrived: the oldest (this library's server
 * answers in order), or with full, the first of any. A full scan reads a
 * line per call in flight, lines the server is busy writing, so it is done
 * rarely: when a look must be exact, and now and then while waiting. */
static SVC__INLINE int find_reply(shm_conn *c, uint32_t *out, int full) {
  uint32_t mask = c->region.slots - 1;
  if (c->nlive == 0)
    return 0;
  if (reply_arrived(c, c->oldest)) {
    *out = c->oldest;
    return 1;
  }
  for (uint32_t s = c->oldest + 1; full && s != c->posted + 1; s++) {
    uint32_t i = s & mask;
    if (c->calls[i].live && c->calls[i].seq == s && reply_arrived(c, s)) {
      *out = s;
      return 1;
    }
  }
  return 0;
}

#define FULL_SCAN_EVERY 256 /* checks of the oldest call between full scans */

static int any_reply(void *ctx) {
  shm_conn *c = ctx;
  uint32_t s;
  return find_reply(c, &s, ++c->scans % FULL_SCAN_EVERY == 0);
}

static int shm_request(svc__conn *base, uint32_t seq, svc__frame *f) {
  shm_conn *c = (shm_conn *)base;
  return svc__region_read_frame(&c->region, reply_half(c, seq) - SVC__SLOT_REP,
                                SVC__LANE_REQ, SVC__FRAME_REQUEST, f, NULL);
}

static int shm_recv(svc__conn *base, int64_t deadline, svc__result *res) {
  shm_conn *c = (shm_conn *)base;
  svc__region *r = &c->region;
  svc__region_hdr *h = svc__region_hdr_of(r);
  int rc = 0;
  uint32_t s = 0;
  if (c->watched) {
    atomic_store(&h->client_sleeping, 1); /* then look: see wait.c */
    rc = svc__doorbell_drain(c->base.fd);
  }
  if (!find_reply(c, &s, deadline == 0 || rc < 0)) {
    if (rc < 0)
      return rc;
    if (deadline == 0)
      return SVC_ETIMEDOUT;
    if (c->nlive == 1) { /* one call: wait on its word alone */
      _Atomic uint32_t *w = svc__region_seq(r, reply_half(c, c->oldest));
      uint32_t cur = atomic_load(w);
      if (cur != c->oldest)
        rc = svc__wait_hinted(&c->waiter, w, cur, &h->client_sleeping,
                              c->base.fd, deadline, &h->reply_for, c->oldest,
                              &h->reply_eta_ns);
    } else {
      rc = svc__wait_any(&c->waiter, any_reply, c, &h->client_sleeping,
                         c->base.fd, deadline);
    }
    if (c->watched) /* the wait disarmed it */
      atomic_store(&h->client_sleeping, 1);
    if (rc < 0)
      return rc;
    if (!find_reply(c, &s, 1))
      return SVC_EPROTO; /* a word changed to a number never posted */
  }
  svc__frame rep;
  int lane;
  rc = svc__region_read_frame(r, reply_half(c, s), SVC__LANE_REP,
                              SVC__FRAME_REPLY, &rep, &lane);
  if (rc < 0 || rep.call_id != s)
    return SVC_EPROTO;
  uint32_t i = s & (r->slots - 1);
  c->held_lane = lane < 0 ? -1 : SVC__LANE_INDEX(lane);
  shm_call *call = &c->calls[i];
  c->held_slot = call->slot;
  c->slot_busy[call->slot] = 0;
  call->live = 0;
  c->nlive--;
  while (c->oldest != c->posted + 1 &&
         !c->calls[c->oldest & (r->slots - 1)].live)
    c->oldest++;
  if (call->lane) /* the server is done with the request */
    c->req_busy &= ~(1u << (call->lane - 1));
  call->lane = 0;
  res->call_id = s;
  res->status = rep.status;
  res->payload = rep.payload;
  res->len = rep.payload_len;
  return 0;
}

static void *shm_request_space(svc__conn *base, size_t len) {
  shm_conn *c = (shm_conn *)base;
  svc__region *r = &c->region;
  c->req_lent = -1; /* the space lent before is forgotten */
  int lane = free_request_lane(c);
  if (lane < 0 || len > r->max_payload ||
      svc__region_lane_ensure(r, SVC__LANE_ID(SVC__LANE_REQ, lane),
                              SVC__PREPARED_AT + len) < 0)
    return NULL; /* the client writes into a buffer of its own instead */
  c->req_lent = lane;
  /* The caller writes len bytes now and then sends it as the next call:
   * a server whose spin budget ends meanwhile spins through the copy. */
  svc__region_hdr *h = svc__region_hdr_of(r);
  uint32_t next = c->posted + 1 ? c->posted + 1 : 1;
  if (len > SVC__SLOT_FRAME_MAX) /* a small one is written before it counts */
    announce_copy(&h->request_for, &h->request_eta_ns, next, len,
                  &h->server_sleeping, c->base.fd);
  return svc__region_lane(r, SVC__LANE_ID(SVC__LANE_REQ, lane)) +
         SVC__PREPARED_AT;
}

static void shm_release(svc__conn *base) {
  shm_conn *c = (shm_conn *)base;
  c->held_slot = -1;
  if (c->held_lane < 0)
    return;
  svc__region_hdr *h = svc__region_hdr_of(&c->region);
  atomic_fetch_and(&h->reply_lane_busy, ~(1u << c->held_lane));
  c->held_lane = -1;
  (void)svc__ring(&h->server_sleeping, c->base.fd); /* it may wait for it */
}

static int shm_taken(svc__conn *base, uint32_t seq) {
  shm_conn *c = (shm_conn *)base;
  uint32_t taken = atomic_load(&svc__region_hdr_of(&c->region)->taken_seq);
  return (int32_t)(seq - taken) <= 0; /* calls are taken in order */
}

static void shm_watch(svc__conn *base) {
  shm_conn *c = (shm_conn *)base;
  c->watched = 1;
  atomic_store(&svc__region_hdr_of(&c->region)->client_sleeping, 1);
}

static int shm_buffered(const svc__conn *base) {
  const shm_conn *c = (const shm_conn *)base;
  return c->nlive > 0 && reply_arrived(c, c->oldest);
}

/* ---- server ---- */

static int shm_listen(const svc__url *u, char *why, size_t why_len,
                      svc__listener **out) {
  (void)why;
  (void)why_len;
  char path[SVC__PATH_MAX];
  int fd, rc = svc__sock_rendezvous_path(u->name, 1, path, sizeof path);
  if (rc < 0 || (rc = svc__sock_unix_listen(path, &fd)) < 0)
    return rc;
  svc__listener *l = svc__calloc(1, sizeof *l);
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

static int send_ack(int fd, int status, size_t max_payload) {
  ack_msg a = {HELLO_MAGIC, status, max_payload};
  ssize_t n = svc__send(fd, &a, sizeof a, MSG_NOSIGNAL | MSG_DONTWAIT);
  return n == (ssize_t)sizeof a ? 0 : SVC_EPEERGONE;
}

static int shm_accept(svc__listener *l, const svc__conn_opts *o,
                      svc__conn **out) {
  int fd, rc = svc__sock_accept(l->fd, !o->allow_any_uid, &fd);
  if (rc == SVC_EPERM) {
    (void)send_ack(fd, SVC_EPERM, 0); /* closed either way */
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
  ssize_t n = svc__recvmsg(c->base.fd, &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
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
    c->seq = 0; /* the client's first call is number 1, in slot 0 */
    c->next = 0;
  }
  int sent = send_ack(c->base.fd, rc, rc == 0 ? c->region.max_payload : 0);
  /* An ack that could not go drops the connection, so the client, which
   * waits for it, hears the close at once. */
  return rc ? rc : sent;
}

/* Takes a reply lane the client does not read a reply from, waiting
 * while it reads from all of them (it lets go of one at its next
 * receive). Only the server sets bits and only the client clears them. */
static int take_reply_lane(shm_conn *c) {
  svc__region_hdr *h = svc__region_hdr_of(&c->region);
  uint32_t all = (1u << c->region.lanes) - 1;
  for (;;) {
    uint32_t busy = atomic_load(&h->reply_lane_busy);
    if ((busy & all) != all) {
      int i = __builtin_ctz(~busy & all);
      atomic_fetch_or(&h->reply_lane_busy, 1u << i);
      c->reply_lane = i;
      return 0;
    }
    int rc = svc__wait(&c->waiter, &h->reply_lane_busy, busy,
                       &h->server_sleeping, c->base.fd, INT64_MAX);
    if (rc < 0)
      return rc;
  }
}

static void *shm_reply_alloc(svc_reply *rep, size_t len) {
  shm_conn *c = rep->conn;
  svc__region *r = &c->region;
  if (len > r->max_payload) {
    rep->error = SVC_ETOOBIG;
    return NULL;
  }
  size_t size = SVC__FRAME_HDR + len;
  if (size <= SVC__SLOT_FRAME_MAX) {
    c->reply_where = SVC__WHERE_INLINE;
    rep->error = 0;
    rep->len = len;
    return r->base + c->reply_off + SVC__SLOT_HDR + SVC__FRAME_HDR;
  }
  int rc = c->reply_lane >= 0 ? 0 : take_reply_lane(c);
  if (rc == 0)
    rc = svc__region_lane_ensure(r, SVC__LANE_ID(SVC__LANE_REP, c->reply_lane),
                                 size);
  if (rc == 0) { /* the client spins while the handler writes it */
    svc__region_hdr *h = svc__region_hdr_of(r);
    announce_copy(&h->reply_for, &h->reply_eta_ns, c->seq, len,
                  &h->client_sleeping, c->base.fd);
  }
  if (rc < 0) {
    rep->error = rc == SVC_ETOOBIG ? SVC_ETOOBIG : SVC_ENOMEM;
    return NULL;
  }
  c->reply_where = SVC__WHERE_LANE_N_AT(c->reply_lane, 0);
  rep->error = 0;
  rep->len = len;
  return svc__region_lane(r, SVC__LANE_ID(SVC__LANE_REP, c->reply_lane)) +
         SVC__FRAME_HDR;
}

/* Takes call seq from its slot, runs it and posts the reply. */
static int handle_request(shm_conn *c, uint32_t seq, const svc__serve_ops *ops,
                          void *ctx) {
  svc__region *r = &c->region;
  svc__region_hdr *h = svc__region_hdr_of(r);
  size_t slot = svc__region_slot(r, c->next);
  atomic_store_explicit(&h->taken_seq, seq, memory_order_relaxed);
  /* Where the call after this one will be: read once, taken modulo the
   * ring, so any value is a slot. */
  c->next = SVC__INFO_NEXT(
      *(volatile uint32_t *)svc__region_info(r, slot + SVC__SLOT_REQ));
  svc__frame f;
  int rc = svc__region_read_frame(r, slot + SVC__SLOT_REQ, SVC__LANE_REQ,
                                  SVC__FRAME_REQUEST, &f, NULL);
  if (rc < 0 || f.call_id != seq)
    return SVC_EPROTO;
  c->reply_off = slot + SVC__SLOT_REP;
  c->reply_where = SVC__WHERE_INLINE;
  c->reply_lane = -1;
  svc_reply rep = {.alloc = shm_reply_alloc, .conn = c};
  int status = svc__run_request(ops, ctx, &f, &rep);
  uint32_t where = status == 0 ? c->reply_where : SVC__WHERE_INLINE;
  if (c->reply_lane >= 0 && where == SVC__WHERE_INLINE) /* taken, unused */
    atomic_fetch_and(&h->reply_lane_busy, ~(1u << c->reply_lane));
  svc__frame out = {.type = SVC__FRAME_REPLY,
                    .call_id = seq,
                    .status = status,
                    .payload_len = status == 0 ? (uint32_t)rep.len : 0};
  uint8_t *at =
      where != SVC__WHERE_INLINE
          ? svc__region_lane(r, SVC__LANE_ID(SVC__LANE_REP, c->reply_lane))
          : r->base + c->reply_off + SVC__SLOT_HDR;
  svc__frame_encode_header(&out, at);
  *svc__region_info(r, c->reply_off) = SVC__INFO(where, 0);
  rc = svc__wake(svc__region_seq(r, c->reply_off), seq, &h->client_sleeping,
                 c->base.fd);
  svc__request_posted(ops, ctx);
  return rc;
}

/* ops->stay is not asked: shm spins for its next request instead (wait.c). */
static int shm_serve(svc__conn *base, const svc__serve_ops *ops, void *ctx) {
  shm_conn *c = (shm_conn *)base;
  if (!c->ready) {
    int rc = handshake(c);
    if (rc != 0)
      return rc > 0 ? 0 : rc;
  }
  svc__region *r = &c->region;
  svc__region_hdr *h = svc__region_hdr_of(r);
  int rc = svc__doorbell_drain(c->base.fd);
  if (rc < 0)
    return rc;
  atomic_store(&h->server_sleeping, 0);
  if (c->idle_since)
    svc__waiter_learn(&c->waiter, svc__now_ns() - c->idle_since);
  /* Calls are taken in order: the next is in the slot the last one
   * named, and posted when that slot's word holds its number. */
  for (;;) {
    uint32_t next = c->seq + 1 ? c->seq + 1 : 1; /* 0 is never a call */
    _Atomic uint32_t *req_seq =
        svc__region_seq(r, svc__region_slot(r, c->next) + SVC__SLOT_REQ);
    uint32_t cur = atomic_load_explicit(req_seq, memory_order_acquire);
    if (cur == next) {
      c->seq = next;
      if ((rc = handle_request(c, next, ops, ctx)) < 0)
        return rc;
      continue;
    }
    if (c->stopping && atomic_load_explicit(c->stopping, memory_order_relaxed))
      return 0;
    if (svc__spin(&c->waiter, req_seq, cur) ||
        svc__spin_while_busy(req_seq, cur, &h->request_for, next,
                             &h->request_eta_ns))
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
    .send = shm_send,
    .recv = shm_recv,
    .release = shm_release,
    .taken = shm_taken,
    .request = shm_request,
    .request_space = shm_request_space,
    .watch = shm_watch,
    .buffered = shm_buffered,
    .listen = shm_listen,
    .accept = shm_accept,
    .serve = shm_serve,
    .goaway = shm_goaway,
    .close = shm_close,
    .unlisten = shm_unlisten,
};

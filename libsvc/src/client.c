/* client.c — svc_client: a URL, its transport, at most one live connection
 * (opened again when the server closed it) and the calls in flight on it.
 * This is the one place where a call finishes, whatever ends it: its reply,
 * its deadline, or the connection breaking. svc_call is a send plus a
 * receive. Knows nothing of how a transport moves bytes. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "internal.h"
#include "region.h"
#include "sys.h"
#include "transport.h"

#define DEFAULT_WINDOW 64
#define MAX_WINDOW 4096

enum call_state { CALL_FREE, CALL_LIVE, CALL_ABANDONED /* timed out */ };

/* A call in flight on the connection, at index seq % slots. */
typedef struct call_slot {
  uint64_t id;
  int64_t deadline; /* INT64_MAX: none */
  uint32_t seq;
  uint8_t state;
  uint8_t resent; /* sent again after a connection broke */
} call_slot;

/* A call that finished without a reply to hand out (timed out, or its
 * connection broke), waiting to be received. */
typedef struct finished {
  uint64_t id;
  int rc;
} finished;

/* A call the server never took, to be sent again on a new connection. */
typedef struct resend {
  uint64_t id;
  int64_t deadline;
  char method[SVC_METHOD_MAX + 1];
  uint8_t *req; /* owned */
  size_t len;
} resend;

struct svc_client {
  svc__url url;
  const svc__transport *tp;
  svc__conn *conn;      /* NULL between a lost connection and the next call */
  svc__conn *parked[2]; /* dropped connections still lent out: the reply
                           handed out, or the space of a request written
                           in place, lies in one */
  svc__conn_opts opts;
  int timeout_ms;   /* 0: none */
  int handler_code; /* from the last SVC_EHANDLER */
  int window;       /* most calls in flight */
  uint32_t slots;   /* the connection's ring: a power of two >= window */
  call_slot *calls; /* [slots] */
  uint32_t next_seq;
  int inflight;   /* live + abandoned calls on conn */
  int live;       /* calls on conn nobody has been told the end of */
  int ndeadlines; /* live calls with a deadline */
  uint64_t last_id;
  finished *done; /* FIFO of finished calls: [done_head, +ndone) */
  int ndone, done_head, done_cap;
  svc__conn *held_conn; /* the reply handed out lies in it; NULL: none */
  void *prep;           /* svc_request_alloc's space, or NULL */
  size_t prep_len;      /* ... its size */
  svc__conn *prep_conn; /* ... the connection it lies in (NULL: prep_buf) */
  uint8_t *prep_buf;    /* requests written in place on no connection */
  size_t prep_buf_cap;
  resend *resends; /* [nresends] calls to send again */
  int nresends;
  void *tp_cache;   /* the transport's state across connections (tls) */
  char tp_why[256]; /* the transport's reason for a failure, this call */
  char why[256];    /* svc_client_last_error_text */
  /* event-loop mode, made by svc_client_fd */
  int epfd, evfd, tfd;
  int ev_on;        /* evfd holds a count */
  int64_t timer_at; /* what tfd is armed for; 0: disarmed */
};

/* ---- event-loop fd ---- */

static void watch_conn(svc_client *c, int op) {
  if (c->epfd < 0 || !c->conn)
    return;
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = c->conn->fd};
  (void)svc__epoll_ctl(c->epfd, op, c->conn->fd, &ev);
}

static int64_t earliest_deadline(const svc_client *c) {
  int64_t at = INT64_MAX;
  for (uint32_t i = 0; c->ndeadlines && i < c->slots; i++)
    if (c->calls[i].state == CALL_LIVE && c->calls[i].deadline < at)
      at = c->calls[i].deadline;
  return at;
}

/* Makes the fd tell the truth after every call into the client: evfd
 * counts while something is ready that the connection's fd would not show,
 * and tfd fires at the earliest deadline. */
static void sync_fd(svc_client *c) {
  if (c->epfd < 0)
    return;
  int want = c->ndone > 0 || (c->conn && c->tp->buffered(c->conn));
  if (want != c->ev_on) {
    uint64_t v = 1;
    ssize_t n =
        want ? write(c->evfd, &v, sizeof v) : read(c->evfd, &v, sizeof v);
    (void)n;
    c->ev_on = want;
  }
  int64_t at = earliest_deadline(c);
  at = at == INT64_MAX ? 0 : at;
  if (at != c->timer_at || (at && svc__now_ns() >= at)) {
    struct itimerspec ts = {{0, 0}, {at / 1000000000, at % 1000000000}};
    (void)timerfd_settime(c->tfd, TFD_TIMER_ABSTIME, &ts, NULL);
    c->timer_at = at;
  }
}

int svc_client_fd(svc_client *c) {
  if (!c)
    return SVC_EINVAL;
  if (c->epfd >= 0)
    return c->epfd;
  int ep = svc__epoll_create1(EPOLL_CLOEXEC);
  int ev = svc__eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  int tf = svc__timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
  struct epoll_event e1 = {.events = EPOLLIN, .data.fd = ev};
  struct epoll_event e2 = {.events = EPOLLIN, .data.fd = tf};
  if (ep < 0 || ev < 0 || tf < 0 ||
      svc__epoll_ctl(ep, EPOLL_CTL_ADD, ev, &e1) ||
      svc__epoll_ctl(ep, EPOLL_CTL_ADD, tf, &e2)) {
    int rc = svc__from_errno(errno);
    if (ep >= 0)
      close(ep);
    if (ev >= 0)
      close(ev);
    if (tf >= 0)
      close(tf);
    return rc;
  }
  c->epfd = ep;
  c->evfd = ev;
  c->tfd = tf;
  if (c->conn) {
    c->tp->watch(c->conn);
    watch_conn(c, EPOLL_CTL_ADD);
  }
  sync_fd(c);
  return c->epfd;
}

/* ---- connection ---- */

SVC__COLD static int client_dial(svc_client *c, int64_t deadline) {
  uint32_t slots = svc__region_slots_for(c->window);
  if (slots != c->slots || !c->calls) {
    call_slot *p = svc__calloc(slots, sizeof *p);
    if (!p)
      return SVC_ENOMEM;
    free(c->calls);
    c->calls = p;
    c->slots = slots;
  }
  memset(c->calls, 0, slots * sizeof *c->calls);
  c->next_seq = 1;
  svc__dial_opts d = {.slots = slots,
                      .cache = &c->tp_cache,
                      .why = c->tp_why,
                      .why_len = sizeof c->tp_why};
  c->tp_why[0] = '\0';
  int rc = c->tp->dial(&c->url, &c->opts, &d, deadline, &c->conn);
  if (rc == 0 && c->epfd >= 0) {
    c->tp->watch(c->conn);
    watch_conn(c, EPOLL_CTL_ADD);
  }
  return rc;
}

/* A dropped connection stays open while a reply or a request written in
 * place lies in it; this closes it once neither does. */
static void close_if_unused(svc_client *c, svc__conn *x) {
  for (int i = 0; i < 2; i++)
    if (c->parked[i] == x && x != c->held_conn && x != c->prep_conn) {
      x->tp->close(x);
      c->parked[i] = NULL;
    }
}

/* Lets go of the reply handed out, if any. */
static void release_held(svc_client *c) {
  svc__conn *x = c->held_conn;
  if (!x)
    return;
  c->held_conn = NULL;
  if (x == c->conn)
    c->tp->release(x);
  else
    close_if_unused(c, x);
}

/* Forgets the space of a request written in place. */
static void drop_prepared(svc_client *c) {
  svc__conn *x = c->prep_conn;
  c->prep = NULL;
  c->prep_conn = NULL;
  if (x && x != c->conn)
    close_if_unused(c, x);
}

/* Closes the connection; every call on it must have been accounted for. A
 * reply or prepared request still lent out keeps it open (parked). */
static void client_drop(svc_client *c) {
  svc__conn *x = c->conn;
  if (!x)
    return;
  watch_conn(c, EPOLL_CTL_DEL);
  c->conn = NULL;
  c->inflight = c->live = c->ndeadlines = 0;
  if (x == c->held_conn || x == c->prep_conn)
    c->parked[c->parked[0] ? 1 : 0] = x; /* at most two reasons, two slots */
  else
    x->tp->close(x);
}

/* Makes room for n finished calls in the queue. */
SVC__COLD static int grow_done(svc_client *c, int n) {
  int cap = c->done_cap ? c->done_cap : 16;
  while (cap < n)
    cap *= 2;
  finished *p = svc__malloc((size_t)cap * sizeof *p);
  if (!p)
    return SVC_ENOMEM;
  for (int i = 0; c->done_cap && i < c->ndone; i++) /* (none queued: 0) */
    p[i] = c->done[(c->done_head + i) % c->done_cap];
  free(c->done);
  c->done = p;
  c->done_cap = cap;
  c->done_head = 0;
  return 0;
}

static int reserve_done(svc_client *c, int n) {
  return c->done_cap >= n ? 0 : grow_done(c, n);
}

/* Queues a finished call; room was reserved when it started. */
static void push_done(svc_client *c, uint64_t id, int rc) {
  c->done[(c->done_head + c->ndone++) % c->done_cap] = (finished){id, rc};
}

/* Keeps a copy of a call the server never took, to send it again. */
static int save_resend(svc_client *c, const call_slot *cs) {
  svc__frame f;
  if (c->tp->request(c->conn, cs->seq, &f) < 0)
    return SVC_ESTATE;
  resend *p = svc__realloc(c->resends, (size_t)(c->nresends + 1) * sizeof *p);
  if (!p)
    return SVC_ENOMEM;
  c->resends = p;
  resend *r = &p[c->nresends];
  r->req = svc__malloc(f.payload_len ? f.payload_len : 1);
  if (!r->req)
    return SVC_ENOMEM;
  memcpy(r->method, f.method, f.method_len);
  r->method[f.method_len] = '\0';
  memcpy(r->req, f.payload, f.payload_len);
  r->len = f.payload_len;
  r->id = cs->id;
  r->deadline = cs->deadline;
  c->nresends++;
  return 0;
}

/* The connection broke: every live call finishes with rc, except that
 * calls the server provably never took are sent again (once) on a new
 * connection; then it is closed. */
SVC__COLD static void fail_all(svc_client *c, int rc) {
  int may_resend = rc == SVC_EPEERGONE && c->nresends == 0;
  for (uint32_t i = 0; i < c->slots; i++) {
    call_slot *cs = &c->calls[i];
    if (cs->state == CALL_LIVE) {
      int safe = rc == SVC_EPEERGONE && !c->tp->taken(c->conn, cs->seq);
      if (!(safe && may_resend && !cs->resent && save_resend(c, cs) == 0))
        push_done(c, cs->id, rc);
    }
    cs->state = CALL_FREE;
  }
  client_drop(c);
}

/* Records call id as sent in the next slot (cs) of the connection. */
static void call_sent(svc_client *c, call_slot *cs, uint64_t id,
                      int64_t deadline, int resent) {
  *cs = (call_slot){id, deadline, c->next_seq, CALL_LIVE, (uint8_t)resent};
  if (++c->next_seq == 0) /* 0 is never a call's number */
    c->next_seq = 1;
  c->inflight++;
  c->live++;
  c->ndeadlines += deadline != INT64_MAX;
}

/* Sends the saved calls again, on a new connection, under their ids. */
SVC__COLD static void resend_all(svc_client *c) {
  int64_t deadline = INT64_MAX;
  for (int i = 0; i < c->nresends; i++)
    if (c->resends[i].deadline < deadline)
      deadline = c->resends[i].deadline;
  int rc = c->conn ? 0 : client_dial(c, deadline);
  for (int i = 0; i < c->nresends; i++) {
    resend *r = &c->resends[i];
    call_slot *cs = NULL;
    int src = rc;
    if (src == 0 && c->conn) {
      cs = &c->calls[c->next_seq & (c->slots - 1)];
      src = cs->state != CALL_FREE ? SVC_EPEERGONE : 0;
    } else if (src == 0) {
      src = SVC_EPEERGONE;
    }
    if (src == 0)
      src = c->tp->send(c->conn, c->next_seq, r->method, strlen(r->method),
                        r->req, r->len, c->inflight ? 0 : SVC__SEND_IDLE,
                        deadline);
    if (src == 0)
      call_sent(c, cs, r->id, r->deadline, 1);
    else
      push_done(c, r->id, SVC_EPEERGONE); /* as its connection did */
    free(r->req);
  }
  c->nresends = 0;
}

static void slot_free(svc_client *c, call_slot *cs) {
  if (cs->state == CALL_LIVE) {
    c->live--;
    if (cs->deadline != INT64_MAX)
      c->ndeadlines--;
  }
  cs->state = CALL_FREE;
  c->inflight--;
}

/* A connection left with nothing in flight but timed-out calls is closed,
 * so that the next call does not queue behind them. */
static void close_if_only_abandoned(svc_client *c) {
  if (c->live > 0 || c->inflight == 0)
    return;
  for (uint32_t i = 0; i < c->slots; i++)
    c->calls[i].state = CALL_FREE;
  client_drop(c);
}

/* Calls past their deadline finish with SVC_ETIMEDOUT; their late replies
 * will be dropped. */
SVC__COLD static void expire(svc_client *c, int64_t now) {
  for (uint32_t i = 0; i < c->slots && c->ndeadlines; i++) {
    call_slot *cs = &c->calls[i];
    if (cs->state != CALL_LIVE || cs->deadline > now)
      continue;
    push_done(c, cs->id, SVC_ETIMEDOUT);
    cs->state = CALL_ABANDONED;
    c->live--;
    c->ndeadlines--;
  }
  close_if_only_abandoned(c);
}

/* ---- why calls failed ---- */

/* Entering a call that may fail: a reason the transport gives is for it. */
static void why_begin(svc_client *c) {
  if (c)
    c->tp_why[0] = '\0';
}

/* Leaving it with rc: a failure leaves a sentence for
 * svc_client_last_error_text, the transport's when it gave one. */
static int why_end(svc_client *c, int rc) {
  if (c && rc < 0 && rc != SVC_EAGAIN)
    snprintf(c->why, sizeof c->why, "%s",
             c->tp_why[0] ? c->tp_why : svc_strerror(rc));
  return rc;
}

const char *svc_client_last_error_text(const svc_client *c) {
  return c ? c->why : "";
}

/* ---- calls ---- */

static void client_free(svc_client *c);

int svc_client_open(const char *url, svc_client **out) {
  return svc_client_open_ex(url, out, NULL, 0);
}

int svc_client_open_ex(const char *url, svc_client **out, char *err,
                       size_t errlen) {
  if (err && errlen)
    err[0] = '\0';
  if (!url || !out || (!err && errlen)) {
    if (err && errlen)
      snprintf(err, errlen, "%s", svc_strerror(SVC_EINVAL));
    return SVC_EINVAL;
  }
  *out = NULL;
  svc_client *c = svc__calloc(1, sizeof *c);
  if (!c)
    return SVC_ENOMEM;
  c->epfd = c->evfd = c->tfd = -1;
  c->window = DEFAULT_WINDOW;
  int rc = svc__url_parse(url, &c->url);
  if (rc == 0 && !(c->tp = svc__transport_find(c->url.scheme)))
    rc = SVC_EINVAL;
  c->opts.max_payload = SVC_DEFAULT_MAX_MSG;
  c->opts.wait = SVC_WAIT_ADAPTIVE;
  if (rc == 0)
    rc = client_dial(c, INT64_MAX);
  if (rc < 0) {
    if (err && errlen)
      snprintf(err, errlen, "%s", c->tp_why[0] ? c->tp_why : svc_strerror(rc));
    client_free(c);
    return rc;
  }
  *out = c;
  return 0;
}

/* Maps a reply status to what the caller receives. */
static int status_result(svc_client *c, int32_t status) {
  if (status > 0) {
    c->handler_code = status;
    return SVC_EHANDLER;
  }
  if (status < 0 && strcmp(svc_err_name(status), "SVC_EUNKNOWN") == 0)
    return SVC_EPROTO;
  return status;
}

static int check_call_args(const svc_client *c, const char *method,
                           const void *req, size_t len, size_t *mlen) {
  if (!c || !method || (!req && len))
    return SVC_EINVAL;
  *mlen = strlen(method);
  if (*mlen == 0 || *mlen > SVC_METHOD_MAX)
    return SVC_EINVAL;
  return len > c->opts.max_payload ? SVC_ETOOBIG : 0;
}

/* Sends a call, reconnecting first when the connection was found closed
 * with nothing in flight. */
static SVC__INLINE int start_call(svc_client *c, const char *method,
                                  size_t mlen, const void *req, size_t len,
                                  int flags, uint64_t *id) {
  if (c->inflight >= c->window)
    return SVC_EAGAIN;
  /* Room for every call in flight to finish unreceived, so that no
   * completion is ever lost to a failed allocation. */
  if (reserve_done(c, c->ndone + c->inflight + 1) < 0)
    return SVC_ENOMEM;
  int64_t deadline = svc__deadline(c->timeout_ms);
  int rc = 0;
  for (int attempt = 0; attempt < 2; attempt++) {
    if (!c->conn && (rc = client_dial(c, deadline)) < 0)
      return rc;
    call_slot *cs = &c->calls[c->next_seq & (c->slots - 1)];
    if (cs->state != CALL_FREE)
      return SVC_EAGAIN; /* a slow call holds the slot a full ring later */
    /* A request written in place goes as it lies only on the connection
     * whose space it is; elsewhere it is copied like any other. */
    int f = flags & ~SVC__SEND_PREPARED;
    if ((flags & SVC__SEND_PREPARED) && c->prep_conn == c->conn)
      f |= SVC__SEND_PREPARED;
    rc = c->tp->send(c->conn, c->next_seq, method, mlen, req ? req : "", len,
                     f | (c->inflight ? 0 : SVC__SEND_IDLE), deadline);
    if (rc == 0) {
      call_sent(c, cs, ++c->last_id, deadline, 0);
      *id = cs->id;
      return 0;
    }
    if (rc == SVC_EAGAIN || rc == SVC_ETOOBIG)
      return rc;
    if (rc == SVC_EPEERGONE && c->inflight > 0)
      return SVC_EAGAIN; /* closing: what is in flight must finish first */
    if (c->inflight == 0) {
      client_drop(c);
      if (rc == SVC_EPEERGONE)
        continue; /* closed between calls: the server never saw this one */
      return rc;
    }
    fail_all(c, SVC_EPEERGONE); /* the stream broke under a request */
    /* It may have left: the caller learns that the server is gone, not a
     * system error (the soak saw SVC_ESYS here). */
    return rc == SVC_ESYS ? SVC_EPEERGONE : rc;
  }
  return rc;
}

/* The next call that finished, its reply handed out when it has one.
 * deadline: 0 look once, INT64_MAX none, else absolute. */
static SVC__INLINE int next_finished(svc_client *c, int64_t deadline,
                                     uint64_t *id, const void **resp,
                                     size_t *resp_len) {
  for (;;) {
    if (c->nresends)
      resend_all(c);
    if (c->ndone) {
      finished f = c->done[c->done_head];
      c->done_head = (c->done_head + 1) % c->done_cap;
      c->ndone--;
      *id = f.id;
      return f.rc;
    }
    if (c->inflight == 0)
      return SVC_ESTATE;
    int64_t until = deadline;
    if (c->ndeadlines && until != 0) {
      int64_t first = earliest_deadline(c);
      until = first < until ? first : until;
    }
    svc__result res;
    int rc = c->tp->recv(c->conn, until, &res);
    if (rc == 0) {
      call_slot *cs = &c->calls[res.call_id & (c->slots - 1)];
      if (cs->state == CALL_FREE || cs->seq != res.call_id) {
        c->tp->release(c->conn);
        fail_all(c, SVC_EPROTO); /* a reply to a call never made */
        continue;
      }
      int was_live = cs->state == CALL_LIVE;
      uint64_t call_id = cs->id;
      slot_free(c, cs);
      if (!was_live) { /* its caller was told it timed out */
        c->tp->release(c->conn);
        close_if_only_abandoned(c);
        continue;
      }
      c->held_conn = c->conn;
      *id = call_id;
      if (res.status != 0)
        return status_result(c, res.status);
      *resp = res.payload;
      *resp_len = res.len;
      return 0;
    }
    if (rc != SVC_ETIMEDOUT) {
      fail_all(c, rc);
      continue;
    }
    int64_t now = c->ndeadlines || (deadline && deadline != INT64_MAX)
                      ? svc__now_ns()
                      : 0;
    if (c->ndeadlines)
      expire(c, now);
    if (c->ndone)
      continue;
    if (deadline == 0 || (deadline != INT64_MAX && now >= deadline))
      return SVC_EAGAIN;
  }
}

static int send_checked(svc_client *c, const char *method, const void *req,
                        size_t len, int flags, uint64_t *id) {
  size_t mlen;
  int rc = check_call_args(c, method, req, len, &mlen);
  if (rc == 0 && !id)
    rc = SVC_EINVAL;
  if (id)
    *id = 0;
  if (rc < 0)
    return rc;
  rc = start_call(c, method, mlen, req, len, flags, id);
  sync_fd(c);
  return rc;
}

int svc_call_send(svc_client *c, const char *method, const void *req,
                  size_t len, uint64_t *id) {
  why_begin(c);
  if (c)
    drop_prepared(c); /* its space may be reused for this request */
  return why_end(c, send_checked(c, method, req, len, 0, id));
}

int svc_call_recv(svc_client *c, int timeout_ms, uint64_t *id,
                  const void **resp, size_t *resp_len) {
  if (!c || !id || !resp || !resp_len || timeout_ms < -1)
    return SVC_EINVAL;
  *id = 0;
  *resp = NULL;
  *resp_len = 0;
  why_begin(c);
  release_held(c);
  c->handler_code = 0;
  int64_t deadline = timeout_ms < 0    ? INT64_MAX
                     : timeout_ms == 0 ? 0
                                       : svc__deadline(timeout_ms);
  /* *id stays 0 unless a call finished: its own outcome may be any code,
   * SVC_ESTATE and SVC_EAGAIN included (a handler may return them). */
  int rc = next_finished(c, deadline, id, resp, resp_len);
  sync_fd(c);
  return *id ? why_end(c, rc) : rc; /* no call finished: nothing failed */
}

/* A send and a receive of that call. The server never took the call when
 * it died before reading it: such a call is sent again on a new
 * connection (next_finished), so none ever runs twice. */
static int call_checked(svc_client *c, const char *method, const void *req,
                        size_t len, int flags, const void **resp,
                        size_t *resp_len) {
  size_t mlen;
  int rc = check_call_args(c, method, req, len, &mlen);
  if (rc == 0 && (!resp || !resp_len))
    rc = SVC_EINVAL;
  if (rc < 0)
    return rc;
  if (c->live || c->ndone)
    return SVC_ESTATE; /* receive the calls sent with svc_call_send first */
  release_held(c);
  *resp = NULL;
  *resp_len = 0;
  c->handler_code = 0;
  uint64_t id, got;
  rc = start_call(c, method, mlen, req, len, flags | SVC__SEND_ALONE, &id);
  if (flags & SVC__SEND_PREPARED && rc == 0)
    drop_prepared(c); /* sent: its space is the request in flight now */
  if (rc == 0)
    rc = next_finished(c, INT64_MAX, &got, resp, resp_len);
  sync_fd(c);
  return rc;
}

int svc_call(svc_client *c, const char *method, const void *req, size_t len,
             const void **resp, size_t *resp_len) {
  why_begin(c);
  if (c)
    drop_prepared(c); /* its space may be reused for this request */
  return why_end(c, call_checked(c, method, req, len, 0, resp, resp_len));
}

/* ---- requests written in place ---- */

void *svc_request_alloc(svc_client *c, size_t len) {
  if (!c || len > c->opts.max_payload)
    return NULL;
  drop_prepared(c);
  if (!c->conn && c->inflight == 0)
    (void)client_dial(c, svc__deadline(c->timeout_ms)); /* else: a buffer */
  void *p = c->conn ? c->tp->request_space(c->conn, len) : NULL;
  if (p) {
    c->prep_conn = c->conn;
  } else { /* no space in place: the client's buffer, sent from there */
    size_t want = len ? len : 1;
    if (want > c->prep_buf_cap) {
      uint8_t *b = svc__realloc(c->prep_buf, want);
      if (!b)
        return NULL;
      c->prep_buf = b;
      c->prep_buf_cap = want;
    }
    p = c->prep_buf;
  }
  c->prep = p;
  c->prep_len = len;
  return p;
}

int svc_call_prepared(svc_client *c, const char *method, size_t len,
                      const void **resp, size_t *resp_len) {
  if (!c || !c->prep || len > c->prep_len)
    return SVC_EINVAL;
  why_begin(c);
  return why_end(c, call_checked(c, method, c->prep, len, SVC__SEND_PREPARED,
                                 resp, resp_len));
}

int svc_call_send_prepared(svc_client *c, const char *method, size_t len,
                           uint64_t *id) {
  if (id)
    *id = 0;
  if (!c || !c->prep || len > c->prep_len)
    return SVC_EINVAL;
  why_begin(c);
  int rc = send_checked(c, method, c->prep, len, SVC__SEND_PREPARED, id);
  if (rc == 0)
    drop_prepared(c);
  return why_end(c, rc);
}

/* ---- settings ---- */

int svc_client_set_timeout(svc_client *c, int ms) {
  if (!c || ms < 0)
    return SVC_EINVAL;
  c->timeout_ms = ms;
  return 0;
}

/* Settings the connection is made with: the next call reconnects. */
static int redial_later(svc_client *c) {
  if (c->inflight)
    return SVC_ESTATE;
  client_drop(c);
  return 0;
}

int svc_client_set_wait(svc_client *c, svc_wait_policy p) {
  if (!c || p < SVC_WAIT_ADAPTIVE || p > SVC_WAIT_BLOCK)
    return SVC_EINVAL;
  if (c->inflight)
    return SVC_ESTATE;
  c->opts.wait = p;
  return redial_later(c);
}

int svc_client_set_max_msg(svc_client *c, size_t bytes) {
  if (!c || bytes == 0 || bytes > SVC__MAX_MSG_LIMIT)
    return SVC_EINVAL;
  if (c->inflight)
    return SVC_ESTATE;
  c->opts.max_payload = bytes;
  return redial_later(c);
}

int svc_client_set_window(svc_client *c, int n) {
  if (!c || n < 1 || n > MAX_WINDOW)
    return SVC_EINVAL;
  if (c->inflight)
    return SVC_ESTATE;
  int same = svc__region_slots_for(n) == c->slots;
  c->window = n;
  return same ? 0 : redial_later(c);
}

int svc_client_handler_code(const svc_client *c) {
  return c ? c->handler_code : 0;
}

void svc_client_close(svc_client *c) {
  if (c)
    client_free(c);
}

static void client_free(svc_client *c) {
  release_held(c);
  drop_prepared(c);
  for (uint32_t i = 0; i < c->slots; i++)
    c->calls[i].state = CALL_FREE;
  client_drop(c);
  for (int i = 0; i < 2; i++)
    if (c->parked[i])
      c->parked[i]->tp->close(c->parked[i]);
  free(c->prep_buf);
  if (c->epfd >= 0) {
    close(c->epfd);
    close(c->evfd);
    close(c->tfd);
  }
  for (int i = 0; i < c->nresends; i++)
    free(c->resends[i].req);
  free(c->resends);
  if (c->tp_cache && c->tp->cache_free)
    c->tp->cache_free(c->tp_cache);
  free(c->calls);
  free(c->done);
  free(c);
}

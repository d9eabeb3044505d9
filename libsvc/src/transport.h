/* transport.h — the contract every transport implements (shm, and stream for
 * unix + tcp, with tls on top of it). client.c and server.c talk only to this
 * table; the registry in transport.c is the only code that maps a URL scheme to
 * a transport. */
#ifndef SVC_TRANSPORT_H
#define SVC_TRANSPORT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "frame.h"
#include "svc.h"
#include "url.h"

typedef struct svc__transport svc__transport;

/* Settings a connection is made with. */
typedef struct svc__conn_opts {
  size_t max_payload;          /* largest request or reply payload */
  svc_wait_policy wait;        /* shm only */
  int allow_any_uid;           /* server: accept peers of another uid */
  _Atomic int *spinners;       /* server: shared count of spinning threads */
  int max_spinners;            /* server: spin only while fewer spin */
  const _Atomic int *stopping; /* server: set when serving must end */
} svc__conn_opts;

/* Base of every transport's connection and listener. fd is what the server
 * polls: readable means "needs attention" (request, doorbell or hang-up). */
typedef struct svc__conn {
  const svc__transport *tp;
  int fd;
} svc__conn;

typedef struct svc__listener {
  const svc__transport *tp;
  int fd;         /* listening socket, nonblocking */
  char path[108]; /* socket file to unlink on close, or "" */
} svc__listener;

/* A reply under construction. The transport provides alloc; svc_reply_alloc
 * and svc_reply_set go through it. */
struct svc_reply {
  void *(*alloc)(svc_reply *r, size_t len); /* NULL: too big / no memory */
  void *conn;                               /* the transport's connection */
  size_t len; /* payload length allocated so far */
  int error;  /* SVC_ETOOBIG / SVC_ENOMEM from a failed alloc */
};

/* The server's method table, as a transport sees it. Returns the reply
 * status: 0, a negative SVC_E* code or a positive handler code. method is
 * the name's method_len bytes as the peer sent them, unchecked and maybe
 * in shared memory (the table compares them, copying them out only to
 * look up a name it has not cached); req may live in shared memory too. */
typedef int (*svc__dispatch_fn)(void *ctx, const uint8_t *method,
                                size_t method_len, const void *req, size_t len,
                                svc_reply *reply);

/* Asked by serve when c has no request ready, or when one connection has
 * had a thread long enough: 1 lets the thread stay with c (wait in the
 * kernel for its next request, or go on with its backlog), because
 * another thread polls every other connection; 0 hands c back to the
 * poll. ctx is the dispatch ctx. */
typedef int (*svc__stay_fn)(void *ctx);

/* What serve calls back. dispatch runs a call; posted (NULL: none), right
 * after the reply of the call just dispatched was posted (shm) or queued
 * (stream), or failed to be, does the server's bookkeeping of that call
 * (its statistics) where the caller no longer waits for it; stay as
 * above (NULL: never). */
typedef struct svc__serve_ops {
  svc__dispatch_fn dispatch;
  void (*posted)(void *ctx);
  svc__stay_fn stay;
} svc__serve_ops;

/* A reply a client received; payload valid until release. */
typedef struct svc__result {
  uint32_t call_id; /* the sequence number the call was sent with */
  int32_t status;   /* reply status (see svc__dispatch_fn) */
  const void *payload;
  size_t len;
} svc__result;

enum svc__send_flags {
  SVC__SEND_IDLE = 1,    /* no call is in flight */
  SVC__SEND_ALONE = 2,   /* nothing is sent before this call's reply */
  SVC__SEND_PREPARED = 4 /* req is the space request_space gave */
};

/* What the client asks of a connection. */
typedef struct svc__dial_opts {
  uint32_t slots; /* calls in flight at once: a power of two (the ring) */
  /* The client's slot for this transport's state across its connections
   * (tls: the loaded context and the session to resume), made by dial,
   * freed by cache_free when the client closes. */
  void **cache;
  /* Where a failure's reason goes as a sentence (NUL-terminated), when the
   * transport knows more than the code says: by dial, and later by the
   * connection when it breaks. Lives as long as the client. */
  char *why;
  size_t why_len;
} svc__dial_opts;

struct svc__transport {
  const char *scheme;

  /* Client. A client numbers its calls 1, 2, 3, ... per connection (the
   * sequence wraps at 2^32) and never has more than `slots` of them in
   * flight, nor two in flight whose numbers are equal modulo `slots`.
   *
   * dial connects (blocking until deadline) and owns the new connection:
   * SVC_ECONNREFUSED, SVC_EPERM, SVC_ETIMEDOUT, SVC_ENOMEM. */
  int (*dial)(const svc__url *u, const svc__conn_opts *o,
              const svc__dial_opts *d, int64_t deadline, svc__conn **out);
  /* Posts call seq and returns without waiting for its reply (it may wait
   * up to deadline for room in a full socket). flags: SVC__SEND_IDLE, no
   * call is in flight, so anything the server sent since is news (a close,
   * a goaway); SVC__SEND_ALONE, the caller sends nothing more before this
   * call's reply is received (svc_call). 0 sent; SVC_EAGAIN: not possible
   * now (shm: another large request is in flight, or the ring slot the
   * call must use is still taken), nothing sent; SVC_EPEERGONE: the
   * connection was found closed or asked to close before this call wholly
   * left (safe to retry elsewhere); it takes no more calls, but recv still
   * hands out the replies of calls in flight that arrive before the end;
   * SVC_ETOOBIG: over the limit, nothing sent, the connection stays. After
   * any other error the connection is broken. */
  int (*send)(svc__conn *c, uint32_t seq, const char *method, size_t method_len,
              const void *req, size_t len, int flags, int64_t deadline);
  /* Space on c for a request of up to len bytes that the caller writes in
   * place (shm: in the request lane, after room for the header and the
   * longest method), or NULL where the transport has none (the client
   * uses a buffer of its own). Valid until a send: a send with
   * SVC__SEND_PREPARED takes it as it is, any other large send reuses it. */
  void *(*request_space)(svc__conn *c, size_t len);
  /* Waits until the reply of some call in flight arrived, or the deadline
   * (0: look once, do not sleep); first sends what send held back. 0 with *res;
   * SVC_ETIMEDOUT (the connection stays); SVC_EPEERGONE, SVC_EPROTO, ...:
   * the connection is broken. The client checks res->call_id is in flight.
   * Only after release may recv be called again. */
  int (*recv)(svc__conn *c, int64_t deadline, svc__result *res);
  /* The reply recv returned is no longer read. */
  void (*release)(svc__conn *c);
  /* After the connection broke: 0 if the server provably never took call
   * seq (it may be sent again on a new connection), else 1. */
  int (*taken)(svc__conn *c, uint32_t seq);
  /* After the connection broke, before close: the request of a call in
   * flight as it was sent (f points into the connection), so a call never
   * taken can be sent again. SVC_ESTATE where requests are not kept. */
  int (*request)(svc__conn *c, uint32_t seq, svc__frame *f);
  /* Event-loop mode: from now on c->fd polls readable whenever a reply
   * arrives while no recv waits (shm: the server rings the doorbell). */
  void (*watch)(svc__conn *c);
  /* 1 when recv has work that c->fd does not show: a whole reply already
   * buffered in the client, or requests held back until recv (stream). */
  int (*buffered)(const svc__conn *c);

  /* Frees what dial kept in *cache (NULL where a transport keeps none). */
  void (*cache_free)(void *cache);

  /* Server. listen binds now (SVC_EADDRINUSE, SVC_EPERM, SVC_ESYS); a
   * reason it can say more about goes into why[why_len]. */
  int (*listen)(const svc__url *u, char *why, size_t why_len,
                svc__listener **out);
  /* Takes one pending connection without blocking: 0 with *out, 1 when
   * none is pending, or an error for that attempt only. */
  int (*accept)(svc__listener *l, const svc__conn_opts *o, svc__conn **out);
  /* Serves every request that is ready on c, in order, through ops (see
   * svc__serve_ops); may spin a while for the next request (shm), or,
   * while ops->stay says yes, wait for it in the kernel (unix, tcp). Returns
   * 0 when c went idle (the server polls c->fd again), or a negative code
   * when c must be closed (SVC_EPEERGONE: the client left; SVC_EPROTO: it
   * sent garbage). */
  int (*serve)(svc__conn *c, const svc__serve_ops *ops, void *ctx);
  /* Asks the client to reconnect before its next call (retiring worker).
   * Only while no thread serves c. 0 done, 1 not possible yet (handshake
   * still under way: ask again later). */
  int (*goaway)(svc__conn *c);
  void (*close)(svc__conn *c);
  void (*unlisten)(svc__listener *l);
  /* A server thread is about to leave (NULL where a transport keeps no
   * per-thread state): frees that state while the server still waits for
   * the thread, not after svc_server_free returned. */
  void (*thread_exit)(void);
};

/* Runs one request frame through ops, for every transport: dispatch, then
 * a failed reply allocation becomes the status. Returns the reply status;
 * reply->len is the payload to send when it is 0. The caller calls
 * svc__request_posted once the reply is on its way. */
static inline int svc__run_request(const svc__serve_ops *ops, void *ctx,
                                   const svc__frame *f, svc_reply *reply) {
  int status = ops->dispatch(ctx, f->method, f->method_len, f->payload,
                             f->payload_len, reply);
  return status == 0 && reply->error ? reply->error : status;
}

static inline void svc__request_posted(const svc__serve_ops *ops, void *ctx) {
  if (ops->posted)
    ops->posted(ctx);
}

/* Registry: the transport for u->scheme, or NULL. */
const svc__transport *svc__transport_find(const char *scheme);
/* Every transport's thread_exit, for a server thread that leaves. */
void svc__transports_thread_exit(void);

extern const svc__transport svc__transport_shm;
extern const svc__transport svc__transport_unix;
extern const svc__transport svc__transport_tcp;
extern const svc__transport svc__transport_tls;

#endif

/* server.h — the svc_server object, shared by server.c (listeners, event
 * loop, threads), methods.c (method table, dispatch, built-in svc.* methods)
 * and workers.c (worker processes). */
#ifndef SVC_SERVER_H
#define SVC_SERVER_H

#include <pthread.h>
#include <stdatomic.h>

#include "transport.h"
#include "workers.h"

#define MAX_LISTENERS 16

typedef struct svc__method {
  char name[SVC_METHOD_MAX + 1];
  svc_handler fn;
  void *ctx;
} svc__method;

enum item_kind { ITEM_STOP, ITEM_LISTENER, ITEM_CONN, ITEM_RESUME };

/* A call's statistics, kept from its dispatch until its reply is posted. */
typedef struct svc__call_record {
  int method;
  int pending; /* not recorded yet */
  int error;
  uint64_t ticks, bytes_in, bytes_out;
} svc__call_record;

/* What an epoll event points at. Connections are linked for shutdown. */
typedef struct svc__item {
  enum item_kind kind;
  svc__listener *listener;
  svc__conn *conn;
  struct svc_server *server;   /* connections: the server they belong to */
  int stats_slot;              /* connections: their statistics slot */
  int last_method;             /* connections: the method last found, or -1 */
  uint32_t last_method_len;    /* ... the length of its name */
  svc__call_record unrecorded; /* connections: the last call, until posted */
  pthread_mutex_t serving;     /* held by the thread serving conn */
  int goaway_sent;             /* the client was asked to reconnect */
  _Atomic int paused;          /* listeners: out of fds, waiting on resume */
  struct svc__item *prev, *next;
} svc__item;

struct svc_server {
  char name[SVC__NAME_MAX + 1];
  svc__method *methods;
  int nmethods;
  svc__item listeners[MAX_LISTENERS];
  char listen_urls[MAX_LISTENERS][SVC__PATH_MAX + 16];
  char why[256]; /* svc_server_last_error_text */
  int nlisteners;
  svc__conn_opts opts;
  _Atomic int spinners; /* threads spinning now (bounded by cores) */
  int max_threads;
  int epfd;   /* -1 until started */
  int stopfd; /* eventfd: readable once stop was asked */
  svc__item stop_item;
  /* Out of fds, a listener stays readable: it is taken off epoll and this
   * timerfd brings it back, so the pool neither spins nor stops for good. */
  int resume_fd; /* -1 until started */
  svc__item resume_item;
  _Atomic int stopping;
  _Atomic int retiring; /* worker winding down: no accepts, goaway */
  int started;
  int owns_sockets;          /* unlink socket files on free (not in workers) */
  svc__workers workers;      /* worker processes (workers.c) */
  svc__pool_info *pool_info; /* shared with workers; NULL without them */
  int pool_slot;             /* a worker's slot in pool_info, else -1 */
  _Atomic int accept_defers; /* accepts deferred in a row (workers.c) */
  struct svc__stats *stats;  /* per-method counters, shared with workers */
  int stats_tsc;             /* ... timed in TSC ticks (svc__stats_ticks) */
  _Atomic int nthreads;      /* serving threads alive (detached) */
  pthread_cond_t threads_done; /* signalled when nthreads reaches 0 */
  _Atomic int idle;            /* threads waiting in epoll_wait */
  pthread_mutex_t lock;        /* guards conns and thread creation */
  svc__item conns;             /* list head */
  int64_t started_ns;
};

/* The server's side of svc__serve_ops: runs the method named by the
 * peer's method bytes (see svc__dispatch_fn), then counts the call in its
 * statistics once the transport says its reply was posted. ctx is the
 * connection's svc__item. */
int svc__server_dispatch(void *ctx, const uint8_t *method, size_t method_len,
                         const void *req, size_t len, svc_reply *r);
void svc__server_posted(void *ctx);

/* Maps the per-method statistics shared by all worker processes, once;
 * before forking workers and before serving (methods.c). SVC_ENOMEM. */
int svc__server_stats_open(svc_server *s);

/* Serves on threads until TERM/INT arrives on sfd (a signalfd) or stop is
 * asked; with retire_signo, that signal retires first (workers.c). */
int svc__server_serve_until_signal(svc_server *s, int sfd, int retire_signo);

#endif

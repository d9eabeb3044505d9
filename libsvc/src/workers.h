/* workers.h — worker processes for svc_server_run: the master forks
 * workers that share the listening sockets, replaces those that die, and
 * adds or retires workers by their CPU use. */
#ifndef SVC_WORKERS_H
#define SVC_WORKERS_H

#include <stdatomic.h>
#include <sys/types.h>

typedef struct svc_server svc_server;

/* What the master tells every worker (a MAP_SHARED page made before the
 * first fork), e.g. for svc.info. */
typedef struct svc__pool_info {
  _Atomic int nworkers;         /* active workers */
  _Atomic int pids[64];         /* their pids, 0 in unused slots */
  _Atomic int active[64];       /* by worker slot: 1 while it accepts */
  _Atomic int conns[64];        /* by worker slot: connections it holds */
  _Atomic int ready[64];        /* by worker slot: 1 once it serves (polls) */
  _Atomic int started;          /* the master has forked the minimum pool */
  _Atomic long long started_ns; /* when (monotonic), set before started */
  _Atomic int settled;          /* ... and each of those workers was ready */
} svc__pool_info;

#define SVC__WORKERS_MAX 64

typedef struct svc__workers {
  int min, max;            /* processes; max <= 1 means no workers */
  int up_pct, up_secs;     /* add one when average CPU > up_pct for up_secs */
  int down_pct, down_secs; /* retire one when < down_pct for down_secs */
  int interval_ms;         /* how often the master samples CPU */
  int grace_ms;            /* how long a retiring worker waits for clients */
  int (*init)(void *ctx);  /* runs once in each worker before it serves */
  void *init_ctx;
} svc__workers;

/* Defaults, then the API's values, then SVC_WORKERS_* / SVC_SCALE_* from
 * the environment (the operator wins). */
void svc__workers_defaults(svc__workers *w);
void svc__workers_from_env(svc__workers *w);

/* The master's loop: forks min workers, supervises and scales them until
 * SIGTERM/SIGINT arrives on sfd (a signalfd for TERM, INT and CHLD), then
 * stops them all. Returns 0 or an SVC_E* code. */
int svc__workers_master(svc_server *s, int sfd);

/* In a worker, before accepting: 1 (after a short pause) when another
 * active worker holds fewer connections and should take this one, so a
 * burst of clients spreads over the workers instead of landing on whichever
 * polled first; gives up deferring after a few tries. */
int svc__workers_defer_accept(svc_server *s);

/* In a worker, once it serves: tells the others it can take connections
 * (start-up balancing waits for each worker of the first pool). */
void svc__workers_ready(svc_server *s);

/* Mean CPU use in percent from two tick counts over wall_ns. */
double svc__cpu_pct(unsigned long long ticks, long long wall_ns, long hz);

/* utime+stime of PID from /proc (ticks), or -1. */
long long svc__proc_cpu_ticks(const char *proc_root, pid_t pid);

#endif

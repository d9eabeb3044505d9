/* supervisor.h — the life cycle of each service as an explicit state x event
 * table. Pure logic: processes are started, signalled and probed through an
 * ops table, and time comes from ops.now_ms, so tests drive it with fakes. */
#ifndef MON_SUPERVISOR_H
#define MON_SUPERVISOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MON_STATE_LIST(X)                                                      \
  X(STOPPED)  /* not running, by request or never started */                   \
  X(WAITING)  /* start requested; waits until its depends_on are RUNNING */    \
  X(STARTING) /* spawned, not yet ready */                                     \
  X(RUNNING)  /* ready: answered svc.ping or stayed up start_secs */           \
  X(BACKOFF)  /* exited; waiting to restart */                                 \
  X(STOPPING) /* SIGTERM sent, SIGKILL after stop_timeout_ms */                \
  X(EXITED)   /* exited and the restart policy says stay down */               \
  X(FATAL)    /* exited start_retries times in a row; given up */

typedef enum mon_state {
#define MON__STATE_ENUM(n) MON_##n,
  MON_STATE_LIST(MON__STATE_ENUM)
#undef MON__STATE_ENUM
      MON_NSTATES
} mon_state;

/* What the last health probes said (services with a health = key). */
typedef enum mon_health_state {
  MON_HEALTH_UNKNOWN = -1, /* no probe configured, or none finished yet */
  MON_HEALTH_FAILING = 0,  /* the last probe failed */
  MON_HEALTH_PASSING = 1   /* the last probe passed */
} mon_health_state;

typedef enum mon_event {
  MON_EV_START, /* start requested (autostart, user) */
  MON_EV_STOP,  /* stop requested (user, monitor shutdown) */
  MON_EV_READY, /* readiness reached, or WAITING's dependencies are up */
  MON_EV_EXIT,  /* the service's main process was reaped */
  MON_EV_TIMER, /* the state's deadline passed (backoff, stop, ready) */
  MON_EV_FAIL,  /* a check failed while up (health, memory): restart */
  MON_NEVENTS
} mon_event;

typedef struct mon_sup_ops {
  /* Starts service i: returns its pid (> 0) or a negative errno. Must not
   * block for long. */
  int (*spawn)(void *ctx, size_t i);
  /* Sends sig to the process group led by pid (the service's session). */
  void (*signal)(void *ctx, size_t i, int pid, int sig);
  /* 1 if service i answers svc.ping now, else 0. May block briefly. */
  int (*probe)(void *ctx, size_t i);
  /* Health probes (services with health = ...): health_begin asks for one
   * without blocking; health_take returns -1 while none has finished, else
   * 1 (pass) or 0 (fail, reason in why). NULL: services have no probes. */
  void (*health_begin)(void *ctx, size_t i);
  int (*health_take)(void *ctx, size_t i, char *why, size_t len);
  /* Records an event: kind is start|exit|restart|stop|fatal|ready|waiting|
   * health|memory, detail a short text. The same text goes into the
   * service's log. */
  void (*event)(void *ctx, size_t i, const char *kind, const char *detail);
  /* Monotonic milliseconds. */
  uint64_t (*now_ms)(void *ctx);
  void *ctx;
} mon_sup_ops;

/* What to do once a STOPPING service is down. */
typedef enum mon_after_stop {
  MON_AFTER_NOTHING = 0,
  MON_AFTER_START, /* a restart: start again */
  MON_AFTER_RETRY  /* a failed start that we stopped: back off or give up */
} mon_after_stop;

typedef struct mon_proc {
  mon_state state;
  int pid;                 /* main process while alive, else 0 */
  uint64_t started_ms;     /* monotonic time of the last spawn */
  uint64_t deadline_ms;    /* MON_EV_TIMER fires at this time; 0 = none */
  uint64_t next_probe_ms;  /* next svc.ping while STARTING */
  int retries;             /* failed runs in a row (reset after 60 s up) */
  int restarts;            /* restarts (automatic or requested) so far */
  int last_status;         /* wait status of the last exit */
  mon_after_stop after;    /* see mon_after_stop */
  bool stop_wanted;        /* in a stop of several: waits for dependents */
  mon_health_state health; /* the last probe's verdict while RUNNING */
  int health_fails;        /* failed probes in a row */
  char health_why[128];    /* the last failure's reason */
  bool health_pending;     /* a probe was asked for and has not finished */
  uint64_t health_next_ms; /* when the next probe starts */
  uint64_t health_poll_ms; /* while pending: when to look for its result */
  int mem_over;            /* samples in a row above max_memory_restart */
} mon_proc;

typedef struct mon_sup {
  const mon_config *cfg;
  mon_proc *procs; /* one per cfg->services[i] */
  size_t n;
  mon_sup_ops ops;
} mon_sup;

#define MON_RESET_AFTER_MS 60000 /* uptime that resets the retry count */
#define MON_PROBE_EVERY_MS 200   /* svc.ping period while STARTING */
#define MON_REKILL_MS 2000       /* SIGKILL again while STOPPING lasts */
#define MON_HEALTH_POLL_MS 20    /* how often a finished probe is looked for */
#define MON_MEMORY_SAMPLES 3     /* samples above max_memory_restart */

/* 0, or -1 when out of memory. Everything starts STOPPED. */
int mon_sup_init(mon_sup *s, const mon_config *cfg, const mon_sup_ops *ops);
void mon_sup_fini(mon_sup *s);

/* Feeds one event to service i through the table. */
void mon_sup_event(mon_sup *s, size_t i, mon_event ev);
/* Starts every autostart service (each after its depends_on). */
void mon_sup_autostart(mon_sup *s);
/* Stops the services with which[i] set (all when which is NULL), each only
 * once those of them that depend on it are down: reverse start order. */
void mon_sup_stop_set(mon_sup *s, const bool *which);
/* One sample of service i's tree RSS: max_memory_restart counts it. */
void mon_sup_memory(mon_sup *s, size_t i, uint64_t rss_bytes);
/* A restart request: stop (if up), then start. */
void mon_sup_restart(mon_sup *s, size_t i);
/* A child was reaped: finds its service and feeds MON_EV_EXIT. Returns the
 * service index or -1 for a pid we do not know. */
int mon_sup_reaped(mon_sup *s, int pid, int status);
/* Fires due timers, readiness and health checks, waiting starts and
 * ordered stops. */
void mon_sup_tick(mon_sup *s);
/* Monotonic ms at which mon_sup_tick next has work, or UINT64_MAX. */
uint64_t mon_sup_next_deadline(const mon_sup *s);
/* True while p has, or is about to have, a process to stop (STARTING,
 * RUNNING, STOPPING, or any state with a pid). */
bool mon_sup_has_process(const mon_proc *p);
/* True when no service has a live main process. */
bool mon_sup_all_down(const mon_sup *s);

const char *mon_state_name(mon_state st);
/* Index of the service called name, or -1. */
int mon_sup_find(const mon_sup *s, const char *name);

#ifdef __cplusplus
}
#endif
#endif

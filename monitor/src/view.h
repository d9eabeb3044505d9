/* view.h — what the HTTP thread may know about the services: a snapshot the
 * main loop refreshes (with the config its indices belong to, which a
 * reload replaces), and a queue of control requests going the other way
 * (with an eventfd to wake the loop). One mutex guards both; the HTTP side
 * never touches the supervisor directly. */
#ifndef MON_VIEW_H
#define MON_VIEW_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proc_sample.h"
#include "route.h"
#include "supervisor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mon_view {
  int64_t sid; /* services.id in the store: the live log streams' key */
  mon_state state;
  int pid;                 /* main process, 0 when down */
  int64_t started_wall_ms; /* when the current run started; 0 when down */
  int restarts;
  int nprocs;   /* processes in the tree (master + workers) */
  int nworkers; /* children of the main process (a libsvc master's workers) */
  int workers[MON_WORKERS_MAX]; /* their pids, ascending; the first
                                   MON_WORKERS_MAX of nworkers */
  bool cpu_valid;
  double cpu_pct;
  uint64_t rss_bytes;
  bool pss_valid;
  uint64_t pss_bytes;
  uint64_t read_total, write_total; /* bytes since the monitor started */
  double read_bps, write_bps;
  int health;           /* MON_HEALTH_UNKNOWN, _UP or _DOWN (supervisor.h) */
  int health_fails;     /* failed probes in a row */
  char health_why[128]; /* the last failure's reason, "" when none */
} mon_view;

#define MON_QUEUE_MAX 64

/* A config the loop and the HTTP thread share: a reload publishes a new
 * one while requests may still read the old; the last reference frees it. */
typedef struct mon_config_ref {
  mon_config cfg;
  int refs;   /* guarded by mon_shared.mu */
  bool owned; /* cfg is finalised with the last reference */
} mon_config_ref;

/* A new reference (refs 1) to cfg, moved in: owned says whether the last
 * reference finalises it. NULL when out of memory. */
mon_config_ref *mon_config_ref_new(const mon_config *cfg, bool owned);
/* Drops one reference, without a lock: for the shared snapshot under its
 * mutex, and at the end when no other thread is left. */
void mon_config_ref_unref(mon_config_ref *r);

typedef struct mon_command {
  char service[MON_NAME_MAX + 1]; /* by name: a reload renumbers services */
  mon_action action;
} mon_command;

/* The metrics store's health as the loop last found it, for GET
 * /api/monitor and the dashboard's banner. */
typedef struct mon_store_status {
  bool ok;          /* the last tick's transaction was written */
  char error[200];  /* why it was not (SQLite's text); "" when ok */
  int64_t since_ms; /* wall clock of the first failure in a row; 0 if ok */
} mon_store_status;

typedef struct mon_shared {
  pthread_mutex_t mu;
  mon_config_ref *cfg; /* what views[] is indexed by; NULL before the first */
  mon_view *views;     /* one per service of cfg */
  size_t n;
  mon_config *reload; /* a parsed config the HTTP side asks the loop to apply */
  mon_command queue[MON_QUEUE_MAX];
  size_t nqueue;
  int wake_fd;             /* eventfd, or -1 */
  int64_t started_wall_ms; /* monitor start (mon_shared_init) */
  mon_store_status store;
} mon_shared;

/* The store starts ok. 0, or -1 (out of memory or fds). */
int mon_shared_init(mon_shared *s, size_t n);
void mon_shared_fini(mon_shared *s);
/* Publishes the views of cfg's services (n of them), taking a reference to
 * cfg when it is new and dropping the one to the config before. 0, or -1
 * when out of memory (the old snapshot stays). */
int mon_shared_publish(mon_shared *s, mon_config_ref *cfg, const mon_view *in,
                       size_t n);
/* A reference to the published config (release it with
 * mon_shared_release), or NULL before the first publish. */
mon_config_ref *mon_shared_config(mon_shared *s);
void mon_shared_release(mon_shared *s, mon_config_ref *cfg);
/* Copies the views into out[0..cfg->nservices) if they still belong to
 * cfg: true; false (out untouched) after a reload replaced it. */
bool mon_shared_get(mon_shared *s, const mon_config_ref *cfg, mon_view *out);
/* Queues a control request and wakes the loop: 0, or -1 if full. */
int mon_shared_push(mon_shared *s, const char *service, mon_action a);
/* Hands a parsed config to the loop to apply (ownership moves; one that
 * was waiting is replaced) and wakes it. */
void mon_shared_push_reload(mon_shared *s, mon_config *cfg);
/* The config waiting to be applied (the caller owns it), or NULL. */
mon_config *mon_shared_take_reload(mon_shared *s);
/* Takes up to cap queued requests. */
size_t mon_shared_take(mon_shared *s, mon_command *out, size_t cap);
/* The store's health: set by the loop, read by the HTTP side. */
void mon_shared_set_store(mon_shared *s, const mon_store_status *st);
void mon_shared_get_store(mon_shared *s, mon_store_status *out);

#ifdef __cplusplus
}
#endif
#endif

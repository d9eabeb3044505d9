/* view.h — what the HTTP thread may know about the services: a snapshot the
 * main loop refreshes, and a queue of control requests going the other way
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

typedef struct mon_command {
  size_t service;
  mon_action action;
} mon_command;

typedef struct mon_shared {
  pthread_mutex_t mu;
  mon_view *views; /* one per configured service */
  size_t n;
  mon_command queue[MON_QUEUE_MAX];
  size_t nqueue;
  int wake_fd;             /* eventfd, or -1 */
  int64_t started_wall_ms; /* monitor start */
} mon_shared;

int mon_shared_init(mon_shared *s, size_t n);
void mon_shared_fini(mon_shared *s);
/* Copies all views into out[0..n). */
void mon_shared_get(mon_shared *s, mon_view *out);
void mon_shared_put(mon_shared *s, const mon_view *in);
/* Queues a control request and wakes the loop: 0, or -1 if full. */
int mon_shared_push(mon_shared *s, size_t service, mon_action a);
/* Takes up to cap queued requests. */
size_t mon_shared_take(mon_shared *s, mon_command *out, size_t cap);

#ifdef __cplusplus
}
#endif
#endif

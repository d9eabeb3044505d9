/* stats_poll.h — per-method statistics of libsvc services: a thread of its
 * own calls svc.stats on shm://NAME (one client kept open per service),
 * turns consecutive snapshots into per-interval rows and adds the same
 * intervals to the Prometheus totals (metrics.h), so neither the sampler
 * nor HTTP ever waits for a service. */
#ifndef MON_STATS_POLL_H
#define MON_STATS_POLL_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "metrics.h"
#include "stats_json.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One method_samples row waiting for the next transaction. */
typedef struct mon_method_result {
  size_t service; /* index into the config of the last reconfigure */
  int64_t ts_ms;  /* wall clock when the snapshot was taken */
  mon_method_delta d;
  char name[MON_STATS_NAME_MAX + 1]; /* d.name points here */
} mon_method_result;

typedef struct mon_stats_poller mon_stats_poller;

/* Starts the thread (create it after blocking signals). timeout_ms bounds
 * each call; every interval is also added to metrics (may be NULL), under
 * the service's name. The poller keeps no pointer into cfg. NULL when out
 * of resources. */
mon_stats_poller *mon_stats_poller_new(const mon_config *cfg, int timeout_ms,
                                       mon_metrics *metrics);
/* Stops the thread (waits for a call in flight), closes clients, frees.
 * NULL is fine. */
void mon_stats_poller_free(mon_stats_poller *p);
/* Never blocks: from now on indices are those of cfg (a reloaded config).
 * Services whose names persist keep their client and baseline, so a
 * reload loses no calls; the others are forgotten (with their metrics)
 * before the next round. Rows not yet taken are renumbered; those of
 * services that went are dropped. */
void mon_stats_poller_reconfigure(mon_stats_poller *p, const mon_config *cfg);
/* Never blocks: asks for one round over the services with pids[i] > 0
 * (their main pid; 0 = not a target now). A round still running is not
 * interrupted; the request then waits for the next one. */
void mon_stats_poller_request(mon_stats_poller *p, const int *pids, size_t n);
/* Never blocks: moves the rows computed since the last call into *out
 * (malloc'd; free it) and returns how many. */
size_t mon_stats_poller_take(mon_stats_poller *p, mon_method_result **out);

#ifdef __cplusplus
}
#endif
#endif

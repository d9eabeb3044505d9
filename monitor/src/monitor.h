/* monitor.h — the monitor's event loop: wires supervisor, spawner, logs,
 * sampler, store and HTTP server together around one poll() loop on the
 * main thread. */
#ifndef MON_MONITOR_H
#define MON_MONITOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "config.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mon_run_opts {
  const char *procroot; /* "/proc" */
  FILE *announce;       /* where the dashboard URL is printed (stdout) */
  /* For tests, NULL otherwise: called on the loop's thread just before
   * (after false) and just after (after true) each sampling tick, which
   * samples the services and writes one transaction. */
  void (*on_tick)(void *ctx, bool after);
  void *tick_ctx;
} mon_run_opts;

/* Runs until SIGTERM or SIGINT, then stops every service (dependents
 * first; SIGTERM, SIGKILL after its stop_timeout_ms) and returns 0. SIGHUP
 * (like POST /api/reload) re-reads cfg->path and applies the difference.
 * cfg must outlive the call; a reload never changes it (the monitor keeps
 * configs of its own). Returns 1 with err set if it cannot start (port in
 * use, database unwritable, another monitor holds log_dir). */
int mon_run(const mon_config *cfg, const mon_run_opts *o, char *err,
            size_t errlen);

#ifdef __cplusplus
}
#endif
#endif

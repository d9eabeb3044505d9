/* http.h — the dashboard, JSON API, Prometheus endpoint and control routes,
 * served by libmicrohttpd on its own thread. Reads services through the
 * shared snapshot (view.h) and metrics through its own SQLite connection. */
#ifndef MON_HTTP_H
#define MON_HTTP_H

#include <stddef.h>

#include "config.h"
#include "metrics.h"
#include "sse.h"
#include "view.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mon_http_opts {
  const mon_config *cfg; /* services, http address, sample interval */
  mon_shared *shared;    /* snapshot + command queue */
  const char *token;     /* bearer token for POST routes */
  const char *db_path;   /* the store, opened read-only */
  mon_sse_hub *hub;      /* the live streams (/api/events, logs/stream) */
  mon_metrics *metrics;  /* per-method RPC totals for /metrics */
} mon_http_opts;

typedef struct mon_http mon_http;

/* Binds cfg->http_host:http_port (port 0 = any free port) and starts
 * serving. The options must outlive the server. 0, or -1 with err set. */
int mon_http_start(const mon_http_opts *o, mon_http **out, char *err,
                   size_t errlen);
/* The bound port. */
int mon_http_port(const mon_http *h);
/* Stops serving and frees; NULL is fine. */
void mon_http_stop(mon_http *h);

/* What the main loop tells the live streams (http_live.c formats them):
 * the state of service i changed; a sampling tick ended (cpu and memory of
 * every service); the service with store id sid (mon_view.sid: stable
 * across reloads) printed a line on stream (0 stdout, 1 stderr); the
 * store started or stopped failing.
 * Never block: a slow client is dropped by the hub. */
void mon_http_publish_state(mon_sse_hub *hub, const mon_config *cfg, size_t i,
                            const mon_view *v, int64_t now_ms);
void mon_http_publish_sample(mon_sse_hub *hub, const mon_config *cfg,
                             const mon_view *views, int64_t now_ms);
void mon_http_publish_log(mon_sse_hub *hub, int64_t sid, int stream,
                          int64_t ts_ms, const char *line, size_t len);
/* The store's health changed (the dashboard's banner). */
void mon_http_publish_monitor(mon_sse_hub *hub, const mon_store_status *st);

/* Whether a Host header is acceptable for a server bound to bound_host
 * (an IPv4 literal) on port: "localhost", the bound address or, when bound
 * to 0.0.0.0, any IP literal; with the right port. Pure, for tests/fuzzing. */
int mon_http_host_ok(const char *bound_host, int port, const char *host);

#ifdef __cplusplus
}
#endif
#endif

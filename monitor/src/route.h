/* route.h — maps an HTTP method + (already percent-decoded) path and its
 * query arguments to a typed route. Pure functions, fuzzed by
 * fuzz/fuzz_http.c: whatever the input, a service name that comes out is a
 * valid name (no '/', no leading '.'), so no route can reach a file. */
#ifndef MON_ROUTE_H
#define MON_ROUTE_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum mon_route_kind {
  MON_R_INDEX,        /* GET / */
  MON_R_SERVICE,      /* GET /service/NAME */
  MON_R_API_SERVICES, /* GET /api/services */
  MON_R_API_METRICS,  /* GET /api/services/NAME/metrics?from=&to= */
  MON_R_API_LOGS,     /* GET /api/services/NAME/logs?stream=&tail= */
  MON_R_API_METHODS,  /* GET /api/services/NAME/methods?from=&to= */
  MON_R_PROMETHEUS,   /* GET /metrics */
  MON_R_CONTROL,      /* POST /api/services/NAME/{start,stop,restart} */
  MON_R_STYLE,        /* GET /static/style.css */
  MON_R_SCRIPT,       /* GET /static/dashboard.js */
  MON_R_LOGIN,        /* GET /login (the form), POST /login (sign in) */
  MON_R_LOGOUT,       /* POST /logout */
  MON_R_EVENTS,       /* GET /api/events (SSE) */
  MON_R_LOG_STREAM,   /* GET /api/services/NAME/logs/stream?stream= (SSE) */
  MON_R_RELOAD,       /* POST /api/reload */
  MON_R_API_MONITOR,  /* GET /api/monitor */
} mon_route_kind;

typedef enum mon_action { MON_A_START, MON_A_STOP, MON_A_RESTART } mon_action;

#define MON_TAIL_DEFAULT 100
#define MON_TAIL_MAX 10000
#define MON_QUERY_MAX 256 /* bytes of a log search (q=) */

typedef struct mon_route {
  mon_route_kind kind;
  char name[MON_NAME_MAX + 1]; /* service, for the routes that have one */
  mon_action action;           /* MON_R_CONTROL */
  bool has_from, has_to;
  int64_t from, to; /* ms since the epoch */
  int stream;       /* -1 both, 0 stdout, 1 stderr */
  int tail;         /* log lines */
  bool post;        /* the method was POST (MON_R_LOGIN) */
  bool has_q;       /* a log search: q below */
  char q[MON_QUERY_MAX + 1];
} mon_route;

/* Returns 200 with *r filled, 404 for an unknown path (or a bad service
 * name), 405 for a known path with the wrong method. GET routes accept
 * HEAD too. /login takes GET and POST. */
int mon_route_parse(const char *method, const char *path, mon_route *r);
/* Applies one query argument: 200, or 400 for a bad value of a known key.
 * Unknown keys are ignored. value may be NULL (a bare key). */
int mon_route_arg(mon_route *r, const char *key, const char *value);

#ifdef __cplusplus
}
#endif
#endif

/* route.c — the route table as code: split the path into segments and match
 * them; nothing here allocates or touches the file system. */
#include "route.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define ROUTE_MAX_SEGS 5

/* Splits "/a/b/c" into segments; a trailing slash is not an empty segment
 * except for "/" itself. Returns the count, or -1 if too many / malformed. */
static int route_split(const char *path, const char **seg, size_t *len) {
  if (path[0] != '/')
    return -1;
  int n = 0;
  const char *p = path + 1;
  while (*p) {
    const char *e = strchr(p, '/');
    size_t l = e ? (size_t)(e - p) : strlen(p);
    if (l == 0)
      return -1; /* "//" */
    if (n == ROUTE_MAX_SEGS)
      return -1;
    seg[n] = p;
    len[n++] = l;
    if (!e)
      break;
    p = e + 1;
    if (!*p)
      break; /* trailing slash */
  }
  return n;
}

static bool route_is(const char *seg, size_t len, const char *lit) {
  return strlen(lit) == len && !memcmp(seg, lit, len);
}

static bool route_name(mon_route *r, const char *seg, size_t len) {
  if (len > MON_NAME_MAX)
    return false;
  memcpy(r->name, seg, len);
  r->name[len] = '\0';
  return mon_name_valid(r->name);
}

int mon_route_parse(const char *method, const char *path, mon_route *r) {
  memset(r, 0, sizeof *r);
  r->stream = -1;
  r->tail = MON_TAIL_DEFAULT;
  const char *seg[ROUTE_MAX_SEGS];
  size_t len[ROUTE_MAX_SEGS];
  int n = route_split(path, seg, len);
  if (n < 0)
    return 404;
  bool get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
  bool post = !strcmp(method, "POST");
  bool want_post = false;
  r->post = post;

  if (n == 0) {
    r->kind = MON_R_INDEX;
  } else if (n == 1 && route_is(seg[0], len[0], "login")) {
    r->kind = MON_R_LOGIN;
    if (!get && !post)
      return 405;
    return 200;
  } else if (n == 1 && route_is(seg[0], len[0], "logout")) {
    r->kind = MON_R_LOGOUT;
    want_post = true;
  } else if (n == 2 && route_is(seg[0], len[0], "api") &&
             route_is(seg[1], len[1], "events")) {
    r->kind = MON_R_EVENTS;
  } else if (n == 2 && route_is(seg[0], len[0], "api") &&
             route_is(seg[1], len[1], "monitor")) {
    r->kind = MON_R_API_MONITOR;
  } else if (n == 2 && route_is(seg[0], len[0], "api") &&
             route_is(seg[1], len[1], "reload")) {
    r->kind = MON_R_RELOAD;
    want_post = true;
  } else if (n == 2 && route_is(seg[0], len[0], "service")) {
    if (!route_name(r, seg[1], len[1]))
      return 404;
    r->kind = MON_R_SERVICE;
  } else if (n == 1 && route_is(seg[0], len[0], "metrics")) {
    r->kind = MON_R_PROMETHEUS;
  } else if (n == 2 && route_is(seg[0], len[0], "static") &&
             route_is(seg[1], len[1], "style.css")) {
    r->kind = MON_R_STYLE;
  } else if (n == 2 && route_is(seg[0], len[0], "static") &&
             route_is(seg[1], len[1], "dashboard.js")) {
    r->kind = MON_R_SCRIPT;
  } else if (n >= 2 && route_is(seg[0], len[0], "api") &&
             route_is(seg[1], len[1], "services")) {
    if (n == 2) {
      r->kind = MON_R_API_SERVICES;
    } else if (n == 4) {
      if (!route_name(r, seg[2], len[2]))
        return 404;
      if (route_is(seg[3], len[3], "metrics"))
        r->kind = MON_R_API_METRICS;
      else if (route_is(seg[3], len[3], "logs"))
        r->kind = MON_R_API_LOGS;
      else if (route_is(seg[3], len[3], "methods"))
        r->kind = MON_R_API_METHODS;
      else {
        r->kind = MON_R_CONTROL;
        want_post = true;
        if (route_is(seg[3], len[3], "start"))
          r->action = MON_A_START;
        else if (route_is(seg[3], len[3], "stop"))
          r->action = MON_A_STOP;
        else if (route_is(seg[3], len[3], "restart"))
          r->action = MON_A_RESTART;
        else
          return 404;
      }
    } else if (n == 5 && route_is(seg[3], len[3], "logs") &&
               route_is(seg[4], len[4], "stream")) {
      if (!route_name(r, seg[2], len[2]))
        return 404;
      r->kind = MON_R_LOG_STREAM;
      r->stream = 0;
    } else {
      return 404;
    }
  } else {
    return 404;
  }
  if (want_post ? !post : !get)
    return 405;
  return 200;
}

static bool route_int(const char *v, int64_t lo, int64_t hi, int64_t *out) {
  if (!v || !*v)
    return false;
  errno = 0;
  char *end;
  long long x = strtoll(v, &end, 10);
  if (errno || *end || x < lo || x > hi)
    return false;
  *out = x;
  return true;
}

int mon_route_arg(mon_route *r, const char *key, const char *value) {
  int64_t x;
  const int64_t tmax = INT64_C(1) << 50; /* ms: far beyond any real date */
  if (!key)
    return 200;
  bool logs = r->kind == MON_R_API_LOGS || r->kind == MON_R_SERVICE;
  if (r->kind == MON_R_API_METRICS || r->kind == MON_R_API_METHODS || logs) {
    if (!strcmp(key, "from")) {
      if (!route_int(value, 0, tmax, &x))
        return 400;
      r->from = x;
      r->has_from = true;
      return 200;
    }
    if (!strcmp(key, "to")) {
      if (!route_int(value, 0, tmax, &x))
        return 400;
      r->to = x;
      r->has_to = true;
      return 200;
    }
  }
  if (logs && !strcmp(key, "q")) {
    size_t l = value ? strlen(value) : 0;
    if (l > MON_QUERY_MAX)
      return 400;
    if (l) { /* an empty search box is no search */
      memcpy(r->q, value, l + 1);
      r->has_q = true;
    }
    return 200;
  }
  if (logs || r->kind == MON_R_LOG_STREAM) {
    if (!strcmp(key, "stream")) {
      if (value && !strcmp(value, "stdout"))
        r->stream = 0;
      else if (value && !strcmp(value, "stderr"))
        r->stream = 1;
      else if (r->kind != MON_R_LOG_STREAM && value &&
               (!strcmp(value, "both") || !*value))
        r->stream = -1;
      else
        return 400;
    } else if (!strcmp(key, "tail") && r->kind == MON_R_API_LOGS) {
      if (!route_int(value, 1, MON_TAIL_MAX, &x))
        return 400;
      r->tail = (int)x;
    }
  }
  return 200;
}

/* methods.c — the method table of a server, dispatch of one call to its
 * handler (timed and counted in stats.c), and the built-in methods under the
 * reserved "svc." prefix: svc.ping, svc.info, svc.methods, svc.stats. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "server.h"
#include "stats.h"
#include "sys.h"

int svc_server_method(svc_server *s, const char *name, svc_handler fn,
                      void *ctx) {
  if (s && s->started)
    return SVC_ESTATE;
  if (!s || !name || !fn)
    return SVC_EINVAL;
  size_t n = strlen(name);
  if (n == 0 || n > SVC_METHOD_MAX || strncmp(name, "svc.", 4) == 0)
    return SVC_EINVAL;
  for (int i = 0; i < s->nmethods; i++)
    if (strcmp(s->methods[i].name, name) == 0) {
      s->methods[i].fn = fn;
      s->methods[i].ctx = ctx;
      return 0;
    }
  svc__method *m =
      svc__realloc(s->methods, (size_t)(s->nmethods + 1) * sizeof *m);
  if (!m)
    return SVC_ENOMEM;
  s->methods = m;
  memcpy(m[s->nmethods].name, name, n + 1);
  m[s->nmethods].fn = fn;
  m[s->nmethods].ctx = ctx;
  s->nmethods++;
  return 0;
}

/* Built-in methods; their stats follow the user methods' in the table. */
enum { B_PING, B_INFO, B_METHODS, B_STATS, NBUILTIN };
static const char *const builtin_names[NBUILTIN] = {"svc.ping", "svc.info",
                                                    "svc.methods", "svc.stats"};

static int reply_text(svc_reply *r, const char *text) {
  return svc_reply_set(r, text, strlen(text));
}

/* Appends s as a JSON string to buf (which has room for 6 bytes per input
 * byte + 3); returns the new length. */
static size_t json_str(char *buf, size_t len, const char *s) {
  buf[len++] = '"';
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\') {
      buf[len++] = '\\';
      buf[len++] = (char)ch;
    } else if (ch < 0x20) {
      len += (size_t)snprintf(buf + len, 7, "\\u%04x", ch);
    } else {
      buf[len++] = (char)ch;
    }
  }
  buf[len++] = '"';
  return len;
}

static int builtin_methods(svc_server *s, svc_reply *r) {
  size_t cap = 32, len = 0;
  for (int i = 0; i < s->nmethods; i++)
    cap += strlen(s->methods[i].name) * 6 + 4;
  char *buf = svc__malloc(cap);
  if (!buf)
    return SVC_ENOMEM;
  buf[len++] = '[';
  for (int i = 0; i < s->nmethods; i++) {
    if (i)
      buf[len++] = ',';
    len = json_str(buf, len, s->methods[i].name);
  }
  buf[len++] = ']';
  int rc = svc_reply_set(r, buf, len);
  free(buf);
  return rc;
}

static int workers(const svc_server *s) {
  return s->pool_info ? atomic_load(&s->pool_info->nworkers) : 1;
}

static int64_t uptime_ms(const svc_server *s) {
  return (svc__now_ns() - s->started_ns) / 1000000;
}

static int builtin_info(svc_server *s, svc_reply *r) {
  char buf[MAX_LISTENERS * sizeof s->listen_urls[0] * 6 + 1024];
  int len = snprintf(buf, sizeof buf,
                     "{\"format\":1,\"name\":\"%s\",\"version\":\"%s\","
                     "\"pid\":%d,\"workers\":%d,\"uptime_ms\":%lld,"
                     "\"listeners\":[",
                     s->name, svc_version(), (int)getpid(), workers(s),
                     (long long)uptime_ms(s));
  size_t n = (size_t)len;
  for (int i = 0; i < s->nlisteners; i++) {
    if (i)
      buf[n++] = ',';
    n = json_str(buf, n, s->listen_urls[i]);
  }
  buf[n++] = ']';
  buf[n++] = '}';
  return svc_reply_set(r, buf, n);
}

/* A request of "histogram" (or a JSON object with "histogram":true) adds
 * each method's buckets. */
static int wants_histogram(const void *req, size_t len) {
  static const char key[] = "histogram";
  const char *p = req;
  for (size_t i = 0; i + sizeof key - 1 <= len; i++)
    if (memcmp(p + i, key, sizeof key - 1) == 0)
      return 1;
  return 0;
}

static int builtin_stats(svc_server *s, const void *req, size_t len,
                         svc_reply *r) {
  if (!s->stats)
    return SVC_ESTATE;
  int n = s->nmethods + NBUILTIN;
  svc__method_stats *ms = svc__malloc((size_t)n * sizeof *ms);
  const char **names = svc__malloc((size_t)n * sizeof *names);
  int rc = SVC_ENOMEM;
  if (ms && names) {
    for (int i = 0; i < n; i++) {
      names[i] =
          i < s->nmethods ? s->methods[i].name : builtin_names[i - s->nmethods];
      svc__stats_read(s->stats, i, &ms[i]);
    }
    svc__stats_doc doc = {.name = s->name,
                          .pid = (int)getpid(),
                          .workers = workers(s),
                          .uptime_ms = uptime_ms(s),
                          .unknown_calls = svc__stats_unknown(s->stats)};
    char *json;
    size_t jlen;
    rc = svc__stats_json(&doc, names, ms, n, wants_histogram(req, len), &json,
                         &jlen);
    if (rc == 0) {
      rc = svc_reply_set(r, json, jlen);
      free(json);
    }
  }
  free(ms);
  free(names);
  return rc;
}

static int run_builtin(svc_server *s, int b, const void *req, size_t len,
                       svc_reply *r) {
  switch (b) {
  case B_PING:
    return reply_text(r, "pong");
  case B_INFO:
    return builtin_info(s, r);
  case B_METHODS:
    return builtin_methods(s, r);
  default:
    return builtin_stats(s, req, len, r);
  }
}

/* Runs method i of the stats table (a user method, or a built-in). */
static int run_method(svc_server *s, int i, const void *req, size_t len,
                      svc_reply *r) {
  return i < s->nmethods ? s->methods[i].fn(s->methods[i].ctx, req, len, r)
                         : run_builtin(s, i - s->nmethods, req, len, r);
}

/* Index in the stats table: user methods, then built-ins; -1 if none. */
static int method_index(const svc_server *s, const char *name) {
  if (strncmp(name, "svc.", 4) == 0) {
    for (int b = 0; b < NBUILTIN; b++)
      if (strcmp(name, builtin_names[b]) == 0)
        return s->nmethods + b;
    return -1;
  }
  for (int i = 0; i < s->nmethods; i++)
    if (strcmp(s->methods[i].name, name) == 0)
      return i;
  return -1;
}

static const char *method_name(const svc_server *s, int i) {
  return i < s->nmethods ? s->methods[i].name : builtin_names[i - s->nmethods];
}

/* The method the peer's len bytes name, or -1. A connection mostly calls
 * one method, so the last one found is compared first, against the
 * table's own copy of its name: bytes the peer changes meanwhile can only
 * make the comparison fail or succeed, never run anything not named. Any
 * other name is copied out once and looked up (a NUL inside is no name:
 * "fail\0x" must not run "fail"). */
static int find_method(svc__item *it, const uint8_t *method, size_t len) {
  const svc_server *s = it->server;
  if (it->last_method >= 0 && len == it->last_method_len &&
      memcmp(method, method_name(s, it->last_method), len) == 0)
    return it->last_method;
  char name[SVC_METHOD_MAX + 1];
  if (len == 0 || len > SVC_METHOD_MAX)
    return -1;
  memcpy(name, method, len);
  name[len] = '\0';
  if (memchr(name, '\0', len))
    return -1;
  int i = method_index(s, name);
  if (i >= 0) {
    it->last_method = i;
    it->last_method_len = (uint32_t)len;
  }
  return i;
}

int svc__server_stats_open(svc_server *s) {
  const char *env = getenv("SVC_STATS"); /* "off": measure without counting */
  if (s->stats || (env && (strcmp(env, "off") == 0 || strcmp(env, "0") == 0)))
    return 0;
  /* Slots for 256 open connections per worker process, and room for a
   * replacement's while a dead worker's slots wait to be reclaimed; more
   * connections share the overflow slot. */
  long nproc = s->workers.max > 1 ? s->workers.max : 1;
  long slots = 256L * (nproc + 1);
  if (slots > 65536)
    slots = 65536;
  int rc = svc__stats_new(s->nmethods + NBUILTIN, (int)slots, &s->stats);
  s->stats_tsc = svc__stats_uses_tsc(s->stats);
  return rc;
}

/* A handler passing on a failed svc_reply_alloc (with SVC_ETOOBIG, as
 * most do) when memory ran out: the caller learns SVC_ENOMEM, which a
 * smaller or later call may not meet, not that the reply was too big. */
static int reply_status(int rc, const svc_reply *r) {
  return rc < 0 && r->error == SVC_ENOMEM ? SVC_ENOMEM : rc;
}

int svc__server_dispatch(void *ctx, const uint8_t *method, size_t method_len,
                         const void *req, size_t len, svc_reply *r) {
  svc__item *it = ctx;
  svc_server *s = it->server;
  int i = find_method(it, method, method_len);
  if (i < 0) {
    svc__stats_count_unknown(s->stats);
    return SVC_ENOMETHOD;
  }
  if (!s->stats) /* SVC_STATS=off */
    return reply_status(run_method(s, i, req, len, r), r);
  int tsc = s->stats_tsc;
  uint64_t t0 = svc__stats_ticks(tsc);
  int rc = run_method(s, i, req, len, r);
  uint64_t t1 = svc__stats_ticks(tsc);
  /* Counted once the reply is posted: the caller does not wait for it. */
  it->unrecorded = (svc__call_record){.method = i,
                                      .pending = 1,
                                      .error = rc != 0,
                                      .ticks = t1 - t0,
                                      .bytes_in = len,
                                      .bytes_out = rc == 0 ? r->len : 0};
  return reply_status(rc, r);
}

void svc__server_posted(void *ctx) {
  svc__item *it = ctx;
  svc__call_record *u = &it->unrecorded;
  if (!u->pending)
    return;
  u->pending = 0;
  svc__stats_record(it->server->stats, it->stats_slot, u->method, u->ticks,
                    u->bytes_in, u->bytes_out, u->error);
}

void *svc_reply_alloc(svc_reply *r, size_t len) {
  return r ? r->alloc(r, len) : NULL;
}

int svc_reply_set(svc_reply *r, const void *p, size_t len) {
  if (!r || (!p && len))
    return SVC_EINVAL;
  void *dst = r->alloc(r, len);
  if (!dst)
    return r->error;
  if (len)
    memcpy(dst, p, len);
  return 0;
}

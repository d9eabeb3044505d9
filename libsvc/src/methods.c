/* methods.c — the method table of a server, dispatch of one call to its
 * handler, and the built-in methods under the reserved "svc." prefix. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "server.h"

int svc_server_method(svc_server *s, const char *name, svc_handler fn,
                      void *ctx) {
  if (!s || !name || !fn || s->started)
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
  svc__method *m = realloc(s->methods, (size_t)(s->nmethods + 1) * sizeof *m);
  if (!m)
    return SVC_ENOMEM;
  s->methods = m;
  memcpy(m[s->nmethods].name, name, n + 1);
  m[s->nmethods].fn = fn;
  m[s->nmethods].ctx = ctx;
  s->nmethods++;
  return 0;
}

static int reply_text(svc_reply *r, const char *text) {
  return svc_reply_set(r, text, strlen(text));
}

static int builtin_methods(svc_server *s, svc_reply *r) {
  size_t cap = 32, len = 0;
  for (int i = 0; i < s->nmethods; i++)
    cap += strlen(s->methods[i].name) * 6 + 4;
  char *buf = malloc(cap);
  if (!buf)
    return SVC_ENOMEM;
  len += (size_t)snprintf(buf, cap, "[");
  for (int i = 0; i < s->nmethods; i++) {
    len += (size_t)snprintf(buf + len, cap - len, "%s\"", i ? "," : "");
    for (const char *p = s->methods[i].name; *p; p++) {
      unsigned char ch = (unsigned char)*p;
      if (ch == '"' || ch == '\\')
        len += (size_t)snprintf(buf + len, cap - len, "\\%c", ch);
      else if (ch < 0x20)
        len += (size_t)snprintf(buf + len, cap - len, "\\u%04x", ch);
      else
        buf[len++] = (char)ch;
    }
    buf[len++] = '"';
  }
  len += (size_t)snprintf(buf + len, cap - len, "]");
  int rc = svc_reply_set(r, buf, len);
  free(buf);
  return rc;
}

static int builtin_info(svc_server *s, svc_reply *r) {
  char buf[4096];
  int64_t up_ms = (svc__now_ns() - s->started_ns) / 1000000;
  int len = snprintf(buf, sizeof buf,
                     "{\"format\":1,\"name\":\"%s\",\"version\":\"%s\","
                     "\"pid\":%d,\"workers\":1,\"uptime_ms\":%lld,"
                     "\"listeners\":[",
                     s->name, svc_version(), (int)getpid(), (long long)up_ms);
  for (int i = 0; i < s->nlisteners && len < (int)sizeof buf - 300; i++)
    len += snprintf(buf + len, sizeof buf - (size_t)len, "%s\"%s\"",
                    i ? "," : "", s->listen_urls[i]);
  len += snprintf(buf + len, sizeof buf - (size_t)len, "]}");
  return svc_reply_set(r, buf, (size_t)len);
}

static int dispatch_builtin(svc_server *s, const char *name, svc_reply *r) {
  if (strcmp(name, "svc.ping") == 0)
    return reply_text(r, "pong");
  if (strcmp(name, "svc.methods") == 0)
    return builtin_methods(s, r);
  if (strcmp(name, "svc.info") == 0)
    return builtin_info(s, r);
  return SVC_ENOMETHOD;
}

int svc__server_dispatch(void *ctx, const char *name, const void *req, size_t len,
                    svc_reply *r) {
  svc_server *s = ctx;
  if (strncmp(name, "svc.", 4) == 0)
    return dispatch_builtin(s, name, r);
  for (int i = 0; i < s->nmethods; i++)
    if (strcmp(s->methods[i].name, name) == 0)
      return s->methods[i].fn(s->methods[i].ctx, req, len, r);
  return SVC_ENOMETHOD;
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


/* http_live.c — the Server-Sent Event streams: /api/events (every state
 * change and sampling tick) and /api/services/NAME/logs/stream (tail -f of
 * one stream), and the JSON of what the main loop publishes to them. A
 * stream is a callback response that drains its hub subscriber; it is
 * suspended while there is nothing to send and resumed by the publisher. */
#include "http_internal.h"

#include <stdlib.h>
#include <string.h>

#include "mon_sys.h"

#define LIVE_HISTORY 100 /* lines a log stream starts with */

/* ---- what is published ---- */

static void live_state_json(mon_buf *b, const mon_service_cfg *s,
                            const mon_view *v, int64_t now_ms) {
  mon_buf_printf(b, "{\"service\":\"%s\",\"state\":\"%s\",\"pid\":", s->name,
                 mon_state_name(v->state));
  if (v->pid)
    mon_buf_printf(b, "%d", v->pid);
  else
    mon_buf_puts(b, "null");
  mon_buf_printf(b, ",\"restarts\":%d,\"uptime_s\":", v->restarts);
  if (v->pid && v->started_wall_ms)
    mon_buf_printf(b, "%lld",
                   (long long)((now_ms - v->started_wall_ms) / 1000));
  else
    mon_buf_puts(b, "null");
  mon_http_workers_json(b, v);
  mon_http_health_json(b, s, v, false);
  mon_buf_puts(b, "}");
}

static void live_publish(mon_sse_hub *hub, mon_sse_topic topic, int service,
                         int stream, const char *event, mon_buf *b) {
  if (!b->oom)
    mon_sse_publish(hub, topic, service, stream, event, b->p, b->len);
  mon_buf_fini(b);
}

void mon_http_publish_state(mon_sse_hub *hub, const mon_config *cfg, size_t i,
                            const mon_view *v, int64_t now_ms) {
  mon_buf b = {0};
  live_state_json(&b, &cfg->services[i], v, now_ms);
  live_publish(hub, MON_SSE_EVENTS, 0, 0, "state", &b);
}

void mon_http_publish_sample(mon_sse_hub *hub, const mon_config *cfg,
                             const mon_view *views, int64_t now_ms) {
  mon_buf b = {0};
  mon_buf_printf(&b, "{\"ts_ms\":%lld,\"services\":[", (long long)now_ms);
  for (size_t i = 0; i < cfg->nservices; i++) {
    const mon_view *v = &views[i];
    mon_buf_printf(&b, "%s{\"service\":\"%s\",\"cpu_pct\":", i ? "," : "",
                   cfg->services[i].name);
    if (v->pid && v->cpu_valid)
      mon_buf_printf(&b, "%.2f", v->cpu_pct);
    else
      mon_buf_puts(&b, "null");
    mon_buf_printf(&b, ",\"rss_bytes\":%llu,\"pss_bytes\":",
                   (unsigned long long)(v->pid ? v->rss_bytes : 0));
    if (v->pid && v->pss_valid)
      mon_buf_printf(&b, "%llu", (unsigned long long)v->pss_bytes);
    else
      mon_buf_puts(&b, "null");
    mon_buf_puts(&b, "}");
  }
  mon_buf_puts(&b, "]}");
  live_publish(hub, MON_SSE_EVENTS, 0, 0, "sample", &b);
}

void mon_http_publish_log(mon_sse_hub *hub, int64_t sid, int stream,
                          int64_t ts_ms, const char *line, size_t len) {
  mon_buf b = {0};
  mon_http_line_json(&b, ts_ms, stream ? "stderr" : "stdout", line, len);
  live_publish(hub, MON_SSE_LOGS, (int)sid, stream, "line", &b);
}

void mon_http_publish_monitor(mon_sse_hub *hub, const mon_store_status *st) {
  mon_buf b = {0};
  mon_buf_puts(&b, "{\"store\":");
  mon_http_store_json(&b, st);
  mon_buf_puts(&b, "}");
  live_publish(hub, MON_SSE_EVENTS, 0, 0, "monitor", &b);
}

/* ---- the streams ---- */

typedef struct live_stream {
  mon_sse_sub *sub;
  struct MHD_Connection *c;
} live_stream;

static void live_suspend(void *ctx) {
  live_stream *ls = ctx;
  MHD_suspend_connection(ls->c);
}

static void live_wake(void *ctx) {
  live_stream *ls = ctx;
  MHD_resume_connection(ls->c);
}

static ssize_t live_read(void *cls, uint64_t pos, char *buf, size_t max) {
  (void)pos;
  live_stream *ls = cls;
  ssize_t n = mon_sse_read(ls->sub, buf, max, mon_http_now_ms());
  return n < 0 ? MHD_CONTENT_READER_END_WITH_ERROR : n;
}

static void live_free(void *cls) {
  live_stream *ls = cls;
  mon_sse_unsubscribe(ls->sub);
  free(ls);
}

/* Answers with the stream of sub (taking it): 503 when none was given. */
static enum MHD_Result live_respond(struct MHD_Connection *c,
                                    mon_sse_sub *sub) {
  if (!sub)
    return mon_http_error(c, 503, "too many live streams open");
  live_stream *ls = mon__calloc(1, sizeof *ls);
  if (!ls) {
    mon_sse_unsubscribe(sub);
    return mon_http_error(c, 500, "out of memory");
  }
  *ls = (live_stream){.sub = sub, .c = c};
  mon_sse_hooks hooks = {live_suspend, live_wake, ls};
  mon_sse_set_hooks(sub, &hooks);
  struct MHD_Response *r = MHD_create_response_from_callback(
      MHD_SIZE_UNKNOWN, 16 * 1024, live_read, ls, live_free);
  if (!r) {
    live_free(ls);
    return MHD_NO;
  }
  MHD_add_response_header(r, "Content-Type", "text/event-stream");
  MHD_add_response_header(r, "Cache-Control", "no-store");
  MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
  MHD_add_response_header(r, "X-Accel-Buffering", "no");
  /* a stream gets a keep-alive at least every MON_SSE_KEEPALIVE_MS, so a
   * client that stops reading for 3 of them is gone (a dropped subscriber
   * whose socket never drains is freed by this timeout) */
  MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT,
                            (unsigned)(3 * MON_SSE_KEEPALIVE_MS / 1000));
  enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, r);
  MHD_destroy_response(r);
  return ret;
}

enum MHD_Result mon_http_events(mon_http *h, struct MHD_Connection *c) {
  if (!h->o->hub)
    return mon_http_error(c, 503, "no live streams");
  int64_t now = mon_http_now_ms();
  mon_sse_sub *sub = mon_sse_subscribe(h->o->hub, MON_SSE_EVENTS, 0, 0, now);
  if (sub) { /* where every service stands now, then the changes */
    const mon_config *cfg = h->cfg;
    mon_view *v = mon_http_views(h);
    for (size_t i = 0; v && i < cfg->nservices; i++) {
      mon_buf b = {0};
      live_state_json(&b, &cfg->services[i], &v[i], now);
      if (!b.oom)
        mon_sse_send(sub, "state", b.p, b.len);
      mon_buf_fini(&b);
    }
    free(v);
  }
  return live_respond(c, sub);
}

enum MHD_Result mon_http_log_stream(mon_http *h, struct MHD_Connection *c,
                                    const mon_route *rt) {
  int i = mon_http_find(h, rt->name);
  if (i < 0)
    return mon_http_error(c, 404, "no such service");
  if (!h->o->hub)
    return mon_http_error(c, 503, "no live streams");
  int64_t now = mon_http_now_ms();
  mon_view *v = mon_http_views(h);
  if (!v)
    return mon_http_error(c, 500, "out of memory");
  int sid = (int)v[i].sid; /* lines are published by id: stable on reload */
  free(v);
  /* subscribe first: a line printed while the history is read is queued */
  mon_sse_sub *sub =
      mon_sse_subscribe(h->o->hub, MON_SSE_LOGS, sid, rt->stream, now);
  mon_reader *r = mon_http_reader(h);
  mon_row *rows = NULL;
  size_t n = 0;
  if (sub && r &&
      mon_reader_logs(r, rt->name, rt->stream ? "stderr" : "stdout",
                      LIVE_HISTORY, &rows, &n) == 0) {
    /* the history goes before anything queued since: the newest lines
     * that fit half the subscriber's bound (long lines, escaped, could
     * fill it and get the stream dropped at once) */
    size_t first = n, bytes = 0;
    while (first > 0) {
      size_t len = 64 + 6 * strlen(rows[first - 1].b); /* escaped, at most */
      if (bytes + len > MON_SSE_BUF / 2)
        break;
      bytes += len;
      first--;
    }
    mon_buf all = {0};
    for (size_t k = first; k < n; k++) {
      mon_buf_puts(&all, "event: line\ndata: ");
      mon_http_line_json(&all, rows[k].ts_ms, rows[k].a, rows[k].b,
                         strlen(rows[k].b));
      mon_buf_puts(&all, "\n\n");
    }
    if (!all.oom && all.len)
      mon_sse_prepend(sub, all.p, all.len);
    mon_buf_fini(&all);
  }
  mon_rows_free(rows, n);
  return live_respond(c, sub);
}

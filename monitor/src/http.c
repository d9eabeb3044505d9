/* http.c — request handling: Host check, route parsing (route.c), then one
 * function per route that reads the snapshot or the store and renders HTML
 * (with render_svg.c), JSON or Prometheus text. Signing in and the POST
 * rules are in http_session.c, the live streams in http_live.c. Every
 * response carries the security headers; nothing is ever read from the
 * file system except the SQLite file. */
#include "http_internal.h"

#include <arpa/inet.h>
#include <math.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <svc.h>
#include <time.h>

#include "mon_sys.h"
#include "reload.h"
#include "render_svg.h"
#include "token.h"

#define HTTP_REFRESH_S 5
#define HTTP_MAX_POINTS 600

extern const char mon_asset_style_css[];
extern const size_t mon_asset_style_css_len;
extern const char mon_asset_dashboard_js[];
extern const size_t mon_asset_dashboard_js_len;

int64_t mon_http_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- Host check ---- */

static int http_is_ip(const char *s) {
  unsigned char a[16];
  return inet_pton(AF_INET, s, a) == 1 || inet_pton(AF_INET6, s, a) == 1;
}

int mon_http_host_ok(const char *bound_host, int port, const char *host) {
  if (!host || !*host || strlen(host) > 255)
    return 0;
  char name[256];
  const char *portp = NULL;
  if (host[0] == '[') {
    const char *close = strchr(host, ']');
    if (!close)
      return 0;
    size_t l = (size_t)(close - host - 1);
    memcpy(name, host + 1, l);
    name[l] = '\0';
    if (close[1] == ':')
      portp = close + 2;
    else if (close[1])
      return 0;
  } else {
    const char *colon = strchr(host, ':');
    size_t l = colon ? (size_t)(colon - host) : strlen(host);
    if (colon && strchr(colon + 1, ':'))
      return 0;
    memcpy(name, host, l);
    name[l] = '\0';
    portp = colon ? colon + 1 : NULL;
  }
  if (portp) {
    char *end;
    /* digits only: strtol alone would take "\t5155" or "+5155" */
    if (!*portp || *portp == '0' ||
        strspn(portp, "0123456789") != strlen(portp))
      return 0; /* canonical digits only: no sign, space or leading 0 */
    long p = strtol(portp, &end, 10);
    if (*end || p != port)
      return 0;
  } else if (port != 80) {
    return 0;
  }
  if (!strcasecmp(name, "localhost"))
    return 1;
  if (!strcmp(bound_host, "0.0.0.0"))
    return http_is_ip(name);
  if (!strcmp(name, bound_host))
    return 1;
  if (!strncmp(bound_host, "127.", 4))
    return !strcmp(name, "127.0.0.1") || !strcmp(name, "::1");
  return 0;
}

/* ---- responses ---- */

enum MHD_Result mon_http_send_hdrs(struct MHD_Connection *c, unsigned status,
                                   const char *type, mon_buf *b,
                                   const char *const *hdrs) {
  if (b->oom) {
    mon_buf_fini(b);
    mon_buf_puts(b, "out of memory\n");
    status = MHD_HTTP_INTERNAL_SERVER_ERROR;
    type = "text/plain; charset=utf-8";
  }
  size_t len;
  char *body = mon_buf_take(b, &len);
  struct MHD_Response *r =
      MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
  if (!r) {
    free(body);
    return MHD_NO;
  }
  MHD_add_response_header(r, "Content-Type", type);
  MHD_add_response_header(r, "Content-Security-Policy",
                          "default-src 'self'; script-src 'self'; "
                          "form-action 'self'; frame-ancestors 'none'");
  MHD_add_response_header(r, "X-Frame-Options", "DENY");
  MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
  /* not no-referrer: with it a browser sends "Origin: null" on the
   * dashboard's own form posts, which the Origin check must refuse */
  MHD_add_response_header(r, "Referrer-Policy", "same-origin");
  MHD_add_response_header(r, "Cache-Control", "no-store");
  if (status == MHD_HTTP_UNAUTHORIZED)
    MHD_add_response_header(r, "WWW-Authenticate",
                            "Bearer realm=\"svc-monitor\"");
  for (size_t i = 0; hdrs && hdrs[i]; i += 2)
    MHD_add_response_header(r, hdrs[i], hdrs[i + 1]);
  enum MHD_Result ret = MHD_queue_response(c, status, r);
  MHD_destroy_response(r);
  return ret;
}

enum MHD_Result mon_http_send(struct MHD_Connection *c, unsigned status,
                              const char *type, mon_buf *b) {
  return mon_http_send_hdrs(c, status, type, b, NULL);
}

enum MHD_Result mon_http_error(struct MHD_Connection *c, unsigned status,
                               const char *msg) {
  mon_buf b = {0};
  mon_buf_puts(&b, "{\"error\":");
  mon_buf_json(&b, msg, strlen(msg));
  mon_buf_puts(&b, "}\n");
  return mon_http_send(c, status, "application/json", &b);
}

enum MHD_Result mon_http_redirect(struct MHD_Connection *c, const char *path,
                                  const char *cookie) {
  const char *hdrs[] = {"Location", path, cookie ? "Set-Cookie" : NULL, cookie,
                        NULL};
  mon_buf b = {0};
  mon_buf_puts(&b, "see other\n");
  return mon_http_send_hdrs(c, 303, "text/plain; charset=utf-8", &b, hdrs);
}

/* ---- helpers ---- */

static void http_json_num(mon_buf *b, double v, bool valid) {
  if (!valid || isnan(v) || isinf(v))
    mon_buf_puts(b, "null");
  else if (v == floor(v) && fabs(v) < 1e15)
    mon_buf_printf(b, "%.0f", v);
  else
    mon_buf_printf(b, "%.4f", v);
}

static void http_uptime(char *out, size_t cap, int64_t ms) {
  int64_t s = ms / 1000;
  if (s >= 86400)
    snprintf(out, cap, "%lldd %lldh", (long long)(s / 86400),
             (long long)(s % 86400 / 3600));
  else if (s >= 3600)
    snprintf(out, cap, "%lldh %lldm", (long long)(s / 3600),
             (long long)(s % 3600 / 60));
  else if (s >= 60)
    snprintf(out, cap, "%lldm %llds", (long long)(s / 60), (long long)(s % 60));
  else
    snprintf(out, cap, "%llds", (long long)s);
}

mon_reader *mon_http_reader(mon_http *h) {
  if (!h->reader)
    mon_reader_open(h->o->db_path, &h->reader);
  return h->reader;
}

int mon_http_find(const mon_http *h, const char *name) {
  const mon_config *cfg = h->cfg;
  for (size_t i = 0; i < cfg->nservices; i++)
    if (!strcmp(cfg->services[i].name, name))
      return (int)i;
  return -1;
}

mon_view *mon_http_views(mon_http *h) {
  size_t n = h->cfg->nservices;
  mon_view *v = mon__calloc(n ? n : 1, sizeof *v);
  if (v) /* a reload since the request began: no numbers, this once */
    mon_shared_get(h->o->shared, h->cfg_ref, v);
  return v;
}

/* Takes the published config for the request about to be served. */
static int http_take_config(mon_http *h) {
  mon_config_ref *r = mon_shared_config(h->o->shared);
  if (!r)
    return -1;
  if (h->cfg_ref)
    mon_shared_release(h->o->shared, h->cfg_ref);
  h->cfg_ref = r;
  h->cfg = &r->cfg;
  return 0;
}

/* The stream a route names: "stdout", "stderr", or NULL for both. */
static const char *http_stream(const mon_route *rt) {
  return rt->stream == 0 ? "stdout" : rt->stream == 1 ? "stderr" : NULL;
}

/* The banner of a failing store: what SQLite said and since when. The
 * dashboard's script replaces it live (the "monitor" event). */
static void http_store_banner(mon_buf *b, const mon_store_status *st) {
  if (!st || st->ok)
    return;
  char t[32];
  time_t secs = (time_t)(st->since_ms / 1000);
  struct tm tm;
  localtime_r(&secs, &tm);
  strftime(t, sizeof t, "%Y-%m-%d %H:%M:%S", &tm);
  mon_buf_printf(b,
                 "<div class=\"banner\" id=\"store-banner\" role=\"alert\" "
                 "data-since-ms=\"%lld\">The metrics store cannot be "
                 "written since <span class=\"since\">%s</span>: <b "
                 "class=\"error\">",
                 (long long)st->since_ms, t);
  mon_buf_html(b, st->error, strlen(st->error));
  mon_buf_puts(b, "</b>. Services are still supervised; samples and log "
                  "lines are not saved until it recovers.</div>");
}

void mon_http_store_json(mon_buf *b, const mon_store_status *st) {
  mon_buf_printf(b, "{\"ok\":%s,\"error\":", st->ok ? "true" : "false");
  if (st->ok)
    mon_buf_puts(b, "null");
  else
    mon_buf_json(b, st->error, strlen(st->error));
  mon_buf_puts(b, ",\"since_ms\":");
  if (st->ok)
    mon_buf_puts(b, "null");
  else
    mon_buf_printf(b, "%lld", (long long)st->since_ms);
  mon_buf_puts(b, "}");
}

void mon_http_head(mon_buf *b, const char *title, bool refresh,
                   const mon_session *sess, const mon_store_status *store) {
  mon_buf_puts(b, "<!doctype html><html lang=\"en\"><head>"
                  "<meta charset=\"utf-8\">");
  if (refresh) /* the scripts update the page in place; this is without */
    mon_buf_printf(b,
                   "<noscript><meta http-equiv=\"refresh\" content=\"%d\">"
                   "</noscript>",
                   HTTP_REFRESH_S);
  if (sess)
    mon_buf_printf(b, "<meta name=\"csrf\" content=\"%s\">", sess->csrf);
  mon_buf_puts(b, "<title>");
  mon_buf_html(b, title, strlen(title));
  mon_buf_puts(b, "</title><link rel=\"stylesheet\" href=\"/static/style.css\">"
                  "<script src=\"/static/dashboard.js\" defer></script>"
                  "</head><body><header><a class=\"home\" href=\"/\">"
                  "svc-monitor</a>");
  char t[32];
  int64_t now = mon_http_now_ms();
  time_t secs = (time_t)(now / 1000);
  struct tm tm;
  localtime_r(&secs, &tm);
  strftime(t, sizeof t, "%Y-%m-%d %H:%M:%S", &tm);
  mon_buf_printf(b, "<span class=\"now\"><span id=\"clock\">%s</span>", t);
  if (sess)
    mon_buf_printf(b,
                   " &middot; <form class=\"inline\" method=\"post\" "
                   "action=\"/api/reload\"><input type=\"hidden\" "
                   "name=\"csrf\" value=\"%s\"><input type=\"hidden\" "
                   "name=\"back\" value=\"/\"><button class=\"link\" "
                   "title=\"Re-read the config and apply what changed\">"
                   "Reload config</button></form>"
                   " &middot; <form class=\"inline\" method=\"post\" "
                   "action=\"/logout\"><input type=\"hidden\" name=\"csrf\" "
                   "value=\"%s\"><button class=\"link\">Sign out</button>"
                   "</form>",
                   sess->csrf, sess->csrf);
  else
    mon_buf_puts(b, " &middot; <a href=\"/login\">Sign in</a>");
  mon_buf_puts(b, "</span></header><main>");
  http_store_banner(b, store);
}

/* Series arrays for one range of one service, NaN where unknown. */
typedef struct http_series {
  mon_point *pts;
  size_t n;
  int64_t *ts;
  double *cpu, *rss, *pss, *rd, *wr;
  mon_tier tier;
} http_series;

static void http_series_free(http_series *s) {
  free(s->pts);
  free(s->ts);
  free(s->cpu);
  free(s->rss);
  free(s->pss);
  free(s->rd);
  free(s->wr);
  memset(s, 0, sizeof *s);
}

static int http_series_load(mon_http *h, const char *name, int64_t from,
                            int64_t to, size_t max_points, http_series *s) {
  memset(s, 0, sizeof *s);
  mon_reader *r = mon_http_reader(h);
  if (!r || mon_reader_series(r, name, from, to, h->cfg->sample_interval_ms,
                              max_points, &s->pts, &s->n, &s->tier) != 0)
    return -1;
  size_t n = s->n ? s->n : 1;
  s->ts = mon__malloc(n * sizeof *s->ts);
  s->cpu = mon__malloc(n * sizeof(double));
  s->rss = mon__malloc(n * sizeof(double));
  s->pss = mon__malloc(n * sizeof(double));
  s->rd = mon__malloc(n * sizeof(double));
  s->wr = mon__malloc(n * sizeof(double));
  if (!s->ts || !s->cpu || !s->rss || !s->pss || !s->rd || !s->wr) {
    http_series_free(s);
    return -1;
  }
  for (size_t i = 0; i < s->n; i++) {
    const mon_point *p = &s->pts[i];
    s->ts[i] = p->ts_ms;
    s->cpu[i] = p->cpu_valid ? p->cpu_pct : NAN;
    s->rss[i] = p->rss;
    s->pss[i] = p->pss > 0 ? p->pss : NAN;
    s->rd[i] = p->read_bps;
    s->wr[i] = p->write_bps;
  }
  return 0;
}

static int64_t http_gap(const mon_http *h, const http_series *s) {
  int64_t res = s->tier == MON_TIER_RAW  ? h->cfg->sample_interval_ms
                : s->tier == MON_TIER_1M ? 60000
                                         : 3600000;
  if (s->n >= 2) {
    int64_t step = (s->ts[s->n - 1] - s->ts[0]) / (int64_t)(s->n - 1);
    if (step > res)
      res = step;
  }
  return res * 3 + 1000;
}

static const char *const http_state_class[MON_NSTATES] = {
    "stopped", "waiting",  "starting", "running",
    "backoff", "stopping", "exited",   "fatal"};

static const char *http_health_name(int health) {
  return health == MON_HEALTH_PASSING   ? "passing"
         : health == MON_HEALTH_FAILING ? "failing"
                                        : "unknown";
}

/* The health cell: "-" without a probe, else the verdict, and while
 * failing how often in a row and why. */
static void http_health_html(mon_buf *b, const mon_service_cfg *s,
                             const mon_view *w) {
  if (!s->health) {
    mon_buf_puts(b, "-");
    return;
  }
  mon_buf_printf(b, "<span class=\"health %s\">%s</span>",
                 http_health_name(w->health), http_health_name(w->health));
  if (w->health == MON_HEALTH_FAILING) {
    mon_buf_printf(b, " <small>%d&times;: ", w->health_fails);
    mon_buf_html(b, w->health_why, strlen(w->health_why));
    mon_buf_puts(b, "</small>");
  }
}

static void http_size(char *out, size_t cap, long long bytes) {
  mon_fmt_value(out, cap, (double)bytes, MON_U_BYTES);
}

/* memory_max 512 MiB, cpu_max 150%, ...: the limits a service runs with. */
static void http_limits_html(mon_buf *b, const mon_service_cfg *s) {
  char v[32];
  bool any = false;
  if (s->memory_max) {
    http_size(v, sizeof v, s->memory_max);
    mon_buf_printf(b, "memory_max %s", v);
    any = true;
  }
  if (s->cpu_max) {
    mon_buf_printf(b, "%scpu_max %d%% of a core", any ? " &middot; " : "",
                   s->cpu_max);
    any = true;
  }
  if (s->max_memory_restart) {
    http_size(v, sizeof v, s->max_memory_restart);
    mon_buf_printf(b, "%smax_memory_restart %s", any ? " &middot; " : "", v);
    any = true;
  }
  const struct {
    const char *key;
    long long value;
  } rl[] = {{"rlimit_nofile", s->rlimit_nofile},
            {"rlimit_core", s->rlimit_core}};
  for (size_t k = 0; k < 2; k++) {
    if (rl[k].value == MON_RLIMIT_UNSET)
      continue;
    if (rl[k].value == MON_RLIMIT_INFINITY)
      snprintf(v, sizeof v, "unlimited");
    else
      snprintf(v, sizeof v, "%lld", rl[k].value);
    mon_buf_printf(b, "%s%s %s", any ? " &middot; " : "", rl[k].key, v);
    any = true;
  }
  if (!any)
    mon_buf_puts(b, "none");
}

/* ---- pages ---- */

/* ---- method statistics (libsvc services) ---- */

#define HTTP_METHOD_WINDOW_MS 300000 /* the tables cover the last 5 minutes */

static void http_ns(char *out, size_t cap, double ns) {
  mon_fmt_value(out, cap, ns, MON_U_NS);
}

/* "Top methods" across services (name NULL) or one service's methods. */
static void http_methods_html(mon_http *h, mon_buf *b, const char *name,
                              int64_t now) {
  mon_reader *r = mon_http_reader(h);
  mon_method_row *rows = NULL;
  size_t n = 0;
  if (!r || mon_reader_method_top(r, name, now - HTTP_METHOD_WINDOW_MS, now,
                                  name ? 200 : 10, &rows, &n) != 0) {
    mon_buf_puts(b, "<p class=\"none\">cannot read method statistics</p>");
    return;
  }
  if (n == 0) {
    mon_buf_puts(b, "<p class=\"none\">no calls in the last 5 minutes "
                    "(only libsvc services report methods)</p>");
    return;
  }
  mon_buf_puts(b, "<table class=\"services methods\"><thead><tr>");
  if (!name)
    mon_buf_puts(b, "<th>Service</th><th>Method</th><th>Calls</th>"
                    "<th>Total time</th><th>Average</th><th>p99</th>");
  else
    mon_buf_puts(b, "<th>Method</th><th>Calls/s</th><th>Errors</th>"
                    "<th>p50</th><th>p99</th><th>Bytes in</th>"
                    "<th>Bytes out</th><th>Total time</th>");
  mon_buf_puts(b, "</tr></thead><tbody>");
  for (size_t i = 0; i < n; i++) {
    const mon_method_row *m = &rows[i];
    char tot[32], avg[32], p50[32] = "-", p99[32] = "-";
    http_ns(tot, sizeof tot, (double)m->total_ns);
    http_ns(avg, sizeof avg,
            m->calls ? (double)m->total_ns / (double)m->calls : NAN);
    if (m->pct_valid) {
      http_ns(p50, sizeof p50, (double)m->p50_ns);
      http_ns(p99, sizeof p99, (double)m->p99_ns);
    }
    mon_buf_puts(b, "<tr>");
    if (!name) {
      mon_buf_puts(b, "<td><a href=\"/service/");
      mon_buf_html(b, m->service, strlen(m->service));
      mon_buf_puts(b, "\">");
      mon_buf_html(b, m->service, strlen(m->service));
      mon_buf_puts(b, "</a></td>");
    }
    mon_buf_puts(b, "<td><code>");
    mon_buf_html(b, m->method, strlen(m->method));
    mon_buf_puts(b, "</code></td>");
    if (!name) {
      mon_buf_printf(b,
                     "<td class=\"num\">%lld</td><td class=\"num\">%s</td>"
                     "<td class=\"num\">%s</td><td class=\"num\">%s</td>",
                     (long long)m->calls, tot, avg, p99);
    } else {
      char in[32], out[32];
      mon_fmt_value(in, sizeof in, (double)m->bytes_in, MON_U_BYTES);
      mon_fmt_value(out, sizeof out, (double)m->bytes_out, MON_U_BYTES);
      mon_buf_printf(b,
                     "<td class=\"num\">%.1f</td><td class=\"num\">%lld</td>"
                     "<td class=\"num\">%s</td><td class=\"num\">%s</td>"
                     "<td class=\"num\">%s</td><td class=\"num\">%s</td>"
                     "<td class=\"num\">%s</td>",
                     (double)m->calls / (HTTP_METHOD_WINDOW_MS / 1000.0),
                     (long long)m->errors, p50, p99, in, out, tot);
    }
    mon_buf_puts(b, "</tr>");
  }
  mon_buf_puts(b, "</tbody></table>");
  mon_method_rows_free(rows, n);
}

/* p50/p99 over the last 5 minutes of a service's busiest methods (by
 * total time), one chart each. */
static void http_method_charts(mon_http *h, mon_buf *b, const char *name,
                               int64_t now) {
  mon_reader *r = mon_http_reader(h);
  mon_method_row *top = NULL, *pts = NULL;
  size_t ntop = 0, npts = 0;
  int64_t from = now - HTTP_METHOD_WINDOW_MS;
  if (!r || mon_reader_method_top(r, name, from, now, 3, &top, &ntop) != 0)
    return;
  if (ntop &&
      mon_reader_method_points(r, name, from, now, 100000, &pts, &npts) == 0) {
    int64_t *ts = mon__malloc((npts ? npts : 1) * sizeof *ts);
    double *v50 = mon__malloc((npts ? npts : 1) * sizeof *v50);
    double *v99 = mon__malloc((npts ? npts : 1) * sizeof *v99);
    mon_buf_puts(b, "<div class=\"charts\">");
    for (size_t k = 0; k < ntop && ts && v50 && v99; k++) {
      size_t n = 0;
      for (size_t i = 0; i < npts; i++) {
        if (strcmp(pts[i].method, top[k].method) != 0)
          continue;
        ts[n] = pts[i].ts_ms;
        v50[n] = pts[i].pct_valid ? (double)pts[i].p50_ns : NAN;
        v99[n] = pts[i].pct_valid ? (double)pts[i].p99_ns : NAN;
        n++;
      }
      char title[MON_STATS_NAME_MAX + 16];
      snprintf(title, sizeof title, "%s latency", top[k].method);
      mon_chart ch = {.width = 420,
                      .height = 150,
                      .from = from,
                      .to = now,
                      .gap_ms = h->cfg->sample_interval_ms * 3 + 1000,
                      .unit = MON_U_NS,
                      .title = title};
      mon_series ser[2] = {{ts, v50, n, "#2563eb", "p50"},
                           {ts, v99, n, "#dc2626", "p99"}};
      mon_svg_chart(b, &ch, ser, 2);
    }
    mon_buf_puts(b, "</div>");
    free(ts);
    free(v50);
    free(v99);
  }
  mon_method_rows_free(top, ntop);
  mon_method_rows_free(pts, npts);
}

/* "2: 101 102", or "-" without children: the count, then each pid. */
static void http_workers_html(mon_buf *b, const mon_view *w) {
  if (w->nworkers <= 0) {
    mon_buf_puts(b, "-");
    return;
  }
  mon_buf_printf(b, "%d:<small>", w->nworkers);
  int shown = w->nworkers < MON_WORKERS_MAX ? w->nworkers : MON_WORKERS_MAX;
  for (int k = 0; k < shown; k++)
    mon_buf_printf(b, " %d", w->workers[k]);
  if (shown < w->nworkers)
    mon_buf_puts(b, " &hellip;");
  mon_buf_puts(b, "</small>");
}

static enum MHD_Result http_index(mon_http *h, struct MHD_Connection *c) {
  const mon_config *cfg = h->cfg;
  mon_view *v = mon_http_views(h);
  if (!v)
    return mon_http_error(c, 500, "out of memory");
  mon_buf b = {0};
  mon_session *sess = mon_http_session(h, c);
  mon_store_status store;
  mon_shared_get_store(h->o->shared, &store);
  mon_http_head(&b, "svc-monitor", true, sess, &store);
  mon_buf_puts(&b, "<h1>Services</h1><table class=\"services\"><thead><tr>"
                   "<th>Service</th><th>State</th><th>PID</th>"
                   "<th>Processes</th><th>Workers</th><th>Uptime</th>"
                   "<th>Restarts</th><th>Health</th>"
                   "<th>CPU</th><th>Memory (RSS)</th><th>CPU, last 5 min</th>");
  if (sess)
    mon_buf_puts(&b, "<th>Control</th>");
  mon_buf_puts(&b, "</tr></thead><tbody id=\"services\">");
  int64_t now = mon_http_now_ms();
  for (size_t i = 0; i < cfg->nservices; i++) {
    const mon_service_cfg *s = &cfg->services[i];
    const mon_view *w = &v[i];
    char up[32] = "-", cpu[32] = "-", mem[32] = "-";
    if (w->started_wall_ms && w->pid)
      http_uptime(up, sizeof up, now - w->started_wall_ms);
    if (w->pid && w->cpu_valid)
      mon_fmt_value(cpu, sizeof cpu, w->cpu_pct, MON_U_PERCENT);
    char pss[32] = "";
    if (w->pid && w->nprocs) {
      mon_fmt_value(mem, sizeof mem, (double)w->rss_bytes, MON_U_BYTES);
      if (w->pss_valid) {
        char v[24];
        mon_fmt_value(v, sizeof v, (double)w->pss_bytes, MON_U_BYTES);
        snprintf(pss, sizeof pss, "PSS %s", v);
      }
    }
    /* names are [A-Za-z0-9._-]: safe in an attribute as they are */
    mon_buf_printf(&b, "<tr data-service=\"%s\"><td><a href=\"/service/",
                   s->name);
    mon_buf_html(&b, s->name, strlen(s->name));
    mon_buf_puts(&b, "\">");
    mon_buf_html(&b, s->name, strlen(s->name));
    mon_buf_printf(&b, "</a></td><td><span class=\"state %s\">%s</span></td>",
                   http_state_class[w->state], mon_state_name(w->state));
    if (w->pid) {
      mon_buf_printf(&b,
                     "<td class=\"pid\">%d</td><td class=\"nprocs\">%d</td>"
                     "<td class=\"workers\">",
                     w->pid, w->nprocs);
      http_workers_html(&b, w);
      mon_buf_puts(&b, "</td>");
    } else {
      mon_buf_puts(&b, "<td class=\"pid\">-</td><td class=\"nprocs\">-</td>"
                       "<td class=\"workers\">-</td>");
    }
    mon_buf_printf(&b,
                   "<td class=\"uptime\">%s</td><td class=\"restarts\">%d"
                   "</td><td class=\"health\">",
                   up, w->restarts);
    http_health_html(&b, s, w);
    mon_buf_printf(&b,
                   "</td><td class=\"num cpu\">%s</td>"
                   "<td class=\"num mem\"><span class=\"rss\">%s</span><br>"
                   "<small class=\"pss\">%s</small></td><td class=\"spark\">",
                   cpu, mem, pss);
    http_series se;
    if (http_series_load(h, s->name, now - 300000, now, 150, &se) == 0) {
      mon_chart ch = {.width = 160,
                      .height = 28,
                      .from = now - 300000,
                      .to = now,
                      .gap_ms = http_gap(h, &se),
                      .unit = MON_U_PERCENT};
      mon_series ser = {se.ts, se.cpu, se.n, "#2563eb", NULL};
      mon_svg_chart(&b, &ch, &ser, 1);
      http_series_free(&se);
    }
    mon_buf_puts(&b, "</td>");
    if (sess) {
      mon_buf_puts(&b, "<td>");
      mon_http_buttons(&b, s->name, sess, "/");
      mon_buf_puts(&b, "</td>");
    }
    mon_buf_puts(&b, "</tr>");
  }
  mon_buf_puts(&b, "</tbody></table><h2>Top methods, last 5 minutes</h2>");
  http_methods_html(h, &b, NULL, now);
  mon_buf_puts(&b, "<p class=\"hint\">JSON: <a href=\""
                   "/api/services\">/api/services</a> &middot; Prometheus: "
                   "<a href=\"/metrics\">/metrics</a> &middot; the monitor: "
                   "<a href=\"/api/monitor\">/api/monitor</a></p></main>"
                   "</body></html>");
  free(v);
  return mon_http_send(c, 200, "text/html; charset=utf-8", &b);
}

static void http_rows_html(mon_buf *b, const mon_row *rows, size_t n,
                           bool kind_col) {
  mon_buf_puts(b, "<table class=\"rows\">");
  for (size_t i = 0; i < n; i++) {
    char t[32];
    time_t secs = (time_t)(rows[i].ts_ms / 1000);
    struct tm tm;
    localtime_r(&secs, &tm);
    strftime(t, sizeof t, "%m-%d %H:%M:%S", &tm);
    mon_buf_printf(b, "<tr><td class=\"ts\">%s</td>", t);
    if (kind_col) {
      mon_buf_puts(b, "<td class=\"kind\">");
      mon_buf_html(b, rows[i].a, strlen(rows[i].a));
      mon_buf_puts(b, "</td>");
    }
    mon_buf_puts(b, "<td class=\"line\">");
    mon_buf_html(b, rows[i].b, strlen(rows[i].b));
    mon_buf_puts(b, "</td></tr>");
  }
  if (n == 0)
    mon_buf_puts(b, "<tr><td class=\"none\">nothing yet</td></tr>");
  mon_buf_puts(b, "</table>");
}

/* Characters (UTF-8 code points) in s. */
static size_t http_chars(const char *s) {
  size_t n = 0;
  for (; *s; s++)
    n += ((unsigned char)*s & 0xC0) != 0x80;
  return n;
}

/* The search box, and with q= the lines that contain it. */
static void http_search_html(mon_http *h, mon_buf *b, const mon_route *rt) {
  mon_buf_printf(b,
                 "<h2>Search the logs</h2><form class=\"search\" "
                 "method=\"get\" action=\"/service/%s\"><input type=\"search\" "
                 "name=\"q\" maxlength=\"%d\" placeholder=\"text in a line\" "
                 "value=\"",
                 rt->name, MON_QUERY_MAX);
  if (rt->has_q)
    mon_buf_html(b, rt->q, strlen(rt->q));
  mon_buf_puts(b, "\"> <select name=\"stream\"><option value=\"both\">both"
                  "</option><option value=\"stdout\">stdout</option>"
                  "<option value=\"stderr\">stderr</option></select> "
                  "<button>Search</button></form>");
  if (!rt->has_q)
    return;
  mon_reader *r = mon_http_reader(h);
  mon_row *rows = NULL;
  size_t n = 0;
  int64_t t0 = mon_http_now_ms();
  if (!r || mon_reader_log_search(r, rt->name, rt->q, http_stream(rt),
                                  rt->has_from ? rt->from : 0,
                                  rt->has_to ? rt->to : INT64_MAX, 200, &rows,
                                  &n) != 0) {
    mon_buf_puts(b, "<p class=\"none\">cannot search the store</p>");
    return;
  }
  mon_buf_printf(
      b, "<p class=\"hint\">%zu line%s%s (newest first, %lld ms)%s</p>", n,
      n == 1 ? "" : "s", n == 200 ? " or more" : "",
      (long long)(mon_http_now_ms() - t0),
      http_chars(rt->q) < 3 ? "; under 3 characters, only the newest "
                              "50 000 lines are searched"
                            : "");
  http_rows_html(b, rows, n, true);
  mon_rows_free(rows, n);
}

static enum MHD_Result http_service(mon_http *h, struct MHD_Connection *c,
                                    const mon_route *rt) {
  int i = mon_http_find(h, rt->name);
  if (i < 0)
    return mon_http_error(c, 404, "no such service");
  const mon_service_cfg *s = &h->cfg->services[i];
  mon_view *v = mon_http_views(h);
  if (!v)
    return mon_http_error(c, 500, "out of memory");
  const mon_view *w = &v[i];
  mon_buf b = {0};
  mon_session *sess = mon_http_session(h, c);
  mon_store_status store;
  mon_shared_get_store(h->o->shared, &store);
  mon_http_head(&b, s->name, true, sess, &store);
  int64_t now = mon_http_now_ms();
  char up[32] = "-", cpu[32] = "-", rss[32] = "-", pss[32] = "-";
  if (w->started_wall_ms && w->pid)
    http_uptime(up, sizeof up, now - w->started_wall_ms);
  if (w->pid && w->cpu_valid)
    mon_fmt_value(cpu, sizeof cpu, w->cpu_pct, MON_U_PERCENT);
  if (w->pid) {
    mon_fmt_value(rss, sizeof rss, (double)w->rss_bytes, MON_U_BYTES);
    if (w->pss_valid)
      mon_fmt_value(pss, sizeof pss, (double)w->pss_bytes, MON_U_BYTES);
  }
  mon_buf_printf(&b, "<h1 data-service=\"%s\">", s->name);
  mon_buf_html(&b, s->name, strlen(s->name));
  mon_buf_printf(&b, " <span class=\"state %s\">%s</span>",
                 http_state_class[w->state], mon_state_name(w->state));
  if (sess) {
    char back[MON_NAME_MAX + 16];
    snprintf(back, sizeof back, "/service/%s", s->name);
    mon_http_buttons(&b, s->name, sess, back);
  }
  mon_buf_puts(&b, "</h1>");
  mon_buf_puts(&b, "<table class=\"facts\"><tr><th>Command</th><td><code>");
  mon_buf_html(&b, s->command, strlen(s->command));
  mon_buf_puts(&b, "</code></td></tr>");
  if (w->pid) {
    mon_buf_printf(&b,
                   "<tr><th>PID</th><td>%d (%d processes)</td></tr>"
                   "<tr><th>Workers</th><td>",
                   w->pid, w->nprocs);
    http_workers_html(&b, w);
    mon_buf_puts(&b, "</td></tr>");
  }
  if (s->port)
    mon_buf_printf(&b, "<tr><th>Port</th><td>%d</td></tr>", s->port);
  if (s->ndeps) {
    mon_buf_puts(&b, "<tr><th>Depends on</th><td>");
    for (size_t d = 0; d < s->ndeps; d++) /* valid names: safe in HTML */
      mon_buf_printf(&b, "%s<a href=\"/service/%s\">%s</a>", d ? ", " : "",
                     s->depends_on[d], s->depends_on[d]);
    mon_buf_puts(&b, "</td></tr>");
  }
  if (s->health) {
    mon_buf_puts(&b, "<tr><th>Health</th><td class=\"health\">");
    http_health_html(&b, s, w);
    mon_buf_puts(&b, " <small>(<code>");
    mon_buf_html(&b, s->health_text, strlen(s->health_text));
    mon_buf_printf(&b,
                   "</code> every %d ms, restart after %d failures)"
                   "</small></td></tr>",
                   s->health_interval_ms, s->health_failures);
  }
  mon_buf_puts(&b, "<tr><th>Limits</th><td>");
  http_limits_html(&b, s);
  mon_buf_puts(&b, "</td></tr>");
  mon_buf_printf(&b,
                 "<tr><th>Uptime</th><td>%s</td></tr>"
                 "<tr><th>Restarts</th><td>%d</td></tr>"
                 "<tr><th>CPU</th><td>%s</td></tr>"
                 "<tr><th>Memory</th><td>RSS %s &middot; PSS %s</td></tr>"
                 "</table>",
                 up, w->restarts, cpu, rss, pss);

  /* the logs first: what a person watching a service reads most */
  mon_reader *r = mon_http_reader(h);
  static const char *const streams[] = {"stdout", "stderr"};
  for (int k = 0; k < 2; k++) {
    mon_row *rows = NULL;
    size_t n = 0;
    /* the script replaces the table with the live tail (logs/stream) */
    mon_buf_printf(&b,
                   "<h2>Latest %s <button class=\"pause\" hidden "
                   "data-stream=\"%s\">Pause</button></h2>"
                   "<div class=\"log\" data-stream=\"%s\">",
                   streams[k], streams[k], streams[k]);
    if (r && mon_reader_logs(r, s->name, streams[k], 50, &rows, &n) == 0)
      http_rows_html(&b, rows, n, false);
    else
      mon_buf_puts(&b, "<p class=\"none\">cannot read the store</p>");
    mon_rows_free(rows, n);
    mon_buf_puts(&b, "</div>");
  }
  http_search_html(h, &b, rt);

  static const struct {
    const char *label;
    int64_t span;
  } ranges[] = {{"Last 5 minutes", 300000},
                {"Last hour", 3600000},
                {"Last 24 hours", 86400000}};
  for (size_t k = 0; k < 3; k++) {
    int64_t from = now - ranges[k].span;
    mon_buf_printf(&b, "<h2>%s</h2><div class=\"charts\">", ranges[k].label);
    http_series se;
    if (http_series_load(h, s->name, from, now, HTTP_MAX_POINTS, &se) != 0) {
      mon_buf_puts(&b, "<p class=\"none\">cannot read the store</p></div>");
      continue;
    }
    mon_chart ch = {.width = 420,
                    .height = 150,
                    .from = from,
                    .to = now,
                    .gap_ms = http_gap(h, &se)};
    ch.unit = MON_U_PERCENT;
    ch.title = "CPU (100% = one core)";
    mon_series cpu_s = {se.ts, se.cpu, se.n, "#2563eb", "cpu"};
    mon_svg_chart(&b, &ch, &cpu_s, 1);
    ch.unit = MON_U_BYTES;
    ch.title = "Memory";
    mon_series mem_s[2] = {{se.ts, se.rss, se.n, "#16a34a", "rss"},
                           {se.ts, se.pss, se.n, "#9333ea", "pss"}};
    mon_svg_chart(&b, &ch, mem_s, 2);
    ch.unit = MON_U_BPS;
    ch.title = "Disk IO";
    mon_series io_s[2] = {{se.ts, se.rd, se.n, "#ea580c", "read"},
                          {se.ts, se.wr, se.n, "#0891b2", "write"}};
    mon_svg_chart(&b, &ch, io_s, 2);
    mon_buf_puts(&b, "</div>");
    http_series_free(&se);
  }

  mon_buf_puts(&b, "<h2>Methods, last 5 minutes</h2>");
  http_methods_html(h, &b, s->name, now);
  http_method_charts(h, &b, s->name, now);

  mon_row *rows = NULL;
  size_t n = 0;
  mon_buf_puts(&b, "<h2>Events</h2>");
  if (r && mon_reader_events(r, s->name, 30, &rows, &n) == 0)
    http_rows_html(&b, rows, n, true);
  else
    mon_buf_puts(&b, "<p class=\"none\">cannot read the store</p>");
  mon_rows_free(rows, n);
  mon_buf_puts(&b, "</main></body></html>");
  free(v);
  return mon_http_send(c, 200, "text/html; charset=utf-8", &b);
}

/* ---- JSON + Prometheus ---- */

void mon_http_workers_json(mon_buf *b, const mon_view *w) {
  int nw = w->pid ? w->nworkers : 0;
  mon_buf_printf(b, ",\"workers\":%d,\"worker_pids\":[", nw);
  for (int k = 0; k < nw && k < MON_WORKERS_MAX; k++)
    mon_buf_printf(b, k ? ",%d" : "%d", w->workers[k]);
  mon_buf_puts(b, "]");
}

void mon_http_line_json(mon_buf *b, int64_t ts_ms, const char *stream,
                        const char *line, size_t len) {
  mon_buf_printf(b, "{\"ts_ms\":%lld,\"stream\":", (long long)ts_ms);
  mon_buf_json(b, stream, strlen(stream));
  mon_buf_puts(b, ",\"line\":");
  mon_buf_json(b, line, len); /* escaped: a line is never markup */
  mon_buf_puts(b, "}");
}

void mon_http_health_json(mon_buf *b, const mon_service_cfg *s,
                          const mon_view *w, bool probe) {
  mon_buf_puts(b, ",\"health\":");
  if (!s->health) {
    mon_buf_puts(b, "null");
    return;
  }
  mon_buf_printf(b, "{\"state\":\"%s\",\"failures\":%d,\"reason\":",
                 http_health_name(w->health), w->health_fails);
  mon_buf_json(b, w->health_why, strlen(w->health_why));
  if (probe) {
    mon_buf_puts(b, ",\"probe\":");
    mon_buf_json(b, s->health_text, strlen(s->health_text));
  }
  mon_buf_puts(b, "}");
}

static void http_view_json(mon_buf *b, const mon_service_cfg *s,
                           const mon_view *w, int64_t now) {
  mon_buf_puts(b, "{\"name\":");
  mon_buf_json(b, s->name, strlen(s->name));
  mon_buf_printf(b, ",\"state\":\"%s\",\"pid\":", mon_state_name(w->state));
  if (w->pid)
    mon_buf_printf(b, "%d", w->pid);
  else
    mon_buf_puts(b, "null");
  mon_buf_puts(b, ",\"port\":");
  if (s->port)
    mon_buf_printf(b, "%d", s->port);
  else
    mon_buf_puts(b, "null");
  mon_buf_puts(b, ",\"command\":");
  mon_buf_json(b, s->command, strlen(s->command));
  mon_buf_printf(b, ",\"nprocs\":%d,\"restarts\":%d,\"uptime_s\":",
                 w->pid ? w->nprocs : 0, w->restarts);
  http_json_num(b, (double)(now - w->started_wall_ms) / 1000.0,
                w->pid && w->started_wall_ms);
  mon_buf_puts(b, ",\"cpu_pct\":");
  http_json_num(b, w->cpu_pct, w->pid && w->cpu_valid);
  mon_buf_puts(b, ",\"rss_bytes\":");
  http_json_num(b, (double)w->rss_bytes, w->pid && w->nprocs);
  mon_buf_puts(b, ",\"pss_bytes\":");
  http_json_num(b, (double)w->pss_bytes, w->pid && w->pss_valid);
  mon_buf_printf(b, ",\"read_bytes_total\":%llu,\"write_bytes_total\":%llu",
                 (unsigned long long)w->read_total,
                 (unsigned long long)w->write_total);
  mon_http_workers_json(b, w);
  mon_buf_puts(b, ",\"depends_on\":[");
  for (size_t d = 0; d < s->ndeps; d++)
    mon_buf_printf(b, "%s\"%s\"", d ? "," : "", s->depends_on[d]);
  mon_buf_puts(b, "]");
  mon_http_health_json(b, s, w, true);
  mon_buf_puts(b, ",\"limits\":{\"memory_max\":");
  http_json_num(b, (double)s->memory_max, s->memory_max > 0);
  mon_buf_puts(b, ",\"cpu_max_pct\":");
  http_json_num(b, s->cpu_max, s->cpu_max > 0);
  mon_buf_puts(b, ",\"max_memory_restart\":");
  http_json_num(b, (double)s->max_memory_restart, s->max_memory_restart > 0);
  mon_buf_puts(b, "}}");
}

static enum MHD_Result http_api_services(mon_http *h,
                                         struct MHD_Connection *c) {
  const mon_config *cfg = h->cfg;
  mon_view *v = mon_http_views(h);
  if (!v)
    return mon_http_error(c, 500, "out of memory");
  int64_t now = mon_http_now_ms();
  mon_buf b = {0};
  mon_buf_puts(&b, "{\"services\":[");
  for (size_t i = 0; i < cfg->nservices; i++) {
    if (i)
      mon_buf_puts(&b, ",");
    http_view_json(&b, &cfg->services[i], &v[i], now);
  }
  mon_buf_puts(&b, "]}\n");
  free(v);
  return mon_http_send(c, 200, "application/json", &b);
}

/* GET /api/monitor: the monitor itself (uptime in seconds) and whether
 * its store is being written. */
static enum MHD_Result http_api_monitor(mon_http *h, struct MHD_Connection *c) {
  mon_store_status store;
  mon_shared_get_store(h->o->shared, &store);
  int64_t up_ms = mon_http_now_ms() - h->o->shared->started_wall_ms;
  const char *version = svc_version();
  mon_buf b = {0};
  mon_buf_puts(&b, "{\"version\":");
  mon_buf_json(&b, version, strlen(version));
  mon_buf_printf(&b, ",\"uptime\":%.3f,\"store\":",
                 (double)(up_ms > 0 ? up_ms : 0) / 1000.0);
  mon_http_store_json(&b, &store);
  mon_buf_puts(&b, "}\n");
  return mon_http_send(c, 200, "application/json", &b);
}

/* The [from, to) a metrics route asks for (default: the last 5 minutes)
 * for an existing service: 0, or the HTTP status to answer with *why. */
static int http_window(mon_http *h, const mon_route *rt, int64_t *from,
                       int64_t *to, const char **why) {
  if (mon_http_find(h, rt->name) < 0) {
    *why = "no such service";
    return 404;
  }
  *to = rt->has_to ? rt->to : mon_http_now_ms();
  *from = rt->has_from ? rt->from : *to - 300000;
  if (*from >= *to) {
    *why = "from must be before to";
    return 400;
  }
  return 0;
}

static enum MHD_Result http_api_metrics(mon_http *h, struct MHD_Connection *c,
                                        const mon_route *rt) {
  int64_t from, to;
  const char *why;
  int status = http_window(h, rt, &from, &to, &why);
  if (status)
    return mon_http_error(c, status, why);
  mon_reader *r = mon_http_reader(h);
  mon_point *pts = NULL;
  size_t n = 0;
  mon_tier tier = MON_TIER_RAW;
  if (!r || mon_reader_series(r, rt->name, from, to, h->cfg->sample_interval_ms,
                              1000, &pts, &n, &tier) != 0)
    return mon_http_error(c, 500, "cannot read the store");
  static const char *const tiers[] = {"samples", "samples_1m", "samples_1h"};
  mon_buf b = {0};
  mon_buf_puts(&b, "{\"service\":");
  mon_buf_json(&b, rt->name, strlen(rt->name));
  mon_buf_printf(&b, ",\"from\":%lld,\"to\":%lld,\"tier\":\"%s\",\"points\":[",
                 (long long)from, (long long)to, tiers[tier]);
  for (size_t i = 0; i < n; i++) {
    const mon_point *p = &pts[i];
    mon_buf_printf(&b, "%s{\"ts_ms\":%lld,\"cpu_pct\":", i ? "," : "",
                   (long long)p->ts_ms);
    http_json_num(&b, p->cpu_pct, p->cpu_valid);
    mon_buf_puts(&b, ",\"cpu_pct_max\":");
    http_json_num(&b, p->cpu_max, p->cpu_valid);
    mon_buf_printf(&b, ",\"rss_bytes\":%.0f,\"rss_max\":%.0f,\"pss_bytes\":",
                   p->rss, p->rss_max);
    http_json_num(&b, p->pss, p->pss > 0);
    mon_buf_printf(&b, ",\"read_bps\":%.1f,\"write_bps\":%.1f,\"nprocs\":%.2f}",
                   p->read_bps, p->write_bps, p->nprocs);
  }
  mon_buf_puts(&b, "]}\n");
  free(pts);
  return mon_http_send(c, 200, "application/json", &b);
}

static void http_method_json(mon_buf *b, const mon_method_row *m) {
  if (m->ts_ms)
    mon_buf_printf(b, "{\"ts_ms\":%lld,\"method\":", (long long)m->ts_ms);
  else
    mon_buf_puts(b, "{\"method\":");
  mon_buf_json(b, m->method, strlen(m->method));
  mon_buf_printf(b,
                 ",\"calls\":%lld,\"errors\":%lld,\"bytes_in\":%lld,"
                 "\"bytes_out\":%lld,\"total_ns\":%lld,\"p50_ns\":",
                 (long long)m->calls, (long long)m->errors,
                 (long long)m->bytes_in, (long long)m->bytes_out,
                 (long long)m->total_ns);
  http_json_num(b, (double)m->p50_ns, m->pct_valid);
  mon_buf_puts(b, ",\"p99_ns\":");
  http_json_num(b, (double)m->p99_ns, m->pct_valid);
  mon_buf_puts(b, "}");
}

#define HTTP_METHOD_POINTS_MAX 10000

/* Per-method sums over [from, to) and the per-interval rows, oldest first
 * (at most HTTP_METHOD_POINTS_MAX; "truncated" says there were more). */
static enum MHD_Result http_api_methods(mon_http *h, struct MHD_Connection *c,
                                        const mon_route *rt) {
  int64_t from, to;
  const char *why;
  int status = http_window(h, rt, &from, &to, &why);
  if (status)
    return mon_http_error(c, status, why);
  mon_reader *r = mon_http_reader(h);
  mon_method_row *sum = NULL, *pts = NULL;
  size_t nsum = 0, npts = 0;
  if (!r ||
      mon_reader_method_top(r, rt->name, from, to, 10000, &sum, &nsum) != 0 ||
      mon_reader_method_points(r, rt->name, from, to,
                               HTTP_METHOD_POINTS_MAX + 1, &pts, &npts) != 0) {
    mon_method_rows_free(sum, nsum);
    return mon_http_error(c, 500, "cannot read the store");
  }
  bool truncated = npts > HTTP_METHOD_POINTS_MAX;
  mon_buf b = {0};
  mon_buf_puts(&b, "{\"service\":");
  mon_buf_json(&b, rt->name, strlen(rt->name));
  mon_buf_printf(&b, ",\"from\":%lld,\"to\":%lld,\"methods\":[",
                 (long long)from, (long long)to);
  for (size_t i = 0; i < nsum; i++) {
    if (i)
      mon_buf_puts(&b, ",");
    http_method_json(&b, &sum[i]);
  }
  mon_buf_printf(&b, "],\"truncated\":%s,\"points\":[",
                 truncated ? "true" : "false");
  for (size_t i = 0; i < npts && i < HTTP_METHOD_POINTS_MAX; i++) {
    if (i)
      mon_buf_puts(&b, ",");
    http_method_json(&b, &pts[i]);
  }
  mon_buf_puts(&b, "]}\n");
  mon_method_rows_free(sum, nsum);
  mon_method_rows_free(pts, npts);
  return mon_http_send(c, 200, "application/json", &b);
}

static enum MHD_Result http_api_logs(mon_http *h, struct MHD_Connection *c,
                                     const mon_route *rt) {
  if (mon_http_find(h, rt->name) < 0)
    return mon_http_error(c, 404, "no such service");
  mon_reader *r = mon_http_reader(h);
  mon_row *rows = NULL;
  size_t n = 0;
  int rc =
      !r ? -1
      : rt->has_q
          ? mon_reader_log_search(r, rt->name, rt->q, http_stream(rt),
                                  rt->has_from ? rt->from : 0,
                                  rt->has_to ? rt->to : INT64_MAX, rt->tail,
                                  &rows, &n)
          : mon_reader_logs(r, rt->name, http_stream(rt), rt->tail, &rows, &n);
  if (rc != 0)
    return mon_http_error(c, 500, "cannot read the store");
  mon_buf b = {0};
  mon_buf_puts(&b, "{\"service\":");
  mon_buf_json(&b, rt->name, strlen(rt->name));
  mon_buf_puts(&b, ",\"lines\":[");
  for (size_t i = 0; i < n; i++) {
    if (i)
      mon_buf_puts(&b, ",");
    mon_http_line_json(&b, rows[i].ts_ms, rows[i].a, rows[i].b,
                       strlen(rows[i].b));
  }
  mon_buf_puts(&b, "]}\n");
  mon_rows_free(rows, n);
  return mon_http_send(c, 200, "application/json", &b);
}

static enum MHD_Result http_control(mon_http *h, struct MHD_Connection *c,
                                    const mon_route *rt,
                                    const http_request *rq) {
  const char *why;
  int status = mon_http_post_allowed(h, c, rq, &why);
  if (status)
    return mon_http_error(c, (unsigned)status, why);
  int i = mon_http_find(h, rt->name);
  if (i < 0)
    return mon_http_error(c, 404, "no such service");
  if (mon_shared_push(h->o->shared, rt->name, rt->action) != 0)
    return mon_http_error(c, 503, "too many pending requests");
  if (rq->back[0]) /* a form without JavaScript: back to its page */
    return mon_http_redirect(c, mon_local_path_ok(rq->back) ? rq->back : "/",
                             NULL);
  static const char *const names[] = {"start", "stop", "restart"};
  mon_buf b = {0};
  mon_buf_puts(&b, "{\"ok\":true,\"service\":");
  mon_buf_json(&b, rt->name, strlen(rt->name));
  mon_buf_printf(&b, ",\"action\":\"%s\"}\n", names[rt->action]);
  return mon_http_send(c, 202, "application/json", &b);
}

/* POST /api/reload: the file is parsed here, so an error (file:line) is
 * the answer; a good config goes to the loop, which applies the difference
 * (services that changed or left are stopped first; see monitor.c). */
static enum MHD_Result http_reload(mon_http *h, struct MHD_Connection *c,
                                   const http_request *rq) {
  const char *why;
  int status = mon_http_post_allowed(h, c, rq, &why);
  if (status)
    return mon_http_error(c, (unsigned)status, why);
  mon_config *cur = mon__calloc(1, sizeof *cur);
  if (!cur)
    return mon_http_error(c, 500, "out of memory");
  char err[512];
  if (mon_config_load(h->cfg->path, cur, err, sizeof err) != 0) {
    free(cur);
    fprintf(stderr, "svc-monitor: reload refused, nothing changed: %s\n", err);
    if (rq->back[0])
      return mon_http_error(c, 400, err);
    mon_buf b = {0};
    mon_buf_puts(&b, "{\"ok\":false,\"error\":");
    mon_buf_json(&b, err, strlen(err));
    mon_buf_puts(&b, "}\n");
    return mon_http_send(c, 400, "application/json", &b);
  }
  mon_reload_plan plan;
  char *diff = NULL;
  if (mon_reload_plan_make(h->cfg, cur, &plan) == 0) {
    diff = mon_reload_plan_json(&plan, h->cfg, cur);
    mon_reload_plan_fini(&plan);
  }
  mon_shared_push_reload(h->o->shared, cur); /* the loop owns it now */
  if (rq->back[0]) {
    free(diff);
    return mon_http_redirect(c, mon_local_path_ok(rq->back) ? rq->back : "/",
                             NULL);
  }
  mon_buf b = {0};
  mon_buf_printf(&b, "{\"ok\":true,\"plan\":%s}\n", diff ? diff : "null");
  free(diff);
  return mon_http_send(c, 202, "application/json", &b);
}

/* ---- dispatch ---- */

typedef struct http_args {
  mon_route *r;
  int status;
} http_args;

static enum MHD_Result http_arg(void *cls, enum MHD_ValueKind kind,
                                const char *key, const char *value) {
  (void)kind;
  http_args *a = cls;
  int st = mon_route_arg(a->r, key, value);
  if (st != 200)
    a->status = st;
  return MHD_YES;
}

static enum MHD_Result http_asset(struct MHD_Connection *c, const char *type,
                                  const char *p, size_t n) {
  mon_buf b = {0};
  mon_buf_add(&b, p, n);
  return mon_http_send(c, 200, type, &b);
}

static enum MHD_Result http_handler(void *cls, struct MHD_Connection *c,
                                    const char *url, const char *method,
                                    const char *version,
                                    const char *upload_data,
                                    size_t *upload_data_size, void **con_cls) {
  (void)version;
  mon_http *h = cls;
  http_request *rq = *con_cls;
  if (!rq) { /* headers only so far */
    rq = mon__calloc(1, sizeof *rq);
    if (!rq) /* an answer, not a dropped connection: it may be queued now */
      return mon_http_error(c, 500, "out of memory");
    *con_cls = rq;
    return MHD_YES;
  }
  if (*upload_data_size) /* a POST body: its form fields, bounded */
    return mon_http_form_feed(c, rq, upload_data, upload_data_size);
  const char *host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Host");
  if (!mon_http_host_ok(h->o->cfg->http_host, mon_http_port(h), host))
    return mon_http_error(c, 403, "Host not allowed (DNS rebinding guard)");
  if (rq->form_bad)
    return mon_http_error(c, 413, "form too large");
  if (http_take_config(h) != 0)
    return mon_http_error(c, 503, "starting");
  mon_route r;
  int st = mon_route_parse(method, url, &r);
  if (st == 404)
    return mon_http_error(c, 404, "not found");
  if (st == 405)
    return mon_http_error(c, 405, "method not allowed");
  http_args a = {&r, 200};
  MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, http_arg, &a);
  if (a.status != 200)
    return mon_http_error(c, 400, "bad query argument");
  switch (r.kind) {
  case MON_R_INDEX:
    return http_index(h, c);
  case MON_R_SERVICE:
    return http_service(h, c, &r);
  case MON_R_API_SERVICES:
    return http_api_services(h, c);
  case MON_R_API_MONITOR:
    return http_api_monitor(h, c);
  case MON_R_API_METRICS:
    return http_api_metrics(h, c, &r);
  case MON_R_API_LOGS:
    return http_api_logs(h, c, &r);
  case MON_R_API_METHODS:
    return http_api_methods(h, c, &r);
  case MON_R_PROMETHEUS:
    return mon_http_prometheus(h, c);
  case MON_R_CONTROL:
    return http_control(h, c, &r, rq);
  case MON_R_LOGIN:
    return mon_http_login(h, c, &r, rq);
  case MON_R_LOGOUT:
    return mon_http_logout(h, c, rq);
  case MON_R_EVENTS:
    return mon_http_events(h, c);
  case MON_R_LOG_STREAM:
    return mon_http_log_stream(h, c, &r);
  case MON_R_RELOAD:
    return http_reload(h, c, rq);
  case MON_R_STYLE:
    return http_asset(c, "text/css; charset=utf-8", mon_asset_style_css,
                      mon_asset_style_css_len);
  case MON_R_SCRIPT:
    return http_asset(c, "text/javascript; charset=utf-8",
                      mon_asset_dashboard_js, mon_asset_dashboard_js_len);
  }
  return mon_http_error(c, 404, "not found");
}

static void http_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                           enum MHD_RequestTerminationCode toe) {
  (void)cls;
  (void)c;
  (void)toe;
  mon_http_request_free(*con_cls);
  *con_cls = NULL;
}

int mon_http_start(const mon_http_opts *o, mon_http **out, char *err,
                   size_t errlen) {
  mon_http *h = mon__calloc(1, sizeof *h);
  if (!h) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  h->o = o;
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_port = htons((uint16_t)o->cfg->http_port)};
  inet_pton(AF_INET, o->cfg->http_host, &sa.sin_addr);
  /* The live streams are held to MON_SSE_MAX by the hub; the connection
   * limits leave room for the JSON API and /metrics beside them. */
  h->d = MHD_start_daemon(
      MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG | MHD_USE_AUTO |
          MHD_ALLOW_SUSPEND_RESUME,
      0, NULL, NULL, http_handler, h, MHD_OPTION_SOCK_ADDR,
      (const struct sockaddr *)&sa, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)15,
      MHD_OPTION_NOTIFY_COMPLETED, http_completed, NULL,
      MHD_OPTION_CONNECTION_LIMIT, (unsigned)(64 + MON_SSE_MAX),
      MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)(32 + MON_SSE_MAX),
      MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024),
      MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)64, MHD_OPTION_END);
  if (!h->d) {
    snprintf(err, errlen, "cannot serve HTTP on %s:%d (address in use?)",
             o->cfg->http_host, o->cfg->http_port);
    free(h);
    return -1;
  }
  const union MHD_DaemonInfo *di =
      MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
  /* atomic: the MHD thread reads it, and may already be running */
  __atomic_store_n(&h->port, di ? di->port : o->cfg->http_port,
                   __ATOMIC_RELEASE);
  *out = h;
  return 0;
}

int mon_http_port(const mon_http *h) {
  return __atomic_load_n(&h->port, __ATOMIC_ACQUIRE);
}

void mon_http_stop(mon_http *h) {
  if (!h)
    return;
  if (h->o->hub)
    mon_sse_drop_all(h->o->hub); /* no stream stays suspended */
  MHD_stop_daemon(h->d);
  mon_reader_close(h->reader);
  if (h->cfg_ref)
    mon_shared_release(h->o->shared, h->cfg_ref);
  free(h);
}

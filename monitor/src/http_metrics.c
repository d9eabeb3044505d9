/* http_metrics.c — GET /metrics: the Prometheus text exposition of every
 * service's state and resources (from the snapshot), of its health probe,
 * and of the per-method RPC totals (metrics.c). Version 0.0.4 of the text
 * format: every family once, with HELP and TYPE, its samples together. */
#include "http_internal.h"

#include <stdlib.h>

#include "mon_sys.h"

enum MHD_Result mon_http_prometheus(mon_http *h, struct MHD_Connection *c) {
  const mon_config *cfg = h->cfg; /* the request's: a reload renumbers */
  mon_view *v = mon_http_views(h);
  const char **names = mon__calloc(cfg->nservices + 1, sizeof *names);
  if (!v || !names) {
    free(v);
    free(names);
    return mon_http_error(c, 500, "out of memory");
  }
  int64_t now = mon_http_now_ms();
  mon_buf b = {0};
  static const struct {
    const char *name, *type, *help;
  } m[] = {
      {"svc_up", "gauge", "1 if the service is RUNNING"},
      {"svc_state", "gauge", "1 for the service's current state"},
      {"svc_cpu_percent", "gauge", "CPU of the process tree, 100 = one core"},
      {"svc_rss_bytes", "gauge", "resident memory of the process tree"},
      {"svc_pss_bytes", "gauge", "proportional set size of the process tree"},
      {"svc_processes", "gauge", "processes in the service's tree"},
      {"svc_uptime_seconds", "gauge", "seconds since the current run started"},
      {"svc_restarts_total", "counter", "restarts since the monitor started"},
      {"svc_read_bytes_total", "counter", "bytes read from storage"},
      {"svc_write_bytes_total", "counter", "bytes written to storage"},
  };
  for (size_t k = 0; k < sizeof m / sizeof m[0]; k++) {
    mon_buf_printf(&b, "# HELP %s %s\n# TYPE %s %s\n", m[k].name, m[k].help,
                   m[k].name, m[k].type);
    for (size_t i = 0; i < cfg->nservices; i++) {
      const mon_view *w = &v[i];
      const char *name = cfg->services[i].name; /* [A-Za-z0-9._-] only */
      double val;
      switch (k) {
      case 0:
        val = w->state == MON_RUNNING;
        break;
      case 1:
        mon_buf_printf(&b, "svc_state{service=\"%s\",state=\"%s\"} 1\n", name,
                       mon_state_name(w->state));
        continue;
      case 2:
        if (!w->pid || !w->cpu_valid)
          continue;
        val = w->cpu_pct;
        break;
      case 3:
        val = w->pid ? (double)w->rss_bytes : 0;
        break;
      case 4:
        if (!w->pid || !w->pss_valid)
          continue;
        val = (double)w->pss_bytes;
        break;
      case 5:
        val = w->pid ? w->nprocs : 0;
        break;
      case 6:
        val = w->pid && w->started_wall_ms
                  ? (double)(now - w->started_wall_ms) / 1000.0
                  : 0;
        break;
      case 7:
        val = w->restarts;
        break;
      case 8:
        val = (double)w->read_total;
        break;
      default:
        val = (double)w->write_total;
        break;
      }
      mon_buf_printf(&b, "%s{service=\"%s\"} %.15g\n", m[k].name, name, val);
    }
  }
  /* health = probes only: a service without one has no such series, and
   * one not probed yet (or stopped) is not up */
  mon_buf_puts(&b, "# HELP svc_health_up 1 if the last health probe passed\n"
                   "# TYPE svc_health_up gauge\n");
  for (size_t i = 0; i < cfg->nservices; i++)
    if (cfg->services[i].health != MON_HEALTH_NONE)
      mon_buf_printf(&b, "svc_health_up{service=\"%s\"} %d\n",
                     cfg->services[i].name,
                     v[i].health == MON_HEALTH_PASSING ? 1 : 0);
  for (size_t i = 0; i < cfg->nservices; i++)
    names[i] = cfg->services[i].name;
  mon_metrics_render(h->o->metrics, names, cfg->nservices, &b);
  free(names);
  free(v);
  return mon_http_send(c, 200, "text/plain; version=0.0.4; charset=utf-8", &b);
}

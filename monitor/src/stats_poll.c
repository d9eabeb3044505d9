/* stats_poll.c — the svc.stats poller thread. The loop hands it the main
 * pids each tick; it calls every libsvc service in turn, keeps the previous
 * snapshot as the baseline and queues the difference as method rows, which
 * it also adds to the Prometheus totals. A failed parse gives no rows; a
 * snapshot of a new run counts from zero, so a restart loses no calls. */
#include "stats_poll.h"

#include "bgthread.h"
#include "mon_sys.h"
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <svc.h>
#include <time.h>

#define POLL_ROWS_MAX                                                          \
  100000 /* queued rows nobody takes: keep memory bounded                      \
          */

typedef struct poll_svc {
  char name[MON_NAME_MAX + 1];
  int pid;       /* the main pid the client was opened for, 0 = none */
  svc_client *c; /* kept open between rounds */
  mon_stats_doc base;
  bool have_base;
  int64_t run_start_ms; /* when base's run started (monotonic, estimated) */
  bool complained;      /* a failure was logged; quiet until a success */
} poll_svc;

typedef char poll_name[MON_NAME_MAX + 1];

struct mon_stats_poller {
  int timeout_ms;
  mon_metrics *metrics; /* may be NULL */
  mon_bgthread bg;      /* bg.mu guards what the loop shares, down to out */
  bool pending;         /* a round was asked for */
  poll_name *names;     /* the services as the loop numbers them now */
  int *want;            /* per names[]: main pid, 0 = not a target now */
  size_t n;
  bool remap; /* svc[] does not follow names[] yet (a reconfigure) */
  bool stale; /* a reconfigure ran out of memory: numbering unknown */
  mon_method_result *out;
  size_t nout, capout;
  poll_svc *svc; /* the thread's own: one per names[] once remapped */
  size_t nsvc;
};

static int64_t poll_clock_ms(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void poll_close(poll_svc *s) {
  if (s->c)
    svc_client_close(s->c);
  s->c = NULL;
  s->pid = 0;
}

static void poll_forget(poll_svc *s) {
  poll_close(s);
  if (s->have_base)
    mon_stats_doc_free(&s->base);
  s->have_base = false;
}

static void poll_complain(poll_svc *s, const char *what) {
  if (!s->complained)
    fprintf(stderr, "svc-monitor: %s: svc.stats: %s (no method rows)\n",
            s->name, what);
  s->complained = true;
}

/* The built-ins are mostly the monitor's own probes (one svc.stats per
 * tick): rows and series of them would only crowd out the service's
 * methods. */
static bool poll_builtin(const char *method) {
  return strncmp(method, "svc.", 4) == 0;
}

/* The index of name in names[0..n), or -1. */
static long poll_index(poll_name *names, size_t n, const char *name) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(names[i], name) == 0)
      return (long)i;
  return -1;
}

/* Queues rows under the lock, numbered as the loop numbers services now;
 * drops them if the service went or the loop stopped taking. */
static void poll_emit(mon_stats_poller *p, const poll_svc *s, int64_t ts,
                      const mon_method_delta *d, int n) {
  pthread_mutex_lock(&p->bg.mu);
  long at = p->stale ? -1 : poll_index(p->names, p->n, s->name);
  for (int k = 0; at >= 0 && k < n; k++) {
    if (poll_builtin(d[k].name))
      continue;
    if (p->nout == p->capout) {
      size_t cap = p->capout ? p->capout * 2 : 64;
      if (cap > POLL_ROWS_MAX)
        break;
      mon_method_result *no = mon__realloc(p->out, cap * sizeof *no);
      if (!no)
        break;
      p->out = no;
      p->capout = cap;
    }
    mon_method_result *r = &p->out[p->nout++];
    r->service = (size_t)at;
    r->ts_ms = ts;
    r->d = d[k];
    snprintf(r->name, sizeof r->name, "%s", d[k].name);
    r->d.name = NULL; /* fixed up on take: the array may move */
  }
  pthread_mutex_unlock(&p->bg.mu);
}

/* The same intervals into the Prometheus totals, with each method's
 * histogram of the interval (prev NULL: a new run, from zero). */
static void poll_feed(mon_stats_poller *p, poll_svc *s,
                      const mon_stats_doc *prev, const mon_stats_doc *cur,
                      const mon_method_delta *d, int n) {
  if (!p->metrics)
    return;
  for (int k = 0; k < n; k++) {
    if (poll_builtin(d[k].name))
      continue;
    const mon_method_stat *c = &cur->methods[d[k].index];
    const mon_method_stat *pm =
        prev ? mon_stats_find(prev, d[k].index, c->name) : NULL;
    mon_hist_pair *h = NULL;
    size_t nh = 0;
    /* a side without its histogram would make a wrong difference */
    if (c->has_hist && c->nhist && (!pm || pm->has_hist) &&
        (h = mon__malloc(c->nhist * sizeof *h)) != NULL)
      nh = mon_stats_hist_delta(pm, c, h);
    if (mon_metrics_add(p->metrics, s->name, &d[k], nh ? h : NULL, nh) != 0)
      poll_complain(s, "too many methods for /metrics");
    free(h);
  }
}

static void poll_one(mon_stats_poller *p, poll_svc *s, int pid) {
  /* a new main pid: the old connection is dead, a fresh one reaches the
   * new server. The baseline stays: mon_stats_same_run tells runs apart */
  if (pid != s->pid)
    poll_close(s);
  s->pid = pid;
  if (!s->c) {
    char url[128];
    snprintf(url, sizeof url, "shm://%s", s->name);
    if (svc_client_open(url, &s->c) != 0) {
      s->c = NULL;
      return; /* not up yet, or gone: try again next round */
    }
    svc_client_set_timeout(s->c, p->timeout_ms);
  }
  const void *resp;
  size_t len;
  int rc = svc_call(s->c, "svc.stats", "histogram", 9, &resp, &len);
  int64_t now = poll_clock_ms(CLOCK_MONOTONIC);
  int64_t ts = poll_clock_ms(CLOCK_REALTIME);
  if (rc != 0) {
    /* a timed-out call may answer late: start a fresh connection */
    svc_client_close(s->c);
    s->c = NULL;
    if (rc == SVC_ENOMETHOD || rc == SVC_ESTATE)
      poll_complain(s, svc_strerror(rc));
    return;
  }
  mon_stats_doc doc;
  char err[128];
  if (mon_stats_parse(resp, len, &doc, err, sizeof err) != 0) {
    poll_complain(s, err);
    return; /* keep the old baseline: the next good reply is compared */
  }
  s->complained = false;
  /* Restarts: libsvc's counters begin again with each run. A snapshot of
   * a run the baseline is not from counts from zero: every run is one the
   * monitor started (it stops leftovers of its last life first), so all
   * its calls happened since the monitor started. The calls of the old
   * run after its last snapshot are the only ones never seen. */
  int64_t start = now - doc.uptime_ms;
  bool same = s->have_base &&
              mon_stats_same_run(&s->base, s->run_start_ms, &doc, start);
  const mon_stats_doc *prev = same ? &s->base : NULL;
  mon_method_delta *d =
      mon__malloc((doc.nmethods ? doc.nmethods : 1) * sizeof *d);
  int n = d ? mon_stats_delta_run(prev, &doc, d) : -1;
  if (n > 0) {
    poll_emit(p, s, ts, d, n);
    poll_feed(p, s, prev, &doc, d, n);
  }
  free(d);
  if (n < 0 && same) {
    /* out of memory: the next reply is compared with this baseline */
    mon_stats_doc_free(&doc);
    return;
  }
  /* the earliest estimate is the best: a late reply only adds to it */
  s->run_start_ms = same && s->run_start_ms < start ? s->run_start_ms : start;
  if (s->have_base)
    mon_stats_doc_free(&s->base);
  s->base = doc;
  s->have_base = true;
}

/* Under mu: svc[] follows names[], moving each service's state by name and
 * forgetting those that went (and their Prometheus totals). */
static int poll_apply(mon_stats_poller *p) {
  poll_svc *ns = mon__calloc(p->n ? p->n : 1, sizeof *ns);
  if (!ns)
    return -1; /* tried again before the next round */
  for (size_t j = 0; j < p->n; j++) {
    for (size_t i = 0; i < p->nsvc; i++)
      if (p->svc[i].name[0] && strcmp(p->svc[i].name, p->names[j]) == 0) {
        ns[j] = p->svc[i];
        p->svc[i].name[0] = '\0'; /* moved */
        break;
      }
    snprintf(ns[j].name, sizeof ns[j].name, "%s", p->names[j]);
  }
  for (size_t i = 0; i < p->nsvc; i++)
    if (p->svc[i].name[0])
      poll_forget(&p->svc[i]);
  free(p->svc);
  p->svc = ns;
  p->nsvc = p->n;
  p->remap = false;
  if (p->metrics) {
    const char **keep = mon__calloc(p->n ? p->n : 1, sizeof *keep);
    if (keep) {
      for (size_t j = 0; j < p->n; j++)
        keep[j] = p->names[j];
      mon_metrics_retain(p->metrics, keep, p->n);
      free(keep);
    }
  }
  return 0;
}

static void *poll_main(void *arg) {
  mon_stats_poller *p = arg;
  int *pids = NULL;
  pthread_mutex_lock(&p->bg.mu);
  while (!p->bg.quit) {
    if (p->remap && poll_apply(p) != 0) {
      /* out of memory: wait for the next request and try again */
      pthread_cond_wait(&p->bg.cv, &p->bg.mu);
      continue;
    }
    if (!p->pending) {
      pthread_cond_wait(&p->bg.cv, &p->bg.mu);
      continue;
    }
    p->pending = false;
    size_t n = p->nsvc;
    int *np = mon__realloc(pids, (n ? n : 1) * sizeof *pids);
    if (!np)
      continue; /* the next request tries again */
    pids = np;
    memcpy(pids, p->want, n * sizeof *pids);
    pthread_mutex_unlock(&p->bg.mu);
    for (size_t i = 0; i < n; i++) {
      if (pids[i] > 0)
        poll_one(p, &p->svc[i], pids[i]);
      else
        poll_close(&p->svc[i]); /* not up: the baseline stays */
    }
    pthread_mutex_lock(&p->bg.mu);
  }
  pthread_mutex_unlock(&p->bg.mu);
  free(pids);
  return NULL;
}

/* Under mu (or before the thread runs): names[] and want[] for cfg, want
 * carried over by name; the old table is freed. */
static int poll_table(mon_stats_poller *p, const mon_config *cfg) {
  size_t n = cfg->nservices;
  poll_name *names = mon__calloc(n ? n : 1, sizeof *names);
  int *want = mon__calloc(n ? n : 1, sizeof *want);
  long *to = mon__calloc(p->n ? p->n : 1, sizeof *to); /* old index -> new */
  if (!names || !want || !to) {
    free(names);
    free(want);
    free(to);
    return -1;
  }
  for (size_t i = 0; i < p->n; i++)
    to[i] = -1;
  for (size_t j = 0; j < n; j++) {
    snprintf(names[j], sizeof names[j], "%s", cfg->services[j].name);
    long o = poll_index(p->names, p->n, names[j]);
    if (o >= 0) {
      want[j] = p->want[o];
      to[o] = (long)j;
    }
  }
  /* rows not taken yet follow the new numbering; those of services that
   * went are dropped */
  size_t kept = 0;
  for (size_t k = 0; k < p->nout; k++) {
    size_t i = p->out[k].service;
    if (i < p->n && to[i] >= 0) {
      p->out[kept] = p->out[k];
      p->out[kept++].service = (size_t)to[i];
    }
  }
  p->nout = kept;
  free(to);
  free(p->names);
  free(p->want);
  p->names = names;
  p->want = want;
  p->n = n;
  p->remap = true;
  p->stale = false;
  return 0;
}

mon_stats_poller *mon_stats_poller_new(const mon_config *cfg, int timeout_ms,
                                       mon_metrics *metrics) {
  mon_stats_poller *p = mon__calloc(1, sizeof *p);
  if (!p)
    return NULL;
  p->timeout_ms = timeout_ms;
  p->metrics = metrics;
  if (poll_table(p, cfg) != 0 || poll_apply(p) != 0)
    goto fail;
  if (mon_bgthread_start(&p->bg, poll_main, p) != 0)
    goto fail;
  return p;
fail:
  free(p->names);
  free(p->want);
  free(p->svc);
  free(p);
  return NULL;
}

void mon_stats_poller_free(mon_stats_poller *p) {
  if (!p)
    return;
  mon_bgthread_stop(&p->bg);
  for (size_t i = 0; i < p->nsvc; i++)
    poll_forget(&p->svc[i]);
  free(p->svc);
  free(p->names);
  free(p->want);
  free(p->out);
  free(p);
}

void mon_stats_poller_reconfigure(mon_stats_poller *p, const mon_config *cfg) {
  pthread_mutex_lock(&p->bg.mu);
  if (poll_table(p, cfg) != 0) {
    /* the old numbering would put rows on the wrong services: none
     * until a reconfigure succeeds */
    p->nout = 0;
    p->stale = true;
    fprintf(stderr, "svc-monitor: svc.stats: reload: out of memory\n");
  }
  pthread_cond_signal(&p->bg.cv); /* the thread remaps before its round */
  pthread_mutex_unlock(&p->bg.mu);
}

void mon_stats_poller_request(mon_stats_poller *p, const int *pids, size_t n) {
  pthread_mutex_lock(&p->bg.mu);
  for (size_t i = 0; i < n && i < p->n; i++)
    p->want[i] = pids[i];
  p->pending = true;
  pthread_cond_signal(&p->bg.cv);
  pthread_mutex_unlock(&p->bg.mu);
}

size_t mon_stats_poller_take(mon_stats_poller *p, mon_method_result **out) {
  pthread_mutex_lock(&p->bg.mu);
  size_t n = p->nout;
  *out = p->out;
  p->out = NULL;
  p->nout = p->capout = 0;
  pthread_mutex_unlock(&p->bg.mu);
  for (size_t k = 0; k < n; k++)
    (*out)[k].d.name = (*out)[k].name;
  return n;
}

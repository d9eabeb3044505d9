/* stats_poll.c — the svc.stats poller thread. The loop hands it the main
 * pids each tick; it calls every libsvc service in turn, keeps the previous
 * snapshot as the baseline and queues the difference as method rows. A new
 * main pid, a failed parse or a baseline that went backwards gives no rows,
 * never wrong ones. */
#include "stats_poll.h"

#include "bgthread.h"
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <svc.h>
#include <time.h>

typedef struct poll_svc {
  int want_pid;  /* requested: main pid, 0 = not a target now */
  int pid;       /* the main pid the baseline belongs to */
  svc_client *c; /* kept open between rounds */
  mon_stats_doc base;
  bool have_base;
  bool complained; /* a failure was logged; quiet until a success */
} poll_svc;

struct mon_stats_poller {
  const mon_config *cfg;
  int timeout_ms;
  mon_bgthread bg; /* bg.mu guards pending and want_pid */
  bool pending;
  poll_svc *svc; /* want_pid under mu; the rest owned by the thread */
  mon_method_result *out;
  size_t nout, capout;
};

static int64_t poll_wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void poll_forget(poll_svc *s) {
  if (s->c)
    svc_client_close(s->c);
  s->c = NULL;
  if (s->have_base)
    mon_stats_doc_free(&s->base);
  s->have_base = false;
  s->pid = 0;
}

static void poll_complain(const mon_config *cfg, size_t i, poll_svc *s,
                          const char *what) {
  if (!s->complained)
    fprintf(stderr, "svc-monitor: %s: svc.stats: %s (no method rows)\n",
            cfg->services[i].name, what);
  s->complained = true;
}

/* Queues rows under the lock; drops them if the loop stopped taking. */
static void poll_emit(mon_stats_poller *p, size_t i, int64_t ts,
                      const mon_method_delta *d, int n) {
  pthread_mutex_lock(&p->bg.mu);
  for (int k = 0; k < n; k++) {
    /* the built-ins are mostly the monitor's own probes (one svc.stats per
     * tick): rows of them would only crowd out the service's methods */
    if (strncmp(d[k].name, "svc.", 4) == 0)
      continue;
    if (p->nout == p->capout) {
      size_t cap = p->capout ? p->capout * 2 : 64;
      if (cap > 100000)
        break; /* nobody takes them: keep memory bounded */
      mon_method_result *no = realloc(p->out, cap * sizeof *no);
      if (!no)
        break;
      p->out = no;
      p->capout = cap;
    }
    mon_method_result *r = &p->out[p->nout++];
    r->service = i;
    r->ts_ms = ts;
    r->d = d[k];
    snprintf(r->name, sizeof r->name, "%s", d[k].name);
    r->d.name = NULL; /* fixed up on take: the array may move */
  }
  pthread_mutex_unlock(&p->bg.mu);
}

static void poll_one(mon_stats_poller *p, size_t i, int pid) {
  poll_svc *s = &p->svc[i];
  if (pid != s->pid)
    poll_forget(s); /* a new run: its counters start again */
  s->pid = pid;
  if (!s->c) {
    char url[128];
    snprintf(url, sizeof url, "shm://%s", p->cfg->services[i].name);
    if (svc_client_open(url, &s->c) != 0) {
      s->c = NULL;
      return; /* not up yet, or gone: try again next round */
    }
    svc_client_set_timeout(s->c, p->timeout_ms);
  }
  const void *resp;
  size_t len;
  int rc = svc_call(s->c, "svc.stats", "histogram", 9, &resp, &len);
  int64_t ts = poll_wall_ms();
  if (rc != 0) {
    /* a timed-out call may answer late: start a fresh connection */
    svc_client_close(s->c);
    s->c = NULL;
    if (rc == SVC_ENOMETHOD || rc == SVC_ESTATE)
      poll_complain(p->cfg, i, s, svc_strerror(rc));
    return;
  }
  mon_stats_doc doc;
  char err[128];
  if (mon_stats_parse(resp, len, &doc, err, sizeof err) != 0) {
    poll_complain(p->cfg, i, s, err);
    return; /* keep the old baseline: the next good reply is compared */
  }
  s->complained = false;
  if (s->have_base) {
    mon_method_delta *d = malloc((doc.nmethods ? doc.nmethods : 1) * sizeof *d);
    int n = d ? mon_stats_delta(&s->base, &doc, d) : -1;
    if (n > 0)
      poll_emit(p, i, ts, d, n);
    free(d);
    mon_stats_doc_free(&s->base);
  }
  s->base = doc;
  s->have_base = true;
}

static void *poll_main(void *arg) {
  mon_stats_poller *p = arg;
  size_t n = p->cfg->nservices;
  int *pids = calloc(n ? n : 1, sizeof *pids);
  pthread_mutex_lock(&p->bg.mu);
  while (!p->bg.quit && pids) {
    if (!p->pending) {
      pthread_cond_wait(&p->bg.cv, &p->bg.mu);
      continue;
    }
    p->pending = false;
    for (size_t i = 0; i < n; i++)
      pids[i] = p->svc[i].want_pid;
    pthread_mutex_unlock(&p->bg.mu);
    for (size_t i = 0; i < n; i++) {
      if (pids[i] > 0)
        poll_one(p, i, pids[i]);
      else if (p->svc[i].pid)
        poll_forget(&p->svc[i]);
    }
    pthread_mutex_lock(&p->bg.mu);
  }
  pthread_mutex_unlock(&p->bg.mu);
  free(pids);
  return NULL;
}

mon_stats_poller *mon_stats_poller_new(const mon_config *cfg, int timeout_ms) {
  mon_stats_poller *p = calloc(1, sizeof *p);
  if (!p)
    return NULL;
  p->cfg = cfg;
  p->timeout_ms = timeout_ms;
  p->svc = calloc(cfg->nservices ? cfg->nservices : 1, sizeof *p->svc);
  if (!p->svc) {
    free(p);
    return NULL;
  }
  if (mon_bgthread_start(&p->bg, poll_main, p) != 0) {
    free(p->svc);
    free(p);
    return NULL;
  }
  return p;
}

void mon_stats_poller_free(mon_stats_poller *p) {
  if (!p)
    return;
  mon_bgthread_stop(&p->bg);
  for (size_t i = 0; i < p->cfg->nservices; i++)
    poll_forget(&p->svc[i]);
  free(p->svc);
  free(p->out);
  free(p);
}

void mon_stats_poller_request(mon_stats_poller *p, const int *pids, size_t n) {
  pthread_mutex_lock(&p->bg.mu);
  for (size_t i = 0; i < n && i < p->cfg->nservices; i++)
    p->svc[i].want_pid = pids[i];
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

/* monitor.c — the event loop. Signals arrive through a signalfd (they are
 * blocked on every thread), control requests from the HTTP thread through
 * an eventfd, service output through nonblocking pipes; one poll() waits on
 * all of them with a timeout set by the next sampling tick or supervisor
 * deadline. Each sampling tick is one SQLite transaction. */
#include "monitor.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "alert.h"
#include "cgroup.h"
#include "health.h"
#include "http.h"
#include "logs.h"
#include "mon_sys.h"
#include "pidfile.h"
#include "probe.h"
#include "proc_sample.h"
#include "reload.h"
#include "spawn.h"
#include "stats_poll.h"
#include "store.h"
#include "supervisor.h"
#include "svcline.h"
#include "token.h"
#include "view.h"

#define MON_PROBE_TIMEOUT_MS 250
#define MON_STATS_TIMEOUT_MS 200 /* one svc.stats call */
/* events kept for the store while it cannot write (the newest) */
#define MON_EVENTS_HELD_MAX 1000

typedef struct mon_event_row {
  int64_t ts_ms;
  size_t service;
  char kind[16];
  char detail[128];
} mon_event_row;

typedef struct mon {
  const mon_config *cfg; /* &cref->cfg: the config running now */
  mon_config_ref *cref;  /* shared with the HTTP thread */
  const mon_run_opts *o;
  mon_sup sup;
  mon_logs logs;
  mon_store *store;
  mon_sampler *sampler;
  mon_shared shared;
  mon_http *http;
  mon_sse_hub *hub;        /* the dashboard's live streams */
  size_t logs_published;   /* pending log lines already sent to the hub */
  mon_prober *prober;      /* svc.ping off the loop's thread */
  mon_stats_poller *stats; /* svc.stats off the loop's thread */
  mon_metrics *metrics;    /* per-method totals for /metrics */
  mon_healther *health;    /* health = probes off the loop's thread */
  mon_alerter *alerts;     /* alert_webhook POSTs off the loop's thread */
  mon_cgroups *cgroups;    /* memory_max/cpu_max; NULL when unavailable */
  bool cgroups_tried;      /* set up (or warned about) once */
  mon_config *reload_cfg;  /* a reload waiting for services to stop */
  mon_reload_plan plan;    /* its difference from cfg */
  bool *reload_start;      /* [plan.nnew]: start after the swap */
  bool *reload_stop;       /* [plan.nold]: stopped for the reload */
  mon_command deferred[MON_QUEUE_MAX]; /* commands for those, after it */
  size_t ndeferred;
  mon_method_result *mres; /* method rows waiting for the next transaction */
  size_t nmres;
  mon_pidfile pidfile;
  char token[MON_TOKEN_LEN + 1];
  char *db_path;
  int sfd, devnull;
  int64_t *sids;       /* services.id per service */
  int *roots;          /* main pid per service, for the sampler */
  mon_sample *samples; /* the last tick */
  mon_view *views;     /* published to the HTTP thread */
  mon_event_row *ev;   /* events waiting for the next transaction */
  size_t nev, capev;
  bool stopping;                 /* SIGTERM/SIGINT received */
  bool pids_dirty;               /* the pidfile needs rewriting */
  mon_store_status store_status; /* the last transaction's fate, published */
} mon;

static uint64_t mon_mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int64_t mon_wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- supervisor ops ---- */

static int mon_op_spawn(void *ctx, size_t i) {
  mon *m = ctx;
  int out = mon_logs_pipe(&m->logs, i, MON_STDOUT);
  int err = mon_logs_pipe(&m->logs, i, MON_STDERR);
  int pid = -EMFILE;
  const mon_service_cfg *c = &m->cfg->services[i];
  int cg = -1;
  if (m->cgroups && (c->memory_max || c->cpu_max)) {
    char why[256];
    cg = mon_cgroups_prepare(m->cgroups, c, why, sizeof why);
    if (cg < 0) {
      char note[320];
      snprintf(note, sizeof note, "limits not applied: %s", why);
      mon_logs_note(&m->logs, i, mon_wall_ms(), note);
    }
  }
  if (out >= 0 && err >= 0)
    pid = mon_spawn_ex(c, out, err, m->devnull, cg);
  if (cg >= 0)
    close(cg);
  if (out >= 0)
    close(out);
  if (err >= 0)
    close(err);
  if (pid > 0) {
    m->views[i].started_wall_ms = mon_wall_ms();
    m->pids_dirty = true;
    mon_prober_reset(m->prober, i); /* a ping answered by the last run */
    mon_healther_reset(m->health, i);
  }
  return pid;
}

static void mon_op_signal(void *ctx, size_t i, int pid, int sig) {
  (void)ctx;
  (void)i;
  if (pid <= 0)
    return;
  if (kill(-pid, sig) != 0) /* not yet a group leader: just the process */
    kill(pid, sig);
}

static int mon_op_probe(void *ctx, size_t i) {
  mon *m = ctx;
  return mon_prober_poll(m->prober, i); /* never blocks */
}

static void mon_op_health_begin(void *ctx, size_t i) {
  mon *m = ctx;
  mon_healther_begin(m->health, i);
}

static int mon_op_health_take(void *ctx, size_t i, char *why, size_t len) {
  mon *m = ctx;
  return mon_healther_take(m->health, i, why, len);
}

/* Queues an events row for the next transaction. */
static void mon_event_push(mon *m, size_t i, int64_t now, const char *kind,
                           const char *detail) {
  if (m->nev == MON_EVENTS_HELD_MAX) { /* the store is failing: the oldest go */
    memmove(m->ev, m->ev + 1, (m->nev - 1) * sizeof *m->ev);
    m->nev--;
  }
  if (m->nev == m->capev) {
    size_t cap = m->capev ? m->capev * 2 : 64;
    mon_event_row *ne = mon__realloc(m->ev, cap * sizeof *ne);
    if (!ne)
      return;
    m->ev = ne;
    m->capev = cap;
  }
  mon_event_row *e = &m->ev[m->nev++];
  e->ts_ms = now;
  e->service = i;
  snprintf(e->kind, sizeof e->kind, "%s", kind);
  snprintf(e->detail, sizeof e->detail, "%s", detail);
}

static void mon_op_event(void *ctx, size_t i, const char *kind,
                         const char *detail) {
  mon *m = ctx;
  int64_t now = mon_wall_ms();
  mon_logs_note(&m->logs, i, now, detail);
  mon_event_push(m, i, now, kind, detail);
  mon_alerter_event(m->alerts, m->cfg->services[i].name, kind, detail, now);
  m->pids_dirty = true;
}

/* libsvc's worker master reports scaling and replaced workers on stderr,
 * one line each: they become `scale` and `worker` events. */
static void mon_scan_svclines(mon *m) {
  for (size_t k = 0; k < m->logs.npending; k++) {
    const mon_logline *l = &m->logs.pending[k];
    char kind[MON_SVCLINE_KIND_MAX], detail[MON_SVCLINE_DETAIL_MAX];
    if (l->stream == MON_STDERR &&
        mon_svcline_parse(l->line, l->len, kind, detail)) {
      mon_event_push(m, l->service, l->ts_ms, kind, detail);
    }
  }
}

static uint64_t mon_op_now(void *ctx) {
  (void)ctx;
  return mon_mono_ms();
}

/* ---- loop pieces ---- */

/* The store's health after a write: what failed (NULL: it was written).
 * A change is said once on stderr and published to /api/monitor and the
 * dashboard; failures in a row keep the time of the first. */
static void mon_store_health(mon *m, const char *what, int64_t now) {
  mon_store_status *st = &m->store_status;
  if (what) {
    const char *why = mon_store_error(m->store);
    if (st->ok)
      fprintf(stderr,
              "svc-monitor: store: %s failed: %s; supervision goes on, "
              "the next tick tries again\n",
              what, why);
    else if (!strcmp(st->error, why))
      return;
    if (st->ok)
      st->since_ms = now;
    st->ok = false;
    snprintf(st->error, sizeof st->error, "%s", why);
  } else {
    if (st->ok)
      return;
    fprintf(stderr, "svc-monitor: store: writing again after %.1f s\n",
            (double)(now - st->since_ms) / 1000.0);
    *st = (mon_store_status){.ok = true};
  }
  mon_shared_set_store(&m->shared, st);
  mon_http_publish_monitor(m->hub, st);
}

/* Lines captured since the last call go to the live log streams at once,
 * not with the next flush. */
static void mon_publish_logs(mon *m) {
  for (; m->logs_published < m->logs.npending; m->logs_published++) {
    const mon_logline *l = &m->logs.pending[m->logs_published];
    mon_http_publish_log(m->hub, m->sids[l->service], l->stream, l->ts_ms,
                         l->line, l->len);
  }
}

/* One transaction with everything pending: NULL once it is written, else
 * what failed (then nothing of it is). */
static const char *mon_write(mon *m, bool have_samples, int64_t now) {
  if (mon_store_begin(m->store) != 0)
    return "BEGIN";
  const char *what = NULL;
  /* a service row that a reload could not write: its rows need its id */
  for (size_t i = 0; i < m->cfg->nservices && !what; i++) {
    const mon_service_cfg *s = &m->cfg->services[i];
    if (!m->sids[i] && mon_store_service(m->store, s->name, s->port, s->command,
                                         &m->sids[i]) != 0)
      what = "service insert";
  }
  for (size_t i = 0; have_samples && i < m->cfg->nservices && !what; i++)
    if (m->samples[i].valid &&
        mon_store_sample(m->store, m->sids[i], now, &m->samples[i]) != 0)
      what = "sample insert";
  for (size_t k = 0; k < m->nmres && !what; k++) {
    const mon_method_result *r = &m->mres[k];
    if (mon_store_method(m->store, m->sids[r->service], r->ts_ms, &r->d) != 0)
      what = "method insert";
  }
  for (size_t k = 0; k < m->nev && !what; k++) {
    mon_event_row *e = &m->ev[k];
    if (mon_store_event(m->store, m->sids[e->service], e->ts_ms, e->kind,
                        e->detail) != 0)
      what = "event insert";
  }
  for (size_t k = 0; k < m->logs.npending && !what; k++) {
    mon_logline *l = &m->logs.pending[k];
    if (mon_store_log(m->store, m->sids[l->service], l->ts_ms,
                      l->stream ? "stderr" : "stdout", l->line, l->len) != 0)
      what = "log insert";
  }
  if (have_samples && !what &&
      mon_store_maintain(m->store, now, m->cfg->retention_days) != 0)
    what = "downsampling";
  if (what) {
    mon_store_rollback(m->store);
    return what;
  }
  return mon_store_commit(m->store) == 0 ? NULL : "COMMIT";
}

/* Writes pending events and log lines (and samples when have_samples). A
 * transaction that fails loses its samples, method rows and log lines (the
 * log files have them), not its events: they wait for the next one. */
static void mon_flush(mon *m, bool have_samples) {
  mon_publish_logs(m);
  int64_t now = mon_wall_ms();
  mon_scan_svclines(m);
  const char *failed = mon_write(m, have_samples, now);
  mon_store_health(m, failed, now);
  if (!failed)
    m->nev = 0;
  free(m->mres);
  m->mres = NULL;
  m->nmres = 0;
  mon_logs_clear_pending(&m->logs);
  m->logs_published = 0;
}

static void mon_sample_tick(mon *m) {
  size_t n = m->cfg->nservices;
  for (size_t i = 0; i < n; i++)
    m->roots[i] = m->sup.procs[i].pid;
  double secs = m->cfg->sample_interval_ms / 1000.0;
  if (mon_sampler_tick(m->sampler, mon_mono_ms(), m->roots, n, m->samples) != 0)
    memset(m->samples, 0, n * sizeof *m->samples);
  for (size_t i = 0; i < n; i++) {
    const mon_sample *s = &m->samples[i];
    mon_view *v = &m->views[i];
    /* a libsvc service reports its own scaling (mon_scan_svclines) */
    if (m->cfg->services[i].workers_max > 1 &&
        m->cfg->services[i].ready != MON_READY_PING &&
        m->sup.procs[i].pid > 0 && v->nprocs > 0 && s->nprocs > 0 &&
        s->nprocs != v->nprocs) {
      char d[64];
      snprintf(d, sizeof d, "processes %d -> %d", v->nprocs, s->nprocs);
      mon_op_event(m, i, "scale", d);
    }
    if (s->valid)
      mon_sup_memory(&m->sup, i, s->rss_bytes);
    v->nprocs = s->nprocs;
    v->nworkers = s->nworkers;
    memcpy(v->workers, s->workers, sizeof v->workers);
    v->cpu_valid = s->cpu_valid;
    v->cpu_pct = s->cpu_pct;
    v->rss_bytes = s->rss_bytes;
    v->pss_valid = s->pss_valid;
    v->pss_bytes = s->pss_bytes;
    v->read_total += s->read_bytes;
    v->write_total += s->write_bytes;
    v->read_bps = (double)s->read_bytes / secs;
    v->write_bps = (double)s->write_bytes / secs;
  }
  /* method statistics: rows of the last round in, the next round asked
   * for, of the services that answered svc.ping (libsvc speakers) */
  free(m->mres);
  m->nmres = mon_stats_poller_take(m->stats, &m->mres);
  for (size_t i = 0; i < n; i++)
    m->roots[i] = m->cfg->services[i].ready == MON_READY_PING &&
                          m->sup.procs[i].state == MON_RUNNING
                      ? m->sup.procs[i].pid
                      : 0;
  mon_stats_poller_request(m->stats, m->roots, n);
  mon_flush(m, true);
  mon_http_publish_sample(m->hub, m->cfg, m->views, mon_wall_ms());
}

static void mon_publish(mon *m) {
  int64_t now = mon_wall_ms();
  for (size_t i = 0; i < m->cfg->nservices; i++) {
    mon_view *v = &m->views[i];
    const mon_proc *p = &m->sup.procs[i];
    bool changed = v->state != p->state || v->pid != p->pid ||
                   v->restarts != p->restarts || v->health != (int)p->health;
    v->sid = m->sids[i];
    v->state = p->state;
    v->pid = p->pid;
    v->restarts = p->restarts;
    v->health = (int)p->health; /* UNKNOWN for a service without a probe */
    v->health_fails = p->health_fails;
    snprintf(v->health_why, sizeof v->health_why, "%s", p->health_why);
    if (!p->pid) {
      v->started_wall_ms = 0;
      v->nprocs = 0;
      v->nworkers = 0;
    }
    if (changed)
      mon_http_publish_state(m->hub, m->cfg, i, v, now);
  }
  mon_shared_publish(&m->shared, m->cref, m->views, m->cfg->nservices);
  mon_publish_logs(m);
  mon_sse_tick(m->hub, now);
  if (m->pids_dirty) {
    const char *names[m->cfg->nservices + 1];
    for (size_t i = 0; i < m->cfg->nservices; i++)
      names[i] = m->cfg->services[i].name;
    for (size_t i = 0; i < m->cfg->nservices; i++)
      m->roots[i] = m->sup.procs[i].pid;
    mon_pidfile_write(&m->pidfile, m->o->procroot, names, m->roots,
                      m->cfg->nservices);
    m->pids_dirty = false;
  }
}

/* Reaps the services' main processes, and only them: a health probe's
 * child is reaped by the thread that forked it. */
static void mon_reap(mon *m) {
  for (size_t i = 0; i < m->sup.n; i++) {
    int status;
    pid_t pid = m->sup.procs[i].pid;
    if (pid <= 0 || waitpid(pid, &status, WNOHANG) != pid)
      continue;
    /* its last words come before the "exited" line */
    int64_t now = mon_wall_ms();
    mon_logs_read(&m->logs, 2 * i, now);
    mon_logs_read(&m->logs, 2 * i + 1, now);
    mon_sup_reaped(&m->sup, pid, status);
    /* the service's tree lives and dies with its main process */
    kill(-pid, SIGKILL);
  }
}

static void mon_begin_stop(mon *m) {
  m->stopping = true;
  mon_sup_stop_set(&m->sup, NULL); /* dependents first */
}

/* The cgroup subtree, the first time a config asks for memory_max or
 * cpu_max; where it cannot be made, one line says why. */
static void mon_cgroups_setup(mon *m) {
  if (m->cgroups_tried || !mon_cgroups_wanted(m->cfg))
    return;
  char why[256];
  m->cgroups_tried = true;
  if (!(m->cgroups = mon_cgroups_new("/sys/fs/cgroup", "/proc/self/cgroup", why,
                                     sizeof why)))
    fprintf(stderr, "svc-monitor: memory_max/cpu_max ignored: %s\n", why);
}

/* ---- reload ---- */

static void mon_reload_request(mon *m, mon_config *cur);
static void mon_commands_deferred(mon *m);

/* SIGHUP: the file again, parsed here; a bad one changes nothing. */
static void mon_reload_file(mon *m) {
  mon_config *cur = mon__calloc(1, sizeof *cur);
  char err[512];
  if (!cur) {
    fprintf(stderr, "svc-monitor: reload: out of memory\n");
    return;
  }
  if (mon_config_load(m->cfg->path, cur, err, sizeof err) != 0) {
    fprintf(stderr, "svc-monitor: reload refused, nothing changed: %s\n", err);
    free(cur);
    return;
  }
  mon_reload_request(m, cur);
}

static void mon_reload_drop(mon *m) {
  if (m->reload_cfg) {
    mon_config_fini(m->reload_cfg);
    free(m->reload_cfg);
  }
  m->reload_cfg = NULL;
  mon_reload_plan_fini(&m->plan);
  free(m->reload_start);
  free(m->reload_stop);
  m->reload_start = m->reload_stop = NULL;
}

/* Up, or about to be (a STOPPING service only when a start follows: one
 * being stopped by hand stays down). */
static bool mon_up(const mon_proc *p) {
  return p->state == MON_WAITING || p->state == MON_STARTING ||
         p->state == MON_RUNNING || p->state == MON_BACKOFF ||
         (p->state == MON_STOPPING && p->after != MON_AFTER_NOTHING);
}

/* Phase one: stop what is removed or changed (dependents first); the swap
 * waits for them to be down. A request while one is under way waits its
 * turn in the shared slot: it is taken once this one is done. */
static void mon_reload_request(mon *m, mon_config *cur) {
  mon_reload_plan plan;
  bool *start = NULL, *stop = NULL;
  bool planned = !m->stopping && mon_reload_plan_make(m->cfg, cur, &plan) == 0;
  if (planned) {
    start = mon__calloc(plan.nnew + 1, sizeof *start);
    stop = mon__calloc(plan.nold + 1, sizeof *stop);
  }
  if (!start || !stop) {
    if (!m->stopping)
      fprintf(stderr, "svc-monitor: reload: out of memory\n");
    if (planned)
      mon_reload_plan_fini(&plan);
    free(start);
    free(stop);
    mon_config_fini(cur);
    free(cur);
    return;
  }
  for (size_t j = 0; j < plan.nnew; j++) {
    const mon_service_cfg *c = &cur->services[j];
    int o = plan.old_of_new[j];
    if (plan.kind[j] == MON_RELOAD_ADDED) {
      start[j] = c->autostart;
    } else if (plan.kind[j] == MON_RELOAD_CHANGED) {
      mon_state st = m->sup.procs[o].state;
      /* up before: up after; failed before: the new config may fix it */
      start[j] = mon_up(&m->sup.procs[o]) ||
                 (c->autostart && (st == MON_FATAL || st == MON_EXITED));
      stop[o] = true;
    }
  }
  for (size_t i = 0; i < plan.nold; i++)
    if (plan.new_of_old[i] < 0)
      stop[i] = true;
  /* stop first, then keep: the supervisor's callbacks reach all of *m,
   * which the static analyser takes as losing pointers kept there */
  mon_sup_stop_set(&m->sup, stop);
  m->reload_cfg = cur;
  m->plan = plan;
  m->reload_start = start;
  m->reload_stop = stop;
}

/* A copy of old[] in the new order; new entries zeroed. */
static void *mon_remap_array(const void *old, size_t size, size_t nnew,
                             const int *old_of_new) {
  char *na = mon__calloc(nnew + 1, size);
  if (!na)
    return NULL;
  for (size_t j = 0; j < nnew; j++)
    if (old_of_new[j] >= 0)
      memcpy(na + j * size, (const char *)old + (size_t)old_of_new[j] * size,
             size);
  return na;
}

/* Phase two, once everything stopped for the reload is down: every
 * per-service table follows the new config, then the new config is
 * published and what should run is started. */
static void mon_reload_finish(mon *m) {
  const mon_reload_plan *p = &m->plan;
  mon_config *cur = m->reload_cfg;
  const mon_config *old = m->cfg;
  /* the running [monitor] address, files and directories stay (a restart
   * of svc-monitor applies them); the rest of [monitor] applies now */
  char **keep[] = {&cur->http_host, &cur->db, &cur->log_dir, &cur->token_file};
  char *const was[] = {old->http_host, old->db, old->log_dir, old->token_file};
  for (size_t k = 0; k < 4; k++) {
    char *d = mon__strdup(was[k]);
    if (!d) {
      fprintf(stderr, "svc-monitor: reload: out of memory\n");
      mon_reload_drop(m);
      return;
    }
    free(*keep[k]);
    *keep[k] = d;
  }
  cur->http_port = old->http_port;
  mon_config_ref *nref = mon_config_ref_new(cur, true);
  if (!nref) {
    fprintf(stderr, "svc-monitor: reload: out of memory\n");
    mon_reload_drop(m);
    return;
  }
  free(cur); /* its contents moved into nref */
  m->reload_cfg = NULL;
  const mon_config *ncfg = &nref->cfg;
  char desc[1024];
  mon_reload_plan_describe(p, old, ncfg, desc, sizeof desc);
  /* nothing with old indices may stay pending */
  free(m->mres);
  m->mres = NULL;
  m->nmres = mon_stats_poller_take(m->stats, &m->mres);
  mon_flush(m, false);
  m->nev = 0; /* events the store could not take: their indices are old */

  size_t n = ncfg->nservices;
  int64_t *sids = mon__calloc(n + 1, sizeof *sids);
  mon_proc *procs = mon__calloc(n + 1, sizeof *procs);
  mon_view *views =
      mon_remap_array(m->views, sizeof *m->views, n, p->old_of_new);
  int *roots = mon__calloc(n + 1, sizeof *roots);
  mon_sample *samples = mon__calloc(n + 1, sizeof *samples);
  /* the last steps that can fail, before anything is committed: the new
   * prober, and the log streams (a file that cannot be opened is not a
   * failure: that stream writes no file) */
  mon_prober *prober = mon_prober_new(ncfg, MON_PROBE_TIMEOUT_MS);
  char err[512];
  int lrc = -2;
  if (sids && procs && views && roots && samples && prober)
    lrc = mon_logs_remap(&m->logs, ncfg, p->old_of_new, p->new_of_old, err,
                         sizeof err);
  if (lrc == -2) {
    fprintf(stderr, "svc-monitor: reload: out of memory or threads, not "
                    "applied\n");
    mon_prober_free(prober);
    free(sids);
    free(procs);
    free(views);
    free(roots);
    free(samples);
    mon_shared_release(&m->shared, nref);
    mon_reload_drop(m);
    return;
  }
  if (lrc != 0)
    fprintf(stderr, "svc-monitor: reload: %s\n", err);
  for (size_t j = 0; j < n; j++) {
    int o = p->old_of_new[j];
    const mon_service_cfg *s = &ncfg->services[j];
    if (o >= 0 && p->kind[j] == MON_RELOAD_SAME) {
      procs[j] = m->sup.procs[o];
    } else {
      procs[j].health = MON_HEALTH_UNKNOWN;
    }
    if (o >= 0)
      sids[j] = m->sids[o];
    /* a new or changed service: its row (port, command) written */
    if (p->kind[j] != MON_RELOAD_SAME &&
        mon_store_service(m->store, s->name, s->port, s->command, &sids[j]) !=
            0) {
      sids[j] = 0; /* the next tick tries again (mon_write) */
      mon_store_health(m, "service insert", mon_wall_ms());
    }
  }
  for (size_t i = 0; i < p->nold; i++)
    if (p->new_of_old[i] < 0)
      mon_cgroups_remove(m->cgroups, old->services[i].name);
  m->logs_published = 0;
  free(m->views);
  m->views = views;
  free(m->sids);
  m->sids = sids;
  free(m->roots);
  m->roots = roots;
  free(m->samples);
  m->samples = samples;
  mon_sup_fini(&m->sup);
  m->sup.cfg = ncfg;
  m->sup.procs = procs;
  m->sup.n = n;
  mon_healther_reconfigure(m->health, ncfg, p->old_of_new);
  mon_stats_poller_reconfigure(m->stats, ncfg);
  mon_prober_free(m->prober);
  m->prober = prober;
  mon_alerter_set_url(m->alerts, ncfg->alert_webhook);
  m->cfg = ncfg;
  mon_config_ref *oref = m->cref;
  m->cref = nref;
  m->pids_dirty = true;
  mon_cgroups_setup(m);
  for (size_t j = 0; j < n; j++)
    if (p->kind[j] != MON_RELOAD_SAME) {
      mon_op_event(m, j, "reload",
                   p->kind[j] == MON_RELOAD_ADDED ? "added by a reload"
                                                  : "changed by a reload");
    }
  fprintf(stderr, "svc-monitor: reload: %s\n", desc);
  bool *start = m->reload_start;
  m->reload_start = NULL;
  mon_reload_drop(m); /* the plan; cur moved into nref */
  mon_publish(m);     /* the HTTP side sees the new config from here */
  mon_shared_release(&m->shared, oref);
  for (size_t j = 0; j < n; j++)
    if (start[j])
      mon_sup_event(&m->sup, j, MON_EV_START);
  free(start);
  mon_commands_deferred(m);
}

/* The loop's turn: a waiting reload swaps once its services are down. */
static void mon_reload_step(mon *m) {
  if (!m->reload_cfg) {
    mon_config *cur = mon_shared_take_reload(&m->shared);
    if (cur)
      mon_reload_request(m, cur);
    if (!m->reload_cfg)
      return;
  }
  bool down = true;
  for (size_t i = 0; i < m->plan.nold; i++) {
    const mon_proc *q = &m->sup.procs[i];
    if (!m->reload_stop[i] || !mon_sup_has_process(q))
      continue;
    down = false;
    /* started again meanwhile (a dependent's start takes its dependencies
     * along): stopped once more, or the swap would wait for ever */
    if (!q->stop_wanted && q->state != MON_STOPPING) {
      bool one[m->plan.nold];
      memset(one, 0, sizeof one);
      one[i] = true;
      mon_sup_stop_set(&m->sup, one);
    }
  }
  if (!down)
    return;
  if (m->stopping) {
    mon_reload_drop(m);
    return;
  }
  mon_reload_finish(m);
}

static void mon_signals(mon *m) {
  struct signalfd_siginfo si;
  while (read(m->sfd, &si, sizeof si) == (ssize_t)sizeof si) {
    if (si.ssi_signo == SIGCHLD) {
      mon_reap(m);
    } else if (si.ssi_signo == SIGHUP) {
      if (!m->stopping && !m->reload_cfg)
        mon_reload_file(m);
      else if (!m->stopping) /* after the one under way */
        fprintf(stderr, "svc-monitor: SIGHUP: a reload is under way; send "
                        "it again when it is done\n");
    } else if (!m->stopping) {
      fprintf(stderr, "svc-monitor: %s: stopping services\n",
              strsignal((int)si.ssi_signo));
      mon_begin_stop(m);
    } else if (si.ssi_signo == SIGINT) { /* second Ctrl-C: no patience */
      for (size_t i = 0; i < m->sup.n; i++)
        if (m->sup.procs[i].pid > 0)
          mon_op_signal(m, i, m->sup.procs[i].pid, SIGKILL);
    }
  }
  mon_reap(m); /* signals coalesce; never miss a child */
}

static void mon_commands(mon *m) {
  uint64_t junk;
  ssize_t r = read(m->shared.wake_fd, &junk, sizeof junk);
  (void)r;
  mon_command cmds[MON_QUEUE_MAX];
  size_t n = mon_shared_take(&m->shared, cmds, MON_QUEUE_MAX);
  for (size_t k = 0; k < n && !m->stopping; k++) {
    int found = mon_sup_find(&m->sup, cmds[k].service);
    if (found < 0)
      continue; /* removed by a reload meanwhile */
    size_t i = (size_t)found;
    if (m->reload_cfg && m->reload_stop[i]) { /* after the swap, by name */
      if (m->ndeferred < MON_QUEUE_MAX)
        m->deferred[m->ndeferred++] = cmds[k];
      continue;
    }
    switch (cmds[k].action) {
    case MON_A_START:
      mon_sup_event(&m->sup, i, MON_EV_START);
      break;
    case MON_A_STOP:
      mon_sup_event(&m->sup, i, MON_EV_STOP);
      break;
    case MON_A_RESTART:
      mon_sup_restart(&m->sup, i);
      break;
    }
  }
}

/* Commands held while a reload stopped their service: applied to the new
 * config (by name), once it runs. */
static void mon_commands_deferred(mon *m) {
  size_t n = m->ndeferred;
  m->ndeferred = 0;
  for (size_t k = 0; k < n; k++)
    if (mon_shared_push(&m->shared, m->deferred[k].service,
                        m->deferred[k].action) != 0)
      break;
}

/* Room in pfd and which for n log streams after the two fds of the loop;
 * when memory is short they keep the room they had (*cap streams). */
static void mon_loop_room(struct pollfd **pfd, size_t **which, size_t *cap,
                          size_t n) {
  struct pollfd *np = mon__realloc(*pfd, (n + 2) * sizeof *np);
  if (np)
    *pfd = np;
  size_t *nw = mon__realloc(*which, (n + 2) * sizeof *nw);
  if (nw)
    *which = nw;
  if (np && nw)
    *cap = n;
}

#define MON_SHORT_POLL_MS 20 /* while some streams are read without poll */

/* Until every service is down after a stop: nothing ends it early, not
 * even memory running out (see mon_loop_room). */
static void mon_loop(mon *m) {
  size_t nlogs = 0, cap = 0; /* streams pfd and which have room for */
  struct pollfd *pfd = NULL, two[2];
  size_t *which = NULL;
  uint64_t next_tick = mon_mono_ms() + (uint64_t)m->cfg->sample_interval_ms;
  for (;;) {
    mon_reload_step(m);
    nlogs = m->logs.nstreams; /* a reload changes it */
    if (nlogs > cap)
      mon_loop_room(&pfd, &which, &cap, nlogs);
    struct pollfd *fds = pfd ? pfd : two;
    uint64_t interval = (uint64_t)m->cfg->sample_interval_ms;
    mon_publish(m);
    if (m->stopping && mon_sup_all_down(&m->sup))
      break;
    uint64_t now = mon_mono_ms();
    uint64_t next = mon_sup_next_deadline(&m->sup);
    if (next_tick < next)
      next = next_tick;
    int timeout = next <= now         ? 0
                  : next - now > 1000 ? 1000
                                      : (int)(next - now);
    size_t np = 0, k = 0;
    fds[np++] = (struct pollfd){.fd = m->sfd, .events = POLLIN};
    fds[np++] = (struct pollfd){.fd = m->shared.wake_fd, .events = POLLIN};
    for (; k < nlogs && np - 2 < cap; k++) {
      if (m->logs.streams[k].fd < 0)
        continue;
      which[np] = k;
      fds[np++] =
          (struct pollfd){.fd = m->logs.streams[k].fd, .events = POLLIN};
    }
    /* out of memory for a bigger poll set: the streams past it are read
     * (without blocking) on every turn, and the turns come often */
    size_t unpolled = k;
    if (unpolled < nlogs && timeout > MON_SHORT_POLL_MS)
      timeout = MON_SHORT_POLL_MS;
    int r = poll(fds, (nfds_t)np, timeout);
    if (r < 0 && errno != EINTR) { /* ENOMEM: the kernel's, for a while */
      struct timespec pause = {0, MON_SHORT_POLL_MS * 1000000L};
      nanosleep(&pause, NULL);
    }
    int64_t wall = mon_wall_ms();
    if (r > 0) {
      for (size_t j = 2; j < np; j++)
        if (fds[j].revents)
          mon_logs_read(&m->logs, which[j], wall);
      if (fds[0].revents)
        mon_signals(m);
      if (fds[1].revents)
        mon_commands(m);
    }
    for (k = unpolled; k < nlogs; k++)
      mon_logs_read(&m->logs, k, wall);
    mon_sup_tick(&m->sup);
    now = mon_mono_ms();
    if (now >= next_tick) {
      if (m->o->on_tick)
        m->o->on_tick(m->o->tick_ctx, false);
      mon_sample_tick(m);
      if (m->o->on_tick)
        m->o->on_tick(m->o->tick_ctx, true);
      next_tick += interval;
      if (next_tick <= now)
        next_tick = now + interval; /* we fell behind: skip, don't burst */
    }
  }
  /* the last lines and exit events */
  int64_t wall = mon_wall_ms();
  for (size_t k = 0; k < m->logs.nstreams; k++)
    mon_logs_read(&m->logs, k, wall);
  mon_flush(m, false);
  mon_publish(m);
  free(pfd);
  free(which);
}

static void mon_note_stderr(void *ctx, const char *line) {
  (void)ctx;
  fprintf(stderr, "svc-monitor: %s\n", line);
}

static void mon_fini(mon *m) {
  mon_http_stop(m->http); /* ends every stream: the hub is empty after */
  mon_sse_hub_free(m->hub);
  mon_prober_free(m->prober);
  mon_stats_poller_free(m->stats);
  mon_metrics_free(m->metrics); /* after the poller that feeds it */
  mon_healther_free(m->health);
  mon_alerter_free(m->alerts);
  mon_cgroups_free(m->cgroups);
  mon_reload_drop(m);
  free(m->mres);
  mon_sup_fini(&m->sup);
  mon_sampler_free(m->sampler);
  mon_store_close(m->store);
  mon_logs_fini(&m->logs);
  mon_shared_fini(&m->shared);
  if (m->pidfile.fd >= 0) {
    if (ftruncate(m->pidfile.fd, 0) != 0)
      perror("svc-monitor: pidfile");
    mon_pidfile_close(&m->pidfile);
  }
  if (m->sfd >= 0)
    close(m->sfd);
  if (m->devnull >= 0)
    close(m->devnull);
  free(m->db_path);
  free(m->sids);
  free(m->roots);
  free(m->samples);
  free(m->views);
  free(m->ev);
  mon_config_ref_unref(m->cref); /* the HTTP thread is gone */
  m->cref = NULL;
}

int mon_run(const mon_config *cfg0, const mon_run_opts *o, char *err,
            size_t errlen) {
  /* the caller's config, shared by reference (not owned: the caller frees
   * it after we return); a reload replaces it with one we own */
  mon_config_ref *cref = mon_config_ref_new(cfg0, false);
  if (!cref) {
    snprintf(err, errlen, "out of memory");
    return 1;
  }
  const mon_config *cfg = &cref->cfg;
  mon m = {.cfg = cfg,
           .cref = cref,
           .o = o,
           .sfd = -1,
           .devnull = -1,
           .pidfile = {.fd = -1},
           .shared = {.wake_fd = -1},
           .store_status = {.ok = true}};
  size_t n = cfg->nservices;
  int rc = 1;

  /* Before any thread exists: every thread inherits this mask, so these
   * signals reach only the signalfd. */
  signal(SIGPIPE, SIG_IGN);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  m.sfd = mon__signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
  m.devnull = mon__open("/dev/null", O_RDWR | O_CLOEXEC, 0);
  m.sids = mon__calloc(n + 1, sizeof *m.sids);
  m.roots = mon__calloc(n + 1, sizeof *m.roots);
  m.samples = mon__calloc(n + 1, sizeof *m.samples);
  m.views = mon__calloc(n + 1, sizeof *m.views);
  if (m.sfd < 0 || m.devnull < 0 || !m.sids || !m.roots || !m.samples ||
      !m.views) {
    snprintf(err, errlen, "start-up: %s", strerror(errno ? errno : ENOMEM));
    goto out;
  }
  if (mon_logs_init(&m.logs, cfg, err, errlen) != 0)
    goto out;
  size_t plen = strlen(cfg->log_dir) + 32;
  char *pidpath = mon__malloc(plen);
  if (!pidpath) {
    snprintf(err, errlen, "out of memory");
    goto out;
  }
  snprintf(pidpath, plen, "%s/svc-monitor.pids", cfg->log_dir);
  int prc = mon_pidfile_open(&m.pidfile, pidpath, err, errlen);
  free(pidpath);
  if (prc != 0)
    goto out;
  int stop_ms = 5000;
  for (size_t i = 0; i < n; i++)
    if (cfg->services[i].stop_timeout_ms > stop_ms)
      stop_ms = cfg->services[i].stop_timeout_ms;
  mon_pidfile_reap(&m.pidfile, o->procroot, stop_ms, mon_note_stderr, NULL);

  /* the directories of the db and token files, as for log_dir */
  const char *files[] = {cfg->db, cfg->token_file};
  for (size_t k = 0; k < 2; k++) {
    const char *slash = strrchr(files[k], '/');
    if (!slash || slash == files[k])
      continue;
    char dir[4096];
    snprintf(dir, sizeof dir, "%.*s", (int)(slash - files[k]), files[k]);
    if (mon_mkdirs(dir) != 0) {
      snprintf(err, errlen, "%s: cannot create directory: %s", dir,
               strerror(errno));
      goto out;
    }
  }
  if (mon_store_open(cfg->db, &m.store, err, errlen) != 0)
    goto out;
  for (size_t i = 0; i < n; i++) {
    const mon_service_cfg *s = &cfg->services[i];
    if (mon_store_service(m.store, s->name, s->port, s->command, &m.sids[i]) !=
        0) {
      snprintf(err, errlen, "%s: cannot register service %s", cfg->db, s->name);
      goto out;
    }
  }
  if (mon_token_load(cfg->token_file, m.token, err, errlen) != 0)
    goto out;
  m.sampler = mon_sampler_new(o->procroot, sysconf(_SC_CLK_TCK),
                              sysconf(_SC_PAGESIZE), 10);
  if (!m.sampler) {
    snprintf(err, errlen, "out of memory");
    goto out;
  }
  if (mon_shared_init(&m.shared, n) != 0) {
    snprintf(err, errlen, "start-up: %s", strerror(errno));
    goto out;
  }
  m.prober = mon_prober_new(cfg, MON_PROBE_TIMEOUT_MS);
  m.health = mon_healther_new(cfg);
  m.alerts = mon_alerter_new(cfg->alert_webhook);
  if (!m.health || !m.alerts) {
    snprintf(err, errlen, "cannot start the health or alert thread");
    goto out;
  }
  mon_cgroups_setup(&m);
  m.metrics = mon_metrics_new();
  m.stats = mon_stats_poller_new(cfg, MON_STATS_TIMEOUT_MS, m.metrics);
  m.db_path = mon__strdup(cfg->db);
  if (!m.prober || !m.metrics || !m.stats) {
    snprintf(err, errlen, "cannot start the probe thread");
    goto out;
  }
  if (mon_sse_hub_new(&m.hub) != 0) {
    snprintf(err, errlen, "out of memory");
    goto out;
  }
  if (mon_shared_publish(&m.shared, m.cref, m.views, n) != 0) {
    snprintf(err, errlen, "out of memory");
    goto out;
  }
  mon_http_opts ho = {.cfg = cfg0, /* its address: outlives a reload */
                      .shared = &m.shared,
                      .token = m.token,
                      .db_path = m.db_path,
                      .hub = m.hub,
                      .metrics = m.metrics};
  if (!m.db_path) {
    snprintf(err, errlen, "out of memory");
    goto out;
  }
  if (mon_http_start(&ho, &m.http, err, errlen) != 0)
    goto out;
  if (o->announce) {
    fprintf(o->announce,
            "svc-monitor: dashboard at http://%s:%d/ (control token in %s)\n",
            cfg->http_host, mon_http_port(m.http), cfg->token_file);
    fflush(o->announce);
  }
  mon_sup_ops ops = {.spawn = mon_op_spawn,
                     .signal = mon_op_signal,
                     .probe = mon_op_probe,
                     .health_begin = mon_op_health_begin,
                     .health_take = mon_op_health_take,
                     .event = mon_op_event,
                     .now_ms = mon_op_now,
                     .ctx = &m};
  if (mon_sup_init(&m.sup, cfg, &ops) != 0) {
    snprintf(err, errlen, "out of memory");
    goto out;
  }
  mon_sup_autostart(&m.sup);
  mon_loop(&m);
  rc = 0;
out:
  mon_fini(&m);
  pthread_sigmask(SIG_UNBLOCK, &set, NULL);
  return rc;
}

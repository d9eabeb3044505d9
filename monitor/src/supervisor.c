/* supervisor.c — one table maps (state, event) to an action; each action
 * does its work through the ops table and returns the next state. Nothing
 * here touches processes, signals or clocks directly. */
#include "supervisor.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "mon_sys.h"

typedef mon_state (*sup_action)(mon_sup *s, size_t i);

static uint64_t sup_now(mon_sup *s) { return s->ops.now_ms(s->ops.ctx); }

static void sup_event(mon_sup *s, size_t i, const char *kind,
                      const char *detail) {
  if (s->ops.event)
    s->ops.event(s->ops.ctx, i, kind, detail);
}

static mon_state sup_ignore(mon_sup *s, size_t i) { return s->procs[i].state; }

/* Decides what follows an exit (or a failed start): EXITED if the restart
 * policy says so, FATAL after start_retries, else BACKOFF. */
static mon_state sup_after_exit(mon_sup *s, size_t i, bool failed) {
  mon_proc *p = &s->procs[i];
  const mon_service_cfg *c = &s->cfg->services[i];
  uint64_t now = sup_now(s);
  if (c->restart == MON_RESTART_NEVER ||
      (c->restart == MON_RESTART_ON_FAILURE && !failed)) {
    p->deadline_ms = 0;
    return MON_EXITED;
  }
  if (now - p->started_ms >= MON_RESET_AFTER_MS)
    p->retries = 0;
  p->retries++;
  if (c->start_retries >= 0 && p->retries > c->start_retries) {
    char d[96];
    snprintf(d, sizeof d, "gave up after %d restarts in a row", p->retries - 1);
    sup_event(s, i, "fatal", d);
    p->deadline_ms = 0;
    return MON_FATAL;
  }
  uint64_t delay = (uint64_t)c->backoff_ms;
  for (int k = 1; k < p->retries && delay < (uint64_t)c->backoff_max_ms; k++)
    delay *= 2;
  if (delay > (uint64_t)c->backoff_max_ms)
    delay = (uint64_t)c->backoff_max_ms;
  p->deadline_ms = now + delay;
  return MON_BACKOFF;
}

/* Spawns service i; a restart (after backoff or by request) is counted and
 * recorded as such. */
static mon_state sup_spawn_as(mon_sup *s, size_t i, bool restart) {
  mon_proc *p = &s->procs[i];
  uint64_t now = sup_now(s);
  p->after = MON_AFTER_NOTHING;
  p->started_ms = now;
  p->next_probe_ms = now;
  const mon_service_cfg *c = &s->cfg->services[i];
  p->deadline_ms =
      c->ready == MON_READY_PING ? now + (uint64_t)c->ready_timeout_ms : 0;
  int pid = s->ops.spawn(s->ops.ctx, i);
  char d[96];
  if (pid <= 0) {
    snprintf(d, sizeof d, "spawn failed: %s", strerror(-pid));
    sup_event(s, i, "exit", d);
    p->pid = 0;
    p->last_status = 127 << 8;
    return sup_after_exit(s, i, true);
  }
  p->pid = pid;
  if (restart)
    p->restarts++;
  snprintf(d, sizeof d, "spawned pid %d", pid);
  sup_event(s, i, restart ? "restart" : "start", d);
  return MON_STARTING;
}

static mon_state sup_spawn(mon_sup *s, size_t i) {
  return sup_spawn_as(s, i, s->procs[i].state == MON_BACKOFF);
}

/* True when every service i depends on is RUNNING; else names the ones
 * it waits for in why. */
static bool sup_deps_up(const mon_sup *s, size_t i, char *why, size_t len) {
  const mon_service_cfg *c = &s->cfg->services[i];
  bool up = true;
  if (len)
    why[0] = '\0';
  for (size_t d = 0; d < c->ndeps; d++) {
    size_t j = (size_t)c->deps[d];
    if (s->procs[j].state == MON_RUNNING)
      continue;
    size_t n = len ? strlen(why) : 0;
    if (len > n + 1)
      snprintf(why + n, len - n, "%s%s", up ? "" : ", ",
               s->cfg->services[j].name);
    up = false;
  }
  return up;
}

static bool sup_resting(mon_state st) {
  return st == MON_STOPPED || st == MON_EXITED || st == MON_FATAL;
}

/* Starts service i's dependencies that are at rest. */
static void sup_start_deps(mon_sup *s, size_t i) {
  const mon_service_cfg *c = &s->cfg->services[i];
  for (size_t d = 0; d < c->ndeps; d++)
    if (sup_resting(s->procs[c->deps[d]].state))
      mon_sup_event(s, (size_t)c->deps[d], MON_EV_START);
}

/* A start request from a resting state begins a fresh retry count. A
 * service whose dependencies are not RUNNING starts them (those at rest)
 * and waits. */
static mon_state sup_fresh_start(mon_sup *s, size_t i) {
  s->procs[i].retries = 0;
  s->procs[i].stop_wanted = false;
  char why[256];
  if (sup_deps_up(s, i, why, sizeof why))
    return sup_spawn(s, i);
  s->procs[i].state = MON_WAITING; /* a dependency's events see it waiting */
  sup_start_deps(s, i);
  sup_deps_up(s, i, why, sizeof why); /* the ones not yet RUNNING */
  char d[300];
  snprintf(d, sizeof d, "waiting for %s", why);
  sup_event(s, i, "waiting", d);
  s->procs[i].deadline_ms = 0;
  return MON_WAITING;
}

/* START while WAITING: the dependencies that came to rest meanwhile (a
 * stop, a FATAL) are started again. */
static mon_state sup_wait_again(mon_sup *s, size_t i) {
  sup_start_deps(s, i);
  return MON_WAITING;
}

static mon_state sup_deps_ready(mon_sup *s, size_t i) {
  return sup_spawn_as(s, i, false);
}

static mon_state sup_cancel_wait(mon_sup *s, size_t i) {
  sup_event(s, i, "stop", "start cancelled");
  return MON_STOPPED;
}

static mon_state sup_ready(mon_sup *s, size_t i) {
  mon_proc *p = &s->procs[i];
  p->deadline_ms = 0;
  p->health = MON_HEALTH_UNKNOWN;
  p->health_fails = 0;
  p->health_why[0] = '\0';
  p->health_pending = false;
  p->health_next_ms = sup_now(s); /* the first probe at once */
  p->mem_over = 0;
  sup_event(s, i, "ready", "running");
  return MON_RUNNING;
}

static mon_state sup_term(mon_sup *s, size_t i) {
  mon_proc *p = &s->procs[i];
  if (p->pid > 0)
    s->ops.signal(s->ops.ctx, i, p->pid, SIGTERM);
  p->deadline_ms = sup_now(s) + (uint64_t)s->cfg->services[i].stop_timeout_ms;
  sup_event(s, i, "stop", "sent SIGTERM");
  return MON_STOPPING;
}

static mon_state sup_stop_start(mon_sup *s, size_t i) {
  s->procs[i].after = MON_AFTER_NOTHING;
  return sup_term(s, i);
}

/* A health or memory check failed (the caller recorded why): stop, then
 * back off and start again like after a crash, so a service that keeps
 * failing ends FATAL instead of restarting for ever. */
static mon_state sup_failed_check(mon_sup *s, size_t i) {
  mon_state next = sup_term(s, i);
  s->procs[i].after = MON_AFTER_RETRY;
  return next;
}

static mon_state sup_kill(mon_sup *s, size_t i) {
  mon_proc *p = &s->procs[i];
  if (p->pid > 0)
    s->ops.signal(s->ops.ctx, i, p->pid, SIGKILL);
  p->deadline_ms = sup_now(s) + MON_REKILL_MS;
  sup_event(s, i, "stop", "stop timeout: sent SIGKILL");
  return MON_STOPPING;
}

static void sup_describe_exit(mon_sup *s, size_t i) {
  int st = s->procs[i].last_status;
  char d[96];
  if (WIFSIGNALED(st))
    snprintf(d, sizeof d, "killed by signal %d (%s)", WTERMSIG(st),
             strsignal(WTERMSIG(st)));
  else
    snprintf(d, sizeof d, "exited with code %d", WEXITSTATUS(st));
  sup_event(s, i, "exit", d);
}

static mon_state sup_exited(mon_sup *s, size_t i) {
  int st = s->procs[i].last_status;
  sup_describe_exit(s, i);
  bool failed = !(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  return sup_after_exit(s, i, failed);
}

/* The service did not become ready in time: stop it, then retry. */
static mon_state sup_not_ready(mon_sup *s, size_t i) {
  char d[96];
  snprintf(d, sizeof d, "not ready after %d ms",
           s->cfg->services[i].ready_timeout_ms);
  sup_event(s, i, "exit", d);
  mon_state next = sup_term(s, i);
  s->procs[i].after = MON_AFTER_RETRY;
  return next;
}

static mon_state sup_stopped(mon_sup *s, size_t i) {
  mon_proc *p = &s->procs[i];
  sup_describe_exit(s, i);
  mon_after_stop after = p->after;
  p->after = MON_AFTER_NOTHING;
  p->deadline_ms = 0;
  if (after == MON_AFTER_START) { /* a requested restart */
    p->retries = 0;
    return sup_spawn_as(s, i, true);
  }
  if (after == MON_AFTER_RETRY)
    return sup_after_exit(s, i, true);
  return MON_STOPPED;
}

static mon_state sup_start_later(mon_sup *s, size_t i) {
  s->procs[i].after = MON_AFTER_START;
  return MON_STOPPING;
}

static mon_state sup_cancel(mon_sup *s, size_t i) {
  s->procs[i].deadline_ms = 0;
  sup_event(s, i, "stop", "restart cancelled");
  return MON_STOPPED;
}

static mon_state sup_cancel_start(mon_sup *s, size_t i) {
  s->procs[i].after = MON_AFTER_NOTHING;
  return MON_STOPPING;
}

/* The whole life cycle. Rows: states; columns: events. */
// clang-format off
static const sup_action sup_table[MON_NSTATES][MON_NEVENTS] = {
    /*                START            STOP              READY           EXIT         TIMER          FAIL */
    [MON_STOPPED]  = {sup_fresh_start, sup_ignore,       sup_ignore,     sup_ignore,  sup_ignore,    sup_ignore},
    [MON_WAITING]  = {sup_wait_again,  sup_cancel_wait,  sup_deps_ready, sup_ignore,  sup_ignore,    sup_ignore},
    [MON_STARTING] = {sup_ignore,      sup_stop_start,   sup_ready,      sup_exited,  sup_not_ready, sup_failed_check},
    [MON_RUNNING]  = {sup_ignore,      sup_stop_start,   sup_ignore,     sup_exited,  sup_ignore,    sup_failed_check},
    [MON_BACKOFF]  = {sup_fresh_start, sup_cancel,       sup_ignore,     sup_ignore,  sup_spawn,     sup_ignore},
    [MON_STOPPING] = {sup_start_later, sup_cancel_start, sup_ignore,     sup_stopped, sup_kill,      sup_ignore},
    [MON_EXITED]   = {sup_fresh_start, sup_ignore,       sup_ignore,     sup_ignore,  sup_ignore,    sup_ignore},
    [MON_FATAL]    = {sup_fresh_start, sup_ignore,       sup_ignore,     sup_ignore,  sup_ignore,    sup_ignore},
};
// clang-format on

void mon_sup_event(mon_sup *s, size_t i, mon_event ev) {
  if (i >= s->n || (unsigned)ev >= MON_NEVENTS)
    return;
  mon_proc *p = &s->procs[i];
  if (ev == MON_EV_EXIT)
    p->pid = 0;
  if (ev == MON_EV_STOP)
    p->stop_wanted = false;
  p->state = sup_table[p->state][ev](s, i);
  if (p->state != MON_RUNNING) {
    p->health = MON_HEALTH_UNKNOWN;
    p->health_pending = false;
  }
}

int mon_sup_init(mon_sup *s, const mon_config *cfg, const mon_sup_ops *ops) {
  memset(s, 0, sizeof *s);
  s->cfg = cfg;
  s->ops = *ops;
  s->n = cfg->nservices;
  s->procs = mon__calloc(s->n ? s->n : 1, sizeof *s->procs);
  for (size_t i = 0; s->procs && i < s->n; i++)
    s->procs[i].health = MON_HEALTH_UNKNOWN; /* not 0, which is FAILING */
  return s->procs ? 0 : -1;
}

void mon_sup_fini(mon_sup *s) {
  free(s->procs);
  s->procs = NULL;
  s->n = 0;
}

void mon_sup_autostart(mon_sup *s) {
  for (size_t i = 0; i < s->n; i++)
    if (s->cfg->services[i].autostart)
      mon_sup_event(s, i, MON_EV_START);
}

bool mon_sup_has_process(const mon_proc *p) {
  return p->pid > 0 || p->state == MON_STARTING || p->state == MON_RUNNING ||
         p->state == MON_STOPPING;
}

/* Feeds STOP to each stop_wanted service none of whose dependents is
 * still up and being stopped too (stop_wanted, or STOPPING once fed);
 * repeats while that frees others. */
static void sup_stop_pass(mon_sup *s) {
  bool again = true;
  while (again) {
    again = false;
    for (size_t i = 0; i < s->n; i++) {
      if (!s->procs[i].stop_wanted)
        continue;
      /* nothing to wait for without a process: a BACKOFF or WAITING one
       * is cancelled at once, before it starts again */
      bool blocked = false;
      if (!mon_sup_has_process(&s->procs[i])) {
        mon_sup_event(s, i, MON_EV_STOP);
        again = true;
        continue;
      }
      for (size_t j = 0; j < s->n && !blocked; j++) {
        const mon_service_cfg *c = &s->cfg->services[j];
        const mon_proc *q = &s->procs[j];
        if (j == i || !mon_sup_has_process(q) ||
            !(q->stop_wanted || q->state == MON_STOPPING))
          continue;
        for (size_t d = 0; d < c->ndeps; d++)
          if ((size_t)c->deps[d] == i)
            blocked = true;
      }
      if (blocked)
        continue;
      mon_sup_event(s, i, MON_EV_STOP); /* clears stop_wanted */
      again = true;
    }
  }
}

void mon_sup_stop_set(mon_sup *s, const bool *which) {
  for (size_t i = 0; i < s->n; i++)
    if (!which || which[i])
      s->procs[i].stop_wanted = true;
  sup_stop_pass(s);
}

void mon_sup_memory(mon_sup *s, size_t i, uint64_t rss_bytes) {
  if (i >= s->n)
    return;
  mon_proc *p = &s->procs[i];
  const mon_service_cfg *c = &s->cfg->services[i];
  if (c->max_memory_restart <= 0 ||
      (p->state != MON_RUNNING && p->state != MON_STARTING) ||
      rss_bytes <= (uint64_t)c->max_memory_restart) {
    p->mem_over = 0;
    return;
  }
  if (++p->mem_over < MON_MEMORY_SAMPLES)
    return;
  p->mem_over = 0;
  char d[128];
  snprintf(d, sizeof d,
           "tree RSS %llu MiB above max_memory_restart %llu MiB for %d "
           "samples",
           (unsigned long long)(rss_bytes >> 20),
           (unsigned long long)((uint64_t)c->max_memory_restart >> 20),
           MON_MEMORY_SAMPLES);
  sup_event(s, i, "memory", d);
  mon_sup_event(s, i, MON_EV_FAIL);
}

/* Health probes of a RUNNING service: one every health_interval_ms; after
 * health_failures failures in a row, a restart (event health). */
static void sup_health_tick(mon_sup *s, size_t i, uint64_t now) {
  mon_proc *p = &s->procs[i];
  const mon_service_cfg *c = &s->cfg->services[i];
  if (c->health == MON_HEALTH_NONE || p->state != MON_RUNNING ||
      !s->ops.health_begin || !s->ops.health_take)
    return;
  if (p->health_pending) {
    if (now < p->health_poll_ms)
      return;
    char why[sizeof p->health_why];
    int r = s->ops.health_take(s->ops.ctx, i, why, sizeof why);
    if (r < 0) {
      p->health_poll_ms = now + MON_HEALTH_POLL_MS;
      return;
    }
    p->health_pending = false;
    if (r == 1) {
      p->health = MON_HEALTH_PASSING;
      p->health_fails = 0;
      p->health_why[0] = '\0';
      return;
    }
    p->health = MON_HEALTH_FAILING;
    p->health_fails++;
    snprintf(p->health_why, sizeof p->health_why, "%s", why);
    if (p->health_fails < c->health_failures)
      return;
    char d[200];
    snprintf(d, sizeof d, "%d failed health probes in a row: %s",
             p->health_fails, why);
    sup_event(s, i, "health", d);
    mon_sup_event(s, i, MON_EV_FAIL);
    return;
  }
  if (now >= p->health_next_ms) {
    s->ops.health_begin(s->ops.ctx, i);
    p->health_pending = true;
    p->health_poll_ms = now + MON_HEALTH_POLL_MS;
    p->health_next_ms = now + (uint64_t)c->health_interval_ms;
  }
}

void mon_sup_restart(mon_sup *s, size_t i) {
  if (i >= s->n)
    return;
  mon_state st = s->procs[i].state;
  if (st == MON_STARTING || st == MON_RUNNING) {
    mon_sup_event(s, i, MON_EV_STOP);
    mon_sup_event(s, i, MON_EV_START); /* STOPPING: start once down */
  } else {
    mon_sup_event(s, i, MON_EV_START);
  }
}

int mon_sup_reaped(mon_sup *s, int pid, int status) {
  for (size_t i = 0; i < s->n; i++) {
    if (s->procs[i].pid == pid && pid > 0) {
      s->procs[i].last_status = status;
      mon_sup_event(s, i, MON_EV_EXIT);
      return (int)i;
    }
  }
  return -1;
}

void mon_sup_tick(mon_sup *s) {
  uint64_t now = sup_now(s);
  for (size_t i = 0; i < s->n; i++) {
    mon_proc *p = &s->procs[i];
    const mon_service_cfg *c = &s->cfg->services[i];
    if (p->state == MON_WAITING && sup_deps_up(s, i, NULL, 0)) {
      mon_sup_event(s, i, MON_EV_READY);
      continue;
    }
    sup_health_tick(s, i, now);
    if (p->state == MON_STARTING) {
      bool ready = false;
      if (c->ready == MON_READY_PING) {
        if (now >= p->next_probe_ms) {
          p->next_probe_ms = now + MON_PROBE_EVERY_MS;
          ready = s->ops.probe && s->ops.probe(s->ops.ctx, i) == 1;
        }
      } else {
        ready = now - p->started_ms >= (uint64_t)c->start_secs * 1000;
      }
      if (ready) {
        mon_sup_event(s, i, MON_EV_READY);
        continue;
      }
    }
    if (p->deadline_ms && now >= p->deadline_ms)
      mon_sup_event(s, i, MON_EV_TIMER);
  }
  sup_stop_pass(s);
}

uint64_t mon_sup_next_deadline(const mon_sup *s) {
  uint64_t next = UINT64_MAX;
  for (size_t i = 0; i < s->n; i++) {
    const mon_proc *p = &s->procs[i];
    const mon_service_cfg *c = &s->cfg->services[i];
    if (p->deadline_ms && p->deadline_ms < next)
      next = p->deadline_ms;
    if (p->state == MON_STARTING) {
      uint64_t t = c->ready == MON_READY_PING
                       ? p->next_probe_ms
                       : p->started_ms + (uint64_t)c->start_secs * 1000;
      if (t < next)
        next = t;
    }
    if (p->state == MON_RUNNING && c->health != MON_HEALTH_NONE) {
      uint64_t t = p->health_pending ? p->health_poll_ms : p->health_next_ms;
      if (t < next)
        next = t;
    }
  }
  return next;
}

bool mon_sup_all_down(const mon_sup *s) {
  for (size_t i = 0; i < s->n; i++)
    if (s->procs[i].pid > 0)
      return false;
  return true;
}

const char *mon_state_name(mon_state st) {
  static const char *const names[] = {
#define MON__STATE_NAME(n) #n,
      MON_STATE_LIST(MON__STATE_NAME)
#undef MON__STATE_NAME
  };
  return (unsigned)st < MON_NSTATES ? names[st] : "UNKNOWN";
}

int mon_sup_find(const mon_sup *s, const char *name) {
  for (size_t i = 0; i < s->n; i++)
    if (!strcmp(s->cfg->services[i].name, name))
      return (int)i;
  return -1;
}

/* supervisor.c — one table maps (state, event) to an action; each action
 * does its work through the ops table and returns the next state. Nothing
 * here touches processes, signals or clocks directly. */
#include "supervisor.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

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

/* A start request from a resting state begins a fresh retry count. */
static mon_state sup_fresh_start(mon_sup *s, size_t i) {
  s->procs[i].retries = 0;
  return sup_spawn(s, i);
}

static mon_state sup_ready(mon_sup *s, size_t i) {
  s->procs[i].deadline_ms = 0;
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
    /*               START            STOP              READY       EXIT         TIMER */
    [MON_STOPPED] = {sup_fresh_start, sup_ignore,       sup_ignore, sup_ignore,  sup_ignore},
    [MON_STARTING] = {sup_ignore,     sup_stop_start,   sup_ready,  sup_exited,  sup_not_ready},
    [MON_RUNNING] = {sup_ignore,      sup_stop_start,   sup_ignore, sup_exited,  sup_ignore},
    [MON_BACKOFF] = {sup_fresh_start, sup_cancel,       sup_ignore, sup_ignore,  sup_spawn},
    [MON_STOPPING] = {sup_start_later, sup_cancel_start, sup_ignore, sup_stopped, sup_kill},
    [MON_EXITED] = {sup_fresh_start,  sup_ignore,       sup_ignore, sup_ignore,  sup_ignore},
    [MON_FATAL] = {sup_fresh_start,   sup_ignore,       sup_ignore, sup_ignore,  sup_ignore},
};
// clang-format on

void mon_sup_event(mon_sup *s, size_t i, mon_event ev) {
  if (i >= s->n || (unsigned)ev >= MON_NEVENTS)
    return;
  mon_proc *p = &s->procs[i];
  if (ev == MON_EV_EXIT)
    p->pid = 0;
  p->state = sup_table[p->state][ev](s, i);
}

int mon_sup_init(mon_sup *s, const mon_config *cfg, const mon_sup_ops *ops) {
  memset(s, 0, sizeof *s);
  s->cfg = cfg;
  s->ops = *ops;
  s->n = cfg->nservices;
  s->procs = calloc(s->n ? s->n : 1, sizeof *s->procs);
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

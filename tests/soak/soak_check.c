/* soak_check.c — the verdict on one phase of the soak: every numbered call
 * as its client recorded it against how often the server ran it. No call
 * ran twice, a success ran exactly once, a failure is one a caller can act
 * on and ran at most once (never, when nothing listened or nothing was
 * sent), and no caller waited past its timeout plus the slack. */
#include <stdarg.h>
#include <stdio.h>
#include <sys/wait.h>

#include "soak.h"
#include "svc.h"

#define VIOLATIONS_PRINTED 25

int soak_rc_actionable(int rc) {
  return rc == SVC_ECONNREFUSED || rc == SVC_EPEERGONE || rc == SVC_ETIMEDOUT;
}

void soak_violation(soak_tally *t, const char *fmt, ...) {
  if (++t->violations > VIOLATIONS_PRINTED) {
    if (t->violations == VIOLATIONS_PRINTED + 1)
      printf("VIOLATION [%s] ... (further violations are only counted)\n",
             t->transport);
    return;
  }
  va_list ap;
  va_start(ap, fmt);
  printf("VIOLATION [%s] ", t->transport);
  vprintf(fmt, ap);
  printf("\n");
  va_end(ap);
  fflush(stdout);
}

static const char *rc_name(int rc) {
  switch (rc) {
  case SOAK_RC_BAD_REPLY:
    return "a reply to another call";
  case SOAK_RC_LOST:
    return "lost (svc_call_recv had nothing long after its deadline)";
  default:
    return svc_err_name(rc);
  }
}

/* 1 if the worker that first ran e did so after its master was killed. */
static int run_by_orphan(const soak_check_in *in, const soak_exec *e) {
  for (int i = 0; i < in->norphans; i++)
    if ((pid_t)e->pid[0] == in->orphans[i].pid &&
        (int32_t)(e->first_ms - (uint32_t)in->orphans[i].master_died_ms) >= 0)
      return 1;
  return 0;
}

/* The outcome of call (client, seq) as its client recorded it. */
static void tally_outcome(soak_tally *t, const soak_call *call) {
  if (call->rc == 0) {
    t->ok++;
    return;
  }
  t->failed++;
  if (call->stage == SOAK_STAGE_SEND && call->rc == SVC_EAGAIN)
    t->not_sent++;
  else if (call->rc < 0 && -call->rc < SOAK_CODES)
    t->by_code[-call->rc]++;
  else
    t->other++;
}

static void check_call(const soak_check_in *in, soak_tally *t, uint32_t client,
                       uint32_t seq, const soak_call *call,
                       const soak_exec *e) {
  uint32_t ran = e->count;
  const char *how = call->how == SOAK_HOW_PIPELINED ? "pipelined" : "svc_call";
  const char *sent = call->stage == SOAK_STAGE_SEND ? " at svc_call_send" : "";
  uint32_t waited = call->elapsed_us / 1000;
  if (call->state != SOAK_CALL_DONE) {
    soak_violation(t,
                   "call c%u#%u (%s) never finished: its client hung or died "
                   "in it (ran %u times)",
                   client, seq, how, ran);
    return;
  }
  tally_outcome(t, call);
  if (waited > t->max_wait_ms) {
    t->max_wait_ms = waited;
    t->max_wait_client = client;
    t->max_wait_seq = seq;
    t->max_wait_rc = call->rc;
  }
  if (ran > 1)
    soak_violation(t,
                   "call c%u#%u (%s) ran %u times (pids %u and %u); its caller "
                   "got %s after %u ms",
                   client, seq, how, ran, e->pid[0], e->pid[1],
                   rc_name(call->rc), waited);
  else if (call->rc == 0 && ran != 1)
    soak_violation(t, "call c%u#%u (%s) succeeded but never ran", client, seq,
                   how);
  else if (call->rc == SVC_ECONNREFUSED && ran != 0)
    soak_violation(t,
                   "call c%u#%u (%s) failed with SVC_ECONNREFUSED%s but ran "
                   "(pid %u)",
                   client, seq, how, sent, e->pid[0]);
  else if (call->stage == SOAK_STAGE_SEND && call->rc == SVC_EAGAIN && ran)
    soak_violation(t,
                   "call c%u#%u was refused by svc_call_send (SVC_EAGAIN: "
                   "nothing sent) but ran (pid %u)",
                   client, seq, e->pid[0]);
  if (call->rc == SOAK_RC_LOST) {
    soak_violation(t,
                   "call c%u#%u (%s) was lost: svc_call_recv had not finished "
                   "it %u ms after its send (timeout %d ms; ran %u times)",
                   client, seq, how, waited, in->timeout_ms, ran);
    return;
  }
  if (call->rc == SOAK_RC_BAD_REPLY)
    soak_violation(t,
                   "call c%u#%u (%s) succeeded with the reply to another call "
                   "(ran %u times)",
                   client, seq, how, ran);
  else if (!(call->rc == 0 || soak_rc_actionable(call->rc) ||
             (call->stage == SOAK_STAGE_SEND && call->rc == SVC_EAGAIN)))
    soak_violation(t,
                   "call c%u#%u (%s) failed%s with %s after %u ms: not a "
                   "failure a caller can act on (ran %u times)",
                   client, seq, how, sent, svc_err_name(call->rc), waited, ran);
  if (call->elapsed_us > (uint32_t)(in->timeout_ms + in->slack_ms) * 1000u)
    soak_violation(t,
                   "call c%u#%u (%s) waited %u ms (%s): past its timeout %d ms "
                   "+ slack %d ms",
                   client, seq, how, waited, rc_name(call->rc), in->timeout_ms,
                   in->slack_ms);
}

void soak_check(const soak_check_in *in, soak_tally *t) {
  for (uint32_t c = 0; c < in->clients; c++) {
    const soak_client_head *h = in->heads[c];
    const soak_call *calls = (const soak_call *)(h + 1);
    const soak_exec *execs = in->exec + (size_t)c * in->capacity;
    uint32_t highest =
        soak_exec_highest(in->exec, in->clients, in->capacity)[c];
    int st = in->client_status[c];
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || !h->exit_ok)
      soak_violation(t, "client %u did not finish its phase (%s %d)", c,
                     WIFSIGNALED(st) ? "killed by signal" : "exit code",
                     WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
    if (!h->opened)
      soak_violation(t, "client %u never opened a connection", c);
    if (h->open_bad_rc)
      soak_violation(t, "client %u: svc_client_open failed with %s", c,
                     svc_err_name(h->open_bad_rc));
    if (h->unknown_ids)
      soak_violation(t, "client %u: svc_call_recv named %u calls never sent", c,
                     h->unknown_ids);
    t->full_clients += h->full != 0;
    t->moves += h->moves;
    uint32_t ncalls = h->ncalls <= in->capacity ? h->ncalls : in->capacity;
    t->calls += ncalls;
    uint32_t end = highest > ncalls ? highest : ncalls;
    for (uint32_t seq = 0; seq < end && seq < in->capacity; seq++) {
      const soak_exec *e = &execs[seq];
      if (e->count) {
        t->executed++;
        t->by_orphans += run_by_orphan(in, e);
      }
      if (seq < ncalls) {
        check_call(in, t, c, seq, &calls[seq], e);
        t->executed_failed += e->count && calls[seq].rc != 0;
      } else if (e->count) {
        soak_violation(t, "call c%u#%u ran %u times but was never made", c, seq,
                       e->count);
      }
    }
  }
}

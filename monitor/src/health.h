/* health.h — health probes of a running service (health = http://, tcp://
 * or exec:), besides readiness. One probe thread runs them off the event
 * loop, so a service that hangs its probe never stalls supervision. */
#ifndef MON_HEALTH_H
#define MON_HEALTH_H

#include <stddef.h>

#include "config.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The probe itself, blocking up to s->health_timeout_ms (plus a few ms of
 * clean-up): 1 pass, 0 fail with a short reason in why ("HTTP 503",
 * "connect: Connection refused", "timed out after 2000 ms", "exit code 1",
 * "killed by signal 9"). HTTP passes on a 2xx status line, TCP when the
 * connect completes, EXEC when the command exits 0. An EXEC check runs in a
 * process group of its own with stdin/out/err on /dev/null; the group is
 * SIGKILLed once the check has exited or timed out, and the child is reaped
 * here with waitpid(pid) (so the caller must not reap with waitpid(-1)).
 * A service without a probe passes. */
int mon_health_check(const mon_service_cfg *s, char *why, size_t len);

typedef struct mon_healther mon_healther;

/* Starts the probe thread (create after the monitor blocked signals: the
 * thread and the checks' children start with that mask; the children reset
 * it). It keeps no pointer into cfg past a call. NULL when out of
 * resources. */
mon_healther *mon_healther_new(const mon_config *cfg);
/* Stops the thread and frees. A probe in flight is abandoned at once (an
 * exec check is killed and reaped); waits for nothing else. NULL is fine. */
void mon_healther_free(mon_healther *h);
/* Never blocks: asks for one probe of service i unless one is already asked
 * for or in flight. Probes run one at a time, taking the services that
 * asked in round-robin order, so a service waits at most for one probe of
 * each other service (each bounded by its health_timeout_ms) before its
 * own starts. */
void mon_healther_begin(mon_healther *h, size_t i);
/* Never blocks: -1 while no finished result waits; else 1 or 0 (reason in
 * why) and the result is consumed. */
int mon_healther_take(mon_healther *h, size_t i, char *why, size_t len);
/* Drops a pending result and ignores a probe in flight for service i (a new
 * run began); a probe in flight for it is cut short. */
void mon_healther_reset(mon_healther *h, size_t i);
/* After a config reload: cfg is the new config, old_of_new[j] is the old
 * index of new service j or -1 (old_of_new has cfg->nservices entries).
 * A kept service whose health key and timeout did not change keeps its
 * pending result and its probe in flight; the others start afresh. Never
 * blocks for long; the old config may be freed once it returns. Out of
 * memory turns every probe off (begin ignored, take -1; stderr says so)
 * until the next reconfigure. */
void mon_healther_reconfigure(mon_healther *h, const mon_config *cfg,
                              const int *old_of_new);

#ifdef __cplusplus
}
#endif
#endif

/* wait.h — spin-then-sleep waiting on a sequence counter in shared memory.
 * The waiter spins (with `pause`) for a budget learned from recent waits,
 * then says it sleeps and poll()s the connection's socket, which is both the
 * doorbell and the peer's death notice. The waker makes a syscall only when
 * the waiter said it sleeps, so two spinning sides make none. */
#ifndef SVC_WAIT_H
#define SVC_WAIT_H

#include <stdatomic.h>
#include <stdint.h>

#include "svc.h"

#define SVC__SPIN_MAX_NS 100000      /* adaptive budget cap: 100 us */
#define SVC__SPIN_FORCED_NS 50000000 /* SVC_WAIT_SPIN: 50 ms, then sleep */

typedef struct svc__waiter {
  svc_wait_policy policy;
  uint32_t budget_ns;    /* current spin budget (adaptive) */
  uint32_t cooldown;     /* waits left that must sleep without spinning */
  uint32_t backoff;      /* next cooldown length; doubles on each preemption */
  _Atomic int *spinners; /* optional: spinning threads sharing the cores */
  int max_spinners;      /* spin only while *spinners < this */
} svc__waiter;

void svc__waiter_init(svc__waiter *w, svc_wait_policy policy);

/* Spins until *seq != old or the budget ends. Returns 1 when it changed,
 * 0 when the budget ran out (or spinning was not allowed). No syscalls. */
int svc__spin(svc__waiter *w, const _Atomic uint32_t *seq, uint32_t old);

/* After a wait that ended in sleep, t ns after it began: lets the budget
 * grow back when waits are short (the probe that ends pure sleeping). */
void svc__waiter_learn(svc__waiter *w, int64_t t);

/* Waits until *seq != old: spins, then stores 1 in *sleeping and polls fd
 * until the deadline (ns, monotonic; INT64_MAX for none). Returns 0,
 * SVC_EPEERGONE when fd reports hang-up or EOF, SVC_ETIMEDOUT (at once,
 * without sleeping, when the deadline has already passed). */
int svc__wait(svc__waiter *w, const _Atomic uint32_t *seq, uint32_t old,
              _Atomic uint32_t *sleeping, int fd, int64_t deadline);

/* svc__wait for a reply the peer may be copying: when the budget ends
 * while *busy_for == busy_val (the peer says it is writing what we wait
 * for), spins on until *eta_ns (at most SVC__BUSY_SPIN_MAX_NS more), then
 * sleeps as svc__wait does. A peer computing without saying so costs the
 * usual budget only. */
#define SVC__BUSY_SPIN_MAX_NS 20000000 /* 20 ms */
int svc__wait_hinted(svc__waiter *w, const _Atomic uint32_t *seq, uint32_t old,
                     _Atomic uint32_t *sleeping, int fd, int64_t deadline,
                     const _Atomic uint32_t *busy_for, uint32_t busy_val,
                     const _Atomic uint64_t *eta_ns);

/* After svc__spin ran out: spins on while *busy_for == busy_val and
 * *eta_ns is ahead (capped as above). 1 when *seq left old. */
int svc__spin_while_busy(const _Atomic uint32_t *seq, uint32_t old,
                         const _Atomic uint32_t *busy_for, uint32_t busy_val,
                         const _Atomic uint64_t *eta_ns);

/* The same for a condition over several words: waits until ready(ctx). */
int svc__wait_any(svc__waiter *w, int (*ready)(void *ctx), void *ctx,
                  _Atomic uint32_t *sleeping, int fd, int64_t deadline);

/* Publishes val in *seq, then rings fd if the peer said it sleeps (see
 * svc__ring). Returns 0 or SVC_EPEERGONE. */
int svc__wake(_Atomic uint32_t *seq, uint32_t val,
              _Atomic uint32_t *peer_sleeping, int fd);

/* Rings fd if *peer_sleeping is set, clearing it: of several wakers only
 * the one that clears the flag makes the syscall, so a batch of messages
 * costs one wake-up. The sleeper sets the flag again before it re-checks.
 * Returns 0 or SVC_EPEERGONE. */
int svc__ring(_Atomic uint32_t *peer_sleeping, int fd);

/* Reads pending doorbell bytes without blocking. 0, or SVC_EPEERGONE on EOF. */
int svc__doorbell_drain(int fd);

#endif

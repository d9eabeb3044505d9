/* wait.c — adaptive spin-then-sleep (see wait.h). The budget follows how
 * long waits on this connection take: about twice a typical wait, capped at
 * SVC__SPIN_MAX_NS, halved when spinning fails or the spinner notices it was
 * preempted (a sign that spinners outnumber cores), so slow calls and an
 * oversubscribed machine drift toward pure sleeping. */
#include "wait.h"

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>

#include "internal.h"
#include "sys.h"

#define SPIN_START_NS 20000
#define PREEMPT_GAP_NS 30000 /* a clock jump this large while spinning */
#define SLEEP_SLICE_MS 100   /* poll at most this long before re-checking */
#define BACKOFF_MIN 16       /* waits without spinning after a preemption */
#define BACKOFF_MAX 4096

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

void svc__waiter_init(svc__waiter *w, svc_wait_policy policy) {
  w->policy = policy;
  w->budget_ns = policy == SVC_WAIT_SPIN    ? SVC__SPIN_FORCED_NS
                 : policy == SVC_WAIT_BLOCK ? 0
                                            : SPIN_START_NS;
  w->spinners = NULL;
  w->max_spinners = 0;
  w->cooldown = 0;
  w->backoff = BACKOFF_MIN;
}

/* The spinner was descheduled: runnable threads outnumber cores, and our
 * spinning is taking the CPU the peer needs. Sleep for a while, longer each
 * time it happens again soon. */
static void preempted(svc__waiter *w) {
  w->budget_ns /= 2;
  w->cooldown = w->backoff;
  if (w->backoff < BACKOFF_MAX)
    w->backoff *= 2;
}

static uint32_t budget_for(uint64_t t) {
  uint64_t want = 2 * t + 2000;
  return want > SVC__SPIN_MAX_NS ? SVC__SPIN_MAX_NS : (uint32_t)want;
}

void svc__waiter_learn(svc__waiter *w, int64_t t) {
  if (w->policy != SVC_WAIT_ADAPTIVE || t < 0 || w->cooldown)
    return;
  if (t < SVC__SPIN_MAX_NS / 2) {
    /* a slightly longer spin would have caught it */
    uint32_t want = budget_for((uint64_t)t);
    if (want > w->budget_ns)
      w->budget_ns = want;
  } else {
    w->budget_ns /= 2;
  }
}

/* A spin that caught the change after t ns: track about 2x typical waits. */
static void learn_spun(svc__waiter *w, int64_t t) {
  if (w->policy != SVC_WAIT_ADAPTIVE)
    return;
  uint32_t b = w->budget_ns - w->budget_ns / 8;
  uint32_t want = budget_for((uint64_t)t);
  w->budget_ns = want > b ? want : b;
  if (w->backoff > BACKOFF_MIN)
    w->backoff--; /* calm again: forgive past preemptions slowly */
}

static int spin_allowed(svc__waiter *w) {
  if (w->cooldown) {
    w->cooldown--;
    return 0;
  }
  if (w->budget_ns == 0)
    return 0;
  if (!w->spinners)
    return 1;
  if (atomic_fetch_add(w->spinners, 1) < w->max_spinners)
    return 1;
  atomic_fetch_sub(w->spinners, 1);
  return 0;
}

/* What a waiter waits for: *seq to leave old, or ready(ctx) to hold. */
typedef struct wait_cond {
  const _Atomic uint32_t *seq;
  uint32_t old;
  int (*ready)(void *ctx);
  void *ctx;
  const _Atomic uint32_t *busy_for; /* optional: the peer's "writing for" */
  uint32_t busy_val;
  const _Atomic uint64_t *eta_ns;
} wait_cond;

static inline int cond_met(const wait_cond *c) {
  if (c->ready)
    return c->ready(c->ctx);
  return atomic_load_explicit(c->seq, memory_order_acquire) != c->old;
}

/* Returns 1 met, 0 budget out; sets *preempted on a clock jump. */
static int spin_loop(svc__waiter *w, const wait_cond *c, int64_t start,
                     int *preempted) {
  int64_t last = start, end = start + w->budget_ns;
  for (;;) {
    for (int i = 0; i < 32; i++) {
      if (cond_met(c))
        return 1;
      cpu_relax();
    }
    int64_t now = svc__now_ns();
    if (now - last > PREEMPT_GAP_NS && w->policy == SVC_WAIT_ADAPTIVE) {
      *preempted = 1;
      return 0;
    }
    if (now >= end)
      return 0;
    last = now;
  }
}

#define QUICK_CHECKS 64 /* a change this soon needs no clock read */

/* Spins per the budget. Returns 1 when the condition holds. *start is set
 * to the time spinning began if a clock was read (else left alone): a
 * change within the first QUICK_CHECKS checks, the common case between two
 * busy sides, costs no clock read and teaches the budget nothing. */
static int spin_budgeted(svc__waiter *w, const wait_cond *c, int64_t *start) {
  if (!spin_allowed(w))
    return 0;
  int ok = 0, was_preempted = 0;
  for (int i = 0; i < QUICK_CHECKS && !ok; i++) {
    ok = cond_met(c);
    if (!ok)
      cpu_relax();
  }
  if (!ok) {
    *start = svc__now_ns();
    ok = spin_loop(w, c, *start, &was_preempted);
    if (ok)
      learn_spun(w, svc__now_ns() - *start);
    else if (was_preempted)
      preempted(w);
  }
  if (w->spinners)
    atomic_fetch_sub(w->spinners, 1);
  return ok;
}

int svc__spin(svc__waiter *w, const _Atomic uint32_t *seq, uint32_t old) {
  if (atomic_load_explicit(seq, memory_order_acquire) != old)
    return 1;
  int64_t start = 0;
  wait_cond c = {.seq = seq, .old = old};
  return spin_budgeted(w, &c, &start);
}

int svc__doorbell_drain(int fd) {
  char buf[64];
  for (;;) {
    ssize_t n = svc__recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0)
      continue;
    if (n == 0)
      return SVC_EPEERGONE;
    if (errno == EINTR)
      continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK)
      return 0;
    return SVC_EPEERGONE;
  }
}

/* The budget ran out while the peer says it is copying what we wait for:
 * spinning through the copy is cheaper than a sleep and a wake-up. Returns
 * 1 when the condition held, 0 when the peer stopped saying so or its
 * estimate (capped) passed. */
static int spin_while_busy(const wait_cond *c, int64_t deadline) {
  int64_t now = svc__now_ns(), cap = now + SVC__BUSY_SPIN_MAX_NS;
  cap = cap < deadline ? cap : deadline;
  for (;;) {
    if (atomic_load_explicit(c->busy_for, memory_order_relaxed) != c->busy_val)
      return cond_met(c);
    int64_t eta =
        (int64_t)atomic_load_explicit(c->eta_ns, memory_order_relaxed);
    if (now >= eta || now >= cap)
      return cond_met(c);
    for (int i = 0; i < 64; i++) {
      if (cond_met(c))
        return 1;
      cpu_relax();
    }
    now = svc__now_ns();
  }
}

/* Sleeps until the condition holds. The flag is stored again before every
 * check: a waker clears it when it rings, so a wake-up that did not bring
 * what we wait for must re-arm before we sleep again. */
static int sleep_until(const wait_cond *c, _Atomic uint32_t *sleeping, int fd,
                       int64_t deadline) {
  int rc = 0;
  for (;;) {
    atomic_store(sleeping, 1); /* seq_cst: pairs with the waker's exchange */
    if (cond_met(c))
      break;
    int64_t now = svc__now_ns();
    if (now >= deadline) {
      rc = SVC_ETIMEDOUT;
      break;
    }
    int64_t left_ms = (deadline - now + 999999) / 1000000;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int n =
        poll(&p, 1, left_ms > SLEEP_SLICE_MS ? SLEEP_SLICE_MS : (int)left_ms);
    if (n < 0 && errno != EINTR) {
      rc = SVC_ESYS;
      break;
    }
    if (n > 0 && (rc = svc__doorbell_drain(fd)) < 0) {
      if (cond_met(c)) /* what we waited for came before the hang-up */
        rc = 0;
      break;
    }
    /* Rung early by a peer that started copying what we wait for: spin
     * through the rest of the copy, unseen by the peer's next ring. */
    if (n > 0 && c->busy_for &&
        atomic_load_explicit(c->busy_for, memory_order_relaxed) ==
            c->busy_val) {
      atomic_store(sleeping, 0);
      if (spin_while_busy(c, deadline))
        break;
    }
  }
  atomic_store(sleeping, 0);
  return rc;
}

static int wait_cond_until(svc__waiter *w, const wait_cond *c,
                           _Atomic uint32_t *sleeping, int fd,
                           int64_t deadline) {
  if (cond_met(c))
    return 0;
  int64_t start = 0;
  if (spin_budgeted(w, c, &start))
    return 0;
  if (c->busy_for && w->policy != SVC_WAIT_BLOCK &&
      spin_while_busy(c, deadline))
    return 0;
  if (start == 0)
    start = svc__now_ns();
  if (start >= deadline)
    return SVC_ETIMEDOUT; /* a poll (timeout 0): no sleep */
  wait_cond sc = *c;
  if (w->policy == SVC_WAIT_BLOCK)
    sc.busy_for = NULL; /* never spins, not even through a copy */
  int rc = sleep_until(&sc, sleeping, fd, deadline);
  if (rc == 0)
    svc__waiter_learn(w, svc__now_ns() - start);
  return rc;
}

int svc__wait(svc__waiter *w, const _Atomic uint32_t *seq, uint32_t old,
              _Atomic uint32_t *sleeping, int fd, int64_t deadline) {
  wait_cond c = {.seq = seq, .old = old};
  return wait_cond_until(w, &c, sleeping, fd, deadline);
}

/* A wait for *seq to leave old, through a copy the peer announces. */
static wait_cond hinted(const _Atomic uint32_t *seq, uint32_t old,
                        const _Atomic uint32_t *busy_for, uint32_t busy_val,
                        const _Atomic uint64_t *eta_ns) {
  return (wait_cond){.seq = seq,
                     .old = old,
                     .busy_for = busy_for,
                     .busy_val = busy_val,
                     .eta_ns = eta_ns};
}

int svc__spin_while_busy(const _Atomic uint32_t *seq, uint32_t old,
                         const _Atomic uint32_t *busy_for, uint32_t busy_val,
                         const _Atomic uint64_t *eta_ns) {
  wait_cond c = hinted(seq, old, busy_for, busy_val, eta_ns);
  return spin_while_busy(&c, INT64_MAX);
}

int svc__wait_hinted(svc__waiter *w, const _Atomic uint32_t *seq, uint32_t old,
                     _Atomic uint32_t *sleeping, int fd, int64_t deadline,
                     const _Atomic uint32_t *busy_for, uint32_t busy_val,
                     const _Atomic uint64_t *eta_ns) {
  wait_cond c = hinted(seq, old, busy_for, busy_val, eta_ns);
  return wait_cond_until(w, &c, sleeping, fd, deadline);
}

int svc__wait_any(svc__waiter *w, int (*ready)(void *ctx), void *ctx,
                  _Atomic uint32_t *sleeping, int fd, int64_t deadline) {
  wait_cond c = {.ready = ready, .ctx = ctx};
  return wait_cond_until(w, &c, sleeping, fd, deadline);
}

int svc__ring(_Atomic uint32_t *peer_sleeping, int fd) {
  /* Only the waker that takes the flag rings: one byte per sleep. */
  if (!atomic_load(peer_sleeping) || !atomic_exchange(peer_sleeping, 0))
    return 0;
  static const char bell = 1;
  for (;;) {
    ssize_t n = svc__send(fd, &bell, 1, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n == 1 || (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)))
      return 0; /* a full socket already holds a wake-up */
    if (n < 0 && errno == EINTR)
      continue;
    return SVC_EPEERGONE;
  }
}

int svc__wake(_Atomic uint32_t *seq, uint32_t val,
              _Atomic uint32_t *peer_sleeping, int fd) {
  atomic_store(seq, val); /* seq_cst: the store is visible before the load */
  return svc__ring(peer_sleeping, fd);
}

/* fault.c — the counter behind fault.h. Compiled into test builds only. */
#include "fault.h"

#include <errno.h>
#include <stdatomic.h>
#include <string.h>

static const struct {
  const char *name;
  int err;
} kinds[SVC_FAULT_OP_COUNT] = {
    [SVC_FAULT_ALLOC] = {"alloc", ENOMEM},
    [SVC_FAULT_MEMFD] = {"memfd", EMFILE},
    [SVC_FAULT_SEAL] = {"seal", EPERM},
    [SVC_FAULT_FALLOCATE] = {"fallocate", ENOSPC},
    [SVC_FAULT_MMAP] = {"mmap", ENOMEM},
    [SVC_FAULT_SOCKET] = {"socket", EMFILE},
    [SVC_FAULT_CONNECT] = {"connect", ECONNREFUSED},
    [SVC_FAULT_ACCEPT] = {"accept", EMFILE},
    [SVC_FAULT_SEND] = {"send", ECONNRESET},
    [SVC_FAULT_RECV] = {"recv", ECONNRESET},
    [SVC_FAULT_FD] = {"fd", EMFILE},
    [SVC_FAULT_EPOLL_CTL] = {"epoll_ctl", ENOMEM},
    [SVC_FAULT_EPOLL_WAIT] = {"epoll_wait", EINTR},
    [SVC_FAULT_FORK] = {"fork", EAGAIN},
    [SVC_FAULT_THREAD] = {"thread", EAGAIN},
    [SVC_FAULT_PIPE] = {"pipe", EMFILE},
    [SVC_FAULT_STORE] = {"store", ENOSPC},
    [SVC_FAULT_OPEN] = {"open", EMFILE},
    [SVC_FAULT_STORE_READ] = {"store_read", EIO},
};

/* Test-only process state (see fault.h): the one deliberate global. */
static _Atomic uint64_t armed_mask;
static _Atomic long nth_call, calls, injected;
static _Atomic int persistent_fail, fail_errno, last_op = -1;

void svc__fault_arm(uint64_t mask, long nth, int persistent, int err) {
  atomic_store(&armed_mask, 0);
  atomic_store(&calls, 0);
  atomic_store(&injected, 0);
  atomic_store(&last_op, -1);
  atomic_store(&nth_call, nth);
  atomic_store(&persistent_fail, persistent);
  atomic_store(&fail_errno, err);
  atomic_store(&armed_mask, mask & SVC_FAULT_ALL);
}

void svc__fault_disarm(void) { atomic_store(&armed_mask, 0); }
long svc__fault_calls(void) { return atomic_load(&calls); }
long svc__fault_injected(void) { return atomic_load(&injected); }
int svc__fault_last_op(void) { return atomic_load(&last_op); }

const char *svc__fault_op_name(int op) {
  return op >= 0 && op < SVC_FAULT_OP_COUNT ? kinds[op].name : "none";
}

uint64_t svc__fault_parse_ops(const char *names) {
  uint64_t mask = 0;
  while (names && *names) {
    size_t n = strcspn(names, ",");
    int found = 0;
    if (n == 3 && strncmp(names, "all", 3) == 0) {
      mask |= SVC_FAULT_ALL;
      found = 1;
    }
    for (int i = 0; !found && i < SVC_FAULT_OP_COUNT; i++)
      if (strlen(kinds[i].name) == n && strncmp(names, kinds[i].name, n) == 0) {
        mask |= SVC_FAULT_BIT(i);
        found = 1;
      }
    if (!found)
      return 0;
    names += n + (names[n] == ',');
  }
  return mask;
}

int svc__fault_check(enum svc__fault_op op) {
  if (!(atomic_load_explicit(&armed_mask, memory_order_relaxed) &
        SVC_FAULT_BIT(op)))
    return 0;
  long n = atomic_fetch_add(&calls, 1) + 1;
  long at = atomic_load(&nth_call);
  if (at <= 0 || n < at || (n > at && !atomic_load(&persistent_fail)))
    return 0;
  atomic_fetch_add(&injected, 1);
  atomic_store(&last_op, (int)op);
  int e = atomic_load(&fail_errno);
  return e ? e : kinds[op].err;
}

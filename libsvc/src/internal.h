/* internal.h — declarations shared by libsvc's own files (svc__ prefix):
 * errno translation, clocks and the small helpers every module uses. */
#ifndef SVC_INTERNAL_H
#define SVC_INTERNAL_H

#include <stdint.h>
#include <time.h>

#include "svc.h"

/* Largest max message size: lengths are 32-bit on the wire. */
#define SVC__MAX_MSG_LIMIT ((size_t)UINT32_MAX - 65536)

/* errno -> SVC_E* after a failed call (never 0, even if errno is 0); the
 * only place this mapping lives. */
int svc__from_errno(int e);

static inline int64_t svc__now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Absolute deadline for a timeout in ms; 0 means none (INT64_MAX). */
static inline int64_t svc__deadline(int timeout_ms) {
  return timeout_ms > 0 ? svc__now_ns() + (int64_t)timeout_ms * 1000000
                        : INT64_MAX;
}

/* For the per-call path (a 64 B shm call is a few hundred instructions,
 * so calls and register saves show): SVC__INLINE where one layer is
 * inlined into its callers, SVC__COLD on what a call reaches only when
 * something went wrong or changed, so it stays out of the way. */
#define SVC__INLINE inline __attribute__((always_inline))
#define SVC__COLD __attribute__((cold, noinline))

#endif

/* stats.h — per-method call statistics of a server: calls, errors, bytes and
 * a log-scale histogram of handler time, counted without a shared atomic on
 * the hot path and kept in a MAP_SHARED region made before worker processes
 * fork, so any worker's svc.stats reports the whole service. */
#ifndef SVC_STATS_H
#define SVC_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "internal.h"

/* Handler time is counted in ticks: TSC cycles on x86 when the kernel's
 * clocksource is the TSC (a read costs about half of clock_gettime's, which
 * matters on a sub-microsecond shm call), else nanoseconds; tsc is what
 * svc__stats_uses_tsc said. Readers convert with the ns_per_tick measured
 * since the mapping was made. */
static inline uint64_t svc__stats_ticks(int tsc) {
#if defined(__x86_64__) || defined(__i386__)
  if (tsc)
    return __builtin_ia32_rdtsc();
#else
  (void)tsc;
#endif
  return (uint64_t)svc__now_ns();
}

/* Histogram: exact below 8 ticks, then 8 sub-buckets per power of two
 * (each bucket at most 1/8 of its lower bound wide, so a percentile
 * reported as the bucket's middle is within 6.25%), up to 2^37 ticks (46 s
 * at 3 GHz); longer calls land in the last bucket. */
#define SVC__HIST_SUB_BITS 3
#define SVC__HIST_BUCKETS 280

/* Bucket of a duration in ns. */
int svc__hist_bucket(uint64_t ns);
/* Smallest value of bucket b; svc__hist_lo(b + 1) is one past its largest. */
uint64_t svc__hist_lo(int b);
/* The q-quantile (0 < q <= 1) of counts: the middle of the bucket holding
 * the ceil(q * n)-th smallest value, clamped to max_ns (max_ns itself for
 * the largest); 0 when empty. */
uint64_t svc__hist_quantile(const uint64_t *counts, double q, uint64_t max_ns);

/* One method's totals over every slot: what svc.stats reports. Times are
 * in ticks; multiply by ns_per_tick (0 means 1) for nanoseconds. */
typedef struct svc__method_stats {
  uint64_t calls;
  uint64_t errors;    /* calls that returned non-zero */
  uint64_t bytes_in;  /* request payload bytes */
  uint64_t bytes_out; /* reply payload bytes of successful calls */
  uint64_t total;     /* handler time in ticks, summed */
  uint64_t max;       /* longest handler time in ticks */
  uint64_t hist[SVC__HIST_BUCKETS]; /* by svc__hist_bucket(ticks) */
  double ns_per_tick;
} svc__method_stats;

/* The shared counters of one server: process-local handle over a mapping
 * that forked workers inherit. */
typedef struct svc__stats svc__stats;

/* Maps room for nmethods counters in each of max_slots slots (one per
 * open connection of any process; more connections than slots share a
 * slower overflow slot). The mapping is MAP_SHARED | MAP_ANONYMOUS: create
 * it before forking workers. Pages are touched only as slots are used.
 * SVC_EINVAL, SVC_ENOMEM. */
int svc__stats_new(int nmethods, int max_slots, svc__stats **out);
/* Unmaps (this process's view). */
void svc__stats_free(svc__stats *st);

/* Whether ticks are TSC cycles (pass to svc__stats_ticks). */
int svc__stats_uses_tsc(const svc__stats *st);

/* A slot for one connection: its only writer while it lives (a connection
 * is served by one thread at a time). A free slot, else one whose owner
 * process died, else 0, the shared overflow slot. Never blocks. */
int svc__stats_claim(svc__stats *st);
/* Gives the slot back; its counts stay (totals outlive connections). */
void svc__stats_release(svc__stats *st, int slot);

/* Counts one call of method (0 .. nmethods-1) that took ticks (a difference
 * of svc__stats_ticks) in slot (from svc__stats_claim). Plain loads and
 * stores in an owned slot, atomic adds in the overflow slot. */
void svc__stats_record(svc__stats *st, int slot, int method, uint64_t ticks,
                       uint64_t bytes_in, uint64_t bytes_out, int error);
/* Sums method's counters over every slot of every process into *out. */
void svc__stats_read(const svc__stats *st, int method, svc__method_stats *out);

/* Calls whose method did not exist (counted outside any method). */
void svc__stats_count_unknown(svc__stats *st);
uint64_t svc__stats_unknown(const svc__stats *st);

/* Header fields of a svc.stats reply. */
typedef struct svc__stats_doc {
  const char *name; /* service name */
  int pid;          /* the process that answered */
  int workers;
  int64_t uptime_ms;
  uint64_t unknown_calls;
} svc__stats_doc;

/* Encodes the svc.stats reply (format 1, see docs/protocol.md) for n
 * methods, with each method's non-empty histogram buckets when histogram
 * is set. *out is malloc'd (caller frees), not NUL-terminated in *len.
 * SVC_ENOMEM. */
int svc__stats_json(const svc__stats_doc *doc, const char *const *names,
                    const svc__method_stats *ms, int n, int histogram,
                    char **out, size_t *len);

#endif

/* stats_json.h — reads a libsvc `svc.stats` reply (JSON format 1, see
 * docs/protocol.md) and turns two cumulative snapshots into per-interval
 * method rows: counts, and p50/p99 from the difference of the histograms.
 * Pure: no I/O, no clock; bad input is an error, never a crash. */
#ifndef MON_STATS_JSON_H
#define MON_STATS_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MON_STATS_METHODS_MAX 1024 /* more methods: the reply is refused */
#define MON_STATS_BUCKETS_MAX 1024 /* histogram pairs per method */
#define MON_STATS_NAME_MAX 255     /* bytes in a method name (SVC_METHOD_MAX) */

typedef struct mon_hist_pair {
  uint64_t lo_ns; /* lower bound of the bucket */
  uint64_t count;
} mon_hist_pair;

typedef struct mon_method_stat {
  char name[MON_STATS_NAME_MAX + 1]; /* NUL-free, NUL-terminated */
  uint64_t calls, errors, bytes_in, bytes_out, total_ns, max_ns;
  mon_hist_pair *hist; /* ascending lo_ns; NULL when not sent */
  size_t nhist;
  bool has_hist;
} mon_method_stat;

typedef struct mon_stats_doc {
  int64_t pid, workers, uptime_ms;
  mon_method_stat *methods;
  size_t nmethods;
} mon_stats_doc;

/* Parses one reply of len bytes (need not be NUL-terminated). Requires
 * "format":1, "pid", "uptime_ms" and "methods" (each method with "name"
 * and "calls"); unknown keys are skipped, whatever their value. Numbers
 * must be non-negative integers that fit an int64. 0 and *out filled (free
 * with mon_stats_doc_free), or -1 with a reason in err and *out empty. */
int mon_stats_parse(const char *json, size_t len, mon_stats_doc *out, char *err,
                    size_t errlen);
void mon_stats_doc_free(mon_stats_doc *d);

/* One method over one interval. */
typedef struct mon_method_delta {
  const char *name; /* points into the newer snapshot */
  uint64_t calls, errors, bytes_in, bytes_out, total_ns;
  bool pct_valid; /* both snapshots had histograms with new counts */
  uint64_t p50_ns, p99_ns;
} mon_method_delta;

/* The difference cur - prev, one entry per method of cur that had calls or
 * errors in the interval (a method new in cur counts from zero). Returns
 * the number of entries written to out (room for cur->nmethods), or -1 when
 * the baseline must be reset instead: a different pid, uptime that went
 * down, or any count that went down (the server restarted). */
int mon_stats_delta(const mon_stats_doc *prev, const mon_stats_doc *cur,
                    mon_method_delta *out);

/* The q-quantile (0 < q <= 1) of a histogram given as ascending pairs:
 * the middle of the bucket holding the ceil(q*n)-th value, capped at
 * max_ns when max_ns > 0. 0 when the histogram is empty. */
uint64_t mon_hist_quantile(const mon_hist_pair *h, size_t n, double q,
                           uint64_t max_ns);

#ifdef __cplusplus
}
#endif
#endif

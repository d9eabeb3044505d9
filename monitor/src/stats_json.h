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
  size_t index;     /* of the method in the newer snapshot's methods[] */
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

/* Runs. libsvc's counters live as long as one server process tree (its
 * workers share them), so two snapshots can be subtracted only when they
 * come from the same run. The reader cannot ask which run answered: the
 * pid is the answering worker's, so it changes with scaling while the
 * counters go on. A run is recognised by its start instead, estimated by
 * the caller as (its own CLOCK_MONOTONIC ms when the reply arrived) -
 * uptime_ms; libsvc's uptime is on the same clock. Estimates of one run
 * differ only by how late replies were read, never by less than zero. */
#define MON_STATS_RUN_SLACK_MS 1000 /* later start than this: a new run */

/* Whether cur (started at cur_start_ms) continues the run prev (started
 * at prev_start_ms) came from: false when cur started more than
 * MON_STATS_RUN_SLACK_MS later, when its uptime or any count (calls,
 * errors, bytes) of a method both list went down. Not total_ns, which
 * libsvc converts with a clock rate it re-measures: it may go down a
 * little in one run (its difference is then 0). Pure. */
bool mon_stats_same_run(const mon_stats_doc *prev, int64_t prev_start_ms,
                        const mon_stats_doc *cur, int64_t cur_start_ms);

/* Like mon_stats_delta over two snapshots the caller knows to be of one
 * run (mon_stats_same_run): which pid answered does not matter. prev NULL
 * is a new run: every method of cur counts from zero. -1 if a count went
 * down anyway. */
int mon_stats_delta_run(const mon_stats_doc *prev, const mon_stats_doc *cur,
                        mon_method_delta *out);

/* The method named name in d (hint: its index when known), or NULL. */
const mon_method_stat *mon_stats_find(const mon_stats_doc *d, size_t hint,
                                      const char *name);

/* cur - prev of one method's histogram (prev NULL or without one: all of
 * cur's) into out, room for cur->nhist pairs: returns how many, ascending,
 * each with a non-zero count. */
size_t mon_stats_hist_delta(const mon_method_stat *prev,
                            const mon_method_stat *cur, mon_hist_pair *out);

/* The q-quantile (0 < q <= 1) of a histogram given as ascending pairs:
 * the middle of the bucket holding the ceil(q*n)-th value, capped at
 * max_ns when max_ns > 0. 0 when the histogram is empty. */
uint64_t mon_hist_quantile(const mon_hist_pair *h, size_t n, double q,
                           uint64_t max_ns);

#ifdef __cplusplus
}
#endif
#endif

/* metrics.h — per-(service, method) RPC totals for Prometheus: the sum of
 * every interval the stats poller measured since the monitor started, with
 * handler time folded into a fixed set of histogram buckets. Fed by the
 * poller's thread, read by the HTTP thread; one mutex of its own. */
#ifndef MON_METRICS_H
#define MON_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "stats_json.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mon_metrics mon_metrics;

#define MON_METRICS_SERVICES_MAX 1024 /* as many as a config may have */
#define MON_METRICS_METHODS_MAX 1024  /* per service: more are not counted */
/* A method name as a label value: valid UTF-8, each byte that is not (or
 * a control byte other than newline) spelled \xHH, so up to 4x the name. */
#define MON_METRICS_LABEL_MAX (4 * MON_STATS_NAME_MAX)

/* The histogram's upper bounds ("le") are the powers of two from 2^8 ns
 * (256 ns) to 2^34 ns (17.2 s): every one is a bucket boundary of libsvc's
 * log histogram (8 buckets per power of two, so each power of two starts
 * one), 27 bounds plus +Inf. A libsvc bucket is counted under the first
 * bound at or above its middle: with the server's clock in ns the buckets
 * nest exactly; with TSC ticks libsvc's bounds are tick boundaries times
 * the measured ns per tick, and a bucket that straddles a bound (at most
 * 1/8 of it wide) is placed by its middle. */
#define MON_METRICS_LE_MIN_LOG2 8
#define MON_METRICS_LE_MAX_LOG2 34
#define MON_METRICS_NBOUNDS                                                    \
  (MON_METRICS_LE_MAX_LOG2 - MON_METRICS_LE_MIN_LOG2 + 1)

/* The upper bound of bucket k (0 .. MON_METRICS_NBOUNDS-1) in ns. */
uint64_t mon_metrics_bound_ns(size_t k);
/* The bucket a libsvc bucket starting at lo_ns counts in (its middle
 * estimated as libsvc's widths are: exact below 8, then 1/8 of the power
 * of two): 0 .. MON_METRICS_NBOUNDS-1, or MON_METRICS_NBOUNDS above the
 * top bound (+Inf only). Pure. */
size_t mon_metrics_bucket(uint64_t lo_ns);

/* name (len bytes, may hold any byte but NUL) as a label value into out
 * (room for MON_METRICS_LABEL_MAX + 1): valid UTF-8 is kept, control bytes
 * but newline and each byte of an invalid sequence become the text \xHH.
 * Returns the length. Pure. Two names may meet in one label (a name that
 * spells \xHH itself): their totals are then added, never duplicated. */
size_t mon_metrics_label(const char *name, size_t len, char *out);

/* One method's totals since the monitor started. */
typedef struct mon_metrics_series {
  char *method; /* label value (mon_metrics_label), NUL-terminated */
  uint64_t calls, errors, bytes_in, bytes_out;
  uint64_t sum_ns; /* handler time of the calls the histogram counted */
  uint64_t buckets[MON_METRICS_NBOUNDS + 1]; /* per bucket, not cumulative:
                                                [NBOUNDS] is above the top */
} mon_metrics_series;

/* NULL when out of memory. */
mon_metrics *mon_metrics_new(void);
/* NULL is fine. */
void mon_metrics_free(mon_metrics *m);

/* Adds one interval of one method of service: the counts of d and, when
 * hist is set, the interval's libsvc histogram (nhist ascending pairs,
 * from mon_stats_hist_delta) into the buckets with d->total_ns as their
 * time. Holds the mutex briefly; never waits for the reader otherwise.
 * 0, or -1 when a limit or memory refused a new service or method. */
int mon_metrics_add(mon_metrics *m, const char *service,
                    const mon_method_delta *d, const mon_hist_pair *hist,
                    size_t nhist);
/* Forgets every service whose name is not among names[0..n) (a reload
 * removed it): a name that comes back starts from zero again. */
void mon_metrics_retain(mon_metrics *m, const char *const *names, size_t n);
/* A copy of service's series, sorted by method (free with
 * mon_metrics_series_free): how many, 0 when none or out of memory. */
size_t mon_metrics_get(mon_metrics *m, const char *service,
                       mon_metrics_series **out);
void mon_metrics_series_free(mon_metrics_series *s, size_t n);

/* Appends the Prometheus text of the per-method families (HELP, TYPE and
 * every series of services[0..n), in that order) to b. A NULL m writes the
 * HELP and TYPE lines only. */
void mon_metrics_render(mon_metrics *m, const char *const *services, size_t n,
                        mon_buf *b);
/* A label value with the exposition format's escapes: \ " and newline. */
void mon_metrics_escape(mon_buf *b, const char *s);

#ifdef __cplusplus
}
#endif
#endif

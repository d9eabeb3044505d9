/* fuzz_stats_json.c — svc-monitor's reader of libsvc's svc.stats replies
 * and the interval maths over two snapshots. Input: two documents split at
 * the first NUL (the older, then the newer). Properties: a refused document
 * leaves nothing behind; an accepted one has NUL-free names within limits
 * and ascending histograms; a delta is -1 or at most one row per method,
 * each with counts no larger than the newer snapshot's and percentiles
 * within the newer histogram's range. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stats_json.h"

#define CHECK(c)                                                               \
  do {                                                                         \
    if (!(c)) {                                                                \
      fprintf(stderr, "fuzz_stats_json: property failed: %s\n", #c);           \
      abort();                                                                 \
    }                                                                          \
  } while (0)

static int parse(const char *p, size_t n, mon_stats_doc *d) {
  char err[128];
  int rc = mon_stats_parse(p, n, d, err, sizeof err);
  CHECK(rc == 0 || rc == -1);
  if (rc != 0) {
    CHECK(d->nmethods == 0 && d->methods == NULL);
    CHECK(err[0] != '\0');
    return rc;
  }
  CHECK(d->nmethods <= MON_STATS_METHODS_MAX);
  for (size_t i = 0; i < d->nmethods; i++) {
    const mon_method_stat *m = &d->methods[i];
    size_t len = strnlen(m->name, sizeof m->name);
    CHECK(len > 0 && len <= MON_STATS_NAME_MAX);
    CHECK(m->nhist <= MON_STATS_BUCKETS_MAX);
    for (size_t k = 1; k < m->nhist; k++)
      CHECK(m->hist[k].lo_ns >= m->hist[k - 1].lo_ns);
  }
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *p = (const char *)data;
  const char *nul = memchr(p, '\0', size);
  size_t n1 = nul ? (size_t)(nul - p) : size;
  mon_stats_doc a, b;
  int ra = parse(p, n1, &a);
  int rb = nul ? parse(nul + 1, size - n1 - 1, &b) : -1;
  if (ra == 0 && rb == 0) {
    mon_method_delta *d = malloc((b.nmethods ? b.nmethods : 1) * sizeof *d);
    if (d) {
      int n = mon_stats_delta(&a, &b, d);
      CHECK(n >= -1 && n <= (int)b.nmethods);
      for (int k = 0; k < n; k++) {
        const mon_method_stat *m = NULL;
        for (size_t i = 0; i < b.nmethods && !m; i++)
          if (d[k].name == b.methods[i].name)
            m = &b.methods[i];
        CHECK(m != NULL);
        CHECK(d[k].calls <= m->calls && d[k].errors <= m->errors);
        CHECK(d[k].calls || d[k].errors);
        if (d[k].pct_valid) {
          CHECK(m->nhist > 0);
          CHECK(d[k].p50_ns <= d[k].p99_ns || m->max_ns > 0);
          uint64_t top = m->hist[m->nhist - 1].lo_ns;
          uint64_t cap = top + top / 8 + 1;
          CHECK(d[k].p99_ns <= cap || d[k].p99_ns <= m->max_ns);
        }
      }
      /* the run-aware delta: a new run (prev NULL) counts all of b; one
       * run never gives more than b holds */
      bool same = mon_stats_same_run(&a, 0, &b, 0);
      int nr = mon_stats_delta_run(same ? &a : NULL, &b, d);
      CHECK(nr >= -1 && nr <= (int)b.nmethods);
      CHECK(same || nr >= 0);
      for (int k = 0; k < nr; k++)
        CHECK(d[k].calls || d[k].errors);
      free(d);
    }
    /* histogram differences: ascending, non-zero, never above cur */
    for (size_t i = 0; i < b.nmethods; i++) {
      const mon_method_stat *cur = &b.methods[i];
      const mon_method_stat *prev = mon_stats_find(&a, i, cur->name);
      mon_hist_pair *h = malloc((cur->nhist ? cur->nhist : 1) * sizeof *h);
      if (!h)
        break;
      size_t nh = mon_stats_hist_delta(prev, cur, h);
      CHECK(nh <= cur->nhist);
      uint64_t total = 0, all = 0;
      for (size_t k = 0; k < nh; k++) {
        CHECK(h[k].count > 0);
        CHECK(k == 0 || h[k].lo_ns > h[k - 1].lo_ns);
        total += h[k].count;
      }
      for (size_t k = 0; k < cur->nhist; k++)
        all += cur->hist[k].count;
      CHECK(total <= all);
      free(h);
    }
  }
  if (ra == 0)
    mon_stats_doc_free(&a);
  if (rb == 0)
    mon_stats_doc_free(&b);
  return 0;
}

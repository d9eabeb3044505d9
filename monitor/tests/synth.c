/* synth.c — fills a store with HOURS of 1 Hz samples for N services
 * (svc-0 .. svc-N-1) ending now, plus the minute/hour tiers, so the
 * dashboard can be timed against a day of data (see measure.sh).
 *   svcmon_synth DB [N=50] [HOURS=24] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "store.h"

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: svcmon_synth DB [N] [HOURS]\n");
    return 2;
  }
  int n = argc > 2 ? atoi(argv[2]) : 50;
  int hours = argc > 3 ? atoi(argv[3]) : 24;
  char err[256];
  mon_store *st;
  if (mon_store_open(argv[1], &st, err, sizeof err) != 0) {
    fprintf(stderr, "%s\n", err);
    return 1;
  }
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  int64_t now = (int64_t)ts.tv_sec * 1000, start = now - hours * 3600000LL;
  for (int i = 0; i < n; i++) {
    char name[32], cmd[64];
    snprintf(name, sizeof name, "svc-%d", i);
    snprintf(cmd, sizeof cmd, "sleep 100000");
    int64_t sid;
    if (mon_store_service(st, name, 0, cmd, &sid) != 0)
      return 1;
    mon_store_begin(st);
    for (int64_t t = start; t < now; t += 1000) {
      double x = (double)(t - start) / 1000.0;
      mon_sample s = {.valid = true, .cpu_valid = true, .pss_valid = true};
      s.cpu_pct = 20 + 15 * sin(x / 600 + i) + 5 * sin(x / 37);
      s.rss_bytes = (uint64_t)((50 + 20 * sin(x / 3000 + i)) * 1048576);
      s.pss_bytes = s.rss_bytes / 2;
      s.read_bytes = (uint64_t)(4096 * (1 + sin(x / 90)));
      s.write_bytes = (uint64_t)(8192 * (1 + cos(x / 120)));
      s.nprocs = 1 + i % 4;
      mon_store_sample(st, sid, t, &s);
    }
    mon_store_commit(st);
    fprintf(stderr, "\rsynth: %d/%d services", i + 1, n);
  }
  mon_store_begin(st);
  mon_store_maintain(st, now, 7);
  mon_store_commit(st);
  fprintf(stderr, "\nsynth: %d services x %d h of 1 Hz samples in %s\n", n,
          hours, argv[1]);
  mon_store_close(st);
  return 0;
}

/* flood.c — test service: prints lines of LEN bytes (argv[2], default 200)
 * to stdout at MB_PER_S megabytes a second (argv[1], default 100), in 1 MiB
 * writes paced against the clock, until killed. A write blocks when the
 * monitor reads slower: then it prints as fast as the monitor reads. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double flood_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  double rate = (argc > 1 ? atof(argv[1]) : 100) * 1e6;
  size_t len = argc > 2 ? (size_t)atoi(argv[2]) : 200;
  enum { CHUNK = 1 << 20 };
  static char buf[CHUNK];
  if (rate <= 0 || len < 2 || len > CHUNK)
    return 2;
  size_t used = CHUNK / len * len;
  for (size_t i = 0; i < used; i += len) {
    int n = snprintf(buf + i, len, "flood line %zu ", i / len);
    memset(buf + i + n, 'x', len - 1 - (size_t)n);
    buf[i + len - 1] = '\n';
  }
  double start = flood_now(), sent = 0;
  for (;;) {
    for (size_t off = 0; off < used;) {
      ssize_t w = write(1, buf + off, used - off);
      if (w <= 0)
        return 1;
      off += (size_t)w;
    }
    sent += (double)used;
    double ahead = start + sent / rate - flood_now();
    if (ahead > 0) {
      struct timespec pause = {(time_t)ahead,
                               (long)((ahead - (double)(time_t)ahead) * 1e9)};
      nanosleep(&pause, NULL);
    }
  }
}

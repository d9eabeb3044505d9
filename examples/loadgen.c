/* loadgen.c — keeps the demo's graphs moving: calls echo and kv in a loop
 * at a modest rate that rises and falls over a few minutes, filling kv with
 * up to 20 000 values of 1-4 KiB. Reconnects when a service restarts.
 *   loadgen [ECHO_URL [KV_URL]]   (defaults shm://echo, shm://kv) */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <svc.h>

#define LOADGEN_KEYS 20000
#define LOADGEN_MAX_RATE 400.0 /* calls per second per service, at the peak */

typedef struct conn {
  const char *url;
  svc_client *c;
  long ok, failed;
} conn;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void nap(double s) {
  struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
  nanosleep(&ts, NULL);
}

/* One call; on failure drops the connection so the next call reconnects. */
static int call(conn *k, const char *method, const void *req, size_t len) {
  if (!k->c) {
    if (svc_client_open(k->url, &k->c) != 0) {
      k->c = NULL;
      k->failed++;
      return -1;
    }
    svc_client_set_timeout(k->c, 2000);
    svc_client_set_wait(k->c, SVC_WAIT_BLOCK); /* modest: never spin */
    fprintf(stderr, "loadgen: connected to %s\n", k->url);
  }
  const void *resp;
  size_t rlen;
  int rc = svc_call(k->c, method, req, len, &resp, &rlen);
  if (rc == 0 || rc == SVC_EHANDLER) {
    k->ok++;
    return 0;
  }
  fprintf(stderr, "loadgen: %s %s: %s\n", k->url, method, svc_strerror(rc));
  svc_client_close(k->c);
  k->c = NULL;
  k->failed++;
  return -1;
}

int main(int argc, char **argv) {
  conn echo = {.url = argc > 1 ? argv[1] : "shm://echo"};
  conn kv = {.url = argc > 2 ? argv[2] : "shm://kv"};
  static char buf[4096 + 64];
  unsigned seed = 12345;
  double start = now_s(), last_report = start;
  for (;;) {
    double t = now_s() - start;
    /* 5 % .. 100 % of the peak rate, a 4-minute wave plus a 40 s ripple */
    double wave =
        0.5 + 0.4 * sin(t * 2 * M_PI / 240) + 0.1 * sin(t * 2 * M_PI / 40);
    double rate = LOADGEN_MAX_RATE * (wave < 0.05 ? 0.05 : wave);
    int batch = 10;
    for (int i = 0; i < batch; i++) {
      seed = seed * 1103515245 + 12345;
      int key = (int)((seed >> 8) % LOADGEN_KEYS);
      int klen = snprintf(buf, 32, "key-%d", key);
      if (call(&echo, "echo", buf, (size_t)klen) != 0)
        nap(0.5);
      if (seed % 4 == 0) { /* a quarter writes, the rest reads */
        size_t vlen = 1024 + (seed >> 4) % 3072;
        memset(buf + klen + 1, 'a' + key % 26, vlen);
        buf[klen] = '\0';
        if (call(&kv, "set", buf, (size_t)klen + 1 + vlen) != 0)
          nap(0.5);
      } else if (call(&kv, "get", buf, (size_t)klen) != 0) {
        nap(0.5);
      }
    }
    nap(batch / rate);
    if (now_s() - last_report >= 10) {
      last_report = now_s();
      printf("loadgen: %.0f calls/s target; echo ok=%ld failed=%ld; kv ok=%ld "
             "failed=%ld\n",
             rate, echo.ok, echo.failed, kv.ok, kv.failed);
      fflush(stdout);
    }
  }
}

/* echo_client.c — calls "echo" on an echo_server over each transport and
 * prints round-trip times.
 *   echo_client [NAME [PORT [CALLS]]]   (defaults: echo 5201 100000) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <svc.h>

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static int bench(const char *url, int calls) {
  svc_client *c;
  int rc = svc_client_open(url, &c);
  if (rc < 0) {
    fprintf(stderr, "%-34s %s\n", url, svc_strerror(rc));
    return rc;
  }
  char msg[64];
  memset(msg, 'x', sizeof msg);
  double *t = malloc(sizeof(double) * (size_t)calls);
  for (int i = 0; i < calls && rc == 0 && t; i++) {
    const void *resp;
    size_t len;
    double t0 = now_us();
    rc = svc_call(c, "echo", msg, sizeof msg, &resp, &len);
    t[i] = now_us() - t0;
    if (rc == 0 && (len != sizeof msg || memcmp(resp, msg, len) != 0))
      rc = SVC_EPROTO;
  }
  if (rc == 0 && t) {
    double sum = 0;
    for (int i = 0; i < calls; i++)
      sum += t[i];
    qsort(t, (size_t)calls, sizeof *t, cmp_double);
    printf("%-34s %8.2f us avg %8.2f p50 %8.2f p99  (%d calls, 64 B)\n", url,
           sum / calls, t[calls / 2], t[calls * 99 / 100], calls);
  } else if (rc < 0) {
    fprintf(stderr, "%-34s %s\n", url, svc_strerror(rc));
  }
  free(t);
  svc_client_close(c);
  return rc;
}

int main(int argc, char **argv) {
  const char *name = argc > 1 ? argv[1] : "echo";
  const char *port = argc > 2 ? argv[2] : "5201";
  int calls = argc > 3 ? atoi(argv[3]) : 100000;
  if (calls < 1)
    calls = 1;
  char urls[3][256];
  snprintf(urls[0], sizeof urls[0], "shm://%s", name);
  snprintf(urls[1], sizeof urls[1], "unix:///tmp/svc-%s.sock", name);
  snprintf(urls[2], sizeof urls[2], "tcp://127.0.0.1:%s", port);
  int failed = 0;
  for (int i = 0; i < 3; i++)
    failed |= bench(urls[i], calls) < 0;
  return failed;
}

/* soak_server.c — the service the soak calls: one method, "work", that
 * counts each execution of a numbered call in a MAP_SHARED file (the counts
 * survive a SIGKILL of any server process), burns the CPU the call asks
 * for, and replies with the call's number and its own pid. It runs as a
 * pool master whose workers scale with CPU use.
 *
 *   soak_server --listen URL --exec-file FILE --clients N --capacity M
 *               --workers MIN:MAX --scaling UP_PCT:UP_S:DOWN_PCT:DOWN_S
 *
 * Prints "READY" once bound. Exit codes: 0 after SIGTERM, 2 bad usage or
 * setup, 3 address in use (a supervisor tries again). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "soak.h"
#include "svc.h"

typedef struct soak_counts {
  soak_exec *slots;  /* [clients * capacity] */
  uint32_t *highest; /* [clients]: 1 + the highest number that ran */
  uint32_t clients, capacity;
} soak_counts;

static void burn_us(uint32_t us) {
  struct timespec t0, t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0); /* CPU, not wall: real load */
  for (;;) {
    for (volatile int i = 0; i < 1000; i++) {
    }
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    int64_t spent = (int64_t)(t.tv_sec - t0.tv_sec) * 1000000 +
                    (t.tv_nsec - t0.tv_nsec) / 1000;
    if (spent >= us)
      return;
  }
}

static int m_work(void *ctx, const void *req, size_t len, svc_reply *r) {
  soak_counts *counts = ctx;
  soak_request q;
  if (len != sizeof q)
    return SVC_EINVAL;
  memcpy(&q, req, sizeof q); /* on shm:// the client may write it meanwhile */
  if (q.magic != SOAK_MAGIC || q.client >= counts->clients ||
      q.seq >= counts->capacity || q.burn_us > SOAK_BURN_MAX_US)
    return SVC_EINVAL;
  soak_exec *e = &counts->slots[(size_t)q.client * counts->capacity + q.seq];
  uint32_t before = __atomic_fetch_add(&e->count, 1, __ATOMIC_SEQ_CST);
  if (before < 2)
    __atomic_store_n(&e->pid[before], (uint32_t)getpid(), __ATOMIC_RELAXED);
  if (before == 0)
    __atomic_store_n(&e->first_ms, (uint32_t)soak_now_ms(), __ATOMIC_RELAXED);
  uint32_t *high = &counts->highest[q.client];
  uint32_t seen = __atomic_load_n(high, __ATOMIC_SEQ_CST);
  while (seen < q.seq + 1 &&
         !__atomic_compare_exchange_n(high, &seen, q.seq + 1, 0,
                                      __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
  }
  burn_us(q.burn_us);
  soak_reply out = {q.client, q.seq, (uint32_t)getpid(), SOAK_MAGIC};
  return svc_reply_set(r, &out, sizeof out);
}

static void usage(void) {
  fprintf(stderr, "usage: soak_server --listen URL --exec-file FILE "
                  "--clients N --capacity M --workers MIN:MAX "
                  "--scaling UP_PCT:UP_S:DOWN_PCT:DOWN_S\n");
  exit(2);
}

static void check(int rc, const char *what, const svc_server *s) {
  if (rc == 0)
    return;
  fprintf(stderr, "soak_server: %s: %s (%s)%s%s\n", what, svc_strerror(rc),
          svc_err_name(rc), s ? ": " : "",
          s ? svc_server_last_error_text(s) : "");
  exit(rc == SVC_EADDRINUSE ? 3 : 2);
}

int main(int argc, char **argv) {
  const char *url = NULL, *exec_file = NULL;
  long clients = 0, capacity = 0;
  int wmin = 0, wmax = 0, up_pct = 0, up_s = 0, down_pct = 0, down_s = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const char *a = argv[i], *v = argv[i + 1];
    if (strcmp(a, "--listen") == 0)
      url = v;
    else if (strcmp(a, "--exec-file") == 0)
      exec_file = v;
    else if (strcmp(a, "--clients") == 0)
      clients = strtol(v, NULL, 10);
    else if (strcmp(a, "--capacity") == 0)
      capacity = strtol(v, NULL, 10);
    else if (strcmp(a, "--workers") == 0) {
      if (sscanf(v, "%d:%d", &wmin, &wmax) != 2)
        usage();
    } else if (strcmp(a, "--scaling") == 0) {
      if (sscanf(v, "%d:%d:%d:%d", &up_pct, &up_s, &down_pct, &down_s) != 4)
        usage();
    } else
      usage();
  }
  if (argc % 2 != 1 || !url || !exec_file || clients <= 0 || capacity <= 0 ||
      (unsigned long)clients > UINT32_MAX / (unsigned long)capacity)
    usage();

  soak_counts counts = {.clients = (uint32_t)clients,
                        .capacity = (uint32_t)capacity};
  size_t size = soak_exec_file_size(counts.clients, counts.capacity);
  struct stat st;
  if (stat(exec_file, &st) != 0 || (size_t)st.st_size != size ||
      !(counts.slots = soak_map(exec_file, size))) {
    fprintf(stderr, "soak_server: %s: not a mappable file of %zu bytes: %s\n",
            exec_file, size, strerror(errno));
    return 2;
  }

  counts.highest =
      soak_exec_highest(counts.slots, counts.clients, counts.capacity);
  svc_server *s;
  check(svc_server_new("soak", &s), "svc_server_new", NULL);
  check(svc_server_method(s, SOAK_METHOD, m_work, &counts), "svc_server_method",
        s);
  check(svc_server_set_workers(s, wmin, wmax), "svc_server_set_workers", s);
  check(svc_server_set_scaling(s, up_pct, up_s, down_pct, down_s),
        "svc_server_set_scaling", s);
  check(svc_server_listen(s, url), url, s);
  printf("READY\n");
  fflush(stdout);
  check(svc_server_run(s), "svc_server_run", s);
  svc_server_free(s);
  return 0;
}

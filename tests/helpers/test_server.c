/* test_server.c — the helper service integration tests fork/exec: listens on
 * the URLs given, prints "READY" once bound, and serves a fixed set of
 * methods that exercise the library (zero-copy and copied replies, errors,
 * slow and CPU-bound handlers, large replies, executions counted in a file
 * the test maps too).
 *
 *   test_server --name N [--listen URL]... [--max-msg BYTES]
 *               [--wait adaptive|spin|block] [--threads N] [--allow-any-uid]
 *               [--mode run|start] [--exec-count FILE] [--workers MIN:MAX]
 *
 * --workers MIN:MAX: worker processes (svc_server_set_workers), scaling
 * after 1 s above 50% CPU.
 *
 * Built as fault_server (SVC_TEST_FAULTS, linking svc_internal), it also
 * reads SVC_TEST_FAULT="OPS:NTH[:persistent]" (fault.h kinds, such as
 * "all:7") and arms it just after READY, and at exit writes "CALLS
 * INJECTED LASTOP" to the file SVC_TEST_FAULT_REPORT names. SIGUSR2
 * disarms it; worker processes start disarmed.
 *
 * --exec-count FILE: FILE (made by the test, a multiple of 4 bytes) is mapped
 * MAP_SHARED as an array of u32 counters for the "counted" method. The
 * counts survive a kill -9 of this process, so a test can tell which calls
 * ran (and that none ran twice) after the server died.
 *
 * Exit codes: 0 after a clean stop, 2 bad usage or setup, 3 address in use. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "svc.h"
#ifdef SVC_TEST_FAULTS
#include "fault.h"

static pid_t fault_pid; /* the process that armed: not its workers */

static void fault_report(void) {
  const char *path = getenv("SVC_TEST_FAULT_REPORT");
  if (getpid() != fault_pid)
    return;
  FILE *f = path ? fopen(path, "w") : NULL;
  if (!f)
    return;
  fprintf(f, "%ld %ld %s\n", svc__fault_calls(), svc__fault_injected(),
          svc__fault_op_name(svc__fault_last_op()));
  if (svc__fault_injected())
    fprintf(stderr, "test_server: %ld failed (first at call %ld: %s)\n",
            svc__fault_injected(), svc__fault_calls(),
            svc__fault_op_name(svc__fault_last_op()));
  fclose(f);
}

/* SIGUSR2: the test's failure phase is over (an atomic store: safe in a
 * handler). */
static void fault_disarm_on_signal(int sig) {
  (void)sig;
  svc__fault_disarm();
}

/* Workers count nothing: a failure is the master's, where the test can
 * see it and disarm it. */
static int fault_worker_init(void *ctx) {
  (void)ctx;
  svc__fault_disarm();
  return 0;
}

/* Arms SVC_TEST_FAULT; exits 2 if it does not parse. */
static void fault_arm_from_env(void) {
  const char *spec = getenv("SVC_TEST_FAULT");
  if (!spec || !*spec)
    return;
  char ops[128];
  long nth = 0;
  char mode[16] = "";
  if (sscanf(spec, "%127[^:]:%ld:%15s", ops, &nth, mode) < 2 ||
      !svc__fault_parse_ops(ops)) {
    fprintf(stderr, "test_server: bad SVC_TEST_FAULT %s\n", spec);
    exit(2);
  }
  fault_pid = getpid();
  atexit(fault_report);
  signal(SIGUSR2, fault_disarm_on_signal);
  svc__fault_arm(svc__fault_parse_ops(ops), nth,
                 strcmp(mode, "persistent") == 0, 0);
}
#else
static void fault_arm_from_env(void) {}
#endif

/* Decimal number at the start of a request that is not NUL-terminated. */
static long long req_number(const void *req, size_t len) {
  char buf[32];
  if (len >= sizeof buf)
    len = sizeof buf - 1;
  memcpy(buf, req, len);
  buf[len] = '\0';
  return strtoll(buf, NULL, 10);
}

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int reply_text(svc_reply *r, const char *s) {
  return svc_reply_set(r, s, strlen(s));
}

/* echo: the request back, written in place (zero copy on shm). */
static int m_echo(void *ctx, const void *req, size_t len, svc_reply *r) {
  (void)ctx;
  void *p = svc_reply_alloc(r, len);
  if (!p)
    return SVC_ETOOBIG;
  if (len)
    memcpy(p, req, len);
  return 0;
}

/* echo_set: the request back, copied by svc_reply_set. */
static int m_echo_set(void *ctx, const void *req, size_t len, svc_reply *r) {
  (void)ctx;
  return svc_reply_set(r, req, len);
}

/* checksum: 8-byte little-endian FNV-1a 64 of the request. */
static int m_checksum(void *ctx, const void *req, size_t len, svc_reply *r) {
  (void)ctx;
  const uint8_t *p = req;
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < len; i++) {
    h ^= p[i];
    h *= 0x100000001b3ull;
  }
  uint8_t out[8];
  for (int i = 0; i < 8; i++)
    out[i] = (uint8_t)(h >> (8 * i));
  return svc_reply_set(r, out, sizeof out);
}

/* slowsum: reads its request in place, a page every millisecond (on shm
 * the bytes are the client's region, which may go away under it when the
 * client dies), and replies the 8-byte sum of every byte. */
static int m_slowsum(void *ctx, const void *req, size_t len, svc_reply *r) {
  (void)ctx;
  const volatile uint8_t *p = req;
  uint64_t sum = 0;
  for (size_t i = 0; i < len; i++) {
    sum += p[i];
    if (i % 4096 == 4095) {
      struct timespec ts = {0, 1000000};
      nanosleep(&ts, NULL);
    }
  }
  return svc_reply_set(r, &sum, sizeof sum);
}

/* fail: returns the code in the request (default 42): positive codes reach
 * the caller as SVC_EHANDLER, negative ones as that SVC_E* code. */
static int m_fail(void *ctx, const void *req, size_t len, svc_reply *r) {
  (void)ctx;
  (void)r;
  return len ? (int)req_number(req, len) : 42;
}

static void sleep_ms(long long ms) {
  if (ms <= 0)
    return;
  struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* sleep: request = milliseconds; replies "ok" afterwards. */
static int m_sleep(void *ctx, const void *req, size_t len, svc_reply *r) {
  (void)ctx;
  sleep_ms(req_number(req, len));
  return reply_text(r, "ok");
}

/* The --exec-count file: counters for "counted", shared with the test. */
static uint32_t *g_counts;
static size_t g_ncounts;

static void map_exec_counts(const char *path) {
  int fd = open(path, O_RDWR | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0 || st.st_size < 4) {
    fprintf(stderr, "test_server: --exec-count %s: %s\n", path,
            fd < 0 ? strerror(errno) : "empty file");
    exit(2);
  }
  void *p =
      mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (p == MAP_FAILED) {
    fprintf(stderr, "test_server: mmap %s: %s\n", path, strerror(errno));
    exit(2);
  }
  g_counts = p;
  g_ncounts = (size_t)st.st_size / sizeof *g_counts;
}

/* counted: request = "SLOT MS" (decimal). Adds 1 to counter SLOT of the
 * --exec-count file as soon as it runs, then sleeps MS milliseconds and
 * replies with the request. SVC_EINVAL without the file or for a SLOT out
 * of range. */
static int m_counted(void *ctx, const void *req, size_t len, svc_reply *r) {
  (void)ctx;
  char buf[64];
  if (len >= sizeof buf)
    return SVC_EINVAL;
  memcpy(buf, req, len);
  buf[len] = '\0';
  char *end;
  long long slot = strtoll(buf, &end, 10);
  long long ms = strtoll(end, NULL, 10);
  if (!g_counts || end == buf || slot < 0 || (size_t)slot >= g_ncounts)
    return SVC_EINVAL;
  __atomic_fetch_add(&g_counts[slot], 1u, __ATOMIC_SEQ_CST);
  sleep_ms(ms);
  return svc_reply_set(r, req, len);
}

/* burn: spins the CPU for the requested milliseconds; replies "ok". */
static int m_burn(void *ctx, const void *req, size_t len, svc_reply *r) {
  (void)ctx;
  int64_t end = now_ms() + req_number(req, len);
  uint64_t x = 0;
  while (now_ms() < end)
    for (int i = 0; i < 10000; i++)
      x += (uint64_t)i;
  __asm__ volatile("" : : "r"(x)); /* keep the loop */
  return reply_text(r, "ok");
}

/* big: a reply of N bytes (N in the request), byte i = i % 251. */
static int m_big(void *ctx, const void *req, size_t len, svc_reply *r) {
  (void)ctx;
  long long n = req_number(req, len);
  if (n < 0)
    return SVC_EINVAL;
  uint8_t *p = svc_reply_alloc(r, (size_t)n);
  if (!p)
    return SVC_ETOOBIG;
  for (long long i = 0; i < n; i++)
    p[i] = (uint8_t)(i % 251);
  return 0;
}

/* pid: this process's pid, in decimal. */
static int m_pid(void *ctx, const void *req, size_t len, svc_reply *r) {
  (void)ctx;
  (void)req;
  (void)len;
  char buf[32];
  snprintf(buf, sizeof buf, "%ld", (long)getpid());
  return reply_text(r, buf);
}

static void usage(void) {
  fprintf(stderr, "usage: test_server --name N [--listen URL]... "
                  "[--max-msg BYTES] [--wait adaptive|spin|block] "
                  "[--threads N] [--allow-any-uid] [--mode run|start] "
                  "[--exec-count FILE] [--workers MIN:MAX]\n");
  exit(2);
}

static int check(int rc, const char *what, const char *arg) {
  if (rc == 0)
    return 0;
  fprintf(stderr, "test_server: %s %s: %s (%s)\n", what, arg ? arg : "",
          svc_strerror(rc), svc_err_name(rc));
  exit(rc == SVC_EADDRINUSE ? 3 : 2);
}

int main(int argc, char **argv) {
  const char *name = NULL, *mode = "run";
  const char *listens[16];
  int nlisten = 0;
  long long max_msg = -1, threads = -1;
  int allow_any_uid = 0, min_workers = 0, max_workers = 0;
  svc_wait_policy wait = SVC_WAIT_ADAPTIVE;

  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--allow-any-uid") == 0) {
      allow_any_uid = 1;
      continue;
    }
    if (!v)
      usage();
    i++;
    if (strcmp(a, "--name") == 0)
      name = v;
    else if (strcmp(a, "--listen") == 0 && nlisten < 16)
      listens[nlisten++] = v;
    else if (strcmp(a, "--max-msg") == 0)
      max_msg = atoll(v);
    else if (strcmp(a, "--threads") == 0)
      threads = atoll(v);
    else if (strcmp(a, "--mode") == 0)
      mode = v;
    else if (strcmp(a, "--workers") == 0) {
      if (sscanf(v, "%d:%d", &min_workers, &max_workers) != 2)
        usage();
    } else if (strcmp(a, "--exec-count") == 0)
      map_exec_counts(v);
    else if (strcmp(a, "--wait") == 0)
      wait = strcmp(v, "spin") == 0    ? SVC_WAIT_SPIN
             : strcmp(v, "block") == 0 ? SVC_WAIT_BLOCK
                                       : SVC_WAIT_ADAPTIVE;
    else
      usage();
  }
  if (!name || nlisten == 0)
    usage();

  svc_server *s;
  check(svc_server_new(name, &s), "svc_server_new", name);
  static const struct {
    const char *name;
    svc_handler fn;
  } methods[] = {{"echo", m_echo},         {"echo_set", m_echo_set},
                 {"checksum", m_checksum}, {"fail", m_fail},
                 {"sleep", m_sleep},       {"burn", m_burn},
                 {"big", m_big},           {"pid", m_pid},
                 {"counted", m_counted},   {"slowsum", m_slowsum}};
  for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
    check(svc_server_method(s, methods[i].name, methods[i].fn, NULL),
          "svc_server_method", methods[i].name);
  if (max_msg >= 0)
    check(svc_server_set_max_msg(s, (size_t)max_msg), "set_max_msg", NULL);
  if (threads > 0)
    check(svc_server_set_max_threads(s, (int)threads), "set_max_threads", NULL);
  check(svc_server_set_wait(s, wait), "set_wait", NULL);
  if (allow_any_uid)
    check(svc_server_set_allow_any_uid(s, 1), "set_allow_any_uid", NULL);
  for (int i = 0; i < nlisten; i++)
    check(svc_server_listen(s, listens[i]), "svc_server_listen", listens[i]);
  if (max_workers > 0) {
    check(svc_server_set_workers(s, min_workers, max_workers), "set_workers",
          NULL);
    check(svc_server_set_scaling(s, 50, 1, 20, 2), "set_scaling", NULL);
#ifdef SVC_TEST_FAULTS
    check(svc_server_set_worker_init(s, fault_worker_init, NULL),
          "set_worker_init", NULL);
#endif
  }

  if (strcmp(mode, "start") == 0) {
    /* Background threads; this thread waits for SIGTERM/SIGINT. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    check(svc_server_start(s), "svc_server_start", NULL);
    printf("READY\n");
    fflush(stdout);
    fault_arm_from_env();
    int sig;
    sigwait(&set, &sig);
    svc_server_stop(s);
  } else {
    printf("READY\n");
    fflush(stdout);
    fault_arm_from_env();
    check(svc_server_run(s), "svc_server_run", NULL);
  }
  svc_server_free(s);
  return 0;
}

/* svc_bench.c — `svc bench`: load-test a method from several client
 * threads, closed loop (one call or a window of calls in flight per client)
 * or open loop at a fixed rate timed from the intended send time, and print
 * calls/s and latency percentiles from a log-scale histogram. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <svc.h>

#include "svc_tool.h"

static void sleep_until(int64_t t) {
  struct timespec ts = {.tv_sec = t / 1000000000, .tv_nsec = t % 1000000000};
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
    ;
}

/* ---- latency histogram (log scale, 8 sub-buckets per power of two) ---- */

#define HBUCKETS 512

typedef struct hist {
  uint64_t n[HBUCKETS];
  uint64_t count, min, max;
  double sum;
} hist;

static int hist_bucket(uint64_t v) {
  if (v < 8)
    return (int)v;
  int e = 63 - __builtin_clzll(v);
  int b = (e - 2) * 8 + (int)((v >> (e - 3)) & 7);
  return b < HBUCKETS ? b : HBUCKETS - 1;
}

static double hist_bucket_mid(int b) {
  if (b < 8)
    return b;
  int e = b / 8 + 2;
  double lo = (double)((uint64_t)(8 + b % 8) << (e - 3));
  return lo + (double)((uint64_t)1 << (e - 3)) / 2;
}

static void hist_add(hist *h, uint64_t v) {
  h->n[hist_bucket(v)]++;
  if (h->count == 0 || v < h->min)
    h->min = v;
  if (v > h->max)
    h->max = v;
  h->count++;
  h->sum += (double)v;
}

static void hist_merge(hist *into, const hist *h) {
  for (int b = 0; b < HBUCKETS; b++)
    into->n[b] += h->n[b];
  if (h->count && (into->count == 0 || h->min < into->min))
    into->min = h->min;
  if (h->max > into->max)
    into->max = h->max;
  into->count += h->count;
  into->sum += h->sum;
}

static double hist_quantile(const hist *h, double q) {
  if (h->count == 0)
    return 0;
  uint64_t rank = (uint64_t)ceil(q * (double)h->count), seen = 0;
  if (rank == 0)
    rank = 1;
  if (rank >= h->count)
    return (double)h->max;
  for (int b = 0; b < HBUCKETS; b++)
    if ((seen += h->n[b]) >= rank) {
      double v = hist_bucket_mid(b);
      return v > (double)h->max   ? (double)h->max
             : v < (double)h->min ? (double)h->min
                                  : v;
    }
  return (double)h->max;
}

static void print_latency(const char *label, const hist *h) {
  char b[7][32];
  printf("%s min %s  avg %s  p50 %s  p90 %s  p99 %s  p99.9 %s  max %s\n", label,
         fmt_ns((double)h->min, b[0], 32),
         fmt_ns(h->count ? h->sum / (double)h->count : 0, b[1], 32),
         fmt_ns(hist_quantile(h, 0.5), b[2], 32),
         fmt_ns(hist_quantile(h, 0.9), b[3], 32),
         fmt_ns(hist_quantile(h, 0.99), b[4], 32),
         fmt_ns(hist_quantile(h, 0.999), b[5], 32),
         fmt_ns((double)h->max, b[6], 32));
}

/* ---- bench ---- */

static const char *const bench_usage =
    "usage: svc bench URL METHOD [-c CLIENTS] [-d SECONDS] [-s SIZE]\n"
    "                            [-w WINDOW | --rate CALLS_PER_S]\n"
    "  Calls METHOD with SIZE-byte requests (default 64) from CLIENTS\n"
    "  threads (default 1), each with its own connection, for SECONDS\n"
    "  (default 5), and prints calls/s and latency percentiles. A progress\n"
    "  line goes to stderr every second.\n"
    "  Closed loop by default: each client sends its next call when the\n"
    "  last one returns. -w/--window N keeps N calls in flight per client\n"
    "  (default 1, at most 4096) with svc_call_send / svc_call_recv: a new\n"
    "  call goes out as each one finishes, and a call's latency runs from\n"
    "  its send to its completion.\n"
    "  --rate makes it open loop: calls are scheduled at CALLS_PER_S in\n"
    "  total, and latency is measured from each call's scheduled time, so a\n"
    "  stall counts against every call it delayed (no coordinated\n"
    "  omission). Open loop keeps one call in flight per client: --rate\n"
    "  and a --window above 1 do not go together.\n";

#define BENCH_MAX_WINDOW 4096 /* svc_client_set_window's limit */

typedef struct bench {
  const char *url, *method;
  size_t size;
  int clients;
  int window;         /* calls in flight per client (closed loop) */
  double rate;        /* total calls/s; 0 = closed loop */
  int64_t start, end; /* monotonic ns */
  _Atomic int stop;
  _Atomic int first_error; /* 0 or an SVC_E* code */
} bench;

typedef struct bench_thread {
  bench *b;
  int index;
  pthread_t tid;
  hist h;
  _Atomic uint64_t calls, errors;
  int open_rc;
  int max_in_flight; /* the most calls this client had in flight */
} bench_thread;

/* Counts one finished call: its latency t1 - t0, or its error. */
static void bench_record(bench_thread *t, int rc, int64_t t0, int64_t t1) {
  if (rc < 0) {
    int zero = 0;
    atomic_compare_exchange_strong(&t->b->first_error, &zero, rc);
    atomic_fetch_add_explicit(&t->errors, 1, memory_order_relaxed);
    if (rc == SVC_ECONNREFUSED)
      usleep(10000); /* don't spin on a dead service */
  } else {
    hist_add(&t->h, (uint64_t)(t1 - t0));
    atomic_fetch_add_explicit(&t->calls, 1, memory_order_relaxed);
  }
}

/* One call in flight at a time: closed loop, or open loop when b->rate is
 * set. */
static void bench_one_at_a_time(bench_thread *t, svc_client *c,
                                const char *req) {
  bench *b = t->b;
  /* Open loop: this client's calls are due every clients/rate seconds,
   * staggered so the clients together send evenly. */
  double period = b->rate > 0 ? 1e9 * b->clients / b->rate : 0;
  int64_t k = 0;
  while (!atomic_load_explicit(&b->stop, memory_order_relaxed)) {
    int64_t t0;
    if (period > 0) {
      t0 = b->start +
           (int64_t)(period * ((double)k + (double)t->index / b->clients));
      k++;
      if (t0 >= b->end)
        break;
      if (now_ns() < t0)
        sleep_until(t0);
    } else {
      t0 = now_ns();
    }
    const void *resp;
    size_t len;
    int rc = svc_call(c, b->method, req, b->size, &resp, &len);
    int64_t t1 = now_ns();
    bench_record(t, rc, t0, t1);
    if (t1 >= b->end)
      break;
  }
}

/* A call in flight: its id (0: finished) and when it was sent. */
typedef struct flight {
  uint64_t id;
  int64_t sent;
} flight;

/* b->window calls in flight until b->end, then the rest received: sends
 * until the window is full, then one more for every call that finishes.
 * The calls in flight wait in a ring in send order; this library's server
 * answers a connection's calls in order, so a finished call is found at
 * the head, and one that finishes early (timed out) leaves a hole that the
 * head skips once it gets there. */
static void bench_window(bench_thread *t, svc_client *c, const char *req) {
  bench *b = t->b;
  const int cap = b->window;
  flight *ring = calloc((size_t)cap, sizeof *ring);
  if (!ring) {
    t->open_rc = SVC_ENOMEM;
    return;
  }
  int head = 0, used = 0, in_flight = 0; /* ring slots [head, head + used) */
  for (;;) {
    while (used < cap) {
      int64_t t0 = now_ns();
      if (t0 >= b->end)
        break;
      uint64_t id;
      int rc = svc_call_send(c, b->method, req, b->size, &id);
      if (rc == SVC_EAGAIN && in_flight > 0)
        break; /* the library's window is full: receive first */
      if (rc < 0) {
        bench_record(t, rc, 0, 0);
        break;
      }
      ring[(head + used++) % cap] = (flight){id, t0};
      if (++in_flight > t->max_in_flight)
        t->max_in_flight = in_flight;
    }
    if (in_flight == 0) {
      if (now_ns() >= b->end)
        break;
      continue; /* a send failed with nothing in flight: try again */
    }
    uint64_t id;
    const void *resp;
    size_t len;
    int rc = svc_call_recv(c, -1, &id, &resp, &len);
    int64_t t1 = now_ns();
    for (int i = 0; i < used && id; i++) {
      flight *f = &ring[(head + i) % cap];
      if (f->id == id) {
        bench_record(t, rc, f->sent, t1);
        f->id = 0;
        in_flight--;
        break;
      }
    }
    if (!id) { /* nothing was in flight after all: should not happen */
      bench_record(t, rc, 0, 0);
      used = in_flight = 0;
    }
    while (used > 0 && ring[head].id == 0) {
      head = (head + 1) % cap;
      used--;
    }
  }
  free(ring);
}

static void *bench_main(void *arg) {
  bench_thread *t = arg;
  bench *b = t->b;
  svc_client *c;
  if ((t->open_rc = svc_client_open(b->url, &c)) < 0)
    return NULL;
  if (b->window > 1 && (t->open_rc = svc_client_set_window(c, b->window))) {
    svc_client_close(c);
    return NULL;
  }
  char *req = malloc(b->size ? b->size : 1);
  if (!req) {
    svc_client_close(c);
    t->open_rc = SVC_ENOMEM;
    return NULL;
  }
  memset(req, 'x', b->size);
  if (b->window > 1)
    bench_window(t, c, req);
  else
    bench_one_at_a_time(t, c, req);
  free(req);
  svc_client_close(c);
  return NULL;
}

int cmd_bench(int argc, char **argv) {
  opt o[] = {{"-c", "--clients", 1, NULL},
             {"-d", "--duration", 1, NULL},
             {"-s", "--size", 1, NULL},
             {"--rate", "-r", 1, NULL},
             {"-w", "--window", 1, NULL}};
  args a;
  int rc = parse_args(argc, argv, o, 5, 2, bench_usage, &a);
  if (rc)
    return rc == 1 ? (fputs(bench_usage, stdout), 0) : rc;
  if (a.npos < 2)
    return usage_error(bench_usage, "%s", "bench needs URL and METHOD");
  long long clients = o[0].value ? parse_num(o[0].value) : 1;
  double secs = o[1].value ? strtod(o[1].value, NULL) : 5;
  long long size = o[2].value ? parse_num(o[2].value) : 64;
  double rate = o[3].value ? strtod(o[3].value, NULL) : 0;
  long long window = o[4].value ? parse_num(o[4].value) : 1;
  if (clients < 1 || clients > 1024)
    return usage_error(bench_usage, "bad -c %s (1..1024)", o[0].value);
  if (!(secs > 0 && secs <= 86400))
    return usage_error(bench_usage, "bad -d %s", o[1].value);
  if (size < 0 || size > (long long)SVC_DEFAULT_MAX_MSG)
    return usage_error(bench_usage, "bad -s %s", o[2].value);
  if (o[3].value && !(rate > 0 && rate <= 1e9))
    return usage_error(bench_usage, "bad --rate %s", o[3].value);
  if (window < 1 || window > BENCH_MAX_WINDOW)
    return usage_error(bench_usage, "bad --window %s (1..4096)", o[4].value);
  if (rate > 0 && window > 1)
    return usage_error(bench_usage,
                       "--rate keeps one call in flight per client; it does "
                       "not go with --window %s",
                       o[4].value);

  /* One call first: a bad URL, dead service or unknown method fails here
   * with a clear message instead of a stream of errors. */
  int ex = 0;
  svc_client *c = open_client(a.pos[0], 10000, &ex);
  if (!c)
    return ex;
  char *req = calloc(1, (size_t)size + 1);
  const void *resp;
  size_t len;
  rc = req ? svc_call(c, a.pos[1], req, (size_t)size, &resp, &len) : SVC_ENOMEM;
  free(req);
  if (rc < 0) {
    ex = fail(rc, c, a.pos[1]);
    svc_client_close(c);
    return ex;
  }
  svc_client_close(c);

  bench b = {.url = a.pos[0],
             .method = a.pos[1],
             .size = (size_t)size,
             .clients = (int)clients,
             .window = (int)window,
             .rate = rate};
  bench_thread *t = calloc((size_t)clients, sizeof *t);
  if (!t)
    return fail(SVC_ENOMEM, NULL, NULL);
  b.start = now_ns() + 20000000; /* let every thread connect first */
  b.end = b.start + (int64_t)(secs * 1e9);
  int started = 0;
  for (int i = 0; i < clients; i++) {
    t[i].b = &b;
    t[i].index = i;
    if (pthread_create(&t[i].tid, NULL, bench_main, &t[i]) != 0)
      break;
    started++;
  }
  char mode[48];
  if (rate > 0)
    snprintf(mode, sizeof mode, "open loop");
  else if (window > 1)
    snprintf(mode, sizeof mode, "closed loop, window %lld", window);
  else
    snprintf(mode, sizeof mode, "closed loop");
  fprintf(stderr, "svc bench %s %s: %d clients, %lld-byte requests, %.3gs, %s",
          b.url, b.method, started, size, secs, mode);
  if (rate > 0)
    fprintf(stderr, " at %.0f calls/s", rate);
  fputc('\n', stderr);
  uint64_t last = 0;
  for (int sec = 1;; sec++) {
    int64_t tick = b.start + (int64_t)sec * 1000000000;
    if (tick > b.end)
      break;
    sleep_until(tick);
    uint64_t calls = 0, errors = 0;
    for (int i = 0; i < started; i++) {
      calls += atomic_load_explicit(&t[i].calls, memory_order_relaxed);
      errors += atomic_load_explicit(&t[i].errors, memory_order_relaxed);
    }
    fprintf(stderr,
            "[%3ds] %10" PRIu64 " calls/s  %" PRIu64 " calls  %" PRIu64
            " errors\n",
            sec, calls - last, calls, errors);
    last = calls;
  }
  hist all = {0};
  uint64_t errors = 0;
  int open_rc = 0, peak = 0;
  for (int i = 0; i < started; i++) {
    pthread_join(t[i].tid, NULL);
    hist_merge(&all, &t[i].h);
    errors += t[i].errors;
    if (t[i].open_rc)
      open_rc = t[i].open_rc;
    if (t[i].max_in_flight > peak)
      peak = t[i].max_in_flight;
  }
  double wall =
      (double)(now_ns() < b.end ? now_ns() - b.start : b.end - b.start) / 1e9;
  printf("%s %s: %d clients, %lld-byte requests, %s\n", b.url, b.method,
         started, size, mode);
  printf("calls     %" PRIu64 " in %.2fs = %.0f calls/s", all.count, wall,
         (double)all.count / wall);
  if (rate > 0)
    printf(" (target %.0f)", rate);
  printf("\nerrors    %" PRIu64 "\n", errors);
  if (window > 1) /* below the window if the library's own is smaller */
    printf("in flight at most %d calls per client\n", peak);
  print_latency("latency  ", &all);
  free(t);
  if (open_rc)
    return fail(open_rc, NULL, "a client could not connect");
  int first = atomic_load(&b.first_error);
  if (first)
    return fail(first, NULL, "first error during the run");
  return started == clients ? 0 : fail(SVC_ESYS, NULL, "pthread_create");
}

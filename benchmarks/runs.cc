/* runs.cc — the measured runs the suites share (see runs.h): one client
 * timing calls one by one, and N client processes calling as fast as they
 * can. */
#include "runs.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <new>

namespace bench {
namespace {

/* Calls until warmup_ms have passed (at least 3): connections set up,
 * pages touched, adaptive spin budgets learned, before anything counts.
 * false with *err ("warm-up: ...") if a call failed. */
bool warm_up(Conn *c, const std::vector<unsigned char> &req, std::string *err) {
  const void *resp;
  size_t resp_len;
  uint64_t end = NowNs() + (uint64_t)g_opts.warmup_ms * 1000000;
  for (int n = 0; n < 3 || NowNs() < end; n++) {
    if (c->Call(req.data(), req.size(), &resp, &resp_len, err) != 0) {
      *err = "warm-up: " + *err;
      return false;
    }
  }
  return true;
}

/* One timed call of req, the client reading the whole reply inside the
 * timed part (a client uses its reply): *ns its round trip. 0, or -1 with
 * *err when the call failed or check refused the reply. */
int timed_call(Conn *c, const std::vector<unsigned char> &req,
               const ReplyCheck &check, uint64_t *sink, uint64_t *ns,
               std::string *err) {
  const void *resp = nullptr;
  size_t resp_len = 0;
  uint64_t t0 = NowNs();
  int rc = c->Call(req.data(), req.size(), &resp, &resp_len, err);
  if (rc == 0)
    *sink += ReadAll(resp, resp_len);
  *ns = NowNs() - t0;
  if (rc != 0)
    return -1;
  if (!check(resp, resp_len)) {
    *err = "wrong reply";
    return -1;
  }
  return 0;
}

/* Starts transport name's server, warms up, then times one call per
 * iteration (the client reads the whole reply inside the timed part: a
 * client uses its reply) and reports latency and CPU per call. */
} // namespace

void LatencyRun(benchmark::State &state, const std::string &what,
                const std::string &name, const ServerOptions &opts,
                const std::vector<unsigned char> &req,
                const ReplyCheck &check) {
  Watchdog watchdog(what, (unsigned)g_opts.watchdog_s);
  std::string err;
  auto t = MakeTransport(name, opts);
  if (!t || !t->Start(1, req.size(), &err)) {
    state.SkipWithError(t ? err.c_str() : "unknown transport");
    return;
  }
  auto c = t->Connect(0, &err);
  if (!c || !warm_up(c.get(), req, &err)) {
    state.SkipWithError(err.c_str());
  } else {
    /* Room for this run's samples, capped: the buffer grows if needed. */
    Latency lat((size_t)std::min<benchmark::IterationCount>(
        state.max_iterations, 1 << 24));
    uint64_t sink = 0, ns;
    uint64_t server0 = PeerCpuNs(t->server_pid());
    uint64_t client0 = ProcessCpuNs();
    uint64_t wall0 = NowNs();
    for (auto _ : state) {
      if (timed_call(c.get(), req, check, &sink, &ns, &err) != 0) {
        state.SkipWithError(err.c_str());
        break;
      }
      state.SetIterationTime((double)ns * 1e-9);
      lat.Add(ns);
    }
    uint64_t wall = NowNs() - wall0;
    uint64_t client = ProcessCpuNs() - client0;
    uint64_t server = PeerCpuNs(t->server_pid()) - server0;
    benchmark::DoNotOptimize(sink);
    if (!state.error_occurred()) {
      lat.Report(state);
      ReportCpu(state, client, server, wall, lat.count());
      state.counters["client_cores"] = (double)client / (double)wall;
      state.SetLabel(name);
    }
  }
  c.reset(); /* close the client before the server goes */
  t->Stop();
}

bool LatencyWindow(const std::string &name, const ServerOptions &opts,
                   const std::vector<unsigned char> &req,
                   const ReplyCheck &check, uint64_t window_ms,
                   uint64_t *p50_ns, std::string *err) {
  auto t = MakeTransport(name, opts);
  if (!t) {
    *err = "unknown transport " + name;
    return false;
  }
  if (!t->Start(1, req.size(), err))
    return false;
  auto c = t->Connect(0, err);
  bool ok = c && warm_up(c.get(), req, err);
  std::vector<uint64_t> ns;
  uint64_t sink = 0, one = 0, end = NowNs() + window_ms * 1000000;
  while (ok && (ns.size() < 3 || NowNs() < end)) {
    if (timed_call(c.get(), req, check, &sink, &one, err) != 0)
      ok = false;
    else
      ns.push_back(one);
  }
  benchmark::DoNotOptimize(sink);
  c.reset(); /* close the client before the server goes */
  t->Stop();
  if (!ok)
    return false;
  std::nth_element(ns.begin(), ns.begin() + ns.size() / 2, ns.end());
  *p50_ns = ns[ns.size() / 2];
  return true;
}

namespace {

/* Shared by the benchmark process and its client process. */
struct ChildRun {
  uint32_t ready; /* the client is connected and warmed up */
  uint32_t go;    /* the parent read the server's CPU: start */
  uint32_t done;  /* the client finished (or failed) */
  int failed;
  char err[200];
  uint64_t cpu_ns, wall_ns, sink;
  uint64_t n;     /* calls made (and samples taken, when it takes them) */
  uint64_t ns[1]; /* each call's round trip; more follow */
};

constexpr uint64_t kChildSamplesMax = (uint64_t)1 << 22; /* 32 MiB */
constexpr size_t kPipelinePayload = 64;

int child_fail(ChildRun *run, const std::string &e) {
  snprintf(run->err, sizeof run->err, "%s", e.c_str());
  __atomic_store_n(&run->failed, 1, __ATOMIC_RELEASE);
  __atomic_store_n(&run->done, 1, __ATOMIC_RELEASE);
  return 1;
}

/* Warmed up: says so, then waits for the parent's go. */
void child_ready(ChildRun *run) {
  __atomic_store_n(&run->ready, 1, __ATOMIC_RELEASE);
  while (!__atomic_load_n(&run->go, __ATOMIC_ACQUIRE))
    usleep(100);
}

bool child_wait(const uint32_t *flag, const ChildRun *run, uint64_t ms) {
  uint64_t deadline = NowNs() + ms * 1000000;
  while (!__atomic_load_n(flag, __ATOMIC_ACQUIRE) &&
         !__atomic_load_n(&run->failed, __ATOMIC_ACQUIRE)) {
    if (NowNs() > deadline)
      return false;
    usleep(1000);
  }
  return !__atomic_load_n(&run->failed, __ATOMIC_ACQUIRE);
}

/* What the client process does with its connection: warm up, call
 * child_ready, make its calls into run; 0 or child_fail. */
using ChildCalls = std::function<int(Conn *c, ChildRun *run)>;
/* Turns the finished run into counters. */
using ChildReport =
    std::function<void(const ChildRun &run, uint64_t server_ns)>;

/* Starts name's server, forks one client process running calls on a
 * connection of its own, and reports once it is done (one iteration). */
void run_in_child(benchmark::State &state, const std::string &what,
                  const std::string &name, size_t max_len, uint64_t samples,
                  const ChildCalls &calls, const ChildReport &report) {
  Watchdog watchdog(what, (unsigned)g_opts.watchdog_s +
                              (unsigned)g_opts.duration_ms / 1000);
  std::string err;
  auto t = MakeTransport(name);
  if (!t || !t->Start(1, max_len, &err)) {
    state.SkipWithError(t ? err.c_str() : "unknown transport");
    return;
  }
  size_t bytes = sizeof(ChildRun) + samples * sizeof(uint64_t);
  void *mem = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (mem == MAP_FAILED) {
    state.SkipWithError("mmap");
    t->Stop();
    return;
  }
  ChildRun *run = new (mem) ChildRun();
  pid_t kid = ForkChild([&] {
    std::string e;
    auto c = t->Connect(0, &e);
    if (!c)
      return child_fail(run, e);
    int rc = calls(c.get(), run);
    c.reset(); /* closed before the server goes */
    if (rc == 0)
      __atomic_store_n(&run->done, 1, __ATOMIC_RELEASE);
    return rc;
  });
  for (auto _ : state) { /* one iteration: the client's window */
    uint64_t limit = 1000ull * (uint64_t)g_opts.watchdog_s;
    if (!child_wait(&run->ready, run, limit)) {
      state.SkipWithError(run->failed ? run->err : "client not ready");
      break;
    }
    uint64_t server0 = PeerCpuNs(t->server_pid());
    __atomic_store_n(&run->go, 1, __ATOMIC_RELEASE);
    if (!child_wait(&run->done, run, limit)) {
      state.SkipWithError(run->failed ? run->err : "client did not finish");
      break;
    }
    uint64_t server = PeerCpuNs(t->server_pid()) - server0;
    state.SetIterationTime((double)run->wall_ns * 1e-9);
    report(*run, server);
    ReportCpu(state, run->cpu_ns, server, run->wall_ns, run->n);
    state.SetLabel(name);
  }
  StopChild(kid, SIGKILL, 0);
  t->Stop();
  munmap(mem, bytes);
}

} // namespace

void LatencyRunInChild(benchmark::State &state, const std::string &what,
                       const std::string &name,
                       const std::vector<unsigned char> &req,
                       const ReplyCheck &check) {
  auto calls = [&](Conn *c, ChildRun *run) {
    std::string err;
    if (!warm_up(c, req, &err))
      return child_fail(run, err);
    child_ready(run);
    uint64_t sink = 0, n = 0, cpu0 = ProcessCpuNs(), wall0 = NowNs();
    uint64_t end = wall0 + (uint64_t)g_opts.duration_ms * 1000000;
    do {
      if (timed_call(c, req, check, &sink, &run->ns[n++], &err) != 0)
        return child_fail(run, err);
    } while (n < kChildSamplesMax && (n < 3 || NowNs() < end));
    run->wall_ns = NowNs() - wall0;
    run->cpu_ns = ProcessCpuNs() - cpu0;
    run->sink = sink;
    run->n = n;
    return 0;
  };
  run_in_child(state, what, name, req.size(), kChildSamplesMax, calls,
               [&](const ChildRun &run, uint64_t) {
                 Latency lat((size_t)run.n);
                 for (uint64_t i = 0; i < run.n; i++)
                   lat.Add(run.ns[i]);
                 lat.Report(state);
                 state.counters["calls"] = (double)run.n;
                 state.SetBytesProcessed((int64_t)(2 * req.size() * run.n));
               });
}

void BM_LatencyInChild(benchmark::State &state, const std::string &name) {
  const size_t len = (size_t)state.range(0);
  auto req = MakePayload(len);
  LatencyRunInChild(state, "peers/" + name + "/" + std::to_string(len), name,
                    req, [&](const void *resp, size_t resp_len) {
                      return ReplyMatches(req.data(), len, resp, resp_len);
                    });
}

void BM_PipelineInChild(benchmark::State &state, const std::string &name) {
  const int window = (int)state.range(0);
  auto calls = [&](Conn *c, ChildRun *run) {
    std::string e;
    auto req = MakePayload(kPipelinePayload);
    uint64_t warm = 0, n = 0;
    if (c->Pipeline(req.data(), req.size(), window,
                    NowNs() + (uint64_t)g_opts.warmup_ms * 1000000, &warm,
                    &e) != 0)
      return child_fail(run, "warm-up: " + e);
    child_ready(run);
    uint64_t cpu0 = ProcessCpuNs(), wall0 = NowNs();
    if (c->Pipeline(req.data(), req.size(), window,
                    wall0 + (uint64_t)g_opts.duration_ms * 1000000, &n,
                    &e) != 0)
      return child_fail(run, e);
    run->wall_ns = NowNs() - wall0;
    run->cpu_ns = ProcessCpuNs() - cpu0;
    run->n = n;
    return 0;
  };
  run_in_child(state, "peers-pipe/" + name + "/" + std::to_string(window), name,
               kPipelinePayload, 0, calls, [&](const ChildRun &run, uint64_t) {
                 state.counters["calls_per_s"] =
                     (double)run.n / ((double)run.wall_ns * 1e-9);
                 state.counters["window"] = window;
                 state.SetItemsProcessed((int64_t)run.n);
               });
}

void BM_Latency(benchmark::State &state, const std::string &name,
                const ServerOptions &opts) {
  const size_t len = (size_t)state.range(0);
  auto req = MakePayload(len);
  LatencyRun(state, "latency/" + name + "/" + std::to_string(len), name, opts,
             req, [&](const void *resp, size_t resp_len) {
               return ReplyMatches(req.data(), len, resp, resp_len);
             });
  state.SetBytesProcessed((int64_t)(2 * len * state.iterations()));
}

namespace {

constexpr int kMaxClients = 8;
constexpr size_t kPayload = 64; /* the size DESIGN.md quotes */

/* Per-client call latency: 8 buckets per power of two of nanoseconds
 * (12% wide), enough for a p50 and p99 without keeping every sample. */
constexpr int kLatSub = 8;
constexpr int kLatBuckets = 40 * kLatSub;

int lat_bucket(uint64_t ns) {
  if (ns < kLatSub)
    return (int)ns;
  int pow2 = 63 - __builtin_clzll(ns); /* >= 3 */
  int sub = (int)((ns >> (pow2 - 3)) & (kLatSub - 1));
  int b = (pow2 - 2) * kLatSub + sub;
  return b < kLatBuckets ? b : kLatBuckets - 1;
}

/* The upper edge of bucket b, in ns. */
double lat_bucket_ns(int b) {
  if (b < kLatSub)
    return b + 1;
  int pow2 = b / kLatSub + 2, sub = b % kLatSub;
  return (double)((uint64_t)(kLatSub + sub + 1) << (pow2 - 3));
}

double lat_quantile(const uint32_t *h, uint64_t n, double q) {
  uint64_t want = (uint64_t)((double)n * q), seen = 0;
  for (int b = 0; b < kLatBuckets; b++)
    if ((seen += h[b]) > want)
      return lat_bucket_ns(b);
  return lat_bucket_ns(kLatBuckets - 1);
}

/* Shared by the benchmark process and its client processes. */
struct Board {
  uint32_t ready;   /* clients connected and warmed up */
  uint32_t go;      /* set by the parent: start counting */
  uint32_t stop;    /* set by the parent: stop calling */
  uint32_t burn_us; /* >0: the request asks the server to burn this CPU */
  struct {
    uint64_t calls;
    uint64_t cpu_ns; /* the client process's CPU inside the window */
    uint32_t lat[kLatBuckets];
    int failed;
    char err[120];
  } client[kMaxClients];
};

uint32_t tp_load(const uint32_t *p) {
  return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

/* One client process: connect, warm up, wait for go, call until stop. */
int tp_client(Transport *t, Board *b, int i) {
  auto &me = b->client[i];
  auto fail = [&](const std::string &e) {
    snprintf(me.err, sizeof me.err, "%s", e.c_str());
    __atomic_store_n(&me.failed, 1, __ATOMIC_RELEASE);
    return 1;
  };
  std::string err;
  auto c = t->Connect(i, &err);
  if (!c)
    return fail(err);
  auto req = MakePayload(kPayload);
  if (b->burn_us) /* the "burn" handler reads its cost from the request */
    memcpy(req.data(), &b->burn_us, sizeof b->burn_us);
  if (!warm_up(c.get(), req, &err))
    return fail(err);
  const void *resp;
  size_t resp_len;
  __atomic_add_fetch(&b->ready, 1, __ATOMIC_ACQ_REL);
  while (!tp_load(&b->go))
    usleep(100);
  uint64_t cpu0 = ProcessCpuNs(), calls = 0, t0 = NowNs();
  while (!tp_load(&b->stop)) {
    if (c->Call(req.data(), kPayload, &resp, &resp_len, &err) != 0)
      return fail(err);
    if (!ReplyMatches(req.data(), kPayload, resp, resp_len))
      return fail("reply differs from request");
    uint64_t t1 = NowNs(); /* one clock read per call: end = next start */
    me.lat[lat_bucket(t1 - t0)]++;
    t0 = t1;
    calls++;
  }
  me.cpu_ns = ProcessCpuNs() - cpu0;
  me.calls = calls;
  return 0;
}

/* Waits for all clients to be ready; false with *err if one failed or
 * 10 s passed. */
bool tp_wait_ready(Board *b, int n, std::string *err) {
  uint64_t deadline = NowNs() + 10ull * 1000000000;
  while (tp_load(&b->ready) < (uint32_t)n) {
    for (int i = 0; i < n; i++)
      if (__atomic_load_n(&b->client[i].failed, __ATOMIC_ACQUIRE)) {
        *err = "client " + std::to_string(i) + ": " + b->client[i].err;
        return false;
      }
    if (NowNs() > deadline) {
      *err = "only " + std::to_string(tp_load(&b->ready)) + " of " +
             std::to_string(n) + " clients ready after 10 s";
      return false;
    }
    usleep(1000);
  }
  return true;
}

} // namespace

void BM_Throughput(benchmark::State &state, const std::string &name,
                   const ServerOptions &opts, uint32_t burn_us) {
  const int n = (int)state.range(0);
  Watchdog watchdog("throughput/" + name + "/" + std::to_string(n),
                    (unsigned)g_opts.watchdog_s +
                        (unsigned)g_opts.duration_ms / 1000);
  std::string err;
  auto t = MakeTransport(name, opts);
  if (!t || !t->Start(n, kPayload, &err)) {
    state.SkipWithError(t ? err.c_str() : "unknown transport");
    return;
  }
  void *mem = mmap(nullptr, sizeof(Board), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) {
    state.SkipWithError("mmap");
    t->Stop();
    return;
  }
  Board *b = new (mem) Board();
  b->burn_us = burn_us;
  std::vector<pid_t> kids;
  for (int i = 0; i < n; i++)
    kids.push_back(ForkChild([&, i] { return tp_client(t.get(), b, i); }));

  for (auto _ : state) { /* one iteration: the window */
    if (!tp_wait_ready(b, n, &err)) {
      state.SkipWithError(err.c_str());
      break;
    }
    uint64_t server0 = TreeCpuNs(t->server_pid());
    uint64_t wall0 = NowNs();
    __atomic_store_n(&b->go, 1, __ATOMIC_RELEASE);
    usleep((useconds_t)g_opts.duration_ms * 1000);
    __atomic_store_n(&b->stop, 1, __ATOMIC_RELEASE);
    uint64_t wall = NowNs() - wall0;
    uint64_t server = TreeCpuNs(t->server_pid()) - server0;
    state.SetIterationTime((double)wall * 1e-9);
    /* Clients finish their last call and write their numbers. */
    for (pid_t &k : kids) {
      uint64_t deadline = NowNs() + 15ull * 1000000000;
      while (waitpid(k, nullptr, WNOHANG) == 0 && NowNs() < deadline)
        usleep(1000);
      StopChild(k, SIGKILL, 0); /* reaps; kills only if still stuck */
      k = -1;
    }
    uint64_t total = 0, lo = UINT64_MAX, hi = 0, client_cpu = 0;
    double p50_lo = 1e30, p50_hi = 0, p99_lo = 1e30, p99_hi = 0;
    for (int i = 0; i < n; i++) {
      if (b->client[i].failed) {
        state.SkipWithError(b->client[i].err);
        break;
      }
      /* each client's own p50 and p99: the starved one shows here */
      double p50 = lat_quantile(b->client[i].lat, b->client[i].calls, 0.5);
      double p99 = lat_quantile(b->client[i].lat, b->client[i].calls, 0.99);
      p50_lo = std::min(p50_lo, p50);
      p50_hi = std::max(p50_hi, p50);
      p99_lo = std::min(p99_lo, p99);
      p99_hi = std::max(p99_hi, p99);
      state.counters["p50_us_c" + std::to_string(i)] = p50 / 1e3;
      state.counters["p99_us_c" + std::to_string(i)] = p99 / 1e3;
      total += b->client[i].calls;
      lo = std::min(lo, b->client[i].calls);
      hi = std::max(hi, b->client[i].calls);
      client_cpu += b->client[i].cpu_ns;
    }
    if (state.error_occurred())
      break;
    state.counters["calls_per_s"] = (double)total / ((double)wall * 1e-9);
    state.counters["clients"] = n;
    state.counters["min_calls"] = (double)lo;
    state.counters["max_calls"] = (double)hi;
    state.counters["p50_us_min"] = p50_lo / 1e3;
    state.counters["p50_us_max"] = p50_hi / 1e3;
    state.counters["p99_us_min"] = p99_lo / 1e3;
    state.counters["p99_us_max"] = p99_hi / 1e3;
    ReportCpu(state, client_cpu, server, wall, total);
    state.SetItemsProcessed((int64_t)total);
    state.SetLabel(name);
  }
  for (pid_t k : kids)
    StopChild(k, SIGKILL, 0);
  t->Stop();
  munmap(mem, sizeof(Board));
}

namespace {

/* Calls until until_ns, in flight or (sync) one by one; adds them to
 * *calls. */
int pipeline_calls(Conn *c, bool sync, int window,
                   const std::vector<unsigned char> &req, uint64_t until_ns,
                   uint64_t *calls, std::string *err) {
  if (!sync)
    return c->Pipeline(req.data(), req.size(), window, until_ns, calls, err);
  Deadline deadline(until_ns);
  do {
    const void *resp;
    size_t resp_len;
    if (c->Call(req.data(), req.size(), &resp, &resp_len, err) != 0)
      return -1;
    if (!ReplyMatches(req.data(), req.size(), resp, resp_len)) {
      *err = "reply differs from request";
      return -1;
    }
    ++*calls;
  } while (!deadline.Passed());
  return 0;
}

} // namespace

void BM_Pipeline(benchmark::State &state, const std::string &label,
                 const std::string &name, const ServerOptions &opts,
                 bool sync) {
  const int window = (int)state.range(0);
  Watchdog watchdog("pipeline/" + label + "/" + std::to_string(window),
                    (unsigned)g_opts.watchdog_s +
                        (unsigned)g_opts.duration_ms / 1000);
  std::string err;
  auto t = MakeTransport(name, opts);
  if (!t || !t->Start(1, kPipelinePayload, &err)) {
    state.SkipWithError(t ? err.c_str() : "unknown transport");
    return;
  }
  auto c = t->Connect(0, &err);
  auto req = MakePayload(kPipelinePayload);
  uint64_t warm_calls = 0;
  if (!c) {
    state.SkipWithError(err.c_str());
  } else if (pipeline_calls(c.get(), sync, window, req,
                            NowNs() + (uint64_t)g_opts.warmup_ms * 1000000,
                            &warm_calls, &err) != 0) {
    state.SkipWithError(("warm-up: " + err).c_str());
  } else {
    for (auto _ : state) { /* one iteration: the window */
      uint64_t calls = 0;
      uint64_t server0 = PeerCpuNs(t->server_pid());
      uint64_t client0 = ProcessCpuNs();
      uint64_t wall0 = NowNs();
      int rc = pipeline_calls(c.get(), sync, window, req,
                              wall0 + (uint64_t)g_opts.duration_ms * 1000000,
                              &calls, &err);
      uint64_t wall = NowNs() - wall0;
      uint64_t client = ProcessCpuNs() - client0;
      uint64_t server = PeerCpuNs(t->server_pid()) - server0;
      if (rc != 0) {
        state.SkipWithError(err.c_str());
        break;
      }
      state.SetIterationTime((double)wall * 1e-9);
      state.counters["calls_per_s"] = (double)calls / ((double)wall * 1e-9);
      state.counters["window"] = window;
      ReportCpu(state, client, server, wall, calls);
      state.SetItemsProcessed((int64_t)calls);
      state.SetLabel(label);
    }
  }
  c.reset(); /* close the client before the server goes */
  t->Stop();
}

} // namespace bench

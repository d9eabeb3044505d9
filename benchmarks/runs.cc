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
 * pages touched, adaptive spin budgets learned, before anything counts. */
bool latency_warm_up(benchmark::State &state, Conn *c,
                     const std::vector<unsigned char> &req) {
  const void *resp;
  size_t resp_len;
  std::string err;
  uint64_t end = NowNs() + (uint64_t)g_opts.warmup_ms * 1000000;
  for (int n = 0; n < 3 || NowNs() < end; n++) {
    if (c->Call(req.data(), req.size(), &resp, &resp_len, &err) != 0) {
      state.SkipWithError(("warm-up: " + err).c_str());
      return false;
    }
  }
  return true;
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
  if (!c) {
    state.SkipWithError(err.c_str());
  } else if (latency_warm_up(state, c.get(), req)) {
    /* Room for this run's samples, capped: the buffer grows if needed. */
    Latency lat((size_t)std::min<benchmark::IterationCount>(
        state.max_iterations, 1 << 24));
    const void *resp = nullptr;
    size_t resp_len = 0;
    uint64_t sink = 0;
    uint64_t server0 = PeerCpuNs(t->server_pid());
    uint64_t client0 = ProcessCpuNs();
    uint64_t wall0 = NowNs();
    for (auto _ : state) {
      uint64_t t0 = NowNs();
      int rc = c->Call(req.data(), req.size(), &resp, &resp_len, &err);
      if (rc == 0)
        sink += ReadAll(resp, resp_len);
      uint64_t t1 = NowNs();
      if (rc != 0 || !check(resp, resp_len)) {
        state.SkipWithError(rc ? err.c_str() : "wrong reply");
        break;
      }
      state.SetIterationTime((double)(t1 - t0) * 1e-9);
      lat.Add(t1 - t0);
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

/* Shared by the benchmark process and its client processes. */
struct Board {
  uint32_t ready;   /* clients connected and warmed up */
  uint32_t go;      /* set by the parent: start counting */
  uint32_t stop;    /* set by the parent: stop calling */
  uint32_t burn_us; /* >0: the request asks the server to burn this CPU */
  struct {
    uint64_t calls;
    uint64_t cpu_ns; /* the client process's CPU inside the window */
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
  const void *resp;
  size_t resp_len;
  uint64_t warm_end = NowNs() + (uint64_t)g_opts.warmup_ms * 1000000;
  for (int n = 0; n < 3 || NowNs() < warm_end; n++)
    if (c->Call(req.data(), kPayload, &resp, &resp_len, &err) != 0)
      return fail("warm-up: " + err);
  __atomic_add_fetch(&b->ready, 1, __ATOMIC_ACQ_REL);
  while (!tp_load(&b->go))
    usleep(100);
  uint64_t cpu0 = ProcessCpuNs(), calls = 0;
  while (!tp_load(&b->stop)) {
    if (c->Call(req.data(), kPayload, &resp, &resp_len, &err) != 0)
      return fail(err);
    if (!ReplyMatches(req.data(), kPayload, resp, resp_len))
      return fail("reply differs from request");
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
    for (int i = 0; i < n; i++) {
      if (b->client[i].failed) {
        state.SkipWithError(b->client[i].err);
        break;
      }
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
    ReportCpu(state, client_cpu, server, wall, total);
    state.SetItemsProcessed((int64_t)total);
    state.SetLabel(name);
  }
  for (pid_t k : kids)
    StopChild(k, SIGKILL, 0);
  t->Stop();
  munmap(mem, sizeof(Board));
}

} // namespace bench

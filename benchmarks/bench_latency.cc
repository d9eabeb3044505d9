/* bench_latency.cc — round-trip latency per payload size (16 B .. 16 MiB)
 * for every transport: the benchmark process is the client, the echo server
 * is a forked child. Reports mean/p50/p99 of the individually timed calls
 * and the CPU that client and server burn per call. */
#include <stdio.h>

#include <algorithm>

#include "harness.h"
#include "transport.h"

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

void BM_Latency(benchmark::State &state, const std::string &name,
                const ServerOptions &opts = {}) {
  const size_t len = (size_t)state.range(0);
  Watchdog watchdog("latency/" + name + "/" + std::to_string(len),
                    (unsigned)g_opts.watchdog_s);
  std::string err;
  auto t = MakeTransport(name, opts);
  if (!t || !t->Start(1, len, &err)) {
    state.SkipWithError(t ? err.c_str() : "unknown transport");
    return;
  }
  auto c = t->Connect(0, &err);
  auto req = MakePayload(len);
  if (!c) {
    state.SkipWithError(err.c_str());
  } else if (latency_warm_up(state, c.get(), req)) {
    /* Room for this run's samples, capped: the buffer grows if needed. */
    Latency lat((size_t)std::min<benchmark::IterationCount>(
        state.max_iterations, 1 << 24));
    const void *resp = nullptr;
    size_t resp_len = 0;
    uint64_t server0 = PeerCpuNs(t->server_pid());
    uint64_t client0 = ProcessCpuNs();
    uint64_t wall0 = NowNs();
    for (auto _ : state) {
      uint64_t t0 = NowNs();
      int rc = c->Call(req.data(), len, &resp, &resp_len, &err);
      uint64_t t1 = NowNs();
      if (rc != 0 || !ReplyMatches(req.data(), len, resp, resp_len)) {
        state.SkipWithError(rc ? err.c_str() : "reply differs from request");
        break;
      }
      state.SetIterationTime((double)(t1 - t0) * 1e-9);
      lat.Add(t1 - t0);
    }
    uint64_t wall = NowNs() - wall0;
    uint64_t client = ProcessCpuNs() - client0;
    uint64_t server = PeerCpuNs(t->server_pid()) - server0;
    if (!state.error_occurred()) {
      lat.Report(state);
      ReportCpu(state, client, server, wall, lat.count());
      state.SetBytesProcessed((int64_t)(2 * len * lat.count()));
      state.SetLabel(name);
    }
  }
  c.reset(); /* close the client before the server goes */
  t->Stop();
}

} // namespace
} // namespace bench

int main(int argc, char **argv) {
  benchmark::Initialize(&argc, argv);
  bench::ParseOptions(&argc, argv);
  bench::SetUpRuntimeDir();
  for (const std::string &name : bench::TransportNames()) {
    auto *b = benchmark::RegisterBenchmark(
        ("latency/" + name).c_str(),
        [name](benchmark::State &s) { bench::BM_Latency(s, name); });
    for (int64_t size : bench::kSizes)
      b->Arg(size);
    b->UseManualTime()->Unit(benchmark::kMicrosecond);
  }
  /* The cost of per-method statistics (issue 7): the same 64 B shm echo
   * with the server counting (the default) and with SVC_STATS=off. */
  for (bool stats : {true, false}) {
    bench::ServerOptions opts;
    opts.stats = stats;
    std::string label = std::string("stats/svc-shm/") + (stats ? "on" : "off");
    auto *b = benchmark::RegisterBenchmark(
        label.c_str(),
        [opts](benchmark::State &s) { bench::BM_Latency(s, "svc-shm", opts); });
    b->Arg(64)->UseManualTime()->Unit(benchmark::kMicrosecond);
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

/* bench_pipeline.cc — calls in flight: one client thread keeps a window of
 * 1, 8 or 64 calls of a 64 B echo in flight on one connection for a fixed
 * time (--duration_ms), over libsvc shm (adaptive wait, and SVC_WAIT_BLOCK
 * on both sides), unix and tcp, next to the raw pipelined socket baselines
 * and to plain svc_call. Reports calls/s and CPU per call. */
#include <algorithm>

#include "harness.h"
#include "transport.h"

namespace bench {
namespace {

constexpr size_t kPayload = 64; /* as bench_throughput */

/* One row of the report. */
struct Row {
  std::string name;      /* the benchmark is "pipeline/NAME/WINDOW" */
  std::string transport; /* a TransportNames() name */
  ServerOptions opts;
  bool sync; /* svc_call one at a time (window 1) instead of Conn::Pipeline */
};

/* Calls until until_ns the way row makes them; adds them to *calls. */
int pipeline_calls(Conn *c, const Row &row, int window,
                   const std::vector<unsigned char> &req, uint64_t until_ns,
                   uint64_t *calls, std::string *err) {
  if (!row.sync)
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

void BM_Pipeline(benchmark::State &state, const Row &row) {
  const int window = (int)state.range(0);
  Watchdog watchdog("pipeline/" + row.name + "/" + std::to_string(window),
                    (unsigned)g_opts.watchdog_s +
                        (unsigned)g_opts.duration_ms / 1000);
  std::string err;
  auto t = MakeTransport(row.transport, row.opts);
  if (!t || !t->Start(1, kPayload, &err)) {
    state.SkipWithError(t ? err.c_str() : "unknown transport");
    return;
  }
  auto c = t->Connect(0, &err);
  auto req = MakePayload(kPayload);
  uint64_t warm_calls = 0;
  if (!c) {
    state.SkipWithError(err.c_str());
  } else if (pipeline_calls(c.get(), row, window, req,
                            NowNs() + (uint64_t)g_opts.warmup_ms * 1000000,
                            &warm_calls, &err) != 0) {
    state.SkipWithError(("warm-up: " + err).c_str());
  } else {
    for (auto _ : state) { /* one iteration: the window */
      uint64_t calls = 0;
      uint64_t server0 = PeerCpuNs(t->server_pid());
      uint64_t client0 = ProcessCpuNs();
      uint64_t wall0 = NowNs();
      int rc = pipeline_calls(c.get(), row, window, req,
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
      state.SetLabel(row.name);
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
  bench::ServerOptions adaptive, block;
  block.wait_block = true;
  /* Report order: each raw pipelined socket before libsvc on it; then shm,
   * its svc_call row next to window 1 (svc_call must not get slower). */
  const std::vector<bench::Row> rows = {
      {"unix", "unix", adaptive, false},
      {"svc-unix", "svc-unix", adaptive, false},
      {"tcp", "tcp", adaptive, false},
      {"svc-tcp", "svc-tcp", adaptive, false},
      {"svc-shm-sync", "svc-shm", adaptive, true},
      {"svc-shm", "svc-shm", adaptive, false},
      {"svc-shm-block", "svc-shm", block, false},
  };
  const std::vector<std::string> names = bench::TransportNames();
  for (const bench::Row &row : rows) {
    if (std::find(names.begin(), names.end(), row.transport) == names.end())
      continue; /* built with SVC_BENCH_NO_LIBSVC */
    auto *b = benchmark::RegisterBenchmark(
        ("pipeline/" + row.name).c_str(),
        [row](benchmark::State &s) { bench::BM_Pipeline(s, row); });
    for (int window : {1, 8, 64})
      if (!row.sync || window == 1)
        b->Arg(window);
    b->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

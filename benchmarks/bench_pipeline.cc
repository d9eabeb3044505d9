/* bench_pipeline.cc — calls in flight: one client thread keeps a window of
 * 1, 8 or 64 calls of a 64 B echo in flight on one connection for a fixed
 * time (--duration_ms), over libsvc shm (adaptive wait, and SVC_WAIT_BLOCK
 * on both sides), unix and tcp, next to the raw pipelined socket baselines
 * and to plain svc_call. Reports calls/s and CPU per call. */
#include <algorithm>

#include "runs.h"

namespace bench {
namespace {

/* One row of the report. */
struct Row {
  std::string name;      /* the benchmark is "pipeline/NAME/WINDOW" */
  std::string transport; /* a TransportNames() name */
  ServerOptions opts;
  bool sync; /* svc_call one at a time (window 1) instead of Conn::Pipeline */
};

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
        ("pipeline/" + row.name).c_str(), [row](benchmark::State &s) {
          bench::BM_Pipeline(s, row.name, row.transport, row.opts, row.sync);
        });
    for (int window : {1, 8, 64})
      if (!row.sync || window == 1)
        b->Arg(window);
    b->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

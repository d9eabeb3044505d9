/* bench_throughput.cc — calls per second with 1, 2, 4 and 8 concurrent
 * client processes against one server process, for a fixed window
 * (--duration_ms). Reports the total rate, the fewest and most calls any one
 * client made (starvation shows as a small minimum) and CPU per call. */
#include "runs.h"

int main(int argc, char **argv) {
  benchmark::Initialize(&argc, argv);
  bench::ParseOptions(&argc, argv);
  bench::SetUpRuntimeDir();
  /* Echo throughput at 64 B: the raw futex and spin ping-pongs, raw Unix
   * and TCP sockets (the baselines of issue 18's stream targets), and libsvc
   * over shm, unix, tcp and tls (issue 16: what the encryption costs a loaded
   * server, next to tcp in the same run). */
  std::vector<std::string> names = {"futex", "spin", "unix", "tcp"};
  for (const std::string &n : bench::TransportNames())
    if (n == "svc-shm" || n == "svc-unix" || n == "svc-tcp" || n == "svc-tls")
      names.push_back(n);
  for (const std::string &name : names) {
    auto *b = benchmark::RegisterBenchmark(
        ("throughput/" + name).c_str(),
        [name](benchmark::State &s) { bench::BM_Throughput(s, name); });
    for (int clients : {1, 2, 4, 8})
      b->Arg(clients);
    b->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);
  }
  /* Worker processes (issue 6): a CPU-bound handler (200 us of CPU per
   * call, "burn" in svc_echo.cc) called by 4 client processes over shm,
   * served by 1 and by 2 worker processes. "1thread" limits each worker to
   * one serving thread: a handler that cannot run twice in one process (a
   * GIL, a global lock), the case worker processes exist for; "threads" is
   * the default pool, where one worker already spreads over the cores. */
  for (int threads : {1, 0})
    for (int workers : {1, 2}) {
      bench::ServerOptions opts;
      opts.workers = workers;
      opts.method = "burn";
      opts.max_threads = threads;
      std::string label = std::string("workers/svc-shm/burn200us-") +
                          (threads == 1 ? "1thread/" : "threads/") +
                          std::to_string(workers);
      auto *b = benchmark::RegisterBenchmark(
          label.c_str(), [opts](benchmark::State &s) {
            bench::BM_Throughput(s, "svc-shm", opts, 200);
          });
      b->Arg(4)->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);
    }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

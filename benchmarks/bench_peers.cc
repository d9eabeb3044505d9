/* bench_peers.cc — libsvc next to what a user would pick instead (issue
 * 12): iceoryx, ZeroMQ, nng and gRPC (benchmarks/peers/), each built when
 * its package is found, run through the same echo workloads and the same
 * measured runs as the libsvc rows (runs.h): latency from 16 B to 16 MiB,
 * calls/s with 1, 4 and 8 client processes, calls in flight where the peer
 * has them, and the cost nobody benchmarks: CPU and memory of a server
 * with 10 idle connected clients. Every client and server is a child of
 * this process, which itself never loads a peer library (several do not
 * survive fork). */
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "peers/peers.h"
#include "runs.h"

namespace bench {
namespace {

constexpr int kIdleClients = 10;

/* A client process holding kIdleClients connections open and making no
 * calls for --idle_ms: the server's CPU ticks in that window (zero is what
 * an idle server should cost), and afterwards RSS and PSS of the server,
 * the client process and any helper daemon. */
void BM_Idle(benchmark::State &state, const std::string &name) {
  Watchdog watchdog("idle/" + name, (unsigned)g_opts.watchdog_s +
                                        (unsigned)g_opts.idle_ms / 1000);
  std::string err;
  auto t = MakeTransport(name);
  if (!t || !t->Start(kIdleClients, 64, &err)) {
    state.SkipWithError(t ? err.c_str() : "unknown transport");
    return;
  }
  int fds[2];
  if (pipe(fds) != 0) {
    state.SkipWithError("pipe");
    t->Stop();
    return;
  }
  pid_t kid = ForkChild([&] {
    close(fds[0]);
    std::vector<std::unique_ptr<Conn>> conns;
    auto req = MakePayload(64);
    for (int i = 0; i < kIdleClients; i++) {
      std::string e;
      auto c = t->Connect(i, &e);
      const void *resp;
      size_t resp_len;
      /* One call each: connected and used, as a client between calls. */
      if (!c || c->Call(req.data(), req.size(), &resp, &resp_len, &e) != 0) {
        dprintf(fds[1], "ERR %s\n", e.c_str());
        return 1;
      }
      conns.push_back(std::move(c));
    }
    dprintf(fds[1], "OK\n");
    for (;;)
      pause(); /* idle until killed */
  });
  close(fds[1]);
  char line[256] = {0};
  struct pollfd p = {fds[0], POLLIN, 0};
  ssize_t n = poll(&p, 1, 20000) > 0 ? read(fds[0], line, sizeof line - 1) : 0;
  close(fds[0]);
  if (n < 3 || line[0] != 'O') {
    state.SkipWithError(n > 4 ? line + 4 : "idle clients did not connect");
  } else {
    for (auto _ : state) {
      usleep(100 * 1000); /* let spinning budgets run out first */
      std::vector<pid_t> servers = {t->server_pid()};
      for (pid_t h : t->helper_pids())
        servers.push_back(h);
      uint64_t ticks0 = 0, client0 = ProcTicks(kid);
      for (pid_t s : servers)
        ticks0 += ProcTicks(s);
      uint64_t wall0 = NowNs();
      usleep((useconds_t)g_opts.idle_ms * 1000);
      uint64_t wall = NowNs() - wall0;
      uint64_t ticks = 0;
      for (pid_t s : servers)
        ticks += ProcTicks(s);
      state.SetIterationTime((double)wall * 1e-9);
      state.counters["server_ticks"] = (double)(ticks - ticks0);
      state.counters["client_ticks"] = (double)(ProcTicks(kid) - client0);
      state.counters["idle_s"] = (double)wall * 1e-9;
      uint64_t rss, pss;
      if (ProcMemoryKb(t->server_pid(), &rss, &pss)) {
        state.counters["server_rss_kb"] = (double)rss;
        state.counters["server_pss_kb"] = (double)pss;
      }
      if (ProcMemoryKb(kid, &rss, &pss)) {
        state.counters["client_rss_kb"] = (double)rss;
        state.counters["client_pss_kb"] = (double)pss;
      }
      uint64_t hrss = 0, hpss = 0;
      for (pid_t h : t->helper_pids())
        if (ProcMemoryKb(h, &rss, &pss)) {
          hrss += rss;
          hpss += pss;
        }
      if (!t->helper_pids().empty()) {
        state.counters["daemon_rss_kb"] = (double)hrss;
        state.counters["daemon_pss_kb"] = (double)hpss;
      }
      state.SetLabel(name);
    }
  }
  StopChild(kid, SIGKILL, 0);
  t->Stop();
}

} // namespace
} // namespace bench

int main(int argc, char **argv) {
  benchmark::Initialize(&argc, argv);
  bench::ParseOptions(&argc, argv);
  bench::SetUpRuntimeDir();
  for (const std::string &m : bench::MissingPeers())
    fprintf(stderr, "bench_peers: skipping %s\n", m.c_str());
  /* libsvc first, then every peer built, in report order. tls:// is
   * measured against tcp:// (bench_latency, bench_throughput), not here:
   * no peer row is encrypted. */
  std::vector<std::string> names;
  for (const std::string &n : bench::TransportNames())
    if (n.compare(0, 4, "svc-") == 0 && n != "svc-tls")
      names.push_back(n);
  for (const std::string &n : bench::PeerNames())
    names.push_back(n);
  for (const std::string &name : names) {
    auto *b = benchmark::RegisterBenchmark(
        ("peers/" + name).c_str(),
        [name](benchmark::State &s) { bench::BM_LatencyInChild(s, name); });
    for (int64_t size : bench::kSizes)
      b->Arg(size);
    b->Iterations(1)->UseManualTime()->Unit(benchmark::kMicrosecond);
  }
  for (const std::string &name : names) {
    if (name == "svc-shm-prep" || name == "svc-tcp")
      continue; /* the same server as svc-shm / a second socket row */
    auto *b = benchmark::RegisterBenchmark(
        ("peers-tp/" + name).c_str(),
        [name](benchmark::State &s) { bench::BM_Throughput(s, name); });
    for (int clients : {1, 4, 8})
      b->Arg(clients);
    b->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);
  }
  /* Calls in flight where the peer has them, each in its own idiom:
   * ZeroMQ DEALER/ROUTER, nng contexts with aio, gRPC's async stub. */
  for (const std::string name :
       {"svc-shm", "svc-unix", "zmq-ipc", "nng-ipc", "grpc-unix"}) {
    bool have = false;
    for (const std::string &n : names)
      have |= n == name;
    if (!have)
      continue;
    auto *b = benchmark::RegisterBenchmark(
        ("peers-pipe/" + name).c_str(),
        [name](benchmark::State &s) { bench::BM_PipelineInChild(s, name); });
    for (int window : {1, 8, 64})
      b->Arg(window);
    b->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);
  }
  for (const std::string &name : names) {
    if (name == "svc-shm-prep")
      continue;
    benchmark::RegisterBenchmark(
        ("peers-idle/" + name).c_str(),
        [name](benchmark::State &s) { bench::BM_Idle(s, name); })
        ->Arg(bench::kIdleClients)
        ->Iterations(1)
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond);
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

/* bench_latency.cc — round-trip latency per payload size (16 B .. 16 MiB)
 * for every transport: the benchmark process is the client, the echo server
 * is a forked child. Reports mean/p50/p99 of the individually timed calls
 * and the CPU that client and server burn per call. Issue 11's rows: the
 * machine's memcpy bandwidth, a one-way 16 MiB transfer written in place,
 * and what a client costs while a 10 ms handler computes. Issue 16's: what
 * a new connection costs over tcp:// and tls:// (a TLS handshake each). */
#include <stdio.h>
#include <string.h>

#include <algorithm>
#include <functional>
#include <utility>
#include <vector>

#include "runs.h"

namespace bench {
namespace {

/* The machine's copy bandwidth, issue 11's yardstick: one memcpy of len
 * bytes between two buffers touched beforehand, timed like a call. */
void BM_Memcpy(benchmark::State &state) {
  const size_t len = (size_t)state.range(0);
  auto src = MakePayload(len);
  std::vector<unsigned char> dst(len, 0);
  Latency lat(1 << 16);
  for (auto _ : state) {
    uint64_t t0 = NowNs();
    memcpy(dst.data(), src.data(), len);
    benchmark::ClobberMemory();
    uint64_t t1 = NowNs();
    state.SetIterationTime((double)(t1 - t0) * 1e-9);
    lat.Add(t1 - t0);
  }
  lat.Report(state);
  state.SetBytesProcessed((int64_t)(len * state.iterations()));
  state.SetLabel("memcpy");
}

/* A one-way transfer: the client writes len bytes in place (copying them
 * from its own buffer, as memcpy does), the handler ("sum") reads all of
 * them where they lie and replies with 8 bytes. Like one memcpy, but the
 * writer and the reader are two processes. */
void BM_Send(benchmark::State &state, const std::string &name) {
  const size_t len = (size_t)state.range(0);
  ServerOptions opts;
  opts.method = "sum";
  auto req = MakePayload(len);
  uint64_t want = ReadAll(req.data(), len);
  LatencyRun(state, "send/" + name, name, opts, req,
             [&](const void *resp, size_t resp_len) {
               uint64_t got = 0;
               if (resp_len != sizeof got)
                 return false;
               memcpy(&got, resp, sizeof got);
               return got == want;
             });
  state.SetBytesProcessed((int64_t)(len * state.iterations()));
}

/* A handler that computes for state.range(0) us ("burn"): what the waiting
 * client costs. The server announces no copy, so the client spins its
 * short budget and sleeps (issue 11: under 5% of a core for 10 ms). */
void BM_SlowHandler(benchmark::State &state, const std::string &name) {
  const uint32_t burn_us = (uint32_t)state.range(0);
  ServerOptions opts;
  opts.method = "burn";
  std::vector<unsigned char> req(64, 0);
  memcpy(req.data(), &burn_us, sizeof burn_us);
  LatencyRun(
      state, "slow/" + name, name, opts, req,
      [&](const void *, size_t resp_len) { return resp_len == req.size(); });
}

/* Paired rounds (issue 18). This VM's two vCPUs flip between a fast state
 * (the spin floor's 64 B round trip about 0.26 us) and a slow one (about
 * 0.85 us) from one process to the next and even within one, so two rows
 * measured a minute apart may compare two states. Here name and the spin
 * floor take turns in short windows, each from a fresh server (the spin
 * server would take a core from the other if both ran), in the order
 * floor, name, name, floor, ...; a round's ratio is its two neighbouring
 * windows' p50s. Counters: ratio (the rounds' median), ratio_min and
 * ratio_max, p50_us and floor_p50_us (medians), and per round i
 * floor_us_rI and ratio_rI, so the report can split the rounds by state.
 * One iteration; its time is the whole run. */
constexpr int kPairedRounds = 8;

void BM_Paired(benchmark::State &state, const std::string &name) {
  const size_t len = (size_t)state.range(0);
  const std::string what = "paired/" + name + "/" + std::to_string(len);
  Watchdog watchdog(what, (unsigned)g_opts.watchdog_s);
  auto req = MakePayload(len);
  ReplyCheck check = [&](const void *resp, size_t resp_len) {
    return ReplyMatches(req.data(), len, resp, resp_len);
  };
  uint64_t window_ms =
      std::max<uint64_t>(1, (uint64_t)g_opts.duration_ms / (2 * kPairedRounds));
  std::vector<double> ratios, floors, p50s;
  std::string err;
  for (auto _ : state) {
    uint64_t t0 = NowNs();
    for (int i = 0; i < kPairedRounds; i++) {
      uint64_t floor_ns = 0, ns = 0;
      bool floor_first = i % 2 == 0, ok;
      if (floor_first)
        ok =
            LatencyWindow("spin", {}, req, check, window_ms, &floor_ns, &err) &&
            LatencyWindow(name, {}, req, check, window_ms, &ns, &err);
      else
        ok = LatencyWindow(name, {}, req, check, window_ms, &ns, &err) &&
             LatencyWindow("spin", {}, req, check, window_ms, &floor_ns, &err);
      if (!ok) {
        state.SkipWithError((what + ": " + err).c_str());
        return;
      }
      floors.push_back((double)floor_ns / 1e3);
      p50s.push_back((double)ns / 1e3);
      ratios.push_back((double)ns / (double)floor_ns);
      state.counters["floor_us_r" + std::to_string(i)] = floors.back();
      state.counters["ratio_r" + std::to_string(i)] = ratios.back();
    }
    state.SetIterationTime((double)(NowNs() - t0) * 1e-9);
  }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    size_t n = v.size();
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
  };
  state.counters["rounds"] = (double)ratios.size();
  state.counters["ratio"] = median(ratios);
  state.counters["ratio_min"] = *std::min_element(ratios.begin(), ratios.end());
  state.counters["ratio_max"] = *std::max_element(ratios.begin(), ratios.end());
  state.counters["p50_us"] = median(p50s);
  state.counters["floor_p50_us"] = median(floors);
  state.SetLabel(name + " vs spin");
}

/* One connection's life: open, one call of req, close, all of it timed as
 * a user pays it. 0, or -1 with *err. */
int connect_call_close(Transport *t, const std::vector<unsigned char> &req,
                       uint64_t *ns, std::string *err) {
  uint64_t t0 = NowNs();
  auto c = t->Connect(0, err);
  if (!c)
    return -1;
  const void *resp;
  size_t resp_len;
  int rc = c->Call(req.data(), req.size(), &resp, &resp_len, err);
  if (rc == 0 && !ReplyMatches(req.data(), req.size(), resp, resp_len)) {
    *err = "reply differs from request";
    rc = -1;
  }
  c.reset(); /* svc_client_close */
  *ns = NowNs() - t0;
  return rc;
}

/* Connections per second (issue 16): per iteration a new client opens a
 * connection, makes one call of state.range(0) bytes and closes, one
 * client thread against one server. Over tls:// each is a full TLS 1.3
 * handshake (a new svc_client keeps no ticket from an earlier one).
 * Counters: connects_per_s, mean/p50/p99/max_us of one connection's life,
 * CPU per connection (client + server) as cpu_us_per_call. */
void BM_Connect(benchmark::State &state, const std::string &name) {
  const size_t len = (size_t)state.range(0);
  Watchdog watchdog("connect/" + name + "/" + std::to_string(len),
                    (unsigned)g_opts.watchdog_s);
  std::string err;
  auto t = MakeTransport(name);
  if (!t || !t->Start(1, len, &err)) {
    state.SkipWithError(t ? err.c_str() : "unknown transport");
    return;
  }
  auto req = MakePayload(len);
  uint64_t ns = 0;
  /* Warm-up: the server's threads started, the files a tls:// client and
   * server read (certificates, OpenSSL's configuration) in the page cache. */
  uint64_t warm_end = NowNs() + (uint64_t)g_opts.warmup_ms * 1000000;
  for (int n = 0; n < 3 || NowNs() < warm_end; n++)
    if (connect_call_close(t.get(), req, &ns, &err) != 0) {
      state.SkipWithError(("warm-up: " + err).c_str());
      t->Stop();
      return;
    }
  Latency lat((size_t)std::min<benchmark::IterationCount>(state.max_iterations,
                                                          1 << 20));
  uint64_t server0 = TreeCpuNs(t->server_pid());
  uint64_t client0 = ProcessCpuNs();
  uint64_t wall0 = NowNs();
  for (auto _ : state) {
    if (connect_call_close(t.get(), req, &ns, &err) != 0) {
      state.SkipWithError(err.c_str());
      break;
    }
    state.SetIterationTime((double)ns * 1e-9);
    lat.Add(ns);
  }
  uint64_t wall = NowNs() - wall0;
  uint64_t client = ProcessCpuNs() - client0;
  uint64_t server = TreeCpuNs(t->server_pid()) - server0;
  if (!state.error_occurred() && lat.count() > 0) {
    lat.Report(state);
    ReportCpu(state, client, server, wall, lat.count());
    state.counters["connects_per_s"] =
        (double)lat.count() / ((double)wall * 1e-9);
    state.SetLabel(name);
  }
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
  /* svc-shm against the spin floor in alternating windows (issue 18's and
   * issue 11's targets, immune to the VM changing state between rows). */
  for (const auto &[name, size] : std::vector<std::pair<std::string, int64_t>>{
           {"svc-shm", 64}, {"svc-shm", 1 << 20}, {"svc-shm-prep", 1 << 20}}) {
    benchmark::RegisterBenchmark(
        ("paired/" + name).c_str(),
        [name = name](benchmark::State &s) { bench::BM_Paired(s, name); })
        ->Arg(size)
        ->Iterations(1)
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond);
  }
  /* What a connection costs (issue 16): tcp:// and tls:// with one 64 B
   * call each. */
  for (const std::string &name : bench::TransportNames()) {
    if (name != "svc-tcp" && name != "svc-tls")
      continue;
    benchmark::RegisterBenchmark(
        ("connect/" + name).c_str(),
        [name](benchmark::State &s) { bench::BM_Connect(s, name); })
        ->Arg(64)
        ->UseManualTime()
        ->Unit(benchmark::kMicrosecond);
  }
  benchmark::RegisterBenchmark("memcpy/local", bench::BM_Memcpy)
      ->Arg(1 << 20)
      ->Arg(16 << 20)
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark(
      "send/svc-shm-prep",
      [](benchmark::State &s) { bench::BM_Send(s, "svc-shm-prep"); })
      ->Arg(1 << 20)
      ->Arg(16 << 20)
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond);
  /* 100 calls of 10 ms: one second, whatever the mode. */
  benchmark::RegisterBenchmark(
      "slow/svc-shm",
      [](benchmark::State &s) { bench::BM_SlowHandler(s, "svc-shm"); })
      ->Arg(10000)
      ->Iterations(100)
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

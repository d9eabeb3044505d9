/* runs.h — the measured runs the suites share, for any transport name
 * (transport.h): latency, one call at a time, and throughput, N client
 * processes at once. Each reports its numbers as Google Benchmark
 * counters; report.py reads them. */
#ifndef SVC_BENCH_RUNS_H
#define SVC_BENCH_RUNS_H

#include <functional>
#include <string>
#include <vector>

#include "harness.h"
#include "transport.h"

namespace bench {

/* Says whether a reply is the right one for the request. */
using ReplyCheck = std::function<bool(const void *resp, size_t resp_len)>;

/* Starts transport name's server, warms up, then times one call of req
 * per iteration (the client reads the whole reply inside the timed part:
 * a client uses its reply). Counters: mean/p50/p99/max_us, CPU per call
 * (client, server), client_cores. what names the run for the watchdog. */
void LatencyRun(benchmark::State &state, const std::string &what,
                const std::string &name, const ServerOptions &opts,
                const std::vector<unsigned char> &req, const ReplyCheck &check);

/* One window of a paired comparison: starts name's server, warms up,
 * times calls of req until window_ms have passed (at least 3 calls), stops
 * the server. true with *p50_ns; false with *err. */
bool LatencyWindow(const std::string &name, const ServerOptions &opts,
                   const std::vector<unsigned char> &req,
                   const ReplyCheck &check, uint64_t window_ms,
                   uint64_t *p50_ns, std::string *err);

/* LatencyRun with the client in a forked process of its own, calling for
 * --duration_ms after its warm-up (one benchmark iteration), so that the
 * benchmark process never loads a library that does not survive fork
 * (nng, gRPC, iceoryx): every server and client is a child of a process
 * that never used it. bench_peers measures every row, libsvc's too, so. */
void LatencyRunInChild(benchmark::State &state, const std::string &what,
                       const std::string &name,
                       const std::vector<unsigned char> &req,
                       const ReplyCheck &check);
/* Echo latency of state.range(0) bytes each way, client in a child. */
void BM_LatencyInChild(benchmark::State &state, const std::string &name);

/* Echo latency of state.range(0) bytes each way. */
void BM_Latency(benchmark::State &state, const std::string &name,
                const ServerOptions &opts = {});

/* state.range(0) client processes (1..8) calling a 64 B echo (or "burn"
 * with burn_us) for --duration_ms: calls_per_s, min/max_calls per client,
 * CPU per call. */
void BM_Throughput(benchmark::State &state, const std::string &name,
                   const ServerOptions &opts = {}, uint32_t burn_us = 0);

/* Calls in flight (issue 10): one client keeps state.range(0) 64 B calls
 * in flight for --duration_ms (Conn::Pipeline), or with sync makes them
 * one at a time. label names the row ("pipeline/LABEL/WINDOW"). */
void BM_Pipeline(benchmark::State &state, const std::string &label,
                 const std::string &name, const ServerOptions &opts, bool sync);

/* BM_Pipeline with the client in a child process (see LatencyRunInChild). */
void BM_PipelineInChild(benchmark::State &state, const std::string &name);

} // namespace bench

#endif

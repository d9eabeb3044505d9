/* harness.h — what every benchmark suite shares: the clock, latency samples
 * and their percentiles, CPU time of this thread and of a peer process,
 * forking and reaping helper processes, and the suites' own command line
 * flags. Nothing here knows about a particular transport. */
#ifndef SVC_BENCH_HARNESS_H
#define SVC_BENCH_HARNESS_H

#include <benchmark/benchmark.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include <functional>
#include <string>
#include <vector>

namespace bench {

/* ---- options shared by all suites (parsed after Google Benchmark's) ---- */

struct Options {
  int warmup_ms = 20;     /* calls before the timed loop, per run */
  int duration_ms = 1000; /* window of one throughput measurement */
  int watchdog_s = 120;   /* longest one benchmark run may take */
  int idle_ms = 5000;     /* the window of an idle-cost measurement */
};
extern Options g_opts;

/* Consumes --warmup_ms=N, --duration_ms=N and --watchdog_s=N from argv; exits
 * with a usage message on anything it does not know. Call after
 * benchmark::Initialize. */
void ParseOptions(int *argc, char **argv);

/* Makes a private 0700 directory, exports it as SVC_RUNTIME_DIR so libsvc's
 * rendezvous sockets land there, and removes it at exit. */
void SetUpRuntimeDir();
const std::string &RuntimeDir();

/* A name no other run on this host uses: "<prefix>-<pid>-<counter>". */
std::string UniqueName(const char *prefix);

/* ---- time ---- */

inline uint64_t NowNs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The end of a timed loop that reads the clock on every 16th check only:
 * a 64 B shm call takes a few hundred ns, a clock read some 20 ns. Passed()
 * answers at most 15 checks late. */
class Deadline {
public:
  explicit Deadline(uint64_t at_ns) : at_(at_ns) {}
  bool Passed() { return (++checks_ & 15) == 0 && NowNs() >= at_; }

private:
  uint64_t at_;
  unsigned checks_ = 0;
};

/* CPU time (user + system) of the calling thread, ns. */
uint64_t ThreadCpuNs();
/* CPU time of the calling process, all threads, ns. */
uint64_t ProcessCpuNs();
/* CPU time of another process (all its threads) through its POSIX CPU
 * clock: nanosecond resolution, unlike the 10 ms ticks of /proc/PID/stat,
 * which is the fallback. Returns 0 if the process is gone. */
uint64_t PeerCpuNs(pid_t pid);
/* PeerCpuNs of pid and its children (a libsvc master and its workers). */
uint64_t TreeCpuNs(pid_t pid);

/* Round-trip samples of one run; reports mean, p50, p99 and max. */
class Latency {
public:
  explicit Latency(size_t expected) { ns_.reserve(expected); }
  void Add(uint64_t ns) { ns_.push_back(ns); }
  size_t count() const { return ns_.size(); }
  /* Sets the counters mean_us, p50_us, p99_us, max_us. Sorts the samples. */
  void Report(benchmark::State &state);

private:
  std::vector<uint64_t> ns_;
};

/* Sets cpu_us_per_call (client + server), client_cpu_us, server_cpu_us and
 * cores_busy (CPU seconds per wall second: 2.0 means both sides spun). */
void ReportCpu(benchmark::State &state, uint64_t client_ns, uint64_t server_ns,
               uint64_t wall_ns, uint64_t calls);

/* ---- helper processes ---- */

/* Forks; the child runs fn and _exits with its return value (it never
 * returns into the benchmark). The child is killed if the benchmark process
 * dies, so a crash or the watchdog leaves no process behind. Returns the
 * child's pid, or -1. */
pid_t ForkChild(const std::function<int()> &fn);

/* While alive, kills the benchmark process (and with it every helper
 * process) with a message naming what if it takes longer than seconds: a
 * lost wake-up must fail CI, not hang it. libsvc clients keep their default
 * (no timeout), so the watchdog costs the measured calls nothing. */
class Watchdog {
public:
  Watchdog(const std::string &what, unsigned seconds);
  ~Watchdog();
  Watchdog(const Watchdog &) = delete;
  Watchdog &operator=(const Watchdog &) = delete;
};
/* Sends sig, waits up to grace_ms, then SIGKILLs, and reaps. Safe on -1. */
void StopChild(pid_t pid, int sig, int grace_ms);

/* What a server child calls once: ready("OK <address>") when it listens,
 * or ready("ERR <why>"). */
using ReadyFn = std::function<void(const std::string &line)>;
/* Forks a server process running serve(ready) and waits (10 s at most) for
 * its ready line, so the parent never races the bind. Returns the pid with
 * *addr set, or -1 with *err (the child reaped). */
pid_t ForkServer(const std::function<int(const ReadyFn &ready)> &serve,
                 std::string *addr, std::string *err);

/* CPU clock ticks (utime + stime, every thread) a process has used. */
uint64_t ProcTicks(pid_t pid);
/* A process's resident and proportional set sizes in KiB
 * (/proc/PID/smaps_rollup); false if it cannot be read. */
bool ProcMemoryKb(pid_t pid, uint64_t *rss_kb, uint64_t *pss_kb);

/* ---- payloads ---- */

/* A buffer of len bytes with a recognisable pattern. */
std::vector<unsigned char> MakePayload(size_t len);
/* Checks a reply against the request cheaply (length, first and last
 * byte), so that no benchmark can "win" by not delivering the bytes. */
bool ReplyMatches(const void *req, size_t len, const void *resp,
                  size_t resp_len);

/* Reads every byte of a reply (a sum of its 8-byte words), as a client
 * that uses the reply would: the copy out of the transport is counted. */
uint64_t ReadAll(const void *p, size_t len);

/* Payload sizes every latency suite uses. */
extern const std::vector<int64_t> kSizes;

/* Full write/read of a stream fd, retrying on EINTR and short counts.
 * Return 0, or -1 with errno set (0 on EOF for ReadFull). */
int WriteFull(int fd, const void *p, size_t len);
int ReadFull(int fd, void *p, size_t len);

} // namespace bench

#endif

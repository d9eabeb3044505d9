/* harness.cc — clocks, percentiles, CPU accounting, helper processes and
 * option parsing shared by the benchmark suites (see harness.h). */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>

namespace bench {

Options g_opts;

const std::vector<int64_t> kSizes = {16,       64,      256,     4 << 10,
                                     64 << 10, 1 << 20, 16 << 20};

/* ---- options ---- */

static bool harness_int_flag(const char *arg, const char *name, int *out) {
  size_t n = strlen(name);
  if (strncmp(arg, name, n) != 0 || arg[n] != '=')
    return false;
  char *end = nullptr;
  long v = strtol(arg + n + 1, &end, 10);
  if (*end != '\0' || v < 0 || v > 3600 * 1000) {
    fprintf(stderr, "bad value in %s\n", arg);
    exit(2);
  }
  *out = (int)v;
  return true;
}

void ParseOptions(int *argc, char **argv) {
  int out = 1;
  for (int i = 1; i < *argc; i++) {
    if (harness_int_flag(argv[i], "--warmup_ms", &g_opts.warmup_ms) ||
        harness_int_flag(argv[i], "--duration_ms", &g_opts.duration_ms) ||
        harness_int_flag(argv[i], "--watchdog_s", &g_opts.watchdog_s) ||
        harness_int_flag(argv[i], "--idle_ms", &g_opts.idle_ms))
      continue;
    argv[out++] = argv[i];
  }
  *argc = out;
  if (*argc > 1) {
    fprintf(stderr,
            "unknown argument %s\n"
            "suite options: --warmup_ms=N (calls before timing, default 20)\n"
            "               --duration_ms=N (throughput window, default 1000)\n"
            "               --watchdog_s=N (kill a run stuck this long, "
            "default 120)\n"
            "               --idle_ms=N (idle-cost window, default 5000)\n"
            "plus Google Benchmark's --benchmark_* flags\n",
            argv[1]);
    exit(2);
  }
}

/* ---- runtime directory ---- */

static std::string g_runtime_dir;

static int harness_rm_entry(const char *path, const struct stat *, int,
                            struct FTW *) {
  remove(path);
  return 0;
}

static void harness_rm_runtime_dir() {
  /* Only the process that made it removes it, never a forked child. */
  static const pid_t owner = getpid();
  if (getpid() == owner && !g_runtime_dir.empty())
    nftw(g_runtime_dir.c_str(), harness_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

void SetUpRuntimeDir() {
  const char *tmp = getenv("TMPDIR");
  std::string tmpl =
      std::string(tmp && *tmp ? tmp : "/tmp") + "/svc-bench-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (!mkdtemp(buf.data())) {
    perror("mkdtemp");
    exit(1);
  }
  /* Pins the owner pid while there is nothing to remove yet (called after
   * g_runtime_dir is set, it removed the directory it had just made, and
   * unix:// rows that ran before any shm:// row found no directory). */
  harness_rm_runtime_dir();
  g_runtime_dir = buf.data();
  setenv("SVC_RUNTIME_DIR", g_runtime_dir.c_str(), 1);
  atexit(harness_rm_runtime_dir);
}

const std::string &RuntimeDir() { return g_runtime_dir; }

std::string UniqueName(const char *prefix) {
  static unsigned counter;
  return std::string(prefix) + "-" + std::to_string(getpid()) + "-" +
         std::to_string(counter++);
}

/* ---- CPU time ---- */

static uint64_t harness_clock_ns(clockid_t clk) {
  struct timespec ts;
  if (clock_gettime(clk, &ts) != 0)
    return 0;
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t ThreadCpuNs() { return harness_clock_ns(CLOCK_THREAD_CPUTIME_ID); }
uint64_t ProcessCpuNs() { return harness_clock_ns(CLOCK_PROCESS_CPUTIME_ID); }

/* utime + stime from /proc/PID/stat, fields 14 and 15, counted after the
 * last ')' because the command name may hold spaces and parentheses. */
uint64_t ProcTicks(pid_t pid) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return 0;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0)
    return 0;
  buf[n] = '\0';
  char *p = strrchr(buf, ')');
  if (!p)
    return 0;
  unsigned long long ut = 0, st = 0;
  /* after ')': state(3) ppid pgrp session tty tpgid flags minflt cminflt
   * majflt cmajflt utime(14) stime(15) */
  if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
             &ut, &st) != 2)
    return 0;
  return ut + st;
}

static uint64_t harness_proc_stat_ns(pid_t pid) {
  return ProcTicks(pid) * (1000000000ull / (uint64_t)sysconf(_SC_CLK_TCK));
}

bool ProcMemoryKb(pid_t pid, uint64_t *rss_kb, uint64_t *pss_kb) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%d/smaps_rollup", (int)pid);
  FILE *f = fopen(path, "re");
  if (!f)
    return false;
  int found = 0;
  unsigned long long v;
  while (fgets(line, sizeof line, f)) {
    if (sscanf(line, "Rss: %llu kB", &v) == 1) {
      *rss_kb = v;
      found |= 1;
    } else if (sscanf(line, "Pss: %llu kB", &v) == 1) {
      *pss_kb = v;
      found |= 2;
    }
  }
  fclose(f);
  return found == 3;
}

uint64_t PeerCpuNs(pid_t pid) {
  clockid_t clk;
  if (clock_getcpuclockid(pid, &clk) == 0) {
    struct timespec ts;
    if (clock_gettime(clk, &ts) == 0)
      return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
  }
  return harness_proc_stat_ns(pid);
}

/* ---- reporting ---- */

void Latency::Report(benchmark::State &state) {
  if (ns_.empty())
    return;
  std::sort(ns_.begin(), ns_.end());
  double sum = 0;
  for (uint64_t v : ns_)
    sum += (double)v;
  auto pct = [&](double p) {
    size_t i = (size_t)(p * (double)(ns_.size() - 1) + 0.5);
    return (double)ns_[i] / 1e3;
  };
  state.counters["mean_us"] = sum / (double)ns_.size() / 1e3;
  state.counters["p50_us"] = pct(0.50);
  state.counters["p99_us"] = pct(0.99);
  state.counters["max_us"] = (double)ns_.back() / 1e3;
}

void ReportCpu(benchmark::State &state, uint64_t client_ns, uint64_t server_ns,
               uint64_t wall_ns, uint64_t calls) {
  if (calls == 0 || wall_ns == 0)
    return;
  state.counters["cpu_us_per_call"] =
      (double)(client_ns + server_ns) / (double)calls / 1e3;
  state.counters["client_cpu_us"] = (double)client_ns / (double)calls / 1e3;
  state.counters["server_cpu_us"] = (double)server_ns / (double)calls / 1e3;
  state.counters["cores_busy"] =
      (double)(client_ns + server_ns) / (double)wall_ns;
}

/* ---- helper processes ---- */

pid_t ForkChild(const std::function<int()> &fn) {
  fflush(stdout);
  fflush(stderr);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid != 0)
    return pid; /* parent, or -1 */
  /* The child must never return into Google Benchmark's loop, nor run the
   * parent's atexit handlers (which would remove the runtime directory). */
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
    _exit(1);
  signal(SIGALRM, SIG_DFL);
  signal(SIGPIPE, SIG_IGN);
  int rc = fn();
  fflush(stdout);
  fflush(stderr);
  _exit(rc);
}

static char g_watch_msg[256];

static void harness_on_alarm(int) {
  /* async-signal-safe: write and _exit only */
  ssize_t n = write(2, g_watch_msg, strlen(g_watch_msg));
  (void)n;
  _exit(3);
}

Watchdog::Watchdog(const std::string &what, unsigned seconds) {
  snprintf(g_watch_msg, sizeof g_watch_msg,
           "\nwatchdog: %s took over %u s (a lost wake-up or a hung peer?); "
           "giving up\n",
           what.c_str(), seconds);
  signal(SIGALRM, harness_on_alarm);
  alarm(seconds);
}

Watchdog::~Watchdog() { alarm(0); }

void StopChild(pid_t pid, int sig, int grace_ms) {
  if (pid <= 0)
    return;
  kill(pid, sig);
  for (int waited = 0; sig != SIGKILL && waited < grace_ms; waited++) {
    pid_t r = waitpid(pid, nullptr, WNOHANG);
    if (r == pid || (r < 0 && errno == ECHILD))
      return;
    usleep(1000);
  }
  kill(pid, SIGKILL);
  while (waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
  }
}

/* One line from fd, waiting at most timeout_ms in total; "" on EOF. */
static std::string harness_read_line(int fd, int timeout_ms) {
  std::string line;
  uint64_t deadline = NowNs() + (uint64_t)timeout_ms * 1000000;
  char ch;
  while (NowNs() < deadline) {
    struct pollfd p = {fd, POLLIN, 0};
    int left = (int)((deadline - NowNs()) / 1000000) + 1;
    if (poll(&p, 1, left) <= 0)
      continue;
    ssize_t n = read(fd, &ch, 1);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0 || ch == '\n')
      break;
    line += ch;
  }
  return line;
}

pid_t ForkServer(const std::function<int(const ReadyFn &ready)> &serve,
                 std::string *addr, std::string *err) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    *err = std::string("pipe2: ") + strerror(errno);
    return -1;
  }
  pid_t pid = ForkChild([&] {
    close(fds[0]);
    int fd = fds[1];
    ReadyFn ready = [&fd](const std::string &line) {
      if (fd < 0)
        return;
      std::string l = line + "\n";
      WriteFull(fd, l.data(), l.size());
      close(fd);
      fd = -1;
    };
    int rc = serve(ready);
    ready("ERR the server returned before it listened");
    return rc;
  });
  close(fds[1]);
  std::string line = pid < 0 ? "" : harness_read_line(fds[0], 10000);
  close(fds[0]);
  if (pid < 0 || line.compare(0, 3, "OK ") != 0) {
    *err = pid < 0           ? std::string("fork: ") + strerror(errno)
           : line.empty()    ? "server child exited before it listened"
           : line.size() > 4 ? line.substr(4)
                             : line;
    StopChild(pid, SIGKILL, 0);
    return -1;
  }
  *addr = line.substr(3);
  return pid;
}

/* ---- payloads and streams ---- */

std::vector<unsigned char> MakePayload(size_t len) {
  std::vector<unsigned char> v(len);
  for (size_t i = 0; i < len; i++)
    v[i] = (unsigned char)(i * 131 + 7);
  return v;
}

bool ReplyMatches(const void *req, size_t len, const void *resp,
                  size_t resp_len) {
  if (resp_len != len)
    return false;
  if (len == 0)
    return true;
  const unsigned char *a = (const unsigned char *)req;
  const unsigned char *b = (const unsigned char *)resp;
  return a[0] == b[0] && a[len - 1] == b[len - 1] && a[len / 2] == b[len / 2];
}

uint64_t ReadAll(const void *p, size_t len) {
  const unsigned char *b = (const unsigned char *)p;
  uint64_t sum = 0, w;
  size_t i = 0;
  for (; i + sizeof w <= len; i += sizeof w) {
    memcpy(&w, b + i, sizeof w);
    sum += w;
  }
  for (; i < len; i++)
    sum += b[i];
  return sum;
}

int WriteFull(int fd, const void *p, size_t len) {
  const char *c = (const char *)p;
  while (len > 0) {
    ssize_t n = write(fd, c, len);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    c += n;
    len -= (size_t)n;
  }
  return 0;
}

int ReadFull(int fd, void *p, size_t len) {
  char *c = (char *)p;
  while (len > 0) {
    ssize_t n = read(fd, c, len);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    if (n == 0) {
      errno = 0;
      return -1;
    }
    c += n;
    len -= (size_t)n;
  }
  return 0;
}

uint64_t TreeCpuNs(pid_t pid) {
  uint64_t total = PeerCpuNs(pid);
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)pid, (int)pid);
  FILE *f = fopen(path, "re");
  if (!f)
    return total;
  int kid;
  while (fscanf(f, "%d", &kid) == 1)
    total += PeerCpuNs((pid_t)kid);
  fclose(f);
  return total;
}

} // namespace bench

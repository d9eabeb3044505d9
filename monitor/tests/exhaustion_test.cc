// exhaustion_test.cc — issue 17's resource exhaustion against the real
// svc-monitor binary (the production build, no fault injection): the
// metrics store on a full disk (a small tmpfs this test mounts; skipped
// where mount is refused), and a service printing 100 MB/s to stdout.
#include <sys/mount.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <vector>

#include "monitor_fixture.h"

namespace {

// The monitor's /api/monitor answer, by field.
struct MonitorInfo {
  std::string all, store;
  bool ok() const { return field(store, "ok") == "true"; }
  std::string error() const { return field(store, "error"); }
  int64_t since_ms() const { return (int64_t)num(field(store, "since_ms")); }
};

class Exhaustion : public Monitor {
protected:
  fs::path mnt, db;
  bool mounted = false;

  void TearDown() override {
    // detached at once, even while the monitor still holds its files (it
    // is killed next), so that the directory can be removed
    if (mounted)
      umount2(mnt.c_str(), MNT_DETACH);
    Monitor::TearDown();
  }
  // dir/full as a tmpfs of `size`; false (with the reason) if refused.
  bool mount_small_disk(const char *size, std::string *why) {
    mnt = dir / "full";
    fs::create_directories(mnt);
    std::string opts = std::string("size=") + size + ",mode=0700";
    if (mount("tmpfs", mnt.c_str(), "tmpfs", 0, opts.c_str()) != 0) {
      *why = std::string("mount -t tmpfs refused: ") + strerror(errno);
      return false;
    }
    mounted = true;
    return true;
  }
  MonitorInfo info() {
    MonitorInfo m;
    m.all = http(port, "GET", "/api/monitor");
    size_t p = m.all.find("\"store\":{");
    if (p != std::string::npos)
      m.store = m.all.substr(p + 8, m.all.find('}', p) - p - 7);
    return m;
  }
  // Fills the file system of `path` with one file: its size.
  static int64_t fill(const fs::path &path) {
    int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
      return -1;
    static char block[65536];
    int64_t total = 0;
    for (;;) {
      ssize_t w = write(fd, block, sizeof block);
      if (w <= 0)
        break;
      total += w;
    }
    close(fd);
    return total;
  }
  // Raw samples of service steady in the database at db.
  int64_t samples() {
    return sql_value(db, "SELECT count(*) FROM samples s JOIN services v"
                         " ON v.id = s.service_id WHERE v.name = 'steady'");
  }
};

// A real ENOSPC under the store: supervision goes on, /api/monitor and the
// dashboard say so, and writing resumes by itself once space returns.
TEST_F(Exhaustion, StoreOnAFullDiskRecoversWhenSpaceReturns) {
  std::string why;
  if (!mount_small_disk("4m", &why))
    GTEST_SKIP() << why;
  db = mnt / "m.sqlite";
  write_config("[service.steady]\ncommand = /bin/sleep 600\n"
               "start_secs = 0\n"
               "[service.chatty]\n" // grows the store: log rows
               "command = /bin/sh -c 'while :; do echo "
               "chatty-line-0123456789abcdefghijklmnopqrstuvwxyz; "
               "sleep 0.005; done'\nstart_secs = 0\n"
               "[service.crashy]\n" // restarted all along
               "command = /bin/sh -c 'sleep 0.3; exit 3'\n"
               "start_secs = 0\nrestart = always\nstart_retries = -1\n"
               "backoff_ms = 100\nbackoff_max_ms = 200\n",
               db);
  ASSERT_NO_FATAL_FAILURE(start(true));
  ASSERT_TRUE(eventually([&] { return samples() > 3; }, 30));
  EXPECT_TRUE(info().ok()) << info().all;

  int64_t before_fill = samples();
  ASSERT_GT(fill(mnt / "junk"), 0);
  int64_t full_at = wall_ms();
  // the store notices on its next transaction that grows the file
  ASSERT_TRUE(eventually([&] { return !info().ok(); }, 60)) << info().all;
  MonitorInfo m = info();
  EXPECT_NE(m.error().find("full"), std::string::npos) << m.all;
  EXPECT_GE(m.since_ms(), full_at - 1000) << m.all;
  EXPECT_LE(m.since_ms(), wall_ms()) << m.all;
  std::string page = http(port, "GET", "/");
  EXPECT_NE(page.find("id=\"store-banner\""), std::string::npos);
  EXPECT_NE(page.find("database or disk is full"), std::string::npos);

  // supervision goes on: crashy keeps being restarted, steady keeps its pid
  int restarts = (int)num(field(svc("crashy"), "restarts"));
  std::string steady_pid = field(svc("steady"), "pid");
  ASSERT_TRUE(eventually(
      [&] { return num(field(svc("crashy"), "restarts")) >= restarts + 3; },
      30));
  EXPECT_EQ(field(svc("steady"), "pid"), steady_pid);
  EXPECT_EQ(field(svc("steady"), "state"), "RUNNING");
  int64_t while_full = samples();
  EXPECT_LE(while_full - before_fill, 60) << "samples kept being written";

  fs::remove(mnt / "junk");
  ASSERT_TRUE(eventually([&] { return info().ok(); }, 30)) << info().all;
  EXPECT_EQ(info().error(), "null");
  EXPECT_EQ(info().since_ms(), -1); // null
  ASSERT_TRUE(eventually([&] { return samples() > while_full + 5; }, 30))
      << "no samples written after space returned";
  page = http(port, "GET", "/");
  EXPECT_EQ(page.find("id=\"store-banner\""), std::string::npos);
  EXPECT_EQ(stop_monitor(), 0);
  std::string err = stderr_text();
  EXPECT_NE(err.find("database or disk is full"), std::string::npos) << err;
  EXPECT_NE(err.find("store: writing again"), std::string::npos) << err;
}

// What the monitor process holds, from /proc: VmRSS and Pss, in KiB.
struct Memory {
  long rss_kb = -1, pss_kb = -1;
};

long proc_kb(const std::string &file, const std::string &key) {
  std::ifstream f(file);
  std::string line;
  while (std::getline(f, line))
    if (line.compare(0, key.size(), key) == 0)
      return std::atol(line.c_str() + key.size());
  return -1;
}

Memory memory_of(int pid) {
  std::string base = "/proc/" + std::to_string(pid);
  return {proc_kb(base + "/status", "VmRSS:"),
          proc_kb(base + "/smaps_rollup", "Pss:")};
}

long long wchar_of(int pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/io");
  std::string key;
  long long v;
  while (f >> key >> v)
    if (key == "wchar:")
      return v;
  return -1;
}

// HTTP latencies and memory over one phase of the flood test.
struct Phase {
  std::vector<double> ms;
  long rss_max_kb = 0, pss_max_kb = 0;
  int bad = 0; // answers other than 200
  double p50() const { return quantile(0.5); }
  double max() const { return quantile(1); }
  double quantile(double q) const {
    std::vector<double> v = ms;
    std::sort(v.begin(), v.end());
    return v.empty() ? -1 : v[(size_t)(q * (double)(v.size() - 1))];
  }
};

// CPU seconds pid used so far (utime + stime).
double cpu_of(int pid) {
  ProcStat st;
  if (!read_proc_stat(pid, &st))
    return -1;
  return (double)(st.utime + st.stime) / (double)sysconf(_SC_CLK_TCK);
}

class Flood : public Monitor {
protected:
  // Requests the dashboard, the JSON API and /metrics in turn for `secs`
  // seconds, and samples the monitor's memory between them.
  void measure(Phase *p, int secs) {
    static const char *const paths[] = {"/api/services", "/", "/api/monitor",
                                        "/metrics",
                                        "/api/services/flood/logs?tail=50"};
    auto end = std::chrono::steady_clock::now() + std::chrono::seconds(secs);
    for (size_t k = 0; std::chrono::steady_clock::now() < end; k++) {
      auto t0 = std::chrono::steady_clock::now();
      std::string r = http(port, "GET", paths[k % 5]);
      p->ms.push_back(std::chrono::duration<double, std::milli>(
                          std::chrono::steady_clock::now() - t0)
                          .count());
      if (r.compare(0, 12, "HTTP/1.1 200") != 0)
        p->bad++;
      Memory m = memory_of(mon);
      p->rss_max_kb = std::max(p->rss_max_kb, m.rss_kb);
      p->pss_max_kb = std::max(p->pss_max_kb, m.pss_kb);
      std::this_thread::sleep_for(50ms);
    }
  }
};

// A service printing 100 MB/s to stdout: the monitor's memory stays put
// (its buffers are bounded; a writer faster than it reads waits on the
// pipe) and its HTTP answers stay quick.
TEST_F(Flood, AServicePrinting100MBPerSecondLeavesTheMonitorBoundedAndQuick) {
#if defined(__SANITIZE_ADDRESS__)
  // ASan keeps freed memory in a quarantine (256 MiB by default), which
  // would count as growth
  std::string asan = getenv("ASAN_OPTIONS") ? getenv("ASAN_OPTIONS") : "";
  setenv("ASAN_OPTIONS", (asan + ":quarantine_size_mb=16").c_str(), 1);
#endif
  write_config("[service.idle]\ncommand = /bin/sleep 600\nstart_secs = 0\n"
               "[service.flood]\ncommand = " MON_FLOOD " 100 200\n"
               "autostart = false\nstart_secs = 0\n"
               "log_max_bytes = 16777216\nlog_backups = 1\n");
  ASSERT_NO_FATAL_FAILURE(start());
  ASSERT_TRUE(
      eventually([&] { return field(svc("idle"), "state") == "RUNNING"; }));
  std::this_thread::sleep_for(1s); // the first samples and pages
  Phase idle, flood, after;
  measure(&idle, 5);
  std::string auth = "Authorization: Bearer " + token() + "\r\n";
  ASSERT_NE(http(port, "POST", "/api/services/flood/start", auth).find(" 202 "),
            std::string::npos);
  ASSERT_TRUE(
      eventually([&] { return field(svc("flood"), "state") == "RUNNING"; }));
  int fpid = (int)num(field(svc("flood"), "pid"));
  // two open dashboards tailing the flood: one reads, one never does (the
  // hub drops it once its buffer is full, instead of holding more)
  std::atomic<bool> tailing{true};
  std::atomic<long long> tailed{0};
  int reader =
      open_stream(port, "/api/services/flood/logs/stream?stream=stdout");
  int stuck =
      open_stream(port, "/api/services/flood/logs/stream?stream=stdout");
  ASSERT_GE(reader, 0);
  ASSERT_GE(stuck, 0);
  std::thread tail([&] {
    char buf[65536];
    while (tailing) {
      pollfd q = {reader, POLLIN, 0};
      if (poll(&q, 1, 100) <= 0)
        continue;
      ssize_t n = read(reader, buf, sizeof buf);
      if (n <= 0)
        break;
      tailed += n;
    }
  });
  long long w0 = wchar_of(fpid);
  double cpu0 = cpu_of(mon);
  auto t0 = std::chrono::steady_clock::now();
  measure(&flood, 10);
  long long w1 = wchar_of(fpid);
  double cpu = cpu_of(mon) - cpu0;
  double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
          .count();
  ASSERT_NE(http(port, "POST", "/api/services/flood/stop", auth).find(" 202 "),
            std::string::npos);
  measure(&after, 2);
  tailing = false;
  tail.join();
  close(reader);
  close(stuck);
  double mbps = (double)(w1 - w0) / secs / 1e6;
  long growth_kb =
      std::max(flood.rss_max_kb, after.rss_max_kb) - idle.rss_max_kb;
  printf("flood: %.1f MB/s printed for %.1f s (the service's wchar); the "
         "monitor used %.0f%% of a core\n",
         mbps, secs, 100 * cpu / secs);
  printf("monitor RSS: idle max %ld KiB, flood max %ld KiB, after %ld KiB: "
         "growth %ld KiB; PSS idle %ld, flood %ld KiB\n",
         idle.rss_max_kb, flood.rss_max_kb, after.rss_max_kb, growth_kb,
         idle.pss_max_kb, flood.pss_max_kb);
  printf("a dashboard tailing the flood got %.1f MB\n", (double)tailed / 1e6);
  printf("HTTP idle: p50 %.1f ms, max %.1f ms (%zu requests); flood: p50 "
         "%.1f ms, max %.1f ms (%zu requests)\n",
         idle.p50(), idle.max(), idle.ms.size(), flood.p50(), flood.max(),
         flood.ms.size());
  EXPECT_GT(mbps, 5) << "the service did not flood";
  EXPECT_GT(tailed, 0) << "the live tail showed nothing";
  EXPECT_LT(growth_kb, 64 * 1024) << "the monitor's memory grew";
  EXPECT_EQ(flood.bad + idle.bad + after.bad, 0);
  EXPECT_LT(flood.p50(), 250);
  EXPECT_LT(flood.max(), 3000);
  // the flood went to the files (rotated at 16 MiB) and, a bounded share
  // of it, to the store
  EXPECT_LE(fs::file_size(dir / "logs" / "flood.stdout.log"), 17u << 20);
  EXPECT_EQ(stop_monitor(), 0);
}

} // namespace

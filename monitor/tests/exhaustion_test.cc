// exhaustion_test.cc — issue 17's resource exhaustion against the real
// svc-monitor binary (the production build, no fault injection): the
// metrics store on a full disk (a small tmpfs this test mounts; skipped
// where mount is refused), and a service printing 100 MB/s to stdout.
#include <sys/mount.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include "monitor_fixture.h"

namespace {

inline int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

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
  // Like write_config, with the database at db.
  void write_config_db(const std::string &services) {
    std::ofstream(dir / "m.ini")
        << "[monitor]\nhttp = 127.0.0.1:0\ndb = " << db.string()
        << "\nlog_dir = " << (dir / "logs").string()
        << "\ntoken_file = " << (dir / "token").string()
        << "\nsample_interval_ms = 200\n\n"
        << services;
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
    sqlite3 *h;
    int64_t v = -1;
    if (sqlite3_open_v2(db.c_str(), &h, SQLITE_OPEN_READONLY, nullptr) ==
        SQLITE_OK) {
      sqlite3_busy_timeout(h, 5000);
      sqlite3_stmt *st;
      if (sqlite3_prepare_v2(h,
                             "SELECT count(*) FROM samples s JOIN services v"
                             " ON v.id = s.service_id WHERE v.name = 'steady'",
                             -1, &st, nullptr) == SQLITE_OK &&
          sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
      sqlite3_finalize(st);
    }
    sqlite3_close(h);
    return v;
  }
};

// A real ENOSPC under the store: supervision goes on, /api/monitor and the
// dashboard say so, and writing resumes by itself once space returns.
TEST_F(Exhaustion, StoreOnAFullDiskRecoversWhenSpaceReturns) {
  std::string why;
  if (!mount_small_disk("4m", &why))
    GTEST_SKIP() << why;
  db = mnt / "m.sqlite";
  write_config_db("[service.steady]\ncommand = /bin/sleep 600\n"
                  "start_secs = 0\n"
                  "[service.chatty]\n" // grows the store: log rows
                  "command = /bin/sh -c 'while :; do echo "
                  "chatty-line-0123456789abcdefghijklmnopqrstuvwxyz; "
                  "sleep 0.005; done'\nstart_secs = 0\n"
                  "[service.crashy]\n" // restarted all along
                  "command = /bin/sh -c 'sleep 0.3; exit 3'\n"
                  "start_secs = 0\nrestart = always\nstart_retries = -1\n"
                  "backoff_ms = 100\nbackoff_max_ms = 200\n");
  start(true);
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

} // namespace

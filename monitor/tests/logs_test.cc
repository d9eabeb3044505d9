// logs_test.cc — line splitting, monitor notes, size rotation, and that a
// full pipe never blocks the reader.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "config.h"
#include "logs.h"

namespace fs = std::filesystem;

namespace {

class Logs : public ::testing::Test {
protected:
  fs::path dir;
  mon_config cfg{};
  mon_logs logs{};
  void SetUp() override {
    dir = fs::temp_directory_path() /
          ("svcmon-logs-" + std::to_string(getpid()) + "-" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir);
  }
  void start(const std::string &extra) {
    std::string ini = "[monitor]\nlog_dir = " + dir.string() +
                      "/sub\n[service.a]\ncommand = x\n" + extra;
    char err[256];
    ASSERT_EQ(mon_config_parse(ini.data(), ini.size(), "t", false, &cfg, err,
                               sizeof err),
              0)
        << err;
    ASSERT_EQ(mon_logs_init(&logs, &cfg, err, sizeof err), 0) << err;
  }
  void TearDown() override {
    mon_logs_fini(&logs);
    mon_config_fini(&cfg);
    fs::remove_all(dir);
  }
  std::string file(const std::string &name) {
    std::ifstream f(dir / "sub" / name);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  }
};

TEST_F(Logs, LinesFromPipeToFileAndPending) {
  start("");
  int w = mon_logs_pipe(&logs, 0, MON_STDERR);
  ASSERT_GE(w, 0);
  EXPECT_TRUE(fcntl(w, F_GETFD) & FD_CLOEXEC);
  ASSERT_EQ(write(w, "one\ntw", 6), 6);
  mon_logs_read(&logs, 1, 1000);
  ASSERT_EQ(logs.npending, 1u);
  EXPECT_STREQ(logs.pending[0].line, "one");
  EXPECT_EQ(logs.pending[0].stream, MON_STDERR);
  ASSERT_EQ(write(w, "o\n<x>", 5), 5);
  close(w);
  mon_logs_read(&logs, 1, 2000); // reads, then EOF flushes "<x>"
  ASSERT_EQ(logs.npending, 3u);
  EXPECT_STREQ(logs.pending[1].line, "two");
  EXPECT_STREQ(logs.pending[2].line, "<x>");
  EXPECT_EQ(logs.streams[1].fd, -1);
  mon_logs_note(&logs, 0, 3000, "spawned pid 5");
  EXPECT_EQ(file("a.stderr.log"), "one\ntwo\n<x>\n");
  EXPECT_EQ(file("a.stdout.log"), "svc-monitor: spawned pid 5\n");
  mon_logs_clear_pending(&logs);
  EXPECT_EQ(logs.npending, 0u);
}

TEST_F(Logs, RotatesBySize) {
  start("log_max_bytes = 100\nlog_backups = 2\n");
  int w = mon_logs_pipe(&logs, 0, MON_STDOUT);
  std::string line(39, 'x');
  line += "\n"; // 40 bytes
  for (int i = 0; i < 10; i++) {
    ASSERT_EQ(write(w, line.data(), line.size()), 40);
    mon_logs_read(&logs, 0, 1000);
  }
  close(w);
  EXPECT_LE(fs::file_size(dir / "sub" / "a.stdout.log"), 100u);
  EXPECT_TRUE(fs::exists(dir / "sub" / "a.stdout.log.1"));
  EXPECT_TRUE(fs::exists(dir / "sub" / "a.stdout.log.2"));
  EXPECT_FALSE(fs::exists(dir / "sub" / "a.stdout.log.3"));
}

TEST_F(Logs, TimestampsAndLongLines) {
  start("timestamps = true\n");
  int w = mon_logs_pipe(&logs, 0, MON_STDOUT);
  std::string big(MON_LOG_LINE_MAX + 10, 'y');
  big += "\n";
  ASSERT_EQ(write(w, big.data(), big.size()), (ssize_t)big.size());
  close(w);
  mon_logs_read(&logs, 0, 1700000000123LL);
  ASSERT_EQ(logs.npending, 2u); // split, not lost
  EXPECT_EQ(logs.pending[0].len, (size_t)MON_LOG_LINE_MAX);
  EXPECT_EQ(logs.pending[1].len, 10u);
  EXPECT_EQ(file("a.stdout.log").rfind("2023-11-14T22:13:20.123Z yyy", 0), 0u);
}

TEST_F(Logs, FloodIsCappedForTheDatabaseNotTheFile) {
  start("");
  int w = mon_logs_pipe(&logs, 0, MON_STDOUT);
  std::string many;
  for (int i = 0; i < MON_LOG_TICK_MAX + 100; i++)
    many += "x\n";
  ASSERT_EQ(write(w, many.data(), many.size()), (ssize_t)many.size());
  close(w);
  mon_logs_read(&logs, 0, 1000);
  EXPECT_EQ(logs.npending, (size_t)MON_LOG_TICK_MAX);
  EXPECT_EQ(file("a.stdout.log").size(), many.size());
  mon_logs_clear_pending(&logs); // the next tick learns what was left out
  ASSERT_EQ(logs.npending, 1u);
  EXPECT_STREQ(logs.pending[0].line,
               "svc-monitor: 100 more lines are only in the log file");
}

TEST_F(Logs, ReadNeverBlocks) {
  start("");
  int w = mon_logs_pipe(&logs, 0, MON_STDOUT);
  mon_logs_read(&logs, 0, 1); // nothing there: returns at once
  EXPECT_EQ(logs.npending, 0u);
  EXPECT_GE(logs.streams[0].fd, 0);
  close(w);
}

} // namespace

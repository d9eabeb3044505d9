// monitor_fixture.h — what the tests that run the real svc-monitor binary
// share: a temporary directory and config, starting and stopping the
// monitor, its services' JSON and SQL on its database, and the control
// commands (HTTP, JSON and /proc helpers: test_util.h). Waits poll with
// generous deadlines: the machine is loaded.
#ifndef MON_TESTS_MONITOR_FIXTURE_H
#define MON_TESTS_MONITOR_FIXTURE_H

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>

#include "loopback_http.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

inline double num(const std::string &s) {
  return s.empty() || s == "null" ? -1 : std::stod(s);
}

inline bool eventually(const std::function<bool()> &cond, int seconds = 60) {
  auto end = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  while (std::chrono::steady_clock::now() < end) {
    if (cond())
      return true;
    std::this_thread::sleep_for(100ms);
  }
  return cond();
}

inline bool alive(int pid) {
  ProcStat st;
  return read_proc_stat(pid, &st) && st.state != "Z";
}

class Monitor : public ::testing::Test {
protected:
  fs::path dir;
  pid_t mon = -1;
  int port = 0;
  int out_fd = -1;

  void SetUp() override {
    dir = fs::temp_directory_path() /
          ("svcmon-it-" + std::to_string(getpid()) + "-" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  void TearDown() override {
    if (mon > 0) { // a test failed midway: leave no service behind either
      kill(mon, SIGKILL);
      waitpid(mon, nullptr, 0);
      std::ifstream pids(dir / "logs" / "svc-monitor.pids");
      std::string name;
      int pid;
      unsigned long long start;
      while (pids >> name >> pid >> start)
        if (pid > 1)
          kill(-pid, SIGKILL);
    }
    if (out_fd >= 0)
      close(out_fd);
    fs::remove_all(dir);
  }
  // db: where the store goes if not dir/m.sqlite.
  void write_config(const std::string &services, const fs::path &db = {}) {
    std::ofstream(dir / "m.ini")
        << "[monitor]\nhttp = 127.0.0.1:0\ndb = "
        << (db.empty() ? dir / "m.sqlite" : db).string()
        << "\nlog_dir = " << (dir / "logs").string()
        << "\ntoken_file = " << (dir / "token").string()
        << "\nsample_interval_ms = 200\n\n"
        << services;
  }
  // Starts the monitor and reads the port from its first line; its stderr
  // goes to dir/stderr when capture_stderr.
  void start(bool capture_stderr = false) {
    int p[2];
    ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
    mon = fork();
    ASSERT_GE(mon, 0);
    if (mon == 0) {
      dup2(p[1], 1);
      if (capture_stderr) {
        int e = open((dir / "stderr").c_str(),
                     O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (e >= 0)
          dup2(e, 2);
      }
      execl(MON_BINARY, "svc-monitor", "--config", (dir / "m.ini").c_str(),
            (char *)nullptr);
      _exit(127);
    }
    close(p[1]);
    out_fd = p[0];
    std::string line;
    char c;
    while (read(out_fd, &c, 1) == 1 && c != '\n')
      line += c;
    size_t at = line.find("127.0.0.1:");
    ASSERT_NE(at, std::string::npos) << line;
    port = std::stoi(line.substr(at + 10));
  }
  std::string stderr_text() {
    std::ifstream f(dir / "stderr");
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  }
  std::string token() {
    std::ifstream f(dir / "token");
    std::string t;
    std::getline(f, t);
    return t;
  }
  std::string services() { return http(port, "GET", "/api/services"); }
  std::string svc(const std::string &name) {
    return object_of(services(), name);
  }
  int64_t sql(const std::string &q) { return sql_value(dir / "m.sqlite", q); }
  int stop_monitor() {
    kill(mon, SIGTERM);
    int status = -1;
    bool done =
        eventually([&] { return waitpid(mon, &status, WNOHANG) == mon; }, 60);
    mon = -1;
    return done ? status : -1;
  }
};

struct CliRun {
  int code;
  std::string out;
};

inline CliRun run_cli(const std::string &args) {
  std::string cmd = std::string(MON_BINARY) + " " + args + " 2>&1";
  FILE *f = popen(cmd.c_str(), "r");
  CliRun r{-1, ""};
  if (!f)
    return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0)
    r.out.append(buf, n);
  int st = pclose(f);
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

} // namespace

#endif

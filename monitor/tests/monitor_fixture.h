// monitor_fixture.h — what the tests that run the real svc-monitor binary
// share: a temporary directory and config, starting and stopping the
// monitor, HTTP requests, the JSON API's fields, SQL on its database, and
// the control commands. Waits poll with generous deadlines: the machine is
// loaded.
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

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

inline std::string http(int port, const std::string &method,
                        const std::string &path,
                        const std::string &extra = "") {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)port);
  inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  std::string all;
  if (connect(fd, (sockaddr *)&sa, sizeof sa) == 0) {
    std::string q = method + " " + path +
                    " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) +
                    "\r\nConnection: close\r\n" + extra + "\r\n";
    if (write(fd, q.data(), q.size()) == (ssize_t)q.size()) {
      char buf[65536];
      ssize_t n;
      while ((n = read(fd, buf, sizeof buf)) > 0)
        all.append(buf, (size_t)n);
    }
  }
  close(fd);
  return all;
}

// The JSON object of service `name` in /api/services output.
inline std::string object_of(const std::string &json, const std::string &name) {
  size_t p = json.find("{\"name\":\"" + name + "\"");
  if (p == std::string::npos)
    return "";
  return json.substr(p, json.find('}', p) - p + 1);
}

inline std::string field(const std::string &obj, const std::string &key) {
  size_t p = obj.find("\"" + key + "\":");
  if (p == std::string::npos)
    return "";
  p += key.size() + 3;
  size_t e = obj.find_first_of(",}", p);
  std::string v = obj.substr(p, e - p);
  if (!v.empty() && v[0] == '"')
    v = v.substr(1, v.size() - 2);
  return v;
}

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
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string s;
  if (!std::getline(f, s))
    return false;
  size_t rp = s.rfind(')');
  return rp != std::string::npos && s[rp + 2] != 'Z';
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
  void write_config(const std::string &services) {
    std::ofstream(dir / "m.ini")
        << "[monitor]\nhttp = 127.0.0.1:0\ndb = " << (dir / "m.sqlite").string()
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
  int64_t sql(const std::string &q) {
    sqlite3 *db;
    int64_t v = -1;
    if (sqlite3_open_v2((dir / "m.sqlite").c_str(), &db, SQLITE_OPEN_READONLY,
                        nullptr) == SQLITE_OK) {
      sqlite3_busy_timeout(db, 5000);
      sqlite3_stmt *st;
      if (sqlite3_prepare_v2(db, q.c_str(), -1, &st, nullptr) == SQLITE_OK &&
          sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
      sqlite3_finalize(st);
    }
    sqlite3_close(db);
    return v;
  }
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

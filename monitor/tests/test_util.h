// test_util.h — what the monitor's tests share, with the real binary or
// without it: HTTP over a loopback socket, the JSON API's flat objects,
// values of the store's database and /proc/PID/stat.
#ifndef MON_TESTS_TEST_UTIL_H
#define MON_TESTS_TEST_UTIL_H

#include <sqlite3.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>

namespace {

inline int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// ---- HTTP ----

// A socket connected to 127.0.0.1:port, or -1. timeout_s > 0 bounds each
// read and write on it.
inline int loopback_connect(int port, int timeout_s = 0) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  if (timeout_s > 0) {
    timeval tv{timeout_s, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  }
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)port);
  inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  if (connect(fd, (sockaddr *)&sa, sizeof sa) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// request written whole on a new connection: its socket, or -1.
inline int send_request(int port, const std::string &request,
                        int timeout_s = 0) {
  int fd = loopback_connect(port, timeout_s);
  if (fd >= 0 &&
      write(fd, request.data(), request.size()) != (ssize_t)request.size()) {
    close(fd);
    return -1;
  }
  return fd;
}

// request on a new connection: the whole answer, until the server closes
// ("" if none).
inline std::string http_raw(int port, const std::string &request,
                            int timeout_s = 0) {
  std::string all;
  int fd = send_request(port, request, timeout_s);
  if (fd < 0)
    return all;
  char buf[65536];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0)
    all.append(buf, (size_t)n);
  close(fd);
  return all;
}

// One request with Connection: close; extra: header lines, each ending in
// \r\n. The answer as received.
inline std::string http(int port, const std::string &method,
                        const std::string &path, const std::string &extra = "",
                        int timeout_s = 0) {
  return http_raw(port,
                  method + " " + path +
                      " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) +
                      "\r\nConnection: close\r\n" + extra + "\r\n",
                  timeout_s);
}

struct Resp {
  int status = 0; // 0: no answer (connection closed or timed out)
  std::string head, body;
};

inline Resp parse_response(const std::string &all) {
  Resp r;
  size_t split = all.find("\r\n\r\n");
  r.head = all.substr(0, split);
  r.body = split == std::string::npos ? "" : all.substr(split + 4);
  if (all.size() > 12 && all.compare(0, 5, "HTTP/") == 0)
    r.status = std::stoi(all.substr(9, 3));
  return r;
}

// A GET whose answer is a stream (SSE): its socket, or -1.
inline int open_stream(int port, const std::string &path,
                       const std::string &extra = "") {
  return send_request(port, "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1:" +
                                std::to_string(port) + "\r\n" + extra + "\r\n");
}

// Appends what fd gives within ms to got; true once pred(got) holds.
inline bool read_for(int fd, std::string &got, int ms,
                     const std::function<bool(const std::string &)> &pred) {
  auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  while (!pred(got)) {
    int left = (int)std::chrono::duration_cast<std::chrono::milliseconds>(
                   end - std::chrono::steady_clock::now())
                   .count();
    pollfd p{fd, POLLIN, 0};
    if (left <= 0 || poll(&p, 1, left) <= 0)
      return pred(got);
    char buf[4096];
    ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0)
      return pred(got);
    got.append(buf, (size_t)n);
  }
  return true;
}

// ---- the JSON API ----

// The JSON object of service `name` in /api/services output.
inline std::string object_of(const std::string &json, const std::string &name) {
  size_t p = json.find("{\"name\":\"" + name + "\"");
  if (p == std::string::npos)
    return "";
  return json.substr(p, json.find('}', p) - p + 1);
}

// The value of "key" in a flat JSON object, unquoted ("" if absent).
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

// ---- the store ----

// One value of the database at db (-1 if it cannot be read).
inline int64_t sql_value(const std::filesystem::path &db,
                         const std::string &q) {
  sqlite3 *h;
  int64_t v = -1;
  if (sqlite3_open_v2(db.c_str(), &h, SQLITE_OPEN_READONLY, nullptr) ==
      SQLITE_OK) {
    sqlite3_busy_timeout(h, 5000);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(h, q.c_str(), -1, &st, nullptr) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
      v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
  }
  sqlite3_close(h);
  return v;
}

// ---- /proc ----

// The fields of /proc/PID/stat that the tests ask.
struct ProcStat {
  std::string state; // "R", "S", "Z", ...
  int ppid = 0, pgrp = 0, session = 0;
  long long utime = 0, stime = 0; // clock ticks
};

// A /proc/PID/stat file: false if it cannot be read (the process is gone).
inline bool read_proc_stat(const std::filesystem::path &file, ProcStat *out) {
  std::ifstream f(file);
  std::string s;
  if (!std::getline(f, s))
    return false;
  size_t rp = s.rfind(')'); // the command name may hold spaces and ')'
  if (rp == std::string::npos)
    return false;
  std::istringstream rest(s.substr(rp + 2));
  rest >> out->state >> out->ppid >> out->pgrp >> out->session;
  std::string skip;
  for (int k = 0; k < 7; k++) // tty_nr .. cmajflt
    rest >> skip;
  rest >> out->utime >> out->stime;
  return true;
}

inline bool read_proc_stat(int pid, ProcStat *out) {
  return read_proc_stat("/proc/" + std::to_string(pid) + "/stat", out);
}

// How many processes in /proc match.
inline int count_processes(const std::function<bool(const ProcStat &)> &match) {
  int n = 0;
  for (const auto &e : std::filesystem::directory_iterator("/proc")) {
    std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos)
      continue;
    ProcStat st;
    if (read_proc_stat(e.path() / "stat", &st) && match(st))
      n++;
  }
  return n;
}

} // namespace

#endif

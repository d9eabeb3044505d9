// loopback_http.h — a free loopback port, and a small HTTP server on
// 127.0.0.1, for the monitor's
// tests (health probes, the alert webhook, the supervision tests): one
// thread accepts connections one at a time, reads each request whole (the
// headers, then a body of Content-Length bytes, within 3 s), records it and
// asks a handler what to do: answer, close without a word, or keep the
// connection open unanswered until the server goes.
#ifndef MON_TESTS_LOOPBACK_HTTP_H
#define MON_TESTS_LOOPBACK_HTTP_H

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

// A loopback TCP port nobody holds now (bound, then closed): 0 if none.
inline int loopback_free_port() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t l = sizeof a;
  int port = 0;
  if (bind(fd, (sockaddr *)&a, sizeof a) == 0 &&
      getsockname(fd, (sockaddr *)&a, &l) == 0)
    port = ntohs(a.sin_port);
  close(fd);
  return port;
}

class LoopbackHttp {
public:
  enum class Act { kReply, kClose, kHold };
  struct Answer {
    Act act = Act::kReply;
    std::string bytes; // the whole response, for kReply
  };
  // Called on the server's thread with the request's head (request line
  // and headers) and body; may block (it delays the next connection).
  using Handler =
      std::function<Answer(const std::string &head, const std::string &body)>;

  // A complete response with status code and a two-byte body.
  static Answer status(int code) {
    return {Act::kReply, "HTTP/1.1 " + std::to_string(code) +
                             " X\r\nContent-Length: 2\r\nConnection: "
                             "close\r\n\r\nok"};
  }

  // close_on_accept: close each connection before reading anything.
  explicit LoopbackHttp(Handler h, bool close_on_accept = false)
      : handler_(std::move(h)), close_on_accept_(close_on_accept) {
    lfd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t l = sizeof a;
    if (bind(lfd_, (sockaddr *)&a, sizeof a) == 0 && listen(lfd_, 64) == 0 &&
        getsockname(lfd_, (sockaddr *)&a, &l) == 0)
      port_ = ntohs(a.sin_port);
    if (pipe2(stop_, O_CLOEXEC) != 0)
      stop_[0] = stop_[1] = -1;
    th_ = std::thread([this] { run(); });
  }
  ~LoopbackHttp() {
    ssize_t w = write(stop_[1], "x", 1);
    (void)w;
    th_.join();
    for (int fd : held_)
      close(fd);
    close(lfd_);
    close(stop_[0]);
    close(stop_[1]);
  }
  LoopbackHttp(const LoopbackHttp &) = delete;
  LoopbackHttp &operator=(const LoopbackHttp &) = delete;

  int port() const { return port_; } // 0 if it could not listen
  std::string url(const std::string &path = "/") const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }
  std::vector<std::string> heads() {
    std::lock_guard<std::mutex> g(mu_);
    return heads_;
  }
  std::vector<std::string> bodies() {
    std::lock_guard<std::mutex> g(mu_);
    return bodies_;
  }
  int requests() {
    std::lock_guard<std::mutex> g(mu_);
    return (int)heads_.size();
  }
  std::string last_head() {
    std::lock_guard<std::mutex> g(mu_);
    return heads_.empty() ? "" : heads_.back();
  }

private:
  void run() {
    for (;;) {
      pollfd p[2] = {{lfd_, POLLIN, 0}, {stop_[0], POLLIN, 0}};
      if (poll(p, 2, -1) < 0 || (p[1].revents & POLLIN))
        return;
      int c = accept4(lfd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0)
        continue;
      if (close_on_accept_ || !serve(c))
        close(c);
    }
  }
  // false when c is to be closed by the caller.
  bool serve(int c) {
    std::string req;
    char buf[4096];
    size_t need = std::string::npos, he = std::string::npos;
    auto end = std::chrono::steady_clock::now() + std::chrono::seconds(3);
    while (std::chrono::steady_clock::now() < end) {
      he = req.find("\r\n\r\n");
      if (he != std::string::npos && need == std::string::npos) {
        size_t cl = req.find("Content-Length: ");
        need = he + 4 + (cl < he ? (size_t)atol(req.c_str() + cl + 16) : 0);
      }
      if (need != std::string::npos && req.size() >= need)
        break;
      pollfd q = {c, POLLIN, 0};
      if (poll(&q, 1, 100) <= 0)
        continue;
      ssize_t n = read(c, buf, sizeof buf);
      if (n <= 0)
        break;
      req.append(buf, (size_t)n);
    }
    he = req.find("\r\n\r\n");
    std::string head = he == std::string::npos ? req : req.substr(0, he);
    std::string body = he == std::string::npos ? "" : req.substr(he + 4);
    {
      std::lock_guard<std::mutex> g(mu_);
      heads_.push_back(head);
      bodies_.push_back(body);
    }
    Answer a = handler_(head, body);
    if (a.act == Act::kHold) {
      held_.push_back(c);
      return true;
    }
    if (a.act == Act::kReply) {
      ssize_t w = write(c, a.bytes.data(), a.bytes.size());
      (void)w;
    }
    return false;
  }

  Handler handler_;
  bool close_on_accept_;
  int lfd_ = -1, port_ = 0, stop_[2] = {-1, -1};
  std::vector<int> held_; // only the server's thread, then the destructor
  std::mutex mu_;
  std::vector<std::string> heads_, bodies_;
  std::thread th_;
};

#endif

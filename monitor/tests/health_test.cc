// health_test.cc — the health probes against a loopback HTTP server thread,
// open and closed TCP ports and check commands, and the probe thread's
// begin/take/reset/reconfigure contract.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <dirent.h>
#include <fcntl.h>
#include <fstream>
#include <mutex>
#include <netinet/in.h>
#include <poll.h>
#include <set>
#include <string>
#include <sys/socket.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

#include "config.h"
#include "health.h"
#include "loopback_http.h"

namespace {

using Clock = std::chrono::steady_clock;

long ms_since(Clock::time_point t0) {
  return (long)std::chrono::duration_cast<std::chrono::milliseconds>(
             Clock::now() - t0)
      .count();
}

// A loopback server: each request gets `reply`; "" never answers, "eof"
// closes after the request, "close" closes at once.
class Server {
public:
  explicit Server(const std::string &reply)
      : http_(
            [reply](const std::string &, const std::string &) {
              using A = LoopbackHttp::Act;
              if (reply.empty())
                return LoopbackHttp::Answer{A::kHold, ""};
              if (reply == "eof")
                return LoopbackHttp::Answer{A::kClose, ""};
              return LoopbackHttp::Answer{A::kReply, reply};
            },
            reply == "close") {}
  int port() const { return http_.port(); }
  std::string last_request() { return http_.last_head() + "\r\n\r\n"; }

private:
  LoopbackHttp http_;
};

// Whether pid is gone (or a zombie nobody in this container reaps) within
// a second.
bool dies_within_1s(int pid) {
  for (int k = 0; k < 100; k++) {
    std::ifstream st("/proc/" + std::to_string(pid) + "/stat");
    std::string p, comm, state;
    if (!(st >> p >> comm >> state) || state == "Z")
      return true;
    usleep(10000);
  }
  return false;
}

// A parsed config of [service.sN] sections with the given health values.
struct Cfg {
  mon_config cfg{};
  explicit Cfg(const std::vector<std::string> &health, int timeout_ms = 1000) {
    std::string text;
    for (size_t i = 0; i < health.size(); i++)
      text += "[service.s" + std::to_string(i) +
              "]\ncommand = x\nhealth = " + health[i] +
              "\nhealth_interval_ms = 60000\nhealth_timeout_ms = " +
              std::to_string(timeout_ms) + "\n";
    char err[512] = "";
    rc = mon_config_parse(text.data(), text.size(), "t.ini", false, &cfg, err,
                          sizeof err);
    EXPECT_EQ(rc, 0) << err;
  }
  ~Cfg() { mon_config_fini(&cfg); }
  const mon_service_cfg *svc(size_t i = 0) const { return &cfg.services[i]; }
  int rc;
};

struct Result {
  int ok;
  std::string why;
  long ms;
};

Result check(const std::string &health, int timeout_ms = 1000) {
  Cfg c({health}, timeout_ms);
  if (c.rc != 0)
    return {-1, "bad config", 0};
  char why[128] = "unset";
  auto t0 = Clock::now();
  int ok = mon_health_check(c.svc(), why, sizeof why);
  return {ok, why, ms_since(t0)};
}

std::string http(int port, const std::string &path = "/healthz") {
  return "http://127.0.0.1:" + std::to_string(port) + path;
}

// Our children, zombies included, from /proc (not waitpid(-1), which would
// reap them and could take another test's).
std::set<int> children() {
  std::set<int> out;
  DIR *d = opendir("/proc");
  if (!d)
    return out;
  int me = getpid();
  while (dirent *e = readdir(d)) {
    int pid = atoi(e->d_name);
    if (pid <= 0)
      continue;
    std::ifstream st("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    std::getline(st, line);
    size_t rp = line.rfind(')'); // comm may hold spaces
    int ppid = 0;
    char state;
    if (rp != std::string::npos &&
        sscanf(line.c_str() + rp + 1, " %c %d", &state, &ppid) == 2 &&
        ppid == me)
      out.insert(pid);
  }
  closedir(d);
  return out;
}

// No child of ours is left, reaped or not, beyond those in before.
void expect_no_children(const std::set<int> &before) {
  for (int pid : children())
    EXPECT_TRUE(before.count(pid)) << "child " << pid << " left";
}

TEST(HealthHttp, Passes200AndSendsAGet) {
  Server s("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
  Result r = check(http(s.port(), "/healthz?deep=1"));
  EXPECT_EQ(r.ok, 1) << r.why;
  std::string req = s.last_request();
  EXPECT_EQ(req.rfind("GET /healthz?deep=1 HTTP/1.1\r\n", 0), 0u) << req;
  EXPECT_NE(
      req.find("\r\nHost: 127.0.0.1:" + std::to_string(s.port()) + "\r\n"),
      std::string::npos)
      << req;
  EXPECT_NE(req.find("\r\nConnection: close\r\n"), std::string::npos);
}

TEST(HealthHttp, AnyTwoHundredPasses) {
  Server s("HTTP/1.0 204 No Content\r\n\r\n");
  EXPECT_EQ(check(http(s.port())).ok, 1);
}

TEST(HealthHttp, Fails503) {
  Server s("HTTP/1.1 503 Service Unavailable\r\n\r\n");
  Result r = check(http(s.port()));
  EXPECT_EQ(r.ok, 0);
  EXPECT_EQ(r.why, "HTTP 503");
}

TEST(HealthHttp, RedirectIsNotHealthy) {
  Server s("HTTP/1.1 301 Moved\r\nLocation: /x\r\n\r\n");
  Result r = check(http(s.port()));
  EXPECT_EQ(r.ok, 0);
  EXPECT_EQ(r.why, "HTTP 301");
}

TEST(HealthHttp, GarbageFails) {
  for (const char *g : {"hello there\r\n", "HTTP/1.1 2x0 OK\r\n",
                        "HTTP/1.1 2000 OK\r\n", "HTTP/1.1 20", "\n"}) {
    Server s(g);
    Result r = check(http(s.port()));
    EXPECT_EQ(r.ok, 0) << g;
    EXPECT_EQ(r.why, "HTTP: bad status line") << g;
  }
}

TEST(HealthHttp, ClosedWithoutReplyFails) {
  Server s("eof");
  Result r = check(http(s.port()));
  EXPECT_EQ(r.ok, 0);
  EXPECT_NE(r.why.find("HTTP: connection closed"), std::string::npos) << r.why;
}

TEST(HealthHttp, NeverAnswersTimesOut) {
  Server s("");
  Result r = check(http(s.port()), 300);
  EXPECT_EQ(r.ok, 0);
  EXPECT_EQ(r.why, "timed out after 300 ms");
  EXPECT_GE(r.ms, 280);
  EXPECT_LT(r.ms, 1500);
}

TEST(HealthHttp, ConnectionRefused) {
  Result r = check(http(loopback_free_port()));
  EXPECT_EQ(r.ok, 0);
  EXPECT_EQ(r.why, "connect: Connection refused");
}

TEST(HealthHttp, LocalhostByName) {
  Server s("HTTP/1.1 200 OK\r\n\r\n");
  // localhost may resolve to ::1 first (refused): the next address is tried
  Result r = check("http://localhost:" + std::to_string(s.port()) + "/", 1000);
  EXPECT_EQ(r.ok, 1) << r.why;
}

TEST(HealthHttp, BadHostNamesFailWithinTheTimeout) {
  for (const char *h : {"no-such-host.invalid", "bad..name", "-x-"}) {
    Result r = check(std::string("http://") + h + ":8080/", 800);
    EXPECT_EQ(r.ok, 0) << h;
    EXPECT_EQ(r.why.rfind(std::string("resolve ") + h + ": ", 0), 0u) << r.why;
    EXPECT_LT(r.ms, 1500) << h;
  }
}

TEST(HealthTcp, OpenPortPasses) {
  Server s("close");
  Result r = check("tcp://127.0.0.1:" + std::to_string(s.port()));
  EXPECT_EQ(r.ok, 1) << r.why;
}

TEST(HealthTcp, ClosedPortFails) {
  Result r = check("tcp://127.0.0.1:" + std::to_string(loopback_free_port()));
  EXPECT_EQ(r.ok, 0);
  EXPECT_EQ(r.why, "connect: Connection refused");
}

TEST(HealthTcp, Ipv6Literal) {
  int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  a.sin6_addr = in6addr_loopback;
  if (fd < 0 || bind(fd, (sockaddr *)&a, sizeof a) != 0) {
    if (fd >= 0)
      close(fd);
    GTEST_SKIP() << "no IPv6 loopback";
  }
  ASSERT_EQ(listen(fd, 4), 0);
  socklen_t l = sizeof a;
  getsockname(fd, (sockaddr *)&a, &l);
  Result r = check("tcp://[::1]:" + std::to_string(ntohs(a.sin6_port)));
  EXPECT_EQ(r.ok, 1) << r.why;
  close(fd);
}

TEST(HealthExec, ExitCodes) {
  std::set<int> before = children();
  EXPECT_EQ(check("exec:/bin/true").ok, 1);
  EXPECT_EQ(check("exec:true").ok, 1); // found on PATH
  Result r = check("exec:/bin/false");
  EXPECT_EQ(r.ok, 0);
  EXPECT_EQ(r.why, "exit code 1");
  r = check("exec:/bin/sh -c 'exit 3'");
  EXPECT_EQ(r.why, "exit code 3");
  r = check("exec:/bin/sh -c 'kill -9 $$'");
  EXPECT_EQ(r.ok, 0);
  EXPECT_EQ(r.why, "killed by signal 9");
  expect_no_children(before);
}

TEST(HealthExec, MissingProgram) {
  std::set<int> before = children();
  Result r = check("exec:/nonexistent/check --x");
  EXPECT_EQ(r.ok, 0);
  EXPECT_EQ(r.why, "exec /nonexistent/check: No such file or directory");
  expect_no_children(before);
}

TEST(HealthExec, TimeoutKillsTheGroupAndReaps) {
  std::set<int> before = children();
  char tmpl[] = "/tmp/health_test_XXXXXX";
  int tfd = mkstemp(tmpl);
  ASSERT_GE(tfd, 0);
  close(tfd);
  // a grandchild in the same group must die with it
  Result r = check(std::string("exec:/bin/sh -c 'sleep 30 & echo $! > ") +
                       tmpl + "; sleep 30'",
                   300);
  EXPECT_EQ(r.ok, 0);
  EXPECT_EQ(r.why, "timed out after 300 ms");
  EXPECT_LT(r.ms, 1500);
  expect_no_children(before);
  int gpid = 0;
  std::ifstream(tmpl) >> gpid;
  unlink(tmpl);
  ASSERT_GT(gpid, 0);
  // reparented and killed: gone, or a zombie nobody in this container reaps
  bool dead = dies_within_1s(gpid);
  EXPECT_TRUE(dead) << "grandchild " << gpid << " still runs";
}

TEST(HealthExec, LeftoversOfAPassingCheckAreKilled) {
  char tmpl[] = "/tmp/health_test_XXXXXX";
  int tfd = mkstemp(tmpl);
  ASSERT_GE(tfd, 0);
  close(tfd);
  Result r = check(
      std::string("exec:/bin/sh -c 'sleep 30 & echo $! > ") + tmpl + "'", 1000);
  EXPECT_EQ(r.ok, 1) << r.why;
  int gpid = 0;
  std::ifstream(tmpl) >> gpid;
  unlink(tmpl);
  ASSERT_GT(gpid, 0);
  bool dead = dies_within_1s(gpid);
  EXPECT_TRUE(dead);
}

TEST(HealthExec, CleanEnvironment) {
  std::set<int> before = children();
  // an fd without close-on-exec, a blocked signal: neither reaches the check
  int fd = open("/dev/null", O_RDONLY);
  ASSERT_GE(fd, 0);
  ASSERT_GE(dup2(fd, 57), 0);
  close(fd);
  sigset_t set, old;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, &old);
  EXPECT_EQ(check("exec:/bin/sh -c 'test ! -e /proc/$$/fd/57'").why, "");
  EXPECT_EQ(check("exec:/bin/sh -c '[ \"$(readlink /proc/$$/fd/0)\" = "
                  "/dev/null ] && [ \"$(readlink /proc/$$/fd/2)\" = "
                  "/dev/null ]'")
                .ok,
            1);
  // grep reads its own mask, as the monitor's check would inherit it
  EXPECT_EQ(
      check("exec:grep -q '^SigBlk:[[:space:]]*0*$' /proc/self/status").ok, 1);
  // its own process group
  EXPECT_EQ(check("exec:/bin/sh -c 'read -r a b c d pg rest < /proc/$$/stat; "
                  "test $pg -eq $$'")
                .ok,
            1);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  close(57);
  expect_no_children(before);
}

// ---- the probe thread ----

// Waits (bounded) for a result of service i.
int take_wait(mon_healther *h, size_t i, std::string *why,
              long limit_ms = 2500) {
  auto t0 = Clock::now();
  char buf[128];
  for (;;) {
    int r = mon_healther_take(h, i, buf, sizeof buf);
    if (r >= 0 || ms_since(t0) > limit_ms) {
      if (why)
        *why = r >= 0 ? buf : "";
      return r;
    }
    usleep(2000);
  }
}

TEST(HealthThread, BeginTake) {
  Server s("HTTP/1.1 200 OK\r\n\r\n");
  Cfg c({http(s.port()),
         "tcp://127.0.0.1:" + std::to_string(loopback_free_port())});
  mon_healther *h = mon_healther_new(&c.cfg);
  ASSERT_NE(h, nullptr);
  char why[128];
  EXPECT_EQ(mon_healther_take(h, 0, why, sizeof why), -1); // nothing asked
  mon_healther_begin(h, 0);
  mon_healther_begin(h, 0); // once only
  mon_healther_begin(h, 1);
  std::string w;
  EXPECT_EQ(take_wait(h, 0, &w), 1);
  EXPECT_EQ(take_wait(h, 1, &w), 0);
  EXPECT_EQ(w, "connect: Connection refused");
  usleep(50000);
  EXPECT_EQ(mon_healther_take(h, 0, why, sizeof why), -1); // consumed
  EXPECT_EQ(mon_healther_take(h, 1, why, sizeof why), -1);
  // out of range: ignored
  mon_healther_begin(h, 7);
  EXPECT_EQ(mon_healther_take(h, 7, why, sizeof why), -1);
  mon_healther_reset(h, 7);
  mon_healther_free(h);
  mon_healther_free(nullptr);
}

TEST(HealthThread, ResetDropsAResultAndCutsAProbeShort) {
  std::set<int> before = children();
  Server s("HTTP/1.1 200 OK\r\n\r\n");
  Cfg c({"exec:/bin/sleep 30", http(s.port())}, 2000);
  mon_healther *h = mon_healther_new(&c.cfg);
  ASSERT_NE(h, nullptr);
  mon_healther_begin(h, 0);
  usleep(100000); // the sleep is in flight
  auto t0 = Clock::now();
  mon_healther_reset(h, 0);
  mon_healther_begin(h, 1);
  std::string w;
  EXPECT_EQ(take_wait(h, 1, &w), 1) << w;
  EXPECT_LT(ms_since(t0), 1000); // did not wait out the 2 s timeout
  EXPECT_EQ(mon_healther_take(h, 0, nullptr, 0), -1); // the old run's
  // a finished result is dropped by reset too
  mon_healther_begin(h, 1);
  usleep(200000);
  mon_healther_reset(h, 1);
  EXPECT_EQ(mon_healther_take(h, 1, nullptr, 0), -1);
  mon_healther_free(h);
  expect_no_children(before);
}

TEST(HealthThread, FreeWithAProbeInFlightIsQuick) {
  std::set<int> before = children();
  Server s("");
  Cfg c({"exec:/bin/sleep 30", http(s.port())}, 5000);
  for (size_t i = 0; i < 2; i++) {
    mon_healther *h = mon_healther_new(&c.cfg);
    ASSERT_NE(h, nullptr);
    mon_healther_begin(h, i);
    usleep(100000);
    auto t0 = Clock::now();
    mon_healther_free(h);
    EXPECT_LT(ms_since(t0), 500) << i;
  }
  expect_no_children(before);
}

TEST(HealthThread, SlowProbeDoesNotStarveOthers) {
  // service 0 hangs up to its timeout each time it is asked; service 1 is
  // still served between two of its probes
  Server hang("");
  Server ok("HTTP/1.1 200 OK\r\n\r\n");
  Cfg c({http(hang.port()), http(ok.port())}, 300);
  mon_healther *h = mon_healther_new(&c.cfg);
  ASSERT_NE(h, nullptr);
  for (int round = 0; round < 3; round++) {
    mon_healther_begin(h, 0);
    mon_healther_begin(h, 1);
    std::string w;
    EXPECT_EQ(take_wait(h, 1, &w, 1000), 1) << round;
    EXPECT_EQ(take_wait(h, 0, &w, 1000), 0) << round;
    EXPECT_EQ(w, "timed out after 300 ms");
  }
  mon_healther_free(h);
}

TEST(HealthThread, Reconfigure) {
  Server s("HTTP/1.1 200 OK\r\n\r\n");
  int closed = loopback_free_port();
  Cfg a({http(s.port()), "exec:/bin/false"});
  mon_healther *h = mon_healther_new(&a.cfg);
  ASSERT_NE(h, nullptr);
  mon_healther_begin(h, 0);
  mon_healther_begin(h, 1);
  std::string w;
  // wait until both finished, leaving the results untaken
  usleep(300000);
  {
    // new order: [false (was 1), a new tcp one, http (was 0, now changed)]
    Cfg b({"exec:/bin/false", "tcp://127.0.0.1:" + std::to_string(closed),
           http(s.port(), "/x")});
    int old_of_new[] = {1, -1, 0};
    mon_healther_reconfigure(h, &b.cfg, old_of_new);
  } // the new config is gone too: the healther kept copies
  EXPECT_EQ(take_wait(h, 0, &w, 100), 0); // kept: same check
  EXPECT_EQ(w, "exit code 1");
  EXPECT_EQ(mon_healther_take(h, 2, nullptr, 0), -1); // changed: dropped
  mon_healther_begin(h, 1);
  EXPECT_EQ(take_wait(h, 1, &w), 0);
  EXPECT_EQ(w, "connect: Connection refused");
  mon_healther_begin(h, 2);
  EXPECT_EQ(take_wait(h, 2, &w), 1) << w;
  EXPECT_EQ(mon_healther_take(h, 3, nullptr, 0), -1);
  // to an empty config and back
  Cfg none(std::vector<std::string>{});
  mon_healther_reconfigure(h, &none.cfg, nullptr);
  mon_healther_begin(h, 0);
  EXPECT_EQ(mon_healther_take(h, 0, nullptr, 0), -1);
  mon_healther_free(h);
  EXPECT_NE(s.last_request().find("GET /x "), std::string::npos);
}

} // namespace

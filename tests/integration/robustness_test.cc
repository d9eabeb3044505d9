// robustness_test.cc — conditions real programs put a library in, over
// every transport: signals interrupting every blocking call, a stalled
// (SIGSTOPped) server, repeated timeouts with replies arriving late, a
// server with one thread, a client passed between threads, hundreds of
// connections, and stopping a server from a handler or before it runs.
#include <signal.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <fstream>
#include <mutex>
#include <thread>

#include "fixture.h"

namespace svctest {
namespace {

using Robust = SvcTest;

long SelfCpuMs() {
  rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000L +
         (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000L;
}

std::atomic<long> g_alarms{0};
void OnAlarm(int) { g_alarms++; }

// SIGALRM every ms, without SA_RESTART, for the scope's life: every
// blocking syscall in the library gets EINTR again and again.
class AlarmStorm {
public:
  AlarmStorm() {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = OnAlarm;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;
    sigaction(SIGALRM, &sa, &old_);
    itimerval it = {{0, 1000}, {0, 1000}};
    setitimer(ITIMER_REAL, &it, nullptr);
  }
  ~AlarmStorm() {
    itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, nullptr);
    sigaction(SIGALRM, &old_, nullptr);
  }

private:
  struct sigaction old_;
};

TEST_P(Robust, CallsSurviveSignals) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  long before = g_alarms.load();
  {
    AlarmStorm storm;
    std::vector<Client> cs;
    for (int i = 0; i < 5; i++) {
      int rc = 0;
      cs.push_back(Open(url_, &rc));
      ASSERT_EQ(0, rc) << "open under signals: " << ErrName(rc);
    }
    for (int i = 0; i < 300; i++) {
      std::string req = RandomBytes((uint64_t)i, (size_t)i * 7), resp;
      int rc = Call(cs[(size_t)i % 5].get(), "echo", req, &resp);
      ASSERT_EQ(0, rc) << "call " << i << ": " << ErrName(rc);
      ASSERT_TRUE(resp == req);
    }
    for (int i = 0; i < 3; i++) {
      std::string resp;
      int rc = Call(cs[0].get(), "sleep", "50", &resp);
      ASSERT_EQ(0, rc) << "sleep under signals: " << ErrName(rc);
      std::string big = RandomBytes(99, 2u << 20);
      rc = Call(cs[1].get(), "echo", big, &resp);
      ASSERT_EQ(0, rc) << "2 MiB under signals: " << ErrName(rc);
      ASSERT_TRUE(resp == big);
    }
    // A timeout still measures wall time, not "time since the last EINTR".
    ASSERT_EQ(0, svc_client_set_timeout(cs[2].get(), 200));
    int64_t t0 = NowMs();
    EXPECT_EQ(SVC_ETIMEDOUT, Call(cs[2].get(), "sleep", "3000"));
    EXPECT_LT(NowMs() - t0, 2000);
  }
  EXPECT_GT(g_alarms.load() - before, 50) << "the storm did not happen";
}

// True once every thread of pid is in the stopped state ('T'): kill()
// returns before a SIGSTOP has taken effect.
bool AllThreadsStopped(pid_t pid) {
  std::string dir = "/proc/" + std::to_string(pid) + "/task";
  std::vector<std::string> tids = ListDir(dir);
  if (tids.empty())
    return false;
  for (const std::string &t : tids) {
    FILE *f = fopen((dir + "/" + t + "/stat").c_str(), "r");
    if (!f)
      continue;
    char buf[512];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *rp = strrchr(buf, ')');
    if (!rp || rp[1] != ' ' || (rp[2] != 'T' && rp[2] != 't'))
      return false;
  }
  return true;
}

TEST_P(Robust, StalledServerTimesOutWithoutBurningCpu) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  for (svc_wait_policy p : {SVC_WAIT_ADAPTIVE, SVC_WAIT_SPIN}) {
    SCOPED_TRACE(p == SVC_WAIT_SPIN ? "spin" : "adaptive");
    Client c = MustOpen();
    ASSERT_TRUE(c);
    ASSERT_EQ(0, svc_client_set_wait(c.get(), p));
    ASSERT_EQ(0, Call(c.get(), "echo", "warm"));
    kill(ServerPid(), SIGSTOP);
    ASSERT_TRUE(
        Eventually([&] { return AllThreadsStopped(ServerPid()); }, 5000));
    ASSERT_EQ(0, svc_client_set_timeout(c.get(), 1000));
    long cpu0 = SelfCpuMs();
    int64_t t0 = NowMs();
    int rc = Call(c.get(), "echo", "x");
    int64_t wall = NowMs() - t0;
    long cpu = SelfCpuMs() - cpu0;
    kill(ServerPid(), SIGCONT);
    EXPECT_EQ(SVC_ETIMEDOUT, rc) << ErrName(rc);
    EXPECT_GE(wall, 900);
    EXPECT_LT(wall, 3000);
    // A waiter that never hears back must go to sleep, not spin for a second.
    EXPECT_LT(cpu, wall * 3 / 10) << cpu << " ms CPU in " << wall << " ms";
    printf("[ info ] %s: waiting 1 s on a stopped server cost %ld ms CPU\n",
           transport().c_str(), cpu);
    ASSERT_EQ(0, svc_client_set_timeout(c.get(), 10000));
    std::string resp;
    rc = Call(c.get(), "echo", "resumed", &resp);
    if (rc != 0)
      rc = Call(c.get(), "echo", "resumed", &resp);
    ASSERT_EQ(0, rc) << ErrName(rc);
    EXPECT_EQ(resp, "resumed");
  }
}

TEST_P(Robust, RepeatedTimeoutsNeverDeliverAStaleReply) {
  // Each timed-out call's reply arrives later, while the next call is in
  // flight; the client must never hand that late reply to the next call.
  ASSERT_NO_FATAL_FAILURE(StartServer());
  Client c = MustOpen();
  ASSERT_TRUE(c);
  int clean_errors = 0;
  for (int i = 0; i < 8; i++) {
    SCOPED_TRACE(i);
    ASSERT_EQ(0, svc_client_set_timeout(c.get(), 60));
    int rc = Call(c.get(), "sleep", "250");
    ASSERT_EQ(SVC_ETIMEDOUT, rc) << ErrName(rc);
    ASSERT_EQ(0, svc_client_set_timeout(c.get(), 10000));
    std::string req = RandomBytes((uint64_t)i, 20000 + (size_t)i * 1000), resp;
    rc = Call(c.get(), "echo", req, &resp);
    if (rc != 0) {
      clean_errors++;
      rc = Call(c.get(), "echo", req, &resp);
    }
    ASSERT_EQ(0, rc) << ErrName(rc);
    ASSERT_EQ(resp.size(), req.size());
    ASSERT_TRUE(resp == req) << "got another call's reply";
    std::string sum;
    ASSERT_EQ(0, Call(c.get(), "checksum", req, &sum));
    uint64_t got = 0;
    for (int b = 7; b >= 0 && sum.size() == 8; b--)
      got = got << 8 | (uint8_t)sum[(size_t)b];
    ASSERT_EQ(got, Fnv1a64(req.data(), req.size()));
  }
  if (clean_errors)
    printf("[ info ] %s: %d calls after a timeout failed cleanly first\n",
           transport().c_str(), clean_errors);
}

TEST_P(Robust, OneServerThreadServesEveryoneInTurn) {
  ASSERT_NO_FATAL_FAILURE(StartServer({"--threads", "1"}));
  Client slow = MustOpen(), fast = MustOpen();
  ASSERT_TRUE(slow && fast);
  std::atomic<int> slow_rc{1};
  std::thread t([&] { slow_rc = Call(slow.get(), "sleep", "500"); });
  SleepMs(100);
  int64_t t0 = NowMs();
  std::string resp;
  int rc = Call(fast.get(), "echo", "turn", &resp);
  int64_t ms = NowMs() - t0;
  t.join();
  EXPECT_EQ(0, rc) << ErrName(rc);
  EXPECT_EQ(resp, "turn");
  EXPECT_LT(ms, 5000);
  EXPECT_EQ(0, slow_rc.load());
  std::vector<Client> cs;
  for (int i = 0; i < 10; i++) {
    cs.push_back(MustOpen());
    ASSERT_TRUE(cs.back());
    ASSERT_EQ(0, Call(cs.back().get(), "echo", "x"));
  }
}

TEST_P(Robust, ClientHandedBetweenThreads) {
  // "A client is used by one thread at a time": not always the same one.
  ASSERT_NO_FATAL_FAILURE(StartServer());
  Client c = MustOpen();
  ASSERT_TRUE(c);
  std::mutex mu;
  std::atomic<int> bad{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; t++)
    ts.emplace_back([&, t] {
      for (int i = 0; i < 100; i++) {
        std::lock_guard<std::mutex> g(mu);
        std::string req = std::to_string(t) + ":" + std::to_string(i), resp;
        if (Call(c.get(), "echo", req, &resp) != 0 || resp != req)
          bad++;
      }
    });
  for (auto &t : ts)
    t.join();
  EXPECT_EQ(bad.load(), 0);
}

TEST_P(Robust, TwoHundredFiftySixConnections) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  std::vector<Client> cs;
  for (int i = 0; i < 256; i++) {
    int rc = 0;
    cs.push_back(Open(url_, &rc));
    ASSERT_EQ(0, rc) << "client " << i << ": " << ErrName(rc);
    ASSERT_EQ(0, Call(cs.back().get(), "echo", "x")) << i;
  }
  for (int i = 255; i >= 0; i -= 17) {
    std::string resp;
    ASSERT_EQ(0, Call(cs[(size_t)i].get(), "echo", std::to_string(i), &resp));
    EXPECT_EQ(resp, std::to_string(i));
  }
}

TEST_P(Robust, HandlerWithoutReplyIsAnEmptyReply) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  Client c = MustOpen();
  ASSERT_TRUE(c);
  const void *p = reinterpret_cast<const void *>(1);
  size_t n = 99;
  int rc = svc_call(c.get(), "fail", "0", 1, &p, &n); // handler returns 0
  EXPECT_EQ(0, rc) << ErrName(rc);
  EXPECT_EQ(n, 0u);
}

// ---- a peer that stops reading or writing ----

TEST_P(Robust, ServerDyingWhileRequestIsWrittenDoesNotKillTheClient) {
  // The server is stopped, so a large request fills the socket buffers and
  // the client blocks writing; then the server dies. The client must get an
  // error back (EPIPE/ECONNRESET inside), not be killed by SIGPIPE.
  ASSERT_NO_FATAL_FAILURE(StartServer());
  Client c = MustOpen();
  ASSERT_TRUE(c);
  ASSERT_EQ(0, Call(c.get(), "echo", "warm"));
  pid_t spid = ServerPid();
  kill(spid, SIGSTOP);
  ASSERT_TRUE(Eventually([&] { return AllThreadsStopped(spid); }, 5000));
  std::thread killer([&] {
    SleepMs(300);
    kill(spid, SIGKILL);
  });
  std::string big(32u << 20, 'w');
  int64_t t0 = NowMs();
  int rc = Call(c.get(), "echo", big);
  int64_t ms = NowMs() - t0;
  killer.join();
  server_->Wait();
  // The request never fully left, so the library may retry on a fresh
  // connection, which is then refused.
  EXPECT_TRUE(rc == SVC_EPEERGONE || rc == SVC_ECONNREFUSED) << ErrName(rc);
  EXPECT_LT(ms, 3000);
}

TEST_P(Robust, TimeoutCoversABlockedWrite) {
  // The deadline covers sending the request too, not only the wait for the
  // reply: a stalled server with full socket buffers still times out.
  ASSERT_NO_FATAL_FAILURE(StartServer());
  Client c = MustOpen();
  ASSERT_TRUE(c);
  ASSERT_EQ(0, Call(c.get(), "echo", "warm"));
  pid_t spid = ServerPid();
  kill(spid, SIGSTOP);
  ASSERT_TRUE(Eventually([&] { return AllThreadsStopped(spid); }, 5000));
  ASSERT_EQ(0, svc_client_set_timeout(c.get(), 500));
  std::string big(32u << 20, 'w');
  int64_t t0 = NowMs();
  int rc = Call(c.get(), "echo", big);
  int64_t ms = NowMs() - t0;
  kill(spid, SIGCONT);
  EXPECT_EQ(SVC_ETIMEDOUT, rc) << ErrName(rc);
  EXPECT_LT(ms, 3000) << "a 500 ms timeout took " << ms << " ms";
  ASSERT_EQ(0, svc_client_set_timeout(c.get(), 20000));
  std::string resp;
  rc = Call(c.get(), "echo", "after", &resp);
  if (rc != 0)
    rc = Call(c.get(), "echo", "after", &resp);
  ASSERT_EQ(0, rc) << ErrName(rc);
  EXPECT_EQ(resp, "after");
}

TEST_P(Robust, ClientsThatNeverReadTheirReplyDoNotStallOthers) {
  // Stream peers that ask for a 32 MiB reply and never read it: the server
  // may spend a thread on each, but must keep serving everybody else, and
  // reclaim everything once they hang up.
  if (is_shm())
    GTEST_SKIP() << "stream transports";
  ASSERT_NO_FATAL_FAILURE(StartServer());
  pid_t spid = ServerPid();
  ExpectServes(url_);
  SleepMs(300);
  int fd0 = CountFds(spid);
  std::vector<int> raws;
  for (int i = 0; i < 5; i++) {
    int fd = RawConnect();
    ASSERT_GE(fd, 0);
    std::string req = WireRequest(1, "big", std::to_string(32u << 20));
    ASSERT_TRUE(SendAll(fd, req.data(), req.size()));
    raws.push_back(fd);
  }
  SleepMs(300);
  int64_t t0 = NowMs();
  ExpectServes(url_);
  EXPECT_LT(NowMs() - t0, 2000);
  for (int fd : raws)
    close(fd);
  int fd1 = -1;
  EXPECT_TRUE(Eventually([&] { return (fd1 = CountFds(spid)) <= fd0; }, 10000))
      << "server fds " << fd0 << " -> " << fd1 << ": " << DescribeFds(spid);
  ExpectServes(url_);
}

TEST_P(Robust, StalledPartialFramesDoNotStallOthers) {
  // Slowloris: peers that send part of a frame (or of the shm hello) and
  // stall must not hold up the accept loop or other clients.
  ASSERT_NO_FATAL_FAILURE(StartServer());
  std::vector<int> raws;
  std::string partial =
      WireRequest(1, "echo", std::string(100, 'x')).substr(0, 30);
  for (int i = 0; i < 5; i++) {
    int fd = RawConnect();
    ASSERT_GE(fd, 0);
    SendAll(fd, partial.data(), (size_t)(i * 6)); // 0, 6, 12, 18, 24 bytes
    raws.push_back(fd);
  }
  int64_t t0 = NowMs();
  ExpectServes(url_);
  EXPECT_LT(NowMs() - t0, 2000);
  for (int fd : raws)
    close(fd);
  ExpectServes(url_);
}

// Over tls the certificate's DNS name (localhost) and IPv6 address (::1)
// are what the client verifies.
static std::string WithHost(std::string url, const std::string &host) {
  return url.replace(url.find("127.0.0.1"), 9, host);
}

TEST_P(Robust, TcpByHostName) {
  if (!is_tcp())
    GTEST_SKIP() << "tcp and tls only";
  ASSERT_NO_FATAL_FAILURE(StartServer());
  int rc = 0;
  Client c = Open(WithHost(url_, "localhost"), &rc);
  ASSERT_EQ(0, rc) << ErrName(rc);
  std::string resp;
  ASSERT_EQ(0, Call(c.get(), "echo", "by name", &resp));
  EXPECT_EQ(resp, "by name");
}

TEST_P(Robust, TcpIpv6Loopback) {
  if (!is_tcp())
    GTEST_SKIP() << "tcp and tls only";
  std::ifstream f("/proc/net/if_inet6");
  std::string all((std::istreambuf_iterator<char>(f)),
                  std::istreambuf_iterator<char>());
  if (all.find("00000000000000000000000000000001") == std::string::npos)
    GTEST_SKIP() << "no ::1 on this host";
  url_ = WithHost(url_, "[::1]");
  listen_url_ = WithHost(listen_url_, "[::1]");
  ASSERT_NO_FATAL_FAILURE(StartServer());
  Client c = MustOpen();
  ASSERT_TRUE(c);
  std::string resp;
  ASSERT_EQ(0, Call(c.get(), "echo", "v6", &resp));
  EXPECT_EQ(resp, "v6");
}

TEST_P(Robust, ManyThreadsOnTwoCoresAllFinish) {
  // More busy callers than cores: adaptive spinning must back off so that
  // everybody makes progress (a spin storm would take minutes).
  ASSERT_NO_FATAL_FAILURE(StartServer());
  const int kThreads = 12, kCalls = 300;
  std::atomic<int> bad{0};
  int64_t t0 = NowMs();
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; t++)
    ts.emplace_back([&, t] {
      Client c = Open(url_);
      if (!c) {
        bad++;
        return;
      }
      for (int i = 0; i < kCalls; i++) {
        std::string req = std::to_string(t * kCalls + i), resp;
        if (Call(c.get(), "echo", req, &resp) != 0 || resp != req)
          bad++;
      }
    });
  for (auto &t : ts)
    t.join();
  int64_t ms = NowMs() - t0;
  EXPECT_EQ(bad.load(), 0);
  EXPECT_LT(ms, 30000);
  printf("[ info ] %s: %d threads x %d calls in %lld ms\n", transport().c_str(),
         kThreads, kCalls, (long long)ms);
}

// ---- stopping in odd places (in-process) ----

int StopFromHandler(void *ctx, const void *, size_t, svc_reply *r) {
  svc_server_stop(static_cast<svc_server *>(ctx));
  return svc_reply_set(r, "bye", 3);
}

int EchoH(void *, const void *req, size_t len, svc_reply *r) {
  return svc_reply_set(r, req, len);
}

TEST_P(Robust, StopFromAHandler) {
  svc_server *s = nullptr;
  ASSERT_EQ(0, svc_server_new(name_.c_str(), &s));
  ASSERT_EQ(0, svc_server_method(s, "stop", StopFromHandler, s));
  ASSERT_EQ(0, svc_server_listen(s, listen_url_.c_str()));
  std::atomic<bool> done{false};
  std::atomic<int> run_rc{1};
  std::thread t([&] {
    run_rc = svc_server_run(s);
    done = true;
  });
  {
    Client c = MustOpen();
    ASSERT_TRUE(c);
    int rc = Call(c.get(), "stop", "");
    EXPECT_TRUE(rc == 0 || rc == SVC_EPEERGONE) << ErrName(rc);
  }
  if (!Eventually([&] { return done.load(); }, 5000)) {
    ADD_FAILURE() << "svc_server_run did not return after stop from a handler";
    t.detach();
    return;
  }
  t.join();
  EXPECT_EQ(0, run_rc.load());
  svc_server_free(s);
}

TEST_P(Robust, StopBeforeRun) {
  // A stop request (say, from a signal handler) that lands before run
  // starts must not be lost: run returns at once instead of serving forever.
  svc_server *s = nullptr;
  ASSERT_EQ(0, svc_server_new(name_.c_str(), &s));
  ASSERT_EQ(0, svc_server_method(s, "echo", EchoH, nullptr));
  ASSERT_EQ(0, svc_server_listen(s, listen_url_.c_str()));
  svc_server_stop(s);
  std::atomic<bool> done{false};
  std::thread t([&] {
    svc_server_run(s);
    done = true;
  });
  if (!Eventually([&] { return done.load(); }, 3000)) {
    ADD_FAILURE() << "svc_server_run ignored a stop requested before it ran";
    svc_server_stop(s); // now it is running: this one must work
    if (!Eventually([&] { return done.load(); }, 3000)) {
      t.detach();
      return;
    }
  }
  t.join();
  svc_server_free(s);
}

// Live (non-zombie) children of parent, from /proc/*/stat.
std::vector<pid_t> ChildPids(pid_t parent) {
  std::vector<pid_t> out;
  for (const std::string &e : ListDir("/proc")) {
    pid_t p = (pid_t)atoi(e.c_str());
    if (p <= 0)
      continue;
    FILE *f = fopen(("/proc/" + e + "/stat").c_str(), "r");
    if (!f)
      continue;
    char buf[512];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *rp = strrchr(buf, ')');
    char state;
    int pp;
    if (rp && sscanf(rp + 1, " %c %d", &state, &pp) == 2 && pp == parent &&
        state != 'Z')
      out.push_back(p);
  }
  return out;
}

TEST_P(Robust, MasterKilledLeavesNoOrphanWorkers) {
  // docs/workers.md: workers set PR_SET_PDEATHSIG, so kill -9 of the master
  // takes them along.
  ScopedEnv wmin("SVC_WORKERS_MIN", "2"), wmax("SVC_WORKERS_MAX", "2");
  ASSERT_NO_FATAL_FAILURE(StartServer());
  std::vector<pid_t> w;
  Eventually([&] { return (w = ChildPids(ServerPid())).size() == 2; }, 10000);
  ASSERT_EQ(w.size(), 2u) << "expected 2 workers";
  ExpectServes(url_);
  server_->Kill(SIGKILL);
  server_->Wait();
  for (pid_t p : w) {
    bool gone = Eventually([&] { return kill(p, 0) != 0; }, 5000);
    EXPECT_TRUE(gone) << "orphan worker " << p;
    if (!gone)
      kill(p, SIGKILL);
  }
}

SVC_ALL_TRANSPORTS(Robust);

} // namespace
} // namespace svctest

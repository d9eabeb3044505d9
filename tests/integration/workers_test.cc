// workers_test.cc — worker processes (issue 6): a fixed pool serves from
// several pids, a 1..2 pool grows under CPU load and shrinks after it
// without failing a call, a killed worker is replaced and its clients
// reconnect, and SIGTERM to the master leaves no worker behind.
#include <dirent.h>
#include <signal.h>

#include <atomic>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "fixture.h"

// TSan: GCC says __SANITIZE_THREAD__, clang (the tsan preset) says it
// through __has_feature.
#if defined(__SANITIZE_THREAD__)
#define SVC_TEST_UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SVC_TEST_UNDER_TSAN 1
#endif
#endif
#ifndef SVC_TEST_UNDER_TSAN
#define SVC_TEST_UNDER_TSAN 0
#endif

namespace svctest {
namespace {

// Pids whose parent is ppid (from /proc/PID/stat, parsed after the ')').
std::set<pid_t> ChildrenOf(pid_t ppid) {
  std::set<pid_t> out;
  DIR *d = opendir("/proc");
  if (!d)
    return out;
  while (dirent *e = readdir(d)) {
    pid_t pid = atoi(e->d_name);
    if (pid <= 0)
      continue;
    std::string s = ReadProcFile("/proc/" + std::string(e->d_name) + "/stat");
    size_t close = s.rfind(')');
    if (close == std::string::npos)
      continue;
    std::istringstream rest(s.substr(close + 1));
    char state;
    int parent = 0;
    rest >> state >> parent;
    if (parent == ppid && state != 'Z')
      out.insert(pid);
  }
  closedir(d);
  return out;
}

// Waits up to timeout_ms until pred() holds.
template <typename F> bool WaitFor(F pred, int timeout_ms) {
  int64_t end = NowMs() + timeout_ms;
  while (NowMs() < end) {
    if (pred())
      return true;
    SleepMs(50);
  }
  return pred();
}

int CallPid(svc_client *c, pid_t *pid) {
  std::string resp;
  int rc = Call(c, "pid", "", &resp);
  if (rc == 0)
    *pid = atoi(resp.c_str());
  return rc;
}

class WorkersTest : public SvcTest {};

TEST_P(WorkersTest, FixedPoolServesFromSeveralWorkerPids) {
  ScopedEnv min("SVC_WORKERS_MIN", "3"), max("SVC_WORKERS_MAX", "3");
  StartServer();
  ASSERT_TRUE(
      WaitFor([&] { return ChildrenOf(ServerPid()).size() == 3; }, 20000));
  std::set<pid_t> workers = ChildrenOf(ServerPid());
  std::set<pid_t> seen;
  std::vector<Client> clients;
  for (int i = 0; i < 24 && seen.size() < 2; i++) {
    clients.push_back(MustOpen());
    pid_t pid = 0;
    ASSERT_EQ(0, CallPid(clients.back().get(), &pid));
    EXPECT_TRUE(workers.count(pid)) << pid << " is not a worker";
    seen.insert(pid);
  }
  EXPECT_GE(seen.size(), 2u) << "every connection went to one worker";
}

// Regression (found by ci/bench's workers rows, issue 12's session): four
// clients that connect the moment the server listens, before its second
// worker was forked, all went to the first worker, which then did all the
// work while the other idled. Connections made during start-up are spread
// over the minimum pool too; start-up lasts until each of its workers
// polls, not only until the master forked them (CI's ASan run, stop 24).
TEST_P(WorkersTest, ConnectionsMadeAtStartAreSpreadOverTheMinimumPool) {
#if SVC_TEST_UNDER_TSAN
  // A worker leaves a connection to a less loaded one for at most 1 ms;
  // under TSan a worker takes longer than that to accept.
  GTEST_SKIP() << "start-up balancing is time-bounded; TSan is too slow";
#endif
  ScopedEnv min("SVC_WORKERS_MIN", "2"), max("SVC_WORKERS_MAX", "2");
  int spread = 0;
  const int kRounds = 10;
  for (int round = 0; round < kRounds; round++) {
    StartServer(); // returns once it listens: the workers may not exist
    std::vector<Client> clients;
    std::set<pid_t> seen;
    for (int i = 0; i < 4; i++)
      clients.push_back(MustOpen());
    for (Client &c : clients) {
      pid_t pid = 0;
      ASSERT_EQ(0, CallPid(c.get(), &pid));
      seen.insert(pid);
    }
    spread += seen.size() >= 2;
    clients.clear();
    server_->Kill(SIGTERM); // the master stops its workers, then exits
    server_->Wait();
  }
  // Balancing waits at most 1 ms for the other worker to take a
  // connection: with the CPU oversubscribed (ASan in CI, ctest -j2) that
  // worker is sometimes not scheduled in time and one round meets one
  // worker. Before the fix every round did.
  EXPECT_GE(spread, kRounds - 2)
      << "connections made at start-up met one worker";
}

TEST_P(WorkersTest, GrowsUnderLoadShrinksAfterWithoutFailedCalls) {
  ScopedEnv min("SVC_WORKERS_MIN", "1"), max("SVC_WORKERS_MAX", "2");
  ScopedEnv iv("SVC_SCALE_INTERVAL_MS", "200"), up("SVC_SCALE_UP_SECS", "1");
  // Low thresholds: on a busy 2-core machine (ctest -j2, CI, sanitizers)
  // two burning clients may get well under a core; what matters is busy
  // against idle.
  ScopedEnv upp("SVC_SCALE_UP_PCT", "30"), down("SVC_SCALE_DOWN_SECS", "2");
  ScopedEnv downp("SVC_SCALE_DOWN_PCT", "10");
  ScopedEnv grace("SVC_RETIRE_GRACE_MS", "1000");
  StartServer();
  ASSERT_TRUE(
      WaitFor([&] { return ChildrenOf(ServerPid()).size() == 1; }, 20000));
  std::atomic<bool> burning{true}, ticking{true};
  std::atomic<int> errors{0}, calls{0}, moved{0};
  auto burner = [&] {
    Client c = MustOpen();
    while (burning && c) {
      if (Call(c.get(), "burn", "40") != 0)
        errors++;
      calls++;
    }
  };
  // Light traffic that must survive the retirement: clients served by the
  // new worker (the one that retires) keep calling; each must end up on
  // the old one without a failed call.
  auto ticker = [&](Client c) {
    std::set<pid_t> pids;
    while (ticking && c) {
      pid_t pid = 0;
      int rc = CallPid(c.get(), &pid);
      if (rc != 0) {
        errors++;
        ADD_FAILURE() << "ticker call: " << ErrName(rc);
      }
      pids.insert(pid);
      calls++;
      SleepMs(20);
    }
    if (pids.size() > 1)
      moved++;
  };
  pid_t first = *ChildrenOf(ServerPid()).begin();
  std::vector<std::thread> burners, tickers;
  // Whatever ends this test (an exception included: once in a while under
  // ASan with ctest -j2 this test died in std::terminate, a joinable thread
  // destroyed while unwinding), the threads are stopped and joined first,
  // so the reason is reported instead of an abort.
  struct JoinAll {
    std::atomic<bool> &burning, &ticking;
    std::vector<std::thread> &a, &b;
    ~JoinAll() {
      burning = false;
      ticking = false;
      for (auto *v : {&a, &b})
        for (auto &t : *v)
          if (t.joinable())
            t.join();
    }
  } join_all{burning, ticking, burners, tickers};
  bool grew = false;
  try {
    burners.emplace_back(burner);
    burners.emplace_back(burner);
    grew = WaitFor([&] { return ChildrenOf(ServerPid()).size() == 2; }, 60000);
    for (int i = 0; grew && i < 200 && tickers.size() < 3; i++) {
      Client c = MustOpen();
      pid_t pid = 0;
      if (c && CallPid(c.get(), &pid) == 0 && pid != first)
        tickers.emplace_back(ticker, std::move(c));
    }
  } catch (const std::exception &e) {
    FAIL() << "exception while starting the load: " << e.what();
  }
  burning = false;
  for (auto &t : burners)
    t.join();
  bool shrank =
      WaitFor([&] { return ChildrenOf(ServerPid()).size() == 1; }, 90000);
  SleepMs(300);
  ticking = false;
  for (auto &t : tickers)
    t.join();
  EXPECT_TRUE(grew) << "no second worker under load";
  EXPECT_TRUE(shrank) << "still " << ChildrenOf(ServerPid()).size()
                      << " workers after the load stopped";
  EXPECT_EQ(0, errors.load()) << "of " << calls.load() << " calls";
  EXPECT_EQ(3u, tickers.size()) << "could not reach the new worker";
  EXPECT_EQ((int)tickers.size(), moved.load())
      << "clients of the retired worker did not move";
}

TEST_P(WorkersTest, KilledWorkerIsReplacedAndItsClientReconnects) {
  ScopedEnv min("SVC_WORKERS_MIN", "2"), max("SVC_WORKERS_MAX", "2");
  StartServer();
  ASSERT_TRUE(
      WaitFor([&] { return ChildrenOf(ServerPid()).size() == 2; }, 20000));
  Client c = MustOpen();
  pid_t first = 0;
  ASSERT_EQ(0, CallPid(c.get(), &first));
  ASSERT_EQ(0, kill(first, SIGKILL));
  ASSERT_TRUE(WaitFor(
      [&] {
        auto kids = ChildrenOf(ServerPid());
        return kids.size() == 2 && !kids.count(first);
      },
      20000))
      << "the killed worker was not replaced";
  pid_t second = 0;
  ASSERT_EQ(0, CallPid(c.get(), &second)) << "no transparent reconnect";
  EXPECT_NE(first, second);
}

TEST_P(WorkersTest, SigtermToMasterLeavesNoWorker) {
  ScopedEnv min("SVC_WORKERS_MIN", "3"), max("SVC_WORKERS_MAX", "3");
  StartServer();
  ASSERT_TRUE(
      WaitFor([&] { return ChildrenOf(ServerPid()).size() == 3; }, 20000));
  std::set<pid_t> workers = ChildrenOf(ServerPid());
  Client c = MustOpen(); // a connected client must not keep one alive
  ASSERT_EQ(0, Call(c.get(), "echo", "x"));
  server_->Kill(SIGTERM);
  int st = server_->Wait(20000);
  EXPECT_TRUE(WIFEXITED(st)) << "master status " << st;
  for (pid_t w : workers)
    EXPECT_TRUE(WaitFor([&] { return kill(w, 0) != 0; }, 5000))
        << "worker " << w << " outlived the master";
}

INSTANTIATE_TEST_SUITE_P(Transports, WorkersTest,
                         ::testing::Values("shm", "unix", "tcp", "tls"),
                         [](const auto &info) { return info.param; });

} // namespace
} // namespace svctest

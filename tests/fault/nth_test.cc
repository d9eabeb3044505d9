// nth_test.cc — SQLite-style "fail the Nth call" tests (issue 17). Each
// scenario runs once with every wrapped system call and allocation counted
// (libsvc/src/sys.h), then again with call 1 failed, then call 2, ..., until
// a run in which no call was failed. Every run must end in success or a
// clean SVC_E* code within a bounded time, leave no fd behind (ASan's leak
// check covers memory at exit), and the next attempt must succeed.
//
// Client scenarios fail calls in this process (which links svc_internal)
// against an ordinary test_server; server scenarios run fault_server, which
// arms the same counter in the server process from SVC_TEST_FAULT.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "fault.h"
#include "fixture.h"
#include "harness.h"

using namespace svctest;

namespace {

// A known SVC_E* code (not success, not a number the library never names).
bool CleanError(int rc) {
  return rc < 0 && std::string(svc_err_name(rc)) != "SVC_EUNKNOWN";
}

// What the current run arms: Armed() runs the part of a scenario under test
// with it, so setup and checks around it are never failed.
struct Plan {
  uint64_t mask = 0;
  long nth = 0; // 0: count only
  bool persistent = false;
  long calls = 0, injected = 0;
  int last_op = -1;
};
Plan plan;

template <class F> int Armed(F fn) {
  svc__fault_arm(plan.mask, plan.nth, plan.persistent, 0);
  int rc = fn();
  svc__fault_disarm();
  plan.calls += svc__fault_calls();
  plan.injected += svc__fault_injected();
  if (svc__fault_injected())
    plan.last_op = svc__fault_last_op();
  return rc;
}

int RunWith(long nth, const std::function<int()> &run) {
  plan.nth = nth;
  plan.calls = plan.injected = 0;
  plan.last_op = -1;
  return run();
}

// The loop itself. run() returns 0 or the first SVC_E* it met, closes what
// it opened, and checks with EXPECT whatever must hold after its Armed part
// (a client that opened must work, say). Returns the number of runs.
long FailEachCall(const std::string &what, uint64_t mask, bool persistent,
                  const std::function<int()> &run, int bound_ms = 8000) {
  plan.mask = mask;
  plan.persistent = persistent;
  int rc = RunWith(0, run);
  EXPECT_EQ(0, rc) << what << " fails with no fault: " << ErrName(rc);
  long total = plan.calls;
  EXPECT_GT(total, 0) << what << " made no wrapped call";
  if (rc != 0 || total == 0)
    return 0;
  // Once more unfailed: the first run may make what later runs reuse.
  EXPECT_EQ(0, RunWith(0, run));
  int fds = CountFds(getpid());
  long n = 1;
  for (;; n++) {
    int64_t t0 = NowMs();
    rc = RunWith(n, run);
    int64_t took = NowMs() - t0;
    long injected = plan.injected;
    std::string at = what + ", call " + std::to_string(n) + " (" +
                     svc__fault_op_name(plan.last_op) + ") failed" +
                     (persistent ? " and every one after" : "");
    EXPECT_LE(took, bound_ms) << at << ": took " << took << " ms";
    if (took > 1000) // within bounds, but worth knowing
      printf("  %s: took %lld ms (%s)\n", at.c_str(), (long long)took,
             ErrName(rc).c_str());
    EXPECT_TRUE(rc == 0 || CleanError(rc)) << at << ": " << ErrName(rc);
    int again = RunWith(0, run);
    EXPECT_EQ(0, again) << at << ": the next attempt failed with "
                        << ErrName(again);
    EXPECT_TRUE(Eventually([&] { return CountFds(getpid()) == fds; }, 2000))
        << at << ": " << CountFds(getpid()) << " fds, " << fds
        << " before: " << DescribeFds(getpid());
    if (injected == 0 || ::testing::Test::HasFailure())
      break; // past the last call, or one clear report is enough
    if (n > total * 4 + 200) {
      ADD_FAILURE() << what << ": still failing calls after " << n
                    << " runs (a retry loop without end?)";
      break;
    }
  }
  printf("%s: %ld wrapped calls, each failed in turn: %ld runs\n", what.c_str(),
         total, n);
  return n;
}

class Nth : public SvcTest {
public:
  void SetUp() override {
    SvcTest::SetUp();
    StartServer();
  }

  // Opens unfailed, with a timeout so no run can hang on a lost reply.
  Client OpenTimed() {
    Client c = MustOpen();
    if (c)
      svc_client_set_timeout(c.get(), 3000);
    return c;
  }

  // A call on c that must work: the reply checked too.
  static int MustEcho(svc_client *c, const std::string &req) {
    std::string resp;
    int rc = Call(c, "echo", req, &resp);
    EXPECT_EQ(0, rc) << ErrName(rc) << ": " << svc_client_last_error_text(c);
    EXPECT_TRUE(rc != 0 || resp == req) << "a wrong reply";
    return rc;
  }

  // Once failing one call, once failing that call and all after it. A
  // run is bounded by the 3 s call timeout (a lost reply waits it out).
  void Both(const std::string &what, const std::function<int()> &run,
            int bound_ms = 4000) {
    FailEachCall(what, SVC_FAULT_ALL, false, run, bound_ms);
    if (!HasFailure())
      FailEachCall(what, SVC_FAULT_ALL, true, run, bound_ms);
  }
};

TEST_P(Nth, ClientOpen) {
  Both(
      "client open",
      [&]() -> int {
        svc_client *c = nullptr;
        int rc = Armed([&] { return svc_client_open(url_.c_str(), &c); });
        if (rc != 0) {
          EXPECT_EQ(nullptr, c);
          return rc;
        }
        svc_client_set_timeout(c, 3000);
        rc = MustEcho(c, "opened despite a failure: it must work");
        svc_client_close(c);
        return rc;
      },
      // A failed open is quick: a hello that could not be sent once
      // waited 5 s for an ack that could not come.
      1500);
}

TEST_P(Nth, FirstCall) {
  Both("first call", [&]() -> int {
    Client c = OpenTimed();
    if (!c)
      return SVC_ESYS;
    std::string resp;
    int rc = Armed([&] { return Call(c.get(), "echo", "first", &resp); });
    EXPECT_TRUE(rc != 0 || resp == "first");
    // The same client goes on: a broken connection is made again.
    int next = MustEcho(c.get(), "second");
    return rc ? rc : next;
  });
}

TEST_P(Nth, LargeCall) {
  // A 1 MiB request and reply: the shm region grows, stream buffers grow.
  std::string big = RandomBytes(17, 1 << 20);
  Both("large call", [&]() -> int {
    Client c = OpenTimed();
    if (!c)
      return SVC_ESYS;
    if (MustEcho(c.get(), "small first") != 0)
      return SVC_ESYS;
    std::string resp;
    int rc = Armed([&] { return Call(c.get(), "echo", big, &resp); });
    EXPECT_TRUE(rc != 0 || resp == big);
    // Smaller calls go on at once, then the large one works.
    int next = MustEcho(c.get(), "small after");
    if (next == 0)
      next = MustEcho(c.get(), big);
    return rc ? rc : next;
  });
}

TEST_P(Nth, PipelinedBatch) {
  const int kBatch = 8;
  Both("pipelined batch", [&]() -> int {
    Client c = OpenTimed();
    if (!c)
      return SVC_ESYS;
    int sent = 0, finished = 0, first_rc = 0;
    int rc = Armed([&] {
      for (int i = 0; i < kBatch; i++) {
        uint64_t id = 0;
        std::string req = "call " + std::to_string(i);
        int r = svc_call_send(c.get(), "echo", req.data(), req.size(), &id);
        if (r != 0)
          return r;
        sent++;
      }
      while (finished < sent) {
        uint64_t id = 0;
        const void *p;
        size_t n;
        int r = svc_call_recv(c.get(), 3000, &id, &p, &n);
        if (id == 0)
          return r; // nothing more will come: a lost completion
        finished++;
        if (r != 0 && first_rc == 0)
          first_rc = r;
      }
      return first_rc;
    });
    // Every call sent finishes exactly once, failed or not.
    while (finished < sent) {
      uint64_t id = 0;
      const void *p;
      size_t n;
      svc_call_recv(c.get(), 3000, &id, &p, &n);
      if (id == 0)
        break;
      finished++;
    }
    EXPECT_EQ(sent, finished) << "calls sent that never finished";
    // The next batch on the same client all succeeds.
    int next = 0;
    for (int i = 0; i < kBatch && next == 0; i++) {
      uint64_t id;
      next = svc_call_send(c.get(), "echo", "again", 5, &id);
    }
    for (int i = 0; i < kBatch && next == 0; i++) {
      uint64_t id = 0;
      const void *p;
      size_t n;
      next = svc_call_recv(c.get(), 3000, &id, &p, &n);
    }
    EXPECT_EQ(0, next) << ErrName(next);
    return rc ? rc : next;
  });
}

INSTANTIATE_TEST_SUITE_P(Transports, Nth,
                         ::testing::Values("shm", "unix", "tcp", "tls"),
                         ParamName);

// ---- the server's side: failures inside fault_server ----

class ServerNth : public SvcTest {
public:
  // Starts fault_server with SVC_TEST_FAULT=spec (armed after READY).
  // Returns its start status (0 when READY).
  int StartFaulty(const std::string &spec,
                  const std::vector<std::string> &extra) {
    report_ = tmp_->path() + "/fault-report";
    unlink(report_.c_str());
    ScopedEnv f("SVC_TEST_FAULT", spec.empty() ? nullptr : spec.c_str());
    ScopedEnv r("SVC_TEST_FAULT_REPORT", report_.c_str());
    for (int attempt = 0; attempt < 5; attempt++) {
      server_ = std::make_unique<ServerProc>();
      server_->UseBinary(SVC_FAULT_SERVER);
      std::vector<std::string> args = {"--name", name_, "--listen",
                                       listen_url_};
      args.insert(args.end(), extra.begin(), extra.end());
      int st = server_->Start(args);
      if (st != 0 && is_tcp() && WIFEXITED(st) && WEXITSTATUS(st) == 3) {
        NewUrl();
        continue;
      }
      return st;
    }
    return -1;
  }

  // The counters fault_server wrote at exit: calls and injected.
  bool ReadReport(long *calls, long *injected, std::string *op) {
    std::ifstream in(report_);
    return static_cast<bool>(in >> *calls >> *injected >> *op);
  }

  // One scenario under a server whose call n (0: none) fails: clients call
  // it; it must keep serving or exit with a clean error (status 2, never a
  // signal); stopped with SIGTERM it must exit 0 within 10 s (under ASan,
  // leaks make that exit non-zero). Returns the injected count, -1 on a
  // failure already reported.
  long RunServerScenario(long n, const std::string &ops,
                         const std::vector<std::string> &extra, int clients) {
    std::string spec = ops + ":" + std::to_string(n);
    std::string at = "server " + spec;
    int64_t t0 = NowMs();
    int st = StartFaulty(spec, extra);
    EXPECT_EQ(0, st) << at << ": did not start";
    if (st != 0)
      return -1;
    bool failed = false;
    for (int i = 0; i < clients; i++) {
      int rc = 0;
      Client c = Open(url_, &rc);
      if (c) {
        svc_client_set_timeout(c.get(), 3000);
        std::string resp;
        rc = Call(c.get(), "echo", "x", &resp);
      }
      EXPECT_TRUE(rc == 0 || CleanError(rc)) << at << ": " << ErrName(rc);
      failed |= rc != 0;
      if (!server_->Alive())
        break;
    }
    // A server that cannot start serving exits (status 2, checked below):
    // give it the moment that takes before asking it to serve again.
    if (failed)
      Eventually([&] { return !server_->Alive(); }, 500);
    if (server_->Alive()) {
      server_->Kill(SIGUSR2); // the failure phase is over: disarm
      SleepMs(20);
      // After its one failure the server serves everyone again.
      for (int i = 0; i < 3; i++) {
        int rc = 0;
        Client c = Open(url_, &rc);
        EXPECT_EQ(0, rc) << at
                         << ": a client after the failure: " << ErrName(rc);
        if (c) {
          svc_client_set_timeout(c.get(), 3000);
          std::string resp;
          rc = Call(c.get(), "echo", "after", &resp);
          EXPECT_EQ(0, rc) << at
                           << ": a call after the failure: " << ErrName(rc);
        }
      }
      // Every connection closed: the server holds no more fds than after
      // the same clients in the run without a failure.
      if (n == 0) {
        SleepMs(300);
        final_fds_ = CountFds(ServerPid());
      }
      EXPECT_TRUE(
          Eventually([&] { return CountFds(ServerPid()) <= final_fds_; }, 3000))
          << at << ": " << CountFds(ServerPid()) << " fds, " << final_fds_
          << " without a failure: " << DescribeFds(ServerPid());
      server_->Kill(SIGTERM);
    }
    st = server_->Wait(10000);
    bool clean =
        WIFEXITED(st) && (WEXITSTATUS(st) == 0 || WEXITSTATUS(st) == 2);
    EXPECT_TRUE(clean) << at << ": server ended with status " << st
                       << (WIFSIGNALED(st) ? " (a signal)" : "");
    long calls = 0, injected = 0;
    std::string op;
    EXPECT_TRUE(ReadReport(&calls, &injected, &op)) << at << ": no report";
    if (::testing::Test::HasFailure())
      printf("%s: the call failed was a %s call\n", at.c_str(), op.c_str());
    // A failure costs at most one call's 3 s timeout: a TLS session ticket
    // the server could not send once made its client wait 5 s more.
    int64_t took = NowMs() - t0;
    EXPECT_LE(took, 5000) << at << " (" << op << " failed): took " << took
                          << " ms";
    if (took > 1500) // within bounds, but worth knowing
      printf("  %s (%s failed): took %lld ms\n", at.c_str(), op.c_str(),
             (long long)took);
    if (!clean)
      return -1;
    if (n == 0)
      counted_ = calls;
    return injected;
  }

  void FailEachServerCall(const std::string &what, const std::string &ops,
                          const std::vector<std::string> &extra, int clients) {
    ASSERT_EQ(0, RunServerScenario(0, ops, extra, clients));
    ASSERT_GT(counted_, 0) << what << ": no wrapped call counted";
    long n = 1;
    for (;; n++) {
      long injected = RunServerScenario(n, ops, extra, clients);
      if (injected <= 0 || HasFailure())
        break;
      if (n > counted_ * 4 + 200) {
        ADD_FAILURE() << what << ": still failing after " << n << " runs";
        break;
      }
    }
    printf("%s: %ld wrapped calls in the server, each failed in turn: %ld "
           "runs\n",
           what.c_str(), counted_, n);
  }

  std::string report_;
  long counted_ = 0;
  int final_fds_ = 0;
};

// Serving from the start: the epoll set, threads, accept, the handshake
// (memfd, mmap, seals on shm; TLS on tls), the call and the reply.
TEST_P(ServerNth, AcceptAndServe) {
  FailEachServerCall("server accept and serve", "all", {}, 2);
}

// The master's worker processes: forking them, their start, their serving.
TEST_P(ServerNth, WorkerFork) {
  if (transport() != "shm" && transport() != "unix")
    GTEST_SKIP() << "workers are the same on every transport; shm and unix "
                    "cover their two listener kinds";
  FailEachServerCall("worker fork", "fork,fd,thread,pipe,mmap,alloc",
                     {"--workers", "2:3"}, 2);
}

INSTANTIATE_TEST_SUITE_P(Transports, ServerNth,
                         ::testing::Values("shm", "unix", "tcp", "tls"),
                         ParamName);

} // namespace

// call_test.cc — calls against a test_server process, each body run over
// shm://, unix:// and tcp://: payload sizes up to 16 MiB, error statuses,
// timeouts, message-size limits, many clients and many processes at once.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <random>
#include <thread>

#include "fixture.h"

namespace svctest {
namespace {

using Calls = SvcTest;

const size_t kSizes[] = {0,    1,     64,       4095,     4096,
                         4097, 65536, 1u << 20, 16u << 20};

TEST_P(Calls, EchoEverySize) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  Client c = MustOpen();
  ASSERT_TRUE(c);
  for (const char *method : {"echo", "echo_set"}) {
    for (size_t n : kSizes) {
      SCOPED_TRACE(::testing::Message() << method << " " << n << " bytes");
      std::string req = RandomBytes(n * 31 + 7, n), resp;
      int rc = Call(c.get(), method, req, &resp);
      ASSERT_EQ(0, rc) << ErrName(rc);
      ASSERT_EQ(resp.size(), n);
      ASSERT_TRUE(resp == req) << "contents differ";
    }
  }
}

TEST_P(Calls, SizesDownAfterUp) {
  // Growth on shm must not break smaller calls that follow a large one.
  ASSERT_NO_FATAL_FAILURE(StartServer());
  Client c = MustOpen();
  ASSERT_TRUE(c);
  const size_t order[] = {16u << 20, 0, 1, 4097, 1u << 20, 64, 16u << 20, 5};
  for (size_t n : order) {
    std::string req = RandomBytes(n + 1, n), resp;
    ASSERT_EQ(0, Call(c.get(), "echo", req, &resp)) << n;
    ASSERT_TRUE(resp == req) << n;
  }
}

TEST_P(Calls, ChecksumOfLargeRequests) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  Client c = MustOpen();
  ASSERT_TRUE(c);
  for (size_t n : kSizes) {
    std::string req = RandomBytes(n ^ 0x55, n), resp;
    int rc = Call(c.get(), "checksum", req, &resp);
    ASSERT_EQ(0, rc) << n << " " << ErrName(rc);
    ASSERT_EQ(resp.size(), 8u);
    uint64_t got = 0;
    for (int i = 7; i >= 0; i--)
      got = got << 8 | (uint8_t)resp[(size_t)i];
    EXPECT_EQ(got, Fnv1a64(req.data(), req.size())) << n;
  }
}

TEST_P(Calls, LargeReplies) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  Client c = MustOpen();
  ASSERT_TRUE(c);
  for (size_t n : kSizes) {
    std::string resp;
    int rc = Call(c.get(), "big", std::to_string(n), &resp);
    ASSERT_EQ(0, rc) << n << " " << ErrName(rc);
    ASSERT_EQ(resp.size(), n);
    for (size_t i = 0; i < n; i++)
      if ((uint8_t)resp[i] != (uint8_t)(i % 251))
        FAIL() << "byte " << i << " of " << n;
  }
}

TEST_P(Calls, ManySmallCallsOnOneConnection) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  Client c = MustOpen();
  ASSERT_TRUE(c);
  for (int i = 0; i < 5000; i++) {
    std::string req = "call " + std::to_string(i), resp;
    ASSERT_EQ(0, Call(c.get(), "echo", req, &resp)) << i;
    ASSERT_EQ(resp, req);
  }
}

TEST_P(Calls, UnknownMethod) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  Client c = MustOpen();
  ASSERT_TRUE(c);
  int rc = Call(c.get(), "no_such_method", "x");
  EXPECT_EQ(SVC_ENOMETHOD, rc) << ErrName(rc);
  EXPECT_EQ(0, svc_client_handler_code(c.get()));
  rc = Call(c.get(), std::string(SVC_METHOD_MAX, 'm').c_str(), "x");
  EXPECT_EQ(SVC_ENOMETHOD, rc) << "255-byte name: " << ErrName(rc);
  // A method that differs only in case or by a prefix is another method.
  EXPECT_EQ(SVC_ENOMETHOD, Call(c.get(), "ECHO", "x"));
  EXPECT_EQ(SVC_ENOMETHOD, Call(c.get(), "ech", "x"));
  EXPECT_EQ(SVC_ENOMETHOD, Call(c.get(), "echox", "x"));
  std::string resp;
  ASSERT_EQ(0, Call(c.get(), "echo", "still fine", &resp));
  EXPECT_EQ(resp, "still fine");
}

TEST_P(Calls, MethodNameLimitsOnTheClient) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  Client c = MustOpen();
  ASSERT_TRUE(c);
  EXPECT_EQ(SVC_EINVAL, Call(c.get(), "", "x"));
  EXPECT_EQ(SVC_EINVAL,
            Call(c.get(), std::string(SVC_METHOD_MAX + 1, 'm').c_str(), "x"));
  std::string resp;
  ASSERT_EQ(0, Call(c.get(), "echo", "ok", &resp));
  EXPECT_EQ(resp, "ok");
}

TEST_P(Calls, BuiltinPing) {
  // The monitor's readiness probe: every libsvc service answers svc.ping.
  ASSERT_NO_FATAL_FAILURE(StartServer());
  Client c = MustOpen();
  ASSERT_TRUE(c);
  int rc = Call(c.get(), "svc.ping", "");
  EXPECT_EQ(0, rc) << ErrName(rc);
}

TEST_P(Calls, HandlerError) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  Client c = MustOpen();
  ASSERT_TRUE(c);
  EXPECT_EQ(0, svc_client_handler_code(c.get()));
  int rc = Call(c.get(), "fail", "");
  EXPECT_EQ(SVC_EHANDLER, rc) << ErrName(rc);
  EXPECT_EQ(42, svc_client_handler_code(c.get()));
  rc = Call(c.get(), "fail", "7");
  EXPECT_EQ(SVC_EHANDLER, rc) << ErrName(rc);
  EXPECT_EQ(7, svc_client_handler_code(c.get()));
  rc = Call(c.get(), "fail", "2147483647");
  EXPECT_EQ(SVC_EHANDLER, rc) << ErrName(rc);
  EXPECT_EQ(2147483647, svc_client_handler_code(c.get()));
  // The code belongs to the last call: a success clears it.
  ASSERT_EQ(0, Call(c.get(), "echo", "x"));
  EXPECT_EQ(0, svc_client_handler_code(c.get()));
}

TEST_P(Calls, NegativeHandlerReturnIsThatCode) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  Client c = MustOpen();
  ASSERT_TRUE(c);
  int rc = Call(c.get(), "fail", std::to_string(SVC_ESTATE));
  EXPECT_EQ(SVC_ESTATE, rc) << ErrName(rc);
  EXPECT_EQ(0, svc_client_handler_code(c.get()));
  ASSERT_EQ(0, Call(c.get(), "echo", "x"));
}

TEST_P(Calls, Timeout) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  Client c = MustOpen();
  ASSERT_TRUE(c);
  ASSERT_EQ(0, svc_client_set_timeout(c.get(), 100));
  int64_t t0 = NowMs();
  int rc = Call(c.get(), "sleep", "2000");
  int64_t ms = NowMs() - t0;
  EXPECT_EQ(SVC_ETIMEDOUT, rc) << ErrName(rc);
  EXPECT_GE(ms, 90);
  EXPECT_LT(ms, 1500) << "a 100 ms timeout took " << ms << " ms";
  // The client is usable afterwards: the next call gets its own reply, never
  // the late "ok" of the call that timed out. A clean error on the first try
  // is acceptable if the retry works.
  ASSERT_EQ(0, svc_client_set_timeout(c.get(), 10000));
  std::string resp;
  rc = Call(c.get(), "echo", "after", &resp);
  if (rc != 0) {
    // Reported cleanly (a known code, promptly); the retry must work.
    EXPECT_STRNE(svc_err_name(rc), "SVC_EUNKNOWN") << rc;
    RecordProperty("first_call_after_timeout", ErrName(rc));
    rc = Call(c.get(), "echo", "after", &resp);
  }
  ASSERT_EQ(0, rc) << ErrName(rc);
  EXPECT_EQ(resp, "after");
  // And again, after the server has finished the slow call.
  SleepMs(2100);
  ASSERT_EQ(0, Call(c.get(), "echo", "later", &resp));
  EXPECT_EQ(resp, "later");
}

TEST_P(Calls, TimeoutDoesNotFireOnQuickCalls) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  Client c = MustOpen();
  ASSERT_TRUE(c);
  ASSERT_EQ(0, svc_client_set_timeout(c.get(), 5000));
  for (int i = 0; i < 200; i++)
    ASSERT_EQ(0, Call(c.get(), "echo", "q"));
  std::string resp;
  ASSERT_EQ(0, Call(c.get(), "sleep", "50", &resp));
  EXPECT_EQ(resp, "ok");
  ASSERT_EQ(0, svc_client_set_timeout(c.get(), 0));
  ASSERT_EQ(0, Call(c.get(), "sleep", "50", &resp));
}

TEST_P(Calls, RequestOverClientMaxIsTooBigAndConnectionStays) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  Client c = MustOpen();
  ASSERT_TRUE(c);
  ASSERT_EQ(0, svc_client_set_max_msg(c.get(), 4096));
  std::string resp;
  ASSERT_EQ(0, Call(c.get(), "echo", std::string(4096, 'a'), &resp))
      << "exactly the maximum is allowed";
  EXPECT_EQ(resp.size(), 4096u);
  int rc = Call(c.get(), "echo", std::string(4097, 'a'));
  EXPECT_EQ(SVC_ETOOBIG, rc) << ErrName(rc);
  rc = Call(c.get(), "echo", std::string(1 << 20, 'a'));
  EXPECT_EQ(SVC_ETOOBIG, rc) << ErrName(rc);
  rc = Call(c.get(), "echo", "small", &resp);
  ASSERT_EQ(0, rc) << ErrName(rc);
  EXPECT_EQ(resp, "small");
}

TEST_P(Calls, ReplyOverClientMaxIsTooBigAndConnectionStays) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  Client c = MustOpen();
  ASSERT_TRUE(c);
  ASSERT_EQ(0, svc_client_set_max_msg(c.get(), 4096));
  std::string resp;
  int rc = Call(c.get(), "big", "8192", &resp);
  EXPECT_EQ(SVC_ETOOBIG, rc) << ErrName(rc);
  rc = Call(c.get(), "echo", "small", &resp);
  ASSERT_EQ(0, rc) << ErrName(rc);
  EXPECT_EQ(resp, "small");
}

TEST_P(Calls, RequestOverServerMaxIsTooBigAndConnectionStays) {
  ASSERT_NO_FATAL_FAILURE(StartServer({"--max-msg", "65536"}));
  Client c = MustOpen();
  ASSERT_TRUE(c);
  std::string resp;
  ASSERT_EQ(0, Call(c.get(), "echo", std::string(65536, 'a'), &resp));
  int rc = Call(c.get(), "echo", std::string(65537, 'a'));
  EXPECT_EQ(SVC_ETOOBIG, rc) << ErrName(rc);
  rc = Call(c.get(), "echo", "small", &resp);
  ASSERT_EQ(0, rc) << ErrName(rc);
  EXPECT_EQ(resp, "small");
}

TEST_P(Calls, ReplyOverServerMaxIsTooBig) {
  ASSERT_NO_FATAL_FAILURE(StartServer({"--max-msg", "65536"}));
  Client c = MustOpen();
  ASSERT_TRUE(c);
  // svc_reply_alloc returns NULL past the limit; test_server then returns
  // SVC_ETOOBIG from the handler.
  int rc = Call(c.get(), "big", "65537");
  EXPECT_EQ(SVC_ETOOBIG, rc) << ErrName(rc);
  std::string resp;
  ASSERT_EQ(0, Call(c.get(), "big", "65536", &resp));
  EXPECT_EQ(resp.size(), 65536u);
}

TEST_P(Calls, MaxMsgCanChangeBetweenCalls) {
  // Lowering and then raising the limit on a connected client: the new
  // limit applies from the next call, in both directions.
  ASSERT_NO_FATAL_FAILURE(StartServer());
  Client c = MustOpen();
  ASSERT_TRUE(c);
  std::string resp;
  ASSERT_EQ(0, svc_client_set_max_msg(c.get(), 4096));
  ASSERT_EQ(0, Call(c.get(), "echo", std::string(4096, 'a'), &resp));
  EXPECT_EQ(SVC_ETOOBIG, Call(c.get(), "echo", std::string(8192, 'a')));
  ASSERT_EQ(0, svc_client_set_max_msg(c.get(), 4u << 20));
  std::string big = RandomBytes(7, 3u << 20);
  int rc = Call(c.get(), "echo", big, &resp);
  ASSERT_EQ(0, rc) << "3 MiB after raising the limit to 4 MiB: " << ErrName(rc);
  EXPECT_TRUE(resp == big);
  rc = Call(c.get(), "big", std::to_string(3u << 20), &resp);
  ASSERT_EQ(0, rc) << ErrName(rc);
  EXPECT_EQ(resp.size(), 3u << 20);
}

TEST_P(Calls, ReplyExactlyAtClientMax) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  Client c = MustOpen();
  ASSERT_TRUE(c);
  ASSERT_EQ(0, svc_client_set_max_msg(c.get(), 10000));
  std::string resp;
  int rc = Call(c.get(), "big", "10000", &resp);
  ASSERT_EQ(0, rc) << ErrName(rc);
  EXPECT_EQ(resp.size(), 10000u);
  EXPECT_EQ(SVC_ETOOBIG, Call(c.get(), "big", "10001"));
  ASSERT_EQ(0, Call(c.get(), "big", "10000", &resp));
}

TEST_P(Calls, ResponseStaysValidUntilThatClientsNextCall) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  Client a = MustOpen(), b = MustOpen();
  ASSERT_TRUE(a && b);
  std::string want = RandomBytes(3, 10000);
  const void *p = nullptr;
  size_t n = 0;
  ASSERT_EQ(0, svc_call(a.get(), "echo", want.data(), want.size(), &p, &n));
  ASSERT_EQ(n, want.size());
  // Another client's calls must not touch a's reply.
  for (int i = 0; i < 20; i++)
    ASSERT_EQ(0, Call(b.get(), "echo", RandomBytes((uint64_t)i, 10000)));
  EXPECT_EQ(0, memcmp(p, want.data(), n));
}

TEST_P(Calls, SlowCallDoesNotBlockOtherConnections) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  Client slow = MustOpen(), fast = MustOpen();
  ASSERT_TRUE(slow && fast);
  std::atomic<int> slow_rc{1};
  std::thread t([&] { slow_rc = Call(slow.get(), "sleep", "1500"); });
  SleepMs(100);
  int64_t t0 = NowMs();
  std::string resp;
  int rc = Call(fast.get(), "echo", "quick", &resp);
  int64_t ms = NowMs() - t0;
  t.join();
  EXPECT_EQ(0, rc) << ErrName(rc);
  EXPECT_EQ(resp, "quick");
  EXPECT_LT(ms, 1000) << "a call waited behind another connection's handler";
  EXPECT_EQ(0, slow_rc.load());
}

TEST_P(Calls, SixtyFourClientsInOneProcess) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  std::vector<Client> cs;
  for (int i = 0; i < 64; i++) {
    int rc = 0;
    cs.push_back(Open(url_, &rc));
    ASSERT_EQ(0, rc) << "client " << i << ": " << ErrName(rc);
  }
  for (int round = 0; round < 5; round++)
    for (int i = 0; i < 64; i++) {
      std::string req = std::to_string(round) + "/" + std::to_string(i), resp;
      ASSERT_EQ(0, Call(cs[(size_t)i].get(), "echo", req, &resp)) << req;
      ASSERT_EQ(resp, req);
    }
  // All 64 calling at once, one thread each.
  std::atomic<int> failures{0};
  std::vector<std::thread> ts;
  for (int i = 0; i < 64; i++)
    ts.emplace_back([&, i] {
      for (int k = 0; k < 20; k++) {
        std::string req =
                        RandomBytes((uint64_t)(i * 1000 + k), 100 + (size_t)k),
                    resp;
        if (Call(cs[(size_t)i].get(), "echo", req, &resp) != 0 || resp != req)
          failures++;
      }
    });
  for (auto &t : ts)
    t.join();
  EXPECT_EQ(failures.load(), 0);
}

TEST_P(Calls, EightClientProcessesWithChecksums) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  const uint32_t seed = 0x5eed0301u;
  std::vector<pid_t> kids;
  for (int k = 0; k < 8; k++) {
    pid_t p = Fork();
    ASSERT_GE(p, 0);
    if (p == 0) {
      alarm(240); // never outlive a stuck test
      svc_client *c;
      int rc = svc_client_open(url_.c_str(), &c);
      if (rc != 0) {
        fprintf(stderr, "child %d: open: %s\n", k, svc_err_name(rc));
        _exit(10);
      }
      std::mt19937 rng(seed + (uint32_t)k);
      for (int i = 0; i < 300; i++) {
        unsigned r = rng() % 100;
        size_t n = r < 70   ? rng() % 1024
                   : r < 95 ? rng() % 65536
                            : rng() % (1u << 20);
        std::string req = RandomBytes(rng(), n), resp;
        const char *m = (i % 2) ? "checksum" : "echo";
        rc = Call(c, m, req, &resp);
        if (rc != 0) {
          fprintf(stderr, "child %d call %d (%s, %zu bytes): %s\n", k, i, m, n,
                  svc_err_name(rc));
          _exit(11);
        }
        bool ok;
        if (i % 2) {
          uint64_t got = 0;
          for (int b = 7; b >= 0 && resp.size() == 8; b--)
            got = got << 8 | (uint8_t)resp[(size_t)b];
          ok = resp.size() == 8 && got == Fnv1a64(req.data(), req.size());
        } else {
          ok = resp == req;
        }
        if (!ok) {
          fprintf(stderr, "child %d call %d (%s, %zu bytes): wrong reply\n", k,
                  i, m, n);
          _exit(12);
        }
      }
      svc_client_close(c);
      _exit(0);
    }
    kids.push_back(p);
  }
  for (size_t k = 0; k < kids.size(); k++)
    EXPECT_EQ(0, WaitChild(kids[k], 240000))
        << "child " << k << " (seed " << seed << ")";
  EXPECT_TRUE(server_->Alive());
}

TEST_P(Calls, WaitPolicies) {
  // Every combination of client and server wait policy works (they only
  // change behaviour on shm://; elsewhere they are accepted and ignored).
  const char *names[] = {"adaptive", "spin", "block"};
  for (int sp = 0; sp < 3; sp++) {
    ASSERT_NO_FATAL_FAILURE(StartServer({"--wait", names[sp]}));
    for (int cp = 0; cp < 3; cp++) {
      SCOPED_TRACE(std::string("server ") + names[sp] + ", client " +
                   names[cp]);
      Client c = MustOpen();
      ASSERT_TRUE(c);
      ASSERT_EQ(0, svc_client_set_wait(c.get(), (svc_wait_policy)cp));
      for (int i = 0; i < 200; i++) {
        std::string req = RandomBytes((uint64_t)i, (size_t)i * 50), resp;
        ASSERT_EQ(0, Call(c.get(), "echo", req, &resp)) << i;
        ASSERT_TRUE(resp == req) << i;
      }
      std::string resp;
      ASSERT_EQ(0, Call(c.get(), "sleep", "30", &resp));
    }
    server_->Kill(SIGTERM);
    server_->Wait();
    if (is_tcp())
      NewUrl(); // no TIME_WAIT surprises
  }
}

TEST_P(Calls, StartModeServer) {
  // test_server --mode start: svc_server_start on background threads.
  ASSERT_NO_FATAL_FAILURE(StartServer({"--mode", "start"}));
  Client c = MustOpen();
  ASSERT_TRUE(c);
  std::string resp;
  ASSERT_EQ(0, Call(c.get(), "echo", "bg", &resp));
  EXPECT_EQ(resp, "bg");
  c.reset();
  server_->Kill(SIGTERM);
  int st = server_->Wait(10000);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "status " << st;
}

SVC_ALL_TRANSPORTS(Calls);

} // namespace
} // namespace svctest

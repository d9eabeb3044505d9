// builtins_test.cc — the built-in svc.* methods against test_server over
// shm, unix and tcp: ping, info, methods, stats; svc.stats counts what was
// called (calls, errors, bytes, unknown methods), and with 3 worker
// processes it reports the service's total whichever worker answers.
#include <set>
#include <string>
#include <vector>

#include "fixture.h"

namespace svctest {
namespace {

// The number after "key": in the object of method name in a svc.stats
// reply (or at the top level when method is empty); -1 if absent.
long long Field(const std::string &json, const std::string &method,
                const std::string &key) {
  size_t from = 0;
  if (!method.empty()) {
    from = json.find("{\"name\":\"" + method + "\"");
    if (from == std::string::npos)
      return -1;
  }
  size_t end = method.empty() ? json.size() : json.find('}', from);
  size_t at = json.find("\"" + key + "\":", from);
  if (at == std::string::npos || at > end)
    return -1;
  return atoll(json.c_str() + at + key.size() + 3);
}

std::string MustCall(svc_client *c, const char *method,
                     const std::string &req = "") {
  std::string resp;
  int rc = Call(c, method, req, &resp);
  EXPECT_EQ(0, rc) << method << ": " << ErrName(rc);
  return resp;
}

class BuiltinsTest : public SvcTest {};

TEST_P(BuiltinsTest, Ping) {
  StartServer();
  Client c = MustOpen();
  EXPECT_EQ("pong", MustCall(c.get(), "svc.ping"));
}

TEST_P(BuiltinsTest, Info) {
  StartServer();
  Client c = MustOpen();
  std::string info = MustCall(c.get(), "svc.info");
  EXPECT_EQ(0u, info.find("{\"format\":1,")) << info;
  EXPECT_NE(std::string::npos, info.find("\"name\":\"" + name_ + "\""));
  EXPECT_NE(std::string::npos,
            info.find("\"version\":\"" + std::string(svc_version()) + "\""));
  EXPECT_EQ(ServerPid(), Field(info, "", "pid")) << info;
  EXPECT_EQ(1, Field(info, "", "workers")) << info;
  EXPECT_GE(Field(info, "", "uptime_ms"), 0);
  EXPECT_NE(
      std::string::npos,
      info.find("\"listeners\":[\"" + url_.substr(0, url_.find('?')) + "\"]"))
      << info;
}

TEST_P(BuiltinsTest, Methods) {
  StartServer();
  Client c = MustOpen();
  std::string m = MustCall(c.get(), "svc.methods");
  EXPECT_EQ('[', m.front());
  EXPECT_EQ(']', m.back());
  for (const char *name : {"echo", "fail", "pid"})
    EXPECT_NE(std::string::npos, m.find(std::string("\"") + name + "\"")) << m;
  EXPECT_EQ(std::string::npos, m.find("svc.")) << "built-ins are implicit";
  EXPECT_EQ(SVC_ENOMETHOD, Call(c.get(), "svc.nonesuch", ""));
}

TEST_P(BuiltinsTest, StatsCountsAddUp) {
  StartServer();
  Client c = MustOpen();
  const int kCalls = 300;
  for (int i = 0; i < kCalls; i++)
    ASSERT_EQ(0, Call(c.get(), "echo", std::string((size_t)i % 10, 'x')));
  for (int i = 0; i < 3; i++)
    EXPECT_EQ(SVC_EHANDLER, Call(c.get(), "fail", "7"));
  for (int i = 0; i < 5; i++)
    EXPECT_EQ(SVC_ENOMETHOD, Call(c.get(), "nonesuch", ""));
  MustCall(c.get(), "svc.ping");
  // Another connection: its counts join the same totals.
  Client c2 = MustOpen();
  for (int i = 0; i < 20; i++)
    ASSERT_EQ(0, Call(c2.get(), "echo", "abc"));

  // A call is counted just after its reply is posted: c2's last call may
  // not be yet when c asks, a moment later, on another connection.
  std::string st;
  int asked = 0;
  EXPECT_TRUE(Eventually(
      [&] {
        st = MustCall(c.get(), "svc.stats");
        asked++;
        return Field(st, "echo", "calls") == kCalls + 20;
      },
      3000));
  EXPECT_EQ(0u, st.find("{\"format\":1,")) << st;
  EXPECT_EQ(kCalls + 20, Field(st, "echo", "calls")) << st;
  EXPECT_EQ(0, Field(st, "echo", "errors"));
  long long bytes = 20 * 3;
  for (int i = 0; i < kCalls; i++)
    bytes += i % 10;
  EXPECT_EQ(bytes, Field(st, "echo", "bytes_in"));
  EXPECT_EQ(bytes, Field(st, "echo", "bytes_out"));
  EXPECT_EQ(3, Field(st, "fail", "calls"));
  EXPECT_EQ(3, Field(st, "fail", "errors"));
  EXPECT_EQ(0, Field(st, "fail", "bytes_out"));
  EXPECT_EQ(1, Field(st, "svc.ping", "calls"));
  EXPECT_EQ(0, Field(st, "sleep", "calls"));
  EXPECT_EQ(5, Field(st, "", "unknown_method_calls"));
  long long p50 = Field(st, "echo", "p50_ns"),
            p99 = Field(st, "echo", "p99_ns"),
            p999 = Field(st, "echo", "p999_ns"),
            mx = Field(st, "echo", "max_ns");
  EXPECT_GT(p50, 0);
  EXPECT_LE(p50, p99);
  EXPECT_LE(p99, p999);
  EXPECT_LE(p999, mx);
  EXPECT_GE(Field(st, "echo", "total_ns"), p50 * (kCalls + 20) / 2);

  // The reply to svc.stats counts the earlier svc.stats calls.
  std::string st2 = MustCall(c.get(), "svc.stats", "histogram");
  EXPECT_EQ(asked, Field(st2, "svc.stats", "calls"));
  EXPECT_NE(std::string::npos, st2.find("\"histogram\":[[")) << st2;
}

TEST_P(BuiltinsTest, SlowHandlerShowsInPercentiles) {
  StartServer();
  Client c = MustOpen();
  for (int i = 0; i < 3; i++)
    ASSERT_EQ(0, Call(c.get(), "sleep", "30"));
  std::string st = MustCall(c.get(), "svc.stats");
  EXPECT_GE(Field(st, "sleep", "p50_ns"), 28000000) << st;
  EXPECT_GE(Field(st, "sleep", "max_ns"), 30000000) << st;
  EXPECT_LT(Field(st, "sleep", "max_ns"), 3000000000) << st;
}

TEST_P(BuiltinsTest, CountsAddUpAcrossThreeWorkers) {
  ScopedEnv min("SVC_WORKERS_MIN", "3"), max("SVC_WORKERS_MAX", "3");
  StartServer();
  {
    Client c = MustOpen();
    std::string info = MustCall(c.get(), "svc.info");
    if (Field(info, "", "workers") < 0 ||
        (Field(info, "", "workers") == 1 &&
         !Eventually(
             [&] {
               return Field(MustCall(c.get(), "svc.info"), "", "workers") == 3;
             },
             3000)))
      GTEST_SKIP() << "no worker process support (svc.info: " << info << ")";
  }
  // Many connections open at once, so the pool spreads them over the
  // workers by their connection counts (one after another, each closed
  // before the next, they may all go to one worker: every count is 0).
  std::set<long long> pids;
  const int kClients = 24, kEach = 25;
  std::vector<Client> clients;
  for (int i = 0; i < kClients; i++) {
    clients.push_back(MustOpen());
    for (int k = 0; k < kEach; k++) {
      std::string pid;
      ASSERT_EQ(0, Call(clients.back().get(), "pid", "", &pid));
      pids.insert(atoll(pid.c_str()));
    }
  }
  clients.clear();
  EXPECT_GT(pids.size(), 1u) << "every connection went to one worker";
  // Whichever worker answers, it reports the total.
  for (int i = 0; i < 6; i++) {
    Client c = MustOpen();
    std::string st;
    EXPECT_TRUE(Eventually(
        [&] {
          st = MustCall(c.get(), "svc.stats");
          return Field(st, "pid", "calls") == kClients * kEach;
        },
        3000));
    EXPECT_EQ(kClients * kEach, Field(st, "pid", "calls")) << st;
    EXPECT_EQ(3, Field(st, "", "workers")) << st;
  }
}

SVC_ALL_TRANSPORTS(BuiltinsTest);

} // namespace
} // namespace svctest

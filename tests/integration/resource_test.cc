// resource_test.cc — what connections cost when nobody calls: idle
// connections burn no CPU (server or client) and pin no thread each, and
// shared memory never shows up in /dev/shm (memfd only).
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <set>

#include "fixture.h"

namespace svctest {
namespace {

using Resources = SvcTest;

long SelfCpuMs() {
  rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000L +
         (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000L;
}

TEST_P(Resources, IdleConnectionsCostNoCpu) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  pid_t spid = ServerPid();
  std::vector<Client> cs;
  for (int i = 0; i < 10; i++) {
    cs.push_back(MustOpen());
    ASSERT_TRUE(cs.back());
    // Enough calls for an adaptive spin budget to have grown.
    for (int k = 0; k < 200; k++)
      ASSERT_EQ(0, Call(cs.back().get(), "echo", "x"));
  }
  SleepMs(300); // any spin after the last call is over
  long t0 = CpuTicks(spid), self0 = SelfCpuMs();
  int64_t w0 = NowMs();
  SleepMs(1000);
  long t1 = CpuTicks(spid), self1 = SelfCpuMs();
  int64_t wall = NowMs() - w0;
  double server_ms = (double)(t1 - t0) * 1000.0 / (double)TicksPerSecond();
  double server_pct = 100.0 * server_ms / (double)wall;
  double self_pct = 100.0 * (double)(self1 - self0) / (double)wall;
  printf("[ info ] %s: 10 idle connections: server %.1f%% CPU, client %.1f%%\n",
         transport().c_str(), server_pct, self_pct);
  EXPECT_LT(server_pct, 5.0) << "idle connections make the server burn CPU";
  EXPECT_LT(self_pct, 5.0) << "idle clients burn CPU in this process";
  // And they still work.
  for (auto &c : cs)
    ASSERT_EQ(0, Call(c.get(), "echo", "wake"));
}

TEST_P(Resources, IdleConnectionsNeedNoThreadEach) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  pid_t spid = ServerPid();
  {
    Client c = MustOpen();
    ASSERT_TRUE(c);
    ASSERT_EQ(0, Call(c.get(), "echo", "x"));
  }
  SleepMs(300);
  int th0 = CountThreads(spid);
  std::vector<Client> cs;
  for (int i = 0; i < 30; i++) {
    cs.push_back(MustOpen());
    ASSERT_TRUE(cs.back());
    ASSERT_EQ(0, Call(cs.back().get(), "echo", "x"));
  }
  SleepMs(500);
  int th1 = CountThreads(spid);
  printf("[ info ] %s: server threads %d -> %d with 30 idle connections\n",
         transport().c_str(), th0, th1);
  EXPECT_LT(th1 - th0, 15) << "looks like a thread per idle connection";
  // The client side has no thread per connection either.
  EXPECT_LT(CountThreads(getpid()), 15);
}

TEST_P(Resources, NothingInDevShm) {
  auto svc_entries = [&](pid_t spid) {
    std::set<std::string> out;
    for (const std::string &e : ListDir("/dev/shm")) {
      std::string low = e;
      std::transform(low.begin(), low.end(), low.begin(), ::tolower);
      if (low.find("svc") != std::string::npos ||
          e.find(std::to_string(getpid())) != std::string::npos ||
          (spid > 0 && e.find(std::to_string(spid)) != std::string::npos))
        out.insert(e);
    }
    return out;
  };
  std::set<std::string> before = svc_entries(-1);
  ASSERT_NO_FATAL_FAILURE(StartServer());
  pid_t spid = ServerPid();
  {
    std::vector<Client> cs;
    for (int i = 0; i < 5; i++) {
      cs.push_back(MustOpen());
      ASSERT_TRUE(cs.back());
      std::string big = RandomBytes((uint64_t)i, 3u << 20), resp;
      ASSERT_EQ(0, Call(cs.back().get(), "echo", big, &resp)); // grows
    }
    // While connected: no process maps anything from /dev/shm, and on shm://
    // both sides map a memfd.
    EXPECT_TRUE(MapsMatching(getpid(), "/dev/shm/").empty());
    EXPECT_TRUE(MapsMatching(spid, "/dev/shm/").empty());
    if (is_shm()) {
      EXPECT_FALSE(MapsMatching(getpid(), "/memfd:").empty());
      EXPECT_FALSE(MapsMatching(spid, "/memfd:").empty());
    }
    std::set<std::string> during = svc_entries(spid);
    for (const std::string &e : during)
      EXPECT_TRUE(before.count(e)) << "/dev/shm/" << e << " appeared";
  }
  server_->Kill(SIGKILL); // even a crash leaves nothing behind
  server_->Wait();
  std::set<std::string> after = svc_entries(spid);
  for (const std::string &e : after)
    EXPECT_TRUE(before.count(e)) << "/dev/shm/" << e << " left behind";
}

TEST_P(Resources, ClosedClientsReleaseServerFds) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  pid_t spid = ServerPid();
  ExpectServes(url_);
  SleepMs(300);
  int fd0 = CountFds(spid);
  for (int round = 0; round < 3; round++) {
    std::vector<Client> cs;
    for (int i = 0; i < 20; i++) {
      cs.push_back(MustOpen());
      ASSERT_TRUE(cs.back());
      ASSERT_EQ(0, Call(cs.back().get(), "echo", "x"));
    }
  }
  int fd1 = -1;
  EXPECT_TRUE(Eventually([&] { return (fd1 = CountFds(spid)) <= fd0; }, 10000))
      << "server fds " << fd0 << " -> " << fd1 << ": " << DescribeFds(spid);
}

TEST_P(Resources, ClientCloseReleasesClientFds) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  int fd0 = CountFds(getpid());
  for (int i = 0; i < 50; i++) {
    Client c = MustOpen();
    ASSERT_TRUE(c);
    ASSERT_EQ(0, Call(c.get(), "echo", std::string(10000, 'x')));
  }
  EXPECT_EQ(fd0, CountFds(getpid()));
}

SVC_ALL_TRANSPORTS(Resources);

} // namespace
} // namespace svctest

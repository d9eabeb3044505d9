// exhaustion_test.cc — running out of a resource (issue 17): a server at
// its file-descriptor limit, and a shared-memory region that cannot grow.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include <algorithm>
#include <string>

#include "fault.h"
#include "fixture.h"
#include "harness.h"

using namespace svctest;

namespace {

// The lowest fd number pid does not use, -1 if gone: with RLIMIT_NOFILE
// set to it, pid's next new fd is refused (EMFILE).
int LowestFreeFd(pid_t pid) {
  std::vector<std::string> fds =
      ListDir("/proc/" + std::to_string(pid) + "/fd");
  if (fds.empty())
    return -1;
  std::vector<int> used;
  for (const std::string &e : fds)
    used.push_back(atoi(e.c_str()));
  std::sort(used.begin(), used.end());
  int k = 0;
  for (int fd : used)
    if (fd == k)
      k++;
  return k;
}

class Exhaustion : public SvcTest {};

// accept at EMFILE: the server keeps serving the connections it has, does
// not spin on the listener it cannot drain (under 5% of a core), and
// accepts the waiting client once fds are free again. Before the fix its
// pool re-armed the readable listener at once: a core at 100%.
TEST_P(Exhaustion, AcceptAtFdLimitKeepsServingAndRecovers) {
  StartServer();
  pid_t server = ServerPid();
  // A client that will have to wait for an fd: a child process, so this
  // one can measure and free fds meanwhile. Forked before this process
  // opens any connection: a child holding a copy of b's socket would keep
  // it open after b closes.
  int go[2];
  ASSERT_EQ(0, pipe(go));
  pid_t waiting = Fork();
  if (waiting == 0) {
    close(go[1]);
    char x;
    if (read(go[0], &x, 1) != 1)
      _exit(2);
    int rc = 0;
    Client c = Open(url_, &rc);
    if (c) {
      svc_client_set_timeout(c.get(), 20000);
      rc = Call(c.get(), "echo", "waited");
    }
    if (rc != 0)
      fprintf(stderr, "the waiting client: %s\n", ErrName(rc).c_str());
    _exit(rc == 0 ? 0 : 1);
  }
  close(go[0]);
  Client a = MustOpen(), b = MustOpen();
  ASSERT_TRUE(a && b);
  ASSERT_EQ(0, Call(a.get(), "echo", "a"));
  ASSERT_EQ(0, Call(b.get(), "echo", "b"));
  // The next fd the server makes is refused.
  struct rlimit old = {}, lim = {};
  ASSERT_EQ(0, prlimit(server, RLIMIT_NOFILE, nullptr, &old));
  int limit = LowestFreeFd(server);
  ASSERT_GT(limit, 0);
  lim.rlim_cur = (rlim_t)limit;
  lim.rlim_max = old.rlim_max;
  ASSERT_EQ(0, prlimit(server, RLIMIT_NOFILE, &lim, nullptr));
  ASSERT_EQ(1, write(go[1], "g", 1));
  close(go[1]);
  SleepMs(300); // its connection is in the backlog, the server at EMFILE

  // Two seconds at the limit: existing connections served, no spinning.
  long t0 = CpuTicks(server);
  int served = 0;
  int64_t end = NowMs() + 2000;
  while (NowMs() < end) {
    ASSERT_EQ(0, Call(a.get(), "echo", "still served"));
    served++;
    SleepMs(50);
  }
  long used = CpuTicks(server) - t0;
  double core = (double)used / (double)TicksPerSecond() / 2.0;
  printf("at the fd limit: %d calls served, server CPU %.1f%% of a core\n",
         served, core * 100);
  EXPECT_LT(core, 0.05) << "the server spins at its fd limit";
  int st = 0;
  pid_t early = waitpid(waiting, &st, WNOHANG);
  EXPECT_EQ(0, early) << "the waiting client ended with no fd free (status "
                      << st << ")";

  // Fds free up: b's connection closes, and the waiting client gets in.
  b.reset();
  if (early == 0) {
    EXPECT_EQ(0, WaitChild(waiting, 10000))
        << "the waiting client was not served after fds were freed";
  }
  ASSERT_EQ(0, prlimit(server, RLIMIT_NOFILE, &old, nullptr));
  ExpectServes(url_);
}

INSTANTIATE_TEST_SUITE_P(Transports, Exhaustion,
                         ::testing::Values("shm", "unix", "tcp", "tls"),
                         ParamName);

// ---- a region that cannot grow ----

class RegionFull : public SvcTest {
public:
  void SetUp() override {
    SvcTest::SetUp();
    ASSERT_EQ("shm", transport());
  }
};

// The client's side of the region cannot grow for a 4 MiB request: that
// call is SVC_ENOMEM, and the same connection carries smaller calls, and
// the large one once memory is back.
TEST_P(RegionFull, RequestGrowthRefusedLeavesConnectionUsable) {
  StartServer();
  Client c = MustOpen();
  ASSERT_TRUE(c);
  svc_client_set_timeout(c.get(), 5000);
  ASSERT_EQ(0, Call(c.get(), "echo", "small"));
  std::string big = RandomBytes(3, 4 << 20);
  svc__fault_arm(SVC_FAULT_BIT(SVC_FAULT_FALLOCATE) |
                     SVC_FAULT_BIT(SVC_FAULT_MMAP),
                 1, 1, 0);
  std::string resp;
  int rc = Call(c.get(), "checksum", big, &resp);
  svc__fault_disarm();
  EXPECT_GT(svc__fault_injected(), 0) << "the region did not try to grow";
  EXPECT_EQ(SVC_ENOMEM, rc) << ErrName(rc);
  for (int i = 0; i < 10; i++)
    ASSERT_EQ(0, Call(c.get(), "echo", "smaller " + std::to_string(i)));
  std::string sum;
  ASSERT_EQ(0, Call(c.get(), "checksum", big, &sum));
  EXPECT_EQ(8u, sum.size());
}

// The server's side cannot grow for a 4 MiB reply: fault_server fails
// every fallocate and mmap after those that opening and a small call make
// (counted in a first run). SVC_ENOMEM, and the connection goes on.
TEST_P(RegionFull, ReplyGrowthRefusedLeavesConnectionUsable) {
  std::string report = tmp_->path() + "/report";
  auto start = [&](const std::string &spec) {
    ScopedEnv f("SVC_TEST_FAULT", spec.c_str());
    ScopedEnv r("SVC_TEST_FAULT_REPORT", report.c_str());
    server_ = std::make_unique<ServerProc>();
    server_->UseBinary(SVC_FAULT_SERVER);
    return server_->Start({"--name", name_, "--listen", listen_url_});
  };
  auto open_and_call = [&] {
    Client c = MustOpen();
    if (c) {
      svc_client_set_timeout(c.get(), 5000);
      EXPECT_EQ(0, Call(c.get(), "echo", "small"));
    }
    return c;
  };
  ASSERT_EQ(0, start("fallocate,mmap:0"));
  open_and_call();
  server_->Kill(SIGTERM);
  ASSERT_EQ(0, server_->Wait(10000));
  long before = 0, injected = 0;
  char op[32] = "";
  FILE *f = fopen(report.c_str(), "r");
  ASSERT_TRUE(f);
  ASSERT_EQ(3, fscanf(f, "%ld %ld %31s", &before, &injected, op));
  fclose(f);

  ASSERT_EQ(
      0, start("fallocate,mmap:" + std::to_string(before + 1) + ":persistent"));
  Client c = open_and_call();
  ASSERT_TRUE(c);
  std::string resp;
  int rc = Call(c.get(), "big", std::to_string(4 << 20), &resp);
  // Not SVC_ETOOBIG, which the handler returns when svc_reply_alloc fails:
  // the reply is not too big, memory ran out.
  EXPECT_EQ(SVC_ENOMEM, rc) << ErrName(rc);
  printf("a 4 MiB reply the region cannot hold: %s\n", ErrName(rc).c_str());
  for (int i = 0; i < 10; i++)
    ASSERT_EQ(0, Call(c.get(), "echo", "smaller " + std::to_string(i)));
  // Memory is back: the large reply comes on the same connection.
  server_->Kill(SIGUSR2);
  SleepMs(20);
  ASSERT_EQ(0, Call(c.get(), "big", std::to_string(4 << 20), &resp));
  EXPECT_EQ((size_t)4 << 20, resp.size());
}

INSTANTIATE_TEST_SUITE_P(Shm, RegionFull, ::testing::Values("shm"), ParamName);

} // namespace

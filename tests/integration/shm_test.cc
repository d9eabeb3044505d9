// shm_test.cc — what only shm:// promises (docs/protocol.md): replies and
// requests are read in place from the memfd region (zero copy), two
// spinning sides make no syscalls per call, and the runtime directory must
// belong to the server's user.
#include <sys/stat.h>
#include <unistd.h>

#include <cinttypes>
#include <cstring>
#include <fstream>
#include <thread>

#include "fixture.h"

namespace svctest {
namespace {

using Shm = SvcTest;

// True if p lies in a mapping of this process whose name contains needle.
bool InMapping(const void *p, const std::string &needle) {
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  for (const std::string &line : MapsMatching(getpid(), needle)) {
    uintptr_t lo, hi;
    if (sscanf(line.c_str(), "%" SCNxPTR "-%" SCNxPTR, &lo, &hi) == 2 &&
        a >= lo && a < hi)
      return true;
  }
  return false;
}

// Read and write syscalls of pid so far (/proc/PID/io syscr + syscw).
long IoSyscalls(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/io");
  std::string k;
  long v, sum = 0;
  while (f >> k >> v)
    if (k == "syscr:" || k == "syscw:")
      sum += v;
  return sum;
}

TEST_P(Shm, ReplyIsReadInPlace) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  Client c = MustOpen();
  ASSERT_TRUE(c);
  for (size_t n : {(size_t)8, (size_t)100000}) {
    std::string req(n, 'z');
    const void *p = nullptr;
    size_t len = 0;
    ASSERT_EQ(0, svc_call(c.get(), "echo", req.data(), req.size(), &p, &len));
    EXPECT_TRUE(InMapping(p, "/memfd:"))
        << "reply of " << n << " bytes was copied out of the region";
  }
}

struct InPlaceSeen {
  std::atomic<int> req_in_region{0}, reply_in_region{0}, calls{0};
};

int RecordPlaces(void *ctx, const void *req, size_t len, svc_reply *r) {
  InPlaceSeen *seen = static_cast<InPlaceSeen *>(ctx);
  void *out = svc_reply_alloc(r, len);
  if (!out)
    return SVC_ETOOBIG;
  memcpy(out, req, len);
  seen->calls++;
  if (InMapping(req, "/memfd:"))
    seen->req_in_region++;
  if (InMapping(out, "/memfd:"))
    seen->reply_in_region++;
  return 0;
}

TEST_P(Shm, HandlerReadsRequestAndWritesReplyInPlace) {
  svc_server *s = nullptr;
  ASSERT_EQ(0, svc_server_new(name_.c_str(), &s));
  InPlaceSeen seen;
  ASSERT_EQ(0, svc_server_method(s, "echo", RecordPlaces, &seen));
  ASSERT_EQ(0, svc_server_listen(s, url_.c_str()));
  ASSERT_EQ(0, svc_server_start(s));
  {
    Client c = MustOpen();
    ASSERT_TRUE(c);
    for (size_t n : {(size_t)16, (size_t)5000, (size_t)(1u << 20)})
      ASSERT_EQ(0, Call(c.get(), "echo", std::string(n, 'q')));
  }
  svc_server_free(s);
  EXPECT_EQ(seen.calls.load(), 3);
  EXPECT_EQ(seen.req_in_region.load(), 3) << "request payload was copied";
  EXPECT_EQ(seen.reply_in_region.load(), 3)
      << "svc_reply_alloc did not hand out region memory";
}

TEST_P(Shm, SpinningSidesMakeNoSyscallsPerCall) {
  // The "done when": strace shows (almost) no syscalls per call in
  // steady state. /proc/PID/io counts read- and write-like syscalls (the
  // doorbell), which is what a sleeping side would cost.
  ASSERT_NO_FATAL_FAILURE(StartServer({"--wait", "spin"}));
  Client c = MustOpen();
  ASSERT_TRUE(c);
  ASSERT_EQ(0, svc_client_set_wait(c.get(), SVC_WAIT_SPIN));
  for (int i = 0; i < 500; i++)
    ASSERT_EQ(0, Call(c.get(), "echo", "warm"));
  const int kCalls = 5000;
  long self0 = IoSyscalls(getpid()), srv0 = IoSyscalls(ServerPid());
  std::string payload(64, 'p');
  for (int i = 0; i < kCalls; i++)
    ASSERT_EQ(0, Call(c.get(), "echo", payload));
  long self = IoSyscalls(getpid()) - self0,
       srv = IoSyscalls(ServerPid()) - srv0;
  printf("[ info ] %d spinning shm calls: %ld client, %ld server read/write "
         "syscalls\n",
         kCalls, self, srv);
  // Generous: preemption on a shared 2-core machine forces some sleeps.
  EXPECT_LT(self, kCalls / 10);
  EXPECT_LT(srv, kCalls / 10);
}

TEST_P(Shm, RuntimeDirOfAnotherUserIsRefused) {
  if (getuid() != 0)
    GTEST_SKIP() << "needs root to make a dir of another uid";
  // docs/protocol.md: the directory "must belong to the server's user";
  // otherwise that user could swap the rendezvous socket.
  ASSERT_EQ(0, mkdir(rundir_.c_str(), 0700));
  ASSERT_EQ(0, chown(rundir_.c_str(), 65534, 65534));
  svc_server *s = nullptr;
  ASSERT_EQ(0, svc_server_new(name_.c_str(), &s));
  int rc = svc_server_listen(s, url_.c_str());
  EXPECT_NE(0, rc) << "listened in a directory owned by uid 65534";
  svc_server_free(s);
  svc_client *c = nullptr;
  rc = svc_client_open(url_.c_str(), &c);
  EXPECT_NE(0, rc);
  if (rc == 0)
    svc_client_close(c);
}

TEST_P(Shm, RuntimeDirOpenToOthersIsTightenedOrRefused) {
  // A pre-existing world-writable runtime dir must not be used as is.
  ASSERT_EQ(0, mkdir(rundir_.c_str(), 0777));
  ASSERT_EQ(0, chmod(rundir_.c_str(), 0777));
  svc_server *s = nullptr;
  ASSERT_EQ(0, svc_server_new(name_.c_str(), &s));
  int rc = svc_server_listen(s, url_.c_str());
  struct stat st;
  ASSERT_EQ(0, stat(rundir_.c_str(), &st));
  if (rc == 0) {
    EXPECT_EQ(st.st_mode & 0077, 0u)
        << "listened in a mode " << std::oct << (st.st_mode & 07777) << " dir";
  }
  svc_server_free(s);
}

// Regression: SVC_RUNTIME_DIR=/tmp for a server run as root changed /tmp
// to mode 0700, locking every other user out of it. A shared directory
// (sticky bit) is refused, never tightened.
TEST_P(Shm, SharedStickyRuntimeDirIsRefusedNotChanged) {
  ASSERT_EQ(0, mkdir(rundir_.c_str(), 0700));
  ASSERT_EQ(0, chmod(rundir_.c_str(), 01777));
  svc_server *s = nullptr;
  ASSERT_EQ(0, svc_server_new(name_.c_str(), &s));
  EXPECT_EQ(SVC_EPERM, svc_server_listen(s, url_.c_str()));
  struct stat st;
  ASSERT_EQ(0, stat(rundir_.c_str(), &st));
  EXPECT_EQ(st.st_mode & 07777, 01777u) << "the shared directory was changed";
  svc_server_free(s);
}

INSTANTIATE_TEST_SUITE_P(T, Shm, ::testing::Values("shm"), ParamName);

} // namespace
} // namespace svctest

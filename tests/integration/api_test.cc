// api_test.cc — the public API in one process: argument checking, URL and
// name validation, server lifecycle (start/stop/free, run + stop from
// another thread), a server and its clients in the same process over every
// transport, address conflicts, the rendezvous directory's mode, and peers
// of another uid.
#include <grp.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <thread>

#include "fixture.h"

// ThreadSanitizer's runtime starts a thread of its own with the first
// thread the library creates; it is not ours to join.
#if defined(__SANITIZE_THREAD__)
constexpr int kRuntimeThreads = 1;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
constexpr int kRuntimeThreads = 1;
#else
constexpr int kRuntimeThreads = 0;
#endif
#else
constexpr int kRuntimeThreads = 0;
#endif

namespace svctest {
namespace {

int Echo(void *ctx, const void *req, size_t len, svc_reply *r) {
  if (ctx)
    static_cast<std::atomic<int> *>(ctx)->fetch_add(1);
  void *p = svc_reply_alloc(r, len);
  if (!p)
    return SVC_ETOOBIG;
  if (len)
    memcpy(p, req, len);
  return 0;
}

int Fail42(void *, const void *, size_t, svc_reply *) { return 42; }

struct ServerCloser {
  void operator()(svc_server *s) const { svc_server_free(s); }
};
using Server = std::unique_ptr<svc_server, ServerCloser>;

Server NewServer(const std::string &name, int *rc = nullptr) {
  svc_server *s = nullptr;
  int r = svc_server_new(name.c_str(), &s);
  if (rc)
    *rc = r;
  return Server(r == 0 ? s : nullptr);
}

// ---- argument checking (no server process needed) ----

class Api : public ::testing::Test {
protected:
  void SetUp() override {
    tmp_ = std::make_unique<TempDir>();
    env_ = std::make_unique<ScopedEnv>("SVC_RUNTIME_DIR",
                                       (tmp_->path() + "/run").c_str());
  }
  void TearDown() override {
    env_.reset();
    tmp_.reset();
  }
  std::unique_ptr<TempDir> tmp_;
  std::unique_ptr<ScopedEnv> env_;
};

TEST_F(Api, ServerNullArgs) {
  svc_server *s = nullptr;
  EXPECT_EQ(SVC_EINVAL, svc_server_new(nullptr, &s));
  EXPECT_EQ(SVC_EINVAL, svc_server_new("x", nullptr));
  Server srv = NewServer(UniqueName());
  ASSERT_TRUE(srv);
  EXPECT_EQ(SVC_EINVAL, svc_server_method(nullptr, "m", Echo, nullptr));
  EXPECT_EQ(SVC_EINVAL, svc_server_method(srv.get(), nullptr, Echo, nullptr));
  EXPECT_EQ(SVC_EINVAL, svc_server_method(srv.get(), "m", nullptr, nullptr));
  EXPECT_EQ(SVC_EINVAL, svc_server_listen(nullptr, "shm://x"));
  EXPECT_EQ(SVC_EINVAL, svc_server_listen(srv.get(), nullptr));
  EXPECT_EQ(SVC_EINVAL, svc_server_start(nullptr));
  EXPECT_EQ(SVC_EINVAL, svc_server_run(nullptr));
  EXPECT_EQ(SVC_EINVAL, svc_server_set_wait(nullptr, SVC_WAIT_SPIN));
  EXPECT_EQ(SVC_EINVAL, svc_server_set_max_msg(nullptr, 100));
  EXPECT_EQ(SVC_EINVAL, svc_server_set_allow_any_uid(nullptr, 1));
  EXPECT_EQ(SVC_EINVAL, svc_server_set_max_threads(nullptr, 4));
  svc_server_stop(nullptr); // no crash
  svc_server_free(nullptr);
}

TEST_F(Api, ServerBadSettings) {
  Server srv = NewServer(UniqueName());
  ASSERT_TRUE(srv);
  EXPECT_EQ(SVC_EINVAL, svc_server_set_wait(srv.get(), (svc_wait_policy)7));
  EXPECT_EQ(SVC_EINVAL, svc_server_set_max_threads(srv.get(), 0));
  EXPECT_EQ(SVC_EINVAL, svc_server_set_max_threads(srv.get(), -1));
  EXPECT_EQ(0, svc_server_set_max_msg(srv.get(), 1 << 20));
  EXPECT_EQ(0, svc_server_set_wait(srv.get(), SVC_WAIT_BLOCK));
  EXPECT_EQ(0, svc_server_set_max_threads(srv.get(), 8));
}

TEST_F(Api, ServerNames) {
  for (const char *ok : {"a", "svc.echo", "A-b_c.9"}) {
    int rc;
    Server s = NewServer(ok, &rc);
    EXPECT_EQ(0, rc) << ok;
  }
  for (const std::string &bad :
       {std::string(""), std::string(".x"), std::string("a/b"),
        std::string("a b"), std::string(65, 'n')}) {
    int rc;
    Server s = NewServer(bad, &rc);
    EXPECT_EQ(SVC_EINVAL, rc) << "'" << bad << "'";
    EXPECT_FALSE(s);
  }
}

TEST_F(Api, MethodNames) {
  Server srv = NewServer(UniqueName());
  ASSERT_TRUE(srv);
  EXPECT_EQ(0, svc_server_method(srv.get(), "m", Echo, nullptr));
  EXPECT_EQ(0, svc_server_method(srv.get(),
                                 std::string(SVC_METHOD_MAX, 'x').c_str(), Echo,
                                 nullptr));
  EXPECT_EQ(SVC_EINVAL, svc_server_method(srv.get(), "", Echo, nullptr));
  EXPECT_EQ(SVC_EINVAL,
            svc_server_method(srv.get(),
                              std::string(SVC_METHOD_MAX + 1, 'x').c_str(),
                              Echo, nullptr));
  // The "svc." prefix is reserved for the library (svc.ping).
  EXPECT_EQ(SVC_EINVAL,
            svc_server_method(srv.get(), "svc.ping", Echo, nullptr));
  EXPECT_EQ(SVC_EINVAL,
            svc_server_method(srv.get(), "svc.mine", Echo, nullptr));
  EXPECT_EQ(SVC_EINVAL, svc_server_method(srv.get(), "svc.", Echo, nullptr));
  // Not a prefix match on "svc" alone.
  EXPECT_EQ(0, svc_server_method(srv.get(), "svcx", Echo, nullptr));
  EXPECT_EQ(0, svc_server_method(srv.get(), "svc", Echo, nullptr));
}

TEST_F(Api, ClientNullArgs) {
  svc_client *c = nullptr;
  EXPECT_EQ(SVC_EINVAL, svc_client_open(nullptr, &c));
  EXPECT_EQ(SVC_EINVAL, svc_client_open("shm://x", nullptr));
  const void *p;
  size_t n;
  EXPECT_EQ(SVC_EINVAL, svc_call(nullptr, "m", "x", 1, &p, &n));
  EXPECT_EQ(SVC_EINVAL, svc_client_set_timeout(nullptr, 10));
  EXPECT_EQ(SVC_EINVAL, svc_client_set_wait(nullptr, SVC_WAIT_SPIN));
  EXPECT_EQ(SVC_EINVAL, svc_client_set_max_msg(nullptr, 10));
  svc_client_close(nullptr); // no crash
}

TEST_F(Api, BadUrls) {
  const char *bad[] = {"",
                       "nope",
                       "shm://",
                       "shm://.x",
                       "shm://a/b",
                       "unix://relative",
                       "unix://",
                       "tcp://127.0.0.1",
                       "tcp://127.0.0.1:0",
                       "tcp://127.0.0.1:65536",
                       "tcp://::1:80",
                       "http://127.0.0.1:80"};
  for (const char *u : bad) {
    svc_client *c = nullptr;
    EXPECT_EQ(SVC_EINVAL, svc_client_open(u, &c)) << u;
    Server srv = NewServer(UniqueName());
    ASSERT_TRUE(srv);
    EXPECT_EQ(SVC_EINVAL, svc_server_listen(srv.get(), u)) << u;
  }
}

TEST_F(Api, LifecycleWithoutClients) {
  { // free without start
    Server srv = NewServer(UniqueName());
    ASSERT_TRUE(srv);
    ASSERT_EQ(0, svc_server_method(srv.get(), "echo", Echo, nullptr));
  }
  { // start with no listener: nothing to serve
    Server srv = NewServer(UniqueName());
    ASSERT_TRUE(srv);
    int rc = svc_server_start(srv.get());
    if (rc == 0) {
      svc_server_stop(srv.get());
    } else {
      EXPECT_TRUE(rc == SVC_EINVAL || rc == SVC_ESTATE) << ErrName(rc);
    }
  }
  { // start, stop, stop again, free
    std::string name = UniqueName();
    Server srv = NewServer(name);
    ASSERT_TRUE(srv);
    ASSERT_EQ(0, svc_server_method(srv.get(), "echo", Echo, nullptr));
    ASSERT_EQ(0, svc_server_listen(srv.get(), ("shm://" + name).c_str()));
    ASSERT_EQ(0, svc_server_start(srv.get()));
    EXPECT_EQ(SVC_ESTATE, svc_server_start(srv.get())) << "started twice";
    EXPECT_EQ(SVC_ESTATE, svc_server_method(srv.get(), "late", Echo, nullptr));
    svc_server_stop(srv.get());
    svc_server_stop(srv.get());
  }
  { // start then free directly (free stops)
    std::string name = UniqueName();
    Server srv = NewServer(name);
    ASSERT_TRUE(srv);
    ASSERT_EQ(0, svc_server_method(srv.get(), "echo", Echo, nullptr));
    ASSERT_EQ(0, svc_server_listen(srv.get(), ("shm://" + name).c_str()));
    ASSERT_EQ(0, svc_server_start(srv.get()));
  }
}

// ---- in-process server over each transport ----

using InProcess = SvcTest;

TEST_P(InProcess, ServerAndClientInOneProcess) {
  int fds0 = CountFds(getpid()), th0 = CountThreads(getpid());
  std::atomic<int> calls{0};
  {
    Server srv = NewServer(name_);
    ASSERT_TRUE(srv);
    ASSERT_EQ(0, svc_server_method(srv.get(), "echo", Echo, &calls));
    ASSERT_EQ(0, svc_server_method(srv.get(), "fail", Fail42, nullptr));
    int rc = svc_server_listen(srv.get(), listen_url_.c_str());
    ASSERT_EQ(0, rc) << ErrName(rc) << " " << url_;
    ASSERT_EQ(0, svc_server_start(srv.get()));
    {
      Client c = MustOpen();
      ASSERT_TRUE(c);
      for (size_t n : {(size_t)0, (size_t)1, (size_t)4097, (size_t)(1u << 20),
                       (size_t)(16u << 20)}) {
        std::string req = RandomBytes(n, n), resp;
        ASSERT_EQ(0, Call(c.get(), "echo", req, &resp)) << n;
        ASSERT_TRUE(resp == req) << n;
      }
      EXPECT_EQ(calls.load(), 5) << "ctx reaches the handler";
      EXPECT_EQ(SVC_EHANDLER, Call(c.get(), "fail", ""));
      EXPECT_EQ(42, svc_client_handler_code(c.get()));
      EXPECT_EQ(SVC_ENOMETHOD, Call(c.get(), "nope", ""));
      // Several clients from several threads.
      std::vector<std::thread> ts;
      std::atomic<int> bad{0};
      for (int t = 0; t < 4; t++)
        ts.emplace_back([&, t] {
          Client c2 = Open(url_);
          if (!c2) {
            bad++;
            return;
          }
          for (int i = 0; i < 100; i++) {
            std::string req = std::to_string(t * 1000 + i), resp;
            if (Call(c2.get(), "echo", req, &resp) != 0 || resp != req)
              bad++;
          }
        });
      for (auto &t : ts)
        t.join();
      EXPECT_EQ(bad.load(), 0);
      svc_server_stop(srv.get());
      // Once the stop has taken effect, the client learns promptly that the
      // server is gone (CallRightAfterStop covers the moment in between).
      SleepMs(300);
      int64_t t0 = NowMs();
      rc = Call(c.get(), "echo", "x");
      EXPECT_NE(0, rc);
      EXPECT_LT(NowMs() - t0, 3000);
    }
  }
  if (!is_tcp()) {
    EXPECT_NE(0, access(SocketPath().c_str(), F_OK))
        << "svc_server_free left " << SocketPath();
  }
  int fds1 = -1, th1 = -1;
  EXPECT_TRUE(Eventually(
      [&] {
        fds1 = CountFds(getpid());
        th1 = CountThreads(getpid());
        return fds1 <= fds0 && th1 <= th0 + kRuntimeThreads;
      },
      5000))
      << "after free: fds " << fds0 << " -> " << fds1 << ", threads " << th0
      << " -> " << th1;
}

TEST_P(InProcess, CallRightAfterStopFailsPromptly) {
  // svc_server_stop returns at once and the server winds down behind it; a
  // call made in that moment must still fail fast, not wait for a handshake
  // or reply that no thread will ever give. Repeated to catch the window.
  int64_t worst = 0;
  for (int i = 0; i < 20; i++) {
    std::string name = UniqueName();
    int port = is_tcp() ? PickTcpPort() : 0;
    std::string url = ClientUrl(name, port);
    Server srv = NewServer(name);
    ASSERT_TRUE(srv);
    ASSERT_EQ(0, svc_server_method(srv.get(), "echo", Echo, nullptr));
    ASSERT_EQ(0, svc_server_listen(srv.get(), ListenUrl(name, port).c_str()));
    ASSERT_EQ(0, svc_server_start(srv.get()));
    Client c = Open(url);
    ASSERT_TRUE(c);
    ASSERT_EQ(0, Call(c.get(), "echo", "x"));
    svc_server_stop(srv.get());
    int64_t t0 = NowMs();
    int rc = Call(c.get(), "echo", "x");
    int64_t ms = NowMs() - t0;
    worst = std::max(worst, ms);
    EXPECT_LT(ms, 2000) << "round " << i << ": " << ErrName(rc) << " after "
                        << ms << " ms";
  }
  printf("[ info ] %s: slowest call right after stop: %lld ms\n",
         transport().c_str(), (long long)worst);
}

TEST_P(InProcess, RunReturnsAfterStopFromAnotherThread) {
  Server srv = NewServer(name_);
  ASSERT_TRUE(srv);
  ASSERT_EQ(0, svc_server_method(srv.get(), "echo", Echo, nullptr));
  ASSERT_EQ(0, svc_server_listen(srv.get(), listen_url_.c_str()));
  std::atomic<int> run_rc{1};
  std::atomic<bool> done{false};
  std::thread t([&] {
    run_rc = svc_server_run(srv.get());
    done = true;
  });
  {
    Client c = MustOpen();
    ASSERT_TRUE(c);
    std::string resp;
    EXPECT_EQ(0, Call(c.get(), "echo", "run", &resp));
    EXPECT_EQ(resp, "run");
  }
  svc_server_stop(srv.get());
  bool stopped = Eventually([&] { return done.load(); }, 5000);
  if (!stopped) {
    ADD_FAILURE() << "svc_server_run did not return after svc_server_stop";
    t.detach(); // leaks, but the test process ends anyway
    srv.release();
    return;
  }
  t.join();
  EXPECT_EQ(0, run_rc.load());
}

TEST_P(InProcess, SecondServerOnTheSameAddressIsInUse) {
  Server a = NewServer(name_), b = NewServer(name_);
  ASSERT_TRUE(a && b);
  ASSERT_EQ(0, svc_server_listen(a.get(), listen_url_.c_str()));
  EXPECT_EQ(SVC_EADDRINUSE, svc_server_listen(b.get(), listen_url_.c_str()));
  // The first one is unaffected.
  ASSERT_EQ(0, svc_server_method(a.get(), "echo", Echo, nullptr));
  ASSERT_EQ(0, svc_server_start(a.get()));
  Client c = MustOpen();
  ASSERT_TRUE(c);
  EXPECT_EQ(0, Call(c.get(), "echo", "x"));
}

TEST_P(InProcess, OneServerOnAllThreeTransports) {
  if (transport() != "shm")
    GTEST_SKIP() << "runs once, in the shm instance";
  Server srv = NewServer(name_);
  ASSERT_TRUE(srv);
  ASSERT_EQ(0, svc_server_method(srv.get(), "echo", Echo, nullptr));
  std::string unix_url = "unix://" + tmp_->path() + "/all.sock";
  std::string tcp_url;
  ASSERT_EQ(0, svc_server_listen(srv.get(), listen_url_.c_str()));
  ASSERT_EQ(0, svc_server_listen(srv.get(), unix_url.c_str()));
  for (int i = 0; i < 5 && tcp_url.empty(); i++) {
    std::string u = "tcp://127.0.0.1:" + std::to_string(PickTcpPort());
    if (svc_server_listen(srv.get(), u.c_str()) == 0)
      tcp_url = u;
  }
  ASSERT_FALSE(tcp_url.empty());
  ASSERT_EQ(0, svc_server_start(srv.get()));
  for (const std::string &u : {url_, unix_url, tcp_url}) {
    int rc;
    Client c = Open(u, &rc);
    ASSERT_EQ(0, rc) << u;
    std::string resp;
    ASSERT_EQ(0, Call(c.get(), "echo", u, &resp)) << u;
    EXPECT_EQ(resp, u);
  }
}

TEST_P(InProcess, TcpBindsLoopbackByDefault) {
  if (transport() != "tcp")
    GTEST_SKIP() << "tcp only";
  // tcp://localhost:PORT binds 127.0.0.1, not every interface.
  Server srv = NewServer(name_);
  ASSERT_TRUE(srv);
  std::string u = "tcp://localhost:" + std::to_string(port_);
  ASSERT_EQ(0, svc_server_listen(srv.get(), u.c_str()));
  FILE *f = fopen("/proc/net/tcp", "r");
  ASSERT_TRUE(f);
  char line[512];
  char want[32];
  snprintf(want, sizeof want, ":%04X", port_);
  bool found = false, any = false;
  while (fgets(line, sizeof line, f)) {
    char local[64];
    unsigned st;
    if (sscanf(line, " %*d: %63s %*s %x", local, &st) != 2 || st != 0x0A)
      continue;
    if (!strstr(local, want))
      continue;
    found = true;
    if (strncmp(local, "00000000", 8) == 0)
      any = true;
  }
  fclose(f);
  EXPECT_TRUE(found) << "no listening socket on port " << port_;
  EXPECT_FALSE(any) << "bound to 0.0.0.0";
}

SVC_ALL_TRANSPORTS(InProcess);

// ---- rendezvous directory ----

TEST(RuntimeDir, CreatedWithMode0700) {
  TempDir tmp;
  std::string dir = tmp.path() + "/rt";
  ScopedEnv env("SVC_RUNTIME_DIR", dir.c_str());
  std::string name = UniqueName();
  Server srv = NewServer(name);
  ASSERT_TRUE(srv);
  int rc = svc_server_listen(srv.get(), ("shm://" + name).c_str());
  ASSERT_EQ(0, rc) << ErrName(rc);
  struct stat st;
  ASSERT_EQ(0, stat(dir.c_str(), &st)) << "runtime dir not created";
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  EXPECT_EQ(0, access((dir + "/" + name + ".sock").c_str(), F_OK))
      << "rendezvous socket is $SVC_RUNTIME_DIR/NAME.sock";
  srv.reset();
  EXPECT_NE(0, access((dir + "/" + name + ".sock").c_str(), F_OK))
      << "socket file left after svc_server_free";
}

TEST(RuntimeDir, XdgRuntimeDirSvc) {
  TempDir tmp;
  ScopedEnv e1("SVC_RUNTIME_DIR", nullptr);
  ScopedEnv e2("XDG_RUNTIME_DIR", tmp.path().c_str());
  std::string name = UniqueName();
  Server srv = NewServer(name);
  ASSERT_TRUE(srv);
  ASSERT_EQ(0, svc_server_listen(srv.get(), ("shm://" + name).c_str()));
  struct stat st;
  std::string dir = tmp.path() + "/svc";
  ASSERT_EQ(0, stat(dir.c_str(), &st));
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  ASSERT_EQ(0, svc_server_method(srv.get(), "echo", Echo, nullptr));
  ASSERT_EQ(0, svc_server_start(srv.get()));
  Client c = Open("shm://" + name);
  ASSERT_TRUE(c);
  EXPECT_EQ(0, Call(c.get(), "echo", "xdg"));
}

// ---- peers of another uid ----

using ForeignUid = SvcTest;

// Forks a child that drops to uid/gid 65534 and calls echo on url_.
// Returns 0 if the call succeeded, 1 if it was refused with SVC_EPERM (on
// every transport: the stream server says so before closing), -1 if the
// child failed otherwise.
int CallAsNobody(SvcTest *t, const std::string &url) {
  pid_t kid = t->Fork();
  if (kid == 0) {
    alarm(30);
    if (setgroups(0, nullptr) != 0 || setgid(65534) != 0 || setuid(65534) != 0)
      _exit(3);
    svc_client *c;
    int rc = svc_client_open(url.c_str(), &c);
    if (rc == 0) {
      rc = Call(c, "echo", "x");
      svc_client_close(c);
    }
    fprintf(stderr, "[ info ] uid 65534 on %s: %s\n", url.c_str(),
            svc_err_name(rc));
    _exit(rc == 0 ? 0 : rc == SVC_EPERM ? 1 : 2); /* refused says why */
  }
  int code = t->WaitChild(kid, 30000);
  return code == 0 || code == 1 ? code : -1;
}

TEST_P(ForeignUid, RefusedUnlessAllowed) {
  if (getuid() != 0)
    GTEST_SKIP() << "needs root to run a client as another uid";
  for (bool allow : {false, true}) {
    SCOPED_TRACE(allow ? "allow-any-uid" : "default");
    std::vector<std::string> extra;
    if (allow)
      extra.push_back("--allow-any-uid");
    ASSERT_NO_FATAL_FAILURE(StartServer(extra));
    // Open the file-system path to everybody so only SO_PEERCRED decides.
    chmod(tmp_->path().c_str(), 0755);
    chmod(rundir_.c_str(), 0755);
    chmod(SocketPath().c_str(), 0777);
    int r = CallAsNobody(this, url_);
    EXPECT_EQ(allow ? 0 : 1, r);
    ExpectServes(url_);
    server_->Kill(SIGTERM);
    server_->Wait();
  }
}

INSTANTIATE_TEST_SUITE_P(T, ForeignUid, ::testing::Values("shm", "unix"),
                         ParamName);

} // namespace
} // namespace svctest

// fixture.h — the parameterised fixture every integration test body runs
// in: one fresh runtime dir (SVC_RUNTIME_DIR), a unique service name, and a
// URL for the transport under test ("shm", "unix", "tcp" or "tls"), with a
// test_server process started on demand and always reaped. Over tls the
// server listens with the test certificates (TlsCertDir) and the client
// trusts their CA, so every test body runs unchanged over TLS too.
#ifndef SVC_TESTS_FIXTURE_H
#define SVC_TESTS_FIXTURE_H

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include <memory>
#include <string>
#include <vector>

#include "harness.h"
#include "tls_proxy.h"

namespace svctest {

// The server at url still answers a fresh client correctly.
inline void ExpectServes(const std::string &url) {
  int rc = 0;
  Client c = Open(url, &rc);
  ASSERT_EQ(0, rc) << ErrName(rc) << " opening " << url;
  std::string resp;
  rc = Call(c.get(), "echo", "alive", &resp);
  ASSERT_EQ(0, rc) << ErrName(rc);
  EXPECT_EQ(resp, "alive");
}

// Members are public so helper functions in test files can use them.
class SvcTest : public ::testing::TestWithParam<std::string> {
public:
  void SetUp() override {
    tmp_ = std::make_unique<TempDir>();
    rundir_ = tmp_->path() + "/run";
    env_ = std::make_unique<ScopedEnv>("SVC_RUNTIME_DIR", rundir_.c_str());
    name_ = UniqueName();
    NewUrl();
  }

  void TearDown() override {
    for (pid_t p : children_) {
      kill(p, SIGKILL);
      waitpid(p, nullptr, 0);
    }
    children_.clear();
    server_.reset();
    env_.reset();
    tmp_.reset();
  }

  const std::string &transport() const { return GetParam(); }
  bool is_shm() const { return transport() == "shm"; }
  bool is_stream() const { return !is_shm(); }
  // tcp or tls: a TCP port, TIME_WAIT and all.
  bool is_tcp() const { return transport() == "tcp" || transport() == "tls"; }

  // The client's and the server's URL for service name on port (a port is
  // used by tcp and tls only). They differ for tls only: ca= against
  // cert=&key=.
  std::string ClientUrl(const std::string &name, int port) const {
    if (transport() == "shm")
      return "shm://" + name;
    if (transport() == "unix")
      return "unix://" + tmp_->path() + "/" + name + ".sock";
    if (transport() == "tcp")
      return "tcp://127.0.0.1:" + std::to_string(port);
    return "tls://127.0.0.1:" + std::to_string(port) + "?ca=" + TlsCertDir() +
           "/ca.pem";
  }
  std::string ListenUrl(const std::string &name, int port) const {
    if (transport() != "tls")
      return ClientUrl(name, port);
    const std::string &d = TlsCertDir();
    return "tls://127.0.0.1:" + std::to_string(port) + "?cert=" + d +
           "/server.pem&key=" + d + "/server.key";
  }

  // Picks the URLs for the transport (a new port for tcp and tls).
  void NewUrl() {
    if (is_tcp())
      port_ = PickTcpPort();
    url_ = ClientUrl(name_, port_);
    listen_url_ = ListenUrl(name_, port_);
  }

  // The socket file a raw client connects to: the unix socket itself, or
  // the shm rendezvous socket.
  std::string SocketPath() const {
    if (transport() == "unix")
      return url_.substr(7);
    return rundir_ + "/" + name_ + ".sock";
  }

  // A raw stream connection to the server's listening socket; over tls a
  // socket whose bytes a proxy thread carries in a TLS session.
  int RawConnect() const {
    if (transport() == "tcp")
      return ConnectTcp(port_);
    if (transport() == "tls")
      return TlsRawConnect(port_, TlsCertDir() + "/ca.pem");
    return ConnectUnix(SocketPath());
  }

  // Starts test_server on url_ with extra options; on tcp retries with a new
  // port if another process took ours. Fails the test if it cannot start.
  void StartServer(const std::vector<std::string> &extra = {}) {
    for (int attempt = 0; attempt < 5; attempt++) {
      server_ = std::make_unique<ServerProc>();
      std::vector<std::string> args = {"--name", name_, "--listen",
                                       listen_url_};
      args.insert(args.end(), extra.begin(), extra.end());
      int st = server_->Start(args);
      if (st == 0)
        return;
      if (is_tcp() && WIFEXITED(st) && WEXITSTATUS(st) == 3) {
        NewUrl();
        continue;
      }
      FAIL() << "test_server did not start on " << url_ << " (status " << st
             << ")";
    }
    FAIL() << "no free tcp port";
  }

  // Restarts on the same URL (after the old server is gone).
  void RestartServer(const std::vector<std::string> &extra = {}) {
    server_ = std::make_unique<ServerProc>();
    std::vector<std::string> args = {"--name", name_, "--listen", listen_url_};
    args.insert(args.end(), extra.begin(), extra.end());
    ASSERT_EQ(0, server_->Start(args)) << "restart on " << url_;
  }

  pid_t ServerPid() const { return server_ ? server_->pid() : -1; }

  Client MustOpen() {
    int rc = 0;
    Client c = Open(url_, &rc);
    EXPECT_EQ(0, rc) << ErrName(rc) << " opening " << url_;
    return c;
  }

  // fork()ed helper processes: killed and reaped in TearDown.
  pid_t Fork() {
    fflush(nullptr);
    pid_t parent = getpid();
    pid_t p = fork();
    if (p > 0)
      children_.push_back(p);
    if (p == 0) { // dies with the test process: no orphans on a timeout
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent)
        _exit(127);
    }
    return p;
  }

  // Waits for a forked child; returns its exit code, or -1 on a signal or
  // after timeout_ms (then the child is killed).
  int WaitChild(pid_t p, int timeout_ms) {
    int st = 0;
    int64_t end = NowMs() + timeout_ms;
    for (;;) {
      pid_t r = waitpid(p, &st, WNOHANG);
      if (r == p)
        break;
      if (NowMs() >= end) {
        kill(p, SIGKILL);
        waitpid(p, &st, 0);
        st = -1;
        break;
      }
      SleepMs(10);
    }
    for (size_t i = 0; i < children_.size(); i++)
      if (children_[i] == p)
        children_.erase(children_.begin() + (long)i);
    if (st == -1 || !WIFEXITED(st))
      return -1;
    return WEXITSTATUS(st);
  }

  std::unique_ptr<TempDir> tmp_;
  std::unique_ptr<ScopedEnv> env_;
  std::unique_ptr<ServerProc> server_;
  std::string rundir_, name_, url_;
  std::string listen_url_; // what the server listens on (tls: cert and key)
  int port_ = 0;
  std::vector<pid_t> children_;
};

inline std::string ParamName(const ::testing::TestParamInfo<std::string> &i) {
  return i.param;
}

} // namespace svctest

// Instantiates a suite over every transport, or the stream ones.
#define SVC_ALL_TRANSPORTS(suite)                                              \
  INSTANTIATE_TEST_SUITE_P(T, suite,                                           \
                           ::testing::Values("shm", "unix", "tcp", "tls"),     \
                           svctest::ParamName)
#define SVC_STREAM_TRANSPORTS(suite)                                           \
  INSTANTIATE_TEST_SUITE_P(T, suite, ::testing::Values("unix", "tcp", "tls"),  \
                           svctest::ParamName)

#endif

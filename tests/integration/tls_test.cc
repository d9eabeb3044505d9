// tls_test.cc — what only tls:// has: certificates and names verified,
// mutual TLS, the reasons a refused side is given, key files guarded, a
// plain client and a TLS client each on the other's port, the tcp://
// warning, and a call that really crosses an interface between two network
// namespaces. Everything tls:// shares with tcp:// (reconnects, exactly
// once, goaway, calls in flight, prepared requests, timeouts, raw frames)
// runs in the transport-parameterised suites' /tls instances.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"

namespace svctest {
namespace {

struct OpenResult {
  Client client;
  int rc = 0;
  std::string why;
};

OpenResult OpenWhy(const std::string &url) {
  OpenResult r;
  char why[512];
  svc_client *c = nullptr;
  r.rc = svc_client_open_ex(url.c_str(), &c, why, sizeof why);
  r.client.reset(c);
  r.why = why;
  return r;
}

#define EXPECT_HAS(text, part)                                                 \
  EXPECT_NE(std::string::npos, std::string(text).find(part))                   \
      << "'" << (text) << "' lacks '" << (part) << "'"

class Tls : public ::testing::Test {
protected:
  const std::string d_ = TlsCertDir();
  const std::string name_ = UniqueName();
  int port_ = 0;
  std::unique_ptr<ServerProc> server_;

  std::string Pem(const std::string &base) const { return d_ + "/" + base; }

  // Starts test_server on tls:// with certificate BASE.pem/BASE.key and
  // extra query parameters (e.g. "&client_ca=..."), or on plain tcp://.
  void Serve(const std::string &base = "server", const std::string &extra = "",
             bool plain = false) {
    for (int attempt = 0; attempt < 5; attempt++) {
      port_ = PickTcpPort();
      std::string url = plain ? "tcp://127.0.0.1:" + std::to_string(port_)
                              : "tls://127.0.0.1:" + std::to_string(port_) +
                                    "?cert=" + Pem(base + ".pem") +
                                    "&key=" + Pem(base + ".key") + extra;
      server_ = std::make_unique<ServerProc>();
      int st = server_->Start({"--name", name_, "--listen", url});
      if (st == 0)
        return;
      ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 3)
          << "test_server did not start on " << url << " (status " << st << ")";
    }
    FAIL() << "no free port";
  }

  // A client URL for our server: query is everything after '?'.
  std::string Url(const std::string &query,
                  const std::string &host = "127.0.0.1") const {
    return "tls://" + host + ":" + std::to_string(port_) +
           (query.empty() ? "" : "?" + query);
  }
  std::string TrustingUrl(const std::string &more = "") const {
    return Url("ca=" + Pem("ca.pem") + more);
  }

  // The open fails with SVC_ETLS, promptly, saying part.
  void ExpectRefused(const std::string &url, const std::string &part) {
    int64_t t0 = NowMs();
    OpenResult r = OpenWhy(url);
    EXPECT_EQ(SVC_ETLS, r.rc) << ErrName(r.rc) << " for " << url;
    EXPECT_FALSE(r.client);
    EXPECT_HAS(r.why, part);
    EXPECT_LT(NowMs() - t0, 3000) << url;
  }
};

TEST_F(Tls, EchoOfEverySizeUpTo16MiB) {
  ASSERT_NO_FATAL_FAILURE(Serve());
  OpenResult r = OpenWhy(TrustingUrl());
  ASSERT_EQ(0, r.rc) << r.why;
  // Record boundaries (16 KiB), the gather limit and the read buffer.
  for (size_t n :
       {(size_t)0, (size_t)1, (size_t)64, (size_t)4096, (size_t)16383,
        (size_t)16384, (size_t)16385, (size_t)65536, (size_t)65537,
        (size_t)1 << 20, ((size_t)1 << 20) + 7, (size_t)16 << 20}) {
    std::string req = RandomBytes(n, n), resp;
    ASSERT_EQ(0, Call(r.client.get(), "echo", req, &resp)) << n;
    ASSERT_TRUE(resp == req) << "echo of " << n << " bytes differs";
  }
}

// Large frames both ways with the sockets full: a write whose records
// wait in the batch is reported only once sent, and reads go on meanwhile.
TEST_F(Tls, AWindowOfLargeCallsWithFullSockets) {
  ASSERT_NO_FATAL_FAILURE(Serve());
  OpenResult r = OpenWhy(TrustingUrl());
  ASSERT_EQ(0, r.rc) << r.why;
  svc_client *c = r.client.get();
  ASSERT_EQ(0, svc_client_set_timeout(c, 30000));
  const int kCalls = 8;
  std::vector<std::string> reqs;
  std::map<uint64_t, int> which;
  for (int i = 0; i < kCalls; i++) {
    reqs.push_back(RandomBytes((uint64_t)i, ((size_t)2 << 20) + (size_t)i));
    uint64_t id = 0;
    ASSERT_EQ(0, svc_call_send(c, "echo", reqs[i].data(), reqs[i].size(), &id))
        << i << ": " << svc_client_last_error_text(c);
    which[id] = i;
  }
  for (int got = 0; got < kCalls; got++) {
    uint64_t id = 0;
    const void *resp;
    size_t len;
    ASSERT_EQ(0, svc_call_recv(c, 30000, &id, &resp, &len))
        << svc_client_last_error_text(c);
    ASSERT_EQ(1u, which.count(id));
    const std::string &want = reqs[which[id]];
    ASSERT_EQ(want.size(), len);
    ASSERT_EQ(0, memcmp(want.data(), resp, len)) << "call " << which[id];
  }
}

TEST_F(Tls, ServerChainingToAnotherCaIsRefused) {
  ASSERT_NO_FATAL_FAILURE(Serve());
  ExpectRefused(Url("ca=" + Pem("other-ca.pem")), "certificate verify failed");
  // The other way round: a server of the other CA, a client of ours.
  ASSERT_NO_FATAL_FAILURE(Serve("other-server"));
  ExpectRefused(TrustingUrl(), "unable to get local issuer certificate");
}

TEST_F(Tls, SystemStoreDoesNotTrustATestCa) {
  ASSERT_NO_FATAL_FAILURE(Serve());
  ExpectRefused(Url(""), "certificate verify failed");
}

TEST_F(Tls, NameNotOnTheCertificateIsRefused) {
  ASSERT_NO_FATAL_FAILURE(Serve());
  ExpectRefused(TrustingUrl("&servername=not-localhost.example"),
                "hostname mismatch");
  // DNS names that are on it pass, given as host or as servername.
  EXPECT_EQ(0, OpenWhy(Url("ca=" + Pem("ca.pem"), "localhost")).rc);
  EXPECT_EQ(0, OpenWhy(TrustingUrl("&servername=localhost")).rc);
  // A certificate without our address is refused when we call by address.
  ASSERT_NO_FATAL_FAILURE(Serve("server-wronghost"));
  ExpectRefused(TrustingUrl(), "IP address mismatch");
  OpenResult ok = OpenWhy(TrustingUrl("&servername=not-this-host.invalid"));
  EXPECT_EQ(0, ok.rc) << ok.why;
}

TEST_F(Tls, ExpiredCertificateIsRefused) {
  ASSERT_NO_FATAL_FAILURE(Serve("expired"));
  ExpectRefused(TrustingUrl(), "certificate has expired");
}

TEST_F(Tls, MutualTlsWantsACertificateOfItsCa) {
  ASSERT_NO_FATAL_FAILURE(Serve("server", "&client_ca=" + Pem("ca.pem")));
  // Refused at open, not in the first call: the client waits for the
  // server's verdict on its certificate.
  ExpectRefused(TrustingUrl(), "requires a client certificate");
  ExpectRefused(TrustingUrl("&cert=" + Pem("other-client.pem") +
                            "&key=" + Pem("other-client.key")),
                "refused");
  OpenResult r = OpenWhy(
      TrustingUrl("&cert=" + Pem("client.pem") + "&key=" + Pem("client.key")));
  ASSERT_EQ(0, r.rc) << r.why;
  std::string resp;
  ASSERT_EQ(0, Call(r.client.get(), "echo", "mutual", &resp));
  EXPECT_EQ("mutual", resp);
  // The server still serves after refusing two clients.
  ASSERT_EQ(0, Call(r.client.get(), "echo", "again", &resp));
}

TEST_F(Tls, PlainClientOnTheTlsPortFailsWithinItsTimeout) {
  ASSERT_NO_FATAL_FAILURE(Serve());
  Client c = Open("tcp://127.0.0.1:" + std::to_string(port_));
  ASSERT_TRUE(c); // TCP connects: the server answers the first request
  ASSERT_EQ(0, svc_client_set_timeout(c.get(), 2000));
  int64_t t0 = NowMs();
  EXPECT_EQ(SVC_ETLS, Call(c.get(), "echo", "in clear"));
  EXPECT_LT(NowMs() - t0, 2000);
  EXPECT_HAS(svc_client_last_error_text(c.get()), "tls://");
  // The server is unharmed.
  OpenResult r = OpenWhy(TrustingUrl());
  ASSERT_EQ(0, r.rc) << r.why;
  EXPECT_EQ(0, Call(r.client.get(), "echo", "x"));
}

TEST_F(Tls, TlsClientOnAPlainPortFailsCleanly) {
  ASSERT_NO_FATAL_FAILURE(Serve("server", "", /*plain=*/true));
  ExpectRefused(TrustingUrl(), "plain tcp://");
  Client c = Open("tcp://127.0.0.1:" + std::to_string(port_));
  ASSERT_TRUE(c);
  EXPECT_EQ(0, Call(c.get(), "echo", "still serving"));
}

// A copy of the server's key with mode mode, in dir.
std::string KeyWithMode(const std::string &src, const std::string &dir,
                        mode_t mode) {
  std::string path = dir + "/key-" + std::to_string(mode) + ".key";
  std::ifstream in(src, std::ios::binary);
  std::ofstream out(path, std::ios::binary);
  out << in.rdbuf();
  out.close();
  chmod(path.c_str(), mode);
  return path;
}

struct ServerFree {
  void operator()(svc_server *s) const { svc_server_free(s); }
};
using Server = std::unique_ptr<svc_server, ServerFree>;

Server NewServer() {
  svc_server *s = nullptr;
  EXPECT_EQ(0, svc_server_new("tlstest", &s));
  return Server(s);
}

TEST_F(Tls, KeyFileReadableByOthersIsRefusedAtListen) {
  TempDir tmp;
  for (mode_t mode : {0644, 0640, 0604}) {
    std::string key = KeyWithMode(Pem("server.key"), tmp.path(), mode);
    Server s = NewServer();
    std::string url = "tls://127.0.0.1:" + std::to_string(PickTcpPort()) +
                      "?cert=" + Pem("server.pem") + "&key=" + key;
    EXPECT_EQ(SVC_EPERM, svc_server_listen(s.get(), url.c_str())) << mode;
    EXPECT_HAS(svc_server_last_error_text(s.get()), "chmod 600");
    EXPECT_HAS(svc_server_last_error_text(s.get()), key);
  }
  std::string key = KeyWithMode(Pem("server.key"), tmp.path(), 0600);
  Server s = NewServer();
  std::string url = "tls://127.0.0.1:" + std::to_string(PickTcpPort()) +
                    "?cert=" + Pem("server.pem") + "&key=" + key;
  EXPECT_EQ(0, svc_server_listen(s.get(), url.c_str()))
      << svc_server_last_error_text(s.get());
  // A client's key is held to the same rule.
  ASSERT_NO_FATAL_FAILURE(Serve());
  std::string open_key = KeyWithMode(Pem("client.key"), tmp.path(), 0644);
  OpenResult r =
      OpenWhy(TrustingUrl("&cert=" + Pem("client.pem") + "&key=" + open_key));
  EXPECT_EQ(SVC_EPERM, r.rc) << r.why;
  EXPECT_HAS(r.why, "chmod 600");
}

TEST_F(Tls, ParametersOfTheOtherSideOrMissingOnesAreRefused) {
  std::string port = std::to_string(PickTcpPort());
  std::string pair = "cert=" + Pem("server.pem") + "&key=" + Pem("server.key");
  struct Case {
    std::string query;
    int rc;
    const char *why;
  } server_cases[] = {
      {"", SVC_EINVAL, "needs cert= and key="},
      {"cert=" + Pem("server.pem"), SVC_EINVAL, "needs cert= and key="},
      {pair + "&ca=" + Pem("ca.pem"), SVC_EINVAL, "client parameter"},
      {pair + "&servername=x", SVC_EINVAL, "client parameter"},
      {"cert=/nonexistent/s.pem&key=" + Pem("server.key"), SVC_ETLS,
       "/nonexistent/s.pem"},
      {"cert=" + Pem("server.pem") + "&key=/nonexistent/s.key", SVC_ETLS,
       "/nonexistent/s.key"},
      {"cert=" + Pem("server.pem") + "&key=" + Pem("client.key"), SVC_ETLS,
       "cannot use key"},
      {pair + "&client_ca=/nonexistent/ca.pem", SVC_ETLS, "/nonexistent/ca"},
  };
  for (const Case &k : server_cases) {
    Server s = NewServer();
    std::string url =
        "tls://127.0.0.1:" + port + (k.query.empty() ? "" : "?" + k.query);
    EXPECT_EQ(k.rc, svc_server_listen(s.get(), url.c_str())) << url;
    EXPECT_HAS(svc_server_last_error_text(s.get()), k.why);
  }
  ASSERT_NO_FATAL_FAILURE(Serve());
  Case client_cases[] = {
      {"ca=" + Pem("ca.pem") + "&client_ca=" + Pem("ca.pem"), SVC_EINVAL,
       "server parameter"},
      {"ca=" + Pem("ca.pem") + "&cert=" + Pem("client.pem"), SVC_EINVAL,
       "both cert= and key="},
      {"ca=/nonexistent/ca.pem", SVC_ETLS, "/nonexistent/ca.pem"},
  };
  for (const Case &k : client_cases) {
    OpenResult r = OpenWhy(Url(k.query));
    EXPECT_EQ(k.rc, r.rc) << k.query;
    EXPECT_HAS(r.why, k.why);
  }
}

TEST_F(Tls, EveryReconnectVerifiesTheServerAgain) {
  ASSERT_NO_FATAL_FAILURE(Serve());
  OpenResult r = OpenWhy(TrustingUrl());
  ASSERT_EQ(0, r.rc) << r.why;
  ASSERT_EQ(0, Call(r.client.get(), "echo", "x"));
  // The same port comes back with an expired certificate: the client's
  // next call reconnects, and must not take it on trust.
  server_->Kill(SIGKILL);
  server_->Wait();
  server_ = std::make_unique<ServerProc>();
  ASSERT_EQ(0, server_->Start({"--name", name_, "--listen",
                               Url("cert=" + Pem("expired.pem") +
                                   "&key=" + Pem("expired.key"))}));
  EXPECT_EQ(SVC_ETLS, Call(r.client.get(), "echo", "x"));
  EXPECT_HAS(svc_client_last_error_text(r.client.get()),
             "certificate has expired");
}

TEST_F(Tls, ServerKilledMidCallIsPeerGone) {
  ASSERT_NO_FATAL_FAILURE(Serve());
  OpenResult r = OpenWhy(TrustingUrl());
  ASSERT_EQ(0, r.rc) << r.why;
  std::thread killer([&] {
    SleepMs(300);
    server_->Kill(SIGKILL);
  });
  int64_t t0 = NowMs();
  EXPECT_EQ(SVC_EPEERGONE, Call(r.client.get(), "sleep", "10000"));
  EXPECT_LT(NowMs() - t0, 5000);
  killer.join();
}

// ---- the tcp:// warning ----

TEST(TcpWarning, OnlyForAListenerOtherHostsCanReach) {
  struct Case {
    std::string url;
    bool warns;
  } cases[] = {
      {"tcp://0.0.0.0:" + std::to_string(PickTcpPort()), true},
      {"tcp://127.0.0.1:" + std::to_string(PickTcpPort()), false},
      {"tcp://localhost:" + std::to_string(PickTcpPort()), false},
      {"tls://0.0.0.0:" + std::to_string(PickTcpPort()) + "?cert=" +
           TlsCertDir() + "/server.pem&key=" + TlsCertDir() + "/server.key",
       false},
  };
  for (const Case &k : cases) {
    Server s = NewServer();
    testing::internal::CaptureStderr();
    int rc = svc_server_listen(s.get(), k.url.c_str());
    std::string err = testing::internal::GetCapturedStderr();
    ASSERT_EQ(0, rc) << k.url << ": " << svc_server_last_error_text(s.get());
    if (k.warns) {
      EXPECT_HAS(err, "unauthenticated");
      EXPECT_HAS(err, "use tls://");
      EXPECT_EQ(1, std::count(err.begin(), err.end(), '\n')) << err;
    } else {
      EXPECT_EQ("", err) << k.url;
    }
  }
}

// ---- across an interface ----

// Runs a shell command; true when it exited 0.
bool Sh(const std::string &cmd) {
  return system((cmd + " >/dev/null 2>&1").c_str()) == 0;
}

long ReadCounter(const std::string &ns, const std::string &dev,
                 const char *what) {
  std::string cmd = "ip netns exec " + ns + " cat /sys/class/net/" + dev +
                    "/statistics/" + what;
  FILE *p = popen(cmd.c_str(), "r");
  long v = -1;
  if (p) {
    if (fscanf(p, "%ld", &v) != 1)
      v = -1;
    pclose(p);
  }
  return v;
}

// Two network namespaces joined by a veth pair, removed at scope exit.
struct NetnsPair {
  std::string a, b;
  bool ok = false;
  std::string why;
  NetnsPair() {
    std::string tag = std::to_string(getpid() % 100000);
    a = "svct" + tag + "a";
    b = "svct" + tag + "b";
    const std::string steps[] = {
        "ip netns add " + a,
        "ip netns add " + b,
        "ip link add va" + tag + " netns " + a + " type veth peer name vb" +
            tag + " netns " + b,
        "ip -n " + a + " addr add 10.199.0.1/30 dev va" + tag,
        "ip -n " + b + " addr add 10.199.0.2/30 dev vb" + tag,
        "ip -n " + a + " link set lo up",
        "ip -n " + b + " link set lo up",
        "ip -n " + a + " link set va" + tag + " up",
        "ip -n " + b + " link set vb" + tag + " up",
    };
    for (const std::string &s : steps)
      if (!Sh(s)) {
        why = "'" + s + "' failed";
        return;
      }
    ok = true;
  }
  ~NetnsPair() {
    Sh("ip netns del " + a);
    Sh("ip netns del " + b);
  }
  std::string dev_b() const { return "vb" + b.substr(4, b.size() - 5); }
};

// Moves the calling thread into network namespace ns (a thread's own).
bool EnterNetns(const std::string &ns) {
  int fd = open(("/run/netns/" + ns).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return false;
  bool ok = setns(fd, CLONE_NEWNET) == 0;
  close(fd);
  return ok;
}

int Echo(void *, const void *req, size_t len, svc_reply *reply) {
  return svc_reply_set(reply, req, len);
}

TEST(TlsAcrossHosts, CallCrossesAVethPairBetweenTwoNamespaces) {
  if (geteuid() != 0)
    GTEST_SKIP() << "needs root to make network namespaces";
  if (!Sh("ip netns list"))
    GTEST_SKIP() << "no 'ip netns' on this machine";
  NetnsPair net;
  if (!net.ok)
    GTEST_SKIP() << "network namespaces not allowed here: " << net.why;
  const std::string d = TlsCertDir();
  const std::string listen = "tls://10.199.0.1:5203?cert=" + d +
                             "/server.pem&key=" + d + "/server.key";
  int ready[2];
  ASSERT_EQ(0, pipe(ready));
  pid_t server = fork();
  ASSERT_GE(server, 0);
  if (server == 0) { // the server host: namespace a only
    close(ready[0]);
    svc_server *s = nullptr;
    if (!EnterNetns(net.a) || svc_server_new("across", &s) != 0 ||
        svc_server_method(s, "echo", Echo, nullptr) != 0 ||
        svc_server_listen(s, listen.c_str()) != 0)
      _exit(2);
    if (write(ready[1], "R", 1) != 1)
      _exit(3);
    _exit(svc_server_run(s) == 0 ? 0 : 4);
  }
  close(ready[1]);
  char b = 0;
  bool up = read(ready[0], &b, 1) == 1;
  close(ready[0]);
  ASSERT_TRUE(up) << "the server did not start in namespace " << net.a;

  const std::string url = "tls://10.199.0.1:5203?ca=" + d + "/ca.pem";
  // From the test's own namespace the address is not even routed.
  OpenResult outside = OpenWhy(url);
  EXPECT_NE(0, outside.rc) << "10.199.0.1 answered outside the namespaces";

  long rx0 = ReadCounter(net.b, net.dev_b(), "rx_bytes");
  std::string req = RandomBytes(7, 1 << 20), resp;
  int rc = -1;
  std::string why;
  std::thread client([&] { // the client host: namespace b only
    if (!EnterNetns(net.b)) {
      why = "setns failed";
      return;
    }
    OpenResult r = OpenWhy(url);
    rc = r.rc;
    why = r.why;
    if (rc == 0)
      rc = Call(r.client.get(), "echo", req, &resp);
  });
  client.join();
  long rx1 = ReadCounter(net.b, net.dev_b(), "rx_bytes");
  kill(server, SIGTERM);
  int st = 0;
  waitpid(server, &st, 0);
  ASSERT_EQ(0, rc) << ErrName(rc) << ": " << why;
  EXPECT_TRUE(resp == req);
  // The 1 MiB reply came in over the veth interface, encrypted.
  EXPECT_GE(rx1 - rx0, 1 << 20) << "rx_bytes " << rx0 << " -> " << rx1;
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "server status " << st;
  printf("[ info ] 1 MiB echo across the veth pair: rx %ld bytes\n", rx1 - rx0);
}

} // namespace
} // namespace svctest

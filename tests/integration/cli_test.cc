// cli_test.cc — every `svc` subcommand against examples/echo_server (run
// with its own SVC_RUNTIME_DIR, name and port): output and exit codes,
// --help everywhere, and clear errors for a bad URL, a dead service and an
// unknown method.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "harness.h"

namespace svctest {
namespace {

struct Result {
  int code = -1; // exit code, -1 if killed
  std::string out, err;
};

std::string Slurp(const std::string &path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

class CliTest : public ::testing::Test {
public:
  static void SetUpTestSuite() {
    tmp_ = new TempDir();
    env_ = new ScopedEnv("SVC_RUNTIME_DIR", (tmp_->path() + "/run").c_str());
    name_ = UniqueName("cli");
    for (int attempt = 0; attempt < 5 && server_ <= 0; attempt++) {
      port_ = PickTcpPort();
      server_ = fork();
      if (server_ == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 2);
        execl(SVC_ECHO_SERVER, SVC_ECHO_SERVER, name_.c_str(),
              std::to_string(port_).c_str(), (char *)nullptr);
        _exit(127);
      }
      bool up = Eventually(
          [] {
            int st;
            if (waitpid(server_, &st, WNOHANG) == server_)
              return true;
            Client c = Open(TcpUrl());
            Client s = Open(ShmUrl());
            return c && s;
          },
          10000);
      int st;
      if (!up || waitpid(server_, &st, WNOHANG) == server_) {
        kill(server_, SIGKILL);
        waitpid(server_, nullptr, 0);
        server_ = -1; // port taken? try another
      }
    }
  }

  static void TearDownTestSuite() {
    if (server_ > 0) {
      kill(server_, SIGTERM);
      waitpid(server_, nullptr, 0);
    }
    unlink(("/tmp/svc-" + name_ + ".sock").c_str());
    delete env_;
    delete tmp_;
  }

  void SetUp() override {
    ASSERT_GT(server_, 0) << "echo_server did not start";
  }

  static std::string ShmUrl() { return "shm://" + name_; }
  static std::string UnixUrl() { return "unix:///tmp/svc-" + name_ + ".sock"; }
  static std::string TcpUrl() {
    return "tcp://127.0.0.1:" + std::to_string(port_);
  }

  // Runs svc with args (stdin from in), capturing output and exit code.
  static Result Svc(const std::vector<std::string> &args,
                    const std::string &in = "") {
    std::string base = tmp_->path() + "/" + UniqueName();
    std::ofstream(base + ".in") << in;
    fflush(nullptr);
    pid_t p = fork();
    if (p == 0) {
      int i = open((base + ".in").c_str(), O_RDONLY);
      int o = open((base + ".out").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      int e = open((base + ".err").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      dup2(i, 0);
      dup2(o, 1);
      dup2(e, 2);
      std::vector<char *> argv = {(char *)SVC_TOOL};
      for (const auto &a : args)
        argv.push_back((char *)a.c_str());
      argv.push_back(nullptr);
      execv(SVC_TOOL, argv.data());
      _exit(127);
    }
    Result r;
    int st = 0;
    waitpid(p, &st, 0);
    r.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    r.out = Slurp(base + ".out");
    r.err = Slurp(base + ".err");
    return r;
  }

  static long long EchoCalls() {
    Result r = Svc({"stats", ShmUrl(), "--json"});
    size_t at = r.out.find("{\"name\":\"echo\",\"calls\":");
    return at == std::string::npos ? -1 : atoll(r.out.c_str() + at + 23);
  }

  static TempDir *tmp_;
  static ScopedEnv *env_;
  static std::string name_;
  static int port_;
  static pid_t server_;
};

TempDir *CliTest::tmp_;
ScopedEnv *CliTest::env_;
std::string CliTest::name_;
int CliTest::port_;
pid_t CliTest::server_ = -1;

#define EXPECT_HAS(hay, needle)                                                \
  EXPECT_NE(std::string::npos, (hay).find(needle)) << (hay)

TEST_F(CliTest, HelpForEverySubcommand) {
  Result r = Svc({"--help"});
  EXPECT_EQ(0, r.code);
  EXPECT_HAS(r.out, "usage: svc COMMAND");
  for (const char *sub :
       {"call", "methods", "info", "stats", "ping", "bench"}) {
    r = Svc({sub, "--help"});
    EXPECT_EQ(0, r.code) << sub;
    EXPECT_HAS(r.out, std::string("usage: svc ") + sub);
  }
  r = Svc({});
  EXPECT_EQ(2, r.code);
  r = Svc({"frobnicate"});
  EXPECT_EQ(2, r.code);
  EXPECT_HAS(r.err, "unknown command frobnicate");
}

TEST_F(CliTest, CallPrintsRawReplyOnEveryTransport) {
  for (const std::string &url : {ShmUrl(), UnixUrl(), TcpUrl()}) {
    Result r = Svc({"call", url, "echo", "hello world"});
    EXPECT_EQ(0, r.code) << url << ": " << r.err;
    EXPECT_EQ("hello world", r.out) << url;
  }
}

TEST_F(CliTest, CallReadsStdinAndPrintsHex) {
  Result r = Svc({"call", ShmUrl(), "echo", "-"}, std::string("a\0b\n", 4));
  EXPECT_EQ(0, r.code) << r.err;
  EXPECT_EQ(std::string("a\0b\n", 4), r.out);
  r = Svc({"call", ShmUrl(), "echo", "hi", "--hex"});
  EXPECT_EQ(0, r.code);
  EXPECT_EQ("6869\n", r.out);
  r = Svc({"call", TcpUrl(), "echo", "--", "-n"}); // data starting with '-'
  EXPECT_EQ(0, r.code) << r.err;
  EXPECT_EQ("-n", r.out);
}

TEST_F(CliTest, ClearErrors) {
  Result r = Svc({"call", ShmUrl(), "nonesuch", "x"});
  EXPECT_EQ(1, r.code);
  EXPECT_HAS(r.err, "svc: SVC_ENOMETHOD: no such method");
  EXPECT_EQ("", r.out);

  r = Svc({"call", "bogus://x", "echo"});
  EXPECT_EQ(1, r.code);
  EXPECT_HAS(r.err, "svc: SVC_EINVAL:");
  EXPECT_HAS(r.err, "not a valid service URL");

  r = Svc({"info", "shm://" + UniqueName("dead")});
  EXPECT_EQ(1, r.code);
  EXPECT_HAS(r.err, "svc: SVC_ECONNREFUSED:");

  r = Svc({"ping", "tcp://127.0.0.1:1", "-n", "2"});
  EXPECT_EQ(1, r.code);
  EXPECT_HAS(r.err, "SVC_ECONNREFUSED");

  r = Svc({"call", ShmUrl()});
  EXPECT_EQ(2, r.code);
  EXPECT_HAS(r.err, "usage: svc call");
  r = Svc({"ping", ShmUrl(), "-n", "abc"});
  EXPECT_EQ(2, r.code);
  r = Svc({"stats", ShmUrl(), "--bogus"});
  EXPECT_EQ(2, r.code);
  EXPECT_HAS(r.err, "unknown option --bogus");
}

TEST_F(CliTest, MethodsAndInfo) {
  Result r = Svc({"methods", UnixUrl()});
  EXPECT_EQ(0, r.code) << r.err;
  EXPECT_EQ("echo\n", r.out);
  r = Svc({"methods", UnixUrl(), "--json"});
  EXPECT_EQ("[\"echo\"]\n", r.out);

  r = Svc({"info", ShmUrl()});
  EXPECT_EQ(0, r.code) << r.err;
  EXPECT_HAS(r.out, "name      " + name_ + "\n");
  EXPECT_HAS(r.out, "version   " + std::string(svc_version()) + "\n");
  EXPECT_HAS(r.out, "pid       " + std::to_string(server_) + "\n");
  EXPECT_HAS(r.out, "workers   1\n");
  EXPECT_HAS(r.out, "listener  " + TcpUrl() + "\n");
  r = Svc({"info", ShmUrl(), "--json"});
  EXPECT_EQ(0u, r.out.find("{\"format\":1,")) << r.out;
}

TEST_F(CliTest, StatsTableCountsCalls) {
  long long before = EchoCalls();
  ASSERT_GE(before, 0);
  for (int i = 0; i < 3; i++)
    ASSERT_EQ(0, Svc({"call", TcpUrl(), "echo", "12345"}).code);
  EXPECT_EQ(before + 3, EchoCalls());

  Result r = Svc({"stats", ShmUrl()});
  EXPECT_EQ(0, r.code) << r.err;
  EXPECT_HAS(r.out, "service " + name_);
  EXPECT_HAS(r.out, "METHOD");
  EXPECT_HAS(r.out, "P99.9");
  std::istringstream lines(r.out);
  std::string line;
  bool found = false;
  while (std::getline(lines, line)) {
    std::istringstream f(line);
    std::string method;
    long long calls = -1;
    f >> method >> calls;
    if (method == "echo") {
      found = true;
      EXPECT_EQ(before + 3, calls) << line;
    }
  }
  EXPECT_TRUE(found) << r.out;
  EXPECT_HAS(r.out, "svc.stats");
}

TEST_F(CliTest, Ping) {
  Result r = Svc({"ping", ShmUrl(), "-n", "5"});
  EXPECT_EQ(0, r.code) << r.err;
  EXPECT_HAS(r.out, "pong from " + ShmUrl() + ": seq=5 time=");
  EXPECT_HAS(r.out, "5 sent, 5 answered");
  EXPECT_HAS(r.out, "rtt min/avg/p50/p99/max = ");
  r = Svc({"ping", TcpUrl(), "-n", "3", "-q", "-i", "10"});
  EXPECT_EQ(0, r.code) << r.err;
  EXPECT_EQ(std::string::npos, r.out.find("seq=")) << r.out;
  EXPECT_HAS(r.out, "3 sent, 3 answered");
}

TEST_F(CliTest, BenchClosedLoop) {
  Result r =
      Svc({"bench", ShmUrl(), "echo", "-c", "2", "-d", "1.2", "-s", "100"});
  EXPECT_EQ(0, r.code) << r.err;
  EXPECT_HAS(r.out, "2 clients, 100-byte requests, closed loop");
  EXPECT_HAS(r.out, "calls/s");
  EXPECT_HAS(r.out, "errors    0\n");
  EXPECT_HAS(r.out, "p99.9");
  EXPECT_HAS(r.err, "[  1s]"); // the progress line
}

TEST_F(CliTest, BenchOpenLoopHoldsTheRate) {
  Result r =
      Svc({"bench", TcpUrl(), "echo", "--rate", "400", "-d", "1", "-c", "2"});
  EXPECT_EQ(0, r.code) << r.err;
  EXPECT_HAS(r.out, "open loop");
  size_t at = r.out.find("calls     ");
  ASSERT_NE(std::string::npos, at) << r.out;
  long long calls = atoll(r.out.c_str() + at + 10);
  EXPECT_GE(calls, 380) << r.out;
  EXPECT_LE(calls, 401) << r.out;
}

TEST_F(CliTest, BenchWithAWindowKeepsCallsInFlight) {
  Result r = Svc({"bench", TcpUrl(), "echo", "-c", "1", "-d", "1", "-s", "64",
                  "--window", "8"});
  EXPECT_EQ(0, r.code) << r.err;
  EXPECT_HAS(r.out, "errors    0\n");
  EXPECT_HAS(r.out, "in flight at most 8 calls per client");
  // An open loop keeps one call in flight: both at once is a usage error.
  r = Svc({"bench", TcpUrl(), "echo", "--rate", "100", "--window", "4"});
  EXPECT_EQ(2, r.code) << r.out;
}

TEST_F(CliTest, BenchUnknownMethodFailsFast) {
  Result r = Svc({"bench", ShmUrl(), "nonesuch", "-d", "5"});
  EXPECT_EQ(1, r.code);
  EXPECT_HAS(r.err, "svc: SVC_ENOMETHOD: no such method");
}

} // namespace
} // namespace svctest

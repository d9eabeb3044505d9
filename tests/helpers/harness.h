// harness.h — what the integration tests share: unique names, ports and
// temporary runtime dirs so parallel tests never collide, a helper server
// process (fork/exec of test_server, waits for READY, always reaped), raw
// socket access for fault injection, and /proc readers for leak checks.
#ifndef SVC_TESTS_HARNESS_H
#define SVC_TESTS_HARNESS_H

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "svc.h"

namespace svctest {

// ---- naming ----

// "t<pid>x<counter>[tag]": unique per process and call, valid as a service
// name and short enough for socket paths.
std::string UniqueName(const std::string &tag = "");
// A TCP port in [20000, 60000) that was free on 127.0.0.1 a moment ago.
int PickTcpPort();

// ---- TLS test certificates ----

// A directory of certificates made by tests/helpers/make-certs.sh with the
// openssl command, once per test process (removed at its exit): ca.pem,
// server.pem/.key (localhost, 127.0.0.1, ::1), client.pem/.key,
// other-ca.pem, other-client.*, other-server.*, expired.*,
// server-wronghost.*. Aborts the process if the script fails.
const std::string &TlsCertDir();

// ---- temp dirs and environment ----

// mkdtemp under /tmp, removed recursively on destruction.
class TempDir {
public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir &) = delete;
  TempDir &operator=(const TempDir &) = delete;
  const std::string &path() const { return path_; }

private:
  std::string path_;
};

// Sets (or unsets, value == nullptr) an environment variable for a scope.
class ScopedEnv {
public:
  ScopedEnv(const char *key, const char *value);
  ~ScopedEnv();
  ScopedEnv(const ScopedEnv &) = delete;
  ScopedEnv &operator=(const ScopedEnv &) = delete;

private:
  std::string key_, old_;
  bool had_ = false;
};

// ---- the helper server ----

class ServerProc {
public:
  ServerProc() = default;
  ~ServerProc(); // SIGKILL + waitpid if still running
  ServerProc(const ServerProc &) = delete;
  ServerProc &operator=(const ServerProc &) = delete;

  // Runs test_server with args; returns its exit status (as from waitpid)
  // if it died before printing READY within timeout_ms, else 0 with the
  // server running. A status of 3 (exit code) means an address was in use.
  int Start(const std::vector<std::string> &args, int timeout_ms = 20000);
  // Runs this binary instead of test_server (same options and READY line):
  // the fault tests' fault_server.
  void UseBinary(const std::string &path) { binary_ = path; }
  pid_t pid() const { return pid_; }
  bool running() const { return pid_ > 0; }
  void Kill(int sig);
  // Waits up to timeout_ms for exit (SIGKILL after that); returns the
  // waitpid status (also of an exit Alive() already reaped), or -1 if it
  // never ran.
  int Wait(int timeout_ms = 10000);
  // True if the process is still alive (not exited, not a zombie).
  bool Alive();

private:
  pid_t pid_ = -1;
  std::string binary_;
  int reaped_status_ = -1;
  int out_ = -1; // its stdout; kept open so a late write cannot SIGPIPE it
};

// ---- clients ----

struct ClientCloser {
  void operator()(svc_client *c) const { svc_client_close(c); }
};
using Client = std::unique_ptr<svc_client, ClientCloser>;

// Opens url, or returns null with *rc set.
Client Open(const std::string &url, int *rc = nullptr);

// One call; the reply is copied out (resp_len checked against resp).
int Call(svc_client *c, const char *method, const std::string &req,
         std::string *resp = nullptr);

// ---- raw sockets (fault injection) ----

// Blocking stream socket connected to a unix path or 127.0.0.1:port; -1 on
// failure.
int ConnectUnix(const std::string &path);
int ConnectTcp(int port);
// Sends everything (MSG_NOSIGNAL); false if the peer went away first.
bool SendAll(int fd, const void *p, size_t len);
// Waits up to timeout_ms for the peer to close (EOF or reset), discarding
// anything it sends. True when closed.
bool WaitClosed(int fd, int timeout_ms);
// Reads exactly len bytes within timeout_ms.
bool RecvAll(int fd, void *p, size_t len, int timeout_ms);

// A frame header laid out as docs/protocol.md describes, written here
// independently of frame.c so the tests also check the documented format.
std::string WireHeader(uint8_t type, uint32_t call_id, int32_t status,
                       uint32_t method_len, uint32_t payload_len);
std::string WireRequest(uint32_t call_id, const std::string &method,
                        const std::string &payload);

// ---- /proc ----

// The whole of a small /proc file, "" if it cannot be read. read(2), not
// an ifstream: a process that exits between open and read fails the read
// with ESRCH, which istreambuf_iterator throws as an exception (seen in a
// fresh-clone ci/test under ASan).
std::string ReadProcFile(const std::string &path);
int CountFds(pid_t pid);     // entries in /proc/PID/fd, -1 if gone
int CountThreads(pid_t pid); // Threads: in /proc/PID/status, -1 if gone
// "3=socket:[123] 4=/memfd:svc (deleted) ...": for leak reports.
std::string DescribeFds(pid_t pid);
long CpuTicks(pid_t pid); // utime + stime from /proc/PID/stat, -1 if gone
long TicksPerSecond();
// Lines of /proc/PID/maps that contain needle.
std::vector<std::string> MapsMatching(pid_t pid, const std::string &needle);
std::vector<std::string> ListDir(const std::string &dir);

// ---- misc ----

uint64_t Fnv1a64(const void *p, size_t len);
std::string RandomBytes(uint64_t seed, size_t len);
int64_t NowMs(); // monotonic
// Polls pred every 20 ms until it holds or timeout_ms passes.
template <class F> bool Eventually(F pred, int timeout_ms);
void SleepMs(int ms);
std::string ErrName(int rc); // "SVC_EPEERGONE (-4)"

template <class F> bool Eventually(F pred, int timeout_ms) {
  int64_t end = NowMs() + timeout_ms;
  for (;;) {
    if (pred())
      return true;
    if (NowMs() >= end)
      return false;
    SleepMs(20);
  }
}

} // namespace svctest

#endif

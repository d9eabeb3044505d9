// harness.cc — see harness.h.
#include "harness.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <random>
#include <sstream>

#ifndef SVC_TEST_SERVER
#error "SVC_TEST_SERVER (path of test_server) must be defined"
#endif

namespace svctest {

namespace {
std::atomic<unsigned> g_counter{0};
}

std::string UniqueName(const std::string &tag) {
  return "t" + std::to_string(getpid()) + "x" + std::to_string(g_counter++) +
         tag;
}

int PickTcpPort() {
  static std::mt19937 rng((unsigned)getpid() * 2654435761u ^
                          (unsigned)time(nullptr));
  for (int attempt = 0; attempt < 200; attempt++) {
    int port = 20000 + (int)(rng() % 40000);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
      continue;
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int ok = bind(fd, (sockaddr *)&a, sizeof a) == 0;
    close(fd);
    if (ok)
      return port;
  }
  return 20000 + (int)(getpid() % 40000);
}

// ---- temp dirs ----

static int rm_entry(const char *p, const struct stat *, int, struct FTW *) {
  remove(p);
  return 0;
}

// Dirs of test processes that were killed (a ctest timeout) before they
// could clean up: /tmp/svct-PID-* whose PID no longer exists.
static void remove_stale_dirs() {
  for (const std::string &e : ListDir("/tmp")) {
    int pid = 0;
    if (sscanf(e.c_str(), "svct-%d-", &pid) != 1 || pid <= 0)
      continue;
    if (kill(pid, 0) == 0 || errno != ESRCH)
      continue;
    nftw(("/tmp/" + e).c_str(), rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  }
}

TempDir::TempDir() {
  static bool swept = false;
  if (!swept) {
    swept = true;
    remove_stale_dirs();
  }
  std::string tmpl = "/tmp/svct-" + std::to_string(getpid()) + "-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (!mkdtemp(buf.data())) {
    perror("mkdtemp");
    abort();
  }
  path_ = buf.data();
}

TempDir::~TempDir() { nftw(path_.c_str(), rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

ScopedEnv::ScopedEnv(const char *key, const char *value) : key_(key) {
  const char *o = getenv(key);
  had_ = o != nullptr;
  if (o)
    old_ = o;
  if (value)
    setenv(key, value, 1);
  else
    unsetenv(key);
}

ScopedEnv::~ScopedEnv() {
  if (had_)
    setenv(key_.c_str(), old_.c_str(), 1);
  else
    unsetenv(key_.c_str());
}

// ---- server process ----

ServerProc::~ServerProc() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    Wait(10000);
  }
  if (out_ >= 0)
    close(out_);
}

int ServerProc::Start(const std::vector<std::string> &args, int timeout_ms) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0)
    return -1;
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0)
    return -1;
  if (pid == 0) {
    // Dies with the test (say, killed by a ctest timeout): no orphans.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
      _exit(127);
    dup2(p[1], 1);
    const char *bin = binary_.empty() ? SVC_TEST_SERVER : binary_.c_str();
    std::vector<char *> argv;
    argv.push_back(const_cast<char *>(bin));
    for (const std::string &a : args)
      argv.push_back(const_cast<char *>(a.c_str()));
    argv.push_back(nullptr);
    execv(bin, argv.data());
    _exit(127);
  }
  close(p[1]);
  pid_ = pid;
  reaped_status_ = -1;
  std::string out;
  int64_t end = NowMs() + timeout_ms;
  bool ready = false;
  while (!ready && NowMs() < end) {
    pollfd pf{p[0], POLLIN, 0};
    int n = poll(&pf, 1, 100);
    if (n <= 0)
      continue;
    char buf[256];
    ssize_t r = read(p[0], buf, sizeof buf);
    if (r <= 0)
      break; // exited before READY
    out.append(buf, (size_t)r);
    ready = out.find("READY\n") != std::string::npos;
  }
  if (out_ >= 0)
    close(out_);
  out_ = p[0];
  if (ready)
    return 0;
  int st = Wait(2000);
  fprintf(stderr, "harness: test_server did not become ready (status %d)\n",
          st);
  return st == 0 ? -1 : st;
}

void ServerProc::Kill(int sig) {
  if (pid_ > 0)
    kill(pid_, sig);
}

int ServerProc::Wait(int timeout_ms) {
  if (pid_ <= 0)
    return reaped_status_;
  int st = 0;
  int64_t end = NowMs() + timeout_ms;
  for (;;) {
    pid_t r = waitpid(pid_, &st, WNOHANG);
    if (r == pid_ || (r < 0 && errno != EINTR))
      break;
    if (NowMs() >= end) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &st, 0);
      break;
    }
    SleepMs(10);
  }
  pid_ = -1;
  reaped_status_ = st;
  return st;
}

bool ServerProc::Alive() {
  if (pid_ <= 0)
    return false;
  int st;
  pid_t r = waitpid(pid_, &st, WNOHANG);
  if (r == pid_) {
    pid_ = -1;
    reaped_status_ = st;
    return false;
  }
  return true;
}

// ---- clients ----

Client Open(const std::string &url, int *rc) {
  svc_client *c = nullptr;
  int r = svc_client_open(url.c_str(), &c);
  if (rc)
    *rc = r;
  if (r != 0)
    return Client();
  return Client(c);
}

int Call(svc_client *c, const char *method, const std::string &req,
         std::string *resp) {
  const void *p = nullptr;
  size_t n = 0;
  int rc = svc_call(c, method, req.data(), req.size(), &p, &n);
  if (resp) {
    if (rc == 0 && (p || n == 0))
      resp->assign(static_cast<const char *>(p ? p : ""), n);
    else
      resp->clear();
  }
  return rc;
}

// ---- raw sockets ----

int ConnectUnix(const std::string &path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.size() >= sizeof a.sun_path) {
    close(fd);
    return -1;
  }
  memcpy(a.sun_path, path.c_str(), path.size() + 1);
  if (connect(fd, (sockaddr *)&a, sizeof a) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

int ConnectTcp(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (sockaddr *)&a, sizeof a) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

bool SendAll(int fd, const void *p, size_t len) {
  const char *c = static_cast<const char *>(p);
  while (len) {
    ssize_t n = send(fd, c, len, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return false;
    c += n;
    len -= (size_t)n;
  }
  return true;
}

bool WaitClosed(int fd, int timeout_ms) {
  int64_t end = NowMs() + timeout_ms;
  for (;;) {
    int left = (int)(end - NowMs());
    if (left <= 0)
      return false;
    pollfd pf{fd, POLLIN, 0};
    int n = poll(&pf, 1, left);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return false;
    char buf[4096];
    ssize_t r = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (r == 0)
      return true;
    if (r < 0 && errno != EAGAIN && errno != EINTR)
      return true; // reset
  }
}

bool RecvAll(int fd, void *p, size_t len, int timeout_ms) {
  char *c = static_cast<char *>(p);
  int64_t end = NowMs() + timeout_ms;
  while (len) {
    int left = (int)(end - NowMs());
    if (left <= 0)
      return false;
    pollfd pf{fd, POLLIN, 0};
    int n = poll(&pf, 1, left);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return false;
    ssize_t r = recv(fd, c, len, MSG_DONTWAIT);
    if (r == 0)
      return false;
    if (r < 0) {
      if (errno == EAGAIN || errno == EINTR)
        continue;
      return false;
    }
    c += r;
    len -= (size_t)r;
  }
  return true;
}

static void put32(std::string *s, uint32_t v) {
  for (int i = 0; i < 4; i++)
    s->push_back((char)(uint8_t)(v >> (8 * i)));
}

std::string WireHeader(uint8_t type, uint32_t call_id, int32_t status,
                       uint32_t method_len, uint32_t payload_len) {
  std::string h = "SVC1";
  h.push_back(1); // version
  h.push_back((char)type);
  h.push_back(0); // flags
  h.push_back(0); // reserved
  put32(&h, call_id);
  put32(&h, (uint32_t)status);
  put32(&h, method_len);
  put32(&h, payload_len);
  return h;
}

std::string WireRequest(uint32_t call_id, const std::string &method,
                        const std::string &payload) {
  return WireHeader(1, call_id, 0, (uint32_t)method.size(),
                    (uint32_t)payload.size()) +
         method + payload;
}

// ---- /proc ----

int CountFds(pid_t pid) {
  std::string d = "/proc/" + std::to_string(pid) + "/fd";
  DIR *dir = opendir(d.c_str());
  if (!dir)
    return -1;
  int n = 0;
  while (dirent *e = readdir(dir))
    if (e->d_name[0] != '.')
      n++;
  closedir(dir);
  return pid == getpid() ? n - 1 : n; // our own opendir fd
}

std::string DescribeFds(pid_t pid) {
  std::string dir = "/proc/" + std::to_string(pid) + "/fd", out;
  for (const std::string &e : ListDir(dir)) {
    char buf[256];
    ssize_t n = readlink((dir + "/" + e).c_str(), buf, sizeof buf - 1);
    if (n < 0)
      continue;
    buf[n] = 0;
    out += e + "=" + buf + " ";
  }
  return out;
}

int CountThreads(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("Threads:", 0) == 0)
      return atoi(line.c_str() + 8);
  return -1;
}

std::string ReadProcFile(const std::string &path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return "";
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0)
    out.append(buf, (size_t)n);
  close(fd);
  return n < 0 ? "" : out;
}

long CpuTicks(pid_t pid) {
  std::string s = ReadProcFile("/proc/" + std::to_string(pid) + "/stat");
  size_t rp = s.rfind(')');
  if (rp == std::string::npos)
    return -1;
  std::istringstream in(s.substr(rp + 2));
  // fields from 3 (state) on; utime is field 14, stime 15
  std::string tok;
  long utime = 0, stime = 0;
  for (int field = 3; field <= 15 && (in >> tok); field++) {
    if (field == 14)
      utime = atol(tok.c_str());
    if (field == 15)
      stime = atol(tok.c_str());
  }
  return utime + stime;
}

long TicksPerSecond() { return sysconf(_SC_CLK_TCK); }

std::vector<std::string> MapsMatching(pid_t pid, const std::string &needle) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/maps");
  std::vector<std::string> out;
  std::string line;
  while (std::getline(f, line))
    if (line.find(needle) != std::string::npos)
      out.push_back(line);
  return out;
}

std::vector<std::string> ListDir(const std::string &dir) {
  std::vector<std::string> out;
  DIR *d = opendir(dir.c_str());
  if (!d)
    return out;
  while (dirent *e = readdir(d))
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
      out.push_back(e->d_name);
  closedir(d);
  return out;
}

// ---- misc ----

uint64_t Fnv1a64(const void *p, size_t len) {
  const uint8_t *b = static_cast<const uint8_t *>(p);
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < len; i++) {
    h ^= b[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

std::string RandomBytes(uint64_t seed, size_t len) {
  std::mt19937_64 rng(seed);
  std::string s(len, '\0');
  size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    uint64_t v = rng();
    memcpy(&s[i], &v, 8);
  }
  for (; i < len; i++)
    s[i] = (char)rng();
  return s;
}

int64_t NowMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void SleepMs(int ms) {
  timespec ts{ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

std::string ErrName(int rc) {
  return std::string(svc_err_name(rc)) + " (" + std::to_string(rc) + ")";
}

// ---- TLS test certificates ----

namespace {

// The certificates of this process. A forked child that exits must not
// remove its parent's files, so only the process that made them does.
struct CertDir {
  std::string path;
  pid_t owner = getpid();
  CertDir() {
    // svct-PID-: swept like TempDir's if the process is killed
    std::string tmpl = "/tmp/svct-" + std::to_string(owner) + "-certs-XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (!mkdtemp(buf.data())) {
      perror("TlsCertDir: mkdtemp");
      abort();
    }
    path = buf.data();
    std::string cmd = std::string("bash '") + SVC_MAKE_CERTS + "' '" + path +
                      "' 10.199.0.1 10.199.0.2";
    int st = system(cmd.c_str());
    if (st != 0) {
      fprintf(stderr, "TlsCertDir: %s failed (status %d)\n", cmd.c_str(), st);
      abort();
    }
  }
  ~CertDir() {
    if (getpid() == owner)
      nftw(path.c_str(), rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  }
};

} // namespace

const std::string &TlsCertDir() {
  static CertDir dir;
  return dir.path;
}

} // namespace svctest

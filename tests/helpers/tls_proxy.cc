// tls_proxy.cc — see tls_proxy.h. One detached thread per connection owns
// the TCP socket, the SSL objects and its end of the socketpair; it makes
// the connection, reports the handshake's result to TlsRawConnect, then
// pumps bytes with poll() on nonblocking fds until both directions are
// over, and frees everything it owns on the way out.
#include "tls_proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <memory>
#include <mutex>
#include <system_error>
#include <thread>

namespace svctest {

namespace {

// Connect plus handshake; a server that accepts but never answers must not
// hang a test forever.
constexpr int kHandshakeTimeoutMs = 10000;
// How long a proxy whose test fd is gone still tries to deliver what the
// test wrote before closing (a kernel would linger like this for TCP).
constexpr int kLingerMs = 10000;
// One TLS record's worth of plaintext per SSL_read and SSL_write.
constexpr size_t kChunk = 16384;

std::atomic<int> g_proxy_threads{0};
thread_local std::string t_last_error;

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

int MsUntil(int64_t deadline) {
  int64_t left = deadline - NowMs();
  return left > 0 ? (int)left : 0;
}

// Waits until fd has events, or says why not ("WHAT: timed out").
bool WaitReady(int fd, short events, int64_t deadline, const char *what,
               std::string *error) {
  pollfd p{fd, events, 0};
  int n;
  while ((n = poll(&p, 1, MsUntil(deadline))) < 0 && errno == EINTR) {
  }
  if (n < 0)
    *error = std::string("poll: ") + strerror(errno);
  else if (n == 0)
    *error = std::string(what) + ": timed out";
  return n > 0;
}

// The OpenSSL error queue as text, emptied.
std::string SslErrors() {
  std::string text;
  unsigned long e;
  while ((e = ERR_get_error()) != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!text.empty())
      text += "; ";
    text += buf;
  }
  return text;
}

// What the proxy thread owns; the destructor frees whatever was made.
struct Conn {
  int pair_fd = -1; // our end of the socketpair
  int tcp_fd = -1;
  SSL_CTX *ctx = nullptr;
  SSL *ssl = nullptr;

  Conn() = default;
  Conn(const Conn &) = delete;
  Conn &operator=(const Conn &) = delete;
  ~Conn() {
    SSL_free(ssl); // the socket BIO does not close tcp_fd (BIO_NOCLOSE)
    SSL_CTX_free(ctx);
    if (tcp_fd >= 0)
      close(tcp_fd);
    if (pair_fd >= 0)
      close(pair_fd);
  }
};

// TlsRawConnect waits on this for the handshake's result; shared because
// either side may be the last to let go of it.
struct Handoff {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  bool ok = false;
  std::string error;
};

bool ConnectTcpNonblocking(Conn &c, int port, int64_t deadline,
                           std::string *error) {
  c.tcp_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (c.tcp_fd < 0) {
    *error = std::string("socket: ") + strerror(errno);
    return false;
  }
  // Small writes (one frame header) go out at once, as a test expects.
  int one = 1;
  if (setsockopt(c.tcp_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0) {
    *error = std::string("TCP_NODELAY: ") + strerror(errno);
    return false;
  }
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(c.tcp_fd, (sockaddr *)&a, sizeof a) == 0)
    return true;
  if (errno != EINPROGRESS) {
    *error = std::string("connect: ") + strerror(errno);
    return false;
  }
  if (!WaitReady(c.tcp_fd, POLLOUT, deadline, "connect", error))
    return false;
  int so_error = 0;
  socklen_t len = sizeof so_error;
  if (getsockopt(c.tcp_fd, SOL_SOCKET, SO_ERROR, &so_error, &len) != 0) {
    *error = std::string("SO_ERROR: ") + strerror(errno);
    return false;
  }
  if (so_error != 0) {
    *error = std::string("connect: ") + strerror(so_error);
    return false;
  }
  return true;
}

bool MakeSsl(Conn &c, const std::string &ca_file, const std::string &cert_file,
             const std::string &key_file, std::string *error) {
  c.ctx = SSL_CTX_new(TLS_client_method());
  if (!c.ctx) {
    *error = "SSL_CTX_new: " + SslErrors();
    return false;
  }
  if (SSL_CTX_set_min_proto_version(c.ctx, TLS1_3_VERSION) != 1 ||
      SSL_CTX_set_max_proto_version(c.ctx, TLS1_3_VERSION) != 1) {
    *error = "TLS 1.3 only: " + SslErrors();
    return false;
  }
  if (SSL_CTX_load_verify_locations(c.ctx, ca_file.c_str(), nullptr) != 1) {
    *error = "CA file " + ca_file + ": " + SslErrors();
    return false;
  }
  SSL_CTX_set_verify(c.ctx, SSL_VERIFY_PEER, nullptr);
  if (!cert_file.empty()) {
    const std::string &key = key_file.empty() ? cert_file : key_file;
    if (SSL_CTX_use_certificate_chain_file(c.ctx, cert_file.c_str()) != 1) {
      *error = "certificate " + cert_file + ": " + SslErrors();
      return false;
    }
    if (SSL_CTX_use_PrivateKey_file(c.ctx, key.c_str(), SSL_FILETYPE_PEM) !=
            1 ||
        SSL_CTX_check_private_key(c.ctx) != 1) {
      *error = "key " + key + ": " + SslErrors();
      return false;
    }
  }
  c.ssl = SSL_new(c.ctx);
  if (!c.ssl) {
    *error = "SSL_new: " + SslErrors();
    return false;
  }
  if (SSL_set_fd(c.ssl, c.tcp_fd) != 1) {
    *error = "SSL_set_fd: " + SslErrors();
    return false;
  }
  // We dial an address, so the certificate must name that address.
  if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c.ssl), "127.0.0.1") != 1) {
    *error = "verify IP: " + SslErrors();
    return false;
  }
  return true;
}

bool Handshake(Conn &c, int64_t deadline, std::string *error) {
  for (;;) {
    ERR_clear_error();
    int r = SSL_connect(c.ssl);
    if (r == 1)
      return true;
    int e = SSL_get_error(c.ssl, r);
    short wanted;
    if (e == SSL_ERROR_WANT_READ) {
      wanted = POLLIN;
    } else if (e == SSL_ERROR_WANT_WRITE) {
      wanted = POLLOUT;
    } else {
      *error = "handshake: ";
      long verify = SSL_get_verify_result(c.ssl);
      if (verify != X509_V_OK)
        *error += std::string("certificate: ") +
                  X509_verify_cert_error_string(verify) + "; ";
      std::string queue = SslErrors();
      if (e == SSL_ERROR_SYSCALL && queue.empty())
        *error += errno ? strerror(errno) : "the server closed the connection";
      else
        *error += queue;
      return false;
    }
    if (!WaitReady(c.tcp_fd, wanted, deadline, "handshake", error))
      return false;
  }
}

// The state of one connection's two directions between poll() calls.
struct Pump {
  Conn &c;
  // test → server: one chunk read from the test, waiting for SSL_write
  // (which must be retried with the same bytes after WANT_*).
  char up[kChunk];
  size_t up_len = 0;
  bool test_eof = false; // the test will write no more
  bool up_done = false;  // close_notify and FIN sent, or writing broke
  short write_wants = 0; // what the pending SSL_write/SSL_shutdown waits for
  // server → test: one SSL_read's worth, partly sent to the test.
  char down[kChunk];
  size_t down_off = 0, down_len = 0;
  bool server_eof = false; // the server will send no more
  bool down_done = false;  // the test got its EOF (or is gone)
  short read_wants = 0;    // what the last SSL_read waits for
  bool ssl_failed = false; // SSL_shutdown is not allowed any more
  bool test_gone = false;  // the test's fd is closed
  int64_t linger_deadline = 0;

  explicit Pump(Conn &conn) : c(conn) {}

  // The test closed its fd: nobody reads, but what it wrote before closing
  // still goes to the server, as TCP would deliver it.
  void TestGone() {
    if (test_gone)
      return;
    test_gone = true;
    down_done = true;
    down_len = down_off = 0;
    linger_deadline = NowMs() + kLingerMs;
  }

  bool ReadFromTest() {
    if (test_eof || up_done || up_len > 0)
      return false;
    ssize_t n = recv(c.pair_fd, up, sizeof up, MSG_DONTWAIT);
    if (n > 0) {
      up_len = (size_t)n;
      return true;
    }
    if (n == 0) {
      test_eof = true;
      return true;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK)
      return false;
    if (errno == EINTR)
      return true;
    // ECONNRESET: the test closed with our data unread; nothing more comes.
    test_eof = true;
    TestGone();
    return true;
  }

  // A fatal SSL error or a broken socket: neither direction goes on.
  void Broken() {
    ssl_failed = true;
    server_eof = true;
    up_done = true;
    up_len = 0;
    write_wants = 0;
    read_wants = 0;
  }

  bool WriteToServer() {
    if (up_len == 0 || up_done)
      return false;
    ERR_clear_error();
    int n = SSL_write(c.ssl, up, (int)up_len);
    if (n > 0) { // all of it: SSL_MODE_ENABLE_PARTIAL_WRITE is off
      up_len = 0;
      write_wants = 0;
      return true;
    }
    int e = SSL_get_error(c.ssl, n);
    if (e == SSL_ERROR_WANT_READ) {
      write_wants = POLLIN;
      return false;
    }
    if (e == SSL_ERROR_WANT_WRITE) {
      write_wants = POLLOUT;
      return false;
    }
    // Reset, EPIPE or a TLS error: what the server still sent may be
    // readable, but nothing more can be written.
    ERR_clear_error();
    ssl_failed = true;
    up_done = true;
    up_len = 0;
    write_wants = 0;
    return true;
  }

  // After the test's EOF and its last bytes: close_notify, then FIN, so the
  // server sees an orderly half-close and can still answer.
  bool FinishUp() {
    if (!test_eof || up_len > 0 || up_done)
      return false;
    if (!ssl_failed) {
      ERR_clear_error();
      int r = SSL_shutdown(c.ssl);
      if (r < 0) {
        int e = SSL_get_error(c.ssl, r);
        if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
          write_wants = e == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN;
          return false;
        }
        ERR_clear_error();
        ssl_failed = true;
      }
    }
    // ENOTCONN after a reset is fine: the server is gone either way.
    (void)shutdown(c.tcp_fd, SHUT_WR);
    up_done = true;
    write_wants = 0;
    return true;
  }

  bool ReadFromServer() {
    if (server_eof || down_len > 0)
      return false;
    ERR_clear_error();
    int n = SSL_read(c.ssl, down, sizeof down);
    if (n > 0) {
      read_wants = 0;
      if (test_gone) // nobody reads: drop it, but keep the server unblocked
        return true;
      down_off = 0;
      down_len = (size_t)n;
      return true;
    }
    int e = SSL_get_error(c.ssl, n);
    if (e == SSL_ERROR_WANT_READ) {
      read_wants = POLLIN;
      return false;
    }
    if (e == SSL_ERROR_WANT_WRITE) {
      read_wants = POLLOUT;
      return false;
    }
    read_wants = 0;
    if (e == SSL_ERROR_ZERO_RETURN) {
      // close_notify: the server may still read what the test sends.
      server_eof = true;
      return true;
    }
    // FIN without close_notify, reset or a TLS error (a rejected client
    // certificate arrives as an alert here).
    ERR_clear_error();
    Broken();
    return true;
  }

  bool WriteToTest() {
    if (down_len == 0)
      return false;
    ssize_t n =
        send(c.pair_fd, down + down_off, down_len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      down_off += (size_t)n;
      down_len -= (size_t)n;
      return true;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return false; // the test's receive buffer is full
    if (n < 0 && errno == EINTR)
      return true;
    TestGone(); // EPIPE: the test closed its fd (or its read side)
    return true;
  }

  bool FinishDown() {
    if (!server_eof || down_len > 0 || down_done)
      return false;
    if (shutdown(c.pair_fd, SHUT_WR) != 0) {
      TestGone();
      return true;
    }
    down_done = true;
    return true;
  }

  bool Step() {
    bool progress = false;
    progress |= ReadFromTest();
    progress |= WriteToServer();
    progress |= FinishUp();
    progress |= ReadFromServer();
    progress |= WriteToTest();
    progress |= FinishDown();
    return progress;
  }

  // Waits for the fds to allow progress; false when it is time to stop.
  bool Wait() {
    pollfd p[2];
    // The test's fd: always watched until its EOF is sent, since POLLHUP
    // (both halves shut: it closed its fd) can only come from the test then.
    short pair_events = 0;
    if (!test_eof && !up_done && up_len == 0)
      pair_events |= POLLIN;
    if (down_len > 0) // Step() left it there: send() said EAGAIN
      pair_events |= POLLOUT;
    p[0] = {pair_events || !down_done ? c.pair_fd : -1, pair_events, 0};
    // The server's fd only when an SSL call waits for it: its POLLHUP after
    // a FIN would otherwise wake us in a loop while the test reads slowly.
    short tcp_events = 0;
    if (!up_done && (up_len > 0 || test_eof)) // SSL_write or SSL_shutdown
      tcp_events |= write_wants;
    if (!server_eof && down_len == 0)
      tcp_events |= read_wants ? read_wants : (short)POLLIN;
    p[1] = {tcp_events ? c.tcp_fd : -1, tcp_events, 0};

    int timeout = -1;
    if (test_gone) {
      timeout = MsUntil(linger_deadline);
      if (timeout == 0)
        return false;
    }
    // Decrypted bytes already inside OpenSSL: poll would not see them.
    // (Not SSL_has_pending: it also counts the start of a record that
    // SSL_read just said WANT_READ for, and polling with timeout 0 until the
    // rest arrived would spin.)
    if (!server_eof && down_len == 0 && SSL_pending(c.ssl) > 0)
      timeout = 0;
    int n = poll(p, 2, timeout);
    if (n < 0 && errno != EINTR)
      return false;
    if (n > 0 && p[0].fd >= 0 && (p[0].revents & (POLLHUP | POLLERR)) &&
        !down_done)
      TestGone(); // its unread bytes, if any, are still read (then EOF)
    return true;
  }

  void Run() {
    while (!(up_done && down_done)) {
      while (Step()) {
      }
      if (up_done && down_done)
        break;
      if (!Wait())
        break;
    }
  }
};

void ProxyThread(int pair_fd, int port, std::string ca_file,
                 std::string cert_file, std::string key_file,
                 std::shared_ptr<Handoff> handoff) {
  // SSL_write and SSL_shutdown write to the TCP socket with plain write():
  // a reset server must not kill the test with SIGPIPE. The signal is
  // thread-directed, so blocking it here keeps it pending on this thread,
  // and a thread's pending signals go away with it.
  sigset_t pipe_set;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  int mask_rc = pthread_sigmask(SIG_BLOCK, &pipe_set, nullptr);
  bool ok = false;
  std::string error;
  {
    auto c = std::make_unique<Conn>();
    c->pair_fd = pair_fd;
    int64_t deadline = NowMs() + kHandshakeTimeoutMs;
    if (mask_rc != 0)
      error = std::string("pthread_sigmask: ") + strerror(mask_rc);
    else
      ok = ConnectTcpNonblocking(*c, port, deadline, &error) &&
           MakeSsl(*c, ca_file, cert_file, key_file, &error) &&
           Handshake(*c, deadline, &error);
    if (ok) {
      {
        std::lock_guard<std::mutex> lock(handoff->mu);
        handoff->done = true;
        handoff->ok = true;
      }
      handoff->cv.notify_one();
      handoff.reset();
      auto pump = std::make_unique<Pump>(*c); // 32 KiB of buffers: heap
      pump->Run();
    }
    ERR_clear_error();
  } // c freed: every fd and SSL object of this connection
  g_proxy_threads--;
  if (handoff) { // a failure is reported only once nothing is left open
    {
      std::lock_guard<std::mutex> lock(handoff->mu);
      handoff->done = true;
      handoff->error = error;
    }
    handoff->cv.notify_one();
  }
}

} // namespace

int TlsRawConnect(int port, const std::string &ca_file,
                  const std::string &cert_file, const std::string &key_file) {
  t_last_error.clear();
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
    t_last_error = std::string("socketpair: ") + strerror(errno);
    return -1;
  }
  auto handoff = std::make_shared<Handoff>();
  g_proxy_threads++;
  try {
    std::thread(ProxyThread, fds[1], port, ca_file, cert_file, key_file,
                handoff)
        .detach();
  } catch (const std::system_error &e) {
    g_proxy_threads--;
    close(fds[0]);
    close(fds[1]);
    t_last_error = std::string("std::thread: ") + e.what();
    return -1;
  }
  std::unique_lock<std::mutex> lock(handoff->mu);
  handoff->cv.wait(lock, [&] { return handoff->done; });
  if (!handoff->ok) {
    t_last_error = handoff->error;
    close(fds[0]);
    return -1;
  }
  return fds[0];
}

const std::string &TlsLastConnectError() { return t_last_error; }

int TlsProxyThreads() { return g_proxy_threads.load(); }

} // namespace svctest

/* raw.cc — the baselines: echo over a pipe pair, a Unix socketpair, TCP
 * loopback (TCP_NODELAY), and a shared-memory ping-pong that either sleeps
 * on a futex or spins. Written the way a careful user would write them, so
 * that libsvc is compared with the best plain code, not a strawman. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <thread>

#include "harness.h"
#include "transport.h"

namespace bench {
namespace {

/* A client waits at most this long for a reply before giving up, so a dead
 * server fails the benchmark instead of hanging CI. */
constexpr uint64_t kReplyDeadlineNs = 10ull * 1000 * 1000 * 1000;

/* A stream server reads up to this much at once, so that a client's window
 * of small pipelined requests arrives in one read. */
constexpr size_t kBatchBytes = 64 << 10;

/* ================= stream baselines: pipe, unix, tcp ================= */

/* The framing a careful user writes: an 8-byte length, then the payload,
 * sent with one writev and read with as few reads as the kernel allows.
 * libsvc's stream transports must do at least this much work. */
constexpr size_t kHdr = 8;

/* writev of all n buffers, finishing a short write (large payloads, or a
 * full socket buffer) where it stopped. Consumes iov. 0, or -1 (errno). */
int raw_writev_all(int fd, struct iovec *iov, int n) {
  while (n > 0) {
    ssize_t w = writev(fd, iov, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0)
      return -1;
    for (; n > 0 && (size_t)w >= iov->iov_len; iov++, n--)
      w -= (ssize_t)iov->iov_len;
    if (n > 0) {
      iov->iov_base = (char *)iov->iov_base + w;
      iov->iov_len -= (size_t)w;
    }
  }
  return 0;
}

int raw_writev_full(int fd, const void *payload, size_t len) {
  uint64_t hdr = len;
  struct iovec iov[2] = {{&hdr, kHdr}, {const_cast<void *>(payload), len}};
  return raw_writev_all(fd, iov, 2);
}

/* Whether the have bytes at p start with a whole frame: 1 (its payload
 * length in *len), 0 (more bytes needed), -1 (a length over max_len). */
int raw_frame_at(const unsigned char *p, size_t have, size_t max_len,
                 uint64_t *len) {
  if (have < kHdr)
    return 0;
  memcpy(len, p, kHdr);
  if (*len > max_len)
    return -1;
  return have - kHdr >= *len ? 1 : 0;
}

/* Reads one frame into buf (cap bytes, header included). Returns the
 * payload length, or -1 (EOF, error, or a length over cap). */
ssize_t raw_read_frame(int fd, unsigned char *buf, size_t cap) {
  size_t have = 0, need = kHdr;
  while (have < need) {
    ssize_t n = read(fd, buf + have, need == kHdr ? cap - have : need - have);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return -1;
    have += (size_t)n;
    if (need == kHdr && have >= kHdr) {
      uint64_t len;
      memcpy(&len, buf, kHdr);
      if (len > cap - kHdr)
        return -1;
      need = kHdr + len;
    }
  }
  return (ssize_t)(need - kHdr);
}

struct StreamChan {
  int client_rd = -1, client_wr = -1; /* the same fd for sockets */
  int server_rd = -1, server_wr = -1;
};

void raw_close(int *fd) {
  if (*fd >= 0)
    close(*fd);
  *fd = -1;
}

void raw_close_client_side(StreamChan *c) {
  if (c->client_wr != c->client_rd)
    raw_close(&c->client_wr);
  raw_close(&c->client_rd);
  c->client_wr = -1;
}

void raw_close_server_side(StreamChan *c) {
  if (c->server_wr != c->server_rd)
    raw_close(&c->server_wr);
  raw_close(&c->server_rd);
  c->server_wr = -1;
}

bool raw_open_pipe(StreamChan *c, std::string *err) {
  int req[2], rep[2];
  if (pipe2(req, O_CLOEXEC) != 0) {
    *err = std::string("pipe2: ") + strerror(errno);
    return false;
  }
  if (pipe2(rep, O_CLOEXEC) != 0) {
    *err = std::string("pipe2: ") + strerror(errno);
    close(req[0]);
    close(req[1]);
    return false;
  }
  /* A careful user grows the pipes to the allowed maximum (1 MiB by
   * default) so large payloads move in fewer wakeups; best effort. */
  for (int fd : {req[1], rep[1]})
    fcntl(fd, F_SETPIPE_SZ, 1 << 20);
  c->client_wr = req[1];
  c->server_rd = req[0];
  c->server_wr = rep[1];
  c->client_rd = rep[0];
  return true;
}

bool raw_open_unix(StreamChan *c, std::string *err) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    *err = std::string("socketpair: ") + strerror(errno);
    return false;
  }
  c->client_rd = c->client_wr = sv[0];
  c->server_rd = c->server_wr = sv[1];
  return true;
}

/* A real loopback connection: listen on an ephemeral port, connect, accept. */
bool raw_open_tcp(StreamChan *c, std::string *err) {
  int one = 1, lfd = -1, cfd = -1, sfd = -1;
  struct sockaddr_in a;
  socklen_t alen = sizeof a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof a) != 0 ||
      listen(lfd, 1) != 0 ||
      getsockname(lfd, (struct sockaddr *)&a, &alen) != 0)
    goto fail;
  cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (cfd < 0 || connect(cfd, (struct sockaddr *)&a, sizeof a) != 0)
    goto fail;
  sfd = accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
  if (sfd < 0)
    goto fail;
  if (setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0 ||
      setsockopt(sfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0)
    goto fail;
  close(lfd);
  c->client_rd = c->client_wr = cfd;
  c->server_rd = c->server_wr = sfd;
  return true;
fail:
  *err = std::string("tcp loopback: ") + strerror(errno);
  for (int fd : {lfd, cfd, sfd})
    if (fd >= 0)
      close(fd);
  return false;
}

/* Server loop, as a careful user writes it for clients that may pipeline:
 * read what is there, answer every whole request in it (copying each
 * payload into the reply buffer: the echo handler's one copy, as libsvc's
 * handler does), send all those replies with one write, and keep a partial
 * request for the next read. A ping-pong client (one call in flight) costs
 * it one read and one write per call. */
void raw_stream_serve(StreamChan c, size_t max_len) {
  /* Room for the largest frame, and for a window of small ones per read. */
  const size_t cap = std::max(kHdr + max_len, kBatchBytes);
  std::vector<unsigned char> in(cap), out(cap);
  size_t have = 0;
  for (;;) {
    ssize_t n = read(c.server_rd, in.data() + have, cap - have);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return;
    have += (size_t)n;
    size_t off = 0, out_len = 0;
    for (;;) {
      uint64_t len;
      int whole = raw_frame_at(in.data() + off, have - off, max_len, &len);
      if (whole < 0)
        return; /* a length over max_len: not our client */
      if (whole == 0)
        break;
      memcpy(out.data() + out_len, &len, kHdr);
      memcpy(out.data() + out_len + kHdr, in.data() + off + kHdr, len);
      out_len += kHdr + len;
      off += kHdr + len;
    }
    if (out_len && WriteFull(c.server_wr, out.data(), out_len) != 0)
      return;
    memmove(in.data(), in.data() + off, have - off);
    have -= off;
  }
}

class StreamConn : public Conn {
public:
  StreamConn(int rd, int wr, size_t max_len)
      : rd_(rd), wr_(wr), buf_(kHdr + max_len) {}
  int Call(const void *req, size_t len, const void **resp, size_t *resp_len,
           std::string *err) override {
    if (raw_writev_full(wr_, req, len) != 0) {
      *err = std::string("write: ") + strerror(errno);
      return -1;
    }
    ssize_t n = raw_read_frame(rd_, buf_.data(), buf_.size());
    if (n < 0) {
      *err = errno ? std::string("read: ") + strerror(errno) : "peer closed";
      return -1;
    }
    *resp = buf_.data() + kHdr;
    *resp_len = (size_t)n;
    return 0;
  }

  /* The baseline for calls in flight: window frames in one writev, then
   * read until window replies are in (the server batches its answers, so
   * usually in one read), and again. */
  int Pipeline(const void *req, size_t len, int window, uint64_t until_ns,
               uint64_t *calls, std::string *err) override {
    if (window < 1 || 2 * window > IOV_MAX) {
      *err = "window out of range";
      return -1;
    }
    uint64_t hdr = len;
    std::vector<struct iovec> batch, iov;
    for (int i = 0; i < window; i++) {
      batch.push_back({&hdr, kHdr});
      batch.push_back({const_cast<void *>(req), len});
    }
    std::vector<unsigned char> in((size_t)window * (kHdr + len));
    Deadline deadline(until_ns);
    do {
      iov = batch; /* raw_writev_all consumes its iovecs */
      if (raw_writev_all(wr_, iov.data(), (int)iov.size()) != 0) {
        *err = std::string("writev: ") + strerror(errno);
        return -1;
      }
      size_t have = 0, off = 0;
      for (int got = 0; got < window;) {
        uint64_t n;
        int whole = raw_frame_at(in.data() + off, have - off, len, &n);
        if (whole < 0) {
          *err = "reply longer than the request";
          return -1;
        }
        if (whole == 0) {
          ssize_t r = read(rd_, in.data() + have, in.size() - have);
          if (r < 0 && errno == EINTR)
            continue;
          if (r <= 0) {
            *err =
                r < 0 ? std::string("read: ") + strerror(errno) : "peer closed";
            return -1;
          }
          have += (size_t)r;
          continue;
        }
        if (!ReplyMatches(req, len, in.data() + off + kHdr, n)) {
          *err = "reply differs from request";
          return -1;
        }
        off += kHdr + n;
        got++;
      }
      *calls += (uint64_t)window;
    } while (!deadline.Passed());
    return 0;
  }

private:
  int rd_, wr_;
  std::vector<unsigned char> buf_;
};

/* ============ shared-memory baselines: futex-only and spin-only ============
 */

/* One region per connection, mapped MAP_SHARED before the fork. Each
 * direction has a sequence counter on its own cache line; the payload
 * areas follow, page aligned. */
struct ShmDir {
  alignas(64) uint32_t seq; /* bumped by the writer when a message is ready */
  uint32_t waiting;         /* futex mode: the reader sleeps (or is about to) */
  uint64_t len;             /* payload bytes */
};

struct ShmHdr {
  ShmDir req; /* client -> server */
  ShmDir rep; /* server -> client */
};

constexpr size_t kPage = 4096;

size_t raw_round_page(size_t n) { return (n + kPage - 1) / kPage * kPage; }

struct ShmChan {
  ShmHdr *hdr = nullptr;
  unsigned char *req = nullptr;
  unsigned char *rep = nullptr;
  size_t map_len = 0;
};

bool raw_open_shm(ShmChan *c, size_t max_len, std::string *err) {
  size_t data = raw_round_page(max_len ? max_len : 1);
  c->map_len = kPage + 2 * data;
  void *p = mmap(nullptr, c->map_len, PROT_READ | PROT_WRITE,
                 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    *err = std::string("mmap: ") + strerror(errno);
    return false;
  }
  memset(p, 0, c->map_len); /* touch every page now, not during timing */
  c->hdr = (ShmHdr *)p;
  c->req = (unsigned char *)p + kPage;
  c->rep = c->req + data;
  return true;
}

long raw_futex(uint32_t *addr, int op, uint32_t val,
               const struct timespec *ts) {
  /* Not FUTEX_PRIVATE_FLAG: the word is shared between processes. */
  return syscall(SYS_futex, addr, op, val, ts, nullptr, 0);
}

inline void raw_cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

/* Waits until d->seq != last. Spin mode never sleeps (the physical floor:
 * one cache line moving between two cores); futex mode always sleeps and
 * tells the writer so, so a writer never makes a needless wake syscall.
 * deadline_ns = 0 waits forever. Returns 0, or -1 past the deadline. */
int raw_shm_wait(ShmDir *d, uint32_t last, bool spin, uint64_t deadline_ns) {
  if (spin) {
    for (uint32_t n = 1;; n++) {
      if (__atomic_load_n(&d->seq, __ATOMIC_ACQUIRE) != last)
        return 0;
      raw_cpu_relax();
      if ((n & 0xfffff) == 0 && deadline_ns && NowNs() > deadline_ns)
        return -1;
    }
  }
  struct timespec second = {1, 0};
  while (__atomic_load_n(&d->seq, __ATOMIC_ACQUIRE) == last) {
    /* seq_cst store, then the kernel re-reads seq: a writer that bumped seq
     * before seeing waiting=1 makes this futex_wait return at once. */
    __atomic_store_n(&d->waiting, 1, __ATOMIC_SEQ_CST);
    raw_futex(&d->seq, FUTEX_WAIT, last, deadline_ns ? &second : nullptr);
    if (deadline_ns && NowNs() > deadline_ns) {
      if (__atomic_load_n(&d->seq, __ATOMIC_ACQUIRE) != last)
        return 0;
      return -1;
    }
  }
  return 0;
}

void raw_shm_post(ShmDir *d, bool spin) {
  __atomic_fetch_add(&d->seq, 1, __ATOMIC_SEQ_CST);
  if (!spin && __atomic_exchange_n(&d->waiting, 0, __ATOMIC_SEQ_CST))
    raw_futex(&d->seq, FUTEX_WAKE, 1, nullptr);
}

void raw_shm_serve(ShmChan c, size_t max_len, bool spin) {
  uint32_t last = 0;
  for (;;) {
    raw_shm_wait(&c.hdr->req, last, spin, 0);
    last++;
    /* Read the length once and check it: the peer may write anything. */
    uint64_t len = __atomic_load_n(&c.hdr->req.len, __ATOMIC_RELAXED);
    if (len > max_len)
      return;
    memcpy(c.rep, c.req, len); /* the echo handler's copy */
    __atomic_store_n(&c.hdr->rep.len, len, __ATOMIC_RELAXED);
    raw_shm_post(&c.hdr->rep, spin);
  }
}

class ShmConn : public Conn {
public:
  ShmConn(ShmChan c, bool spin) : c_(c), spin_(spin) {}
  int Call(const void *req, size_t len, const void **resp, size_t *resp_len,
           std::string *err) override {
    memcpy(c_.req, req, len);
    __atomic_store_n(&c_.hdr->req.len, (uint64_t)len, __ATOMIC_RELAXED);
    raw_shm_post(&c_.hdr->req, spin_);
    if (raw_shm_wait(&c_.hdr->rep, last_, spin_, NowNs() + kReplyDeadlineNs)) {
      *err = "no reply within 10 s";
      return -1;
    }
    last_++;
    *resp = c_.rep;
    *resp_len = __atomic_load_n(&c_.hdr->rep.len, __ATOMIC_RELAXED);
    return 0;
  }

private:
  ShmChan c_;
  bool spin_;
  uint32_t last_ = 0;
};

/* ================= the transport: channels + server process =================
 */

enum class Kind { kPipe, kUnix, kTcp, kFutex, kSpin };

class RawTransport : public Transport {
public:
  explicit RawTransport(Kind k) : kind_(k) {}
  ~RawTransport() override { Stop(); }

  bool Start(int nconn, size_t max_len, std::string *err) override {
    Stop();
    max_len_ = max_len;
    for (int i = 0; i < nconn; i++)
      if (!OpenChannel(err)) {
        Stop();
        return false;
      }
    pid_ = ForkChild([this] { return Serve(); });
    if (pid_ < 0) {
      *err = std::string("fork: ") + strerror(errno);
      Stop();
      return false;
    }
    for (auto &s : streams_)
      raw_close_server_side(&s);
    return true;
  }

  std::unique_ptr<Conn> Connect(int i, std::string *err) override {
    if (shm()) {
      if (i < 0 || (size_t)i >= shms_.size()) {
        *err = "no such connection";
        return nullptr;
      }
      return std::make_unique<ShmConn>(shms_[i], kind_ == Kind::kSpin);
    }
    if (i < 0 || (size_t)i >= streams_.size()) {
      *err = "no such connection";
      return nullptr;
    }
    return std::make_unique<StreamConn>(streams_[i].client_rd,
                                        streams_[i].client_wr, max_len_);
  }

  pid_t server_pid() const override { return pid_; }

  void Stop() override {
    StopChild(pid_, SIGKILL, 0);
    pid_ = -1;
    for (auto &s : streams_) {
      raw_close_client_side(&s);
      raw_close_server_side(&s);
    }
    streams_.clear();
    for (auto &s : shms_)
      munmap(s.hdr, s.map_len);
    shms_.clear();
  }

private:
  bool shm() const { return kind_ == Kind::kFutex || kind_ == Kind::kSpin; }

  bool OpenChannel(std::string *err) {
    if (shm()) {
      ShmChan c;
      if (!raw_open_shm(&c, max_len_, err))
        return false;
      shms_.push_back(c);
      return true;
    }
    StreamChan c;
    bool ok = kind_ == Kind::kPipe   ? raw_open_pipe(&c, err)
              : kind_ == Kind::kUnix ? raw_open_unix(&c, err)
                                     : raw_open_tcp(&c, err);
    if (ok)
      streams_.push_back(c);
    return ok;
  }

  /* The server process: one connection is served on the main thread, more
   * on one thread each (as libsvc's server does). */
  int Serve() {
    for (auto &s : streams_)
      raw_close_client_side(&s);
    std::vector<std::function<void()>> loops;
    for (auto &s : streams_)
      loops.push_back([s, this] { raw_stream_serve(s, max_len_); });
    for (auto &s : shms_)
      loops.push_back(
          [s, this] { raw_shm_serve(s, max_len_, kind_ == Kind::kSpin); });
    std::vector<std::thread> threads;
    for (size_t i = 1; i < loops.size(); i++)
      threads.emplace_back(loops[i]);
    if (!loops.empty())
      loops[0]();
    for (auto &t : threads)
      t.join();
    return 0;
  }

  Kind kind_;
  size_t max_len_ = 0;
  pid_t pid_ = -1;
  std::vector<StreamChan> streams_;
  std::vector<ShmChan> shms_;
};

} // namespace

std::unique_ptr<Transport> NewRawTransport(const std::string &kind) {
  if (kind == "pipe")
    return std::make_unique<RawTransport>(Kind::kPipe);
  if (kind == "unix")
    return std::make_unique<RawTransport>(Kind::kUnix);
  if (kind == "tcp")
    return std::make_unique<RawTransport>(Kind::kTcp);
  if (kind == "futex")
    return std::make_unique<RawTransport>(Kind::kFutex);
  if (kind == "spin")
    return std::make_unique<RawTransport>(Kind::kSpin);
  return nullptr;
}

} // namespace bench

/* transport.h — every transport under test, raw baseline or libsvc, behind
 * one small interface: start an echo server in its own process, connect a
 * client in the calling process, make round trips, stop and reap the
 * server. The suites only ever see this interface and a transport name. */
#ifndef SVC_BENCH_TRANSPORT_H
#define SVC_BENCH_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

namespace bench {

/* The client side of one connection; used by one thread of one process. */
class Conn {
public:
  virtual ~Conn() = default;
  /* One blocking round trip: sends len bytes to the echo server and points
   * *resp at the len-byte reply, valid until the next call. The request is
   * written to the peer and the reply written back: no transport may skip
   * either copy. Returns 0, or -1 with a message in *err. */
  virtual int Call(const void *req, size_t len, const void **resp,
                   size_t *resp_len, std::string *err) = 0;
  /* Pipelined round trips (bench_pipeline): until_ns (NowNs) passes, keeps
   * up to window requests of len bytes in flight on this connection,
   * checking every reply against req, then receives what is still in
   * flight. Adds the calls completed to *calls. Returns 0, or -1 with a
   * message in *err; transports that cannot pipeline always fail. */
  virtual int Pipeline(const void * /*req*/, size_t /*len*/, int /*window*/,
                       uint64_t /*until_ns*/, uint64_t * /*calls*/,
                       std::string *err) {
    *err = "this transport has no pipelined calls";
    return -1;
  }
};

/* How the libsvc server child runs (issue 6 adds worker processes) and how
 * its clients wait. */
struct ServerOptions {
  int workers = 0; /* >0: SVC_WORKERS_MIN = SVC_WORKERS_MAX = workers */
  std::string method = "echo"; /* what a libsvc client calls ("burn") */
  bool stats = true;   /* false: SVC_STATS=off in the server (issue 7) */
  int max_threads = 0; /* >0: svc_server_set_max_threads (1 = a GIL-like
                          handler that cannot run twice in one process) */
  /* true: SVC_WAIT_BLOCK for the server and for every client Connect makes
   * (default: adaptive, what users get) */
  bool wait_block = false;
};

class Transport {
public:
  virtual ~Transport() = default;
  /* Forks the server process, ready for nconn connections of at most
   * max_len bytes each way. Returns false with *err set on failure (and
   * leaves nothing running). */
  virtual bool Start(int nconn, size_t max_len, std::string *err) = 0;
  /* In the process that will make the calls (the benchmark itself, or a
   * forked client process): connection i, 0 <= i < nconn. nullptr + *err
   * on failure. */
  virtual std::unique_ptr<Conn> Connect(int i, std::string *err) = 0;
  /* The server process, for CPU accounting; -1 before Start. */
  virtual pid_t server_pid() const = 0;
  /* Other processes the transport needs running (iceoryx's RouDi
   * daemon), whose CPU and memory the user pays too. */
  virtual std::vector<pid_t> helper_pids() const { return {}; }
  /* Kills and reaps the server and frees what Start made. Idempotent. */
  virtual void Stop() = 0;
};

/* Transport names, in report order. Raw baselines: "pipe", "unix", "tcp",
 * "futex", "spin"; libsvc: "svc-shm", "svc-shm-prep", "svc-unix",
 * "svc-tcp", "svc-tls" (absent when built with SVC_BENCH_NO_LIBSVC). */
std::vector<std::string> TransportNames();
/* nullptr for an unknown name. */
std::unique_ptr<Transport> MakeTransport(const std::string &name,
                                         const ServerOptions &opts = {});

/* Constructors behind MakeTransport (raw.cc, svc_echo.cc). */
std::unique_ptr<Transport> NewRawTransport(const std::string &kind);
std::unique_ptr<Transport> NewSvcTransport(const std::string &scheme,
                                           const ServerOptions &opts);

} // namespace bench

#endif

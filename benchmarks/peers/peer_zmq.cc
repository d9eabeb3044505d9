/* peer_zmq.cc — ZeroMQ (libzmq 4.3) request/reply, the way its own
 * latency tools do it (libzmq perf/local_lat.cpp and remote_lat.cpp: one
 * REQ socket, zmq_send from the caller's buffer, zmq_msg_recv of the
 * reply, default socket options), over ipc:// and tcp://. The server is a
 * ROUTER socket (zguide chapter 3, "the asynchronous server"), so the same
 * server answers REQ clients and the DEALER clients of the pipelined rows;
 * like every echo server here it copies the request into a new reply
 * message, the handler's one copy. */
#include <signal.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "../harness.h"
#include "../transport.h"
#include "peers.h"

namespace bench {
namespace {

std::string zmq_err(const char *what) {
  return std::string(what) + ": " + zmq_strerror(zmq_errno());
}

/* Receives one message of every part into parts; false on error. */
bool zmq_recv_all(void *sock, std::vector<zmq_msg_t> *parts) {
  for (;;) {
    parts->emplace_back();
    zmq_msg_t *m = &parts->back();
    zmq_msg_init(m);
    if (zmq_msg_recv(m, sock, 0) < 0)
      return false;
    if (!zmq_msg_more(m))
      return true;
  }
}

int zmq_serve(const std::string &endpoint, const ReadyFn &ready) {
  void *ctx = zmq_ctx_new();
  void *sock = zmq_socket(ctx, ZMQ_ROUTER);
  if (!sock || zmq_bind(sock, endpoint.c_str()) != 0) {
    ready("ERR " + zmq_err(("zmq_bind " + endpoint).c_str()));
    return 1;
  }
  char last[256];
  size_t n = sizeof last;
  zmq_getsockopt(sock, ZMQ_LAST_ENDPOINT, last, &n);
  ready(std::string("OK ") + last);
  std::vector<zmq_msg_t> parts;
  for (;;) {
    parts.clear();
    if (!zmq_recv_all(sock, &parts))
      return 1;
    /* The envelope (identity, and REQ's empty delimiter) goes back as it
     * came; the last part is the request, copied into the reply. */
    for (size_t i = 0; i + 1 < parts.size(); i++)
      zmq_msg_send(&parts[i], sock, ZMQ_SNDMORE);
    zmq_msg_t &req = parts.back();
    zmq_msg_t rep;
    zmq_msg_init_size(&rep, zmq_msg_size(&req));
    memcpy(zmq_msg_data(&rep), zmq_msg_data(&req), zmq_msg_size(&req));
    zmq_msg_close(&req);
    if (zmq_msg_send(&rep, sock, 0) < 0)
      return 1;
  }
}

class ZmqConn : public Conn {
public:
  ZmqConn(void *ctx, const std::string &endpoint) : endpoint_(endpoint) {
    req_ = zmq_socket(ctx, ZMQ_REQ);
    ctx_ = ctx;
    zmq_msg_init(&reply_);
  }
  ~ZmqConn() override {
    zmq_msg_close(&reply_);
    int zero = 0;
    for (void *s : {req_, dealer_})
      if (s) {
        zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
        zmq_close(s);
      }
  }
  bool Open(std::string *err) {
    if (!req_ || zmq_connect(req_, endpoint_.c_str()) != 0) {
      *err = zmq_err("zmq_connect");
      return false;
    }
    return true;
  }

  int Call(const void *req, size_t len, const void **resp, size_t *resp_len,
           std::string *err) override {
    if (zmq_send(req_, req, len, 0) < 0 || zmq_msg_recv(&reply_, req_, 0) < 0) {
      *err = zmq_err("zmq REQ");
      return -1;
    }
    *resp = zmq_msg_data(&reply_);
    *resp_len = zmq_msg_size(&reply_);
    return 0;
  }

  /* DEALER/ROUTER (zguide chapter 3): up to window requests in flight on
   * one DEALER socket, replies in order. */
  int Pipeline(const void *req, size_t len, int window, uint64_t until_ns,
               uint64_t *calls, std::string *err) override {
    if (!dealer_) {
      dealer_ = zmq_socket(ctx_, ZMQ_DEALER);
      if (!dealer_ || zmq_connect(dealer_, endpoint_.c_str()) != 0) {
        *err = zmq_err("zmq DEALER connect");
        return -1;
      }
    }
    Deadline deadline(until_ns);
    int in_flight = 0;
    bool sending = true;
    zmq_msg_t m;
    zmq_msg_init(&m);
    for (;;) {
      while (sending && in_flight < window) {
        if (zmq_send(dealer_, req, len, 0) < 0) {
          *err = zmq_err("zmq DEALER send");
          return -1;
        }
        in_flight++;
      }
      if (in_flight == 0)
        break;
      if (zmq_msg_recv(&m, dealer_, 0) < 0) {
        *err = zmq_err("zmq DEALER recv");
        return -1;
      }
      in_flight--;
      if (!ReplyMatches(req, len, zmq_msg_data(&m), zmq_msg_size(&m))) {
        *err = "reply differs from request";
        return -1;
      }
      ++*calls;
      if (sending && deadline.Passed())
        sending = false;
    }
    zmq_msg_close(&m);
    return 0;
  }

private:
  void *ctx_ = nullptr;
  void *req_ = nullptr;
  void *dealer_ = nullptr;
  std::string endpoint_;
  zmq_msg_t reply_;
};

class ZmqTransport : public PeerTransport {
public:
  explicit ZmqTransport(bool tcp) : tcp_(tcp) {}
  ~ZmqTransport() override {
    Stop();
    if (ctx_)
      zmq_ctx_term(ctx_); /* its sockets are closed, with linger 0 */
  }
  std::unique_ptr<Conn> Connect(int, std::string *err) override {
    if (!ctx_)
      ctx_ = zmq_ctx_new(); /* one per process: forked clients make theirs */
    return OpenConn<ZmqConn>(err, ctx_, addr());
  }

protected:
  int Serve(const ReadyFn &ready) override {
    return zmq_serve(tcp_ ? "tcp://127.0.0.1:*"
                          : "ipc://" + RuntimeDir() + "/" + UniqueName("zmq") +
                                ".sock",
                     ready);
  }

private:
  bool tcp_;
  void *ctx_ = nullptr; /* this process's context, made at first Connect */
};

} // namespace

std::unique_ptr<Transport> NewZmqTransport(bool tcp) {
  return std::make_unique<ZmqTransport>(tcp);
}

} // namespace bench

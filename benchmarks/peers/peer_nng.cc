/* peer_nng.cc — nng (1.5) req0/rep0, as its reqrep demo and manual pages
 * show it (demo/reqrep/reqrep.c: nng_rep0_open, nng_listen; the client
 * nng_req0_open, nng_dial, nng_send from the caller's buffer, nng_recvmsg
 * of the reply), over ipc:// and tcp://. The only option set is the
 * receive limit (NNG_OPT_RECVMAXSZ, 1 MiB by default), lifted so that the
 * 16 MiB rows run. The server copies each request into a new reply
 * message, the handler's one copy every echo server here makes. */
#include <arpa/inet.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>
#include <signal.h>
#include <string.h>

#include <vector>

#include "../harness.h"
#include "../transport.h"
#include "peers.h"

namespace bench {
namespace {

std::string nng_err(const char *what, int rv) {
  return std::string(what) + ": " + nng_strerror(rv);
}

int nng_serve(const std::string &url, const ReadyFn &ready) {
  nng_socket sock;
  nng_listener l;
  int rv = nng_rep0_open(&sock);
  if (rv == 0)
    rv = nng_socket_set_size(sock, NNG_OPT_RECVMAXSZ, 0);
  if (rv == 0)
    rv = nng_listen(sock, url.c_str(), &l, 0);
  if (rv != 0) {
    ready("ERR " + nng_err(("nng_listen " + url).c_str(), rv));
    return 1;
  }
  std::string addr = url;
  nng_sockaddr sa;
  if (url.compare(0, 6, "tcp://") == 0 &&
      nng_listener_get_addr(l, NNG_OPT_LOCADDR, &sa) == 0)
    addr = "tcp://127.0.0.1:" + std::to_string(ntohs(sa.s_in.sa_port));
  ready("OK " + addr);
  for (;;) {
    nng_msg *req, *rep;
    if (nng_recvmsg(sock, &req, 0) != 0)
      return 1;
    size_t len = nng_msg_len(req);
    if (nng_msg_alloc(&rep, len) != 0)
      return 1;
    memcpy(nng_msg_body(rep), nng_msg_body(req), len);
    nng_msg_free(req);
    if (nng_sendmsg(sock, rep, 0) != 0) {
      nng_msg_free(rep);
      return 1;
    }
  }
}

class NngConn : public Conn {
public:
  explicit NngConn(const std::string &url) : url_(url) {}
  ~NngConn() override {
    if (reply_)
      nng_msg_free(reply_);
    nng_close(sock_);
  }
  bool Open(std::string *err) {
    int rv = nng_req0_open(&sock_);
    if (rv == 0)
      rv = nng_socket_set_size(sock_, NNG_OPT_RECVMAXSZ, 0);
    if (rv == 0)
      rv = nng_dial(sock_, url_.c_str(), nullptr, 0);
    if (rv != 0)
      *err = nng_err(("nng_dial " + url_).c_str(), rv);
    return rv == 0;
  }
  int Call(const void *req, size_t len, const void **resp, size_t *resp_len,
           std::string *err) override {
    if (reply_) { /* the last reply was valid until this call */
      nng_msg_free(reply_);
      reply_ = nullptr;
    }
    int rv = nng_send(sock_, const_cast<void *>(req), len, 0);
    if (rv == 0)
      rv = nng_recvmsg(sock_, &reply_, 0);
    if (rv != 0) {
      *err = nng_err("nng req", rv);
      return -1;
    }
    *resp = nng_msg_body(reply_);
    *resp_len = nng_msg_len(reply_);
    return 0;
  }

  /* Calls in flight the way nng's manual has them (nng_ctx(5), the
   * reqrep demo's contexts): one context per call in flight on the one
   * req0 socket, each driven through an aio; replies are awaited in the
   * order sent, as this server answers. */
  int Pipeline(const void *req, size_t len, int window, uint64_t until_ns,
               uint64_t *calls, std::string *err) override {
    struct Slot {
      nng_ctx ctx;
      nng_aio *aio = nullptr;
      bool receiving = false, busy = false;
    };
    std::vector<Slot> slots((size_t)window);
    int rv = 0;
    for (Slot &s : slots)
      if (rv == 0 && (rv = nng_ctx_open(&s.ctx, sock_)) == 0)
        rv = nng_aio_alloc(&s.aio, nullptr, nullptr);
    auto send = [&](Slot &s) {
      nng_msg *m;
      if (nng_msg_alloc(&m, len) != 0)
        return false;
      memcpy(nng_msg_body(m), req, len);
      nng_aio_set_msg(s.aio, m);
      nng_ctx_send(s.ctx, s.aio);
      s.receiving = false;
      s.busy = true;
      return true;
    };
    Deadline deadline(until_ns);
    bool sending = true, ok = rv == 0;
    for (Slot &s : slots)
      ok = ok && send(s);
    for (size_t i = 0, live = ok ? slots.size() : 0; live > 0;
         i = (i + 1) % slots.size()) {
      Slot &s = slots[i];
      if (!s.busy)
        continue;
      nng_aio_wait(s.aio);
      if ((rv = nng_aio_result(s.aio)) != 0) {
        ok = false;
        break;
      }
      if (!s.receiving) { /* sent: now its reply */
        s.receiving = true;
        nng_ctx_recv(s.ctx, s.aio);
        continue;
      }
      nng_msg *m = nng_aio_get_msg(s.aio);
      bool match = ReplyMatches(req, len, nng_msg_body(m), nng_msg_len(m));
      nng_msg_free(m);
      if (!match) {
        *err = "reply differs from request";
        ok = false;
        break;
      }
      ++*calls;
      s.busy = false;
      if (sending && deadline.Passed())
        sending = false;
      if (sending && !send(s)) {
        ok = false;
        break;
      }
      live -= !s.busy;
    }
    for (Slot &s : slots) {
      if (s.aio) {
        nng_aio_stop(s.aio);
        nng_aio_free(s.aio);
      }
      nng_ctx_close(s.ctx);
    }
    if (!ok && err->empty())
      *err = nng_err("nng ctx", rv);
    return ok ? 0 : -1;
  }

private:
  std::string url_;
  nng_socket sock_ = NNG_SOCKET_INITIALIZER;
  nng_msg *reply_ = nullptr;
};

class NngTransport : public PeerTransport {
public:
  explicit NngTransport(bool tcp) : tcp_(tcp) {}
  std::unique_ptr<Conn> Connect(int, std::string *err) override {
    return OpenConn<NngConn>(err, addr());
  }

protected:
  int Serve(const ReadyFn &ready) override {
    return nng_serve(tcp_ ? "tcp://127.0.0.1:0"
                          : "ipc://" + RuntimeDir() + "/" + UniqueName("nng") +
                                ".sock",
                     ready);
  }

private:
  bool tcp_;
};

} // namespace

std::unique_ptr<Transport> NewNngTransport(bool tcp) {
  return std::make_unique<NngTransport>(tcp);
}

} // namespace bench

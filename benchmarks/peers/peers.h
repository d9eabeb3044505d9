/* peers.h — the libraries a user would pick instead of libsvc, each an
 * echo Transport (transport.h) built when its Debian package is found:
 * ZeroMQ, nng, gRPC and iceoryx. peers.cc names them. */
#ifndef SVC_BENCH_PEERS_H
#define SVC_BENCH_PEERS_H

#include <signal.h>

#include <memory>
#include <string>
#include <utility>

#include "../harness.h"
#include "../transport.h"

#include <string>
#include <vector>

namespace bench {

/* The Transport of a peer whose server is one forked process: Start forks
 * it and waits for the address it reports, Stop kills it. */
class PeerTransport : public Transport {
public:
  ~PeerTransport() override { PeerTransport::Stop(); }
  bool Start(int, size_t, std::string *err) override {
    PeerTransport::Stop(); /* the server only: a subclass's helpers stay */
    pid_ = ForkServer([this](const ReadyFn &ready) { return Serve(ready); },
                      &addr_, err);
    return pid_ > 0;
  }
  pid_t server_pid() const override { return pid_; }
  void Stop() override {
    StopChild(pid_, SIGKILL, 0);
    pid_ = -1;
  }

protected:
  /* In the server child: listen, ready("OK <address>"), serve for ever. */
  virtual int Serve(const ReadyFn &ready) = 0;
  /* What the server reported. */
  const std::string &addr() const { return addr_; }

private:
  pid_t pid_ = -1;
  std::string addr_;
};

/* A connection of type C made from args and connected by its Open(err):
 * nullptr with *err set when that fails. */
template <class C, class... Args>
std::unique_ptr<Conn> OpenConn(std::string *err, Args &&...args) {
  auto c = std::make_unique<C>(std::forward<Args>(args)...);
  if (!c->Open(err))
    return nullptr;
  return c;
}

/* The peers built into this binary, in report order. */
std::vector<std::string> PeerNames();
/* "name (install package)" for each peer left out of the build. */
std::vector<std::string> MissingPeers();
/* nullptr for a name that is no peer, or one not built. */
std::unique_ptr<Transport> NewPeerTransport(const std::string &name);

std::unique_ptr<Transport> NewZmqTransport(bool tcp);
std::unique_ptr<Transport> NewNngTransport(bool tcp);
std::unique_ptr<Transport> NewGrpcTransport();
/* busy_poll: the client spins on take_response; else it waits on a wait
 * set. */
std::unique_ptr<Transport> NewIceoryxTransport(bool busy_poll);

} // namespace bench

#endif

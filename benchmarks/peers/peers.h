/* peers.h — the libraries a user would pick instead of libsvc, each an
 * echo Transport (transport.h) built when its Debian package is found:
 * ZeroMQ, nng, gRPC and iceoryx. peers.cc names them. */
#ifndef SVC_BENCH_PEERS_H
#define SVC_BENCH_PEERS_H

#include <memory>

#include "../transport.h"

#include <string>
#include <vector>

namespace bench {

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

/* peers.cc — the one list of peer transports: which were built (CMake
 * defines SVC_BENCH_HAVE_<PEER> when it finds the package) and which
 * package a missing one needs. */
#include "peers.h"

#include <string>
#include <vector>

namespace bench {
namespace {

struct Peer {
  const char *name;    /* the transport name the suites and report use */
  const char *package; /* what ci/deps installs for it */
  bool built;
};

const Peer kPeers[] = {
    {"iceoryx-poll", "iceoryx libiceoryx-binding-c-dev",
#ifdef SVC_BENCH_HAVE_ICEORYX
     true
#else
     false
#endif
    },
    {"iceoryx-waitset", "iceoryx libiceoryx-binding-c-dev",
#ifdef SVC_BENCH_HAVE_ICEORYX
     true
#else
     false
#endif
    },
    {"zmq-ipc", "libzmq3-dev",
#ifdef SVC_BENCH_HAVE_ZMQ
     true
#else
     false
#endif
    },
    {"zmq-tcp", "libzmq3-dev",
#ifdef SVC_BENCH_HAVE_ZMQ
     true
#else
     false
#endif
    },
    {"nng-ipc", "libnng-dev",
#ifdef SVC_BENCH_HAVE_NNG
     true
#else
     false
#endif
    },
    {"nng-tcp", "libnng-dev",
#ifdef SVC_BENCH_HAVE_NNG
     true
#else
     false
#endif
    },
    {"grpc-unix", "libgrpc++-dev protobuf-compiler-grpc",
#ifdef SVC_BENCH_HAVE_GRPC
     true
#else
     false
#endif
    },
};

} // namespace

std::vector<std::string> PeerNames() {
  std::vector<std::string> v;
  for (const Peer &p : kPeers)
    if (p.built)
      v.push_back(p.name);
  return v;
}

std::vector<std::string> MissingPeers() {
  std::vector<std::string> v;
  for (const Peer &p : kPeers)
    if (!p.built)
      v.push_back(std::string(p.name) + " (install " + p.package + ")");
  return v;
}

std::unique_ptr<Transport> NewPeerTransport(const std::string &name) {
#ifdef SVC_BENCH_HAVE_ZMQ
  if (name == "zmq-ipc" || name == "zmq-tcp")
    return NewZmqTransport(name == "zmq-tcp");
#endif
#ifdef SVC_BENCH_HAVE_NNG
  if (name == "nng-ipc" || name == "nng-tcp")
    return NewNngTransport(name == "nng-tcp");
#endif
#ifdef SVC_BENCH_HAVE_GRPC
  if (name == "grpc-unix")
    return NewGrpcTransport();
#endif
#ifdef SVC_BENCH_HAVE_ICEORYX
  if (name == "iceoryx-poll" || name == "iceoryx-waitset")
    return NewIceoryxTransport(name == "iceoryx-poll");
#endif
  (void)name;
  return nullptr;
}

} // namespace bench

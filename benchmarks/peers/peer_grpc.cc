/* peer_grpc.cc — gRPC (1.51, C++) unary Echo(bytes) over a unix: socket
 * with the synchronous stub, as the gRPC performance guide recommends for
 * a latency-bound caller (grpc.io/docs/guides/performance: reuse one
 * channel and stub; a local channel over a Unix socket): the client sets
 * the request's bytes from its buffer and calls; the server's handler
 * copies the request's bytes into the reply (its one copy). Message size
 * limits are lifted (4 MiB by default) so that the 16 MiB rows run. */
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <stdint.h>

#include <vector>

#include "../harness.h"
#include "../transport.h"
#include "echo.grpc.pb.h"
#include "peers.h"

namespace bench {
namespace {

class EchoService final : public svcbench::Echo::Service {
  grpc::Status Echo(grpc::ServerContext *, const svcbench::Payload *req,
                    svcbench::Payload *rep) override {
    rep->set_data(req->data());
    return grpc::Status::OK;
  }
};

int grpc_serve(const std::string &target, const ReadyFn &ready) {
  EchoService service;
  grpc::ServerBuilder b;
  b.AddListeningPort(target, grpc::InsecureServerCredentials());
  b.RegisterService(&service);
  b.SetMaxReceiveMessageSize(-1);
  b.SetMaxSendMessageSize(-1);
  std::unique_ptr<grpc::Server> server = b.BuildAndStart();
  if (!server) {
    ready("ERR grpc BuildAndStart " + target);
    return 1;
  }
  ready("OK " + target);
  server->Wait();
  return 0;
}

class GrpcConn : public Conn {
public:
  explicit GrpcConn(const std::string &target) {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(-1);
    args.SetMaxSendMessageSize(-1);
    channel_ = grpc::CreateCustomChannel(
        target, grpc::InsecureChannelCredentials(), args);
    stub_ = svcbench::Echo::NewStub(channel_);
  }
  bool Open(std::string *err) {
    if (channel_->WaitForConnected(std::chrono::system_clock::now() +
                                   std::chrono::seconds(10)))
      return true;
    *err = "gRPC channel not connected after 10 s";
    return false;
  }
  int Call(const void *req, size_t len, const void **resp, size_t *resp_len,
           std::string *err) override {
    svcbench::Payload in;
    in.set_data(req, len);
    grpc::ClientContext ctx;
    grpc::Status st = stub_->Echo(&ctx, in, &reply_);
    if (!st.ok()) {
      *err = "gRPC Echo: " + st.error_message();
      return -1;
    }
    *resp = reply_.data().data();
    *resp_len = reply_.data().size();
    return 0;
  }

  /* Calls in flight with the asynchronous stub and a completion queue
   * (grpc.io/docs/languages/cpp/async): window calls outstanding on the
   * one channel, a new one started as each finishes. */
  int Pipeline(const void *req, size_t len, int window, uint64_t until_ns,
               uint64_t *calls, std::string *err) override {
    struct Pending {
      grpc::ClientContext ctx;
      svcbench::Payload reply;
      grpc::Status status;
      std::unique_ptr<grpc::ClientAsyncResponseReader<svcbench::Payload>> rpc;
    };
    grpc::CompletionQueue cq;
    std::vector<std::unique_ptr<Pending>> slots((size_t)window);
    svcbench::Payload in;
    auto start = [&](size_t i) {
      in.set_data(req, len); /* the client writes each request */
      slots[i] = std::make_unique<Pending>();
      slots[i]->rpc = stub_->AsyncEcho(&slots[i]->ctx, in, &cq);
      slots[i]->rpc->Finish(&slots[i]->reply, &slots[i]->status,
                            (void *)(uintptr_t)i);
    };
    Deadline deadline(until_ns);
    bool sending = true, ok = true;
    int in_flight = 0;
    for (size_t i = 0; i < slots.size(); i++, in_flight++)
      start(i);
    while (in_flight > 0) {
      void *tag;
      bool done;
      if (!cq.Next(&tag, &done))
        break;
      in_flight--;
      size_t i = (size_t)(uintptr_t)tag;
      const Pending &p = *slots[i];
      if (ok && !p.status.ok()) {
        *err = "gRPC AsyncEcho: " + p.status.error_message();
        ok = sending = false;
      } else if (ok && !ReplyMatches(req, len, p.reply.data().data(),
                                     p.reply.data().size())) {
        *err = "reply differs from request";
        ok = sending = false;
      } else if (ok) {
        ++*calls;
      }
      if (sending && deadline.Passed())
        sending = false;
      if (sending) {
        start(i);
        in_flight++;
      }
    }
    cq.Shutdown();
    void *tag;
    bool done;
    while (cq.Next(&tag, &done)) {
    }
    return ok ? 0 : -1;
  }

private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<svcbench::Echo::Stub> stub_;
  svcbench::Payload reply_; /* valid until the next call */
};

class GrpcTransport : public PeerTransport {
public:
  std::unique_ptr<Conn> Connect(int, std::string *err) override {
    return OpenConn<GrpcConn>(err, addr());
  }

protected:
  int Serve(const ReadyFn &ready) override {
    return grpc_serve(
        "unix:" + RuntimeDir() + "/" + UniqueName("grpc") + ".sock", ready);
  }
};

} // namespace

std::unique_ptr<Transport> NewGrpcTransport() {
  return std::make_unique<GrpcTransport>();
}

} // namespace bench

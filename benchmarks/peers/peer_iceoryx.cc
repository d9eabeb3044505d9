/* peer_iceoryx.cc — iceoryx 2.0 (Eclipse, "classic") request/response
 * through its C binding, following its request_response_in_c examples
 * (client_c_basic.c / server_c_basic.c for polling, client_c_waitset.c /
 * server_c_waitset.c for the wait set): the client loans a request chunk,
 * writes the payload into it and sends it; the server takes it, loans a
 * response chunk for it, writes the reply from the request (the handler's
 * one copy every echo server here makes) and sends it; the client takes
 * the response and reads it where it lies. Two modes: both sides busy-poll
 * (take in a loop, iceoryx's fastest) or both wait on a wait set. The
 * RouDi daemon is started for each transport and stopped after, with a
 * config whose mempools hold a 16 MiB payload. The C binding does not
 * expose a chunk's payload size, so each payload starts with its length
 * (8 bytes), as the raw stream baselines frame theirs. */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* The binding's headers declare C functions without extern "C". */
extern "C" {
#include <iceoryx_binding_c/client.h>
#include <iceoryx_binding_c/runtime.h>
#include <iceoryx_binding_c/server.h>
#include <iceoryx_binding_c/wait_set.h>
}

#include "../harness.h"
#include "../transport.h"
#include "peers.h"

namespace bench {
namespace {

constexpr uint64_t kLenHdr = 8;
const char *const kService = "svcbench";
const char *const kEvent = "echo";

/* Mempools from 128 B to 16 MiB plus headers; RouDi maps them all when it
 * starts (about 250 MiB of /dev/shm). */
const char kRoudiConfig[] = R"([general]
version = 1

[[segment]]

[[segment.mempool]]
size = 256
count = 2000

[[segment.mempool]]
size = 8192
count = 200

[[segment.mempool]]
size = 131072
count = 64

[[segment.mempool]]
size = 2097152
count = 32

[[segment.mempool]]
size = 17825792
count = 8
)";

/* Once per process: a runtime name no other process uses. */
void iox_runtime_once() {
  static pid_t inited = 0;
  if (inited == getpid())
    return;
  inited = getpid();
  std::string name = "svcbench-" + std::to_string(getpid());
  iox_runtime_init(name.c_str());
}

int iox_serve(const std::string &instance, bool poll, const ReadyFn &ready) {
  iox_runtime_once();
  iox_server_storage_t storage;
  iox_server_t server =
      iox_server_init(&storage, kService, instance.c_str(), kEvent, nullptr);
  iox_ws_storage_t ws_storage;
  iox_ws_t ws = nullptr;
  if (!poll) {
    ws = iox_ws_init(&ws_storage);
    if (iox_ws_attach_server_state(ws, server, ServerState_HAS_REQUEST, 0,
                                   nullptr) != WaitSetResult_SUCCESS) {
      ready("ERR iox_ws_attach_server_state failed");
      return 1;
    }
  }
  ready("OK " + instance);
  iox_notification_info_t info[4];
  uint64_t missed;
  for (;;) {
    const void *req = nullptr;
    if (iox_server_take_request(server, &req) != ServerRequestResult_SUCCESS) {
      if (!poll)
        iox_ws_wait(ws, info, 4, &missed);
      continue;
    }
    uint64_t len;
    memcpy(&len, req, kLenHdr);
    void *rep = nullptr;
    if (iox_server_loan_response(server, req, &rep,
                                 (uint32_t)(kLenHdr + len)) ==
        AllocationResult_SUCCESS) {
      memcpy(rep, req, kLenHdr + len);
      iox_server_send(server, rep);
    }
    iox_server_release_request(server, req);
  }
}

class IoxConn : public Conn {
public:
  IoxConn(const std::string &instance, bool poll) : poll_(poll) {
    iox_runtime_once();
    client_ =
        iox_client_init(&storage_, kService, instance.c_str(), kEvent, nullptr);
    if (!poll_) {
      ws_ = iox_ws_init(&ws_storage_);
      iox_ws_attach_client_state(ws_, client_, ClientState_HAS_RESPONSE, 0,
                                 nullptr);
    }
  }
  ~IoxConn() override {
    if (resp_)
      iox_client_release_response(client_, resp_);
    if (ws_)
      iox_ws_deinit(ws_);
    iox_client_deinit(client_);
  }
  /* Requests sent before the client is connected are lost. */
  bool Open(std::string *err) {
    uint64_t deadline = NowNs() + 10ull * 1000000000;
    while (iox_client_get_connection_state(client_) !=
           ConnectionState_CONNECTED) {
      if (NowNs() > deadline) {
        *err = "iceoryx client not connected after 10 s";
        return false;
      }
      usleep(1000);
    }
    return true;
  }
  int Call(const void *req, size_t len, const void **resp, size_t *resp_len,
           std::string *err) override {
    if (resp_) { /* the last reply was valid until this call */
      iox_client_release_response(client_, resp_);
      resp_ = nullptr;
    }
    void *chunk = nullptr;
    if (iox_client_loan_request(client_, &chunk, (uint32_t)(kLenHdr + len)) !=
        AllocationResult_SUCCESS) {
      *err = "iox_client_loan_request failed";
      return -1;
    }
    uint64_t n = len;
    memcpy(chunk, &n, kLenHdr);
    memcpy((char *)chunk + kLenHdr, req, len);
    if (iox_client_send(client_, chunk) != ClientSendResult_SUCCESS) {
      *err = "iox_client_send failed";
      return -1;
    }
    iox_notification_info_t info[4];
    uint64_t missed;
    uint64_t deadline = NowNs() + 10ull * 1000000000;
    while (iox_client_take_response(client_, &resp_) !=
           ChunkReceiveResult_SUCCESS) {
      if (!poll_) {
        struct timespec ts = {1, 0};
        iox_ws_timed_wait(ws_, ts, info, 4, &missed);
      }
      if (NowNs() > deadline) { /* read the clock rarely when polling */
        *err = "no iceoryx response within 10 s";
        return -1;
      }
    }
    memcpy(&n, resp_, kLenHdr);
    *resp = (const char *)resp_ + kLenHdr;
    *resp_len = (size_t)n;
    return 0;
  }

private:
  bool poll_;
  iox_client_storage_t storage_;
  iox_client_t client_;
  iox_ws_storage_t ws_storage_;
  iox_ws_t ws_ = nullptr;
  const void *resp_ = nullptr;
};

class IoxTransport : public PeerTransport {
public:
  explicit IoxTransport(bool poll) : poll_(poll) {}
  ~IoxTransport() override { Stop(); }
  bool Start(int n, size_t max_len, std::string *err) override {
    Stop();
    /* The server's iox_runtime_init waits until RouDi is up. */
    if (!StartRoudi(err) || !PeerTransport::Start(n, max_len, err)) {
      Stop();
      return false;
    }
    return true;
  }
  std::unique_ptr<Conn> Connect(int, std::string *err) override {
    return OpenConn<IoxConn>(err, addr(), poll_);
  }
  std::vector<pid_t> helper_pids() const override {
    return roudi_ > 0 ? std::vector<pid_t>{roudi_} : std::vector<pid_t>{};
  }
  void Stop() override {
    PeerTransport::Stop();
    /* SIGTERM: RouDi removes its shared memory and lock on the way out. */
    StopChild(roudi_, SIGTERM, 5000);
    roudi_ = -1;
  }

protected:
  int Serve(const ReadyFn &ready) override {
    return iox_serve(UniqueName("echo"), poll_, ready);
  }

private:
  bool StartRoudi(std::string *err) {
    std::string cfg = RuntimeDir() + "/roudi_config.toml";
    FILE *f = fopen(cfg.c_str(), "we");
    if (!f || fputs(kRoudiConfig, f) < 0 || fclose(f) != 0) {
      *err = "cannot write " + cfg;
      return false;
    }
    roudi_ = ForkChild([&cfg] {
      int null = open("/dev/null", O_WRONLY);
      if (null >= 0) { /* RouDi's banner and log are not the report's */
        dup2(null, 1);
        dup2(null, 2);
      }
      execlp("iox-roudi", "iox-roudi", "-c", cfg.c_str(), "-l", "error",
             (char *)nullptr);
      return 127;
    });
    if (roudi_ < 0) {
      *err = "fork iox-roudi failed";
      return false;
    }
    return true;
  }

  bool poll_;
  pid_t roudi_ = -1;
};

} // namespace

std::unique_ptr<Transport> NewIceoryxTransport(bool busy_poll) {
  return std::make_unique<IoxTransport>(busy_poll);
}

} // namespace bench

// prepared_test.cc — requests written in place (svc_request_alloc,
// svc_call_prepared, svc_call_send_prepared) over shm://, unix:// and
// tcp://: every size up to the maximum with checksums, the bounds of the
// space, growth between calls, prepared calls in flight, a handler still
// reading a prepared request when its client is killed, and the space's
// lifetime rules.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <unordered_map>
#include <vector>

#include "fixture.h"

namespace svctest {
namespace {

using Prepared = SvcTest;

// Large messages in flight each way on shm:// with the default window: the
// region's lanes per direction (kLanes in region.h).
constexpr int kLanes = 8;

// Writes req into a fresh space and calls method with it; *resp is a copy.
int CallPrepared(svc_client *c, const char *method, const std::string &req,
                 std::string *resp) {
  void *p = svc_request_alloc(c, req.size());
  if (!p)
    return SVC_ENOMEM;
  if (!req.empty())
    memcpy(p, req.data(), req.size());
  const void *out = nullptr;
  size_t n = 0;
  int rc = svc_call_prepared(c, method, req.size(), &out, &n);
  if (rc == 0)
    resp->assign(static_cast<const char *>(out ? out : ""), n);
  return rc;
}

std::string Le64(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; i++)
    s[i] = (char)(v >> (8 * i));
  return s;
}

TEST_P(Prepared, EverySizeUpToTheMaximum) {
  const size_t max = 20u << 20; // the maximum message size, both sides
  ASSERT_NO_FATAL_FAILURE(StartServer({"--max-msg", std::to_string(max)}));
  Client c = MustOpen();
  ASSERT_TRUE(c);
  ASSERT_EQ(0, svc_client_set_max_msg(c.get(), max));
  const size_t page = (size_t)sysconf(_SC_PAGESIZE);
  for (size_t n : {(size_t)0, (size_t)1, page - 1, page, page + 1,
                   (size_t)1 << 20, (size_t)16 << 20, max}) {
    SCOPED_TRACE(::testing::Message() << n << " bytes");
    std::string req = RandomBytes(n * 7 + 1, n), resp;
    ASSERT_EQ(0, CallPrepared(c.get(), "checksum", req, &resp));
    EXPECT_EQ(resp, Le64(Fnv1a64(req.data(), req.size())));
    if (n <= ((size_t)1 << 20)) { // and the echo back, read in place
      ASSERT_EQ(0, CallPrepared(c.get(), "echo", req, &resp));
      EXPECT_TRUE(resp == req) << "contents differ";
    }
  }
  EXPECT_EQ(nullptr, svc_request_alloc(c.get(), max + 1));
}

TEST_P(Prepared, LengthsBeyondTheSpaceAreRefused) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  Client c = MustOpen();
  ASSERT_TRUE(c);
  const void *out;
  size_t n;
  uint64_t id;
  // No space yet.
  EXPECT_EQ(SVC_EINVAL, svc_call_prepared(c.get(), "echo", 0, &out, &n));
  EXPECT_EQ(SVC_EINVAL, svc_call_send_prepared(c.get(), "echo", 0, &id));
  void *p = svc_request_alloc(c.get(), 100);
  ASSERT_NE(nullptr, p);
  memset(p, 'a', 100);
  EXPECT_EQ(SVC_EINVAL, svc_call_prepared(c.get(), "echo", 101, &out, &n));
  EXPECT_EQ(SVC_EINVAL, svc_call_send_prepared(c.get(), "echo", 101, &id));
  // A shorter length than allocated is fine.
  ASSERT_EQ(0, svc_call_prepared(c.get(), "echo", 60, &out, &n));
  EXPECT_EQ(std::string((const char *)out, n), std::string(60, 'a'));
  // The space was used by that call: another needs a new one.
  EXPECT_EQ(SVC_EINVAL, svc_call_prepared(c.get(), "echo", 1, &out, &n));
  // A call from the caller's own memory may reuse the space: it ends it.
  p = svc_request_alloc(c.get(), 8);
  ASSERT_NE(nullptr, p);
  std::string resp;
  ASSERT_EQ(0, Call(c.get(), "echo", std::string(5000, 'z'), &resp));
  EXPECT_EQ(SVC_EINVAL, svc_call_prepared(c.get(), "echo", 8, &out, &n));
}

TEST_P(Prepared, GrowthBetweenCallsAndSmallAfterLarge) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  Client c = MustOpen();
  ASSERT_TRUE(c);
  const size_t order[] = {10,       5000, 70000,  1u << 20, 3,
                          4u << 20, 0,    300000, 8u << 20, 17};
  for (size_t n : order) {
    SCOPED_TRACE(::testing::Message() << n << " bytes");
    std::string req = RandomBytes(n + 3, n), resp;
    ASSERT_EQ(0, CallPrepared(c.get(), "checksum", req, &resp));
    EXPECT_EQ(resp, Le64(Fnv1a64(req.data(), req.size())));
    // Interleaved with ordinary calls of other sizes.
    std::string plain = RandomBytes(n, n % 9000);
    ASSERT_EQ(0, Call(c.get(), "echo", plain, &resp));
    EXPECT_TRUE(resp == plain);
  }
}

TEST_P(Prepared, PreparedCallsInAWindow) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  Client c = MustOpen();
  ASSERT_TRUE(c);
  std::unordered_map<uint64_t, std::string> want; // id -> expected reply
  int sent = 0, prepared = 0, eagain = 0;
  const int kCalls = 200;
  while (sent < kCalls || !want.empty()) {
    while (sent < kCalls && want.size() < 16) {
      uint64_t id = 0;
      int rc;
      std::string req = RandomBytes(sent, sent % 3 ? 100 : 70000);
      if (sent % 2 == 0) { // prepared, in place
        void *p = svc_request_alloc(c.get(), req.size());
        ASSERT_NE(nullptr, p);
        memcpy(p, req.data(), req.size());
        rc = svc_call_send_prepared(c.get(), "checksum", req.size(), &id);
      } else {
        rc = svc_call_send(c.get(), "checksum", req.data(), req.size(), &id);
      }
      if (rc == SVC_EAGAIN) { // every lane holds a large request
        ASSERT_FALSE(want.empty());
        eagain++;
        break;
      }
      ASSERT_EQ(0, rc) << ErrName(rc);
      prepared += sent % 2 == 0;
      want[id] = Le64(Fnv1a64(req.data(), req.size()));
      sent++;
    }
    uint64_t id = 0;
    const void *out;
    size_t n;
    int rc = svc_call_recv(c.get(), 10000, &id, &out, &n);
    ASSERT_EQ(0, rc) << ErrName(rc);
    ASSERT_EQ(1u, want.count(id));
    EXPECT_EQ(std::string((const char *)out, n), want[id]);
    want.erase(id);
  }
  EXPECT_EQ(prepared, kCalls / 2);
  RecordProperty("eagain", eagain);
}

// Receives every call in want (id -> expected reply), in any order.
void ReceiveAll(svc_client *c,
                std::unordered_map<uint64_t, std::string> *want) {
  while (!want->empty()) {
    uint64_t id = 0;
    const void *out;
    size_t n;
    int rc = svc_call_recv(c, 10000, &id, &out, &n);
    ASSERT_EQ(0, rc) << ErrName(rc);
    ASSERT_EQ(1u, want->count(id));
    EXPECT_EQ(std::string((const char *)out, n), (*want)[id]);
    want->erase(id);
  }
}

// A batch of large requests written in place goes out at once, none
// waiting for another's reply and none copied: on shm:// each has a lane
// of its own (8 with the default window; the next one is SVC_EAGAIN until
// a reply is received), elsewhere each is sent from its own space.
TEST_P(Prepared, ABatchOfLargeRequestsIsInFlightAtOnce) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  Client c = MustOpen();
  ASSERT_TRUE(c);
  const int kBatch = kLanes;
  std::unordered_map<uint64_t, std::string> want;
  std::vector<void *> spaces;
  for (int i = 0; i < kBatch; i++) {
    std::string req = RandomBytes(1000 + i, 256 << 10);
    void *p = svc_request_alloc(c.get(), req.size());
    ASSERT_NE(nullptr, p);
    if (GetParam() == "shm") {
      for (void *q : spaces)
        EXPECT_NE(q, p) << "two requests in flight share a space";
    }
    spaces.push_back(p);
    memcpy(p, req.data(), req.size());
    uint64_t id = 0;
    int rc = svc_call_send_prepared(c.get(), "checksum", req.size(), &id);
    ASSERT_EQ(0, rc) << i << ": " << ErrName(rc);
    want[id] = Le64(Fnv1a64(req.data(), req.size()));
  }
  if (GetParam() == "shm") { // every lane is taken now
    std::string req = RandomBytes(99, 256 << 10);
    uint64_t id = 0;
    EXPECT_EQ(SVC_EAGAIN,
              svc_call_send(c.get(), "checksum", req.data(), req.size(), &id));
  }
  ReceiveAll(c.get(), &want);
}

// Large replies in flight: the server writes each into a reply lane of
// its own while the client has not received the earlier ones yet.
TEST_P(Prepared, LargeRepliesInFlight) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  Client c = MustOpen();
  ASSERT_TRUE(c);
  std::vector<std::pair<uint64_t, std::string>> sent;
  for (int i = 0; i < 3 * kLanes; i++) {
    std::string req = RandomBytes(2000 + i, 4096 + 977 * i);
    uint64_t id = 0;
    int rc = svc_call_send(c.get(), "echo", req.data(), req.size(), &id);
    if (rc == SVC_EAGAIN)
      break; // every request lane holds one
    ASSERT_EQ(0, rc) << ErrName(rc);
    sent.emplace_back(id, req);
  }
  ASSERT_GE(sent.size(), (size_t)kLanes);
  for (auto &[want_id, req] : sent) {
    uint64_t id = 0;
    const void *out;
    size_t n;
    int rc = svc_call_recv(c.get(), 10000, &id, &out, &n);
    ASSERT_EQ(0, rc) << ErrName(rc);
    EXPECT_EQ(want_id, id) << "replies come in order";
    EXPECT_TRUE(std::string((const char *)out, n) == req);
  }
}

TEST_P(Prepared, HandlerReadingWhenTheClientIsKilled) {
  // The handler reads the request in place for about 256 ms (on shm: in
  // the client's region) while the client is killed; the server must not
  // fault, and serves the next client.
  ASSERT_NO_FATAL_FAILURE(StartServer());
  pid_t child = Fork();
  if (child == 0) {
    int rc = 0;
    Client c = Open(url_, &rc);
    if (rc)
      _exit(1);
    void *p = svc_request_alloc(c.get(), 1u << 20);
    if (!p)
      _exit(1);
    memset(p, 1, 1u << 20);
    const void *out;
    size_t n;
    svc_call_prepared(c.get(), "slowsum", 1u << 20, &out, &n);
    _exit(0);
  }
  usleep(100 * 1000); // the handler is reading by now
  kill(child, SIGKILL);
  int st = 0;
  waitpid(child, &st, 0);
  usleep(300 * 1000); // past the handler's end
  ExpectServes(url_);
  Client c = MustOpen();
  ASSERT_TRUE(c);
  std::string resp;
  ASSERT_EQ(0,
            CallPrepared(c.get(), "slowsum", std::string(8192, '\2'), &resp));
  EXPECT_EQ(resp, Le64(2 * 8192));
}

TEST_P(Prepared, SpaceSurvivesAReconnect) {
  // The server restarts between svc_request_alloc and the call: the space
  // stays writable and the call still carries what was written.
  ASSERT_NO_FATAL_FAILURE(StartServer());
  Client c = MustOpen();
  ASSERT_TRUE(c);
  std::string warm;
  ASSERT_EQ(0, Call(c.get(), "echo", "warm", &warm));
  std::string req = RandomBytes(99, 300000);
  void *p = svc_request_alloc(c.get(), req.size());
  ASSERT_NE(nullptr, p);
  server_->Kill(SIGKILL);
  server_->Wait();
  ASSERT_NO_FATAL_FAILURE(RestartServer());
  memcpy(p, req.data(), req.size()); // written after the server went away
  const void *out;
  size_t n;
  int rc = svc_call_prepared(c.get(), "checksum", req.size(), &out, &n);
  ASSERT_EQ(0, rc) << ErrName(rc);
  EXPECT_EQ(std::string((const char *)out, n),
            Le64(Fnv1a64(req.data(), req.size())));
}

SVC_ALL_TRANSPORTS(Prepared);

} // namespace
} // namespace svctest

// stream_peer_test.cc — the stream client against a scripted server (a
// thread speaking raw frames on a Unix socket), for what this library's
// own server never does: replies out of order, replies to ids never issued,
// the same reply twice. Each must reach the right call, or end the
// connection with SVC_EPROTO and nothing else.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <functional>
#include <string>
#include <thread>
#include <vector>

extern "C" {
#include "frame.h"
#include "svc.h"
}

namespace {

struct Request {
  uint32_t id;
  std::string payload;
};

// A server that accepts connections and hands each to script.
class ScriptedServer {
public:
  using Script = std::function<void(ScriptedServer &, int fd)>;

  explicit ScriptedServer(Script script) : script_(std::move(script)) {
    char dir[] = "/tmp/svc-peer-XXXXXX";
    EXPECT_NE(nullptr, mkdtemp(dir));
    dir_ = dir;
    path_ = dir_ + "/s.sock";
    lfd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path_.c_str());
    EXPECT_EQ(0, bind(lfd_, (sockaddr *)&a, sizeof a));
    EXPECT_EQ(0, listen(lfd_, 8));
    thread_ = std::thread([this] {
      for (;;) {
        int fd = accept4(lfd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd < 0)
          return;
        script_(*this, fd);
        close(fd);
      }
    });
  }
  ~ScriptedServer() {
    shutdown(lfd_, SHUT_RDWR);
    thread_.join();
    close(lfd_);
    unlink(path_.c_str());
    rmdir(dir_.c_str());
  }
  std::string url() const { return "unix://" + path_; }

  // Reads requests until n have arrived (false if the client left).
  bool ReadRequests(int fd, size_t n, std::vector<Request> *out) {
    while (out->size() < n) {
      svc__frame f;
      long k;
      while ((k = svc__frame_decode((const uint8_t *)buf_.data(), buf_.size(),
                                    1 << 20, &f)) > 0) {
        out->push_back(
            {f.call_id, std::string((const char *)f.payload, f.payload_len)});
        buf_.erase(buf_.begin(), buf_.begin() + k);
      }
      if (k < 0)
        return false;
      if (out->size() >= n)
        break;
      char tmp[4096];
      ssize_t r = read(fd, tmp, sizeof tmp);
      if (r <= 0)
        return false;
      buf_.insert(buf_.end(), tmp, tmp + r);
    }
    return true;
  }

  static void Reply(int fd, uint32_t id, const std::string &payload,
                    int32_t status = 0) {
    svc__frame f = {};
    f.type = SVC__FRAME_REPLY;
    f.call_id = id;
    f.status = status;
    f.payload_len = (uint32_t)payload.size();
    uint8_t hdr[SVC__FRAME_HDR];
    svc__frame_encode_header(&f, hdr);
    std::string out((const char *)hdr, sizeof hdr);
    out += payload;
    ASSERT_EQ((ssize_t)out.size(), write(fd, out.data(), out.size()));
  }

private:
  std::string dir_;
  std::string path_;
  int lfd_ = -1;
  std::vector<char> buf_;
  Script script_;
  std::thread thread_;
};

struct Got {
  int rc;
  uint64_t id;
  std::string resp;
};

Got Recv(svc_client *c) {
  Got g{};
  const void *p;
  size_t n;
  g.rc = svc_call_recv(c, 5000, &g.id, &p, &n);
  if (g.rc == 0)
    g.resp.assign((const char *)p, n);
  return g;
}

uint64_t Send(svc_client *c, const std::string &req) {
  uint64_t id = 0;
  EXPECT_EQ(0, svc_call_send(c, "echo", req.data(), req.size(), &id));
  return id;
}

TEST(StreamPeer, RepliesInReverseOrderReachTheirOwnCalls) {
  ScriptedServer srv([](ScriptedServer &s, int fd) {
    std::vector<Request> reqs;
    if (!s.ReadRequests(fd, 8, &reqs))
      return;
    for (size_t i = reqs.size(); i-- > 0;)
      ScriptedServer::Reply(fd, reqs[i].id, "re:" + reqs[i].payload);
  });
  svc_client *c = nullptr;
  ASSERT_EQ(0, svc_client_open(srv.url().c_str(), &c));
  std::vector<uint64_t> ids;
  for (int i = 0; i < 8; i++)
    ids.push_back(Send(c, "call " + std::to_string(i)));
  for (int i = 7; i >= 0; i--) {
    Got g = Recv(c);
    ASSERT_EQ(0, g.rc) << svc_err_name(g.rc);
    EXPECT_EQ(ids[i], g.id) << "completions follow the server's order";
    EXPECT_EQ("re:call " + std::to_string(i), g.resp);
  }
  svc_client_close(c);
}

TEST(StreamPeer, ReplyToAnIdNeverIssuedIsEprotoForThatConnectionOnly) {
  int conns = 0;
  ScriptedServer srv([&conns](ScriptedServer &s, int fd) {
    std::vector<Request> reqs;
    if (conns++ == 0) { /* first connection: a stray id */
      if (s.ReadRequests(fd, 3, &reqs))
        ScriptedServer::Reply(fd, reqs.back().id + 1000, "stray");
      char b;
      while (read(fd, &b, 1) > 0) {
      }
      return;
    }
    while (s.ReadRequests(fd, reqs.size() + 1, &reqs)) /* then behave */
      ScriptedServer::Reply(fd, reqs.back().id, reqs.back().payload);
  });
  svc_client *c = nullptr;
  ASSERT_EQ(0, svc_client_open(srv.url().c_str(), &c));
  for (int i = 0; i < 3; i++)
    Send(c, "x");
  for (int i = 0; i < 3; i++) {
    Got g = Recv(c);
    EXPECT_EQ(SVC_EPROTO, g.rc) << svc_err_name(g.rc);
    EXPECT_NE(0u, g.id);
  }
  Got none = Recv(c);
  EXPECT_EQ(SVC_ESTATE, none.rc);
  // The next call opens a new connection, which works.
  const void *p;
  size_t n;
  ASSERT_EQ(0, svc_call(c, "echo", "ok", 2, &p, &n));
  EXPECT_EQ(std::string((const char *)p, n), "ok");
  svc_client_close(c);
}

TEST(StreamPeer, SameReplyTwiceIsEproto) {
  ScriptedServer srv([](ScriptedServer &s, int fd) {
    std::vector<Request> reqs;
    if (!s.ReadRequests(fd, 2, &reqs))
      return;
    ScriptedServer::Reply(fd, reqs[0].id, "a");
    ScriptedServer::Reply(fd, reqs[0].id, "a again");
    char b;
    while (read(fd, &b, 1) > 0) {
    }
  });
  svc_client *c = nullptr;
  ASSERT_EQ(0, svc_client_open(srv.url().c_str(), &c));
  uint64_t a = Send(c, "a"), b = Send(c, "b");
  Got g1 = Recv(c);
  EXPECT_EQ(0, g1.rc);
  EXPECT_EQ(a, g1.id);
  Got g2 = Recv(c);
  EXPECT_EQ(SVC_EPROTO, g2.rc) << svc_err_name(g2.rc);
  EXPECT_EQ(b, g2.id);
  svc_client_close(c);
}

// Found by fuzz_replies: a call whose own outcome is SVC_ESTATE (svc.stats
// with statistics off) or SVC_EAGAIN came back with id 0, as if nothing
// were in flight, and the caller lost it. The id tells them apart.
TEST(StreamPeer, CallOutcomesThatLookLikeReceiveStatesKeepTheirIds) {
  ScriptedServer srv([](ScriptedServer &s, int fd) {
    std::vector<Request> reqs;
    if (!s.ReadRequests(fd, 3, &reqs))
      return;
    ScriptedServer::Reply(fd, reqs[0].id, "", SVC_ESTATE);
    ScriptedServer::Reply(fd, reqs[1].id, "", SVC_EAGAIN);
    ScriptedServer::Reply(fd, reqs[2].id, "fine");
  });
  svc_client *c = nullptr;
  ASSERT_EQ(0, svc_client_open(srv.url().c_str(), &c));
  uint64_t a = Send(c, "a"), b = Send(c, "b"), d = Send(c, "d");
  Got g = Recv(c);
  EXPECT_EQ(SVC_ESTATE, g.rc);
  EXPECT_EQ(a, g.id);
  g = Recv(c);
  EXPECT_EQ(SVC_EAGAIN, g.rc);
  EXPECT_EQ(b, g.id);
  g = Recv(c);
  EXPECT_EQ(0, g.rc);
  EXPECT_EQ(d, g.id);
  g = Recv(c); // now nothing is in flight
  EXPECT_EQ(SVC_ESTATE, g.rc);
  EXPECT_EQ(0u, g.id);
  svc_client_close(c);
}

} // namespace

// frame_test.cc — the wire frame codec (libsvc/src/frame.c): the byte layout
// documented in frame.c/docs/protocol.md, round trips of every field, each way
// a header can be malformed, partial buffers, length limits, and a seeded
// property test over random headers and random bytes.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

extern "C" {
#include "frame.h"
#include "svc.h"
}

namespace {

constexpr size_t kMax = SVC_DEFAULT_MAX_MSG;

// Bytes placed so that the last one ends right before a PROT_NONE page: a
// decoder that reads past len faults instead of passing by luck.
class GuardedBuf {
public:
  explicit GuardedBuf(const std::vector<uint8_t> &bytes) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t need = bytes.size();
    data_pages_ = (need + page - 1) / page;
    if (data_pages_ == 0)
      data_pages_ = 1;
    total_ = (data_pages_ + 1) * page;
    void *m = mmap(nullptr, total_, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
      abort();
    base_ = static_cast<uint8_t *>(m);
    mprotect(base_ + data_pages_ * page, page, PROT_NONE);
    ptr_ = base_ + data_pages_ * page - need;
    if (need)
      memcpy(ptr_, bytes.data(), need);
  }
  ~GuardedBuf() { munmap(base_, total_); }
  GuardedBuf(const GuardedBuf &) = delete;
  GuardedBuf &operator=(const GuardedBuf &) = delete;
  const uint8_t *data() const { return ptr_; }

private:
  uint8_t *base_ = nullptr;
  uint8_t *ptr_ = nullptr;
  size_t total_ = 0;
  size_t data_pages_ = 0;
};

svc__frame Frame(uint8_t type, uint32_t call_id, int32_t status,
                 uint32_t method_len, uint32_t payload_len) {
  svc__frame f;
  memset(&f, 0, sizeof f);
  f.type = type;
  f.call_id = call_id;
  f.status = status;
  f.method_len = method_len;
  f.payload_len = payload_len;
  return f;
}

std::vector<uint8_t> Header(const svc__frame &f) {
  std::vector<uint8_t> h(SVC__FRAME_HDR, 0xEE);
  svc__frame_encode_header(&f, h.data());
  return h;
}

// A whole frame: header, method bytes, payload bytes.
std::vector<uint8_t> Encode(uint8_t type, uint32_t call_id, int32_t status,
                            const std::string &method,
                            const std::vector<uint8_t> &payload) {
  svc__frame f = Frame(type, call_id, status, (uint32_t)method.size(),
                       (uint32_t)payload.size());
  std::vector<uint8_t> out = Header(f);
  out.insert(out.end(), method.begin(), method.end());
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

void Put32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}

int DecodeHeader(const std::vector<uint8_t> &b, size_t max, svc__frame *f) {
  GuardedBuf g(b);
  return svc__frame_decode_header(g.data(), b.size(), max, f);
}

long Decode(const std::vector<uint8_t> &b, size_t max, svc__frame *f) {
  GuardedBuf g(b);
  return svc__frame_decode(g.data(), b.size(), max, f);
}

// ---- layout ----

TEST(FrameLayout, HeaderIs24BytesLittleEndianAsDocumented) {
  svc__frame f = Frame(SVC__FRAME_REQUEST, 0x04030201u, 0, 0x07, 0x0A090807u);
  std::vector<uint8_t> h = Header(f);
  const uint8_t want[SVC__FRAME_HDR] = {
      'S',  'V',  'C',  '1',  // magic "SVC1"
      1,                      // version
      1,                      // type REQUEST
      0,                      // flags
      0,                      // reserved
      0x01, 0x02, 0x03, 0x04, // call id
      0,    0,    0,    0,    // status
      0x07, 0,    0,    0,    // method length
      0x07, 0x08, 0x09, 0x0A, // payload length
  };
  ASSERT_EQ(SVC__FRAME_HDR, 24);
  EXPECT_EQ(0, memcmp(h.data(), want, sizeof want));
}

TEST(FrameLayout, NegativeStatusIsTwosComplement) {
  svc__frame f = Frame(SVC__FRAME_REPLY, 1, SVC_ENOMETHOD, 0, 0);
  std::vector<uint8_t> h = Header(f);
  EXPECT_EQ(h[12], 0xFA); // -6
  EXPECT_EQ(h[13], 0xFF);
  EXPECT_EQ(h[14], 0xFF);
  EXPECT_EQ(h[15], 0xFF);
}

TEST(FrameLayout, FrameSize) {
  EXPECT_EQ(svc__frame_size(0, 0), 24u);
  EXPECT_EQ(svc__frame_size(4, 100), 128u);
}

// ---- round trips ----

TEST(FrameRoundTrip, RequestEveryField) {
  const uint32_t ids[] = {0, 1, 0x7fffffffu, 0x80000000u, 0xffffffffu};
  const uint32_t mlens[] = {1, 2, 100, SVC_METHOD_MAX};
  const uint32_t plens[] = {0, 1, 4095, 4096, 4097, 1u << 20, (uint32_t)kMax};
  for (uint32_t id : ids)
    for (uint32_t ml : mlens)
      for (uint32_t pl : plens) {
        svc__frame in = Frame(SVC__FRAME_REQUEST, id, 0, ml, pl), out;
        memset(&out, 0xAB, sizeof out);
        ASSERT_EQ(0, DecodeHeader(Header(in), kMax, &out))
            << id << " " << ml << " " << pl;
        EXPECT_EQ(out.type, SVC__FRAME_REQUEST);
        EXPECT_EQ(out.flags, 0);
        EXPECT_EQ(out.call_id, id);
        EXPECT_EQ(out.status, 0);
        EXPECT_EQ(out.method_len, ml);
        EXPECT_EQ(out.payload_len, pl);
      }
}

TEST(FrameRoundTrip, ReplyStatuses) {
  const int32_t statuses[] = {0, SVC_EINVAL, SVC_ESTATE, SVC_EHANDLER,
                              1, 42,         INT32_MAX,  INT32_MIN};
  for (int32_t st : statuses) {
    svc__frame in = Frame(SVC__FRAME_REPLY, 77, st, 0, 5), out;
    ASSERT_EQ(0, DecodeHeader(Header(in), kMax, &out)) << st;
    EXPECT_EQ(out.type, SVC__FRAME_REPLY);
    EXPECT_EQ(out.status, st);
    EXPECT_EQ(out.call_id, 77u);
    EXPECT_EQ(out.payload_len, 5u);
    EXPECT_EQ(out.method_len, 0u);
  }
}

TEST(FrameRoundTrip, Goaway) {
  svc__frame in = Frame(SVC__FRAME_GOAWAY, 9, 0, 0, 0), out;
  ASSERT_EQ(0, DecodeHeader(Header(in), kMax, &out));
  EXPECT_EQ(out.type, SVC__FRAME_GOAWAY);
  EXPECT_EQ(out.call_id, 9u);
}

TEST(FrameRoundTrip, WholeFramePointersAndSize) {
  std::vector<uint8_t> payload = {1, 2, 3, 4, 5, 6, 7};
  std::vector<uint8_t> b = Encode(SVC__FRAME_REQUEST, 5, 0, "echo", payload);
  GuardedBuf g(b);
  svc__frame f;
  long n = svc__frame_decode(g.data(), b.size(), kMax, &f);
  ASSERT_EQ(n, (long)b.size());
  EXPECT_EQ(f.method, g.data() + SVC__FRAME_HDR);
  EXPECT_EQ(f.payload, g.data() + SVC__FRAME_HDR + 4);
  EXPECT_EQ(0, memcmp(f.method, "echo", 4));
  EXPECT_EQ(0, memcmp(f.payload, payload.data(), payload.size()));
}

TEST(FrameRoundTrip, EmptyPayloadReply) {
  std::vector<uint8_t> b = Encode(SVC__FRAME_REPLY, 5, 0, "", {});
  svc__frame f;
  EXPECT_EQ(Decode(b, kMax, &f), (long)SVC__FRAME_HDR);
  EXPECT_EQ(f.payload_len, 0u);
}

TEST(FrameRoundTrip, DecodesOnlyTheFirstOfTwoFrames) {
  std::vector<uint8_t> a = Encode(SVC__FRAME_REQUEST, 1, 0, "m", {9, 9});
  std::vector<uint8_t> b = Encode(SVC__FRAME_REQUEST, 2, 0, "n", {8});
  std::vector<uint8_t> both = a;
  both.insert(both.end(), b.begin(), b.end());
  svc__frame f;
  EXPECT_EQ(Decode(both, kMax, &f), (long)a.size());
  EXPECT_EQ(f.call_id, 1u);
}

// ---- partial buffers ----

TEST(FramePartial, ShortHeaderNeedsMore) {
  std::vector<uint8_t> b = Encode(SVC__FRAME_REQUEST, 3, 0, "echo", {1, 2});
  for (size_t n = 0; n < SVC__FRAME_HDR; n++) {
    std::vector<uint8_t> part(b.begin(), b.begin() + (long)n);
    svc__frame f;
    EXPECT_EQ(1, DecodeHeader(part, kMax, &f)) << n;
    EXPECT_EQ(0, Decode(part, kMax, &f)) << n;
  }
}

TEST(FramePartial, EveryPrefixOfAFrameNeedsMore) {
  std::vector<uint8_t> payload(300);
  for (size_t i = 0; i < payload.size(); i++)
    payload[i] = (uint8_t)i;
  std::vector<uint8_t> b =
      Encode(SVC__FRAME_REQUEST, 3, 0, "checksum", payload);
  for (size_t n = 0; n < b.size(); n++) {
    std::vector<uint8_t> part(b.begin(), b.begin() + (long)n);
    svc__frame f;
    EXPECT_EQ(0, Decode(part, kMax, &f)) << n;
  }
  svc__frame f;
  EXPECT_EQ((long)b.size(), Decode(b, kMax, &f));
}

TEST(FramePartial, MalformedHeaderIsAnErrorEvenBeforeThePayloadArrives) {
  svc__frame in = Frame(SVC__FRAME_REQUEST, 1, 0, 4, 100);
  std::vector<uint8_t> h = Header(in);
  h[0] ^= 0xFF;
  svc__frame f;
  EXPECT_EQ(SVC_EPROTO, Decode(h, kMax, &f));
}

// ---- malformed headers ----

struct Bad {
  const char *what;
  std::vector<uint8_t> bytes;
};

std::vector<Bad> BadHeaders() {
  std::vector<Bad> v;
  auto base = [] { return Header(Frame(SVC__FRAME_REQUEST, 1, 0, 4, 10)); };
  for (int i = 0; i < 4; i++) {
    std::vector<uint8_t> b = base();
    b[i] ^= 0x20;
    v.push_back({"magic byte flipped", b});
  }
  {
    std::vector<uint8_t> b = base();
    Put32(b.data(), 0x53564331u); // "1CVS": magic in the wrong byte order
    v.push_back({"big-endian magic", b});
  }
  for (uint8_t ver : {0, 2, 255}) {
    std::vector<uint8_t> b = base();
    b[4] = ver;
    v.push_back({"version", b});
  }
  for (uint8_t t : {0, 4, 5, 128, 255}) {
    std::vector<uint8_t> b = base();
    b[5] = t;
    v.push_back({"unknown type", b});
  }
  for (uint8_t fl : {1, 2, 0x80, 0xFF}) {
    std::vector<uint8_t> b = base();
    b[6] = fl;
    v.push_back({"flags set", b});
  }
  for (uint8_t r : {1, 0xFF}) {
    std::vector<uint8_t> b = base();
    b[7] = r;
    v.push_back({"reserved byte set", b});
  }
  v.push_back({"request without method",
               Header(Frame(SVC__FRAME_REQUEST, 1, 0, 0, 10))});
  v.push_back({"request method 256 bytes",
               Header(Frame(SVC__FRAME_REQUEST, 1, 0, SVC_METHOD_MAX + 1, 0))});
  v.push_back({"request method 4 GiB",
               Header(Frame(SVC__FRAME_REQUEST, 1, 0, 0xFFFFFFFFu, 0))});
  v.push_back(
      {"request with status", Header(Frame(SVC__FRAME_REQUEST, 1, 5, 4, 0))});
  v.push_back({"request with negative status",
               Header(Frame(SVC__FRAME_REQUEST, 1, -1, 4, 0))});
  v.push_back(
      {"reply with method", Header(Frame(SVC__FRAME_REPLY, 1, 0, 1, 0))});
  v.push_back(
      {"goaway with payload", Header(Frame(SVC__FRAME_GOAWAY, 1, 0, 0, 1))});
  v.push_back(
      {"goaway with method", Header(Frame(SVC__FRAME_GOAWAY, 1, 0, 3, 0))});
  v.push_back({"payload max+1",
               Header(Frame(SVC__FRAME_REQUEST, 1, 0, 4, (uint32_t)kMax + 1))});
  v.push_back({"payload 4 GiB",
               Header(Frame(SVC__FRAME_REQUEST, 1, 0, 4, 0xFFFFFFFFu))});
  v.push_back({"reply payload 4 GiB",
               Header(Frame(SVC__FRAME_REPLY, 1, 0, 0, 0xFFFFFFFFu))});
  v.push_back({"all zero", std::vector<uint8_t>(SVC__FRAME_HDR, 0)});
  v.push_back({"all 0xFF", std::vector<uint8_t>(SVC__FRAME_HDR, 0xFF)});
  std::string http = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  v.push_back({"http request", std::vector<uint8_t>(http.begin(), http.end())});
  return v;
}

TEST(FrameMalformed, EachIsEproto) {
  for (const Bad &b : BadHeaders()) {
    svc__frame f;
    EXPECT_EQ(SVC_EPROTO, DecodeHeader(b.bytes, kMax, &f)) << b.what;
    EXPECT_EQ(SVC_EPROTO, Decode(b.bytes, kMax, &f)) << b.what;
    // Even with the claimed bytes present after the header.
    std::vector<uint8_t> more = b.bytes;
    more.resize(more.size() + 1024, 0x41);
    EXPECT_EQ(SVC_EPROTO, Decode(more, kMax, &f)) << b.what;
  }
}

// ---- limits ----

TEST(FrameLimits, PayloadAtMaxAcceptedAboveRejected) {
  for (size_t max : {(size_t)0, (size_t)1, (size_t)4096, kMax}) {
    svc__frame f;
    EXPECT_EQ(0, DecodeHeader(
                     Header(Frame(SVC__FRAME_REQUEST, 1, 0, 1, (uint32_t)max)),
                     max, &f))
        << max;
    EXPECT_EQ(SVC_EPROTO, DecodeHeader(Header(Frame(SVC__FRAME_REQUEST, 1, 0, 1,
                                                    (uint32_t)max + 1)),
                                       max, &f))
        << max;
    EXPECT_EQ(SVC_EPROTO, DecodeHeader(Header(Frame(SVC__FRAME_REPLY, 1, 0, 0,
                                                    (uint32_t)max + 1)),
                                       max, &f))
        << max;
  }
}

TEST(FrameLimits, MethodAtMaxAccepted) {
  svc__frame f;
  EXPECT_EQ(0, DecodeHeader(
                   Header(Frame(SVC__FRAME_REQUEST, 1, 0, SVC_METHOD_MAX, 0)),
                   0, &f));
}

TEST(FrameLimits, HugeMaxDoesNotOverflowTotal) {
  // With a max above 4 GiB every u32 length passes the limit check; the total
  // must still be computed without wrapping and "need more" returned.
  std::vector<uint8_t> h =
      Header(Frame(SVC__FRAME_REQUEST, 1, 0, SVC_METHOD_MAX, 0xFFFFFFFFu));
  svc__frame f;
  EXPECT_EQ(0, Decode(h, SIZE_MAX, &f));
}

// ---- properties ----

TEST(FrameProperty, RandomValidHeadersRoundTrip) {
  const uint32_t seed = 0x5eed0001u;
  std::mt19937 rng(seed);
  for (int i = 0; i < 20000; i++) {
    SCOPED_TRACE(::testing::Message() << "seed " << seed << " iteration " << i);
    uint8_t type = (uint8_t)(1 + rng() % 3);
    uint32_t ml = 0, pl = 0;
    int32_t st = 0;
    if (type == SVC__FRAME_REQUEST) {
      ml = 1 + rng() % SVC_METHOD_MAX;
      pl = rng() % (uint32_t)(kMax + 1);
    } else if (type == SVC__FRAME_REPLY) {
      st = (int32_t)rng();
      pl = rng() % (uint32_t)(kMax + 1);
    }
    svc__frame in = Frame(type, (uint32_t)rng(), st, ml, pl), out;
    std::vector<uint8_t> h = Header(in);
    ASSERT_EQ(0, svc__frame_decode_header(h.data(), h.size(), kMax, &out));
    ASSERT_EQ(out.type, in.type);
    ASSERT_EQ(out.call_id, in.call_id);
    ASSERT_EQ(out.status, in.status);
    ASSERT_EQ(out.method_len, in.method_len);
    ASSERT_EQ(out.payload_len, in.payload_len);
    // Re-encoding what was decoded gives the same bytes.
    std::vector<uint8_t> h2 = Header(out);
    ASSERT_EQ(h, h2);
  }
}

TEST(FrameProperty, RandomBytesNeverMisreadOrOverread) {
  const uint32_t seed = 0x5eed0002u;
  std::mt19937 rng(seed);
  svc__frame valid = Frame(SVC__FRAME_REQUEST, 1, 0, 4, 16);
  std::vector<uint8_t> good =
      Encode(SVC__FRAME_REQUEST, 1, 0, "echo", std::vector<uint8_t>(16, 7));
  (void)valid;
  for (int i = 0; i < 5000; i++) {
    SCOPED_TRACE(::testing::Message() << "seed " << seed << " iteration " << i);
    std::vector<uint8_t> b;
    if (i % 2) { // pure noise
      b.resize(rng() % 64);
      for (auto &c : b)
        c = (uint8_t)rng();
    } else { // a valid frame with a few bytes mutated and maybe truncated
      b = good;
      int flips = 1 + (int)(rng() % 3);
      for (int k = 0; k < flips; k++)
        b[rng() % b.size()] = (uint8_t)rng();
      b.resize(rng() % (b.size() + 1));
    }
    svc__frame f;
    size_t max = (rng() % 2) ? 64 : kMax;
    long n = Decode(b, max, &f);
    ASSERT_TRUE(n == 0 || n == SVC_EPROTO || n > 0) << n;
    if (n > 0) {
      ASSERT_LE((size_t)n, b.size());
      ASSERT_GE(f.type, 1);
      ASSERT_LE(f.type, 3);
      ASSERT_EQ(f.flags, 0);
      ASSERT_LE(f.payload_len, max);
      ASSERT_LE(f.method_len, (uint32_t)SVC_METHOD_MAX);
      ASSERT_EQ((size_t)n, svc__frame_size(f.method_len, f.payload_len));
      // The header decoder agrees with the frame decoder.
      svc__frame g;
      ASSERT_EQ(0, DecodeHeader(b, max, &g));
    }
  }
}

TEST(FrameProperty, SplitAnywhereGivesSameResult) {
  // A stream reader gets bytes in arbitrary chunks: decoding the first k
  // bytes must say "need more" until the frame is whole, for every k.
  const uint32_t seed = 0x5eed0003u;
  std::mt19937 rng(seed);
  for (int i = 0; i < 300; i++) {
    SCOPED_TRACE(::testing::Message() << "seed " << seed << " iteration " << i);
    std::string method(1 + rng() % 20, 'm');
    std::vector<uint8_t> payload(rng() % 200);
    for (auto &c : payload)
      c = (uint8_t)rng();
    std::vector<uint8_t> b =
        Encode(SVC__FRAME_REQUEST, (uint32_t)rng(), 0, method, payload);
    for (size_t k = 0; k <= b.size(); k++) {
      svc__frame f;
      long n = svc__frame_decode(b.data(), k, kMax, &f);
      if (k < b.size()) {
        ASSERT_EQ(0, n) << k;
      } else {
        ASSERT_EQ((long)b.size(), n);
        if (!payload.empty()) {
          ASSERT_EQ(0, memcmp(f.payload, payload.data(), payload.size()));
        }
      }
    }
  }
}

// Regression: a server connection's input buffer is NULL before its first
// read; decoding zero bytes there must say "need more" without touching it
// (UBSan caught memcmp(NULL, ..., 0) in the early-garbage check).
TEST(FrameDecode, EmptyNullBufferNeedsMore) {
  svc__frame f;
  EXPECT_EQ(1, svc__frame_decode_header(nullptr, 0, 1 << 20, &f));
  EXPECT_EQ(0, svc__frame_decode(nullptr, 0, 1 << 20, &f));
}

// Garbage is refused from its first differing byte, not after 24 bytes.
TEST(FrameDecode, GarbageRefusedBeforeWholeHeader) {
  svc__frame f;
  const uint8_t junk[1] = {0};
  EXPECT_EQ(SVC_EPROTO, svc__frame_decode(junk, 1, 1 << 20, &f));
  const uint8_t good[3] = {'S', 'V', 'C'};
  EXPECT_EQ(0, svc__frame_decode(good, 3, 1 << 20, &f));
}

} // namespace

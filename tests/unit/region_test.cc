// region_test.cc — the shm:// connection region (libsvc/src/region.c):
// creation (memfd, seals, one page), attach checks on the fd the peer hands
// over, growth in powers of two, the peer growing the file under us, and
// validation of every header and length read from the region.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <cstring>
#include <random>
#include <string>

#include "c_atomic_compat.h" // before region.h

extern "C" {
#include "region.h"
#include "svc.h"
}

namespace {

size_t Page() { return (size_t)sysconf(_SC_PAGESIZE); }

size_t FileSize(int fd) {
  struct stat st;
  EXPECT_EQ(0, fstat(fd, &st));
  return (size_t)st.st_size;
}

std::string FdTarget(int fd) {
  char path[64], buf[256];
  snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(path, buf, sizeof buf - 1);
  if (n < 0)
    return "";
  buf[n] = 0;
  return buf;
}

constexpr size_t kMax = 1 << 20;

// A client region plus a server attached to a dup of its fd, as after the
// SCM_RIGHTS hand-over.
class RegionPair : public ::testing::Test {
protected:
  void SetUp() override {
    ASSERT_EQ(0, svc__region_create(&client_, kMax));
    client_ok_ = true;
    int fd = dup(client_.fd);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(0, svc__region_attach(&server_, fd, kMax));
    server_ok_ = true;
  }
  void TearDown() override {
    if (server_ok_)
      svc__region_fini(&server_);
    if (client_ok_)
      svc__region_fini(&client_);
  }
  // Writes a request frame at the data offset from the client side.
  size_t PostRequest(const char *method, const void *p, size_t len) {
    size_t ml = strlen(method);
    size_t off = SVC__REGION_DATA;
    EXPECT_EQ(0, svc__region_ensure(&client_, off + svc__frame_size(ml, len)));
    svc__frame f;
    memset(&f, 0, sizeof f);
    f.type = SVC__FRAME_REQUEST;
    f.call_id = 7;
    f.method_len = (uint32_t)ml;
    f.payload_len = (uint32_t)len;
    svc__region_write_header(&client_, off, &f);
    memcpy(client_.base + off + SVC__FRAME_HDR, method, ml);
    if (len)
      memcpy(client_.base + off + SVC__FRAME_HDR + ml, p, len);
    return off;
  }
  svc__region client_{}, server_{};
  bool client_ok_ = false, server_ok_ = false;
};

// ---- create ----

TEST(RegionCreate, OnePageSealedMemfdWithHeader) {
  svc__region r;
  ASSERT_EQ(0, svc__region_create(&r, kMax));
  EXPECT_GE(r.fd, 0);
  EXPECT_EQ(FileSize(r.fd), Page());
  EXPECT_EQ(r.mapped, Page());
  EXPECT_GE(r.reserved, svc__region_max_size(kMax));
  int seals = fcntl(r.fd, F_GET_SEALS);
  ASSERT_GE(seals, 0);
  EXPECT_TRUE(seals & F_SEAL_SHRINK);
  EXPECT_FALSE(seals & F_SEAL_GROW) << "the region must be able to grow";
  EXPECT_FALSE(seals & F_SEAL_WRITE);
  EXPECT_TRUE(fcntl(r.fd, F_GETFD) & FD_CLOEXEC);
  // A memfd, not a file in /dev/shm.
  std::string t = FdTarget(r.fd);
  EXPECT_EQ(t.rfind("/memfd:", 0), 0u) << t;
  svc__region_hdr *h = svc__region_hdr_of(&r);
  EXPECT_EQ(h->magic, SVC__REGION_MAGIC);
  EXPECT_EQ(h->version, (uint32_t)SVC__REGION_VERSION);
  EXPECT_EQ(h->max_payload, kMax);
  EXPECT_EQ(atomic_load(svc__region_seq(&r, SVC__REGION_DATA)), 0u);
  EXPECT_EQ(atomic_load(&h->taken_seq), 0u);
  svc__region_fini(&r);
}

TEST(RegionCreate, CannotBeShrunk) {
  svc__region r;
  ASSERT_EQ(0, svc__region_create(&r, kMax));
  EXPECT_NE(0, ftruncate(r.fd, 0));
  EXPECT_EQ(errno, EPERM);
  EXPECT_EQ(FileSize(r.fd), Page());
  svc__region_fini(&r);
}

TEST(RegionCreate, HeaderLayoutSeparatesWriters) {
  // Each side writes only its own cache lines, so a spinning reader never
  // contends with its own writes; the once-written line 0 is shared by none.
  auto line = [](size_t off) { return off / SVC__CACHELINE; };
  size_t client = line(offsetof(svc__region_hdr, client_sleeping));
  EXPECT_NE(client, 0u);
  for (size_t off : {offsetof(svc__region_hdr, server_sleeping),
                     offsetof(svc__region_hdr, taken_seq),
                     offsetof(svc__region_hdr, closing)}) {
    EXPECT_NE(line(off), client) << "server field at " << off;
    EXPECT_NE(line(off), 0u) << "server field at " << off;
  }
  EXPECT_EQ(line(offsetof(svc__region_hdr, max_payload)), 0u);
  EXPECT_EQ(sizeof(svc__region_hdr) % SVC__CACHELINE, 0u);
  EXPECT_EQ(SVC__REGION_DATA % SVC__CACHELINE, 0u);
  // A slot's sequence word shares its cache line with the frame header.
  EXPECT_EQ(line(SVC__REGION_DATA), line(SVC__REGION_REQ + SVC__FRAME_HDR - 1));
}

TEST(RegionCreate, MaxSizeHoldsRequestAndReplyAtTheLimit) {
  for (size_t max :
       {(size_t)0, (size_t)1, (size_t)4096, kMax, SVC_DEFAULT_MAX_MSG}) {
    size_t req = svc__frame_size(SVC_METHOD_MAX, max);
    size_t reply_end =
        svc__region_reply_slot(req) + SVC__SLOT_HDR + svc__frame_size(0, max);
    size_t m = svc__region_max_size(max);
    EXPECT_GE(m, reply_end) << max;
    EXPECT_EQ(m & (m - 1), 0u) << "power of two: " << m;
    EXPECT_EQ(m % Page(), 0u);
  }
}

TEST(RegionCreate, ReplySlotIsAlignedAfterTheRequest) {
  for (size_t req : {(size_t)24, (size_t)25, (size_t)64, (size_t)1000}) {
    size_t off = svc__region_reply_slot(req);
    EXPECT_GE(off, SVC__REGION_REQ + req);
    EXPECT_LT(off, SVC__REGION_REQ + req + SVC__CACHELINE);
    EXPECT_EQ(off % SVC__CACHELINE, 0u);
  }
}

// ---- growth ----

TEST(RegionGrow, PowersOfTwoOfThePage) {
  svc__region r;
  ASSERT_EQ(0, svc__region_create(&r, kMax));
  uint8_t *base = r.base;
  EXPECT_EQ(0, svc__region_ensure(&r, 10)); // fits already
  EXPECT_EQ(FileSize(r.fd), Page());
  EXPECT_EQ(0, svc__region_ensure(&r, Page() + 1));
  EXPECT_EQ(FileSize(r.fd), 2 * Page());
  EXPECT_EQ(0, svc__region_ensure(&r, 3 * Page()));
  EXPECT_EQ(FileSize(r.fd), 4 * Page());
  EXPECT_EQ(0, svc__region_ensure(&r, 100000));
  EXPECT_EQ(FileSize(r.fd), (size_t)131072);
  EXPECT_EQ(r.mapped, (size_t)131072);
  EXPECT_EQ(r.base, base) << "growth must never move the mapping";
  // The whole mapped range is usable and the header survived.
  memset(r.base + SVC__REGION_DATA, 0xAB, r.mapped - SVC__REGION_DATA);
  EXPECT_EQ(svc__region_hdr_of(&r)->magic, SVC__REGION_MAGIC);
  svc__region_fini(&r);
}

TEST(RegionGrow, UpToTheMaximumThenTooBig) {
  const size_t max = 64 << 10;
  svc__region r;
  ASSERT_EQ(0, svc__region_create(&r, max));
  size_t top = svc__region_max_size(max);
  EXPECT_EQ(0, svc__region_ensure(&r, top));
  EXPECT_EQ(FileSize(r.fd), top);
  EXPECT_EQ(SVC_ETOOBIG, svc__region_ensure(&r, top + 1));
  EXPECT_EQ(SVC_ETOOBIG, svc__region_ensure(&r, SIZE_MAX));
  // Still usable after the refusal.
  EXPECT_EQ(0, svc__region_ensure(&r, top));
  svc__region_fini(&r);
}

TEST(RegionGrow, MemoryIsReservedNotSparse) {
  // fallocate at growth: the blocks exist before anybody touches them, so
  // running out of memory is SVC_ENOMEM at ensure time, never SIGBUS later.
  svc__region r;
  ASSERT_EQ(0, svc__region_create(&r, kMax));
  ASSERT_EQ(0, svc__region_ensure(&r, 512 << 10));
  struct stat st;
  ASSERT_EQ(0, fstat(r.fd, &st));
  EXPECT_GE((size_t)st.st_blocks * 512, (size_t)(512 << 10));
  svc__region_fini(&r);
}

// ---- attach ----

TEST_F(RegionPair, SharesMemoryBothWays) {
  EXPECT_EQ(server_.mapped, Page());
  EXPECT_EQ(server_.max_payload, kMax);
  client_.base[SVC__REGION_DATA] = 0x5A;
  EXPECT_EQ(server_.base[SVC__REGION_DATA], 0x5A);
  server_.base[SVC__REGION_DATA + 1] = 0xA5;
  EXPECT_EQ(client_.base[SVC__REGION_DATA + 1], 0xA5);
}

TEST_F(RegionPair, ServerUsesTheSmallerLimit) {
  svc__region small;
  ASSERT_EQ(0, svc__region_create(&small, 1000));
  svc__region srv;
  ASSERT_EQ(0, svc__region_attach(&srv, dup(small.fd), kMax));
  EXPECT_EQ(srv.max_payload, 1000u);
  svc__region_fini(&srv);
  svc__region_fini(&small);
}

TEST_F(RegionPair, ReadsARequestFrame) {
  size_t off = PostRequest("echo", "hello", 5);
  svc__frame f;
  ASSERT_EQ(0, svc__region_read_frame(&server_, off, SVC__FRAME_REQUEST, &f));
  EXPECT_EQ(f.call_id, 7u);
  ASSERT_EQ(f.method_len, 4u);
  ASSERT_EQ(f.payload_len, 5u);
  EXPECT_EQ(0, memcmp(f.method, "echo", 4));
  EXPECT_EQ(0, memcmp(f.payload, "hello", 5));
}

TEST_F(RegionPair, PeerGrowthIsMappedOnRead) {
  std::string big(300000, 'x');
  for (size_t i = 0; i < big.size(); i++)
    big[i] = (char)('a' + i % 26);
  size_t off = PostRequest("checksum", big.data(), big.size());
  EXPECT_EQ(server_.mapped, Page()) << "server has not looked yet";
  svc__frame f;
  ASSERT_EQ(0, svc__region_read_frame(&server_, off, SVC__FRAME_REQUEST, &f));
  EXPECT_GE(server_.mapped, off + svc__frame_size(8, big.size()));
  ASSERT_EQ(f.payload_len, big.size());
  EXPECT_EQ(0, memcmp(f.payload, big.data(), big.size()));
}

TEST_F(RegionPair, ServerWritesReplyClientReads) {
  size_t off = PostRequest("echo", "hi", 2);
  size_t roff = svc__region_reply_slot(svc__frame_size(4, 2)) + SVC__SLOT_HDR;
  ASSERT_EQ(0, svc__region_ensure(&server_, roff + svc__frame_size(0, 3)));
  svc__frame r;
  memset(&r, 0, sizeof r);
  r.type = SVC__FRAME_REPLY;
  r.call_id = 7;
  r.status = 42;
  r.payload_len = 3;
  svc__region_write_header(&server_, roff, &r);
  memcpy(server_.base + roff + SVC__FRAME_HDR, "abc", 3);
  svc__frame f;
  ASSERT_EQ(0, svc__region_read_frame(&client_, roff, SVC__FRAME_REPLY, &f));
  EXPECT_EQ(f.status, 42);
  EXPECT_EQ(0, memcmp(f.payload, "abc", 3));
  (void)off;
}

// ---- attach refusals ----

int Memfd(size_t size, unsigned seals, bool header) {
  int fd = memfd_create("t", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0)
    return fd;
  if (size && ftruncate(fd, (off_t)size) != 0)
    abort();
  if (header && size >= sizeof(svc__region_hdr)) {
    svc__region_hdr h;
    memset(&h, 0, sizeof h);
    h.magic = SVC__REGION_MAGIC;
    h.version = SVC__REGION_VERSION;
    h.max_payload = kMax;
    if (pwrite(fd, &h, sizeof h, 0) != (ssize_t)sizeof h)
      abort();
  }
  if (seals)
    fcntl(fd, F_ADD_SEALS, seals);
  return fd;
}

TEST(RegionAttach, WellFormedMemfdAccepted) {
  // The control for the refusals below.
  svc__region r;
  ASSERT_EQ(0,
            svc__region_attach(&r, Memfd(Page(), F_SEAL_SHRINK, true), kMax));
  svc__region_fini(&r);
}

TEST(RegionAttach, UnsealedMemfdRefused) {
  svc__region r;
  EXPECT_EQ(SVC_EPROTO, svc__region_attach(&r, Memfd(Page(), 0, true), kMax));
}

TEST(RegionAttach, GrowSealOnlyRefused) {
  svc__region r;
  EXPECT_EQ(SVC_EPROTO,
            svc__region_attach(&r, Memfd(Page(), F_SEAL_GROW, true), kMax));
}

TEST(RegionAttach, WriteSealedRefused) {
  svc__region r;
  EXPECT_EQ(SVC_EPROTO,
            svc__region_attach(
                &r, Memfd(Page(), F_SEAL_SHRINK | F_SEAL_WRITE, true), kMax));
}

// Regressions found by fuzz_shm_header: a region we could not grow (every
// larger reply would fail) or write (mapping fails) is refused up front.
TEST(RegionAttach, GrowOrFutureWriteSealRefused) {
  svc__region r;
  EXPECT_EQ(SVC_EPROTO,
            svc__region_attach(
                &r, Memfd(Page(), F_SEAL_SHRINK | F_SEAL_GROW, true), kMax));
  EXPECT_EQ(
      SVC_EPROTO,
      svc__region_attach(
          &r, Memfd(Page(), F_SEAL_SHRINK | F_SEAL_FUTURE_WRITE, true), kMax));
}

TEST(RegionAttach, NotAMemfdRefused) {
  int p[2];
  ASSERT_EQ(0, pipe(p));
  close(p[1]);
  svc__region r;
  EXPECT_EQ(SVC_EPROTO, svc__region_attach(&r, p[0], kMax));
  // Ownership passed in even on failure: the fd is closed.
  EXPECT_EQ(-1, fcntl(p[0], F_GETFD));
}

TEST(RegionAttach, RegularFileRefused) {
  char tmpl[] = "/tmp/svc-region-XXXXXX";
  int fd = mkstemp(tmpl);
  ASSERT_GE(fd, 0);
  unlink(tmpl);
  ASSERT_EQ(0, ftruncate(fd, (off_t)Page()));
  svc__region r;
  EXPECT_EQ(SVC_EPROTO, svc__region_attach(&r, fd, kMax));
}

TEST(RegionAttach, BadSizesRefused) {
  svc__region r;
  EXPECT_EQ(SVC_EPROTO,
            svc__region_attach(&r, Memfd(0, F_SEAL_SHRINK, false), kMax))
      << "empty";
  EXPECT_EQ(SVC_EPROTO,
            svc__region_attach(&r, Memfd(100, F_SEAL_SHRINK, true), kMax))
      << "smaller than a page";
  EXPECT_EQ(SVC_EPROTO, svc__region_attach(
                            &r, Memfd(Page() + 100, F_SEAL_SHRINK, true), kMax))
      << "not page-aligned";
  EXPECT_EQ(
      SVC_EPROTO,
      svc__region_attach(
          &r, Memfd(2 * svc__region_max_size(4096), F_SEAL_SHRINK, true), 4096))
      << "larger than the server's limit allows";
}

TEST(RegionAttach, CorruptedHeaderRefused) {
  for (int field = 0; field < 3; field++) {
    int fd = memfd_create("t", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(0, ftruncate(fd, (off_t)Page()));
    svc__region_hdr h;
    memset(&h, 0, sizeof h);
    h.magic = field == 0 ? 0x12345678u : SVC__REGION_MAGIC;
    h.version = field == 1 ? SVC__REGION_VERSION + 1 : SVC__REGION_VERSION;
    if (field == 2) { // all zero
      h.magic = 0;
      h.version = 0;
    }
    ASSERT_EQ((ssize_t)sizeof h, pwrite(fd, &h, sizeof h, 0));
    ASSERT_EQ(0, fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK));
    svc__region r;
    EXPECT_EQ(SVC_EPROTO, svc__region_attach(&r, fd, kMax)) << field;
  }
}

TEST(RegionAttach, DoesNotLeakFdsOnRefusal) {
  auto count = [] {
    int n = 0;
    for (int fd = 0; fd < 4096; fd++)
      if (fcntl(fd, F_GETFD) != -1)
        n++;
    return n;
  };
  int before = count();
  for (int i = 0; i < 50; i++) {
    svc__region r;
    svc__region_attach(&r, Memfd(Page(), 0, true), kMax);
    svc__region_attach(&r, Memfd(100, F_SEAL_SHRINK, true), kMax);
  }
  EXPECT_EQ(before, count());
}

// ---- validation of frames read from the region ----

TEST_F(RegionPair, WrongTypeRefused) {
  size_t off = PostRequest("echo", "x", 1);
  svc__frame f;
  EXPECT_EQ(SVC_EPROTO,
            svc__region_read_frame(&server_, off, SVC__FRAME_REPLY, &f));
}

TEST_F(RegionPair, GarbageHeaderRefused) {
  size_t off = PostRequest("echo", "x", 1);
  client_.base[off] ^= 0xFF; // magic
  svc__frame f;
  EXPECT_EQ(SVC_EPROTO,
            svc__region_read_frame(&server_, off, SVC__FRAME_REQUEST, &f));
}

TEST_F(RegionPair, PayloadLengthBeyondTheFileRefused) {
  // The header claims more bytes than the file holds: the peer lied.
  size_t off = PostRequest("echo", "x", 1);
  svc__frame h;
  memset(&h, 0, sizeof h);
  h.type = SVC__FRAME_REQUEST;
  h.method_len = 4;
  h.payload_len = 500000; // within kMax, beyond the one-page file
  svc__region_write_header(&client_, off, &h);
  svc__frame f;
  EXPECT_EQ(SVC_EPROTO,
            svc__region_read_frame(&server_, off, SVC__FRAME_REQUEST, &f));
}

TEST_F(RegionPair, PayloadLengthOverTheLimitRefused) {
  size_t off = PostRequest("echo", "x", 1);
  for (uint32_t len : {(uint32_t)kMax + 1, 0x7fffffffu, 0xffffffffu}) {
    svc__frame h;
    memset(&h, 0, sizeof h);
    h.type = SVC__FRAME_REQUEST;
    h.method_len = 4;
    h.payload_len = len;
    svc__region_write_header(&client_, off, &h);
    svc__frame f;
    EXPECT_EQ(SVC_EPROTO,
              svc__region_read_frame(&server_, off, SVC__FRAME_REQUEST, &f))
        << len;
  }
}

TEST_F(RegionPair, OffsetsOutsideTheRegionRefused) {
  svc__frame f;
  for (size_t off :
       {(size_t)0, (size_t)8, SVC__REGION_DATA - 1, server_.reserved,
        server_.reserved - 1, server_.reserved - SVC__FRAME_HDR + 1, SIZE_MAX,
        SIZE_MAX - SVC__FRAME_HDR + 1}) {
    EXPECT_EQ(SVC_EPROTO,
              svc__region_read_frame(&server_, off, SVC__FRAME_REQUEST, &f))
        << off;
  }
}

TEST_F(RegionPair, SyncChecksTheFile) {
  EXPECT_EQ(0, svc__region_sync(&server_, Page()));
  EXPECT_EQ(SVC_EPROTO, svc__region_sync(&server_, Page() + 1));
  EXPECT_EQ(SVC_EPROTO, svc__region_sync(&server_, SIZE_MAX));
  ASSERT_EQ(0, svc__region_ensure(&client_, 8 * Page()));
  EXPECT_EQ(0, svc__region_sync(&server_, 5 * Page()));
  EXPECT_GE(server_.mapped, 5 * Page());
}

TEST_F(RegionPair, RandomCorruptionNeverEscapesTheRegion) {
  // The client scribbles random bytes over the frame header; every read
  // either fails with SVC_EPROTO or returns a frame that lies inside the
  // server's mapping and within its limit.
  const uint32_t seed = 0x5eed0201u;
  std::mt19937 rng(seed);
  size_t off = PostRequest("echo", "payload", 7);
  for (int i = 0; i < 5000; i++) {
    SCOPED_TRACE(::testing::Message() << "seed " << seed << " iteration " << i);
    svc__frame h;
    memset(&h, 0, sizeof h);
    h.type = (uint8_t)(rng() % 4);
    h.method_len = rng() % 2 ? rng() % 300 : (uint32_t)rng();
    h.payload_len = rng() % 2 ? rng() % 8192 : (uint32_t)rng();
    h.status = (int32_t)(rng() % 3) - 1;
    svc__region_write_header(&client_, off, &h);
    if (rng() % 4 == 0)
      client_.base[off + rng() % SVC__FRAME_HDR] = (uint8_t)rng();
    svc__frame f;
    int rc = svc__region_read_frame(&server_, off, SVC__FRAME_REQUEST, &f);
    ASSERT_TRUE(rc == 0 || rc == SVC_EPROTO) << rc;
    if (rc == 0) {
      ASSERT_LE(f.payload_len, server_.max_payload);
      ASSERT_LE(off + svc__frame_size(f.method_len, f.payload_len),
                server_.mapped);
      ASSERT_EQ(f.method, server_.base + off + SVC__FRAME_HDR);
      // Touch every byte: faults if the mapping is short.
      volatile uint8_t sum = 0;
      for (size_t k = 0; k < f.payload_len; k++)
        sum ^= f.payload[k];
      (void)sum;
    }
  }
}

} // namespace

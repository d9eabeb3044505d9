// region_test.cc — the shm:// connection region (libsvc/src/region.c):
// creation (memfd, seals, header and ring), the ring's slot layout, attach
// checks on the fd the peer hands over, lane growth in powers of two, the
// peer growing a lane under us, and validation of every header, "where"
// word and length read from the region.
#include <fcntl.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <climits>
#include <cstddef>
#include <cstring>
#include <random>
#include <string>
#include <thread>

#include "c_atomic_compat.h" // before region.h

extern "C" {
#include "internal.h"
#include "region.h"
#include "svc.h"
}

namespace {

size_t Page() { return (size_t)sysconf(_SC_PAGESIZE); }

size_t PageAlign(size_t n) { return (n + Page() - 1) & ~(Page() - 1); }

// The layout as region.h describes it, computed independently.
size_t RingEnd(uint32_t slots) {
  return PageAlign(SVC__REGION_RING + (size_t)slots * SVC__SLOT_SIZE);
}
size_t LaneSize(size_t max_payload) {
  return PageAlign(svc__frame_size(SVC_METHOD_MAX, max_payload));
}

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

size_t Line(size_t off) { return off / SVC__CACHELINE; }

constexpr size_t kMax = 1 << 20;
constexpr uint32_t kSlots = 8;

// Where a frame was put: its first byte and the "where" word used.
struct Placed {
  size_t half;    // offset of the slot half (request or reply)
  uint8_t *frame; // the frame's first byte
  uint32_t where;
};

// Writes a frame the way transport_shm.c does (shm_send for requests,
// handle_request for replies): inline in the slot half when it fits, else
// at the start of the lane (grown first), then the "where" word, then the
// sequence word. Nothing is validated: tests use it to write bad frames too.
Placed Put(svc__region *r, uint32_t seq, size_t half, int lane,
           const svc__frame &f, const void *method, const void *payload,
           bool publish = true) {
  Placed p;
  p.half = svc__region_slot(r, seq) + half;
  size_t size = svc__frame_size(f.method_len, f.payload_len);
  if (size <= SVC__SLOT_FRAME_MAX) {
    p.frame = r->base + p.half + SVC__SLOT_HDR;
    p.where = SVC__WHERE_INLINE;
  } else {
    EXPECT_EQ(0, svc__region_lane_ensure(r, lane, size));
    p.frame = svc__region_lane(r, lane);
    p.where = SVC__WHERE_LANE;
  }
  svc__frame_encode_header(&f, p.frame);
  if (method && f.method_len)
    memcpy(p.frame + SVC__FRAME_HDR, method, f.method_len);
  if (payload && f.payload_len)
    memcpy(p.frame + SVC__FRAME_HDR + f.method_len, payload, f.payload_len);
  *svc__region_info(r, p.half) = p.where;
  if (publish)
    atomic_store(svc__region_seq(r, p.half), seq);
  return p;
}

svc__frame Request(uint32_t seq, size_t method_len, size_t len) {
  svc__frame f;
  memset(&f, 0, sizeof f);
  f.type = SVC__FRAME_REQUEST;
  f.call_id = seq;
  f.method_len = (uint32_t)method_len;
  f.payload_len = (uint32_t)len;
  return f;
}

svc__frame Reply(uint32_t seq, int32_t status, size_t len) {
  svc__frame f;
  memset(&f, 0, sizeof f);
  f.type = SVC__FRAME_REPLY;
  f.call_id = seq;
  f.status = status;
  f.payload_len = (uint32_t)len;
  return f;
}

// A client region plus a server attached to a dup of its fd, as after the
// SCM_RIGHTS hand-over.
class RegionPair : public ::testing::Test {
protected:
  void SetUp() override {
    ASSERT_EQ(0, svc__region_create(&client_, kMax, kSlots));
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
  // The client posts call seq (inline or through the request lane).
  Placed PostRequest(uint32_t seq, const char *method, const void *p,
                     size_t len) {
    size_t ml = strlen(method);
    return Put(&client_, seq, SVC__SLOT_REQ, SVC__LANE_REQ,
               Request(seq, ml, len), method, p);
  }
  // The server answers call seq (inline or through the reply lane).
  Placed PostReply(uint32_t seq, int32_t status, const void *p, size_t len) {
    return Put(&server_, seq, SVC__SLOT_REP, SVC__LANE_REP,
               Reply(seq, status, len), nullptr, p);
  }
  int ServerRead(uint32_t seq, svc__frame *f) {
    return svc__region_read_frame(
        &server_, svc__region_slot(&server_, seq) + SVC__SLOT_REQ,
        SVC__LANE_REQ, SVC__FRAME_REQUEST, f, NULL);
  }
  int ClientRead(uint32_t seq, svc__frame *f) {
    return svc__region_read_frame(
        &client_, svc__region_slot(&client_, seq) + SVC__SLOT_REP,
        SVC__LANE_REP, SVC__FRAME_REPLY, f, NULL);
  }
  svc__region client_{}, server_{};
  bool client_ok_ = false, server_ok_ = false;
};

// ---- create ----

TEST(RegionCreate, SealedMemfdHoldingHeaderAndRing) {
  svc__region r;
  ASSERT_EQ(0, svc__region_create(&r, kMax, kSlots));
  EXPECT_GE(r.fd, 0);
  EXPECT_EQ(r.slots, kSlots);
  EXPECT_EQ(r.ring_end, RingEnd(kSlots));
  EXPECT_EQ(FileSize(r.fd), r.ring_end) << "header and ring, no lane yet";
  EXPECT_EQ(r.lane_mapped[0], 0u);
  EXPECT_EQ(r.lane_mapped[1], 0u);
  EXPECT_EQ(r.max_payload, kMax);
  EXPECT_EQ(r.reserved, svc__region_max_size(kMax, kSlots));
  int seals = fcntl(r.fd, F_GET_SEALS);
  ASSERT_GE(seals, 0);
  EXPECT_TRUE(seals & F_SEAL_SHRINK);
  EXPECT_TRUE(seals & F_SEAL_SEAL) << "the client cannot be made to add seals";
  EXPECT_FALSE(seals & F_SEAL_GROW) << "the lanes must be able to grow";
  EXPECT_FALSE(seals & F_SEAL_WRITE);
  EXPECT_TRUE(fcntl(r.fd, F_GETFD) & FD_CLOEXEC);
  // A memfd, not a file in /dev/shm.
  std::string t = FdTarget(r.fd);
  EXPECT_EQ(t.rfind("/memfd:", 0), 0u) << t;
  svc__region_hdr *h = svc__region_hdr_of(&r);
  EXPECT_EQ(h->magic, SVC__REGION_MAGIC);
  EXPECT_EQ(h->version, (uint32_t)SVC__REGION_VERSION);
  EXPECT_EQ(h->max_payload, kMax);
  EXPECT_EQ(h->ring_slots, kSlots);
  EXPECT_EQ(atomic_load(&h->taken_seq), 0u);
  EXPECT_EQ(atomic_load(&h->reply_lane_busy), 0u);
  EXPECT_EQ(atomic_load(&h->closing), 0u);
  // No request posted; no reply word equals the first call number its slot
  // will carry (call i uses slot i % slots; the first call is 1).
  for (uint32_t i = 0; i < kSlots; i++) {
    size_t slot = svc__region_slot(&r, i);
    EXPECT_EQ(atomic_load(svc__region_seq(&r, slot + SVC__SLOT_REQ)), 0u) << i;
    uint32_t rep = atomic_load(svc__region_seq(&r, slot + SVC__SLOT_REP));
    EXPECT_EQ(rep, UINT32_MAX) << i;
    uint32_t first = i == 0 ? kSlots : i;
    EXPECT_NE(rep, first) << i;
  }
  // The whole ring is mapped and writable.
  memset(r.base + SVC__REGION_RING, 0, r.ring_end - SVC__REGION_RING);
  EXPECT_EQ(h->magic, SVC__REGION_MAGIC);
  svc__region_fini(&r);
}

TEST(RegionCreate, CannotBeShrunk) {
  svc__region r;
  ASSERT_EQ(0, svc__region_create(&r, kMax, kSlots));
  EXPECT_NE(0, ftruncate(r.fd, 0));
  EXPECT_EQ(errno, EPERM);
  EXPECT_EQ(FileSize(r.fd), r.ring_end);
  svc__region_fini(&r);
}

TEST(RegionCreate, HeaderLayoutSeparatesWriters) {
  // Each flag has a cache line of its own, so a spinning reader never
  // contends with unrelated writes; the once-written line 0 is shared by
  // none of them.
  EXPECT_EQ(sizeof(svc__region_hdr), 5u * SVC__CACHELINE);
  EXPECT_EQ(SVC__REGION_RING, sizeof(svc__region_hdr));
  EXPECT_EQ(SVC__REGION_RING % SVC__CACHELINE, 0u);
  for (size_t off :
       {offsetof(svc__region_hdr, magic), offsetof(svc__region_hdr, version),
        offsetof(svc__region_hdr, max_payload),
        offsetof(svc__region_hdr, ring_slots)})
    EXPECT_EQ(Line(off), 0u) << off;
  EXPECT_EQ(Line(offsetof(svc__region_hdr, client_sleeping)), 1u);
  EXPECT_EQ(Line(offsetof(svc__region_hdr, server_sleeping)), 2u);
  EXPECT_EQ(Line(offsetof(svc__region_hdr, closing)), 2u);
  EXPECT_EQ(Line(offsetof(svc__region_hdr, taken_seq)), 3u);
  EXPECT_EQ(Line(offsetof(svc__region_hdr, reply_lane_busy)), 4u);
  // The fields the server copies at attach lie in the first page.
  EXPECT_LE(offsetof(svc__region_hdr, ring_slots) + 4, Page());
}

TEST(RegionRing, SlotGeometry) {
  EXPECT_EQ(SVC__SLOT_FRAME_MAX, 248);
  EXPECT_EQ(SVC__SLOT_HDR + SVC__SLOT_FRAME_MAX, SVC__SLOT_REP);
  EXPECT_EQ(2 * SVC__SLOT_REP, SVC__SLOT_SIZE);
  EXPECT_EQ(SVC__SLOT_SIZE % SVC__CACHELINE, 0);
  // Both halves start a cache line; the sequence word a reader spins on
  // brings it the "where" word and the whole frame header; the request and
  // the reply half never share a line.
  for (size_t half : {(size_t)SVC__SLOT_REQ, (size_t)SVC__SLOT_REP}) {
    EXPECT_EQ(half % SVC__CACHELINE, 0u) << half;
    EXPECT_EQ(Line(half), Line(half + 4 + 3)) << "where word, " << half;
    EXPECT_EQ(Line(half), Line(half + SVC__SLOT_HDR + SVC__FRAME_HDR - 1))
        << "frame header, " << half;
  }
  EXPECT_LT(Line(SVC__SLOT_REQ + SVC__SLOT_HDR + SVC__SLOT_FRAME_MAX - 1),
            Line(SVC__SLOT_REP))
      << "the largest inline request ends before the reply half's line";
}

TEST(RegionRing, SlotOffsets) {
  for (uint32_t slots : {1u, 2u, 8u, 64u, (uint32_t)SVC__RING_MAX}) {
    SCOPED_TRACE(slots);
    svc__region r;
    ASSERT_EQ(0, svc__region_create(&r, 4096, slots));
    EXPECT_EQ(r.ring_end, RingEnd(slots));
    EXPECT_GE(r.ring_end, SVC__REGION_RING + (size_t)slots * SVC__SLOT_SIZE);
    EXPECT_EQ(r.ring_end % Page(), 0u);
    for (uint32_t seq : {0u, 1u, 2u, 3u, 7u, 8u, 9u, 63u, 64u, 65u, 4095u,
                         4096u, 4097u, 0x7fffffffu, 0xfffffffeu, UINT32_MAX}) {
      size_t off = svc__region_slot(&r, seq);
      EXPECT_EQ(off, SVC__REGION_RING + (size_t)(seq % slots) * SVC__SLOT_SIZE)
          << seq;
      EXPECT_EQ(off % SVC__CACHELINE, 0u) << seq;
      EXPECT_LE(off + SVC__SLOT_SIZE, r.ring_end) << seq;
      // Call seq + slots reuses the slot; the calls in between do not.
      EXPECT_EQ(svc__region_slot(&r, seq + slots), off) << seq;
      if (slots > 1) {
        EXPECT_NE(svc__region_slot(&r, seq + 1), off) << seq;
      }
      for (size_t half : {(size_t)SVC__SLOT_REQ, (size_t)SVC__SLOT_REP}) {
        EXPECT_EQ((uint8_t *)svc__region_seq(&r, off + half),
                  r.base + off + half);
        EXPECT_EQ((uint8_t *)svc__region_info(&r, off + half),
                  r.base + off + half + 4);
        EXPECT_EQ(Line(off + half),
                  Line(off + half + SVC__SLOT_HDR + SVC__FRAME_HDR - 1));
      }
      EXPECT_NE(Line(off + SVC__SLOT_REQ), Line(off + SVC__SLOT_REP));
      EXPECT_LT(Line(off + SVC__SLOT_REP - 1), Line(off + SVC__SLOT_REP));
    }
    // The lanes begin after the ring, one lane_size apart.
    EXPECT_EQ(svc__region_lane(&r, SVC__LANE_REQ), r.base + r.ring_end);
    EXPECT_EQ(svc__region_lane(&r, SVC__LANE_REP),
              r.base + r.ring_end + r.lane_size);
    svc__region_fini(&r);
  }
}

TEST(RegionRing, SlotsForAWindow) {
  // One more than the window, as a power of two: the reply handed out keeps
  // its slot while a full window is in flight. At least two: calls made
  // one at a time alternate between two slots.
  EXPECT_EQ(svc__region_slots_for(0), 2u);
  EXPECT_EQ(svc__region_slots_for(1), 2u);
  EXPECT_EQ(svc__region_slots_for(2), 4u);
  EXPECT_EQ(svc__region_slots_for(3), 4u);
  EXPECT_EQ(svc__region_slots_for(5), 8u);
  EXPECT_EQ(svc__region_slots_for(63), 64u);
  EXPECT_EQ(svc__region_slots_for(64), 128u);
  EXPECT_EQ(svc__region_slots_for(4095), 4096u);
  EXPECT_EQ(svc__region_slots_for(SVC__RING_MAX), (uint32_t)SVC__RING_MAX);
  EXPECT_EQ(svc__region_slots_for(INT_MAX), (uint32_t)SVC__RING_MAX);
  for (int w = 1; w <= 5000; w++) {
    uint32_t n = svc__region_slots_for(w);
    ASSERT_EQ(n & (n - 1), 0u) << w;
    ASSERT_LE(n, (uint32_t)SVC__RING_MAX) << w;
    if (w < SVC__RING_MAX) {
      ASSERT_GT(n, (uint32_t)w) << w;
      ASSERT_LE(n / 2, (uint32_t)w) << "the smallest such power: " << w;
    }
  }
}

TEST(RegionCreate, MaxSizeHoldsTheRingAndItsLanesAtTheLimit) {
  for (uint32_t slots : {1u, 2u, 4u, 64u, (uint32_t)SVC__RING_MAX}) {
    // Half the slots, at least one and at most SVC__LANES_MAX per direction.
    uint32_t lanes =
        std::min<uint32_t>(std::max<uint32_t>(slots / 2, 1), SVC__LANES_MAX);
    EXPECT_EQ(lanes, svc__region_lanes_for(slots));
    for (size_t max :
         {(size_t)0, (size_t)1, (size_t)4096, kMax, SVC_DEFAULT_MAX_MSG}) {
      SCOPED_TRACE(::testing::Message() << "slots " << slots << " max " << max);
      size_t m = svc__region_max_size(max, slots);
      EXPECT_EQ(m % Page(), 0u);
      EXPECT_EQ(m, RingEnd(slots) + 2 * lanes * LaneSize(max));
      // Each lane holds the largest frame of either kind.
      EXPECT_GE(LaneSize(max), svc__frame_size(SVC_METHOD_MAX, max));
      svc__region r;
      ASSERT_EQ(0, svc__region_create(&r, max, slots));
      EXPECT_EQ(r.reserved, m);
      EXPECT_EQ(r.lanes, lanes);
      EXPECT_EQ(r.lane_size, LaneSize(max));
      EXPECT_EQ(r.ring_end + 2 * lanes * r.lane_size, r.reserved);
      EXPECT_EQ(svc__region_lane(&r, SVC__LANE_ID(SVC__LANE_REP, lanes - 1)) +
                    r.lane_size,
                r.base + r.reserved)
          << "the last reply lane ends the reservation";
      svc__region_fini(&r);
    }
  }
  // Larger limits never shrink the region.
  EXPECT_LT(svc__region_max_size(4096, 1), svc__region_max_size(kMax, 1));
  EXPECT_LT(svc__region_max_size(kMax, 1), svc__region_max_size(kMax, 4096));
}

// ---- lanes ----

TEST(RegionLane, GrowsInPowersOfTwoOfThePage) {
  svc__region r;
  ASSERT_EQ(0, svc__region_create(&r, kMax, kSlots));
  uint8_t *base = r.base;
  uint8_t *lane = svc__region_lane(&r, SVC__LANE_REQ);
  size_t off = r.ring_end;
  EXPECT_EQ(0, svc__region_lane_ensure(&r, SVC__LANE_REQ, 0));
  EXPECT_EQ(FileSize(r.fd), r.ring_end) << "nothing needed, nothing grown";
  EXPECT_EQ(0, svc__region_lane_ensure(&r, SVC__LANE_REQ, 10));
  EXPECT_EQ(r.lane_mapped[0], Page());
  EXPECT_EQ(FileSize(r.fd), off + Page());
  EXPECT_EQ(0, svc__region_lane_ensure(&r, SVC__LANE_REQ, Page())); // fits
  EXPECT_EQ(FileSize(r.fd), off + Page());
  EXPECT_EQ(0, svc__region_lane_ensure(&r, SVC__LANE_REQ, Page() + 1));
  EXPECT_EQ(r.lane_mapped[0], 2 * Page());
  EXPECT_EQ(FileSize(r.fd), off + 2 * Page());
  EXPECT_EQ(0, svc__region_lane_ensure(&r, SVC__LANE_REQ, 3 * Page()));
  EXPECT_EQ(r.lane_mapped[0], 4 * Page());
  EXPECT_EQ(0, svc__region_lane_ensure(&r, SVC__LANE_REQ, 100000));
  size_t p2 = Page();
  while (p2 < 100000)
    p2 <<= 1;
  EXPECT_EQ(r.lane_mapped[0], p2);
  EXPECT_EQ(FileSize(r.fd), off + p2);
  EXPECT_EQ(r.base, base) << "growth must never move the mapping";
  EXPECT_EQ(svc__region_lane(&r, SVC__LANE_REQ), lane);
  EXPECT_EQ(r.lane_mapped[1], 0u) << "the other lane is untouched";
  // The whole mapped lane is usable; the header and ring survived.
  memset(lane, 0xAB, r.lane_mapped[0]);
  EXPECT_EQ(svc__region_hdr_of(&r)->magic, SVC__REGION_MAGIC);
  EXPECT_EQ(atomic_load(svc__region_seq(&r, svc__region_slot(&r, kSlots - 1) +
                                                SVC__SLOT_REP)),
            UINT32_MAX);
  // The reply lane starts lane_size further on.
  EXPECT_EQ(0, svc__region_lane_ensure(&r, SVC__LANE_REP, 1));
  EXPECT_EQ(r.lane_mapped[1], Page());
  EXPECT_EQ(FileSize(r.fd), off + r.lane_size + Page());
  memset(svc__region_lane(&r, SVC__LANE_REP), 0xCD, Page());
  EXPECT_EQ(lane[r.lane_mapped[0] - 1], 0xAB);
  EXPECT_EQ(r.lane_mapped[0], p2) << "unchanged by the other lane";
  svc__region_fini(&r);
}

TEST(RegionLane, UpToItsSizeThenTooBig) {
  const size_t max = 64 << 10;
  svc__region r;
  ASSERT_EQ(0, svc__region_create(&r, max, kSlots));
  size_t top = r.lane_size;
  EXPECT_EQ(top, LaneSize(max));
  int nlanes = 2 * (int)r.lanes;
  ASSERT_GE(nlanes, 2);
  for (int lane = 0; lane < nlanes; lane++) {
    SCOPED_TRACE(lane);
    EXPECT_EQ(0, svc__region_lane_ensure(&r, lane, top));
    EXPECT_EQ(r.lane_mapped[lane], top) << "capped at the lane, not 2^n";
    EXPECT_EQ(SVC_ETOOBIG, svc__region_lane_ensure(&r, lane, top + 1));
    EXPECT_EQ(SVC_ETOOBIG, svc__region_lane_ensure(&r, lane, SIZE_MAX));
    EXPECT_EQ(r.lane_mapped[lane], top);
    // Still usable after the refusal.
    EXPECT_EQ(0, svc__region_lane_ensure(&r, lane, top));
    memset(svc__region_lane(&r, lane), lane + 1, top);
  }
  EXPECT_EQ(SVC_EINVAL, svc__region_lane_ensure(&r, nlanes, 1));
  EXPECT_EQ(SVC_EINVAL, svc__region_lane_ensure(&r, -1, 1));
  EXPECT_EQ(FileSize(r.fd), r.reserved) << "every lane whole: the maximum";
  EXPECT_EQ(FileSize(r.fd), svc__region_max_size(max, kSlots));
  for (int lane = 0; lane < nlanes; lane++)
    EXPECT_EQ(svc__region_lane(&r, lane)[top - 1], lane + 1)
        << "lanes do not overlap";
  EXPECT_EQ(svc__region_hdr_of(&r)->magic, SVC__REGION_MAGIC);
  svc__region_fini(&r);
}

// Regression (a flaky Prepared.LargeRepliesInFlight/shm: a handler's
// svc_reply_alloc failed with SVC_EPERM): both sides grow the one file,
// each reading its size and then extending it; a side whose ftruncate came
// after the other's larger one asked for a smaller size, which the
// shrink seal refuses. Growth by both sides at once must always succeed.
TEST_F(RegionPair, BothSidesGrowingLanesAtOnceNeverFail) {
  std::atomic<int> failures{0};
  auto grow = [&](svc__region *r, int dir) {
    for (size_t n = 4096; n <= r->lane_size; n *= 2)
      for (uint32_t i = 0; i < r->lanes; i++)
        if (svc__region_lane_ensure(r, SVC__LANE_ID(dir, (int)i), n) != 0)
          failures++;
  };
  std::thread a(grow, &client_, SVC__LANE_REQ);
  std::thread b(grow, &server_, SVC__LANE_REP);
  a.join();
  b.join();
  EXPECT_EQ(0, failures.load());
}

TEST(RegionLane, MemoryIsReservedNotSparse) {
  // fallocate at growth: the blocks exist before anybody touches them, so
  // running out of memory is SVC_ENOMEM at ensure time, never SIGBUS later.
  svc__region r;
  ASSERT_EQ(0, svc__region_create(&r, kMax, kSlots));
  struct stat st;
  ASSERT_EQ(0, fstat(r.fd, &st));
  EXPECT_GE((size_t)st.st_blocks * 512, r.ring_end) << "the ring too";
  ASSERT_EQ(0, svc__region_lane_ensure(&r, SVC__LANE_REQ, 512 << 10));
  ASSERT_EQ(0, fstat(r.fd, &st));
  EXPECT_GE((size_t)st.st_blocks * 512, r.ring_end + (512 << 10));
  // The reply lane lies past a hole of the request lane's unused part:
  // growing it allocates its own bytes.
  ASSERT_EQ(0, svc__region_lane_ensure(&r, SVC__LANE_REP, 256 << 10));
  ASSERT_EQ(0, fstat(r.fd, &st));
  EXPECT_GE((size_t)st.st_blocks * 512, r.ring_end + (768 << 10));
  svc__region_fini(&r);
}

// ---- attach ----

TEST_F(RegionPair, SharesMemoryBothWays) {
  EXPECT_EQ(server_.max_payload, kMax);
  EXPECT_EQ(server_.slots, kSlots);
  EXPECT_EQ(server_.lane_mapped[0], 0u);
  EXPECT_EQ(server_.lane_mapped[1], 0u);
  size_t off = svc__region_slot(&client_, 3);
  client_.base[off + 100] = 0x5A;
  EXPECT_EQ(server_.base[off + 100], 0x5A);
  server_.base[off + 300] = 0xA5;
  EXPECT_EQ(client_.base[off + 300], 0xA5);
  // The last byte of the ring too (it is mapped whole on both sides).
  server_.base[server_.ring_end - 1] = 0x77;
  EXPECT_EQ(client_.base[client_.ring_end - 1], 0x77);
  // Lane bytes, once both sides have mapped them: a reply of 5000 bytes
  // makes the client map that much of the reply lane.
  std::string big(5000 - SVC__FRAME_HDR, 'q');
  PostReply(1, 0, big.data(), big.size());
  svc__frame f;
  ASSERT_EQ(0, ClientRead(1, &f));
  EXPECT_GE(client_.lane_mapped[1], 5000u);
  svc__region_lane(&client_, SVC__LANE_REP)[10] = 0x44;
  EXPECT_EQ(svc__region_lane(&server_, SVC__LANE_REP)[10], 0x44);
  svc__region_lane(&server_, SVC__LANE_REP)[4999] = 0x33;
  EXPECT_EQ(svc__region_lane(&client_, SVC__LANE_REP)[4999], 0x33);
}

TEST(RegionAttach, GeometryIsTheClientsLimitTheSmaller) {
  // The server's limit is smaller: it computes the client's ring and lane
  // offsets (they are the client's layout) but accepts only its own limit.
  svc__region c, s;
  ASSERT_EQ(0, svc__region_create(&c, kMax, 16));
  ASSERT_EQ(0, svc__region_attach(&s, dup(c.fd), 1000));
  EXPECT_EQ(s.max_payload, 1000u);
  EXPECT_EQ(c.max_payload, kMax);
  EXPECT_EQ(s.slots, c.slots);
  EXPECT_EQ(s.ring_end, c.ring_end);
  EXPECT_EQ(s.lane_size, c.lane_size);
  EXPECT_EQ(s.reserved, c.reserved);
  for (int lane : {SVC__LANE_REQ, SVC__LANE_REP})
    EXPECT_EQ(svc__region_lane(&s, lane) - s.base,
              svc__region_lane(&c, lane) - c.base)
        << lane;
  for (uint32_t seq : {1u, 15u, 16u, 17u})
    EXPECT_EQ(svc__region_slot(&s, seq), svc__region_slot(&c, seq)) << seq;
  // A reply lane frame the server writes lands where the client reads it.
  ASSERT_EQ(0, svc__region_lane_ensure(&s, SVC__LANE_REP, 900));
  memset(svc__region_lane(&s, SVC__LANE_REP), 0x42, 900);
  svc__region_fini(&s);
  // Mapping the client's lane now shows the server's bytes.
  ASSERT_EQ(0, svc__region_lane_ensure(&c, SVC__LANE_REP, 900));
  EXPECT_EQ(svc__region_lane(&c, SVC__LANE_REP)[899], 0x42);
  svc__region_fini(&c);
}

TEST(RegionAttach, ServerUsesTheSmallerLimit) {
  svc__region small;
  ASSERT_EQ(0, svc__region_create(&small, 1000, 1));
  svc__region srv;
  ASSERT_EQ(0, svc__region_attach(&srv, dup(small.fd), kMax));
  EXPECT_EQ(srv.max_payload, 1000u);
  EXPECT_EQ(srv.lane_size, small.lane_size);
  svc__region_fini(&srv);
  svc__region_fini(&small);
}

TEST_F(RegionPair, ReadsAnInlineRequest) {
  Placed p = PostRequest(1, "echo", "hello", 5);
  EXPECT_EQ(p.where, (uint32_t)SVC__WHERE_INLINE);
  svc__frame f;
  ASSERT_EQ(0, ServerRead(1, &f));
  EXPECT_EQ(f.type, SVC__FRAME_REQUEST);
  EXPECT_EQ(f.call_id, 1u);
  ASSERT_EQ(f.method_len, 4u);
  ASSERT_EQ(f.payload_len, 5u);
  EXPECT_EQ(f.method, server_.base + p.half + SVC__SLOT_HDR + SVC__FRAME_HDR);
  EXPECT_EQ(0, memcmp(f.method, "echo", 4));
  EXPECT_EQ(0, memcmp(f.payload, "hello", 5));
  EXPECT_EQ(server_.lane_mapped[0], 0u) << "an inline frame maps nothing";
}

TEST_F(RegionPair, EveryCallHasItsSlot) {
  // A window of calls in flight at once, then the ring's next turn.
  for (uint32_t seq = 1; seq <= kSlots; seq++) {
    std::string m = "m" + std::to_string(seq);
    PostRequest(seq, m.c_str(), &seq, sizeof seq);
  }
  for (uint32_t seq = 1; seq <= kSlots; seq++) {
    svc__frame f;
    ASSERT_EQ(0, ServerRead(seq, &f)) << seq;
    EXPECT_EQ(f.call_id, seq);
    std::string m = "m" + std::to_string(seq);
    ASSERT_EQ(f.method_len, m.size());
    EXPECT_EQ(0, memcmp(f.method, m.data(), m.size()));
    uint32_t v;
    ASSERT_EQ(f.payload_len, sizeof v);
    memcpy(&v, f.payload, sizeof v);
    EXPECT_EQ(v, seq);
    PostReply(seq, 0, f.payload, f.payload_len);
  }
  for (uint32_t seq = 1; seq <= kSlots; seq++) {
    svc__frame f;
    ASSERT_EQ(0, ClientRead(seq, &f)) << seq;
    EXPECT_EQ(f.call_id, seq);
    uint32_t v;
    ASSERT_EQ(f.payload_len, sizeof v);
    memcpy(&v, f.payload, sizeof v);
    EXPECT_EQ(v, seq);
  }
  // Wrap-around: call kSlots + 1 reuses the slot of call 1.
  PostRequest(kSlots + 1, "again", "z", 1);
  svc__frame f;
  ASSERT_EQ(0, ServerRead(kSlots + 1, &f));
  EXPECT_EQ(f.call_id, kSlots + 1);
  EXPECT_EQ(atomic_load(svc__region_seq(
                &server_, svc__region_slot(&server_, 1) + SVC__SLOT_REQ)),
            kSlots + 1);
}

TEST_F(RegionPair, InlineFrameUpToTheSlotThenRefused) {
  // The largest inline frame: 248 bytes.
  size_t len = SVC__SLOT_FRAME_MAX - SVC__FRAME_HDR - 4;
  std::string p(len, 'p');
  Placed at = PostRequest(1, "echo", p.data(), p.size());
  ASSERT_EQ(at.where, (uint32_t)SVC__WHERE_INLINE);
  svc__frame f;
  ASSERT_EQ(0, ServerRead(1, &f));
  EXPECT_EQ(f.payload_len, len);
  EXPECT_EQ(0, memcmp(f.payload, p.data(), len));
  // One more byte does not fit the half: a peer that claims it inline is
  // refused (it would reach into the reply half).
  for (uint32_t extra : {1u, 8u, 1000u, (uint32_t)kMax - (uint32_t)len}) {
    svc__frame h = Request(1, 4, len + extra);
    svc__frame_encode_header(&h, at.frame);
    EXPECT_EQ(SVC_EPROTO, ServerRead(1, &f)) << extra;
  }
  // Likewise a reply claiming more than its half.
  svc__frame r = Reply(1, 0, SVC__SLOT_FRAME_MAX - SVC__FRAME_HDR + 1);
  size_t rep = svc__region_slot(&server_, 1) + SVC__SLOT_REP;
  svc__frame_encode_header(&r, server_.base + rep + SVC__SLOT_HDR);
  *svc__region_info(&server_, rep) = SVC__WHERE_INLINE;
  EXPECT_EQ(SVC_EPROTO, ClientRead(1, &f));
  r = Reply(1, 0, SVC__SLOT_FRAME_MAX - SVC__FRAME_HDR);
  svc__frame_encode_header(&r, server_.base + rep + SVC__SLOT_HDR);
  EXPECT_EQ(0, ClientRead(1, &f));
}

TEST_F(RegionPair, BadWhereRefused) {
  Placed p = PostRequest(1, "echo", "x", 1);
  svc__frame f;
  // "where" is the info word's low 16 bits (the high ones name the next
  // call's slot in a request).
  for (uint32_t where : {2u, 3u, 0x100u, 0x8000u, 0xffffu, UINT32_MAX}) {
    *svc__region_info(&client_, p.half) = where;
    EXPECT_EQ(SVC_EPROTO, ServerRead(1, &f)) << where;
  }
  *svc__region_info(&client_, p.half) = SVC__WHERE_INLINE;
  EXPECT_EQ(0, ServerRead(1, &f)) << "the control";
}

TEST_F(RegionPair, LaneRequestIsMappedOnRead) {
  std::string big(300000, 'x');
  for (size_t i = 0; i < big.size(); i++)
    big[i] = (char)('a' + i % 26);
  Placed p = PostRequest(1, "checksum", big.data(), big.size());
  ASSERT_EQ(p.where, (uint32_t)SVC__WHERE_LANE);
  EXPECT_EQ(p.frame, svc__region_lane(&client_, SVC__LANE_REQ));
  EXPECT_EQ(server_.lane_mapped[0], 0u) << "server has not looked yet";
  svc__frame f;
  ASSERT_EQ(0, ServerRead(1, &f));
  size_t size = svc__frame_size(8, big.size());
  EXPECT_GE(server_.lane_mapped[0], size);
  EXPECT_LE(server_.lane_mapped[0], server_.lane_size);
  EXPECT_EQ(server_.lane_mapped[1], 0u);
  EXPECT_EQ(f.method,
            svc__region_lane(&server_, SVC__LANE_REQ) + SVC__FRAME_HDR);
  ASSERT_EQ(f.payload_len, big.size());
  EXPECT_EQ(0, memcmp(f.method, "checksum", 8));
  EXPECT_EQ(0, memcmp(f.payload, big.data(), big.size()));
  // A later, larger request maps more; a smaller one maps nothing new.
  std::string bigger(700000, 'y');
  PostRequest(2, "checksum", bigger.data(), bigger.size());
  ASSERT_EQ(0, ServerRead(2, &f));
  EXPECT_GE(server_.lane_mapped[0], svc__frame_size(8, bigger.size()));
  size_t mapped = server_.lane_mapped[0];
  PostRequest(3, "checksum", big.data(), 1000);
  ASSERT_EQ(0, ServerRead(3, &f));
  EXPECT_EQ(server_.lane_mapped[0], mapped);
  EXPECT_EQ(0, memcmp(f.payload, big.data(), 1000));
}

TEST_F(RegionPair, ServerWritesRepliesClientReads) {
  PostRequest(1, "echo", "hi", 2);
  PostRequest(2, "big", "hi", 2);
  // An inline reply.
  Placed p = PostReply(1, 42, "abc", 3);
  EXPECT_EQ(p.where, (uint32_t)SVC__WHERE_INLINE);
  svc__frame f;
  ASSERT_EQ(0, ClientRead(1, &f));
  EXPECT_EQ(f.call_id, 1u);
  EXPECT_EQ(f.status, 42);
  ASSERT_EQ(f.payload_len, 3u);
  EXPECT_EQ(f.payload, client_.base + p.half + SVC__SLOT_HDR + SVC__FRAME_HDR);
  EXPECT_EQ(0, memcmp(f.payload, "abc", 3));
  EXPECT_EQ(client_.lane_mapped[1], 0u);
  // A reply through the reply lane, which the client maps as it reads.
  std::string big(200000, 'r');
  p = PostReply(2, 0, big.data(), big.size());
  EXPECT_EQ(p.where, (uint32_t)SVC__WHERE_LANE);
  EXPECT_EQ(p.frame, svc__region_lane(&server_, SVC__LANE_REP));
  ASSERT_EQ(0, ClientRead(2, &f));
  EXPECT_EQ(f.call_id, 2u);
  EXPECT_EQ(f.status, 0);
  ASSERT_EQ(f.payload_len, big.size());
  EXPECT_EQ(f.payload,
            svc__region_lane(&client_, SVC__LANE_REP) + SVC__FRAME_HDR);
  EXPECT_GE(client_.lane_mapped[1], svc__frame_size(0, big.size()));
  EXPECT_EQ(0, memcmp(f.payload, big.data(), big.size()));
  EXPECT_EQ(client_.lane_mapped[0], 0u) << "the client never grew its lane";
}

TEST_F(RegionPair, LaneFrameLongerThanTheFileRefused) {
  // The client says the frame is in the lane but never grew it.
  Placed p = PostRequest(1, "echo", "x", 1);
  *svc__region_info(&client_, p.half) = SVC__WHERE_LANE;
  svc__frame f;
  EXPECT_EQ(SVC_EPROTO, ServerRead(1, &f));
  EXPECT_EQ(server_.lane_mapped[0], 0u);
  // It grew the lane by a page but the header claims more bytes than the
  // file holds: the peer lied.
  ASSERT_EQ(0, svc__region_lane_ensure(&client_, SVC__LANE_REQ, 1));
  uint8_t *lane = svc__region_lane(&client_, SVC__LANE_REQ);
  for (uint32_t len : {(uint32_t)Page(), 500000u, (uint32_t)kMax}) {
    svc__frame h = Request(1, 4, len); // within kMax, beyond the file
    svc__frame_encode_header(&h, lane);
    EXPECT_EQ(SVC_EPROTO, ServerRead(1, &f)) << len;
    EXPECT_LE(server_.lane_mapped[0], Page()) << len;
  }
  // The control: the same frame once the lane holds it.
  ASSERT_EQ(0, svc__region_lane_ensure(&client_, SVC__LANE_REQ,
                                       svc__frame_size(4, 500000)));
  svc__frame h = Request(1, 4, 500000);
  svc__frame_encode_header(&h, lane);
  memcpy(lane + SVC__FRAME_HDR, "echo", 4);
  EXPECT_EQ(0, ServerRead(1, &f));
}

TEST_F(RegionPair, ReplyLaneLongerThanTheFileRefused) {
  PostReply(1, 0, "x", 1);
  size_t rep = svc__region_slot(&server_, 1) + SVC__SLOT_REP;
  *svc__region_info(&server_, rep) = SVC__WHERE_LANE;
  svc__frame f;
  EXPECT_EQ(SVC_EPROTO, ClientRead(1, &f)) << "the lane was never grown";
  ASSERT_EQ(0, svc__region_lane_ensure(&server_, SVC__LANE_REP, 1));
  svc__frame r = Reply(1, 0, 100000);
  svc__frame_encode_header(&r, svc__region_lane(&server_, SVC__LANE_REP));
  EXPECT_EQ(SVC_EPROTO, ClientRead(1, &f));
}

TEST_F(RegionPair, ServerLimitAppliesToRequests) {
  // Attached with a smaller limit, the server refuses what the client's
  // limit allows, inline and in the lane.
  svc__region small;
  ASSERT_EQ(0, svc__region_attach(&small, dup(client_.fd), 100));
  std::string p(101, 'p');
  PostRequest(1, "echo", p.data(), 101);
  svc__frame f;
  EXPECT_EQ(SVC_EPROTO, svc__region_read_frame(
                            &small, svc__region_slot(&small, 1) + SVC__SLOT_REQ,
                            SVC__LANE_REQ, SVC__FRAME_REQUEST, &f, NULL));
  EXPECT_EQ(0, ServerRead(1, &f)) << "within the other server's limit";
  PostRequest(2, "echo", p.data(), 100);
  EXPECT_EQ(0, svc__region_read_frame(
                   &small, svc__region_slot(&small, 2) + SVC__SLOT_REQ,
                   SVC__LANE_REQ, SVC__FRAME_REQUEST, &f, NULL));
  std::string big(5000, 'b');
  PostRequest(3, "echo", big.data(), big.size());
  EXPECT_EQ(SVC_EPROTO, svc__region_read_frame(
                            &small, svc__region_slot(&small, 3) + SVC__SLOT_REQ,
                            SVC__LANE_REQ, SVC__FRAME_REQUEST, &f, NULL));
  EXPECT_LE(small.lane_mapped[0], Page())
      << "the header was refused before the lane was mapped further";
  svc__region_fini(&small);
}

// ---- attach refusals ----

struct Hdr {
  uint32_t magic = SVC__REGION_MAGIC;
  uint32_t version = SVC__REGION_VERSION;
  uint64_t max_payload = kMax;
  uint32_t slots = 1;
};

int Memfd(size_t size, unsigned seals, bool header, Hdr hv = Hdr()) {
  int fd = memfd_create("t", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0)
    return fd;
  if (size && ftruncate(fd, (off_t)size) != 0)
    abort();
  if (header && size >= sizeof(svc__region_hdr)) {
    svc__region_hdr h;
    memset(&h, 0, sizeof h);
    h.magic = hv.magic;
    h.version = hv.version;
    h.max_payload = hv.max_payload;
    h.ring_slots = hv.slots;
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
  ASSERT_EQ(
      0, svc__region_attach(
             &r, Memfd(RingEnd(1), F_SEAL_SHRINK | F_SEAL_SEAL, true), kMax));
  EXPECT_EQ(r.slots, 1u);
  EXPECT_EQ(r.ring_end, RingEnd(1));
  EXPECT_EQ(r.lane_size, LaneSize(kMax));
  svc__region_fini(&r);
}

TEST(RegionAttach, UnsealedMemfdRefused) {
  svc__region r;
  EXPECT_EQ(SVC_EPROTO,
            svc__region_attach(&r, Memfd(RingEnd(1), 0, true), kMax));
}

TEST(RegionAttach, SealsThatCanStillChangeRefused) {
  // Without F_SEAL_SEAL the client could add F_SEAL_GROW or
  // F_SEAL_FUTURE_WRITE after the handshake and fail our lane growth.
  svc__region r;
  EXPECT_EQ(SVC_EPROTO, svc__region_attach(
                            &r, Memfd(RingEnd(1), F_SEAL_SHRINK, true), kMax));
}

TEST(RegionAttach, GrowSealOnlyRefused) {
  svc__region r;
  EXPECT_EQ(SVC_EPROTO,
            svc__region_attach(&r, Memfd(RingEnd(1), F_SEAL_GROW, true), kMax));
}

TEST(RegionAttach, WriteSealedRefused) {
  svc__region r;
  EXPECT_EQ(
      SVC_EPROTO,
      svc__region_attach(
          &r, Memfd(RingEnd(1), F_SEAL_SHRINK | F_SEAL_WRITE, true), kMax));
}

// Regressions found by fuzz_shm_header: a region we could not grow (every
// lane reply would fail) or write (mapping fails) is refused up front.
TEST(RegionAttach, GrowOrFutureWriteSealRefused) {
  svc__region r;
  EXPECT_EQ(
      SVC_EPROTO,
      svc__region_attach(
          &r, Memfd(RingEnd(1), F_SEAL_SHRINK | F_SEAL_GROW, true), kMax));
  EXPECT_EQ(SVC_EPROTO,
            svc__region_attach(
                &r,
                Memfd(RingEnd(1), F_SEAL_SHRINK | F_SEAL_FUTURE_WRITE, true),
                kMax));
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
  ASSERT_EQ(0, ftruncate(fd, (off_t)RingEnd(1)));
  svc__region r;
  EXPECT_EQ(SVC_EPROTO, svc__region_attach(&r, fd, kMax));
}

TEST(RegionAttach, BadSizesRefused) {
  svc__region r;
  EXPECT_EQ(SVC_EPROTO,
            svc__region_attach(&r, Memfd(0, F_SEAL_SHRINK, false), kMax))
      << "empty";
  EXPECT_EQ(SVC_EPROTO,
            svc__region_attach(
                &r, Memfd(100, F_SEAL_SHRINK | F_SEAL_SEAL, true), kMax))
      << "smaller than a page";
  EXPECT_EQ(
      SVC_EPROTO,
      svc__region_attach(
          &r, Memfd(RingEnd(1) + 100, F_SEAL_SHRINK | F_SEAL_SEAL, true), kMax))
      << "not page-aligned";
  Hdr small;
  small.max_payload = 4096;
  size_t top = svc__region_max_size(4096, 1);
  EXPECT_EQ(SVC_EPROTO,
            svc__region_attach(
                &r,
                Memfd(top + Page(), F_SEAL_SHRINK | F_SEAL_SEAL, true, small),
                kMax))
      << "larger than the region's limit allows";
  EXPECT_EQ(
      SVC_EPROTO,
      svc__region_attach(
          &r, Memfd(2 * top, F_SEAL_SHRINK | F_SEAL_SEAL, true, small), kMax))
      << "twice that";
  // The largest the header's limit allows is accepted (a client that grew
  // both lanes fully before the hand-over).
  ASSERT_EQ(
      0, svc__region_attach(
             &r, Memfd(top, F_SEAL_SHRINK | F_SEAL_SEAL, true, small), kMax));
  EXPECT_EQ(r.max_payload, 4096u);
  svc__region_fini(&r);
}

TEST(RegionAttach, FileSmallerThanTheRingRefused) {
  for (uint32_t slots : {16u, 64u, 1024u, (uint32_t)SVC__RING_MAX}) {
    SCOPED_TRACE(slots);
    Hdr h;
    h.slots = slots;
    size_t ring = RingEnd(slots);
    if (ring <= Page())
      continue; // a ring of one page (large pages): nothing smaller to try
    svc__region r;
    EXPECT_EQ(
        SVC_EPROTO,
        svc__region_attach(
            &r, Memfd(Page(), F_SEAL_SHRINK | F_SEAL_SEAL, true, h), kMax));
    EXPECT_EQ(SVC_EPROTO,
              svc__region_attach(
                  &r,
                  Memfd(ring - Page(), F_SEAL_SHRINK | F_SEAL_SEAL, true, h),
                  kMax));
    ASSERT_EQ(0,
              svc__region_attach(
                  &r, Memfd(ring, F_SEAL_SHRINK | F_SEAL_SEAL, true, h), kMax));
    EXPECT_EQ(r.slots, slots);
    EXPECT_EQ(r.ring_end, ring);
    svc__region_fini(&r);
  }
}

TEST(RegionAttach, RingSlotsValidated) {
  for (uint32_t slots :
       {0u, 3u, 6u, 12u, 100u, 4095u, (uint32_t)SVC__RING_MAX + 1,
        (uint32_t)SVC__RING_MAX * 2, 0x80000000u, UINT32_MAX}) {
    Hdr h;
    h.slots = slots;
    // A file large enough for any ring, so only the count is wrong.
    size_t size = RingEnd(SVC__RING_MAX) * 2;
    svc__region r;
    EXPECT_EQ(SVC_EPROTO,
              svc__region_attach(
                  &r, Memfd(size, F_SEAL_SHRINK | F_SEAL_SEAL, true, h), kMax))
        << slots;
  }
  for (uint32_t slots : {1u, 2u, 4u, 1024u, (uint32_t)SVC__RING_MAX}) {
    Hdr h;
    h.slots = slots;
    svc__region r;
    ASSERT_EQ(0, svc__region_attach(&r,
                                    Memfd(RingEnd(slots),
                                          F_SEAL_SHRINK | F_SEAL_SEAL, true, h),
                                    kMax))
        << slots;
    EXPECT_EQ(r.slots, slots);
    svc__region_fini(&r);
  }
}

TEST(RegionAttach, PeerLimitValidated) {
  for (uint64_t max : {(uint64_t)0, (uint64_t)SVC__MAX_MSG_LIMIT + 1,
                       (uint64_t)UINT32_MAX, (uint64_t)1 << 40, UINT64_MAX}) {
    Hdr h;
    h.max_payload = max;
    svc__region r;
    EXPECT_EQ(
        SVC_EPROTO,
        svc__region_attach(
            &r, Memfd(RingEnd(1), F_SEAL_SHRINK | F_SEAL_SEAL, true, h), kMax))
        << max;
  }
  // The largest limit is accepted, and the server's own limit applies.
  Hdr h;
  h.max_payload = SVC__MAX_MSG_LIMIT;
  svc__region r;
  ASSERT_EQ(0, svc__region_attach(
                   &r, Memfd(RingEnd(1), F_SEAL_SHRINK | F_SEAL_SEAL, true, h),
                   kMax));
  EXPECT_EQ(r.max_payload, kMax);
  EXPECT_EQ(r.lane_size, LaneSize(SVC__MAX_MSG_LIMIT));
  svc__region_fini(&r);
}

TEST(RegionAttach, CorruptedHeaderRefused) {
  for (int field = 0; field < 4; field++) {
    Hdr h;
    if (field == 0)
      h.magic = 0x12345678u;
    if (field == 1)
      h.version = SVC__REGION_VERSION + 1;
    if (field == 2)
      h.version = 1;  // the layout before the ring
    if (field == 3) { // all zero
      h.magic = 0;
      h.version = 0;
      h.max_payload = 0;
      h.slots = 0;
    }
    svc__region r;
    EXPECT_EQ(
        SVC_EPROTO,
        svc__region_attach(
            &r, Memfd(RingEnd(1), F_SEAL_SHRINK | F_SEAL_SEAL, true, h), kMax))
        << field;
  }
}

TEST(RegionAttach, HeaderChangedAfterAttachIsIgnored) {
  // The geometry was copied at attach: a peer rewriting ring_slots or
  // max_payload later changes nothing the server computes.
  svc__region c, s;
  ASSERT_EQ(0, svc__region_create(&c, 4096, 4));
  ASSERT_EQ(0, svc__region_attach(&s, dup(c.fd), kMax));
  svc__region_hdr *h = svc__region_hdr_of(&c);
  h->ring_slots = SVC__RING_MAX;
  h->max_payload = UINT64_MAX;
  EXPECT_EQ(s.slots, 4u);
  EXPECT_EQ(s.max_payload, 4096u);
  EXPECT_EQ(svc__region_slot(&s, 5), svc__region_slot(&c, 1));
  // A lane frame over the limit copied at attach (4096) but within the one
  // the header now claims, and within the lane: only the copy refuses it.
  std::string big(5000, 'b');
  Placed p = Put(&c, 5, SVC__SLOT_REQ, SVC__LANE_REQ, Request(5, 1, big.size()),
                 "m", big.data());
  ASSERT_EQ(p.where, (uint32_t)SVC__WHERE_LANE);
  ASSERT_LE(svc__frame_size(1, big.size()), s.lane_size);
  svc__frame f;
  EXPECT_EQ(SVC_EPROTO, svc__region_read_frame(
                            &s, svc__region_slot(&s, 5) + SVC__SLOT_REQ,
                            SVC__LANE_REQ, SVC__FRAME_REQUEST, &f, NULL));
  svc__region_fini(&s);
  svc__region_fini(&c);
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
  Hdr bad_slots;
  bad_slots.slots = 3;
  for (int i = 0; i < 50; i++) {
    svc__region r;
    svc__region_attach(&r, Memfd(RingEnd(1), 0, true), kMax);
    svc__region_attach(&r, Memfd(100, F_SEAL_SHRINK | F_SEAL_SEAL, true), kMax);
    svc__region_attach(
        &r, Memfd(RingEnd(1), F_SEAL_SHRINK | F_SEAL_SEAL, true, bad_slots),
        kMax);
  }
  EXPECT_EQ(before, count());
}

// ---- validation of frames read from the region ----

TEST_F(RegionPair, WrongTypeRefused) {
  PostRequest(1, "echo", "x", 1);
  svc__frame f;
  EXPECT_EQ(SVC_EPROTO,
            svc__region_read_frame(
                &server_, svc__region_slot(&server_, 1) + SVC__SLOT_REQ,
                SVC__LANE_REQ, SVC__FRAME_REPLY, &f, NULL));
  // A reply frame where a request belongs.
  Put(&client_, 2, SVC__SLOT_REQ, SVC__LANE_REQ, Reply(2, 0, 1), nullptr, "x");
  EXPECT_EQ(SVC_EPROTO, ServerRead(2, &f));
}

TEST_F(RegionPair, GarbageHeaderRefused) {
  Placed p = PostRequest(1, "echo", "x", 1);
  p.frame[0] ^= 0xFF; // magic
  svc__frame f;
  EXPECT_EQ(SVC_EPROTO, ServerRead(1, &f));
  std::string big(5000, 'b');
  p = PostRequest(2, "echo", big.data(), big.size());
  p.frame[4] = 9; // version, in the lane
  EXPECT_EQ(SVC_EPROTO, ServerRead(2, &f));
}

TEST_F(RegionPair, PayloadLengthOverTheLimitRefused) {
  Placed inl = PostRequest(1, "echo", "x", 1);
  std::string big(5000, 'b');
  Placed lane = PostRequest(2, "echo", big.data(), big.size());
  for (uint32_t len : {(uint32_t)kMax + 1, 0x7fffffffu, 0xffffffffu}) {
    svc__frame h = Request(1, 4, len);
    svc__frame_encode_header(&h, inl.frame);
    svc__frame f;
    EXPECT_EQ(SVC_EPROTO, ServerRead(1, &f)) << len;
    h.call_id = 2;
    svc__frame_encode_header(&h, lane.frame);
    EXPECT_EQ(SVC_EPROTO, ServerRead(2, &f)) << len;
  }
  EXPECT_LE(server_.lane_mapped[0], Page())
      << "only the lane's header was mapped";
}

TEST_F(RegionPair, OffsetsOutsideTheRingRefused) {
  svc__frame f;
  size_t end = server_.ring_end;
  for (size_t off :
       {(size_t)0, (size_t)8, SVC__REGION_RING - 1,
        end - SVC__SLOT_HDR - SVC__SLOT_FRAME_MAX + 1, end - SVC__SLOT_HDR,
        end - 1, end, end + SVC__SLOT_SIZE, server_.reserved - 1,
        server_.reserved, server_.reserved + 4096, (size_t)1 << 62}) {
    EXPECT_EQ(SVC_EPROTO, svc__region_read_frame(&server_, off, SVC__LANE_REQ,
                                                 SVC__FRAME_REQUEST, &f, NULL))
        << off;
  }
  // The control: the ring's last slot half is inside.
  PostReply(kSlots - 1, 0, "x", 1);
  EXPECT_EQ(0, ClientRead(kSlots - 1, &f));
  EXPECT_EQ(svc__region_slot(&client_, kSlots - 1) + SVC__SLOT_REP,
            SVC__REGION_RING + kSlots * SVC__SLOT_SIZE - SVC__SLOT_SIZE / 2);
}

// Offsets near SIZE_MAX, as the old layout's tests checked. The bound must
// not be computed with an addition that wraps: for off >= SIZE_MAX - 255,
// off + SVC__SLOT_HDR + SVC__SLOT_FRAME_MAX wraps to 0..255, which passes an
// "end > ring_end" test and makes read_frame read the 256 bytes below base.
// A readable page is put there, holding what such a read would take for a
// request, so a wrapping bound shows as a frame returned from outside the
// region rather than as a fault that depends on what happens to be mapped.
TEST_F(RegionPair, OffsetsThatWrapAroundRefused) {
#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
  uint8_t *below = server_.base - Page();
  void *m = mmap(below, Page(), PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  bool guard = m == below;
  if (m != MAP_FAILED && !guard)
    munmap(m, Page()); // an old kernel took the address as a hint
  if (guard) {
    // off = SIZE_MAX - 255 is base - 256: "where" at base - 252 (0: inline)
    // and the frame at base - 248.
    uint8_t *end = below + Page();
    uint32_t inl = SVC__WHERE_INLINE;
    memcpy(end - 256 + 4, &inl, sizeof inl);
    svc__frame h = Request(1, 4, 0);
    svc__frame_encode_header(&h, end - 256 + SVC__SLOT_HDR);
    memcpy(end - 256 + SVC__SLOT_HDR + SVC__FRAME_HDR, "echo", 4);
  }
  svc__frame f;
  for (size_t off : {SIZE_MAX - (SVC__SLOT_HDR + SVC__SLOT_FRAME_MAX) + 1,
                     SIZE_MAX, SIZE_MAX - 3, SIZE_MAX - SVC__FRAME_HDR + 1,
                     SIZE_MAX - (SVC__SLOT_HDR + SVC__SLOT_FRAME_MAX),
                     SIZE_MAX - (SVC__SLOT_HDR + SVC__SLOT_FRAME_MAX) - 1,
                     SIZE_MAX - server_.ring_end}) {
    int rc = svc__region_read_frame(&server_, off, SVC__LANE_REQ,
                                    SVC__FRAME_REQUEST, &f, NULL);
    EXPECT_EQ(SVC_EPROTO, rc) << "offset SIZE_MAX - " << SIZE_MAX - off;
    if (rc == 0) {
      EXPECT_TRUE(f.method >= server_.base &&
                  f.method < server_.base + server_.reserved)
          << "a frame from outside the region";
    }
  }
  if (guard)
    munmap(below, Page());
}

TEST_F(RegionPair, RandomCorruptionNeverEscapesTheRegion) {
  // The client scribbles over the "where" word and the frame header, inline
  // and in the lane; every read either fails with SVC_EPROTO or returns a
  // frame that lies inside the slot's inline half or the server's mapped
  // part of the lane, within its limit.
  const uint32_t seed = 0x5eed0202u;
  std::mt19937 rng(seed);
  ASSERT_EQ(0, svc__region_lane_ensure(&client_, SVC__LANE_REQ, 3 * Page()));
  uint8_t *lane = svc__region_lane(&client_, SVC__LANE_REQ);
  for (int i = 0; i < 5000; i++) {
    SCOPED_TRACE(::testing::Message() << "seed " << seed << " iteration " << i);
    uint32_t seq = 1 + rng() % (2 * kSlots);
    size_t half = svc__region_slot(&client_, seq) + SVC__SLOT_REQ;
    uint32_t r = rng();
    uint32_t where = r % 8 < 4   ? SVC__WHERE_INLINE
                     : r % 8 < 7 ? SVC__WHERE_LANE
                                 : (uint32_t)rng();
    *svc__region_info(&client_, half) = where;
    uint8_t *at =
        where == SVC__WHERE_LANE ? lane : client_.base + half + SVC__SLOT_HDR;
    svc__frame h;
    memset(&h, 0, sizeof h);
    h.type = (uint8_t)(rng() % 4);
    h.call_id = seq;
    h.method_len = rng() % 2 ? rng() % 300 : (uint32_t)rng();
    h.payload_len = rng() % 2 ? rng() % 20000 : (uint32_t)rng();
    h.status = (int32_t)(rng() % 3) - 1;
    svc__frame_encode_header(&h, at);
    if (rng() % 4 == 0)
      at[rng() % SVC__FRAME_HDR] = (uint8_t)rng();
    svc__frame f;
    int rc = ServerRead(seq, &f);
    ASSERT_TRUE(rc == 0 || rc == SVC_EPROTO) << rc;
    if (rc != 0)
      continue;
    ASSERT_EQ(where == SVC__WHERE_INLINE || where == SVC__WHERE_LANE, true);
    ASSERT_EQ(f.type, SVC__FRAME_REQUEST);
    ASSERT_LE(f.payload_len, server_.max_payload);
    ASSERT_LE(f.method_len, (uint32_t)SVC_METHOD_MAX);
    size_t size = svc__frame_size(f.method_len, f.payload_len);
    const uint8_t *start = f.method - SVC__FRAME_HDR;
    if (where == SVC__WHERE_INLINE) {
      ASSERT_EQ(start, server_.base + half + SVC__SLOT_HDR);
      ASSERT_LE(size, (size_t)SVC__SLOT_FRAME_MAX);
    } else {
      ASSERT_EQ(start, svc__region_lane(&server_, SVC__LANE_REQ));
      ASSERT_LE(size, server_.lane_mapped[0]);
      ASSERT_LE(size, client_.lane_mapped[0]) << "no more than the client grew";
    }
    ASSERT_EQ(f.payload, f.method + f.method_len);
    // Touch every byte: faults if the mapping is short.
    volatile uint8_t sum = 0;
    for (size_t k = 0; k < size; k++)
      sum ^= start[k];
    (void)sum;
  }
}

} // namespace

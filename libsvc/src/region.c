/* region.c — one shm:// connection's memory: a memfd sealed against
 * shrinking (so the peer can never make us fault), memory reserved with
 * fallocate when the region is made or a lane grows (SVC_ENOMEM then,
 * never SIGBUS mid-call), mapped into an address range reserved up front so
 * that growth never moves a pointer a handler holds. The header and ring
 * are mapped whole; each lane is mapped as far as it has been used. */
#include "region.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "sys.h"

static size_t page_size(void) { return (size_t)sysconf(_SC_PAGESIZE); }

static size_t page_align(size_t n) {
  size_t p = page_size();
  return (n + p - 1) & ~(p - 1);
}

static size_t pow2_at_least(size_t n) {
  size_t p = page_size();
  while (p < n)
    p <<= 1;
  return p;
}

uint32_t svc__region_slots_for(int window) {
  /* One more than the window: the slot of the reply handed out stays
   * readable while a full window is in flight. Calls made one at a time
   * alternate between two. */
  uint32_t n = 2;
  while (n < (uint32_t)window + 1 && n < SVC__RING_MAX)
    n <<= 1;
  return n;
}

static size_t ring_end(uint32_t slots) {
  return page_align(SVC__REGION_RING + (size_t)slots * SVC__SLOT_SIZE);
}

/* A lane holds one frame of the largest size, also when it is written in
 * place (its payload at SVC__PREPARED_AT). */
static size_t lane_size(size_t max_payload) {
  return page_align(SVC__PREPARED_AT + max_payload);
}

uint32_t svc__region_lanes_for(uint32_t slots) {
  uint32_t n = slots / 2;
  return n < 1 ? 1 : n > SVC__LANES_MAX ? SVC__LANES_MAX : n;
}

size_t svc__region_max_size(size_t max_payload, uint32_t slots) {
  return ring_end(slots) +
         2 * (size_t)svc__region_lanes_for(slots) * lane_size(max_payload);
}

static void layout(svc__region *r, size_t max_payload, uint32_t slots) {
  r->max_payload = max_payload;
  r->slots = slots;
  r->ring_end = ring_end(slots);
  r->lane_size = lane_size(max_payload);
  r->lanes = svc__region_lanes_for(slots);
  r->reserved = svc__region_max_size(max_payload, slots);
}

static int reserve(svc__region *r) {
  void *p = svc__mmap(NULL, r->reserved, PROT_NONE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED)
    return SVC_ENOMEM;
  r->base = p;
  return 0;
}

/* Maps file bytes [off, off + len) at the same offset of the reservation.
 * populate: fault the pages in now (ours, just allocated); a peer's pages
 * are faulted as they are read. */
static int map_at(svc__region *r, size_t off, size_t len, int populate) {
  void *p = svc__mmap(r->base + off, len, PROT_READ | PROT_WRITE,
                      MAP_SHARED | MAP_FIXED | (populate ? MAP_POPULATE : 0),
                      r->fd, (off_t)off);
  return p == MAP_FAILED ? svc__from_errno(errno) : 0;
}

static int file_size(int fd, size_t *out) {
  struct stat st;
  *out = 0;
  if (fstat(fd, &st) != 0)
    return svc__from_errno(errno);
  *out = (size_t)st.st_size;
  return 0;
}

/* Makes file bytes [off, off + len) exist, with their memory allocated now.
 * Both sides grow the file: a size read before the peer extended it past
 * off + len makes this ftruncate a shrink, which the seal refuses (EPERM);
 * the size is then read again. */
static int grow_file(int fd, size_t off, size_t len) {
  for (int tries = 0;; tries++) { /* the seals forbid no growth: bounded */
    size_t cur;
    int rc = file_size(fd, &cur);
    if (rc < 0)
      return rc;
    if (cur >= off + len || svc__ftruncate(fd, (off_t)(off + len)) == 0)
      break;
    if ((errno != EPERM && errno != EINTR) || tries == 100)
      return svc__from_errno(errno);
  }
  if (svc__fallocate(fd, (off_t)off, (off_t)len) != 0) {
    int e = errno;
    if (e == ENOSPC || e == ENOMEM)
      return SVC_ENOMEM;
    if (e != EOPNOTSUPP)
      return svc__from_errno(e);
  }
  return 0;
}

int svc__region_create(svc__region *r, size_t max_payload, uint32_t slots) {
  memset(r, 0, sizeof *r);
  layout(r, max_payload, slots);
  r->fd = svc__memfd_create("svc", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (r->fd < 0)
    return svc__from_errno(errno);
  int rc = reserve(r);
  if (rc == 0)
    rc = grow_file(r->fd, 0, r->ring_end);
  if (rc == 0 && svc__add_seals(r->fd, F_SEAL_SHRINK | F_SEAL_SEAL) != 0)
    rc = svc__from_errno(errno);
  if (rc == 0)
    rc = map_at(r, 0, r->ring_end, 1);
  if (rc < 0) {
    svc__region_fini(r);
    return rc;
  }
  svc__region_hdr *h = svc__region_hdr_of(r);
  h->magic = SVC__REGION_MAGIC;
  h->version = SVC__REGION_VERSION;
  h->max_payload = max_payload;
  h->ring_slots = slots;
  /* No call has used a slot yet: every reply word differs from the first
   * sequence number that slot will carry. */
  for (uint32_t i = 0; i < slots; i++)
    atomic_store_explicit(
        svc__region_seq(r, svc__region_slot(r, i) + SVC__SLOT_REP), UINT32_MAX,
        memory_order_relaxed);
  return 0;
}

int svc__region_attach(svc__region *r, int fd, size_t max_payload) {
  memset(r, 0, sizeof *r);
  r->fd = fd;
  int seals = fcntl(fd, F_GET_SEALS);
  size_t size = 0;
  int rc = 0;
  /* Must not shrink; must stay writable and growable by us, and sealed so
   * that no seal can be added later (F_SEAL_SEAL). */
  if (seals < 0 || !(seals & F_SEAL_SHRINK) || !(seals & F_SEAL_SEAL) ||
      (seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE | F_SEAL_GROW)))
    rc = SVC_EPROTO;
  if (rc == 0)
    rc = file_size(fd, &size);
  /* The header's first page tells the ring size; read it through a
   * temporary mapping of that page only. */
  uint32_t magic = 0, version = 0, slots = 0;
  uint64_t peer_max = 0;
  if (rc == 0 && (size < page_size() || size % page_size() != 0))
    rc = SVC_EPROTO;
  if (rc == 0) {
    void *p = svc__mmap(NULL, page_size(), PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
      rc = SVC_EPROTO; /* a file we cannot map is the peer's doing */
    } else {
      /* Copy the peer-written fields once, then validate the copies. */
      const volatile svc__region_hdr *h = p;
      magic = h->magic;
      version = h->version;
      peer_max = h->max_payload;
      slots = h->ring_slots;
      munmap(p, page_size());
    }
  }
  if (rc == 0 &&
      (magic != SVC__REGION_MAGIC || version != SVC__REGION_VERSION ||
       slots == 0 || slots > SVC__RING_MAX || (slots & (slots - 1)) != 0))
    rc = SVC_EPROTO;
  if (rc == 0 && (peer_max == 0 || peer_max > SVC__MAX_MSG_LIMIT))
    rc = SVC_EPROTO;
  if (rc == 0) {
    /* The geometry is the client's; the limit is the smaller of the two. */
    layout(r, (size_t)peer_max, slots);
    if (peer_max > max_payload)
      r->max_payload = max_payload;
    if (size < r->ring_end || size > r->reserved)
      rc = SVC_EPROTO;
  }
  if (rc == 0)
    rc = reserve(r);
  if (rc == 0 && map_at(r, 0, r->ring_end, 1) < 0)
    rc = SVC_EPROTO;
  if (rc < 0) {
    svc__region_fini(r);
    return rc;
  }
  return 0;
}

static size_t lane_off(const svc__region *r, int lane) {
  return r->ring_end + (size_t)lane * r->lane_size;
}

int svc__region_lane_ensure(svc__region *r, int lane, size_t bytes) {
  if (lane < 0 || lane >= 2 * (int)r->lanes)
    return SVC_EINVAL;
  if (bytes <= r->lane_mapped[lane])
    return 0;
  if (bytes > r->lane_size)
    return SVC_ETOOBIG;
  size_t want = pow2_at_least(bytes);
  if (want > r->lane_size)
    want = r->lane_size;
  size_t off = lane_off(r, lane), have = r->lane_mapped[lane];
  int rc = grow_file(r->fd, off + have, want - have);
  if (rc == 0)
    rc = map_at(r, off + have, want - have, 1);
  if (rc == 0)
    r->lane_mapped[lane] = want;
  return rc;
}

/* Maps what the peer wrote into a lane, if the file now holds bytes of it;
 * SVC_EPROTO if it does not (the peer lied about a length). */
static int lane_sync(svc__region *r, int lane, size_t bytes) {
  if (bytes <= r->lane_mapped[lane])
    return 0;
  if (bytes > r->lane_size)
    return SVC_EPROTO;
  size_t size, off = lane_off(r, lane), have = r->lane_mapped[lane];
  int rc = file_size(r->fd, &size);
  if (rc < 0)
    return rc;
  size &= ~(page_size() - 1);
  if (size < off + bytes)
    return SVC_EPROTO;
  size_t want = pow2_at_least(bytes);
  if (want > r->lane_size)
    want = r->lane_size;
  if (off + want > size)
    want = size - off;
  rc = map_at(r, off + have, want - have, 0);
  if (rc == 0)
    r->lane_mapped[lane] = want;
  return rc;
}

int svc__region_read_lane_frame(svc__region *r, uint32_t where, int dir,
                                uint8_t want_type, svc__frame *f,
                                int *lane_out) {
  uint32_t kind = SVC__WHERE_KIND(where);
  if ((dir != SVC__LANE_REQ && dir != SVC__LANE_REP) || kind < 1 ||
      kind > r->lanes)
    return SVC_EPROTO;
  int rc, lane = SVC__LANE_ID(dir, (int)kind - 1);
  size_t skip = SVC__WHERE_OFF(where); /* at most 511 */
  if ((rc = lane_sync(r, lane, skip + SVC__FRAME_HDR)) < 0)
    return rc;
  const uint8_t *at = svc__region_lane(r, lane) + skip;
  if (svc__region_decode_at(r, at, r->lane_size - skip, want_type, f) < 0)
    return SVC_EPROTO;
  size_t size = svc__frame_size(f->method_len, f->payload_len);
  if ((rc = lane_sync(r, lane, skip + size)) < 0)
    return rc;
  if (lane_out)
    *lane_out = lane;
  return 0;
}

void svc__region_fini(svc__region *r) {
  if (r->base)
    munmap(r->base, r->reserved);
  if (r->fd >= 0)
    close(r->fd);
  r->base = NULL;
  r->fd = -1;
  memset(r->lane_mapped, 0, sizeof r->lane_mapped);
}

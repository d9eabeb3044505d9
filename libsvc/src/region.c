/* region.c — one shm:// connection's memory: a memfd sealed against
 * shrinking (so the peer can never make us fault), memory reserved with
 * fallocate when the region is made or grown (SVC_ENOMEM then, never SIGBUS
 * mid-call), mapped into an address range reserved up front so that growth
 * never moves a pointer a handler holds. */
#include "region.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

static size_t page_size(void) { return (size_t)sysconf(_SC_PAGESIZE); }

static size_t pow2_at_least(size_t n) {
  size_t p = page_size();
  while (p < n)
    p <<= 1;
  return p;
}

size_t svc__region_max_size(size_t max_payload) {
  /* request and reply frames side by side, each cache-line aligned */
  size_t frame = SVC__FRAME_HDR + SVC_METHOD_MAX + max_payload;
  return pow2_at_least(SVC__REGION_DATA +
                       2 * (SVC__SLOT_HDR + frame + SVC__CACHELINE));
}

static int reserve(svc__region *r) {
  void *p = mmap(NULL, r->reserved, PROT_NONE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED)
    return SVC_ENOMEM;
  r->base = p;
  return 0;
}

/* Maps the file's bytes [r->mapped, size) in place, keeping what is mapped. */
static int map_more(svc__region *r, size_t size) {
  if (size <= r->mapped)
    return 0;
  void *want = r->base + r->mapped;
  void *p =
      mmap(want, size - r->mapped, PROT_READ | PROT_WRITE,
           MAP_SHARED | MAP_FIXED | MAP_POPULATE, r->fd, (off_t)r->mapped);
  if (p == MAP_FAILED)
    return svc__from_errno(errno);
  r->mapped = size;
  return 0;
}

static int file_size(int fd, size_t *out) {
  struct stat st;
  *out = 0;
  if (fstat(fd, &st) != 0)
    return svc__from_errno(errno);
  *out = (size_t)st.st_size;
  return 0;
}

/* Grows the file to size bytes, with its memory allocated now. */
static int grow_file(int fd, size_t size) {
  size_t cur;
  int rc = file_size(fd, &cur);
  if (rc < 0 || cur >= size)
    return rc;
  if (ftruncate(fd, (off_t)size) != 0)
    return svc__from_errno(errno);
  if (fallocate(fd, 0, 0, (off_t)size) != 0) {
    int e = errno;
    if (e == ENOSPC || e == ENOMEM)
      return SVC_ENOMEM;
    if (e != EOPNOTSUPP)
      return svc__from_errno(e);
  }
  return 0;
}

int svc__region_create(svc__region *r, size_t max_payload) {
  memset(r, 0, sizeof *r);
  r->max_payload = max_payload;
  r->reserved = svc__region_max_size(max_payload);
  r->fd = memfd_create("svc", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (r->fd < 0)
    return svc__from_errno(errno);
  int rc = reserve(r);
  if (rc == 0)
    rc = grow_file(r->fd, page_size());
  if (rc == 0 && fcntl(r->fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_SEAL) != 0)
    rc = svc__from_errno(errno);
  if (rc == 0)
    rc = map_more(r, page_size());
  if (rc < 0) {
    svc__region_fini(r);
    return rc;
  }
  svc__region_hdr *h = svc__region_hdr_of(r);
  h->magic = SVC__REGION_MAGIC;
  h->version = SVC__REGION_VERSION;
  h->max_payload = max_payload;
  return 0;
}

int svc__region_attach(svc__region *r, int fd, size_t max_payload) {
  memset(r, 0, sizeof *r);
  r->fd = fd;
  int seals = fcntl(fd, F_GET_SEALS);
  size_t size;
  int rc = 0;
  /* Must not shrink; must stay writable and growable by us. */
  if (seals < 0 || !(seals & F_SEAL_SHRINK) ||
      (seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE | F_SEAL_GROW)))
    rc = SVC_EPROTO;
  if (rc == 0)
    rc = file_size(fd, &size);
  r->max_payload = max_payload;
  r->reserved = svc__region_max_size(max_payload);
  if (rc == 0 &&
      (size < page_size() || size > r->reserved || size % page_size() != 0))
    rc = SVC_EPROTO;
  if (rc == 0)
    rc = reserve(r);
  if (rc == 0 && map_more(r, size) < 0)
    rc = SVC_EPROTO; /* a file we cannot map is the peer's doing */
  if (rc < 0) {
    svc__region_fini(r);
    return rc;
  }
  /* Copy the peer-written fields once, then validate the copies. */
  svc__region_hdr *h = svc__region_hdr_of(r);
  uint32_t magic = h->magic, version = h->version;
  uint64_t peer_max = h->max_payload;
  if (magic != SVC__REGION_MAGIC || version != SVC__REGION_VERSION) {
    svc__region_fini(r);
    return SVC_EPROTO;
  }
  if (peer_max < r->max_payload)
    r->max_payload = (size_t)peer_max;
  return 0;
}

int svc__region_ensure(svc__region *r, size_t bytes) {
  if (bytes <= r->mapped)
    return 0;
  if (bytes > r->reserved)
    return SVC_ETOOBIG;
  size_t size = pow2_at_least(bytes);
  int rc = grow_file(r->fd, size);
  return rc < 0 ? rc : map_more(r, size);
}

int svc__region_sync(svc__region *r, size_t bytes) {
  if (bytes <= r->mapped)
    return 0;
  size_t size;
  if (bytes > r->reserved)
    return SVC_EPROTO;
  int rc = file_size(r->fd, &size);
  if (rc < 0)
    return rc;
  size &= ~(page_size() - 1);
  if (size > r->reserved)
    size = r->reserved;
  if (size < bytes)
    return SVC_EPROTO;
  return map_more(r, size);
}

int svc__region_read_frame(svc__region *r, size_t off, uint8_t want_type,
                           svc__frame *f) {
  uint8_t hdr[SVC__FRAME_HDR];
  if (off < SVC__REGION_DATA || off > r->reserved - SVC__FRAME_HDR)
    return SVC_EPROTO;
  int rc = svc__region_sync(r, off + SVC__FRAME_HDR);
  if (rc < 0)
    return rc;
  memcpy(hdr, r->base + off, sizeof hdr); /* one copy; peer may change it */
  rc = svc__frame_decode_header(hdr, sizeof hdr, r->max_payload, f);
  if (rc != 0 || f->type != want_type)
    return SVC_EPROTO;
  size_t end = off + svc__frame_size(f->method_len, f->payload_len);
  rc = svc__region_sync(r, end);
  if (rc < 0)
    return rc;
  f->method = r->base + off + SVC__FRAME_HDR;
  f->payload = f->method + f->method_len;
  return 0;
}

void svc__region_write_header(svc__region *r, size_t off, const svc__frame *f) {
  svc__frame_encode_header(f, r->base + off);
}

void svc__region_fini(svc__region *r) {
  if (r->base)
    munmap(r->base, r->reserved);
  if (r->fd >= 0)
    close(r->fd);
  r->base = NULL;
  r->fd = -1;
  r->mapped = 0;
}

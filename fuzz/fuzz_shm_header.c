/* fuzz_shm_header.c — libFuzzer harness for the shared-memory region as a
 * server meets it: a memfd whose size, seals, header and request frame a
 * hostile client chose. It is attached and read exactly as the server does
 * (svc__region_attach, svc__region_read_frame at SVC__REGION_REQ), then a
 * reply is placed the way the server places it (svc__region_ensure and
 * svc__region_write_header in the slot at svc__region_reply_slot).
 *
 * Input layout (see fuzz/make_corpus.py):
 *   byte 0  bits 0-2 file size (1, 2, 4, 8, 16 pages, 0, 100 bytes, 1 page
 *           + 1 byte); bits 3-5 the server's max_payload (0, 64, 4096,
 *           65536, 1 MiB, 64 MiB, 64 MiB, 64 MiB)
 *   byte 1  bits 0-1 seals (SHRINK|SEAL as the client makes it, SHRINK,
 *           none, SHRINK|GROW); bit 2 adds F_SEAL_FUTURE_WRITE; bits 3-5
 *           grow the file by 2^n after attach, before the read (the peer may
 *           grow it at any time); bit 6 also reads a reply frame at an
 *           offset taken from file bytes 136..143 (any value, as a lying
 *           peer would make a reader use); bit 7 adds F_SEAL_WRITE
 *   byte 2  reply payload size, in 64-byte steps
 *   3..     the file's first bytes: header, then the request frame
 *
 * Properties: no crash (a client can never make the server fault); attach
 * returns 0, SVC_EPROTO, SVC_ENOMEM, SVC_EPERM or SVC_ESYS; read_frame 0 or
 * SVC_EPROTO (or SVC_ENOMEM / SVC_ESYS when mapping more fails); a frame
 * returned is of the wanted type, obeys the header rules and the effective
 * max_payload (min of both sides), and lies wholly inside the mapping (every
 * byte is read to prove it); a reply that ensure accepts fits the mapping. */
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "region.h"
#include "svc.h"

#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010
#endif

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "fuzz_shm_header: property failed at %s:%d: %s\n",       \
              __FILE__, __LINE__, #cond);                                      \
      abort();                                                                 \
    }                                                                          \
  } while (0)

static const size_t server_max[8] = {0,
                                     64,
                                     4096,
                                     65536,
                                     (size_t)1 << 20,
                                     SVC_DEFAULT_MAX_MSG,
                                     SVC_DEFAULT_MAX_MSG,
                                     SVC_DEFAULT_MAX_MSG};

static size_t file_size_of(uint8_t sel, size_t page) {
  switch (sel & 7) {
  case 5:
    return 0;
  case 6:
    return 100;
  case 7:
    return page + 1;
  default:
    return page << (sel & 7);
  }
}

static int seals_of(uint8_t b) {
  static const int base[4] = {F_SEAL_SHRINK | F_SEAL_SEAL, F_SEAL_SHRINK, 0,
                              F_SEAL_SHRINK | F_SEAL_GROW};
  int s = base[b & 3];
  if (b & 4)
    s |= F_SEAL_FUTURE_WRITE;
  if (b & 0x80)
    s |= F_SEAL_WRITE;
  return s;
}

static int attach_code_ok(int rc) {
  return rc == 0 || rc == SVC_EPROTO || rc == SVC_ENOMEM || rc == SVC_EPERM ||
         rc == SVC_ESYS;
}

static int read_code_ok(int rc) {
  return rc == 0 || rc == SVC_EPROTO || rc == SVC_ENOMEM || rc == SVC_ESYS;
}

/* Reads every byte of the frame so a byte outside the mapping faults here. */
static unsigned touch_frame(const svc__region *r, size_t off,
                            const svc__frame *f) {
  const uint8_t *start = r->base + off;
  size_t total = svc__frame_size(f->method_len, f->payload_len);
  CHECK(off + total <= r->mapped);
  CHECK(f->method == start + SVC__FRAME_HDR);
  CHECK(f->payload == f->method + f->method_len);
  unsigned sum = 0;
  for (size_t i = 0; i < total; i++)
    sum += ((volatile const uint8_t *)start)[i];
  return sum;
}

static void check_frame(const svc__region *r, size_t off, uint8_t type,
                        const svc__frame *f) {
  CHECK(f->type == type && f->flags == 0);
  CHECK(f->payload_len <= r->max_payload);
  CHECK(f->method_len <= SVC_METHOD_MAX);
  if (type == SVC__FRAME_REQUEST)
    CHECK(f->method_len >= 1 && f->status == 0);
  else
    CHECK(f->method_len == 0);
  (void)touch_frame(r, off, f);
}

/* The server's reply, as transport_shm.c places it: in the reply slot after
 * the request, with room for the payload (svc_reply_alloc), else a bare
 * error header; if even that does not fit, the server drops the connection.
 * Whatever the client did to the file, this must not fault. */
static void place_reply(svc__region *r, size_t req_total, size_t len) {
  size_t slot = svc__region_reply_slot(req_total);
  size_t off = slot + SVC__SLOT_HDR;
  svc__frame f = {.type = SVC__FRAME_REPLY, .call_id = 1};
  int rc = SVC_ETOOBIG; /* svc_reply_alloc refuses it before the region */
  if (len <= r->max_payload)
    rc = svc__region_ensure(r, off + svc__frame_size(0, len));
  CHECK(rc == 0 || rc == SVC_ETOOBIG || rc == SVC_ENOMEM || rc == SVC_EPERM ||
        rc == SVC_ESYS);
  if (rc == 0) {
    f.payload_len = (uint32_t)len;
    CHECK(off + svc__frame_size(0, len) <= r->mapped);
    memset(r->base + off + SVC__FRAME_HDR, 0xab, len);
  } else {
    f.status = rc;
    if (svc__region_ensure(r, off + SVC__FRAME_HDR) < 0)
      return; /* the server closes this connection */
    CHECK(off + SVC__FRAME_HDR <= r->mapped);
  }
  CHECK(r->mapped <= r->reserved);
  svc__region_write_header(r, off, &f);
  atomic_store(svc__region_seq(r, slot), 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 3)
    return 0;
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  size_t fsize = file_size_of(data[0], page);
  size_t max = server_max[(data[0] >> 3) & 7];
  int seals = seals_of(data[1]);
  unsigned grow = (data[1] >> 3) & 7;
  int read_reply = (data[1] >> 6) & 1;
  size_t reply_len = (size_t)data[2] * 64;
  const uint8_t *content = data + 3;
  size_t clen = size - 3 < fsize ? size - 3 : fsize;

  int fd = memfd_create("fuzz_shm_header", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  CHECK(fd >= 0);
  CHECK(ftruncate(fd, (off_t)fsize) == 0);
  CHECK(clen == 0 || pwrite(fd, content, clen, 0) == (ssize_t)clen);
  if (seals && fcntl(fd, F_ADD_SEALS, seals) != 0) {
    close(fd); /* a seal this kernel does not know */
    return 0;
  }
  int probe = dup(fd); /* the client's side of the file */
  CHECK(probe >= 0);

  svc__region r;
  int rc = svc__region_attach(&r, fd, max);
  CHECK(attach_code_ok(rc));
  if (rc < 0) {
    close(probe);
    return 0;
  }
  CHECK(r.base != NULL && r.mapped == fsize && r.mapped <= r.reserved);
  CHECK(r.max_payload <= max);
  CHECK(r.max_payload <= svc__region_hdr_of(&r)->max_payload);
  CHECK(seals & F_SEAL_SHRINK);

  if (grow) /* the client grew the region after the server mapped it */
    (void)ftruncate(probe, (off_t)(fsize << grow));

  svc__frame f;
  rc = svc__region_read_frame(&r, SVC__REGION_REQ, SVC__FRAME_REQUEST, &f);
  CHECK(read_code_ok(rc));
  if (rc == 0) {
    check_frame(&r, SVC__REGION_REQ, SVC__FRAME_REQUEST, &f);
    place_reply(&r, svc__frame_size(f.method_len, f.payload_len), reply_len);
  }
  if (read_reply) { /* a client reading a reply at an offset it was given */
    uint64_t off64;
    memcpy(&off64, r.base + 136, sizeof off64); /* line 2, any value */
    size_t off = (size_t)off64;
    rc = svc__region_read_frame(&r, off, SVC__FRAME_REPLY, &f);
    CHECK(read_code_ok(rc));
    if (rc == 0)
      check_frame(&r, off, SVC__FRAME_REPLY, &f);
  }
  CHECK(r.mapped <= r.reserved);
  svc__region_fini(&r);
  close(probe);
  return 0;
}

/* region.h — the shared-memory region of one shm:// connection: its layout,
 * creation (memfd, F_SEAL_SHRINK, fallocate), mapping into an address range
 * reserved once so pointers never move, growth in powers of two, and the
 * validated reads of frames the peer wrote. */
#ifndef SVC_REGION_H
#define SVC_REGION_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "frame.h"

#define SVC__REGION_MAGIC 0x47455253u /* "SREG" */
#define SVC__REGION_VERSION 1
#define SVC__CACHELINE 64

/* The header at offset 0. Each side writes only its own cache line, so a
 * spinning reader never contends with its own writes. */
typedef struct svc__region_hdr {
  /* line 0: written once by the client before it shares the region */
  uint32_t magic;
  uint32_t version;
  uint64_t max_payload; /* client's limit; the server uses min(its, this) */
  uint8_t pad0[SVC__CACHELINE - 16];
  /* line 1: written by the client when it goes to sleep */
  _Atomic uint32_t client_sleeping; /* 1: ring the doorbell on reply */
  uint8_t pad1[SVC__CACHELINE - 4];
  /* line 2: written by the server, rarely */
  _Atomic uint32_t server_sleeping; /* 1: ring the doorbell on request */
  _Atomic uint32_t closing;         /* 1: reconnect before the next call */
  uint8_t pad2[SVC__CACHELINE - 8];
  /* line 3: written by the server as it takes a call; read by the client
   * only when the server died. */
  _Atomic uint32_t taken_seq; /* = the request's sequence once read */
  uint8_t pad3[SVC__CACHELINE - 4];
} svc__region_hdr;

/* Messages travel in slots: a 32-bit sequence word, 4 reserved bytes, then
 * the frame, so the cache line a reader spins on also brings it the frame
 * header, method and first payload bytes (a 64-byte call moves two lines
 * each way, as a bare ping-pong does). The request slot is at
 * SVC__REGION_DATA; the reply slot follows the request, at an offset both
 * sides compute (svc__region_reply_slot). */
#define SVC__REGION_DATA ((size_t)sizeof(svc__region_hdr)) /* request slot */
#define SVC__SLOT_HDR 8
#define SVC__REGION_REQ (SVC__REGION_DATA + SVC__SLOT_HDR) /* request frame */

typedef struct svc__region {
  int fd;             /* the memfd; owned */
  uint8_t *base;      /* start of the reservation; never moves */
  size_t mapped;      /* bytes of the file mapped at base */
  size_t reserved;    /* bytes of address space reserved at base */
  size_t max_payload; /* largest payload either way */
} svc__region;

/* Largest region a connection with this payload limit may need. */
size_t svc__region_max_size(size_t max_payload);

/* Client: makes a one-page memfd region (sealed against shrinking, memory
 * reserved with fallocate), initialised and mapped. SVC_ENOMEM, SVC_ESYS. */
int svc__region_create(svc__region *r, size_t max_payload);

/* Server: adopts fd (ownership passes in, even on failure) after checking it
 * is sealed against shrinking, its size and the header's magic/version.
 * max_payload is the server's limit. SVC_EPROTO for a bad region. */
int svc__region_attach(svc__region *r, int fd, size_t max_payload);

/* Makes the region at least bytes long: grows the file to the next power of
 * two (fallocate, so running out of memory is SVC_ENOMEM here and never a
 * SIGBUS later) and maps it. SVC_ETOOBIG beyond svc__region_max_size. */
int svc__region_ensure(svc__region *r, size_t bytes);

/* Maps what the peer added to the file, if it now holds bytes; SVC_EPROTO if
 * the file is still smaller (the peer lied about a length). */
int svc__region_sync(svc__region *r, size_t bytes);

static inline svc__region_hdr *svc__region_hdr_of(const svc__region *r) {
  return (svc__region_hdr *)r->base;
}

/* Reads the frame the peer wrote at off: copies the header once, checks
 * type, lengths against max_payload and the mapping (syncing the mapping if
 * the peer grew it). f's pointers point into the region. SVC_EPROTO. */
int svc__region_read_frame(svc__region *r, size_t off, uint8_t want_type,
                           svc__frame *f);

/* Writes a frame header at off (the caller writes method/payload after it,
 * or has already). The region must hold the whole frame. */
void svc__region_write_header(svc__region *r, size_t off, const svc__frame *f);

/* Where the reply slot goes after a request frame of req_size bytes:
 * cache-line aligned after it (a zero-copy handler writes its reply while
 * it still reads the request). The reply frame is at slot + SVC__SLOT_HDR. */
static inline size_t svc__region_reply_slot(size_t req_size) {
  size_t end = SVC__REGION_REQ + req_size;
  return (end + SVC__CACHELINE - 1) & ~(size_t)(SVC__CACHELINE - 1);
}

/* The sequence word of the slot at off (the caller keeps off mapped). */
static inline _Atomic uint32_t *svc__region_seq(const svc__region *r,
                                                size_t off) {
  return (_Atomic uint32_t *)(void *)(r->base + off);
}

void svc__region_fini(svc__region *r);

#endif

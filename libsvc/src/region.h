/* region.h — the shared-memory region of one shm:// connection: its layout
 * (header, a ring of call slots, two lanes for large messages), creation
 * (memfd, F_SEAL_SHRINK, fallocate), mapping into an address range reserved
 * once so pointers never move, lane growth in powers of two, and the
 * validated reads of frames the peer wrote. */
#ifndef SVC_REGION_H
#define SVC_REGION_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "frame.h"

#define SVC__REGION_MAGIC 0x47455253u /* "SREG" */
#define SVC__REGION_VERSION 3
#define SVC__CACHELINE 64
#define SVC__RING_MAX 4096 /* most ring slots a region may have */

/* The header at offset 0. Each flag sits on a cache line of its own, so a
 * spinning reader never contends with unrelated writes. */
typedef struct svc__region_hdr {
  /* line 0: written once by the client before it shares the region */
  uint32_t magic;
  uint32_t version;
  uint64_t max_payload; /* client's limit; the server uses min(its, this) */
  uint32_t ring_slots;  /* slots in the ring: a power of two, 1..RING_MAX */
  uint8_t pad0[SVC__CACHELINE - 20];
  /* line 1: set by the client when it sleeps (or waits in an event loop);
   * the server clears it when it rings the doorbell. request_for and
   * request_eta_ns: the call whose large request the client is copying in,
   * and when it expects to be done (as reply_for below, the other way). */
  _Atomic uint32_t client_sleeping;
  _Atomic uint32_t request_for;
  _Atomic uint64_t request_eta_ns;
  uint8_t pad1[SVC__CACHELINE - 16];
  /* line 2: set by the server when it sleeps; the client clears it when it
   * rings. closing is the server's "reconnect before the next call". */
  _Atomic uint32_t server_sleeping;
  _Atomic uint32_t closing;
  uint8_t pad2[SVC__CACHELINE - 8];
  /* line 3: written by the server as it takes a call (calls are taken in
   * order); read by the client only when the server died. */
  _Atomic uint32_t taken_seq; /* sequence number of the last call taken */
  uint8_t pad3[SVC__CACHELINE - 4];
  /* line 4: the reply lanes' owners, one bit per lane. The server sets a
   * lane's bit when it writes a reply there; the client clears it when it
   * no longer reads that reply.
   * reply_for and reply_eta_ns, written by the server as it starts a large
   * reply: the call it is writing for, and when it expects to be done
   * (CLOCK_MONOTONIC ns). A waiting client spins on while they say its
   * reply is being copied, instead of sleeping through the copy. */
  _Atomic uint32_t reply_lane_busy;
  _Atomic uint32_t reply_for;
  _Atomic uint64_t reply_eta_ns;
  uint8_t pad4[SVC__CACHELINE - 16];
} svc__region_hdr;

/* The ring: ring_slots slots of SVC__SLOT_SIZE bytes from SVC__REGION_RING.
 * Call 1 uses slot 0, and each request names the slot of the call after it
 * (the same slot again for a caller that waits for each reply, so one
 * call after another touches the same cache lines; the next slot for calls
 * in flight). A slot is two halves, the request's and the reply's, each a
 * 32-bit sequence word, a 32-bit info word (bits 0-15 "where", bits 16-31
 * in a request: the next call's slot) and then the frame, so the cache
 * line a reader spins on also brings it the frame header, method and
 * first payload bytes (a 64-byte call moves two lines each way, as a bare
 * ping-pong does). A frame too large for its half goes to a lane instead
 * ("where" names which): requests to the request lanes, replies to the
 * reply lanes, one message per lane at a time, so up to lanes_for(slots)
 * large messages each way are in flight. Lane i of a direction has the
 * number 2i + direction (SVC__LANE_ID) and lies at that many lane sizes
 * after the ring. */
#define SVC__REGION_RING ((size_t)sizeof(svc__region_hdr))
#define SVC__SLOT_SIZE 512
#define SVC__SLOT_REQ 0                           /* request half */
#define SVC__SLOT_REP 256                         /* reply half */
#define SVC__SLOT_HDR 8                           /* u32 seq, u32 info */
#define SVC__SLOT_FRAME_MAX (256 - SVC__SLOT_HDR) /* largest inline frame */
#define SVC__WHERE_INLINE 0
#define SVC__WHERE_LANE 1 /* lane 0; lane i is kind 1 + i */
#define SVC__LANE_REQ 0   /* directions, and the numbers of their lane 0 */
#define SVC__LANE_REP 1
#define SVC__LANES_MAX 8 /* lanes per direction */
#define SVC__LANE_ID(dir, i) (2 * (i) + (dir))
#define SVC__LANE_INDEX(id) ((id) / 2) /* i of SVC__LANE_ID(dir, i) */

typedef struct svc__region {
  int fd;             /* the memfd; owned */
  uint8_t *base;      /* start of the reservation; never moves */
  size_t reserved;    /* bytes of address space reserved at base */
  size_t max_payload; /* largest payload either way */
  uint32_t slots;     /* ring slots */
  size_t ring_end;    /* header + ring, page aligned: always mapped */
  size_t lane_size;   /* bytes each lane may reach */
  uint32_t lanes;     /* lanes per direction: svc__region_lanes_for */
  size_t lane_mapped[2 * SVC__LANES_MAX]; /* by lane number: bytes mapped */
} svc__region;

/* Ring slots for a window of n calls: the power of two above n (room for
 * the reply handed out besides a full window), at most SVC__RING_MAX. */
uint32_t svc__region_slots_for(int window);

/* Lanes per direction for a ring of slots: half the slots (a caller that
 * waits for each reply needs one), at most SVC__LANES_MAX. Lanes cost
 * address space only until a message uses them. */
uint32_t svc__region_lanes_for(uint32_t slots);

/* Largest region a connection with these limits may need. */
size_t svc__region_max_size(size_t max_payload, uint32_t slots);

/* Client: makes a memfd region holding the header and the ring (sealed
 * against shrinking, memory reserved with fallocate), initialised and
 * mapped. SVC_ENOMEM, SVC_ESYS. */
int svc__region_create(svc__region *r, size_t max_payload, uint32_t slots);

/* Server: adopts fd (ownership passes in, even on failure) after checking it
 * is sealed against shrinking, its size and the header's magic, version and
 * ring size. max_payload is the server's limit. SVC_EPROTO for a bad
 * region. */
int svc__region_attach(svc__region *r, int fd, size_t max_payload);

/* Makes lane (a lane number, SVC__LANE_ID) hold at least bytes: grows the file
 * (fallocate, so running out of memory is SVC_ENOMEM here and never a SIGBUS
 * later) and maps that part of the lane in powers of two. SVC_ETOOBIG beyond
 * the lane's size. */
int svc__region_lane_ensure(svc__region *r, int lane, size_t bytes);

/* Start of a lane (its first bytes_mapped are usable). */
static inline uint8_t *svc__region_lane(const svc__region *r, int lane) {
  return r->base + r->ring_end + (size_t)lane * r->lane_size;
}

static inline svc__region_hdr *svc__region_hdr_of(const svc__region *r) {
  return (svc__region_hdr *)r->base;
}

/* Offset of slot k (taken modulo the ring size). */
static inline size_t svc__region_slot(const svc__region *r, uint32_t k) {
  return SVC__REGION_RING + (size_t)(k & (r->slots - 1)) * SVC__SLOT_SIZE;
}

/* The sequence word and the info word of a slot half at off. */
static inline _Atomic uint32_t *svc__region_seq(const svc__region *r,
                                                size_t off) {
  return (_Atomic uint32_t *)(void *)(r->base + off);
}
static inline uint32_t *svc__region_info(const svc__region *r, size_t off) {
  return (uint32_t *)(void *)(r->base + off + 4);
}
#define SVC__INFO(where, next) ((uint32_t)(where) | (uint32_t)(next) << 16)
#define SVC__INFO_WHERE(info) ((info)&0xffffu)
/* "where": bits 0-6 the kind (0 inline, 1 + i lane i of the frame's
 * direction), bits 7-15 the offset of the
 * frame in the lane (0..511: a request written in place starts after room
 * for the longest method, so that its payload's place does not depend on
 * it). */
#define SVC__WHERE_KIND(where) ((where)&0x7fu)
#define SVC__WHERE_OFF(where) ((where) >> 7)
#define SVC__WHERE_LANE_AT(off) (SVC__WHERE_LANE | (uint32_t)(off) << 7)
#define SVC__WHERE_LANE_N_AT(i, off)                                           \
  ((uint32_t)(1 + (i)) | (uint32_t)(off) << 7)
/* Where a request written in place has its payload, from the lane's start:
 * after room for the header and the longest method, cache-line aligned
 * (an unaligned payload made the caller's and the handler's copies of a
 * 1 MiB request slower than the library's own). */
#define SVC__PREPARED_AT ((size_t)320)
#define SVC__INFO_NEXT(info) ((info) >> 16)

/* Decodes the frame header the peer wrote at at, with room bytes for the
 * whole frame: one copy, which the peer may change as it is made (the
 * barrier keeps the compiler from reading the header again from shared
 * memory in place of the copy), then checked. SVC_EPROTO. */
static inline int svc__region_decode_at(const svc__region *r, const uint8_t *at,
                                        size_t room, uint8_t want_type,
                                        svc__frame *f) {
  uint8_t hdr[SVC__FRAME_HDR];
  memcpy(hdr, at, sizeof hdr);
  __asm__ __volatile__("" ::: "memory");
  if (svc__frame_decode_whole_header(hdr, r->max_payload, f) != 0 ||
      f->type != want_type ||
      svc__frame_size(f->method_len, f->payload_len) > room)
    return SVC_EPROTO;
  f->method = at + SVC__FRAME_HDR;
  f->payload = f->method + f->method_len;
  return 0;
}

/* svc__region_read_frame for a frame in a lane: where is the slot's
 * "where", as read once. */
int svc__region_read_lane_frame(svc__region *r, uint32_t where, int dir,
                                uint8_t want_type, svc__frame *f,
                                int *lane_out);

/* Reads the frame the peer put in the slot half at off: copies "where" and
 * the header once, checks type and lengths against max_payload and the
 * space (inline half, or the lane of direction dir it names, syncing the
 * lane's mapping when the peer grew it). f's pointers point into the
 * region; *lane_out (if not NULL) is the lane number, or -1 inline.
 * SVC_EPROTO. Inline: every call reads two frames. */
static inline int svc__region_read_frame(svc__region *r, size_t off, int dir,
                                         uint8_t want_type, svc__frame *f,
                                         int *lane_out) {
  /* A slot half inside the ring (written so that no sum can wrap). */
  if (off < SVC__REGION_RING ||
      off > r->ring_end - (SVC__SLOT_HDR + SVC__SLOT_FRAME_MAX) ||
      (off - SVC__REGION_RING) % (SVC__SLOT_SIZE / 2) != 0)
    return SVC_EPROTO;
  uint32_t where =
      SVC__INFO_WHERE(*(volatile uint32_t *)svc__region_info(r, off));
  if (where != SVC__WHERE_INLINE)
    return svc__region_read_lane_frame(r, where, dir, want_type, f, lane_out);
  if (lane_out)
    *lane_out = -1;
  return svc__region_decode_at(r, r->base + off + SVC__SLOT_HDR,
                               SVC__SLOT_FRAME_MAX, want_type, f);
}

void svc__region_fini(svc__region *r);

#endif

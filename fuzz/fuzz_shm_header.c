/* fuzz_shm_header.c — libFuzzer harness for the shared-memory region as a
 * server meets it: a memfd whose size, seals, header, ring slots and lanes
 * a hostile client chose, and which that client keeps changing. The region
 * is attached exactly as the server does (svc__region_attach), then the
 * harness serves the ring the way shm_serve does: for call 1, 2, ... while
 * the slot's request sequence word holds the expected number, it reads the
 * request (svc__region_read_frame(..., SVC__LANE_REQ, SVC__FRAME_REQUEST))
 * and places a reply as handle_request / shm_reply_alloc do (inline when it
 * fits, else in the reply lane grown with svc__region_lane_ensure), which a
 * second attach of the same file reads back as the client would
 * (svc__region_read_frame(..., SVC__LANE_REP, SVC__FRAME_REPLY)). The
 * client's side also posts calls the way shm_send does, so well-formed
 * calls can be checked to arrive intact.
 *
 * Input layout (fuzz/make_corpus.py writes the seeds):
 *   byte 0  bits 0-2 file size: 0 the ring (as svc__region_create makes
 *           it), 1 the ring less a page, 2 the largest region the header
 *           allows (svc__region_max_size), 3 that plus a page, 4 empty,
 *           5 100 bytes, 6 the ring plus one byte, 7 the ring plus 4 pages;
 *           bits 3-5 the server's max_payload (0, 64, 200, 224, 4096,
 *           65536, 1 MiB, 64 MiB)
 *   byte 1  bits 0-1 seals (SHRINK|SEAL as the client makes it, SHRINK,
 *           none, SHRINK|GROW); bit 2 adds F_SEAL_FUTURE_WRITE; bit 3
 *           leaves the reply words 0 (the client sets them to UINT32_MAX);
 *           bit 7 adds F_SEAL_WRITE
 *   byte 2  the handler's reply: 0xff echoes the request's payload, b < 0x80
 *           is 2*b bytes, else (b - 0x7f) KiB
 *   3..22   the header: u32 magic, u32 version, u64 max_payload,
 *           u32 ring_slots (little-endian; the rest of the header is 0)
 *   then records, each an op byte (kind = op & 7, flags = op >> 3) and its
 *   arguments (little-endian):
 *     0 POST   u32 seq, u8 method_len, u24 payload_len, u8 fill: the client
 *              posts call seq as shm_send does. Flags: 1 lie (a lane frame
 *              is not grown into; an inline one may claim more than the
 *              limit), 2 put it in the lane even if it fits inline, at
 *              the offset fill (1|2: a bogus "where" word), 4 call id
 *              seq + 1, 8 leave the sequence
 *              word alone, 16 a NUL in the method name
 *     1 RAW    u32 off, u8 len, len bytes: written at off (anywhere,
 *              header included), as a hostile client may at any time
 *     2 GROW   u8 pages: the file grows by that many pages (0: to one page
 *              past the largest region the header allows)
 *     3 SEAL   u8: adds F_SEAL_GROW, F_SEAL_FUTURE_WRITE, F_SEAL_WRITE or
 *              F_SEAL_SEAL (by the low 2 bits) now, after the attach
 *     4 PUNCH  u32 off, u16 pages: punches a hole in the file
 *     5, 6 SERVE: the server serves the calls posted so far
 *     7        nothing
 *   and the server serves once more at the end.
 *
 * Properties: no crash (a client can never make the server fault) and no
 * leak; attach returns 0 exactly when the file is well formed (or
 * SVC_ENOMEM), else SVC_EPROTO (or SVC_EPERM / SVC_ESYS), and its geometry
 * is the one region.h describes, identical for both attaches, with the
 * smaller max_payload; read_frame returns 0, SVC_EPROTO, SVC_ENOMEM,
 * SVC_EPERM or SVC_ESYS, and a request it returns is well formed, within
 * max_payload and lies wholly in its slot's inline half or in the mapped
 * part of the request lane (every byte is read to prove it); a call the
 * client posted correctly, with nothing hostile since, is read back intact;
 * a reply never overlaps the request, never needs more than the reply lane
 * holds, and the client reads it back intact (call id, status, payload). */
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "frame.h"
#include "internal.h"
#include "region.h"
#include "svc.h"

#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010
#endif
#ifndef FALLOC_FL_KEEP_SIZE
#define FALLOC_FL_KEEP_SIZE 0x01
#endif
#ifndef FALLOC_FL_PUNCH_HOLE
#define FALLOC_FL_PUNCH_HOLE 0x02
#endif

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "fuzz_shm_header: property failed at %s:%d: %s\n",       \
              __FILE__, __LINE__, #cond);                                      \
      abort();                                                                 \
    }                                                                          \
  } while (0)

#define MAX_RECORDS 512
#define SERVE_MAX 64          /* calls served per SERVE */
#define CALLS_MAX 256         /* calls served per input */
#define POSTED_MAX (32 << 20) /* payload bytes the client posts per input */

enum { OP_POST, OP_RAW, OP_GROW, OP_SEAL, OP_PUNCH, OP_SERVE, OP_SERVE2 };
/* P_LANE: in a lane (the call's number picks which), at the offset given
 * by the fill byte (a request written in place by svc_request_alloc sits
 * at an offset too). */
enum { P_LIE = 1, P_LANE = 2, P_BAD_ID = 4, P_UNPUBLISHED = 8, P_NUL = 16 };

static const size_t server_max[8] = {0,    64,    200,     224,
                                     4096, 65536, 1 << 20, SVC_DEFAULT_MAX_MSG};

/* What the client posted in a slot, to check the server reads it intact. */
typedef struct posted {
  int valid;
  uint32_t seq;
  uint32_t epoch; /* hostile acts before it: checked only if none since */
  uint32_t method_len, payload_len;
  uint8_t fill, nul, lane; /* lane: 1 + the request lane, or 0 inline */
} posted;

typedef struct state {
  svc__region r;  /* the server's */
  svc__region cv; /* the client's view (a second attach of the file) */
  int probe;      /* the client's fd for the file */
  size_t page;
  uint8_t reply_sel;
  uint32_t seq;   /* the server: the last call taken */
  uint32_t next;  /* the server: the slot the next call will be in */
  int dropped;    /* the server closed the connection */
  int calls;      /* served so far */
  uint32_t epoch; /* hostile acts so far */
  int late_seal;  /* a seal was tried after the attach: no strict checks */
  size_t posted_bytes;
  uint32_t lane_busy; /* the client: request lanes holding a call (bits) */
  uint32_t lane_seq[SVC__LANES_MAX]; /* ... which call */
  posted exp[SVC__RING_MAX];
} state;

static state st;

/* ---- the layout, as region.h describes it ---- */

static size_t page_align(size_t n, size_t page) {
  return (n + page - 1) & ~(page - 1);
}

static size_t ring_end_of(uint32_t slots, size_t page) {
  return page_align(SVC__REGION_RING + (size_t)slots * SVC__SLOT_SIZE, page);
}

static size_t lane_size_of(size_t max_payload, size_t page) {
  return page_align(svc__frame_size(SVC_METHOD_MAX, max_payload), page);
}

static int slots_ok(uint32_t n) {
  return n >= 1 && n <= SVC__RING_MAX && (n & (n - 1)) == 0;
}

static uint32_t get32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
         (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p) {
  return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
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

static size_t reply_len_of(uint8_t sel, size_t request_len) {
  if (sel == 0xff)
    return request_len;
  return sel < 0x80 ? (size_t)sel * 2 : (size_t)(sel - 0x7f) << 10;
}

static int read_code_ok(int rc) {
  return rc == 0 || rc == SVC_EPROTO || rc == SVC_ENOMEM || rc == SVC_EPERM ||
         rc == SVC_ESYS;
}

static uint8_t method_byte(uint32_t i, int nul) {
  return nul && i == 0 ? 0 : (uint8_t)('a' + i % 26);
}

static uint8_t payload_byte(uint8_t fill, size_t i) {
  return (uint8_t)(fill + i * 7);
}

static uint8_t reply_byte(uint32_t seq, size_t i) {
  return (uint8_t)(seq * 13 + i * 5);
}

static size_t file_size(int fd) {
  struct stat s;
  CHECK(fstat(fd, &s) == 0);
  return (size_t)s.st_size;
}

/* Lanes each way: half the ring slots, at least 1, at most LANES_MAX. */
static uint32_t lanes_of(uint32_t slots) {
  uint32_t n = slots / 2 < 1 ? 1 : slots / 2;
  return n > SVC__LANES_MAX ? SVC__LANES_MAX : n;
}

/* Both attaches compute the layout region.h describes. */
static void check_geometry(const svc__region *r, uint32_t slots,
                           uint64_t peer_max, size_t max) {
  size_t ring = ring_end_of(slots, st.page);
  size_t lane = lane_size_of((size_t)peer_max, st.page);
  CHECK(r->base != NULL);
  CHECK(r->slots == slots);
  CHECK(r->ring_end == ring);
  CHECK(r->lane_size == lane);
  uint32_t lanes = lanes_of(slots);
  CHECK(r->lanes == lanes);
  CHECK(r->reserved == ring + 2 * lanes * lane);
  CHECK(r->reserved == svc__region_max_size((size_t)peer_max, slots));
  CHECK(r->max_payload == (max < peer_max ? max : (size_t)peer_max));
  for (uint32_t i = 0; i < 2 * lanes; i++) {
    CHECK(r->lane_mapped[i] == 0);
    CHECK(svc__region_lane(r, (int)i) == r->base + ring + i * lane);
  }
}

/* ---- the client ---- */

static void hostile(void) { st.epoch++; }

/* Posts call seq as shm_send does (or, with flags, as a liar would). */
static void client_post(const uint8_t *a, uint8_t flags) {
  svc__region *cv = &st.cv;
  uint32_t seq = get32(a);
  uint32_t ml = a[4];
  uint32_t pl = (uint32_t)a[5] | (uint32_t)a[6] << 8 | (uint32_t)a[7] << 16;
  uint8_t fill = a[8];
  int lie = flags & P_LIE, nul = (flags & P_NUL) != 0;
  int bad = lie || (flags & P_BAD_ID) || ml == 0;
  if (pl > cv->max_payload && !lie)
    return; /* SVC_ETOOBIG to the caller; nothing is written */
  if (st.posted_bytes + pl > POSTED_MAX)
    return;
  st.posted_bytes += pl;
  size_t size = svc__frame_size(ml, pl);
  /* Call 1 is in slot 0 and each names the next slot: here, call s + 1 in
   * slot s, as a client with calls in flight does. */
  size_t half = svc__region_slot(cv, seq - 1) + SVC__SLOT_REQ;
  CHECK(half + SVC__SLOT_REP <= cv->ring_end);
  int lane = (flags & P_LANE) || size > SVC__SLOT_FRAME_MAX;
  uint32_t li = seq % cv->lanes; /* which request lane */
  int lane_id = SVC__LANE_ID(SVC__LANE_REQ, (int)li);
  size_t skip = flags & P_LANE ? fill : 0;
  uint32_t where = lane ? SVC__WHERE_LANE_N_AT(li, skip) : SVC__WHERE_INLINE;
  if ((flags & (P_LIE | P_LANE)) == (P_LIE | P_LANE)) /* no such lane */
    where = cv->lanes + 1 + fill % (0x7fu - cv->lanes);
  if (lane && !bad && (st.lane_busy & 1u << li))
    return; /* SVC_EAGAIN: one request per lane at a time */
  svc__frame f = {.type = SVC__FRAME_REQUEST,
                  .call_id = flags & P_BAD_ID ? seq + 1 : seq,
                  .method_len = ml,
                  .payload_len = pl};
  uint8_t hdr[SVC__FRAME_HDR + SVC_METHOD_MAX];
  svc__frame_encode_header(&f, hdr);
  for (uint32_t i = 0; i < ml; i++)
    hdr[SVC__FRAME_HDR + i] = method_byte(i, nul);
  if (lane && lie) {
    /* Claims the frame is in the lane without growing it: only the header
     * and method are written, through the file (which pwrite may extend). */
    (void)!pwrite(st.probe, hdr, SVC__FRAME_HDR + ml,
                  (off_t)(svc__region_lane(cv, lane_id) - cv->base));
  } else {
    uint8_t *at = cv->base + half + SVC__SLOT_HDR;
    if (lane) {
      int rc = svc__region_lane_ensure(cv, lane_id, skip + size);
      CHECK(rc != SVC_ETOOBIG); /* the lane holds any frame within the limit */
      if (rc < 0)
        return; /* a late seal, or out of memory */
      CHECK(skip + size <= cv->lane_mapped[lane_id]);
      at = svc__region_lane(cv, lane_id) + skip;
    } /* else inline: size <= SVC__SLOT_FRAME_MAX */
    memcpy(at, hdr, SVC__FRAME_HDR + ml);
    for (size_t i = 0; i < pl; i++)
      at[SVC__FRAME_HDR + ml + i] = payload_byte(fill, i);
  }
  *svc__region_info(cv, half) = SVC__INFO(where, seq);
  if (!(flags & P_UNPUBLISHED))
    atomic_store(svc__region_seq(cv, half), seq);
  if (bad)
    hostile();
  posted *e = &st.exp[seq & (cv->slots - 1)];
  if (e->valid && e->lane && (st.lane_busy & 1u << (e->lane - 1)) &&
      st.lane_seq[e->lane - 1] == e->seq) /* overwritten: never served */
    st.lane_busy &= ~(1u << (e->lane - 1));
  *e = (posted){.valid = !bad,
                .seq = seq,
                .epoch = st.epoch,
                .method_len = ml,
                .payload_len = pl,
                .fill = fill,
                .nul = (uint8_t)nul,
                .lane = (uint8_t)(lane ? li + 1 : 0)};
  if (lane && !bad) {
    st.lane_busy |= 1u << li;
    st.lane_seq[li] = seq;
  }
}

/* The client receives the reply to seq as shm_recv does and checks it is
 * the one the server wrote (out: the payload, through the server's view). */
static void client_read(uint32_t seq, size_t off, int32_t status, size_t len,
                        uint32_t where, const uint8_t *out,
                        const uint8_t *echo) {
  svc__region *cv = &st.cv;
  CHECK(atomic_load(svc__region_seq(cv, off)) == seq);
  CHECK(SVC__INFO_WHERE(*(volatile uint32_t *)svc__region_info(cv, off)) ==
        where);
  svc__frame f;
  int rc = svc__region_read_frame(cv, off, SVC__LANE_REP, SVC__FRAME_REPLY, &f,
                                  NULL);
  CHECK(rc == 0 || rc == SVC_ENOMEM);
  if (rc == 0) {
    CHECK(f.type == SVC__FRAME_REPLY && f.flags == 0 && f.method_len == 0);
    CHECK(f.call_id == seq);
    CHECK(f.status == status);
    CHECK(f.payload_len == len);
    if (where != SVC__WHERE_INLINE) {
      int id = SVC__LANE_ID(SVC__LANE_REP, (int)SVC__WHERE_KIND(where) - 1);
      CHECK(SVC__WHERE_OFF(where) == 0);
      CHECK(f.payload == svc__region_lane(cv, id) + SVC__FRAME_HDR);
      CHECK(SVC__FRAME_HDR + len <= cv->lane_mapped[id]);
    } else {
      CHECK(f.payload == cv->base + off + SVC__SLOT_HDR + SVC__FRAME_HDR);
      CHECK(SVC__FRAME_HDR + len <= SVC__SLOT_FRAME_MAX);
    }
    if (len) {
      CHECK(memcmp(f.payload, out, len) == 0);
      if (echo)
        CHECK(memcmp(f.payload, echo, len) == 0);
      else
        for (size_t i = 0; i < len; i++)
          CHECK(f.payload[i] == reply_byte(seq, i));
    }
  }
  if (where != SVC__WHERE_INLINE) /* shm_release */
    atomic_fetch_and(&svc__region_hdr_of(cv)->reply_lane_busy,
                     ~(1u << (SVC__WHERE_KIND(where) - 1)));
  for (uint32_t i = 0; i < cv->lanes; i++)
    if ((st.lane_busy & 1u << i) && st.lane_seq[i] == seq)
      st.lane_busy &= ~(1u << i); /* the server is done with the request */
}

/* ---- the server ---- */

/* Checks a request read_frame returned and reads every byte of it (a byte
 * outside the mapping faults here). Returns the frame's first byte. */
static const uint8_t *check_request(const svc__region *r, size_t half,
                                    uint32_t seq, const svc__frame *f) {
  CHECK(f->type == SVC__FRAME_REQUEST && f->flags == 0 && f->status == 0);
  CHECK(f->method_len >= 1 && f->method_len <= SVC_METHOD_MAX);
  CHECK(f->payload_len <= r->max_payload);
  CHECK(f->call_id == seq);
  size_t size = svc__frame_size(f->method_len, f->payload_len);
  const uint8_t *start = f->method - SVC__FRAME_HDR;
  CHECK(f->payload == f->method + f->method_len);
  uint32_t where =
      SVC__INFO_WHERE(*(volatile uint32_t *)svc__region_info(r, half));
  if (start == r->base + half + SVC__SLOT_HDR) {
    CHECK(where == SVC__WHERE_INLINE);
    CHECK(size <= SVC__SLOT_FRAME_MAX);
    CHECK(half + SVC__SLOT_HDR + size <= r->ring_end);
  } else {
    uint32_t kind = SVC__WHERE_KIND(where);
    CHECK(kind >= 1 && kind <= r->lanes);
    int id = SVC__LANE_ID(SVC__LANE_REQ, (int)kind - 1);
    CHECK(start == svc__region_lane(r, id) + SVC__WHERE_OFF(where));
    CHECK(SVC__WHERE_OFF(where) + size <= r->lane_mapped[id]);
    CHECK(r->lane_mapped[id] <= r->lane_size);
  }
  volatile unsigned sum = 0;
  for (size_t i = 0; i < size; i++)
    sum += ((volatile const uint8_t *)start)[i];
  (void)sum;
  return start;
}

static int overlap(const uint8_t *a, size_t alen, const uint8_t *b,
                   size_t blen) {
  return a < b + blen && b < a + alen;
}

/* Takes call seq from its slot and answers it, as handle_request does with
 * a handler that replies reply_len bytes (or echoes). */
static void handle_request(uint32_t seq) {
  svc__region *r = &st.r;
  svc__region_hdr *h = svc__region_hdr_of(r);
  size_t slot = svc__region_slot(r, st.next);
  size_t req = slot + SVC__SLOT_REQ, rep = slot + SVC__SLOT_REP;
  atomic_store_explicit(&h->taken_seq, seq, memory_order_relaxed);
  st.next = SVC__INFO_NEXT(*(volatile uint32_t *)svc__region_info(r, req));
  svc__frame f;
  int rc = svc__region_read_frame(r, req, SVC__LANE_REQ, SVC__FRAME_REQUEST, &f,
                                  NULL);
  CHECK(read_code_ok(rc));
  const posted *e = &st.exp[seq & (r->slots - 1)];
  int strict =
      e->valid && e->seq == seq && e->epoch == st.epoch && !st.late_seal;
  if (strict) /* a call posted correctly, nothing hostile since */
    CHECK(rc == 0 || rc == SVC_ENOMEM);
  if (rc < 0 || f.call_id != seq) {
    st.dropped = 1; /* SVC_EPROTO: the server closes the connection */
    return;
  }
  const uint8_t *start = check_request(r, req, seq, &f);
  size_t size = svc__frame_size(f.method_len, f.payload_len);
  if (strict) {
    CHECK(f.method_len == e->method_len && f.payload_len == e->payload_len);
    CHECK((start != r->base + req + SVC__SLOT_HDR) == (e->lane != 0));
    if (e->lane)
      CHECK(SVC__WHERE_KIND(SVC__INFO_WHERE(
                *(volatile uint32_t *)svc__region_info(r, req))) == e->lane);
    for (uint32_t i = 0; i < f.method_len; i++)
      CHECK(f.method[i] == method_byte(i, e->nul));
    for (size_t i = 0; i < f.payload_len; i++)
      CHECK(f.payload[i] == payload_byte(e->fill, i));
  }

  /* svc__run_request, the handler and shm_reply_alloc */
  int32_t status = 0;
  size_t len = 0;
  uint32_t where = SVC__WHERE_INLINE;
  int owned = -1; /* the reply lane taken */
  uint8_t *out = NULL;
  int echo = st.reply_sel == 0xff;
  if (memchr(f.method, 0, f.method_len)) {
    status = SVC_ENOMETHOD;
  } else {
    len = reply_len_of(st.reply_sel, f.payload_len);
    if (len > r->max_payload) {
      status = SVC_ETOOBIG;
    } else if (SVC__FRAME_HDR + len <= SVC__SLOT_FRAME_MAX) {
      out = r->base + rep + SVC__SLOT_HDR + SVC__FRAME_HDR;
    } else {
      uint32_t all = (1u << r->lanes) - 1;
      uint32_t busy = atomic_load(&h->reply_lane_busy);
      if ((busy & all) == all) {
        /* The client holds every reply lane: the server would wait until
         * it lets go of one or dies. Either way this connection is done. */
        st.dropped = 1;
        return;
      }
      owned = __builtin_ctz(~busy & all);
      atomic_fetch_or(&h->reply_lane_busy, 1u << owned);
      int id = SVC__LANE_ID(SVC__LANE_REP, owned);
      rc = svc__region_lane_ensure(r, id, SVC__FRAME_HDR + len);
      CHECK(rc == 0 || rc == SVC_ENOMEM || rc == SVC_EPERM || rc == SVC_ESYS);
      if (rc < 0) {
        status = SVC_ENOMEM;
      } else {
        CHECK(SVC__FRAME_HDR + len <= r->lane_mapped[id]);
        CHECK(r->lane_mapped[id] <= r->lane_size);
        out = svc__region_lane(r, id) + SVC__FRAME_HDR;
        where = SVC__WHERE_LANE_N_AT(owned, 0);
      }
    }
    if (out) {
      /* The handler reads the request while it writes the reply. */
      CHECK(!overlap(out - SVC__FRAME_HDR, SVC__FRAME_HDR + len, start, size));
      if (echo)
        memcpy(out, f.payload, len);
      else
        for (size_t i = 0; i < len; i++)
          out[i] = reply_byte(seq, i);
    }
  }
  if (status != 0) {
    len = 0;
    where = SVC__WHERE_INLINE;
  }
  if (owned >= 0 && where == SVC__WHERE_INLINE) /* taken, then not used */
    atomic_fetch_and(&h->reply_lane_busy, ~(1u << owned));
  svc__frame o = {.type = SVC__FRAME_REPLY,
                  .call_id = seq,
                  .status = status,
                  .payload_len = (uint32_t)len};
  uint8_t *at = where != SVC__WHERE_INLINE
                    ? svc__region_lane(r, SVC__LANE_ID(SVC__LANE_REP, owned))
                    : r->base + rep + SVC__SLOT_HDR;
  svc__frame_encode_header(&o, at);
  *svc__region_info(r, rep) = SVC__INFO(where, 0);
  atomic_store(svc__region_seq(r, rep), seq);
  client_read(seq, rep, status, len, where, out, echo ? f.payload : NULL);
}

/* shm_serve's loop: calls are taken in order, each posted when its slot's
 * request word holds its number. */
static void serve(void) {
  svc__region *r = &st.r;
  for (int n = 0; n < SERVE_MAX && !st.dropped && st.calls < CALLS_MAX; n++) {
    uint32_t next = st.seq + 1;
    size_t slot = svc__region_slot(r, st.next);
    CHECK(slot >= SVC__REGION_RING && slot + SVC__SLOT_SIZE <= r->ring_end);
    CHECK((slot - SVC__REGION_RING) % SVC__SLOT_SIZE == 0);
    uint32_t cur = atomic_load_explicit(
        svc__region_seq(r, slot + SVC__SLOT_REQ), memory_order_acquire);
    if (cur != next)
      return; /* idle: the server polls again */
    st.seq = next;
    st.calls++;
    handle_request(next);
  }
}

/* ---- the input ---- */

static size_t file_size_for(uint8_t sel, size_t ring, size_t max_size,
                            size_t page) {
  switch (sel & 7) {
  case 0:
    return ring;
  case 1:
    return ring - page;
  case 2:
    return max_size;
  case 3:
    return max_size + page;
  case 4:
    return 0;
  case 5:
    return 100;
  case 6:
    return ring + 1;
  default:
    return ring + 4 * page;
  }
}

/* Writes the header and the ring as the client makes them. */
static void write_image(int fd, const uint8_t *hdr20, uint32_t slots,
                        int ring_ok, int reply_words, size_t ring,
                        size_t fsize) {
  size_t n = ring < fsize ? ring : fsize;
  if (n == 0)
    return;
  uint8_t *img = calloc(1, n);
  CHECK(img != NULL);
  memcpy(img, hdr20, n < 20 ? n : 20);
  if (ring_ok && reply_words)
    for (uint32_t i = 0; i < slots; i++) {
      size_t off =
          SVC__REGION_RING + (size_t)i * SVC__SLOT_SIZE + SVC__SLOT_REP;
      if (off + 4 <= n)
        memset(img + off, 0xff, 4);
    }
  CHECK(pwrite(fd, img, n, 0) == (ssize_t)n);
  free(img);
}

/* One record; returns the bytes it used, or 0 at the end of the input. */
static size_t run_record(const uint8_t *p, size_t left) {
  uint8_t op = p[0], kind = op & 7, flags = op >> 3;
  const uint8_t *a = p + 1;
  size_t span = st.r.reserved + st.page;
  switch (kind) {
  case OP_POST:
    if (left < 10)
      return 0;
    if (!st.dropped)
      client_post(a, flags);
    return 10;
  case OP_RAW: {
    if (left < 6 || left < 6 + (size_t)a[4])
      return 0;
    size_t off = get32(a) % span;
    (void)!pwrite(st.probe, a + 5, a[4], (off_t)off);
    hostile();
    return 6 + a[4];
  }
  case OP_GROW: {
    if (left < 2)
      return 0;
    size_t cur = file_size(st.probe);
    size_t to = a[0] ? cur + a[0] * st.page : st.r.reserved + st.page;
    if (to > cur)
      (void)!ftruncate(st.probe, (off_t)to);
    return 2;
  }
  case OP_SEAL: {
    if (left < 2)
      return 0;
    static const int seal[4] = {F_SEAL_GROW, F_SEAL_FUTURE_WRITE, F_SEAL_WRITE,
                                F_SEAL_SEAL};
    (void)fcntl(st.probe, F_ADD_SEALS, seal[a[0] & 3]);
    hostile();
    st.late_seal = 1; /* a mapping either side makes from now on may fail */
    return 2;
  }
  case OP_PUNCH: {
    if (left < 7)
      return 0;
    size_t off = (get32(a) % span) & ~(st.page - 1);
    size_t len = ((size_t)a[4] | (size_t)a[5] << 8) * st.page;
    if (len)
      (void)fallocate(st.probe, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                      (off_t)off, (off_t)len);
    hostile();
    return 7;
  }
  case OP_SERVE:
  case OP_SERVE2:
    serve();
    return 1;
  default:
    return 1;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 23)
    return 0;
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  const uint8_t *hdr20 = data + 3;
  uint32_t magic = get32(hdr20), version = get32(hdr20 + 4);
  uint64_t peer_max = get64(hdr20 + 8);
  uint32_t slots = get32(hdr20 + 16);
  int ring_ok = slots_ok(slots);
  int peer_ok = peer_max > 0 && peer_max <= SVC__MAX_MSG_LIMIT;
  size_t ring = ring_end_of(ring_ok ? slots : 1, page);
  size_t max_size =
      ring + 2 * (size_t)lanes_of(ring_ok ? slots : 1) *
                 lane_size_of(peer_ok ? (size_t)peer_max : 0, page);
  size_t fsize = file_size_for(data[0], ring, max_size, page);
  size_t max = server_max[(data[0] >> 3) & 7];
  int seals = seals_of(data[1]);

  int fd = memfd_create("fuzz_shm_header", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  CHECK(fd >= 0);
  CHECK(ftruncate(fd, (off_t)fsize) == 0);
  write_image(fd, hdr20, slots, ring_ok, !(data[1] & 8), ring, fsize);
  if (seals && fcntl(fd, F_ADD_SEALS, seals) != 0) {
    close(fd); /* a seal this kernel does not know */
    return 0;
  }
  memset(&st, 0, sizeof st);
  st.page = page;
  st.reply_sel = data[2];
  st.probe = dup(fd); /* the client's side of the file */
  CHECK(st.probe >= 0);

  int seals_good =
      (seals & F_SEAL_SHRINK) && (seals & F_SEAL_SEAL) &&
      !(seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE | F_SEAL_GROW));
  int well_formed = seals_good && fsize >= page && fsize % page == 0 &&
                    magic == SVC__REGION_MAGIC &&
                    version == SVC__REGION_VERSION && ring_ok && peer_ok &&
                    fsize >= ring && fsize <= max_size;
  int rc = svc__region_attach(&st.r, fd, max);
  CHECK(rc == 0 || rc == SVC_EPROTO || rc == SVC_ENOMEM || rc == SVC_EPERM ||
        rc == SVC_ESYS);
  if (well_formed)
    CHECK(rc == 0 || rc == SVC_ENOMEM);
  else
    CHECK(rc != 0);
  if (rc < 0) {
    CHECK(st.r.fd == -1 && st.r.base == NULL); /* fd closed, nothing mapped */
    close(st.probe);
    return 0;
  }
  check_geometry(&st.r, slots, peer_max, max);

  /* The client's view: the same file attached again, as the client's own
   * region would map it (its limit after the handshake is the smaller). */
  int cfd = dup(st.probe);
  CHECK(cfd >= 0);
  rc = svc__region_attach(&st.cv, cfd, max);
  CHECK(rc == 0 || rc == SVC_ENOMEM);
  if (rc < 0) {
    svc__region_fini(&st.r);
    close(st.probe);
    return 0;
  }
  check_geometry(&st.cv, slots, peer_max, max);

  const uint8_t *p = data + 23, *end = data + size;
  for (int n = 0; n < MAX_RECORDS && p < end; n++) {
    size_t used = run_record(p, (size_t)(end - p));
    if (used == 0)
      break;
    p += used;
  }
  serve();

  for (int lane = 0; lane < 2; lane++) {
    CHECK(st.r.lane_mapped[lane] <= st.r.lane_size);
    CHECK(st.cv.lane_mapped[lane] <= st.cv.lane_size);
  }
  CHECK(st.r.slots == slots && st.r.base != NULL);
  svc__region_fini(&st.cv);
  svc__region_fini(&st.r);
  close(st.probe);
  return 0;
}

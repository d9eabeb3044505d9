/* fuzz_frame.c — libFuzzer harness for the stream frame decoder (frame.c),
 * driven the way a stream transport reads: bytes arrive in chunks of arbitrary
 * size, are appended to a buffer, decoded, and whole frames are consumed.
 * Checks properties, not only crashes; a violated property aborts.
 *
 * Input layout (see fuzz/make_corpus.py):
 *   byte 0      max_payload selector (low 3 bits) | round-trip count (high)
 *   bytes 1..8  chunk-size schedule, cycled
 *   bytes 9..   the byte stream; it also seeds the frames that are encoded
 *               and decoded again for the round-trip properties.
 *
 * Properties:
 *  - svc__frame_decode returns a total size, 0 ("need more") or SVC_EPROTO;
 *    nothing else.
 *  - a decoded frame fits in the bytes available; method and payload point
 *    inside the buffer, right after the header; lengths obey the limits and
 *    the per-type rules; flags are 0.
 *  - "need more" only when the header or the frame really is incomplete;
 *    with a whole header, f then holds it (the stream reader sizes its
 *    buffer from f's lengths); a partial header is rejected at once when
 *    its first bytes are not "SVC1" and the version.
 *  - chunking does not matter: the chunked reader sees exactly the frames
 *    (and the same final error or pending tail) as one decode pass over the
 *    whole stream.
 *  - re-encoding a decoded header gives the same 24 bytes.
 *  - decode(encode(f)) == f for frames built from the input, and a header is
 *    accepted exactly when an independent statement of the rules says so;
 *    every strict prefix of a valid frame is "need more". */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "svc.h"

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "fuzz_frame: property failed at %s:%d: %s\n", __FILE__,  \
              __LINE__, #cond);                                                \
      abort();                                                                 \
    }                                                                          \
  } while (0)

#define SCHED_LEN 8

static const size_t max_payloads[8] = {
    0, 1, 64, 4096, 65536, SVC_DEFAULT_MAX_MSG, (size_t)UINT32_MAX, SIZE_MAX};

static uint32_t get32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
         (uint32_t)p[3] << 24;
}

/* Chunk sizes: mostly small (1..200) so partial headers are common, some
 * large (256..14336) so several frames arrive at once. */
static size_t chunk_size(const uint8_t *sched, size_t i) {
  uint8_t c = sched[i % SCHED_LEN];
  return c < 200 ? (size_t)c + 1 : (size_t)(c - 199) * 256;
}

/* The header rules, stated independently of frame.c. */
static int header_valid(const svc__frame *f, size_t max_payload) {
  if (f->flags != 0 || f->payload_len > max_payload)
    return 0;
  switch (f->type) {
  case SVC__FRAME_REQUEST:
    return f->method_len >= 1 && f->method_len <= SVC_METHOD_MAX &&
           f->status == 0;
  case SVC__FRAME_REPLY:
    return f->method_len == 0;
  case SVC__FRAME_GOAWAY:
    return f->method_len == 0 && f->payload_len == 0;
  default:
    return 0;
  }
}

static int same_header(const svc__frame *a, const svc__frame *b) {
  return a->type == b->type && a->flags == b->flags &&
         a->call_id == b->call_id && a->status == b->status &&
         a->method_len == b->method_len && a->payload_len == b->payload_len;
}

/* Everything that must hold for a frame decode() returned from buf[0..len). */
static void check_frame(const uint8_t *buf, size_t len, size_t max_payload,
                        long rc, const svc__frame *f) {
  CHECK(rc >= SVC__FRAME_HDR);
  size_t total = (size_t)rc;
  CHECK(total <= len);
  CHECK(f->method_len <= SVC_METHOD_MAX);
  CHECK(f->payload_len <= max_payload);
  CHECK(total == svc__frame_size(f->method_len, f->payload_len));
  CHECK(f->method == buf + SVC__FRAME_HDR);
  CHECK(f->payload == f->method + f->method_len);
  CHECK(f->payload + f->payload_len == buf + total);
  CHECK(header_valid(f, max_payload));
  uint8_t again[SVC__FRAME_HDR];
  svc__frame_encode_header(f, again);
  CHECK(memcmp(again, buf, SVC__FRAME_HDR) == 0);
  /* the header decoder agrees with the frame decoder */
  svc__frame h;
  CHECK(svc__frame_decode_header(buf, len, max_payload, &h) == 0);
  CHECK(same_header(&h, f));
}

/* 1 if the first len (< 24) bytes could start a header: the decoder answers
 * "need more" for those and rejects anything else at once. */
static int header_prefix_ok(const uint8_t *buf, size_t len) {
  static const uint8_t prefix[5] = {'S', 'V', 'C', '1', SVC__FRAME_VERSION};
  return len == 0 || memcmp(buf, prefix, len < 5 ? len : 5) == 0;
}

/* Everything that must hold when decode() said "need more" or SVC_EPROTO. */
static void check_no_frame(const uint8_t *buf, size_t len, size_t max_payload,
                           long rc, const svc__frame *f) {
  svc__frame h;
  int hrc = svc__frame_decode_header(buf, len, max_payload, &h);
  if (rc == 0) {
    if (len >= SVC__FRAME_HDR) {
      CHECK(hrc == 0);
      CHECK(svc__frame_size(h.method_len, h.payload_len) > len);
      /* transport_stream.c sizes its buffer from these: they must be the
       * validated header's */
      CHECK(same_header(f, &h));
    } else {
      CHECK(hrc == 1);
      CHECK(header_prefix_ok(buf, len));
    }
  } else {
    CHECK(rc == SVC_EPROTO);
    CHECK(hrc == SVC_EPROTO);
    if (len < SVC__FRAME_HDR) /* early reject */
      CHECK(!header_prefix_ok(buf, len));
  }
}

/* Decodes in a buffer of exactly len bytes so ASan sees any overread. */
static long decode_exact(const uint8_t *src, size_t len, size_t max_payload,
                         svc__frame *f, uint8_t **copy) {
  *copy = malloc(len ? len : 1);
  CHECK(*copy != NULL);
  if (len)
    memcpy(*copy, src, len);
  long rc = svc__frame_decode(*copy, len, max_payload, f);
  CHECK(rc >= 0 || rc == SVC_EPROTO);
  if (rc > 0)
    check_frame(*copy, len, max_payload, rc, f);
  else
    check_no_frame(*copy, len, max_payload, rc, f);
  return rc;
}

struct ref_frame {
  size_t off;   /* offset in the stream */
  size_t total; /* encoded size */
  svc__frame f; /* header fields (pointers not used) */
};

/* One pass over the whole stream: the reference the chunked reader must
 * match. ref has room for n / SVC__FRAME_HDR + 1 frames. Returns the number
 * of frames; *end_rc and *end_off say how the pass ended (0: ran out of
 * bytes at end_off; SVC_EPROTO: malformed frame at end_off). */
static size_t decode_whole(const uint8_t *s, size_t n, size_t max_payload,
                           struct ref_frame *ref, long *end_rc,
                           size_t *end_off) {
  size_t off = 0, count = 0;
  for (;;) {
    svc__frame f;
    uint8_t *copy;
    long rc = decode_exact(s + off, n - off, max_payload, &f, &copy);
    free(copy);
    if (rc <= 0) {
      *end_rc = rc;
      *end_off = off;
      return count;
    }
    ref[count].off = off;
    ref[count].total = (size_t)rc;
    ref[count].f = f;
    count++;
    off += (size_t)rc;
  }
}

/* The stream reader: append a chunk, decode while frames are complete,
 * consume each by moving the tail to the front, stop at the first error.
 * It must see exactly the reference's frames and end the same way. */
static void decode_chunked(const uint8_t *s, size_t n, const uint8_t *sched,
                           size_t max_payload, const struct ref_frame *ref,
                           size_t nref, long end_rc, size_t end_off) {
  uint8_t *buf = malloc(n ? n : 1);
  CHECK(buf != NULL);
  size_t fed = 0, have = 0, consumed = 0, seen = 0, chunk = 0;
  long rc = 0;
  while (fed < n && rc >= 0) {
    size_t k = chunk_size(sched, chunk++);
    if (k > n - fed)
      k = n - fed;
    memcpy(buf + have, s + fed, k);
    fed += k;
    have += k;
    for (;;) {
      svc__frame f;
      uint8_t *copy;
      rc = decode_exact(buf, have, max_payload, &f, &copy);
      if (rc > 0) {
        CHECK(seen < nref);
        const struct ref_frame *r = &ref[seen];
        CHECK(consumed == r->off);
        CHECK((size_t)rc == r->total);
        CHECK(same_header(&f, &r->f));
        CHECK(memcmp(f.method, s + r->off + SVC__FRAME_HDR,
                     (size_t)rc - SVC__FRAME_HDR) == 0);
      }
      free(copy);
      if (rc <= 0)
        break;
      seen++;
      consumed += (size_t)rc;
      have -= (size_t)rc;
      memmove(buf, buf + rc, have);
    }
  }
  CHECK(seen == nref);
  CHECK(consumed == end_off);
  CHECK(rc == end_rc);
  CHECK(rc < 0 || consumed + have == n);
  free(buf);
}

/* Builds a frame from the input (fields and contents), encodes it, and
 * checks that decoding gives it back, or SVC_EPROTO when the rules say the
 * header is invalid. Lengths come in two forms: any 32-bit value for the
 * header alone, and a small one for whole frames. */
static void round_trip(const uint8_t *in, size_t n, size_t max_payload) {
  if (n < 20)
    return;
  svc__frame f;
  memset(&f, 0, sizeof f);
  f.type = in[0] % 5; /* 0 and 4 are invalid types */
  f.flags = in[1] < 0xf0 ? 0 : in[1];
  f.call_id = get32(in + 2);
  f.status = (int32_t)get32(in + 6);
  if (f.type == SVC__FRAME_REQUEST && in[1] < 0x80)
    f.status = 0; /* mostly valid requests */
  f.method_len = get32(in + 10);
  f.payload_len = get32(in + 14);
  if (in[18] & 1) { /* small lengths: whole frames */
    f.method_len %= SVC_METHOD_MAX + 3;
    f.payload_len %= 1024;
  }
  if (f.type != SVC__FRAME_REQUEST && (in[18] & 2))
    f.method_len = 0;
  if (f.type == SVC__FRAME_GOAWAY && (in[18] & 4))
    f.payload_len = 0;

  uint8_t hdr[SVC__FRAME_HDR];
  svc__frame_encode_header(&f, hdr);
  CHECK(get32(hdr) == SVC__FRAME_MAGIC);
  svc__frame g;
  int hrc = svc__frame_decode_header(hdr, sizeof hdr, max_payload, &g);
  int valid = header_valid(&f, max_payload);
  CHECK(hrc == (valid ? 0 : SVC_EPROTO));
  if (!valid)
    return;
  CHECK(same_header(&f, &g));
  CHECK(g.method == NULL && g.payload == NULL);

  size_t total = svc__frame_size(f.method_len, f.payload_len);
  if (total > SVC__FRAME_HDR + SVC_METHOD_MAX + 1024)
    return; /* too big to build: the header round trip is enough */
  uint8_t *buf = malloc(total);
  CHECK(buf != NULL);
  memcpy(buf, hdr, SVC__FRAME_HDR);
  for (size_t i = SVC__FRAME_HDR; i < total; i++)
    buf[i] = in[19 + (i % (n - 19))];
  svc__frame d;
  long rc = svc__frame_decode(buf, total, max_payload, &d);
  CHECK(rc > 0 && (size_t)rc == total);
  CHECK(same_header(&f, &d));
  CHECK(d.method == buf + SVC__FRAME_HDR);
  CHECK(d.payload == buf + SVC__FRAME_HDR + f.method_len);
  /* strict prefixes need more: one picked by the input (in an exact-size
   * buffer, so ASan sees overreads) and the longest */
  size_t cut = in[19] % total;
  uint8_t *copy;
  CHECK(decode_exact(buf, cut, max_payload, &d, &copy) == 0);
  free(copy);
  CHECK(svc__frame_decode(buf, total - 1, max_payload, &d) == 0);
  free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1 + SCHED_LEN)
    return 0;
  size_t max_payload = max_payloads[data[0] & 7];
  const uint8_t *sched = data + 1;
  const uint8_t *s = data + 1 + SCHED_LEN;
  size_t n = size - 1 - SCHED_LEN;

  long end_rc;
  size_t end_off;
  struct ref_frame *ref = malloc((n / SVC__FRAME_HDR + 1) * sizeof *ref);
  CHECK(ref != NULL);
  size_t nref = decode_whole(s, n, max_payload, ref, &end_rc, &end_off);
  decode_chunked(s, n, sched, max_payload, ref, nref, end_rc, end_off);
  free(ref);

  /* round trips: frames built from successive 20-byte windows */
  size_t trips = 1 + (data[0] >> 6);
  for (size_t i = 0; i < trips && i * 20 < n; i++)
    round_trip(s + i * 20, n - i * 20, max_payload);
  return 0;
}

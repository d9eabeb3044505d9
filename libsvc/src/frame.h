/* frame.h — the wire frame: a fixed 24-byte little-endian header followed by
 * the method name and the payload. The only code that knows the byte layout;
 * every transport (shm included) encodes and decodes through it. */
#ifndef SVC_FRAME_H
#define SVC_FRAME_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "svc.h"

#define SVC__FRAME_MAGIC 0x31435653u /* "SVC1" read little-endian */
#define SVC__FRAME_VERSION 1
#define SVC__FRAME_HDR 24

enum svc__frame_type {
  SVC__FRAME_REQUEST = 1, /* client -> server: method + payload */
  SVC__FRAME_REPLY = 2,   /* server -> client: status + payload */
  SVC__FRAME_GOAWAY = 3   /* server -> client: reconnect before next call */
};

typedef struct svc__frame {
  uint8_t type;     /* enum svc__frame_type */
  uint8_t flags;    /* reserved, 0 */
  uint32_t call_id; /* echoed in the reply */
  int32_t status;   /* reply: 0, SVC_E* (<0) or handler code (>0) */
  uint32_t method_len;
  uint32_t payload_len;
  const uint8_t *method;  /* decode only: points into the decoded buffer */
  const uint8_t *payload; /* decode only: likewise */
} svc__frame;

/* Layout (all little-endian):
 *   0 u32 magic "SVC1" | 4 u8 version | 5 u8 type | 6 u8 flags | 7 u8 0
 *   8 u32 call id | 12 i32 status | 16 u32 method len | 20 u32 payload len
 * Bytes 0-7 are checked as one word: magic, version, flags 0 and the zero
 * byte, with the type between them. */
#define SVC__FRAME_PREFIX                                                      \
  ((uint64_t)SVC__FRAME_MAGIC | (uint64_t)SVC__FRAME_VERSION << 32)
#define SVC__FRAME_PREFIX_MASK 0xffff00ffffffffffull /* all but the type */

static inline uint32_t svc__le32(uint32_t v) {
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  return __builtin_bswap32(v);
#else
  return v;
#endif
}

static inline uint64_t svc__le64(uint64_t v) {
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  return __builtin_bswap64(v);
#else
  return v;
#endif
}

/* Writes the header of f into out[SVC__FRAME_HDR]. */
static inline void svc__frame_encode_header(const svc__frame *f, uint8_t *out) {
  uint64_t w0 = svc__le64(SVC__FRAME_PREFIX | (uint64_t)f->type << 40 |
                          (uint64_t)f->flags << 48);
  uint32_t w[4] = {svc__le32(f->call_id), svc__le32((uint32_t)f->status),
                   svc__le32(f->method_len), svc__le32(f->payload_len)};
  memcpy(out, &w0, sizeof w0);
  memcpy(out + 8, w, sizeof w);
}

/* Decodes a whole header (SVC__FRAME_HDR bytes at buf, read once: the
 * caller's private copy, or memory the peer may write meanwhile, each
 * byte read once) into f: 0, or SVC_EPROTO when it is malformed or a
 * length exceeds max_payload (or SVC_METHOD_MAX). */
static inline int svc__frame_decode_whole_header(const uint8_t *buf,
                                                 size_t max_payload,
                                                 svc__frame *f) {
  uint64_t w0;
  uint32_t w[4];
  memcpy(&w0, buf, sizeof w0);
  memcpy(w, buf + 8, sizeof w);
  w0 = svc__le64(w0);
  f->type = (uint8_t)(w0 >> 40);
  f->flags = 0;
  f->call_id = svc__le32(w[0]);
  f->status = (int32_t)svc__le32(w[1]);
  f->method_len = svc__le32(w[2]);
  f->payload_len = svc__le32(w[3]);
  f->method = NULL;
  f->payload = NULL;
  if ((w0 & SVC__FRAME_PREFIX_MASK) != SVC__FRAME_PREFIX ||
      f->payload_len > max_payload)
    return SVC_EPROTO;
  switch (f->type) {
  case SVC__FRAME_REQUEST:
    return f->method_len == 0 || f->method_len > SVC_METHOD_MAX || f->status
               ? SVC_EPROTO
               : 0;
  case SVC__FRAME_REPLY:
    return f->method_len ? SVC_EPROTO : 0;
  case SVC__FRAME_GOAWAY:
    return f->method_len || f->payload_len ? SVC_EPROTO : 0;
  default:
    return SVC_EPROTO;
  }
}

/* Decodes the header in buf (len bytes available). Returns 0 and fills f
 * (without method/payload pointers) when the header is valid, 1 when fewer
 * than SVC__FRAME_HDR bytes are available and they begin like a header,
 * SVC_EPROTO when the (partial) header is malformed or a length exceeds
 * max_payload (or SVC_METHOD_MAX). Pure. */
static inline int svc__frame_decode_header(const uint8_t *buf, size_t len,
                                           size_t max_payload, svc__frame *f) {
  if (len < SVC__FRAME_HDR) { /* reject garbage as soon as it shows */
    static const uint8_t prefix[] = {
        SVC__FRAME_MAGIC & 0xff, (SVC__FRAME_MAGIC >> 8) & 0xff,
        (SVC__FRAME_MAGIC >> 16) & 0xff, SVC__FRAME_MAGIC >> 24,
        SVC__FRAME_VERSION};
    size_t n = len < sizeof prefix ? len : sizeof prefix;
    return n == 0 || memcmp(buf, prefix, n) == 0 ? 1 : SVC_EPROTO;
  }
  return svc__frame_decode_whole_header(buf, max_payload, f);
}

/* Decodes one whole frame at the start of buf. Returns the frame's total
 * size (> 0) with f's pointers into buf, 0 when more bytes are needed, or
 * SVC_EPROTO. Never reads past buf + len; pure. */
long svc__frame_decode(const uint8_t *buf, size_t len, size_t max_payload,
                       svc__frame *f);

/* Total encoded size of a frame with these lengths. */
static inline size_t svc__frame_size(size_t method_len, size_t payload_len) {
  return SVC__FRAME_HDR + method_len + payload_len;
}

#endif

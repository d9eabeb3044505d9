/* frame.h — the wire frame: a fixed 24-byte little-endian header followed by
 * the method name and the payload. The only code that knows the byte layout;
 * every transport (shm included) encodes and decodes through it. */
#ifndef SVC_FRAME_H
#define SVC_FRAME_H

#include <stddef.h>
#include <stdint.h>

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

/* Writes the header of f into out[SVC__FRAME_HDR]. */
void svc__frame_encode_header(const svc__frame *f, uint8_t *out);

/* Decodes the header in buf (len bytes available). Returns 0 and fills f
 * (without method/payload pointers) when the header is valid, 1 when fewer
 * than SVC__FRAME_HDR bytes are available and they begin like a header,
 * SVC_EPROTO when the (partial) header is
 * malformed or a length exceeds max_payload (or SVC_METHOD_MAX). Pure. */
int svc__frame_decode_header(const uint8_t *buf, size_t len, size_t max_payload,
                             svc__frame *f);

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

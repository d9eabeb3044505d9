/* frame.c — encode and validate the 24-byte frame header shared by every
 * transport. Layout (all little-endian):
 *   0 u32 magic "SVC1" | 4 u8 version | 5 u8 type | 6 u8 flags | 7 u8 0
 *   8 u32 call id | 12 i32 status | 16 u32 method len | 20 u32 payload len */
#include "frame.h"

#include <string.h>

#include "svc.h"

static void put32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
  p[2] = (uint8_t)(v >> 16);
  p[3] = (uint8_t)(v >> 24);
}

static uint32_t get32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
         (uint32_t)p[3] << 24;
}

void svc__frame_encode_header(const svc__frame *f, uint8_t *out) {
  put32(out, SVC__FRAME_MAGIC);
  out[4] = SVC__FRAME_VERSION;
  out[5] = f->type;
  out[6] = f->flags;
  out[7] = 0;
  put32(out + 8, f->call_id);
  put32(out + 12, (uint32_t)f->status);
  put32(out + 16, f->method_len);
  put32(out + 20, f->payload_len);
}

int svc__frame_decode_header(const uint8_t *buf, size_t len, size_t max_payload,
                             svc__frame *f) {
  if (len < SVC__FRAME_HDR) { /* reject garbage as soon as it shows */
    static const uint8_t prefix[] = {
        SVC__FRAME_MAGIC & 0xff, (SVC__FRAME_MAGIC >> 8) & 0xff,
        (SVC__FRAME_MAGIC >> 16) & 0xff, SVC__FRAME_MAGIC >> 24,
        SVC__FRAME_VERSION};
    size_t n = len < sizeof prefix ? len : sizeof prefix;
    return n == 0 || memcmp(buf, prefix, n) == 0 ? 1 : SVC_EPROTO;
  }
  if (get32(buf) != SVC__FRAME_MAGIC || buf[4] != SVC__FRAME_VERSION ||
      buf[7] != 0 || buf[6] != 0)
    return SVC_EPROTO;
  f->type = buf[5];
  f->flags = buf[6];
  f->call_id = get32(buf + 8);
  f->status = (int32_t)get32(buf + 12);
  f->method_len = get32(buf + 16);
  f->payload_len = get32(buf + 20);
  f->method = NULL;
  f->payload = NULL;
  switch (f->type) {
  case SVC__FRAME_REQUEST:
    if (f->method_len == 0 || f->method_len > SVC_METHOD_MAX || f->status != 0)
      return SVC_EPROTO;
    break;
  case SVC__FRAME_REPLY:
    if (f->method_len != 0)
      return SVC_EPROTO;
    break;
  case SVC__FRAME_GOAWAY:
    if (f->method_len != 0 || f->payload_len != 0)
      return SVC_EPROTO;
    break;
  default:
    return SVC_EPROTO;
  }
  if (f->payload_len > max_payload)
    return SVC_EPROTO;
  return 0;
}

long svc__frame_decode(const uint8_t *buf, size_t len, size_t max_payload,
                       svc__frame *f) {
  int rc = svc__frame_decode_header(buf, len, max_payload, f);
  if (rc == 1)
    return 0;
  if (rc < 0)
    return rc;
  size_t total = svc__frame_size(f->method_len, f->payload_len);
  if (len < total)
    return 0;
  f->method = buf + SVC__FRAME_HDR;
  f->payload = f->method + f->method_len;
  return (long)total;
}

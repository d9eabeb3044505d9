/* frame.c — whole frames in a byte buffer (the stream transports'); the
 * header's encoding and checks are in frame.h, inline, as every call
 * passes through them twice. */
#include "frame.h"

#include <string.h>

#include "svc.h"

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

/* buf.h — a growable byte buffer for building responses, with the two
 * escapers every piece of service-provided text must go through: HTML and
 * JSON (which also repairs invalid UTF-8, since JSON must be UTF-8). */
#ifndef MON_BUF_H
#define MON_BUF_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mon_buf {
  char *p; /* always NUL-terminated when len > 0 */
  size_t len, cap;
  bool oom; /* an append failed; the content is truncated */
} mon_buf;

void mon_buf_add(mon_buf *b, const void *p, size_t n);
void mon_buf_puts(mon_buf *b, const char *s);
void mon_buf_printf(mon_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* & < > " ' become entities. */
void mon_buf_html(mon_buf *b, const char *s, size_t n);
/* A JSON string literal with quotes: control characters as \u00XX, invalid
 * UTF-8 bytes as U+FFFD. */
void mon_buf_json(mon_buf *b, const char *s, size_t n);
/* Hands the memory to the caller (who frees it); the buffer is reset. */
char *mon_buf_take(mon_buf *b, size_t *len);
void mon_buf_fini(mon_buf *b);

#ifdef __cplusplus
}
#endif
#endif

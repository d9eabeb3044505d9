/* buf.c — growable buffer and the HTML / JSON escapers. */
#include "buf.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mon_sys.h"

static bool buf_reserve(mon_buf *b, size_t extra) {
  if (b->oom)
    return false;
  if (b->len + extra + 1 <= b->cap)
    return true;
  size_t cap = b->cap ? b->cap : 1024;
  while (cap < b->len + extra + 1)
    cap *= 2;
  char *np = mon__realloc(b->p, cap);
  if (!np) {
    b->oom = true;
    return false;
  }
  b->p = np;
  b->cap = cap;
  return true;
}

void mon_buf_add(mon_buf *b, const void *p, size_t n) {
  if (!buf_reserve(b, n))
    return;
  memcpy(b->p + b->len, p, n);
  b->len += n;
  b->p[b->len] = '\0';
}

void mon_buf_puts(mon_buf *b, const char *s) { mon_buf_add(b, s, strlen(s)); }

void mon_buf_printf(mon_buf *b, const char *fmt, ...) {
  char small[256];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(small, sizeof small, fmt, ap);
  va_end(ap);
  if (n < 0)
    return;
  if ((size_t)n < sizeof small) {
    mon_buf_add(b, small, (size_t)n);
    return;
  }
  if (!buf_reserve(b, (size_t)n))
    return;
  va_start(ap, fmt);
  vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
}

void mon_buf_html(mon_buf *b, const char *s, size_t n) {
  size_t start = 0;
  for (size_t i = 0; i < n; i++) {
    const char *rep;
    switch (s[i]) {
    case '&':
      rep = "&amp;";
      break;
    case '<':
      rep = "&lt;";
      break;
    case '>':
      rep = "&gt;";
      break;
    case '"':
      rep = "&quot;";
      break;
    case '\'':
      rep = "&#39;";
      break;
    case '\0':
      rep = "\xEF\xBF\xBD";
      break;
    default:
      continue;
    }
    mon_buf_add(b, s + start, i - start);
    mon_buf_puts(b, rep);
    start = i + 1;
  }
  mon_buf_add(b, s + start, n - start);
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if invalid. */
static size_t buf_utf8_len(const unsigned char *s, size_t n) {
  unsigned c = s[0];
  size_t len;
  uint32_t cp;
  if (c < 0x80)
    return 1;
  if (c >= 0xC2 && c <= 0xDF)
    len = 2, cp = c & 0x1F;
  else if (c >= 0xE0 && c <= 0xEF)
    len = 3, cp = c & 0x0F;
  else if (c >= 0xF0 && c <= 0xF4)
    len = 4, cp = c & 0x07;
  else
    return 0;
  if (len > n)
    return 0;
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xC0) != 0x80)
      return 0;
    cp = cp << 6 | (s[i] & 0x3F);
  }
  if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
      (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
    return 0;
  return len;
}

void mon_buf_json(mon_buf *b, const char *s, size_t n) {
  const unsigned char *u = (const unsigned char *)s;
  mon_buf_add(b, "\"", 1);
  size_t i = 0;
  while (i < n) {
    unsigned c = u[i];
    if (c == '"' || c == '\\') {
      char e[2] = {'\\', (char)c};
      mon_buf_add(b, e, 2);
      i++;
    } else if (c < 0x20 || c == 0x7F) {
      char e[8];
      snprintf(e, sizeof e, "\\u%04x", c);
      mon_buf_add(b, e, 6);
      i++;
    } else if (c == '<' || c == '>' || c == '&') {
      /* harmless in JSON, but keeps JSON safe if ever embedded in HTML */
      char e[8];
      snprintf(e, sizeof e, "\\u%04x", c);
      mon_buf_add(b, e, 6);
      i++;
    } else {
      size_t len = buf_utf8_len(u + i, n - i);
      if (len == 0) {
        mon_buf_puts(b, "\\ufffd");
        i++;
      } else {
        mon_buf_add(b, s + i, len);
        i += len;
      }
    }
  }
  mon_buf_add(b, "\"", 1);
}

char *mon_buf_take(mon_buf *b, size_t *len) {
  if (!b->p)
    buf_reserve(b, 0);
  char *p = b->p;
  if (len)
    *len = b->len;
  memset(b, 0, sizeof *b);
  return p;
}

void mon_buf_fini(mon_buf *b) {
  free(b->p);
  memset(b, 0, sizeof *b);
}

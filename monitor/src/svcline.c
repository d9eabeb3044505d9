/* svcline.c — parser for libsvc's worker-master lines on stderr (see
 * docs/workers.md): "svc[NAME]: scale up|down: N workers (...)" and
 * "svc[NAME]: worker PID killed by signal N|exited with code N; replacing".
 * Strict about the shape so that ordinary output is never mistaken. */
#include "svcline.h"

#include <stdio.h>
#include <string.h>

/* p[0..n) starts with the literal s */
static int svcline_has(const char *p, size_t n, const char *s) {
  size_t k = strlen(s);
  return n >= k && memcmp(p, s, k) == 0;
}

/* Skips 1..10 decimal digits; returns how many, 0 if none. */
static size_t svcline_digits(const char *p, size_t n) {
  size_t k = 0;
  while (k < n && k < 10 && p[k] >= '0' && p[k] <= '9')
    k++;
  return k < n && p[k] >= '0' && p[k] <= '9' ? 0 : k;
}

static void svcline_copy(char *out, size_t cap, const char *p, size_t n) {
  if (n >= cap)
    n = cap - 1;
  for (size_t k = 0; k < n; k++) /* control bytes would only confuse a page */
    out[k] = (unsigned char)p[k] < 0x20 ? '?' : p[k];
  out[n] = '\0';
}

int mon_svcline_parse(const char *line, size_t len,
                      char kind[MON_SVCLINE_KIND_MAX],
                      char detail[MON_SVCLINE_DETAIL_MAX]) {
  if (!line)
    return 0;
  if (len && line[len - 1] == '\r')
    len--;
  if (!svcline_has(line, len, "svc["))
    return 0;
  const char *p = line + 4, *end = line + len;
  const char *close = memchr(p, ']', (size_t)(end - p));
  if (!close || close == p || close - p > 64)
    return 0;
  p = close + 1;
  if (!svcline_has(p, (size_t)(end - p), ": "))
    return 0;
  p += 2;
  size_t n = (size_t)(end - p);
  if (svcline_has(p, n, "scale up: ") || svcline_has(p, n, "scale down: ")) {
    const char *d = p + 6; /* after "scale " */
    const char *num = (const char *)memchr(d, ' ', (size_t)(end - d)) + 1;
    size_t k = svcline_digits(num, (size_t)(end - num));
    if (!k || !svcline_has(num + k, (size_t)(end - num - k), " workers"))
      return 0;
    snprintf(kind, MON_SVCLINE_KIND_MAX, "scale");
    svcline_copy(detail, MON_SVCLINE_DETAIL_MAX, d, (size_t)(end - d));
    return 1;
  }
  if (svcline_has(p, n, "worker ")) {
    const char *q = p + 7;
    size_t k = svcline_digits(q, (size_t)(end - q));
    if (!k)
      return 0;
    q += k;
    size_t m = (size_t)(end - q);
    const char *tail = NULL;
    if (svcline_has(q, m, " killed by signal "))
      tail = q + 18;
    else if (svcline_has(q, m, " exited with code "))
      tail = q + 18;
    if (!tail)
      return 0;
    if (tail < end && *tail == '-') /* an exit code is never negative, but */
      tail++;                       /* do not be fussier than needed */
    k = svcline_digits(tail, (size_t)(end - tail));
    if (!k || !svcline_has(tail + k, (size_t)(end - tail - k), "; replacing"))
      return 0;
    snprintf(kind, MON_SVCLINE_KIND_MAX, "worker");
    svcline_copy(detail, MON_SVCLINE_DETAIL_MAX, p, n);
    return 1;
  }
  return 0;
}

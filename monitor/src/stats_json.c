/* stats_json.c — a strict reader for the one JSON document the monitor
 * consumes (libsvc's svc.stats, format 1) and the interval maths on two
 * snapshots. No JSON library: the format is fixed and small, and a
 * hand-written recursive descent with a depth limit is easy to fuzz. */
#include "stats_json.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mon_sys.h"

#define SJ_DEPTH_MAX 16 /* nesting of values we skip (unknown keys) */

typedef struct sj {
  const char *p, *end;
  char *err;
  size_t errlen;
  bool failed;
} sj;

static int sj_fail(sj *j, const char *fmt, ...) {
  if (!j->failed && j->errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(j->err, j->errlen, fmt, ap);
    va_end(ap);
  }
  j->failed = true;
  return -1;
}

static void sj_ws(sj *j) {
  while (j->p < j->end &&
         (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
    j->p++;
}

/* Consumes c (after whitespace) if it is next: 1, else 0. */
static int sj_eat(sj *j, char c) {
  sj_ws(j);
  if (j->p < j->end && *j->p == c) {
    j->p++;
    return 1;
  }
  return 0;
}

static int sj_expect(sj *j, char c) {
  return sj_eat(j, c) ? 0 : sj_fail(j, "expected '%c'", c);
}

/* A non-negative integer that fits an int64: digits, no sign, fraction or
 * exponent, no leading zero. */
static int sj_u64(sj *j, uint64_t *out) {
  sj_ws(j);
  const char *s = j->p;
  uint64_t v = 0;
  while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
    unsigned d = (unsigned)(*j->p - '0');
    if (v > ((uint64_t)INT64_MAX - d) / 10)
      return sj_fail(j, "number too large");
    v = v * 10 + d;
    j->p++;
  }
  if (j->p == s)
    return sj_fail(j, "expected a non-negative integer");
  if (j->p - s > 1 && *s == '0')
    return sj_fail(j, "leading zero");
  if (j->p < j->end && (*j->p == '.' || *j->p == 'e' || *j->p == 'E'))
    return sj_fail(j, "expected an integer");
  *out = v;
  return 0;
}

static int sj_hex4(const char *p, unsigned *out) {
  unsigned v = 0;
  for (int k = 0; k < 4; k++) {
    char c = p[k];
    v <<= 4;
    if (c >= '0' && c <= '9')
      v |= (unsigned)(c - '0');
    else if (c >= 'a' && c <= 'f')
      v |= (unsigned)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F')
      v |= (unsigned)(c - 'A' + 10);
    else
      return -1;
  }
  *out = v;
  return 0;
}

/* A string. Decoded bytes go to out[0..cap-1) (NUL-terminated) when out is
 * set; *too_long says some did not fit. \u escapes become UTF-8 (a lone
 * surrogate becomes '?'); a decoded NUL or a raw control byte is an error. */
static int sj_string(sj *j, char *out, size_t cap, size_t *n, bool *too_long) {
  size_t k = 0;
  bool lost = false;
  if (sj_expect(j, '"') != 0)
    return -1;
  for (;;) {
    if (j->p >= j->end)
      return sj_fail(j, "unterminated string");
    unsigned char c = (unsigned char)*j->p++;
    char enc[4];
    size_t ne = 1;
    if (c == '"')
      break;
    if (c < 0x20)
      return sj_fail(j, "control byte in a string");
    enc[0] = (char)c;
    if (c == '\\') {
      if (j->p >= j->end)
        return sj_fail(j, "unterminated string");
      char e = *j->p++;
      switch (e) {
      case '"':
      case '\\':
      case '/':
        enc[0] = e;
        break;
      case 'b':
        enc[0] = '\b';
        break;
      case 'f':
        enc[0] = '\f';
        break;
      case 'n':
        enc[0] = '\n';
        break;
      case 'r':
        enc[0] = '\r';
        break;
      case 't':
        enc[0] = '\t';
        break;
      case 'u': {
        unsigned u;
        if (j->end - j->p < 4 || sj_hex4(j->p, &u) != 0)
          return sj_fail(j, "bad \\u escape");
        j->p += 4;
        if (u == 0)
          return sj_fail(j, "NUL in a string");
        if (u < 0x80) {
          enc[0] = (char)u;
        } else if (u < 0x800) {
          enc[0] = (char)(0xc0 | (u >> 6));
          enc[1] = (char)(0x80 | (u & 0x3f));
          ne = 2;
        } else if (u >= 0xd800 && u <= 0xdfff) {
          enc[0] = '?'; /* method names are bytes; the server never splits */
        } else {
          enc[0] = (char)(0xe0 | (u >> 12));
          enc[1] = (char)(0x80 | ((u >> 6) & 0x3f));
          enc[2] = (char)(0x80 | (u & 0x3f));
          ne = 3;
        }
        break;
      }
      default:
        return sj_fail(j, "bad escape");
      }
    }
    if (out && k + ne < cap) {
      memcpy(out + k, enc, ne);
      k += ne;
    } else {
      lost = true;
    }
  }
  if (out && cap)
    out[k] = '\0';
  if (n)
    *n = k;
  if (too_long)
    *too_long = lost;
  return 0;
}

/* Skips any JSON value (for keys a format-1 reader does not know). */
static int sj_skip(sj *j, int depth) {
  if (depth > SJ_DEPTH_MAX)
    return sj_fail(j, "nested too deeply");
  sj_ws(j);
  if (j->p >= j->end)
    return sj_fail(j, "unexpected end");
  char c = *j->p;
  if (c == '"')
    return sj_string(j, NULL, 0, NULL, NULL);
  if (c == '{' || c == '[') {
    char close = c == '{' ? '}' : ']';
    j->p++;
    if (sj_eat(j, close))
      return 0;
    do {
      if (c == '{' &&
          (sj_string(j, NULL, 0, NULL, NULL) != 0 || sj_expect(j, ':') != 0))
        return -1;
      if (sj_skip(j, depth + 1) != 0)
        return -1;
    } while (sj_eat(j, ','));
    return sj_expect(j, close);
  }
  static const char *const words[] = {"true", "false", "null"};
  for (size_t k = 0; k < 3; k++) {
    size_t n = strlen(words[k]);
    if ((size_t)(j->end - j->p) >= n && memcmp(j->p, words[k], n) == 0) {
      j->p += n;
      return 0;
    }
  }
  /* a number: -?digits(.digits)?([eE][+-]?digits)? */
  const char *s = j->p;
  if (*j->p == '-')
    j->p++;
  size_t digits = 0;
  while (j->p < j->end &&
         ((*j->p >= '0' && *j->p <= '9') || *j->p == '.' || *j->p == 'e' ||
          *j->p == 'E' || *j->p == '+' || *j->p == '-')) {
    digits += *j->p >= '0' && *j->p <= '9';
    j->p++;
  }
  if (!digits || j->p == s)
    return sj_fail(j, "unexpected character");
  return 0;
}

/* "histogram": [[lo, count], ...], lo non-decreasing. */
static int sj_hist(sj *j, mon_method_stat *m) {
  if (sj_expect(j, '[') != 0)
    return -1;
  m->has_hist = true;
  if (sj_eat(j, ']'))
    return 0;
  size_t cap = 0;
  do {
    if (m->nhist == MON_STATS_BUCKETS_MAX)
      return sj_fail(j, "too many histogram buckets");
    if (m->nhist == cap) {
      cap = cap ? cap * 2 : 16;
      mon_hist_pair *nh = mon__realloc(m->hist, cap * sizeof *nh);
      if (!nh)
        return sj_fail(j, "out of memory");
      m->hist = nh;
    }
    mon_hist_pair *h = &m->hist[m->nhist];
    if (sj_expect(j, '[') != 0 || sj_u64(j, &h->lo_ns) != 0 ||
        sj_expect(j, ',') != 0 || sj_u64(j, &h->count) != 0 ||
        sj_expect(j, ']') != 0)
      return -1;
    if (m->nhist && h->lo_ns < m->hist[m->nhist - 1].lo_ns)
      return sj_fail(j, "histogram not ascending");
    m->nhist++;
  } while (sj_eat(j, ','));
  return sj_expect(j, ']');
}

enum { SJ_NAME = 1, SJ_CALLS = 2 };

static int sj_method(sj *j, mon_method_stat *m) {
  static const char *const keys[] = {"calls",     "errors",   "bytes_in",
                                     "bytes_out", "total_ns", "max_ns"};
  uint64_t *dst[] = {&m->calls,     &m->errors,   &m->bytes_in,
                     &m->bytes_out, &m->total_ns, &m->max_ns};
  unsigned seen = 0; /* bit k: keys[k]; bit 6: name; bit 7: histogram */
  if (sj_expect(j, '{') != 0)
    return -1;
  if (sj_eat(j, '}'))
    return sj_fail(j, "method without a name");
  do {
    char key[32];
    bool long_key;
    if (sj_string(j, key, sizeof key, NULL, &long_key) != 0 ||
        sj_expect(j, ':') != 0)
      return -1;
    int idx = -1;
    for (int k = 0; k < 6 && !long_key; k++)
      if (strcmp(key, keys[k]) == 0)
        idx = k;
    if (!long_key && strcmp(key, "name") == 0)
      idx = 6;
    if (!long_key && strcmp(key, "histogram") == 0)
      idx = 7;
    if (idx >= 0 && (seen & (1u << idx)))
      return sj_fail(j, "duplicate key %s", key);
    if (idx >= 0)
      seen |= 1u << idx;
    int rc;
    if (idx == 6) {
      bool too_long;
      size_t n;
      rc = sj_string(j, m->name, sizeof m->name, &n, &too_long);
      if (rc == 0 && (too_long || n == 0))
        return sj_fail(j, "bad method name");
    } else if (idx == 7) {
      rc = sj_hist(j, m);
    } else if (idx >= 0) {
      rc = sj_u64(j, dst[idx]);
    } else {
      rc = sj_skip(j, 1);
    }
    if (rc != 0)
      return -1;
  } while (sj_eat(j, ','));
  if (sj_expect(j, '}') != 0)
    return -1;
  if (!(seen & (1u << 6)) || !(seen & 1u))
    return sj_fail(j, "method without name or calls");
  return 0;
}

static int sj_methods(sj *j, mon_stats_doc *d) {
  if (sj_expect(j, '[') != 0)
    return -1;
  if (sj_eat(j, ']'))
    return 0;
  size_t cap = 0;
  do {
    if (d->nmethods == MON_STATS_METHODS_MAX)
      return sj_fail(j, "too many methods");
    if (d->nmethods == cap) {
      cap = cap ? cap * 2 : 8;
      mon_method_stat *nm = mon__realloc(d->methods, cap * sizeof *nm);
      if (!nm)
        return sj_fail(j, "out of memory");
      d->methods = nm;
    }
    mon_method_stat *m = &d->methods[d->nmethods++];
    memset(m, 0, sizeof *m);
    if (sj_method(j, m) != 0)
      return -1;
  } while (sj_eat(j, ','));
  return sj_expect(j, ']');
}

int mon_stats_parse(const char *json, size_t len, mon_stats_doc *out, char *err,
                    size_t errlen) {
  memset(out, 0, sizeof *out);
  out->workers = 1;
  sj j = {.p = json, .end = json + len, .err = err, .errlen = errlen};
  if (err && errlen)
    err[0] = '\0';
  if (!json)
    return sj_fail(&j, "no reply");
  static const char *const keys[] = {"format", "pid", "workers", "uptime_ms",
                                     "methods"};
  unsigned seen = 0;
  uint64_t num[4] = {0};
  if (sj_expect(&j, '{') != 0)
    goto fail;
  if (!sj_eat(&j, '}')) {
    do {
      char key[32];
      bool long_key = false;
      if (sj_string(&j, key, sizeof key, NULL, &long_key) != 0 ||
          sj_expect(&j, ':') != 0)
        goto fail;
      int idx = -1;
      for (int k = 0; k < 5 && !long_key; k++)
        if (strcmp(key, keys[k]) == 0)
          idx = k;
      if (idx >= 0 && (seen & (1u << idx))) {
        sj_fail(&j, "duplicate key %s", key);
        goto fail;
      }
      if (idx >= 0)
        seen |= 1u << idx;
      int rc = idx == 4   ? sj_methods(&j, out)
               : idx >= 0 ? sj_u64(&j, &num[idx])
                          : sj_skip(&j, 1);
      if (rc != 0)
        goto fail;
    } while (sj_eat(&j, ','));
    if (sj_expect(&j, '}') != 0)
      goto fail;
  }
  sj_ws(&j);
  if (j.p != j.end) {
    sj_fail(&j, "trailing bytes");
    goto fail;
  }
  if ((seen & 0x1b) != 0x1b) { /* format, pid, uptime_ms, methods */
    sj_fail(&j, "missing format, pid, uptime_ms or methods");
    goto fail;
  }
  if (num[0] != 1) {
    sj_fail(&j, "format %llu, not 1", (unsigned long long)num[0]);
    goto fail;
  }
  out->pid = (int64_t)num[1];
  if (seen & 4u)
    out->workers = (int64_t)num[2];
  out->uptime_ms = (int64_t)num[3];
  return 0;
fail:
  if (err && errlen && j.p >= json && j.p <= j.end) {
    size_t used = strlen(err);
    if (used < errlen)
      snprintf(err + used, errlen - used, " at byte %zu", (size_t)(j.p - json));
  }
  mon_stats_doc_free(out);
  return -1;
}

void mon_stats_doc_free(mon_stats_doc *d) {
  for (size_t i = 0; i < d->nmethods; i++)
    free(d->methods[i].hist);
  free(d->methods);
  memset(d, 0, sizeof *d);
}

/* ---- interval maths ---- */

/* Width of the bucket starting at lo: libsvc's buckets are exact below 8,
 * then 8 per power of two. */
static uint64_t sj_width(uint64_t lo) {
  if (lo < 8)
    return 1;
  int e = 63 - __builtin_clzll(lo);
  return (uint64_t)1 << (e - 3);
}

uint64_t mon_hist_quantile(const mon_hist_pair *h, size_t n, double q,
                           uint64_t max_ns) {
  uint64_t total = 0;
  for (size_t i = 0; i < n; i++)
    total += h[i].count;
  if (total == 0)
    return 0;
  double want = q * (double)total;
  uint64_t rank = (uint64_t)want;
  if ((double)rank < want || rank == 0)
    rank++;
  uint64_t seen = 0;
  for (size_t i = 0; i < n; i++) {
    seen += h[i].count;
    if (seen >= rank) {
      uint64_t mid = h[i].lo_ns + sj_width(h[i].lo_ns) / 2;
      if (max_ns > 0 && mid > max_ns)
        mid = max_ns > h[i].lo_ns ? max_ns : h[i].lo_ns;
      return mid;
    }
  }
  return h[n - 1].lo_ns;
}

/* Do a and b name the same bucket? libsvc turns its tick bounds into ns
 * with a clock rate it re-measures on every read, so a bound may move by a
 * rounding step between snapshots (buckets are >= 6% apart above 8 ns). */
static bool sj_same_bucket(uint64_t a, uint64_t b) {
  uint64_t d = a > b ? a - b : b - a;
  uint64_t hi = a > b ? a : b;
  return d <= 1 + hi / 50;
}

/* The buckets of prev are a subset of cur's (counts only grow): walk both
 * in order, subtract where they match. Rows come out strictly ascending:
 * a bound the histogram repeats (it is non-decreasing) is summed into one
 * row (fuzz_stats_json found two). */
size_t mon_stats_hist_delta(const mon_method_stat *prev,
                            const mon_method_stat *cur, mon_hist_pair *out) {
  size_t np = prev && prev->has_hist ? prev->nhist : 0, k = 0, n = 0;
  for (size_t i = 0; i < cur->nhist; i++) {
    uint64_t c = cur->hist[i].count;
    if (k < np && sj_same_bucket(prev->hist[k].lo_ns, cur->hist[i].lo_ns) &&
        prev->hist[k].count <= c) {
      c -= prev->hist[k].count;
      k++;
    }
    if (c && n && out[n - 1].lo_ns == cur->hist[i].lo_ns)
      out[n - 1].count += c; /* a repeated bound is one bucket */
    else if (c)
      out[n++] = (mon_hist_pair){cur->hist[i].lo_ns, c};
  }
  return n;
}

const mon_method_stat *mon_stats_find(const mon_stats_doc *d, size_t hint,
                                      const char *name) {
  if (hint < d->nmethods && strcmp(d->methods[hint].name, name) == 0)
    return &d->methods[hint];
  for (size_t i = 0; i < d->nmethods; i++)
    if (strcmp(d->methods[i].name, name) == 0)
      return &d->methods[i];
  return NULL;
}

/* Did any count of a method both list go down? Not total_ns: libsvc turns
 * ticks into ns with a clock rate it re-measures on every read, so the
 * time of a method without new calls may come back a little lower. */
static bool sj_went_down(const mon_stats_doc *prev, const mon_stats_doc *cur) {
  for (size_t i = 0; i < cur->nmethods; i++) {
    const mon_method_stat *c = &cur->methods[i];
    const mon_method_stat *p = mon_stats_find(prev, i, c->name);
    if (p && (c->calls < p->calls || c->errors < p->errors ||
              c->bytes_in < p->bytes_in || c->bytes_out < p->bytes_out))
      return true;
  }
  return false;
}

bool mon_stats_same_run(const mon_stats_doc *prev, int64_t prev_start_ms,
                        const mon_stats_doc *cur, int64_t cur_start_ms) {
  /* compared as differences, so absurd estimates cannot overflow */
  if (cur_start_ms > prev_start_ms &&
      (uint64_t)cur_start_ms - (uint64_t)prev_start_ms >
          (uint64_t)MON_STATS_RUN_SLACK_MS)
    return false;
  return cur->uptime_ms >= prev->uptime_ms && !sj_went_down(prev, cur);
}

int mon_stats_delta_run(const mon_stats_doc *prev, const mon_stats_doc *cur,
                        mon_method_delta *out) {
  /* every count first: a reset must not leave half-written rows */
  if (prev && sj_went_down(prev, cur))
    return -1;
  int n = 0;
  for (size_t i = 0; i < cur->nmethods; i++) {
    const mon_method_stat *c = &cur->methods[i];
    const mon_method_stat *p = prev ? mon_stats_find(prev, i, c->name) : NULL;
    mon_method_delta d = {.name = c->name,
                          .index = i,
                          .calls = c->calls - (p ? p->calls : 0),
                          .errors = c->errors - (p ? p->errors : 0),
                          .bytes_in = c->bytes_in - (p ? p->bytes_in : 0),
                          .bytes_out = c->bytes_out - (p ? p->bytes_out : 0),
                          .total_ns =
                              p && p->total_ns > c->total_ns
                                  ? 0 /* a re-measured clock rate */
                                  : c->total_ns - (p ? p->total_ns : 0)};
    if (!d.calls && !d.errors)
      continue;
    if (c->has_hist && (!p || p->has_hist) && c->nhist) {
      mon_hist_pair *h = mon__malloc(c->nhist * sizeof *h);
      size_t nh = h ? mon_stats_hist_delta(p, c, h) : 0;
      if (nh) {
        d.pct_valid = true;
        d.p50_ns = mon_hist_quantile(h, nh, 0.50, c->max_ns);
        d.p99_ns = mon_hist_quantile(h, nh, 0.99, c->max_ns);
      }
      free(h);
    }
    out[n++] = d;
  }
  return n;
}

int mon_stats_delta(const mon_stats_doc *prev, const mon_stats_doc *cur,
                    mon_method_delta *out) {
  if (prev->pid != cur->pid || cur->uptime_ms < prev->uptime_ms)
    return -1;
  return mon_stats_delta_run(prev, cur, out);
}

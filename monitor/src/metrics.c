/* metrics.c — the monitor's running totals per (service, method) and their
 * Prometheus exposition. Services and their methods are kept in arrays
 * sorted by name (binary search, insertion by memmove), keyed by name
 * because a reload renumbers services. Only non-negative interval deltas
 * are ever added, so every counter is monotonic for the monitor's life. */
#include "metrics.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mon_sys.h"

typedef struct met_service {
  char *name;
  mon_metrics_series *s; /* sorted by method */
  size_t n, cap;
} met_service;

struct mon_metrics {
  pthread_mutex_t mu; /* guards everything below */
  met_service *svc;   /* sorted by name */
  size_t n, cap;
};

/* ---- buckets and labels ---- */

uint64_t mon_metrics_bound_ns(size_t k) {
  return (uint64_t)1 << (MON_METRICS_LE_MIN_LOG2 + k);
}

size_t mon_metrics_bucket(uint64_t lo_ns) {
  uint64_t width = 1;
  if (lo_ns >= 8)
    width = (uint64_t)1 << (63 - __builtin_clzll(lo_ns) - 3);
  uint64_t mid = lo_ns + width / 2;
  if (mid < lo_ns) /* wrapped: far above the top */
    return MON_METRICS_NBOUNDS;
  for (size_t k = 0; k < MON_METRICS_NBOUNDS; k++)
    if (mid <= mon_metrics_bound_ns(k))
      return k;
  return MON_METRICS_NBOUNDS;
}

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 if invalid:
 * no overlong forms, no surrogates, nothing above U+10FFFF. */
static size_t met_utf8_len(const unsigned char *s, size_t n) {
  static const struct {
    unsigned char lo, hi; /* lead bytes */
    unsigned char mask;   /* its payload bits */
    uint32_t min;         /* smallest code point not overlong */
  } forms[] = {{0xc2, 0xdf, 0x1f, 0x80},
               {0xe0, 0xef, 0x0f, 0x800},
               {0xf0, 0xf4, 0x07, 0x10000}};
  if (s[0] < 0x80)
    return 1;
  for (size_t f = 0; f < 3; f++) {
    size_t len = f + 2;
    if (s[0] < forms[f].lo || s[0] > forms[f].hi)
      continue;
    if (n < len)
      return 0;
    uint32_t cp = s[0] & forms[f].mask;
    for (size_t i = 1; i < len; i++) {
      if ((s[i] & 0xc0) != 0x80)
        return 0;
      cp = cp << 6 | (s[i] & 0x3f);
    }
    if (cp < forms[f].min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
      return 0;
    return len;
  }
  return 0;
}

size_t mon_metrics_label(const char *name, size_t len, char *out) {
  const unsigned char *s = (const unsigned char *)name;
  size_t o = 0;
  if (len > MON_STATS_NAME_MAX)
    len = MON_STATS_NAME_MAX; /* what libsvc allows; the room is for this */
  for (size_t i = 0; i < len;) {
    size_t k = met_utf8_len(s + i, len - i);
    bool control = k == 1 && ((s[i] < 0x20 && s[i] != '\n') || s[i] == 0x7f);
    if (k && !control) {
      memcpy(out + o, s + i, k);
      o += k;
      i += k;
    } else {
      /* a byte that is not text (or NUL, which only a caller with a
       * length can pass) as visible text: scrapers need UTF-8 */
      static const char hex[] = "0123456789abcdef";
      out[o++] = '\\';
      out[o++] = 'x';
      out[o++] = hex[s[i] >> 4];
      out[o++] = hex[s[i] & 15];
      i++;
    }
  }
  out[o] = '\0';
  return o;
}

void mon_metrics_escape(mon_buf *b, const char *s) {
  const char *run = s;
  for (; *s; s++) {
    const char *rep = *s == '\\'   ? "\\\\"
                      : *s == '"'  ? "\\\""
                      : *s == '\n' ? "\\n"
                                   : NULL;
    if (!rep)
      continue;
    mon_buf_add(b, run, (size_t)(s - run));
    mon_buf_puts(b, rep);
    run = s + 1;
  }
  mon_buf_add(b, run, (size_t)(s - run));
}

/* ---- the table ---- */

mon_metrics *mon_metrics_new(void) {
  mon_metrics *m = mon__calloc(1, sizeof *m);
  if (!m)
    return NULL;
  if (pthread_mutex_init(&m->mu, NULL) != 0) {
    free(m);
    return NULL;
  }
  return m;
}

static void met_service_fini(met_service *sv) {
  for (size_t i = 0; i < sv->n; i++)
    free(sv->s[i].method);
  free(sv->s);
  free(sv->name);
}

void mon_metrics_free(mon_metrics *m) {
  if (!m)
    return;
  for (size_t i = 0; i < m->n; i++)
    met_service_fini(&m->svc[i]);
  free(m->svc);
  pthread_mutex_destroy(&m->mu);
  free(m);
}

/* Where name is in the sorted array of n elements of size sz whose name
 * is at offset off (*found set), or where it would go. */
static size_t met_search(const void *base, size_t n, size_t sz, size_t off,
                         const char *name, bool *found) {
  size_t lo = 0, hi = n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    const char *at = *(char *const *)((const char *)base + mid * sz + off);
    int c = strcmp(at, name);
    if (c == 0) {
      *found = true;
      return mid;
    }
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  *found = false;
  return lo;
}

/* Room for one more element in a growable array: 0, or -1. */
static int met_grow(void **p, size_t *cap, size_t n, size_t sz) {
  if (n < *cap)
    return 0;
  size_t nc = *cap ? *cap * 2 : 8;
  void *np = mon__realloc(*p, nc * sz);
  if (!np)
    return -1;
  *p = np;
  *cap = nc;
  return 0;
}

/* The element named name of the sorted array *p (n elements of size sz,
 * the name a char * at offset off), added zeroed with a copy of the name
 * where it belongs when absent and fewer than max are there. NULL when
 * full or out of memory. */
static void *met_find_or_add(void **p, size_t *n, size_t *cap, size_t sz,
                             size_t off, size_t max, const char *name) {
  bool found;
  size_t at = met_search(*p, *n, sz, off, name, &found);
  if (found)
    return (char *)*p + at * sz;
  if (*n >= max || met_grow(p, cap, *n, sz) != 0)
    return NULL;
  char *copy = mon__strdup(name);
  if (!copy)
    return NULL;
  char *e = (char *)*p + at * sz;
  memmove(e + sz, e, (*n - at) * sz);
  memset(e, 0, sz);
  memcpy(e + off, &copy, sizeof copy);
  (*n)++;
  return e;
}

static met_service *met_service_get(mon_metrics *m, const char *name) {
  return met_find_or_add((void **)&m->svc, &m->n, &m->cap, sizeof *m->svc,
                         offsetof(met_service, name), MON_METRICS_SERVICES_MAX,
                         name);
}

static mon_metrics_series *met_series_get(met_service *sv, const char *label) {
  return met_find_or_add((void **)&sv->s, &sv->n, &sv->cap, sizeof *sv->s,
                         offsetof(mon_metrics_series, method),
                         MON_METRICS_METHODS_MAX, label);
}

int mon_metrics_add(mon_metrics *m, const char *service,
                    const mon_method_delta *d, const mon_hist_pair *hist,
                    size_t nhist) {
  char label[MON_METRICS_LABEL_MAX + 1];
  mon_metrics_label(d->name, strlen(d->name), label);
  pthread_mutex_lock(&m->mu);
  met_service *sv = met_service_get(m, service);
  mon_metrics_series *s = sv ? met_series_get(sv, label) : NULL;
  if (s) {
    s->calls += d->calls;
    s->errors += d->errors;
    s->bytes_in += d->bytes_in;
    s->bytes_out += d->bytes_out;
    if (hist) {
      for (size_t i = 0; i < nhist; i++)
        s->buckets[mon_metrics_bucket(hist[i].lo_ns)] += hist[i].count;
      s->sum_ns += d->total_ns;
    }
  }
  pthread_mutex_unlock(&m->mu);
  return s ? 0 : -1;
}

void mon_metrics_retain(mon_metrics *m, const char *const *names, size_t n) {
  pthread_mutex_lock(&m->mu);
  size_t kept = 0;
  for (size_t i = 0; i < m->n; i++) {
    bool keep = false;
    for (size_t k = 0; k < n && !keep; k++)
      keep = strcmp(m->svc[i].name, names[k]) == 0;
    if (keep)
      m->svc[kept++] = m->svc[i]; /* order, hence sorting, is kept */
    else
      met_service_fini(&m->svc[i]);
  }
  m->n = kept;
  pthread_mutex_unlock(&m->mu);
}

void mon_metrics_series_free(mon_metrics_series *s, size_t n) {
  for (size_t i = 0; s && i < n; i++)
    free(s[i].method);
  free(s);
}

size_t mon_metrics_get(mon_metrics *m, const char *service,
                       mon_metrics_series **out) {
  *out = NULL;
  pthread_mutex_lock(&m->mu);
  bool found;
  size_t at = met_search(m->svc, m->n, sizeof *m->svc,
                         offsetof(met_service, name), service, &found);
  size_t n = found ? m->svc[at].n : 0;
  mon_metrics_series *s = n ? mon__calloc(n, sizeof *s) : NULL;
  for (size_t i = 0; s && i < n; i++) {
    s[i] = m->svc[at].s[i];
    s[i].method = mon__strdup(m->svc[at].s[i].method);
    if (!s[i].method) {
      mon_metrics_series_free(s, i);
      s = NULL;
    }
  }
  pthread_mutex_unlock(&m->mu);
  *out = s;
  return s ? n : 0;
}

/* ---- exposition ---- */

/* ns as seconds, exactly: integer ns have a finite decimal expansion. */
static void met_seconds(mon_buf *b, uint64_t ns) {
  char frac[16];
  int len = snprintf(frac, sizeof frac, "%09" PRIu64, ns % 1000000000u);
  while (len > 1 && frac[len - 1] == '0')
    frac[--len] = '\0';
  mon_buf_printf(b, "%" PRIu64 ".%s", ns / 1000000000u, frac);
}

/* {service="...",method="..."} with le="..." added when le_k is a bucket
 * (MON_METRICS_NBOUNDS: +Inf), SIZE_MAX for none. */
static void met_labels(mon_buf *b, const char *service, const char *method,
                       size_t le_k) {
  mon_buf_puts(b, "{service=\"");
  mon_metrics_escape(b, service);
  mon_buf_puts(b, "\",method=\"");
  mon_metrics_escape(b, method);
  if (le_k == SIZE_MAX) {
    mon_buf_puts(b, "\"}");
    return;
  }
  mon_buf_puts(b, "\",le=\"");
  if (le_k < MON_METRICS_NBOUNDS)
    met_seconds(b, mon_metrics_bound_ns(le_k));
  else
    mon_buf_puts(b, "+Inf");
  mon_buf_puts(b, "\"}");
}

enum { MET_CALLS, MET_ERRORS, MET_BYTES_IN, MET_BYTES_OUT, MET_DURATION };

static const struct {
  const char *name, *type, *help;
} met_families[] = {
    [MET_CALLS] = {"svc_method_calls_total", "counter",
                   "calls of the method that finished, since the monitor "
                   "started"},
    [MET_ERRORS] = {"svc_method_errors_total", "counter",
                    "calls whose handler returned an error, since the "
                    "monitor started"},
    [MET_BYTES_IN] = {"svc_method_bytes_in_total", "counter",
                      "request payload bytes, since the monitor started"},
    [MET_BYTES_OUT] = {"svc_method_bytes_out_total", "counter",
                       "reply payload bytes of successful calls, since the "
                       "monitor started"},
    [MET_DURATION] = {"svc_method_duration_seconds", "histogram",
                      "handler time of the method's calls (on the server, "
                      "without transport)"},
};

static void met_series(mon_buf *b, int fam, const char *service,
                       const mon_metrics_series *s) {
  const char *name = met_families[fam].name;
  if (fam != MET_DURATION) {
    uint64_t v = fam == MET_CALLS      ? s->calls
                 : fam == MET_ERRORS   ? s->errors
                 : fam == MET_BYTES_IN ? s->bytes_in
                                       : s->bytes_out;
    mon_buf_puts(b, name);
    met_labels(b, service, s->method, SIZE_MAX);
    mon_buf_printf(b, " %" PRIu64 "\n", v);
    return;
  }
  uint64_t cum = 0;
  for (size_t k = 0; k <= MON_METRICS_NBOUNDS; k++) {
    cum += s->buckets[k];
    mon_buf_printf(b, "%s_bucket", name);
    met_labels(b, service, s->method, k);
    mon_buf_printf(b, " %" PRIu64 "\n", cum);
  }
  mon_buf_printf(b, "%s_sum", name);
  met_labels(b, service, s->method, SIZE_MAX);
  mon_buf_puts(b, " ");
  met_seconds(b, s->sum_ns);
  mon_buf_printf(b, "\n%s_count", name);
  met_labels(b, service, s->method, SIZE_MAX);
  mon_buf_printf(b, " %" PRIu64 "\n", cum);
}

void mon_metrics_render(mon_metrics *m, const char *const *services, size_t n,
                        mon_buf *b) {
  if (m)
    pthread_mutex_lock(&m->mu);
  for (int fam = 0; fam <= MET_DURATION; fam++) {
    mon_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", met_families[fam].name,
                   met_families[fam].help, met_families[fam].name,
                   met_families[fam].type);
    for (size_t i = 0; m && i < n; i++) {
      bool found;
      size_t at = met_search(m->svc, m->n, sizeof *m->svc,
                             offsetof(met_service, name), services[i], &found);
      for (size_t k = 0; found && k < m->svc[at].n; k++)
        met_series(b, fam, m->svc[at].name, &m->svc[at].s[k]);
    }
  }
  if (m)
    pthread_mutex_unlock(&m->mu);
}

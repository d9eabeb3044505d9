/* stats.c — per-method statistics in a shared mapping of slots. Each
 * connection claims a slot when it opens and is then its only writer (one
 * thread serves it at a time), so a call costs a few plain loads and stores
 * (relaxed atomics, no lock prefix); readers sum every slot. Slots keep
 * their counts when released, so totals survive connections and worker
 * processes that come and go. No process-wide state: all of it lives in
 * the svc__stats handle and its mapping. */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"
#include "stats.h"
#include "sys.h"

#define STATS_MAGIC 0x3173746174737673ull /* "svstats1" */
#define RELAXED memory_order_relaxed

/* ---- histogram ---- */

int svc__hist_bucket(uint64_t ns) {
  if (ns < (1u << SVC__HIST_SUB_BITS))
    return (int)ns;
  int e = 63 - __builtin_clzll(ns); /* >= SUB_BITS */
  int sub = (int)((ns >> (e - SVC__HIST_SUB_BITS)) &
                  ((1u << SVC__HIST_SUB_BITS) - 1));
  int b = ((e - SVC__HIST_SUB_BITS + 1) << SVC__HIST_SUB_BITS) + sub;
  return b < SVC__HIST_BUCKETS ? b : SVC__HIST_BUCKETS - 1;
}

uint64_t svc__hist_lo(int b) {
  const int per = 1 << SVC__HIST_SUB_BITS;
  if (b < per)
    return (uint64_t)b;
  int e = b / per + SVC__HIST_SUB_BITS - 1;
  uint64_t sub = (uint64_t)(b % per);
  return ((uint64_t)per + sub) << (e - SVC__HIST_SUB_BITS);
}

uint64_t svc__hist_quantile(const uint64_t *counts, double q, uint64_t max_ns) {
  uint64_t n = 0;
  for (int b = 0; b < SVC__HIST_BUCKETS; b++)
    n += counts[b];
  if (n == 0)
    return 0;
  double want = q * (double)n;
  uint64_t rank = (uint64_t)want;
  if ((double)rank < want || rank == 0)
    rank++; /* ceil, and at least the smallest value */
  if (rank >= n)
    return max_ns; /* the largest value is known exactly */
  uint64_t seen = 0;
  for (int b = 0; b < SVC__HIST_BUCKETS; b++) {
    seen += counts[b];
    if (seen >= rank) {
      uint64_t lo = svc__hist_lo(b), hi = svc__hist_lo(b + 1) - 1;
      uint64_t mid = lo + (hi - lo) / 2;
      if (b == SVC__HIST_BUCKETS - 1 || mid > max_ns)
        mid = max_ns > lo ? max_ns : lo; /* the open last bucket, or a
                                            bucket the max lies in */
      return mid;
    }
  }
  return max_ns;
}

/* ---- the shared mapping ---- */

/* One method's counters in one slot: 64 + 2240 bytes, cache-line sized. */
typedef struct mstat {
  _Atomic uint64_t calls, errors, bytes_in, bytes_out, total, max;
  _Atomic uint64_t pad_[2];
  _Atomic uint64_t hist[SVC__HIST_BUCKETS];
} mstat;

/* Start of the mapping; slot 0 is the overflow slot (atomic adds), slots
 * 1..max_slots belong to one thread at a time. */
typedef struct shared_hdr {
  uint64_t magic;
  _Atomic uint32_t hwm; /* 1 + highest slot ever claimed */
  int32_t pad_;
  _Atomic uint64_t unknown; /* calls of methods that do not exist */
  int64_t ns0;              /* svc__now_ns() and ... */
  uint64_t ticks0;          /* ... svc__stats_ticks() at creation */
  _Atomic int32_t owner[];  /* per slot: pid of the owner, 0 = free */
} shared_hdr;

struct svc__stats {
  shared_hdr *hdr;
  char *slots; /* slot i at slots + i * slot_size */
  size_t slot_size, map_size;
  int nmethods, max_slots;
  int tsc; /* ticks are TSC cycles */
};

/* The TSC only where the kernel keeps its time by it: then it is
 * constant-rate and synchronised across CPUs. */
static int tsc_usable(void) {
#if defined(__x86_64__) || defined(__i386__)
  FILE *f = fopen("/sys/devices/system/clocksource/clocksource0/"
                  "current_clocksource",
                  "re");
  char buf[32] = "";
  if (f) {
    if (!fgets(buf, sizeof buf, f))
      buf[0] = '\0';
    fclose(f);
  }
  return strcmp(buf, "tsc\n") == 0;
#else
  return 0;
#endif
}

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

int svc__stats_new(int nmethods, int max_slots, svc__stats **out) {
  if (!out || nmethods < 1 || max_slots < 1 || max_slots > 65536)
    return SVC_EINVAL;
  svc__stats *st = svc__calloc(1, sizeof *st);
  if (!st)
    return SVC_ENOMEM;
  size_t hdr = align64(sizeof(shared_hdr) +
                       (size_t)(max_slots + 1) * sizeof(_Atomic int32_t));
  st->slot_size = (size_t)nmethods * sizeof(mstat);
  st->map_size = hdr + (size_t)(max_slots + 1) * st->slot_size;
  void *p = svc__mmap(NULL, st->map_size, PROT_READ | PROT_WRITE,
                      MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    free(st);
    return SVC_ENOMEM;
  }
  st->hdr = p;
  st->slots = (char *)p + hdr;
  st->nmethods = nmethods;
  st->max_slots = max_slots;
  st->hdr->magic = STATS_MAGIC;
  const char *env = getenv("SVC_STATS_CLOCK"); /* "ns": no TSC */
  st->tsc = !(env && strcmp(env, "ns") == 0) && tsc_usable();
  st->hdr->ns0 = svc__now_ns();
  st->hdr->ticks0 = svc__stats_ticks(st->tsc);
  atomic_store(&st->hdr->hwm, 1);
  *out = st;
  return 0;
}

void svc__stats_free(svc__stats *st) {
  if (!st)
    return;
  munmap(st->hdr, st->map_size);
  free(st);
}

int svc__stats_uses_tsc(const svc__stats *st) { return st ? st->tsc : 0; }

static mstat *slot_at(const svc__stats *st, int slot, int method) {
  return (mstat *)(st->slots + (size_t)slot * st->slot_size) + method;
}

static int try_claim(svc__stats *st, int i, int32_t expect, int32_t pid) {
  return atomic_compare_exchange_strong_explicit(
      &st->hdr->owner[i], &expect, pid, memory_order_acquire, RELAXED);
}

/* A free slot, else one whose owner process is gone (a killed worker),
 * else 0, the overflow slot. */
static int claim(svc__stats *st) {
  int32_t pid = (int32_t)getpid();
  int got = 0;
  for (int i = 1; i <= st->max_slots && !got; i++)
    if (atomic_load_explicit(&st->hdr->owner[i], RELAXED) == 0 &&
        try_claim(st, i, 0, pid))
      got = i;
  for (int i = 1; i <= st->max_slots && !got; i++) {
    int32_t o = atomic_load_explicit(&st->hdr->owner[i], RELAXED);
    if (o != 0 && o != pid && kill(o, 0) != 0 && errno == ESRCH &&
        try_claim(st, i, o, pid))
      got = i;
  }
  uint32_t hwm = atomic_load(&st->hdr->hwm);
  while ((uint32_t)got + 1 > hwm &&
         !atomic_compare_exchange_weak(&st->hdr->hwm, &hwm, (uint32_t)got + 1))
    ;
  return got;
}

int svc__stats_claim(svc__stats *st) { return st ? claim(st) : 0; }

void svc__stats_release(svc__stats *st, int slot) {
  if (st && slot > 0 && slot <= st->max_slots)
    atomic_store_explicit(&st->hdr->owner[slot], 0, memory_order_release);
}

/* Single writer: a load and a store, no read-modify-write instruction. */
static inline void own_add(_Atomic uint64_t *p, uint64_t v) {
  atomic_store_explicit(p, atomic_load_explicit(p, RELAXED) + v, RELAXED);
}

void svc__stats_record(svc__stats *st, int slot, int method, uint64_t ticks,
                       uint64_t bytes_in, uint64_t bytes_out, int error) {
  if (!st || method < 0 || method >= st->nmethods)
    return;
  if (slot < 0 || slot > st->max_slots)
    slot = 0;
  mstat *m = slot_at(st, slot, method);
  _Atomic uint64_t *h = &m->hist[svc__hist_bucket(ticks)];
  if (slot > 0) {
    own_add(&m->calls, 1);
    if (error)
      own_add(&m->errors, 1);
    own_add(&m->bytes_in, bytes_in);
    own_add(&m->bytes_out, bytes_out);
    own_add(&m->total, ticks);
    own_add(h, 1);
    if (ticks > atomic_load_explicit(&m->max, RELAXED))
      atomic_store_explicit(&m->max, ticks, RELAXED);
    return;
  }
  atomic_fetch_add_explicit(&m->calls, 1, RELAXED);
  if (error)
    atomic_fetch_add_explicit(&m->errors, 1, RELAXED);
  atomic_fetch_add_explicit(&m->bytes_in, bytes_in, RELAXED);
  atomic_fetch_add_explicit(&m->bytes_out, bytes_out, RELAXED);
  atomic_fetch_add_explicit(&m->total, ticks, RELAXED);
  atomic_fetch_add_explicit(h, 1, RELAXED);
  uint64_t mx = atomic_load_explicit(&m->max, RELAXED);
  while (ticks > mx && !atomic_compare_exchange_weak_explicit(
                           &m->max, &mx, ticks, RELAXED, RELAXED))
    ;
}

/* ns per tick, measured over the mapping's life (at least 2 ms of it). */
static double ns_per_tick(const svc__stats *st) {
  if (!st->tsc)
    return 1.0;
  int64_t ns;
  uint64_t ticks;
  do {
    ns = svc__now_ns() - st->hdr->ns0;
    ticks = svc__stats_ticks(st->tsc) - st->hdr->ticks0;
  } while (ns < 2000000);
  return ticks ? (double)ns / (double)ticks : 1.0;
}

void svc__stats_read(const svc__stats *st, int method, svc__method_stats *out) {
  memset(out, 0, sizeof *out);
  out->ns_per_tick = 1.0;
  if (!st || method < 0 || method >= st->nmethods)
    return;
  out->ns_per_tick = ns_per_tick(st);
  uint32_t hwm = atomic_load(&st->hdr->hwm);
  if (hwm > (uint32_t)st->max_slots + 1)
    hwm = (uint32_t)st->max_slots + 1;
  for (uint32_t i = 0; i < hwm; i++) {
    mstat *m = slot_at(st, (int)i, method);
    out->calls += atomic_load_explicit(&m->calls, RELAXED);
    out->errors += atomic_load_explicit(&m->errors, RELAXED);
    out->bytes_in += atomic_load_explicit(&m->bytes_in, RELAXED);
    out->bytes_out += atomic_load_explicit(&m->bytes_out, RELAXED);
    out->total += atomic_load_explicit(&m->total, RELAXED);
    uint64_t mx = atomic_load_explicit(&m->max, RELAXED);
    if (mx > out->max)
      out->max = mx;
    for (int b = 0; b < SVC__HIST_BUCKETS; b++)
      out->hist[b] += atomic_load_explicit(&m->hist[b], RELAXED);
  }
}

void svc__stats_count_unknown(svc__stats *st) {
  if (st)
    atomic_fetch_add_explicit(&st->hdr->unknown, 1, RELAXED);
}

uint64_t svc__stats_unknown(const svc__stats *st) {
  return st ? atomic_load_explicit(&st->hdr->unknown, RELAXED) : 0;
}

/* ---- JSON ---- */

typedef struct jbuf {
  char *p;
  size_t len, cap;
  int oom;
} jbuf;

static void jb_reserve(jbuf *b, size_t more) {
  if (b->oom || b->len + more < b->cap)
    return;
  size_t cap = b->cap ? b->cap : 1024;
  while (cap <= b->len + more)
    cap *= 2;
  char *p = svc__realloc(b->p, cap);
  if (!p) {
    b->oom = 1;
    return;
  }
  b->p = p;
  b->cap = cap;
}

static void jb_put(jbuf *b, const char *s) {
  size_t n = strlen(s);
  jb_reserve(b, n + 1);
  if (!b->oom) {
    memcpy(b->p + b->len, s, n);
    b->len += n;
  }
}

/* text, then the number v in decimal */
static void jb_num(jbuf *b, const char *text, long long v) {
  char num[24];
  snprintf(num, sizeof num, "%lld", v);
  jb_put(b, text);
  jb_put(b, num);
}

/* A JSON string: quotes, backslashes and control bytes escaped. */
static void jb_str(jbuf *b, const char *s) {
  jb_reserve(b, strlen(s) * 6 + 3);
  if (b->oom)
    return;
  b->p[b->len++] = '"';
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\') {
      b->p[b->len++] = '\\';
      b->p[b->len++] = (char)ch;
    } else if (ch < 0x20) {
      b->len += (size_t)snprintf(b->p + b->len, 7, "\\u%04x", ch);
    } else {
      b->p[b->len++] = (char)ch;
    }
  }
  b->p[b->len++] = '"';
}

/* A count for JSON: the format promises integers that fit an int64. */
static long long count(uint64_t v) {
  return v > (uint64_t)INT64_MAX ? INT64_MAX : (long long)v;
}

int svc__stats_json(const svc__stats_doc *doc, const char *const *names,
                    const svc__method_stats *ms, int n, int histogram,
                    char **out, size_t *len) {
  jbuf b = {0};
  jb_put(&b, "{\"format\":1,\"name\":");
  jb_str(&b, doc->name ? doc->name : "");
  jb_num(&b, ",\"pid\":", doc->pid);
  jb_num(&b, ",\"workers\":", doc->workers);
  jb_num(&b, ",\"uptime_ms\":", doc->uptime_ms);
  jb_num(&b, ",\"unknown_method_calls\":", count(doc->unknown_calls));
  jb_put(&b, ",\"methods\":[");
  for (int i = 0; i < n; i++) {
    const svc__method_stats *m = &ms[i];
    double k = m->ns_per_tick > 0 ? m->ns_per_tick : 1.0;
#define NS(ticks) count((uint64_t)((double)(ticks)*k + 0.5))
    jb_put(&b, i ? ",{\"name\":" : "{\"name\":");
    jb_str(&b, names[i]);
    jb_num(&b, ",\"calls\":", count(m->calls));
    jb_num(&b, ",\"errors\":", count(m->errors));
    jb_num(&b, ",\"bytes_in\":", count(m->bytes_in));
    jb_num(&b, ",\"bytes_out\":", count(m->bytes_out));
    jb_num(&b, ",\"total_ns\":", NS(m->total));
    jb_num(&b, ",\"p50_ns\":", NS(svc__hist_quantile(m->hist, 0.5, m->max)));
    jb_num(&b, ",\"p99_ns\":", NS(svc__hist_quantile(m->hist, 0.99, m->max)));
    jb_num(&b, ",\"p999_ns\":", NS(svc__hist_quantile(m->hist, 0.999, m->max)));
    jb_num(&b, ",\"max_ns\":", NS(m->max));
    if (histogram) {
      jb_put(&b, ",\"histogram\":[");
      int first = 1;
      for (int h = 0; h < SVC__HIST_BUCKETS; h++)
        if (m->hist[h]) {
          jb_num(&b, first ? "[" : ",[", NS(svc__hist_lo(h)));
          jb_num(&b, ",", count(m->hist[h]));
          jb_put(&b, "]");
          first = 0;
        }
      jb_put(&b, "]");
    }
    jb_put(&b, "}");
#undef NS
  }
  jb_put(&b, "]}");
  if (b.oom) {
    free(b.p);
    return SVC_ENOMEM;
  }
  *out = b.p;
  *len = b.len;
  return 0;
}

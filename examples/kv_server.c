/* kv_server.c — the original use case: one process holds a big in-memory
 * key-value store, many callers reach it. Methods:
 *   set  "KEY\0VALUE" -> ""        get "KEY" -> VALUE (error 1: no such key)
 *   del  "KEY" -> "1" | "0"        count "" -> decimal number of keys
 * Listens like echo_server: shm://NAME, unix:///tmp/svc-NAME.sock and
 * tcp://127.0.0.1:PORT.
 *   kv_server [NAME [PORT]]   (defaults: $SVC_SERVICE_NAME or "kv",
 *                              $SVC_SERVICE_PORT or 5202)
 * Run it with one worker (workers_max = 1): each worker process would hold
 * its own store. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <svc.h>

#define KV_NOT_FOUND 1

typedef struct kv_entry {
  struct kv_entry *next;
  uint64_t hash;
  size_t klen, vlen;
  char data[]; /* key, then value */
} kv_entry;

typedef struct kv_table {
  pthread_rwlock_t lock; /* handlers run on several threads */
  kv_entry **slots;
  size_t nslots, count;
} kv_table;

static uint64_t kv_hash(const char *p, size_t n) {
  uint64_t h = 1469598103934665603ULL; /* FNV-1a */
  for (size_t i = 0; i < n; i++)
    h = (h ^ (unsigned char)p[i]) * 1099511628211ULL;
  return h;
}

static kv_entry **kv_find(kv_table *t, const char *k, size_t klen, uint64_t h) {
  kv_entry **e = &t->slots[h & (t->nslots - 1)];
  while (*e && !((*e)->hash == h && (*e)->klen == klen &&
                 !memcmp((*e)->data, k, klen)))
    e = &(*e)->next;
  return e;
}

static void kv_grow(kv_table *t) {
  size_t n = t->nslots * 2;
  kv_entry **s = calloc(n, sizeof *s);
  if (!s)
    return; /* keep the longer chains */
  for (size_t i = 0; i < t->nslots; i++) {
    for (kv_entry *e = t->slots[i], *next; e; e = next) {
      next = e->next;
      e->next = s[e->hash & (n - 1)];
      s[e->hash & (n - 1)] = e;
    }
  }
  free(t->slots);
  t->slots = s;
  t->nslots = n;
}

static int kv_set(void *ctx, const void *req, size_t len, svc_reply *r) {
  kv_table *t = ctx;
  const char *k = req;
  const char *nul = memchr(k, '\0', len);
  if (!nul)
    return SVC_EINVAL;
  size_t klen = (size_t)(nul - k), vlen = len - klen - 1;
  kv_entry *ne = malloc(sizeof *ne + klen + vlen);
  if (!ne)
    return SVC_ENOMEM;
  ne->hash = kv_hash(k, klen);
  ne->klen = klen;
  ne->vlen = vlen;
  memcpy(ne->data, k, klen); /* copy once: the request may change under us */
  memcpy(ne->data + klen, nul + 1, vlen);
  pthread_rwlock_wrlock(&t->lock);
  kv_entry **e = kv_find(t, ne->data, klen, ne->hash);
  if (*e) {
    ne->next = (*e)->next;
    free(*e);
  } else {
    ne->next = NULL;
    t->count++;
  }
  *e = ne;
  if (t->count > t->nslots)
    kv_grow(t);
  pthread_rwlock_unlock(&t->lock);
  return svc_reply_set(r, "", 0);
}

static int kv_get(void *ctx, const void *req, size_t len, svc_reply *r) {
  kv_table *t = ctx;
  int rc = KV_NOT_FOUND;
  pthread_rwlock_rdlock(&t->lock);
  kv_entry **e = kv_find(t, req, len, kv_hash(req, len));
  if (*e)
    rc = svc_reply_set(r, (*e)->data + (*e)->klen, (*e)->vlen);
  pthread_rwlock_unlock(&t->lock);
  return rc;
}

static int kv_del(void *ctx, const void *req, size_t len, svc_reply *r) {
  kv_table *t = ctx;
  pthread_rwlock_wrlock(&t->lock);
  kv_entry **e = kv_find(t, req, len, kv_hash(req, len));
  kv_entry *gone = *e;
  if (gone) {
    *e = gone->next;
    t->count--;
  }
  pthread_rwlock_unlock(&t->lock);
  free(gone);
  return svc_reply_set(r, gone ? "1" : "0", 1);
}

static int kv_count(void *ctx, const void *req, size_t len, svc_reply *r) {
  (void)req;
  (void)len;
  kv_table *t = ctx;
  char buf[32];
  pthread_rwlock_rdlock(&t->lock);
  int n = snprintf(buf, sizeof buf, "%zu", t->count);
  pthread_rwlock_unlock(&t->lock);
  return svc_reply_set(r, buf, (size_t)n);
}

static const char *arg_or_env(int argc, char **argv, int i, const char *env,
                              const char *def) {
  if (argc > i)
    return argv[i];
  const char *v = getenv(env);
  return v && *v ? v : def;
}

int main(int argc, char **argv) {
  const char *name = arg_or_env(argc, argv, 1, "SVC_SERVICE_NAME", "kv");
  const char *port = arg_or_env(argc, argv, 2, "SVC_SERVICE_PORT", "5202");
  kv_table t = {.nslots = 1024};
  pthread_rwlock_init(&t.lock, NULL);
  t.slots = calloc(t.nslots, sizeof *t.slots);
  if (!t.slots)
    return 1;
  char urls[3][256];
  snprintf(urls[0], sizeof urls[0], "shm://%s", name);
  snprintf(urls[1], sizeof urls[1], "unix:///tmp/svc-%s.sock", name);
  snprintf(urls[2], sizeof urls[2], "tcp://127.0.0.1:%s", port);

  svc_server *s;
  int rc = svc_server_new(name, &s);
  if (rc == 0)
    rc = svc_server_method(s, "set", kv_set, &t);
  if (rc == 0)
    rc = svc_server_method(s, "get", kv_get, &t);
  if (rc == 0)
    rc = svc_server_method(s, "del", kv_del, &t);
  if (rc == 0)
    rc = svc_server_method(s, "count", kv_count, &t);
  for (int i = 0; i < 3 && rc == 0; i++)
    if ((rc = svc_server_listen(s, urls[i])) == 0)
      fprintf(stderr, "kv_server: listening on %s\n", urls[i]);
  if (rc == 0)
    rc = svc_server_run(s); /* until SIGTERM / SIGINT */
  if (rc < 0)
    fprintf(stderr, "kv_server: %s\n", svc_strerror(rc));
  svc_server_free(s);
  fprintf(stderr, "kv_server: stopped with %zu keys\n", t.count);
  for (size_t i = 0; i < t.nslots; i++)
    for (kv_entry *e = t.slots[i], *next; e; e = next) {
      next = e->next;
      free(e);
    }
  free(t.slots);
  pthread_rwlock_destroy(&t.lock);
  return rc < 0 ? 1 : 0;
}

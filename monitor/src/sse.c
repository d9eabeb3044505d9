/* sse.c — the Server-Sent Events hub (see sse.h): a mutex, a list of
 * subscribers, and per subscriber one linear buffer of pending bytes. */
#include "sse.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mon_sys.h"

struct mon_sse_sub {
  mon_sse_hub *hub;
  mon_sse_sub *next;
  mon_sse_topic topic;
  int service, stream;
  char *buf; /* pending bytes: buf[off, len) */
  size_t off, len, cap;
  bool dropped;    /* overflowed, or the hub dropped it */
  bool suspended;  /* the reader found nothing; wake when there is */
  int64_t last_ms; /* when bytes were last queued */
  mon_sse_hooks hooks;
};

struct mon_sse_hub {
  pthread_mutex_t mu;
  mon_sse_sub *subs;
  int n;
  bool closed; /* mon_sse_drop_all: the server stops, no new streams */
};

int mon_sse_hub_new(mon_sse_hub **out) {
  mon_sse_hub *h = mon__calloc(1, sizeof *h);
  if (!h)
    return -1;
  pthread_mutex_init(&h->mu, NULL);
  *out = h;
  return 0;
}

void mon_sse_hub_free(mon_sse_hub *h) {
  if (!h)
    return;
  pthread_mutex_destroy(&h->mu);
  free(h);
}

mon_sse_sub *mon_sse_subscribe(mon_sse_hub *h, mon_sse_topic topic, int service,
                               int stream, int64_t now_ms) {
  mon_sse_sub *s = mon__calloc(1, sizeof *s);
  if (!s)
    return NULL;
  *s = (mon_sse_sub){.hub = h,
                     .topic = topic,
                     .service = service,
                     .stream = stream,
                     .last_ms = now_ms};
  pthread_mutex_lock(&h->mu);
  if (h->n >= MON_SSE_MAX || h->closed) {
    pthread_mutex_unlock(&h->mu);
    free(s);
    return NULL;
  }
  s->next = h->subs;
  h->subs = s;
  h->n++;
  pthread_mutex_unlock(&h->mu);
  return s;
}

void mon_sse_set_hooks(mon_sse_sub *s, const mon_sse_hooks *hooks) {
  pthread_mutex_lock(&s->hub->mu);
  s->hooks = *hooks;
  pthread_mutex_unlock(&s->hub->mu);
}

void mon_sse_unsubscribe(mon_sse_sub *s) {
  if (!s)
    return;
  mon_sse_hub *h = s->hub;
  pthread_mutex_lock(&h->mu);
  for (mon_sse_sub **p = &h->subs; *p; p = &(*p)->next)
    if (*p == s) {
      *p = s->next;
      h->n--;
      break;
    }
  pthread_mutex_unlock(&h->mu);
  free(s->buf);
  free(s);
}

static void sse_wake(mon_sse_sub *s) {
  if (s->suspended && s->hooks.wake) {
    s->suspended = false;
    s->hooks.wake(s->hooks.ctx);
  }
}

/* Appends n bytes, or drops the subscriber if they do not fit the bound.
 * The hub's lock is held. */
static void sse_append(mon_sse_sub *s, const char *p, size_t n) {
  if (s->dropped)
    return;
  size_t pending = s->len - s->off;
  if (pending + n > MON_SSE_BUF) {
    s->dropped = true; /* it stopped reading: let it go */
    free(s->buf);
    s->buf = NULL;
    s->off = s->len = s->cap = 0;
    sse_wake(s);
    return;
  }
  if (s->off && s->len + n > s->cap) { /* move the pending bytes down */
    memmove(s->buf, s->buf + s->off, pending);
    s->len = pending;
    s->off = 0;
  }
  if (s->len + n > s->cap) {
    size_t cap = s->cap ? s->cap : 4096;
    while (cap < s->len + n)
      cap *= 2;
    char *b = mon__realloc(s->buf, cap);
    if (!b) {
      s->dropped = true;
      sse_wake(s);
      return;
    }
    s->buf = b;
    s->cap = cap;
  }
  memcpy(s->buf + s->len, p, n);
  s->len += n;
  sse_wake(s);
}

static void sse_event(mon_sse_sub *s, const char *event, const char *data,
                      size_t len) {
  char head[96];
  int hl = event ? snprintf(head, sizeof head, "event: %s\ndata: ", event)
                 : snprintf(head, sizeof head, "data: ");
  if (hl < 0 || (size_t)hl >= sizeof head)
    return;
  sse_append(s, head, (size_t)hl);
  sse_append(s, data, len);
  sse_append(s, "\n\n", 2);
}

void mon_sse_send(mon_sse_sub *s, const char *event, const char *data,
                  size_t len) {
  pthread_mutex_lock(&s->hub->mu);
  sse_event(s, event, data, len);
  pthread_mutex_unlock(&s->hub->mu);
}

void mon_sse_prepend(mon_sse_sub *s, const char *p, size_t len) {
  pthread_mutex_lock(&s->hub->mu);
  size_t pending = s->len - s->off;
  char *b = NULL;
  if (!s->dropped && pending + len <= MON_SSE_BUF &&
      (b = mon__malloc(pending + len ? pending + len : 1))) {
    memcpy(b, p, len);
    if (pending)
      memcpy(b + len, s->buf + s->off, pending);
    free(s->buf);
    s->buf = b;
    s->off = 0;
    s->len = s->cap = pending + len;
    sse_wake(s);
  } else if (!s->dropped) {
    s->dropped = true;
    sse_wake(s);
  }
  pthread_mutex_unlock(&s->hub->mu);
}

void mon_sse_publish(mon_sse_hub *h, mon_sse_topic topic, int service,
                     int stream, const char *event, const char *data,
                     size_t len) {
  pthread_mutex_lock(&h->mu);
  for (mon_sse_sub *s = h->subs; s; s = s->next)
    if (s->topic == topic && (topic != MON_SSE_LOGS ||
                              (s->service == service && s->stream == stream)))
      sse_event(s, event, data, len);
  pthread_mutex_unlock(&h->mu);
}

void mon_sse_tick(mon_sse_hub *h, int64_t now_ms) {
  static const char ping[] = ": keep-alive\n\n";
  if (!h)
    return;
  pthread_mutex_lock(&h->mu);
  for (mon_sse_sub *s = h->subs; s; s = s->next)
    if (now_ms - s->last_ms >= MON_SSE_KEEPALIVE_MS) {
      sse_append(s, ping, sizeof ping - 1);
      s->last_ms = now_ms;
    }
  pthread_mutex_unlock(&h->mu);
}

void mon_sse_drop_all(mon_sse_hub *h) {
  pthread_mutex_lock(&h->mu);
  h->closed = true; /* a stream opened after this would stay suspended */
  for (mon_sse_sub *s = h->subs; s; s = s->next) {
    s->dropped = true;
    sse_wake(s);
  }
  pthread_mutex_unlock(&h->mu);
}

ssize_t mon_sse_read(mon_sse_sub *s, char *buf, size_t max, int64_t now_ms) {
  pthread_mutex_lock(&s->hub->mu);
  ssize_t n;
  size_t pending = s->len - s->off;
  if (pending) {
    n = (ssize_t)(pending < max ? pending : max);
    memcpy(buf, s->buf + s->off, (size_t)n);
    s->off += (size_t)n;
    if (s->off == s->len)
      s->off = s->len = 0;
    s->last_ms = now_ms;
  } else if (s->dropped) {
    n = -1;
  } else {
    n = 0;
    s->suspended = true;
    if (s->hooks.suspend)
      s->hooks.suspend(s->hooks.ctx);
  }
  pthread_mutex_unlock(&s->hub->mu);
  return n;
}

int mon_sse_count(mon_sse_hub *h) {
  pthread_mutex_lock(&h->mu);
  int n = h->n;
  pthread_mutex_unlock(&h->mu);
  return n;
}

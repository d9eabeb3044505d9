/* view.c — the snapshot and command queue shared with the HTTP thread. */
#include "view.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "mon_sys.h"

int mon_shared_init(mon_shared *s, size_t n) {
  memset(s, 0, sizeof *s);
  /* first: mon_shared_fini destroys it once views exist */
  pthread_mutex_init(&s->mu, NULL);
  s->wake_fd = mon__eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  s->views = mon__calloc(n ? n : 1, sizeof *s->views);
  if (s->wake_fd < 0 || !s->views) {
    int e = s->wake_fd < 0 ? errno : ENOMEM;
    mon_shared_fini(s);
    errno = e;
    return -1;
  }
  s->n = n;
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  s->started_wall_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
  s->store.ok = true;
  return 0;
}

mon_config_ref *mon_config_ref_new(const mon_config *cfg, bool owned) {
  mon_config_ref *r = mon__calloc(1, sizeof *r);
  if (!r)
    return NULL;
  r->cfg = *cfg;
  r->refs = 1;
  r->owned = owned;
  return r;
}

void mon_config_ref_unref(mon_config_ref *r) {
  if (!r || --r->refs > 0)
    return;
  if (r->owned)
    mon_config_fini(&r->cfg);
  free(r);
}

void mon_shared_fini(mon_shared *s) {
  if (s->views)
    pthread_mutex_destroy(&s->mu);
  if (s->wake_fd >= 0)
    close(s->wake_fd);
  mon_config_ref_unref(s->cfg);
  if (s->reload) {
    mon_config_fini(s->reload);
    free(s->reload);
  }
  free(s->views);
  memset(s, 0, sizeof *s);
  s->wake_fd = -1;
}

int mon_shared_publish(mon_shared *s, mon_config_ref *cfg, const mon_view *in,
                       size_t n) {
  pthread_mutex_lock(&s->mu);
  int rc = 0;
  if (n != s->n) {
    mon_view *nv = mon__realloc(s->views, (n ? n : 1) * sizeof *nv);
    if (!nv)
      rc = -1;
    else
      s->views = nv;
  }
  if (rc == 0) {
    if (cfg != s->cfg) {
      cfg->refs++;
      mon_config_ref_unref(s->cfg);
      s->cfg = cfg;
    }
    s->n = n;
    memcpy(s->views, in, n * sizeof *in);
  }
  pthread_mutex_unlock(&s->mu);
  return rc;
}

mon_config_ref *mon_shared_config(mon_shared *s) {
  pthread_mutex_lock(&s->mu);
  mon_config_ref *r = s->cfg;
  if (r)
    r->refs++;
  pthread_mutex_unlock(&s->mu);
  return r;
}

void mon_shared_release(mon_shared *s, mon_config_ref *cfg) {
  pthread_mutex_lock(&s->mu);
  mon_config_ref_unref(cfg);
  pthread_mutex_unlock(&s->mu);
}

bool mon_shared_get(mon_shared *s, const mon_config_ref *cfg, mon_view *out) {
  pthread_mutex_lock(&s->mu);
  bool same = cfg && cfg == s->cfg;
  if (same)
    memcpy(out, s->views, s->n * sizeof *out);
  pthread_mutex_unlock(&s->mu);
  return same;
}

static void shared_wake(mon_shared *s) {
  if (s->wake_fd >= 0) {
    uint64_t one = 1;
    ssize_t w = write(s->wake_fd, &one, sizeof one);
    (void)w; /* a full counter already means "wake up" */
  }
}

int mon_shared_push(mon_shared *s, const char *service, mon_action a) {
  pthread_mutex_lock(&s->mu);
  int rc = -1;
  if (s->nqueue < MON_QUEUE_MAX && strlen(service) <= MON_NAME_MAX) {
    mon_command *c = &s->queue[s->nqueue++];
    snprintf(c->service, sizeof c->service, "%s", service);
    c->action = a;
    rc = 0;
  }
  pthread_mutex_unlock(&s->mu);
  if (rc == 0)
    shared_wake(s);
  return rc;
}

void mon_shared_push_reload(mon_shared *s, mon_config *cfg) {
  pthread_mutex_lock(&s->mu);
  mon_config *old = s->reload;
  s->reload = cfg;
  pthread_mutex_unlock(&s->mu);
  if (old) {
    mon_config_fini(old);
    free(old);
  }
  shared_wake(s);
}

mon_config *mon_shared_take_reload(mon_shared *s) {
  pthread_mutex_lock(&s->mu);
  mon_config *c = s->reload;
  s->reload = NULL;
  pthread_mutex_unlock(&s->mu);
  return c;
}

size_t mon_shared_take(mon_shared *s, mon_command *out, size_t cap) {
  pthread_mutex_lock(&s->mu);
  size_t n = s->nqueue < cap ? s->nqueue : cap;
  memcpy(out, s->queue, n * sizeof *out);
  memmove(s->queue, s->queue + n, (s->nqueue - n) * sizeof *out);
  s->nqueue -= n;
  pthread_mutex_unlock(&s->mu);
  return n;
}

void mon_shared_set_store(mon_shared *s, const mon_store_status *st) {
  pthread_mutex_lock(&s->mu);
  s->store = *st;
  pthread_mutex_unlock(&s->mu);
}

void mon_shared_get_store(mon_shared *s, mon_store_status *out) {
  pthread_mutex_lock(&s->mu);
  *out = s->store;
  pthread_mutex_unlock(&s->mu);
}

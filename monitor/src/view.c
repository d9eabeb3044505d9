/* view.c — the snapshot and command queue shared with the HTTP thread. */
#include "view.h"

#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

int mon_shared_init(mon_shared *s, size_t n) {
  memset(s, 0, sizeof *s);
  s->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  s->views = calloc(n ? n : 1, sizeof *s->views);
  if (s->wake_fd < 0 || !s->views) {
    mon_shared_fini(s);
    return -1;
  }
  s->n = n;
  pthread_mutex_init(&s->mu, NULL);
  return 0;
}

void mon_shared_fini(mon_shared *s) {
  if (s->views)
    pthread_mutex_destroy(&s->mu);
  if (s->wake_fd >= 0)
    close(s->wake_fd);
  free(s->views);
  memset(s, 0, sizeof *s);
  s->wake_fd = -1;
}

void mon_shared_get(mon_shared *s, mon_view *out) {
  pthread_mutex_lock(&s->mu);
  memcpy(out, s->views, s->n * sizeof *out);
  pthread_mutex_unlock(&s->mu);
}

void mon_shared_put(mon_shared *s, const mon_view *in) {
  pthread_mutex_lock(&s->mu);
  memcpy(s->views, in, s->n * sizeof *in);
  pthread_mutex_unlock(&s->mu);
}

int mon_shared_push(mon_shared *s, size_t service, mon_action a) {
  pthread_mutex_lock(&s->mu);
  int rc = -1;
  if (s->nqueue < MON_QUEUE_MAX) {
    s->queue[s->nqueue++] = (mon_command){service, a};
    rc = 0;
  }
  pthread_mutex_unlock(&s->mu);
  if (rc == 0 && s->wake_fd >= 0) {
    uint64_t one = 1;
    ssize_t w = write(s->wake_fd, &one, sizeof one);
    (void)w; /* a full counter already means "wake up" */
  }
  return rc;
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

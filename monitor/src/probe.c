/* probe.c — readiness probe of a libsvc service: any reply to the built-in
 * svc.ping method means its server loop is serving. The prober thread takes
 * requests from the event loop and leaves results for it, under one mutex;
 * a generation number per service discards a result that belongs to a run
 * that has been reset meanwhile. */
#include "probe.h"

#include "bgthread.h"
#include "mon_sys.h"
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <svc.h>

int mon_probe_ping(const char *name, int timeout_ms) {
  char url[128];
  snprintf(url, sizeof url, "shm://%s", name);
  svc_client *c = NULL;
  if (svc_client_open(url, &c) != 0)
    return 0;
  svc_client_set_timeout(c, timeout_ms);
  const void *resp;
  size_t len;
  int rc = svc_call(c, "svc.ping", "", 0, &resp, &len);
  svc_client_close(c);
  return rc == 0;
}

typedef struct probe_slot {
  bool wanted;  /* the loop asked for a probe */
  bool ok;      /* a probe succeeded since the last reset */
  unsigned gen; /* bumped by reset */
} probe_slot;

struct mon_prober {
  const mon_config *cfg;
  int timeout_ms;
  mon_bgthread bg; /* bg.mu guards slots */
  probe_slot *slots;
};

static void *probe_main(void *arg) {
  mon_prober *p = arg;
  pthread_mutex_lock(&p->bg.mu);
  while (!p->bg.quit) {
    bool did = false;
    for (size_t i = 0; i < p->cfg->nservices && !p->bg.quit; i++) {
      if (!p->slots[i].wanted)
        continue;
      unsigned gen = p->slots[i].gen;
      pthread_mutex_unlock(&p->bg.mu);
      int ok = mon_probe_ping(p->cfg->services[i].name, p->timeout_ms);
      pthread_mutex_lock(&p->bg.mu);
      p->slots[i].wanted = false;
      if (ok && gen == p->slots[i].gen)
        p->slots[i].ok = true;
      did = true;
    }
    if (!did && !p->bg.quit)
      pthread_cond_wait(&p->bg.cv, &p->bg.mu);
  }
  pthread_mutex_unlock(&p->bg.mu);
  return NULL;
}

mon_prober *mon_prober_new(const mon_config *cfg, int timeout_ms) {
  mon_prober *p = mon__calloc(1, sizeof *p);
  if (!p)
    return NULL;
  p->cfg = cfg;
  p->timeout_ms = timeout_ms;
  p->slots = mon__calloc(cfg->nservices ? cfg->nservices : 1, sizeof *p->slots);
  if (!p->slots) {
    free(p);
    return NULL;
  }
  if (mon_bgthread_start(&p->bg, probe_main, p) != 0) {
    free(p->slots);
    free(p);
    return NULL;
  }
  return p;
}

void mon_prober_free(mon_prober *p) {
  if (!p)
    return;
  mon_bgthread_stop(&p->bg);
  free(p->slots);
  free(p);
}

int mon_prober_poll(mon_prober *p, size_t i) {
  if (i >= p->cfg->nservices)
    return 0;
  pthread_mutex_lock(&p->bg.mu);
  int ok = p->slots[i].ok;
  if (!ok && !p->slots[i].wanted) {
    p->slots[i].wanted = true;
    pthread_cond_signal(&p->bg.cv);
  }
  pthread_mutex_unlock(&p->bg.mu);
  return ok;
}

void mon_prober_reset(mon_prober *p, size_t i) {
  if (i >= p->cfg->nservices)
    return;
  pthread_mutex_lock(&p->bg.mu);
  p->slots[i].ok = false;
  p->slots[i].gen++;
  pthread_mutex_unlock(&p->bg.mu);
}

/* soak_client.c — one client process of the soak: calls "work" without
 * pause until the phase ends, one call at a time or in pipelined batches,
 * and writes every call's outcome and wait into its own MAP_SHARED file
 * before and after the call, so the record survives whatever happens. */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "soak.h"
#include "svc.h"

#define BATCH_MAX 8
#define REFUSED_BACKOFF_MS 10 /* nothing listens: a caller waits a moment */
#define OPEN_RETRY_MS 20

typedef struct client {
  const soak_client_cfg *cfg;
  soak_client_head *head;
  soak_call *calls; /* [cfg->capacity] */
  svc_client *c;
  uint64_t rng;
  uint32_t last_pid; /* the worker of the last success */
} client;

static int64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Opens the client, trying again while nothing listens (the master may be
 * restarting) until the phase ends. 0, or -1 when the phase ended first. */
static int client_open(client *k) {
  while (soak_now_ms() < k->cfg->end_ms) {
    int64_t t0 = soak_now_ms();
    int rc = svc_client_open(k->cfg->url, &k->c);
    uint32_t took = (uint32_t)(soak_now_ms() - t0);
    if (took > k->head->open_max_ms)
      k->head->open_max_ms = took;
    if (rc == 0)
      rc = svc_client_set_timeout(k->c, k->cfg->timeout_ms);
    if (rc == 0) {
      k->head->opened = 1;
      return 0;
    }
    if (k->c) {
      svc_client_close(k->c);
      k->c = NULL;
    }
    if (!soak_rc_actionable(rc))
      k->head->open_bad_rc = rc;
    soak_sleep_ms(OPEN_RETRY_MS);
  }
  return -1;
}

/* Numbers the next call and marks it started; NULL once every number of
 * the file was used. */
static soak_call *call_begin(client *k, int how, soak_request *req) {
  uint32_t seq = k->head->ncalls;
  if (seq >= k->cfg->capacity) {
    k->head->full = 1;
    return NULL;
  }
  soak_call *call = &k->calls[seq];
  call->how = (uint8_t)how;
  call->start_ms = (uint32_t)soak_now_ms();
  call->state = SOAK_CALL_STARTED;
  k->head->ncalls = seq + 1;
  *req = (soak_request){.client = k->cfg->id,
                        .seq = seq,
                        .burn_us = (uint32_t)soak_rand_range(&k->rng, 0, 300),
                        .magic = SOAK_MAGIC};
  return call;
}

/* Records a call's outcome; a success must carry the reply to this call. */
static void call_end(client *k, soak_call *call, int rc, int stage,
                     int64_t t0_us, const void *resp, size_t len) {
  call->elapsed_us = (uint32_t)(now_us() - t0_us);
  call->stage = (uint8_t)stage;
  if (rc == 0) {
    soak_reply r;
    uint32_t seq = (uint32_t)(call - k->calls);
    if (len != sizeof r) {
      rc = SOAK_RC_BAD_REPLY;
    } else {
      memcpy(&r, resp, sizeof r);
      if (r.magic != SOAK_MAGIC || r.client != k->cfg->id || r.seq != seq)
        rc = SOAK_RC_BAD_REPLY;
      call->reply_pid = r.pid;
      k->head->moves += k->last_pid && r.pid != k->last_pid;
      k->last_pid = r.pid;
    }
  }
  call->rc = rc;
  call->state = SOAK_CALL_DONE;
}

static int call_one(client *k) {
  soak_request req;
  soak_call *call = call_begin(k, SOAK_HOW_CALL, &req);
  if (!call)
    return 0;
  const void *resp = NULL;
  size_t len = 0;
  int64_t t0 = now_us();
  int rc = svc_call(k->c, SOAK_METHOD, &req, sizeof req, &resp, &len);
  call_end(k, call, rc, SOAK_STAGE_FINISH, t0, resp, len);
  return rc;
}

/* The calls left of a batch never finished: each is recorded as lost, and
 * the client starts afresh. */
static int lose_batch(client *k, soak_call **calls, const int64_t *t0,
                      int out) {
  for (int i = 0; i < out; i++)
    call_end(k, calls[i], SOAK_RC_LOST, SOAK_STAGE_FINISH, t0[i], NULL, 0);
  k->head->lost_batches++;
  svc_client_close(k->c);
  k->c = NULL;
  return client_open(k) == 0 ? SOAK_RC_LOST : 0;
}

/* A batch of calls in flight at once, then each received as it finishes.
 * Returns the last outcome seen. */
static int call_batch(client *k, int n) {
  uint64_t ids[BATCH_MAX];
  soak_call *calls[BATCH_MAX];
  int64_t t0[BATCH_MAX];
  int out = 0, rc = 0;
  for (int i = 0; i < n; i++) {
    soak_request req;
    soak_call *call = call_begin(k, SOAK_HOW_PIPELINED, &req);
    if (!call)
      break;
    int64_t t = now_us();
    uint64_t id = 0;
    rc = svc_call_send(k->c, SOAK_METHOD, &req, sizeof req, &id);
    if (rc != 0) { /* refused for now (SVC_EAGAIN) or failed: no id */
      call_end(k, call, rc, SOAK_STAGE_SEND, t, NULL, 0);
      break;
    }
    ids[out] = id;
    calls[out] = call;
    t0[out++] = t;
  }
  while (out > 0) {
    uint64_t id = 0;
    const void *resp = NULL;
    size_t len = 0;
    /* Every call in flight is past its own deadline by then. */
    rc = svc_call_recv(k->c, k->cfg->timeout_ms + k->cfg->slack_ms, &id, &resp,
                       &len);
    if (id == 0) /* calls in flight, yet none finished */
      return lose_batch(k, calls, t0, out);
    int i = 0;
    while (i < out && ids[i] != id)
      i++;
    if (i == out) { /* counted; a flood of them ends the batch as lost */
      if (++k->head->unknown_ids % (4 * BATCH_MAX) == 0)
        return lose_batch(k, calls, t0, out);
      continue;
    }
    call_end(k, calls[i], rc, SOAK_STAGE_FINISH, t0[i], resp, len);
    out--;
    ids[i] = ids[out];
    calls[i] = calls[out];
    t0[i] = t0[out];
  }
  return rc;
}

void soak_client_main(const soak_client_cfg *cfg) {
  client k = {.cfg = cfg, .rng = cfg->seed};
  size_t size = sizeof(soak_client_head) + cfg->capacity * sizeof(soak_call);
  k.head = soak_map(cfg->path, size);
  if (!k.head)
    _exit(2);
  k.calls = (soak_call *)(k.head + 1);
  if (client_open(&k) == 0) {
    while (soak_now_ms() < cfg->end_ms && !k.head->full && k.c) {
      int rc = soak_rand_range(&k.rng, 0, 3) == 0
                   ? call_batch(&k, soak_rand_range(&k.rng, 2, BATCH_MAX))
                   : call_one(&k);
      if (rc == SVC_ECONNREFUSED)
        soak_sleep_ms(REFUSED_BACKOFF_MS);
    }
    svc_client_close(k.c);
  }
  k.head->exit_ok = 1;
  _exit(0);
}

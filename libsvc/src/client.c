/* client.c — svc_client: a URL, its transport and at most one live
 * connection, opened again on the next call when the server closed it
 * between calls. Knows nothing of how a transport moves bytes. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "transport.h"

struct svc_client {
  svc__url url;
  const svc__transport *tp;
  svc__conn *conn; /* NULL between a lost connection and the next call */
  svc__conn_opts opts;
  int timeout_ms;   /* 0: none */
  int handler_code; /* from the last SVC_EHANDLER */
};

static int client_dial(svc_client *c, int64_t deadline) {
  return c->tp->dial(&c->url, &c->opts, deadline, &c->conn);
}

static void client_drop(svc_client *c) {
  if (c->conn)
    c->tp->close(c->conn);
  c->conn = NULL;
}

int svc_client_open(const char *url, svc_client **out) {
  if (!url || !out)
    return SVC_EINVAL;
  *out = NULL;
  svc_client *c = calloc(1, sizeof *c);
  if (!c)
    return SVC_ENOMEM;
  int rc = svc__url_parse(url, &c->url);
  if (rc == 0 && !(c->tp = svc__transport_find(c->url.scheme)))
    rc = SVC_EINVAL;
  c->opts.max_payload = SVC_DEFAULT_MAX_MSG;
  c->opts.wait = SVC_WAIT_ADAPTIVE;
  if (rc == 0)
    rc = client_dial(c, INT64_MAX);
  if (rc < 0) {
    free(c);
    return rc;
  }
  *out = c;
  return 0;
}

/* Maps a reply status to what svc_call returns. */
static int status_result(svc_client *c, int32_t status) {
  if (status > 0) {
    c->handler_code = status;
    return SVC_EHANDLER;
  }
  if (status < 0 && strcmp(svc_err_name(status), "SVC_EUNKNOWN") == 0)
    return SVC_EPROTO;
  return status;
}

int svc_call(svc_client *c, const char *method, const void *req, size_t len,
             const void **resp, size_t *resp_len) {
  if (!c || !method || (!req && len) || !resp || !resp_len)
    return SVC_EINVAL;
  size_t mlen = strlen(method);
  if (mlen == 0 || mlen > SVC_METHOD_MAX)
    return SVC_EINVAL;
  if (len > c->opts.max_payload)
    return SVC_ETOOBIG;
  *resp = NULL;
  *resp_len = 0;
  c->handler_code = 0;
  int64_t deadline = svc__deadline(c->timeout_ms);
  svc__result res;
  int rc = 0;
  /* Two tries: the second only when the first connection was found closed
   * before the server took the call, so no call ever runs twice. */
  for (int attempt = 0; attempt < 2; attempt++) {
    if (!c->conn && (rc = client_dial(c, deadline)) < 0)
      return rc;
    rc =
        c->tp->call(c->conn, method, mlen, req ? req : "", len, deadline, &res);
    if (rc == 0 || rc == SVC_ETOOBIG)
      break;
    client_drop(c);
    if (!(rc == SVC_EPEERGONE && res.not_taken))
      return rc;
  }
  if (rc < 0)
    return rc;
  if (res.status != 0)
    return status_result(c, res.status);
  *resp = res.payload;
  *resp_len = res.len;
  return 0;
}

int svc_client_set_timeout(svc_client *c, int ms) {
  if (!c || ms < 0)
    return SVC_EINVAL;
  c->timeout_ms = ms;
  return 0;
}

int svc_client_set_wait(svc_client *c, svc_wait_policy p) {
  if (!c || p < SVC_WAIT_ADAPTIVE || p > SVC_WAIT_BLOCK)
    return SVC_EINVAL;
  c->opts.wait = p;
  client_drop(c); /* the next call reconnects with the new policy */
  return 0;
}

int svc_client_set_max_msg(svc_client *c, size_t bytes) {
  if (!c || bytes == 0 || bytes > SVC__MAX_MSG_LIMIT)
    return SVC_EINVAL;
  c->opts.max_payload = bytes;
  client_drop(c);
  return 0;
}

int svc_client_handler_code(const svc_client *c) {
  return c ? c->handler_code : 0;
}

void svc_client_close(svc_client *c) {
  if (!c)
    return;
  client_drop(c);
  free(c);
}

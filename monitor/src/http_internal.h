/* http_internal.h — what the files of the HTTP side share: the server's
 * state, one request's state, and the response helpers. http.c routes and
 * renders pages and JSON; http_session.c signs people in and guards the
 * POST routes; http_live.c serves the Server-Sent Event streams;
 * http_metrics.c the Prometheus text. */
#ifndef MON_HTTP_INTERNAL_H
#define MON_HTTP_INTERNAL_H

#include <microhttpd.h>
#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "http.h"
#include "route.h"
#include "session.h"
#include "store.h"

struct mon_http {
  const mon_http_opts *o; /* o->cfg: the address bound at start */
  /* The config of the request being served (the MHD thread's alone),
   * taken from the shared snapshot as each request starts: a reload
   * replaces it between requests, never during one. */
  mon_config_ref *cfg_ref;
  const mon_config *cfg;
  struct MHD_Daemon *d;
  int port;
  mon_reader *reader;    /* used only by the MHD thread */
  mon_sessions sessions; /* used only by the MHD thread */
};

#define HTTP_FORM_FIELD_MAX 128
#define HTTP_BODY_MAX 8192

/* One request, from its headers to its completion: the form fields of a
 * POST body (token, csrf, back), parsed by libmicrohttpd's post processor. */
typedef struct http_request {
  struct MHD_PostProcessor *pp;
  size_t body_bytes;
  bool form_bad; /* too large, or a field over HTTP_FORM_FIELD_MAX */
  char token[HTTP_FORM_FIELD_MAX + 1];
  char csrf[HTTP_FORM_FIELD_MAX + 1];
  char back[HTTP_FORM_FIELD_MAX + 1];
} http_request;

int64_t mon_http_now_ms(void);
/* Queues b (freed) with the security headers, and extra name/value pairs
 * from hdrs (NULL-terminated; hdrs itself may be NULL). */
enum MHD_Result mon_http_send_hdrs(struct MHD_Connection *c, unsigned status,
                                   const char *type, mon_buf *b,
                                   const char *const *hdrs);
enum MHD_Result mon_http_send(struct MHD_Connection *c, unsigned status,
                              const char *type, mon_buf *b);
/* {"error": msg} as JSON. */
enum MHD_Result mon_http_error(struct MHD_Connection *c, unsigned status,
                               const char *msg);
/* 303 to a local path. */
enum MHD_Result mon_http_redirect(struct MHD_Connection *c, const char *path,
                                  const char *cookie);
mon_reader *mon_http_reader(mon_http *h);
/* The service's index in the config, or -1. */
int mon_http_find(const mon_http *h, const char *name);
/* A copy of every service's view (free it), or NULL. */
mon_view *mon_http_views(mon_http *h);
/* JSON pieces the API and the live streams share: ,"workers":N,
 * "worker_pids":[...] of a view, and one log line as an object. */
void mon_http_workers_json(mon_buf *b, const mon_view *w);
void mon_http_line_json(mon_buf *b, int64_t ts_ms, const char *stream,
                        const char *line, size_t len);
/* ,"health":null without a probe, else ,"health":{"state","failures",
 * "reason"} (and "probe", its text, when probe). */
void mon_http_health_json(mon_buf *b, const mon_service_cfg *s,
                          const mon_view *w, bool probe);
/* The page's head and header bar; sess (may be NULL) adds the CSRF token
 * for the scripts and the sign-out button, a failing store (may be NULL)
 * its banner. */
void mon_http_head(mon_buf *b, const char *title, bool refresh,
                   const mon_session *sess, const mon_store_status *store);
/* {"ok":...,"error":...,"since_ms":...} of the store's health. */
void mon_http_store_json(mon_buf *b, const mon_store_status *st);

/* ---- http_session.c ---- */

/* The signed-in session of this request (its cookie), or NULL. */
mon_session *mon_http_session(mon_http *h, struct MHD_Connection *c);
/* Feeds a POST body to the request's form parser: MHD_YES, or MHD_NO. */
enum MHD_Result mon_http_form_feed(struct MHD_Connection *c, http_request *rq,
                                   const char *data, size_t *size);
void mon_http_request_free(http_request *rq);
enum MHD_Result mon_http_login(mon_http *h, struct MHD_Connection *c,
                               const mon_route *rt, const http_request *rq);
enum MHD_Result mon_http_logout(mon_http *h, struct MHD_Connection *c,
                                const http_request *rq);
/* Whether a POST that changes state may go on: a foreign Origin is 403; a
 * bearer token, or a session with its CSRF token (header or form field),
 * is allowed; else 401. 0 if allowed, else the HTTP status, *why set. */
int mon_http_post_allowed(mon_http *h, struct MHD_Connection *c,
                          const http_request *rq, const char **why);
/* The buttons of one service, as forms that work without JavaScript. */
void mon_http_buttons(mon_buf *b, const char *name, const mon_session *sess,
                      const char *back);

/* ---- http_metrics.c ---- */

/* GET /metrics. */
enum MHD_Result mon_http_prometheus(mon_http *h, struct MHD_Connection *c);

/* ---- http_live.c ---- */

enum MHD_Result mon_http_events(mon_http *h, struct MHD_Connection *c);
enum MHD_Result mon_http_log_stream(mon_http *h, struct MHD_Connection *c,
                                    const mon_route *rt);

#endif

/* http_session.c — signing in on the dashboard and the rules for every POST
 * that changes state: the login form and its throttle, the session cookie,
 * CSRF tokens, the Origin check, and the Start/Stop/Restart forms. Form
 * bodies are parsed by libmicrohttpd's post processor. */
#include "http_internal.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "token.h"

/* ---- form bodies ---- */

static enum MHD_Result http_form_field(void *cls, enum MHD_ValueKind kind,
                                       const char *key, const char *filename,
                                       const char *content_type,
                                       const char *transfer_encoding,
                                       const char *data, uint64_t off,
                                       size_t size) {
  (void)kind;
  (void)filename;
  (void)content_type;
  (void)transfer_encoding;
  http_request *rq = cls;
  char *field = !strcmp(key, "token")  ? rq->token
                : !strcmp(key, "csrf") ? rq->csrf
                : !strcmp(key, "back") ? rq->back
                                       : NULL;
  if (!field)
    return MHD_YES; /* other fields are ignored */
  if (off + size > HTTP_FORM_FIELD_MAX) {
    rq->form_bad = true;
    return MHD_NO;
  }
  memcpy(field + off, data, size);
  field[off + size] = '\0';
  return MHD_YES;
}

enum MHD_Result mon_http_form_feed(struct MHD_Connection *c, http_request *rq,
                                   const char *data, size_t *size) {
  rq->body_bytes += *size;
  if (rq->body_bytes > HTTP_BODY_MAX)
    rq->form_bad = true;
  if (!rq->form_bad && !rq->pp)
    rq->pp = MHD_create_post_processor(c, 1024, http_form_field, rq);
  /* not a form (no post processor for its type): the body is ignored */
  if (!rq->form_bad && rq->pp &&
      MHD_post_process(rq->pp, data, *size) != MHD_YES)
    rq->form_bad = true;
  *size = 0;
  return MHD_YES;
}

void mon_http_request_free(http_request *rq) {
  if (!rq)
    return;
  if (rq->pp)
    MHD_destroy_post_processor(rq->pp);
  free(rq);
}

/* ---- who is asking ---- */

mon_session *mon_http_session(mon_http *h, struct MHD_Connection *c) {
  const char *cookies =
      MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Cookie");
  char id[MON_SESSION_ID_LEN + 1];
  if (!mon_cookie_get(cookies, MON_SESSION_COOKIE, id, sizeof id))
    return NULL;
  return mon_session_find(&h->sessions, id, mon_http_now_ms());
}

static void http_client_addr(struct MHD_Connection *c, char *out, size_t cap) {
  const union MHD_ConnectionInfo *ci =
      MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
  snprintf(out, cap, "?");
  if (!ci || !ci->client_addr)
    return;
  const struct sockaddr *sa = ci->client_addr;
  if (sa->sa_family == AF_INET)
    inet_ntop(AF_INET,
              &((const struct sockaddr_in *)(const void *)sa)->sin_addr, out,
              (socklen_t)cap);
  else if (sa->sa_family == AF_INET6)
    inet_ntop(AF_INET6,
              &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, out,
              (socklen_t)cap);
}

/* Whether the request's Origin (if any) is the dashboard's own. */
static bool http_same_origin(struct MHD_Connection *c) {
  return mon_origin_ok(
      MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin"),
      MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Host"));
}

int mon_http_post_allowed(mon_http *h, struct MHD_Connection *c,
                          const http_request *rq, const char **why) {
  if (!http_same_origin(c)) {
    *why = "cross-origin request refused";
    return 403;
  }
  const char *auth =
      MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
  if (auth && mon_token_check(h->o->token, auth))
    return 0;
  mon_session *s = mon_http_session(h, c);
  if (!s) {
    *why = auth ? "missing or wrong bearer token"
                : "sign in, or send the bearer token";
    return 401;
  }
  const char *csrf =
      MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-CSRF-Token");
  if (!csrf)
    csrf = rq->csrf;
  if (!mon_secret_eq(s->csrf, csrf)) {
    *why = "missing or wrong CSRF token";
    return 403;
  }
  return 0;
}

/* ---- pages ---- */

static enum MHD_Result http_login_page(struct MHD_Connection *c,
                                       unsigned status, const char *msg) {
  mon_buf b = {0};
  mon_http_head(&b, "Sign in · svc-monitor", false, NULL, NULL);
  mon_buf_puts(&b, "<h1>Sign in</h1>");
  if (msg) {
    mon_buf_puts(&b, "<p class=\"error\">");
    mon_buf_html(&b, msg, strlen(msg));
    mon_buf_puts(&b, "</p>");
  }
  mon_buf_puts(&b,
               "<form class=\"login\" method=\"post\" action=\"/login\">"
               "<label>Control token <input type=\"password\" name=\"token\" "
               "autocomplete=\"current-password\" autofocus required></label> "
               "<button>Sign in</button></form><p class=\"hint\">The token is "
               "in the monitor's <code>token_file</code> (see its start-up "
               "line).</p></main></body></html>");
  return mon_http_send(c, status, "text/html; charset=utf-8", &b);
}

enum MHD_Result mon_http_login(mon_http *h, struct MHD_Connection *c,
                               const mon_route *rt, const http_request *rq) {
  if (!rt->post)
    return http_login_page(c, 200, NULL);
  if (!http_same_origin(c))
    return mon_http_error(c, 403, "cross-origin request refused");
  char addr[64];
  http_client_addr(c, addr, sizeof addr);
  int64_t now = mon_http_now_ms();
  if (!mon_login_allowed(&h->sessions, addr, now))
    return http_login_page(
        c, 429, "Too many wrong tokens: wait a minute and try again.");
  if (!mon_secret_eq(h->o->token, rq->token)) {
    mon_login_failed(&h->sessions, addr, now);
    return http_login_page(c, 401, "Wrong token.");
  }
  mon_session *s;
  if (mon_session_new(&h->sessions, now, &s) != 0)
    return mon_http_error(c, 500, "no randomness for a session id");
  char cookie[128];
  snprintf(cookie, sizeof cookie,
           MON_SESSION_COOKIE "=%s; HttpOnly; SameSite=Strict; Path=/", s->id);
  return mon_http_redirect(c, "/", cookie);
}

enum MHD_Result mon_http_logout(mon_http *h, struct MHD_Connection *c,
                                const http_request *rq) {
  const char *why;
  int status = mon_http_post_allowed(h, c, rq, &why);
  if (status)
    return mon_http_error(c, (unsigned)status, why);
  mon_session *s = mon_http_session(h, c);
  if (s)
    mon_session_end(s);
  return mon_http_redirect(c, "/",
                           MON_SESSION_COOKIE "=; HttpOnly; SameSite=Strict; "
                                              "Path=/; Max-Age=0");
}

void mon_http_buttons(mon_buf *b, const char *name, const mon_session *sess,
                      const char *back) {
  static const char *const actions[] = {"start", "stop", "restart"};
  static const char *const labels[] = {"Start", "Stop", "Restart"};
  mon_buf_puts(b, "<span class=\"control\">");
  for (int k = 0; k < 3; k++)
    mon_buf_printf(b,
                   "<form class=\"inline\" method=\"post\" "
                   "action=\"/api/services/%s/%s\"><input type=\"hidden\" "
                   "name=\"csrf\" value=\"%s\"><input type=\"hidden\" "
                   "name=\"back\" value=\"%s\"><button data-action=\"%s\">%s"
                   "</button></form>",
                   name, actions[k], sess->csrf, back, actions[k], labels[k]);
  mon_buf_puts(b, "</span>");
}

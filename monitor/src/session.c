/* session.c — sign-in sessions, CSRF tokens, the sign-in throttle and the
 * Cookie / Origin checks (see session.h). */
#include "session.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "token.h"

int mon_session_new(mon_sessions *t, int64_t now_ms, mon_session **out) {
  mon_session *slot = &t->s[0];
  for (size_t i = 0; i < MON_SESSION_MAX; i++) {
    mon_session *s = &t->s[i];
    if (s->last_ms && now_ms - s->last_ms > MON_SESSION_IDLE_MS)
      mon_session_end(s);
    if (s->last_ms < slot->last_ms)
      slot = s; /* a free one (0), else the least recently used */
  }
  mon_session fresh = {.last_ms = now_ms};
  if (mon_random_hex(fresh.id, MON_SESSION_ID_LEN / 2) != 0 ||
      mon_random_hex(fresh.csrf, MON_SESSION_ID_LEN / 2) != 0)
    return -1;
  *slot = fresh;
  *out = slot;
  return 0;
}

mon_session *mon_session_find(mon_sessions *t, const char *id, int64_t now_ms) {
  if (!id || strlen(id) != MON_SESSION_ID_LEN)
    return NULL;
  for (size_t i = 0; i < MON_SESSION_MAX; i++) {
    mon_session *s = &t->s[i];
    if (!s->last_ms || !mon_secret_eq(s->id, id))
      continue;
    if (now_ms - s->last_ms > MON_SESSION_IDLE_MS) {
      mon_session_end(s);
      return NULL;
    }
    s->last_ms = now_ms;
    return s;
  }
  return NULL;
}

void mon_session_end(mon_session *s) { memset(s, 0, sizeof *s); }

static int login_recent(const mon_login_fails *f, int64_t now_ms) {
  int n = 0;
  for (int i = 0; i < f->n; i++)
    n += now_ms - f->at[i] < MON_LOGIN_WINDOW_MS;
  return n;
}

bool mon_login_allowed(const mon_sessions *t, const char *addr,
                       int64_t now_ms) {
  for (size_t i = 0; i < MON_LOGIN_ADDRS; i++)
    if (t->fails[i].addr[0] && !strcmp(t->fails[i].addr, addr))
      return login_recent(&t->fails[i], now_ms) < MON_LOGIN_FAILS_MAX;
  return true;
}

void mon_login_failed(mon_sessions *t, const char *addr, int64_t now_ms) {
  mon_login_fails *f = NULL, *oldest = &t->fails[0];
  for (size_t i = 0; i < MON_LOGIN_ADDRS && !f; i++) {
    mon_login_fails *c = &t->fails[i];
    if (c->addr[0] && !strcmp(c->addr, addr))
      f = c;
    else if (!c->addr[0] || login_recent(c, now_ms) == 0)
      oldest = c; /* free, or nothing within the window: reusable */
  }
  if (!f) {
    f = oldest;
    memset(f, 0, sizeof *f);
    snprintf(f->addr, sizeof f->addr, "%s", addr);
  }
  /* the ring keeps the newest MON_LOGIN_FAILS_MAX failures */
  memmove(f->at + 1, f->at, (MON_LOGIN_FAILS_MAX - 1) * sizeof f->at[0]);
  f->at[0] = now_ms;
  if (f->n < MON_LOGIN_FAILS_MAX)
    f->n++;
}

bool mon_cookie_get(const char *header, const char *name, char *out,
                    size_t cap) {
  if (!header || cap == 0)
    return false;
  size_t nl = strlen(name);
  const char *p = header;
  while (*p) {
    p += strspn(p, " \t;");
    const char *end = p + strcspn(p, ";");
    const char *eq = memchr(p, '=', (size_t)(end - p));
    if (eq && (size_t)(eq - p) == nl && !memcmp(p, name, nl)) {
      const char *v = eq + 1;
      size_t vl = (size_t)(end - v);
      while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
        vl--;
      if (vl >= 2 && v[0] == '"' && v[vl - 1] == '"') {
        v++;
        vl -= 2;
      }
      if (vl >= cap)
        return false;
      memcpy(out, v, vl);
      out[vl] = '\0';
      return true;
    }
    p = end;
  }
  return false;
}

bool mon_origin_ok(const char *origin, const char *host) {
  if (!origin)
    return true;
  if (!host || strncasecmp(origin, "http://", 7) != 0)
    return false;
  return strcasecmp(origin + 7, host) == 0;
}

bool mon_local_path_ok(const char *p) {
  if (!p || p[0] != '/' || p[1] == '/' || strlen(p) > 128)
    return false;
  return strspn(p, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                   "0123456789/._-") == strlen(p) &&
         !strstr(p, "/."); /* no segment starts with '.': no ".." */
}

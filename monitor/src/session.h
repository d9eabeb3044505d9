/* session.h — who may press the dashboard's buttons: sessions made by
 * signing in with the control token (random 128-bit ids held in memory,
 * expiring after 12 h idle), each with the CSRF token bound to it; the
 * sign-in throttle per client address; and the pure checks of a request's
 * Cookie and Origin headers (fuzzed by fuzz/fuzz_http.c). The table is
 * used by the HTTP thread only, so it has no lock. */
#ifndef MON_SESSION_H
#define MON_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MON_SESSION_COOKIE "svc_session"
#define MON_SESSION_ID_LEN 32 /* hex of 16 random bytes */
#define MON_SESSION_MAX 256   /* then the least recently used is replaced */
#define MON_SESSION_IDLE_MS (12LL * 3600 * 1000)
#define MON_LOGIN_FAILS_MAX 5     /* failed sign-ins per address ... */
#define MON_LOGIN_WINDOW_MS 60000 /* ... per minute, then 429 */
#define MON_LOGIN_ADDRS 64        /* addresses remembered */

typedef struct mon_session {
  char id[MON_SESSION_ID_LEN + 1];   /* the cookie's value */
  char csrf[MON_SESSION_ID_LEN + 1]; /* X-CSRF-Token / form field csrf */
  int64_t last_ms;                   /* last use; 0 = free slot */
} mon_session;

typedef struct mon_login_fails {
  char addr[64];                   /* client address, "" = free */
  int64_t at[MON_LOGIN_FAILS_MAX]; /* when, a ring */
  int n;                           /* failures recorded, at most the max */
} mon_login_fails;

typedef struct mon_sessions {
  mon_session s[MON_SESSION_MAX];
  mon_login_fails fails[MON_LOGIN_ADDRS];
} mon_sessions;

/* A new session (random id and CSRF token from getrandom()). 0 with *out,
 * or -1 if the system gave no randomness. */
int mon_session_new(mon_sessions *t, int64_t now_ms, mon_session **out);
/* The live session whose id is id (compared in constant time), marked
 * used now; NULL if none or expired (an expired one is freed). */
mon_session *mon_session_find(mon_sessions *t, const char *id, int64_t now_ms);
void mon_session_end(mon_session *s);

/* Whether addr may try to sign in now: fewer than MON_LOGIN_FAILS_MAX
 * failures in the last MON_LOGIN_WINDOW_MS. */
bool mon_login_allowed(const mon_sessions *t, const char *addr, int64_t now_ms);
void mon_login_failed(mon_sessions *t, const char *addr, int64_t now_ms);

/* Copies the value of cookie name from a Cookie header into out (cap
 * bytes with the NUL): true if present and it fits. Pure. */
bool mon_cookie_get(const char *header, const char *name, char *out,
                    size_t cap);
/* Whether a request may change state given its Origin header: true when
 * there is none (same-origin forms of old browsers, curl) or it is exactly
 * "http://" + host, the Host header already checked by
 * mon_http_host_ok. Pure. */
bool mon_origin_ok(const char *origin, const char *host);

/* Whether p may be the target of a redirect after a form: a path on this
 * server ("/" or "/service/NAME"; no "//host", no scheme). Pure. */
bool mon_local_path_ok(const char *p);

#ifdef __cplusplus
}
#endif
#endif

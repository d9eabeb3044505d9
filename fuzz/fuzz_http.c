/* fuzz_http.c — svc-monitor's HTTP route and query parser, Host check and
 * escapers. Input: one byte picks the method, then "PATH?k=v&k=v", then
 * after a NUL a Host header value. Properties: a route with a service name
 * only ever carries a valid name (no '/', no leading '.', so no file path
 * can be built from it); status codes are 200/400/404/405; escaped HTML has
 * no markup characters; escaped JSON is one valid UTF-8 string literal
 * without raw control characters; an accepted Host names localhost or the
 * bound address with the bound port. The Host value is also fed as a
 * Cookie header and an Origin: a cookie value that comes out fits and
 * contains no ';'; an accepted Origin is "http://" + host; an accepted
 * redirect target is a local path. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "http.h"
#include "route.h"
#include "session.h"

#define CHECK(c)                                                               \
  do {                                                                         \
    if (!(c)) {                                                                \
      fprintf(stderr, "fuzz_http: property failed: %s\n", #c);                 \
      abort();                                                                 \
    }                                                                          \
  } while (0)

static void check_utf8(const unsigned char *s, size_t n) {
  for (size_t i = 0; i < n;) {
    unsigned c = s[i];
    size_t len = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
    CHECK(c < 0x80 || (c >= 0xC2 && c <= 0xF4));
    CHECK(i + len <= n);
    for (size_t k = 1; k < len; k++)
      CHECK((s[i + k] & 0xC0) == 0x80);
    i += len;
  }
}

static void check_escapers(const char *s, size_t n) {
  mon_buf b = {0};
  mon_buf_html(&b, s, n);
  for (size_t i = 0; i < b.len; i++)
    CHECK(b.p[i] != '<' && b.p[i] != '>' && b.p[i] != '"' && b.p[i] != '\'' &&
          b.p[i] != '\0');
  mon_buf_fini(&b);
  mon_buf_json(&b, s, n);
  CHECK(b.len >= 2 && b.p[0] == '"' && b.p[b.len - 1] == '"');
  for (size_t i = 1; i + 1 < b.len; i++) {
    unsigned char c = (unsigned char)b.p[i];
    CHECK(c >= 0x20 && c != 0x7F && c != '<');
    if (c == '"')
      CHECK(b.p[i - 1] == '\\');
    if (c == '\\') { /* an escape: skip its character */
      CHECK(strchr("\"\\u", b.p[i + 1]) != NULL);
      i++;
    }
  }
  check_utf8((const unsigned char *)b.p, b.len);
  mon_buf_fini(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1 || size > 8192)
    return 0;
  static const char *const methods[] = {"GET", "POST", "HEAD", "PUT"};
  const char *method = methods[data[0] % 4];
  char *in = malloc(size);
  if (!in)
    return 0;
  memcpy(in, data + 1, size - 1);
  in[size - 1] = '\0';
  size_t used = strlen(in);
  const char *host = used + 1 < size - 1 ? in + used + 1 : NULL;

  check_escapers((const char *)data, size);

  char *q = strchr(in, '?');
  if (q)
    *q++ = '\0';
  mon_route r;
  int st = mon_route_parse(method, in, &r);
  CHECK(st == 200 || st == 404 || st == 405);
  if (st == 200) {
    CHECK(in[0] == '/');
    bool named = r.kind == MON_R_SERVICE || r.kind == MON_R_API_METRICS ||
                 r.kind == MON_R_API_LOGS || r.kind == MON_R_CONTROL ||
                 r.kind == MON_R_LOG_STREAM;
    if (named) {
      CHECK(mon_name_valid(r.name));
      CHECK(!strchr(r.name, '/') && r.name[0] != '.');
      CHECK(strstr(in, r.name) != NULL);
    }
    if (r.kind == MON_R_STYLE)
      CHECK(!strcmp(in, "/static/style.css") ||
            !strcmp(in, "/static/style.css/"));
    for (char *arg = q; arg && *arg;) {
      char *next = strchr(arg, '&');
      if (next)
        *next++ = '\0';
      char *eq = strchr(arg, '=');
      if (eq)
        *eq++ = '\0';
      int ast = mon_route_arg(&r, arg, eq);
      CHECK(ast == 200 || ast == 400);
      arg = next;
    }
    CHECK(r.tail >= 1 && r.tail <= MON_TAIL_MAX);
    CHECK(r.stream >= -1 && r.stream <= 1);
    CHECK(!r.has_q || (strlen(r.q) >= 1 && strlen(r.q) <= MON_QUERY_MAX));
    if (r.kind == MON_R_LOG_STREAM)
      CHECK(r.stream == 0 || r.stream == 1);
  }
  if (host) {
    char v[MON_SESSION_ID_LEN + 1];
    if (mon_cookie_get(host, MON_SESSION_COOKIE, v, sizeof v))
      CHECK(strlen(v) <= MON_SESSION_ID_LEN && !strchr(v, ';'));
    if (mon_origin_ok(host, "127.0.0.1:5155"))
      CHECK(!strcasecmp(host, "http://127.0.0.1:5155"));
    if (mon_local_path_ok(host))
      CHECK(host[0] == '/' && host[1] != '/' && !strstr(host, "/.") &&
            !strpbrk(host, "\r\n:\\"));
  }
  if (host && mon_http_host_ok("127.0.0.1", 5155, host)) {
    CHECK(strstr(host, ":5155") != NULL);
    CHECK(!strncasecmp(host, "localhost:", 10) ||
          !strncmp(host, "127.0.0.1:", 10) || !strncmp(host, "[::1]:", 6));
  }
  free(in);
  return 0;
}

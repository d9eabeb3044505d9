/* url.c — URL parsing for the transports' registry, and the shm rendezvous
 * directory. The parser sees bytes from users and config files: it is
 * fuzzed (fuzz/fuzz_url.c) and never reads past the string's NUL. */
#include "url.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "svc.h"

static int name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

int svc__name_valid(const char *name) {
  size_t n = 0;
  if (!name || name[0] == '\0' || name[0] == '.')
    return 0;
  for (; name[n]; n++)
    if (!name_char(name[n]) || n >= SVC__NAME_MAX)
      return 0;
  return 1;
}

static int parse_port(const char *s, uint16_t *out) {
  unsigned long v = 0;
  if (*s == '\0')
    return SVC_EINVAL;
  for (; *s; s++) {
    if (*s < '0' || *s > '9')
      return SVC_EINVAL;
    v = v * 10 + (unsigned long)(*s - '0');
    if (v > 65535)
      return SVC_EINVAL;
  }
  if (v == 0)
    return SVC_EINVAL;
  *out = (uint16_t)v;
  return 0;
}

static int parse_tcp(const char *rest, svc__url *u) {
  const char *colon;
  size_t hlen;
  if (rest[0] == '[') { /* [IPv6]:port */
    const char *close = strchr(rest, ']');
    if (!close || close[1] != ':')
      return SVC_EINVAL;
    rest++;
    hlen = (size_t)(close - rest);
    colon = close + 1;
  } else {
    colon = strrchr(rest, ':');
    if (!colon)
      return SVC_EINVAL;
    hlen = (size_t)(colon - rest);
    if (memchr(rest, ':', hlen)) /* bare IPv6 needs brackets */
      return SVC_EINVAL;
  }
  if (hlen == 0 || hlen > SVC__HOST_MAX)
    return SVC_EINVAL;
  for (size_t i = 0; i < hlen; i++) {
    char c = rest[i];
    if (!(name_char(c) || c == ':' || c == '%'))
      return SVC_EINVAL;
  }
  memcpy(u->host, rest, hlen);
  u->host[hlen] = '\0';
  return parse_port(colon + 1, &u->port);
}

static int hex_digit(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* Decodes the n bytes of a query value at v into out[cap]: %XX escapes,
 * anything else as it is; no control byte either way (found by fuzz_url:
 * %08 passed), so never %00, which would cut a path short. */
static int decode_value(const char *v, size_t n, char *out, size_t cap) {
  size_t o = 0;
  if (n == 0)
    return SVC_EINVAL;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)v[i];
    if (c == '%') {
      int hi = i + 2 < n ? hex_digit(v[i + 1]) : -1;
      int lo = hi >= 0 ? hex_digit(v[i + 2]) : -1;
      if (lo < 0)
        return SVC_EINVAL;
      c = (unsigned char)(hi << 4 | lo);
      i += 2;
    }
    if (c < 0x20 || c == 0x7f) /* raw or escaped: no file name has one */
      return SVC_EINVAL;
    if (o + 1 >= cap)
      return SVC_EINVAL;
    out[o++] = (char)c;
  }
  out[o] = '\0';
  return 0;
}

/* The field of key (n bytes) in p, or NULL for an unknown key. */
static char *tls_field(svc__tls_params *p, const char *key, size_t n,
                       size_t *cap) {
  static const struct {
    const char *name;
    size_t off, cap;
  } keys[] = {
      {"cert", offsetof(svc__tls_params, cert), SVC__FILE_MAX},
      {"key", offsetof(svc__tls_params, key), SVC__FILE_MAX},
      {"ca", offsetof(svc__tls_params, ca), SVC__FILE_MAX},
      {"client_ca", offsetof(svc__tls_params, client_ca), SVC__FILE_MAX},
      {"servername", offsetof(svc__tls_params, servername), SVC__HOST_MAX + 1},
  };
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
    if (strlen(keys[i].name) == n && memcmp(keys[i].name, key, n) == 0) {
      *cap = keys[i].cap;
      return (char *)p + keys[i].off;
    }
  return NULL;
}

/* k=v&k=v: every key known and given once, every value non-empty. */
static int parse_query(const char *q, svc__tls_params *p) {
  if (*q == '\0')
    return SVC_EINVAL;
  while (*q) {
    const char *end = strchr(q, '&');
    size_t n = end ? (size_t)(end - q) : strlen(q);
    const char *eq = memchr(q, '=', n);
    size_t cap;
    char *field = eq ? tls_field(p, q, (size_t)(eq - q), &cap) : NULL;
    if (!field || field[0] ||
        decode_value(eq + 1, n - (size_t)(eq + 1 - q), field, cap) < 0)
      return SVC_EINVAL;
    if (!end)
      break;
    q = end + 1;
    if (*q == '\0') /* a trailing '&' */
      return SVC_EINVAL;
  }
  return 0;
}

/* tls://HOST:PORT[?query]: the authority as for tcp://, then the query. */
static int parse_tls(const char *rest, svc__url *u) {
  const char *q = strchr(rest, '?');
  size_t n = q ? (size_t)(q - rest) : strlen(rest);
  char authority[SVC__HOST_MAX + 16];
  if (n >= sizeof authority)
    return SVC_EINVAL;
  memcpy(authority, rest, n);
  authority[n] = '\0';
  int rc = parse_tcp(authority, u);
  return rc < 0 || !q ? rc : parse_query(q + 1, &u->tls);
}

int svc__url_parse(const char *s, svc__url *u) {
  if (!s || !u)
    return SVC_EINVAL;
  memset(u, 0, sizeof *u);
  if (strncmp(s, "shm://", 6) == 0) {
    if (!svc__name_valid(s + 6))
      return SVC_EINVAL;
    strcpy(u->scheme, "shm");
    strcpy(u->name, s + 6);
    return 0;
  }
  if (strncmp(s, "unix://", 7) == 0) {
    const char *p = s + 7;
    size_t n = strlen(p);
    if (p[0] != '/' || n < 2 || n >= SVC__PATH_MAX || p[n - 1] == '/')
      return SVC_EINVAL;
    strcpy(u->scheme, "unix");
    memcpy(u->path, p, n + 1);
    return 0;
  }
  if (strncmp(s, "tcp://", 6) == 0) {
    strcpy(u->scheme, "tcp");
    int rc = parse_tcp(s + 6, u);
    if (rc < 0)
      memset(u, 0, sizeof *u);
    return rc;
  }
  if (strncmp(s, "tls://", 6) == 0) {
    strcpy(u->scheme, "tls");
    int rc = parse_tls(s + 6, u);
    if (rc < 0)
      memset(u, 0, sizeof *u);
    return rc;
  }
  return SVC_EINVAL;
}

int svc__runtime_dir(char *out, size_t n) {
  const char *env = getenv("SVC_RUNTIME_DIR");
  int len;
  if (env && env[0])
    len = snprintf(out, n, "%s", env);
  else if ((env = getenv("XDG_RUNTIME_DIR")) && env[0])
    len = snprintf(out, n, "%s/svc", env);
  else
    len = snprintf(out, n, "/tmp/svc-%u", (unsigned)getuid());
  if (len < 0 || (size_t)len >= n)
    return SVC_EINVAL;
  return 0;
}

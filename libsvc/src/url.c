/* url.c — URL parsing for the transports' registry, and the shm rendezvous
 * directory. The parser sees bytes from users and config files: it is
 * fuzzed (fuzz/fuzz_url.c) and never reads past the string's NUL. */
#include "url.h"

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

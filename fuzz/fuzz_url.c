/* fuzz_url.c — libFuzzer harness for the URL parser (url.c). The input, cut
 * at its first NUL, is parsed from an exact-size heap copy so ASan sees any
 * read past the terminator. Checks properties; a violated one aborts.
 *
 * Properties:
 *  - svc__url_parse returns 0 or SVC_EINVAL, nothing else.
 *  - on success every field is NUL-terminated inside its array; the scheme
 *    is shm, unix, tcp or tls and only that scheme's fields are set: shm
 *    has a name valid per svc__name_valid; unix an absolute path shorter
 *    than sun_path; tcp and tls a non-empty host and a port in 1..65535;
 *    only tls has parameters, none holding a control byte.
 *  - rendering the URL again from the fields (parameters percent-encoded)
 *    and parsing that gives the same struct (hosts with ':' get brackets
 *    back).
 *  - svc__name_valid agrees with an independent statement of the rule.
 *  - when the input has a second NUL-terminated part, it is taken as
 *    $SVC_RUNTIME_DIR: svc__runtime_dir returns it when it fits and
 *    SVC_EINVAL when not, and a shm:// name's rendezvous path is exactly
 *    DIR/NAME.sock when that fits in sun_path, SVC_EINVAL otherwise. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sock.h"
#include "svc.h"
#include "url.h"

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "fuzz_url: property failed at %s:%d: %s\n", __FILE__,    \
              __LINE__, #cond);                                                \
      abort();                                                                 \
    }                                                                          \
  } while (0)

static int terminated(const char *field, size_t cap) {
  return memchr(field, '\0', cap) != NULL;
}

/* The service-name rule, stated independently of url.c. */
static int name_ok(const char *s) {
  size_t n = strlen(s);
  if (n < 1 || n > SVC__NAME_MAX || s[0] == '.')
    return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (!(c >= 'a' && c <= 'z') && !(c >= 'A' && c <= 'Z') &&
        !(c >= '0' && c <= '9') && c != '.' && c != '_' && c != '-')
      return 0;
  }
  return 1;
}

static int same_url(const svc__url *a, const svc__url *b) {
  return strcmp(a->scheme, b->scheme) == 0 && strcmp(a->name, b->name) == 0 &&
         strcmp(a->path, b->path) == 0 && strcmp(a->host, b->host) == 0 &&
         a->port == b->port && memcmp(&a->tls, &b->tls, sizeof a->tls) == 0;
}

/* The tls parameters, each with its query key, for checks and rendering. */
#define TLS_FIELDS(p)                                                          \
  {                                                                            \
    {"cert", (p)->cert, sizeof(p)->cert}, {"key", (p)->key, sizeof(p)->key},   \
        {"ca", (p)->ca, sizeof(p)->ca},                                        \
        {"client_ca", (p)->client_ca, sizeof(p)->client_ca}, {                 \
      "servername", (p)->servername, sizeof(p)->servername                     \
    }                                                                          \
  }

typedef struct tls_field {
  const char *key;
  const char *value;
  size_t cap;
} tls_field;

static int no_params(const svc__tls_params *p) {
  const tls_field f[] = TLS_FIELDS(p);
  for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
    if (f[i].value[0])
      return 0;
  return 1;
}

static void check_parsed(const char *s, const svc__url *u) {
  CHECK(terminated(u->scheme, sizeof u->scheme));
  CHECK(terminated(u->name, sizeof u->name));
  CHECK(terminated(u->path, sizeof u->path));
  CHECK(terminated(u->host, sizeof u->host));
  const tls_field f[] = TLS_FIELDS(&u->tls);
  for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
    CHECK(terminated(f[i].value, f[i].cap));
    for (const char *c = f[i].value; *c; c++)
      CHECK((unsigned char)*c >= 0x20 && *c != 0x7f);
  }
  if (strcmp(u->scheme, "tls") != 0)
    CHECK(no_params(&u->tls));
  if (strcmp(u->scheme, "shm") == 0) {
    CHECK(svc__name_valid(u->name));
    CHECK(strcmp(u->name, s + strlen("shm://")) == 0);
    CHECK(u->path[0] == '\0' && u->host[0] == '\0' && u->port == 0);
  } else if (strcmp(u->scheme, "unix") == 0) {
    size_t n = strlen(u->path);
    CHECK(u->path[0] == '/' && n >= 2 && n < SVC__PATH_MAX);
    CHECK(strcmp(u->path, s + strlen("unix://")) == 0);
    CHECK(u->name[0] == '\0' && u->host[0] == '\0' && u->port == 0);
  } else {
    CHECK(strcmp(u->scheme, "tcp") == 0 || strcmp(u->scheme, "tls") == 0);
    CHECK(u->host[0] != '\0' && strlen(u->host) <= SVC__HOST_MAX);
    CHECK(u->port >= 1); /* uint16_t: <= 65535 by type */
    CHECK(u->name[0] == '\0' && u->path[0] == '\0');
    CHECK(strchr(u->host, '[') == NULL && strchr(u->host, ']') == NULL);
  }
}

/* Appends the parameters as a query, every byte but [A-Za-z0-9/._-]
 * percent-encoded. */
static size_t render_query(const svc__tls_params *p, char *out, size_t n) {
  const tls_field f[] = TLS_FIELDS(p);
  size_t o = strlen(out);
  char sep = '?';
  for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
    if (!f[i].value[0])
      continue;
    o += (size_t)snprintf(out + o, n - o, "%c%s=", sep, f[i].key);
    sep = '&';
    for (const unsigned char *c = (const unsigned char *)f[i].value; *c; c++) {
      int plain = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                  (*c >= '0' && *c <= '9') || strchr("/._-", *c);
      o += (size_t)(plain ? snprintf(out + o, n - o, "%c", *c)
                          : snprintf(out + o, n - o, "%%%02X", *c));
    }
  }
  return o;
}

/* Renders u back into URL text; returns the heap string. */
static char *render(const svc__url *u) {
  size_t cap = 16 + strlen(u->name) + strlen(u->path) + strlen(u->host) +
               3 * sizeof u->tls + 64;
  char *out = malloc(cap);
  CHECK(out != NULL);
  int n;
  if (strcmp(u->scheme, "shm") == 0)
    n = snprintf(out, cap, "shm://%s", u->name);
  else if (strcmp(u->scheme, "unix") == 0)
    n = snprintf(out, cap, "unix://%s", u->path);
  else if (strchr(u->host, ':'))
    n = snprintf(out, cap, "%s://[%s]:%u", u->scheme, u->host,
                 (unsigned)u->port);
  else
    n = snprintf(out, cap, "%s://%s:%u", u->scheme, u->host, (unsigned)u->port);
  CHECK(n > 0 && (size_t)n < cap);
  CHECK(render_query(&u->tls, out, cap) < cap);
  return out;
}

/* $SVC_RUNTIME_DIR = dir ("" = unset), and where shm://NAME rendezvous. */
static void check_runtime_dir(const char *dir, const svc__url *u) {
  char want[3 * SVC__PATH_MAX];
  if (dir[0])
    setenv("SVC_RUNTIME_DIR", dir, 1);
  else
    unsetenv("SVC_RUNTIME_DIR");
  unsetenv("XDG_RUNTIME_DIR"); /* the fallback must not depend on the host */
  if (dir[0])
    snprintf(want, sizeof want, "%s", dir);
  else
    snprintf(want, sizeof want, "/tmp/svc-%u", (unsigned)getuid());

  char out[SVC__PATH_MAX];
  int rc = svc__runtime_dir(out, sizeof out);
  CHECK(rc == (strlen(want) < sizeof out ? 0 : SVC_EINVAL));
  if (rc == 0)
    CHECK(strcmp(out, want) == 0);

  if (strcmp(u->scheme, "shm") != 0)
    return;
  char path[SVC__PATH_MAX];
  size_t need = strlen(want) + 1 + strlen(u->name) + strlen(".sock");
  rc = svc__sock_rendezvous_path(u->name, 0, path, sizeof path);
  CHECK(rc == (need < sizeof path ? 0 : SVC_EINVAL));
  if (rc == 0) {
    CHECK(strlen(path) == need);
    CHECK(strncmp(path, want, strlen(want)) == 0);
    CHECK(path[strlen(want)] == '/');
    CHECK(strcmp(path + strlen(want) + 1 + strlen(u->name), ".sock") == 0);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const uint8_t *nul = memchr(data, '\0', size);
  size_t len = nul ? (size_t)(nul - data) : size;
  char *s = malloc(len + 1);
  CHECK(s != NULL);
  memcpy(s, data, len);
  s[len] = '\0';

  CHECK(svc__name_valid(s) == name_ok(s));

  svc__url u;
  int rc = svc__url_parse(s, &u);
  CHECK(rc == 0 || rc == SVC_EINVAL);
  if (rc == 0) {
    check_parsed(s, &u);
    char *again = render(&u);
    svc__url v;
    CHECK(svc__url_parse(again, &v) == 0);
    CHECK(same_url(&u, &v));
    free(again);
    if (nul) {
      size_t rest = size - len - 1;
      const uint8_t *end = memchr(nul + 1, '\0', rest);
      size_t dlen = end ? (size_t)(end - nul - 1) : rest;
      char *dir = malloc(dlen + 1);
      CHECK(dir != NULL);
      memcpy(dir, nul + 1, dlen);
      dir[dlen] = '\0';
      check_runtime_dir(dir, &u);
      free(dir);
    }
  }
  CHECK(svc__url_parse(NULL, &u) == SVC_EINVAL);
  free(s);
  return 0;
}

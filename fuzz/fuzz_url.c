/* fuzz_url.c — libFuzzer harness for the URL parser (url.c). The input, cut
 * at its first NUL, is parsed from an exact-size heap copy so ASan sees any
 * read past the terminator. Checks properties; a violated one aborts.
 *
 * Properties:
 *  - svc__url_parse returns 0 or SVC_EINVAL, nothing else.
 *  - on success every field is NUL-terminated inside its array; the scheme
 *    is shm, unix or tcp and only that scheme's fields are set: shm has a
 *    name valid per svc__name_valid; unix an absolute path shorter than
 *    sun_path; tcp a non-empty host and a port in 1..65535.
 *  - rendering the URL again from the fields and parsing that gives the same
 *    struct (tcp hosts with ':' get brackets back).
 *  - svc__name_valid agrees with an independent statement of the rule. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
         a->port == b->port;
}

static void check_parsed(const char *s, const svc__url *u) {
  CHECK(terminated(u->scheme, sizeof u->scheme));
  CHECK(terminated(u->name, sizeof u->name));
  CHECK(terminated(u->path, sizeof u->path));
  CHECK(terminated(u->host, sizeof u->host));
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
    CHECK(strcmp(u->scheme, "tcp") == 0);
    CHECK(u->host[0] != '\0' && strlen(u->host) <= SVC__HOST_MAX);
    CHECK(u->port >= 1); /* uint16_t: <= 65535 by type */
    CHECK(u->name[0] == '\0' && u->path[0] == '\0');
    CHECK(strchr(u->host, '[') == NULL && strchr(u->host, ']') == NULL);
  }
}

/* Renders u back into URL text; returns the heap string. */
static char *render(const svc__url *u) {
  size_t cap = 16 + strlen(u->name) + strlen(u->path) + strlen(u->host);
  char *out = malloc(cap);
  CHECK(out != NULL);
  int n;
  if (strcmp(u->scheme, "shm") == 0)
    n = snprintf(out, cap, "shm://%s", u->name);
  else if (strcmp(u->scheme, "unix") == 0)
    n = snprintf(out, cap, "unix://%s", u->path);
  else if (strchr(u->host, ':'))
    n = snprintf(out, cap, "tcp://[%s]:%u", u->host, (unsigned)u->port);
  else
    n = snprintf(out, cap, "tcp://%s:%u", u->host, (unsigned)u->port);
  CHECK(n > 0 && (size_t)n < cap);
  return out;
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
  }
  CHECK(svc__url_parse(NULL, &u) == SVC_EINVAL);
  free(s);
  return 0;
}

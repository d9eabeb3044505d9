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

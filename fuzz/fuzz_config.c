/* fuzz_config.c — svc-monitor's .ini parser. Beyond not crashing: a parse
 * either succeeds with a self-consistent config (valid unique names, a
 * command split into at least one word, unique ports, sane worker counts)
 * or fails with "fuzz.ini:LINE: message" where LINE is a line of the input. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

#define CHECK(c)                                                               \
  do {                                                                         \
    if (!(c)) {                                                                \
      fprintf(stderr, "fuzz_config: property failed: %s\n", #c);               \
      abort();                                                                 \
    }                                                                          \
  } while (0)

static void check_split(const uint8_t *data, size_t size) {
  char *s = malloc(size + 1);
  if (!s)
    return;
  memcpy(s, data, size);
  s[size] = '\0';
  char **argv = NULL;
  int n = mon_split_command(s, &argv);
  if (n >= 0) {
    size_t total = 0;
    for (int i = 0; i < n; i++) {
      CHECK(argv[i] != NULL);
      total += strlen(argv[i]);
    }
    CHECK(argv[n] == NULL);
    CHECK(total <= strlen(s)); /* splitting only ever removes characters */
    mon_argv_free(argv);
  }
  free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 65536)
    return 0;
  check_split(data, size);
  size_t lines = 1;
  for (size_t i = 0; i < size; i++)
    lines += data[i] == '\n';
  mon_config cfg;
  char err[512];
  int rc = mon_config_parse((const char *)data, size, "fuzz.ini", false, &cfg,
                            err, sizeof err);
  if (rc != 0) {
    CHECK(rc == -1);
    CHECK(!strncmp(err, "fuzz.ini:", 9));
    if (strstr(err, "out of memory") == NULL) {
      char *end;
      long line = strtol(err + 9, &end, 10);
      CHECK(line >= 1 && (size_t)line <= lines);
      CHECK(end[0] == ':' && end[1] == ' ');
    }
    CHECK(cfg.nservices == 0 && cfg.services == NULL);
    return 0;
  }
  CHECK(cfg.http_port >= 0 && cfg.http_port <= 65535);
  CHECK(cfg.sample_interval_ms >= 100);
  for (size_t i = 0; i < cfg.nservices; i++) {
    const mon_service_cfg *s = &cfg.services[i];
    CHECK(mon_name_valid(s->name));
    CHECK(s->command && s->argv && s->argv[0]);
    CHECK(s->workers_min >= 1 && s->workers_max >= s->workers_min);
    CHECK(s->start_retries >= -1);
    CHECK(s->ready == MON_READY_PING || s->ready == MON_READY_UPTIME);
    for (size_t k = 0; k < s->nenv; k++)
      CHECK(strchr(s->env[k], '=') && s->env[k][0] != '=');
    for (size_t j = 0; j < i; j++) {
      CHECK(strcmp(s->name, cfg.services[j].name) != 0);
      CHECK(!s->port || s->port != cfg.services[j].port);
    }
    /* dependencies: resolved to other services, and no cycle (a walk
     * along them ends within nservices steps) */
    for (size_t d = 0; d < s->ndeps; d++) {
      CHECK(s->deps[d] >= 0 && (size_t)s->deps[d] < cfg.nservices);
      CHECK((size_t)s->deps[d] != i);
      CHECK(!strcmp(cfg.services[s->deps[d]].name, s->depends_on[d]));
    }
    CHECK(s->health_failures >= 1);
    CHECK(s->health_timeout_ms <= s->health_interval_ms);
    if (s->health == MON_HEALTH_HTTP || s->health == MON_HEALTH_TCP) {
      CHECK(s->health_url.host[0] && s->health_url.port >= 1 &&
            s->health_url.port <= 65535);
      CHECK(s->health_url.path[0] == '/');
      CHECK(!strpbrk(s->health_url.host, " \r\n@"));
      CHECK(!strpbrk(s->health_url.path, " \r\n"));
    }
    if (s->health == MON_HEALTH_EXEC)
      CHECK(s->health_argv && s->health_argv[0]);
    CHECK(s->memory_max == 0 || s->memory_max >= 4096);
    CHECK(s->rlimit_nofile != MON_RLIMIT_INFINITY);
    CHECK(mon_service_cfg_same(s, s));
  }
  /* acyclic: repeatedly following the first dependency terminates */
  for (size_t i = 0; i < cfg.nservices; i++) {
    size_t at = i, steps = 0;
    while (cfg.services[at].ndeps && steps <= cfg.nservices) {
      at = (size_t)cfg.services[at].deps[0];
      steps++;
    }
    CHECK(steps <= cfg.nservices);
  }
  if (cfg.alert_webhook)
    CHECK(cfg.alert_url.port >= 1 && cfg.alert_url.path[0] == '/');
  mon_config_fini(&cfg);
  return 0;
}

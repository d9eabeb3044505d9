/* config.c — parses svc-monitor's .ini file with inih. Lines are fed to inih
 * by our own reader so that every message can name its line, including the
 * ones about a whole section (missing command, duplicate name or port). */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mon_sys.h"

#define CONFIG_MAX_LINE 200 /* inih's INI_MAX_LINE in the packaged build */
#define CONFIG_MAX_SERVICES 1024

enum config_section { SEC_NONE, SEC_MONITOR, SEC_SERVICE, SEC_BAD };

typedef struct config_parser {
  const char *p, *end; /* unread text */
  const char *filename;
  bool read_env_files;
  int lineno; /* line most recently handed to inih */
  enum config_section sec;
  mon_service_cfg *svc; /* current service section */
  unsigned long seen;   /* keys already set in the current section */
  mon_config *cfg;
  int err_line; /* first error, 0 = none */
  char *err;
  size_t errlen;
  bool oom;
} config_parser;

static void config_error(config_parser *cp, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void config_error(config_parser *cp, int line, const char *fmt, ...) {
  if (cp->err_line && cp->err_line <= line)
    return;
  cp->err_line = line;
  char msg[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (cp->errlen)
    snprintf(cp->err, cp->errlen, "%s:%d: %s", cp->filename, line, msg);
}

bool mon_name_valid(const char *name) {
  size_t n = strlen(name);
  if (n == 0 || n > MON_NAME_MAX || name[0] == '.')
    return false;
  for (size_t i = 0; i < n; i++) {
    char c = name[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
      return false;
  }
  return true;
}

/* ---- command splitting ---- */

void mon_argv_free(char **argv) {
  if (!argv)
    return;
  for (char **a = argv; *a; a++)
    free(*a);
  free(argv);
}

int mon_split_command(const char *line, char ***argv_out) {
  size_t cap = 8, n = 0, len = strlen(line);
  char **argv = mon__calloc(cap, sizeof *argv);
  char *word = mon__malloc(len + 1);
  if (!argv || !word)
    goto oom;
  const char *p = line;
  for (;;) {
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
      p++;
    if (!*p)
      break;
    size_t w = 0;
    while (*p && *p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
      if (*p == '\'') {
        const char *q = strchr(p + 1, '\'');
        if (!q)
          goto bad;
        memcpy(word + w, p + 1, (size_t)(q - p - 1));
        w += (size_t)(q - p - 1);
        p = q + 1;
      } else if (*p == '"') {
        p++;
        while (*p && *p != '"') {
          if (*p == '\\' &&
              (p[1] == '"' || p[1] == '\\' || p[1] == '$' || p[1] == '`'))
            p++;
          word[w++] = *p++;
        }
        if (*p != '"')
          goto bad;
        p++;
      } else if (*p == '\\') {
        if (!p[1])
          goto bad;
        word[w++] = p[1];
        p += 2;
      } else {
        word[w++] = *p++;
      }
    }
    if (n + 1 >= cap) {
      char **na = mon__realloc(argv, 2 * cap * sizeof *na);
      if (!na)
        goto oom;
      argv = na;
      cap *= 2;
    }
    argv[n] = mon__malloc(w + 1);
    if (!argv[n])
      goto oom;
    memcpy(argv[n], word, w);
    argv[n][w] = '\0';
    argv[++n] = NULL;
  }
  free(word);
  *argv_out = argv;
  return (int)n;
bad:
  free(word);
  mon_argv_free(argv);
  return -1;
oom:
  free(word);
  mon_argv_free(argv);
  return -2;
}

/* ---- value parsers ---- */

static bool config_int(const char *v, long long lo, long long hi,
                       long long *out) {
  if (!*v)
    return false;
  errno = 0;
  char *end;
  long long x = strtoll(v, &end, 10);
  if (errno || *end || x < lo || x > hi)
    return false;
  *out = x;
  return true;
}

bool mon_size_parse(const char *v, long long *out) {
  if (!(*v >= '0' && *v <= '9'))
    return false;
  errno = 0;
  char *end;
  long long x = strtoll(v, &end, 10);
  if (errno || x < 0)
    return false;
  int shift = 0;
  switch (*end) {
  case 'k':
  case 'K':
    shift = 10;
    end++;
    break;
  case 'm':
  case 'M':
    shift = 20;
    end++;
    break;
  case 'g':
  case 'G':
    shift = 30;
    end++;
    break;
  case 't':
  case 'T':
    shift = 40;
    end++;
    break;
  }
  if (shift && end[0] == 'i' && end[1] == 'B')
    end += 2;
  else if (shift && end[0] == 'B')
    end++;
  if (*end || x > (LLONG_MAX >> shift))
    return false;
  *out = x << shift;
  return true;
}

int mon_net_url_parse(const char *v, const char *scheme, mon_net_url *out,
                      char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  size_t sl = strlen(scheme);
  const char *why = NULL;
  if (strncmp(v, scheme, sl) != 0 || strncmp(v + sl, "://", 3) != 0) {
    snprintf(err, errlen, "want %s://HOST:PORT", scheme);
    return -1;
  }
  const char *h = v + sl + 3, *hend, *rest;
  if (*h == '[') { /* [IPv6] */
    hend = strchr(h, ']');
    if (!hend) {
      snprintf(err, errlen, "unterminated '['");
      return -1;
    }
    rest = hend + 1;
    h++;
  } else {
    hend = h + strcspn(h, ":/?#");
    rest = hend;
  }
  size_t hl = (size_t)(hend - h);
  if (hl == 0 || hl >= sizeof out->host)
    why = "bad host";
  for (size_t i = 0; !why && i < hl; i++) {
    unsigned char c = (unsigned char)h[i];
    if (c <= ' ' || c >= 0x7f || c == '@' || c == '%' || c == '\\')
      why = "bad character in host";
  }
  long long port = !strcmp(scheme, "http") ? 80 : -1;
  if (!why && *rest == ':') {
    const char *p = rest + 1;
    size_t pl = strspn(p, "0123456789");
    char num[8];
    if (pl == 0 || pl > 5)
      why = "bad port";
    else {
      memcpy(num, p, pl);
      num[pl] = '\0';
      port = strtol(num, NULL, 10); /* 1..5 digits: cannot overflow */
      rest = p + pl;
    }
  }
  if (!why && (port < 1 || port > 65535))
    why = port < 0 ? "no port" : "bad port";
  if (!why && !strcmp(scheme, "tcp") && *rest)
    why = "nothing may follow tcp://HOST:PORT";
  if (!why && *rest && *rest != '/')
    why = "want /PATH after HOST:PORT";
  if (!why && strlen(rest) >= sizeof out->path)
    why = "path too long";
  for (const char *c = rest; !why && *c; c++)
    if ((unsigned char)*c <= ' ' || *c == 0x7f || *c == '#')
      why = "bad character in path";
  if (why) {
    snprintf(err, errlen, "%s", why);
    return -1;
  }
  memcpy(out->host, h, hl);
  out->host[hl] = '\0';
  out->port = (int)port;
  snprintf(out->path, sizeof out->path, "%s", *rest ? rest : "/");
  return 0;
}

static bool config_bool(const char *v, bool *out) {
  static const char *yes[] = {"true", "yes", "on", "1"};
  static const char *no[] = {"false", "no", "off", "0"};
  for (size_t i = 0; i < 4; i++) {
    if (!strcasecmp(v, yes[i]))
      return *out = true, true;
    if (!strcasecmp(v, no[i]))
      return *out = false, true;
  }
  return false;
}

static char *config_strdup(config_parser *cp, const char *s) {
  char *d = mon__strdup(s);
  if (!d)
    cp->oom = true;
  return d;
}

/* Appends KEY=VALUE (validated) to the service's environment. */
static bool config_env_add(config_parser *cp, mon_service_cfg *s,
                           const char *kv, int line) {
  const char *eq = strchr(kv, '=');
  bool ok = eq && eq != kv;
  for (const char *c = kv; ok && c < eq; c++)
    ok = (*c == '_' || (*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') ||
          (c > kv && *c >= '0' && *c <= '9'));
  if (!ok) {
    config_error(cp, line, "bad environment entry '%s' (want KEY=VALUE)", kv);
    return false;
  }
  char **ne = mon__realloc(s->env, (s->nenv + 2) * sizeof *ne);
  if (!ne) {
    cp->oom = true;
    return false;
  }
  s->env = ne;
  if (!(s->env[s->nenv] = config_strdup(cp, kv)))
    return false;
  s->env[++s->nenv] = NULL;
  return true;
}

static bool config_env_file(config_parser *cp, mon_service_cfg *s,
                            const char *path, int line) {
  if (!cp->read_env_files)
    return true;
  FILE *f = mon__fopen(path, "re");
  if (!f) {
    config_error(cp, line, "cannot read env_file '%s': %s", path,
                 strerror(errno));
    return false;
  }
  char buf[4096];
  bool ok = true;
  while (ok && fgets(buf, sizeof buf, f)) {
    char *l = buf, *e = buf + strlen(buf);
    while (e > l && (e[-1] == '\n' || e[-1] == '\r' || e[-1] == ' '))
      *--e = '\0';
    while (*l == ' ' || *l == '\t')
      l++;
    if (!*l || *l == '#')
      continue;
    if (!strncmp(l, "export ", 7))
      l += 7;
    ok = config_env_add(cp, s, l, line);
  }
  fclose(f);
  return ok;
}

/* ---- sections ---- */

static void config_service_defaults(mon_service_cfg *s) {
  s->workers_min = 1;
  s->workers_max = 0; /* = workers_min unless set */
  s->autostart = true;
  s->restart = MON_RESTART_ON_FAILURE;
  s->start_retries = 3;
  s->start_secs = 1;
  s->ready_timeout_ms = 10000;
  s->stop_timeout_ms = 5000;
  s->backoff_ms = 1000;
  s->backoff_max_ms = 30000;
  s->log_max_bytes = 10LL << 20;
  s->log_backups = 3;
  s->health_interval_ms = 10000;
  s->health_timeout_ms = 2000;
  s->health_failures = 3;
  s->rlimit_nofile = MON_RLIMIT_UNSET;
  s->rlimit_core = MON_RLIMIT_UNSET;
}

/* Called by the reader for every "[...]" line, before inih sees it. */
static void config_section(config_parser *cp, const char *name, size_t len,
                           int line) {
  cp->seen = 0;
  cp->svc = NULL;
  if (len == 7 && !memcmp(name, "monitor", 7)) {
    cp->sec = SEC_MONITOR;
    return;
  }
  cp->sec = SEC_BAD;
  if (len <= 8 || memcmp(name, "service.", 8) != 0) {
    config_error(cp, line,
                 "unknown section [%.*s] (want [monitor] or "
                 "[service.NAME])",
                 (int)len, name);
    return;
  }
  char sname[MON_NAME_MAX + 2];
  size_t nlen = len - 8;
  if (nlen > MON_NAME_MAX) {
    config_error(cp, line, "service name longer than %d bytes", MON_NAME_MAX);
    return;
  }
  memcpy(sname, name + 8, nlen);
  sname[nlen] = '\0';
  if (!mon_name_valid(sname)) {
    config_error(cp, line,
                 "bad service name '%s' (letters, digits, '.', '_', "
                 "'-')",
                 sname);
    return;
  }
  mon_config *cfg = cp->cfg;
  for (size_t i = 0; i < cfg->nservices; i++) {
    if (!strcmp(cfg->services[i].name, sname)) {
      config_error(cp, line, "duplicate service name '%s' (first at line %d)",
                   sname, cfg->services[i].line);
      return;
    }
  }
  if (cfg->nservices >= CONFIG_MAX_SERVICES) {
    config_error(cp, line, "too many services (max %d)", CONFIG_MAX_SERVICES);
    return;
  }
  mon_service_cfg *ns =
      mon__realloc(cfg->services, (cfg->nservices + 1) * sizeof *ns);
  if (!ns) {
    cp->oom = true;
    return;
  }
  cfg->services = ns;
  mon_service_cfg *s = &ns[cfg->nservices];
  memset(s, 0, sizeof *s);
  config_service_defaults(s);
  s->line = line;
  if (!(s->name = config_strdup(cp, sname)))
    return;
  cfg->nservices++;
  cp->svc = s;
  cp->sec = SEC_SERVICE;
}

/* fgets-like reader over the text: one line per call, never split, so that
 * inih's line numbers and ours agree; notices section headers. */
static char *config_reader(char *str, int num, void *stream) {
  config_parser *cp = stream;
  if (cp->p >= cp->end)
    return NULL;
  const char *nl = memchr(cp->p, '\n', (size_t)(cp->end - cp->p));
  const char *eol = nl ? nl : cp->end;
  size_t len = (size_t)(eol - cp->p);
  cp->lineno++;
  if (len + 2 > (size_t)num) {
    config_error(cp, cp->lineno, "line longer than %d bytes", num - 2);
    len = 0; /* hand inih an empty line */
  }
  memcpy(str, cp->p, len);
  str[len] = '\n';
  str[len + 1] = '\0';
  if (memchr(str, '\0', len))
    config_error(cp, cp->lineno, "NUL byte in line");
  cp->p = nl ? nl + 1 : cp->end;

  const char *s = str;
  if (cp->lineno == 1 && !memcmp(s, "\xEF\xBB\xBF", 3))
    s += 3; /* inih skips a UTF-8 BOM too */
  while (*s == ' ' || *s == '\t' || *s == '\r')
    s++;
  if (*s == '[') {
    const char *close = strchr(s, ']');
    if (close)
      config_section(cp, s + 1, (size_t)(close - s - 1), cp->lineno);
    else
      cp->sec = SEC_BAD; /* inih reports the syntax error */
  }
  return str;
}

enum {
  K_COMMAND,
  K_PORT,
  K_WORKERS_MIN,
  K_WORKERS_MAX,
  K_AUTOSTART,
  K_RESTART,
  K_START_RETRIES,
  K_START_SECS,
  K_READY,
  K_READY_TIMEOUT,
  K_STOP_TIMEOUT,
  K_BACKOFF,
  K_BACKOFF_MAX,
  K_ENV,
  K_ENV_FILE,
  K_DIRECTORY,
  K_LOG_MAX,
  K_LOG_BACKUPS,
  K_TIMESTAMPS,
  K_DEPENDS_ON,
  K_HEALTH,
  K_HEALTH_INTERVAL,
  K_HEALTH_TIMEOUT,
  K_HEALTH_FAILURES,
  K_MEMORY_MAX,
  K_CPU_MAX,
  K_MAX_MEMORY_RESTART,
  K_RLIMIT_NOFILE,
  K_RLIMIT_CORE,
  K_NKEYS
};
static const char *const service_keys[K_NKEYS] = {"command",
                                                  "port",
                                                  "workers_min",
                                                  "workers_max",
                                                  "autostart",
                                                  "restart",
                                                  "start_retries",
                                                  "start_secs",
                                                  "ready",
                                                  "ready_timeout_ms",
                                                  "stop_timeout_ms",
                                                  "backoff_ms",
                                                  "backoff_max_ms",
                                                  "env",
                                                  "env_file",
                                                  "directory",
                                                  "log_max_bytes",
                                                  "log_backups",
                                                  "timestamps",
                                                  "depends_on",
                                                  "health",
                                                  "health_interval_ms",
                                                  "health_timeout_ms",
                                                  "health_failures",
                                                  "memory_max",
                                                  "cpu_max",
                                                  "max_memory_restart",
                                                  "rlimit_nofile",
                                                  "rlimit_core"};

enum {
  M_HTTP,
  M_DB,
  M_LOG_DIR,
  M_INTERVAL,
  M_RETENTION,
  M_TOKEN,
  M_ALERT_WEBHOOK,
  M_NKEYS
};
static const char *const monitor_keys[M_NKEYS] = {
    "http",           "db",         "log_dir",      "sample_interval_ms",
    "retention_days", "token_file", "alert_webhook"};

static int config_key_index(const char *const *keys, int n, const char *k) {
  for (int i = 0; i < n; i++)
    if (!strcmp(keys[i], k))
      return i;
  return -1;
}

static bool config_set_str(config_parser *cp, char **dst, const char *v) {
  char *d = config_strdup(cp, v);
  if (!d)
    return false;
  free(*dst);
  *dst = d;
  return true;
}

static bool config_http(config_parser *cp, const char *v, int line) {
  const char *colon = strrchr(v, ':');
  long long port;
  char host[64];
  size_t hlen = colon ? (size_t)(colon - v) : 0;
  if (!colon || hlen == 0 || hlen >= sizeof host ||
      !config_int(colon + 1, 0, 65535, &port)) {
    config_error(cp, line, "bad http address '%s' (want HOST:PORT)", v);
    return false;
  }
  memcpy(host, v, hlen);
  host[hlen] = '\0';
  if (!strcmp(host, "localhost"))
    strcpy(host, "127.0.0.1");
  struct in_addr a;
  if (inet_pton(AF_INET, host, &a) != 1) {
    config_error(cp, line, "bad http host '%s' (want an IPv4 address)", host);
    return false;
  }
  cp->cfg->http_port = (int)port;
  return config_set_str(cp, &cp->cfg->http_host, host);
}

static int config_monitor_key(config_parser *cp, int k, const char *v,
                              int line) {
  mon_config *cfg = cp->cfg;
  long long x;
  switch (k) {
  case M_HTTP:
    return config_http(cp, v, line);
  case M_DB:
    return config_set_str(cp, &cfg->db, v);
  case M_LOG_DIR:
    return config_set_str(cp, &cfg->log_dir, v);
  case M_TOKEN:
    return config_set_str(cp, &cfg->token_file, v);
  case M_ALERT_WEBHOOK: {
    char why[128];
    if (mon_net_url_parse(v, "http", &cfg->alert_url, why, sizeof why) != 0) {
      config_error(cp, line, "bad alert_webhook '%s': %s", v, why);
      return 0;
    }
    return config_set_str(cp, &cfg->alert_webhook, v);
  }
  case M_INTERVAL:
    if (!config_int(v, 100, 3600000, &x))
      break;
    cfg->sample_interval_ms = (int)x;
    return 1;
  case M_RETENTION:
    if (!config_int(v, 1, 3650, &x))
      break;
    cfg->retention_days = (int)x;
    return 1;
  }
  config_error(cp, line, "bad number '%s' for %s", v, monitor_keys[k]);
  return 0;
}

/* depends_on = a b (or a, b): names, resolved once the file is read. */
static bool config_depends_on(config_parser *cp, mon_service_cfg *s,
                              const char *v, int line) {
  char *copy = config_strdup(cp, v);
  if (!copy)
    return false;
  bool ok = true;
  for (char *save, *w = strtok_r(copy, " \t,", &save); ok && w;
       w = strtok_r(NULL, " \t,", &save)) {
    if (!mon_name_valid(w)) {
      config_error(cp, line, "bad service name '%s' in depends_on", w);
      ok = false;
      break;
    }
    for (size_t j = 0; j < s->ndeps; j++)
      if (!strcmp(s->depends_on[j], w)) {
        config_error(cp, line, "'%s' named twice in depends_on", w);
        ok = false;
      }
    char **nd =
        ok ? mon__realloc(s->depends_on, (s->ndeps + 2) * sizeof *nd) : NULL;
    if (ok && !nd) {
      cp->oom = true;
      ok = false;
    }
    if (!ok)
      break;
    s->depends_on = nd;
    if (!(nd[s->ndeps] = config_strdup(cp, w))) {
      ok = false;
      break;
    }
    nd[++s->ndeps] = NULL;
  }
  free(copy);
  return ok;
}

static bool config_health(config_parser *cp, mon_service_cfg *s, const char *v,
                          int line) {
  char why[128];
  if (!strncmp(v, "exec:", 5)) {
    char **argv = NULL;
    int n = mon_split_command(v + 5, &argv);
    if (n <= 0) {
      mon_argv_free(argv);
      if (n == -2)
        cp->oom = true;
      else
        config_error(cp, line, "bad health command '%s'", v + 5);
      return false;
    }
    s->health = MON_HEALTH_EXEC;
    s->health_argv = argv;
  } else if (!strncmp(v, "http://", 7) || !strncmp(v, "tcp://", 6)) {
    bool http = v[0] == 'h';
    if (mon_net_url_parse(v, http ? "http" : "tcp", &s->health_url, why,
                          sizeof why) != 0) {
      config_error(cp, line, "bad health '%s': %s", v, why);
      return false;
    }
    s->health = http ? MON_HEALTH_HTTP : MON_HEALTH_TCP;
  } else {
    config_error(cp, line,
                 "bad health '%s' (want http://HOST:PORT/PATH, "
                 "tcp://HOST:PORT or exec:COMMAND)",
                 v);
    return false;
  }
  return config_set_str(cp, &s->health_text, v);
}

static int config_service_key(config_parser *cp, int k, const char *v,
                              int line) {
  mon_service_cfg *s = cp->svc;
  long long x;
  bool b;
  struct {
    int key;
    long long lo, hi;
    int *dst;
  } ints[] = {
      {K_PORT, 1, 65535, &s->port},
      {K_WORKERS_MIN, 1, 1024, &s->workers_min},
      {K_WORKERS_MAX, 1, 1024, &s->workers_max},
      {K_START_RETRIES, -1, 1000000, &s->start_retries},
      {K_START_SECS, 0, 3600, &s->start_secs},
      {K_READY_TIMEOUT, 100, 3600000, &s->ready_timeout_ms},
      {K_STOP_TIMEOUT, 0, 3600000, &s->stop_timeout_ms},
      {K_BACKOFF, 10, 3600000, &s->backoff_ms},
      {K_BACKOFF_MAX, 10, 86400000, &s->backoff_max_ms},
      {K_LOG_BACKUPS, 0, 100, &s->log_backups},
      {K_HEALTH_INTERVAL, 100, 86400000, &s->health_interval_ms},
      {K_HEALTH_TIMEOUT, 10, 600000, &s->health_timeout_ms},
      {K_HEALTH_FAILURES, 1, 1000, &s->health_failures},
      {K_CPU_MAX, 1, 102400, &s->cpu_max},
  };
  for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
    if (ints[i].key != k)
      continue;
    if (!config_int(v, ints[i].lo, ints[i].hi, &x)) {
      config_error(cp, line, "bad number '%s' for %s (%lld..%lld)", v,
                   service_keys[k], ints[i].lo, ints[i].hi);
      return 0;
    }
    *ints[i].dst = (int)x;
    if (k == K_PORT)
      s->port_line = line;
    return 1;
  }
  switch (k) {
  case K_COMMAND: {
    char **argv = NULL;
    int n = mon_split_command(v, &argv);
    if (n == -2) {
      cp->oom = true;
      return 0;
    }
    if (n <= 0) {
      mon_argv_free(argv);
      config_error(cp, line,
                   n == 0 ? "empty command" : "unterminated quote in command");
      return 0;
    }
    mon_argv_free(s->argv);
    s->argv = argv;
    return config_set_str(cp, &s->command, v);
  }
  case K_AUTOSTART:
  case K_TIMESTAMPS:
    if (!config_bool(v, &b)) {
      config_error(cp, line, "bad boolean '%s' for %s (true/false)", v,
                   service_keys[k]);
      return 0;
    }
    *(k == K_AUTOSTART ? &s->autostart : &s->timestamps) = b;
    return 1;
  case K_RESTART:
    if (!strcmp(v, "always"))
      s->restart = MON_RESTART_ALWAYS;
    else if (!strcmp(v, "on-failure"))
      s->restart = MON_RESTART_ON_FAILURE;
    else if (!strcmp(v, "never"))
      s->restart = MON_RESTART_NEVER;
    else {
      config_error(cp, line, "bad restart '%s' (always, on-failure, never)", v);
      return 0;
    }
    return 1;
  case K_READY:
    if (!strcmp(v, "auto"))
      s->ready = MON_READY_AUTO;
    else if (!strcmp(v, "ping"))
      s->ready = MON_READY_PING;
    else if (!strcmp(v, "uptime"))
      s->ready = MON_READY_UPTIME;
    else {
      config_error(cp, line, "bad ready '%s' (auto, ping, uptime)", v);
      return 0;
    }
    return 1;
  case K_LOG_MAX:
    if (!config_int(v, 0, 1LL << 40, &x)) {
      config_error(cp, line, "bad number '%s' for log_max_bytes", v);
      return 0;
    }
    s->log_max_bytes = x;
    return 1;
  case K_ENV: {
    char **words = NULL;
    int n = mon_split_command(v, &words);
    if (n < 0) {
      mon_argv_free(words);
      if (n == -2)
        cp->oom = true;
      else
        config_error(cp, line, "unterminated quote in env");
      return 0;
    }
    bool ok = true;
    for (int i = 0; ok && i < n; i++)
      ok = config_env_add(cp, s, words[i], line);
    mon_argv_free(words);
    return ok;
  }
  case K_ENV_FILE:
    if (!config_set_str(cp, &s->env_file, v))
      return 0;
    return config_env_file(cp, s, v, line);
  case K_DIRECTORY:
    return config_set_str(cp, &s->directory, v);
  case K_DEPENDS_ON:
    s->deps_line = line;
    return config_depends_on(cp, s, v, line);
  case K_HEALTH:
    return config_health(cp, s, v, line);
  case K_MEMORY_MAX:
  case K_MAX_MEMORY_RESTART: {
    long long *dst =
        k == K_MEMORY_MAX ? &s->memory_max : &s->max_memory_restart;
    if (!mon_size_parse(v, &x) || x < 4096) {
      config_error(cp, line, "bad size '%s' for %s (bytes, or with K, M, G)", v,
                   service_keys[k]);
      return 0;
    }
    *dst = x;
    return 1;
  }
  case K_RLIMIT_NOFILE:
  case K_RLIMIT_CORE: {
    long long *dst = k == K_RLIMIT_NOFILE ? &s->rlimit_nofile : &s->rlimit_core;
    bool ok = k == K_RLIMIT_NOFILE ? config_int(v, 1, 1LL << 30, &x)
                                   : mon_size_parse(v, &x);
    if (!strcmp(v, "unlimited")) {
      if (k == K_RLIMIT_NOFILE) { /* above fs.nr_open: setrlimit refuses */
        config_error(cp, line,
                     "rlimit_nofile cannot be unlimited on Linux (give a "
                     "count, at most fs.nr_open)");
        return 0;
      }
      x = MON_RLIMIT_INFINITY;
      ok = true;
    }
    if (!ok) {
      config_error(cp, line, "bad limit '%s' for %s (%s or unlimited)", v,
                   service_keys[k],
                   k == K_RLIMIT_NOFILE ? "a count" : "bytes, or with K, M, G");
      return 0;
    }
    *dst = x;
    return 1;
  }
  }
  return 0;
}

static int config_handler(void *user, const char *section, const char *name,
                          const char *value) {
  (void)section; /* the reader tracks sections, with their lines */
  config_parser *cp = user;
  int line = cp->lineno;
  if (cp->oom)
    return 0;
  switch (cp->sec) {
  case SEC_BAD:
    return 0; /* already reported at the header */
  case SEC_NONE:
    config_error(cp, line, "key '%s' outside a section", name);
    return 0;
  case SEC_MONITOR:
  case SEC_SERVICE:
    break;
  }
  bool mon = cp->sec == SEC_MONITOR;
  int k = mon ? config_key_index(monitor_keys, M_NKEYS, name)
              : config_key_index(service_keys, K_NKEYS, name);
  if (k < 0) {
    config_error(cp, line, "unknown key '%s' in [%s]", name,
                 mon ? "monitor" : "service");
    return 0;
  }
  /* env may repeat (and continue over lines); any other key once */
  if ((cp->seen & (1UL << k)) && (mon || k != K_ENV)) {
    config_error(cp, line, "key '%s' set twice in this section", name);
    return 0;
  }
  cp->seen |= 1UL << k;
  return mon ? config_monitor_key(cp, k, value, line)
             : config_service_key(cp, k, value, line);
}

/* Depth-first search for a cycle through service i; colour: 0 unseen,
 * 1 on the path, 2 done. path holds the names on the way, for the message. */
static bool config_cycle_from(config_parser *cp, size_t i, char *colour,
                              size_t *path, size_t depth) {
  mon_config *cfg = cp->cfg;
  colour[i] = 1;
  path[depth] = i;
  for (size_t d = 0; d < cfg->services[i].ndeps; d++) {
    size_t j = (size_t)cfg->services[i].deps[d];
    if (colour[j] == 1) {
      char msg[256] = "";
      size_t k = 0;
      while (path[k] != j)
        k++;
      for (; k <= depth; k++) {
        size_t ml = strlen(msg);
        snprintf(msg + ml, sizeof msg - ml, "%s -> ",
                 cfg->services[path[k]].name);
      }
      size_t ml = strlen(msg);
      snprintf(msg + ml, sizeof msg - ml, "%s", cfg->services[j].name);
      config_error(cp, cfg->services[j].deps_line, "dependency cycle: %s", msg);
      return true;
    }
    if (colour[j] == 0 && config_cycle_from(cp, j, colour, path, depth + 1))
      return true;
  }
  colour[i] = 2;
  return false;
}

/* Names in depends_on become indices; unknown names and cycles are errors. */
static void config_resolve_deps(config_parser *cp) {
  mon_config *cfg = cp->cfg;
  for (size_t i = 0; i < cfg->nservices; i++) {
    mon_service_cfg *s = &cfg->services[i];
    if (!s->ndeps)
      continue;
    if (!(s->deps = mon__calloc(s->ndeps, sizeof *s->deps))) {
      cp->oom = true;
      return;
    }
    for (size_t d = 0; d < s->ndeps; d++) {
      int found = -1;
      for (size_t j = 0; j < cfg->nservices; j++)
        if (!strcmp(cfg->services[j].name, s->depends_on[d]))
          found = (int)j;
      if (found < 0) {
        config_error(cp, s->deps_line, "service '%s' depends on unknown '%s'",
                     s->name, s->depends_on[d]);
        return;
      }
      s->deps[d] = found;
    }
  }
  char *colour = mon__calloc(cfg->nservices + 1, 1);
  size_t *path = mon__calloc(cfg->nservices + 1, sizeof *path);
  if (!colour || !path)
    cp->oom = true;
  for (size_t i = 0; colour && path && i < cfg->nservices; i++)
    if (colour[i] == 0 && config_cycle_from(cp, i, colour, path, 0))
      break;
  free(colour);
  free(path);
}

/* Checks that need the whole file: required keys, uniqueness, ranges. */
static void config_check(config_parser *cp) {
  mon_config *cfg = cp->cfg;
  for (size_t i = 0; i < cfg->nservices; i++) {
    mon_service_cfg *s = &cfg->services[i];
    if (!s->command)
      config_error(cp, s->line, "service '%s' has no command", s->name);
    if (s->workers_max == 0)
      s->workers_max = s->workers_min;
    if (s->workers_max < s->workers_min)
      config_error(cp, s->line, "service '%s': workers_max < workers_min",
                   s->name);
    if (s->backoff_max_ms < s->backoff_ms)
      s->backoff_max_ms = s->backoff_ms;
    if (s->ready == MON_READY_AUTO)
      s->ready = s->port ? MON_READY_PING : MON_READY_UPTIME;
    for (size_t j = 0; j < i && s->port; j++) {
      if (cfg->services[j].port == s->port)
        config_error(cp, s->port_line,
                     "duplicate port %d (also used by '%s' at line %d)",
                     s->port, cfg->services[j].name,
                     cfg->services[j].port_line);
    }
    if (s->health_timeout_ms > s->health_interval_ms)
      s->health_timeout_ms = s->health_interval_ms;
  }
  config_resolve_deps(cp);
}

int mon_config_parse(const char *text, size_t len, const char *filename,
                     bool read_env_files, mon_config *cfg, char *err,
                     size_t errlen) {
  memset(cfg, 0, sizeof *cfg);
  config_parser cp = {.p = text,
                      .end = text + len,
                      .filename = filename,
                      .read_env_files = read_env_files,
                      .cfg = cfg,
                      .err = err,
                      .errlen = errlen};
  if (errlen)
    err[0] = '\0';
  cfg->http_port = 5155;
  cfg->sample_interval_ms = 1000;
  cfg->retention_days = 7;
  if (!(cfg->path = config_strdup(&cp, filename)) ||
      !(cfg->http_host = config_strdup(&cp, "127.0.0.1")) ||
      !(cfg->db = config_strdup(&cp, "svc-metrics.sqlite")) ||
      !(cfg->log_dir = config_strdup(&cp, "logs")) ||
      !(cfg->token_file = config_strdup(&cp, "monitor.token")))
    goto fail;
  int r = ini_parse_stream(config_reader, &cp, config_handler, &cp);
  if (cp.oom)
    goto fail;
  if (r > 0 && (!cp.err_line || r < cp.err_line))
    config_error(&cp, r, "syntax error (want [section] or key = value)");
  else if (r < 0)
    goto fail;
  if (!cp.err_line) /* whole-file checks only make sense on a clean parse */
    config_check(&cp);
  if (cp.oom)
    goto fail;
  if (cp.err_line) {
    mon_config_fini(cfg);
    return -1;
  }
  return 0;
fail:
  if (errlen)
    snprintf(err, errlen, "%s: out of memory", filename);
  mon_config_fini(cfg);
  return -1;
}

int mon_config_load(const char *path, mon_config *cfg, char *err,
                    size_t errlen) {
  memset(cfg, 0, sizeof *cfg);
  FILE *f = mon__fopen(path, "re");
  if (!f) {
    snprintf(err, errlen, "%s: %s", path, strerror(errno));
    return -1;
  }
  size_t cap = 4096, len = 0;
  char *buf = mon__malloc(cap);
  for (;;) {
    if (!buf)
      break;
    if (len == cap) {
      char *nb = cap < (16u << 20) ? mon__realloc(buf, cap * 2) : NULL;
      if (!nb) {
        free(buf);
        buf = NULL;
        break;
      }
      buf = nb;
      cap *= 2;
    }
    size_t n = fread(buf + len, 1, cap - len, f);
    if (n == 0)
      break;
    len += n;
  }
  fclose(f);
  if (!buf) {
    snprintf(err, errlen, "%s: file too large or out of memory", path);
    return -1;
  }
  int r = mon_config_parse(buf, len, path, true, cfg, err, errlen);
  free(buf);
  return r;
}

void mon_config_fini(mon_config *cfg) {
  if (!cfg)
    return;
  for (size_t i = 0; i < cfg->nservices; i++) {
    mon_service_cfg *s = &cfg->services[i];
    free(s->name);
    free(s->command);
    mon_argv_free(s->argv);
    mon_argv_free(s->env);
    free(s->env_file);
    free(s->directory);
    mon_argv_free(s->depends_on);
    free(s->deps);
    free(s->health_text);
    mon_argv_free(s->health_argv);
  }
  free(cfg->services);
  free(cfg->path);
  free(cfg->http_host);
  free(cfg->db);
  free(cfg->log_dir);
  free(cfg->token_file);
  free(cfg->alert_webhook);
  memset(cfg, 0, sizeof *cfg);
}

static bool same_str(const char *a, const char *b) {
  return (!a && !b) || (a && b && !strcmp(a, b));
}

bool mon_argv_same(char *const *a, char *const *b) {
  for (; a && b && *a && *b; a++, b++)
    if (strcmp(*a, *b) != 0)
      return false;
  return (!a || !*a) && (!b || !*b);
}

bool mon_service_cfg_same(const mon_service_cfg *a, const mon_service_cfg *b) {
  return same_str(a->name, b->name) && same_str(a->command, b->command) &&
         a->port == b->port && a->workers_min == b->workers_min &&
         a->workers_max == b->workers_max && a->autostart == b->autostart &&
         a->restart == b->restart && a->start_retries == b->start_retries &&
         a->start_secs == b->start_secs &&
         a->ready_timeout_ms == b->ready_timeout_ms &&
         a->stop_timeout_ms == b->stop_timeout_ms &&
         a->backoff_ms == b->backoff_ms &&
         a->backoff_max_ms == b->backoff_max_ms && a->ready == b->ready &&
         mon_argv_same(a->env, b->env) && same_str(a->env_file, b->env_file) &&
         same_str(a->directory, b->directory) &&
         a->log_max_bytes == b->log_max_bytes &&
         a->log_backups == b->log_backups && a->timestamps == b->timestamps &&
         mon_argv_same(a->depends_on, b->depends_on) &&
         same_str(a->health_text, b->health_text) &&
         a->health_interval_ms == b->health_interval_ms &&
         a->health_timeout_ms == b->health_timeout_ms &&
         a->health_failures == b->health_failures &&
         a->memory_max == b->memory_max && a->cpu_max == b->cpu_max &&
         a->max_memory_restart == b->max_memory_restart &&
         a->rlimit_nofile == b->rlimit_nofile &&
         a->rlimit_core == b->rlimit_core;
}

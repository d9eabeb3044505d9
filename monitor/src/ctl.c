/* ctl.c — svc-monitor's control commands (status, start, stop, restart,
 * logs, reload), a client of the running monitor's HTTP API like supervisorctl:
 * the same --config tells it the address and the token file. HTTP through
 * libcurl, JSON through jansson. Exit codes: 0 ok, 1 failed, 2 usage,
 * 3 the monitor is not running. */
#include "ctl.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "mon_sys.h"
#include "render_svg.h"
#include "token.h"

enum { CTL_OK = 0, CTL_FAILED = 1, CTL_USAGE = 2, CTL_DOWN = 3 };

typedef struct ctl {
  char base[128];                /* http://HOST:PORT */
  char auth[MON_TOKEN_LEN + 32]; /* "Authorization: Bearer ..." */
  const char *stream;            /* "stdout" or "stderr" */
} ctl;

typedef struct ctl_body {
  char *p;
  size_t len;
  char pending[65536]; /* logs -f: an SSE line not yet complete */
  size_t plen;
  int sse;
} ctl_body;

static void ctl_print_line(const char *json) {
  json_error_t e;
  json_t *o = json_loads(json, 0, &e);
  const char *line = o ? json_string_value(json_object_get(o, "line")) : NULL;
  if (line) {
    fputs(line, stdout);
    fputc('\n', stdout);
    fflush(stdout);
  }
  json_decref(o);
}

/* SSE: every "data: " line is one JSON object of a log line. */
static void ctl_sse(ctl_body *b, const char *p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (p[i] != '\n') {
      if (b->plen < sizeof b->pending - 1)
        b->pending[b->plen++] = p[i];
      continue;
    }
    b->pending[b->plen] = '\0';
    if (!strncmp(b->pending, "data: ", 6))
      ctl_print_line(b->pending + 6);
    b->plen = 0;
  }
}

static size_t ctl_write(char *p, size_t size, size_t n, void *ud) {
  ctl_body *b = ud;
  size_t len = size * n;
  if (b->sse) {
    ctl_sse(b, p, len);
    return len;
  }
  char *np = mon__realloc(b->p, b->len + len + 1);
  if (!np)
    return 0;
  memcpy(np + b->len, p, len);
  b->p = np;
  b->len += len;
  b->p[b->len] = '\0';
  return len;
}

/* One request: the HTTP status, or -1 when nothing answers (CTL_DOWN).
 * body gets the response (free it). */
static long ctl_request(const ctl *c, const char *method, const char *path,
                        ctl_body *body, long timeout_s) {
  CURL *h = curl_easy_init();
  if (!h)
    return -1;
  char url[512];
  snprintf(url, sizeof url, "%s%s", c->base, path);
  struct curl_slist *hdrs = curl_slist_append(NULL, c->auth);
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, ctl_write);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, body);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 5L);
  curl_easy_setopt(h, CURLOPT_TIMEOUT, timeout_s);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http");
  if (!strcmp(method, "POST")) {
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
  }
  long status = -1;
  CURLcode rc = curl_easy_perform(h);
  if (rc == CURLE_OK || (body->sse && rc == CURLE_PARTIAL_FILE))
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
  else if (rc != CURLE_COULDNT_CONNECT)
    status = -2; /* it answered, then failed (or timed out) */
  curl_slist_free_all(hdrs);
  curl_easy_cleanup(h);
  return status;
}

static int ctl_down(const ctl *c) {
  fprintf(stderr, "svc-monitor: no monitor answers at %s (is it running?)\n",
          c->base);
  return CTL_DOWN;
}

/* The error message of a JSON error body, or the status. */
static int ctl_fail(long status, const ctl_body *b) {
  json_error_t e;
  json_t *o = b->p ? json_loads(b->p, 0, &e) : NULL;
  const char *msg = o ? json_string_value(json_object_get(o, "error")) : NULL;
  fprintf(stderr, "svc-monitor: HTTP %ld: %s\n", status, msg ? msg : "failed");
  json_decref(o);
  return CTL_FAILED;
}

/* /api/services as JSON, or NULL (*exit set). */
static json_t *ctl_services(const ctl *c, int *exit_code) {
  ctl_body b = {0};
  long st = ctl_request(c, "GET", "/api/services", &b, 10);
  json_t *svcs = NULL;
  if (st == -1) {
    *exit_code = ctl_down(c);
  } else if (st != 200) {
    *exit_code = ctl_fail(st, &b);
  } else {
    json_error_t e;
    json_t *doc = json_loads(b.p, 0, &e);
    svcs = json_incref(json_object_get(doc, "services"));
    json_decref(doc);
    if (!json_is_array(svcs)) {
      json_decref(svcs);
      svcs = NULL;
      fprintf(stderr, "svc-monitor: unexpected answer from %s\n", c->base);
      *exit_code = CTL_FAILED;
    }
  }
  free(b.p);
  return svcs;
}

static int ctl_status(const ctl *c) {
  int code = CTL_OK;
  json_t *svcs = ctl_services(c, &code);
  if (!svcs)
    return code;
  printf("%-20s %-9s %8s %10s %8s %10s\n", "NAME", "STATE", "PID", "UPTIME",
         "CPU", "RSS");
  size_t i;
  json_t *s;
  json_array_foreach(svcs, i, s) {
    char pid[24] = "-", up[48] = "-", cpu[32] = "-", rss[32] = "-";
    json_t *v;
    if (json_is_integer(v = json_object_get(s, "pid")))
      snprintf(pid, sizeof pid, "%lld", (long long)json_integer_value(v));
    if (json_is_number(v = json_object_get(s, "uptime_s"))) {
      long long t = (long long)json_number_value(v);
      if (t >= 3600)
        snprintf(up, sizeof up, "%lldh%02lldm", t / 3600, t % 3600 / 60);
      else
        snprintf(up, sizeof up, "%lldm%02llds", t / 60, t % 60);
    }
    if (json_is_number(v = json_object_get(s, "cpu_pct")))
      snprintf(cpu, sizeof cpu, "%.1f%%", json_number_value(v));
    if (json_is_number(v = json_object_get(s, "rss_bytes")) &&
        json_number_value(v) > 0)
      mon_fmt_value(rss, sizeof rss, json_number_value(v), MON_U_BYTES);
    const char *name = json_string_value(json_object_get(s, "name"));
    const char *state = json_string_value(json_object_get(s, "state"));
    printf("%-20s %-9s %8s %10s %8s %10s\n", name ? name : "?",
           state ? state : "?", pid, up, cpu, rss);
  }
  json_decref(svcs);
  return CTL_OK;
}

/* The state and pid of service name now: 0, or an exit code. */
static int ctl_state_of(const ctl *c, const char *name, char *state, size_t cap,
                        long long *pid) {
  int code = CTL_OK;
  json_t *svcs = ctl_services(c, &code);
  if (!svcs)
    return code;
  size_t i;
  json_t *s;
  code = CTL_FAILED;
  json_array_foreach(svcs, i, s) {
    const char *n = json_string_value(json_object_get(s, "name"));
    if (n && !strcmp(n, name)) {
      const char *st = json_string_value(json_object_get(s, "state"));
      snprintf(state, cap, "%s", st ? st : "?");
      json_t *p = json_object_get(s, "pid");
      *pid = json_is_integer(p) ? (long long)json_integer_value(p) : 0;
      code = CTL_OK;
    }
  }
  json_decref(svcs);
  if (code)
    fprintf(stderr, "svc-monitor: no service %s\n", name);
  return code;
}

/* start/stop/restart, then waits (at most 60 s) for the service to get
 * there: RUNNING with a new pid, or STOPPED/EXITED. */
static int ctl_control(const ctl *c, const char *action, const char *name) {
  char state[32];
  long long before = 0, pid = 0;
  int code = ctl_state_of(c, name, state, sizeof state, &before);
  if (code)
    return code;
  char path[256];
  snprintf(path, sizeof path, "/api/services/%s/%s", name, action);
  ctl_body b = {0};
  long st = ctl_request(c, "POST", path, &b, 10);
  if (st == -1)
    code = ctl_down(c);
  else if (st != 202)
    code = ctl_fail(st, &b);
  free(b.p);
  if (code)
    return code;
  bool stop = !strcmp(action, "stop");
  for (int tries = 0; tries < 600; tries++) {
    if ((code = ctl_state_of(c, name, state, sizeof state, &pid)))
      return code;
    if (stop ? !strcmp(state, "STOPPED") || !strcmp(state, "EXITED")
             : !strcmp(state, "RUNNING") &&
                   (pid != before || !strcmp(action, "start")))
      break;
    if (!strcmp(state, "FATAL") || (!stop && !strcmp(state, "BACKOFF"))) {
      fprintf(stderr, "svc-monitor: %s: %s\n", name, state);
      return CTL_FAILED;
    }
    usleep(100000);
  }
  printf("%s: %s%s%lld\n", name, state, pid ? ", pid " : "", pid);
  return stop ? (!strcmp(state, "STOPPED") || !strcmp(state, "EXITED")
                     ? CTL_OK
                     : CTL_FAILED)
              : (!strcmp(state, "RUNNING") ? CTL_OK : CTL_FAILED);
}

static int ctl_logs(const ctl *c, const char *name, bool follow) {
  char path[256];
  ctl_body b = {0};
  long st;
  if (follow) {
    snprintf(path, sizeof path, "/api/services/%s/logs/stream?stream=%s", name,
             c->stream);
    b.sse = 1; /* until the monitor goes away or ^C */
    st = ctl_request(c, "GET", path, &b, 0);
    if (st == 200 || st == -2) {
      fprintf(stderr, "svc-monitor: the monitor closed the stream\n");
      return CTL_DOWN;
    }
  } else {
    snprintf(path, sizeof path, "/api/services/%s/logs?stream=%s&tail=100",
             name, c->stream);
    st = ctl_request(c, "GET", path, &b, 10);
  }
  int code = CTL_OK;
  if (st == -1) {
    code = ctl_down(c);
  } else if (st != 200) {
    code = ctl_fail(st, &b);
  } else {
    json_error_t e;
    json_t *doc = json_loads(b.p, 0, &e);
    size_t i;
    json_t *l;
    json_array_foreach(json_object_get(doc, "lines"), i, l) {
      const char *line = json_string_value(json_object_get(l, "line"));
      if (line)
        printf("%s\n", line);
    }
    json_decref(doc);
  }
  free(b.p);
  return code;
}

/* POST /api/reload: the monitor re-reads its config file; prints what the
 * reload changes, or the config error (file:line) and exits 1. */
static int ctl_reload(const ctl *c) {
  ctl_body b = {0};
  long st = ctl_request(c, "POST", "/api/reload", &b, 10);
  int code = CTL_OK;
  if (st == -1) {
    code = ctl_down(c);
  } else if (st != 202) {
    code = ctl_fail(st, &b);
  } else {
    json_error_t e;
    json_t *root = json_loads(b.p ? b.p : "", 0, &e);
    json_t *plan = json_object_get(root, "plan");
    static const char *const kinds[] = {"added", "changed", "removed",
                                        "restart_needed"};
    bool any = false;
    for (size_t k = 0; plan && k < 4; k++) {
      json_t *list = json_object_get(plan, kinds[k]), *v;
      size_t i;
      if (!json_array_size(list))
        continue;
      printf("%s:", kinds[k]);
      json_array_foreach(list, i, v) printf(" %s", json_string_value(v));
      printf("\n");
      any = true;
    }
    if (!any)
      printf("no service changed\n");
    json_decref(root);
  }
  free(b.p);
  return code;
}

static const char ctl_usage[] =
    "usage: svc-monitor [--config FILE] COMMAND\n"
    "  status                 one line per service\n"
    "  start|stop|restart NAME  and wait until it is there\n"
    "  logs [-f] [--stderr] NAME  the last 100 lines (-f: then follow)\n"
    "  reload                 re-read the config, apply what changed\n"
    "exit: 0 ok, 1 failed, 2 usage, 3 the monitor is not running\n";

bool mon_ctl_is_command(const char *arg) {
  static const char *const cmds[] = {"status",  "start", "stop",
                                     "restart", "logs",  "reload"};
  for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
    if (!strcmp(arg, cmds[i]))
      return true;
  return false;
}

int mon_ctl_main(const char *config_path, int argc, char **argv) {
  const char *cmd = argc > 0 ? argv[0] : NULL;
  const char *name = NULL;
  bool follow = false;
  const char *stream = "stdout";
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "-f") || !strcmp(argv[i], "--follow"))
      follow = true;
    else if (!strcmp(argv[i], "--stderr"))
      stream = "stderr";
    else if (argv[i][0] == '-' || name) {
      fputs(ctl_usage, stderr);
      return CTL_USAGE;
    } else
      name = argv[i];
  }
  bool needs_name =
      cmd && strcmp(cmd, "status") != 0 && strcmp(cmd, "reload") != 0;
  if (!cmd || !mon_ctl_is_command(cmd) || (needs_name != (name != NULL)) ||
      ((follow || strcmp(stream, "stdout") != 0) && strcmp(cmd, "logs") != 0)) {
    fputs(ctl_usage, stderr);
    return CTL_USAGE;
  }
  if (name && !mon_name_valid(name)) {
    fprintf(stderr, "svc-monitor: bad service name '%s'\n", name);
    return CTL_USAGE;
  }
  char err[512];
  mon_config cfg;
  if (mon_config_load(config_path, &cfg, err, sizeof err) != 0) {
    fprintf(stderr, "%s\n", err);
    return CTL_USAGE;
  }
  ctl c = {.stream = stream};
  snprintf(c.base, sizeof c.base, "http://%s:%d",
           strcmp(cfg.http_host, "0.0.0.0") != 0 ? cfg.http_host : "127.0.0.1",
           cfg.http_port);
  char token[MON_TOKEN_LEN + 1];
  int code = CTL_OK;
  if (cfg.http_port == 0) {
    fprintf(stderr,
            "svc-monitor: %s: http port 0 (any free port): the "
            "commands need a fixed port\n",
            config_path);
    code = CTL_USAGE;
  } else if (mon_token_read(cfg.token_file, token, err, sizeof err) != 0) {
    fprintf(stderr,
            "svc-monitor: %s (is the monitor running, and are you "
            "its user?)\n",
            err);
    code = CTL_DOWN;
  }
  mon_config_fini(&cfg);
  if (code)
    return code;
  snprintf(c.auth, sizeof c.auth, "Authorization: Bearer %s", token);
  curl_global_init(CURL_GLOBAL_DEFAULT);
  if (!strcmp(cmd, "status"))
    code = ctl_status(&c);
  else if (!strcmp(cmd, "logs"))
    code = ctl_logs(&c, name, follow);
  else if (!strcmp(cmd, "reload"))
    code = ctl_reload(&c);
  else
    code = ctl_control(&c, cmd, name);
  curl_global_cleanup();
  return code;
}

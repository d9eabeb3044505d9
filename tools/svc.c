/* svc.c — the `svc` command-line client: call any method of a libsvc
 * service, read its built-in svc.* methods (info, methods, stats as a table),
 * measure round trips (ping); `svc bench` (load tests) is in svc_bench.c. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <svc.h>

#include "svc_tool.h"

static const char *const main_usage =
    "usage: svc COMMAND [ARGS]   (svc COMMAND --help for details)\n"
    "\n"
    "  call URL METHOD [DATA|-]  call METHOD, print the reply\n"
    "  methods URL               list the service's methods\n"
    "  info URL                  name, version, pid, workers, listeners\n"
    "  stats URL                 per-method calls, errors, bytes, latency\n"
    "  ping URL [-n N]           round-trip latency of svc.ping\n"
    "  bench URL METHOD          load test: calls/s and latency percentiles\n"
    "\n"
    "URL: shm://NAME, unix:///path/to.sock, tcp://HOST:PORT or\n"
    "     tls://HOST:PORT?ca=CA.pem[&cert=C.pem&key=K.pem][&servername=N]\n";

/* ---- small helpers ---- */

int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Prints "svc: SVC_ENAME: text" (plus the handler's code) and returns the
 * exit code for a failed call. */
int fail(int rc, svc_client *c, const char *what) {
  /* the client's sentence says more than the code (the TLS reason) */
  const char *text = c && svc_client_last_error_text(c)[0]
                         ? svc_client_last_error_text(c)
                         : svc_strerror(rc);
  fprintf(stderr, "svc: %s: %s", svc_err_name(rc), text);
  if (rc == SVC_EHANDLER && c)
    fprintf(stderr, " (code %d)", svc_client_handler_code(c));
  if (what)
    fprintf(stderr, " (%s)", what);
  fputc('\n', stderr);
  return EXIT_FAIL;
}

int usage_error(const char *usage, const char *fmt, const char *arg) {
  fprintf(stderr, "svc: ");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\n%s", usage);
  return EXIT_USAGE;
}

/* A duration for people: "850ns", "12.3us", "4.56ms", "1.20s". */
const char *fmt_ns(double ns, char *buf, size_t cap) {
  if (ns < 1e3)
    snprintf(buf, cap, "%.0fns", ns);
  else if (ns < 1e6)
    snprintf(buf, cap, "%.3gus", ns / 1e3);
  else if (ns < 1e9)
    snprintf(buf, cap, "%.3gms", ns / 1e6);
  else
    snprintf(buf, cap, "%.3gs", ns / 1e9);
  return buf;
}

static const char *fmt_bytes(double b, char *buf, size_t cap) {
  const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) {
    b /= 1024;
    u++;
  }
  snprintf(buf, cap, u ? "%.1f%s" : "%.0f%s", b, unit[u]);
  return buf;
}

/* Parses a whole non-negative number; -1 if it is not one. */
long long parse_num(const char *s) {
  if (!s || !*s)
    return -1;
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || *end || v < 0 || v > 9e15)
    return -1;
  return (long long)v;
}

/* ---- command line: positional arguments and options, in any order ---- */

/* Splits argv into positional arguments and the options in opts.
 * Returns 0, 1 for --help, or EXIT_USAGE after printing why. */
int parse_args(int argc, char **argv, opt *opts, int nopts, int max_pos,
               const char *usage, args *a) {
  a->npos = 0;
  int options_done = 0;
  for (int i = 0; i < argc; i++) {
    const char *s = argv[i];
    if (!options_done && strcmp(s, "--") == 0) {
      options_done = 1; /* DATA may start with '-' after this */
      continue;
    }
    if (!options_done && (strcmp(s, "-h") == 0 || strcmp(s, "--help") == 0))
      return 1;
    if (!options_done && s[0] == '-' && s[1] != '\0') {
      const char *eq = strchr(s, '=');
      size_t n = eq ? (size_t)(eq - s) : strlen(s);
      opt *o = NULL;
      for (int k = 0; k < nopts && !o; k++)
        if ((strlen(opts[k].name) == n && strncmp(opts[k].name, s, n) == 0) ||
            (opts[k].alias && strlen(opts[k].alias) == n &&
             strncmp(opts[k].alias, s, n) == 0))
          o = &opts[k];
      if (!o)
        return usage_error(usage, "unknown option %s", s);
      if (!o->takes_value) {
        o->value = "";
      } else if (eq) {
        o->value = eq + 1;
      } else if (i + 1 < argc) {
        o->value = argv[++i];
      } else {
        return usage_error(usage, "%s needs a value", s);
      }
      continue;
    }
    if (a->npos == max_pos || a->npos == 8)
      return usage_error(usage, "unexpected argument %s", s);
    a->pos[a->npos++] = s;
  }
  return 0;
}

/* Opens url, reporting failure; NULL then. */
svc_client *open_client(const char *url, int timeout_ms, int *exit) {
  svc_client *c;
  char why[256];
  int rc = svc_client_open_ex(url, &c, why, sizeof why);
  if (rc < 0) {
    char what[900];
    snprintf(what, sizeof what, "%s: %s", url,
             rc == SVC_EINVAL && strcmp(why, svc_strerror(rc)) == 0
                 ? "not a valid service URL"
                 : why);
    *exit = fail(rc, NULL, what);
    return NULL;
  }
  svc_client_set_timeout(c, timeout_ms);
  return c;
}

static int timeout_opt(const opt *o, const char *usage, int *ms) {
  if (!o->value)
    return 0;
  long long v = parse_num(o->value);
  if (v < 0 || v > 86400000)
    return usage_error(usage, "bad --timeout %s", o->value);
  *ms = (int)v;
  return 0;
}

/* ---- call, methods, info ---- */

static const char *const call_usage =
    "usage: svc call URL METHOD [DATA|-] [--hex] [--timeout MS]\n"
    "  Calls METHOD with DATA (nothing if absent; stdin with -) and writes\n"
    "  the reply to stdout as is, or as hex digits with --hex. On failure\n"
    "  prints the error's name (e.g. SVC_ENOMETHOD) and exits with 1.\n"
    "  --timeout MS   give up after MS milliseconds (default 10000, 0 none)\n";

static int read_all(FILE *f, char **out, size_t *len) {
  size_t cap = 65536, n = 0;
  char *p = malloc(cap);
  if (!p)
    return SVC_ENOMEM;
  for (;;) {
    if (n == cap) {
      char *q = realloc(p, cap *= 2);
      if (!q) {
        free(p);
        return SVC_ENOMEM;
      }
      p = q;
    }
    size_t got = fread(p + n, 1, cap - n, f);
    n += got;
    if (got == 0)
      break;
  }
  if (ferror(f)) {
    free(p);
    return SVC_ESYS;
  }
  *out = p;
  *len = n;
  return 0;
}

/* One call on a fresh client; the reply is copied to *out (NUL added). */
static int call_once(const char *url, const char *method, const void *req,
                     size_t len, int timeout_ms, char **out, size_t *out_len) {
  int ex = 0;
  svc_client *c = open_client(url, timeout_ms, &ex);
  if (!c)
    return ex;
  const void *resp;
  size_t rlen;
  int rc = svc_call(c, method, req, len, &resp, &rlen);
  if (rc < 0) {
    ex = fail(rc, c, method);
    svc_client_close(c);
    return ex;
  }
  *out = malloc(rlen + 1);
  if (!*out) {
    svc_client_close(c);
    return fail(SVC_ENOMEM, NULL, NULL);
  }
  memcpy(*out, resp, rlen);
  (*out)[rlen] = '\0';
  *out_len = rlen;
  svc_client_close(c);
  return 0;
}

static int cmd_call(int argc, char **argv) {
  opt o[] = {{"--hex", "-x", 0, NULL}, {"--timeout", "-t", 1, NULL}};
  args a;
  int rc = parse_args(argc, argv, o, 2, 3, call_usage, &a);
  if (rc)
    return rc == 1 ? (fputs(call_usage, stdout), 0) : rc;
  if (a.npos < 2)
    return usage_error(call_usage, "%s", "call needs URL and METHOD");
  int timeout = 10000;
  if ((rc = timeout_opt(&o[1], call_usage, &timeout)))
    return rc;
  const char *data = a.npos > 2 ? a.pos[2] : "";
  size_t len = strlen(data);
  char *in = NULL;
  if (strcmp(data, "-") == 0) {
    if ((rc = read_all(stdin, &in, &len)) < 0)
      return fail(rc, NULL, "reading stdin");
    data = in;
  }
  char *out = NULL;
  size_t out_len = 0;
  rc = call_once(a.pos[0], a.pos[1], data, len, timeout, &out, &out_len);
  free(in);
  if (rc)
    return rc;
  if (o[0].value) {
    for (size_t i = 0; i < out_len; i++)
      printf("%02x", (unsigned char)out[i]);
    putchar('\n');
  } else {
    fwrite(out, 1, out_len, stdout);
  }
  free(out);
  return fflush(stdout) == 0 ? 0 : EXIT_FAIL;
}

static const char *const methods_usage =
    "usage: svc methods URL [--json] [--timeout MS]\n"
    "  Lists the methods the service registered (svc.methods), one a line;\n"
    "  the built-ins svc.ping, svc.info, svc.methods and svc.stats always\n"
    "  exist as well. --json prints the raw reply.\n";
static const char *const info_usage =
    "usage: svc info URL [--json] [--timeout MS]\n"
    "  Shows the service's name, version, pid, workers, uptime and\n"
    "  listeners (svc.info). --json prints the raw reply.\n";

/* ---- a reader for the flat JSON of the built-in replies ---- */

/* Skips a JSON string starting at the quote; returns past its end. */
static const char *skip_string(const char *p, const char *end) {
  for (p++; p < end; p++) {
    if (*p == '\\' && p + 1 < end)
      p++;
    else if (*p == '"')
      return p + 1;
  }
  return end;
}

/* Past the value starting at p (string, number, object, array...). */
static const char *skip_value(const char *p, const char *end) {
  int depth = 0;
  for (; p < end; p++) {
    if (*p == '"') {
      p = skip_string(p, end) - 1;
      if (depth == 0)
        return p + 1;
    } else if (*p == '{' || *p == '[') {
      depth++;
    } else if (*p == '}' || *p == ']') {
      if (depth == 0)
        return p;
      if (--depth == 0)
        return p + 1;
    } else if (depth == 0 && *p == ',') {
      return p;
    }
  }
  return end;
}

/* The value of key in the object [p, end) (top level only), or NULL. */
static const char *json_get(const char *p, const char *end, const char *key,
                            const char **vend) {
  size_t klen = strlen(key);
  if (p < end && *p == '{')
    p++;
  while (p < end) {
    while (p < end && (*p == ' ' || *p == ',' || *p == '\n'))
      p++;
    if (p >= end || *p != '"')
      return NULL;
    const char *k = p + 1, *kend = skip_string(p, end) - 1;
    p = kend + 1;
    while (p < end && (*p == ' ' || *p == ':'))
      p++;
    const char *v = p;
    p = skip_value(p, end);
    if ((size_t)(kend - k) == klen && strncmp(k, key, klen) == 0) {
      if (vend)
        *vend = p;
      return v;
    }
  }
  return NULL;
}

static double json_num(const char *p, const char *end, const char *key) {
  const char *v = json_get(p, end, key, NULL);
  return v ? strtod(v, NULL) : 0;
}

/* Copies the string value of key, unescaped (\uXXXX below 0x80 only). */
static void json_str(const char *p, const char *end, const char *key, char *buf,
                     size_t cap) {
  const char *vend, *v = json_get(p, end, key, &vend);
  size_t n = 0;
  if (v && *v == '"') {
    for (v++; v < vend - 1 && n + 1 < cap; v++) {
      if (*v == '\\' && v + 1 < vend - 1) {
        v++;
        if (*v == 'u' && v + 4 < vend) {
          buf[n++] = (char)strtol((char[]){v[3], v[4], 0}, NULL, 16);
          v += 4;
          continue;
        }
      }
      buf[n++] = *v;
    }
  }
  buf[n] = '\0';
}

/* Calls the ith element of the array [p, end) fn(elem, elem_end). */
static int json_each(const char *p, const char *end,
                     void (*fn)(const char *, const char *, void *),
                     void *ctx) {
  int n = 0;
  if (p >= end || *p != '[')
    return 0;
  for (p++; p < end && *p != ']';) {
    while (p < end && (*p == ' ' || *p == ','))
      p++;
    if (p >= end || *p == ']')
      break;
    const char *e = skip_value(p, end);
    fn(p, e, ctx);
    n++;
    p = e;
  }
  return n;
}

/* Prints one string element of an array, viewed as the object {"v":ELEM}
 * so json_str can unescape it. */
static void print_string_elem(const char *p, const char *e, void *ctx) {
  (void)ctx;
  char buf[1024];
  size_t n = (size_t)(e - p);
  char *tmp = malloc(n + 8);
  if (!tmp)
    return;
  snprintf(tmp, n + 8, "{\"v\":%.*s}", (int)n, p);
  json_str(tmp, tmp + n + 6, "v", buf, sizeof buf);
  free(tmp);
  printf("%s\n", buf);
}

static int cmd_methods(int argc, char **argv) {
  opt o[] = {{"--json", NULL, 0, NULL}, {"--timeout", "-t", 1, NULL}};
  args a;
  int rc = parse_args(argc, argv, o, 2, 1, methods_usage, &a);
  if (rc)
    return rc == 1 ? (fputs(methods_usage, stdout), 0) : rc;
  if (a.npos < 1)
    return usage_error(methods_usage, "%s", "methods needs a URL");
  int timeout = 10000;
  if ((rc = timeout_opt(&o[1], methods_usage, &timeout)))
    return rc;
  char *out = NULL;
  size_t len = 0;
  if ((rc = call_once(a.pos[0], "svc.methods", "", 0, timeout, &out, &len)))
    return rc;
  if (o[0].value)
    printf("%s\n", out);
  else
    json_each(out, out + len, print_string_elem, NULL);
  free(out);
  return 0;
}

static void print_listener(const char *p, const char *e, void *ctx) {
  (void)ctx;
  printf("  listener  ");
  print_string_elem(p, e, NULL);
}

static int cmd_info(int argc, char **argv) {
  opt o[] = {{"--json", NULL, 0, NULL}, {"--timeout", "-t", 1, NULL}};
  args a;
  int rc = parse_args(argc, argv, o, 2, 1, info_usage, &a);
  if (rc)
    return rc == 1 ? (fputs(info_usage, stdout), 0) : rc;
  if (a.npos < 1)
    return usage_error(info_usage, "%s", "info needs a URL");
  int timeout = 10000;
  if ((rc = timeout_opt(&o[1], info_usage, &timeout)))
    return rc;
  char *out = NULL;
  size_t len = 0;
  if ((rc = call_once(a.pos[0], "svc.info", "", 0, timeout, &out, &len)))
    return rc;
  if (o[0].value) {
    printf("%s\n", out);
  } else {
    const char *end = out + len;
    char name[300], version[64], up[32];
    json_str(out, end, "name", name, sizeof name);
    json_str(out, end, "version", version, sizeof version);
    printf("  name      %s\n  version   %s\n  pid       %.0f\n"
           "  workers   %.0f\n  uptime    %s\n",
           name, version, json_num(out, end, "pid"),
           json_num(out, end, "workers"),
           fmt_ns(json_num(out, end, "uptime_ms") * 1e6, up, sizeof up));
    const char *le, *l = json_get(out, end, "listeners", &le);
    if (l)
      json_each(l, le, print_listener, NULL);
  }
  free(out);
  return 0;
}

/* ---- stats ---- */

static const char *const stats_usage =
    "usage: svc stats URL [--json] [--timeout MS]\n"
    "  Per-method statistics since the service started, summed over its\n"
    "  worker processes (svc.stats): calls, errors, average and percentile\n"
    "  handler time, bytes in and out. --json prints the raw reply.\n";

static void print_stats_row(const char *p, const char *e, void *ctx) {
  (void)ctx;
  char name[300], b[8][32];
  json_str(p, e, "name", name, sizeof name);
  double calls = json_num(p, e, "calls");
  printf("%-24s %10.0f %8.0f %9s %9s %9s %9s %9s %10s %10s\n", name, calls,
         json_num(p, e, "errors"),
         fmt_ns(calls ? json_num(p, e, "total_ns") / calls : 0, b[0], 32),
         fmt_ns(json_num(p, e, "p50_ns"), b[1], 32),
         fmt_ns(json_num(p, e, "p99_ns"), b[2], 32),
         fmt_ns(json_num(p, e, "p999_ns"), b[3], 32),
         fmt_ns(json_num(p, e, "max_ns"), b[4], 32),
         fmt_bytes(json_num(p, e, "bytes_in"), b[5], 32),
         fmt_bytes(json_num(p, e, "bytes_out"), b[6], 32));
}

static int cmd_stats(int argc, char **argv) {
  opt o[] = {{"--json", NULL, 0, NULL}, {"--timeout", "-t", 1, NULL}};
  args a;
  int rc = parse_args(argc, argv, o, 2, 1, stats_usage, &a);
  if (rc)
    return rc == 1 ? (fputs(stats_usage, stdout), 0) : rc;
  if (a.npos < 1)
    return usage_error(stats_usage, "%s", "stats needs a URL");
  int timeout = 10000;
  if ((rc = timeout_opt(&o[1], stats_usage, &timeout)))
    return rc;
  char *out = NULL;
  size_t len = 0;
  if ((rc = call_once(a.pos[0], "svc.stats", "", 0, timeout, &out, &len)))
    return rc;
  if (o[0].value) {
    printf("%s\n", out);
    free(out);
    return 0;
  }
  const char *end = out + len;
  if (json_num(out, end, "format") != 1) {
    free(out);
    return fail(SVC_EPROTO, NULL, "svc.stats reply of an unknown format");
  }
  char name[300], up[32];
  json_str(out, end, "name", name, sizeof name);
  printf("service %s  pid %.0f  workers %.0f  uptime %s  unknown-method "
         "calls %.0f\n\n",
         name, json_num(out, end, "pid"), json_num(out, end, "workers"),
         fmt_ns(json_num(out, end, "uptime_ms") * 1e6, up, sizeof up),
         json_num(out, end, "unknown_method_calls"));
  printf("%-24s %10s %8s %9s %9s %9s %9s %9s %10s %10s\n", "METHOD", "CALLS",
         "ERRORS", "AVG", "P50", "P99", "P99.9", "MAX", "IN", "OUT");
  const char *me, *m = json_get(out, end, "methods", &me);
  if (m)
    json_each(m, me, print_stats_row, NULL);
  free(out);
  return 0;
}

/* ---- ping ---- */

static const char *const ping_usage =
    "usage: svc ping URL [-n N] [-i MS] [-q] [--timeout MS]\n"
    "  Calls svc.ping N times (default 10), MS milliseconds apart (default\n"
    "  0: back to back), printing each round trip unless -q, then\n"
    "  min/avg/p50/p99/max. Exits with 1 if any ping failed.\n";

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? -1 : x > y;
}

static int cmd_ping(int argc, char **argv) {
  opt o[] = {{"-n", "--count", 1, NULL},
             {"-i", "--interval", 1, NULL},
             {"-q", "--quiet", 0, NULL},
             {"--timeout", "-t", 1, NULL}};
  args a;
  int rc = parse_args(argc, argv, o, 4, 1, ping_usage, &a);
  if (rc)
    return rc == 1 ? (fputs(ping_usage, stdout), 0) : rc;
  if (a.npos < 1)
    return usage_error(ping_usage, "%s", "ping needs a URL");
  long long n = o[0].value ? parse_num(o[0].value) : 10;
  long long interval = o[1].value ? parse_num(o[1].value) : 0;
  if (n < 1 || n > 100000000)
    return usage_error(ping_usage, "bad -n %s", o[0].value);
  if (interval < 0 || interval > 3600000)
    return usage_error(ping_usage, "bad -i %s", o[1].value);
  int timeout = 10000;
  if ((rc = timeout_opt(&o[3], ping_usage, &timeout)))
    return rc;
  int ex = 0;
  svc_client *c = open_client(a.pos[0], timeout, &ex);
  if (!c)
    return ex;
  int64_t *rtt = malloc((size_t)n * sizeof *rtt);
  if (!rtt) {
    svc_client_close(c);
    return fail(SVC_ENOMEM, NULL, NULL);
  }
  long long ok = 0, failed = 0;
  for (long long i = 0; i < n; i++) {
    if (i && interval)
      usleep((useconds_t)(interval * 1000));
    const void *resp;
    size_t len;
    int64_t t0 = now_ns();
    rc = svc_call(c, "svc.ping", "", 0, &resp, &len);
    int64_t dt = now_ns() - t0;
    char b[32];
    if (rc < 0) {
      failed++;
      ex = fail(rc, c, "svc.ping");
      if (rc != SVC_ETIMEDOUT && rc != SVC_EPEERGONE)
        break; /* not going to get better */
      continue;
    }
    rtt[ok++] = dt;
    if (!o[2].value)
      printf("pong from %s: seq=%lld time=%s\n", a.pos[0], i + 1,
             fmt_ns((double)dt, b, sizeof b));
  }
  svc_client_close(c);
  if (ok) {
    qsort(rtt, (size_t)ok, sizeof *rtt, cmp_i64);
    double sum = 0;
    for (long long i = 0; i < ok; i++)
      sum += (double)rtt[i];
    long long p50 = (ok * 50 + 99) / 100, p99 = (ok * 99 + 99) / 100;
    char b[5][32];
    printf("--- %s: %lld sent, %lld answered ---\n"
           "rtt min/avg/p50/p99/max = %s / %s / %s / %s / %s\n",
           a.pos[0], ok + failed, ok, fmt_ns((double)rtt[0], b[0], 32),
           fmt_ns(sum / (double)ok, b[1], 32),
           fmt_ns((double)rtt[p50 ? p50 - 1 : 0], b[2], 32),
           fmt_ns((double)rtt[p99 ? p99 - 1 : 0], b[3], 32),
           fmt_ns((double)rtt[ok - 1], b[4], 32));
  }
  free(rtt);
  return failed ? (ex ? ex : EXIT_FAIL) : 0;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fputs(main_usage, stderr);
    return EXIT_USAGE;
  }
  const char *cmd = argv[1];
  static const struct {
    const char *name;
    int (*fn)(int, char **);
  } cmds[] = {{"call", cmd_call}, {"methods", cmd_methods},
              {"info", cmd_info}, {"stats", cmd_stats},
              {"ping", cmd_ping}, {"bench", cmd_bench}};
  for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
    if (strcmp(cmd, cmds[i].name) == 0)
      return cmds[i].fn(argc - 2, argv + 2);
  if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 ||
      strcmp(cmd, "help") == 0) {
    fputs(main_usage, stdout);
    return 0;
  }
  if (strcmp(cmd, "--version") == 0) {
    printf("svc %s\n", svc_version());
    return 0;
  }
  fprintf(stderr, "svc: unknown command %s\n%s", cmd, main_usage);
  return EXIT_USAGE;
}

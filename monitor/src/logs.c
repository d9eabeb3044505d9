/* logs.c — pipe reading, line splitting, log files with size rotation.
 * The monitor only ever reads nonblocking from its ends of the pipes, and
 * keeps them large, so a service writing output never waits on us for long. */
#include "logs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mon_sys.h"

#define LOGS_PIPE_SIZE (1 << 20)

void mon_iso_time(int64_t wall_ms, char out[32]) {
  time_t t = (time_t)(wall_ms / 1000);
  struct tm tm;
  gmtime_r(&t, &tm);
  size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out + n, 32 - n, ".%03dZ", (int)(wall_ms % 1000));
}

int mon_mkdirs(const char *dir) {
  char tmp[4096];
  if (snprintf(tmp, sizeof tmp, "%s", dir) >= (int)sizeof tmp)
    return -1;
  for (char *p = tmp + 1; *p; p++) {
    if (*p != '/')
      continue;
    *p = '\0';
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
      return -1;
    *p = '/';
  }
  return mkdir(tmp, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

static void logs_open_file(mon_log_stream *s) {
  s->file = mon__open(s->path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  struct stat st;
  s->size = s->file >= 0 && fstat(s->file, &st) == 0 ? st.st_size : 0;
}

/* Names stream k's file after service k / 2 of cfg and opens it. */
static int logs_stream_open(mon_log_stream *s, const mon_config *cfg,
                            size_t k) {
  const char *name = cfg->services[k / 2].name;
  size_t plen = strlen(cfg->log_dir) + strlen(name) + 32;
  if (!(s->path = mon__malloc(plen))) {
    errno = ENOMEM;
    return -1;
  }
  snprintf(s->path, plen, "%s/%s.%s.log", cfg->log_dir, name,
           k % 2 ? "stderr" : "stdout");
  logs_open_file(s);
  return s->file >= 0 ? 0 : -1;
}

static void logs_stream_close(mon_log_stream *s) {
  if (s->fd >= 0)
    close(s->fd);
  if (s->file >= 0)
    close(s->file);
  free(s->path);
}

int mon_logs_remap(mon_logs *l, const mon_config *cfg, const int *old_of_new,
                   const int *new_of_old, char *err, size_t errlen) {
  size_t n = 2 * cfg->nservices;
  mon_log_stream *ns = mon__calloc(n ? n : 1, sizeof *ns);
  bool *kept = mon__calloc(l->nstreams + 1, sizeof *kept);
  if (!ns || !kept) {
    free(ns);
    free(kept);
    snprintf(err, errlen, "out of memory");
    return -2;
  }
  /* pending lines (e.g. "N lines only in the file" notes) follow too */
  size_t w = 0;
  for (size_t k = 0; k < l->npending; k++) {
    int to = new_of_old[l->pending[k].service];
    if (to < 0) {
      free(l->pending[k].line);
      continue;
    }
    l->pending[w] = l->pending[k];
    l->pending[w++].service = (size_t)to;
  }
  l->npending = w;
  int rc = 0;
  for (size_t k = 0; k < n; k++) {
    int o = old_of_new[k / 2];
    if (o >= 0) {
      size_t ok = 2 * (size_t)o + k % 2;
      ns[k] = l->streams[ok];
      kept[ok] = true;
      continue;
    }
    ns[k].fd = ns[k].file = -1;
    if (logs_stream_open(&ns[k], cfg, k) != 0 && rc == 0) {
      snprintf(err, errlen, "%s: %s", ns[k].path ? ns[k].path : "log",
               strerror(errno));
      rc = -1; /* the service runs; its output goes to the database only */
    }
  }
  for (size_t k = 0; k < l->nstreams; k++)
    if (!kept[k])
      logs_stream_close(&l->streams[k]);
  free(kept);
  free(l->streams);
  l->streams = ns;
  l->nstreams = n;
  l->cfg = cfg;
  return rc;
}

int mon_logs_init(mon_logs *l, const mon_config *cfg, char *err,
                  size_t errlen) {
  memset(l, 0, sizeof *l);
  l->cfg = cfg;
  if (mon_mkdirs(cfg->log_dir) != 0) {
    snprintf(err, errlen, "%s: cannot create log_dir: %s", cfg->log_dir,
             strerror(errno));
    return -1;
  }
  size_t n = 2 * cfg->nservices;
  l->streams = mon__calloc(n ? n : 1, sizeof *l->streams);
  if (!l->streams)
    goto oom;
  l->nstreams = n;
  for (size_t k = 0; k < n; k++)
    l->streams[k].fd = l->streams[k].file = -1;
  for (size_t k = 0; k < l->nstreams; k++) {
    mon_log_stream *s = &l->streams[k];
    if (logs_stream_open(s, cfg, k) != 0) {
      if (!s->path)
        goto oom;
      snprintf(err, errlen, "%s: %s", s->path, strerror(errno));
      mon_logs_fini(l);
      return -1;
    }
  }
  return 0;
oom:
  snprintf(err, errlen, "out of memory");
  mon_logs_fini(l);
  return -1;
}

void mon_logs_fini(mon_logs *l) {
  for (size_t k = 0; l->streams && k < l->nstreams; k++)
    logs_stream_close(&l->streams[k]);
  free(l->streams);
  for (size_t i = 0; i < l->npending; i++)
    free(l->pending[i].line);
  free(l->pending);
  memset(l, 0, sizeof *l);
}

/* NAME.stdout.log -> .1 -> .2 ... keeping log_backups old files. */
static void logs_rotate(mon_logs *l, size_t k) {
  mon_log_stream *s = &l->streams[k];
  const mon_service_cfg *c = &l->cfg->services[k / 2];
  size_t n = strlen(s->path) + 16;
  char *from = mon__malloc(n), *to = mon__malloc(n);
  if (!from || !to)
    goto out;
  if (s->file >= 0)
    close(s->file);
  for (int b = c->log_backups; b >= 1; b--) {
    snprintf(to, n, "%s.%d", s->path, b);
    if (b == 1)
      snprintf(from, n, "%s", s->path);
    else
      snprintf(from, n, "%s.%d", s->path, b - 1);
    rename(from, to);
  }
  if (c->log_backups == 0)
    unlink(s->path);
  logs_open_file(s);
out:
  free(from);
  free(to);
}

static void logs_write(mon_logs *l, size_t k, const char *p, size_t n) {
  mon_log_stream *s = &l->streams[k];
  long long max = l->cfg->services[k / 2].log_max_bytes;
  if (s->file < 0 || !s->path) /* no file for this stream */
    return;
  if (max > 0 && s->size > 0 && s->size + (long long)n > max)
    logs_rotate(l, k);
  if (s->file < 0)
    return;
  while (n > 0) {
    ssize_t w = write(s->file, p, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return; /* disk full: drop, never stall the loop */
    p += w;
    n -= (size_t)w;
    s->size += w;
  }
}

static void logs_pend(mon_logs *l, size_t k, int64_t wall_ms, const char *p,
                      size_t n);

/* One complete line (no newline) of stream k. */
static void logs_line(mon_logs *l, size_t k, int64_t wall_ms, const char *p,
                      size_t n) {
  char buf[MON_LOG_LINE_MAX + 40];
  size_t off = 0;
  if (l->cfg->services[k / 2].timestamps) {
    mon_iso_time(wall_ms, buf);
    off = strlen(buf);
    buf[off++] = ' ';
  }
  if (n > MON_LOG_LINE_MAX)
    n = MON_LOG_LINE_MAX;
  memcpy(buf + off, p, n);
  buf[off + n] = '\n';
  logs_write(l, k, buf, off + n + 1);

  mon_log_stream *s = &l->streams[k];
  if (l->npending >= MON_LOG_PENDING_MAX || s->tick_lines >= MON_LOG_TICK_MAX) {
    s->tick_dropped++;
    l->dropped++;
    return;
  }
  logs_pend(l, k, wall_ms, p, n);
}

/* Queues a line for the logs table. */
static void logs_pend(mon_logs *l, size_t k, int64_t wall_ms, const char *p,
                      size_t n) {
  l->streams[k].tick_lines++;
  if (l->npending == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 256;
    mon_logline *np = mon__realloc(l->pending, cap * sizeof *np);
    if (!np) {
      l->dropped++;
      return;
    }
    l->pending = np;
    l->cap = cap;
  }
  char *copy = mon__malloc(n + 1);
  if (!copy) {
    l->dropped++;
    return;
  }
  memcpy(copy, p, n);
  copy[n] = '\0';
  l->pending[l->npending++] = (mon_logline){.ts_ms = wall_ms,
                                            .service = k / 2,
                                            .stream = (int)(k % 2),
                                            .line = copy,
                                            .len = n};
}

static void logs_flush_partial(mon_logs *l, size_t k, int64_t wall_ms) {
  mon_log_stream *s = &l->streams[k];
  if (s->plen) {
    logs_line(l, k, wall_ms, s->partial, s->plen);
    s->plen = 0;
  }
}

static void logs_feed(mon_logs *l, size_t k, int64_t wall_ms, const char *p,
                      size_t n) {
  mon_log_stream *s = &l->streams[k];
  while (n > 0) {
    const char *nl = memchr(p, '\n', n);
    size_t take = nl ? (size_t)(nl - p) : n;
    size_t room = sizeof s->partial - s->plen;
    if (take > room)
      take = room;
    memcpy(s->partial + s->plen, p, take);
    s->plen += take;
    p += take;
    n -= take;
    if (n > 0 && *p == '\n') {
      p++;
      n--;
      logs_line(l, k, wall_ms, s->partial, s->plen);
      s->plen = 0;
    } else if (s->plen == sizeof s->partial) {
      logs_flush_partial(l, k, wall_ms); /* split an overlong line */
    }
  }
}

void mon_logs_read(mon_logs *l, size_t k, int64_t wall_ms) {
  if (k >= l->nstreams)
    return;
  mon_log_stream *s = &l->streams[k];
  char buf[16384];
  for (int rounds = 0; s->fd >= 0 && rounds < 64; rounds++) {
    ssize_t n = read(s->fd, buf, sizeof buf);
    if (n > 0) {
      logs_feed(l, k, wall_ms, buf, (size_t)n);
      continue;
    }
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && errno == EAGAIN)
      return;
    close(s->fd); /* EOF or error: every writer is gone */
    s->fd = -1;
    logs_flush_partial(l, k, wall_ms);
  }
}

int mon_logs_pipe(mon_logs *l, size_t i, int stream) {
  size_t k = 2 * i + (size_t)stream;
  if (k >= l->nstreams)
    return -1;
  mon_log_stream *s = &l->streams[k];
  if (s->fd >= 0) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    mon_logs_read(l, k, now);
    if (s->fd >= 0) { /* a leftover child still holds it: let go */
      close(s->fd);
      s->fd = -1;
      logs_flush_partial(l, k, now);
    }
  }
  int p[2];
  if (mon__pipe2(p, O_CLOEXEC) != 0)
    return -1;
  fcntl(p[0], F_SETFL, O_NONBLOCK);
  fcntl(p[0], F_SETPIPE_SZ, LOGS_PIPE_SIZE); /* best effort */
  s->fd = p[0];
  return p[1];
}

void mon_logs_note(mon_logs *l, size_t i, int64_t wall_ms, const char *text) {
  char buf[512];
  int n = snprintf(buf, sizeof buf, "svc-monitor: %s", text);
  if (n < 0)
    return;
  if ((size_t)n >= sizeof buf)
    n = sizeof buf - 1;
  logs_line(l, 2 * i + MON_STDOUT, wall_ms, buf, (size_t)n);
}

void mon_logs_clear_pending(mon_logs *l) {
  for (size_t i = 0; i < l->npending; i++)
    free(l->pending[i].line);
  l->npending = 0;
  for (size_t k = 0; l->streams && k < l->nstreams; k++) {
    mon_log_stream *s = &l->streams[k];
    size_t dropped = s->tick_dropped;
    s->tick_lines = s->tick_dropped = 0;
    if (dropped) {
      char msg[128];
      int n = snprintf(msg, sizeof msg,
                       "svc-monitor: %zu more lines are only in the log file",
                       dropped);
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      logs_pend(l, k, (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000, msg,
                (size_t)n);
    }
  }
}

/* logs.h — captures each service's stdout and stderr through pipes: lines
 * go to log_dir/NAME.{stdout,stderr}.log (rotated by size) and into a
 * pending list that the monitor writes into the logs table each tick. */
#ifndef MON_LOGS_H
#define MON_LOGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MON_LOG_LINE_MAX 4096    /* longer lines are split */
#define MON_LOG_PENDING_MAX 5000 /* lines held for the database per tick */
#define MON_LOG_TICK_MAX 500 /* of them, per stream: a flood stays in files */

enum { MON_STDOUT = 0, MON_STDERR = 1 };

typedef struct mon_logline {
  int64_t ts_ms;  /* wall clock */
  size_t service; /* index into the config */
  int stream;     /* MON_STDOUT / MON_STDERR */
  char *line;     /* without newline; NUL-terminated */
  size_t len;
} mon_logline;

typedef struct mon_log_stream {
  int fd;              /* read end of the pipe, or -1 */
  int file;            /* the log file, or -1 if it cannot be written */
  char *path;          /* log_dir/NAME.stdout.log */
  long long size;      /* bytes in the current file */
  size_t tick_lines;   /* lines queued for the database this tick */
  size_t tick_dropped; /* lines past MON_LOG_TICK_MAX this tick */
  char partial[MON_LOG_LINE_MAX]; /* an unfinished line */
  size_t plen;
} mon_log_stream;

typedef struct mon_logs {
  const mon_config *cfg;
  mon_log_stream *streams; /* 2 per service: [2*i + stream] */
  size_t nstreams;
  mon_logline *pending;
  size_t npending, cap;
  size_t dropped; /* lines not kept for the database (files still have them) */
} mon_logs;

/* Creates log_dir if missing and opens every log file for appending.
 * 0, or -1 with err set. */
int mon_logs_init(mon_logs *l, const mon_config *cfg, char *err, size_t errlen);
void mon_logs_fini(mon_logs *l);
/* After a reload: streams follow cfg's services, old_of_new[j] naming the
 * old index of new service j (its pipes and files carry over) or -1 (its
 * files are opened), new_of_old the other way (-1: removed). Streams of
 * services no longer there are closed; pending lines are renumbered (those
 * of removed services dropped). 0; -1 with err set when a new file could
 * not be opened (that stream writes no file; the rest is applied); -2 out
 * of memory, nothing changed. */
int mon_logs_remap(mon_logs *l, const mon_config *cfg, const int *old_of_new,
                   const int *new_of_old, char *err, size_t errlen);
/* Makes the pipe for a new run of service i's stream: keeps the read end
 * (nonblocking, close-on-exec) and returns the write end for the child, or
 * -1. Any earlier pipe is drained and closed first. */
int mon_logs_pipe(mon_logs *l, size_t i, int stream);
/* Reads everything available on stream index k (= 2*i + stream) without
 * blocking; at EOF closes the pipe and flushes a partial line. */
void mon_logs_read(mon_logs *l, size_t k, int64_t wall_ms);
/* A line from the monitor itself ("spawned pid 12"), into stdout's log. */
void mon_logs_note(mon_logs *l, size_t i, int64_t wall_ms, const char *text);
/* Drops the pending lines (after the store wrote them). A stream that had
 * more than MON_LOG_TICK_MAX lines gets one pending line saying how many
 * went only to its file. */
void mon_logs_clear_pending(mon_logs *l);

/* mkdir -p dir (mode 0755). 0 or -1 with errno. */
int mon_mkdirs(const char *dir);

/* Writes "2026-01-02T03:04:05.678Z" (24 bytes + NUL) for wall_ms. */
void mon_iso_time(int64_t wall_ms, char out[32]);

#ifdef __cplusplus
}
#endif
#endif

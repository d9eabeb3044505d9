/* store.h — the monitor's SQLite file: schema, the writer (one connection,
 * one transaction per tick, downsampling and retention) and readers (own
 * connections, for the HTTP side). The schema is a public contract: users
 * query the file directly (see docs/monitor.md). */
#ifndef MON_STORE_H
#define MON_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proc_sample.h"
#include "stats_json.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MON_RAW_KEEP_MS (2LL * 86400 * 1000)    /* raw samples: two days */
#define MON_HOUR_KEEP_MS (730LL * 86400 * 1000) /* hour rows: two years */
#define MON_LOG_ROWS_KEEP 10000                 /* log rows per service */
#define MON_MAINTAIN_EVERY_MS (60LL * 1000)     /* retention period */

typedef struct mon_store mon_store;

/* Opens (creating if needed) the database at path in WAL mode and prepares
 * the statements. 0, or -1 with err set. */
int mon_store_open(const char *path, mon_store **out, char *err, size_t errlen);
void mon_store_close(mon_store *st);
/* Registers a service (insert or update port/command); *id is its row id. */
int mon_store_service(mon_store *st, const char *name, int port,
                      const char *command, int64_t *id);
/* Bracket one tick's writes: 0, or -1 (mon_store_error says why). BEGIN
 * first ends a transaction that a failed COMMIT or ROLLBACK left open; a
 * COMMIT that fails rolls back, so every transaction is written whole or
 * not at all, and the next one starts clean. */
int mon_store_begin(mon_store *st);
int mon_store_commit(mon_store *st);
/* Abandons the open transaction (after a failed write in it), including
 * what mon_store_maintain marked as done in it. */
void mon_store_rollback(mon_store *st);
/* The text of the writer's last failure ("database or disk is full"), ""
 * before any. Valid until the next call on st. */
const char *mon_store_error(const mon_store *st);
/* Inserts one raw sample (cpu NULL when !cpu_valid, pss NULL likewise). */
int mon_store_sample(mon_store *st, int64_t sid, int64_t ts_ms,
                     const mon_sample *s);
int mon_store_event(mon_store *st, int64_t sid, int64_t ts_ms, const char *kind,
                    const char *detail);
int mon_store_log(mon_store *st, int64_t sid, int64_t ts_ms, const char *stream,
                  const char *line, size_t len);
/* Inserts one method_samples row: d is one method over the interval that
 * ends at ts_ms (p50/p99 NULL when !d->pct_valid). */
int mon_store_method(mon_store *st, int64_t sid, int64_t ts_ms,
                     const mon_method_delta *d);
/* Writes minute rows for every minute completed before now_ms and hour
 * rows for every completed hour, then (every MON_MAINTAIN_EVERY_MS) deletes
 * what is past retention. Call inside the tick's transaction. */
int mon_store_maintain(mon_store *st, int64_t now_ms, int retention_days);
/* The underlying handle, for tests. */
struct sqlite3 *mon_store_db(mon_store *st);

/* ---- read side ---- */

typedef enum mon_tier { MON_TIER_RAW, MON_TIER_1M, MON_TIER_1H } mon_tier;

typedef struct mon_point {
  int64_t ts_ms;
  bool cpu_valid;
  double cpu_pct, cpu_max;    /* average and peak over the point */
  double rss, rss_max;        /* bytes */
  double pss;                 /* bytes, 0 if unknown */
  double read_bps, write_bps; /* bytes per second */
  double nprocs;
} mon_point;

typedef struct mon_reader mon_reader;

/* A read-only connection of its own. */
int mon_reader_open(const char *path, mon_reader **out);
void mon_reader_close(mon_reader *r);
/* The tier a graph over [from, to) should read: the finest one that needs
 * at most ~5000 rows (they are then grouped into <= max_points points). */
mon_tier mon_tier_pick(int64_t from, int64_t to, int interval_ms);
/* Points of service name over [from, to), at most max_points (grouped into
 * equal buckets). *pts is malloc'd; free it. 0, or -1. */
int mon_reader_series(mon_reader *r, const char *name, int64_t from, int64_t to,
                      int interval_ms, size_t max_points, mon_point **pts,
                      size_t *n, mon_tier *tier);

typedef struct mon_row {
  int64_t ts_ms;
  char *a; /* logs: stream; events: kind */
  char *b; /* logs: line; events: detail */
} mon_row;
/* The latest `tail` log lines of stream ("stdout", "stderr" or NULL for
 * both), oldest first. Free with mon_rows_free. */
int mon_reader_logs(mon_reader *r, const char *name, const char *stream,
                    int tail, mon_row **rows, size_t *n);
/* Lines of service name that contain q (from_ms <= ts < to_ms; stream
 * NULL for both), newest first, at most limit: rows a = stream, b = line.
 * 3 or more characters: every line, from the substring index, without case
 * (with case when q holds % or _). Fewer: the newest MON_LOG_SCAN_MAX lines
 * of the service, scanned. */
#define MON_LOG_SCAN_MAX 50000
int mon_reader_log_search(mon_reader *r, const char *name, const char *q,
                          const char *stream, int64_t from_ms, int64_t to_ms,
                          int limit, mon_row **rows, size_t *n);
/* The latest `limit` events, newest first. */
int mon_reader_events(mon_reader *r, const char *name, int limit,
                      mon_row **rows, size_t *n);
void mon_rows_free(mon_row *rows, size_t n);

/* method_samples, summed over a range (service set, ts_ms 0) or per
 * interval (ts_ms set, service NULL). */
typedef struct mon_method_row {
  int64_t ts_ms;
  char *service; /* summaries only */
  char *method;
  int64_t calls, errors, bytes_in, bytes_out, total_ns;
  bool pct_valid; /* p50/p99 known */
  int64_t p50_ns; /* summaries: the calls-weighted mean of interval p50s */
  int64_t p99_ns; /* summaries: the largest interval p99 (an upper bound) */
} mon_method_row;
/* Methods over [from, to) of service name (NULL: every service), by total
 * time, largest first, at most limit. Free with mon_method_rows_free. */
int mon_reader_method_top(mon_reader *r, const char *name, int64_t from,
                          int64_t to, int limit, mon_method_row **rows,
                          size_t *n);
/* The per-interval rows of service name over [from, to), oldest first,
 * at most limit. */
int mon_reader_method_points(mon_reader *r, const char *name, int64_t from,
                             int64_t to, int limit, mon_method_row **rows,
                             size_t *n);
void mon_method_rows_free(mon_method_row *rows, size_t n);

#ifdef __cplusplus
}
#endif
#endif

/* store.c — owns the SQLite schema and every statement. The writer keeps its
 * statements prepared for the monitor's life; downsampling folds completed
 * minutes into samples_1m and completed hours into samples_1h, remembering
 * how far it got in the meta table so a restart neither skips nor repeats. */
#include "store.h"

#include <errno.h>
#include <math.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mon_sys.h"

static const char store_schema[] =
    "CREATE TABLE IF NOT EXISTS services("
    " id INTEGER PRIMARY KEY, name TEXT UNIQUE, port INTEGER, command TEXT);"
    "CREATE TABLE IF NOT EXISTS samples("
    " service_id INTEGER NOT NULL, ts_ms INTEGER NOT NULL, cpu_pct REAL,"
    " rss_bytes INTEGER, pss_bytes INTEGER, read_bytes INTEGER,"
    " write_bytes INTEGER, nprocs INTEGER,"
    " PRIMARY KEY(service_id, ts_ms)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS samples_1m("
    " service_id INTEGER NOT NULL, ts_ms INTEGER NOT NULL, cpu_pct REAL,"
    " rss_bytes REAL, pss_bytes REAL, read_bytes REAL, write_bytes REAL,"
    " nprocs REAL, cpu_pct_max REAL, rss_max INTEGER, n INTEGER,"
    " PRIMARY KEY(service_id, ts_ms)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS samples_1h("
    " service_id INTEGER NOT NULL, ts_ms INTEGER NOT NULL, cpu_pct REAL,"
    " rss_bytes REAL, pss_bytes REAL, read_bytes REAL, write_bytes REAL,"
    " nprocs REAL, cpu_pct_max REAL, rss_max INTEGER, n INTEGER,"
    " PRIMARY KEY(service_id, ts_ms)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS events("
    " ts_ms INTEGER NOT NULL, service_id INTEGER, kind TEXT, detail TEXT);"
    "CREATE INDEX IF NOT EXISTS events_by_service ON events(service_id, ts_ms);"
    "CREATE TABLE IF NOT EXISTS logs("
    " ts_ms INTEGER NOT NULL, service_id INTEGER, stream TEXT, line TEXT);"
    "CREATE INDEX IF NOT EXISTS logs_by_service ON logs(service_id, ts_ms);"
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value);"
    "CREATE TABLE IF NOT EXISTS method_samples("
    " service_id INTEGER NOT NULL, ts_ms INTEGER NOT NULL, method TEXT NOT "
    "NULL,"
    " calls INTEGER, errors INTEGER, p50_ns INTEGER, p99_ns INTEGER,"
    " bytes_in INTEGER, bytes_out INTEGER, total_ns INTEGER,"
    " PRIMARY KEY(service_id, ts_ms, method)) WITHOUT ROWID;";

/* Aggregation shared by both tiers. ?1 = from, ?2 = to, ?3 = bucket ms. */
#define STORE_FOLD(dst, src, cpu_max, rss_max)                                 \
  "INSERT OR REPLACE INTO " dst " SELECT service_id, (ts_ms/?3)*?3,"           \
  " avg(cpu_pct), avg(rss_bytes), avg(pss_bytes), avg(read_bytes),"            \
  " avg(write_bytes), avg(nprocs), max(" cpu_max "), max(" rss_max "), "       \
  " count(*) FROM " src " WHERE ts_ms >= ?1 AND ts_ms < ?2"                    \
  " GROUP BY service_id, (ts_ms/?3)"

enum {
  Q_SERVICE_UPSERT,
  Q_SERVICE_ID,
  Q_SAMPLE,
  Q_EVENT,
  Q_LOG,
  Q_FOLD_1M,
  Q_FOLD_1H,
  Q_META_GET,
  Q_META_SET,
  Q_BEGIN,
  Q_COMMIT,
  Q_MIN_RAW,
  Q_MIN_1M,
  Q_METHOD,
  Q_NQ
};
static const char *const store_sql[Q_NQ] = {
    [Q_SERVICE_UPSERT] =
        "INSERT INTO services(name, port, command) VALUES(?1, ?2, ?3)"
        " ON CONFLICT(name) DO UPDATE SET port=?2, command=?3",
    [Q_SERVICE_ID] = "SELECT id FROM services WHERE name=?1",
    [Q_SAMPLE] =
        "INSERT OR REPLACE INTO samples VALUES(?1,?2,?3,?4,?5,?6,?7,?8)",
    [Q_EVENT] = "INSERT INTO events VALUES(?1,?2,?3,?4)",
    [Q_LOG] = "INSERT INTO logs VALUES(?1,?2,?3,?4)",
    [Q_FOLD_1M] = STORE_FOLD("samples_1m", "samples", "cpu_pct", "rss_bytes"),
    [Q_FOLD_1H] =
        STORE_FOLD("samples_1h", "samples_1m", "cpu_pct_max", "rss_max"),
    [Q_META_GET] = "SELECT value FROM meta WHERE key=?1",
    [Q_META_SET] = "INSERT OR REPLACE INTO meta VALUES(?1, ?2)",
    [Q_BEGIN] = "BEGIN",
    [Q_COMMIT] = "COMMIT",
    [Q_MIN_RAW] = "SELECT min(ts_ms) FROM samples",
    [Q_MIN_1M] = "SELECT min(ts_ms) FROM samples_1m",
    [Q_METHOD] = "INSERT OR REPLACE INTO method_samples"
                 " VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)",
};

/* ---- the SQLite calls that can fail, in one layer ----
 * Every call of this file that can fail goes through the four functions
 * below, so that the fault-injection build (svcmon_core_fault) can fail any
 * one of them: the writer's with SVC_FAULT_STORE, a reader's with
 * SVC_FAULT_STORE_READ (fault.h). The errno a test injects picks the
 * SQLite code: ENOSPC is SQLITE_FULL (the disk is full), ENOMEM
 * SQLITE_NOMEM, EBUSY SQLITE_BUSY, anything else SQLITE_IOERR. An injected
 * failure does nothing else: the call is not made, as when SQLite refuses
 * a statement before it writes. In svcmon_core the check is the constant
 * 0. A connection keeps the text of its last failure. */

typedef struct store_conn {
  sqlite3 *db;
  bool writer;   /* the monitor's one writer, or a reader */
  char err[200]; /* the last failure, "" before any */
} store_conn;

static int store_injected(const store_conn *c) {
  (void)c; /* unused without fault injection */
  int e = MON__FAULT(c->writer ? SVC_FAULT_STORE : SVC_FAULT_STORE_READ);
  if (!e)
    return SQLITE_OK;
  return e == ENOSPC   ? SQLITE_FULL
         : e == ENOMEM ? SQLITE_NOMEM
         : e == EBUSY  ? SQLITE_BUSY
                       : SQLITE_IOERR;
}

/* Records the failure rc (injected: SQLite did not see it) and returns it. */
static int store_failed(store_conn *c, int rc, bool injected) {
  snprintf(c->err, sizeof c->err, "%s",
           injected || !c->db ? sqlite3_errstr(rc) : sqlite3_errmsg(c->db));
  return rc;
}

/* sqlite3_open_v2; on failure c->db may still need closing. */
static int store_conn_open(store_conn *c, const char *path, int flags) {
  int rc = store_injected(c);
  if (rc != SQLITE_OK)
    return store_failed(c, rc, true);
  rc = sqlite3_open_v2(path, &c->db, flags, NULL);
  return rc == SQLITE_OK ? rc : store_failed(c, rc, false);
}

/* sqlite3_prepare_v3; *q is NULL on failure. */
static int store_prepare(store_conn *c, const char *sql, unsigned flags,
                         sqlite3_stmt **q) {
  *q = NULL;
  int rc = store_injected(c);
  if (rc != SQLITE_OK)
    return store_failed(c, rc, true);
  rc = sqlite3_prepare_v3(c->db, sql, -1, flags, q, NULL);
  return rc == SQLITE_OK ? rc : store_failed(c, rc, false);
}

/* sqlite3_step: SQLITE_ROW, SQLITE_DONE or the error. */
static int store_step(store_conn *c, sqlite3_stmt *q) {
  int rc = store_injected(c);
  if (rc != SQLITE_OK)
    return store_failed(c, rc, true);
  rc = sqlite3_step(q);
  return rc == SQLITE_ROW || rc == SQLITE_DONE ? rc
                                               : store_failed(c, rc, false);
}

/* sqlite3_exec without a callback: SQLITE_OK or the error. */
static int store_exec(store_conn *c, const char *sql) {
  int rc = store_injected(c);
  if (rc != SQLITE_OK)
    return store_failed(c, rc, true);
  rc = sqlite3_exec(c->db, sql, NULL, NULL, NULL);
  return rc == SQLITE_OK ? rc : store_failed(c, rc, false);
}

/* ---- the writer ---- */

struct mon_store {
  store_conn c;
  sqlite3_stmt *q[Q_NQ];
  int64_t done_1m; /* samples before this are folded into samples_1m */
  int64_t done_1h; /* samples_1m before this are folded into samples_1h */
  int64_t next_retention_ms;
  /* the three above as the last BEGIN found them: a rollback puts them
   * back, or the minutes folded in a transaction that was lost would
   * never be folded again */
  int64_t begun_1m, begun_1h, begun_retention_ms;
};

sqlite3 *mon_store_db(mon_store *st) { return st->c.db; }

const char *mon_store_error(const mon_store *st) { return st->c.err; }

/* Steps q once and resets it: 0, or -1. */
static int store_step_done(mon_store *st, sqlite3_stmt *q) {
  int rc = store_step(&st->c, q);
  sqlite3_reset(q);
  return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : -1;
}

/* The meta value of key (dflt when there is none): 0, or -1. */
static int store_meta_get(mon_store *st, const char *key, int64_t dflt,
                          int64_t *v) {
  sqlite3_stmt *q = st->q[Q_META_GET];
  sqlite3_bind_text(q, 1, key, -1, SQLITE_STATIC);
  *v = dflt;
  int rc = store_step(&st->c, q);
  if (rc == SQLITE_ROW && sqlite3_column_type(q, 0) != SQLITE_NULL)
    *v = sqlite3_column_int64(q, 0);
  sqlite3_reset(q);
  return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

static int store_meta_set(mon_store *st, const char *key, int64_t v) {
  sqlite3_stmt *q = st->q[Q_META_SET];
  sqlite3_bind_text(q, 1, key, -1, SQLITE_STATIC);
  sqlite3_bind_int64(q, 2, v);
  return store_step_done(st, q);
}

/* Ends an open transaction, keeping the failure that led here as the one
 * to report; if the ROLLBACK fails too, the next mon_store_begin retries. */
static void store_abort(mon_store *st) {
  if (sqlite3_get_autocommit(st->c.db))
    return; /* none open, or SQLite rolled it back itself */
  char first[sizeof st->c.err];
  memcpy(first, st->c.err, sizeof first);
  store_exec(&st->c, "ROLLBACK");
  memcpy(st->c.err, first, sizeof first);
}

static int store_pragmas(store_conn *c) {
  const char *sql = c->writer
                        ? "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                          " PRAGMA foreign_keys=OFF;"
                        : "PRAGMA query_only=1;";
  sqlite3_busy_timeout(c->db, 2000);
  return store_exec(c, sql) == SQLITE_OK ? 0 : -1;
}

/* The substring index of the log lines (FTS5's trigram tokenizer: LIKE
 * '%text%' of 3 or more characters, without case, answered from the index),
 * kept by triggers; made and filled once for a store that predates it.
 * detail=none: LIKE needs no positions, and the index is 0.4x the size of a
 * full one and builds in 0.6x the time. Without FTS5 in the SQLite at
 * hand, searches scan instead (mon_reader_log_search). */
static void store_log_index(mon_store *st) {
  static const char index_sql[] =
      "CREATE VIRTUAL TABLE IF NOT EXISTS logs_fts USING fts5(line,"
      " content='logs', content_rowid='rowid', tokenize='trigram',"
      " detail='none');"
      "CREATE TRIGGER IF NOT EXISTS logs_fts_ai AFTER INSERT ON logs BEGIN"
      " INSERT INTO logs_fts(rowid, line) VALUES (new.rowid, new.line); END;"
      "CREATE TRIGGER IF NOT EXISTS logs_fts_ad AFTER DELETE ON logs BEGIN"
      " INSERT INTO logs_fts(logs_fts, rowid, line)"
      " VALUES ('delete', old.rowid, old.line); END;";
  int64_t made;
  if (store_meta_get(st, "logs_fts", 0, &made) != 0 || made)
    return; /* a failure: searches scan, and the next start tries again */
  if (store_exec(&st->c, "BEGIN") != SQLITE_OK)
    return;
  if (store_exec(&st->c, index_sql) != SQLITE_OK ||
      store_exec(&st->c, "INSERT INTO logs_fts(logs_fts) VALUES ('rebuild')") !=
          SQLITE_OK ||
      store_meta_set(st, "logs_fts", 1) != 0 ||
      store_exec(&st->c, "COMMIT") != SQLITE_OK)
    store_abort(st);
}

int mon_store_open(const char *path, mon_store **out, char *err,
                   size_t errlen) {
  mon_store *st = mon__calloc(1, sizeof *st);
  if (!st) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  st->c.writer = true;
  if (store_conn_open(&st->c, path,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                          SQLITE_OPEN_NOMUTEX) != SQLITE_OK ||
      store_pragmas(&st->c) != 0 ||
      store_exec(&st->c, store_schema) != SQLITE_OK)
    goto fail;
  for (int i = 0; i < Q_NQ; i++)
    if (store_prepare(&st->c, store_sql[i], SQLITE_PREPARE_PERSISTENT,
                      &st->q[i]) != SQLITE_OK)
      goto fail;
  if (store_meta_get(st, "done_1m", 0, &st->done_1m) != 0 ||
      store_meta_get(st, "done_1h", 0, &st->done_1h) != 0)
    goto fail;
  store_log_index(st);
  *out = st;
  return 0;
fail:
  snprintf(err, errlen, "%s: %s", path, st->c.err);
  mon_store_close(st);
  return -1;
}

void mon_store_close(mon_store *st) {
  if (!st)
    return;
  for (int i = 0; i < Q_NQ; i++)
    sqlite3_finalize(st->q[i]);
  sqlite3_close(st->c.db);
  free(st);
}

int mon_store_service(mon_store *st, const char *name, int port,
                      const char *command, int64_t *id) {
  sqlite3_stmt *q = st->q[Q_SERVICE_UPSERT];
  sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
  if (port)
    sqlite3_bind_int(q, 2, port);
  else
    sqlite3_bind_null(q, 2);
  sqlite3_bind_text(q, 3, command, -1, SQLITE_STATIC);
  if (store_step_done(st, q) != 0)
    return -1;
  q = st->q[Q_SERVICE_ID];
  sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
  int rc = store_step(&st->c, q);
  if (rc == SQLITE_ROW)
    *id = sqlite3_column_int64(q, 0);
  sqlite3_reset(q);
  return rc == SQLITE_ROW ? 0 : -1;
}

int mon_store_begin(mon_store *st) {
  /* a COMMIT or ROLLBACK that failed can leave its transaction open (SQLite
   * keeps it after SQLITE_BUSY, and may after SQLITE_FULL): every BEGIN
   * after it would fail, and nothing would be written again */
  if (!sqlite3_get_autocommit(st->c.db))
    mon_store_rollback(st);
  st->begun_1m = st->done_1m;
  st->begun_1h = st->done_1h;
  st->begun_retention_ms = st->next_retention_ms;
  return store_step_done(st, st->q[Q_BEGIN]);
}

int mon_store_commit(mon_store *st) {
  if (store_step_done(st, st->q[Q_COMMIT]) == 0)
    return 0;
  mon_store_rollback(st);
  return -1;
}

void mon_store_rollback(mon_store *st) {
  store_abort(st);
  st->done_1m = st->begun_1m;
  st->done_1h = st->begun_1h;
  st->next_retention_ms = st->begun_retention_ms;
}

int mon_store_sample(mon_store *st, int64_t sid, int64_t ts_ms,
                     const mon_sample *s) {
  sqlite3_stmt *q = st->q[Q_SAMPLE];
  sqlite3_bind_int64(q, 1, sid);
  sqlite3_bind_int64(q, 2, ts_ms);
  if (s->cpu_valid)
    sqlite3_bind_double(q, 3, s->cpu_pct);
  else
    sqlite3_bind_null(q, 3);
  sqlite3_bind_int64(q, 4, (sqlite3_int64)s->rss_bytes);
  if (s->pss_valid)
    sqlite3_bind_int64(q, 5, (sqlite3_int64)s->pss_bytes);
  else
    sqlite3_bind_null(q, 5);
  sqlite3_bind_int64(q, 6, (sqlite3_int64)s->read_bytes);
  sqlite3_bind_int64(q, 7, (sqlite3_int64)s->write_bytes);
  sqlite3_bind_int(q, 8, s->nprocs);
  return store_step_done(st, q);
}

int mon_store_event(mon_store *st, int64_t sid, int64_t ts_ms, const char *kind,
                    const char *detail) {
  sqlite3_stmt *q = st->q[Q_EVENT];
  sqlite3_bind_int64(q, 1, ts_ms);
  sqlite3_bind_int64(q, 2, sid);
  sqlite3_bind_text(q, 3, kind, -1, SQLITE_STATIC);
  sqlite3_bind_text(q, 4, detail, -1, SQLITE_STATIC);
  return store_step_done(st, q);
}

int mon_store_log(mon_store *st, int64_t sid, int64_t ts_ms, const char *stream,
                  const char *line, size_t len) {
  sqlite3_stmt *q = st->q[Q_LOG];
  sqlite3_bind_int64(q, 1, ts_ms);
  sqlite3_bind_int64(q, 2, sid);
  sqlite3_bind_text(q, 3, stream, -1, SQLITE_STATIC);
  sqlite3_bind_text(q, 4, line, (int)len, SQLITE_STATIC);
  return store_step_done(st, q);
}

static sqlite3_int64 store_i64(uint64_t v) {
  return v > (uint64_t)INT64_MAX ? INT64_MAX : (sqlite3_int64)v;
}

int mon_store_method(mon_store *st, int64_t sid, int64_t ts_ms,
                     const mon_method_delta *d) {
  sqlite3_stmt *q = st->q[Q_METHOD];
  sqlite3_bind_int64(q, 1, sid);
  sqlite3_bind_int64(q, 2, ts_ms);
  sqlite3_bind_text(q, 3, d->name, -1, SQLITE_STATIC);
  sqlite3_bind_int64(q, 4, store_i64(d->calls));
  sqlite3_bind_int64(q, 5, store_i64(d->errors));
  if (d->pct_valid) {
    sqlite3_bind_int64(q, 6, store_i64(d->p50_ns));
    sqlite3_bind_int64(q, 7, store_i64(d->p99_ns));
  } else {
    sqlite3_bind_null(q, 6);
    sqlite3_bind_null(q, 7);
  }
  sqlite3_bind_int64(q, 8, store_i64(d->bytes_in));
  sqlite3_bind_int64(q, 9, store_i64(d->bytes_out));
  sqlite3_bind_int64(q, 10, store_i64(d->total_ns));
  return store_step_done(st, q);
}

static int store_fold(mon_store *st, int which, int64_t from, int64_t to,
                      int64_t bucket) {
  sqlite3_stmt *q = st->q[which];
  sqlite3_bind_int64(q, 1, from);
  sqlite3_bind_int64(q, 2, to);
  sqlite3_bind_int64(q, 3, bucket);
  return store_step_done(st, q);
}

/* The oldest ts_ms of a table (dflt when it is empty): 0, or -1. */
static int store_min(mon_store *st, int which, int64_t dflt, int64_t *v) {
  sqlite3_stmt *q = st->q[which];
  *v = dflt;
  int rc = store_step(&st->c, q);
  if (rc == SQLITE_ROW && sqlite3_column_type(q, 0) != SQLITE_NULL)
    *v = sqlite3_column_int64(q, 0);
  sqlite3_reset(q);
  return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

/* Deletes what is past retention, service by service so every DELETE is a
 * range scan of a (service_id, ts_ms) key rather than a table scan. */
static int store_retention(mon_store *st, int64_t now_ms, int retention_days) {
  /* log lines: younger than retention_days and among the newest
   * MON_LOG_ROWS_KEEP of the service */
  static const char logs_sql[] =
      "DELETE FROM logs WHERE service_id = ?1 AND ts_ms < max(?3, coalesce("
      "(SELECT ts_ms FROM logs WHERE service_id = ?1"
      " ORDER BY ts_ms DESC LIMIT 1 OFFSET ?5), -1))";
  static const char *const sql[] = {
      "DELETE FROM samples WHERE service_id = ?1 AND ts_ms < ?2",
      "DELETE FROM method_samples WHERE service_id = ?1 AND ts_ms < ?2",
      "DELETE FROM samples_1m WHERE service_id = ?1 AND ts_ms < ?3",
      "DELETE FROM samples_1h WHERE service_id = ?1 AND ts_ms < ?4",
      "DELETE FROM events WHERE service_id = ?1 AND ts_ms < ?4",
      logs_sql,
  };
  enum { NQ = sizeof sql / sizeof sql[0] };
  sqlite3_stmt *ids = NULL, *q[NQ] = {0};
  int rc = -1;
  if (store_prepare(&st->c, "SELECT id FROM services", 0, &ids) != SQLITE_OK)
    goto out;
  for (int k = 0; k < NQ; k++)
    if (store_prepare(&st->c, sql[k], 0, &q[k]) != SQLITE_OK)
      goto out;
  rc = 0;
  int step;
  while ((step = store_step(&st->c, ids)) == SQLITE_ROW) {
    for (int k = 0; k < NQ; k++) {
      sqlite3_bind_int64(q[k], 1, sqlite3_column_int64(ids, 0));
      sqlite3_bind_int64(q[k], 2, now_ms - MON_RAW_KEEP_MS);
      sqlite3_bind_int64(q[k], 3,
                         now_ms - (int64_t)retention_days * 86400 * 1000);
      sqlite3_bind_int64(q[k], 4, now_ms - MON_HOUR_KEEP_MS);
      sqlite3_bind_int(q[k], 5, MON_LOG_ROWS_KEEP);
      rc |= store_step_done(st, q[k]);
    }
  }
  if (step != SQLITE_DONE)
    rc = -1;
out:
  for (int k = 0; k < NQ; k++)
    sqlite3_finalize(q[k]);
  sqlite3_finalize(ids);
  return rc;
}

int mon_store_maintain(mon_store *st, int64_t now_ms, int retention_days) {
  const int64_t M = 60000, H = 3600000;
  int64_t minute = now_ms / M * M, hour = now_ms / H * H;
  int64_t oldest;
  if (st->done_1m == 0) {
    if (store_min(st, Q_MIN_RAW, minute, &oldest) != 0)
      return -1;
    st->done_1m = oldest / M * M;
  }
  if (minute > st->done_1m) {
    if (store_fold(st, Q_FOLD_1M, st->done_1m, minute, M) != 0 ||
        store_meta_set(st, "done_1m", minute) != 0)
      return -1;
    st->done_1m = minute;
  }
  if (st->done_1h == 0) {
    if (store_min(st, Q_MIN_1M, hour, &oldest) != 0)
      return -1;
    st->done_1h = oldest / H * H;
  }
  if (hour > st->done_1h && st->done_1m >= hour) {
    if (store_fold(st, Q_FOLD_1H, st->done_1h, hour, H) != 0 ||
        store_meta_set(st, "done_1h", hour) != 0)
      return -1;
    st->done_1h = hour;
  }
  if (now_ms >= st->next_retention_ms) {
    st->next_retention_ms = now_ms + MON_MAINTAIN_EVERY_MS;
    return store_retention(st, now_ms, retention_days);
  }
  return 0;
}

/* ---- read side ---- */

struct mon_reader {
  store_conn c;
};

int mon_reader_open(const char *path, mon_reader **out) {
  mon_reader *r = mon__calloc(1, sizeof *r);
  if (!r)
    return -1;
  if (store_conn_open(&r->c, path,
                      SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX) !=
          SQLITE_OK ||
      store_pragmas(&r->c) != 0) {
    mon_reader_close(r);
    return -1;
  }
  *out = r;
  return 0;
}

void mon_reader_close(mon_reader *r) {
  if (!r)
    return;
  sqlite3_close(r->c.db);
  free(r);
}

mon_tier mon_tier_pick(int64_t from, int64_t to, int interval_ms) {
  int64_t span = to > from ? to - from : 0;
  if (interval_ms <= 0)
    interval_ms = 1000;
  if (span / interval_ms <= 5000 && from >= to - MON_RAW_KEEP_MS)
    return MON_TIER_RAW;
  if (span / 60000 <= 5000)
    return MON_TIER_1M;
  return MON_TIER_1H;
}

int mon_reader_series(mon_reader *r, const char *name, int64_t from, int64_t to,
                      int interval_ms, size_t max_points, mon_point **pts,
                      size_t *n, mon_tier *tier_out) {
  *pts = NULL;
  *n = 0;
  if (max_points == 0 || to <= from)
    return 0;
  mon_tier tier = mon_tier_pick(from, to, interval_ms);
  int64_t res = tier == MON_TIER_RAW  ? (interval_ms > 0 ? interval_ms : 1000)
                : tier == MON_TIER_1M ? 60000
                                      : 3600000;
  int64_t span = to - from;
  int64_t want = (span + (int64_t)max_points - 1) / (int64_t)max_points;
  int64_t bucket = (want + res - 1) / res * res;
  if (bucket < res)
    bucket = res;
  const char *raw =
      "SELECT (s.ts_ms/?4)*?4, avg(cpu_pct), max(cpu_pct), avg(rss_bytes),"
      " max(rss_bytes), avg(pss_bytes), sum(read_bytes), sum(write_bytes),"
      " avg(nprocs), count(cpu_pct), min(s.ts_ms), max(s.ts_ms), count(*)"
      " FROM samples s JOIN services v ON v.id = s.service_id"
      " WHERE v.name = ?1 AND s.ts_ms >= ?2 AND s.ts_ms < ?3"
      " GROUP BY s.ts_ms/?4 ORDER BY 1";
  char agg[700];
  snprintf(agg, sizeof agg,
           "SELECT (s.ts_ms/?4)*?4, avg(cpu_pct), max(cpu_pct_max),"
           " avg(rss_bytes), max(rss_max), avg(pss_bytes),"
           " sum(read_bytes*n), sum(write_bytes*n), avg(nprocs),"
           " count(cpu_pct), min(s.ts_ms), max(s.ts_ms), sum(n)"
           " FROM %s s JOIN services v ON v.id = s.service_id"
           " WHERE v.name = ?1 AND s.ts_ms >= ?2 AND s.ts_ms < ?3"
           " GROUP BY s.ts_ms/?4 ORDER BY 1",
           tier == MON_TIER_1M ? "samples_1m" : "samples_1h");
  sqlite3_stmt *q;
  if (store_prepare(&r->c, tier == MON_TIER_RAW ? raw : agg, 0, &q) !=
      SQLITE_OK)
    return -1;
  sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
  sqlite3_bind_int64(q, 2, from);
  sqlite3_bind_int64(q, 3, to);
  sqlite3_bind_int64(q, 4, bucket);
  size_t cap = 0;
  int rc;
  double sec_per_sample =
      (double)(tier == MON_TIER_RAW ? res : interval_ms) / 1000.0;
  if (sec_per_sample <= 0)
    sec_per_sample = 1;
  while ((rc = store_step(&r->c, q)) == SQLITE_ROW) {
    if (*n == cap) {
      cap = cap ? cap * 2 : 256;
      mon_point *np = mon__realloc(*pts, cap * sizeof *np);
      if (!np) {
        rc = SQLITE_NOMEM;
        break;
      }
      *pts = np;
    }
    mon_point *p = &(*pts)[(*n)++];
    memset(p, 0, sizeof *p);
    p->ts_ms = sqlite3_column_int64(q, 0);
    p->cpu_valid = sqlite3_column_int64(q, 9) > 0;
    p->cpu_pct = sqlite3_column_double(q, 1);
    p->cpu_max = sqlite3_column_double(q, 2);
    p->rss = sqlite3_column_double(q, 3);
    p->rss_max = sqlite3_column_double(q, 4);
    p->pss = sqlite3_column_double(q, 5);
    double samples = sqlite3_column_double(q, 12);
    double secs = samples * sec_per_sample;
    if (secs > 0) {
      p->read_bps = sqlite3_column_double(q, 6) / secs;
      p->write_bps = sqlite3_column_double(q, 7) / secs;
    }
    p->nprocs = sqlite3_column_double(q, 8);
  }
  sqlite3_finalize(q);
  if (tier_out)
    *tier_out = tier;
  if (rc != SQLITE_DONE) {
    free(*pts);
    *pts = NULL;
    *n = 0;
    return -1;
  }
  return 0;
}

static int store_rows(mon_reader *r, sqlite3_stmt *q, mon_row **rows,
                      size_t *n) {
  size_t cap = 0;
  int rc;
  while ((rc = store_step(&r->c, q)) == SQLITE_ROW) {
    if (*n == cap) {
      cap = cap ? cap * 2 : 64;
      mon_row *nr = mon__realloc(*rows, cap * sizeof *nr);
      if (!nr)
        break;
      *rows = nr;
    }
    mon_row *row = &(*rows)[*n];
    const char *a = (const char *)sqlite3_column_text(q, 1);
    const char *b = (const char *)sqlite3_column_text(q, 2);
    row->ts_ms = sqlite3_column_int64(q, 0);
    row->a = mon__strdup(a ? a : "");
    row->b = mon__strdup(b ? b : "");
    (*n)++;
    if (!row->a || !row->b) {
      rc = SQLITE_NOMEM;
      break;
    }
  }
  sqlite3_finalize(q);
  if (rc != SQLITE_DONE) {
    mon_rows_free(*rows, *n);
    *rows = NULL;
    *n = 0;
    return -1;
  }
  return 0;
}

int mon_reader_logs(mon_reader *r, const char *name, const char *stream,
                    int tail, mon_row **rows, size_t *n) {
  *rows = NULL;
  *n = 0;
  sqlite3_stmt *q;
  const char *sql =
      "SELECT * FROM (SELECT l.ts_ms, l.stream, l.line, l.rowid AS rid"
      " FROM logs l JOIN services v ON v.id = l.service_id"
      " WHERE v.name = ?1 AND (?2 IS NULL OR l.stream = ?2)"
      " ORDER BY l.ts_ms DESC, l.rowid DESC LIMIT ?3) ORDER BY ts_ms, rid";
  if (store_prepare(&r->c, sql, 0, &q) != SQLITE_OK)
    return -1;
  sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
  if (stream)
    sqlite3_bind_text(q, 2, stream, -1, SQLITE_STATIC);
  sqlite3_bind_int(q, 3, tail);
  return store_rows(r, q, rows, n);
}

int mon_reader_log_search(mon_reader *r, const char *name, const char *q,
                          const char *stream, int64_t from_ms, int64_t to_ms,
                          int limit, mon_row **rows, size_t *n) {
  *rows = NULL;
  *n = 0;
  /* The index answers LIKE '%q%' newest first (rowid order) and stops at
   * the limit, for 3 characters or more without % or _ (an ESCAPE clause
   * would turn the index off: those use GLOB, with case). Shorter texts
   * scan the newest MON_LOG_SCAN_MAX lines of the service. */
  static const char fts_sql[] =
      /* CROSS JOIN keeps the index the outer loop (SQLite's planner would
       * otherwise scan logs and probe the index once per line) */
      "SELECT l.ts_ms, l.stream, l.line FROM logs_fts f"
      " CROSS JOIN logs l ON l.rowid = f.rowid"
      " CROSS JOIN services v ON v.id = l.service_id"
      " WHERE f.line %s ?1 AND v.name = ?2 AND (?3 IS NULL OR l.stream = ?3)"
      " AND l.ts_ms >= ?4 AND l.ts_ms < ?5 ORDER BY f.rowid DESC LIMIT ?6";
  static const char scan_sql[] =
      "SELECT ts_ms, stream, line FROM (SELECT l.ts_ms, l.stream, l.line,"
      " l.rowid AS rid FROM logs l JOIN services v ON v.id = l.service_id"
      " WHERE v.name = ?2 ORDER BY l.ts_ms DESC LIMIT %d)"
      " WHERE (?3 IS NULL OR stream = ?3) AND ts_ms >= ?4 AND ts_ms < ?5"
      " AND instr(lower(line), lower(?1)) > 0"
      " ORDER BY ts_ms DESC, rid DESC LIMIT ?6";
  size_t ql = strlen(q);
  bool special = strpbrk(q, "%_") != NULL;
  /* the index needs 3 characters (not bytes) in a row that the pattern
   * keeps literal; GLOB's [*] classes break a run */
  int run = 0, longest = 0;
  for (size_t i = 0; i < ql; i++) {
    if ((q[i] & 0xC0) == 0x80)
      continue; /* a UTF-8 continuation byte: same character */
    run = special && strchr("*?[", q[i]) ? 0 : run + 1;
    if (run > longest)
      longest = run;
  }
  char sql[512];
  char *pattern = mon__malloc(3 * ql + 3);
  if (!pattern)
    return -1;
  sqlite3_stmt *st = NULL;
  bool fts = false;
  if (longest >= 3) {
    snprintf(sql, sizeof sql, fts_sql, special ? "GLOB" : "LIKE");
    fts = store_prepare(&r->c, sql, 0, &st) == SQLITE_OK;
  }
  char *w = pattern;
  if (fts) {
    *w++ = special ? '*' : '%';
    for (size_t i = 0; i < ql; i++) {
      if (special && strchr("*?[", q[i])) { /* a GLOB class of one */
        *w++ = '[';
        *w++ = q[i];
        *w++ = ']';
      } else {
        *w++ = q[i];
      }
    }
    *w++ = special ? '*' : '%';
    *w = '\0';
  } else {
    snprintf(sql, sizeof sql, scan_sql, MON_LOG_SCAN_MAX);
    if (store_prepare(&r->c, sql, 0, &st) != SQLITE_OK) {
      free(pattern);
      return -1;
    }
    memcpy(pattern, q, ql + 1);
  }
  sqlite3_bind_text(st, 1, pattern, -1, SQLITE_TRANSIENT);
  free(pattern);
  sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
  if (stream)
    sqlite3_bind_text(st, 3, stream, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 4, from_ms);
  sqlite3_bind_int64(st, 5, to_ms);
  sqlite3_bind_int(st, 6, limit);
  return store_rows(r, st, rows, n);
}

int mon_reader_events(mon_reader *r, const char *name, int limit,
                      mon_row **rows, size_t *n) {
  *rows = NULL;
  *n = 0;
  sqlite3_stmt *q;
  const char *sql = "SELECT e.ts_ms, e.kind, e.detail FROM events e"
                    " JOIN services v ON v.id = e.service_id WHERE v.name = ?1"
                    " ORDER BY e.ts_ms DESC, e.rowid DESC LIMIT ?2";
  if (store_prepare(&r->c, sql, 0, &q) != SQLITE_OK)
    return -1;
  sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
  sqlite3_bind_int(q, 2, limit);
  return store_rows(r, q, rows, n);
}

void mon_rows_free(mon_row *rows, size_t n) {
  for (size_t i = 0; i < n; i++) {
    free(rows[i].a);
    free(rows[i].b);
  }
  free(rows);
}

/* ---- method statistics ---- */

static int store_method_rows(mon_reader *r, sqlite3_stmt *q, bool with_ts,
                             mon_method_row **rows, size_t *n) {
  size_t cap = 0;
  int rc;
  while ((rc = store_step(&r->c, q)) == SQLITE_ROW) {
    if (*n == cap) {
      cap = cap ? cap * 2 : 64;
      mon_method_row *nr = mon__realloc(*rows, cap * sizeof *nr);
      if (!nr) {
        rc = SQLITE_NOMEM;
        break;
      }
      *rows = nr;
    }
    mon_method_row *row = &(*rows)[*n];
    memset(row, 0, sizeof *row);
    (*n)++;
    /* columns: ts_ms or service, method, calls, errors, bytes_in,
     * bytes_out, total_ns, p50_ns, p99_ns */
    const char *a = (const char *)sqlite3_column_text(q, 0);
    const char *m = (const char *)sqlite3_column_text(q, 1);
    if (with_ts)
      row->ts_ms = sqlite3_column_int64(q, 0);
    else
      row->service = mon__strdup(a ? a : "");
    row->method = mon__strdup(m ? m : "");
    row->calls = sqlite3_column_int64(q, 2);
    row->errors = sqlite3_column_int64(q, 3);
    row->bytes_in = sqlite3_column_int64(q, 4);
    row->bytes_out = sqlite3_column_int64(q, 5);
    row->total_ns = sqlite3_column_int64(q, 6);
    row->pct_valid = sqlite3_column_type(q, 7) != SQLITE_NULL &&
                     sqlite3_column_type(q, 8) != SQLITE_NULL;
    row->p50_ns = sqlite3_column_int64(q, 7);
    row->p99_ns = sqlite3_column_int64(q, 8);
    if (!row->method || (!with_ts && !row->service)) {
      rc = SQLITE_NOMEM;
      break;
    }
  }
  sqlite3_finalize(q);
  if (rc != SQLITE_DONE) {
    mon_method_rows_free(*rows, *n);
    *rows = NULL;
    *n = 0;
    return -1;
  }
  return 0;
}

int mon_reader_method_top(mon_reader *r, const char *name, int64_t from,
                          int64_t to, int limit, mon_method_row **rows,
                          size_t *n) {
  *rows = NULL;
  *n = 0;
  /* services first (CROSS JOIN fixes the order), so each service's rows
   * are a range of the (service_id, ts_ms, method) key, never a scan */
  const char *sql =
      "SELECT v.name, m.method, sum(m.calls), sum(m.errors), sum(m.bytes_in),"
      " sum(m.bytes_out), sum(m.total_ns),"
      " sum(m.p50_ns * m.calls) / sum(CASE WHEN m.p50_ns IS NOT NULL"
      "  THEN m.calls END), max(m.p99_ns)"
      " FROM services v CROSS JOIN method_samples m ON m.service_id = v.id"
      " WHERE (?1 IS NULL OR v.name = ?1) AND m.ts_ms >= ?2 AND m.ts_ms < ?3"
      " GROUP BY v.id, m.method ORDER BY sum(m.total_ns) DESC, v.name,"
      " m.method LIMIT ?4";
  sqlite3_stmt *q;
  if (store_prepare(&r->c, sql, 0, &q) != SQLITE_OK)
    return -1;
  if (name)
    sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
  sqlite3_bind_int64(q, 2, from);
  sqlite3_bind_int64(q, 3, to);
  sqlite3_bind_int(q, 4, limit);
  return store_method_rows(r, q, false, rows, n);
}

int mon_reader_method_points(mon_reader *r, const char *name, int64_t from,
                             int64_t to, int limit, mon_method_row **rows,
                             size_t *n) {
  *rows = NULL;
  *n = 0;
  const char *sql =
      "SELECT m.ts_ms, m.method, m.calls, m.errors, m.bytes_in, m.bytes_out,"
      " m.total_ns, m.p50_ns, m.p99_ns"
      " FROM services v CROSS JOIN method_samples m ON m.service_id = v.id"
      " WHERE v.name = ?1 AND m.ts_ms >= ?2 AND m.ts_ms < ?3"
      " ORDER BY m.ts_ms, m.method LIMIT ?4";
  sqlite3_stmt *q;
  if (store_prepare(&r->c, sql, 0, &q) != SQLITE_OK)
    return -1;
  sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
  sqlite3_bind_int64(q, 2, from);
  sqlite3_bind_int64(q, 3, to);
  sqlite3_bind_int(q, 4, limit);
  return store_method_rows(r, q, true, rows, n);
}

void mon_method_rows_free(mon_method_row *rows, size_t n) {
  for (size_t i = 0; i < n; i++) {
    free(rows[i].service);
    free(rows[i].method);
  }
  free(rows);
}

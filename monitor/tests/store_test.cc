// store_test.cc — schema, inserts, minute/hour downsampling, retention and
// the read side (tier choice, bucketing, logs, events).
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <string>

#include "store.h"

namespace fs = std::filesystem;

namespace {

class Store : public ::testing::Test {
protected:
  std::string path;
  mon_store *st = nullptr;
  int64_t sid = 0;
  void SetUp() override {
    path = (fs::temp_directory_path() /
            ("svcmon-store-" + std::to_string(getpid()) + "-" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name() +
             ".sqlite"))
               .string();
    wipe();
    char err[256];
    ASSERT_EQ(mon_store_open(path.c_str(), &st, err, sizeof err), 0) << err;
    ASSERT_EQ(mon_store_service(st, "svc-a", 7000, "cmd a", &sid), 0);
  }
  void TearDown() override {
    mon_store_close(st);
    wipe();
  }
  void wipe() {
    for (const char *suf : {"", "-wal", "-shm"})
      fs::remove(path + suf);
  }
  int64_t count(const std::string &sql) {
    sqlite3_stmt *q;
    EXPECT_EQ(
        sqlite3_prepare_v2(mon_store_db(st), sql.c_str(), -1, &q, nullptr),
        SQLITE_OK)
        << sql;
    int64_t v = -1;
    if (sqlite3_step(q) == SQLITE_ROW)
      v = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    return v;
  }
  double real(const std::string &sql) {
    sqlite3_stmt *q;
    sqlite3_prepare_v2(mon_store_db(st), sql.c_str(), -1, &q, nullptr);
    double v = -1;
    if (sqlite3_step(q) == SQLITE_ROW)
      v = sqlite3_column_double(q, 0);
    sqlite3_finalize(q);
    return v;
  }
  void sample(int64_t ts, double cpu, uint64_t rss) {
    mon_sample s{};
    s.valid = s.cpu_valid = true;
    s.cpu_pct = cpu;
    s.rss_bytes = rss;
    s.read_bytes = 100;
    s.nprocs = 2;
    ASSERT_EQ(mon_store_sample(st, sid, ts, &s), 0);
  }
};

const int64_t T0 = 1700000000000LL / 3600000 * 3600000; // an hour boundary

TEST_F(Store, WalAndSchema) {
  EXPECT_EQ(count("SELECT count(*) FROM pragma_journal_mode WHERE "
                  "journal_mode='wal'"),
            1);
  for (const char *t :
       {"services", "samples", "samples_1m", "samples_1h", "events", "logs"})
    EXPECT_EQ(count(std::string("SELECT count(*) FROM sqlite_master WHERE "
                                "name='") +
                    t + "'"),
              1)
        << t;
  int64_t again = 0;
  ASSERT_EQ(mon_store_service(st, "svc-a", 7001, "cmd b", &again), 0);
  EXPECT_EQ(again, sid);
  EXPECT_EQ(count("SELECT port FROM services WHERE name='svc-a'"), 7001);
}

TEST_F(Store, DownsampleMinutesAndHours) {
  ASSERT_EQ(mon_store_begin(st), 0);
  // 3 minutes at 1 Hz: cpu 10 in minute 0, 20 in minute 1, 30 in minute 2
  for (int i = 0; i < 180; i++)
    sample(T0 + i * 1000, 10.0 * (1 + i / 60), 1000 + (uint64_t)i);
  ASSERT_EQ(mon_store_maintain(st, T0 + 120500, 7), 0); // minutes 0,1 done
  ASSERT_EQ(mon_store_commit(st), 0);
  EXPECT_EQ(count("SELECT count(*) FROM samples_1m"), 2);
  EXPECT_DOUBLE_EQ(real("SELECT cpu_pct FROM samples_1m ORDER BY ts_ms "
                        "LIMIT 1 OFFSET 1"),
                   20.0);
  EXPECT_EQ(count("SELECT rss_max FROM samples_1m ORDER BY ts_ms LIMIT 1"),
            1059);
  EXPECT_EQ(count("SELECT n FROM samples_1m LIMIT 1"), 60);
  // a second call in the same minute folds nothing new
  ASSERT_EQ(mon_store_maintain(st, T0 + 121000, 7), 0);
  EXPECT_EQ(count("SELECT count(*) FROM samples_1m"), 2);
  // an hour later: minute 2 and the first hour fold
  ASSERT_EQ(mon_store_maintain(st, T0 + 3600000 + 5000, 7), 0);
  EXPECT_EQ(count("SELECT count(*) FROM samples_1m"), 3);
  EXPECT_EQ(count("SELECT count(*) FROM samples_1h"), 1);
  EXPECT_DOUBLE_EQ(real("SELECT cpu_pct_max FROM samples_1h"), 30.0);
  EXPECT_DOUBLE_EQ(real("SELECT cpu_pct FROM samples_1h"), 20.0);
}

TEST_F(Store, RetentionAndWatermarkSurviveReopen) {
  const int64_t day = 86400000;
  sample(T0, 1, 1);
  sample(T0 + 3 * day, 1, 1);
  ASSERT_EQ(mon_store_event(st, sid, T0, "start", "spawned pid 1"), 0);
  ASSERT_EQ(mon_store_maintain(st, T0 + 3 * day + 1000, 2), 0);
  // raw: 2 days; minute rows: retention_days = 2
  EXPECT_EQ(count("SELECT count(*) FROM samples"), 1);
  EXPECT_EQ(count("SELECT count(*) FROM samples_1m WHERE ts_ms < " +
                  std::to_string(T0 + day)),
            0);
  EXPECT_EQ(count("SELECT count(*) FROM samples_1h"), 1); // kept 2 years
  mon_store_close(st);
  char err[256];
  ASSERT_EQ(mon_store_open(path.c_str(), &st, err, sizeof err), 0);
  EXPECT_EQ(count("SELECT value FROM meta WHERE key='done_1m'"),
            (T0 + 3 * day + 1000) / 60000 * 60000);
}

TEST_F(Store, ReaderPicksTierAndBuckets) {
  EXPECT_EQ(mon_tier_pick(0, 300000, 1000), MON_TIER_RAW);
  EXPECT_EQ(mon_tier_pick(0, 3600000, 1000), MON_TIER_RAW);
  EXPECT_EQ(mon_tier_pick(0, 86400000, 1000), MON_TIER_1M);
  EXPECT_EQ(mon_tier_pick(0, 30LL * 86400000, 1000), MON_TIER_1H);

  ASSERT_EQ(mon_store_begin(st), 0);
  for (int i = 0; i < 3600; i++)
    sample(T0 + i * 1000, i % 2 ? 50 : 0, 4096);
  ASSERT_EQ(mon_store_commit(st), 0);
  mon_reader *r;
  ASSERT_EQ(mon_reader_open(path.c_str(), &r), 0);
  mon_point *pts;
  size_t n;
  mon_tier tier;
  ASSERT_EQ(mon_reader_series(r, "svc-a", T0, T0 + 3600000, 1000, 1000, &pts,
                              &n, &tier),
            0);
  EXPECT_EQ(tier, MON_TIER_RAW);
  EXPECT_LE(n, 1000u);
  EXPECT_GE(n, 900u);
  EXPECT_NEAR(pts[0].cpu_pct, 25.0, 1e-9); // 4 s buckets average 0 and 50
  EXPECT_DOUBLE_EQ(pts[0].cpu_max, 50.0);
  EXPECT_NEAR(pts[0].read_bps, 100.0, 1e-9); // 100 bytes per 1 s sample
  free(pts);
  ASSERT_EQ(mon_reader_series(r, "nope", T0, T0 + 3600000, 1000, 1000, &pts, &n,
                              &tier),
            0);
  EXPECT_EQ(n, 0u);
  free(pts);
  mon_reader_close(r);
}

TEST_F(Store, LogsAndEvents) {
  ASSERT_EQ(mon_store_begin(st), 0);
  for (int i = 0; i < 10; i++) {
    std::string line = "line " + std::to_string(i);
    ASSERT_EQ(mon_store_log(st, sid, T0 + i, i % 2 ? "stderr" : "stdout",
                            line.data(), line.size()),
              0);
  }
  ASSERT_EQ(mon_store_event(st, sid, T0, "start", "spawned pid 7"), 0);
  ASSERT_EQ(mon_store_event(st, sid, T0 + 5, "exit", "exited with code 1"), 0);
  ASSERT_EQ(mon_store_commit(st), 0);
  mon_reader *r;
  ASSERT_EQ(mon_reader_open(path.c_str(), &r), 0);
  mon_row *rows;
  size_t n;
  ASSERT_EQ(mon_reader_logs(r, "svc-a", "stderr", 3, &rows, &n), 0);
  ASSERT_EQ(n, 3u);
  EXPECT_STREQ(rows[0].b, "line 5"); // oldest first
  EXPECT_STREQ(rows[2].b, "line 9");
  mon_rows_free(rows, n);
  ASSERT_EQ(mon_reader_logs(r, "svc-a", nullptr, 100, &rows, &n), 0);
  EXPECT_EQ(n, 10u);
  mon_rows_free(rows, n);
  ASSERT_EQ(mon_reader_events(r, "svc-a", 10, &rows, &n), 0);
  ASSERT_EQ(n, 2u);
  EXPECT_STREQ(rows[0].a, "exit"); // newest first
  mon_rows_free(rows, n);
  mon_reader_close(r);
}

// Issue 14: search the captured lines; the index is kept by triggers (also
// through retention's deletes), and finds a line among 1 000 000. Prints
// the time (measured, not asserted: timings belong to benchmarks).
TEST_F(Store, LogSearchFindsALineAmongAMillion) {
  const int N = 1000000;
  auto t0 = std::chrono::steady_clock::now();
  // One statement makes the lines (the triggers index each as
  // mon_store_log's would); one of them is the needle.
  std::string sql =
      "WITH RECURSIVE c(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM c"
      " WHERE i < " +
      std::to_string(N - 1) + ") INSERT INTO logs SELECT " +
      std::to_string(T0) + " + i, " + std::to_string(sid) +
      ", CASE WHEN i % 3 THEN 'stdout' ELSE 'stderr' END, CASE WHEN i = " +
      std::to_string(N / 2 + 1) +
      " THEN 'request ' || i || ' failed: disk quota exceeded on /var/needle'"
      " ELSE 'GET /api/items/' || i || ' 200 ' || (i % 977 * 13) ||"
      " ' bytes in ' || (i % 131) || ' us' END FROM c";
  ASSERT_EQ(
      sqlite3_exec(mon_store_db(st), sql.c_str(), nullptr, nullptr, nullptr),
      SQLITE_OK)
      << sqlite3_errmsg(mon_store_db(st));
  auto t1 = std::chrono::steady_clock::now();
  mon_reader *r;
  ASSERT_EQ(mon_reader_open(path.c_str(), &r), 0);
  mon_row *rows;
  size_t n;
  auto search = [&](const char *q, const char *stream, int limit) {
    auto a = std::chrono::steady_clock::now();
    EXPECT_EQ(mon_reader_log_search(r, "svc-a", q, stream, 0, INT64_MAX, limit,
                                    &rows, &n),
              0);
    return std::chrono::duration<double, std::milli>(
               std::chrono::steady_clock::now() - a)
        .count();
  };
  double rare = search("QUOTA exceeded", nullptr, 200);
  ASSERT_EQ(n, 1u);
  EXPECT_NE(strstr(rows[0].b, "/var/needle"), nullptr);
  EXPECT_STREQ(rows[0].a, "stderr"); // line N / 2 + 1: i % 3 == 0
  mon_rows_free(rows, n);
  double common = search("/api/items/", "stderr", 200);
  EXPECT_EQ(n, 200u);
  EXPECT_EQ(rows[0].ts_ms, T0 + N - 1) << "newest first";
  mon_rows_free(rows, n);
  double shortq = search("in", "stdout", 200); // under 3 characters: a scan
  EXPECT_EQ(n, 200u);
  mon_rows_free(rows, n);
  search("50%", nullptr, 200); // % or _: GLOB, still from the index
  EXPECT_EQ(n, 0u);
  mon_rows_free(rows, n);
  double none = search("no such text", nullptr, 200);
  EXPECT_EQ(n, 0u);
  mon_rows_free(rows, n);
  printf("[ info ] %d lines stored and indexed in %.1f s; search: rare %.2f "
         "ms, common %.2f ms, 2 characters %.1f ms, absent %.2f ms\n",
         N, std::chrono::duration<double>(t1 - t0).count(), rare, common,
         shortq, none);
  mon_reader_close(r);
}

TEST_F(Store, LogIndexFollowsInsertsAndDeletes) {
  ASSERT_EQ(mon_store_begin(st), 0);
  for (int i = 0; i < 100; i++) {
    std::string line = "line " + std::to_string(i) + (i == 7 ? " needle" : "");
    ASSERT_EQ(
        mon_store_log(st, sid, T0 + i, "stdout", line.data(), line.size()), 0);
  }
  ASSERT_EQ(mon_store_commit(st), 0);
  EXPECT_EQ(count("SELECT count(*) FROM logs_fts WHERE line LIKE '%needle%'"),
            1);
  // 2 characters of 3 bytes each: a scan, not the index (which could not
  // use them and would read every line)
  std::string jp = "\xe6\x97\xa5\xe6\x9c\xac"; // two CJK characters
  ASSERT_EQ(mon_store_begin(st), 0);
  ASSERT_EQ(mon_store_log(st, sid, T0 + 200, "stdout", ("x " + jp).data(),
                          jp.size() + 2),
            0);
  ASSERT_EQ(mon_store_commit(st), 0);
  mon_reader *r;
  ASSERT_EQ(mon_reader_open(path.c_str(), &r), 0);
  mon_row *rows;
  size_t n;
  ASSERT_EQ(mon_reader_log_search(r, "svc-a", jp.c_str(), nullptr, 0, INT64_MAX,
                                  10, &rows, &n),
            0);
  EXPECT_EQ(n, 1u);
  mon_rows_free(rows, n);
  mon_reader_close(r);
  // what retention deletes leaves the index too
  ASSERT_EQ(mon_store_begin(st), 0);
  std::string del = "DELETE FROM logs WHERE ts_ms < " + std::to_string(T0 + 50);
  ASSERT_EQ(
      sqlite3_exec(mon_store_db(st), del.c_str(), nullptr, nullptr, nullptr),
      SQLITE_OK);
  ASSERT_EQ(mon_store_commit(st), 0);
  EXPECT_EQ(sqlite3_exec(mon_store_db(st),
                         "INSERT INTO logs_fts(logs_fts, rank) "
                         "VALUES ('integrity-check', 1)",
                         nullptr, nullptr, nullptr),
            SQLITE_OK)
      << sqlite3_errmsg(mon_store_db(st));
  EXPECT_EQ(count("SELECT count(*) FROM logs_fts WHERE line LIKE '%needle%'"),
            0);
}

TEST_F(Store, MethodSamplesRoundTripAndRetention) {
  int64_t sid_b = 0;
  ASSERT_EQ(mon_store_service(st, "svc-b", 7001, "cmd b", &sid_b), 0);
  const int64_t day = 86400000, now = 10 * day;
  mon_method_delta d{};
  d.name = "get";
  d.calls = 5;
  d.errors = 1;
  d.bytes_in = 50;
  d.bytes_out = 70;
  d.total_ns = 500;
  d.pct_valid = true;
  d.p50_ns = 90;
  d.p99_ns = 200;
  ASSERT_EQ(mon_store_begin(st), 0);
  ASSERT_EQ(mon_store_method(st, sid, now - 3 * day, &d), 0); // past 2 days
  ASSERT_EQ(mon_store_method(st, sid, now - 2000, &d), 0);
  d.p50_ns = 110;
  d.p99_ns = 400;
  d.calls = 15;
  ASSERT_EQ(mon_store_method(st, sid, now - 1000, &d), 0);
  d.name = "put";
  d.pct_valid = false;
  d.total_ns = 100000;
  ASSERT_EQ(mon_store_method(st, sid_b, now - 1000, &d), 0);
  ASSERT_EQ(mon_store_commit(st), 0);
  EXPECT_EQ(count("SELECT count(*) FROM method_samples"), 4);
  EXPECT_EQ(count("SELECT count(*) FROM method_samples WHERE p50_ns IS NULL"),
            1);

  ASSERT_EQ(mon_store_begin(st), 0);
  ASSERT_EQ(mon_store_maintain(st, now, 7), 0);
  ASSERT_EQ(mon_store_commit(st), 0);
  EXPECT_EQ(count("SELECT count(*) FROM method_samples"), 3);

  mon_reader *r;
  ASSERT_EQ(mon_reader_open(path.c_str(), &r), 0);
  mon_method_row *rows = nullptr;
  size_t n = 0;
  ASSERT_EQ(mon_reader_method_top(r, nullptr, now - 300000, now, 10, &rows, &n),
            0);
  ASSERT_EQ(n, 2u);
  EXPECT_STREQ(rows[0].service, "svc-b"); // most total time first
  EXPECT_STREQ(rows[0].method, "put");
  EXPECT_FALSE(rows[0].pct_valid);
  EXPECT_STREQ(rows[1].method, "get");
  EXPECT_EQ(rows[1].calls, 20);
  EXPECT_EQ(rows[1].errors, 2);
  EXPECT_EQ(rows[1].total_ns, 1000);
  EXPECT_EQ(rows[1].p50_ns, (5 * 90 + 15 * 110) / 20); // calls-weighted
  EXPECT_EQ(rows[1].p99_ns, 400);                      // the largest
  mon_method_rows_free(rows, n);
  ASSERT_EQ(
      mon_reader_method_points(r, "svc-a", now - 300000, now, 100, &rows, &n),
      0);
  ASSERT_EQ(n, 2u);
  EXPECT_EQ(rows[0].ts_ms, now - 2000);
  EXPECT_EQ(rows[1].calls, 15);
  EXPECT_EQ(rows[1].bytes_out, 70);
  EXPECT_EQ(rows[1].p99_ns, 400);
  mon_method_rows_free(rows, n);
  mon_reader_close(r);
}

} // namespace

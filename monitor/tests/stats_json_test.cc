// stats_json_test.cc — the svc.stats reader (the documented format, unknown
// keys, every kind of malformed input) and the interval maths: deltas,
// baseline resets, and percentiles from histogram differences.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "stats_json.h"

namespace {

struct Doc {
  mon_stats_doc d{};
  int rc = -1;
  std::string err;
  explicit Doc(const std::string &s) {
    char e[128] = "";
    rc = mon_stats_parse(s.data(), s.size(), &d, e, sizeof e);
    err = e;
  }
  ~Doc() { mon_stats_doc_free(&d); }
};

const char kDoc[] =
    R"({"format":1,"name":"echo","pid":4242,"workers":3,"uptime_ms":81234,)"
    R"( "unknown_method_calls":2,"future":{"a":[1,2.5e3,-3,true,null,"x"]},)"
    R"( "methods":[)"
    R"(  {"name":"echo","calls":120,"errors":1,"bytes_in":7680,)"
    R"(   "bytes_out":7616,"total_ns":6100,"p50_ns":41,"p99_ns":335,)"
    R"(   "p999_ns":543,"max_ns":54400,"histogram":[[40,100],[288,20]]},)"
    R"(  {"name":"q\"\\\u00e9\/","calls":0},)"
    R"(  {"name":"svc.ping","calls":3,"errors":0,"bytes_in":0,"bytes_out":12,)"
    R"(   "total_ns":90,"p50_ns":30,"p99_ns":30,"p999_ns":30,"max_ns":30}]})";

TEST(StatsJson, ParsesTheDocumentedFormat) {
  Doc d(kDoc);
  ASSERT_EQ(d.rc, 0) << d.err;
  EXPECT_EQ(d.d.pid, 4242);
  EXPECT_EQ(d.d.workers, 3);
  EXPECT_EQ(d.d.uptime_ms, 81234);
  ASSERT_EQ(d.d.nmethods, 3u);
  const mon_method_stat &e = d.d.methods[0];
  EXPECT_STREQ(e.name, "echo");
  EXPECT_EQ(e.calls, 120u);
  EXPECT_EQ(e.errors, 1u);
  EXPECT_EQ(e.bytes_in, 7680u);
  EXPECT_EQ(e.bytes_out, 7616u);
  EXPECT_EQ(e.total_ns, 6100u);
  EXPECT_EQ(e.max_ns, 54400u);
  ASSERT_TRUE(e.has_hist);
  ASSERT_EQ(e.nhist, 2u);
  EXPECT_EQ(e.hist[1].lo_ns, 288u);
  EXPECT_EQ(e.hist[1].count, 20u);
  EXPECT_STREQ(d.d.methods[1].name, "q\"\\\xc3\xa9/");
  EXPECT_FALSE(d.d.methods[2].has_hist);
}

TEST(StatsJson, RefusesMalformedInput) {
  const char *bad[] = {
      "",
      "{",
      "[]",
      "null",
      R"({"format":2,"pid":1,"uptime_ms":1,"methods":[]})",
      R"({"pid":1,"uptime_ms":1,"methods":[]})",
      R"({"format":1,"uptime_ms":1,"methods":[]})",
      R"({"format":1,"pid":1,"methods":[]})",
      R"({"format":1,"pid":1,"uptime_ms":1})",
      R"({"format":1,"pid":1,"uptime_ms":1,"methods":[]} x)",
      R"({"format":1,"pid":1,"pid":2,"uptime_ms":1,"methods":[]})",
      R"({"format":1,"pid":-1,"uptime_ms":1,"methods":[]})",
      R"({"format":1,"pid":1.5,"uptime_ms":1,"methods":[]})",
      R"({"format":1,"pid":01,"uptime_ms":1,"methods":[]})",
      R"({"format":1,"pid":9223372036854775808,"uptime_ms":1,"methods":[]})",
      R"({"format":1,"pid":1,"uptime_ms":1,"methods":[{"calls":1}]})",
      R"({"format":1,"pid":1,"uptime_ms":1,"methods":[{"name":"a"}]})",
      R"({"format":1,"pid":1,"uptime_ms":1,"methods":[{"name":"","calls":1}]})",
      R"({"format":1,"pid":1,"uptime_ms":1,"methods":[{"name":"a\u0000","calls":1}]})",
      R"({"format":1,"pid":1,"uptime_ms":1,"methods":[{"name":"a","calls":1,"calls":2}]})",
      R"({"format":1,"pid":1,"uptime_ms":1,"methods":[{"name":"a","calls":1,"histogram":[[5,1],[4,1]]}]})",
      R"({"format":1,"pid":1,"uptime_ms":1,"methods":[{"name":"a","calls":1,"histogram":[[5]]}]})",
      R"({"format":1,"pid":1,"uptime_ms":1,"methods":[{"name":"a","calls":1,"x":[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]}]})",
      R"({"format":1,"pid":1,"uptime_ms":1,"methods":[{"name":"a	b","calls":1}]})",
      R"({"format":1,"pid":1,"uptime_ms":1,"methods":[{"name":"a\x","calls":1}]})",
  };
  for (const char *b : bad) {
    Doc d(b);
    EXPECT_EQ(d.rc, -1) << b;
    EXPECT_FALSE(d.err.empty()) << b;
    EXPECT_EQ(d.d.nmethods, 0u);
  }
  std::string long_name =
      R"({"format":1,"pid":1,"uptime_ms":1,"methods":[{"name":")" +
      std::string(256, 'a') + R"(","calls":1}]})";
  EXPECT_EQ(Doc(long_name).rc, -1);
  std::string ok_name =
      R"({"format":1,"pid":1,"uptime_ms":1,"methods":[{"name":")" +
      std::string(255, 'a') + R"(","calls":1}]})";
  EXPECT_EQ(Doc(ok_name).rc, 0);
}

TEST(StatsJson, EveryPrefixAndRandomDamageIsSafe) {
  std::string s = kDoc;
  for (size_t n = 0; n < s.size(); n++) // only the whole document is valid
    EXPECT_EQ(Doc(s.substr(0, n)).rc, -1) << n;
  std::mt19937 rng(11);
  for (int i = 0; i < 5000; i++) {
    std::string t = s;
    for (int k = rng() % 4 + 1; k > 0; k--)
      t[rng() % t.size()] = (char)(rng() & 0xff);
    Doc d(t); // must not crash or leak (ASan runs this)
  }
}

// A snapshot for the delta tests.
std::string snap(int pid, int uptime, uint64_t calls, uint64_t errors,
                 uint64_t total, const std::string &hist) {
  return R"({"format":1,"pid":)" + std::to_string(pid) + R"(,"uptime_ms":)" +
         std::to_string(uptime) + R"(,"methods":[{"name":"get","calls":)" +
         std::to_string(calls) + R"(,"errors":)" + std::to_string(errors) +
         R"(,"bytes_in":)" + std::to_string(calls * 10) + R"(,"bytes_out":)" +
         std::to_string(calls * 20) + R"(,"total_ns":)" +
         std::to_string(total) + R"(,"max_ns":100000,"histogram":)" + hist +
         R"(},{"name":"idle","calls":0,"histogram":[]}]})";
}

TEST(StatsDelta, CountsAndPercentilesOfTheInterval) {
  Doc a(snap(7, 1000, 100, 1, 5000, "[[40,90],[288,10]]"));
  // 100 new calls: 10 more at 40 ns, 90 at 1024 ns (a new bucket)
  Doc b(snap(7, 2000, 200, 3, 105000, "[[40,100],[288,10],[1024,90]]"));
  ASSERT_EQ(a.rc, 0);
  ASSERT_EQ(b.rc, 0);
  mon_method_delta out[2];
  ASSERT_EQ(mon_stats_delta(&a.d, &b.d, out), 1); // "idle" had no calls
  EXPECT_STREQ(out[0].name, "get");
  EXPECT_EQ(out[0].calls, 100u);
  EXPECT_EQ(out[0].errors, 2u);
  EXPECT_EQ(out[0].bytes_in, 1000u);
  EXPECT_EQ(out[0].bytes_out, 2000u);
  EXPECT_EQ(out[0].total_ns, 100000u);
  ASSERT_TRUE(out[0].pct_valid);
  // the interval's calls: 10 at 40, 90 at 1024: p50 and p99 in the 1024
  // bucket (width 128: middle 1088); the whole-life p50 would be 40
  EXPECT_EQ(out[0].p50_ns, 1088u);
  EXPECT_EQ(out[0].p99_ns, 1088u);
}

TEST(StatsDelta, BucketBoundsThatMovedByRoundingStillMatch) {
  // libsvc re-measures its clock rate on every read: 288 may become 289
  Doc a(snap(7, 1000, 100, 0, 0, "[[40,50],[288,50]]"));
  Doc b(snap(7, 2000, 110, 0, 0, "[[41,50],[289,60]]"));
  mon_method_delta out[2];
  ASSERT_EQ(mon_stats_delta(&a.d, &b.d, out), 1);
  ASSERT_TRUE(out[0].pct_valid);
  EXPECT_GE(out[0].p50_ns, 289u); // all 10 new calls are in the 288 bucket
  EXPECT_LT(out[0].p50_ns, 289u + 32u);
}

TEST(StatsDelta, ResetsInsteadOfWrongRows) {
  Doc a(snap(7, 1000, 100, 1, 5000, "[[40,100]]"));
  mon_method_delta out[2];
  Doc other_pid(snap(8, 2000, 200, 1, 9000, "[[40,200]]"));
  EXPECT_EQ(mon_stats_delta(&a.d, &other_pid.d, out), -1);
  Doc younger(snap(7, 500, 200, 1, 9000, "[[40,200]]"));
  EXPECT_EQ(mon_stats_delta(&a.d, &younger.d, out), -1);
  Doc fewer(snap(7, 2000, 50, 1, 9000, "[[40,50]]"));
  EXPECT_EQ(mon_stats_delta(&a.d, &fewer.d, out), -1);
  Doc fewer_err(snap(7, 2000, 200, 0, 9000, "[[40,200]]"));
  EXPECT_EQ(mon_stats_delta(&a.d, &fewer_err.d, out), -1);
  Doc same(snap(7, 2000, 100, 1, 5000, "[[40,100]]"));
  EXPECT_EQ(mon_stats_delta(&a.d, &same.d, out), 0); // no calls: no rows
}

TEST(StatsDelta, NewMethodCountsFromZeroAndMissingHistogramHasNoPercentiles) {
  Doc a(R"({"format":1,"pid":1,"uptime_ms":1,"methods":[]})");
  Doc b(
      R"({"format":1,"pid":1,"uptime_ms":2,"methods":[{"name":"n","calls":4,"total_ns":40}]})");
  mon_method_delta out[1];
  ASSERT_EQ(mon_stats_delta(&a.d, &b.d, out), 1);
  EXPECT_EQ(out[0].calls, 4u);
  EXPECT_EQ(out[0].total_ns, 40u);
  EXPECT_FALSE(out[0].pct_valid);
}

// Found by fuzz_stats_json: a histogram may repeat a lower bound (it is
// non-decreasing; two tick buckets can round to one ns value), and the
// delta gave two rows with the same lo_ns. Its consumers (quantiles, the
// Prometheus buckets) take one row per bound: equal bounds are summed.
TEST(StatsDelta, EqualLowerBoundsBecomeOneRow) {
  Doc a(
      R"({"format":1,"pid":1,"uptime_ms":1,"methods":[{"name":"m","calls":2,"histogram":[[41,2]]}]})");
  Doc b(
      R"({"format":1,"pid":1,"uptime_ms":2,"methods":[{"name":"m","calls":112,"histogram":[[41,2],[1024,10],[1024,90],[2048,10]]}]})");
  mon_hist_pair h[4];
  size_t n = mon_stats_hist_delta(&a.d.methods[0], &b.d.methods[0], h);
  ASSERT_EQ(n, 2u);
  EXPECT_EQ(h[0].lo_ns, 1024u);
  EXPECT_EQ(h[0].count, 100u);
  EXPECT_EQ(h[1].lo_ns, 2048u);
  EXPECT_EQ(h[1].count, 10u);
}

TEST(HistQuantile, AgainstASortedReference) {
  // Values placed on libsvc's bucket grid; the quantile must be within
  // the bucket of the exact answer (<= 12.5% above its lower bound).
  std::mt19937 rng(3);
  auto lo_of = [](uint64_t v) -> uint64_t {
    if (v < 8)
      return v;
    int e = 63 - __builtin_clzll(v);
    uint64_t w = 1ull << (e - 3);
    return v / w * w;
  };
  for (int round = 0; round < 50; round++) {
    std::vector<uint64_t> vals;
    std::vector<mon_hist_pair> h;
    int n = 1 + rng() % 500;
    for (int i = 0; i < n; i++)
      vals.push_back(1 + rng() % (1u << (rng() % 20 + 1)));
    std::sort(vals.begin(), vals.end());
    for (uint64_t v : vals) {
      uint64_t lo = lo_of(v);
      if (!h.empty() && h.back().lo_ns == lo)
        h.back().count++;
      else
        h.push_back({lo, 1});
    }
    for (double q : {0.5, 0.99}) {
      size_t rank = (size_t)std::ceil(q * n);
      uint64_t exact = vals[rank - 1];
      uint64_t got = mon_hist_quantile(h.data(), h.size(), q, 0);
      EXPECT_GE(got, lo_of(exact)) << q << " " << n;
      EXPECT_LE(got, lo_of(exact) + lo_of(exact) / 8 + 1) << q << " " << n;
    }
  }
  EXPECT_EQ(mon_hist_quantile(nullptr, 0, 0.5, 0), 0u);
  mon_hist_pair one = {1000, 1};
  EXPECT_EQ(mon_hist_quantile(&one, 1, 0.99, 1010), 1010u); // capped at max
}

} // namespace

// stats_test.cc — stats.c on its own: histogram buckets and percentiles
// against a sorted reference on random data (fixed seed), counting from
// many threads and from a forked child into the shared mapping, and the
// svc.stats JSON encoding.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <random>
#include <string>
#include <thread>
#include <vector>

extern "C" {
#include "stats.h"
}

namespace {

TEST(Hist, BucketsAreContiguousAndNarrow) {
  EXPECT_EQ(0, svc__hist_bucket(0));
  EXPECT_EQ(7, svc__hist_bucket(7));
  for (int b = 0; b < SVC__HIST_BUCKETS - 1; b++) {
    uint64_t lo = svc__hist_lo(b), hi = svc__hist_lo(b + 1);
    ASSERT_LT(lo, hi) << b;
    EXPECT_EQ(b, svc__hist_bucket(lo)) << lo;
    EXPECT_EQ(b, svc__hist_bucket(hi - 1)) << hi - 1;
    if (lo >= 8) {
      EXPECT_LE((hi - lo) * 8, lo) << "bucket " << b << " too wide";
    }
  }
  // 100 ns .. 10 s are inside the range; beyond it all lands in the last.
  EXPECT_LT(svc__hist_bucket(10000000000ull), SVC__HIST_BUCKETS - 1);
  EXPECT_EQ(SVC__HIST_BUCKETS - 1, svc__hist_bucket(UINT64_MAX));
}

TEST(Hist, EmptyHistogramIsZero) {
  std::vector<uint64_t> h(SVC__HIST_BUCKETS);
  EXPECT_EQ(0u, svc__hist_quantile(h.data(), 0.5, 0));
}

// Percentiles within 1/16 (half a bucket) of the exact order statistic.
void CheckQuantiles(const std::vector<uint64_t> &values) {
  std::vector<uint64_t> h(SVC__HIST_BUCKETS);
  uint64_t mx = 0;
  for (uint64_t v : values) {
    h[svc__hist_bucket(v)]++;
    mx = std::max(mx, v);
  }
  std::vector<uint64_t> sorted = values;
  std::sort(sorted.begin(), sorted.end());
  for (double q : {0.01, 0.1, 0.5, 0.9, 0.99, 0.999, 1.0}) {
    size_t rank = (size_t)std::ceil(q * (double)sorted.size());
    uint64_t want = sorted[rank ? rank - 1 : 0];
    uint64_t got = svc__hist_quantile(h.data(), q, mx);
    double err = std::fabs((double)got - (double)want);
    EXPECT_LE(err, (double)want / 16 + 1)
        << "q=" << q << " want " << want << " got " << got;
  }
  EXPECT_EQ(mx, svc__hist_quantile(h.data(), 1.0, mx));
}

TEST(Hist, QuantilesMatchSortedReferenceLogUniform) {
  std::mt19937_64 rng(12345);
  // Log-uniform over 100 ns .. 10 s: every decade of the range.
  std::uniform_real_distribution<double> e(2.0, 10.0);
  std::vector<uint64_t> v(200000);
  for (auto &x : v)
    x = (uint64_t)std::pow(10.0, e(rng));
  CheckQuantiles(v);
}

TEST(Hist, QuantilesMatchSortedReferenceLatencyLike) {
  std::mt19937_64 rng(777);
  // A fast mode near 1 us, a slow tail near 2 ms: what p99/p999 are for.
  std::lognormal_distribution<double> fast(std::log(1000.0), 0.3);
  std::lognormal_distribution<double> slow(std::log(2e6), 0.5);
  std::uniform_real_distribution<double> pick(0, 1);
  std::vector<uint64_t> v(100000);
  for (auto &x : v)
    x = (uint64_t)(pick(rng) < 0.995 ? fast(rng) : slow(rng));
  CheckQuantiles(v);
  CheckQuantiles(std::vector<uint64_t>(1000, 4242)); // all equal
  CheckQuantiles({5});                               // one value
}

TEST(Stats, RecordAndReadAcrossThreads) {
  svc__stats *st = nullptr;
  ASSERT_EQ(0, svc__stats_new(3, 4, &st));
  // More connections (threads here) than slots: the rest share the
  // overflow slot (0), whose counters take atomic adds.
  std::vector<std::thread> ts;
  for (int t = 0; t < 8; t++)
    ts.emplace_back([st, t] {
      int slot = svc__stats_claim(st);
      for (int i = 0; i < 10000; i++)
        svc__stats_record(st, slot, t % 3, 1000 + (uint64_t)t, 10, 20,
                          i % 100 == 0);
    });
  for (auto &t : ts)
    t.join();
  uint64_t calls = 0;
  for (int m = 0; m < 3; m++) {
    svc__method_stats ms;
    svc__stats_read(st, m, &ms);
    calls += ms.calls;
    EXPECT_EQ(ms.calls * 10, ms.bytes_in);
    EXPECT_EQ(ms.calls * 20, ms.bytes_out);
    EXPECT_EQ(ms.calls / 100, ms.errors);
    uint64_t n = 0;
    for (uint64_t c : ms.hist)
      n += c;
    EXPECT_EQ(ms.calls, n);
  }
  EXPECT_EQ(80000u, calls);
  svc__method_stats ms;
  svc__stats_read(st, 1, &ms);
  EXPECT_EQ(1007u, ms.max);                // threads 1, 4, 7
  svc__stats_record(st, 1, 3, 1, 1, 1, 0); // out of range: ignored
  svc__stats_record(st, 1, -1, 1, 1, 1, 0);
  svc__stats_free(st);
}

TEST(Stats, ChildProcessCountsAreShared) {
  svc__stats *st = nullptr;
  ASSERT_EQ(0, svc__stats_new(1, 8, &st));
  int mine = svc__stats_claim(st);
  svc__stats_record(st, mine, 0, 500, 1, 1, 0);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // A worker process claims slots of its own in the shared mapping.
    int slot = svc__stats_claim(st);
    if (slot == mine)
      _exit(3);
    for (int i = 0; i < 1000; i++)
      svc__stats_record(st, slot, 0, 700, 1, 1, 0);
    _exit(0);
  }
  for (int i = 0; i < 1000; i++)
    svc__stats_record(st, mine, 0, 500, 1, 1, 0);
  int status = 0;
  ASSERT_EQ(pid, waitpid(pid, &status, 0));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  svc__method_stats ms;
  svc__stats_read(st, 0, &ms);
  EXPECT_EQ(2001u, ms.calls);
  EXPECT_EQ(700u, ms.max);
  svc__stats_count_unknown(st);
  EXPECT_EQ(1u, svc__stats_unknown(st));
  svc__stats_free(st);
}

TEST(Stats, ReleasedSlotsAreReusedAndKeepTheirCounts) {
  svc__stats *st = nullptr;
  ASSERT_EQ(0, svc__stats_new(1, 2, &st));
  for (int round = 0; round < 20; round++) { // a connection each round
    int slot = svc__stats_claim(st);
    EXPECT_EQ(1, slot) << "the released slot comes back first";
    svc__stats_record(st, slot, 0, 100, 0, 0, 0);
    svc__stats_release(st, slot);
  }
  svc__method_stats ms;
  svc__stats_read(st, 0, &ms);
  EXPECT_EQ(20u, ms.calls);
  svc__stats_free(st);
}

TEST(Stats, NewRejectsBadArguments) {
  svc__stats *st = nullptr;
  EXPECT_NE(0, svc__stats_new(0, 4, &st));
  EXPECT_NE(0, svc__stats_new(1, 0, &st));
  EXPECT_NE(0, svc__stats_new(1, 4, nullptr));
}

TEST(StatsJson, EncodesFormat1) {
  svc__method_stats ms[2] = {};
  ms[0].calls = 3;
  ms[0].errors = 1;
  ms[0].bytes_in = 30;
  ms[0].bytes_out = 60;
  ms[0].total = 600;
  ms[0].max = 300;
  ms[0].hist[svc__hist_bucket(100)] = 1;
  ms[0].hist[svc__hist_bucket(200)] = 1;
  ms[0].hist[svc__hist_bucket(300)] = 1;
  const char *names[2] = {"echo \"q\"\\\n", "svc.ping"};
  svc__stats_doc doc = {"svc-x", 42, 3, 1234, 7};
  char *out = nullptr;
  size_t len = 0;
  ASSERT_EQ(0, svc__stats_json(&doc, names, ms, 2, 0, &out, &len));
  std::string s(out, len);
  free(out);
  EXPECT_EQ("{\"format\":1,\"name\":\"svc-x\",\"pid\":42,\"workers\":3,"
            "\"uptime_ms\":1234,\"unknown_method_calls\":7,\"methods\":["
            "{\"name\":\"echo \\\"q\\\"\\\\\\u000a\",\"calls\":3,\"errors\":1,"
            "\"bytes_in\":30,\"bytes_out\":60,\"total_ns\":600,\"p50_ns\":199,"
            "\"p99_ns\":300,\"p999_ns\":300,\"max_ns\":300},"
            "{\"name\":\"svc.ping\",\"calls\":0,\"errors\":0,\"bytes_in\":0,"
            "\"bytes_out\":0,\"total_ns\":0,\"p50_ns\":0,\"p99_ns\":0,"
            "\"p999_ns\":0,\"max_ns\":0}]}",
            s);
}

TEST(StatsJson, HistogramListsNonEmptyBuckets) {
  svc__method_stats ms = {};
  ms.calls = 2;
  ms.max = 5000;
  ms.hist[svc__hist_bucket(3)] = 1;
  ms.hist[svc__hist_bucket(5000)] = 1;
  const char *names[1] = {"m"};
  svc__stats_doc doc = {"n", 1, 1, 0, 0};
  char *out = nullptr;
  size_t len = 0;
  ASSERT_EQ(0, svc__stats_json(&doc, names, &ms, 1, 1, &out, &len));
  std::string s(out, len);
  free(out);
  std::string lo = std::to_string(svc__hist_lo(svc__hist_bucket(5000)));
  EXPECT_NE(std::string::npos, s.find("\"histogram\":[[3,1],[" + lo + ",1]]}"))
      << s;
}

} // namespace

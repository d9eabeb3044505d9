// metrics_test.cc — the Prometheus totals: bucket bounds against libsvc's
// own histogram, label values of odd method names, accumulation, the run
// logic that keeps counters monotonic across restarts and worker scaling
// (pure, then through the poller against an in-process libsvc server), a
// reload that keeps baselines by name, and the exposition text (checked by
// promtool when it is installed).
#include <gtest/gtest.h>

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <thread>

#include <svc.h>

#include "config.h"
#include "metrics.h"
#include "stats_json.h"
#include "stats_poll.h"

// libsvc's histogram (libsvc/src/stats.c), linked from svc_static.
extern "C" int svc__hist_bucket(uint64_t ns);
extern "C" uint64_t svc__hist_lo(int b);

namespace {

std::string Render(mon_metrics *m, std::vector<const char *> services) {
  mon_buf b = {};
  mon_metrics_render(m, services.data(), services.size(), &b);
  std::string s = b.p ? std::string(b.p, b.len) : "";
  mon_buf_fini(&b);
  return s;
}

std::string Label(const std::string &name) {
  char out[MON_METRICS_LABEL_MAX + 1];
  size_t n = mon_metrics_label(name.data(), name.size(), out);
  EXPECT_EQ(n, strlen(out));
  return out;
}

std::string Escaped(const char *s) {
  mon_buf b = {};
  mon_metrics_escape(&b, s);
  std::string r = b.p ? std::string(b.p, b.len) : "";
  mon_buf_fini(&b);
  return r;
}

mon_method_delta Delta(const char *name, uint64_t calls, uint64_t errors,
                       uint64_t total_ns) {
  mon_method_delta d = {};
  d.name = name;
  d.calls = calls;
  d.errors = errors;
  d.bytes_in = calls * 10;
  d.bytes_out = calls * 20;
  d.total_ns = total_ns;
  return d;
}

// The value of the sample line that starts with prefix (a series), or -1.
double Sample(const std::string &text, const std::string &prefix) {
  size_t at = 0;
  while ((at = text.find(prefix, at)) != std::string::npos) {
    if (at == 0 || text[at - 1] == '\n')
      return std::stod(text.substr(at + prefix.size()));
    at++;
  }
  return -1;
}

// ---- buckets ----

TEST(MetricsBuckets, BoundsArePowersOfTwoThatStartLibsvcBuckets) {
  EXPECT_EQ(MON_METRICS_NBOUNDS, 27);
  EXPECT_EQ(mon_metrics_bound_ns(0), 256u);          // 0.26 us
  EXPECT_EQ(mon_metrics_bound_ns(26), 17179869184u); // 17.2 s
  for (size_t k = 0; k < MON_METRICS_NBOUNDS; k++) {
    uint64_t le = mon_metrics_bound_ns(k);
    int b = svc__hist_bucket(le);
    EXPECT_EQ(svc__hist_lo(b), le) << "bound " << le << " inside bucket " << b;
  }
}

TEST(MetricsBuckets, EveryLibsvcBucketNestsInOne) {
  // with the server's clock in ns, a libsvc bucket [lo, next lo) lies
  // wholly at or below the bound it is counted under, and above the one
  // before
  for (int b = 0; b + 1 < 280; b++) {
    uint64_t lo = svc__hist_lo(b), last = svc__hist_lo(b + 1) - 1;
    size_t k = mon_metrics_bucket(lo);
    if (k < MON_METRICS_NBOUNDS) {
      EXPECT_LE(last, mon_metrics_bound_ns(k)) << "bucket " << b;
    }
    if (k > 0 && k <= MON_METRICS_NBOUNDS) {
      EXPECT_GE(lo, mon_metrics_bound_ns(k - 1)) << "bucket " << b;
    }
  }
  // so a value lands under the smallest bound it does not exceed, but for
  // a value of exactly a power of two, which starts the next bucket
  std::mt19937_64 rng(15);
  for (int i = 0; i < 100000; i++) {
    uint64_t v = rng() >> (rng() % 64);
    size_t want = 0;
    while (want < MON_METRICS_NBOUNDS && v > mon_metrics_bound_ns(want))
      want++;
    bool power = v >= 256 && (v & (v - 1)) == 0;
    if (power && want < MON_METRICS_NBOUNDS)
      want++;
    ASSERT_EQ(mon_metrics_bucket(svc__hist_lo(svc__hist_bucket(v))), want) << v;
  }
}

TEST(MetricsBuckets, TickBoundsTurnedIntoNsArePlacedByTheirMiddle) {
  // a TSC server: ns = ticks * 0.37, so libsvc's bounds are not ours; a
  // bucket goes under the first bound at or above its middle
  double k = 0.37;
  for (int b = 8; b + 1 < 280; b++) {
    uint64_t lo = (uint64_t)(svc__hist_lo(b) * k + 0.5);
    uint64_t hi = (uint64_t)(svc__hist_lo(b + 1) * k + 0.5);
    size_t got = mon_metrics_bucket(lo);
    uint64_t mid = lo + (hi - lo) / 2;
    size_t want = 0;
    while (want < MON_METRICS_NBOUNDS && mid > mon_metrics_bound_ns(want))
      want++;
    // our estimate of the width may differ from the real one by a factor
    // below 2: then the choice is the neighbouring bucket at most
    EXPECT_LE(got > want ? got - want : want - got, 1u) << b;
  }
}

// ---- labels ----

// Strict UTF-8 with no control byte but newline: what a scraper accepts.
bool ValidUtf8(const std::string &s) {
  for (size_t i = 0; i < s.size();) {
    unsigned char c = (unsigned char)s[i];
    size_t len = c < 0x80                 ? 1
                 : c >= 0xc2 && c <= 0xdf ? 2
                 : c >= 0xe0 && c <= 0xef ? 3
                 : c >= 0xf0 && c <= 0xf4 ? 4
                                          : 0;
    if (!len || i + len > s.size() || (c < 0x20 && c != '\n') || c == 0x7f)
      return false;
    uint32_t cp = len == 1 ? c : c & (0x7f >> len);
    for (size_t k = 1; k < len; k++) {
      unsigned char t = (unsigned char)s[i + k];
      if ((t & 0xc0) != 0x80)
        return false;
      cp = cp << 6 | (t & 0x3f);
    }
    static const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
      return false;
    i += len;
  }
  return true;
}

TEST(MetricsLabel, KeepsUtf8AndSpellsOtherBytes) {
  EXPECT_EQ(Label("get"), "get");
  EXPECT_EQ(Label("h\xc3\xa9llo \xe6\x97\xa5 \xf0\x9f\x98\x80"),
            "h\xc3\xa9llo \xe6\x97\xa5 \xf0\x9f\x98\x80");
  EXPECT_EQ(Label("a\nb"), "a\nb"); // escaped when written, not here
  EXPECT_EQ(Label("a\x01z\x7f"), "a\\x01z\\x7f");
  EXPECT_EQ(Label("\xff"), "\\xff");
  EXPECT_EQ(Label("\xc0\x80"), "\\xc0\\x80");                   // overlong NUL
  EXPECT_EQ(Label("\xed\xa0\x80"), "\\xed\\xa0\\x80");          // a surrogate
  EXPECT_EQ(Label("\xf4\x90\x80\x80"), "\\xf4\\x90\\x80\\x80"); // > U+10FFFF
  EXPECT_EQ(Label("x\xe6\x97"), "x\\xe6\\x97");                 // cut short
  EXPECT_EQ(Label(std::string("a\0b", 3)), "a\\x00b");
  // the longest name, all invalid: four bytes each, and it fits
  std::string worst(MON_STATS_NAME_MAX, '\x80');
  EXPECT_EQ(Label(worst).size(), (size_t)MON_METRICS_LABEL_MAX);
}

TEST(MetricsLabel, EscapesWhatTheTextFormatNeeds) {
  EXPECT_EQ(Escaped("plain"), "plain");
  EXPECT_EQ(Escaped("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
  EXPECT_EQ(Escaped(""), "");
}

TEST(MetricsLabel, RandomNamesGiveValidUtf8) {
  std::mt19937 rng(7);
  for (int i = 0; i < 20000; i++) {
    std::string n(1 + rng() % MON_STATS_NAME_MAX, ' ');
    for (char &c : n)
      c = (char)(rng() % 4 ? rng() & 0xff : "\xc3\xa9\xe6\x97\xa5"[rng() % 5]);
    std::string l = Label(n);
    ASSERT_LE(l.size(), (size_t)MON_METRICS_LABEL_MAX);
    ASSERT_TRUE(ValidUtf8(l)) << i;
    if (l.size() <= MON_STATS_NAME_MAX) { // a label of a label is itself
      ASSERT_EQ(Label(l), l);
    }
  }
}

// ---- accumulation ----

TEST(Metrics, AddsIntervalsAndFoldsHistograms) {
  mon_metrics *m = mon_metrics_new();
  ASSERT_NE(m, nullptr);
  mon_hist_pair h1[] = {{40, 90}, {288, 10}};      // <= 256 ns and <= 512 ns
  mon_hist_pair h2[] = {{1024, 5}, {1u << 30, 1}}; // <= 2048 ns, <= 2^31 ns
  mon_method_delta d1 = Delta("get", 100, 1, 9000);
  mon_method_delta d2 = Delta("get", 6, 0, (1u << 30) + 5000);
  ASSERT_EQ(mon_metrics_add(m, "kv", &d1, h1, 2), 0);
  ASSERT_EQ(mon_metrics_add(m, "kv", &d2, h2, 2), 0);
  mon_method_delta d3 = Delta("put", 3, 3, 300); // no histogram this time
  ASSERT_EQ(mon_metrics_add(m, "kv", &d3, nullptr, 0), 0);
  mon_metrics_series *s = nullptr;
  ASSERT_EQ(mon_metrics_get(m, "kv", &s), 2u);
  EXPECT_STREQ(s[0].method, "get"); // sorted
  EXPECT_EQ(s[0].calls, 106u);
  EXPECT_EQ(s[0].errors, 1u);
  EXPECT_EQ(s[0].bytes_in, 1060u);
  EXPECT_EQ(s[0].bytes_out, 2120u);
  EXPECT_EQ(s[0].sum_ns, 9000u + (1u << 30) + 5000u);
  EXPECT_EQ(s[0].buckets[0], 90u);
  EXPECT_EQ(s[0].buckets[1], 10u);
  EXPECT_EQ(s[0].buckets[3], 5u);
  EXPECT_EQ(s[0].buckets[31 - MON_METRICS_LE_MIN_LOG2], 1u);
  EXPECT_STREQ(s[1].method, "put");
  EXPECT_EQ(s[1].calls, 3u);
  EXPECT_EQ(s[1].sum_ns, 0u); // time only with the histogram it belongs to
  mon_metrics_series_free(s, 2);
  EXPECT_EQ(mon_metrics_get(m, "nosuch", &s), 0u);
  EXPECT_EQ(s, nullptr);
  mon_metrics_free(m);
}

TEST(Metrics, NamesThatMeetInOneLabelAreAddedNotDuplicated) {
  mon_metrics *m = mon_metrics_new();
  mon_method_delta a = Delta("\xff", 1, 0, 0), b = Delta("\\xff", 2, 0, 0);
  ASSERT_EQ(mon_metrics_add(m, "s", &a, nullptr, 0), 0);
  ASSERT_EQ(mon_metrics_add(m, "s", &b, nullptr, 0), 0);
  mon_metrics_series *s = nullptr;
  ASSERT_EQ(mon_metrics_get(m, "s", &s), 1u);
  EXPECT_EQ(s[0].calls, 3u);
  mon_metrics_series_free(s, 1);
  mon_metrics_free(m);
}

TEST(Metrics, IsBounded) {
  mon_metrics *m = mon_metrics_new();
  char name[32];
  for (int i = 0; i < MON_METRICS_METHODS_MAX; i++) {
    snprintf(name, sizeof name, "m%d", i);
    mon_method_delta d = Delta(name, 1, 0, 0);
    ASSERT_EQ(mon_metrics_add(m, "big", &d, nullptr, 0), 0);
  }
  mon_method_delta d = Delta("one-too-many", 1, 0, 0);
  EXPECT_EQ(mon_metrics_add(m, "big", &d, nullptr, 0), -1);
  mon_method_delta old = Delta("m5", 1, 0, 0); // known ones still count
  EXPECT_EQ(mon_metrics_add(m, "big", &old, nullptr, 0), 0);
  for (int i = 1; i < MON_METRICS_SERVICES_MAX; i++) {
    snprintf(name, sizeof name, "svc%d", i);
    ASSERT_EQ(mon_metrics_add(m, name, &d, nullptr, 0), 0);
  }
  EXPECT_EQ(mon_metrics_add(m, "svc-too-many", &d, nullptr, 0), -1);
  mon_metrics_free(m);
}

TEST(Metrics, RetainForgetsServicesThatWent) {
  mon_metrics *m = mon_metrics_new();
  mon_method_delta d = Delta("get", 5, 0, 0);
  for (const char *s : {"a", "b", "c"})
    ASSERT_EQ(mon_metrics_add(m, s, &d, nullptr, 0), 0);
  const char *keep[] = {"c", "a", "new"};
  mon_metrics_retain(m, keep, 3);
  mon_metrics_series *s = nullptr;
  EXPECT_EQ(mon_metrics_get(m, "b", &s), 0u);
  ASSERT_EQ(mon_metrics_get(m, "a", &s), 1u);
  EXPECT_EQ(s[0].calls, 5u);
  mon_metrics_series_free(s, 1);
  ASSERT_EQ(mon_metrics_get(m, "c", &s), 1u);
  mon_metrics_series_free(s, 1);
  mon_metrics_free(m);
}

// ---- runs: restarts and scaling, pure ----

struct Doc {
  mon_stats_doc d{};
  explicit Doc(const std::string &s) {
    char e[128];
    EXPECT_EQ(mon_stats_parse(s.data(), s.size(), &d, e, sizeof e), 0) << e;
  }
  ~Doc() { mon_stats_doc_free(&d); }
};

std::string Snap(int pid, int uptime, uint64_t calls, const std::string &hist) {
  return R"({"format":1,"pid":)" + std::to_string(pid) + R"(,"uptime_ms":)" +
         std::to_string(uptime) + R"(,"methods":[{"name":"get","calls":)" +
         std::to_string(calls) + R"(,"total_ns":)" +
         std::to_string(calls * 100) + R"(,"histogram":)" + hist + "}]}";
}

TEST(MetricsRuns, AnotherWorkerAnsweringIsTheSameRun) {
  // a worker died, the reconnected client reached its sibling: another
  // pid, the shared counters went on
  Doc a(Snap(101, 5000, 100, "[[40,100]]"));
  Doc b(Snap(102, 6000, 150, "[[40,150]]"));
  EXPECT_TRUE(mon_stats_same_run(&a.d, 10000, &b.d, 10000));
  mon_method_delta out[1];
  ASSERT_EQ(mon_stats_delta_run(&a.d, &b.d, out), 1);
  EXPECT_EQ(out[0].calls, 50u);
  EXPECT_EQ(out[0].index, 0u);
  // the strict delta of the stored rows refuses it, as before
  EXPECT_EQ(mon_stats_delta(&a.d, &b.d, out), -1);
  // a reply read late makes the start look later, by less than the slack
  EXPECT_TRUE(mon_stats_same_run(&a.d, 10000, &b.d,
                                 10000 + MON_STATS_RUN_SLACK_MS - 1));
}

TEST(MetricsRuns, ARestartIsANewRunCountedFromZero) {
  Doc a(Snap(101, 5000, 100, "[[40,100]]"));
  Doc fewer(Snap(201, 300, 40, "[[40,40]]")); // counts went down
  EXPECT_FALSE(mon_stats_same_run(&a.d, 10000, &fewer.d, 15000));
  // more calls already and a longer uptime than the old run had: only
  // the start tells (the old run began at 10 s, this one at 12 s)
  Doc busy(Snap(201, 5500, 400, "[[40,400]]"));
  EXPECT_FALSE(mon_stats_same_run(&a.d, 10000, &busy.d, 12000));
  mon_method_delta out[1];
  ASSERT_EQ(mon_stats_delta_run(nullptr, &busy.d, out), 1);
  EXPECT_EQ(out[0].calls, 400u); // none of the new run's calls lost
  ASSERT_TRUE(out[0].pct_valid);
  mon_hist_pair h[1];
  ASSERT_EQ(mon_stats_hist_delta(nullptr, &busy.d.methods[0], h), 1u);
  EXPECT_EQ(h[0].count, 400u);
  // a younger uptime alone is a new run too
  Doc young(Snap(101, 4000, 100, "[[40,100]]"));
  EXPECT_FALSE(mon_stats_same_run(&a.d, 10000, &young.d, 10000));
  // and the strict delta refuses a count that went down
  EXPECT_EQ(mon_stats_delta_run(&a.d, &fewer.d, out), -1);
}

TEST(MetricsRuns, TimeThatComesBackLowerIsNotARestart) {
  // libsvc re-measures its ticks-to-ns rate on every read: with no new
  // calls, total_ns may shrink (found by the poller test under TSan, where
  // this counted a whole run a second time)
  std::string a = R"({"format":1,"pid":1,"uptime_ms":100,"methods":[)"
                  R"({"name":"get","calls":58,"total_ns":5000}]})";
  std::string b = R"({"format":1,"pid":1,"uptime_ms":120,"methods":[)"
                  R"({"name":"get","calls":58,"total_ns":4990}]})";
  std::string c = R"({"format":1,"pid":1,"uptime_ms":140,"methods":[)"
                  R"({"name":"get","calls":59,"total_ns":4995}]})";
  Doc da(a), db(b), dc(c);
  EXPECT_TRUE(mon_stats_same_run(&da.d, 7, &db.d, 7));
  mon_method_delta out[1];
  EXPECT_EQ(mon_stats_delta_run(&da.d, &db.d, out), 0);
  EXPECT_EQ(mon_stats_delta(&da.d, &db.d, out), 0); // no reset either
  ASSERT_EQ(mon_stats_delta_run(&da.d, &dc.d, out), 1);
  EXPECT_EQ(out[0].calls, 1u);
  EXPECT_EQ(out[0].total_ns, 0u); // never a wrapped difference
}

// Replays a poller's choice over a sequence of (start, snapshot) and sums
// what it would add: the counter Prometheus sees.
TEST(MetricsRuns, CounterIsMonotonicOverRestartsAndScaling) {
  struct Step {
    int run;       // the truth, which the poller cannot see
    int64_t start; // its estimate of the run's start (ms)
    int pid, uptime;
    uint64_t calls;
  } steps[] = {
      {1, 1000, 50, 1000, 10},   {1, 1000, 50, 2000, 30},
      {1, 1003, 51, 3000, 70}, // another worker, reply read 3 ms late
      {2, 9000, 60, 100, 5},   // restart: 5 calls before the first snapshot
      {2, 9000, 60, 1100, 25},   {2, 9000, 61, 2100, 26}, // scaled up
      {3, 20000, 70, 2500, 400}, // restart; more calls, longer uptime
  };
  uint64_t total = 0;
  std::map<int, uint64_t> truth; // each run's calls, counted once
  int64_t run_start = 0;
  Doc *base = nullptr;
  for (const Step &s : steps) {
    Doc *cur = new Doc(Snap(s.pid, s.uptime, s.calls, "[]"));
    bool same =
        base && mon_stats_same_run(&base->d, run_start, &cur->d, s.start);
    mon_method_delta out[1];
    int n = mon_stats_delta_run(same ? &base->d : nullptr, &cur->d, out);
    ASSERT_GE(n, 0);
    if (n == 1)
      total += out[0].calls; // only ever added to: monotonic
    truth[s.run] = s.calls;
    run_start = same && run_start < s.start ? run_start : s.start;
    delete base;
    base = cur;
  }
  delete base;
  EXPECT_EQ(total, truth[1] + truth[2] + truth[3]);
  EXPECT_EQ(total, 496u);
}

// ---- the poller against a real libsvc server in this process ----

int echo_fn(void *, const void *req, size_t len, svc_reply *r) {
  return svc_reply_set(r, req, len);
}
int fail_fn(void *, const void *, size_t, svc_reply *) { return 7; }

struct Server {
  svc_server *s = nullptr;
  explicit Server(const std::string &name) {
    EXPECT_EQ(svc_server_new(name.c_str(), &s), 0);
    EXPECT_EQ(svc_server_method(s, "echo", echo_fn, nullptr), 0);
    EXPECT_EQ(svc_server_method(s, "fail\n\"odd\\", fail_fn, nullptr), 0);
    EXPECT_EQ(svc_server_listen(s, ("shm://" + name).c_str()), 0);
    EXPECT_EQ(svc_server_start(s), 0);
  }
  ~Server() {
    svc_server_stop(s);
    svc_server_free(s);
  }
  static void Calls(const std::string &name, const char *method, int n) {
    svc_client *c = nullptr;
    ASSERT_EQ(svc_client_open(("shm://" + name).c_str(), &c), 0);
    for (int i = 0; i < n; i++) {
      const void *resp;
      size_t len;
      svc_call(c, method, "hello", 5, &resp, &len);
    }
    svc_client_close(c);
  }
};

struct Cfg {
  mon_config c{};
  explicit Cfg(const std::vector<std::string> &names) {
    std::string ini;
    for (const std::string &n : names)
      ini += "[service." + n + "]\ncommand = /bin/true\n";
    char err[256];
    EXPECT_EQ(mon_config_parse(ini.data(), ini.size(), "m.ini", false, &c, err,
                               sizeof err),
              0)
        << err;
  }
  ~Cfg() { mon_config_fini(&c); }
};

uint64_t Calls(mon_metrics *m, const std::string &service,
               const char *method = "echo") {
  mon_metrics_series *s = nullptr;
  size_t n = mon_metrics_get(m, service.c_str(), &s);
  uint64_t calls = 0;
  for (size_t i = 0; i < n; i++)
    if (strcmp(s[i].method, method) == 0)
      calls = s[i].calls;
  mon_metrics_series_free(s, n);
  return calls;
}

// Asks for rounds (pid per service) until pred holds or 5 s pass.
bool Poll(mon_stats_poller *p, const std::vector<int> &pids,
          const std::function<bool()> &pred) {
  for (int i = 0; i < 250; i++) {
    mon_stats_poller_request(p, pids.data(), pids.size());
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (pred())
      return true;
  }
  return false;
}

TEST(MetricsPoller, RestartsLoseNoCallsAndCountNothingTwice) {
  std::string name = "mt-" + std::to_string(getpid());
  Cfg cfg({name});
  mon_metrics *m = mon_metrics_new();
  mon_stats_poller *p = mon_stats_poller_new(&cfg.c, 1000, m);
  ASSERT_NE(p, nullptr);
  {
    Server srv(name);
    Server::Calls(name, "echo", 30); // before the first snapshot
    ASSERT_TRUE(Poll(p, {1000}, [&] { return Calls(m, name) == 30; }))
        << Calls(m, name);
    Server::Calls(name, "echo", 12);
    Server::Calls(name, "fail\n\"odd\\", 2);
    ASSERT_TRUE(Poll(p, {1000}, [&] { return Calls(m, name) == 42; }));
  }
  // the old run is gone; the new one is 1.1 s younger than it, and its
  // calls before its first snapshot count (from zero), once
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  {
    Server srv(name);
    Server::Calls(name, "echo", 50);
    ASSERT_TRUE(Poll(p, {1001}, [&] { return Calls(m, name) == 92; }))
        << Calls(m, name);
    Server::Calls(name, "echo", 8);
    ASSERT_TRUE(Poll(p, {1001}, [&] { return Calls(m, name) == 100; }));
    // rounds without calls add nothing
    for (int i = 0; i < 10; i++) {
      int pid = 1001;
      mon_stats_poller_request(p, &pid, 1);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    EXPECT_EQ(Calls(m, name), 100u);
  }
  EXPECT_EQ(Calls(m, name, "fail\n\"odd\\"), 2u);
  mon_metrics_series *s = nullptr;
  size_t n = mon_metrics_get(m, name.c_str(), &s);
  ASSERT_EQ(n, 2u);
  for (size_t i = 0; i < n; i++) {
    uint64_t in_buckets = 0;
    for (uint64_t c : s[i].buckets)
      in_buckets += c;
    EXPECT_EQ(in_buckets, s[i].calls) << s[i].method;
  }
  mon_metrics_series_free(s, n);
  // the rows for the store: the same calls, none of the built-ins
  mon_method_result *rows = nullptr;
  size_t nr = mon_stats_poller_take(p, &rows);
  uint64_t echo = 0;
  for (size_t i = 0; i < nr; i++) {
    EXPECT_EQ(rows[i].service, 0u);
    EXPECT_NE(strncmp(rows[i].d.name, "svc.", 4), 0);
    if (strcmp(rows[i].d.name, "echo") == 0)
      echo += rows[i].d.calls;
  }
  EXPECT_EQ(echo, 100u);
  free(rows);
  mon_stats_poller_free(p);
  mon_metrics_free(m);
}

TEST(MetricsPoller, ReconfigureKeepsBaselinesByName) {
  std::string a = "mta-" + std::to_string(getpid());
  std::string b = "mtb-" + std::to_string(getpid());
  Cfg before({a, b});
  mon_metrics *m = mon_metrics_new();
  mon_stats_poller *p = mon_stats_poller_new(&before.c, 1000, m);
  ASSERT_NE(p, nullptr);
  Server sa(a), sb(b);
  Server::Calls(a, "echo", 5);
  Server::Calls(b, "echo", 7);
  ASSERT_TRUE(
      Poll(p, {1, 2}, [&] { return Calls(m, a) == 5 && Calls(m, b) == 7; }));
  mon_method_result *rows = nullptr;
  size_t nr = mon_stats_poller_take(p, &rows); // a's and b's so far
  free(rows);
  Server::Calls(b, "echo", 3);
  // b moves to index 0, a goes, c is new: b's baseline stays (its 7 calls
  // are not counted again), a's totals are forgotten
  std::string c = "mtc-" + std::to_string(getpid());
  {
    Cfg after({b, c});
    mon_stats_poller_reconfigure(p, &after.c);
  } // the poller keeps no pointer into the config
  ASSERT_TRUE(Poll(p, {2, 0}, [&] { return Calls(m, b) == 10; }));
  EXPECT_TRUE(Poll(p, {2, 0}, [&] { return Calls(m, a) == 0; }));
  nr = mon_stats_poller_take(p, &rows);
  uint64_t echo = 0;
  for (size_t i = 0; i < nr; i++) {
    EXPECT_EQ(rows[i].service, 0u); // b's new index
    echo += rows[i].d.calls;
  }
  EXPECT_EQ(echo, 3u);
  free(rows);
  mon_stats_poller_free(p);
  mon_metrics_free(m);
}

// ---- exposition ----

TEST(MetricsText, FamiliesHistogramAndEscapes) {
  mon_metrics *m = mon_metrics_new();
  mon_hist_pair h[] = {{40, 3}, {300, 1}, {1u << 20, 2}};
  mon_method_delta d = Delta("q\"\\\n\xff", 6, 2, 1500000001);
  ASSERT_EQ(mon_metrics_add(m, "kv", &d, h, 3), 0);
  mon_method_delta e = Delta("get", 1, 0, 0);
  ASSERT_EQ(mon_metrics_add(m, "other", &e, nullptr, 0), 0);
  std::string t = Render(m, {"kv"}); // "other" is not in the config
  EXPECT_EQ(t.find("other"), std::string::npos);
  for (const char *f :
       {"svc_method_calls_total counter", "svc_method_errors_total counter",
        "svc_method_bytes_in_total counter",
        "svc_method_bytes_out_total counter",
        "svc_method_duration_seconds histogram"}) {
    EXPECT_NE(t.find(std::string("# TYPE ") + f + "\n"), std::string::npos)
        << f;
  }
  const std::string lab = R"({service="kv",method="q\"\\\n\\xff")";
  EXPECT_EQ(Sample(t, "svc_method_calls_total" + lab + "} "), 6);
  EXPECT_EQ(Sample(t, "svc_method_errors_total" + lab + "} "), 2);
  EXPECT_EQ(Sample(t, "svc_method_bytes_in_total" + lab + "} "), 60);
  EXPECT_EQ(Sample(t, "svc_method_bytes_out_total" + lab + "} "), 120);
  std::string bucket = "svc_method_duration_seconds_bucket" + lab + ",le=\"";
  EXPECT_EQ(Sample(t, bucket + "0.000000256\"} "), 3);
  EXPECT_EQ(Sample(t, bucket + "0.000000512\"} "), 4); // cumulative
  EXPECT_EQ(Sample(t, bucket + "0.001048576\"} "), 4);
  EXPECT_EQ(Sample(t, bucket + "0.002097152\"} "), 6);
  EXPECT_EQ(Sample(t, bucket + "17.179869184\"} "), 6);
  EXPECT_EQ(Sample(t, bucket + "+Inf\"} "), 6);
  EXPECT_NE(t.find("svc_method_duration_seconds_sum" + lab + "} 1.500000001\n"),
            std::string::npos)
      << t;
  EXPECT_EQ(Sample(t, "svc_method_duration_seconds_count" + lab + "} "), 6);
  // one bucket line per bound and +Inf
  size_t lines = 0;
  for (size_t at = 0; (at = t.find("_bucket{", at)) != std::string::npos; at++)
    lines++;
  EXPECT_EQ(lines, (size_t)MON_METRICS_NBOUNDS + 1);
  // nothing but HELP and TYPE without a metrics object
  std::string empty = Render(nullptr, {"kv"});
  EXPECT_NE(empty.find("# TYPE svc_method_calls_total counter"),
            std::string::npos);
  EXPECT_EQ(empty.find("{"), std::string::npos);
  mon_metrics_free(m);
}

TEST(MetricsText, PromtoolAcceptsOddNames) {
  if (access("/usr/bin/promtool", X_OK) != 0)
    GTEST_SKIP() << "promtool not installed (apt-get install prometheus)";
  mon_metrics *m = mon_metrics_new();
  std::mt19937 rng(3);
  std::vector<std::string> names = {"get",       "q\"\\\n", "\xff\xfe",
                                    "h\xc3\xa9", "a b\tc",  "\xed\xa0\x80",
                                    "{}=,"};
  for (int i = 0; i < 40; i++) {
    std::string n(1 + rng() % 40, ' ');
    for (char &c : n)
      c = (char)(1 + rng() % 255);
    names.push_back(n);
  }
  mon_hist_pair h[] = {{100, 1}, {5000, 2}};
  for (const std::string &n : names) {
    mon_method_delta d = Delta(n.c_str(), 3, 1, 5100);
    ASSERT_EQ(mon_metrics_add(m, "odd", &d, h, 2), 0);
  }
  std::string t = Render(m, {"odd"});
  std::string path =
      testing::TempDir() + "metrics-" + std::to_string(getpid()) + ".prom";
  FILE *f = fopen(path.c_str(), "w");
  ASSERT_NE(f, nullptr);
  fwrite(t.data(), 1, t.size(), f);
  fclose(f);
  std::string cmd = "/usr/bin/promtool check metrics < " + path + " 2>&1";
  FILE *pp = popen(cmd.c_str(), "r");
  ASSERT_NE(pp, nullptr);
  char buf[4096];
  std::string out;
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, pp)) > 0)
    out.append(buf, n);
  int rc = pclose(pp);
  EXPECT_EQ(rc, 0) << out;
  unlink(path.c_str());
  mon_metrics_free(m);
}

} // namespace

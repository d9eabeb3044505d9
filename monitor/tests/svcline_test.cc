// svcline_test.cc — the parser of libsvc's scaling and worker-replacement
// lines: the shapes workers.c writes, near misses, and arbitrary bytes.
#include <gtest/gtest.h>

#include <random>
#include <string>

#include "svcline.h"

namespace {

struct Parsed {
  int ok;
  std::string kind, detail;
};

Parsed P(const std::string &s) {
  char kind[MON_SVCLINE_KIND_MAX] = "", detail[MON_SVCLINE_DETAIL_MAX] = "";
  int ok = mon_svcline_parse(s.data(), s.size(), kind, detail);
  return {ok, kind, detail};
}

TEST(SvcLine, ScaleUpAndDown) {
  Parsed p = P("svc[kv]: scale up: 2 workers (cpu 93% over 5 s)");
  EXPECT_EQ(p.ok, 1);
  EXPECT_EQ(p.kind, "scale");
  EXPECT_EQ(p.detail, "up: 2 workers (cpu 93% over 5 s)");
  p = P("svc[my.svc-1]: scale down: 1 workers (cpu 3% over 20 s)\r");
  EXPECT_EQ(p.ok, 1);
  EXPECT_EQ(p.detail, "down: 1 workers (cpu 3% over 20 s)");
}

TEST(SvcLine, WorkerReplaced) {
  Parsed p = P("svc[echo]: worker 4242 killed by signal 9; replacing");
  EXPECT_EQ(p.ok, 1);
  EXPECT_EQ(p.kind, "worker");
  EXPECT_EQ(p.detail, "worker 4242 killed by signal 9; replacing");
  p = P("svc[echo]: worker 17 exited with code 3; replacing");
  EXPECT_EQ(p.ok, 1);
  EXPECT_EQ(p.detail, "worker 17 exited with code 3; replacing");
}

TEST(SvcLine, NearMissesAreNotEvents) {
  const char *bad[] = {
      "",
      "svc[",
      "svc[]: scale up: 2 workers (x)",
      "svc[kv] scale up: 2 workers",
      "svc[kv]: scale sideways: 2 workers",
      "svc[kv]: scale up: two workers",
      "svc[kv]: scale up: 2",
      "svc[kv]: scale up: 99999999999 workers",
      "svc[kv]: worker 12: init failed",
      "svc[kv]: worker 12 killed by signal 9",
      "svc[kv]: worker x killed by signal 9; replacing",
      "svc[kv]: worker 12 killed by signal ; replacing",
      "  svc[kv]: scale up: 2 workers (cpu 93% over 5 s)",
      "scale up: 2 workers",
  };
  for (const char *b : bad)
    EXPECT_EQ(P(b).ok, 0) << b;
}

TEST(SvcLine, LongDetailIsTruncatedAndControlBytesReplaced) {
  std::string s = "svc[kv]: scale up: 3 workers (" + std::string(500, 'x');
  s[32] = '\x01';
  Parsed p = P(s);
  EXPECT_EQ(p.ok, 1);
  EXPECT_EQ(p.detail.size(), (size_t)MON_SVCLINE_DETAIL_MAX - 1);
  EXPECT_EQ(p.detail.find('\x01'), std::string::npos);
}

TEST(SvcLine, ReadsOnlyLenBytes) {
  // The length ends the line even without a NUL; bytes past it are ignored.
  std::string s = "svc[kv]: scale up: 2 workers (cpu 93% over 5 s)GARBAGE";
  char kind[MON_SVCLINE_KIND_MAX], detail[MON_SVCLINE_DETAIL_MAX];
  ASSERT_EQ(mon_svcline_parse(s.data(), s.size() - 7, kind, detail), 1);
  EXPECT_STREQ(detail, "up: 2 workers (cpu 93% over 5 s)");
  ASSERT_EQ(mon_svcline_parse(s.data(), 21, kind, detail), 0); // "...up: 2"
}

TEST(SvcLine, RandomBytesNeverCrash) {
  std::mt19937 rng(7);
  std::string base = "svc[kv]: worker 12 killed by signal 9; replacing";
  for (int i = 0; i < 20000; i++) {
    std::string s = base.substr(0, rng() % (base.size() + 1));
    for (int k = rng() % 4; k > 0 && !s.empty(); k--)
      s[rng() % s.size()] = (char)(rng() & 0xff);
    Parsed p = P(s);
    if (p.ok) {
      EXPECT_LT(p.detail.size(), (size_t)MON_SVCLINE_DETAIL_MAX);
    }
  }
}

} // namespace

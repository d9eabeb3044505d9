// workers_unit_test.cc — the worker master's /proc reader and CPU maths,
// against fixture files (a command name full of ')' and spaces included).
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "c_atomic_compat.h" // before workers.h
extern "C" {
#include "workers.h"
}

namespace {

std::string MakeProc(const std::string &stat_line) {
  char tmpl[] = "/tmp/svc-proc-XXXXXX";
  std::string root = mkdtemp(tmpl);
  mkdir((root + "/42").c_str(), 0700);
  FILE *f = fopen((root + "/42/stat").c_str(), "w");
  fputs(stat_line.c_str(), f);
  fclose(f);
  return root;
}

TEST(ProcCpuTicks, ParsesAfterTheLastParenthesis) {
  std::string root =
      MakeProc("42 (evil) name ) (x) S 1 42 42 0 -1 4194560 100 0 0 0 "
               "250 75 0 0 20 0 1 0 1234 1000000 100 18446744073709551615\n");
  EXPECT_EQ(325, svc__proc_cpu_ticks(root.c_str(), 42));
  EXPECT_EQ(-1, svc__proc_cpu_ticks(root.c_str(), 43)) << "no such pid";
  std::string cmd = "rm -rf " + root;
  ASSERT_EQ(0, system(cmd.c_str()));
}

TEST(ProcCpuTicks, TruncatedOrGarbageGivesNoValue) {
  for (const char *line : {"42 (x) S 1 2 3\n", "42 no parenthesis\n",
                           "42 (x) S a b c d e f g h i j k l\n", ""}) {
    std::string root = MakeProc(line);
    EXPECT_EQ(-1, svc__proc_cpu_ticks(root.c_str(), 42)) << line;
    std::string cmd = "rm -rf " + root;
    ASSERT_EQ(0, system(cmd.c_str()));
  }
}

TEST(CpuPct, HundredIsOneCore) {
  EXPECT_DOUBLE_EQ(100.0, svc__cpu_pct(100, 1000000000LL, 100));
  EXPECT_DOUBLE_EQ(50.0, svc__cpu_pct(50, 1000000000LL, 100));
  EXPECT_DOUBLE_EQ(200.0, svc__cpu_pct(100, 500000000LL, 100));
  EXPECT_DOUBLE_EQ(0.0, svc__cpu_pct(10, 0, 100)) << "no time, no value";
}

} // namespace

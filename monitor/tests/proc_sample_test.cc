// proc_sample_test.cc — /proc parsers against fixture files, and the tree
// sampler against a copy of the fixture tree that the test then edits.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "proc_sample.h"

namespace fs = std::filesystem;

namespace {

const std::string kFix = std::string(MON_FIXTURES) + "/proc";

std::string slurp(const std::string &p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string stat_line(int pid, const char *comm, int ppid, int pgrp, int sid,
                      int ut, int st, unsigned long long start, int rss) {
  std::ostringstream o;
  o << pid << " (" << comm << ") S " << ppid << " " << pgrp << " " << sid
    << " 0 -1 4194304 1 0 0 0 " << ut << " " << st << " 0 0 20 0 1 0 " << start
    << " 2990080 " << rss << " 18446744073709551615 0 0 0\n";
  return o.str();
}

TEST(ProcParse, Stat) {
  std::string s = slurp(kFix + "/1236/stat");
  mon_ps_stat st;
  ASSERT_EQ(mon_ps_parse_stat(s.data(), s.size(), &st), 0);
  EXPECT_EQ(st.pid, 1236);
  EXPECT_EQ(st.state, 'R');
  EXPECT_EQ(st.ppid, 1235);
  EXPECT_EQ(st.session, 1236);
  EXPECT_EQ(st.utime, 10u);
  EXPECT_EQ(st.starttime, 9200u);
  EXPECT_EQ(st.rss_pages, 100);
}

TEST(ProcParse, StatRejectsJunk) {
  mon_ps_stat st;
  const char *bad[] = {
      "",
      "x",
      "12 (a) S",
      "12 (a) S 1 2 3",
      "12 no paren",
      "(a) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20"};
  for (const char *b : bad)
    EXPECT_EQ(mon_ps_parse_stat(b, strlen(b), &st), -1) << b;
}

TEST(ProcParse, StatusSmapsIo) {
  std::string s = slurp(kFix + "/1234/status");
  unsigned long long rss = 0, pss = 0, rd = 0, wr = 0;
  long threads = 0;
  ASSERT_EQ(mon_ps_parse_status(s.data(), s.size(), &rss, &threads), 0);
  EXPECT_EQ(rss, 1756u * 1024);
  EXPECT_EQ(threads, 1);
  s = slurp(kFix + "/1234/smaps_rollup");
  ASSERT_EQ(mon_ps_parse_smaps_rollup(s.data(), s.size(), &pss), 0);
  EXPECT_EQ(pss, 280u * 1024);
  s = slurp(kFix + "/1234/io");
  ASSERT_EQ(mon_ps_parse_io(s.data(), s.size(), &rd, &wr), 0);
  EXPECT_EQ(rd, 4096u);
  EXPECT_EQ(wr, 8192u);
  EXPECT_EQ(mon_ps_parse_io("rchar: 1\n", 9, &rd, &wr), -1);
  EXPECT_EQ(mon_ps_parse_status("Name: x\n", 8, &rss, &threads), -1);
}

class Sampler : public ::testing::Test {
protected:
  fs::path root;
  void SetUp() override {
    root = fs::temp_directory_path() /
           ("svcmon-proc-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root);
    fs::copy(kFix, root, fs::copy_options::recursive);
  }
  void TearDown() override { fs::remove_all(root); }
  void put(int pid, const std::string &file, const std::string &text) {
    fs::create_directories(root / std::to_string(pid));
    std::ofstream(root / std::to_string(pid) / file) << text;
  }
};

TEST_F(Sampler, TreeCpuMemoryIoAndPidReuse) {
  mon_sampler *s = mon_sampler_new(root.c_str(), 100, 4096, 1);
  ASSERT_NE(s, nullptr);
  int roots[2] = {1234, 0};
  mon_sample out[2];
  ASSERT_EQ(mon_sampler_tick(s, 10000, roots, 2, out), 0);
  // 1234 (root), 1235 (its worker), 1236 (escaped into its own session, but
  // a descendant); 999 is unrelated.
  EXPECT_TRUE(out[0].valid);
  EXPECT_EQ(out[0].nprocs, 3);
  EXPECT_EQ(out[0].rss_bytes, (1000u + 500 + 100) * 4096);
  EXPECT_FALSE(out[0].cpu_valid); // first sight: no baseline
  EXPECT_TRUE(out[0].pss_valid);
  EXPECT_EQ(out[0].pss_bytes, 280u * 1024);
  EXPECT_FALSE(out[1].valid);

  // one second later: the master used 50 ticks, the worker's pid was reused
  // by a new process (other starttime) that shows 999 ticks, io grew.
  put(1234, "stat",
      stat_line(1234, "svc-master", 1, 1234, 1234, 540, 110, 9000, 1000));
  put(1235, "stat",
      stat_line(1235, "new", 1234, 1234, 1234, 999, 0, 9999, 500));
  put(1234, "io", "read_bytes: 5096\nwrite_bytes: 8192\n");
  ASSERT_EQ(mon_sampler_tick(s, 11000, roots, 2, out), 0);
  EXPECT_TRUE(out[0].cpu_valid);
  EXPECT_NEAR(out[0].cpu_pct, 50.0, 1e-9); // 50 ticks / 100 Hz / 1 s
  EXPECT_EQ(out[0].read_bytes, 1000u);
  EXPECT_EQ(out[0].write_bytes, 0u);
  EXPECT_EQ(out[0].nprocs, 3);

  // the master is gone: its tree is empty
  fs::remove_all(root / "1234");
  ASSERT_EQ(mon_sampler_tick(s, 12000, roots, 2, out), 0);
  EXPECT_EQ(out[0].nprocs, 2); // 1235 still has session 1234
  mon_sampler_free(s);
}

TEST_F(Sampler, MissingRootFails) {
  mon_sampler *s = mon_sampler_new("/nonexistent-proc", 100, 4096, 1);
  int roots[1] = {1};
  mon_sample out[1];
  EXPECT_EQ(mon_sampler_tick(s, 1000, roots, 1, out), -1);
  mon_sampler_free(s);
}

TEST(ProcLive, SelfIsSampled) {
  mon_sampler *s =
      mon_sampler_new("/proc", sysconf(_SC_CLK_TCK), sysconf(_SC_PAGESIZE), 1);
  int roots[1] = {getpid()};
  mon_sample out[1];
  ASSERT_EQ(mon_sampler_tick(s, 1000, roots, 1, out), 0);
  EXPECT_TRUE(out[0].valid);
  EXPECT_GE(out[0].nprocs, 1);
  EXPECT_GT(out[0].rss_bytes, 0u);
  mon_sampler_free(s);
}

} // namespace

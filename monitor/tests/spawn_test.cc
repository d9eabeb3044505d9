// spawn_test.cc — mon_spawn_ex on real processes: the rlimits a service
// gets, a limit the kernel refuses, and the cgroup.procs write before exec.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "config.h"
#include "spawn.h"

namespace {

struct Result {
  int status = -1;
  std::string out, err;
};

std::string read_all(int fd) {
  std::string s;
  char buf[4096];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    s.append(buf, (size_t)n);
  }
  return s;
}

// A service config with only what mon_spawn_ex reads.
struct Cfg {
  std::vector<std::string> words;
  std::vector<char *> argv;
  mon_service_cfg c{};
  explicit Cfg(std::vector<std::string> w) : words(std::move(w)) {
    for (auto &x : words)
      argv.push_back(&x[0]);
    argv.push_back(nullptr);
    c.name = const_cast<char *>("spawntest");
    c.argv = argv.data();
    c.workers_min = c.workers_max = 1;
    c.rlimit_nofile = MON_RLIMIT_UNSET;
    c.rlimit_core = MON_RLIMIT_UNSET;
  }
};

// Spawns c with stdout and stderr on pipes and waits for it. The output
// is small, so reading after the exit cannot fill a pipe.
Result run(const mon_service_cfg &c, int cgroup_fd) {
  Result r;
  int out[2], err[2];
  EXPECT_EQ(0, pipe2(out, O_CLOEXEC));
  EXPECT_EQ(0, pipe2(err, O_CLOEXEC));
  int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
  EXPECT_GE(devnull, 0);
  int pid = mon_spawn_ex(&c, out[1], err[1], devnull, cgroup_fd);
  EXPECT_GT(pid, 0) << "mon_spawn_ex: " << pid;
  close(out[1]);
  close(err[1]);
  close(devnull);
  if (pid > 0) {
    EXPECT_EQ(pid, waitpid(pid, &r.status, 0));
  }
  r.out = read_all(out[0]);
  r.err = read_all(err[0]);
  close(out[0]);
  close(err[0]);
  return r;
}

// "Max open files  64  64  files" -> {"64", "64"} from /proc/PID/limits text.
std::pair<std::string, std::string> limit_of(const std::string &limits,
                                             const std::string &name) {
  size_t at = limits.find(name);
  if (at == std::string::npos)
    return {"?", "?"};
  char soft[32] = "?", hard[32] = "?";
  std::string line =
      limits.substr(at + name.size(), limits.find('\n', at) - at - name.size());
  if (sscanf(line.c_str(), "%31s %31s", soft, hard) != 2)
    return {"?", "?"};
  return {soft, hard};
}

std::string text_of(rlim_t v) {
  return v == RLIM_INFINITY ? "unlimited" : std::to_string((long long)v);
}

TEST(Spawn, RlimitsBecomeSoftAndHardLimits) {
  Cfg cfg({"/bin/cat", "/proc/self/limits"});
  cfg.c.rlimit_nofile = 64;
  cfg.c.rlimit_core = 0;
  Result r = run(cfg.c, -1);
  ASSERT_TRUE(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0) << r.err;
  EXPECT_EQ(std::make_pair(std::string("64"), std::string("64")),
            limit_of(r.out, "Max open files"))
      << r.out;
  EXPECT_EQ(std::make_pair(std::string("0"), std::string("0")),
            limit_of(r.out, "Max core file size"))
      << r.out;
}

TEST(Spawn, UnsetRlimitsAreInherited) {
  Cfg cfg({"/bin/cat", "/proc/self/limits"});
  Result r = run(cfg.c, -1);
  ASSERT_TRUE(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0) << r.err;
  struct rlimit nofile, core;
  ASSERT_EQ(0, getrlimit(RLIMIT_NOFILE, &nofile));
  ASSERT_EQ(0, getrlimit(RLIMIT_CORE, &core));
  EXPECT_EQ(std::make_pair(text_of(nofile.rlim_cur), text_of(nofile.rlim_max)),
            limit_of(r.out, "Max open files"));
  EXPECT_EQ(std::make_pair(text_of(core.rlim_cur), text_of(core.rlim_max)),
            limit_of(r.out, "Max core file size"));
}

TEST(Spawn, UnlimitedCoreWhereTheHardLimitAllows) {
  struct rlimit core;
  ASSERT_EQ(0, getrlimit(RLIMIT_CORE, &core));
  if (core.rlim_max != RLIM_INFINITY && geteuid() != 0)
    GTEST_SKIP() << "the hard core limit here is " << core.rlim_max
                 << " and raising it needs CAP_SYS_RESOURCE";
  Cfg cfg({"/bin/sh", "-c", "ulimit -c; ulimit -H -c"});
  cfg.c.rlimit_core = MON_RLIMIT_INFINITY;
  Result r = run(cfg.c, -1);
  ASSERT_TRUE(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0) << r.err;
  EXPECT_EQ("unlimited\nunlimited\n", r.out);
}

// No privilege lets RLIMIT_NOFILE exceed fs.nr_open, so these fail on
// every machine; the start must fail visibly, not run with other limits.
TEST(Spawn, RefusedRlimitFailsTheStartWithAMessage) {
  long long nr_open = 0;
  FILE *f = fopen("/proc/sys/fs/nr_open", "r");
  ASSERT_NE(nullptr, f);
  ASSERT_EQ(1, fscanf(f, "%lld", &nr_open));
  fclose(f);
  for (long long v : {nr_open + 1, MON_RLIMIT_INFINITY}) {
    Cfg cfg({"/bin/echo", "should not run"});
    cfg.c.rlimit_nofile = v;
    Result r = run(cfg.c, -1);
    ASSERT_TRUE(WIFEXITED(r.status)) << r.status;
    EXPECT_EQ(127, WEXITSTATUS(r.status));
    EXPECT_EQ("", r.out);
    std::string want = "svc-monitor: setrlimit RLIMIT_NOFILE " +
                       (v == MON_RLIMIT_INFINITY ? std::string("unlimited")
                                                 : std::to_string(v)) +
                       ": EPERM\n";
    EXPECT_EQ(want, r.err);
  }
}

// The common mistake: a hard limit above the monitor's own, without
// CAP_SYS_RESOURCE. A helper process lowers its hard limit and, when root,
// drops privileges (setuid clears the capabilities) to play the monitor.
TEST(Spawn, RaisingTheHardLimitWithoutPrivilegeFails) {
  int st[2];
  ASSERT_EQ(0, pipe2(st, O_CLOEXEC));
  pid_t helper = fork();
  ASSERT_GE(helper, 0);
  if (helper == 0) {
    struct rlimit low = {256, 256};
    if (setrlimit(RLIMIT_NOFILE, &low) != 0)
      _exit(3);
    if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
      _exit(4);
    Cfg cfg({"/bin/echo", "should not run"});
    cfg.c.rlimit_nofile = 1024;
    Result r = run(cfg.c, -1);
    std::string line = std::to_string(r.status) + " " + r.err;
    _exit(write(st[1], line.data(), line.size()) == (ssize_t)line.size() ? 0
                                                                         : 5);
  }
  close(st[1]);
  std::string got = read_all(st[0]);
  close(st[0]);
  int status;
  ASSERT_EQ(helper, waitpid(helper, &status, 0));
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_EQ(std::to_string(127 << 8) +
                " svc-monitor: setrlimit RLIMIT_NOFILE 1024: EPERM\n",
            got);
}

// The cgroup.procs fd is written "0" by the child itself; a plain file
// stands in for cgroupfs here (cgroup_test.cc checks the real thing).
TEST(Spawn, WritesZeroToTheCgroupFdBeforeExec) {
  char path[] = "/tmp/spawn_test_procs_XXXXXX";
  int fd = mkostemp(path, O_CLOEXEC);
  ASSERT_GE(fd, 0);
  Cfg cfg({"/bin/echo", "ran"});
  Result r = run(cfg.c, fd);
  close(fd);
  ASSERT_TRUE(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0) << r.err;
  EXPECT_EQ("ran\n", r.out);
  FILE *f = fopen(path, "r");
  ASSERT_NE(nullptr, f);
  char buf[16] = "";
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  unlink(path);
  EXPECT_EQ("0", std::string(buf, n));
}

TEST(Spawn, CgroupJoinFailureFailsTheStart) {
  int fd = open("/dev/null", O_RDONLY | O_CLOEXEC); // write gives EBADF
  ASSERT_GE(fd, 0);
  Cfg cfg({"/bin/echo", "should not run"});
  Result r = run(cfg.c, fd);
  close(fd);
  ASSERT_TRUE(WIFEXITED(r.status)) << r.status;
  EXPECT_EQ(127, WEXITSTATUS(r.status));
  EXPECT_EQ("", r.out);
  EXPECT_EQ("svc-monitor: joining the cgroup of spawntest: EBADF\n", r.err);
}

TEST(Spawn, PlainSpawnIsSpawnExWithoutCgroup) {
  Cfg cfg({"/bin/echo", "plain"});
  int out[2];
  ASSERT_EQ(0, pipe2(out, O_CLOEXEC));
  int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(devnull, 0);
  int pid = mon_spawn(&cfg.c, out[1], 2, devnull);
  ASSERT_GT(pid, 0);
  close(out[1]);
  close(devnull);
  int status;
  ASSERT_EQ(pid, waitpid(pid, &status, 0));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_EQ("plain\n", read_all(out[0]));
  close(out[0]);
}

} // namespace

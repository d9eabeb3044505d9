// cgroup_test.cc — the cgroup v2 subtree: /proc/self/cgroup parsing, the
// setup and per-service writes against a fixture tree in a temporary
// directory, and one test on the real /sys/fs/cgroup where this machine
// lets a test make a cgroup with the memory and cpu controllers.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "cgroup.h"
#include "config.h"
#include "spawn.h"

namespace fs = std::filesystem;

namespace {

std::string slurp(const std::string &path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void spit(const std::string &path, const std::string &text) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path) << text;
}

std::string parse(const std::string &text, std::string *why) {
  char path[256] = "", w[256] = "";
  int rc = mon_cgroups_parse_self(text.c_str(), path, sizeof path, w, sizeof w);
  *why = w;
  return rc == 0 ? path : "<error>";
}

TEST(CgroupParse, UnifiedHierarchy) {
  std::string why;
  EXPECT_EQ("/system.slice/svc-monitor.service",
            parse("0::/system.slice/svc-monitor.service\n", &why));
  EXPECT_EQ("/user.slice/a b", parse("0::/user.slice/a b", &why));
  EXPECT_EQ("/", parse("0::/\n", &why));
}

TEST(CgroupParse, HybridAndLegacyAreRefused) {
  std::string why;
  // hybrid: v1 controllers and a named systemd hierarchy next to 0::
  EXPECT_EQ("<error>",
            parse("9:name=systemd:/\n4:memory:/x\n1:cpu:/\n0::/\n", &why));
  EXPECT_NE(std::string::npos, why.find("cgroup v1")) << why;
  EXPECT_EQ("<error>", parse("1:name=systemd:/\n0::/user.slice\n", &why));
  EXPECT_NE(std::string::npos, why.find("hybrid")) << why;
  // legacy: no 0:: line at all
  EXPECT_EQ("<error>", parse("2:memory:/\n1:name=systemd:/init.scope\n", &why));
  EXPECT_NE(std::string::npos, why.find("cgroup v1")) << why;
}

TEST(CgroupParse, MalformedOrForeignPaths) {
  std::string why;
  EXPECT_EQ("<error>", parse("", &why));
  EXPECT_NE(std::string::npos, why.find("no cgroup v2 line")) << why;
  EXPECT_EQ("<error>", parse("0::/../../other.slice\n", &why));
  EXPECT_NE(std::string::npos, why.find("unusable")) << why;
  EXPECT_EQ("<error>", parse("0::\n", &why));
  EXPECT_EQ("<error>", parse("0::relative\n", &why));
  EXPECT_EQ("<error>", parse("0::/a\n0::/b\n", &why));
  EXPECT_EQ("/..x", parse("0::/..x\n", &why)); // a name, not a parent
}

// A tree laid out as the kernel would show it for a monitor started as a
// systemd service with Delegate=yes. Files the kernel makes by itself
// (cgroup.procs in a new cgroup, memory.max ...) are made here up front.
class CgroupFixture : public ::testing::Test {
protected:
  std::string tmp, root, own, self;
  void SetUp() override {
    char t[] = "/tmp/cgroup_test_XXXXXX";
    ASSERT_NE(nullptr, mkdtemp(t));
    tmp = t;
    root = tmp + "/sys/fs/cgroup";
    own = root + "/system.slice/svc-monitor.service";
    self = tmp + "/proc_self_cgroup";
    spit(self, "0::/system.slice/svc-monitor.service\n");
    spit(own + "/cgroup.controllers", "cpuset cpu io memory pids\n");
    spit(own + "/cgroup.procs", std::to_string(getpid()) + "\n");
    spit(own + "/cgroup.subtree_control", "");
    spit(own + "/monitor/cgroup.procs", "");
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(tmp, ec);
  }
  mon_cgroups *make(std::string *why) {
    char w[512] = "x";
    mon_cgroups *cg = mon_cgroups_new(root.c_str(), self.c_str(), w, sizeof w);
    *why = w;
    return cg;
  }
  void service_files(const std::string &name) {
    for (const char *f : {"cgroup.procs", "memory.max", "cpu.max"})
      spit(own + "/svc-" + name + "/" + f, "");
  }
};

mon_service_cfg service(const char *name, long long memory_max, int cpu_max) {
  mon_service_cfg s{};
  s.name = const_cast<char *>(name);
  s.memory_max = memory_max;
  s.cpu_max = cpu_max;
  s.rlimit_nofile = s.rlimit_core = MON_RLIMIT_UNSET;
  return s;
}

TEST_F(CgroupFixture, MovesIntoALeafThenEnablesTheControllers) {
  std::string why;
  mon_cgroups *cg = make(&why);
  ASSERT_NE(nullptr, cg) << why;
  EXPECT_EQ("", why);
  EXPECT_EQ(own, mon_cgroups_dir(cg));
  EXPECT_EQ("0", slurp(own + "/monitor/cgroup.procs"));
  EXPECT_EQ("+memory +cpu", slurp(own + "/cgroup.subtree_control"));
  mon_cgroups_free(cg);
  mon_cgroups_free(nullptr);
}

TEST_F(CgroupFixture, RootCgroupIsTheMountPoint) {
  spit(self, "0::/\n");
  spit(root + "/cgroup.controllers", "cpu memory\n");
  spit(root + "/cgroup.procs", std::to_string(getpid()) + "\n");
  spit(root + "/cgroup.subtree_control", "");
  spit(root + "/monitor/cgroup.procs", "");
  std::string why;
  mon_cgroups *cg = make(&why);
  ASSERT_NE(nullptr, cg) << why;
  EXPECT_EQ(root, mon_cgroups_dir(cg));
  mon_cgroups_free(cg);
}

TEST_F(CgroupFixture, HybridProcSelfCgroupIsUnavailable) {
  spit(self, "1:name=systemd:/x\n0::/x\n");
  std::string why;
  EXPECT_EQ(nullptr, make(&why));
  EXPECT_NE(std::string::npos, why.find("hybrid")) << why;
}

TEST_F(CgroupFixture, UnreadableProcSelfCgroup) {
  self = tmp + "/absent";
  std::string why;
  EXPECT_EQ(nullptr, make(&why));
  EXPECT_NE(std::string::npos, why.find(self)) << why;
}

TEST_F(CgroupFixture, MissingControllersAreNamed) {
  spit(own + "/cgroup.controllers", "cpuset cpu io pids\n");
  std::string why;
  EXPECT_EQ(nullptr, make(&why));
  EXPECT_NE(std::string::npos, why.find("controller memory not available"))
      << why;
  spit(own + "/cgroup.controllers", "io cpuset\n");
  EXPECT_EQ(nullptr, make(&why));
  EXPECT_NE(std::string::npos,
            why.find("controllers memory and cpu not available"))
      << why;
  EXPECT_EQ("", slurp(own + "/monitor/cgroup.procs")); // nothing moved
}

TEST_F(CgroupFixture, NoCgroupDirectory) {
  spit(self, "0::/elsewhere.scope\n");
  std::string why;
  EXPECT_EQ(nullptr, make(&why));
  EXPECT_NE(std::string::npos, why.find("not writable")) << why;
}

// Not ours to write: as root, a helper process drops to nobody first
// (root may write any directory).
TEST_F(CgroupFixture, ReadOnlyCgroupSaysDelegate) {
  ASSERT_EQ(0, chmod(tmp.c_str(), 0755));
  ASSERT_EQ(0, chmod(own.c_str(), 0555));
  int p[2];
  ASSERT_EQ(0, pipe2(p, O_CLOEXEC));
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
      _exit(3);
    std::string why;
    mon_cgroups *cg = make(&why);
    ssize_t w = write(p[1], why.data(), why.size());
    _exit(cg == nullptr && w == (ssize_t)why.size() ? 0 : 1);
  }
  close(p[1]);
  std::string why;
  char buf[512];
  for (ssize_t n; (n = read(p[0], buf, sizeof buf)) > 0;)
    why.append(buf, (size_t)n);
  close(p[0]);
  int status;
  ASSERT_EQ(child, waitpid(child, &status, 0));
  chmod(own.c_str(), 0755);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_NE(std::string::npos, why.find("is not writable")) << why;
  EXPECT_NE(std::string::npos, why.find("Delegate=yes")) << why;
}

TEST_F(CgroupFixture, OtherProcessesInTheCgroupAreNamed) {
  spit(own + "/cgroup.procs", "1\n" + std::to_string(getpid()) + "\n");
  std::string why;
  EXPECT_EQ(nullptr, make(&why));
  EXPECT_NE(std::string::npos, why.find("other processes share")) << why;
  EXPECT_NE(std::string::npos, why.find("pid 1)")) << why;
  EXPECT_EQ("", slurp(own + "/monitor/cgroup.procs"));
}

// The kernel refuses subtree_control (EBUSY, EINVAL ...): the monitor goes
// back into OWN instead of staying in a leaf it made for nothing.
TEST_F(CgroupFixture, RefusedSubtreeControlMovesBack) {
  fs::remove(own + "/cgroup.subtree_control");
  std::string why;
  EXPECT_EQ(nullptr, make(&why));
  EXPECT_NE(std::string::npos, why.find("cgroup.subtree_control")) << why;
  EXPECT_EQ("0", slurp(own + "/cgroup.procs"));
}

TEST_F(CgroupFixture, PrepareWritesTheLimitsEveryTime) {
  std::string why;
  mon_cgroups *cg = make(&why);
  ASSERT_NE(nullptr, cg) << why;
  service_files("web");
  mon_service_cfg s = service("web", 32LL << 20, 150);
  char w[512] = "x";
  int fd = mon_cgroups_prepare(cg, &s, w, sizeof w);
  ASSERT_GE(fd, 0) << w;
  EXPECT_STREQ("", w);
  EXPECT_EQ("33554432", slurp(own + "/svc-web/memory.max"));
  EXPECT_EQ("150000 100000", slurp(own + "/svc-web/cpu.max"));
  EXPECT_EQ(1, write(fd, "0", 1)); // what mon_spawn_ex's child does
  EXPECT_TRUE(fcntl(fd, F_GETFD) & FD_CLOEXEC);
  close(fd);
  EXPECT_EQ("0", slurp(own + "/svc-web/cgroup.procs"));

  s = service("web", 0, 0); // a reload dropped the limits
  fd = mon_cgroups_prepare(cg, &s, w, sizeof w);
  ASSERT_GE(fd, 0) << w;
  close(fd);
  EXPECT_EQ("max", slurp(own + "/svc-web/memory.max"));
  EXPECT_EQ("max 100000", slurp(own + "/svc-web/cpu.max"));
  mon_cgroups_free(cg);
}

// A real mkdir makes the files; here the directory comes out empty, as
// if the memory controller were not enabled for it.
TEST_F(CgroupFixture, PrepareFailureNamesTheFile) {
  std::string why;
  mon_cgroups *cg = make(&why);
  ASSERT_NE(nullptr, cg) << why;
  mon_service_cfg s = service("db", 0, 0);
  char w[512];
  EXPECT_EQ(-1, mon_cgroups_prepare(cg, &s, w, sizeof w));
  EXPECT_NE(nullptr, strstr(w, "svc-db/memory.max")) << w;
  EXPECT_TRUE(fs::is_directory(own + "/svc-db"));
  mon_cgroups_free(cg);
}

TEST(Cgroup, WithoutCgroupsPrepareGivesNoFdAndNoReason) {
  mon_service_cfg s = service("web", 1 << 20, 0);
  char w[64] = "x";
  EXPECT_EQ(-1, mon_cgroups_prepare(nullptr, &s, w, sizeof w));
  EXPECT_STREQ("", w);
  EXPECT_EQ(0, mon_cgroups_remove(nullptr, "web"));
  mon_cgroup_stats st;
  EXPECT_EQ(-1, mon_cgroups_stats(nullptr, "web", &st));
}

TEST_F(CgroupFixture, RemoveDeletesTheServiceCgroup) {
  std::string why;
  mon_cgroups *cg = make(&why);
  ASSERT_NE(nullptr, cg) << why;
  fs::create_directories(own + "/svc-gone");
  EXPECT_EQ(0, mon_cgroups_remove(cg, "gone"));
  EXPECT_FALSE(fs::exists(own + "/svc-gone"));
  EXPECT_EQ(0, mon_cgroups_remove(cg, "gone")); // already absent
  service_files("busy"); // a regular directory that is not empty
  EXPECT_EQ(-ENOTEMPTY, mon_cgroups_remove(cg, "busy"));
  mon_cgroups_free(cg);
}

TEST_F(CgroupFixture, StatsReadMemoryCurrentAndOomKills) {
  std::string why;
  mon_cgroups *cg = make(&why);
  ASSERT_NE(nullptr, cg) << why;
  spit(own + "/svc-web/memory.current", "12345678\n");
  spit(own + "/svc-web/memory.events",
       "low 0\nhigh 0\nmax 17\noom 2\noom_kill 2\noom_group_kill 0\n");
  mon_cgroup_stats st{};
  ASSERT_EQ(0, mon_cgroups_stats(cg, "web", &st));
  EXPECT_EQ(12345678, st.memory_current);
  EXPECT_EQ(2, st.oom_kills);
  EXPECT_EQ(-1, mon_cgroups_stats(cg, "absent", &st));
  mon_cgroups_free(cg);
}

TEST(Cgroup, WantedOnlyWhenAServiceSetsALimit) {
  mon_service_cfg svcs[2] = {service("a", 0, 0), service("b", 0, 0)};
  svcs[1].max_memory_restart = 1 << 20; // not a cgroup limit
  mon_config cfg{};
  cfg.services = svcs;
  cfg.nservices = 2;
  EXPECT_FALSE(mon_cgroups_wanted(&cfg));
  svcs[1].cpu_max = 50;
  EXPECT_TRUE(mon_cgroups_wanted(&cfg));
  svcs[1].cpu_max = 0;
  svcs[0].memory_max = 1 << 20;
  EXPECT_TRUE(mon_cgroups_wanted(&cfg));
}

// ---- the real /sys/fs/cgroup ----

const char *const kRoot = "/sys/fs/cgroup";

bool has_word(const std::string &list, const std::string &word) {
  std::istringstream in(list);
  for (std::string w; in >> w;)
    if (w == word)
      return true;
  return false;
}

// Where a test may make a cgroup that gets memory and cpu: a cgroup whose
// subtree_control already enables both for its children, and which we
// may write. Our own cgroup (rarely: it holds this runner, so it can only
// enable controllers if it is the root), else the root.
std::string real_base(std::string *why) {
  char own[4096], w[512];
  std::string text = slurp("/proc/self/cgroup");
  if (mon_cgroups_parse_self(text.c_str(), own, sizeof own, w, sizeof w)) {
    *why = w;
    return "";
  }
  std::vector<std::string> tried;
  for (std::string rel : {std::string(own), std::string("/")}) {
    std::string dir = kRoot + (rel == "/" ? "" : rel);
    std::string ctl = slurp(dir + "/cgroup.subtree_control");
    bool ok = has_word(ctl, "memory") && has_word(ctl, "cpu");
    if (ok && access(dir.c_str(), W_OK) == 0)
      return dir;
    tried.push_back(dir + " (subtree_control '" +
                    ctl.substr(0, ctl.find('\n')) +
                    (ok ? "', not writable)" : "')"));
  }
  *why = "no cgroup here gives a new child the memory and cpu controllers: ";
  for (auto &t : tried)
    *why += t + " ";
  return "";
}

// Runs in a forked child, which moves itself into dir (a fresh cgroup under
// the base) and then plays the monitor: mon_cgroups_new moves it on into
// dir/monitor. Returns 0 with a note, or 1 with what went wrong.
int real_child(const std::string &dir, std::string *msg) {
  char why[512];
  int fd = open((dir + "/cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0 || write(fd, "0", 1) != 1) {
    *msg = "joining " + dir + ": " + strerror(errno);
    return 1;
  }
  close(fd);
  mon_cgroups *cg =
      mon_cgroups_new(kRoot, "/proc/self/cgroup", why, sizeof why);
  if (!cg) {
    *msg = std::string("mon_cgroups_new: ") + why;
    return 1;
  }
  if (dir != mon_cgroups_dir(cg)) {
    *msg = std::string("dir ") + mon_cgroups_dir(cg) + ", wanted " + dir;
    return 1;
  }
  // The shell's command substitution keeps all 256 MiB; tr turns the NULs
  // (which a shell drops) into bytes it keeps.
  std::vector<std::string> words = {
      "/bin/sh", "-c",
      "cat /proc/self/cgroup; x=$(head -c 268435456 /dev/zero | tr '\\000' "
      "x); echo survived ${#x}"};
  std::vector<char *> argv;
  for (auto &w : words)
    argv.push_back(&w[0]);
  argv.push_back(nullptr);
  mon_service_cfg s = service("hog", 32LL << 20, 50);
  s.argv = argv.data();
  s.workers_min = s.workers_max = 1;
  int procs = mon_cgroups_prepare(cg, &s, why, sizeof why);
  if (procs < 0) {
    *msg = std::string("mon_cgroups_prepare: ") + why;
    return 1;
  }
  std::string svc = dir + "/svc-hog";
  std::string mem = slurp(svc + "/memory.max"), cpu = slurp(svc + "/cpu.max");
  if (mem != "33554432\n" || cpu != "50000 100000\n") {
    *msg = "read back memory.max '" + mem + "' cpu.max '" + cpu + "'";
    return 1;
  }
  // Without swap limited to 0 the kernel may swap instead of killing.
  bool no_swap = false;
  int sfd = open((svc + "/memory.swap.max").c_str(), O_WRONLY | O_CLOEXEC);
  if (sfd >= 0) {
    no_swap = write(sfd, "0", 1) == 1;
    close(sfd);
  } else {
    std::string swaps = slurp("/proc/swaps");
    no_swap = swaps.find('\n') == swaps.size() - 1; // the header only
  }
  int out[2], devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (devnull < 0 || pipe2(out, O_CLOEXEC) != 0) {
    *msg = std::string("pipe: ") + strerror(errno);
    return 1;
  }
  int pid = mon_spawn_ex(&s, out[1], 2, devnull, procs);
  close(procs);
  close(out[1]);
  close(devnull);
  if (pid < 0) {
    *msg = "mon_spawn_ex: " + std::to_string(pid);
    return 1;
  }
  int status = 0, reaped = 0;
  for (int i = 0; i < 1200 && (reaped = waitpid(pid, &status, WNOHANG)) == 0;
       i++)
    usleep(50000);
  kill(-pid, SIGKILL); // head and tr may outlive the shell; or a timeout
  if (reaped == 0)
    reaped = waitpid(pid, &status, 0);
  if (reaped != pid) {
    *msg = std::string("waitpid: ") + strerror(errno);
    return 1;
  }
  std::string got;
  char buf[4096];
  for (ssize_t n; (n = read(out[0], buf, sizeof buf)) > 0;)
    got.append(buf, (size_t)n);
  close(out[0]);
  std::string rel = svc.substr(strlen(kRoot));
  if (got.compare(0, rel.size() + 4, "0::" + rel + "\n") != 0) {
    *msg = "the service ran in another cgroup: " + got;
    return 1;
  }
  mon_cgroup_stats st{};
  if (mon_cgroups_stats(cg, "hog", &st) != 0) {
    *msg = "mon_cgroups_stats failed";
    return 1;
  }
  bool killed = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
  if (no_swap && (!killed || st.oom_kills < 1)) {
    *msg = "not OOM-killed: status " + std::to_string(status) + ", oom_kill " +
           std::to_string(st.oom_kills) + ", output " + got;
    return 1;
  }
  int rc = -EBUSY;
  for (int i = 0; i < 100 && rc == -EBUSY; i++)
    if ((rc = mon_cgroups_remove(cg, "hog")) == -EBUSY)
      usleep(20000);
  if (rc != 0) {
    *msg = std::string("mon_cgroups_remove: ") + strerror(-rc);
    return 1;
  }
  mon_cgroups_free(cg);
  *msg = "memory.max and cpu.max applied; " +
         std::string(killed ? "OOM-killed" : "not killed (swap in use)") +
         ", oom_kill " + std::to_string(st.oom_kills);
  return 0;
}

// rmdir of a cgroup whose last process just exited can briefly say EBUSY.
void rmdir_soon(const std::string &dir) {
  for (int i = 0; i < 100; i++) {
    if (rmdir(dir.c_str()) == 0 || errno == ENOENT)
      return;
    if (errno != EBUSY)
      break;
    usleep(20000);
  }
  ADD_FAILURE() << "rmdir " << dir << ": " << strerror(errno);
}

TEST(CgroupReal, ServiceGetsItsLimitsAndIsOomKilled) {
  std::string why;
  std::string base = real_base(&why);
  if (base.empty())
    GTEST_SKIP() << "no usable cgroup v2 on this machine: " << why;
  // One cgroup per test process, so parallel ctest runs never meet.
  std::string dir = base + "/svcmon-test-" + std::to_string(getpid());
  if (mkdir(dir.c_str(), 0755) != 0)
    GTEST_SKIP() << "cannot make a test cgroup: mkdir " << dir << ": "
                 << strerror(errno);
  int p[2];
  ASSERT_EQ(0, pipe2(p, O_CLOEXEC));
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(p[0]);
    std::string msg;
    int rc = real_child(dir, &msg);
    ssize_t w = write(p[1], msg.data(), msg.size());
    _exit(w == (ssize_t)msg.size() ? rc : 2);
  }
  close(p[1]);
  std::string msg;
  char buf[1024];
  for (ssize_t n; (n = read(p[0], buf, sizeof buf)) > 0;)
    msg.append(buf, (size_t)n);
  close(p[0]);
  int status;
  ASSERT_EQ(child, waitpid(child, &status, 0));
  // The child and its service are gone: the test cgroups are empty.
  rmdir_soon(dir + "/svc-hog");
  rmdir_soon(dir + "/monitor");
  rmdir_soon(dir);
  ASSERT_TRUE(WIFEXITED(status)) << "child status " << status;
  ASSERT_EQ(0, WEXITSTATUS(status)) << msg;
  std::cout << "[ real cgroup ] " << msg << "\n";
}

} // namespace

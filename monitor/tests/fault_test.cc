// fault_test.cc — the monitor's "fail the Nth call" tests (issue 17), after
// SQLite's malloc and I/O-error tests, against svcmon_core_fault: every
// wrapped allocation, system call (mon_sys.h) and SQLite call (store.c) of
// a scenario is counted once, then the scenario runs again with call 1
// failed, then call 2, ..., until a run in which nothing was failed. Each
// run must end cleanly (an error returned or logged, or an HTTP 5xx) within
// a bounded time, leave no fd behind (memory: ASan's leak check), and the
// next attempt must succeed. Scenarios: the monitor's start, a sampling
// tick, HTTP requests. Then the exhaustion cases that need injection: the
// store failing for a while (SQLITE_FULL, SQLITE_IOERR) and fork refused.
//
// The monitor runs in this process (mon_run on a thread of its own), so
// that the counter it asks is the one the test arms.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "config.h"
#include "fault.h"
#include "http.h"
#include "metrics.h"
#include "monitor.h"
#include "proc_sample.h"
#include "sse.h"
#include "store.h"
#include "test_util.h"
#include "view.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#define FAULT_LEAKS() __lsan_do_recoverable_leak_check()
#else
#define FAULT_LEAKS() 0
#endif

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

// mon_run takes these through a signalfd, which sees them only while every
// thread of the process blocks them: blocked here, before main, so that
// every thread (gtest's, the monitor's) inherits the mask.
const bool signals_blocked = [] {
  sigset_t set;
  sigemptyset(&set);
  for (int s : {SIGCHLD, SIGTERM, SIGINT, SIGHUP})
    sigaddset(&set, s);
  return pthread_sigmask(SIG_BLOCK, &set, nullptr) == 0;
}();

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

int count_fds() {
  int n = 0;
  DIR *d = opendir("/proc/self/fd");
  if (!d)
    return -1;
  while (readdir(d))
    n++;
  closedir(d);
  return n - 3; // ".", ".." and the directory's own fd
}

// The names of the open fds, for a message when they differ.
std::string list_fds() {
  std::string out;
  for (const auto &e : fs::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    fs::path target = fs::read_symlink(e.path(), ec);
    out += e.path().filename().string() + "->" +
           (ec ? std::string("?") : target.string()) + " ";
  }
  return out;
}

// Zombies among this process's children (a service nobody reaped).
int zombie_children() {
  int me = getpid();
  return count_processes(
      [me](const ProcStat &p) { return p.state == "Z" && p.ppid == me; });
}

// One GET with a 10 s bound on every read and write.
Resp http_get(int port, const std::string &path) {
  return parse_response(http(port, "GET", path, "", 10));
}

// The object of service name in /api/services.
std::string service_json(int port, const std::string &name) {
  return object_of(http_get(port, "/api/services").body, name);
}

bool eventually(const std::function<bool()> &cond, int ms) {
  int64_t end = now_ms() + ms;
  while (now_ms() < end) {
    if (cond())
      return true;
    std::this_thread::sleep_for(20ms);
  }
  return cond();
}

// Waits up to 20 s for service name to be RUNNING; *obj: its last object.
bool becomes_running(int port, const std::string &name, std::string *obj) {
  return eventually(
      [&] {
        *obj = service_json(port, name);
        return field(*obj, "state") == "RUNNING";
      },
      20000);
}

std::string op_name() { return svc__fault_op_name(svc__fault_last_op()); }

// Runs per kind of failed call, and how many of them ended in an error:
// printed at the end of a scenario.
struct Tally {
  long runs[SVC_FAULT_OP_COUNT] = {}, errors[SVC_FAULT_OP_COUNT] = {};
  void add(bool error) {
    int op = svc__fault_last_op();
    if (op < 0 || op >= SVC_FAULT_OP_COUNT)
      return;
    runs[op]++;
    errors[op] += error;
  }
  std::string str() const {
    std::string out;
    for (int op = 0; op < SVC_FAULT_OP_COUNT; op++)
      if (runs[op])
        out += std::string(out.empty() ? "" : ", ") + svc__fault_op_name(op) +
               " " + std::to_string(runs[op]) + " (" +
               std::to_string(errors[op]) + " errors)";
    return out;
  }
};

// What a scenario counts: every kind the monitor wraps.
const uint64_t kMonitorOps =
    SVC_FAULT_BIT(SVC_FAULT_ALLOC) | SVC_FAULT_BIT(SVC_FAULT_OPEN) |
    SVC_FAULT_BIT(SVC_FAULT_FORK) | SVC_FAULT_BIT(SVC_FAULT_PIPE) |
    SVC_FAULT_BIT(SVC_FAULT_FD) | SVC_FAULT_BIT(SVC_FAULT_THREAD) |
    SVC_FAULT_BIT(SVC_FAULT_STORE) | SVC_FAULT_BIT(SVC_FAULT_STORE_READ);

// A temporary directory per test.
class Dir : public ::testing::Test {
protected:
  fs::path dir;
  void SetUp() override {
    ASSERT_TRUE(signals_blocked);
    dir = fs::temp_directory_path() /
          ("svcmon-fault-" + std::to_string(getpid()) + "-" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  void TearDown() override { fs::remove_all(dir); }
  fs::path db() const { return dir / "m.sqlite"; }
  void write_config(const std::string &services, int interval_ms = 100) {
    std::ofstream(dir / "m.ini")
        << "[monitor]\nhttp = 127.0.0.1:0\ndb = " << db().string()
        << "\nlog_dir = " << (dir / "logs").string()
        << "\ntoken_file = " << (dir / "token").string()
        << "\nsample_interval_ms = " << interval_ms << "\n\n"
        << services;
  }
  // dir/m.ini loaded into *cfg, for ASSERT_TRUE.
  ::testing::AssertionResult load_config(mon_config *cfg) {
    char err[512] = "";
    if (mon_config_load((dir / "m.ini").c_str(), cfg, err, sizeof err) == 0)
      return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << err;
  }
};

// mon_run on a thread of its own, for one run of the monitor: start()
// returns once it announced its port (true) or returned (false: rc, err).
class InProcessMonitor {
public:
  // Called on the loop's thread around each sampling tick.
  std::function<void(bool after)> on_tick;

  explicit InProcessMonitor(const mon_config *cfg) : cfg_(cfg) {}
  ~InProcessMonitor() {
    if (th_.joinable()) { // a test failed before stop(): no hang at exit
      pthread_kill(th_.native_handle(), SIGTERM);
      th_.join();
    }
    if (rfd_ >= 0)
      close(rfd_);
  }

  bool start(int bound_ms = 30000) {
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0)
      return false;
    rfd_ = p[0];
    FILE *announce = fdopen(p[1], "w");
    if (!announce) {
      close(p[1]);
      return false;
    }
    opts_ = {"/proc", announce, &InProcessMonitor::tick, this};
    th_ = std::thread([this, announce] {
      int rc = mon_run(cfg_, &opts_, err_, sizeof err_);
      fclose(announce); // EOF for a start() still waiting
      std::lock_guard<std::mutex> g(mu_);
      rc_ = rc;
      returned_ = true;
      cv_.notify_all();
    });
    std::string line;
    int64_t end = now_ms() + bound_ms;
    for (;;) {
      pollfd q = {rfd_, POLLIN, 0};
      int left = (int)(end - now_ms());
      if (left <= 0 || poll(&q, 1, left) <= 0) {
        hung_ = true;
        return false;
      }
      char c;
      if (read(rfd_, &c, 1) != 1)
        break; // returned before announcing
      if (c == '\n')
        break;
      line += c;
    }
    size_t at = line.find("127.0.0.1:");
    if (at == std::string::npos)
      return false;
    port_ = std::stoi(line.substr(at + 10));
    return true;
  }
  // Waits until mon_run returned: false if it did not within bound_ms.
  bool wait(int bound_ms) {
    std::unique_lock<std::mutex> g(mu_);
    if (!cv_.wait_for(g, std::chrono::milliseconds(bound_ms),
                      [this] { return returned_; })) {
      hung_ = true;
      return false;
    }
    g.unlock();
    th_.join();
    return true;
  }
  // SIGTERM to the loop's thread (its signalfd reads it), then wait.
  bool stop(int bound_ms = 30000) {
    {
      std::lock_guard<std::mutex> g(mu_);
      if (!returned_)
        pthread_kill(th_.native_handle(), SIGTERM);
    }
    return wait(bound_ms);
  }
  bool returned() {
    std::lock_guard<std::mutex> g(mu_);
    return returned_;
  }
  int port() const { return port_; }
  int rc() const { return rc_; }
  const char *err() const { return err_; }
  bool hung() const { return hung_; }

private:
  static void tick(void *ctx, bool after) {
    auto *self = static_cast<InProcessMonitor *>(ctx);
    if (self->on_tick)
      self->on_tick(after);
  }

  const mon_config *cfg_;
  mon_run_opts opts_{};
  std::thread th_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool returned_ = false, hung_ = false;
  int rc_ = -1, rfd_ = -1, port_ = 0;
  char err_[512] = "";
};

// A hang cannot be cleaned up after: the rest of the binary would hang on
// the stuck thread, so the test says where and stops the process.
[[noreturn]] void hung(const std::string &where) {
  fprintf(stderr, "HANG: %s\n", where.c_str());
  fflush(stderr);
  std::abort();
}

// ---- the monitor's start: config load, store open, HTTP, first spawn ----

class StartFault : public Dir {
protected:
  // One start, with nth armed (-1: nothing armed): load the config, run
  // the monitor to its first tick (everything before is the scenario), see
  // the service running, stop. What went wrong is said in *why ("" if
  // nothing); *failed_start tells a start that ended in an error.
  void attempt(long nth, bool persistent, std::string *why,
               bool *failed_start) {
    *failed_start = false;
    why->clear();
    if (nth >= 0)
      svc__fault_arm(kMonitorOps, nth, persistent, 0);
    int64_t t0 = now_ms();
    mon_config cfg;
    char err[512] = "";
    if (mon_config_load((dir / "m.ini").c_str(), &cfg, err, sizeof err) != 0) {
      svc__fault_disarm();
      *failed_start = true;
      if (!err[0] || nth < 0)
        *why = std::string("config load failed: ") + err;
      return;
    }
    run(&cfg, nth, why, failed_start);
    svc__fault_disarm();
    mon_config_fini(&cfg);
    if (why->empty() && now_ms() - t0 > 45000)
      *why = "took " + std::to_string(now_ms() - t0) + " ms";
  }

  // The monitor's part of attempt().
  static void run(const mon_config *cfg, long nth, std::string *why,
                  bool *failed_start) {
    std::string at = "nth " + std::to_string(nth);
    InProcessMonitor m(cfg);
    std::atomic<bool> ticked{false};
    m.on_tick = [&](bool after) {
      if (!after && !ticked.exchange(true))
        svc__fault_disarm(); // the start is over
    };
    bool up = m.start();
    if (m.hung())
      hung("start, " + at + " (" + op_name() + ")");
    // the start ends at the first tick, or in an error
    if (up &&
        !eventually([&] { return ticked.load() || m.returned(); }, 20000)) {
      svc__fault_disarm();
      *why = "no sampling tick within 20 s";
    }
    svc__fault_disarm();
    if (!up || m.returned()) {
      if (!m.wait(30000))
        hung("a start that failed, " + at);
      *failed_start = true;
      if (m.rc() != 1 || !m.err()[0])
        *why = "mon_run returned " + std::to_string(m.rc()) +
               " unasked, err '" + m.err() + "'";
      return;
    }
    // then the service runs (a failed spawn is retried after its backoff)
    std::string s;
    if (why->empty() && !becomes_running(m.port(), "steady", &s))
      *why = "service not RUNNING after the start: " + s;
    if (!m.stop(30000))
      hung("stop after a start, " + at);
    if (why->empty() && m.rc() != 0)
      *why = "mon_run returned " + std::to_string(m.rc()) + ": " + m.err();
  }

  void fail_each(bool persistent) {
    write_config("[service.steady]\ncommand = /bin/sleep 600\n"
                 "start_secs = 0\nbackoff_ms = 10\nstart_retries = -1\n");
    std::string why;
    bool failed;
    attempt(-1, false, &why, &failed); // makes the files later runs reuse
    ASSERT_TRUE(why.empty() && !failed) << why;
    int fds = count_fds();
    attempt(0, false, &why, &failed);
    long total = svc__fault_calls();
    ASSERT_TRUE(why.empty() && !failed) << why;
    ASSERT_GT(total, 50) << "the start made few wrapped calls";
    long n = 1;
    Tally tally;
    for (;; n++) {
      attempt(n, persistent, &why, &failed);
      long injected = svc__fault_injected();
      std::string op = op_name();
      tally.add(failed);
      EXPECT_TRUE(why.empty()) << "nth " << n << " (" << op << "): " << why;
      EXPECT_EQ(count_fds(), fds)
          << "nth " << n << " (" << op << ") left fds: " << list_fds();
      EXPECT_EQ(zombie_children(), 0) << "nth " << n << " (" << op << ")";
      EXPECT_EQ(FAULT_LEAKS(), 0) << "nth " << n << " (" << op << ") leaked";
      if (::testing::Test::HasFailure())
        break;
      if (injected == 0)
        break;
      if (failed) { // the next attempt, with nothing failed, must start
        attempt(-1, false, &why, &failed);
        ASSERT_TRUE(why.empty() && !failed)
            << "the start after nth " << n << " (" << op << "): " << why;
      }
    }
    printf("start: %ld calls counted, %ld runs failing one %s: %s\n", total, n,
           persistent ? "and every later one" : "once", tally.str().c_str());
  }
};

TEST_F(StartFault, EachCallFailedOnce) { fail_each(false); }
TEST_F(StartFault, EachCallFailedAndEveryOneAfter) { fail_each(true); }

// ---- a sampling tick: the process trees sampled, one transaction ----

// The monitor runs clean; the hook around its ticks makes every second
// tick a run of the scenario (tick k armed to fail call n), and checks the
// tick after it, unarmed, writes samples again and leaves no fd behind.
class TickFault : public Dir {
protected:
  struct Plan {
    uint64_t mask = kMonitorOps;
    bool persistent = false;
    int warmup = 3; // ticks before counting: baselines, first PSS read
    long n = 0;     // the call failed in the armed tick; 0: counting
    bool armed_tick = true, done = false;
    long total = 0, runs = 0;
    int64_t t0 = 0, samples = 0;
    int fds = 0;
    // the test's own reader, open all along: SQLite defers closing the fd
    // of a connection while another one in the process holds a lock, which
    // a connection per query would count as a leak
    sqlite3 *db = nullptr;
    Tally tally;
    std::vector<std::string> problems;
  };

  static int64_t samples(Plan *p) {
    sqlite3_stmt *st;
    int64_t v = -1;
    if (sqlite3_prepare_v2(p->db, "SELECT count(*) FROM samples", -1, &st,
                           nullptr) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
      v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
  }

  // On the loop's thread, around tick after tick.
  void hook(Plan *p, bool after) {
    if (p->done)
      return;
    if (p->warmup > 0) {
      p->warmup -= after;
      return;
    }
    std::string at = "nth " + std::to_string(p->n);
    if (p->armed_tick && !after) {
      p->fds = count_fds();
      p->samples = samples(p);
      p->t0 = now_ms();
      svc__fault_arm(p->mask, p->n, p->persistent, 0);
      return;
    }
    if (p->armed_tick) {
      svc__fault_disarm();
      std::string op = op_name();
      int64_t took = now_ms() - p->t0;
      if (took > 5000)
        p->problems.push_back(at + " (" + op + "): the tick took " +
                              std::to_string(took) + " ms");
      if (p->n == 0) {
        p->total = svc__fault_calls();
        p->n = 1;
        return; // the next tick is the first armed one
      }
      p->runs++;
      if (svc__fault_injected() == 0) {
        p->done = true;
        return;
      }
      p->tally.add(samples(p) <= p->samples); // an error: nothing written
      p->armed_tick = false;
      return;
    }
    // the tick after a failed one: samples written, fds as before
    std::string op = svc__fault_op_name(svc__fault_last_op());
    if (!after) {
      p->samples = samples(p);
      return;
    }
    if (samples(p) <= p->samples)
      p->problems.push_back(at + " (" + op +
                            "): the next tick wrote no sample");
    if (count_fds() != p->fds)
      p->problems.push_back(at + " (" + op + "): fds " +
                            std::to_string(p->fds) + " -> " +
                            std::to_string(count_fds()) + ": " + list_fds());
    p->armed_tick = true;
    p->n++;
  }

  void fail_each(bool persistent) {
    // steady: a process tree of one; chatty: log lines in every tick
    write_config("[service.steady]\ncommand = /bin/sleep 600\n"
                 "start_secs = 0\n"
                 "[service.chatty]\ncommand = /bin/sh -c 'while :; do echo "
                 "chatty; sleep 0.02; done'\nstart_secs = 0\n");
    mon_config cfg;
    ASSERT_TRUE(load_config(&cfg));
    Plan plan;
    plan.persistent = persistent;
    std::mutex mu;
    std::condition_variable cv;
    {
      InProcessMonitor m(&cfg);
      m.on_tick = [&](bool after) {
        hook(&plan, after);
        if (plan.done) {
          std::lock_guard<std::mutex> g(mu);
          cv.notify_all();
        }
      };
      ASSERT_TRUE(m.start()) << m.err();
      ASSERT_EQ(sqlite3_open_v2(db().c_str(), &plan.db, SQLITE_OPEN_READONLY,
                                nullptr),
                SQLITE_OK);
      sqlite3_busy_timeout(plan.db, 5000);
      {
        std::unique_lock<std::mutex> g(mu);
        if (!cv.wait_for(g, 600s, [&] { return plan.done; }))
          hung("ticks: stuck at nth " + std::to_string(plan.n));
      }
      // the monitor carried on: its services and its store are fine
      EXPECT_EQ(field(service_json(m.port(), "steady"), "state"), "RUNNING");
      EXPECT_NE(http_get(m.port(), "/api/monitor").body.find("\"ok\":true"),
                std::string::npos);
      ASSERT_TRUE(m.stop()) << "stop";
      EXPECT_EQ(m.rc(), 0) << m.err();
    }
    sqlite3_close(plan.db);
    mon_config_fini(&cfg);
    for (const std::string &problem : plan.problems)
      ADD_FAILURE() << problem;
    EXPECT_GT(plan.total, 20) << "the tick made few wrapped calls";
    EXPECT_EQ(FAULT_LEAKS(), 0);
    printf("tick: %ld calls counted, %ld runs failing one %s: %s\n", plan.total,
           plan.runs, persistent ? "and every later one" : "once",
           plan.tally.str().c_str());
  }
};

TEST_F(TickFault, EachCallFailedOnce) { fail_each(false); }
TEST_F(TickFault, EachCallFailedAndEveryOneAfter) { fail_each(true); }

// ---- an HTTP request: the route reads the snapshot and the store ----

// The HTTP side alone, over a store with a little of everything: a server
// per run, so that every run opens its store reader as a first request
// does.
class HttpFault : public Dir {
protected:
  mon_config cfg{};
  mon_shared shared{};
  mon_config_ref *cref = nullptr;
  mon_sse_hub *hub = nullptr;
  mon_metrics *metrics = nullptr;
  mon_http_opts opts{};
  std::string dbpath;

  void SetUp() override {
    Dir::SetUp();
    dbpath = db().string();
    std::string ini = "[monitor]\nhttp = 127.0.0.1:0\n[service.web]\n"
                      "command = /bin/sleep 600\nport = 7100\n"
                      "health = tcp://127.0.0.1:7100\n";
    char err[256];
    ASSERT_EQ(mon_config_parse(ini.data(), ini.size(), "t", false, &cfg, err,
                               sizeof err),
              0)
        << err;
    mon_store *st;
    ASSERT_EQ(mon_store_open(dbpath.c_str(), &st, err, sizeof err), 0) << err;
    int64_t sid, now = wall_ms();
    ASSERT_EQ(mon_store_service(st, "web", 7100, cfg.services[0].command, &sid),
              0);
    ASSERT_EQ(mon_store_begin(st), 0);
    for (int k = 0; k < 20; k++) { // the last 20 s, for the graphs
      mon_sample smp{};
      smp.valid = smp.cpu_valid = true;
      smp.cpu_pct = k;
      smp.rss_bytes = 1 << 20;
      smp.nprocs = 1;
      ASSERT_EQ(mon_store_sample(st, sid, now - 20000 + k * 1000, &smp), 0);
      std::string line = "line " + std::to_string(k);
      ASSERT_EQ(mon_store_log(st, sid, now - 20000 + k * 1000, "stdout",
                              line.c_str(), line.size()),
                0);
    }
    ASSERT_EQ(mon_store_event(st, sid, now - 1000, "start", "spawned pid 42"),
              0);
    mon_method_delta d{};
    d.name = "get";
    d.calls = 10;
    d.total_ns = 5000;
    d.pct_valid = true;
    d.p50_ns = 400;
    d.p99_ns = 900;
    ASSERT_EQ(mon_store_method(st, sid, now - 2000, &d), 0);
    ASSERT_EQ(mon_store_commit(st), 0);
    mon_store_close(st);
    ASSERT_EQ(mon_shared_init(&shared, 1), 0);
    mon_view v{};
    v.sid = sid;
    v.state = MON_RUNNING;
    v.pid = 42;
    v.nprocs = 1;
    v.started_wall_ms = now - 5000;
    v.cpu_valid = true;
    v.cpu_pct = 3;
    cref = mon_config_ref_new(&cfg, false);
    ASSERT_NE(cref, nullptr);
    ASSERT_EQ(mon_shared_publish(&shared, cref, &v, 1), 0);
    ASSERT_EQ(mon_sse_hub_new(&hub), 0);
    metrics = mon_metrics_new();
    ASSERT_NE(metrics, nullptr);
    opts = {&cfg, &shared, "sekrit", dbpath.c_str(), hub, metrics};
  }
  void TearDown() override {
    mon_metrics_free(metrics);
    mon_sse_hub_free(hub);
    if (cref)
      mon_shared_release(&shared, cref);
    mon_shared_fini(&shared);
    mon_config_fini(&cfg);
    Dir::TearDown();
  }

  // One run: a fresh server, the request with nth armed (-1: none), then
  // the same request unarmed, which must succeed. "" if all was well.
  std::string attempt(const std::string &path, long nth, bool persistent,
                      int *status) {
    mon_http *h;
    char err[256];
    if (mon_http_start(&opts, &h, err, sizeof err) != 0)
      return std::string("mon_http_start: ") + err;
    int port = mon_http_port(h);
    std::string why;
    if (nth >= 0)
      svc__fault_arm(kMonitorOps, nth, persistent, 0);
    int64_t t0 = now_ms();
    Resp r = http_get(port, path);
    svc__fault_disarm();
    int64_t took = now_ms() - t0;
    *status = r.status;
    if (r.status != 200 && (r.status < 500 || r.status > 599))
      why = "answered " + std::to_string(r.status) + " (0: not at all)";
    else if (r.status == 200 && !well_formed(path, r.body))
      why = "a 200 with a truncated body: ..." +
            r.body.substr(r.body.size() > 80 ? r.body.size() - 80 : 0);
    else if (took > 5000)
      why = "took " + std::to_string(took) + " ms";
    Resp again = http_get(port, path);
    if (why.empty() && (again.status != 200 || !well_formed(path, again.body)))
      why = "the request after answered " + std::to_string(again.status);
    mon_http_stop(h);
    return why;
  }
  static bool well_formed(const std::string &path, const std::string &body) {
    if (path == "/metrics")
      return body.find("# TYPE svc_up gauge") != std::string::npos &&
             body.find("svc_write_bytes_total{service=\"web\"}") !=
                 std::string::npos;
    if (path.compare(0, 5, "/api/") == 0)
      return body.size() > 2 && body.compare(body.size() - 2, 2, "}\n") == 0;
    return body.find("</html>") != std::string::npos;
  }

  void fail_each(const std::string &path, bool persistent) {
    int status;
    std::string why = attempt(path, -1, false, &status);
    ASSERT_EQ(why, "") << path;
    int fds = count_fds();
    why = attempt(path, 0, false, &status);
    ASSERT_EQ(why, "") << path;
    long total = svc__fault_calls();
    ASSERT_GT(total, 0) << path << " made no wrapped call";
    long n = 1;
    Tally tally;
    for (;; n++) {
      why = attempt(path, n, persistent, &status);
      if (svc__fault_injected() == 0)
        break;
      std::string op = op_name();
      tally.add(status != 200);
      EXPECT_EQ(why, "") << path << " nth " << n << " (" << op << ")";
      EXPECT_EQ(count_fds(), fds)
          << path << " nth " << n << " (" << op << "): " << list_fds();
      if (::testing::Test::HasFailure())
        break;
    }
    EXPECT_EQ(FAULT_LEAKS(), 0) << path;
    printf("GET %s: %ld calls counted, %ld runs failing one %s: %s\n",
           path.c_str(), total, n, persistent ? "and every later one" : "once",
           tally.str().c_str());
  }
};

// The dashboard's pages and the JSON API's routes, the store's among them.
const char *const kRoutes[] = {"/api/services",
                               "/api/monitor",
                               "/metrics",
                               "/",
                               "/service/web",
                               "/service/web?q=line",
                               "/api/services/web/metrics",
                               "/api/services/web/logs?tail=5",
                               "/api/services/web/logs?q=line+1",
                               "/api/services/web/methods"};

TEST_F(HttpFault, EachCallFailedOnce) {
  for (const char *path : kRoutes)
    fail_each(path, false);
}

TEST_F(HttpFault, EachCallFailedAndEveryOneAfter) {
  for (const char *path : kRoutes)
    fail_each(path, true);
}

// ---- the store failing for a while: the writer's calls refused ----

// Unit level: the store's own recovery.
class StoreRecovery : public Dir {
protected:
  mon_store *st = nullptr;
  int64_t sid = 0;
  void SetUp() override {
    Dir::SetUp();
    char err[256];
    ASSERT_EQ(mon_store_open(db().c_str(), &st, err, sizeof err), 0) << err;
    ASSERT_EQ(mon_store_service(st, "a", 0, "/bin/true", &sid), 0);
  }
  void TearDown() override {
    svc__fault_disarm();
    mon_store_close(st);
    Dir::TearDown();
  }
  int sample(int64_t ts) {
    mon_sample s{};
    s.valid = true;
    s.rss_bytes = 1;
    s.nprocs = 1;
    return mon_store_sample(st, sid, ts, &s);
  }
  // The store's next SQLite call fails, as SQLite says when the disk is
  // full; the ones after it do not.
  static void fail_next_call() {
    svc__fault_arm(SVC_FAULT_BIT(SVC_FAULT_STORE), 1, false, ENOSPC);
  }
};

// Regression: a COMMIT that failed left its transaction open (as SQLite
// does after SQLITE_BUSY, and may after SQLITE_FULL), so every BEGIN after
// it failed: the monitor never wrote again, even once space returned.
TEST_F(StoreRecovery, AFailedCommitLeavesNoTransactionOpen) {
  ASSERT_EQ(mon_store_begin(st), 0);
  ASSERT_EQ(sample(1000), 0);
  fail_next_call();
  EXPECT_NE(mon_store_commit(st), 0);
  EXPECT_STREQ(mon_store_error(st), "database or disk is full");
  svc__fault_disarm();
  ASSERT_EQ(mon_store_begin(st), 0) << mon_store_error(st);
  ASSERT_EQ(sample(2000), 0);
  ASSERT_EQ(mon_store_commit(st), 0) << mon_store_error(st);
  EXPECT_EQ(sql_value(db(), "SELECT group_concat(ts_ms) FROM samples"), 2000)
      << "the lost transaction's sample is gone, the next one is there";
}

// Regression: minutes folded into samples_1m in a transaction that was
// lost were marked done anyway, and never folded again.
TEST_F(StoreRecovery, MinutesFoldedInALostTransactionAreFoldedAgain) {
  const int64_t M = 60000, t = 1000 * M; // a minute boundary
  ASSERT_EQ(mon_store_begin(st), 0);
  for (int k = 0; k < 6; k++)
    ASSERT_EQ(sample(t + k * 10000), 0);
  ASSERT_EQ(mon_store_maintain(st, t + 30000, 7), 0);
  ASSERT_EQ(mon_store_commit(st), 0);
  // the next minute: minute t is folded, but the COMMIT fails
  ASSERT_EQ(mon_store_begin(st), 0);
  ASSERT_EQ(mon_store_maintain(st, t + M + 1000, 7), 0);
  fail_next_call();
  EXPECT_NE(mon_store_commit(st), 0);
  svc__fault_disarm();
  EXPECT_EQ(sql_value(db(), "SELECT count(*) FROM samples_1m"), 0);
  ASSERT_EQ(mon_store_begin(st), 0);
  ASSERT_EQ(mon_store_maintain(st, t + M + 2000, 7), 0);
  ASSERT_EQ(mon_store_commit(st), 0);
  EXPECT_EQ(sql_value(db(), "SELECT count(*) FROM samples_1m WHERE ts_ms = " +
                                std::to_string(t)),
            1);
  EXPECT_EQ(sql_value(db(), "SELECT n FROM samples_1m"), 6);
}

// Reads /api/events into *seen until want appears in it (or bound_ms pass).
void sse_until(int fd, const std::string &want, int bound_ms,
               std::string *seen) {
  read_for(fd, *seen, bound_ms, [&](const std::string &s) {
    return s.find(want) != std::string::npos;
  });
}

// The whole monitor with its writer's calls failing for a while: the
// disk full (ENOSPC: SQLITE_FULL), or an I/O error (EIO: SQLITE_IOERR).
struct StoreOutage {
  int err;
  const char *text; // what SQLite says
};

// For test names and messages: what SQLite says.
void PrintTo(const StoreOutage &o, std::ostream *os) { *os << o.text; }

class StoreFailing : public Dir,
                     public ::testing::WithParamInterface<StoreOutage> {};

TEST_P(StoreFailing, SupervisionGoesOnAndWritingResumesByItself) {
  const StoreOutage o = GetParam();
  write_config("[service.steady]\ncommand = /bin/sleep 600\nstart_secs = 0\n"
               "[service.crashy]\ncommand = /bin/sh -c 'sleep 0.2; exit 3'\n"
               "start_secs = 0\nrestart = always\nstart_retries = -1\n"
               "backoff_ms = 50\nbackoff_max_ms = 100\n");
  mon_config cfg;
  ASSERT_TRUE(load_config(&cfg));
  {
    InProcessMonitor m(&cfg);
    ASSERT_TRUE(m.start()) << m.err();
    int port = m.port();
    auto samples = [&] {
      return sql_value(db(), "SELECT count(*) FROM samples s JOIN services v"
                             " ON v.id = s.service_id WHERE v.name = 'steady'");
    };
    ASSERT_TRUE(eventually([&] { return samples() > 2; }, 20000));
    std::string mon_json = http_get(port, "/api/monitor").body;
    EXPECT_NE(mon_json.find("\"store\":{\"ok\":true,\"error\":null,"
                            "\"since_ms\":null}"),
              std::string::npos)
        << mon_json;
    EXPECT_NE(mon_json.find("\"version\":\""), std::string::npos);
    EXPECT_NE(mon_json.find("\"uptime\":"), std::string::npos);
    int live =
        open_stream(port, "/api/events", "Accept: text/event-stream\r\n");
    ASSERT_GE(live, 0);
    std::string seen;
    sse_until(live, "event: state", 5000, &seen); // subscribed

    int64_t failing_from = wall_ms();
    svc__fault_arm(SVC_FAULT_BIT(SVC_FAULT_STORE), 1, true, o.err);
    ASSERT_TRUE(eventually(
        [&] {
          mon_json = http_get(port, "/api/monitor").body;
          return mon_json.find("\"ok\":false") != std::string::npos;
        },
        10000))
        << mon_json;
    EXPECT_NE(mon_json.find(std::string("\"error\":\"") + o.text + "\""),
              std::string::npos)
        << mon_json;
    int64_t since = std::stoll(field(mon_json, "since_ms"));
    EXPECT_GE(since, failing_from - 5);
    EXPECT_LE(since, wall_ms());
    // the live stream tells the open dashboards
    sse_until(live, "\"ok\":false", 5000, &seen);
    EXPECT_NE(seen.find("event: monitor\ndata: {\"store\":{\"ok\":false"),
              std::string::npos)
        << seen;
    Resp page = http_get(port, "/");
    EXPECT_EQ(page.status, 200);
    EXPECT_NE(page.body.find("id=\"store-banner\""), std::string::npos);
    EXPECT_NE(page.body.find(o.text), std::string::npos);
    // supervision goes on; the rest of the HTTP side reads as before
    int restarts = std::stoi(field(service_json(port, "crashy"), "restarts"));
    std::string pid = field(service_json(port, "steady"), "pid");
    ASSERT_TRUE(eventually(
        [&] {
          return std::stoi(field(service_json(port, "crashy"), "restarts")) >=
                 restarts + 2;
        },
        20000));
    EXPECT_EQ(field(service_json(port, "steady"), "pid"), pid);
    EXPECT_EQ(http_get(port, "/metrics").status, 200);
    EXPECT_EQ(http_get(port, "/service/crashy").status, 200);
    int64_t frozen = samples();
    std::this_thread::sleep_for(300ms);
    EXPECT_EQ(samples(), frozen) << "written while every write fails";
    int64_t failing_to = wall_ms();

    svc__fault_disarm();
    ASSERT_TRUE(eventually(
        [&] {
          mon_json = http_get(port, "/api/monitor").body;
          return mon_json.find("\"ok\":true") != std::string::npos;
        },
        10000))
        << mon_json;
    EXPECT_NE(mon_json.find("\"error\":null,\"since_ms\":null"),
              std::string::npos);
    sse_until(live, "\"ok\":true", 5000, &seen);
    EXPECT_NE(seen.find("event: monitor\ndata: {\"store\":{\"ok\":true"),
              std::string::npos);
    close(live);
    EXPECT_TRUE(eventually([&] { return samples() > frozen + 2; }, 10000));
    EXPECT_EQ(http_get(port, "/").body.find("id=\"store-banner\""),
              std::string::npos);
    // the events of the outage waited for the store
    EXPECT_GE(
        sql_value(db(), "SELECT count(*) FROM events e JOIN services v"
                        " ON v.id = e.service_id WHERE v.name = "
                        "'crashy' AND e.kind = 'restart' AND e.ts_ms >= " +
                            std::to_string(failing_from) + " AND e.ts_ms < " +
                            std::to_string(failing_to)),
        2);
    ASSERT_TRUE(m.stop());
    EXPECT_EQ(m.rc(), 0) << m.err();
  }
  mon_config_fini(&cfg);
}

INSTANTIATE_TEST_SUITE_P(
    Outages, StoreFailing,
    ::testing::Values(StoreOutage{ENOSPC, "database or disk is "
                                          "full"},
                      StoreOutage{EIO, "disk I/O error"}),
    [](const auto &info) {
      return std::string(info.param.err == ENOSPC ? "DiskFull" : "IoError");
    });

// ---- fork refused ----

// fork failing with EAGAIN (RLIMIT_NPROC, or the kernel out of pids) when
// a service is to be restarted: BACKOFF, an event, the monitor goes on,
// and the service starts once fork works again.
class ForkFault : public Dir {};

TEST_F(ForkFault, RefusedBacksOffWithAnEventAndStartsOnceForkWorks) {
  write_config("[service.steady]\ncommand = /bin/sleep 600\nstart_secs = 0\n"
               "start_retries = -1\nbackoff_ms = 50\nbackoff_max_ms = 100\n");
  mon_config cfg;
  ASSERT_TRUE(load_config(&cfg));
  {
    InProcessMonitor m(&cfg);
    ASSERT_TRUE(m.start()) << m.err();
    int port = m.port();
    std::string s;
    ASSERT_TRUE(becomes_running(port, "steady", &s));
    int pid = std::stoi(field(s, "pid"));
    int64_t refused_from = wall_ms();
    svc__fault_arm(SVC_FAULT_BIT(SVC_FAULT_FORK), 1, true, EAGAIN);
    ASSERT_EQ(kill(pid, SIGKILL), 0);
    std::vector<std::string> states;
    ASSERT_TRUE(eventually(
        [&] {
          std::string st = field(service_json(port, "steady"), "state");
          if (states.empty() || states.back() != st)
            states.push_back(st);
          return st == "BACKOFF" && svc__fault_injected() >= 3;
        },
        20000))
        << svc__fault_injected() << " forks refused";
    EXPECT_EQ(http_get(port, "/api/monitor").status, 200);
    auto refusals = [&] {
      return sql_value(db(), "SELECT count(*) FROM events e JOIN services v"
                             " ON v.id = e.service_id WHERE v.name = 'steady'"
                             " AND e.kind = 'exit' AND e.detail = 'spawn "
                             "failed: Resource temporarily unavailable' AND"
                             " e.ts_ms >= " +
                                 std::to_string(refused_from));
    };
    EXPECT_TRUE(eventually([&] { return refusals() >= 2; }, 10000));
    svc__fault_disarm();
    ASSERT_TRUE(becomes_running(port, "steady", &s)) << s;
    EXPECT_NE(std::stoi(field(s, "pid")), pid);
    ASSERT_TRUE(m.stop());
    EXPECT_EQ(m.rc(), 0) << m.err();
  }
  mon_config_fini(&cfg);
}

// ---- the sampler alone, on a fixture tree: the sample or none ----

// A stat, io or smaps_rollup file that cannot be read for want of fds or
// memory is not a process that is gone: the tick gives no sample rather
// than one that leaves the process out. Every wrapped call of a tick is
// failed in turn; each tick either fails or gives exactly what the
// unfailed tick gives.
class SampleFault : public Dir {
protected:
  // dir/a: the fixture tree at the first tick; dir/b: a second later (CPU
  // and IO grew); dir/cur: a link to the one the sampler reads.
  void SetUp() override {
    Dir::SetUp();
    const fs::path fix = fs::path(MON_FIXTURES) / "proc";
    fs::copy(fix, dir / "a", fs::copy_options::recursive);
    std::ofstream(dir / "a" / "1235" / "smaps_rollup") << "Pss: 120 kB\n";
    fs::copy(dir / "a", dir / "b", fs::copy_options::recursive);
    bump(1234, 540, 9000, 1000, "read_bytes: 5096\nwrite_bytes: 8192\n");
    bump(1235, 150, 9100, 500, "read_bytes: 10\nwrite_bytes: 20\n");
  }
  void bump(int pid, int utime, int start, int rss, const char *io) {
    std::ifstream in(dir / "a" / std::to_string(pid) / "stat");
    std::string line;
    std::getline(in, line);
    std::string comm =
        line.substr(line.find('('), line.rfind(')') + 1 - line.find('('));
    std::ofstream(dir / "b" / std::to_string(pid) / "stat")
        << pid << " " << comm << " S " << (pid == 1234 ? 1 : 1234)
        << " 1234 1234 0 -1 4194304 1 0 0 0 " << utime << " 100 0 0 20 0 1 0 "
        << start << " 2990080 " << rss << " 18446744073709551615 0 0 0\n";
    std::ofstream(dir / "b" / std::to_string(pid) / "io") << io;
  }
  void point(const char *at) {
    fs::remove(dir / "cur");
    fs::create_directory_symlink(dir / at, dir / "cur");
  }
  // Two ticks, the second with nth armed (-1: none): its result.
  int two_ticks(long nth, bool persistent, mon_sample *out) {
    point("a");
    mon_sampler *s = mon_sampler_new((dir / "cur").c_str(), 100, 4096, 1);
    if (!s)
      return -2;
    int roots[2] = {1234, 0};
    int rc = mon_sampler_tick(s, 10000, roots, 2, out);
    if (rc == 0) {
      point("b");
      if (nth >= 0)
        svc__fault_arm(SVC_FAULT_BIT(SVC_FAULT_ALLOC) |
                           SVC_FAULT_BIT(SVC_FAULT_OPEN),
                       nth, persistent, 0);
      rc = mon_sampler_tick(s, 11000, roots, 2, out);
      svc__fault_disarm();
    }
    mon_sampler_free(s);
    return rc;
  }
  static std::string str(const mon_sample &m) {
    std::ostringstream o;
    o << "valid " << m.valid << " nprocs " << m.nprocs << " workers "
      << m.nworkers << " rss " << m.rss_bytes << " cpu " << m.cpu_valid << "/"
      << m.cpu_pct << " io " << m.read_bytes << "/" << m.write_bytes << " pss "
      << m.pss_valid << "/" << m.pss_bytes;
    return o.str();
  }
  void fail_each(bool persistent) {
    mon_sample want[2], got[2];
    ASSERT_EQ(two_ticks(-1, false, want), 0);
    ASSERT_EQ(want[0].nprocs, 3);
    ASSERT_TRUE(want[0].cpu_valid);
    ASSERT_EQ(want[0].read_bytes, 1010u);
    ASSERT_EQ(want[0].pss_bytes, (280u + 120) * 1024);
    ASSERT_EQ(two_ticks(0, false, got), 0);
    long total = svc__fault_calls();
    long n = 1, failed = 0;
    for (;; n++) {
      int rc = two_ticks(n, persistent, got);
      if (svc__fault_injected() == 0)
        break;
      failed += rc != 0;
      if (rc == 0)
        EXPECT_EQ(str(got[0]), str(want[0]))
            << "nth " << n << " (" << op_name() << ")";
      else
        EXPECT_EQ(rc, -1);
    }
    printf("sampler tick: %ld calls counted, %ld runs, %ld without a sample "
           "(%s)\n",
           total, n, failed, persistent ? "and every later one" : "once");
  }
};

TEST_F(SampleFault, EachCallFailedOnceGivesTheSampleOrNone) {
  fail_each(false);
}
TEST_F(SampleFault, EachCallFailedAndEveryOneAfterGivesTheSampleOrNone) {
  fail_each(true);
}

} // namespace

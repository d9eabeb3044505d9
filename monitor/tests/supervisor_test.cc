// supervisor_test.cc — the state table driven by a fake clock and fake
// process operations: no process is ever started here.
#include <gtest/gtest.h>

#include <csignal>
#include <string>
#include <vector>

#include "config.h"
#include "supervisor.h"

namespace {

struct Fake {
  uint64_t now = 1000000;
  int next_pid = 100;
  int spawn_result = 0; // if < 0, spawn fails with it
  int ready = 0;
  std::vector<std::pair<int, int>> signals; // (pid, sig)
  std::vector<std::string> events;          // "kind: detail"
  int health_result = -1;                   // what health_take returns
  std::vector<size_t> health_begun;         // services asked to probe
};

int fake_spawn(void *ctx, size_t) {
  Fake *f = static_cast<Fake *>(ctx);
  return f->spawn_result < 0 ? f->spawn_result : f->next_pid++;
}
void fake_signal(void *ctx, size_t, int pid, int sig) {
  static_cast<Fake *>(ctx)->signals.push_back({pid, sig});
}
int fake_probe(void *ctx, size_t) { return static_cast<Fake *>(ctx)->ready; }
void fake_event(void *ctx, size_t, const char *kind, const char *detail) {
  static_cast<Fake *>(ctx)->events.push_back(std::string(kind) + ": " + detail);
}
uint64_t fake_now(void *ctx) { return static_cast<Fake *>(ctx)->now; }
void fake_health_begin(void *ctx, size_t i) {
  static_cast<Fake *>(ctx)->health_begun.push_back(i);
}
int fake_health_take(void *ctx, size_t, char *why, size_t len) {
  snprintf(why, len, "HTTP 503");
  return static_cast<Fake *>(ctx)->health_result;
}

class Sup : public ::testing::Test {
protected:
  Fake f;
  mon_config cfg{};
  mon_sup sup{};

  void load(const std::string &ini) {
    char err[256];
    ASSERT_EQ(mon_config_parse(ini.data(), ini.size(), "t.ini", false, &cfg,
                               err, sizeof err),
              0)
        << err;
    mon_sup_ops ops{
        fake_spawn,       fake_signal, fake_probe, fake_health_begin,
        fake_health_take, fake_event,  fake_now,   &f};
    ASSERT_EQ(mon_sup_init(&sup, &cfg, &ops), 0);
  }
  void TearDown() override {
    mon_sup_fini(&sup);
    mon_config_fini(&cfg);
  }
  mon_state st() const { return sup.procs[0].state; }
  mon_state st(size_t i) const { return sup.procs[i].state; }
  bool has_event(const std::string &e) const {
    for (const auto &x : f.events)
      if (x == e)
        return true;
    return false;
  }
  void advance(uint64_t ms) {
    f.now += ms;
    mon_sup_tick(&sup);
  }
  void exit_with(int code) {
    mon_sup_reaped(&sup, sup.procs[0].pid, code << 8);
  }
};

TEST_F(Sup, PlainCommandRunsAfterStartSecs) {
  load("[service.a]\ncommand = x\nstart_secs = 2\n");
  mon_sup_autostart(&sup);
  EXPECT_EQ(st(), MON_STARTING);
  EXPECT_EQ(sup.procs[0].pid, 100);
  advance(1999);
  EXPECT_EQ(st(), MON_STARTING);
  EXPECT_EQ(mon_sup_next_deadline(&sup), f.now + 1);
  advance(1);
  EXPECT_EQ(st(), MON_RUNNING);
}

TEST_F(Sup, PingServiceRunsWhenItAnswers) {
  load("[service.a]\ncommand = x\nport = 7000\nready_timeout_ms = 5000\n");
  mon_sup_autostart(&sup);
  advance(3000);
  EXPECT_EQ(st(), MON_STARTING); // uptime alone is not enough
  f.ready = 1;
  advance(MON_PROBE_EVERY_MS);
  EXPECT_EQ(st(), MON_RUNNING);
}

TEST_F(Sup, PingTimeoutStopsAndRetries) {
  load("[service.a]\ncommand = x\nport = 7000\nready_timeout_ms = 1000\n"
       "stop_timeout_ms = 500\nbackoff_ms = 100\n");
  mon_sup_autostart(&sup);
  advance(1000);
  EXPECT_EQ(st(), MON_STOPPING);
  ASSERT_EQ(f.signals.size(), 1u);
  EXPECT_EQ(f.signals[0], std::make_pair(100, SIGTERM));
  mon_sup_reaped(&sup, 100, SIGTERM);
  EXPECT_EQ(st(), MON_BACKOFF);
  advance(100);
  EXPECT_EQ(st(), MON_STARTING);
  EXPECT_EQ(sup.procs[0].pid, 101);
}

TEST_F(Sup, ExponentialBackoffThenFatal) {
  load("[service.a]\ncommand = x\nstart_retries = 3\nbackoff_ms = 100\n"
       "backoff_max_ms = 250\n");
  mon_sup_autostart(&sup);
  uint64_t expect[] = {100, 200, 250};
  for (uint64_t d : expect) {
    exit_with(1);
    ASSERT_EQ(st(), MON_BACKOFF);
    EXPECT_EQ(sup.procs[0].deadline_ms, f.now + d);
    advance(d - 1);
    EXPECT_EQ(st(), MON_BACKOFF);
    advance(1);
    EXPECT_EQ(st(), MON_STARTING);
  }
  exit_with(1);
  EXPECT_EQ(st(), MON_FATAL);
  EXPECT_EQ(sup.procs[0].restarts, 3);
  EXPECT_EQ(f.events.back(), "fatal: gave up after 3 restarts in a row");
  // a start request revives it with a fresh count
  mon_sup_event(&sup, 0, MON_EV_START);
  EXPECT_EQ(st(), MON_STARTING);
  EXPECT_EQ(sup.procs[0].retries, 0);
}

TEST_F(Sup, RetriesForever) {
  load("[service.a]\ncommand = x\nstart_retries = -1\nbackoff_ms = 10\n"
       "backoff_max_ms = 20\n");
  mon_sup_autostart(&sup);
  for (int i = 0; i < 50; i++) {
    exit_with(2);
    ASSERT_EQ(st(), MON_BACKOFF);
    advance(20);
    ASSERT_EQ(st(), MON_STARTING);
  }
}

TEST_F(Sup, RetryCountResetsAfterAMinuteUp) {
  load("[service.a]\ncommand = x\nstart_retries = 1\nbackoff_ms = 10\n");
  mon_sup_autostart(&sup);
  exit_with(1);
  advance(10);
  advance(1000); // running
  EXPECT_EQ(st(), MON_RUNNING);
  advance(MON_RESET_AFTER_MS);
  exit_with(1); // would be the 2nd retry, but it stayed up long enough
  EXPECT_EQ(st(), MON_BACKOFF);
}

TEST_F(Sup, RestartPolicies) {
  load("[service.a]\ncommand = x\n"
       "[service.b]\ncommand = x\nrestart = never\n"
       "[service.c]\ncommand = x\nrestart = always\n");
  mon_sup_autostart(&sup);
  advance(1000);
  mon_sup_reaped(&sup, 100, 0); // a: clean exit, on-failure
  EXPECT_EQ(sup.procs[0].state, MON_EXITED);
  mon_sup_reaped(&sup, 101, SIGSEGV); // b: crash, never
  EXPECT_EQ(sup.procs[1].state, MON_EXITED);
  mon_sup_reaped(&sup, 102, 0); // c: clean exit, always
  EXPECT_EQ(sup.procs[2].state, MON_BACKOFF);
}

TEST_F(Sup, StopEscalatesToSigkill) {
  load("[service.a]\ncommand = x\nstop_timeout_ms = 300\n");
  mon_sup_autostart(&sup);
  advance(1000);
  mon_sup_event(&sup, 0, MON_EV_STOP);
  EXPECT_EQ(st(), MON_STOPPING);
  advance(299);
  EXPECT_EQ(f.signals.size(), 1u);
  advance(1);
  ASSERT_EQ(f.signals.size(), 2u);
  EXPECT_EQ(f.signals[1], std::make_pair(100, SIGKILL));
  mon_sup_reaped(&sup, 100, SIGKILL);
  EXPECT_EQ(st(), MON_STOPPED);
  EXPECT_TRUE(mon_sup_all_down(&sup));
  EXPECT_EQ(f.events.back(), "exit: killed by signal 9 (Killed)");
}

TEST_F(Sup, RestartRequest) {
  load("[service.a]\ncommand = x\n");
  mon_sup_autostart(&sup);
  advance(1000);
  mon_sup_restart(&sup, 0);
  EXPECT_EQ(st(), MON_STOPPING);
  mon_sup_reaped(&sup, 100, SIGTERM);
  EXPECT_EQ(st(), MON_STARTING);
  EXPECT_EQ(sup.procs[0].pid, 101);
  EXPECT_EQ(sup.procs[0].restarts, 1);
  EXPECT_EQ(f.events.back(), "restart: spawned pid 101");
}

TEST_F(Sup, StopDuringBackoffCancels) {
  load("[service.a]\ncommand = x\n");
  mon_sup_autostart(&sup);
  exit_with(1);
  EXPECT_EQ(st(), MON_BACKOFF);
  mon_sup_event(&sup, 0, MON_EV_STOP);
  EXPECT_EQ(st(), MON_STOPPED);
  advance(100000);
  EXPECT_EQ(st(), MON_STOPPED);
}

TEST_F(Sup, SpawnFailureBacksOff) {
  load("[service.a]\ncommand = x\nstart_retries = 0\n");
  f.spawn_result = -2; // ENOENT
  mon_sup_autostart(&sup);
  EXPECT_EQ(st(), MON_FATAL);
}

TEST_F(Sup, UnknownPidIgnored) {
  load("[service.a]\ncommand = x\n");
  mon_sup_autostart(&sup);
  EXPECT_EQ(mon_sup_reaped(&sup, 4242, 0), -1);
  EXPECT_EQ(st(), MON_STARTING);
}

TEST(SupNames, States) {
  EXPECT_STREQ(mon_state_name(MON_STOPPED), "STOPPED");
  EXPECT_STREQ(mon_state_name(MON_FATAL), "FATAL");
  EXPECT_STREQ(mon_state_name((mon_state)99), "UNKNOWN");
}

} // namespace

namespace {

const char *kChain = "[service.a]\ncommand = x\nstart_secs = 1\n"
                     "[service.b]\ncommand = x\nstart_secs = 1\n"
                     "depends_on = a\n"
                     "[service.c]\ncommand = x\nstart_secs = 1\n"
                     "depends_on = b a\n";

TEST_F(Sup, DependsOnStartsAChainInOrder) {
  load(kChain);
  mon_sup_autostart(&sup);
  EXPECT_EQ(st(0), MON_STARTING);
  EXPECT_EQ(st(1), MON_WAITING);
  EXPECT_EQ(st(2), MON_WAITING);
  EXPECT_TRUE(has_event("waiting: waiting for a"));
  EXPECT_TRUE(has_event("waiting: waiting for b, a"));
  advance(999);
  EXPECT_EQ(st(1), MON_WAITING);
  advance(1); // a is RUNNING: b starts in the same tick
  EXPECT_EQ(st(0), MON_RUNNING);
  EXPECT_EQ(st(1), MON_STARTING);
  EXPECT_EQ(st(2), MON_WAITING);
  advance(1000);
  EXPECT_EQ(st(1), MON_RUNNING);
  EXPECT_EQ(st(2), MON_STARTING);
  advance(1000);
  EXPECT_EQ(st(2), MON_RUNNING);
  EXPECT_EQ(sup.procs[0].pid, 100);
  EXPECT_EQ(sup.procs[1].pid, 101);
  EXPECT_EQ(sup.procs[2].pid, 102);
}

TEST_F(Sup, StartingADependentStartsItsDependencies) {
  load("[service.a]\ncommand = x\nautostart = false\n"
       "[service.b]\ncommand = x\nautostart = false\ndepends_on = a\n");
  mon_sup_autostart(&sup);
  EXPECT_EQ(st(0), MON_STOPPED);
  mon_sup_event(&sup, 1, MON_EV_START);
  EXPECT_EQ(st(0), MON_STARTING);
  EXPECT_EQ(st(1), MON_WAITING);
  advance(1000);
  EXPECT_EQ(st(1), MON_STARTING);
}

TEST_F(Sup, AWaitingStartIsCancelledByStop) {
  load(kChain);
  mon_sup_autostart(&sup);
  mon_sup_event(&sup, 2, MON_EV_STOP);
  EXPECT_EQ(st(2), MON_STOPPED);
  advance(1000);
  advance(1000);
  advance(1000);
  EXPECT_EQ(st(1), MON_RUNNING);
  EXPECT_EQ(st(2), MON_STOPPED); // stays down
}

TEST_F(Sup, StopAllGoesInReverseDependencyOrder) {
  load(kChain);
  mon_sup_autostart(&sup);
  advance(1000);
  advance(1000);
  advance(1000);
  ASSERT_EQ(st(2), MON_RUNNING);
  f.signals.clear();
  mon_sup_stop_set(&sup, nullptr);
  ASSERT_EQ(f.signals.size(), 1u); // only c, which nothing depends on
  EXPECT_EQ(f.signals[0], std::make_pair(102, SIGTERM));
  EXPECT_EQ(st(0), MON_RUNNING);
  mon_sup_reaped(&sup, 102, SIGTERM);
  advance(1);
  ASSERT_EQ(f.signals.size(), 2u); // then b
  EXPECT_EQ(f.signals[1], std::make_pair(101, SIGTERM));
  EXPECT_EQ(st(0), MON_RUNNING);
  mon_sup_reaped(&sup, 101, SIGTERM);
  advance(1);
  ASSERT_EQ(f.signals.size(), 3u); // a last
  EXPECT_EQ(f.signals[2], std::make_pair(100, SIGTERM));
  mon_sup_reaped(&sup, 100, SIGTERM);
  EXPECT_TRUE(mon_sup_all_down(&sup));
}

TEST_F(Sup, StopOfSomeWaitsOnlyForDependentsAlsoStopping) {
  load(kChain);
  mon_sup_autostart(&sup);
  advance(1000);
  advance(1000);
  advance(1000);
  f.signals.clear();
  bool which[3] = {true, false, false}; // a alone: b and c stay up
  mon_sup_stop_set(&sup, which);
  ASSERT_EQ(f.signals.size(), 1u);
  EXPECT_EQ(f.signals[0], std::make_pair(100, SIGTERM));
}

const char *kHealthy = "[service.a]\ncommand = x\nstart_secs = 0\n"
                       "health = http://127.0.0.1:8080/healthz\n"
                       "health_interval_ms = 1000\nhealth_failures = 3\n"
                       "backoff_ms = 100\nstop_timeout_ms = 500\n";

TEST_F(Sup, HealthFailuresInARowRestart) {
  load(kHealthy);
  mon_sup_autostart(&sup);
  advance(0);
  ASSERT_EQ(st(), MON_RUNNING);
  advance(0); // the first probe is asked for at once
  ASSERT_EQ(f.health_begun.size(), 1u);
  EXPECT_EQ(mon_sup_next_deadline(&sup), f.now + MON_HEALTH_POLL_MS);
  advance(MON_HEALTH_POLL_MS); // not finished yet
  EXPECT_EQ(sup.procs[0].health, MON_HEALTH_UNKNOWN);
  f.health_result = 0;
  for (int k = 1; k <= 2; k++) {
    advance(MON_HEALTH_POLL_MS);
    EXPECT_EQ(sup.procs[0].health, MON_HEALTH_FAILING);
    EXPECT_EQ(sup.procs[0].health_fails, k);
    EXPECT_STREQ(sup.procs[0].health_why, "HTTP 503");
    EXPECT_EQ(st(), MON_RUNNING);
    advance(1000); // the next probe
  }
  advance(MON_HEALTH_POLL_MS);
  EXPECT_EQ(st(), MON_STOPPING);
  EXPECT_TRUE(has_event("health: 3 failed health probes in a row: HTTP 503"));
  ASSERT_FALSE(f.signals.empty());
  EXPECT_EQ(f.signals.back(), std::make_pair(100, SIGTERM));
  mon_sup_reaped(&sup, 100, SIGTERM << 8);
  EXPECT_EQ(st(), MON_BACKOFF);
  advance(100);
  EXPECT_EQ(st(), MON_STARTING);
  EXPECT_EQ(sup.procs[0].restarts, 1);
  EXPECT_EQ(sup.procs[0].health, MON_HEALTH_UNKNOWN);
}

TEST_F(Sup, APassingProbeResetsTheFailureCount) {
  load(kHealthy);
  mon_sup_autostart(&sup);
  advance(0);
  f.health_result = 0;
  for (int k = 0; k < 2; k++) {
    advance(0);
    advance(MON_HEALTH_POLL_MS);
    advance(1000 - MON_HEALTH_POLL_MS);
  }
  EXPECT_EQ(sup.procs[0].health_fails, 2);
  f.health_result = 1;
  advance(MON_HEALTH_POLL_MS);
  EXPECT_EQ(sup.procs[0].health, MON_HEALTH_PASSING);
  EXPECT_EQ(sup.procs[0].health_fails, 0);
  f.health_result = 0;
  for (int k = 0; k < 2; k++) {
    advance(1000 - MON_HEALTH_POLL_MS);
    advance(MON_HEALTH_POLL_MS);
  }
  EXPECT_EQ(st(), MON_RUNNING); // 2 in a row, not 3
}

TEST_F(Sup, NoProbesWithoutAHealthKey) {
  load("[service.a]\ncommand = x\nstart_secs = 0\n");
  mon_sup_autostart(&sup);
  advance(0);
  advance(20000);
  EXPECT_TRUE(f.health_begun.empty());
}

TEST_F(Sup, MemoryAboveTheLimitForThreeSamplesRestarts) {
  load("[service.a]\ncommand = x\nstart_secs = 0\n"
       "max_memory_restart = 100M\nbackoff_ms = 100\n");
  mon_sup_autostart(&sup);
  advance(0);
  mon_sup_memory(&sup, 0, 200u << 20);
  mon_sup_memory(&sup, 0, 200u << 20);
  mon_sup_memory(&sup, 0, 50u << 20); // a dip starts the count again
  mon_sup_memory(&sup, 0, 200u << 20);
  mon_sup_memory(&sup, 0, 200u << 20);
  EXPECT_EQ(st(), MON_RUNNING);
  mon_sup_memory(&sup, 0, 200u << 20);
  EXPECT_EQ(st(), MON_STOPPING);
  EXPECT_TRUE(has_event("memory: tree RSS 200 MiB above max_memory_restart "
                        "100 MiB for 3 samples"));
  mon_sup_reaped(&sup, 100, SIGTERM);
  EXPECT_EQ(st(), MON_BACKOFF);
  advance(100);
  EXPECT_EQ(st(), MON_STARTING);
}

} // namespace

namespace {

TEST_F(Sup, StartWhileWaitingStartsADependencyThatCameToRest) {
  load("[service.a]\ncommand = x\nautostart = false\nstop_timeout_ms = 500\n"
       "[service.b]\ncommand = x\nautostart = false\ndepends_on = a\n");
  mon_sup_event(&sup, 1, MON_EV_START);
  ASSERT_EQ(st(0), MON_STARTING);
  mon_sup_event(&sup, 0, MON_EV_STOP); // someone stops a meanwhile
  mon_sup_reaped(&sup, sup.procs[0].pid, SIGTERM);
  ASSERT_EQ(st(0), MON_STOPPED);
  EXPECT_EQ(st(1), MON_WAITING);
  mon_sup_event(&sup, 1, MON_EV_START); // asked again: a is started again
  EXPECT_EQ(st(0), MON_STARTING);
  EXPECT_EQ(st(1), MON_WAITING);
}

TEST_F(Sup, AnOrderedStopCancelsABackoffAtOnce) {
  load("[service.b]\ncommand = x\nstart_secs = 0\nbackoff_ms = 5000\n"
       "[service.c]\ncommand = x\nstart_secs = 0\ndepends_on = b\n");
  mon_sup_autostart(&sup);
  advance(0);
  advance(0);
  ASSERT_EQ(st(1), MON_RUNNING);
  mon_sup_reaped(&sup, sup.procs[0].pid, 1 << 8); // b crashed: backs off
  ASSERT_EQ(st(0), MON_BACKOFF);
  mon_sup_stop_set(&sup, nullptr);
  EXPECT_EQ(st(0), MON_STOPPED) << "no process to wait for: not respawned";
  EXPECT_EQ(st(1), MON_STOPPING);
}

} // namespace

namespace {

TEST_F(Sup, HealthIsUnknownBeforeAnyProbe) {
  load("[service.a]\ncommand = x\nautostart = false\n"
       "health = tcp://127.0.0.1:1\n");
  EXPECT_EQ(sup.procs[0].health, MON_HEALTH_UNKNOWN); // not FAILING (0)
}

} // namespace

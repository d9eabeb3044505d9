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
    mon_sup_ops ops{fake_spawn, fake_signal, fake_probe,
                    fake_event, fake_now,    &f};
    ASSERT_EQ(mon_sup_init(&sup, &cfg, &ops), 0);
  }
  void TearDown() override {
    mon_sup_fini(&sup);
    mon_config_fini(&cfg);
  }
  mon_state st() const { return sup.procs[0].state; }
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

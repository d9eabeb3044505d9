// supervision_test.cc — issue 15 against the real svc-monitor binary:
// dependency order, HTTP health probes that restart, reload by SIGHUP and
// POST /api/reload (unchanged services keep their pid), max_memory_restart,
// the alert webhook, rlimits and (where the machine allows) cgroup limits.
#include <atomic>
#include <mutex>
#include <vector>

#include "loopback_http.h"
#include "monitor_fixture.h"

namespace {

// A loopback HTTP server answering every request with `status`.
class TinyHttp {
public:
  std::atomic<int> status{200};
  TinyHttp()
      : http_([this](const std::string &, const std::string &) {
          return LoopbackHttp::status(status.load());
        }),
        port(http_.port()) {}
  std::vector<std::string> bodies() { return http_.bodies(); }

private:
  LoopbackHttp http_;

public:
  const int port;
};

class Supervision : public Monitor {
protected:
  int64_t event_ts(const std::string &service, const std::string &kind,
                   bool last = false) {
    return sql("SELECT " + std::string(last ? "max" : "min") +
               "(ts_ms) FROM events e JOIN services s ON s.id = "
               "e.service_id WHERE s.name = '" +
               service + "' AND e.kind = '" + kind + "'");
  }
  std::string health_state(const std::string &name) {
    std::string all = services();
    size_t p = all.find("{\"name\":\"" + name + "\"");
    if (p == std::string::npos)
      return "";
    size_t h = all.find("\"health\":{\"state\":\"", p);
    size_t next = all.find("{\"name\":\"", p + 1);
    if (h == std::string::npos || (next != std::string::npos && h > next))
      return "";
    h += 19;
    return all.substr(h, all.find('"', h) - h);
  }
};

TEST_F(Supervision, DependencyChainStartsInOrderAndStopsInReverse) {
  write_config("[service.c]\ncommand = /bin/sleep 600\nstart_secs = 1\n"
               "depends_on = b\n"
               "[service.b]\ncommand = /bin/sleep 600\nstart_secs = 1\n"
               "depends_on = a\n"
               "[service.a]\ncommand = /bin/sleep 600\nstart_secs = 1\n");
  start();
  ASSERT_TRUE(
      eventually([&] { return field(svc("c"), "state") == "RUNNING"; }));
  EXPECT_EQ(field(svc("a"), "state"), "RUNNING");
  EXPECT_EQ(field(svc("b"), "state"), "RUNNING");
  EXPECT_EQ(stop_monitor(), 0);
  int64_t start_a = event_ts("a", "start"), ready_a = event_ts("a", "ready"),
          start_b = event_ts("b", "start"), ready_b = event_ts("b", "ready"),
          start_c = event_ts("c", "start");
  ASSERT_GT(start_a, 0);
  EXPECT_LE(start_a, ready_a);
  EXPECT_LE(ready_a, start_b) << "b started before a was RUNNING";
  EXPECT_LE(start_b, ready_b);
  EXPECT_LE(ready_b, start_c) << "c started before b was RUNNING";
  EXPECT_GE(start_c - start_a, 1800) << "two start_secs of 1 s in a row";
  EXPECT_GT(event_ts("c", "waiting"), 0);
  // the stops: c first, a last
  int64_t stop_a = event_ts("a", "stop"), stop_b = event_ts("b", "stop"),
          stop_c = event_ts("c", "stop"), exit_c = event_ts("c", "exit", true),
          exit_b = event_ts("b", "exit", true);
  ASSERT_GT(stop_a, 0);
  EXPECT_LE(stop_c, stop_b);
  EXPECT_LE(exit_c, stop_b) << "b was stopped before c was down";
  EXPECT_LE(exit_b, stop_a) << "a was stopped before b was down";
}

TEST_F(Supervision, FailingHttpHealthRestartsTheService) {
  TinyHttp probe;
  ASSERT_GT(probe.port, 0);
  write_config("[service.web]\ncommand = /bin/sleep 600\nstart_secs = 0\n"
               "health = http://127.0.0.1:" +
               std::to_string(probe.port) +
               "/healthz\nhealth_interval_ms = 200\nhealth_timeout_ms = 500\n"
               "health_failures = 3\nbackoff_ms = 100\n");
  start();
  ASSERT_TRUE(eventually([&] { return health_state("web") == "passing"; }))
      << services();
  std::string pid = field(svc("web"), "pid");
  probe.status = 503;
  ASSERT_TRUE(eventually([&] {
    std::string o = svc("web");
    return field(o, "pid") != pid && field(o, "state") == "RUNNING";
  })) << services();
  EXPECT_GE(num(field(svc("web"), "restarts")), 1);
  EXPECT_TRUE(eventually([&] {
    return sql("SELECT count(*) FROM events WHERE kind = 'health' AND detail "
               "LIKE '3 failed health probes in a row: HTTP 503%'") > 0;
  }));
  probe.status = 200;
  EXPECT_TRUE(eventually([&] { return health_state("web") == "passing"; }));
  std::string metrics = http(port, "GET", "/metrics");
  EXPECT_NE(metrics.find("svc_health_up{service=\"web\"} 1"), std::string::npos)
      << metrics;
  EXPECT_EQ(stop_monitor(), 0);
}

const char *kReloadBase =
    "[service.keep]\ncommand = /bin/sleep 600\nstart_secs = 0\n"
    "[service.change]\ncommand = /bin/sleep 601\nstart_secs = 0\n"
    "[service.gone]\ncommand = /bin/sleep 602\nstart_secs = 0\n";

TEST_F(Supervision, SighupAppliesOnlyTheDifference) {
  write_config(kReloadBase);
  start(true);
  ASSERT_TRUE(eventually([&] {
    return field(svc("keep"), "state") == "RUNNING" &&
           field(svc("change"), "state") == "RUNNING" &&
           field(svc("gone"), "state") == "RUNNING";
  }));
  std::string keep = field(svc("keep"), "pid"),
              change = field(svc("change"), "pid"),
              gone = field(svc("gone"), "pid");
  write_config("[service.keep]\ncommand = /bin/sleep 600\nstart_secs = 0\n"
               "[service.change]\ncommand = /bin/sleep 601\nstart_secs = 0\n"
               "env = CHANGED=1\n"
               "[service.fresh]\ncommand = /bin/sleep 603\nstart_secs = 0\n");
  kill(mon, SIGHUP);
  ASSERT_TRUE(eventually([&] {
    std::string all = services();
    return field(object_of(all, "fresh"), "state") == "RUNNING" &&
           field(object_of(all, "change"), "state") == "RUNNING" &&
           field(object_of(all, "change"), "pid") != change &&
           object_of(all, "gone").empty();
  })) << services();
  EXPECT_EQ(field(svc("keep"), "pid"), keep) << "unchanged: same process";
  EXPECT_TRUE(eventually([&] { return !alive(std::stoi(gone)); }));
  EXPECT_FALSE(alive(std::stoi(change)));
  EXPECT_TRUE(alive(std::stoi(keep)));
  // events reach the database with the next sampling tick
  EXPECT_TRUE(eventually([&] {
    return event_ts("fresh", "reload") > 0 && event_ts("change", "reload") > 0;
  }));
  EXPECT_EQ(event_ts("keep", "reload"), 0) << "no event: unchanged";
  EXPECT_NE(stderr_text().find("reload: added fresh; changed change; "
                               "removed gone; unchanged 1"),
            std::string::npos)
      << stderr_text();
  // the log streams of the kept and the added service still work
  std::string logs = http(port, "GET", "/api/services/fresh/logs");
  EXPECT_NE(logs.find("spawned pid"), std::string::npos) << logs;
  EXPECT_EQ(stop_monitor(), 0);
  EXPECT_FALSE(alive(std::stoi(keep)));
}

TEST_F(Supervision, ARestartDuringAReloadIsAppliedAfterIt) {
  // "slow" takes a second to stop, so the restart lands while the reload
  // waits for it; the reload must still finish, and the restart after it
  write_config("[service.slow]\ncommand = /bin/sh -c 'trap \"sleep 1; exit "
               "0\" TERM; while :; do sleep 0.1; done'\nstart_secs = 0\n"
               "[service.other]\ncommand = /bin/sleep 600\nstart_secs = 0\n");
  start();
  ASSERT_TRUE(eventually([&] {
    return field(svc("slow"), "state") == "RUNNING" &&
           field(svc("other"), "state") == "RUNNING";
  }));
  std::string pid = field(svc("slow"), "pid");
  write_config("[service.slow]\ncommand = /bin/sh -c 'trap \"sleep 1; exit "
               "0\" TERM; while :; do sleep 0.1; done'\nstart_secs = 0\n"
               "env = V=2\n"
               "[service.other]\ncommand = /bin/sleep 600\nstart_secs = 0\n"
               "[service.late]\ncommand = /bin/sleep 606\nstart_secs = 0\n");
  kill(mon, SIGHUP);
  ASSERT_TRUE(
      eventually([&] { return field(svc("slow"), "state") == "STOPPING"; }));
  std::string r = http(port, "POST", "/api/services/slow/restart",
                       "Authorization: Bearer " + token() + "\r\n");
  EXPECT_NE(r.find("HTTP/1.1 202"), std::string::npos) << r;
  ASSERT_TRUE(eventually(
      [&] {
        std::string all = services();
        return field(object_of(all, "late"), "state") == "RUNNING" &&
               field(object_of(all, "slow"), "state") == "RUNNING" &&
               field(object_of(all, "slow"), "pid") != pid;
      },
      30))
      << services();
  EXPECT_EQ(stop_monitor(), 0);
}

TEST_F(Supervision, ABadConfigOnReloadChangesNothing) {
  write_config(kReloadBase);
  start(true);
  ASSERT_TRUE(eventually([&] {
    return field(svc("gone"), "state") == "RUNNING" &&
           field(svc("keep"), "state") == "RUNNING" &&
           field(svc("change"), "state") == "RUNNING";
  }));
  std::string before = services();
  std::string pid = field(svc("keep"), "pid");
  write_config(std::string(kReloadBase) + "[service.bad]\ncommand = x\n"
                                          "depends_on = nowhere\n");
  std::string r = http(port, "POST", "/api/reload",
                       "Authorization: Bearer " + token() + "\r\n");
  EXPECT_NE(r.find("HTTP/1.1 400"), std::string::npos) << r;
  EXPECT_NE(r.find("m.ini:19: service 'bad' depends on unknown 'nowhere'"),
            std::string::npos)
      << r;
  kill(mon, SIGHUP);
  ASSERT_TRUE(eventually([&] {
    return stderr_text().find("reload refused, nothing changed") !=
           std::string::npos;
  }));
  std::this_thread::sleep_for(500ms);
  EXPECT_EQ(field(svc("keep"), "pid"), pid);
  EXPECT_TRUE(object_of(services(), "bad").empty());
  EXPECT_EQ(field(svc("gone"), "state"), "RUNNING");
  // without the token: refused before the file is read
  r = http(port, "POST", "/api/reload");
  EXPECT_NE(r.find("HTTP/1.1 401"), std::string::npos) << r;
  EXPECT_EQ(stop_monitor(), 0);
}

TEST_F(Supervision, ReloadByPostAnswersWithThePlan) {
  write_config(kReloadBase);
  start();
  ASSERT_TRUE(
      eventually([&] { return field(svc("keep"), "state") == "RUNNING"; }));
  write_config(std::string(kReloadBase) +
               "[service.extra]\ncommand = /bin/sleep 604\nstart_secs = 0\n");
  std::string r = http(port, "POST", "/api/reload",
                       "Authorization: Bearer " + token() + "\r\n");
  EXPECT_NE(r.find("HTTP/1.1 202"), std::string::npos) << r;
  EXPECT_NE(r.find("\"added\":[\"extra\"]"), std::string::npos) << r;
  EXPECT_NE(r.find("\"removed\":[]"), std::string::npos) << r;
  EXPECT_TRUE(
      eventually([&] { return field(svc("extra"), "state") == "RUNNING"; }));
  EXPECT_EQ(stop_monitor(), 0);
}

TEST_F(Supervision, TheReloadCommand) {
  int fixed = loopback_free_port();
  ASSERT_GT(fixed, 0);
  auto config = [&](const std::string &services) {
    write_config(services);
    std::ifstream in(dir / "m.ini");
    std::stringstream ss;
    ss << in.rdbuf();
    std::string ini = ss.str();
    ini.replace(ini.find("127.0.0.1:0"), 11,
                "127.0.0.1:" + std::to_string(fixed));
    std::ofstream(dir / "m.ini") << ini;
  };
  config(kReloadBase);
  start();
  ASSERT_EQ(port, fixed);
  std::string cfg = "--config " + (dir / "m.ini").string();
  CliRun r = run_cli(cfg + " reload");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(r.out, "no service changed\n");
  config("[service.keep]\ncommand = /bin/sleep 600\nstart_secs = 0\n"
         "[service.more]\ncommand = /bin/sleep 605\nstart_secs = 0\n");
  r = run_cli(cfg + " reload");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(r.out, "added: more\nremoved: change gone\n");
  EXPECT_TRUE(
      eventually([&] { return field(svc("more"), "state") == "RUNNING"; }));
  std::ofstream(dir / "m.ini", std::ios::app) << "bogus line\n";
  r = run_cli(cfg + " reload");
  EXPECT_EQ(r.code, 2) << r.out; // the command reads the config first
  EXPECT_NE(r.out.find("m.ini:14: syntax error"), std::string::npos) << r.out;
  EXPECT_EQ(stop_monitor(), 0);
}

TEST_F(Supervision, MaxMemoryRestartRestartsAServiceThatGrows) {
  write_config("[service.hog]\ncommand = " + std::string(MON_MEMHOLD) +
               " 96\nstart_secs = 0\nmax_memory_restart = 48M\n"
               "backoff_ms = 100\nstart_retries = -1\n");
  start();
  ASSERT_TRUE(eventually([&] {
    return sql("SELECT count(*) FROM events WHERE kind = 'memory'") > 0;
  }));
  EXPECT_GT(sql("SELECT count(*) FROM events WHERE kind = 'memory' AND "
                "detail LIKE 'tree RSS % MiB above max_memory_restart 48 MiB"
                " for 3 samples'"),
            0);
  EXPECT_TRUE(
      eventually([&] { return num(field(svc("hog"), "restarts")) >= 1; }));
  EXPECT_EQ(stop_monitor(), 0);
}

TEST_F(Supervision, TheWebhookGetsOneJsonPostForAFatalService) {
  TinyHttp hook;
  ASSERT_GT(hook.port, 0);
  std::ofstream(dir / "m.ini")
      << "[monitor]\nhttp = 127.0.0.1:0\ndb = " << (dir / "m.sqlite").string()
      << "\nlog_dir = " << (dir / "logs").string()
      << "\ntoken_file = " << (dir / "token").string()
      << "\nsample_interval_ms = 200\nalert_webhook = http://127.0.0.1:"
      << hook.port << "/hook\n"
      << "[service.crash]\ncommand = /bin/false\nstart_retries = 1\n"
         "backoff_ms = 100\nstart_secs = 1\n";
  start();
  ASSERT_TRUE(
      eventually([&] { return field(svc("crash"), "state") == "FATAL"; }));
  ASSERT_TRUE(eventually([&] { return !hook.bodies().empty(); }, 20));
  std::this_thread::sleep_for(1s); // no second one
  std::vector<std::string> got = hook.bodies();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_NE(got[0].find("\"service\":\"crash\""), std::string::npos) << got[0];
  EXPECT_NE(got[0].find("\"kind\":\"fatal\""), std::string::npos) << got[0];
  EXPECT_NE(got[0].find("\"detail\":\"gave up after 1 restarts in a row\""),
            std::string::npos)
      << got[0];
  EXPECT_NE(got[0].find("\"ts_ms\":"), std::string::npos);
  EXPECT_NE(got[0].find("\"host\":"), std::string::npos);
  EXPECT_EQ(stop_monitor(), 0);
}

TEST_F(Supervision, RlimitsAreSetBeforeExec) {
  write_config("[service.lim]\ncommand = /bin/sh -c 'echo nofile=$(ulimit -n)"
               " core=$(ulimit -c); exec sleep 600'\nstart_secs = 0\n"
               "rlimit_nofile = 77\nrlimit_core = 0\n");
  start();
  ASSERT_TRUE(eventually([&] {
    return http(port, "GET", "/api/services/lim/logs")
               .find("nofile=77 core=0") != std::string::npos;
  })) << http(port, "GET", "/api/services/lim/logs");
  EXPECT_EQ(stop_monitor(), 0);
}

TEST_F(Supervision, MemoryMaxInACgroupWhereTheMachineAllowsIt) {
  write_config("[service.boxed]\ncommand = " + std::string(MON_MEMHOLD) +
               " 256\nstart_secs = 0\nmemory_max = 64M\nstart_retries = 0\n"
               "restart = never\n");
  start(true);
  ASSERT_TRUE(eventually([&] {
    std::string st = field(svc("boxed"), "state");
    return st == "EXITED" || st == "FATAL" ||
           stderr_text().find("memory_max/cpu_max ignored") !=
               std::string::npos ||
           http(port, "GET", "/api/services/boxed/logs")
                   .find("holding 256 MiB") != std::string::npos;
  }));
  std::string err = stderr_text();
  if (err.find("memory_max/cpu_max ignored") != std::string::npos) {
    stop_monitor();
    GTEST_SKIP() << "no cgroup v2 subtree for the monitor here: "
                 << err.substr(err.find("ignored"));
  }
  EXPECT_TRUE(
      eventually([&] { return field(svc("boxed"), "state") == "EXITED"; }));
  EXPECT_TRUE(eventually([&] {
    return sql("SELECT count(*) FROM events WHERE kind = 'exit' AND detail "
               "LIKE 'killed by signal 9%'") > 0;
  })) << "the kernel's OOM killer inside memory.max";
  EXPECT_EQ(stop_monitor(), 0);
}

} // namespace

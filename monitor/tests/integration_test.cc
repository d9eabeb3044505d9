// integration_test.cc — runs the real svc-monitor binary on a temporary
// config with a CPU-burning, a crashing, a memory-holding and an fd-listing
// service, and checks states, samples, logs and events through the JSON API
// and the SQLite file; then the kill -9 / restart orphan strategy.
// Waits poll for conditions with generous deadlines: the machine is loaded.
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <svc.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>

#include "monitor_fixture.h"

namespace {

TEST_F(Monitor, EndToEnd) {
  write_config(
      "[service.burn]\ncommand = /bin/sh -c \"while :; do :; done\"\n"
      "start_secs = 0\n\n"
      "[service.crash]\ncommand = /bin/sh -c 'echo \"dying <now>\" >&2; "
      "exit 3'\nstart_retries = 2\nbackoff_ms = 100\n\n"
      "[service.mem]\ncommand = " MON_MEMHOLD " 64\nstart_secs = 0\n\n"
      "[service.fds]\ncommand = /bin/ls /proc/self/fd\nrestart = never\n"
      "\n[service.envsvc]\ncommand = /bin/sh -c 'pwd; echo \"$FOO|$BAZ|"
      "$SVC_SERVICE_NAME|$SVC_SERVICE_PORT|$SVC_WORKERS_MIN|"
      "$SVC_WORKERS_MAX\"'\nrestart = never\nport = 7311\nworkers_max = 3\n"
      "env = FOO=\"b a r\"\nenv_file = " +
      (dir / "env").string() + "\ndirectory = " + (dir / "logs").string() +
      "\n");
  std::ofstream(dir / "env") << "# comment\nexport BAZ=qux\n";
  start();

  EXPECT_TRUE(eventually([&] {
    std::string o = svc("crash");
    return field(o, "state") == "FATAL" && field(o, "restarts") == "2";
  })) << services();
  EXPECT_TRUE(eventually([&] {
    std::string o = svc("burn");
    return field(o, "state") == "RUNNING" && num(field(o, "cpu_pct")) > 5;
  })) << services();
  EXPECT_TRUE(eventually([&] {
    std::string o = svc("mem");
    return field(o, "state") == "RUNNING" &&
           num(field(o, "rss_bytes")) >= 64.0 * 1024 * 1024;
  })) << services();
  EXPECT_TRUE(eventually([&] {
    return field(svc("fds"), "state") == "EXITED";
  })) << services();

  // samples, events and logs reached the SQLite file
  EXPECT_TRUE(eventually([&] {
    return sql("SELECT count(*) FROM samples s JOIN services v ON "
               "v.id=s.service_id WHERE v.name='burn' AND cpu_pct > 5") >= 2;
  }));
  EXPECT_GE(sql("SELECT max(rss_bytes) FROM samples s JOIN services v ON "
                "v.id=s.service_id WHERE v.name='mem'"),
            64LL << 20);
  EXPECT_TRUE(eventually([&] {
    return sql("SELECT count(*) FROM events e JOIN services v ON "
               "v.id=e.service_id WHERE v.name='crash' AND kind='exit' AND "
               "detail='exited with code 3'") == 3 &&
           sql("SELECT count(*) FROM events e JOIN services v ON "
               "v.id=e.service_id WHERE v.name='crash' AND kind='fatal'") == 1;
  }));
  EXPECT_TRUE(eventually([&] {
    return sql("SELECT count(*) FROM logs l JOIN services v ON "
               "v.id=l.service_id WHERE v.name='crash' AND stream='stderr' "
               "AND line='dying <now>'") == 3;
  }));
  // only 0, 1, 2 (and ls's own directory fd) reach a service
  EXPECT_TRUE(eventually([&] {
    return sql("SELECT count(*) FROM logs l JOIN services v ON "
               "v.id=l.service_id WHERE v.name='fds' AND stream='stdout' AND "
               "line NOT LIKE 'svc-monitor:%'") > 0;
  }));
  EXPECT_LE(sql("SELECT count(*) FROM logs l JOIN services v ON "
                "v.id=l.service_id WHERE v.name='fds' AND stream='stdout' AND "
                "line NOT LIKE 'svc-monitor:%'"),
            4);
  // environment, env_file and directory reach the service
  EXPECT_TRUE(eventually([&] {
    std::string l = http(port, "GET", "/api/services/envsvc/logs");
    return l.find("\"b a r|qux|envsvc|7311|1|3\"") != std::string::npos &&
           l.find("\"" + (dir / "logs").string() + "\"") != std::string::npos;
  })) << http(port, "GET", "/api/services/envsvc/logs");
  // log files, with the monitor's own lines
  std::ifstream lf(dir / "logs" / "crash.stdout.log");
  std::stringstream ls;
  ls << lf.rdbuf();
  EXPECT_NE(ls.str().find("svc-monitor: exited with code 3"),
            std::string::npos);
  EXPECT_NE(ls.str().find("svc-monitor: spawned pid"), std::string::npos);

  // the logs API escapes what the service printed
  std::string logs =
      http(port, "GET", "/api/services/crash/logs?stream=stderr");
  EXPECT_NE(logs.find("dying \\u003cnow\\u003e"), std::string::npos);
  std::string page = http(port, "GET", "/service/crash");
  EXPECT_NE(page.find("dying &lt;now&gt;"), std::string::npos);

  // control: 401 without the token, stop with it
  EXPECT_NE(http(port, "POST", "/api/services/burn/stop").find(" 401 "),
            std::string::npos);
  std::string token;
  std::ifstream(dir / "token") >> token;
  EXPECT_EQ(fs::status(dir / "token").permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
  int burn_pid = (int)num(field(svc("burn"), "pid"));
  EXPECT_NE(http(port, "POST", "/api/services/burn/stop",
                 "Authorization: Bearer " + token + "\r\n")
                .find(" 202 "),
            std::string::npos);
  EXPECT_TRUE(eventually([&] {
    return field(svc("burn"), "state") == "STOPPED";
  })) << services();
  EXPECT_TRUE(eventually([&] { return !alive(burn_pid); }));

  // SIGTERM stops every service, then the monitor exits 0
  int mem_pid = (int)num(field(svc("mem"), "pid"));
  ASSERT_GT(mem_pid, 0);
  int status = stop_monitor();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_TRUE(eventually([&] { return !alive(mem_pid); }, 10));
}

TEST_F(Monitor, KilledMonitorLeavesNoOrphansTwice) {
  // ignores SIGTERM (so the parent-death signal does not end it) and has a
  // child of its own in its session
  write_config("[service.stubborn]\ncommand = /bin/sh -c 'trap \"\" TERM; "
               "sleep 1000 & echo trapped; while :; do sleep 0.2; done'\n"
               "stop_timeout_ms = 500\nstart_secs = 0\n");
  start();
  int old_pid = 0;
  ASSERT_TRUE(eventually([&] {
    std::string o = svc("stubborn");
    old_pid = (int)num(field(o, "pid"));
    return field(o, "state") == "RUNNING" && old_pid > 0 &&
           http(port, "GET", "/api/services/stubborn/logs")
                   .find("\"trapped\"") != std::string::npos;
  }));
  kill(mon, SIGKILL);
  waitpid(mon, nullptr, 0);
  mon = -1;
  close(out_fd);
  out_fd = -1;
  std::this_thread::sleep_for(300ms);
  ASSERT_TRUE(alive(old_pid)); // the orphan survived its monitor

  start(); // the new monitor stops the leftover before starting its own
  EXPECT_TRUE(eventually([&] { return !alive(old_pid); }, 30));
  int new_pid = 0;
  EXPECT_TRUE(eventually([&] {
    std::string o = svc("stubborn");
    new_pid = (int)num(field(o, "pid"));
    return field(o, "state") == "RUNNING" && new_pid > 0;
  }));
  EXPECT_NE(new_pid, old_pid);
  // nothing of the old session is left
  int leftovers = count_processes([&](const ProcStat &p) {
    return p.session == old_pid && p.state != "Z";
  });
  EXPECT_EQ(leftovers, 0);
  int status = stop_monitor();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_TRUE(eventually([&] { return !alive(new_pid); }, 10));
}

#ifdef MON_ECHO_SERVER

TEST_F(Monitor, LibsvcServiceIsRunningOnceItAnswersPing) {
  std::string name = "it-echo-" + std::to_string(getpid());
  write_config(
      "[service." + name + "]\ncommand = " MON_ECHO_SERVER "\nport = " +
      std::to_string(loopback_free_port()) + "\nready_timeout_ms = 60000\n");
  start();
  ASSERT_TRUE(eventually([&] {
    return field(svc(name), "state") == "RUNNING";
  })) << services();
  // the event reaches the file with the next tick's transaction
  EXPECT_TRUE(eventually([&] {
    return sql("SELECT count(*) FROM events WHERE kind='ready'") == 1;
  }));
  int pid = (int)num(field(svc(name), "pid"));
  std::string token;
  std::ifstream(dir / "token") >> token;
  EXPECT_NE(http(port, "POST", "/api/services/" + name + "/restart",
                 "Authorization: Bearer " + token + "\r\n")
                .find(" 202 "),
            std::string::npos);
  EXPECT_TRUE(eventually([&] {
    std::string o = svc(name);
    return field(o, "state") == "RUNNING" && num(field(o, "pid")) != pid;
  })) << services();
  int status = stop_monitor();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

// Worker processes (issue 6) and method statistics (issue 7): an
// echo_server with two workers shows both worker pids, a worker killed
// with -9 becomes a `worker` event, and calls become method_samples rows.
TEST_F(Monitor, LibsvcWorkersAndMethodStatistics) {
  std::string name = "it-wk-" + std::to_string(getpid());
  write_config("[service." + name +
               "]\ncommand = " MON_ECHO_SERVER "\nport = " +
               std::to_string(loopback_free_port()) +
               "\nworkers_min = 2\nready_timeout_ms = 60000\n");
  start();
  std::string obj;
  ASSERT_TRUE(eventually([&] {
    obj = svc(name);
    return field(obj, "state") == "RUNNING" && field(obj, "workers") == "2";
  })) << services();
  // "worker_pids":[a,b]: two distinct live children of the master
  size_t at = obj.find("\"worker_pids\":[");
  ASSERT_NE(at, std::string::npos) << obj;
  int w1 = 0, w2 = 0;
  ASSERT_EQ(sscanf(obj.c_str() + at, "\"worker_pids\":[%d,%d]", &w1, &w2), 2)
      << obj;
  EXPECT_NE(w1, w2);
  EXPECT_TRUE(alive(w1) && alive(w2));
  EXPECT_NE(http(port, "GET", "/").find(std::to_string(w1)), std::string::npos);

  svc_client *c = nullptr;
  ASSERT_EQ(svc_client_open(("shm://" + name).c_str(), &c), 0);
  // a few rounds of calls spread over several sampling ticks
  ASSERT_TRUE(eventually([&] {
    for (int i = 0; i < 50; i++) {
      const void *resp;
      size_t len;
      if (svc_call(c, "echo", "hello", 5, &resp, &len) != 0)
        return false;
    }
    return sql("SELECT coalesce(sum(calls), 0) FROM method_samples"
               " WHERE method = 'echo'") >= 100;
  })) << "no method_samples rows for echo";
  svc_client_close(c);
  EXPECT_EQ(sql("SELECT count(*) FROM method_samples WHERE method = 'echo'"
                " AND (p50_ns IS NULL OR p99_ns < p50_ns OR bytes_in <= 0)"),
            0);
  std::string api = http(port, "GET", "/api/services/" + name + "/methods");
  EXPECT_NE(api.find("\"method\":\"echo\""), std::string::npos) << api;

  // a killed worker is replaced; libsvc's line becomes a `worker` event
  kill(w1, SIGKILL);
  EXPECT_TRUE(eventually([&] {
    return sql("SELECT count(*) FROM events WHERE kind = 'worker' AND detail"
               " LIKE 'worker " +
               std::to_string(w1) + " killed by signal 9%'") == 1;
  })) << sql("SELECT count(*) FROM events");
  EXPECT_TRUE(eventually([&] {
    std::string o = svc(name);
    return field(o, "workers") == "2" &&
           o.find(std::to_string(w1)) == std::string::npos;
  })) << services();
  int status = stop_monitor();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}
#endif

int64_t wall_ns() {
  timespec t{};
  clock_gettime(CLOCK_REALTIME, &t);
  return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

// Issue 14: the live streams of the real binary. A state event reaches an
// open /api/events within 2 s of a restart; a line the service prints (its
// own wall-clock time in it) reaches logs/stream within 1 s.
TEST_F(Monitor, LiveStreamsFollowARestartAndNewLines) {
  write_config("[service.ticker]\ncommand = /bin/sh -c 'while :; do echo "
               "\"now $(date +%s%N)\"; sleep 0.25; done'\nstart_secs = 0\n");
  start();
  ASSERT_TRUE(
      eventually([&] { return field(svc("ticker"), "state") == "RUNNING"; }));
  std::string pid = field(svc("ticker"), "pid");

  int ev = open_stream(port, "/api/events");
  ASSERT_GE(ev, 0);
  std::string got;
  ASSERT_TRUE(read_for(ev, got, 5000, [](const std::string &s) {
    return s.find("\"service\":\"ticker\",\"state\":\"RUNNING\"") !=
           std::string::npos;
  })) << got;
  std::ifstream tf(dir / "token");
  std::string token;
  tf >> token;
  got.clear();
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_NE(http(port, "POST", "/api/services/ticker/restart",
                 "Authorization: Bearer " + token + "\r\n")
                .find(" 202 "),
            std::string::npos);
  // a state event with a new pid, RUNNING again
  bool restarted = read_for(ev, got, 10000, [&](const std::string &s) {
    size_t at = s.find("\"service\":\"ticker\",\"state\":\"RUNNING\",\"pid\":");
    while (at != std::string::npos) {
      if (s.compare(at + 44, pid.size(), pid) != 0)
        return true;
      at = s.find("\"service\":\"ticker\",\"state\":\"RUNNING\",\"pid\":",
                  at + 1);
    }
    return false;
  });
  double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
          .count();
  EXPECT_TRUE(restarted) << got;
  EXPECT_NE(got.find("\"state\":\"STOPPING\""), std::string::npos) << got;
  EXPECT_LT(secs, 2.0) << "the RUNNING event after the restart";
  close(ev);

  int lg = open_stream(port, "/api/services/ticker/logs/stream?stream=stdout");
  ASSERT_GE(lg, 0);
  got.clear();
  // skip the history: wait for lines printed after we connected
  int64_t connected = wall_ns();
  int64_t worst = 0;
  int fresh = 0;
  size_t seen = 0; // each line is timed once, when it first arrives
  read_for(lg, got, 5000, [&](const std::string &s) {
    int64_t now = wall_ns();
    for (size_t at = s.find("\"line\":\"now ", seen);
         at != std::string::npos && at + 31 <= s.size();
         at = s.find("\"line\":\"now ", at + 1)) {
      seen = at + 1;
      int64_t printed = std::stoll(s.substr(at + 12, 19));
      if (printed < connected)
        continue;
      fresh++;
      worst = std::max(worst, now - printed); // an upper bound
    }
    return fresh >= 3;
  });
  EXPECT_GE(fresh, 3) << got;
  EXPECT_LT(worst, 1000000000) << "a line took " << worst / 1e6 << " ms";
  printf(
      "[ info ] restart to RUNNING event %.0f ms; newest line within %.0f ms\n",
      secs * 1000, (double)worst / 1e6);
  close(lg);
  EXPECT_EQ(stop_monitor(), 0);
}

// Issue 14: the control commands against the real binary, every subcommand
// and exit code.
TEST_F(Monitor, ControlCommands) {
  int fixed = loopback_free_port();
  ASSERT_GT(fixed, 0);
  write_config("[service.talker]\ncommand = /bin/sh -c 'echo hello-out; echo "
               "hello-err >&2; while :; do echo tick; sleep 0.2; done'\n"
               "start_secs = 0\n\n[service.idle]\ncommand = /bin/sleep 600\n"
               "start_secs = 0\n");
  { // the same config with a fixed port: the commands need one
    std::ifstream in(dir / "m.ini");
    std::stringstream s;
    s << in.rdbuf();
    std::string ini = s.str();
    ini.replace(ini.find("127.0.0.1:0"), 11,
                "127.0.0.1:" + std::to_string(fixed));
    std::ofstream(dir / "m.ini") << ini;
  }
  std::string cfg = "--config " + (dir / "m.ini").string();
  EXPECT_EQ(run_cli(cfg + " status").code, 3) << "no monitor yet";
  EXPECT_EQ(run_cli(cfg + " status extra").code, 2);
  EXPECT_EQ(run_cli(cfg + " restart").code, 2);
  EXPECT_EQ(run_cli(cfg + " logs").code, 2);
  EXPECT_EQ(run_cli(cfg + " stop -f idle").code, 2);
  EXPECT_EQ(run_cli(cfg + " restart 'bad/name'").code, 2);
  start();
  ASSERT_EQ(port, fixed);
  ASSERT_TRUE(eventually([&] {
    return field(svc("talker"), "state") == "RUNNING" &&
           field(svc("idle"), "state") == "RUNNING";
  }));
  CliRun r = run_cli(cfg + " status");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("NAME"), std::string::npos);
  size_t line = r.out.find("\nidle ");
  ASSERT_NE(line, std::string::npos) << r.out;
  EXPECT_NE(r.out.find("RUNNING", line), std::string::npos);
  EXPECT_NE(r.out.find(field(svc("idle"), "pid"), line), std::string::npos);

  std::string before = field(svc("idle"), "pid");
  r = run_cli(cfg + " restart idle");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("idle: RUNNING, pid "), std::string::npos) << r.out;
  EXPECT_NE(field(svc("idle"), "pid"), before);
  r = run_cli(cfg + " stop idle");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(field(svc("idle"), "state"), "STOPPED");
  r = run_cli(cfg + " start idle");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(field(svc("idle"), "state"), "RUNNING");
  EXPECT_EQ(run_cli(cfg + " restart nosuch").code, 1);

  ASSERT_TRUE(eventually([&] {
    return run_cli(cfg + " logs talker").out.find("hello-out") !=
           std::string::npos;
  }));
  r = run_cli(cfg + " logs --stderr talker");
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.out.find("hello-err"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("hello-out"), std::string::npos);
  // -f: the history, then the lines as they come; cut off after 2 s
  r = run_cli("--config " + (dir / "m.ini").string() +
              " logs -f talker & "
              "sleep 2; kill $!");
  EXPECT_NE(r.out.find("hello-out"), std::string::npos) << r.out;
  size_t ticks = 0;
  for (size_t at = r.out.find("tick"); at != std::string::npos;
       at = r.out.find("tick", at + 1))
    ticks++;
  EXPECT_GE(ticks, 5u) << r.out;

  EXPECT_EQ(stop_monitor(), 0);
  EXPECT_EQ(run_cli(cfg + " status").code, 3);
}

TEST_F(Monitor, BadConfigExits2WithLine) {
  std::ofstream(dir / "m.ini") << "[monitor]\nhttp = 127.0.0.1:0\n"
                                  "[service.a]\ncommand = x\nportt = 1\n";
  std::string cmd = std::string(MON_BINARY) + " --config " +
                    (dir / "m.ini").string() + " 2>" + (dir / "err").string();
  int st = system(cmd.c_str());
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 2);
  std::ifstream f(dir / "err");
  std::string line;
  std::getline(f, line);
  EXPECT_EQ(line,
            (dir / "m.ini").string() + ":5: unknown key 'portt' in [service]");
}

} // namespace

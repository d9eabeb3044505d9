// config_test.cc — the .ini parser: defaults, every error with its line,
// command splitting.
#include <gtest/gtest.h>

#include <string>

#include "config.h"

namespace {

struct Parsed {
  int rc;
  std::string err;
  mon_config cfg;
};

Parsed parse(const std::string &text) {
  Parsed p;
  char err[512];
  p.rc = mon_config_parse(text.data(), text.size(), "t.ini", false, &p.cfg, err,
                          sizeof err);
  p.err = err;
  return p;
}

void expect_error(const std::string &text, const std::string &want) {
  Parsed p = parse(text);
  EXPECT_EQ(p.rc, -1) << text;
  EXPECT_EQ(p.err.rfind(want, 0), 0u) << "got: " << p.err << "\nwant: " << want;
  mon_config_fini(&p.cfg);
}

TEST(Config, DefaultsAndValues) {
  Parsed p = parse("[monitor]\nhttp = 127.0.0.1:6000\ndb = x.sqlite\n"
                   "sample_interval_ms = 500\nretention_days = 3\n"
                   "\n[service.echo]\ncommand = build/echo_server --x 'a b'\n"
                   "port = 5201\nworkers_min = 2\nworkers_max = 4\n"
                   "restart = always ; comment\nstart_retries = -1\n"
                   "env = A=1 B=\"two words\"\ntimestamps = yes\n"
                   "[service.plain]\ncommand = sleep 100\nautostart = false\n");
  ASSERT_EQ(p.rc, 0) << p.err;
  EXPECT_EQ(std::string(p.cfg.http_host), "127.0.0.1");
  EXPECT_EQ(p.cfg.http_port, 6000);
  EXPECT_EQ(p.cfg.sample_interval_ms, 500);
  EXPECT_EQ(p.cfg.retention_days, 3);
  EXPECT_EQ(std::string(p.cfg.log_dir), "logs");
  ASSERT_EQ(p.cfg.nservices, 2u);
  const mon_service_cfg &e = p.cfg.services[0];
  EXPECT_EQ(std::string(e.name), "echo");
  EXPECT_EQ(std::string(e.argv[0]), "build/echo_server");
  EXPECT_EQ(std::string(e.argv[2]), "a b");
  EXPECT_EQ(e.argv[3], nullptr);
  EXPECT_EQ(e.port, 5201);
  EXPECT_EQ(e.workers_min, 2);
  EXPECT_EQ(e.workers_max, 4);
  EXPECT_EQ(e.restart, MON_RESTART_ALWAYS);
  EXPECT_EQ(e.start_retries, -1);
  EXPECT_EQ(e.ready, MON_READY_PING); // has a port
  ASSERT_EQ(e.nenv, 2u);
  EXPECT_EQ(std::string(e.env[1]), "B=two words");
  EXPECT_TRUE(e.timestamps);
  const mon_service_cfg &pl = p.cfg.services[1];
  EXPECT_FALSE(pl.autostart);
  EXPECT_EQ(pl.ready, MON_READY_UPTIME);
  EXPECT_EQ(pl.restart, MON_RESTART_ON_FAILURE);
  EXPECT_EQ(pl.workers_max, 1);
  EXPECT_EQ(pl.start_secs, 1);
  mon_config_fini(&p.cfg);
}

TEST(Config, ErrorsNameTheirLine) {
  expect_error("[monitor]\nhttp = 127.0.0.1:1\nbogus = 1\n",
               "t.ini:3: unknown key 'bogus'");
  expect_error("[service.a]\ncommand = x\n\n[service.b]\nport = 5\n",
               "t.ini:4: service 'b' has no command");
  expect_error("[service.a]\ncommand = x\n[service.a]\ncommand = y\n",
               "t.ini:3: duplicate service name 'a' (first at line 1)");
  expect_error("[service.a]\ncommand = x\nport = 7000\n[service.b]\n"
               "command = y\nport = 7000\n",
               "t.ini:6: duplicate port 7000");
  expect_error("[service.a]\ncommand = x\nport = 12x\n",
               "t.ini:3: bad number '12x' for port");
  expect_error("[service.a]\ncommand = x\nstop_timeout_ms = -5\n",
               "t.ini:3: bad number '-5' for stop_timeout_ms");
  expect_error("[monitor]\nsample_interval_ms = fast\n",
               "t.ini:2: bad number 'fast' for sample_interval_ms");
  expect_error("[monitor]\n\n\nhttp = nowhere\n", "t.ini:4: bad http address");
  expect_error("[service.a]\ncommand = 'unterminated\n",
               "t.ini:2: unterminated quote in command");
  expect_error("[service.a]\ncommand = x\nrestart = sometimes\n",
               "t.ini:3: bad restart 'sometimes'");
  expect_error("[servce.a]\ncommand = x\n", "t.ini:1: unknown section");
  expect_error("[service.../x]\ncommand = x\n", "t.ini:1: bad service name");
  expect_error("key = 1\n", "t.ini:1: key 'key' outside a section");
  expect_error("[monitor]\nthis line has no equals sign\n",
               "t.ini:2: syntax error");
  expect_error("[service.a]\ncommand = x\ncommand = y\n",
               "t.ini:3: key 'command' set twice");
  expect_error("[service.a]\ncommand = x\nenv = 1BAD=x\n",
               "t.ini:3: bad environment entry '1BAD=x'");
  expect_error("[service.a]\ncommand = x\nworkers_min = 4\nworkers_max = 2\n",
               "t.ini:1: service 'a': workers_max < workers_min");
  expect_error("[monitor]\ndb = " + std::string(300, 'x') + "\n",
               "t.ini:2: line longer than");
  expect_error("[service.a]\ncommand = x\nautostart = maybe\n",
               "t.ini:3: bad boolean 'maybe'");
}

TEST(Config, FirstErrorWins) {
  expect_error("[monitor]\nbad1 = 1\nbad2 = 2\n", "t.ini:2:");
}

TEST(Config, LoadMissingFile) {
  mon_config cfg;
  char err[256];
  EXPECT_EQ(mon_config_load("/nonexistent/x.ini", &cfg, err, sizeof err), -1);
  EXPECT_NE(std::string(err).find("/nonexistent/x.ini"), std::string::npos);
}

TEST(Config, SplitCommand) {
  char **argv = nullptr;
  ASSERT_EQ(mon_split_command(R"(a  "b c" 'd "e"' f\ g "h\"i" j'k'l)", &argv),
            6);
  EXPECT_STREQ(argv[0], "a");
  EXPECT_STREQ(argv[1], "b c");
  EXPECT_STREQ(argv[2], "d \"e\"");
  EXPECT_STREQ(argv[3], "f g");
  EXPECT_STREQ(argv[4], "h\"i");
  EXPECT_STREQ(argv[5], "jkl");
  EXPECT_EQ(argv[6], nullptr);
  mon_argv_free(argv);
  EXPECT_EQ(mon_split_command("   ", &argv), 0);
  mon_argv_free(argv);
  EXPECT_EQ(mon_split_command("a \"b", &argv), -1);
  EXPECT_EQ(mon_split_command("a\\", &argv), -1);
  // no expansion of anything
  ASSERT_EQ(mon_split_command("echo $HOME *", &argv), 3);
  EXPECT_STREQ(argv[1], "$HOME");
  EXPECT_STREQ(argv[2], "*");
  mon_argv_free(argv);
}

TEST(Config, NameRules) {
  EXPECT_TRUE(mon_name_valid("echo-1.v2_x"));
  EXPECT_FALSE(mon_name_valid(""));
  EXPECT_FALSE(mon_name_valid(".."));
  EXPECT_FALSE(mon_name_valid("a/b"));
  EXPECT_FALSE(mon_name_valid(std::string(65, 'a').c_str()));
}

} // namespace

// ---- issue 15: dependencies, health, limits, alerts ----

TEST(Config, SupervisionKeys) {
  Parsed p = parse(
      "[monitor]\nalert_webhook = http://127.0.0.1:9000/hook\n"
      "[service.db]\ncommand = x\nhealth = tcp://127.0.0.1:6379\n"
      "[service.web]\ncommand = y\ndepends_on = db, cache\n"
      "health = http://[::1]:8080/healthz?deep=1\nhealth_interval_ms = 500\n"
      "health_timeout_ms = 900\nhealth_failures = 5\nmemory_max = 512M\n"
      "cpu_max = 150\nmax_memory_restart = 1G\nrlimit_nofile = 4096\n"
      "rlimit_core = unlimited\n"
      "[service.cache]\ncommand = z\nhealth = exec:/bin/check --fast 'a b'\n"
      "rlimit_core = 0\n");
  ASSERT_EQ(p.rc, 0) << p.err;
  EXPECT_STREQ(p.cfg.alert_webhook, "http://127.0.0.1:9000/hook");
  EXPECT_STREQ(p.cfg.alert_url.host, "127.0.0.1");
  EXPECT_EQ(p.cfg.alert_url.port, 9000);
  EXPECT_STREQ(p.cfg.alert_url.path, "/hook");
  const mon_service_cfg &db = p.cfg.services[0], &web = p.cfg.services[1],
                        &cache = p.cfg.services[2];
  EXPECT_EQ(db.health, MON_HEALTH_TCP);
  EXPECT_EQ(db.health_url.port, 6379);
  EXPECT_EQ(db.health_interval_ms, 10000); // the defaults
  EXPECT_EQ(db.health_timeout_ms, 2000);
  EXPECT_EQ(db.health_failures, 3);
  EXPECT_EQ(db.rlimit_nofile, MON_RLIMIT_UNSET);
  EXPECT_EQ(db.memory_max, 0);
  ASSERT_EQ(web.ndeps, 2u);
  EXPECT_EQ(web.deps[0], 0);
  EXPECT_EQ(web.deps[1], 2);
  EXPECT_EQ(web.health, MON_HEALTH_HTTP);
  EXPECT_STREQ(web.health_url.host, "::1");
  EXPECT_STREQ(web.health_url.path, "/healthz?deep=1");
  EXPECT_EQ(web.health_interval_ms, 500);
  EXPECT_EQ(web.health_timeout_ms, 500); // capped at the interval
  EXPECT_EQ(web.health_failures, 5);
  EXPECT_EQ(web.memory_max, 512LL << 20);
  EXPECT_EQ(web.cpu_max, 150);
  EXPECT_EQ(web.max_memory_restart, 1LL << 30);
  EXPECT_EQ(web.rlimit_nofile, 4096);
  EXPECT_EQ(web.rlimit_core, MON_RLIMIT_INFINITY);
  EXPECT_EQ(cache.health, MON_HEALTH_EXEC);
  EXPECT_STREQ(cache.health_argv[0], "/bin/check");
  EXPECT_STREQ(cache.health_argv[2], "a b");
  EXPECT_EQ(cache.rlimit_core, 0);
  mon_config_fini(&p.cfg);
}

TEST(Config, SupervisionKeyErrorsNameTheirLine) {
  const std::string a = "[service.a]\ncommand = x\n";
  expect_error(a + "depends_on = b\n",
               "t.ini:3: service 'a' depends on unknown 'b'");
  expect_error(a + "depends_on = a\n", "t.ini:3: dependency cycle: a -> a");
  expect_error("[service.a]\ncommand = x\ndepends_on = c\n"
               "[service.b]\ncommand = x\ndepends_on = a\n"
               "[service.c]\ncommand = x\ndepends_on = b\n",
               "t.ini:3: dependency cycle: a -> c -> b -> a");
  expect_error(a + "depends_on = b b\n", "t.ini:3: 'b' named twice");
  expect_error(a + "depends_on = ../x\n", "t.ini:3: bad service name '../x'");
  expect_error(a + "health = ftp://x\n", "t.ini:3: bad health 'ftp://x'");
  expect_error(a + "health = http://h:99999/\n",
               "t.ini:3: bad health 'http://h:99999/': bad port");
  expect_error(a + "health = tcp://h\n", "t.ini:3: bad health 'tcp://h': no");
  expect_error(a + "health = tcp://h:1/x\n", "t.ini:3: bad health");
  expect_error(a + "health = http://a b/\n", "t.ini:3: bad health");
  expect_error(a + "health = http://u@h/\n", "t.ini:3: bad health");
  expect_error(a + "health = exec:\n", "t.ini:3: bad health command");
  expect_error(a + "health_failures = 0\n", "t.ini:3: bad number '0'");
  expect_error(a + "memory_max = 12Q\n", "t.ini:3: bad size '12Q'");
  expect_error(a + "memory_max = 1\n", "t.ini:3: bad size '1'");
  expect_error(a + "max_memory_restart = -5M\n", "t.ini:3: bad size");
  expect_error(a + "cpu_max = 0\n", "t.ini:3: bad number '0' for cpu_max");
  expect_error(a + "rlimit_nofile = lots\n", "t.ini:3: bad limit 'lots'");
  expect_error(a + "rlimit_nofile = unlimited\n",
               "t.ini:3: rlimit_nofile cannot be unlimited");
  expect_error(a + "health = tcp://h:1\nhealth = tcp://h:2\n",
               "t.ini:4: key 'health' set twice");
  expect_error("[monitor]\nalert_webhook = https://x/\n",
               "t.ini:2: bad alert_webhook 'https://x/'");
}

TEST(Config, Sizes) {
  long long x;
  EXPECT_TRUE(mon_size_parse("0", &x));
  EXPECT_EQ(x, 0);
  EXPECT_TRUE(mon_size_parse("4096", &x));
  EXPECT_EQ(x, 4096);
  EXPECT_TRUE(mon_size_parse("64k", &x));
  EXPECT_EQ(x, 64 << 10);
  EXPECT_TRUE(mon_size_parse("3MiB", &x));
  EXPECT_EQ(x, 3 << 20);
  EXPECT_TRUE(mon_size_parse("2GB", &x));
  EXPECT_EQ(x, 2LL << 30);
  EXPECT_TRUE(mon_size_parse("1T", &x));
  EXPECT_EQ(x, 1LL << 40);
  for (const char *bad : {"", "M", "-1", " 1", "1 M", "1MB2", "1X",
                          "99999999999G", "1.5G", "0x10"})
    EXPECT_FALSE(mon_size_parse(bad, &x)) << bad;
}

TEST(Config, NetUrls) {
  mon_net_url u;
  char err[128];
  ASSERT_EQ(mon_net_url_parse("http://localhost", "http", &u, err, sizeof err),
            0);
  EXPECT_STREQ(u.host, "localhost");
  EXPECT_EQ(u.port, 80);
  EXPECT_STREQ(u.path, "/");
  ASSERT_EQ(mon_net_url_parse("tcp://10.0.0.1:5", "tcp", &u, err, sizeof err),
            0);
  EXPECT_EQ(u.port, 5);
  for (const char *bad :
       {"http://", "http://:80/", "http://h:/", "http://h:0/", "http://[::1/",
        "http://h:80x", "http://h/a b", "http://h/#frag", "tcp://h:1"})
    EXPECT_NE(mon_net_url_parse(bad, "http", &u, err, sizeof err), 0) << bad;
}

TEST(Config, SameServiceComparesEveryKey) {
  const std::string base = "[service.a]\ncommand = x\n";
  Parsed p0 = parse(base);
  ASSERT_EQ(p0.rc, 0);
  Parsed same = parse("; moved\n\n" + base);
  ASSERT_EQ(same.rc, 0);
  EXPECT_TRUE(mon_service_cfg_same(&p0.cfg.services[0], &same.cfg.services[0]));
  for (const char *extra :
       {"port = 7\n", "env = A=1\n", "health = tcp://h:1\n",
        "memory_max = 1G\n", "cpu_max = 50\n", "max_memory_restart = 1G\n",
        "rlimit_nofile = 10\n", "rlimit_core = 0\n", "health_failures = 9\n",
        "autostart = false\n", "timestamps = true\n", "directory = /tmp\n"}) {
    Parsed q = parse(base + extra);
    ASSERT_EQ(q.rc, 0) << extra;
    EXPECT_FALSE(mon_service_cfg_same(&p0.cfg.services[0], &q.cfg.services[0]))
        << extra;
    mon_config_fini(&q.cfg);
  }
  Parsed d1 = parse(base + "depends_on = b\n[service.b]\ncommand = y\n");
  Parsed d2 = parse(base + "[service.b]\ncommand = y\n");
  EXPECT_FALSE(mon_service_cfg_same(&d1.cfg.services[0], &d2.cfg.services[0]));
  mon_config_fini(&d1.cfg);
  mon_config_fini(&d2.cfg);
  mon_config_fini(&p0.cfg);
  mon_config_fini(&same.cfg);
}

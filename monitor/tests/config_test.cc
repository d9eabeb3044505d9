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

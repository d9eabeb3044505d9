// http_test.cc — routes, escaping, security headers, auth, traversal and the
// Host check, against a real libmicrohttpd server on an ephemeral port.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <poll.h>
#include <svc.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmath>
#include <ctime>
#include <filesystem>
#include <string>
#include <vector>

#include "buf.h"
#include "http.h"
#include "render_svg.h"
#include "route.h"
#include "session.h"
#include "store.h"
#include "test_util.h"
#include "token.h"
#include "view.h"

namespace fs = std::filesystem;

namespace {

TEST(Route, Table) {
  mon_route r;
  EXPECT_EQ(mon_route_parse("GET", "/", &r), 200);
  EXPECT_EQ(r.kind, MON_R_INDEX);
  EXPECT_EQ(mon_route_parse("GET", "/service/echo", &r), 200);
  EXPECT_EQ(r.kind, MON_R_SERVICE);
  EXPECT_STREQ(r.name, "echo");
  EXPECT_EQ(mon_route_parse("HEAD", "/api/services", &r), 200);
  EXPECT_EQ(mon_route_parse("GET", "/api/services/kv/metrics", &r), 200);
  EXPECT_EQ(r.kind, MON_R_API_METRICS);
  EXPECT_EQ(mon_route_parse("GET", "/api/services/kv/logs", &r), 200);
  EXPECT_EQ(r.kind, MON_R_API_LOGS);
  EXPECT_EQ(mon_route_parse("GET", "/api/services/kv/methods", &r), 200);
  EXPECT_EQ(r.kind, MON_R_API_METHODS);
  EXPECT_EQ(mon_route_parse("POST", "/api/services/kv/restart", &r), 200);
  EXPECT_EQ(r.kind, MON_R_CONTROL);
  EXPECT_EQ(r.action, MON_A_RESTART);
  EXPECT_EQ(mon_route_parse("GET", "/api/services/kv/restart", &r), 405);
  EXPECT_EQ(mon_route_parse("POST", "/", &r), 405);
  EXPECT_EQ(mon_route_parse("GET", "/metrics", &r), 200);
  EXPECT_EQ(r.kind, MON_R_PROMETHEUS);
  EXPECT_EQ(mon_route_parse("GET", "/api/monitor", &r), 200);
  EXPECT_EQ(r.kind, MON_R_API_MONITOR);
  EXPECT_EQ(mon_route_parse("POST", "/api/monitor", &r), 405);
  for (const char *p :
       {"/nope", "/service/", "/service/../etc/passwd", "/service/..",
        "/static/../../etc/passwd", "/static/x.css", "//",
        "/api/services/a/b/c", "/service/a%2fb", "", "x"})
    EXPECT_EQ(mon_route_parse("GET", p, &r), 404) << p;
}

TEST(Route, Args) {
  mon_route r;
  ASSERT_EQ(mon_route_parse("GET", "/api/services/a/logs", &r), 200);
  EXPECT_EQ(mon_route_arg(&r, "stream", "stderr"), 200);
  EXPECT_EQ(r.stream, 1);
  EXPECT_EQ(mon_route_arg(&r, "tail", "5"), 200);
  EXPECT_EQ(r.tail, 5);
  EXPECT_EQ(mon_route_arg(&r, "tail", "0"), 400);
  EXPECT_EQ(mon_route_arg(&r, "tail", "99999999"), 400);
  EXPECT_EQ(mon_route_arg(&r, "stream", "stdin"), 400);
  EXPECT_EQ(mon_route_arg(&r, "other", "x"), 200);
  ASSERT_EQ(mon_route_parse("GET", "/api/services/a/metrics", &r), 200);
  EXPECT_EQ(mon_route_arg(&r, "from", "12abc"), 400);
  EXPECT_EQ(mon_route_arg(&r, "from", nullptr), 400);
  EXPECT_EQ(mon_route_arg(&r, "to", "1700000000000"), 200);
  EXPECT_TRUE(r.has_to);
}

TEST(Escape, HtmlAndJson) {
  mon_buf b{};
  const char s[] = "<script>alert('x')&\"</script>";
  mon_buf_html(&b, s, strlen(s));
  EXPECT_STREQ(b.p,
               "&lt;script&gt;alert(&#39;x&#39;)&amp;&quot;&lt;/script&gt;");
  mon_buf_fini(&b);
  const char j[] = "a\"b\\c\n\x01\xff\xc3\xa9<";
  mon_buf_json(&b, j, strlen(j));
  EXPECT_STREQ(b.p, "\"a\\\"b\\\\c\\u000a\\u0001\\ufffd\xc3\xa9\\u003c\"");
  mon_buf_fini(&b);
}

TEST(Escape, SvgTitlesEscaped) {
  mon_buf b{};
  int64_t ts[2] = {0, 1000};
  double v[2] = {1, NAN};
  mon_chart c{200, 100, 0, 1000, 5000, MON_U_PERCENT, "<b>cpu</b>"};
  mon_series s{ts, v, 2, "#000", "<i>"};
  mon_svg_chart(&b, &c, &s, 1);
  std::string out(b.p);
  EXPECT_EQ(out.find("<b>"), std::string::npos);
  EXPECT_EQ(out.find("<i>"), std::string::npos);
  EXPECT_NE(out.find("&lt;b&gt;cpu"), std::string::npos);
  mon_buf_fini(&b);
}

TEST(Host, Check) {
  EXPECT_TRUE(mon_http_host_ok("127.0.0.1", 5155, "127.0.0.1:5155"));
  EXPECT_TRUE(mon_http_host_ok("127.0.0.1", 5155, "localhost:5155"));
  EXPECT_TRUE(mon_http_host_ok("127.0.0.1", 5155, "LOCALHOST:5155"));
  EXPECT_TRUE(mon_http_host_ok("127.0.0.1", 5155, "[::1]:5155"));
  EXPECT_FALSE(mon_http_host_ok("127.0.0.1", 5155, "evil.example:5155"));
  EXPECT_FALSE(mon_http_host_ok("127.0.0.1", 5155, "127.0.0.1:80"));
  EXPECT_FALSE(mon_http_host_ok("127.0.0.1", 5155, "127.0.0.1"));
  EXPECT_FALSE(mon_http_host_ok("127.0.0.1", 5155, ""));
  EXPECT_FALSE(mon_http_host_ok("127.0.0.1", 5155, nullptr));
  EXPECT_FALSE(mon_http_host_ok("127.0.0.1", 5155, "localhost.evil:5155"));
  EXPECT_TRUE(mon_http_host_ok("0.0.0.0", 80, "10.1.2.3"));
  EXPECT_FALSE(mon_http_host_ok("0.0.0.0", 80, "rebind.evil"));
}

TEST(Token, CreatedPrivateAndChecked) {
  fs::path p =
      fs::temp_directory_path() / ("svcmon-token-" + std::to_string(getpid()));
  fs::remove(p);
  char tok[MON_TOKEN_LEN + 1], tok2[MON_TOKEN_LEN + 1], err[256];
  ASSERT_EQ(mon_token_load(p.c_str(), tok, err, sizeof err), 0) << err;
  EXPECT_EQ(strlen(tok), (size_t)MON_TOKEN_LEN);
  EXPECT_EQ(fs::status(p).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
  ASSERT_EQ(mon_token_load(p.c_str(), tok2, err, sizeof err), 0);
  EXPECT_STREQ(tok, tok2);
  EXPECT_TRUE(mon_token_check(tok, ("Bearer " + std::string(tok)).c_str()));
  EXPECT_FALSE(mon_token_check(tok, tok));
  EXPECT_FALSE(mon_token_check(tok, "Bearer "));
  EXPECT_FALSE(mon_token_check(tok, nullptr));
  std::string wrong = "Bearer " + std::string(tok);
  wrong.back() ^= 1;
  EXPECT_FALSE(mon_token_check(tok, wrong.c_str()));
  fs::permissions(p, fs::perms::group_read, fs::perm_options::add);
  EXPECT_EQ(mon_token_load(p.c_str(), tok2, err, sizeof err), -1);
  fs::remove(p);
}

class Http : public ::testing::Test {
protected:
  std::string db;
  mon_config cfg{};
  mon_shared shared{};
  mon_http *h = nullptr;
  int port = 0;
  const char *token = "sekrit";

  void SetUp() override {
    db = (fs::temp_directory_path() /
          ("svcmon-http-" + std::to_string(getpid()) + ".sqlite"))
             .string();
    for (const char *s : {"", "-wal", "-shm"})
      fs::remove(db + s);
    std::string ini = "[monitor]\nhttp = 127.0.0.1:0\n[service.web]\n"
                      "command = /bin/echo '<script>x</script>'\nport = 7100\n";
    char err[256];
    ASSERT_EQ(mon_config_parse(ini.data(), ini.size(), "t", false, &cfg, err,
                               sizeof err),
              0);
    mon_store *st;
    ASSERT_EQ(mon_store_open(db.c_str(), &st, err, sizeof err), 0);
    int64_t sid;
    mon_store_service(st, "web", 7100, cfg.services[0].command, &sid);
    const char line[] = "<img src=x onerror=alert(1)>";
    mon_store_log(st, sid, 1, "stdout", line, strlen(line));
    mon_store_event(st, sid, 1, "start", "spawned pid 42 <b>");
    mon_store_event(st, sid, 2, "scale", "up: 2 workers (cpu 93% over 5 s)");
    timespec now{};
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    mon_method_delta d{};
    d.name = "<b>get</b>";
    d.calls = 10;
    d.errors = 1;
    d.bytes_in = 100;
    d.bytes_out = 200;
    d.total_ns = 5000;
    d.pct_valid = true;
    d.p50_ns = 400;
    d.p99_ns = 900;
    mon_store_method(st, sid, ms - 2000, &d);
    d.p99_ns = 1200;
    mon_store_method(st, sid, ms - 1000, &d);
    mon_store_close(st);
    ASSERT_EQ(mon_shared_init(&shared, 1), 0);
    mon_view v{};
    v.state = MON_RUNNING;
    v.pid = 42;
    v.nprocs = 3;
    v.nworkers = 2;
    v.workers[0] = 43;
    v.workers[1] = 44;
    cref = mon_config_ref_new(&cfg, false);
    ASSERT_NE(cref, nullptr);
    ASSERT_EQ(mon_shared_publish(&shared, cref, &v, 1), 0);
    ASSERT_EQ(mon_sse_hub_new(&hub), 0);
    opts = {&cfg, &shared, token, db.c_str(), hub, nullptr};
    ASSERT_EQ(mon_http_start(&opts, &h, err, sizeof err), 0) << err;
    port = mon_http_port(h);
    ASSERT_GT(port, 0);
  }
  void TearDown() override {
    mon_http_stop(h);
    mon_sse_hub_free(hub);
    if (cref)
      mon_shared_release(&shared, cref);
    mon_shared_fini(&shared);
    mon_config_fini(&cfg);
    for (const char *s : {"", "-wal", "-shm"})
      fs::remove(db + s);
  }
  mon_http_opts opts{};
  mon_sse_hub *hub = nullptr;
  mon_config_ref *cref = nullptr;

  Resp req(const std::string &method, const std::string &path,
           const std::string &extra = "", const char *host = nullptr,
           const std::string &body = "") {
    std::string hosth = host ? host : ("127.0.0.1:" + std::to_string(port));
    return parse_response(http_raw(
        port, method + " " + path + " HTTP/1.1\r\nHost: " + hosth +
                  "\r\nConnection: close\r\n" + extra + "\r\n" + body));
  }
};

TEST_F(Http, PagesAndSecurityHeaders) {
  Resp r = req("GET", "/");
  ASSERT_EQ(r.status, 200);
  EXPECT_NE(r.head.find("Content-Security-Policy: default-src 'self'"),
            std::string::npos);
  EXPECT_NE(r.head.find("X-Frame-Options: DENY"), std::string::npos);
  EXPECT_NE(r.head.find("X-Content-Type-Options: nosniff"), std::string::npos);
  EXPECT_EQ(r.head.find("Access-Control-Allow-Origin"), std::string::npos);
  // regression: with no-referrer a browser's own form posts carry
  // "Origin: null" and every Start/Stop/Restart form was refused
  EXPECT_NE(r.head.find("Referrer-Policy: same-origin"), std::string::npos);
  EXPECT_NE(r.head.find("script-src 'self'"), std::string::npos);
  EXPECT_NE(r.body.find("RUNNING"), std::string::npos);
  EXPECT_NE(r.body.find("http-equiv=\"refresh\""), std::string::npos);

  r = req("GET", "/service/web");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.body.find("<script>"), std::string::npos);
  EXPECT_EQ(r.body.find("<img"), std::string::npos);
  EXPECT_NE(r.body.find("&lt;img src=x onerror=alert(1)&gt;"),
            std::string::npos);
  EXPECT_NE(r.body.find("spawned pid 42 &lt;b&gt;"), std::string::npos);
  EXPECT_NE(r.body.find("<svg"), std::string::npos);

  r = req("GET", "/static/style.css");
  EXPECT_EQ(r.status, 200);
  EXPECT_NE(r.head.find("text/css"), std::string::npos);
}

TEST_F(Http, Json) {
  Resp r = req("GET", "/api/services");
  ASSERT_EQ(r.status, 200);
  EXPECT_NE(r.body.find("\"name\":\"web\",\"state\":\"RUNNING\",\"pid\":42"),
            std::string::npos);
  EXPECT_NE(r.body.find("\\u003cscript\\u003e"), std::string::npos);
  r = req("GET", "/api/services/web/logs?stream=stdout&tail=5");
  ASSERT_EQ(r.status, 200);
  EXPECT_NE(r.body.find("\\u003cimg"), std::string::npos);
  r = req("GET", "/api/services/web/metrics?from=0&to=1000");
  ASSERT_EQ(r.status, 200);
  EXPECT_NE(r.body.find("\"points\":[]"), std::string::npos);
  EXPECT_EQ(req("GET", "/api/services/web/metrics?from=x").status, 400);
  EXPECT_EQ(req("GET", "/api/services/web/logs?tail=-1").status, 400);
  EXPECT_EQ(req("GET", "/api/services/nope/logs").status, 404);
  r = req("GET", "/metrics");
  ASSERT_EQ(r.status, 200);
  EXPECT_NE(r.body.find("svc_up{service=\"web\"} 1"), std::string::npos);
  EXPECT_NE(r.body.find("# TYPE svc_restarts_total counter"),
            std::string::npos);
}

// GET /api/monitor: exactly these keys; a failing store in it, and as a
// banner above every dashboard page (not the sign-in form), escaped.
TEST_F(Http, MonitorAndTheStoreBanner) {
  Resp r = req("GET", "/api/monitor");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.body.find("{\"version\":\""), 0u) << r.body;
  EXPECT_NE(r.body.find(std::string("\"version\":\"") + svc_version() + "\""),
            std::string::npos);
  size_t up = r.body.find(",\"uptime\":");
  ASSERT_NE(up, std::string::npos) << r.body;
  double uptime = std::stod(r.body.substr(up + 10));
  EXPECT_GE(uptime, 0);
  EXPECT_LT(uptime, 60); // seconds, since mon_shared_init in SetUp
  EXPECT_NE(r.body.find(",\"store\":{\"ok\":true,\"error\":null,"
                        "\"since_ms\":null}}\n"),
            std::string::npos)
      << r.body;
  EXPECT_EQ(req("GET", "/").body.find("store-banner"), std::string::npos);

  mon_store_status bad{};
  snprintf(bad.error, sizeof bad.error, "database <b>or</b> disk is full");
  bad.since_ms = 1700000000123;
  mon_shared_set_store(&shared, &bad);
  r = req("GET", "/api/monitor");
  EXPECT_NE(r.body.find("\"store\":{\"ok\":false,\"error\":\"database "
                        "\\u003cb\\u003eor\\u003c/b\\u003e disk is full\","
                        "\"since_ms\":1700000000123}"),
            std::string::npos)
      << r.body;
  for (const char *page : {"/", "/service/web"}) {
    r = req("GET", page);
    EXPECT_NE(r.body.find("<div class=\"banner\" id=\"store-banner\""),
              std::string::npos)
        << page;
    EXPECT_NE(r.body.find("database &lt;b&gt;or&lt;/b&gt; disk is full"),
              std::string::npos)
        << page;
    EXPECT_NE(r.body.find("data-since-ms=\"1700000000123\""),
              std::string::npos);
  }
  EXPECT_EQ(req("GET", "/login").body.find("store-banner"), std::string::npos);
}

TEST_F(Http, WorkersAndMethods) {
  Resp r = req("GET", "/api/services");
  ASSERT_EQ(r.status, 200);
  EXPECT_NE(r.body.find("\"workers\":2,\"worker_pids\":[43,44]"),
            std::string::npos)
      << r.body;
  r = req("GET", "/");
  ASSERT_EQ(r.status, 200);
  EXPECT_NE(r.body.find("2:<small> 43 44</small>"), std::string::npos);
  EXPECT_NE(r.body.find("Top methods"), std::string::npos);
  EXPECT_EQ(r.body.find("<b>get"), std::string::npos);
  EXPECT_NE(r.body.find("&lt;b&gt;get&lt;/b&gt;"), std::string::npos);
  EXPECT_NE(r.body.find(">20<"), std::string::npos) << "calls summed";
  EXPECT_NE(r.body.find("1.2 us"), std::string::npos) << "p99: the largest";

  r = req("GET", "/service/web");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.body.find("<b>get"), std::string::npos);
  EXPECT_NE(r.body.find("&lt;b&gt;get&lt;/b&gt; latency"), std::string::npos);
  EXPECT_NE(r.body.find("up: 2 workers (cpu 93% over 5 s)"), std::string::npos);
  EXPECT_NE(r.body.find("43 44"), std::string::npos);

  r = req("GET", "/api/services/web/methods");
  ASSERT_EQ(r.status, 200);
  EXPECT_NE(r.head.find("application/json"), std::string::npos);
  EXPECT_NE(r.body.find("\"methods\":[{\"method\":\"\\u003cb\\u003eget"),
            std::string::npos)
      << r.body;
  EXPECT_NE(r.body.find("\"calls\":20,\"errors\":2"), std::string::npos);
  EXPECT_NE(r.body.find("\"p99_ns\":1200}"), std::string::npos);
  EXPECT_NE(r.body.find("\"truncated\":false"), std::string::npos);
  r = req("GET", "/api/services/web/methods?from=0&to=1000");
  ASSERT_EQ(r.status, 200);
  EXPECT_NE(r.body.find("\"methods\":[],\"truncated\":false,\"points\":[]"),
            std::string::npos);
  EXPECT_EQ(req("GET", "/api/services/web/methods?from=5&to=1").status, 400);
  EXPECT_EQ(req("GET", "/api/services/nope/methods").status, 404);
  EXPECT_EQ(req("POST", "/api/services/web/methods").status, 405);
}

TEST_F(Http, NotFoundAndTraversal) {
  EXPECT_EQ(req("GET", "/nope").status, 404);
  EXPECT_EQ(req("GET", "/service/nope").status, 404);
  EXPECT_EQ(req("GET", "/static/../../../etc/passwd").status, 404);
  EXPECT_EQ(req("GET", "/static/%2e%2e/%2e%2e/etc/passwd").status, 404);
  EXPECT_EQ(req("GET", "/service/..%2f..%2fetc%2fpasswd").status, 404);
  Resp r = req("GET", "/service/%3Cscript%3E");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.body.find("<script>"), std::string::npos);
}

TEST_F(Http, ControlNeedsToken) {
  Resp r = req("POST", "/api/services/web/stop");
  EXPECT_EQ(r.status, 401);
  EXPECT_NE(r.head.find("WWW-Authenticate: Bearer"), std::string::npos);
  EXPECT_EQ(
      req("POST", "/api/services/web/stop", "Authorization: Bearer wrong\r\n")
          .status,
      401);
  mon_command none[4];
  EXPECT_EQ(mon_shared_take(&shared, none, 4), 0u);
  r = req("POST", "/api/services/web/restart",
          "Authorization: Bearer sekrit\r\nContent-Length: 3\r\n", nullptr,
          "abc");
  EXPECT_EQ(r.status, 202) << r.head;
  mon_command cmd[4];
  ASSERT_EQ(mon_shared_take(&shared, cmd, 4), 1u);
  EXPECT_EQ(cmd[0].action, MON_A_RESTART);
  EXPECT_EQ(
      req("POST", "/api/services/nope/stop", "Authorization: Bearer sekrit\r\n")
          .status,
      404);
  EXPECT_EQ(req("GET", "/api/services/web/stop").status, 405);
}

TEST_F(Http, HostCheckRefusesRebinding) {
  EXPECT_EQ(req("GET", "/", "", "evil.example").status, 403);
  EXPECT_EQ(req("GET", "/api/services", "",
                ("attacker.test:" + std::to_string(port)).c_str())
                .status,
            403);
  EXPECT_EQ(
      req("GET", "/", "", ("localhost:" + std::to_string(port)).c_str()).status,
      200);
}

// ---- signing in, CSRF, Origin (issue 14) ----

std::string header_value(const std::string &head, const std::string &name) {
  size_t at = head.find("\r\n" + name + ": ");
  if (at == std::string::npos)
    return "";
  at += name.size() + 4;
  return head.substr(at, head.find("\r\n", at) - at);
}

std::string form(const std::string &body) {
  return "Content-Type: application/x-www-form-urlencoded\r\n"
         "Content-Length: " +
         std::to_string(body.size()) + "\r\n";
}

TEST_F(Http, SignInSetsASafeSessionCookie) {
  Resp r = req("GET", "/login");
  ASSERT_EQ(r.status, 200);
  EXPECT_NE(r.body.find("name=\"token\""), std::string::npos);
  r = req("GET", "/");
  EXPECT_NE(r.body.find("href=\"/login\""), std::string::npos);
  EXPECT_EQ(r.body.find("data-action=\"restart\""), std::string::npos)
      << "no buttons without a session";

  r = req("POST", "/login", form("token=wrong"), nullptr, "token=wrong");
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(header_value(r.head, "Set-Cookie"), "");
  r = req("POST", "/login", form("token=sekrit"), nullptr, "token=sekrit");
  ASSERT_EQ(r.status, 303);
  EXPECT_EQ(header_value(r.head, "Location"), "/");
  std::string cookie = header_value(r.head, "Set-Cookie");
  EXPECT_NE(cookie.find("HttpOnly"), std::string::npos);
  EXPECT_NE(cookie.find("SameSite=Strict"), std::string::npos);
  EXPECT_NE(cookie.find("Path=/"), std::string::npos);
  std::string pair = cookie.substr(0, cookie.find(';'));
  ASSERT_EQ(pair.size(), strlen("svc_session=") + MON_SESSION_ID_LEN);

  r = req("GET", "/", "Cookie: " + pair + "\r\n");
  ASSERT_EQ(r.status, 200);
  EXPECT_NE(r.body.find("data-action=\"restart\""), std::string::npos);
  EXPECT_NE(r.body.find("Sign out"), std::string::npos);
  size_t m = r.body.find("<meta name=\"csrf\" content=\"");
  ASSERT_NE(m, std::string::npos);
  std::string csrf = r.body.substr(m + 27, MON_SESSION_ID_LEN);
  r = req("GET", "/service/web", "Cookie: " + pair + "\r\n");
  EXPECT_NE(r.body.find("data-action=\"stop\""), std::string::npos);

  // the session is not enough: the CSRF token must come with it
  r = req("POST", "/api/services/web/restart", "Cookie: " + pair + "\r\n");
  EXPECT_EQ(r.status, 403);
  r = req("POST", "/api/services/web/restart",
          "Cookie: " + pair + "\r\nX-CSRF-Token: " + std::string(32, 'a') +
              "\r\n");
  EXPECT_EQ(r.status, 403);
  mon_command cmd[4];
  EXPECT_EQ(mon_shared_take(&shared, cmd, 4), 0u);
  r = req("POST", "/api/services/web/restart",
          "Cookie: " + pair + "\r\nX-CSRF-Token: " + csrf + "\r\n");
  EXPECT_EQ(r.status, 202) << r.body;
  // a plain form (no JavaScript): csrf field, then back to the page
  std::string body = "csrf=" + csrf + "&back=%2Fservice%2Fweb";
  r = req("POST", "/api/services/web/stop",
          "Cookie: " + pair + "\r\n" + form(body), nullptr, body);
  EXPECT_EQ(r.status, 303);
  EXPECT_EQ(header_value(r.head, "Location"), "/service/web");
  body = "csrf=" + csrf + "&back=%2F%2Fevil.example%2F";
  r = req("POST", "/api/services/web/start",
          "Cookie: " + pair + "\r\n" + form(body), nullptr, body);
  EXPECT_EQ(header_value(r.head, "Location"), "/") << "no open redirect";
  ASSERT_EQ(mon_shared_take(&shared, cmd, 4), 3u);
  EXPECT_EQ(cmd[0].action, MON_A_RESTART);
  EXPECT_EQ(cmd[1].action, MON_A_STOP);
  EXPECT_EQ(cmd[2].action, MON_A_START);

  // signing out ends the session on the server
  body = "csrf=" + csrf;
  r = req("POST", "/logout", "Cookie: " + pair + "\r\n" + form(body), nullptr,
          body);
  EXPECT_EQ(r.status, 303);
  EXPECT_NE(header_value(r.head, "Set-Cookie").find("Max-Age=0"),
            std::string::npos);
  r = req("POST", "/api/services/web/restart",
          "Cookie: " + pair + "\r\nX-CSRF-Token: " + csrf + "\r\n");
  EXPECT_EQ(r.status, 401);
}

TEST_F(Http, WrongTokensAreThrottled) {
  for (int i = 0; i < MON_LOGIN_FAILS_MAX; i++)
    EXPECT_EQ(
        req("POST", "/login", form("token=no"), nullptr, "token=no").status,
        401);
  EXPECT_EQ(req("POST", "/login", form("token=no"), nullptr, "token=no").status,
            429);
  // even the right token waits out the minute
  EXPECT_EQ(req("POST", "/login", form("token=sekrit"), nullptr, "token=sekrit")
                .status,
            429);
}

TEST_F(Http, AForeignOriginIsRefusedEvenWithTheToken) {
  std::string origin = "Origin: http://evil.example\r\n";
  EXPECT_EQ(req("POST", "/api/services/web/restart",
                origin + "Authorization: Bearer sekrit\r\n")
                .status,
            403);
  EXPECT_EQ(req("POST", "/login", origin + form("token=sekrit"), nullptr,
                "token=sekrit")
                .status,
            403);
  std::string own = "Origin: http://127.0.0.1:" + std::to_string(port) + "\r\n";
  EXPECT_EQ(req("POST", "/api/services/web/restart",
                own + "Authorization: Bearer sekrit\r\n")
                .status,
            202);
  EXPECT_EQ(req("POST", "/login",
                "Content-Length: 9000\r\n" + std::string("X-Pad: 1\r\n"),
                nullptr, std::string(9000, 'a'))
                .status,
            413);
}

// ---- the live streams ----

// Reads from fd until want appears or ms pass; returns what was read.
std::string read_until(int fd, const std::string &want, int ms) {
  std::string got;
  read_for(fd, got, ms, [&](const std::string &s) {
    return s.find(want) != std::string::npos;
  });
  return got;
}

class HttpLive : public Http {};

TEST_F(HttpLive, EventsStartWithEveryStateThenFollowChanges) {
  int fd = open_stream(port, "/api/events");
  ASSERT_GE(fd, 0);
  std::string got = read_until(fd, "\"pid\":42", 2000);
  EXPECT_NE(got.find("Content-Type: text/event-stream"), std::string::npos);
  EXPECT_NE(got.find("event: state\ndata: "), std::string::npos);
  EXPECT_NE(got.find("{\"service\":\"web\",\"state\":\"RUNNING\",\"pid\":42"),
            std::string::npos)
      << got;
  mon_view v{};
  v.state = MON_STARTING;
  v.pid = 77;
  v.restarts = 1;
  mon_http_publish_state(hub, &cfg, 0, &v, 0);
  got = read_until(fd, "\"pid\":77", 2000);
  EXPECT_NE(got.find("\"state\":\"STARTING\",\"pid\":77,\"restarts\":1"),
            std::string::npos)
      << got;
  mon_http_publish_sample(hub, &cfg, &v, 1234);
  got = read_until(fd, "event: sample", 2000);
  EXPECT_NE(got.find("\"ts_ms\":1234"), std::string::npos) << got;
  close(fd);
}

TEST_F(HttpLive, LogStreamSendsTheTailThenNewLinesEscaped) {
  int fd = open_stream(port, "/api/services/web/logs/stream?stream=stdout");
  ASSERT_GE(fd, 0);
  std::string got = read_until(fd, "onerror", 2000);
  EXPECT_NE(got.find("\"line\":\"\\u003cimg src=x onerror=alert(1)\\u003e\""),
            std::string::npos)
      << got;
  const char line[] = "fresh </script> line";
  mon_http_publish_log(hub, 0, 1, 5, "on stderr", 9); // another stream
  mon_http_publish_log(hub, 0, 0, 6, line, sizeof line - 1);
  got = read_until(fd, "fresh", 1000);
  EXPECT_NE(got.find("fresh \\u003c/script\\u003e line"), std::string::npos)
      << got;
  EXPECT_EQ(got.find("on stderr"), std::string::npos);
  close(fd);
  EXPECT_EQ(req("GET", "/api/services/web/logs/stream?stream=both").status,
            400);
  EXPECT_EQ(req("GET", "/api/services/nope/logs/stream").status, 404);
}

TEST_F(HttpLive, ALongHistoryIsCutToTheNewestLinesNotDropped) {
  // regression: 100 long lines, escaped, overflowed the subscriber's bound
  // and the stream was dropped the moment it opened
  mon_store *st;
  char err[256];
  ASSERT_EQ(mon_store_open(db.c_str(), &st, err, sizeof err), 0) << err;
  int64_t sid;
  ASSERT_EQ(mon_store_service(st, "web", 7100, cfg.services[0].command, &sid),
            0);
  ASSERT_EQ(mon_store_begin(st), 0);
  std::string line(3000, '\x01'); // 6 bytes each once escaped
  for (int i = 0; i < 100; i++) {
    std::string l = line + "#" + std::to_string(i);
    ASSERT_EQ(mon_store_log(st, sid, 10 + i, "stdout", l.data(), l.size()), 0);
  }
  ASSERT_EQ(mon_store_commit(st), 0);
  mon_store_close(st);
  int fd = open_stream(port, "/api/services/web/logs/stream?stream=stdout");
  ASSERT_GE(fd, 0);
  std::string got = read_until(fd, "#99\"", 3000);
  EXPECT_NE(got.find("#99\""), std::string::npos) << "the newest line came";
  EXPECT_EQ(got.find("#0\""), std::string::npos) << "the oldest was cut";
  mon_http_publish_log(hub, 0, 0, 200, "after", 5);
  got = read_until(fd, "after", 2000);
  EXPECT_NE(got.find("after"), std::string::npos) << "still streaming";
  close(fd);
}

TEST_F(HttpLive, StreamsHaveTheirOwnLimitAndNeverStarveTheApi) {
  std::vector<int> fds;
  for (int i = 0; i < MON_SSE_MAX; i++) {
    fds.push_back(open_stream(port, "/api/events"));
    ASSERT_NE(read_until(fds.back(), "event: state", 2000).find("event: state"),
              std::string::npos);
  }
  EXPECT_EQ(req("GET", "/api/events").status, 503);
  EXPECT_EQ(req("GET", "/api/services").status, 200);
  EXPECT_EQ(req("GET", "/metrics").status, 200);
  for (int fd : fds)
    close(fd);
}

TEST_F(Http, LogSearch) {
  Resp r = req("GET", "/api/services/web/logs?q=onerror");
  ASSERT_EQ(r.status, 200);
  EXPECT_NE(r.body.find("onerror=alert(1)"), std::string::npos) << r.body;
  r = req("GET", "/api/services/web/logs?q=ONERROR"); // any case
  EXPECT_NE(r.body.find("onerror=alert(1)"), std::string::npos);
  r = req("GET", "/api/services/web/logs?q=%3Ci"); // 2 characters: a scan
  EXPECT_NE(r.body.find("onerror=alert(1)"), std::string::npos);
  r = req("GET", "/api/services/web/logs?q=nowhere");
  EXPECT_NE(r.body.find("\"lines\":[]"), std::string::npos);
  r = req("GET", "/api/services/web/logs?q=onerror&from=2&to=3");
  EXPECT_NE(r.body.find("\"lines\":[]"), std::string::npos);
  r = req("GET", "/service/web?q=onerror");
  ASSERT_EQ(r.status, 200);
  EXPECT_NE(r.body.find("1 line "), std::string::npos);
  EXPECT_EQ(r.body.find("<img"), std::string::npos);
  EXPECT_EQ(
      req("GET", "/api/services/web/logs?q=" + std::string(300, 'a')).status,
      400);
}

} // namespace

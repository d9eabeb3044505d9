// alert_test.cc — the webhook alerter against a loopback receiver thread:
// the JSON it posts, retries, giving up, the queue bound, stopping quickly,
// and the restart-burst rule on synthetic timestamps.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <atomic>
#include <chrono>
#include <jansson.h>
#include <mutex>
#include <netinet/in.h>
#include <poll.h>
#include <string>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>
#include <vector>

#include "alert.h"
#include "loopback_http.h"

namespace {

using Clock = std::chrono::steady_clock;

long ms_since(Clock::time_point t0) {
  return (long)std::chrono::duration_cast<std::chrono::milliseconds>(
             Clock::now() - t0)
      .count();
}

// Records each request; answers with the next of `codes` (200 once they
// run out). While `hold` is set it keeps a request waiting (3 s at most).
class Receiver {
public:
  explicit Receiver(std::vector<int> codes = {})
      : codes_(std::move(codes)),
        http_([this](const std::string &, const std::string &) {
          int code = next_ < codes_.size() ? codes_[next_++] : 200;
          waiting++;
          for (int k = 0; hold && k < 300; k++)
            usleep(10000);
          waiting--;
          return LoopbackHttp::status(code);
        }) {}
  ~Receiver() { hold = false; } // before http_ joins its thread
  std::string url(const std::string &path = "/hook") const {
    return http_.url(path);
  }
  std::vector<std::string> bodies() { return http_.bodies(); }
  std::vector<std::string> heads() { return http_.heads(); }
  int requests() { return http_.requests(); }
  std::atomic<bool> hold{false};
  std::atomic<int> waiting{0}; // requests read and held

private:
  std::vector<int> codes_;
  size_t next_ = 0; // the server's thread only
  LoopbackHttp http_;
};

mon_alert_stats stats(mon_alerter *a) {
  mon_alert_stats s;
  mon_alerter_stats(a, &s);
  return s;
}

// Waits (bounded) until nothing is pending.
void settle(mon_alerter *a, long limit_ms = 2500) {
  auto t0 = Clock::now();
  while (stats(a).pending && ms_since(t0) < limit_ms)
    usleep(2000);
}

std::string field(json_t *o, const char *k) {
  json_t *v = json_object_get(o, k);
  return json_is_string(v) ? json_string_value(v) : "<missing>";
}

TEST(Alert, PostsTheJsonOfAlertKinds) {
  Receiver r;
  mon_alerter *a = mon_alerter_new_ex(r.url().c_str(), 10, 0);
  ASSERT_NE(a, nullptr);
  mon_alerter_event(a, "db", "fatal", "gave up after 3 retries", 1700000000123);
  mon_alerter_event(a, "db", "start", "pid 12", 1); // not an alert kind
  mon_alerter_event(a, "web", "health", "HTTP 503", 2);
  mon_alerter_event(a, "web", "memory", "rss 900M over 512M", 3);
  mon_alerter_event(a, "web", "exit", "exit code 1", 4);
  settle(a);
  std::vector<std::string> b = r.bodies();
  ASSERT_EQ(b.size(), 3u);
  char host[256] = "";
  gethostname(host, sizeof host);
  json_error_t e;
  json_t *o = json_loads(b[0].c_str(), 0, &e);
  ASSERT_NE(o, nullptr) << b[0];
  EXPECT_EQ(field(o, "service"), "db");
  EXPECT_EQ(field(o, "kind"), "fatal");
  EXPECT_EQ(field(o, "detail"), "gave up after 3 retries");
  EXPECT_EQ(json_integer_value(json_object_get(o, "ts_ms")), 1700000000123);
  EXPECT_EQ(field(o, "host"), host);
  json_decref(o);
  o = json_loads(b[1].c_str(), 0, &e);
  EXPECT_EQ(field(o, "kind"), "health");
  EXPECT_EQ(field(o, "detail"), "HTTP 503");
  json_decref(o);
  o = json_loads(b[2].c_str(), 0, &e);
  EXPECT_EQ(field(o, "kind"), "memory");
  json_decref(o);
  std::string h = r.heads()[0];
  EXPECT_EQ(h.rfind("POST /hook HTTP/1.1\r\n", 0), 0u) << h;
  EXPECT_NE(h.find("\r\nContent-Type: application/json"), std::string::npos)
      << h;
  mon_alert_stats s = stats(a);
  EXPECT_EQ(s.queued, 3u);
  EXPECT_EQ(s.sent, 3u);
  EXPECT_EQ(s.failed, 0u);
  EXPECT_EQ(s.dropped, 0u);
  mon_alerter_free(a);
}

TEST(Alert, BadBytesAndNullsStillMakeJson) {
  Receiver r;
  mon_alerter *a = mon_alerter_new_ex(r.url().c_str(), 10, 0);
  ASSERT_NE(a, nullptr);
  std::string big(5000, 'x');
  mon_alerter_event(a, "s\xff", "fatal", "bad \xc3( utf-8 \"quoted\"", 1);
  mon_alerter_event(a, nullptr, "fatal", nullptr, 2);
  mon_alerter_event(a, "s", "fatal", big.c_str(), 3);
  mon_alerter_event(a, "s", nullptr, "x", 4); // no kind: ignored
  mon_alerter_event(nullptr, "s", "fatal", "x", 5);
  settle(a);
  std::vector<std::string> b = r.bodies();
  ASSERT_EQ(b.size(), 3u);
  json_error_t e;
  json_t *o = json_loads(b[0].c_str(), 0, &e);
  ASSERT_NE(o, nullptr) << b[0];
  EXPECT_EQ(field(o, "service"), "s?");
  EXPECT_EQ(field(o, "detail"), "bad ?( utf-8 \"quoted\"");
  json_decref(o);
  o = json_loads(b[1].c_str(), 0, &e);
  EXPECT_EQ(field(o, "service"), "");
  EXPECT_EQ(field(o, "detail"), "");
  json_decref(o);
  o = json_loads(b[2].c_str(), 0, &e);
  EXPECT_EQ(field(o, "detail").size(), 1024u); // bounded
  json_decref(o);
  mon_alerter_free(a);
}

TEST(Alert, RetriesUntilTwoHundred) {
  Receiver r({500, 503});
  mon_alerter *a = mon_alerter_new_ex(r.url().c_str(), 20, 0);
  ASSERT_NE(a, nullptr);
  auto t0 = Clock::now();
  mon_alerter_event(a, "db", "fatal", "x", 1);
  settle(a);
  EXPECT_GE(ms_since(t0), 20 + 40); // backed off 20 then 40 ms
  EXPECT_EQ(r.requests(), 3);
  mon_alert_stats s = stats(a);
  EXPECT_EQ(s.sent, 1u);
  EXPECT_EQ(s.failed, 0u);
  std::vector<std::string> b = r.bodies();
  EXPECT_EQ(b[0], b[2]); // the same alert each time
  mon_alerter_free(a);
}

TEST(Alert, RetriesAreBoundedAndFourHundredsGiveUp) {
  Receiver r({500, 500, 500, 500, 500, 404, 408, 200, 429, 200});
  mon_alerter *a = mon_alerter_new_ex(r.url().c_str(), 5, 0);
  ASSERT_NE(a, nullptr);
  mon_alerter_event(a, "db", "fatal", "one", 1);   // 5 x 500: failed
  mon_alerter_event(a, "db", "fatal", "two", 2);   // 404: failed at once
  mon_alerter_event(a, "db", "fatal", "three", 3); // 408 then 200
  mon_alerter_event(a, "db", "fatal", "four", 4);  // 429 then 200
  settle(a);
  EXPECT_EQ(r.requests(), 10);
  mon_alert_stats s = stats(a);
  EXPECT_EQ(s.sent, 2u);
  EXPECT_EQ(s.failed, 2u);
  mon_alerter_free(a);
}

TEST(Alert, NoReceiverGivesUpWithoutBlocking) {
  std::string url =
      "http://127.0.0.1:" + std::to_string(loopback_free_port()) + "/";
  // the default backoff (1, 2, 4, 8 s): free abandons the wait
  mon_alerter *a = mon_alerter_new(url.c_str());
  ASSERT_NE(a, nullptr);
  auto t0 = Clock::now();
  for (int k = 0; k < 50; k++)
    mon_alerter_event(a, "db", "fatal", "x", k);
  EXPECT_LT(ms_since(t0), 100);
  usleep(100000);
  t0 = Clock::now();
  mon_alerter_free(a);
  EXPECT_LT(ms_since(t0), 1000);
  // with a short backoff every alert is tried 5 times, then given up
  a = mon_alerter_new_ex(url.c_str(), 1, 0);
  ASSERT_NE(a, nullptr);
  for (int k = 0; k < 3; k++)
    mon_alerter_event(a, "db", "fatal", "x", k);
  settle(a);
  mon_alert_stats s = stats(a);
  EXPECT_EQ(s.failed, 3u);
  EXPECT_EQ(s.sent, 0u);
  mon_alerter_free(a);
}

TEST(Alert, FreeAbortsAPostInFlight) {
  Receiver r;
  r.hold = true; // reads the request, then answers only after 3 s
  mon_alerter *a = mon_alerter_new_ex(r.url().c_str(), 10, 0);
  ASSERT_NE(a, nullptr);
  mon_alerter_event(a, "db", "fatal", "x", 1);
  for (int k = 0; k < 200 && r.waiting == 0; k++)
    usleep(5000);
  ASSERT_EQ(r.waiting, 1);
  auto t0 = Clock::now();
  mon_alerter_free(a);
  EXPECT_LT(ms_since(t0), 1500);
}

TEST(Alert, QueueIsBoundedAndDropsTheOldest) {
  Receiver r;
  r.hold = true;
  mon_alerter *a = mon_alerter_new_ex(r.url().c_str(), 10, 4);
  ASSERT_NE(a, nullptr);
  mon_alerter_event(a, "db", "fatal", "0", 0);
  for (int k = 0; k < 200 && r.waiting == 0; k++)
    usleep(5000);
  ASSERT_EQ(r.waiting, 1); // alert 0 is in flight, outside the queue
  for (int k = 1; k <= 10; k++)
    mon_alerter_event(a, "db", "fatal", std::to_string(k).c_str(), k);
  mon_alert_stats s = stats(a);
  EXPECT_EQ(s.dropped, 6u); // 1..6 pushed out by 7..10
  EXPECT_EQ(s.pending, 5u);
  r.hold = false;
  settle(a);
  std::vector<std::string> b = r.bodies();
  ASSERT_EQ(b.size(), 5u);
  std::vector<std::string> got;
  json_error_t e;
  for (auto &x : b) {
    json_t *o = json_loads(x.c_str(), 0, &e);
    got.push_back(field(o, "detail"));
    json_decref(o);
  }
  EXPECT_EQ(got, (std::vector<std::string>{"0", "7", "8", "9", "10"}));
  EXPECT_EQ(stats(a).sent, 5u);
  mon_alerter_free(a);
}

TEST(Alert, UrlOffAndOn) {
  Receiver r;
  mon_alerter *a = mon_alerter_new_ex(nullptr, 10, 0);
  ASSERT_NE(a, nullptr);
  mon_alerter_event(a, "db", "fatal", "lost", 1);
  EXPECT_EQ(stats(a).dropped, 1u);
  mon_alerter_set_url(a, r.url("/new").c_str());
  mon_alerter_event(a, "db", "fatal", "kept", 2);
  settle(a);
  ASSERT_EQ(r.requests(), 1);
  EXPECT_EQ(r.heads()[0].rfind("POST /new ", 0), 0u);
  mon_alerter_set_url(a, nullptr);
  mon_alerter_event(a, "db", "fatal", "lost", 3);
  usleep(50000);
  EXPECT_EQ(r.requests(), 1);
  EXPECT_EQ(stats(a).dropped, 2u);
  mon_alerter_free(a);
  mon_alerter_free(nullptr);
}

TEST(Alert, RestartBurstPostsOnce) {
  Receiver r;
  mon_alerter *a = mon_alerter_new_ex(r.url().c_str(), 10, 0);
  ASSERT_NE(a, nullptr);
  const int64_t min = 60000;
  // 4 restarts: nothing; the 5th within 10 minutes: one alert; more: none
  for (int k = 0; k < 8; k++)
    mon_alerter_event(a, "db", "restart", "exit code 1", k * min);
  // another service's restarts are counted apart
  for (int k = 0; k < 4; k++)
    mon_alerter_event(a, "web", "restart", "x", k * min);
  settle(a);
  std::vector<std::string> b = r.bodies();
  ASSERT_EQ(b.size(), 1u);
  json_error_t e;
  json_t *o = json_loads(b[0].c_str(), 0, &e);
  EXPECT_EQ(field(o, "service"), "db");
  EXPECT_EQ(field(o, "kind"), "restarts");
  EXPECT_EQ(field(o, "detail"),
            "5 restarts within 10 minutes (last: exit code 1)");
  EXPECT_EQ(json_integer_value(json_object_get(o, "ts_ms")), 4 * min);
  json_decref(o);
  // at 13 min the restarts at 0..3 min have left the window and 4..7 are
  // inside: this one makes 5 again and alerts; one more right after it
  // (6 inside) does not
  mon_alerter_event(a, "db", "restart", "x", 13 * min);
  mon_alerter_event(a, "db", "restart", "x", 13 * min + 1);
  settle(a);
  EXPECT_EQ(r.requests(), 2);
  // after a quiet spell longer than the window, a new burst alerts again
  int64_t t = 13 * min + 11 * min;
  for (int k = 0; k < 5; k++)
    mon_alerter_event(a, "db", "restart", "x", t += 10);
  settle(a);
  EXPECT_EQ(r.requests(), 3);
  mon_alerter_free(a);
}

TEST(AlertRule, FifthWithinTenMinutes) {
  const int64_t min = 60000;
  int64_t t[8] = {0, 1 * min, 2 * min, 3 * min};
  EXPECT_EQ(mon_alert_restart_fifth(t, 0, 0), 0);
  EXPECT_EQ(mon_alert_restart_fifth(t, 3, 4 * min), 0); // the 4th
  EXPECT_EQ(mon_alert_restart_fifth(t, 4, 4 * min), 1); // the 5th
  t[4] = 4 * min;
  EXPECT_EQ(mon_alert_restart_fifth(t, 5, 5 * min), 0); // the 6th: quiet
  // the window is 10 minutes, the first restart exactly 10 minutes before
  // is outside it
  EXPECT_EQ(mon_alert_restart_fifth(t, 4, 10 * min), 0);
  EXPECT_EQ(mon_alert_restart_fifth(t, 4, 10 * min - 1), 1);
  // 5 in the window, the oldest leaves it: 4 earlier inside -> alerts again
  EXPECT_EQ(mon_alert_restart_fifth(t, 5, 10 * min + 1), 1);
  // order does not matter
  int64_t u[4] = {3 * min, 0, 2 * min, 1 * min};
  EXPECT_EQ(mon_alert_restart_fifth(u, 4, 4 * min), 1);
  // a clock that stepped back: later times count as inside
  int64_t v[4] = {9 * min, 9 * min, 9 * min, 9 * min};
  EXPECT_EQ(mon_alert_restart_fifth(v, 4, 0), 1);
  // extreme values do not overflow into a false alert
  int64_t w[4] = {INT64_MIN, INT64_MIN, INT64_MIN, INT64_MIN};
  EXPECT_EQ(mon_alert_restart_fifth(w, 4, INT64_MAX), 0);
}

} // namespace

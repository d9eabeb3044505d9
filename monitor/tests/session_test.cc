// session_test.cc — the pure rules of signing in (sessions, expiry, the
// throttle, Cookie and Origin parsing, redirect targets) and the SSE hub
// (fan-out, history first, suspend/wake, dropping a slow reader, limits).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "session.h"
#include "sse.h"

namespace {

TEST(Session, NewFindExpireEnd) {
  static mon_sessions t{}; // large: not on the stack
  t = mon_sessions{};
  mon_session *s;
  ASSERT_EQ(mon_session_new(&t, 1000, &s), 0);
  EXPECT_EQ(strlen(s->id), (size_t)MON_SESSION_ID_LEN);
  EXPECT_STRNE(s->id, s->csrf);
  std::string id = s->id;
  EXPECT_EQ(mon_session_find(&t, id.c_str(), 2000), s);
  std::string wrong = id;
  wrong[5] = wrong[5] == 'a' ? 'b' : 'a';
  EXPECT_EQ(mon_session_find(&t, wrong.c_str(), 2000), nullptr);
  EXPECT_EQ(mon_session_find(&t, "short", 2000), nullptr);
  EXPECT_EQ(mon_session_find(&t, nullptr, 2000), nullptr);
  // 12 h idle from its last use (2000), not from its start
  EXPECT_EQ(mon_session_find(&t, id.c_str(), 2000 + MON_SESSION_IDLE_MS), s);
  EXPECT_EQ(mon_session_find(&t, id.c_str(), 3000 + 2 * MON_SESSION_IDLE_MS),
            nullptr);
  ASSERT_EQ(mon_session_new(&t, 5000, &s), 0);
  id = s->id;
  mon_session_end(s);
  EXPECT_EQ(mon_session_find(&t, id.c_str(), 5001), nullptr);
}

TEST(Session, FullTableReplacesTheLeastRecentlyUsed) {
  static mon_sessions t{};
  t = mon_sessions{};
  std::vector<std::string> ids;
  for (int i = 0; i < MON_SESSION_MAX; i++) {
    mon_session *s;
    ASSERT_EQ(mon_session_new(&t, 100 + i, &s), 0);
    ids.push_back(s->id);
  }
  ASSERT_NE(mon_session_find(&t, ids[0].c_str(), 1000), nullptr); // used now
  mon_session *s;
  ASSERT_EQ(mon_session_new(&t, 1001, &s), 0);
  EXPECT_NE(mon_session_find(&t, ids[0].c_str(), 1002), nullptr);
  EXPECT_EQ(mon_session_find(&t, ids[1].c_str(), 1002), nullptr);
}

TEST(Session, SignInThrottlePerAddressPerMinute) {
  static mon_sessions t{};
  t = mon_sessions{};
  for (int i = 0; i < MON_LOGIN_FAILS_MAX; i++) {
    EXPECT_TRUE(mon_login_allowed(&t, "10.0.0.1", 1000 + i));
    mon_login_failed(&t, "10.0.0.1", 1000 + i);
  }
  EXPECT_FALSE(mon_login_allowed(&t, "10.0.0.1", 2000));
  EXPECT_TRUE(mon_login_allowed(&t, "10.0.0.2", 2000)); // another address
  EXPECT_TRUE(mon_login_allowed(&t, "10.0.0.1", 1000 + MON_LOGIN_WINDOW_MS));
  // many addresses never grow the table, and never unblock by accident
  for (int i = 0; i < 3 * MON_LOGIN_ADDRS; i++)
    mon_login_failed(&t, ("192.168.0." + std::to_string(i)).c_str(), 3000);
  for (int i = 0; i < MON_LOGIN_FAILS_MAX; i++)
    mon_login_failed(&t, "10.0.0.3", 3001);
  EXPECT_FALSE(mon_login_allowed(&t, "10.0.0.3", 3002));
}

TEST(Session, CookieHeader) {
  char v[64];
  EXPECT_TRUE(mon_cookie_get("svc_session=abc", "svc_session", v, sizeof v));
  EXPECT_STREQ(v, "abc");
  EXPECT_TRUE(mon_cookie_get("a=1; svc_session=\"x y\" ; b=2", "svc_session", v,
                             sizeof v));
  EXPECT_STREQ(v, "x y");
  EXPECT_FALSE(mon_cookie_get("xsvc_session=abc", "svc_session", v, sizeof v));
  EXPECT_FALSE(mon_cookie_get("svc_sessionx=abc", "svc_session", v, sizeof v));
  EXPECT_FALSE(mon_cookie_get("", "svc_session", v, sizeof v));
  EXPECT_FALSE(mon_cookie_get(nullptr, "svc_session", v, sizeof v));
  EXPECT_FALSE(mon_cookie_get("svc_session", "svc_session", v, sizeof v));
  std::string big = "svc_session=" + std::string(100, 'a');
  EXPECT_FALSE(mon_cookie_get(big.c_str(), "svc_session", v, sizeof v));
  EXPECT_TRUE(mon_cookie_get("svc_session=", "svc_session", v, sizeof v));
  EXPECT_STREQ(v, "");
}

TEST(Session, OriginAndRedirectTargets) {
  EXPECT_TRUE(mon_origin_ok(nullptr, "127.0.0.1:5155"));
  EXPECT_TRUE(mon_origin_ok("http://127.0.0.1:5155", "127.0.0.1:5155"));
  EXPECT_TRUE(mon_origin_ok("http://LOCALHOST:5155", "localhost:5155"));
  EXPECT_FALSE(mon_origin_ok("http://evil.example", "127.0.0.1:5155"));
  EXPECT_FALSE(mon_origin_ok("null", "127.0.0.1:5155"));
  EXPECT_FALSE(mon_origin_ok("https://127.0.0.1:5155", "127.0.0.1:5155"));
  EXPECT_FALSE(mon_origin_ok("http://127.0.0.1:5156", "127.0.0.1:5155"));
  EXPECT_FALSE(mon_origin_ok("http://127.0.0.1:5155", nullptr));
  EXPECT_TRUE(mon_local_path_ok("/"));
  EXPECT_TRUE(mon_local_path_ok("/service/kv"));
  EXPECT_FALSE(mon_local_path_ok("//evil.example/"));
  EXPECT_FALSE(mon_local_path_ok("http://evil.example/"));
  EXPECT_FALSE(mon_local_path_ok("/\\evil"));
  EXPECT_FALSE(mon_local_path_ok("/a\r\nSet-Cookie: x"));
  EXPECT_FALSE(mon_local_path_ok("/../etc"));
  EXPECT_FALSE(mon_local_path_ok("/service/../x"));
  // regression: a valid service name with ".." inside was refused
  EXPECT_TRUE(mon_local_path_ok("/service/a..b"));
  EXPECT_FALSE(mon_local_path_ok(""));
}

// ---- the SSE hub ----

struct Hooks {
  int suspends = 0, wakes = 0;
  static void suspend(void *c) { static_cast<Hooks *>(c)->suspends++; }
  static void wake(void *c) { static_cast<Hooks *>(c)->wakes++; }
};

std::string drain(mon_sse_sub *s) {
  std::string out;
  char buf[1024];
  ssize_t n;
  while ((n = mon_sse_read(s, buf, sizeof buf, 0)) > 0)
    out.append(buf, (size_t)n);
  return out;
}

TEST(Sse, FanOutByTopicServiceAndStream) {
  mon_sse_hub *h;
  ASSERT_EQ(mon_sse_hub_new(&h), 0);
  mon_sse_sub *ev = mon_sse_subscribe(h, MON_SSE_EVENTS, 0, 0, 0);
  mon_sse_sub *out1 = mon_sse_subscribe(h, MON_SSE_LOGS, 1, 0, 0);
  mon_sse_sub *err1 = mon_sse_subscribe(h, MON_SSE_LOGS, 1, 1, 0);
  mon_sse_publish(h, MON_SSE_EVENTS, 0, 0, "state", "{\"a\":1}", 7);
  mon_sse_publish(h, MON_SSE_LOGS, 1, 0, "line", "L1", 2);
  mon_sse_publish(h, MON_SSE_LOGS, 2, 0, "line", "other", 5);
  EXPECT_EQ(drain(ev), "event: state\ndata: {\"a\":1}\n\n");
  EXPECT_EQ(drain(out1), "event: line\ndata: L1\n\n");
  EXPECT_EQ(drain(err1), "");
  EXPECT_EQ(mon_sse_count(h), 3);
  mon_sse_unsubscribe(ev);
  mon_sse_unsubscribe(out1);
  mon_sse_unsubscribe(err1);
  EXPECT_EQ(mon_sse_count(h), 0);
  mon_sse_hub_free(h);
}

TEST(Sse, SuspendsWhenEmptyAndWakesOnData) {
  mon_sse_hub *h;
  ASSERT_EQ(mon_sse_hub_new(&h), 0);
  mon_sse_sub *s = mon_sse_subscribe(h, MON_SSE_EVENTS, 0, 0, 0);
  Hooks k;
  mon_sse_hooks hooks = {Hooks::suspend, Hooks::wake, &k};
  mon_sse_set_hooks(s, &hooks);
  char buf[64];
  EXPECT_EQ(mon_sse_read(s, buf, sizeof buf, 0), 0);
  EXPECT_EQ(k.suspends, 1);
  mon_sse_publish(h, MON_SSE_EVENTS, 0, 0, "x", "1", 1);
  EXPECT_EQ(k.wakes, 1);
  mon_sse_publish(h, MON_SSE_EVENTS, 0, 0, "x", "2", 1);
  EXPECT_EQ(k.wakes, 1) << "woken once per suspend";
  EXPECT_EQ(drain(s), "event: x\ndata: 1\n\nevent: x\ndata: 2\n\n");
  mon_sse_unsubscribe(s);
  mon_sse_hub_free(h);
}

TEST(Sse, HistoryGoesBeforeWhatArrivedMeanwhile) {
  mon_sse_hub *h;
  ASSERT_EQ(mon_sse_hub_new(&h), 0);
  mon_sse_sub *s = mon_sse_subscribe(h, MON_SSE_LOGS, 0, 0, 0);
  mon_sse_publish(h, MON_SSE_LOGS, 0, 0, "line", "new", 3);
  const char old[] = "event: line\ndata: old\n\n";
  mon_sse_prepend(s, old, sizeof old - 1);
  EXPECT_EQ(drain(s), std::string(old) + "event: line\ndata: new\n\n");
  mon_sse_unsubscribe(s);
  mon_sse_hub_free(h);
}

TEST(Sse, AReaderThatStopsReadingIsDroppedNotBuffered) {
  mon_sse_hub *h;
  ASSERT_EQ(mon_sse_hub_new(&h), 0);
  mon_sse_sub *slow = mon_sse_subscribe(h, MON_SSE_EVENTS, 0, 0, 0);
  mon_sse_sub *fast = mon_sse_subscribe(h, MON_SSE_EVENTS, 0, 0, 0);
  std::string data(1000, 'x');
  for (int i = 0; i < 2 * MON_SSE_BUF / 1000; i++) {
    mon_sse_publish(h, MON_SSE_EVENTS, 0, 0, "big", data.data(), data.size());
    drain(fast);
  }
  char buf[64];
  EXPECT_EQ(mon_sse_read(slow, buf, sizeof buf, 0), -1) << "dropped";
  EXPECT_EQ(mon_sse_read(fast, buf, sizeof buf, 0), 0) << "still served";
  mon_sse_unsubscribe(slow);
  mon_sse_unsubscribe(fast);
  mon_sse_hub_free(h);
}

TEST(Sse, SubscribersAreLimitedAndKeptAlive) {
  mon_sse_hub *h;
  ASSERT_EQ(mon_sse_hub_new(&h), 0);
  std::vector<mon_sse_sub *> subs;
  for (int i = 0; i < MON_SSE_MAX; i++) {
    subs.push_back(mon_sse_subscribe(h, MON_SSE_EVENTS, 0, 0, 0));
    ASSERT_NE(subs.back(), nullptr);
  }
  EXPECT_EQ(mon_sse_subscribe(h, MON_SSE_EVENTS, 0, 0, 0), nullptr);
  mon_sse_tick(h, MON_SSE_KEEPALIVE_MS - 1);
  EXPECT_EQ(drain(subs[0]), "");
  mon_sse_tick(h, MON_SSE_KEEPALIVE_MS);
  EXPECT_EQ(drain(subs[0]), ": keep-alive\n\n");
  mon_sse_drop_all(h);
  EXPECT_EQ(drain(subs[1]), ": keep-alive\n\n") << "what was queued goes out";
  // regression: a stream opened during shutdown stayed suspended
  mon_sse_unsubscribe(subs.back());
  subs.pop_back(); // room for one more, yet none is let in
  EXPECT_EQ(mon_sse_subscribe(h, MON_SSE_EVENTS, 0, 0, 0), nullptr);
  char buf[8];
  EXPECT_EQ(mon_sse_read(subs[1], buf, sizeof buf, 0), -1);
  for (mon_sse_sub *s : subs)
    mon_sse_unsubscribe(s);
  mon_sse_hub_free(h);
}

} // namespace

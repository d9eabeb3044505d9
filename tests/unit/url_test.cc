// url_test.cc — the URL parser (libsvc/src/url.c): every valid form, a table
// of invalid ones, service-name rules, the rendezvous directory's environment
// precedence, and random strings that must never crash the parser.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <random>
#include <string>

extern "C" {
#include "svc.h"
#include "url.h"
}

namespace {

svc__url Parse(const std::string &s, int *rc) {
  svc__url u;
  memset(&u, 0x5A, sizeof u);
  *rc = svc__url_parse(s.c_str(), &u);
  return u;
}

// ---- valid ----

TEST(UrlValid, Shm) {
  int rc;
  svc__url u = Parse("shm://echo", &rc);
  ASSERT_EQ(0, rc);
  EXPECT_STREQ(u.scheme, "shm");
  EXPECT_STREQ(u.name, "echo");
}

TEST(UrlValid, ShmNameCharacters) {
  for (const char *n : {"a", "Z", "0", "svc.echo-1_2", "a.b.c", "_x", "-x",
                        "UPPER_lower-09.x"}) {
    int rc;
    svc__url u = Parse(std::string("shm://") + n, &rc);
    EXPECT_EQ(0, rc) << n;
    EXPECT_STREQ(u.name, n);
  }
}

TEST(UrlValid, ShmNameOf64Bytes) {
  std::string n(SVC__NAME_MAX, 'n');
  int rc;
  svc__url u = Parse("shm://" + n, &rc);
  ASSERT_EQ(0, rc);
  EXPECT_EQ(std::string(u.name), n);
}

TEST(UrlValid, Unix) {
  int rc;
  svc__url u = Parse("unix:///tmp/x.sock", &rc);
  ASSERT_EQ(0, rc);
  EXPECT_STREQ(u.scheme, "unix");
  EXPECT_STREQ(u.path, "/tmp/x.sock");
}

TEST(UrlValid, UnixLongestPath) {
  std::string p = "/" + std::string(SVC__PATH_MAX - 2, 'p'); // 107 bytes
  int rc;
  svc__url u = Parse("unix://" + p, &rc);
  ASSERT_EQ(0, rc);
  EXPECT_EQ(std::string(u.path), p);
}

TEST(UrlValid, UnixPathWithSpacesAndDots) {
  int rc;
  svc__url u = Parse("unix:///run/my svc/../a.sock", &rc);
  ASSERT_EQ(0, rc);
  EXPECT_STREQ(u.path, "/run/my svc/../a.sock");
}

struct TcpCase {
  const char *url;
  const char *host;
  uint16_t port;
};

TEST(UrlValid, Tcp) {
  const TcpCase cases[] = {
      {"tcp://127.0.0.1:80", "127.0.0.1", 80},
      {"tcp://localhost:5201", "localhost", 5201},
      {"tcp://0.0.0.0:1", "0.0.0.0", 1},
      {"tcp://example.com:65535", "example.com", 65535},
      {"tcp://[::1]:80", "::1", 80},
      {"tcp://[::]:8080", "::", 8080},
      {"tcp://[fe80::1%eth0]:443", "fe80::1%eth0", 443},
      {"tcp://[2001:db8::1]:00080", "2001:db8::1", 80},
      {"tcp://my-host_1:22", "my-host_1", 22},
  };
  for (const TcpCase &c : cases) {
    int rc;
    svc__url u = Parse(c.url, &rc);
    ASSERT_EQ(0, rc) << c.url;
    EXPECT_STREQ(u.scheme, "tcp") << c.url;
    EXPECT_STREQ(u.host, c.host) << c.url;
    EXPECT_EQ(u.port, c.port) << c.url;
  }
}

TEST(UrlValid, TcpHostOf255Bytes) {
  std::string h(SVC__HOST_MAX, 'h');
  int rc;
  svc__url u = Parse("tcp://" + h + ":9", &rc);
  ASSERT_EQ(0, rc);
  EXPECT_EQ(std::string(u.host), h);
}

// ---- invalid ----

TEST(UrlInvalid, Table) {
  const std::string long_name(SVC__NAME_MAX + 1, 'n');
  const std::string long_path = "/" + std::string(SVC__PATH_MAX - 1, 'p');
  const std::string long_host(SVC__HOST_MAX + 1, 'h');
  const std::string bad[] = {
      "",
      "echo",
      "shm:",
      "shm:/echo",
      "shm://",
      "shm://.hidden",
      "shm://.",
      "shm://..",
      "shm://a/b",
      "shm://a b",
      "shm://a:b",
      "shm://é",
      "shm://" + long_name,
      "shm:///echo",
      "unix://",
      "unix:/",
      "unix://relative.sock",
      "unix:///",
      "unix:///tmp/dir/",
      "unix://" + long_path,
      "tcp://",
      "tcp://host",
      "tcp://host:",
      "tcp://:80",
      "tcp://host:0",
      "tcp://host:65536",
      "tcp://host:99999999999999999999999",
      "tcp://host:80x",
      "tcp://host:x80",
      "tcp://host:-1",
      "tcp://host:+80",
      "tcp://host: 80",
      "tcp://host:80/path",
      "tcp://host:80?x=1",
      "tcp://a b:80",
      "tcp://user@host:80",
      "tcp://::1:80",
      "tcp://[::1]",
      "tcp://[::1]80",
      "tcp://[::1:80",
      "tcp://[]:80",
      "tcp://" + long_host + ":80",
      "http://host:80",
      "udp://host:80",
      "shmx://echo",
      " shm://echo",
  };
  for (const std::string &s : bad) {
    int rc;
    Parse(s, &rc);
    EXPECT_EQ(SVC_EINVAL, rc) << "'" << s << "'";
  }
}

// ---- tls:// ----

TEST(UrlTls, AuthorityAsForTcpWithoutParameters) {
  int rc;
  svc__url u = Parse("tls://127.0.0.1:5203", &rc);
  ASSERT_EQ(0, rc);
  EXPECT_STREQ(u.scheme, "tls");
  EXPECT_STREQ(u.host, "127.0.0.1");
  EXPECT_EQ(5203, u.port);
  EXPECT_STREQ(u.tls.ca, "");
  EXPECT_STREQ(u.tls.cert, "");
  u = Parse("tls://[::1]:443?ca=/x", &rc);
  ASSERT_EQ(0, rc);
  EXPECT_STREQ(u.host, "::1");
  EXPECT_STREQ(u.tls.ca, "/x");
}

TEST(UrlTls, EveryParameter) {
  int rc;
  svc__url u = Parse("tls://0.0.0.0:5203?cert=/etc/svc/server.pem&key=/etc/"
                     "svc/server.key&client_ca=/etc/svc/clients-ca.pem",
                     &rc);
  ASSERT_EQ(0, rc);
  EXPECT_STREQ(u.tls.cert, "/etc/svc/server.pem");
  EXPECT_STREQ(u.tls.key, "/etc/svc/server.key");
  EXPECT_STREQ(u.tls.client_ca, "/etc/svc/clients-ca.pem");
  u = Parse("tls://host.example:5203?ca=ca.pem&servername=svc.example&cert=c&"
            "key=k",
            &rc);
  ASSERT_EQ(0, rc);
  EXPECT_STREQ(u.host, "host.example");
  EXPECT_STREQ(u.tls.ca, "ca.pem");
  EXPECT_STREQ(u.tls.servername, "svc.example");
  EXPECT_STREQ(u.tls.cert, "c");
  EXPECT_STREQ(u.tls.key, "k");
}

TEST(UrlTls, ValuesArePercentDecoded) {
  int rc;
  svc__url u = Parse("tls://h:1?ca=/my%20dir/a%26b%3Dc%25.pem", &rc);
  ASSERT_EQ(0, rc);
  EXPECT_STREQ(u.tls.ca, "/my dir/a&b=c%.pem");
  u = Parse("tls://h:1?ca=/x%2f%2F", &rc);
  ASSERT_EQ(0, rc);
  EXPECT_STREQ(u.tls.ca, "/x//");
}

TEST(UrlTls, LongestValueFitsOneMoreDoesNot) {
  std::string v(SVC__FILE_MAX - 1, 'f');
  int rc;
  svc__url u = Parse("tls://h:1?cert=" + v, &rc);
  ASSERT_EQ(0, rc);
  EXPECT_EQ(std::string(u.tls.cert), v);
  Parse("tls://h:1?cert=" + v + "f", &rc);
  EXPECT_EQ(SVC_EINVAL, rc);
  std::string name(SVC__HOST_MAX, 'n');
  Parse("tls://h:1?servername=" + name, &rc);
  EXPECT_EQ(0, rc);
  Parse("tls://h:1?servername=" + name + "n", &rc);
  EXPECT_EQ(SVC_EINVAL, rc);
}

TEST(UrlTls, BadQueriesAreRefused) {
  for (const char *bad : {
           "tls://h:1?",              // empty query
           "tls://h:1?ca",            // no '='
           "tls://h:1?ca=",           // empty value
           "tls://h:1?=x",            // empty key
           "tls://h:1?cafile=/x",     // unknown key
           "tls://h:1?CA=/x",         // keys are lower case
           "tls://h:1?ca=/x&ca=/y",   // given twice
           "tls://h:1?ca=/x&",        // trailing '&'
           "tls://h:1?ca=/x&&key=/k", // empty pair
           "tls://h:1?ca=/a%00b",     // NUL would cut the path
           "tls://h:1?ca=/a%4",       // short escape
           "tls://h:1?ca=/a%",        // short escape
           "tls://h:1?ca=/a%zz",      // not hex
           "tls://h:1?ca=/a\tb",
           "tls://h:1?ca=/a%08b", // escaped control byte (fuzz_url found it)
           "tls://h:1?ca=/a%7F",  // control byte
           "tls://h?ca=/x",       // no port
           "tls://:1?ca=/x",      // no host
           "tls://h:0?ca=/x",     // port 0
           "tls://h:1/ca=/x",     // path, not query
           "tcp://h:1?ca=/x",     // only tls takes a query
       }) {
    int rc;
    Parse(bad, &rc);
    EXPECT_EQ(SVC_EINVAL, rc) << bad;
  }
}

TEST(UrlTls, FailedParseLeavesNothingBehind) {
  svc__url u;
  memset(&u, 0x5A, sizeof u);
  ASSERT_EQ(SVC_EINVAL, svc__url_parse("tls://h:1?ca=/x&bogus=1", &u));
  EXPECT_STREQ(u.scheme, "");
  EXPECT_STREQ(u.tls.ca, "");
}

TEST(UrlInvalid, Null) {
  svc__url u;
  EXPECT_EQ(SVC_EINVAL, svc__url_parse(nullptr, &u));
  EXPECT_EQ(SVC_EINVAL, svc__url_parse("shm://x", nullptr));
}

TEST(UrlInvalid, EmbeddedNulEndsTheString) {
  // The parser sees a C string: "shm://ab\0cd" is "shm://ab".
  const char s[] = "shm://ab\0/../x";
  svc__url u;
  ASSERT_EQ(0, svc__url_parse(s, &u));
  EXPECT_STREQ(u.name, "ab");
}

// ---- names ----

TEST(UrlName, Valid) {
  EXPECT_TRUE(svc__name_valid("a"));
  EXPECT_TRUE(svc__name_valid("svc.echo"));
  EXPECT_TRUE(svc__name_valid(std::string(SVC__NAME_MAX, 'x').c_str()));
  EXPECT_FALSE(svc__name_valid(std::string(SVC__NAME_MAX + 1, 'x').c_str()));
  EXPECT_FALSE(svc__name_valid(""));
  EXPECT_FALSE(svc__name_valid(nullptr));
  EXPECT_FALSE(svc__name_valid(".x"));
  EXPECT_FALSE(svc__name_valid("a/b"));
  EXPECT_FALSE(svc__name_valid("a\n"));
}

// ---- runtime dir ----

class RuntimeDir : public ::testing::Test {
protected:
  void SetUp() override {
    Save("SVC_RUNTIME_DIR", &svc_);
    Save("XDG_RUNTIME_DIR", &xdg_);
  }
  void TearDown() override {
    Restore("SVC_RUNTIME_DIR", svc_);
    Restore("XDG_RUNTIME_DIR", xdg_);
  }
  static void Save(const char *k, std::pair<bool, std::string> *out) {
    const char *v = getenv(k);
    *out = {v != nullptr, v ? v : ""};
  }
  static void Restore(const char *k, const std::pair<bool, std::string> &v) {
    if (v.first)
      setenv(k, v.second.c_str(), 1);
    else
      unsetenv(k);
  }
  std::pair<bool, std::string> svc_, xdg_;
};

TEST_F(RuntimeDir, SvcRuntimeDirWins) {
  setenv("SVC_RUNTIME_DIR", "/tmp/abc", 1);
  setenv("XDG_RUNTIME_DIR", "/run/user/1", 1);
  char buf[256];
  ASSERT_EQ(0, svc__runtime_dir(buf, sizeof buf));
  EXPECT_STREQ(buf, "/tmp/abc");
}

TEST_F(RuntimeDir, XdgNext) {
  unsetenv("SVC_RUNTIME_DIR");
  setenv("XDG_RUNTIME_DIR", "/run/user/1", 1);
  char buf[256];
  ASSERT_EQ(0, svc__runtime_dir(buf, sizeof buf));
  EXPECT_STREQ(buf, "/run/user/1/svc");
}

TEST_F(RuntimeDir, EmptyValuesAreIgnored) {
  setenv("SVC_RUNTIME_DIR", "", 1);
  setenv("XDG_RUNTIME_DIR", "", 1);
  char buf[256];
  ASSERT_EQ(0, svc__runtime_dir(buf, sizeof buf));
  EXPECT_EQ(std::string(buf), "/tmp/svc-" + std::to_string(getuid()));
}

TEST_F(RuntimeDir, TmpFallback) {
  unsetenv("SVC_RUNTIME_DIR");
  unsetenv("XDG_RUNTIME_DIR");
  char buf[256];
  ASSERT_EQ(0, svc__runtime_dir(buf, sizeof buf));
  EXPECT_EQ(std::string(buf), "/tmp/svc-" + std::to_string(getuid()));
}

TEST_F(RuntimeDir, TooSmallBuffer) {
  setenv("SVC_RUNTIME_DIR", "/tmp/abcdef", 1);
  char buf[8];
  EXPECT_EQ(SVC_EINVAL, svc__runtime_dir(buf, sizeof buf));
  char exact[12]; // 11 chars + NUL fits
  EXPECT_EQ(0, svc__runtime_dir(exact, sizeof exact));
  char one_short[11];
  EXPECT_EQ(SVC_EINVAL, svc__runtime_dir(one_short, sizeof one_short));
}

// ---- property ----

TEST(UrlProperty, RandomStringsNeverCrashAndResultsAreConsistent) {
  const uint32_t seed = 0x5eed0101u;
  std::mt19937 rng(seed);
  const char *prefixes[] = {"",       "shm://",  "unix://", "unix:///",
                            "tcp://", "tcp://[", "tcp://h:"};
  const char alphabet[] = "azAZ09._-/:[]%@ \x01\xff";
  for (int i = 0; i < 20000; i++) {
    SCOPED_TRACE(::testing::Message() << "seed " << seed << " iteration " << i);
    std::string s = prefixes[rng() % 7];
    size_t n = rng() % 80;
    for (size_t k = 0; k < n; k++)
      s += alphabet[rng() % (sizeof alphabet - 1)];
    svc__url u;
    int rc = svc__url_parse(s.c_str(), &u);
    ASSERT_TRUE(rc == 0 || rc == SVC_EINVAL) << rc;
    if (rc != 0)
      continue;
    std::string scheme = u.scheme;
    if (scheme == "shm") {
      ASSERT_TRUE(svc__name_valid(u.name)) << s;
      ASSERT_EQ(s, std::string("shm://") + u.name);
    } else if (scheme == "unix") {
      ASSERT_EQ(u.path[0], '/') << s;
      ASSERT_LT(strlen(u.path), (size_t)SVC__PATH_MAX);
    } else if (scheme == "tcp") {
      ASSERT_GT(u.port, 0);
      ASSERT_GT(strlen(u.host), 0u);
      ASSERT_LE(strlen(u.host), (size_t)SVC__HOST_MAX);
    } else {
      FAIL() << "scheme '" << scheme << "' for " << s;
    }
  }
}

} // namespace

// error_test.cc — SVC_E* codes (libsvc/src/error.c): the values are a wire
// contract, every code has a name and a text, unknown codes are handled, and
// errno translation lives in one place.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <set>
#include <string>

extern "C" {
#include "internal.h"
#include "svc.h"
}

namespace {

struct Code {
  int value;
  const char *name;
  const char *text;
};

const Code kCodes[] = {
#define X(name, value, text) {value, "SVC_" #name, text},
    SVC_ERRNO_MAP(X)
#undef X
};

TEST(Error, ValuesAreFixedWireContract) {
  // These cross the wire in reply frames: changing one breaks old peers.
  EXPECT_EQ(SVC_EINVAL, -1);
  EXPECT_EQ(SVC_ENOMEM, -2);
  EXPECT_EQ(SVC_ECONNREFUSED, -3);
  EXPECT_EQ(SVC_EPEERGONE, -4);
  EXPECT_EQ(SVC_ETIMEDOUT, -5);
  EXPECT_EQ(SVC_ENOMETHOD, -6);
  EXPECT_EQ(SVC_ETOOBIG, -7);
  EXPECT_EQ(SVC_EPROTO, -8);
  EXPECT_EQ(SVC_EHANDLER, -9);
  EXPECT_EQ(SVC_ESYS, -10);
  EXPECT_EQ(SVC_EPERM, -11);
  EXPECT_EQ(SVC_EADDRINUSE, -12);
  EXPECT_EQ(SVC_ESTATE, -13);
  EXPECT_EQ(SVC_EAGAIN, -14);
  EXPECT_EQ(SVC_ETLS, -15);
}

TEST(Error, CodesAreNegativeAndUnique) {
  std::set<int> seen;
  for (const Code &c : kCodes) {
    EXPECT_LT(c.value, 0) << c.name;
    EXPECT_TRUE(seen.insert(c.value).second) << c.name;
  }
  EXPECT_GE(seen.size(), 10u);
}

TEST(Error, EveryCodeHasItsNameAndText) {
  std::set<std::string> texts;
  for (const Code &c : kCodes) {
    ASSERT_NE(svc_err_name(c.value), nullptr);
    ASSERT_NE(svc_strerror(c.value), nullptr);
    EXPECT_STREQ(svc_err_name(c.value), c.name);
    EXPECT_STREQ(svc_strerror(c.value), c.text);
    EXPECT_GT(strlen(svc_strerror(c.value)), 0u) << c.name;
    EXPECT_TRUE(texts.insert(svc_strerror(c.value)).second)
        << "duplicate text for " << c.name;
  }
}

TEST(Error, Success) {
  EXPECT_STREQ(svc_err_name(0), "SVC_OK");
  ASSERT_NE(svc_strerror(0), nullptr);
  EXPECT_STREQ(svc_strerror(0), "success");
}

TEST(Error, UnknownCodesNeverNull) {
  for (int v : {-16, -100, 1, 42, INT32_MIN, INT32_MAX}) {
    ASSERT_NE(svc_strerror(v), nullptr) << v;
    ASSERT_NE(svc_err_name(v), nullptr) << v;
    EXPECT_STREQ(svc_err_name(v), "SVC_EUNKNOWN") << v;
    EXPECT_STREQ(svc_strerror(v), "unknown error") << v;
  }
}

TEST(Error, Version) {
  char want[32];
  snprintf(want, sizeof want, "%d.%d.%d", SVC_VERSION_MAJOR, SVC_VERSION_MINOR,
           SVC_VERSION_PATCH);
  ASSERT_NE(svc_version(), nullptr);
  EXPECT_STREQ(svc_version(), want);
}

TEST(Error, FromErrno) {
  // Called after a failure: errno 0 then must not turn it into success.
  EXPECT_EQ(svc__from_errno(0), SVC_ESYS);
  EXPECT_EQ(svc__from_errno(EINVAL), SVC_EINVAL);
  EXPECT_EQ(svc__from_errno(ENOMEM), SVC_ENOMEM);
  EXPECT_EQ(svc__from_errno(EMFILE), SVC_ENOMEM);
  EXPECT_EQ(svc__from_errno(ECONNREFUSED), SVC_ECONNREFUSED);
  EXPECT_EQ(svc__from_errno(ENOENT), SVC_ECONNREFUSED);
  EXPECT_EQ(svc__from_errno(EPIPE), SVC_EPEERGONE);
  EXPECT_EQ(svc__from_errno(ECONNRESET), SVC_EPEERGONE);
  EXPECT_EQ(svc__from_errno(ETIMEDOUT), SVC_ETIMEDOUT);
  EXPECT_EQ(svc__from_errno(EACCES), SVC_EPERM);
  EXPECT_EQ(svc__from_errno(EPERM), SVC_EPERM);
  EXPECT_EQ(svc__from_errno(EADDRINUSE), SVC_EADDRINUSE);
  EXPECT_EQ(svc__from_errno(EIO), SVC_ESYS);
  EXPECT_EQ(svc__from_errno(EBADF), SVC_ESYS);
}

} // namespace

/* error.c — names for SVC_E* codes, generated from SVC_ERRNO_MAP, and the one
 * place where errno becomes an SVC_E* code. */
#include <errno.h>

#include "internal.h"

const char *svc_strerror(int err) {
  switch (err) {
  case 0:
    return "success";
#define SVC__ERR_TEXT(name, value, text)                                       \
  case value:                                                                  \
    return text;
    SVC_ERRNO_MAP(SVC__ERR_TEXT)
#undef SVC__ERR_TEXT
  default:
    return "unknown error";
  }
}

const char *svc_err_name(int err) {
  switch (err) {
  case 0:
    return "SVC_OK";
#define SVC__ERR_NAME(name, value, text)                                       \
  case value:                                                                  \
    return "SVC_" #name;
    SVC_ERRNO_MAP(SVC__ERR_NAME)
#undef SVC__ERR_NAME
  default:
    return "SVC_EUNKNOWN";
  }
}

const char *svc_version(void) { return SVC__VERSION_STRING; }

int svc__from_errno(int e) {
  switch (e) {
  case 0: /* called after a failure: a failure it stays */
    return SVC_ESYS;
  case EINVAL:
    return SVC_EINVAL;
  case ENOMEM:
  case ENOSPC:
  case ENOBUFS:
  case EMFILE:
  case ENFILE:
    return SVC_ENOMEM;
  case ECONNREFUSED:
  case ENOENT:
  case EHOSTUNREACH:
  case ENETUNREACH:
    return SVC_ECONNREFUSED;
  case EPIPE:
  case ECONNRESET:
  case ECONNABORTED:
  case ENOTCONN:
    return SVC_EPEERGONE;
  case ETIMEDOUT:
    return SVC_ETIMEDOUT;
  case EACCES:
  case EPERM:
    return SVC_EPERM;
  case EADDRINUSE:
    return SVC_EADDRINUSE;
  default:
    return SVC_ESYS;
  }
}

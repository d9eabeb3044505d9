/* token.c — token file handling: created atomically with O_EXCL and 0600
 * so it is never readable by others, even for an instant. */
#include "token.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mon_sys.h"

int mon_random_hex(char *out, size_t nbytes) {
  unsigned char raw[64];
  if (nbytes > sizeof raw)
    return -1;
  size_t got = 0;
  while (got < nbytes) {
    ssize_t n = getrandom(raw + got, nbytes - got, 0);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return -1;
    got += (size_t)n;
  }
  static const char hex[] = "0123456789abcdef";
  for (size_t i = 0; i < nbytes; i++) {
    out[2 * i] = hex[raw[i] >> 4];
    out[2 * i + 1] = hex[raw[i] & 15];
  }
  out[2 * nbytes] = '\0';
  return 0;
}

static int token_create(const char *path, char *out, char *err, size_t errlen) {
  if (mon_random_hex(out, MON_TOKEN_LEN / 2) != 0) {
    snprintf(err, errlen, "getrandom: %s", strerror(errno));
    return -1;
  }
  int fd = mon__open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    snprintf(err, errlen, "%s: %s", path, strerror(errno));
    return -1;
  }
  char line[MON_TOKEN_LEN + 2];
  snprintf(line, sizeof line, "%s\n", out);
  ssize_t w = write(fd, line, MON_TOKEN_LEN + 1);
  close(fd);
  if (w != MON_TOKEN_LEN + 1) {
    snprintf(err, errlen, "%s: short write", path);
    unlink(path);
    return -1;
  }
  return 0;
}

int mon_token_load(const char *path, char out[MON_TOKEN_LEN + 1], char *err,
                   size_t errlen) {
  if (access(path, F_OK) != 0 && errno == ENOENT)
    return token_create(path, out, err, errlen);
  return mon_token_read(path, out, err, errlen);
}

int mon_token_read(const char *path, char out[MON_TOKEN_LEN + 1], char *err,
                   size_t errlen) {
  int fd = mon__open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW, 0);
  if (fd < 0) {
    snprintf(err, errlen, "%s: %s", path, strerror(errno));
    return -1;
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || (st.st_mode & 077)) {
    close(fd);
    snprintf(err, errlen,
             "%s: must not be readable by group or others "
             "(chmod 600)",
             path);
    return -1;
  }
  char buf[256];
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n < 0)
    n = 0;
  buf[n] = '\0';
  size_t len = strcspn(buf, "\r\n \t");
  if (len == 0 || len > MON_TOKEN_LEN) {
    snprintf(err, errlen, "%s: empty token or longer than %d characters", path,
             MON_TOKEN_LEN);
    return -1;
  }
  memcpy(out, buf, len);
  out[len] = '\0';
  return 0;
}

bool mon_secret_eq(const char *secret, const char *given) {
  size_t sl = strlen(secret), gl = strlen(given);
  unsigned diff = (unsigned)(sl ^ gl);
  for (size_t i = 0; i < sl; i++)
    diff |= (unsigned char)secret[i] ^ (unsigned char)(i < gl ? given[i] : 0);
  return diff == 0 && sl > 0;
}

bool mon_token_check(const char *token, const char *authorization) {
  if (!authorization || strncmp(authorization, "Bearer ", 7) != 0)
    return false;
  return mon_secret_eq(token, authorization + 7);
}

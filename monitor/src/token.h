/* token.h — the bearer token that guards the control routes. */
#ifndef MON_TOKEN_H
#define MON_TOKEN_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MON_TOKEN_LEN 64 /* hex characters (32 random bytes) */

/* Reads the token from path; if the file does not exist, creates it with
 * mode 0600 holding 32 bytes from getrandom() as hex. out gets the token
 * (NUL-terminated). 0, or -1 with err set (also for an empty file or one
 * that others can read). */
int mon_token_load(const char *path, char out[MON_TOKEN_LEN + 1], char *err,
                   size_t errlen);
/* nbytes (at most 64) random bytes from getrandom() as 2 * nbytes hex
 * characters and a NUL in out: 0, or -1 (errno says why). */
int mon_random_hex(char *out, size_t nbytes);
/* Reads an existing token file (never makes one): as mon_token_load. */
int mon_token_read(const char *path, char out[MON_TOKEN_LEN + 1], char *err,
                   size_t errlen);
/* Whether given equals secret, in time that depends only on secret's
 * length; false for an empty secret. */
bool mon_secret_eq(const char *secret, const char *given);
/* Checks an Authorization header value ("Bearer TOKEN") in constant time. */
bool mon_token_check(const char *token, const char *authorization);

#ifdef __cplusplus
}
#endif
#endif

/* sock.h — socket plumbing shared by the transports: Unix and TCP dial and
 * listen (stale socket files handled), nonblocking accept with the peer-uid
 * check, and whole reads/writes bounded by a deadline. Every fd is
 * close-on-exec; no call raises SIGPIPE. */
#ifndef SVC_SOCK_H
#define SVC_SOCK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* Binds and listens on a Unix socket path. A live server there gives
 * SVC_EADDRINUSE; a stale socket file is replaced. */
int svc__sock_unix_listen(const char *path, int *out);
int svc__sock_unix_dial(const char *path, int64_t deadline, int *out);
int svc__sock_tcp_listen(const char *host, uint16_t port, int *out);
int svc__sock_tcp_dial(const char *host, uint16_t port, int64_t deadline,
                       int *out);

/* 1 when the socket is bound to a loopback address only (127.0.0.0/8, ::1,
 * or ::ffff:127.x), 0 otherwise (0.0.0.0 and :: included). */
int svc__sock_is_loopback(int fd);

/* Accepts one connection (nonblocking fd): 0, 1 when none is pending, or
 * an error. With check_uid, a Unix peer of another uid gets SVC_EPERM (the
 * accepted fd is returned anyway so the caller can say why). */
int svc__sock_accept(int lfd, int check_uid, int *out);

/* Clears or sets O_NONBLOCK. */
int svc__sock_set_blocking(int fd, int blocking);

/* Waits until fd has events or the deadline passes: 0, SVC_ETIMEDOUT. */
int svc__sock_wait(int fd, short events, int64_t deadline);

/* Skips done bytes of the n buffers at *iov (after a partial write). */
void svc__iov_advance(struct iovec **iov, int *n, size_t done);

/* Writes all of iov (modified) / reads exactly n bytes, waiting up to the
 * deadline (INT64_MAX: none; then a blocking fd blocks in the call).
 * SVC_EPEERGONE on EOF or reset, SVC_ETIMEDOUT. */
int svc__sock_writev_all(int fd, struct iovec *iov, int n, int64_t deadline);
int svc__sock_read_all(int fd, void *buf, size_t n, int64_t deadline);

/* Creates the shm rendezvous directory (mode 0700, ours) and writes
 * DIR/NAME.sock into out. SVC_EPERM if the directory belongs to another
 * user or is not a directory. */
int svc__sock_rendezvous_path(const char *name, int create, char *out,
                              size_t n);

#endif

/* mon_sys.h — the monitor's system calls and allocations that can fail for
 * reasons outside its control, each through one wrapper so that a test can
 * fail any one of them (libsvc/src/fault.h), as libsvc's sys.h does. In
 * svcmon_core a wrapper is the libc call and nothing else: MON__FAULT is
 * the constant 0 and the branch is dropped. In svcmon_core_fault (built
 * with SVC_FAULT_INJECTION) it first asks svc__fault_check whether this
 * call is the one to fail. The SQLite calls have their own layer in
 * store.c (SVC_FAULT_STORE, SVC_FAULT_STORE_READ).
 *
 * Not wrapped: calls that cannot fail in a way the caller handles (close,
 * free, kill, waitpid), and everything in a forked child before exec. */
#ifndef MON_SYS_H
#define MON_SYS_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#ifdef SVC_FAULT_INJECTION
#include "fault.h"
#define MON__FAULT(op) svc__fault_check(op)
#else
#define MON__FAULT(op) 0
#endif

/* Returns fail (with errno set) when the call is to fail, else call. */
#define MON__SYS(op, fail, call)                                               \
  do {                                                                         \
    int mon__e = MON__FAULT(op);                                               \
    if (mon__e) {                                                              \
      errno = mon__e;                                                          \
      return fail;                                                             \
    }                                                                          \
    return call;                                                               \
  } while (0)

static inline void *mon__malloc(size_t n) {
  MON__SYS(SVC_FAULT_ALLOC, NULL, malloc(n));
}
static inline void *mon__calloc(size_t n, size_t size) {
  MON__SYS(SVC_FAULT_ALLOC, NULL, calloc(n, size));
}
static inline void *mon__realloc(void *p, size_t n) {
  MON__SYS(SVC_FAULT_ALLOC, NULL, realloc(p, n));
}
static inline char *mon__strdup(const char *s) {
  MON__SYS(SVC_FAULT_ALLOC, NULL, strdup(s));
}

/* open(2) with its mode always given (0 when O_CREAT is not set). */
static inline int mon__open(const char *path, int flags, mode_t mode) {
  MON__SYS(SVC_FAULT_OPEN, -1, open(path, flags, mode));
}
static inline FILE *mon__fopen(const char *path, const char *mode) {
  MON__SYS(SVC_FAULT_OPEN, NULL, fopen(path, mode));
}
static inline DIR *mon__opendir(const char *path) {
  MON__SYS(SVC_FAULT_OPEN, NULL, opendir(path));
}

static inline pid_t mon__fork(void) { MON__SYS(SVC_FAULT_FORK, -1, fork()); }
static inline int mon__pipe2(int fds[2], int flags) {
  MON__SYS(SVC_FAULT_PIPE, -1, pipe2(fds, flags));
}
static inline int mon__eventfd(unsigned initval, int flags) {
  MON__SYS(SVC_FAULT_FD, -1, eventfd(initval, flags));
}
static inline int mon__signalfd(int fd, const sigset_t *set, int flags) {
  MON__SYS(SVC_FAULT_FD, -1, signalfd(fd, set, flags));
}
/* pthread_create returns its error instead of setting errno. */
static inline int mon__pthread_create(pthread_t *t, const pthread_attr_t *a,
                                      void *(*fn)(void *), void *arg) {
  int e = MON__FAULT(SVC_FAULT_THREAD);
  return e ? e : pthread_create(t, a, fn, arg);
}

#endif

/* sys.h — the system calls and allocations of libsvc that can fail for
 * reasons outside its control, each through one wrapper so that tests can
 * fail any one of them (fault.h). In a normal build a wrapper is the libc
 * call and nothing else: SVC__FAULT is the constant 0 and the compiler
 * drops the branch. In a build with SVC_FAULT_INJECTION it first asks
 * svc__fault_check whether this call is the one to fail.
 *
 * Calls that cannot fail in a way the caller handles (close, free,
 * munmap, clock_gettime) are not wrapped. */
#ifndef SVC_SYS_H
#define SVC_SYS_H

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#ifdef SVC_FAULT_INJECTION
#include "fault.h"
#define SVC__FAULT(op) svc__fault_check(op)
#else
#define SVC__FAULT(op) 0
#endif

/* Returns fail (with errno set) when the call is to fail, else call. */
#define SVC__SYS(op, fail, call)                                               \
  do {                                                                         \
    int svc__e = SVC__FAULT(op);                                               \
    if (svc__e) {                                                              \
      errno = svc__e;                                                          \
      return fail;                                                             \
    }                                                                          \
    return call;                                                               \
  } while (0)

static inline void *svc__malloc(size_t n) {
  SVC__SYS(SVC_FAULT_ALLOC, NULL, malloc(n));
}
static inline void *svc__calloc(size_t n, size_t size) {
  SVC__SYS(SVC_FAULT_ALLOC, NULL, calloc(n, size));
}
static inline void *svc__realloc(void *p, size_t n) {
  SVC__SYS(SVC_FAULT_ALLOC, NULL, realloc(p, n));
}

static inline int svc__memfd_create(const char *name, unsigned flags) {
  SVC__SYS(SVC_FAULT_MEMFD, -1, memfd_create(name, flags));
}
static inline int svc__add_seals(int fd, int seals) {
  SVC__SYS(SVC_FAULT_SEAL, -1, fcntl(fd, F_ADD_SEALS, seals));
}
static inline int svc__fallocate(int fd, off_t off, off_t len) {
  SVC__SYS(SVC_FAULT_FALLOCATE, -1, fallocate(fd, 0, off, len));
}
static inline int svc__ftruncate(int fd, off_t len) {
  SVC__SYS(SVC_FAULT_FALLOCATE, -1, ftruncate(fd, len));
}
static inline void *svc__mmap(void *addr, size_t len, int prot, int flags,
                              int fd, off_t off) {
  SVC__SYS(SVC_FAULT_MMAP, MAP_FAILED, mmap(addr, len, prot, flags, fd, off));
}

static inline int svc__socket(int domain, int type, int protocol) {
  SVC__SYS(SVC_FAULT_SOCKET, -1, socket(domain, type, protocol));
}
static inline int svc__connect(int fd, const struct sockaddr *a,
                               socklen_t len) {
  SVC__SYS(SVC_FAULT_CONNECT, -1, connect(fd, a, len));
}
static inline int svc__accept4(int fd, int flags) {
  SVC__SYS(SVC_FAULT_ACCEPT, -1, accept4(fd, NULL, NULL, flags));
}
static inline ssize_t svc__send(int fd, const void *p, size_t n, int flags) {
  SVC__SYS(SVC_FAULT_SEND, -1, send(fd, p, n, flags));
}
static inline ssize_t svc__sendmsg(int fd, const struct msghdr *m, int flags) {
  SVC__SYS(SVC_FAULT_SEND, -1, sendmsg(fd, m, flags));
}
static inline ssize_t svc__recv(int fd, void *p, size_t n, int flags) {
  SVC__SYS(SVC_FAULT_RECV, -1, recv(fd, p, n, flags));
}
static inline ssize_t svc__recvmsg(int fd, struct msghdr *m, int flags) {
  SVC__SYS(SVC_FAULT_RECV, -1, recvmsg(fd, m, flags));
}

static inline int svc__epoll_create1(int flags) {
  SVC__SYS(SVC_FAULT_FD, -1, epoll_create1(flags));
}
static inline int svc__eventfd(unsigned initval, int flags) {
  SVC__SYS(SVC_FAULT_FD, -1, eventfd(initval, flags));
}
static inline int svc__timerfd_create(int clock, int flags) {
  SVC__SYS(SVC_FAULT_FD, -1, timerfd_create(clock, flags));
}
static inline int svc__epoll_ctl(int ep, int op, int fd,
                                 struct epoll_event *ev) {
  SVC__SYS(SVC_FAULT_EPOLL_CTL, -1, epoll_ctl(ep, op, fd, ev));
}
static inline int svc__epoll_wait(int ep, struct epoll_event *evs, int n,
                                  int timeout_ms) {
  SVC__SYS(SVC_FAULT_EPOLL_WAIT, -1, epoll_wait(ep, evs, n, timeout_ms));
}

static inline pid_t svc__fork(void) { SVC__SYS(SVC_FAULT_FORK, -1, fork()); }
/* pthread_create returns its error instead of setting errno. */
static inline int svc__pthread_create(pthread_t *t, const pthread_attr_t *a,
                                      void *(*fn)(void *), void *arg) {
  int e = SVC__FAULT(SVC_FAULT_THREAD);
  return e ? e : pthread_create(t, a, fn, arg);
}
static inline int svc__pipe2(int fds[2], int flags) {
  SVC__SYS(SVC_FAULT_PIPE, -1, pipe2(fds, flags));
}

#endif

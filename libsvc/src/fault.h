/* fault.h — fault injection for tests, after SQLite's malloc and I/O-error
 * tests: count every wrapped system call and allocation (sys.h, and the
 * monitor's mon_sys.h), and fail the Nth one, or the Nth and every one
 * after it. Exists only in builds with SVC_FAULT_INJECTION (the
 * svc_internal archive the tests link, and svcmon_core_fault); the shared
 * library and the installed binaries contain none of it.
 *
 * The state is process-wide on purpose: a test arms it, runs a scenario on
 * any number of threads, and reads back how many calls it saw. A forked
 * child inherits it, armed or not. */
#ifndef SVC_FAULT_H
#define SVC_FAULT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One bit per kind of call; a test picks the kinds it counts. */
enum svc__fault_op {
  SVC_FAULT_ALLOC,      /* malloc, calloc, realloc (ENOMEM) */
  SVC_FAULT_MEMFD,      /* memfd_create (EMFILE) */
  SVC_FAULT_SEAL,       /* fcntl F_ADD_SEALS (EPERM) */
  SVC_FAULT_FALLOCATE,  /* fallocate, ftruncate of a region (ENOSPC) */
  SVC_FAULT_MMAP,       /* mmap (ENOMEM) */
  SVC_FAULT_SOCKET,     /* socket (EMFILE) */
  SVC_FAULT_CONNECT,    /* connect (ECONNREFUSED) */
  SVC_FAULT_ACCEPT,     /* accept4 (EMFILE) */
  SVC_FAULT_SEND,       /* send, sendmsg (ECONNRESET) */
  SVC_FAULT_RECV,       /* recv, recvmsg (ECONNRESET) */
  SVC_FAULT_FD,         /* epoll_create1, eventfd, timerfd_create (EMFILE) */
  SVC_FAULT_EPOLL_CTL,  /* epoll_ctl (ENOMEM) */
  SVC_FAULT_EPOLL_WAIT, /* epoll_wait (EINTR: the one it can return) */
  SVC_FAULT_FORK,       /* fork (EAGAIN) */
  SVC_FAULT_THREAD,     /* pthread_create (EAGAIN) */
  SVC_FAULT_PIPE,       /* pipe2 (EMFILE) */
  SVC_FAULT_STORE,      /* the monitor's SQLite writes (SQLITE_FULL) */
  SVC_FAULT_OPEN,       /* the monitor's open, fopen, opendir (EMFILE) */
  SVC_FAULT_STORE_READ, /* the monitor's SQLite reads (SQLITE_IOERR) */
  SVC_FAULT_OP_COUNT
};

#define SVC_FAULT_BIT(op) (UINT64_C(1) << (op))
#define SVC_FAULT_ALL ((UINT64_C(1) << SVC_FAULT_OP_COUNT) - 1)

/* Counts calls of the kinds in mask from now on and fails call number nth
 * (1-based), and with persistent every later one too, with err (0: the
 * kind's usual errno, listed above). nth 0 only counts. */
void svc__fault_arm(uint64_t mask, long nth, int persistent, int err);
/* Stops counting and failing; the counters keep their values. */
void svc__fault_disarm(void);
long svc__fault_calls(void);    /* counted since the last arm */
long svc__fault_injected(void); /* failed since the last arm */
/* The kind of the last failed call, -1 if none: for test messages. */
int svc__fault_last_op(void);
const char *svc__fault_op_name(int op);
/* "alloc,socket" or "all" -> mask; 0 if a name is unknown. */
uint64_t svc__fault_parse_ops(const char *names);

/* Called by each wrapper: the errno to fail this call with, or 0. */
int svc__fault_check(enum svc__fault_op op);

#ifdef __cplusplus
}
#endif

#endif

/* pidfile.h — the monitor's record of the sessions it started, so that a
 * monitor killed with -9 and started again finds the services its
 * predecessor left behind and stops them before starting its own (see
 * "Orphans" in docs/monitor.md). The file is also a lock: one monitor per
 * log_dir. */
#ifndef MON_PIDFILE_H
#define MON_PIDFILE_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mon_pidfile {
  int fd; /* open and flock()ed while the monitor runs */
  char *path;
} mon_pidfile;

/* Opens and locks path. -1 with err set if another monitor holds it. */
int mon_pidfile_open(mon_pidfile *p, const char *path, char *err,
                     size_t errlen);
void mon_pidfile_close(mon_pidfile *p);
/* Stops what the file lists that is still alive: every process whose
 * session is a recorded pid, and the recorded pid itself if its start time
 * still matches (so a reused pid is left alone). SIGTERM, then SIGKILL after
 * timeout_ms. Returns how many processes were found. */
int mon_pidfile_reap(mon_pidfile *p, const char *procroot, int timeout_ms,
                     void (*note)(void *ctx, const char *line), void *ctx);
/* Rewrites the file: one "NAME PID STARTTIME" line per running service
 * (pids[i] == 0: not running). */
void mon_pidfile_write(mon_pidfile *p, const char *procroot,
                       const char *const *names, const int *pids, size_t n);

#ifdef __cplusplus
}
#endif
#endif

/* pidfile.c — records (name, pid, starttime) of every running service and,
 * at start-up, stops the leftovers of a monitor that died without cleaning
 * up. Sessions identify a service's whole tree: the kernel does not reuse a
 * pid while a session or group of that id still has members. */
#include "pidfile.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "mon_sys.h"
#include "proc_sample.h"

int mon_pidfile_open(mon_pidfile *p, const char *path, char *err,
                     size_t errlen) {
  p->fd = mon__open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  p->path = mon__strdup(path);
  if (p->fd < 0 || !p->path) {
    snprintf(err, errlen, "%s: %s", path, strerror(errno));
    mon_pidfile_close(p);
    return -1;
  }
  if (flock(p->fd, LOCK_EX | LOCK_NB) != 0) {
    snprintf(err, errlen,
             "%s is locked: another svc-monitor runs with this "
             "log_dir",
             path);
    mon_pidfile_close(p);
    return -1;
  }
  return 0;
}

void mon_pidfile_close(mon_pidfile *p) {
  if (p->fd >= 0)
    close(p->fd);
  free(p->path);
  p->fd = -1;
  p->path = NULL;
}

typedef struct pid_entry {
  int pid;
  unsigned long long starttime;
} pid_entry;

/* Pids of live processes that belong to any recorded entry. */
static size_t pidfile_members(const char *procroot, const pid_entry *e,
                              size_t ne, int *out, size_t cap) {
  DIR *d = mon__opendir(procroot);
  if (!d)
    return 0;
  size_t n = 0;
  struct dirent *de;
  while ((de = readdir(d)) && n < cap) {
    if (!isdigit((unsigned char)de->d_name[0]))
      continue;
    mon_ps_stat st;
    if (mon_ps_read_stat(procroot, (int)strtol(de->d_name, NULL, 10), &st) !=
            0 ||
        st.state == 'Z')
      continue;
    for (size_t i = 0; i < ne; i++) {
      if ((st.pid == e[i].pid && st.starttime == e[i].starttime) ||
          (st.session == e[i].pid && st.pid != getpid())) {
        out[n++] = st.pid;
        break;
      }
    }
  }
  closedir(d);
  return n;
}

int mon_pidfile_reap(mon_pidfile *p, const char *procroot, int timeout_ms,
                     void (*note)(void *ctx, const char *line), void *ctx) {
  pid_entry e[256];
  size_t ne = 0;
  char buf[16384];
  ssize_t len = pread(p->fd, buf, sizeof buf - 1, 0);
  if (len <= 0)
    return 0;
  buf[len] = '\0';
  for (char *line = strtok(buf, "\n"); line && ne < 256;
       line = strtok(NULL, "\n")) {
    /* NAME PID STARTTIME */
    char *sp = strchr(line, ' '), *end;
    if (!sp)
      continue;
    errno = 0;
    long pid = strtol(sp + 1, &end, 10);
    if (errno || *end != ' ' || pid <= 1 || pid > INT32_MAX)
      continue;
    unsigned long long st = strtoull(end + 1, &end, 10);
    if (errno || (*end && *end != '\n'))
      continue;
    /* a live process with that pid but another start time is somebody
     * else's (reused pid), and so is its session: leave both alone */
    mon_ps_stat now;
    if (mon_ps_read_stat(procroot, (int)pid, &now) == 0 && now.starttime != st)
      continue;
    e[ne++] = (pid_entry){(int)pid, st};
  }
  int pids[4096];
  size_t n = pidfile_members(procroot, e, ne, pids, 4096);
  if (n == 0)
    return 0;
  if (note) {
    char msg[128];
    snprintf(msg, sizeof msg,
             "stopping %zu process(es) left by an earlier monitor", n);
    note(ctx, msg);
  }
  for (size_t i = 0; i < n; i++)
    kill(pids[i], SIGTERM);
  struct timespec nap = {0, 50 * 1000000};
  for (int waited = 0; waited < timeout_ms; waited += 50) {
    int again[4096];
    if (pidfile_members(procroot, e, ne, again, 4096) == 0)
      return (int)n;
    nanosleep(&nap, NULL);
  }
  n = pidfile_members(procroot, e, ne, pids, 4096);
  for (size_t i = 0; i < n; i++)
    kill(pids[i], SIGKILL);
  return (int)n;
}

void mon_pidfile_write(mon_pidfile *p, const char *procroot,
                       const char *const *names, const int *pids, size_t n) {
  if (p->fd < 0)
    return;
  char buf[16384];
  size_t len = 0;
  for (size_t i = 0; i < n && len < sizeof buf - 128; i++) {
    mon_ps_stat st;
    if (pids[i] <= 0 || mon_ps_read_stat(procroot, pids[i], &st) != 0)
      continue;
    len += (size_t)snprintf(buf + len, sizeof buf - len, "%s %d %llu\n",
                            names[i], pids[i], st.starttime);
  }
  if (ftruncate(p->fd, 0) == 0 && len) {
    ssize_t w = pwrite(p->fd, buf, len, 0);
    (void)w;
  }
}

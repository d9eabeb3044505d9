/* soak_proc.c — what the driver reads about the server's processes from
 * /proc: open fds, threads, children. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "soak.h"

int soak_proc_fds(pid_t pid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
  DIR *d = opendir(path);
  if (!d)
    return -1;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    n += e->d_name[0] != '.';
  closedir(d);
  return n;
}

/* The number after key on its line of /proc/PID/status, or -1. */
static long proc_status_field(pid_t pid, const char *key) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
  FILE *f = fopen(path, "re");
  if (!f)
    return -1;
  long v = -1;
  size_t klen = strlen(key);
  while (fgets(line, sizeof line, f))
    if (strncmp(line, key, klen) == 0) {
      v = strtol(line + klen, NULL, 10);
      break;
    }
  fclose(f);
  return v;
}

int soak_proc_threads(pid_t pid) {
  return (int)proc_status_field(pid, "Threads:");
}

/* The state letter of /proc/PID/stat, or 0 if pid is gone. */
static char proc_state(pid_t pid) {
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  FILE *f = fopen(path, "re");
  if (!f)
    return 0;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  const char *p = strrchr(buf, ')'); /* the name may hold anything */
  return p && p[1] == ' ' ? p[2] : 0;
}

int soak_proc_alive(pid_t pid) {
  char s = proc_state(pid);
  return s != 0 && s != 'Z' && s != 'X';
}

int soak_proc_children(pid_t pid, pid_t *out, int max) {
  char path[80], buf[4096];
  snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)pid, (int)pid);
  FILE *f = fopen(path, "re");
  if (!f)
    return -1;
  size_t len = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[len] = '\0';
  int n = 0;
  char *p = buf, *end;
  for (long v; n < max && (v = strtol(p, &end, 10)) > 0; p = end)
    if (soak_proc_alive((pid_t)v))
      out[n++] = (pid_t)v;
  return n;
}

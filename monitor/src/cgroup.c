/* cgroup.c — the monitor's cgroup v2 subtree: finding its own cgroup,
 * moving itself into a leaf so controllers can be enabled below it, and one
 * cgroup per service with memory.max and cpu.max. Only file writes under a
 * root directory that is a parameter, so tests use a fixture tree. */
#include "cgroup.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mon_sys.h"

#define CGROUP_LEAF "monitor"   /* OWN/monitor holds the monitor itself */
#define CGROUP_PREFIX "svc-"    /* OWN/svc-NAME: never a cgroup.* file name */
#define CGROUP_PERIOD_US 100000 /* cpu.max period: percent * 1000 = quota */

struct mon_cgroups {
  char dir[PATH_MAX]; /* OWN: root + this process's cgroup path */
};

static void cgroup_why(char *why, size_t len, const char *fmt, ...) {
  if (!why || !len)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, len, fmt, ap);
  va_end(ap);
}

/* dir + "/" + file into out; false when it does not fit. */
static bool cgroup_path(char *out, size_t len, const char *dir,
                        const char *file) {
  int n = snprintf(out, len, "%s/%s", dir, file);
  if (n >= 0 && (size_t)n < len)
    return true;
  errno = ENAMETOOLONG; /* for the callers' messages */
  return false;
}

/* Reads up to len-1 bytes of a small file, NUL-terminated. Bytes read, or
 * -1 with errno set. */
static ssize_t cgroup_read(const char *path, char *buf, size_t len) {
  int fd = mon__open(path, O_RDONLY | O_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  size_t n = 0;
  while (n + 1 < len) {
    ssize_t r = read(fd, buf + n, len - 1 - n);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0) {
      int e = errno;
      close(fd);
      errno = e;
      return -1;
    }
    if (r == 0)
      break;
    n += (size_t)r;
  }
  buf[n] = '\0';
  close(fd);
  return (ssize_t)n;
}

/* Writes text to dir/file in one write(2): cgroupfs parses each write as a
 * whole, so a short write is an error too. 0, or -1 with why. */
static int cgroup_write(const char *dir, const char *file, const char *text,
                        char *why, size_t whylen) {
  char path[PATH_MAX];
  if (!cgroup_path(path, sizeof path, dir, file)) {
    cgroup_why(why, whylen, "%s/%s: path too long", dir, file);
    return -1;
  }
  /* O_TRUNC: harmless on cgroupfs, and a fixture file keeps only text */
  int fd = mon__open(path, O_WRONLY | O_TRUNC | O_CLOEXEC, 0);
  if (fd < 0) {
    cgroup_why(why, whylen, "open %s: %s", path, strerror(errno));
    return -1;
  }
  size_t len = strlen(text);
  ssize_t w = write(fd, text, len);
  int e = w < 0 ? errno : EIO;
  close(fd);
  if (w != (ssize_t)len) {
    cgroup_why(why, whylen, "write '%s' to %s: %s", text, path, strerror(e));
    return -1;
  }
  return 0;
}

/* True when word is one of the space-separated words of list. */
static bool cgroup_has_word(const char *list, const char *word) {
  size_t wl = strlen(word);
  for (const char *p = list; *p;) {
    p += strspn(p, " \t\n");
    size_t l = strcspn(p, " \t\n");
    if (l == wl && !strncmp(p, word, wl))
      return true;
    p += l;
  }
  return false;
}

int mon_cgroups_parse_self(const char *text, char *path, size_t pathlen,
                           char *why, size_t whylen) {
  const char *v2 = NULL;
  size_t v2len = 0;
  for (const char *line = text; *line;) {
    size_t l = strcspn(line, "\n");
    if (l > 0) {
      if (l < 3 || strncmp(line, "0::", 3) != 0 || v2) {
        cgroup_why(why, whylen,
                   "cgroup v1 hierarchies are mounted (legacy or hybrid "
                   "mode), memory_max and cpu_max need the unified cgroup v2 "
                   "hierarchy");
        return -1;
      }
      v2 = line + 3;
      v2len = l - 3;
    }
    line += l;
    if (*line == '\n')
      line++;
  }
  if (!v2) {
    cgroup_why(why, whylen,
               "no cgroup v2 line (\"0::/path\") in "
               "/proc/self/cgroup");
    return -1;
  }
  /* "/.." prefixes a cgroup outside this cgroup namespace: not under the
   * root we can see */
  if (v2len == 0 || v2[0] != '/' ||
      (v2len >= 3 && !strncmp(v2, "/..", 3) && (v2len == 3 || v2[3] == '/'))) {
    cgroup_why(why, whylen, "unusable cgroup path '%.*s' in /proc/self/cgroup",
               (int)v2len, v2);
    return -1;
  }
  if (v2len >= pathlen) {
    cgroup_why(why, whylen, "cgroup path too long");
    return -1;
  }
  memcpy(path, v2, v2len);
  path[v2len] = '\0';
  return 0;
}

/* The first pid in dir/cgroup.procs that is not this process: 0 when
 * none, -1 with why when unreadable. */
static long cgroup_other_pid(const char *dir, char *why, size_t whylen) {
  char path[PATH_MAX], buf[4096];
  if (!cgroup_path(path, sizeof path, dir, "cgroup.procs") ||
      cgroup_read(path, buf, sizeof buf) < 0) {
    cgroup_why(why, whylen, "read %s/cgroup.procs: %s", dir, strerror(errno));
    return -1;
  }
  long self = (long)getpid();
  for (char *p = buf; *p;) {
    char *end;
    long pid = strtol(p, &end, 10);
    if (end == p)
      break;
    if (pid != self && pid > 0)
      return pid;
    p = end;
  }
  return 0;
}

mon_cgroups *mon_cgroups_new(const char *root, const char *proc_self_cgroup,
                             char *why, size_t whylen) {
  cgroup_why(why, whylen, "%s", "");
  char text[4096], own[PATH_MAX];
  if (cgroup_read(proc_self_cgroup, text, sizeof text) < 0) {
    cgroup_why(why, whylen, "read %s: %s", proc_self_cgroup, strerror(errno));
    return NULL;
  }
  if (mon_cgroups_parse_self(text, own, sizeof own, why, whylen) != 0)
    return NULL;
  mon_cgroups *cg = mon__calloc(1, sizeof *cg);
  if (!cg) {
    cgroup_why(why, whylen, "out of memory");
    return NULL;
  }
  /* own is "/" in the root cgroup (or a cgroup namespace's root) */
  int n = snprintf(cg->dir, sizeof cg->dir, "%s%s", root,
                   strcmp(own, "/") ? own : "");
  if (n < 0 || (size_t)n >= sizeof cg->dir) {
    cgroup_why(why, whylen, "cgroup path too long");
    goto fail;
  }
  if (access(cg->dir, W_OK) != 0) {
    cgroup_why(why, whylen,
               "%s is not writable (%s): the monitor's cgroup is not "
               "delegated to it (under systemd: Delegate=yes)",
               cg->dir, strerror(errno));
    goto fail;
  }
  char path[PATH_MAX], ctl[1024];
  if (!cgroup_path(path, sizeof path, cg->dir, "cgroup.controllers") ||
      cgroup_read(path, ctl, sizeof ctl) < 0) {
    cgroup_why(why, whylen, "read %s/cgroup.controllers: %s", cg->dir,
               strerror(errno));
    goto fail;
  }
  bool mem = cgroup_has_word(ctl, "memory"), cpu = cgroup_has_word(ctl, "cpu");
  if (!mem || !cpu) {
    cgroup_why(why, whylen,
               "controller%s %s%s%s not available in %s/cgroup.controllers "
               "(the parent cgroup does not delegate %s)",
               !mem && !cpu ? "s" : "", mem ? "" : "memory",
               !mem && !cpu ? " and " : "", cpu ? "" : "cpu", cg->dir,
               !mem && !cpu ? "them" : "it");
    goto fail;
  }
  /* Moving only ourselves would leave the others in OWN, and enabling
   * controllers would then fail: say who is in the way instead. */
  long other = cgroup_other_pid(cg->dir, why, whylen);
  if (other < 0)
    goto fail;
  if (other > 0) {
    cgroup_why(why, whylen,
               "other processes share the cgroup %s (pid %ld); start "
               "svc-monitor in a cgroup of its own (a systemd service with "
               "Delegate=yes)",
               cg->dir, other);
    goto fail;
  }
  char leaf[PATH_MAX];
  if (!cgroup_path(leaf, sizeof leaf, cg->dir, CGROUP_LEAF)) {
    cgroup_why(why, whylen, "cgroup path too long");
    goto fail;
  }
  if (mkdir(leaf, 0755) != 0 && errno != EEXIST) {
    cgroup_why(why, whylen, "mkdir %s: %s", leaf, strerror(errno));
    goto fail;
  }
  /* "0" is the writer: cgroup.procs moves every thread of the process */
  if (cgroup_write(leaf, "cgroup.procs", "0", why, whylen) != 0)
    goto fail_leaf;
  if (cgroup_write(cg->dir, "cgroup.subtree_control", "+memory +cpu", why,
                   whylen) != 0)
    goto fail_moved;
  return cg;
fail_moved:
  /* Back where we were, so a failed setup leaves nothing changed; a
   * failure here leaves us in the leaf, which is harmless. */
  cgroup_write(cg->dir, "cgroup.procs", "0", NULL, 0);
fail_leaf:
  rmdir(leaf); /* fails if something else uses it: then it stays */
fail:
  free(cg);
  return NULL;
}

void mon_cgroups_free(mon_cgroups *cg) { free(cg); }

const char *mon_cgroups_dir(const mon_cgroups *cg) { return cg->dir; }

/* OWN/svc-NAME into out; false when it does not fit. */
static bool cgroup_service_dir(const mon_cgroups *cg, const char *name,
                               char *out, size_t len) {
  int n = snprintf(out, len, "%s/" CGROUP_PREFIX "%s", cg->dir, name);
  return n >= 0 && (size_t)n < len;
}

int mon_cgroups_prepare(mon_cgroups *cg, const mon_service_cfg *s, char *why,
                        size_t whylen) {
  cgroup_why(why, whylen, "%s", "");
  if (!cg)
    return -1;
  char dir[PATH_MAX];
  if (!cgroup_service_dir(cg, s->name, dir, sizeof dir)) {
    cgroup_why(why, whylen, "cgroup path too long");
    return -1;
  }
  if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
    cgroup_why(why, whylen, "mkdir %s: %s", dir, strerror(errno));
    return -1;
  }
  /* Both written on every start, "max" included: the previous run may
   * have had other limits before a reload. */
  char mem[32], cpu[48];
  if (s->memory_max > 0)
    snprintf(mem, sizeof mem, "%lld", s->memory_max);
  else
    snprintf(mem, sizeof mem, "max");
  if (s->cpu_max > 0)
    snprintf(cpu, sizeof cpu, "%lld %d", (long long)s->cpu_max * 1000,
             CGROUP_PERIOD_US);
  else
    snprintf(cpu, sizeof cpu, "max %d", CGROUP_PERIOD_US);
  if (cgroup_write(dir, "memory.max", mem, why, whylen) != 0 ||
      cgroup_write(dir, "cpu.max", cpu, why, whylen) != 0)
    return -1;
  char procs[PATH_MAX];
  if (!cgroup_path(procs, sizeof procs, dir, "cgroup.procs")) {
    cgroup_why(why, whylen, "cgroup path too long");
    return -1;
  }
  int fd = mon__open(procs, O_WRONLY | O_CLOEXEC, 0);
  if (fd < 0)
    cgroup_why(why, whylen, "open %s: %s", procs, strerror(errno));
  return fd;
}

int mon_cgroups_remove(mon_cgroups *cg, const char *name) {
  if (!cg)
    return 0;
  char dir[PATH_MAX];
  if (!cgroup_service_dir(cg, name, dir, sizeof dir))
    return -ENAMETOOLONG;
  if (rmdir(dir) != 0 && errno != ENOENT)
    return -errno;
  return 0;
}

/* Reads dir/file into buf; false when it cannot. */
static bool cgroup_read_at(const char *dir, const char *file, char *buf,
                           size_t len) {
  char path[PATH_MAX];
  return cgroup_path(path, sizeof path, dir, file) &&
         cgroup_read(path, buf, len) >= 0;
}

int mon_cgroups_stats(const mon_cgroups *cg, const char *name,
                      mon_cgroup_stats *out) {
  char dir[PATH_MAX], cur[64], events[1024];
  if (!cg || !cgroup_service_dir(cg, name, dir, sizeof dir) ||
      !cgroup_read_at(dir, "memory.current", cur, sizeof cur) ||
      !cgroup_read_at(dir, "memory.events", events, sizeof events))
    return -1;
  char *end;
  out->memory_current = strtoll(cur, &end, 10);
  if (end == cur)
    return -1;
  out->oom_kills = 0;
  for (const char *line = events; *line;) {
    if (!strncmp(line, "oom_kill ", 9)) {
      out->oom_kills = strtoll(line + 9, NULL, 10);
      break;
    }
    line += strcspn(line, "\n");
    if (*line)
      line++;
  }
  return 0;
}

bool mon_cgroups_wanted(const mon_config *cfg) {
  for (size_t i = 0; i < cfg->nservices; i++)
    if (cfg->services[i].memory_max > 0 || cfg->services[i].cpu_max > 0)
      return true;
  return false;
}

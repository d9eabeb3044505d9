/* spawn.c — fork + exec of a service. The child side is kept to
 * async-signal-safe calls because other monitor threads (HTTP) may hold
 * locks at the moment of fork. */
#include "spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "mon_sys.h"

extern char **environ;

/* Replaces or appends KEY=VALUE in a NULL-terminated env array. */
static int spawn_env_set(char ***env, size_t *n, const char *kv) {
  size_t klen = strcspn(kv, "=");
  char *copy = mon__strdup(kv);
  if (!copy)
    return -1;
  for (size_t i = 0; i < *n; i++) {
    if (!strncmp((*env)[i], kv, klen) && (*env)[i][klen] == '=') {
      free((*env)[i]);
      (*env)[i] = copy;
      return 0;
    }
  }
  char **ne = mon__realloc(*env, (*n + 2) * sizeof *ne);
  if (!ne) {
    free(copy);
    return -1;
  }
  *env = ne;
  ne[(*n)++] = copy;
  ne[*n] = NULL;
  return 0;
}

char **mon_spawn_env(const mon_service_cfg *c, char *const *base) {
  size_t n = 0;
  char **env = mon__calloc(1, sizeof *env);
  if (!env)
    return NULL;
  for (char *const *e = base; e && *e; e++)
    if (strchr(*e, '=') && spawn_env_set(&env, &n, *e) != 0)
      goto oom;
  char kv[128];
  snprintf(kv, sizeof kv, "SVC_SERVICE_NAME=%s", c->name);
  if (spawn_env_set(&env, &n, kv) != 0)
    goto oom;
  if (c->port) {
    snprintf(kv, sizeof kv, "SVC_SERVICE_PORT=%d", c->port);
    if (spawn_env_set(&env, &n, kv) != 0)
      goto oom;
  }
  snprintf(kv, sizeof kv, "SVC_WORKERS_MIN=%d", c->workers_min);
  if (spawn_env_set(&env, &n, kv) != 0)
    goto oom;
  snprintf(kv, sizeof kv, "SVC_WORKERS_MAX=%d", c->workers_max);
  if (spawn_env_set(&env, &n, kv) != 0)
    goto oom;
  for (size_t i = 0; i < c->nenv; i++)
    if (spawn_env_set(&env, &n, c->env[i]) != 0)
      goto oom;
  return env;
oom:
  mon_argv_free(env);
  return NULL;
}

char *mon_spawn_resolve(const char *prog, const char *path) {
  if (strchr(prog, '/'))
    return mon__strdup(prog);
  if (!path || !*path)
    path = "/usr/local/bin:/usr/bin:/bin";
  size_t plen = strlen(prog);
  while (*path) {
    size_t dl = strcspn(path, ":");
    char *cand = mon__malloc(dl + plen + 2);
    if (!cand)
      return NULL;
    if (dl == 0) /* an empty entry is the working directory */
      snprintf(cand, dl + plen + 2, "%s", prog);
    else
      snprintf(cand, dl + plen + 2, "%.*s/%s", (int)dl, path, prog);
    if (access(cand, X_OK) == 0)
      return cand;
    free(cand);
    path += dl;
    if (*path == ':')
      path++;
  }
  return mon__strdup(prog); /* exec fails with ENOENT and says so */
}

/* The PATH of a service's environment, or NULL. */
static const char *spawn_env_path(char *const *env) {
  const char *path = NULL;
  for (char *const *e = env; *e; e++)
    if (!strncmp(*e, "PATH=", 5))
      path = *e + 5;
  return path;
}

static void spawn_child_fail(const char *what, const char *path) {
  /* async-signal-safe: write(2) only */
  char msg[600];
  size_t n = 0;
  const char *parts[] = {"svc-monitor: ",
                         what,
                         " ",
                         path,
                         ": ",
                         strerrorname_np(errno) ? strerrorname_np(errno)
                                                : "error",
                         "\n"};
  for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
    size_t l = strlen(parts[i]);
    if (n + l >= sizeof msg)
      break;
    memcpy(msg + n, parts[i], l);
    n += l;
  }
  ssize_t w = write(2, msg, n);
  (void)w;
  _exit(127);
}

/* One rlimit to set in the child, with its text for the error message
 * formatted before fork (snprintf is not async-signal-safe). */
typedef struct spawn_rlimit {
  int resource;
  struct rlimit lim;
  char label[48]; /* "RLIMIT_NOFILE 64" */
} spawn_rlimit;

/* Appends resource = v to set unless v is MON_RLIMIT_UNSET. */
static void spawn_rlimit_add(spawn_rlimit *set, size_t *n, int resource,
                             const char *name, long long v) {
  if (v == MON_RLIMIT_UNSET)
    return;
  spawn_rlimit *r = &set[(*n)++];
  r->resource = resource;
  r->lim.rlim_cur = r->lim.rlim_max =
      v == MON_RLIMIT_INFINITY ? RLIM_INFINITY : (rlim_t)v;
  if (v == MON_RLIMIT_INFINITY)
    snprintf(r->label, sizeof r->label, "%s unlimited", name);
  else
    snprintf(r->label, sizeof r->label, "%s %lld", name, v);
}

int mon_spawn(const mon_service_cfg *c, int out_fd, int err_fd,
              int devnull_fd) {
  return mon_spawn_ex(c, out_fd, err_fd, devnull_fd, -1);
}

int mon_spawn_ex(const mon_service_cfg *c, int out_fd, int err_fd,
                 int devnull_fd, int cgroup_fd) {
  spawn_rlimit lims[2];
  size_t nlims = 0;
  spawn_rlimit_add(lims, &nlims, RLIMIT_NOFILE, "RLIMIT_NOFILE",
                   c->rlimit_nofile);
  spawn_rlimit_add(lims, &nlims, RLIMIT_CORE, "RLIMIT_CORE", c->rlimit_core);
  char **env = mon_spawn_env(c, environ);
  if (!env)
    return -ENOMEM;
  char *path = mon_spawn_resolve(c->argv[0], spawn_env_path(env));
  if (!path) {
    mon_argv_free(env);
    return -ENOMEM;
  }
  pid_t parent = getpid();
  pid_t pid = mon__fork();
  if (pid < 0) {
    int e = errno;
    free(path);
    mon_argv_free(env);
    return -e;
  }
  if (pid == 0) {
    /* Join the cgroup first, so everything the child does (and all it
     * forks) is charged to the service; a failure is reported once
     * stderr is the service's log, and cgroup_fd may be a low number
     * that the dup2s below would replace. */
    int cgroup_errno = 0;
    errno = 0;
    if (cgroup_fd >= 0 && write(cgroup_fd, "0", 1) != 1)
      cgroup_errno = errno ? errno : EIO;
    setsid();
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) /* the monitor died before prctl */
      _exit(127);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    dup2(devnull_fd, 0);
    dup2(out_fd, 1);
    dup2(err_fd, 2);
    if (cgroup_errno) {
      errno = cgroup_errno;
      spawn_child_fail("joining the cgroup of", c->name);
    }
    /* Our own fds are all close-on-exec; this also drops any fd the
     * monitor itself inherited without the flag. */
    if (syscall(SYS_close_range, 3U, ~0U, 0U) != 0)
      for (int fd = 3; fd < 1024; fd++)
        close(fd);
    /* A limit that cannot be had (a hard limit above the monitor's without
     * CAP_SYS_RESOURCE, nofile above fs.nr_open) stops the start: running
     * with other limits than configured would hide the mistake. */
    for (size_t i = 0; i < nlims; i++)
      if (setrlimit(lims[i].resource, &lims[i].lim) != 0)
        spawn_child_fail("setrlimit", lims[i].label);
    if (c->directory && chdir(c->directory) != 0)
      spawn_child_fail("chdir", c->directory);
    execve(path, c->argv, env);
    spawn_child_fail("exec", path);
  }
  free(path);
  mon_argv_free(env);
  return pid;
}

/* spawn.h — starts one service process: its own session (setsid), a
 * parent-death signal, stdout/stderr on the given pipes, its environment,
 * working directory, rlimits and cgroup, exec without a shell. */
#ifndef MON_SPAWN_H
#define MON_SPAWN_H

#include "config.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Forks and execs c->argv. Everything the child needs (argv, envp, the
 * resolved path, the rlimits) is built before fork, so the child only makes
 * async-signal-safe calls (the monitor has threads). The child gets
 * stdin = /dev/null (devnull_fd), stdout = out_fd, stderr = err_fd, an
 * empty signal mask, default signal dispositions, PR_SET_PDEATHSIG SIGTERM,
 * and in its environment SVC_SERVICE_NAME, SVC_SERVICE_PORT (when set),
 * SVC_WORKERS_MIN, SVC_WORKERS_MAX, then the env_file and env entries.
 *
 * cgroup_fd is -1, or an fd of the service's cgroup.procs (opened
 * O_WRONLY|O_CLOEXEC by the caller, see mon_cgroups_prepare): the child
 * writes "0" to it first, so the service and everything it forks belong to
 * that cgroup from its first instruction. c->rlimit_nofile and
 * c->rlimit_core, unless MON_RLIMIT_UNSET, become both the soft and the
 * hard limit (MON_RLIMIT_INFINITY = RLIM_INFINITY) before exec.
 *
 * A failure in the child (joining the cgroup, a setrlimit the kernel
 * refuses, chdir, exec) writes "svc-monitor: WHAT: ERRNO_NAME" on err_fd
 * and exits 127, so it shows in the service's stderr log and counts as a
 * failed start. Returns the pid or a negative errno (fork, ENOMEM). Does not
 * close out_fd, err_fd or cgroup_fd. Does not block. */
int mon_spawn_ex(const mon_service_cfg *c, int out_fd, int err_fd,
                 int devnull_fd, int cgroup_fd);

/* mon_spawn_ex without a cgroup. */
int mon_spawn(const mon_service_cfg *c, int out_fd, int err_fd, int devnull_fd);

/* The file exec should run for prog: prog itself when it holds a '/', else
 * the first executable prog in path (a PATH value; NULL or empty: the
 * usual /usr/local/bin:/usr/bin:/bin), as execvp would search, but here,
 * before fork, because a child of a threaded process must not allocate.
 * Not found: prog (exec then fails with ENOENT). malloc'd; NULL out of
 * memory. */
char *mon_spawn_resolve(const char *prog, const char *path);

/* Builds the environment for c from base (environ-like); NULL-terminated,
 * free with mon_argv_free. NULL when out of memory. For tests too. */
char **mon_spawn_env(const mon_service_cfg *c, char *const *base);

#ifdef __cplusplus
}
#endif
#endif

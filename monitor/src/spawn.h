/* spawn.h — starts one service process: its own session (setsid), a
 * parent-death signal, stdout/stderr on the given pipes, its environment
 * and working directory, exec without a shell. */
#ifndef MON_SPAWN_H
#define MON_SPAWN_H

#include "config.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Forks and execs c->argv. Everything the child needs (argv, envp, the
 * resolved path) is built before fork, so the child only makes
 * async-signal-safe calls (the monitor has threads). The child gets
 * stdin = /dev/null (devnull_fd), stdout = out_fd, stderr = err_fd, an
 * empty signal mask, default signal dispositions, PR_SET_PDEATHSIG SIGTERM,
 * and in its environment SVC_SERVICE_NAME, SVC_SERVICE_PORT (when set),
 * SVC_WORKERS_MIN, SVC_WORKERS_MAX, then the env_file and env entries.
 * A failed exec exits 127 after a message on stderr. Returns the pid or a
 * negative errno. Does not close out_fd / err_fd. */
int mon_spawn(const mon_service_cfg *c, int out_fd, int err_fd, int devnull_fd);

/* Builds the environment for c from base (environ-like); NULL-terminated,
 * free with mon_argv_free. NULL when out of memory. For tests too. */
char **mon_spawn_env(const mon_service_cfg *c, char *const *base);

#ifdef __cplusplus
}
#endif
#endif

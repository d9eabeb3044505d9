/* ctl.h — svc-monitor's control commands (status, start, stop, restart,
 * logs [-f] [--stderr]): a client of the running monitor's HTTP API. */
#ifndef MON_CTL_H
#define MON_CTL_H

#include <stdbool.h>

/* Whether arg names a control command. */
bool mon_ctl_is_command(const char *arg);
/* Runs argv[0] (a command) with its arguments against the monitor that
 * config_path describes. The exit code: 0 ok, 1 failed, 2 usage, 3 the
 * monitor is not running. */
int mon_ctl_main(const char *config_path, int argc, char **argv);

#endif

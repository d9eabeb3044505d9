/* main.c — svc-monitor's command line: read the config, run the monitor,
 * or run a control command against the running one (ctl.c). Exit codes:
 * 0 after a clean stop, 1 if the monitor cannot start, 2 for a bad command
 * line or config (and 3 from a command when no monitor runs). */
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "ctl.h"
#include "monitor.h"

static void usage(FILE *f) {
  fputs(
      "usage: svc-monitor [--config FILE] [--check]\n"
      "       svc-monitor [--config FILE] status | start NAME | stop NAME |\n"
      "                   restart NAME | logs [-f] [--stderr] NAME | reload\n"
      "  --config FILE  services to supervise (default examples/services.ini)\n"
      "  --check        only validate the config\n"
      "  a command talks to the running monitor of that config (0 ok,\n"
      "  1 failed, 2 usage, 3 the monitor is not running)\n",
      f);
}

int main(int argc, char **argv) {
  const char *path = "examples/services.ini";
  int check = 0;
  char *rest[argc + 1]; /* a command and its arguments */
  int nrest = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--config") && i + 1 < argc) {
      path = argv[++i];
    } else if (!strncmp(argv[i], "--config=", 9)) {
      path = argv[i] + 9;
    } else if (!strcmp(argv[i], "--check") && !nrest) {
      check = 1;
    } else if ((!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) &&
               !nrest) {
      usage(stdout);
      return 0;
    } else if (nrest || mon_ctl_is_command(argv[i])) {
      rest[nrest++] = argv[i];
    } else {
      usage(stderr);
      return 2;
    }
  }
  if (nrest)
    return check ? 2 : mon_ctl_main(path, nrest, rest);
  char err[512];
  mon_config cfg;
  if (mon_config_load(path, &cfg, err, sizeof err) != 0) {
    fprintf(stderr, "%s\n", err);
    return 2;
  }
  if (check) {
    printf("%s: %zu services, ok\n", path, cfg.nservices);
    mon_config_fini(&cfg);
    return 0;
  }
  mon_run_opts o = {.procroot = "/proc", .announce = stdout};
  int rc = mon_run(&cfg, &o, err, sizeof err);
  if (rc != 0)
    fprintf(stderr, "svc-monitor: %s\n", err);
  mon_config_fini(&cfg);
  return rc;
}

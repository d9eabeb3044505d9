/* main.c — svc-monitor's command line: read the config, run the monitor.
 * Exit codes: 0 after a clean stop, 1 if the monitor cannot start, 2 for a
 * bad command line or config. */
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "monitor.h"

static void usage(FILE *f) {
  fputs(
      "usage: svc-monitor [--config FILE] [--check]\n"
      "  --config FILE  services to supervise (default examples/services.ini)\n"
      "  --check        only validate the config\n",
      f);
}

int main(int argc, char **argv) {
  const char *path = "examples/services.ini";
  int check = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--config") && i + 1 < argc) {
      path = argv[++i];
    } else if (!strncmp(argv[i], "--config=", 9)) {
      path = argv[i] + 9;
    } else if (!strcmp(argv[i], "--check")) {
      check = 1;
    } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      usage(stdout);
      return 0;
    } else {
      usage(stderr);
      return 2;
    }
  }
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

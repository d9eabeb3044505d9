/* consumer.c — a program built against an installed libsvc, by
 * check_install.sh, through pkg-config and through find_package(svc). */
#include <stdio.h>
#include <svc.h>

int main(void) {
  printf("svc %s: %s\n", svc_version(), svc_err_name(SVC_ETOOBIG));
  return 0;
}

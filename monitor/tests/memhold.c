/* memhold.c — test service: allocates and touches N MiB (argv[1]), says so,
 * then sleeps until killed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
  size_t mib = argc > 1 ? (size_t)atoi(argv[1]) : 64;
  char *p = malloc(mib << 20);
  if (!p)
    return 1;
  memset(p, 1, mib << 20);
  printf("holding %zu MiB\n", mib);
  fflush(stdout);
  for (;;)
    pause();
}

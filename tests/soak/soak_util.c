/* soak_util.c — the soak's clock, its seeded randomness and its shared
 * files, used by the driver, its clients and the soak server alike. */
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "soak.h"

int64_t soak_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void soak_sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

uint64_t soak_rand(uint64_t *state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

int soak_rand_range(uint64_t *state, int lo, int hi) {
  if (hi <= lo)
    return lo;
  return lo + (int)(soak_rand(state) % (uint64_t)(hi - lo + 1));
}

void *soak_map(const char *path, size_t size) {
  int fd = open(path, O_RDWR | O_CLOEXEC);
  if (fd < 0)
    return NULL;
  void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  int saved = errno;
  close(fd);
  errno = saved;
  return p == MAP_FAILED ? NULL : p;
}

int soak_make_file(const char *path, size_t size) {
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0)
    return -1;
  int rc = ftruncate(fd, (off_t)size); /* sparse: pages appear when used */
  int saved = errno;
  close(fd);
  errno = saved;
  return rc;
}

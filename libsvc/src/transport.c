/* transport.c — the registry: the only place that knows which transports
 * exist and maps a URL scheme to one. */
#include <string.h>

#include "transport.h"

static const svc__transport *const registry[] = {
    &svc__transport_shm,
    &svc__transport_unix,
    &svc__transport_tcp,
    &svc__transport_tls,
};

const svc__transport *svc__transport_find(const char *scheme) {
  for (size_t i = 0; i < sizeof registry / sizeof registry[0]; i++)
    if (strcmp(registry[i]->scheme, scheme) == 0)
      return registry[i];
  return NULL;
}

void svc__transports_thread_exit(void) {
  for (size_t i = 0; i < sizeof registry / sizeof registry[0]; i++)
    if (registry[i]->thread_exit)
      registry[i]->thread_exit();
}

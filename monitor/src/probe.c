/* probe.c — readiness probe of a libsvc service: any reply to the built-in
 * svc.ping method means its server loop is serving. */
#include "probe.h"

#include <stdio.h>
#include <svc.h>

int mon_probe_ping(const char *name, int timeout_ms) {
  char url[128];
  snprintf(url, sizeof url, "shm://%s", name);
  svc_client *c = NULL;
  if (svc_client_open(url, &c) != 0)
    return 0;
  svc_client_set_timeout(c, timeout_ms);
  const void *resp;
  size_t len;
  int rc = svc_call(c, "svc.ping", "", 0, &resp, &len);
  svc_client_close(c);
  return rc == 0;
}

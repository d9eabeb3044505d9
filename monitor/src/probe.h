/* probe.h — is a libsvc service up? The one place the monitor calls libsvc.
 * Probes run on a thread of their own so that a service that accepts but
 * does not answer never stalls the monitor's event loop. */
#ifndef MON_PROBE_H
#define MON_PROBE_H

#include <stddef.h>

#include "config.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Calls svc.ping on shm://NAME with a short timeout (blocks at most
 * timeout_ms plus the connect). 1 if it answered, 0 if not. */
int mon_probe_ping(const char *name, int timeout_ms);

typedef struct mon_prober mon_prober;

/* Starts the probe thread for cfg's services. NULL when out of resources.
 * Create it after blocking signals: the thread inherits the mask. */
mon_prober *mon_prober_new(const mon_config *cfg, int timeout_ms);
/* Stops the thread (waits for a probe in flight) and frees. NULL is fine. */
void mon_prober_free(mon_prober *p);
/* Never blocks: 1 if a probe of service i has succeeded since the last
 * reset; otherwise asks for one (if none is pending) and returns 0. */
int mon_prober_poll(mon_prober *p, size_t i);
/* Forgets results for service i (call when it is spawned again). */
void mon_prober_reset(mon_prober *p, size_t i);

#ifdef __cplusplus
}
#endif
#endif

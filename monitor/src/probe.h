/* probe.h — is a libsvc service up? The one place the monitor calls libsvc. */
#ifndef MON_PROBE_H
#define MON_PROBE_H

#ifdef __cplusplus
extern "C" {
#endif

/* Calls svc.ping on shm://NAME with a short timeout (blocks at most
 * timeout_ms plus the connect). 1 if it answered, 0 if not. */
int mon_probe_ping(const char *name, int timeout_ms);

#ifdef __cplusplus
}
#endif
#endif

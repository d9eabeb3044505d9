/* alert.h — alerts POSTed as JSON to the configured alert_webhook: fatal,
 * health and memory events, and a burst of restarts. A thread of its own
 * sends them with retries, so a slow or dead receiver never holds up
 * supervision; the queue is bounded and drops its oldest when full. */
#ifndef MON_ALERT_H
#define MON_ALERT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MON_ALERT_RESTARTS 5                 /* restarts that alert ... */
#define MON_ALERT_WINDOW_MS (10 * 60 * 1000) /* ... within this window */
#define MON_ALERT_QUEUE_MAX 256              /* alerts waiting, at most */
#define MON_ALERT_TRIES 5                    /* POSTs of one alert */
#define MON_ALERT_BACKOFF_MS 1000            /* first retry delay; doubles */

typedef struct mon_alerter mon_alerter;

/* Starts the thread; url may be NULL (alerts are then dropped). The url is
 * copied; only http:// is ever requested, without proxies or redirects.
 * NULL when out of resources. */
mon_alerter *mon_alerter_new(const char *url);
/* The same with a test hook: backoff_ms is the first retry delay (it
 * doubles: 1, 2, 4, 8 s by default) and queue_max the queue bound (0 for
 * the defaults). */
mon_alerter *mon_alerter_new_ex(const char *url, int backoff_ms,
                                size_t queue_max);
/* Stops within a bounded time: a retry wait is abandoned and a POST in
 * flight aborted (at worst it ends by its 5 s timeout). Alerts still queued
 * are lost. NULL is fine. */
void mon_alerter_free(mon_alerter *a);
/* Changes the URL (after a config reload); NULL turns alerts off and drops
 * those queued. A POST in flight finishes to the old URL; its retries go
 * to the new one. Never blocks for long. */
void mon_alerter_set_url(mon_alerter *a, const char *url);
/* Every supervisor event goes here; never blocks (it only queues). Kinds
 * fatal, health and memory are posted as they are; kind restart is
 * counted, and the restart that makes MON_ALERT_RESTARTS within
 * MON_ALERT_WINDOW_MS posts one alert of kind "restarts" (see
 * mon_alert_restart_fifth). Other kinds are ignored. Strings may be NULL;
 * bytes that are not UTF-8 become '?'. a NULL is fine. */
void mon_alerter_event(mon_alerter *a, const char *service, const char *kind,
                       const char *detail, int64_t ts_ms);

typedef struct mon_alert_stats {
  uint64_t queued;  /* alerts accepted into the queue */
  uint64_t sent;    /* answered 2xx */
  uint64_t failed;  /* given up: out of tries, or a 3xx/4xx but 408/429 */
  uint64_t dropped; /* pushed out of a full queue, or alerts were off */
  uint64_t pending; /* queued or in flight now */
} mon_alert_stats;

/* Never blocks for long: a snapshot of the counters. */
void mon_alerter_stats(mon_alerter *a, mon_alert_stats *out);

/* Pure. The restart rule: a restart at now_ms alerts when exactly
 * MON_ALERT_RESTARTS - 1 earlier restarts fall within the window ending at
 * it (now_ms - t < MON_ALERT_WINDOW_MS; times from a clock that stepped
 * back count as inside). So the 5th restart in 10 minutes alerts once; the
 * 6th, 7th ... do not while 5 or more stay in the window; once restarts
 * thin out below 5 in the window, the next one that makes 5 alerts again.
 * earlier holds the n previous restart times in any order (the last
 * MON_ALERT_RESTARTS of them suffice). 1 to alert, else 0. */
int mon_alert_restart_fifth(const int64_t *earlier, size_t n, int64_t now_ms);

#ifdef __cplusplus
}
#endif
#endif

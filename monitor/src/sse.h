/* sse.h — Server-Sent Events for the dashboard. A hub of at most
 * MON_SSE_MAX subscribers (a limit of their own, so open dashboards cannot
 * take the connections the JSON API and /metrics need), each with a
 * bounded buffer that producers on any thread append events to. A
 * subscriber whose buffer would overflow (a client that stopped reading) is
 * dropped, never buffered without bound. The HTTP side drains a subscriber
 * with mon_sse_read, which calls its suspend hook under the hub's lock when
 * nothing is pending; a producer that appends calls its wake hook. */
#ifndef MON_SSE_H
#define MON_SSE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MON_SSE_MAX 32
#define MON_SSE_BUF (256 * 1024) /* bytes pending per subscriber, at most */
#define MON_SSE_KEEPALIVE_MS 15000

typedef enum mon_sse_topic {
  MON_SSE_EVENTS, /* state changes and samples of every service */
  MON_SSE_LOGS,   /* the lines of one service's stream */
} mon_sse_topic;

typedef struct mon_sse_hub mon_sse_hub;
typedef struct mon_sse_sub mon_sse_sub;

/* The hooks of one subscriber, called with the hub's lock held: suspend
 * when mon_sse_read finds nothing to send, wake when bytes arrive (or the
 * subscriber is dropped) after a suspend. */
typedef struct mon_sse_hooks {
  void (*suspend)(void *ctx);
  void (*wake)(void *ctx);
  void *ctx;
} mon_sse_hooks;

/* 0, or -1 out of memory. */
int mon_sse_hub_new(mon_sse_hub **out);
/* Every subscriber must be gone (mon_sse_unsubscribe). NULL is fine. */
void mon_sse_hub_free(mon_sse_hub *h);

/* A new subscriber to topic (service and stream for MON_SSE_LOGS: 0
 * stdout, 1 stderr), or NULL when MON_SSE_MAX are open or memory ran out. */
mon_sse_sub *mon_sse_subscribe(mon_sse_hub *h, mon_sse_topic topic, int service,
                               int stream, int64_t now_ms);
void mon_sse_set_hooks(mon_sse_sub *s, const mon_sse_hooks *hooks);
void mon_sse_unsubscribe(mon_sse_sub *s);

/* Appends "event: EVENT\ndata: DATA\n\n" (data one line, e.g. JSON) to one
 * subscriber (its history) or to every subscriber of topic (and of
 * service/stream for MON_SSE_LOGS). event may be NULL (a plain message).
 * A NULL hub (no HTTP side) takes nothing. */
void mon_sse_send(mon_sse_sub *s, const char *event, const char *data,
                  size_t len);
void mon_sse_publish(mon_sse_hub *h, mon_sse_topic topic, int service,
                     int stream, const char *event, const char *data,
                     size_t len);
/* Puts bytes (whole events) before everything pending for s: the history
 * a stream starts with, read after subscribing so that nothing printed
 * meanwhile is lost. */
void mon_sse_prepend(mon_sse_sub *s, const char *p, size_t len);
/* A keep-alive comment to every subscriber that was sent nothing for
 * MON_SSE_KEEPALIVE_MS. */
void mon_sse_tick(mon_sse_hub *h, int64_t now_ms);
/* Drops every subscriber and refuses new ones (before the HTTP server
 * stops: libmicrohttpd must not stop with a connection suspended). */
void mon_sse_drop_all(mon_sse_hub *h);

/* Moves up to max pending bytes into buf: their count; 0 when nothing is
 * pending (the suspend hook has run); -1 when the subscriber was dropped. */
ssize_t mon_sse_read(mon_sse_sub *s, char *buf, size_t max, int64_t now_ms);
/* Subscribers open now. */
int mon_sse_count(mon_sse_hub *h);

#ifdef __cplusplus
}
#endif
#endif

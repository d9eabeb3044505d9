/* svc.h — the whole public API of libsvc: call a function in another
 * process over shared memory (shm://), a Unix socket (unix://), TCP
 * (tcp://) or TLS over TCP (tls://) with one API. Every function returns 0
 * or a negative SVC_E* code; objects are opaque.
 *
 * URLs:
 *   shm://NAME        shared memory on this host, found by service name
 *   unix:///PATH      a Unix socket (file mode 0600, peers of our uid)
 *   tcp://HOST:PORT   TCP, unauthenticated and in clear: keep it on
 *                     loopback (a server that binds anything else warns)
 *   tls://HOST:PORT?PARAMS   TCP with TLS 1.3 (OpenSSL): encrypted, the
 *                     server authenticated by its certificate, the client
 *                     too with mutual TLS. PARAMS are key=value pairs
 *                     joined by '&' (values percent-encoded where they hold
 *                     '&', '%' or '='):
 *     server: cert=FILE&key=FILE   its certificate chain and key (PEM;
 *                                  the key file must not be readable by
 *                                  group or others: SVC_EPERM)
 *             [&client_ca=FILE]    mutual TLS: every client must present a
 *                                  certificate that chains to these CAs
 *     client: [ca=FILE]            CAs the server's certificate must chain
 *                                  to (default: the system's store)
 *             [&cert=FILE&key=FILE]  its own certificate, for mutual TLS
 *             [&servername=NAME]   the name the certificate must carry
 *                                  (default: HOST, a DNS name or an IP)
 *   A parameter the side does not take, or an unknown one, is SVC_EINVAL.
 *   TLS failures (handshake, verification) are SVC_ETLS; the reason is in
 *   svc_client_last_error_text / svc_server_last_error_text. */
#ifndef SVC_H
#define SVC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(SVC_BUILDING) && defined(__GNUC__)
#define SVC_API __attribute__((visibility("default")))
#else
#define SVC_API
#endif

#define SVC_VERSION_MAJOR 0
#define SVC_VERSION_MINOR 1
#define SVC_VERSION_PATCH 0

/* Error codes. Values are fixed: they cross the wire in reply frames.
 * X(name, value, description) */
#define SVC_ERRNO_MAP(X)                                                       \
  X(EINVAL, -1, "invalid argument")                                            \
  X(ENOMEM, -2, "out of memory")                                               \
  X(ECONNREFUSED, -3, "connection refused (no such service)")                  \
  X(EPEERGONE, -4, "peer closed the connection or died")                       \
  X(ETIMEDOUT, -5, "timed out")                                                \
  X(ENOMETHOD, -6, "no such method")                                           \
  X(ETOOBIG, -7, "message larger than the maximum message size")               \
  X(EPROTO, -8, "protocol error (malformed frame)")                            \
  X(EHANDLER, -9, "handler returned an application error")                     \
  X(ESYS, -10, "system call failed")                                           \
  X(EPERM, -11, "permission denied (peer of another user)")                    \
  X(EADDRINUSE, -12, "address already in use")                                 \
  X(ESTATE, -13, "operation not valid in this state")                          \
  X(EAGAIN, -14, "try again (window full, or nothing finished yet)")           \
  X(ETLS, -15, "TLS handshake or certificate verification failed")

enum svc_errno {
#define SVC__ERR_ENUM(name, value, text) SVC_##name = (value),
  SVC_ERRNO_MAP(SVC__ERR_ENUM)
#undef SVC__ERR_ENUM
};

/* Names the error ("message larger than ..."); never NULL. */
SVC_API const char *svc_strerror(int err);
/* The code's name ("SVC_ETOOBIG"); never NULL. */
SVC_API const char *svc_err_name(int err);
/* "MAJOR.MINOR.PATCH" */
SVC_API const char *svc_version(void);

typedef struct svc_server svc_server;
typedef struct svc_client svc_client;
typedef struct svc_reply svc_reply;

/* How a side waits for its peer. ADAPTIVE spins for a budget learned from
 * recent calls and then sleeps; SPIN spins (still sleeps after 100 ms so a
 * dead peer is noticed); BLOCK always sleeps. Only shm:// spins. */
typedef enum svc_wait_policy {
  SVC_WAIT_ADAPTIVE = 0,
  SVC_WAIT_SPIN = 1,
  SVC_WAIT_BLOCK = 2
} svc_wait_policy;

#define SVC_DEFAULT_MAX_MSG ((size_t)64 << 20) /* 64 MiB */
#define SVC_METHOD_MAX 255                     /* bytes in a method name */

/* A handler fills *reply and returns 0, or returns a positive application
 * error code, which the caller receives as SVC_EHANDLER (read the code with
 * svc_client_handler_code). A negative return is sent as that SVC_E* code.
 * req is valid only during the call; on shm:// it lies in memory the client
 * can write, so copy what must not change under you. Handlers run on the
 * server's threads, several at once. */
typedef int (*svc_handler)(void *ctx, const void *req, size_t len,
                           svc_reply *reply);

/* Space for a reply of len bytes that the handler writes in place (on shm://
 * this is the shared region itself: zero copy). NULL if len exceeds the
 * maximum message size or memory ran out. Valid until the handler returns. */
SVC_API void *svc_reply_alloc(svc_reply *r, size_t len);
/* Copies len bytes as the reply. SVC_ETOOBIG, SVC_ENOMEM. */
SVC_API int svc_reply_set(svc_reply *r, const void *p, size_t len);

/* ---- server ---- */

/* A server for the service NAME (letters, digits, '.', '_', '-'). */
SVC_API int svc_server_new(const char *name, svc_server **out);
/* Registers fn for method (1..255 bytes; the "svc." prefix is reserved).
 * Before start/run only. */
SVC_API int svc_server_method(svc_server *s, const char *method, svc_handler fn,
                              void *ctx);
/* Adds a listener: shm://NAME, unix:///path, tcp://HOST:PORT or
 * tls://HOST:PORT?cert=..&key=..[&client_ca=..] (see the URL list above).
 * Several are allowed. Binds now: SVC_EADDRINUSE if another server holds
 * it; for tls:// the certificate and key are loaded now (SVC_ETLS, or
 * SVC_EPERM for a key file readable by others). A tcp:// listener on an
 * address other than loopback prints one warning line on stderr. */
SVC_API int svc_server_listen(svc_server *s, const char *url);
/* Why the last failed svc_server_listen failed, as a sentence ("key file
 * /etc/svc/server.key is readable by group or others (mode 0644): chmod
 * 600 it"); never NULL, "" before any failure. */
SVC_API const char *svc_server_last_error_text(const svc_server *s);
SVC_API int svc_server_set_wait(svc_server *s, svc_wait_policy p);
SVC_API int svc_server_set_max_msg(svc_server *s, size_t bytes);
/* By default a shm:// or unix:// peer of another uid is refused. */
SVC_API int svc_server_set_allow_any_uid(svc_server *s, int allow);
/* Most threads that serve connections at once (default 64). */
SVC_API int svc_server_set_max_threads(svc_server *s, int n);
/* Worker processes for svc_server_run: between min and max processes
 * (default 1 and 1: none) that share the listening sockets. The
 * environment's SVC_WORKERS_MIN / SVC_WORKERS_MAX override these. */
SVC_API int svc_server_set_workers(svc_server *s, int min, int max);
/* Scaling: add a worker when the workers' mean CPU use stays above up_pct
 * for up_secs, retire one below down_pct for down_secs (defaults 80/5 and
 * 20/20; SVC_SCALE_UP_PCT, _UP_SECS, _DOWN_PCT, _DOWN_SECS override). */
SVC_API int svc_server_set_scaling(svc_server *s, int up_pct, int up_secs,
                                   int down_pct, int down_secs);
/* fn runs once in each worker (or once before serving without workers),
 * e.g. to load data; non-zero stops that process. Data loaded before
 * svc_server_run is shared copy-on-write by every worker. */
SVC_API int svc_server_set_worker_init(svc_server *s, int (*fn)(void *ctx),
                                       void *ctx);
/* Serves on background threads and returns. */
SVC_API int svc_server_start(svc_server *s);
/* Serves until svc_server_stop, SIGTERM or SIGINT, then returns 0. With
 * workers, this process becomes their master: it forks, supervises and
 * scales them, and stops them all on SIGTERM. Blocks SIGTERM/SIGINT (and
 * SIGCHLD with workers) in the calling thread while it runs. */
SVC_API int svc_server_run(svc_server *s);
/* Asks the server to stop; returns at once. Safe from any thread, from a
 * handler and from a signal handler. svc_server_free waits for threads. */
SVC_API void svc_server_stop(svc_server *s);
/* Stops if needed, closes listeners (removing their socket files). */
SVC_API void svc_server_free(svc_server *s);

/* ---- client ---- */

/* Connects to url now (SVC_ECONNREFUSED if nothing listens; over tls://
 * SVC_ETLS if the handshake or a certificate check fails). A client is
 * used by one thread at a time; open as many as you like. */
SVC_API int svc_client_open(const char *url, svc_client **out);
/* svc_client_open that also says why it failed: on an error, a sentence
 * in err[errlen] (always NUL-terminated when errlen > 0), such as "TLS
 * handshake with 127.0.0.1:5203 failed: certificate verify failed
 * (certificate has expired)". err may be NULL when errlen is 0. */
SVC_API int svc_client_open_ex(const char *url, svc_client **out, char *err,
                               size_t errlen);
/* Why the most recent call on c that returned an error failed (a send,
 * receive or call, including the reconnect it made), as a sentence: for
 * SVC_ETLS the TLS reason, otherwise the code's description with what the
 * transport knew. Never NULL; "" before any failure. Valid until the next
 * call on c. */
SVC_API const char *svc_client_last_error_text(const svc_client *c);
/* Calls method with req; *resp points to the reply, valid until the next
 * call or close. If the connection was closed between calls (server
 * restarted, worker retired) the call reconnects first. A call that the
 * server took and then died in returns SVC_EPEERGONE. */
SVC_API int svc_call(svc_client *c, const char *method, const void *req,
                     size_t len, const void **resp, size_t *resp_len);
/* Per-call timeout in ms; 0 = none (the default). */
SVC_API int svc_client_set_timeout(svc_client *c, int ms);
SVC_API int svc_client_set_wait(svc_client *c, svc_wait_policy p);
SVC_API int svc_client_set_max_msg(svc_client *c, size_t bytes);
/* ---- calls in flight ----
 *
 * A client may have up to its window of calls in flight at once, on every
 * transport: svc_call_send posts a call and returns, svc_call_recv hands
 * back whichever call finished next. svc_call is exactly a send followed by
 * a receive of that call. The reply of a received call is valid until the
 * next svc_call_recv or svc_call on c (svc_call_send leaves it alone).
 *
 * svc_call while calls sent by svc_call_send have not all been received
 * returns SVC_ESTATE: receive them first.
 *
 * Order: replies may finish in any order, each names its call. This
 * library's server runs one connection's requests in the order they were
 * sent, so they finish in order unless a call times out.
 *
 * Deadlines: svc_client_set_timeout applies to each call from the moment it
 * is sent; a call past it finishes with SVC_ETIMEDOUT and its late reply is
 * dropped, never handed to another call. A connection on which every call
 * in flight timed out is closed, so the next call starts afresh. A server
 * that dies finishes every call in flight with SVC_EPEERGONE; a call the
 * server may have taken is never sent again.
 *
 * Event loops: svc_client_fd polls readable while a finished call waits to
 * be received. When it does, call svc_call_recv with timeout 0 until it
 * sets *id to 0 (SVC_EAGAIN or SVC_ESTATE), as with a nonblocking socket;
 * the fd may rarely be readable with nothing to receive, and then
 * SVC_EAGAIN says so. */

/* Sends a call without waiting for its reply; *id (never 0) names it in
 * svc_call_recv. SVC_EAGAIN when the window is full (or, on shm://, while
 * another call's request larger than a ring slot is still in flight, or
 * while the ring slot this call needs still holds the reply last handed
 * out, which stays valid until the next receive; or when the server asked
 * this connection to close and calls are still in flight on it): nothing
 * was sent; receive first. req is copied; it may be reused at once.
 * Never waits for a reply; may block briefly while a stream socket's send
 * buffer is full. On unix:// and tcp://, a call sent while replies that
 * were already read still wait to be received (a burst) is held in the
 * client and leaves with the next svc_call_recv, or with the send after
 * the last of those replies was received: a window kept full costs one
 * write per burst. Otherwise it leaves at once. SVC_EINVAL, SVC_ETOOBIG,
 * SVC_ECONNREFUSED (reconnecting failed), SVC_ENOMEM. */
SVC_API int svc_call_send(svc_client *c, const char *method, const void *req,
                          size_t len, uint64_t *id);
/* Waits up to timeout_ms (0: do not wait, -1: forever) for the next call
 * that finished, in any order. Returns that call's own outcome (0, or its
 * SVC_E* code: SVC_EHANDLER, SVC_ETIMEDOUT for a call past its deadline,
 * SVC_EPEERGONE, SVC_EPROTO, ...) with *id set; its reply (when 0) is valid
 * until the next svc_call_recv or svc_call on c. SVC_EAGAIN with *id = 0
 * when no call finished in time; SVC_ESTATE with *id = 0 when none is in
 * flight. *id tells those apart from a call's own outcome, which may be
 * any code (svc.stats with statistics off fails with SVC_ESTATE): loop
 * until *id is 0. For SVC_EHANDLER, svc_client_handler_code gives that
 * call's code. */
SVC_API int svc_call_recv(svc_client *c, int timeout_ms, uint64_t *id,
                          const void **resp, size_t *resp_len);
/* A file descriptor that polls readable while a finished call waits to be
 * received (or the connection broke, or a deadline passed). For
 * epoll/poll/select/libuv: poll it for reading only, never read it. Owned
 * by c; stable for c's life, across reconnects. Negative SVC_E* if it
 * could not be made (SVC_ESYS). */
SVC_API int svc_client_fd(svc_client *c);
/* Most calls in flight at once (default 64, 1..4096). Takes effect on the
 * next connection: SVC_ESTATE while calls are in flight. */
SVC_API int svc_client_set_window(svc_client *c, int n);

/* ---- requests written in place ---- */

/* Space for a request of up to len bytes that the caller writes in place:
 * on shm:// inside the shared region (zero copy: the handler reads it where
 * the caller wrote it), elsewhere a client buffer (sent from there with no
 * second copy of a large request). NULL when len is over the maximum
 * message size or memory ran out. Valid until the call that sends it, the
 * next svc_request_alloc, or a call sent from the caller's own memory
 * (svc_call, svc_call_send), which may reuse the space. On shm:// up to
 * 8 requests of more than 248 bytes are in flight per connection, each in
 * a lane of its own (fewer with a window below 16: half the ring); while
 * all are in flight the space is a client buffer, copied when sent. */
SVC_API void *svc_request_alloc(svc_client *c, size_t len);
/* Calls method with the first len bytes written into svc_request_alloc's
 * space (len <= what was allocated, else SVC_EINVAL). Same results as
 * svc_call. */
SVC_API int svc_call_prepared(svc_client *c, const char *method, size_t len,
                              const void **resp, size_t *resp_len);
/* The same as a call in flight: svc_call_send of the request written in
 * place. SVC_EAGAIN (nothing sent; the space stays valid) as for
 * svc_call_send, and on shm:// while every lane holds a large request. */
SVC_API int svc_call_send_prepared(svc_client *c, const char *method,
                                   size_t len, uint64_t *id);

/* The positive code of the last call that failed with SVC_EHANDLER, else 0. */
SVC_API int svc_client_handler_code(const svc_client *c);
SVC_API void svc_client_close(svc_client *c);

#ifdef __cplusplus
}
#endif
#endif /* SVC_H */

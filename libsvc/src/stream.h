/* stream.h — the byte-stream transports' connection (transport_stream.c):
 * frames over a reliable byte stream, many calls in flight matched by call
 * id. unix:// and tcp:// move bytes with the socket calls themselves;
 * tls:// (transport_tls.c) plugs in its own io, so every stream transport
 * shares one framing, one server loop and one client state machine. */
#ifndef SVC_STREAM_H
#define SVC_STREAM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "transport.h"

typedef struct svc__stream svc__stream;

/* How a stream moves bytes. read and writev never block unless told to;
 * when they cannot go on they return 0 and set s->io_wait to the poll
 * events to wait for (POLLIN or POLLOUT). */
typedef struct svc__stream_io {
  /* > 0 bytes read; 0 none yet; SVC_EPEERGONE at the end of the stream;
   * another SVC_E* code when the stream broke. With block, waits in the
   * kernel for the first byte (a blocking client fd). */
  long (*read)(svc__stream *s, void *buf, size_t n, int block);
  /* > 0 bytes of iov written (a prefix); 0 none now; SVC_EPEERGONE when
   * the peer is gone; another SVC_E* code when the stream broke. */
  long (*writev)(svc__stream *s, const struct iovec *iov, int n);
  /* Between calls: 1 when something can be read at once (bytes or the end
   * of the stream), 0 when nothing, an SVC_E* code when the socket failed
   * (the caller drops the connection: no frame will come to say why). */
  int (*peek)(svc__stream *s);
  /* 1 when the io layer holds input the fd does not show. */
  int (*pending)(const svc__stream *s);
  /* Frees the io layer's state (the stream closes the fd). */
  void (*close)(svc__stream *s);
  /* 1 when a read shorter than asked leaves nothing behind (a socket's;
   * not TLS, whose reads end at a record), so the server need not read
   * again only to hear "nothing", and may wait in a blocking read. */
  int drains;
} svc__stream_io;

struct svc__stream {
  svc__conn base;
  const svc__stream_io *io;
  void *io_state; /* the io layer's (tls: the session) */
  short io_wait;  /* what the last read or writev that returned 0 awaits */
  size_t max_payload;
  uint8_t *in; /* bytes received; [in_off, in_len) not consumed yet */
  size_t in_off;
  size_t in_len;
  size_t in_cap;
  size_t held;     /* client: bytes of the reply handed out, at in_off */
  uint8_t *old_in; /* client: a buffer replaced while a reply lay in it */
  uint8_t *out;    /* frames not sent yet: replies (server), requests
                      (client: sent together when it must wait) */
  size_t out_len;
  size_t out_cap;
  size_t reply_at;  /* server: where the reply under construction starts */
  int goaway;       /* client: server asked us to reconnect */
  size_t skip;      /* server: bytes of an oversized request to drop */
  int drained;      /* server: the last read left the socket empty */
  int64_t idle_ns;  /* server: when it last went back to epoll, or 0 */
  int64_t reply_ns; /* client: when the last reply was handed out */
  char *why;        /* client: where a failure's reason goes, or NULL */
  size_t why_len;
};

/* The socket io of unix:// and tcp://. */
extern const svc__stream_io svc__stream_plain_io;

/* A stream on fd (owned: closed by svc__stream_close, also on failure).
 * Client streams (client != 0) get a blocking fd and their first input
 * buffer; NULL when out of memory. */
svc__stream *svc__stream_new(const svc__transport *tp, int fd,
                             const svc__stream_io *io, size_t max_payload,
                             int client);
void svc__stream_close(svc__conn *c);

/* Writes all of iov (modified) through the stream's io, waiting up to the
 * deadline. SVC_EPEERGONE, SVC_ETIMEDOUT. */
int svc__stream_write_all(svc__stream *s, struct iovec *iov, int n,
                          int64_t deadline);
/* Sends a reply frame with call id 0 and status code (the server refusing
 * the connection itself), within a short bound. */
void svc__stream_refuse(int fd, int code);
/* Accepts a connection on a stream listener: 0 with *fd, 1 none pending. */
int svc__stream_accept_fd(svc__listener *l, const svc__conn_opts *o, int *fd);
/* A listener on fd (owned); path is the socket file to unlink, or NULL. */
int svc__stream_listener(const svc__transport *tp, int fd, const char *path,
                         svc__listener **out);

/* The transport operations every stream transport shares. */
int svc__stream_send(svc__conn *c, uint32_t seq, const char *method,
                     size_t method_len, const void *req, size_t len, int flags,
                     int64_t deadline);
int svc__stream_recv(svc__conn *c, int64_t deadline, svc__result *res);
void svc__stream_release(svc__conn *c);
int svc__stream_taken(svc__conn *c, uint32_t seq);
int svc__stream_request(svc__conn *c, uint32_t seq, svc__frame *f);
void *svc__stream_request_space(svc__conn *c, size_t len);
void svc__stream_watch(svc__conn *c);
int svc__stream_buffered(const svc__conn *c);
int svc__stream_serve(svc__conn *c, const svc__serve_ops *ops, void *ctx);
int svc__stream_goaway(svc__conn *c);
void svc__stream_unlisten(svc__listener *l);

#endif

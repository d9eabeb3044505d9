/* fuzz_stream.c — libFuzzer harness for the stream transports'
 * server side: the input is what a hostile client writes on a unix://
 * connection; the real transport (svc__transport_unix: accept, serve,
 * reply) handles it with the real method table (svc__server_dispatch, its
 * per-connection cache of the last method included) of a server with an
 * "echo" and a "fail" method, and the replies are read back.
 *
 * Input: byte 0 = max_payload selector; the rest is the byte stream.
 * Properties: serve ends with SVC_EPEERGONE (clean end, or a partial frame
 * at the end) or SVC_EPROTO (a malformed or non-request frame) exactly as a
 * whole-buffer decode of the input predicts; the server answers exactly
 * the requests before that point, in order, each with a well-formed reply
 * frame carrying the request's call id and what its name names: echo's
 * payload, fail's code, svc.ping's "pong", another built-in's answer, or
 * SVC_ENOMETHOD for anything else (a NUL inside a name included). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "frame.h"
#include "internal.h"
#include "server.h"
#include "svc.h"
#include "transport.h"

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "fuzz_stream: property failed at %s:%d: %s\n", __FILE__, \
              __LINE__, #cond);                                                \
      abort();                                                                 \
    }                                                                          \
  } while (0)

static const size_t max_payloads[4] = {0, 64, 4096, SVC_DEFAULT_MAX_MSG};

static int echo(void *ctx, const void *req, size_t len, svc_reply *reply) {
  (void)ctx;
  return svc_reply_set(reply, req, len);
}

static int fail(void *ctx, const void *req, size_t len, svc_reply *reply) {
  (void)ctx;
  (void)req;
  (void)len;
  (void)reply;
  return 7;
}

/* Never started: only its method table serves (no statistics mapped, so
 * svc.stats answers SVC_ESTATE). */
static svc_server *server(void) {
  static svc_server *s;
  if (s)
    return s;
  CHECK(svc_server_new("fuzz", &s) == 0);
  CHECK(svc_server_method(s, "echo", echo, NULL) == 0);
  CHECK(svc_server_method(s, "fail", fail, NULL) == 0);
  return s;
}

static int is_name(const svc__frame *q, const char *name) {
  return q->method_len == strlen(name) &&
         memcmp(q->method, name, q->method_len) == 0;
}

static svc__listener *listener(void) {
  static svc__listener l;
  if (l.tp)
    return &l;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  CHECK(fd >= 0);
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  int n = snprintf(a.sun_path + 1, sizeof a.sun_path - 1, "svc-fuzz-%d",
                   (int)getpid());
  socklen_t alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
  CHECK(bind(fd, (struct sockaddr *)&a, alen) == 0);
  CHECK(listen(fd, 16) == 0);
  l.tp = &svc__transport_unix;
  l.fd = fd;
  return &l;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1 || size > 65536)
    return 0;
  size_t max = max_payloads[data[0] & 3];
  const uint8_t *s = data + 1;
  size_t n = size - 1;
  svc__listener *l = listener();

  /* what the server must do: answer each request in order until the first
   * frame that is malformed or not a request (SVC_EPROTO); a request over
   * max_payload is answered SVC_ETOOBIG, drained and the connection closed
   * (SVC_EPROTO once drained, SVC_EPEERGONE if the input ends first). */
  size_t off = 0, nreq = 0;
  int want_rc = SVC_EPEERGONE;
  for (;;) {
    svc__frame f;
    long rc = svc__frame_decode(s + off, n - off, SVC__MAX_MSG_LIMIT, &f);
    if (rc < 0) {
      want_rc = SVC_EPROTO;
      break;
    }
    int whole_hdr = n - off >= SVC__FRAME_HDR;
    if (whole_hdr && f.payload_len > max) {
      if (f.type == SVC__FRAME_REQUEST)
        nreq++; /* answered SVC_ETOOBIG */
      want_rc =
          f.type != SVC__FRAME_REQUEST || rc > 0 ? SVC_EPROTO : SVC_EPEERGONE;
      break;
    }
    if (rc == 0)
      break;
    if (f.type != SVC__FRAME_REQUEST) {
      want_rc = SVC_EPROTO;
      break;
    }
    nreq++;
    off += (size_t)rc;
  }

  struct sockaddr_un a;
  socklen_t alen = sizeof a;
  CHECK(getsockname(l->fd, (struct sockaddr *)&a, &alen) == 0);
  int cl = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  CHECK(cl >= 0);
  CHECK(connect(cl, (struct sockaddr *)&a, alen) == 0);
  svc__conn_opts o = {.max_payload = max};
  svc__conn *c = NULL;
  CHECK(l->tp->accept(l, &o, &c) == 0);
  if (n)
    CHECK(write(cl, s, n) == (ssize_t)n);
  shutdown(cl, SHUT_WR);
  int rc;
  static const svc__serve_ops ops = {.dispatch = svc__server_dispatch,
                                     .posted = svc__server_posted};
  svc__item it = {.kind = ITEM_CONN, .server = server(), .last_method = -1};
  while ((rc = l->tp->serve(c, &ops, &it)) == 0) {
  }
  CHECK(rc == want_rc);
  l->tp->close(c);

  /* read back and check the replies */
  size_t cap = 2 * n + 1024, got = 0;
  uint8_t *buf = malloc(cap);
  CHECK(buf != NULL);
  ssize_t r;
  while ((r = read(cl, buf + got, cap - got)) > 0)
    got += (size_t)r;
  close(cl);
  size_t roff = 0, req_off = 0;
  for (size_t i = 0; i < nreq; i++) {
    svc__frame q, p;
    long qn =
        svc__frame_decode(s + req_off, n - req_off, SVC__MAX_MSG_LIMIT, &q);
    long pn = svc__frame_decode(buf + roff, got - roff, max, &p);
    CHECK(pn > 0);
    CHECK(p.type == SVC__FRAME_REPLY && p.call_id == q.call_id);
    roff += (size_t)pn;
    if (q.payload_len > max) { /* the last one */
      CHECK(i == nreq - 1);
      CHECK(p.status == SVC_ETOOBIG && p.payload_len == 0);
      break;
    }
    CHECK(qn > 0);
    /* a name with a NUL inside is no method at all: is_name is false */
    if (is_name(&q, "echo")) {
      CHECK(p.status == 0 && p.payload_len == q.payload_len);
      CHECK(memcmp(p.payload, q.payload, p.payload_len) == 0);
    } else if (is_name(&q, "fail")) {
      CHECK(p.status == 7 && p.payload_len == 0);
    } else if (is_name(&q, "svc.ping")) {
      CHECK(p.status == 0 && p.payload_len == 4);
      CHECK(memcmp(p.payload, "pong", 4) == 0);
    } else if (is_name(&q, "svc.stats")) {
      CHECK(p.status == SVC_ESTATE && p.payload_len == 0);
    } else if (is_name(&q, "svc.info") || is_name(&q, "svc.methods")) {
      CHECK((p.status == 0 && p.payload_len > 0) ||
            (p.status == SVC_ETOOBIG && p.payload_len == 0));
    } else {
      CHECK(p.status == SVC_ENOMETHOD && p.payload_len == 0);
    }
    req_off += (size_t)qn;
  }
  CHECK(roff == got); /* nothing else was sent */
  free(buf);
  return 0;
}

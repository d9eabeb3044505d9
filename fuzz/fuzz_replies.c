/* fuzz_replies.c — libFuzzer harness for the client side of the stream
 * transports with calls in flight: the client (public API, unix://) sends
 * a window of calls, then reads what a hostile server wrote back.
 *
 * Input: byte 0 = calls to send (1 + b % 64); byte 1 = the client's
 * max_payload selector; the rest is the server's byte stream, followed by
 * the end of the stream.
 * Properties: every call finishes exactly once (svc_call_recv returns each
 * id sent, once, then SVC_ESTATE); no id is ever one that was not sent; a
 * call that succeeded got a reply frame with its own call id, whose payload
 * is within the client's limit; nothing hangs or leaks. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "svc.h"

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "fuzz_replies: property failed at %s:%d: %s\n",          \
              __FILE__, __LINE__, #cond);                                      \
      abort();                                                                 \
    }                                                                          \
  } while (0)

#define MAX_CALLS 64

static const size_t max_payloads[4] = {16, 64, 4096, SVC_DEFAULT_MAX_MSG};

/* One listening socket for the whole run, in a private directory. */
static int listener(char *url, size_t n) {
  static int lfd = -1;
  static char path[108];
  if (lfd < 0) {
    char dir[] = "/tmp/svc-fuzz-replies-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/s.sock", dir);
    lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    CHECK(lfd >= 0 && bind(lfd, (struct sockaddr *)&a, sizeof a) == 0);
    CHECK(listen(lfd, 4) == 0);
  }
  snprintf(url, n, "unix://%s", path);
  return lfd;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2)
    return 0;
  int ncalls = 1 + data[0] % MAX_CALLS;
  size_t max = max_payloads[data[1] % 4];
  data += 2;
  size -= 2;
  char url[160];
  int lfd = listener(url, sizeof url);
  svc_client *c;
  CHECK(svc_client_open(url, &c) == 0);
  int srv = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
  CHECK(srv >= 0);
  CHECK(svc_client_set_max_msg(c, max) == 0);
  /* The setting reconnects on the next call: take that connection too. */
  uint64_t ids[MAX_CALLS];
  CHECK(svc_call_send(c, "m", "x", 1, &ids[0]) == 0);
  close(srv);
  srv = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
  CHECK(srv >= 0);
  for (int i = 1; i < ncalls; i++)
    CHECK(svc_call_send(c, "m", "x", 1, &ids[i]) == 0);
  /* The server's bytes, then the end of its stream: reading never waits. */
  size_t off = 0;
  while (off < size) {
    ssize_t w = send(srv, data + off, size - off, MSG_NOSIGNAL);
    if (w <= 0)
      break;
    off += (size_t)w;
  }
  shutdown(srv, SHUT_WR);
  int finished[MAX_CALLS] = {0}, left = ncalls;
  for (;;) {
    uint64_t id;
    const void *resp;
    size_t len;
    int rc = svc_call_recv(c, 2000, &id, &resp, &len);
    if (id == 0) { /* nothing received: none in flight, never "not yet" */
      CHECK(rc == SVC_ESTATE); /* the stream has ended: nothing may wait */
      break;
    }
    int k = -1;
    for (int i = 0; i < ncalls; i++)
      if (ids[i] == id)
        k = i;
    CHECK(k >= 0);       /* an id that was sent */
    CHECK(!finished[k]); /* once */
    finished[k] = 1;
    left--;
    if (rc == 0)
      CHECK(len <= max && (len == 0 || resp != NULL));
  }
  CHECK(left == 0);
  close(srv);
  svc_client_close(c);
  return 0;
}

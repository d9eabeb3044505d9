/* async_client.c — one thread, one epoll loop, calls to two services at
 * once ("echo" on echo_server; "set", then "get" of that key, on kv_server)
 * with a few in flight on each: svc_call_send sends, and when a client's fd
 * polls readable, svc_call_recv takes its finished calls.
 *   async_client [ECHO_URL [KV_URL [CALLS]]]  (shm://echo shm://kv 10) */
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>

#include <svc.h>

#define IN_FLIGHT 4 /* calls kept in flight on each client */

typedef struct call {
  uint64_t id; /* svc_call_send's name for it; 0: slot free */
  const char *method;
  int n;
} call;

typedef struct peer {
  const char *url;
  int kv; /* 1: the kv service, else echo */
  svc_client *c;
  int sent, done, limit; /* calls sent, finished, to send in all */
  call flight[IN_FLIGHT];
} peer;

/* The call in flight named id (0: a free slot), or NULL. */
static call *find(peer *p, uint64_t id) {
  for (int i = 0; i < IN_FLIGHT; i++)
    if (p->flight[i].id == id)
      return &p->flight[i];
  return NULL;
}

/* Sends the peer's next call and remembers it under its id. */
static void send_next(peer *p) {
  call *slot = find(p, 0); /* there is one: fewer than IN_FLIGHT in flight */
  char req[64];
  int n = p->sent, len;
  if (!p->kv) {
    slot->method = "echo";
    len = snprintf(req, sizeof req, "hello %d", n);
  } else if (n % 2 == 0) { /* set "KEY\0VALUE", then get "KEY" */
    slot->method = "set";
    len = snprintf(req, sizeof req, "key-%d%cvalue-%d", n / 2, '\0', n / 2);
  } else {
    slot->method = "get";
    len = snprintf(req, sizeof req, "key-%d", n / 2);
  }
  int rc = svc_call_send(p->c, slot->method, req, (size_t)len, &slot->id);
  if (rc < 0) {
    fprintf(stderr, "%s %s: %s\n", p->url, slot->method, svc_strerror(rc));
    slot->id = 0;
    p->limit = p->sent; /* send no more to this service */
    return;
  }
  slot->n = n;
  p->sent++;
}

/* Takes every call of p that finished, without waiting (timeout 0), until
 * none is left (id 0); sends one new call for each. */
static void drain(peer *p) {
  uint64_t id;
  const void *resp;
  size_t len;
  int rc;
  for (;;) {
    rc = svc_call_recv(p->c, 0, &id, &resp, &len);
    call *k = id ? find(p, id) : NULL;
    if (!k) /* id 0: nothing more finished (SVC_EAGAIN, SVC_ESTATE) */
      break;
    if (rc == 0) /* resp is valid until the next svc_call_recv on p->c */
      printf("%s %s #%d -> \"%.*s\"\n", p->url, k->method, k->n, (int)len,
             (const char *)resp);
    else
      printf("%s %s #%d failed: %s\n", p->url, k->method, k->n,
             svc_strerror(rc));
    k->id = 0;
    p->done++;
    if (p->sent < p->limit)
      send_next(p);
  }
}

int main(int argc, char **argv) {
  int calls = argc > 3 ? atoi(argv[3]) : 10;
  peer peers[2] = {
      {.url = argc > 1 ? argv[1] : "shm://echo", .limit = calls},
      {.url = argc > 2 ? argv[2] : "shm://kv", .kv = 1, .limit = calls}};
  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0 || calls < 1)
    return 1;
  for (int i = 0; i < 2; i++) {
    peer *p = &peers[i];
    int rc = svc_client_open(p->url, &p->c);
    /* Its fd is readable while a finished call waits to be received. */
    int fd = rc < 0 ? rc : svc_client_fd(p->c);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = p};
    if (fd < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
      fprintf(stderr, "%s: %s\n", p->url, svc_strerror(fd < 0 ? fd : SVC_ESYS));
      return 1;
    }
    svc_client_set_timeout(p->c, 2000); /* no reply in 2 s: SVC_ETIMEDOUT */
    while (p->sent < IN_FLIGHT && p->sent < p->limit)
      send_next(p);
  }
  /* Until every call sent has finished, on both services. */
  while (peers[0].done < peers[0].sent || peers[1].done < peers[1].sent) {
    struct epoll_event evs[2];
    int n = epoll_wait(ep, evs, 2, -1);
    for (int i = 0; i < n; i++)
      drain(evs[i].data.ptr);
  }
  for (int i = 0; i < 2; i++)
    svc_client_close(peers[i].c);
  return 0;
}

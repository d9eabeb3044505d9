/* server.c — svc_server: the method table, the listeners, and a pool of
 * threads sharing one epoll set. A connection is polled while idle (no
 * thread, no CPU) and owned by one thread while it is busy; the pool grows
 * when every thread is busy. Knows nothing of how a transport moves bytes. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "internal.h"
#include "transport.h"

#define MAX_LISTENERS 16
#define DEFAULT_MAX_THREADS 64
#define INITIAL_THREADS 2

typedef struct method {
  char name[SVC_METHOD_MAX + 1];
  svc_handler fn;
  void *ctx;
} method;

enum item_kind { ITEM_STOP, ITEM_LISTENER, ITEM_CONN };

/* What an epoll event points at. Connections are linked for shutdown. */
typedef struct item {
  enum item_kind kind;
  svc__listener *listener;
  svc__conn *conn;
  struct item *prev, *next;
} item;

struct svc_server {
  char name[SVC__NAME_MAX + 1];
  method *methods;
  int nmethods;
  item listeners[MAX_LISTENERS];
  char listen_urls[MAX_LISTENERS][SVC__PATH_MAX + 16];
  int nlisteners;
  svc__conn_opts opts;
  _Atomic int spinners;   /* threads spinning now (bounded by cores) */
  int max_threads;
  int epfd;               /* -1 until started */
  int stopfd;             /* eventfd: readable once stop was asked */
  item stop_item;
  _Atomic int stopping;
  int started;
  pthread_t *threads;
  _Atomic int nthreads;
  _Atomic int idle;       /* threads waiting in epoll_wait */
  pthread_mutex_t lock;   /* guards conns and thread creation */
  item conns;             /* list head */
  int64_t started_ns;
};

int svc_server_new(const char *name, svc_server **out) {
  if (!out || !svc__name_valid(name))
    return SVC_EINVAL;
  svc_server *s = calloc(1, sizeof *s);
  if (!s)
    return SVC_ENOMEM;
  snprintf(s->name, sizeof s->name, "%s", name);
  s->opts.max_payload = SVC_DEFAULT_MAX_MSG;
  s->opts.wait = SVC_WAIT_ADAPTIVE;
  s->opts.spinners = &s->spinners;
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  s->opts.max_spinners = ncpu > 1 ? (int)ncpu - 1 : 1;
  s->max_threads = DEFAULT_MAX_THREADS;
  s->epfd = -1;
  s->stopfd = -1;
  s->conns.next = s->conns.prev = &s->conns;
  pthread_mutex_init(&s->lock, NULL);
  *out = s;
  return 0;
}

int svc_server_method(svc_server *s, const char *name, svc_handler fn,
                      void *ctx) {
  if (!s || !name || !fn || s->started)
    return SVC_EINVAL;
  size_t n = strlen(name);
  if (n == 0 || n > SVC_METHOD_MAX || strncmp(name, "svc.", 4) == 0)
    return SVC_EINVAL;
  for (int i = 0; i < s->nmethods; i++)
    if (strcmp(s->methods[i].name, name) == 0) {
      s->methods[i].fn = fn;
      s->methods[i].ctx = ctx;
      return 0;
    }
  method *m = realloc(s->methods, (size_t)(s->nmethods + 1) * sizeof *m);
  if (!m)
    return SVC_ENOMEM;
  s->methods = m;
  memcpy(m[s->nmethods].name, name, n + 1);
  m[s->nmethods].fn = fn;
  m[s->nmethods].ctx = ctx;
  s->nmethods++;
  return 0;
}

int svc_server_listen(svc_server *s, const char *url) {
  svc__url u;
  if (!s || s->started || s->nlisteners == MAX_LISTENERS)
    return SVC_EINVAL;
  int rc = svc__url_parse(url, &u);
  if (rc < 0)
    return rc;
  const svc__transport *tp = svc__transport_find(u.scheme);
  if (!tp)
    return SVC_EINVAL;
  item *it = &s->listeners[s->nlisteners];
  if ((rc = tp->listen(&u, &it->listener)) < 0)
    return rc;
  it->kind = ITEM_LISTENER;
  snprintf(s->listen_urls[s->nlisteners], sizeof s->listen_urls[0], "%s", url);
  s->nlisteners++;
  return 0;
}

int svc_server_set_wait(svc_server *s, svc_wait_policy p) {
  if (!s || s->started || p < SVC_WAIT_ADAPTIVE || p > SVC_WAIT_BLOCK)
    return SVC_EINVAL;
  s->opts.wait = p;
  return 0;
}

int svc_server_set_max_msg(svc_server *s, size_t bytes) {
  if (!s || s->started || bytes == 0 || bytes > SVC__MAX_MSG_LIMIT)
    return SVC_EINVAL;
  s->opts.max_payload = bytes;
  return 0;
}

int svc_server_set_allow_any_uid(svc_server *s, int allow) {
  if (!s || s->started)
    return SVC_EINVAL;
  s->opts.allow_any_uid = allow != 0;
  return 0;
}

int svc_server_set_max_threads(svc_server *s, int n) {
  if (!s || s->started || n < 1 || n > 4096)
    return SVC_EINVAL;
  s->max_threads = n;
  return 0;
}

/* ---- dispatch ---- */

static int reply_text(svc_reply *r, const char *text) {
  return svc_reply_set(r, text, strlen(text));
}

static int builtin_methods(svc_server *s, svc_reply *r) {
  size_t cap = 32, len = 0;
  for (int i = 0; i < s->nmethods; i++)
    cap += strlen(s->methods[i].name) * 6 + 4;
  char *buf = malloc(cap);
  if (!buf)
    return SVC_ENOMEM;
  len += (size_t)snprintf(buf, cap, "[");
  for (int i = 0; i < s->nmethods; i++) {
    len += (size_t)snprintf(buf + len, cap - len, "%s\"", i ? "," : "");
    for (const char *p = s->methods[i].name; *p; p++) {
      unsigned char ch = (unsigned char)*p;
      if (ch == '"' || ch == '\\')
        len += (size_t)snprintf(buf + len, cap - len, "\\%c", ch);
      else if (ch < 0x20)
        len += (size_t)snprintf(buf + len, cap - len, "\\u%04x", ch);
      else
        buf[len++] = (char)ch;
    }
    buf[len++] = '"';
  }
  len += (size_t)snprintf(buf + len, cap - len, "]");
  int rc = svc_reply_set(r, buf, len);
  free(buf);
  return rc;
}

static int builtin_info(svc_server *s, svc_reply *r) {
  char buf[4096];
  int64_t up_ms = (svc__now_ns() - s->started_ns) / 1000000;
  int len = snprintf(buf, sizeof buf,
                     "{\"format\":1,\"name\":\"%s\",\"version\":\"%s\","
                     "\"pid\":%d,\"workers\":1,\"uptime_ms\":%lld,"
                     "\"listeners\":[",
                     s->name, svc_version(), (int)getpid(), (long long)up_ms);
  for (int i = 0; i < s->nlisteners && len < (int)sizeof buf - 300; i++)
    len += snprintf(buf + len, sizeof buf - (size_t)len, "%s\"%s\"",
                    i ? "," : "", s->listen_urls[i]);
  len += snprintf(buf + len, sizeof buf - (size_t)len, "]}");
  return svc_reply_set(r, buf, (size_t)len);
}

static int dispatch_builtin(svc_server *s, const char *name, svc_reply *r) {
  if (strcmp(name, "svc.ping") == 0)
    return reply_text(r, "pong");
  if (strcmp(name, "svc.methods") == 0)
    return builtin_methods(s, r);
  if (strcmp(name, "svc.info") == 0)
    return builtin_info(s, r);
  return SVC_ENOMETHOD;
}

static int dispatch(void *ctx, const char *name, const void *req, size_t len,
                    svc_reply *r) {
  svc_server *s = ctx;
  if (strncmp(name, "svc.", 4) == 0)
    return dispatch_builtin(s, name, r);
  for (int i = 0; i < s->nmethods; i++)
    if (strcmp(s->methods[i].name, name) == 0)
      return s->methods[i].fn(s->methods[i].ctx, req, len, r);
  return SVC_ENOMETHOD;
}

void *svc_reply_alloc(svc_reply *r, size_t len) {
  return r ? r->alloc(r, len) : NULL;
}

int svc_reply_set(svc_reply *r, const void *p, size_t len) {
  if (!r || (!p && len))
    return SVC_EINVAL;
  void *dst = r->alloc(r, len);
  if (!dst)
    return r->error;
  if (len)
    memcpy(dst, p, len);
  return 0;
}

/* ---- event loop ---- */

static int arm(svc_server *s, item *it, int op) {
  int fd = it->kind == ITEM_CONN ? it->conn->fd : it->listener->fd;
  struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT,
                           .data.ptr = it};
  return epoll_ctl(s->epfd, op, fd, &ev) == 0 ? 0 : svc__from_errno(errno);
}

static void conn_add(svc_server *s, svc__conn *c) {
  item *it = calloc(1, sizeof *it);
  if (!it) {
    c->tp->close(c);
    return;
  }
  it->kind = ITEM_CONN;
  it->conn = c;
  pthread_mutex_lock(&s->lock);
  it->next = s->conns.next;
  it->prev = &s->conns;
  s->conns.next->prev = it;
  s->conns.next = it;
  pthread_mutex_unlock(&s->lock);
  if (arm(s, it, EPOLL_CTL_ADD) < 0) {
    pthread_mutex_lock(&s->lock);
    it->prev->next = it->next;
    it->next->prev = it->prev;
    pthread_mutex_unlock(&s->lock);
    c->tp->close(c);
    free(it);
  }
}

static void conn_remove(svc_server *s, item *it) {
  epoll_ctl(s->epfd, EPOLL_CTL_DEL, it->conn->fd, NULL);
  pthread_mutex_lock(&s->lock);
  it->prev->next = it->next;
  it->next->prev = it->prev;
  pthread_mutex_unlock(&s->lock);
  it->conn->tp->close(it->conn);
  free(it);
}

static void accept_all(svc_server *s, item *it) {
  svc__listener *l = it->listener;
  for (;;) {
    svc__conn *c;
    int rc = l->tp->accept(l, &s->opts, &c);
    if (rc == 1 || rc == SVC_ENOMEM || rc == SVC_ESYS)
      break; /* none pending, or out of fds: try again on the next event */
    if (rc == 0)
      conn_add(s, c);
  }
  arm(s, it, EPOLL_CTL_MOD);
}

static void *thread_main(void *arg);

static void maybe_spawn(svc_server *s) {
  pthread_mutex_lock(&s->lock);
  int n = atomic_load(&s->nthreads);
  if (n < s->max_threads && !atomic_load(&s->stopping) &&
      pthread_create(&s->threads[n], NULL, thread_main, s) == 0)
    atomic_store(&s->nthreads, n + 1);
  pthread_mutex_unlock(&s->lock);
}

static void *thread_main(void *arg) {
  svc_server *s = arg;
  for (;;) {
    struct epoll_event ev;
    atomic_fetch_add(&s->idle, 1);
    int n = epoll_wait(s->epfd, &ev, 1, -1);
    int idle_left = atomic_fetch_sub(&s->idle, 1) - 1;
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    item *it = ev.data.ptr;
    if (it->kind == ITEM_STOP)
      break;
    if (idle_left == 0)
      maybe_spawn(s); /* keep one thread free for the next event */
    if (it->kind == ITEM_LISTENER) {
      accept_all(s, it);
      continue;
    }
    int rc = it->conn->tp->serve(it->conn, dispatch, s);
    if (rc == 0 && arm(s, it, EPOLL_CTL_MOD) == 0)
      continue;
    conn_remove(s, it);
  }
  return NULL;
}

int svc_server_start(svc_server *s) {
  if (!s || s->started)
    return SVC_EINVAL;
  if (s->nlisteners == 0)
    return SVC_ESTATE;
  s->threads = calloc((size_t)s->max_threads, sizeof *s->threads);
  s->epfd = epoll_create1(EPOLL_CLOEXEC);
  s->stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (!s->threads || s->epfd < 0 || s->stopfd < 0)
    return SVC_ENOMEM;
  s->stop_item.kind = ITEM_STOP;
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &s->stop_item};
  if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->stopfd, &ev) != 0)
    return svc__from_errno(errno);
  for (int i = 0; i < s->nlisteners; i++)
    if (arm(s, &s->listeners[i], EPOLL_CTL_ADD) < 0)
      return SVC_ESYS;
  s->started_ns = svc__now_ns();
  s->started = 1;
  for (int i = 0; i < INITIAL_THREADS && i < s->max_threads; i++)
    maybe_spawn(s);
  return atomic_load(&s->nthreads) > 0 ? 0 : SVC_ESYS;
}

void svc_server_stop(svc_server *s) {
  if (!s)
    return;
  atomic_store(&s->stopping, 1);
  if (s->stopfd >= 0) {
    uint64_t one = 1;
    ssize_t n = write(s->stopfd, &one, sizeof one); /* async-signal-safe */
    (void)n;
  }
}

static void join_threads(svc_server *s) {
  int n = atomic_load(&s->nthreads);
  for (int i = 0; i < n; i++)
    pthread_join(s->threads[i], NULL);
  atomic_store(&s->nthreads, 0);
}

int svc_server_run(svc_server *s) {
  if (!s)
    return SVC_EINVAL;
  sigset_t set, old;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, &old); /* threads inherit the mask */
  int sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
  int rc = sfd < 0 ? svc__from_errno(errno) : svc_server_start(s);
  if (rc == 0) {
    struct pollfd p[2] = {{.fd = sfd, .events = POLLIN},
                          {.fd = s->stopfd, .events = POLLIN}};
    while (poll(p, 2, -1) < 0 && errno == EINTR)
      ;
    struct signalfd_siginfo si; /* consume it, or it fires on unblock */
    while (p[0].revents && read(sfd, &si, sizeof si) == (ssize_t)sizeof si)
      ;
    svc_server_stop(s);
    join_threads(s);
  }
  if (sfd >= 0)
    close(sfd);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  return rc;
}

void svc_server_free(svc_server *s) {
  if (!s)
    return;
  svc_server_stop(s);
  join_threads(s);
  while (s->conns.next != &s->conns) {
    item *it = s->conns.next;
    it->prev->next = it->next;
    it->next->prev = it->prev;
    it->conn->tp->close(it->conn);
    free(it);
  }
  for (int i = 0; i < s->nlisteners; i++)
    s->listeners[i].listener->tp->unlisten(s->listeners[i].listener);
  if (s->epfd >= 0)
    close(s->epfd);
  if (s->stopfd >= 0)
    close(s->stopfd);
  pthread_mutex_destroy(&s->lock);
  free(s->threads);
  free(s->methods);
  free(s);
}

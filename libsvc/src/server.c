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
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "internal.h"
#include "server.h"
#include "stats.h"
#include "sys.h"
#include "transport.h"

#define DEFAULT_MAX_THREADS 64
#define INITIAL_THREADS 2
#define IDLE_EXIT_MS                                                           \
  2000 /* threads above INITIAL_THREADS idle this long exit */
/* How long a listener rests after accept ran out of fds or memory: long
 * enough to cost nothing, short enough that a freed fd is soon used. */
#define ACCEPT_PAUSE_MS 50

int svc_server_new(const char *name, svc_server **out) {
  if (!out || !svc__name_valid(name))
    return SVC_EINVAL;
  svc_server *s = svc__calloc(1, sizeof *s);
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
  s->resume_fd = -1;
  /* Made now, not at start: stop may come from any thread at any time. */
  s->stopfd = svc__eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (s->stopfd < 0) {
    free(s);
    return svc__from_errno(errno);
  }
  s->opts.stopping = &s->stopping;
  s->conns.next = s->conns.prev = &s->conns;
  s->owns_sockets = 1;
  s->pool_slot = -1;
  svc__workers_defaults(&s->workers);
  pthread_mutex_init(&s->lock, NULL);
  pthread_cond_init(&s->threads_done, NULL);
  *out = s;
  return 0;
}

static int listen_url(svc_server *s, const char *url) {
  svc__url u;
  if (s->started)
    return SVC_ESTATE;
  if (s->nlisteners == MAX_LISTENERS)
    return SVC_EINVAL;
  int rc = svc__url_parse(url, &u);
  if (rc < 0)
    return rc;
  const svc__transport *tp = svc__transport_find(u.scheme);
  if (!tp)
    return SVC_EINVAL;
  svc__item *it = &s->listeners[s->nlisteners];
  if ((rc = tp->listen(&u, s->why, sizeof s->why, &it->listener)) < 0)
    return rc;
  it->kind = ITEM_LISTENER;
  /* Without the query: svc.info shows where, not which files. */
  snprintf(s->listen_urls[s->nlisteners], sizeof s->listen_urls[0], "%.*s",
           (int)strcspn(url, "?"), url);
  s->nlisteners++;
  return 0;
}

int svc_server_listen(svc_server *s, const char *url) {
  if (!s)
    return SVC_EINVAL;
  s->why[0] = '\0';
  int rc = listen_url(s, url);
  if (rc < 0 && !s->why[0])
    snprintf(s->why, sizeof s->why, "%s", svc_strerror(rc));
  return rc;
}

const char *svc_server_last_error_text(const svc_server *s) {
  return s ? s->why : "";
}

int svc_server_set_wait(svc_server *s, svc_wait_policy p) {
  if (s && s->started)
    return SVC_ESTATE;
  if (!s || p < SVC_WAIT_ADAPTIVE || p > SVC_WAIT_BLOCK)
    return SVC_EINVAL;
  s->opts.wait = p;
  return 0;
}

int svc_server_set_max_msg(svc_server *s, size_t bytes) {
  if (s && s->started)
    return SVC_ESTATE;
  if (!s || bytes == 0 || bytes > SVC__MAX_MSG_LIMIT)
    return SVC_EINVAL;
  s->opts.max_payload = bytes;
  return 0;
}

int svc_server_set_allow_any_uid(svc_server *s, int allow) {
  if (s && s->started)
    return SVC_ESTATE;
  if (!s)
    return SVC_EINVAL;
  s->opts.allow_any_uid = allow != 0;
  return 0;
}

int svc_server_set_max_threads(svc_server *s, int n) {
  if (s && s->started)
    return SVC_ESTATE;
  if (!s || n < 1 || n > 4096)
    return SVC_EINVAL;
  s->max_threads = n;
  return 0;
}

/* ---- event loop ---- */

static int arm(svc_server *s, svc__item *it, int op) {
  int fd = it->kind == ITEM_CONN ? it->conn->fd : it->listener->fd;
  struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT,
                           .data.ptr = it};
  return svc__epoll_ctl(s->epfd, op, fd, &ev) == 0 ? 0 : svc__from_errno(errno);
}

static void item_free(svc__item *it) {
  svc__stats_release(it->server->stats, it->stats_slot);
  it->conn->tp->close(it->conn);
  pthread_mutex_destroy(&it->serving);
  free(it);
}

static void conn_add(svc_server *s, svc__conn *c) {
  svc__item *it = svc__calloc(1, sizeof *it);
  if (!it) {
    c->tp->close(c);
    return;
  }
  it->kind = ITEM_CONN;
  it->conn = c;
  it->server = s;
  it->stats_slot = svc__stats_claim(s->stats);
  it->last_method = -1;
  if (s->pool_info && s->pool_slot >= 0)
    atomic_fetch_add(&s->pool_info->conns[s->pool_slot], 1);
  pthread_mutex_init(&it->serving, NULL);
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
    item_free(it);
  }
}

static void conn_remove(svc_server *s, svc__item *it) {
  epoll_ctl(s->epfd, EPOLL_CTL_DEL, it->conn->fd, NULL);
  if (s->pool_info && s->pool_slot >= 0)
    atomic_fetch_sub(&s->pool_info->conns[s->pool_slot], 1);
  pthread_mutex_lock(&s->lock);
  it->prev->next = it->next;
  it->next->prev = it->prev;
  pthread_mutex_unlock(&s->lock);
  item_free(it);
}

/* Takes listener it off epoll for ACCEPT_PAUSE_MS: its backlog waits
 * there (the kernel keeps it) until resume_listeners. If even the timer
 * cannot be set, the listener is re-armed at once: spinning beats a
 * listener that never comes back. */
static void pause_listener(svc_server *s, svc__item *it) {
  atomic_store(&it->paused, 1);
  struct itimerspec t = {.it_value = {0, ACCEPT_PAUSE_MS * 1000000L}};
  if (timerfd_settime(s->resume_fd, 0, &t, NULL) != 0) {
    atomic_store(&it->paused, 0);
    arm(s, it, EPOLL_CTL_MOD);
  }
}

/* Polls listener it again; if epoll refuses (ENOMEM), the timer tries
 * again later: a listener must never drop out of the set for good. */
static void rearm_listener(svc_server *s, svc__item *it) {
  if (arm(s, it, EPOLL_CTL_MOD) < 0)
    pause_listener(s, it);
}

/* The resume timer fired. */
static void resume_listeners(svc_server *s) {
  uint64_t ticks;
  while (read(s->resume_fd, &ticks, sizeof ticks) > 0)
    ;
  for (int i = 0; i < s->nlisteners; i++)
    if (atomic_exchange(&s->listeners[i].paused, 0))
      rearm_listener(s, &s->listeners[i]);
}

static void accept_all(svc_server *s, svc__item *it) {
  svc__listener *l = it->listener;
  for (;;) {
    if (svc__workers_defer_accept(s))
      break; /* another worker should take it: poll again */
    svc__conn *c;
    int rc = l->tp->accept(l, &s->opts, &c);
    if (rc == 1)
      break; /* none pending */
    if (rc == SVC_ENOMEM || rc == SVC_ESYS) {
      /* Out of fds (EMFILE) or memory: the pending connection stays in
       * the backlog and the listener readable. Polling it again now would
       * spin a core until an fd frees up. */
      pause_listener(s, it);
      return;
    }
    if (rc == 0)
      conn_add(s, c);
  }
  rearm_listener(s, it);
}

static void *thread_main(void *arg);

/* Adds a thread unless the pool is full or stopping. Returns SVC_ESYS only
 * when the system refused a thread. */
static int maybe_spawn(svc_server *s) {
  int rc = 0;
  pthread_mutex_lock(&s->lock);
  pthread_attr_t attr;
  pthread_t t;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  if (atomic_load(&s->nthreads) < s->max_threads &&
      !atomic_load(&s->stopping)) {
    if (svc__pthread_create(&t, &attr, thread_main, s) == 0)
      atomic_fetch_add(&s->nthreads, 1);
    else
      rc = SVC_ESYS;
  }
  pthread_attr_destroy(&attr);
  pthread_mutex_unlock(&s->lock);
  return rc;
}

/* Called with s->lock held by the last thread out after a stop: clients,
 * connected or not, learn at once that the server is gone (fds stay valid
 * until free, so no number is reused under a thread). */
static void shutdown_conns(svc_server *s) {
  /* Listeners first: a client that sees its connection end reconnects at
   * once, and must then be refused, not left waiting in a backlog. */
  for (int i = 0; s->owns_sockets && i < s->nlisteners; i++)
    shutdown(s->listeners[i].listener->fd, SHUT_RDWR); /* not a worker's */
  for (svc__item *it = s->conns.next; it != &s->conns; it = it->next)
    shutdown(it->conn->fd, SHUT_RDWR);
}

/* Leaves the pool: returns 0 if this thread may not (the pool is at its
 * floor and not stopping). */
static int thread_leave(svc_server *s, int idle_timeout) {
  pthread_mutex_lock(&s->lock);
  int stopping = atomic_load(&s->stopping);
  if (!stopping && idle_timeout &&
      atomic_load(&s->nthreads) <= INITIAL_THREADS) {
    pthread_mutex_unlock(&s->lock);
    return 0;
  }
  svc__transports_thread_exit(); /* before the count lets free go on */
  if (atomic_fetch_sub(&s->nthreads, 1) == 1) {
    if (stopping)
      shutdown_conns(s);
    pthread_cond_broadcast(&s->threads_done);
  }
  pthread_mutex_unlock(&s->lock);
  return 1;
}

/* svc__stay_fn: a thread may keep a connection while another one waits in
 * epoll_wait for everything else, and nothing asks it to wind down. */
static int may_stay(void *ctx) {
  svc_server *s = ((svc__item *)ctx)->server;
  return atomic_load_explicit(&s->idle, memory_order_relaxed) > 0 &&
         !atomic_load_explicit(&s->stopping, memory_order_relaxed) &&
         !atomic_load_explicit(&s->retiring, memory_order_relaxed);
}

static const svc__serve_ops serve_ops = {.dispatch = svc__server_dispatch,
                                         .posted = svc__server_posted,
                                         .stay = may_stay};

static void serve_conn(svc_server *s, svc__item *it) {
  pthread_mutex_lock(&it->serving);
  int rc = it->conn->tp->serve(it->conn, &serve_ops, it);
  if (rc == 0 && atomic_load(&s->retiring) && !it->goaway_sent)
    it->goaway_sent = it->conn->tp->goaway(it->conn) == 0;
  /* Re-armed before the unlock: the next thread to serve it locks after
   * us, so everything we did happens before (as TSan can see). */
  int keep = rc == 0 && arm(s, it, EPOLL_CTL_MOD) == 0;
  pthread_mutex_unlock(&it->serving);
  if (!keep)
    conn_remove(s, it);
}

static void *thread_main(void *arg) {
  svc_server *s = arg;
  for (;;) {
    struct epoll_event ev;
    int extra = atomic_load(&s->nthreads) > INITIAL_THREADS;
    atomic_fetch_add(&s->idle, 1);
    /* The analyzer takes the epoll data pointer that conn_remove freed for
     * s; they never alias. */
    int epfd = s->epfd; // NOLINT(clang-analyzer-unix.Malloc)
    int n = svc__epoll_wait(epfd, &ev, 1, extra ? IDLE_EXIT_MS : -1);
    int idle_left = atomic_fetch_sub(&s->idle, 1) - 1;
    if (n < 0 && errno == EINTR)
      continue;
    if (n == 0 && !thread_leave(s, 1))
      continue;
    if (n == 0)
      return NULL;
    svc__item *it = n > 0 ? ev.data.ptr : &s->stop_item;
    if (it->kind == ITEM_STOP || atomic_load(&s->stopping))
      break;
    if (idle_left == 0)
      maybe_spawn(s); /* keep one thread free for the next event */
    if (it->kind == ITEM_LISTENER)
      accept_all(s, it);
    else if (it->kind == ITEM_RESUME)
      resume_listeners(s);
    else
      serve_conn(s, it);
  }
  thread_leave(s, 0);
  return NULL;
}

static void close_epoll(svc_server *s) {
  if (s->epfd >= 0)
    close(s->epfd);
  if (s->resume_fd >= 0)
    close(s->resume_fd);
  s->epfd = s->resume_fd = -1;
}

/* The epoll set: the stop eventfd, the resume timer, every listener. */
static int start_epoll(svc_server *s) {
  s->epfd = svc__epoll_create1(EPOLL_CLOEXEC);
  s->resume_fd =
      svc__timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
  if (s->epfd < 0 || s->resume_fd < 0)
    return svc__from_errno(errno);
  s->stop_item.kind = ITEM_STOP;
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &s->stop_item};
  if (svc__epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->stopfd, &ev) != 0)
    return svc__from_errno(errno);
  /* Edge-triggered: each expiry wakes one thread, not every idle one, and
   * nothing needs re-arming (which could fail). */
  s->resume_item.kind = ITEM_RESUME;
  ev.events = EPOLLIN | EPOLLET;
  ev.data.ptr = &s->resume_item;
  if (svc__epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->resume_fd, &ev) != 0)
    return svc__from_errno(errno);
  int rc = 0;
  for (int i = 0; rc == 0 && i < s->nlisteners; i++)
    rc = arm(s, &s->listeners[i], EPOLL_CTL_ADD);
  return rc;
}

int svc_server_start(svc_server *s) {
  if (s && s->started)
    return SVC_ESTATE;
  if (!s)
    return SVC_EINVAL;
  if (s->nlisteners == 0)
    return SVC_ESTATE;
  int rc = start_epoll(s);
  if (rc == 0 && svc__server_stats_open(s) < 0) /* no-op if run made it */
    rc = SVC_ENOMEM;
  if (rc < 0) { /* as before the call: a second start may succeed */
    close_epoll(s);
    return rc;
  }
  s->started_ns = svc__now_ns();
  s->started = 1;
  /* The first thread is required; a stop may already have ended it. */
  rc = maybe_spawn(s);
  if (rc == 0 && INITIAL_THREADS > 1)
    (void)maybe_spawn(s); /* more only help */
  return rc;
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
  pthread_mutex_lock(&s->lock);
  while (atomic_load(&s->nthreads) > 0)
    pthread_cond_wait(&s->threads_done, &s->lock);
  pthread_mutex_unlock(&s->lock);
}

/* Stops accepting and asks every client to reconnect elsewhere between
 * calls; returns once all have gone or the grace period ran out. */
static void retire(svc_server *s) {
  atomic_store(&s->retiring, 1);
  for (int i = 0; i < s->nlisteners; i++) /* other workers keep them */
    epoll_ctl(s->epfd, EPOLL_CTL_DEL, s->listeners[i].listener->fd, NULL);
  int64_t end = svc__now_ns() + (int64_t)s->workers.grace_ms * 1000000;
  for (;;) {
    int left = 0;
    pthread_mutex_lock(&s->lock);
    for (svc__item *it = s->conns.next; it != &s->conns; it = it->next) {
      left++;
      /* goaway_sent is read under serving too: serve_conn writes it there
       * (TSan caught the read before the lock) */
      if (pthread_mutex_trylock(&it->serving) != 0)
        continue; /* a busy connection gets it when its call is done */
      if (!it->goaway_sent)
        it->goaway_sent = it->conn->tp->goaway(it->conn) == 0;
      pthread_mutex_unlock(&it->serving);
    }
    pthread_mutex_unlock(&s->lock);
    if (left == 0 || svc__now_ns() >= end)
      return;
    usleep(20000);
  }
}

int svc__server_serve_until_signal(svc_server *s, int sfd, int retire_signo) {
  int rc = svc_server_start(s);
  if (rc < 0)
    return rc;
  svc__workers_ready(s);
  for (;;) {
    struct pollfd p[2] = {{.fd = sfd, .events = POLLIN},
                          {.fd = s->stopfd, .events = POLLIN}};
    if (poll(p, 2, -1) < 0) {
      if (errno == EINTR)
        continue;
      break;
    }
    if (p[1].revents)
      break;
    struct signalfd_siginfo si; /* consume it, or it fires on unblock */
    if (read(sfd, &si, sizeof si) != (ssize_t)sizeof si)
      continue;
    if (retire_signo && (int)si.ssi_signo == retire_signo)
      retire(s);
    break;
  }
  svc_server_stop(s);
  join_threads(s);
  return 0;
}

int svc_server_run(svc_server *s) {
  if (s && s->started)
    return SVC_ESTATE;
  if (!s)
    return SVC_EINVAL;
  svc__workers_from_env(&s->workers);
  int pool = s->workers.max > 1;
  sigset_t set, old;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  if (pool)
    sigaddset(&set, SIGCHLD);
  pthread_sigmask(SIG_BLOCK, &set, &old); /* threads inherit the mask */
  int sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
  int rc = sfd < 0 ? svc__from_errno(errno) : 0;
  if (rc == 0)
    rc = svc__server_stats_open(s); /* before workers fork: shared */
  if (rc == 0 && pool)
    rc = svc__workers_master(s, sfd);
  else if (rc == 0 && s->workers.init && s->workers.init(s->workers.init_ctx))
    rc = SVC_EHANDLER;
  else if (rc == 0)
    rc = svc__server_serve_until_signal(s, sfd, 0);
  if (sfd >= 0)
    close(sfd);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  return rc;
}

int svc_server_set_workers(svc_server *s, int min, int max) {
  if (s && s->started)
    return SVC_ESTATE;
  if (!s || min < 1 || max < min || max > SVC__WORKERS_MAX)
    return SVC_EINVAL;
  s->workers.min = min;
  s->workers.max = max;
  return 0;
}

int svc_server_set_scaling(svc_server *s, int up_pct, int up_secs, int down_pct,
                           int down_secs) {
  if (s && s->started)
    return SVC_ESTATE;
  if (!s || up_pct < 1 || up_pct > 100 || down_pct < 0 || down_pct >= up_pct ||
      up_secs < 1 || down_secs < 1)
    return SVC_EINVAL;
  s->workers.up_pct = up_pct;
  s->workers.up_secs = up_secs;
  s->workers.down_pct = down_pct;
  s->workers.down_secs = down_secs;
  return 0;
}

int svc_server_set_worker_init(svc_server *s, int (*fn)(void *ctx), void *ctx) {
  if (s && s->started)
    return SVC_ESTATE;
  if (!s)
    return SVC_EINVAL;
  s->workers.init = fn;
  s->workers.init_ctx = ctx;
  return 0;
}

void svc_server_free(svc_server *s) {
  if (!s)
    return;
  svc_server_stop(s);
  join_threads(s);
  while (s->conns.next != &s->conns) {
    svc__item *it = s->conns.next;
    /* The analyzer sees a use after free in this unlink; each item is
     * freed only after it left the list. */
    it->prev->next = it->next; // NOLINT(clang-analyzer-unix.Malloc)
    it->next->prev = it->prev;
    item_free(it);
  }
  for (int i = 0; i < s->nlisteners; i++) {
    svc__listener *l = s->listeners[i].listener;
    if (!s->owns_sockets)
      l->path[0] = '\0'; /* a worker: the master removes socket files */
    l->tp->unlisten(l);
  }
  close_epoll(s);
  if (s->stopfd >= 0)
    close(s->stopfd);
  pthread_mutex_destroy(&s->lock);
  pthread_cond_destroy(&s->threads_done);
  svc__stats_free(s->stats);
  free(s->methods);
  free(s);
}

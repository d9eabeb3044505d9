/* workers.c — worker processes for svc_server_run. The master forks
 * workers that inherit the listening sockets (the kernel spreads new
 * connections among them; a connection stays with one worker), replaces a
 * worker that dies, and every interval samples its workers' CPU from /proc:
 * sustained high use adds a worker, sustained low use retires the newest,
 * which stops accepting, lets its clients finish and reconnect elsewhere,
 * and exits. Each scaling decision is one line on stderr. */
#include "workers.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"
#include "server.h"
#include "sys.h"

#define RETIRE_SIGNAL SIGUSR1
#define STOP_TIMEOUT_MS 10000
#define RESPAWN_WINDOW_NS (10 * (int64_t)1000000000)
#define RESPAWN_BURST 10 /* deaths in the window before respawning slows */

typedef struct worker {
  pid_t pid;
  int slot; /* index in svc__pool_info's per-slot arrays */
  int retiring;
  long long ticks; /* CPU ticks at the last sample */
} worker;

typedef struct pool {
  svc_server *s;
  worker w[SVC__WORKERS_MAX];
  int n;          /* entries in w (including retiring) */
  double *window; /* recent samples of mean CPU % per active worker */
  int window_len, window_fill, window_pos;
  int64_t last_sample_ns;
  int64_t deaths_since_ns;
  int deaths;
  int fork_refused; /* the last fork failed: said once, retried each tick */
} pool;

static int env_int(const char *name, int *out) {
  const char *v = getenv(name);
  if (!v || !*v)
    return 0;
  char *end;
  long x = strtol(v, &end, 10);
  if (*end || x < 0 || x > 1000000)
    return 0;
  *out = (int)x;
  return 1;
}

void svc__workers_defaults(svc__workers *w) {
  memset(w, 0, sizeof *w);
  w->min = w->max = 1;
  w->up_pct = 80;
  w->up_secs = 5;
  w->down_pct = 20;
  w->down_secs = 20;
  w->interval_ms = 1000;
  w->grace_ms = 5000;
}

void svc__workers_from_env(svc__workers *w) {
  int min = w->min, max = w->max;
  int has_min = env_int("SVC_WORKERS_MIN", &min);
  int has_max = env_int("SVC_WORKERS_MAX", &max);
  if (has_min && !has_max && max < min)
    max = min;
  if (has_max && !has_min && min > max)
    min = max;
  if (min >= 1 && max >= min && max <= SVC__WORKERS_MAX) {
    w->min = min;
    w->max = max;
  }
  env_int("SVC_SCALE_UP_PCT", &w->up_pct);
  env_int("SVC_SCALE_UP_SECS", &w->up_secs);
  env_int("SVC_SCALE_DOWN_PCT", &w->down_pct);
  env_int("SVC_SCALE_DOWN_SECS", &w->down_secs);
  env_int("SVC_SCALE_INTERVAL_MS", &w->interval_ms);
  env_int("SVC_RETIRE_GRACE_MS", &w->grace_ms);
  if (w->interval_ms < 10)
    w->interval_ms = 10;
}

#define ACCEPT_DEFER_US 200
#define ACCEPT_DEFERS_MAX 5
/* Until the master has forked the minimum pool and each of its workers
 * polls, a worker leaves pending connections to the others for at most
 * this many defers (100 ms): the clients that connected while the pool
 * started would otherwise all meet the first worker ready. */
#define STARTUP_DEFERS_MAX 500

/* How long after the fork the others wait for a worker of the first pool
 * to poll: one whose init hook takes seconds must not cost every
 * connection to its siblings a defer meanwhile. */
#define STARTUP_READY_WAIT_NS 100000000LL /* 100 ms */

/* Whether the first pool is up. Once it was, workers forked later (scaling
 * up) do not hold back accepts while they start: only start-up does. */
static int pool_settled(svc__pool_info *info) {
  if (atomic_load(&info->settled))
    return 1;
  if (!atomic_load(&info->started))
    return 0;
  int all_ready = 1;
  for (int i = 0; i < SVC__WORKERS_MAX && all_ready; i++)
    all_ready = !atomic_load(&info->active[i]) || atomic_load(&info->ready[i]);
  if (!all_ready &&
      svc__now_ns() - atomic_load(&info->started_ns) < STARTUP_READY_WAIT_NS)
    return 0;
  atomic_store(&info->settled, 1);
  return 1;
}

void svc__workers_ready(svc_server *s) {
  if (s->pool_info && s->pool_slot >= 0)
    atomic_store(&s->pool_info->ready[s->pool_slot], 1);
}

int svc__workers_defer_accept(svc_server *s) {
  svc__pool_info *info = s->pool_info;
  if (!info || s->pool_slot < 0 || atomic_load(&s->retiring))
    return 0;
  if (!pool_settled(info)) {
    if (atomic_fetch_add(&s->accept_defers, 1) < STARTUP_DEFERS_MAX) {
      usleep(ACCEPT_DEFER_US);
      return 1;
    }
    atomic_store(&s->accept_defers, 0); /* the master is slow: serve */
  }
  int mine = atomic_load(&info->conns[s->pool_slot]), least = mine;
  for (int i = 0; i < SVC__WORKERS_MAX; i++)
    if (i != s->pool_slot && atomic_load(&info->active[i])) {
      int n = atomic_load(&info->conns[i]);
      least = n < least ? n : least;
    }
  if (mine <= least ||
      atomic_fetch_add(&s->accept_defers, 1) >= ACCEPT_DEFERS_MAX) {
    atomic_store(&s->accept_defers, 0);
    return 0;
  }
  usleep(ACCEPT_DEFER_US); /* a moment for the less busy worker */
  return 1;
}

double svc__cpu_pct(unsigned long long ticks, long long wall_ns, long hz) {
  if (wall_ns <= 0 || hz <= 0)
    return 0;
  return 100.0 * (double)ticks / (double)hz / ((double)wall_ns / 1e9);
}

long long svc__proc_cpu_ticks(const char *proc_root, pid_t pid) {
  char path[128], buf[1024];
  snprintf(path, sizeof path, "%s/%d/stat", proc_root, (int)pid);
  FILE *f = fopen(path, "re");
  if (!f)
    return -1;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  char *p = strrchr(buf, ')'); /* the command name may hold anything */
  if (!p)
    return -1;
  /* after ")": state, then fields 4..13, then utime (14) and stime (15) */
  char *end = p + 1;
  unsigned long long v[13];
  for (int i = 0; i < 13; i++) {
    while (*end == ' ')
      end++;
    if (i == 0) { /* the state letter */
      end++;
      v[i] = 0;
      continue;
    }
    char *next;
    errno = 0;
    v[i] = strtoull(end, &next, 10);
    if (next == end || errno)
      return -1;
    end = next;
  }
  return (long long)(v[11] + v[12]);
}

/* ---- in a worker ---- */

static void worker_main(svc_server *s, int master_sfd, pid_t master) {
  close(master_sfd);
  prctl(PR_SET_PDEATHSIG, SIGTERM); /* never outlive the master */
  /* A master that died before the line above sends no signal; its orphan
   * has a new parent, which is not always pid 1 (a subreaper: systemd
   * --user, a container's init, ci/soak). It served on for good. */
  if (getppid() != master)
    _exit(0);
  s->owns_sockets = 0;
  /* The stop eventfd came from the master: a private one, or one worker's
   * stop would stop them all. */
  close(s->stopfd);
  s->stopfd = svc__eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, RETIRE_SIGNAL);
  sigprocmask(SIG_BLOCK, &set, NULL);
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_UNBLOCK, &chld, NULL);
  int sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
  int rc = sfd < 0 || s->stopfd < 0 ? SVC_ESYS : 0;
  if (rc == 0 && s->workers.init && s->workers.init(s->workers.init_ctx))
    rc = SVC_EHANDLER;
  if (rc == 0)
    rc = svc__server_serve_until_signal(s, sfd, RETIRE_SIGNAL);
  if (rc < 0)
    fprintf(stderr, "svc[%s]: worker %d: %s\n", s->name, (int)getpid(),
            svc_strerror(rc));
  svc_server_free(s);
  fflush(NULL);
  _exit(rc < 0 ? 1 : 0); /* not the program's atexit handlers */
}

/* ---- in the master ---- */

static int active_count(const pool *p) {
  int n = 0;
  for (int i = 0; i < p->n; i++)
    n += !p->w[i].retiring;
  return n;
}

static void publish(pool *p) {
  svc__pool_info *info = p->s->pool_info;
  int k = 0, active[SVC__WORKERS_MAX] = {0};
  for (int i = 0; i < p->n; i++)
    if (!p->w[i].retiring) {
      atomic_store(&info->pids[k++], (int)p->w[i].pid);
      active[p->w[i].slot] = 1;
    }
  for (int i = 0; i < SVC__WORKERS_MAX; i++)
    atomic_store(&info->active[i], active[i]);
  for (int i = k; i < SVC__WORKERS_MAX; i++)
    atomic_store(&info->pids[i], 0);
  atomic_store(&info->nworkers, k);
}

static int free_slot(const pool *p) {
  for (int slot = 0; slot < SVC__WORKERS_MAX; slot++) {
    int used = 0;
    for (int i = 0; i < p->n; i++)
      used |= p->w[i].slot == slot;
    if (!used)
      return slot;
  }
  return -1;
}

static int spawn(pool *p, int sfd) {
  int slot = free_slot(p);
  if (p->n == SVC__WORKERS_MAX || slot < 0)
    return SVC_EINVAL;
  atomic_store(&p->s->pool_info->conns[slot], 0);
  atomic_store(&p->s->pool_info->ready[slot], 0);
  p->s->pool_slot = slot; /* the child's; the master never accepts */
  fflush(NULL);
  pid_t master = getpid();
  pid_t pid = svc__fork();
  if (pid < 0) {
    int e = errno;
    if (!p->fork_refused)
      fprintf(stderr, "svc[%s]: cannot fork a worker: %s; retrying\n",
              p->s->name, strerror(e));
    p->fork_refused = 1;
    return svc__from_errno(e);
  }
  if (pid > 0 && p->fork_refused) {
    fprintf(stderr, "svc[%s]: forking workers again\n", p->s->name);
    p->fork_refused = 0;
  }
  if (pid == 0)
    worker_main(p->s, sfd, master);
  p->w[p->n++] = (worker){.pid = pid, .slot = slot, .ticks = -1};
  publish(p);
  return 0;
}

/* Forks workers up to the floor: at start, and at every tick while the
 * system refuses forks (EAGAIN at RLIMIT_NPROC, ENOMEM), so a refused
 * fork leaves the pool short until forking works again, never for good. */
static void top_up(pool *p, int sfd) {
  while (active_count(p) < p->s->workers.min && spawn(p, sfd) == 0)
    ;
}

static void window_reset(pool *p) {
  p->window_fill = 0;
  p->window_pos = 0;
}

/* Mean of the newest k samples, or -1 if there are fewer. */
static double window_mean(const pool *p, int k) {
  if (k > p->window_fill || k <= 0)
    return -1;
  double sum = 0;
  for (int i = 1; i <= k; i++)
    sum += p->window[(p->window_pos - i + p->window_len) % p->window_len];
  return sum / k;
}

static void scale_log(pool *p, const char *what, double pct, int secs) {
  fprintf(stderr, "svc[%s]: scale %s: %d workers (cpu %.0f%% over %d s)\n",
          p->s->name, what, active_count(p), pct, secs);
}

static void retire_newest(pool *p) {
  for (int i = p->n - 1; i >= 0; i--)
    if (!p->w[i].retiring) {
      p->w[i].retiring = 1;
      kill(p->w[i].pid, RETIRE_SIGNAL);
      publish(p);
      return;
    }
}

/* One CPU sample of every active worker, then the scaling decision. */
static void sample(pool *p, int sfd) {
  const svc__workers *cfg = &p->s->workers;
  int64_t now = svc__now_ns();
  long hz = sysconf(_SC_CLK_TCK);
  double sum = 0;
  int counted = 0;
  for (int i = 0; i < p->n; i++) {
    long long t = svc__proc_cpu_ticks("/proc", p->w[i].pid);
    if (t >= 0 && p->w[i].ticks >= 0 && !p->w[i].retiring) {
      sum += svc__cpu_pct((unsigned long long)(t - p->w[i].ticks),
                          now - p->last_sample_ns, hz);
      counted++;
    }
    p->w[i].ticks = t;
  }
  p->last_sample_ns = now;
  if (counted == 0)
    return;
  p->window[p->window_pos] = sum / counted;
  p->window_pos = (p->window_pos + 1) % p->window_len;
  if (p->window_fill < p->window_len)
    p->window_fill++;
  int up_k = cfg->up_secs * 1000 / cfg->interval_ms;
  int down_k = cfg->down_secs * 1000 / cfg->interval_ms;
  double up = window_mean(p, up_k > 0 ? up_k : 1);
  double down = window_mean(p, down_k > 0 ? down_k : 1);
  int active = active_count(p);
  if (up > cfg->up_pct && active < cfg->max) {
    if (spawn(p, sfd) == 0)
      scale_log(p, "up", up, cfg->up_secs);
    window_reset(p);
  } else if (down >= 0 && down < cfg->down_pct && active > cfg->min) {
    retire_newest(p);
    scale_log(p, "down", down, cfg->down_secs);
    window_reset(p);
  }
}

/* Reaps exited workers; replaces those that were not retiring. */
static void reap(pool *p, int sfd, int stopping) {
  int status;
  pid_t pid;
  while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
    for (int i = 0; i < p->n; i++) {
      if (p->w[i].pid != pid)
        continue;
      int was_retiring = p->w[i].retiring;
      p->w[i] = p->w[--p->n];
      publish(p);
      if (was_retiring || stopping)
        break;
      if (WIFSIGNALED(status))
        fprintf(stderr, "svc[%s]: worker %d killed by signal %d; replacing\n",
                p->s->name, (int)pid, WTERMSIG(status));
      else
        fprintf(stderr, "svc[%s]: worker %d exited with code %d; replacing\n",
                p->s->name, (int)pid, WEXITSTATUS(status));
      int64_t now = svc__now_ns();
      if (now - p->deaths_since_ns > RESPAWN_WINDOW_NS) {
        p->deaths_since_ns = now;
        p->deaths = 0;
      }
      if (++p->deaths > RESPAWN_BURST)
        usleep(200000); /* crash loop: don't fork as fast as we can */
      spawn(p, sfd);
      break;
    }
  }
}

static void stop_all(pool *p, int sfd) {
  for (int i = 0; i < p->n; i++)
    kill(p->w[i].pid, SIGTERM);
  int64_t end = svc__now_ns() + (int64_t)STOP_TIMEOUT_MS * 1000000;
  while (p->n > 0 && svc__now_ns() < end) {
    struct pollfd pf = {.fd = sfd, .events = POLLIN};
    poll(&pf, 1, 50);
    struct signalfd_siginfo si;
    while (read(sfd, &si, sizeof si) == (ssize_t)sizeof si)
      ;
    reap(p, sfd, 1);
  }
  for (int i = 0; i < p->n; i++)
    kill(p->w[i].pid, SIGKILL);
  while (p->n > 0 && waitpid(-1, NULL, 0) > 0)
    reap(p, sfd, 1);
}

int svc__workers_master(svc_server *s, int sfd) {
  const svc__workers *cfg = &s->workers;
  pool p = {.s = s};
  int secs = cfg->up_secs > cfg->down_secs ? cfg->up_secs : cfg->down_secs;
  p.window_len = secs * 1000 / cfg->interval_ms + 1;
  p.window = svc__calloc((size_t)p.window_len, sizeof *p.window);
  s->pool_info = svc__mmap(NULL, sizeof *s->pool_info, PROT_READ | PROT_WRITE,
                           MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (!p.window || s->pool_info == MAP_FAILED) {
    free(p.window);
    s->pool_info = NULL;
    return SVC_ENOMEM;
  }
  s->started_ns = svc__now_ns();
  p.last_sample_ns = svc__now_ns();
  int rc = 0;
  top_up(&p, sfd);
  atomic_store(&s->pool_info->started_ns, (long long)svc__now_ns());
  atomic_store(&s->pool_info->started, 1); /* workers may accept freely */
  int64_t next = svc__now_ns() + (int64_t)cfg->interval_ms * 1000000;
  while (rc == 0) {
    int64_t now = svc__now_ns();
    int ms = now >= next ? 0 : (int)((next - now) / 1000000) + 1;
    struct pollfd pf = {.fd = sfd, .events = POLLIN};
    int n = poll(&pf, 1, ms);
    if (n < 0 && errno != EINTR)
      break;
    struct signalfd_siginfo si;
    int stop = 0;
    while (read(sfd, &si, sizeof si) == (ssize_t)sizeof si)
      stop |= si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT;
    if (stop)
      break;
    reap(&p, sfd, 0);
    if (svc__now_ns() >= next) {
      top_up(&p, sfd);
      sample(&p, sfd);
      next = svc__now_ns() + (int64_t)cfg->interval_ms * 1000000;
    }
  }
  stop_all(&p, sfd);
  free(p.window);
  munmap(s->pool_info, sizeof *s->pool_info);
  s->pool_info = NULL;
  return rc;
}

/* soak_driver.c — the soak test of issue 17 (run by ci/soak). For shm://,
 * unix:// and tcp:// in turn: a soak_server whose workers scale with CPU,
 * client processes calling it without pause, and a seeded chaos loop that
 * SIGKILLs workers and the master (starting a new master on the same URL,
 * as a supervisor would) and pauses workers past the callers' timeout.
 * Then soak_check's verdict on every numbered call, the server's fds and
 * threads against their start, and the counts. Exits 1 on any violation.
 *
 *   soak_driver [--seconds N] [--seed S] [--clients N] [--timeout-ms MS]
 *               [--slack-ms MS] [--keep] [--chaos KIND[,KIND]...]
 *
 * KIND: kill-worker, pause-worker, kill-master, respawn-kill (default all).
 * The seed fixes the chaos schedule (gaps, kinds, which worker) and every
 * client's mix of calls; the machine's timing does not repeat.
 *
 * The driver is a child subreaper: the workers of a killed master become
 * its children, so it sees how long they live and reaps every process it
 * caused on every path out. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "soak.h"
#include "svc.h"

#ifndef SOAK_SERVER
#error "SOAK_SERVER: the path of soak_server"
#endif

#define WORKERS_MIN 1
#define WORKERS_MAX 3
/* Up above 30% of a core over 1 s, down below 10% over 2 s: the callers'
 * load grows the pool within seconds of a (re)start, and it shrinks within
 * seconds once they stop. */
#define SCALING "30:1:10:2"
#define SCALE_INTERVAL_MS "250"
#define MAX_CLIENTS 32
#define MAX_KIDS 64
/* Numbers per client per second of a phase: 4x what a client made on the
 * project's 2-core VM (the files are sparse; a client that used every
 * number stops, and the phase says so). */
#define CALLS_PER_SEC 10000
#define TICK_MS 10
/* Between chaos events: a worker lives through several CPU samples, so
 * the pool grows between kills. */
#define CHAOS_GAP_MIN_MS 300
#define CHAOS_GAP_MAX_MS 1500
#define READY_LIMIT_MS 10000
#define RESTART_LIMIT_MS 15000 /* a new master waits for the address */
/* A worker of a dead master must be gone by then: it finishes what it
 * runs, or its retirement's grace (5 s) if it was retiring. */
#define ORPHAN_LIMIT_MS 8000
#define SETTLE_LIMIT_MS 30000 /* scale down, fds and threads back */
#define STOP_LIMIT_MS 15000   /* SIGTERM to the master's exit */
#define REAP_LIMIT_MS 10000
#define GROWTH_SLICE_MS 10000 /* phases this long must see the pool grow */

static volatile sig_atomic_t g_interrupted;

static void on_signal(int sig) {
  (void)sig;
  g_interrupted = 1;
}

/* What the chaos loop may do, and how often against the others. */
enum chaos_kind {
  CHAOS_KILL_WORKER,
  CHAOS_PAUSE_WORKER, /* SIGSTOP past the callers' timeout, then SIGCONT */
  CHAOS_KILL_MASTER,
  CHAOS_RESPAWN_KILL, /* a worker, then the master as it forks anew */
  CHAOS_KINDS
};

static const struct {
  const char *name;
  int weight;
} chaos_kinds[CHAOS_KINDS] = {{"kill-worker", 68},
                              {"pause-worker", 12},
                              {"kill-master", 14},
                              {"respawn-kill", 6}};

typedef struct opts {
  int seconds, clients, timeout_ms, slack_ms, keep;
  int chaos; /* bit (1 << enum chaos_kind) per kind allowed */
  uint64_t seed;
} opts;

typedef struct master {
  pid_t pid; /* 0: none */
  int exited, status;
  int killed;         /* by the chaos loop or the phase's stop */
  int fds0, threads0; /* once it came up */
} master;

/* Everything about one transport's phase. */
typedef struct phase {
  const opts *o;
  soak_tally t;
  int index;
  char dir[PATH_MAX];
  char url[PATH_MAX + 64];
  char exec_path[PATH_MAX + 64], log_path[PATH_MAX + 64];
  char client_path[MAX_CLIENTS][PATH_MAX + 64];
  uint32_t capacity;
  soak_exec *exec;
  size_t exec_size, client_size;
  soak_client_head *heads[MAX_CLIENTS];
  pid_t clients[MAX_CLIENTS];
  int client_status[MAX_CLIENTS], client_exited[MAX_CLIENTS];
  master m;
  int worker_fds0, worker_threads0;
  soak_orphan *orphans;
  int norphans, orphans_cap;
  pid_t last_master;
  int64_t last_master_death_ms;
  uint64_t rng;
  pid_t paused;
  int64_t resume_ms;
  /* counts */
  int worker_kills, master_kills, respawn_kills, pauses, restarts, refusals;
  int workers_max_seen;
  int64_t max_downtime_ms, orphan_max_ms, settle_ms;
  int scale_ups, scale_downs, replaced;
  int final_fds, final_threads, final_wfds, final_wthreads, final_workers;
} phase;

/* ---- children ---- */

static soak_orphan *orphan_add(phase *p, pid_t pid, pid_t master,
                               int64_t died) {
  for (int i = 0; i < p->norphans; i++)
    if (p->orphans[i].pid == pid && !p->orphans[i].gone_ms)
      return &p->orphans[i];
  if (p->norphans == p->orphans_cap) {
    int cap = p->orphans_cap ? 2 * p->orphans_cap : 64;
    soak_orphan *o = realloc(p->orphans, (size_t)cap * sizeof *o);
    if (!o)
      return NULL;
    p->orphans = o;
    p->orphans_cap = cap;
  }
  soak_orphan *o = &p->orphans[p->norphans++];
  *o = (soak_orphan){.pid = pid, .master = master, .master_died_ms = died};
  return o;
}

static int known_child(const phase *p, pid_t pid) {
  if (pid == p->m.pid)
    return 1;
  for (int i = 0; i < p->o->clients; i++)
    if (p->clients[i] == pid)
      return 1;
  for (int i = 0; i < p->norphans; i++)
    if (p->orphans[i].pid == pid && !p->orphans[i].gone_ms)
      return 1;
  return 0;
}

/* Reaps every child that exited and notes who it was. */
static void reap(phase *p) {
  int st;
  pid_t pid;
  while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
    int64_t now = soak_now_ms();
    if (pid == p->m.pid) {
      p->m.exited = 1;
      p->m.status = st;
      continue;
    }
    int found = 0;
    for (int i = 0; i < p->o->clients && !found; i++)
      if (p->clients[i] == pid) {
        p->client_exited[i] = 1;
        p->client_status[i] = st;
        found = 1;
      }
    for (int i = 0; i < p->norphans && !found; i++) {
      soak_orphan *o = &p->orphans[i];
      if (o->pid == pid && !o->gone_ms) {
        o->gone_ms = now;
        if (now - o->master_died_ms > p->orphan_max_ms)
          p->orphan_max_ms = now - o->master_died_ms;
        found = 1;
      }
    }
    /* A worker forked after the last look at a killed master's children,
     * reparented to us and gone before adopt_strays saw it. */
    soak_orphan *o;
    if (!found && p->last_master &&
        (o = orphan_add(p, pid, p->last_master, p->last_master_death_ms)))
      o->gone_ms = now;
  }
}

/* Children of ours we did not start: workers of a killed master that we
 * had not seen yet (forked just before it died). */
static void adopt_strays(phase *p) {
  if (!p->last_master)
    return;
  pid_t kids[MAX_KIDS];
  int n = soak_proc_children(getpid(), kids, MAX_KIDS);
  for (int i = 0; i < n; i++)
    if (!known_child(p, kids[i]))
      orphan_add(p, kids[i], p->last_master, p->last_master_death_ms);
}

/* A worker of a dead master must not serve on: past the limit it is a
 * violation, and killed so that the soak stays bounded. */
static void watch_orphans(phase *p) {
  int64_t now = soak_now_ms();
  for (int i = 0; i < p->norphans; i++) {
    soak_orphan *o = &p->orphans[i];
    if (o->gone_ms || o->overdue || now - o->master_died_ms < ORPHAN_LIMIT_MS)
      continue;
    o->overdue = 1;
    soak_violation(&p->t,
                   "worker %d of master %d still alive %" PRId64
                   " ms after its master was killed (it should not outlive "
                   "it); killing it",
                   (int)o->pid, (int)o->master, now - o->master_died_ms);
    kill(o->pid, SIGKILL);
  }
}

static void resume_paused(phase *p) {
  if (p->paused)
    kill(p->paused, SIGCONT); /* ESRCH: it was killed meanwhile */
  p->paused = 0;
}

static int workers_of_master(const phase *p, pid_t *kids) {
  return p->m.pid && !p->m.exited ? soak_proc_children(p->m.pid, kids, MAX_KIDS)
                                  : 0;
}

/* What the driver does between chaos events, every TICK_MS. */
static void tick(phase *p) {
  reap(p);
  adopt_strays(p);
  watch_orphans(p);
  if (p->paused && soak_now_ms() >= p->resume_ms)
    resume_paused(p);
  pid_t kids[MAX_KIDS];
  int n = workers_of_master(p, kids);
  if (n > p->workers_max_seen)
    p->workers_max_seen = n;
}

static void sleep_ticking(phase *p, int64_t until_ms) {
  while (!g_interrupted && soak_now_ms() < until_ms) {
    tick(p);
    int64_t left = until_ms - soak_now_ms();
    soak_sleep_ms(left < TICK_MS ? (int)(left > 0 ? left : 0) : TICK_MS);
  }
}

/* Kills every child still alive and reaps until none is left. */
static void reap_all(phase *p) {
  int64_t end = soak_now_ms() + REAP_LIMIT_MS;
  resume_paused(p);
  for (;;) {
    pid_t kids[MAX_KIDS];
    int n = soak_proc_children(getpid(), kids, MAX_KIDS);
    for (int i = 0; i < n; i++)
      kill(kids[i], SIGKILL);
    reap(p);
    siginfo_t si = {0}; /* any child left, exited or not? (not reaped) */
    if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) != 0 &&
        errno == ECHILD)
      return;
    if (soak_now_ms() > end) {
      fprintf(stderr, "soak: children still alive after %d s\n",
              REAP_LIMIT_MS / 1000);
      return;
    }
    soak_sleep_ms(TICK_MS);
  }
}

/* ---- the server ---- */

/* Forks and execs a master on the phase's URL; *ready_fd reads its stdout. */
static int spawn_master(phase *p, int *ready_fd) {
  char clients[16], capacity[16], workers[16];
  snprintf(clients, sizeof clients, "%d", p->o->clients);
  snprintf(capacity, sizeof capacity, "%u", p->capacity);
  snprintf(workers, sizeof workers, "%d:%d", WORKERS_MIN, WORKERS_MAX);
  char *argv[] = {SOAK_SERVER,  "--listen",  p->url,  "--exec-file",
                  p->exec_path, "--clients", clients, "--capacity",
                  capacity,     "--workers", workers, "--scaling",
                  SCALING,      NULL};
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0)
    return -1;
  int log = open(p->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (log < 0) {
    close(out[0]);
    close(out[1]);
    return -1;
  }
  pid_t driver = getpid();
  pid_t pid = fork();
  if (pid == 0) {
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the driver */
    if (getppid() != driver || dup2(out[1], 1) < 0 || dup2(log, 2) < 0)
      _exit(126);
    execv(argv[0], argv);
    _exit(127);
  }
  int saved = errno;
  close(out[1]);
  close(log);
  if (pid < 0) {
    close(out[0]);
    errno = saved;
    return -1;
  }
  p->m = (master){.pid = pid};
  *ready_fd = out[0];
  return 0;
}

/* 1 once the master printed READY, 0 if it exited, -1 past the limit. */
static int wait_ready(phase *p, int fd) {
  char buf[64];
  size_t have = 0;
  int64_t end = soak_now_ms() + READY_LIMIT_MS;
  while (!g_interrupted && soak_now_ms() < end) {
    struct pollfd pf = {.fd = fd, .events = POLLIN};
    int n = poll(&pf, 1, TICK_MS);
    if (n > 0) {
      ssize_t r = read(fd, buf + have, sizeof buf - 1 - have);
      if (r > 0) {
        have += (size_t)r;
        buf[have] = '\0';
        if (strstr(buf, "READY"))
          return 1;
        if (have == sizeof buf - 1)
          have = 0;
      }
    }
    tick(p);
    if (p->m.exited)
      return 0;
  }
  return -1;
}

/* Samples the server: its master's fds and threads, and its workers' (the
 * same for all of them, else -1). */
typedef struct sample {
  int workers, fds, threads, wfds, wthreads;
} sample;

static sample sample_server(const phase *p) {
  sample s = {0, -1, -1, -1, -1};
  pid_t kids[MAX_KIDS];
  s.workers = workers_of_master(p, kids);
  s.fds = soak_proc_fds(p->m.pid);
  s.threads = soak_proc_threads(p->m.pid);
  for (int i = 0; i < s.workers; i++) {
    int f = soak_proc_fds(kids[i]), t = soak_proc_threads(kids[i]);
    s.wfds = i == 0 || f == s.wfds ? f : -1;
    s.wthreads = i == 0 || t == s.wthreads ? t : -1;
  }
  return s;
}

static int sample_same(const sample *a, const sample *b) {
  return a->workers == b->workers && a->fds == b->fds &&
         a->threads == b->threads && a->wfds == b->wfds &&
         a->wthreads == b->wthreads;
}

/* Waits until the server runs its minimum pool and three samples 50 ms
 * apart agree; that is its start. 0, or -1 past the limit. */
static int server_baseline(phase *p, sample *out) {
  int64_t end = soak_now_ms() + READY_LIMIT_MS;
  sample last = {-1, -1, -1, -1, -1};
  int same = 0;
  while (!g_interrupted && soak_now_ms() < end && !p->m.exited) {
    sample s = sample_server(p);
    same = s.workers >= WORKERS_MIN && s.fds > 0 && sample_same(&s, &last)
               ? same + 1
               : 0;
    last = s;
    if (same == 2) {
      *out = s;
      return 0;
    }
    sleep_ticking(p, soak_now_ms() + 50);
  }
  return -1;
}

/* Starts a master on the phase's URL, trying again while the address is
 * still held (by the draining workers of a killed master), and takes its
 * start values. 0, or -1 with a violation. */
static int start_master(phase *p) {
  int64_t begin = soak_now_ms();
  for (;;) {
    int fd;
    if (g_interrupted)
      return -1;
    if (spawn_master(p, &fd) != 0) {
      soak_violation(&p->t, "could not start %s: %s", SOAK_SERVER,
                     strerror(errno));
      return -1;
    }
    int r = wait_ready(p, fd);
    close(fd);
    if (r == 1)
      break;
    if (r == 0 && WIFEXITED(p->m.status) && WEXITSTATUS(p->m.status) == 3 &&
        soak_now_ms() - begin < RESTART_LIMIT_MS) {
      p->refusals++; /* address in use: the last master's workers hold it */
      p->m.pid = 0;
      sleep_ticking(p, soak_now_ms() + 20);
      continue;
    }
    soak_violation(&p->t, "master %d did not start (%s; log %s)", (int)p->m.pid,
                   r < 0 ? "no READY in time" : "it exited", p->log_path);
    return -1;
  }
  sample s;
  if (server_baseline(p, &s) != 0) {
    soak_violation(&p->t,
                   "master %d never settled with its %d workers (log %s)",
                   (int)p->m.pid, WORKERS_MIN, p->log_path);
    return -1;
  }
  p->m.fds0 = s.fds;
  p->m.threads0 = s.threads;
  if (!p->worker_fds0) { /* the phase's first: no client connected yet */
    p->worker_fds0 = s.wfds;
    p->worker_threads0 = s.wthreads;
  }
  return 0;
}

/* SIGKILL of the master; its workers become orphans (our children); a new
 * master is started on the same URL. 0, or -1 when none would start. */
static int kill_master(phase *p) {
  pid_t kids[MAX_KIDS];
  int n = workers_of_master(p, kids);
  resume_paused(p); /* a paused orphan could not drain */
  int64_t died = soak_now_ms();
  p->m.killed = 1;
  kill(p->m.pid, SIGKILL);
  p->master_kills++;
  p->last_master = p->m.pid;
  p->last_master_death_ms = died;
  for (int i = 0; i < n; i++)
    orphan_add(p, kids[i], p->m.pid, died);
  int64_t end = died + READY_LIMIT_MS;
  while (!p->m.exited && soak_now_ms() < end && !g_interrupted)
    sleep_ticking(p, soak_now_ms() + 1);
  if (!p->m.exited) {
    soak_violation(&p->t, "master %d survived SIGKILL", (int)p->m.pid);
    return -1;
  }
  p->m.pid = 0;
  if (start_master(p) != 0)
    return -1;
  p->restarts++;
  if (soak_now_ms() - died > p->max_downtime_ms)
    p->max_downtime_ms = soak_now_ms() - died;
  return 0;
}

/* Kills a worker, waits for the master to fork its replacement and kills
 * the master at once: the replacement may not have armed its parent-death
 * signal yet, and must still not outlive the master. */
static int kill_master_in_respawn(phase *p, pid_t worker) {
  pid_t before[MAX_KIDS], now[MAX_KIDS];
  int nb = workers_of_master(p, before);
  kill(worker, SIGKILL);
  p->worker_kills++;
  p->respawn_kills++;
  int64_t end = soak_now_ms() + 200;
  while (soak_now_ms() < end) {
    int n = workers_of_master(p, now), fresh = 0;
    for (int i = 0; i < n && !fresh; i++) {
      fresh = 1;
      for (int j = 0; j < nb; j++)
        fresh &= now[i] != before[j];
    }
    if (fresh)
      break;
    usleep(200);
  }
  return kill_master(p);
}

/* One chaos event, of a kind the options allow, chosen by the phase's
 * seeded generator. */
static int chaos_step(phase *p) {
  int total = 0;
  for (int k = 0; k < CHAOS_KINDS; k++)
    total += p->o->chaos & (1 << k) ? chaos_kinds[k].weight : 0;
  int r = soak_rand_range(&p->rng, 0, total - 1), kind = 0;
  for (; kind < CHAOS_KINDS; kind++)
    if (p->o->chaos & (1 << kind) && (r -= chaos_kinds[kind].weight) < 0)
      break;
  /* As many draws whatever happens, so the seed fixes the schedule. */
  uint64_t pick = soak_rand(&p->rng);
  int pause_ms =
      p->o->timeout_ms + p->o->slack_ms + soak_rand_range(&p->rng, 100, 1000);
  pid_t kids[MAX_KIDS];
  int n = workers_of_master(p, kids);
  pid_t w = n > 0 ? kids[pick % (uint64_t)n] : 0;
  if (kind == CHAOS_KILL_MASTER)
    return kill_master(p);
  if (!w)
    return 0; /* between a worker's death and its replacement */
  if (kind == CHAOS_RESPAWN_KILL)
    return kill_master_in_respawn(p, w);
  if (kind == CHAOS_PAUSE_WORKER) { /* its callers time out meanwhile */
    if (p->paused)
      return 0;
    kill(w, SIGSTOP);
    p->paused = w;
    /* Past timeout + slack: a caller whose timeout did not fire would
     * wait longer than the check allows. */
    p->resume_ms = soak_now_ms() + pause_ms;
    p->pauses++;
    return 0;
  }
  kill(w, SIGKILL);
  p->worker_kills++;
  return 0;
}

/* ---- the clients ---- */

static int start_clients(phase *p, int64_t end_ms) {
  pid_t driver = getpid();
  for (int i = 0; i < p->o->clients; i++) {
    soak_client_cfg cfg = {
        .url = p->url,
        .path = p->client_path[i],
        .id = (uint32_t)i,
        .capacity = p->capacity,
        .timeout_ms = p->o->timeout_ms,
        .slack_ms = p->o->slack_ms,
        .end_ms = end_ms,
        .seed = p->o->seed ^ ((uint64_t)(p->index + 1) << 40) ^
                ((uint64_t)(i + 1) << 20),
    };
    pid_t pid = fork();
    if (pid == 0) {
      signal(SIGINT, SIG_DFL);
      signal(SIGTERM, SIG_DFL);
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != driver)
        _exit(3);
      soak_client_main(&cfg);
    }
    if (pid < 0) {
      soak_violation(&p->t, "fork of client %d: %s", i, strerror(errno));
      return -1;
    }
    p->clients[i] = pid;
  }
  return 0;
}

static int clients_running(const phase *p) {
  int n = 0;
  for (int i = 0; i < p->o->clients; i++)
    n += p->clients[i] && !p->client_exited[i];
  return n;
}

/* ---- a phase ---- */

/* snprintf into buf[n] that fails (-1, ENAMETOOLONG) where it would not
 * fit. */
__attribute__((format(printf, 3, 4))) static int
path_fmt(char *buf, size_t n, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int w = vsnprintf(buf, n, fmt, ap);
  va_end(ap);
  if (w < 0 || (size_t)w >= n) {
    errno = ENAMETOOLONG;
    return -1;
  }
  return 0;
}
#define PATH_FMT(buf, ...) path_fmt((buf), sizeof(buf), __VA_ARGS__)

static int phase_files(phase *p, const char *root, const char *transport) {
  if (PATH_FMT(p->dir, "%s/%s", root, transport) != 0 ||
      mkdir(p->dir, 0700) != 0)
    return -1;
  if (PATH_FMT(p->exec_path, "%s/exec", p->dir) != 0 ||
      PATH_FMT(p->log_path, "%s/server.log", p->dir) != 0)
    return -1;
  p->exec_size = soak_exec_file_size((uint32_t)p->o->clients, p->capacity);
  if (soak_make_file(p->exec_path, p->exec_size) != 0 ||
      !(p->exec = soak_map(p->exec_path, p->exec_size)))
    return -1;
  p->client_size = sizeof(soak_client_head) + p->capacity * sizeof(soak_call);
  for (int i = 0; i < p->o->clients; i++) {
    if (PATH_FMT(p->client_path[i], "%s/client%d", p->dir, i) != 0)
      return -1;
    if (soak_make_file(p->client_path[i], p->client_size) != 0 ||
        !(p->heads[i] = soak_map(p->client_path[i], p->client_size)))
      return -1;
  }
  return 0;
}

/* A loopback port that was free a moment ago. */
static int free_tcp_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  int port = -1;
  if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
      getsockname(fd, (struct sockaddr *)&a, &len) == 0)
    port = ntohs(a.sin_port);
  if (fd >= 0)
    close(fd);
  return port;
}

/* What the server's processes may say on stderr under this chaos; any
 * other line (a worker that crashed, exited or failed on its own, a
 * sanitizer report) is a violation. */
static const char *const expected_lines[] = {
    "scale up: ", "scale down: ", "killed by signal 9; replacing",
    "address already in use (SVC_EADDRINUSE)"};

/* Counts the phase's scaling lines and reports every unexpected one. */
static void read_server_log(phase *p) {
  FILE *f = fopen(p->log_path, "re");
  if (!f)
    return;
  char line[512];
  while (fgets(line, sizeof line, f)) {
    line[strcspn(line, "\n")] = '\0';
    size_t k = 0, n = sizeof expected_lines / sizeof expected_lines[0];
    while (k < n && !strstr(line, expected_lines[k]))
      k++;
    p->scale_ups += k == 0;
    p->scale_downs += k == 1;
    p->replaced += k == 2;
    if (k == n)
      soak_violation(&p->t, "the server said: %s", line);
  }
  fclose(f);
}

/* After the clients left: the pool back at its minimum, the master's and
 * the workers' fds and threads back to their start. */
static void settle(phase *p) {
  int64_t begin = soak_now_ms(), end = begin + SETTLE_LIMIT_MS;
  sample last = {-1, -1, -1, -1, -1}, s = last;
  int settled = 0;
  while (!g_interrupted && soak_now_ms() < end && !p->m.exited) {
    s = sample_server(p);
    int home = s.workers == WORKERS_MIN && s.fds == p->m.fds0 &&
               s.threads == p->m.threads0 && s.wfds == p->worker_fds0 &&
               s.wthreads == p->worker_threads0;
    if ((settled = home && sample_same(&s, &last)))
      break;
    last = s;
    sleep_ticking(p, soak_now_ms() + 100);
  }
  p->settle_ms = soak_now_ms() - begin;
  p->final_workers = s.workers;
  p->final_fds = s.fds;
  p->final_threads = s.threads;
  p->final_wfds = s.wfds;
  p->final_wthreads = s.wthreads;
  if (!settled)
    soak_violation(&p->t,
                   "server not back to its start %d s after the clients left: "
                   "%d workers (min %d); master fds %d (start %d), threads %d "
                   "(start %d); worker fds %d (start %d), threads %d (start "
                   "%d); -1: workers differ",
                   SETTLE_LIMIT_MS / 1000, s.workers, WORKERS_MIN, s.fds,
                   p->m.fds0, s.threads, p->m.threads0, s.wfds, p->worker_fds0,
                   s.wthreads, p->worker_threads0);
}

/* SIGTERM to the master: it must stop its workers and exit 0. */
static void stop_master(phase *p) {
  pid_t kids[MAX_KIDS];
  int n = workers_of_master(p, kids);
  p->m.killed = 1;
  kill(p->m.pid, SIGTERM);
  int64_t end = soak_now_ms() + STOP_LIMIT_MS;
  while (!p->m.exited && soak_now_ms() < end && !g_interrupted)
    sleep_ticking(p, soak_now_ms() + TICK_MS);
  if (!p->m.exited)
    soak_violation(&p->t, "master %d still running %d s after SIGTERM",
                   (int)p->m.pid, STOP_LIMIT_MS / 1000);
  else if (!WIFEXITED(p->m.status) || WEXITSTATUS(p->m.status) != 0)
    soak_violation(&p->t, "master %d ended with status %#x after SIGTERM",
                   (int)p->m.pid, p->m.status);
  for (int i = 0; i < n; i++)
    if (soak_proc_alive(kids[i]))
      soak_violation(&p->t, "worker %d outlived its master's SIGTERM",
                     (int)kids[i]);
}

static void print_phase(const phase *p, int64_t ran_ms) {
  const soak_tally *t = &p->t;
  const char *tr = t->transport;
  printf("[%s] %.1f s, %d clients: %" PRIu64 " calls, %" PRIu64 " ok, %" PRIu64
         " failed (",
         tr, ran_ms / 1000.0, p->o->clients, t->calls, t->ok, t->failed);
  const char *sep = "";
  for (int i = 1; i < SOAK_CODES; i++)
    if (t->by_code[i]) {
      printf("%s%s %" PRIu64, sep, svc_err_name(-i), t->by_code[i]);
      sep = ", ";
    }
  if (t->not_sent) {
    printf("%sSVC_EAGAIN at send, not sent %" PRIu64, sep, t->not_sent);
    sep = ", ";
  }
  if (t->other)
    printf("%sother %" PRIu64, sep, t->other);
  printf(")%s\n", t->full_clients ? "; some clients used every number" : "");
  printf("[%s] executed %" PRIu64 " (%" PRIu64 " of them failed at the "
         "caller; %" PRIu64 " first run by a worker whose master was dead)\n",
         tr, t->executed, t->executed_failed, t->by_orphans);
  printf("[%s] chaos: killed %d workers and %d masters (%d right after a "
         "respawn), paused %d workers; %d master restarts, %d refused while "
         "the address was held, longest downtime %" PRId64 " ms\n",
         tr, p->worker_kills, p->master_kills, p->respawn_kills, p->pauses,
         p->restarts, p->refusals, p->max_downtime_ms);
  printf("[%s] workers %d..%d (%d scale-ups, %d scale-downs, %d replaced); "
         "%d orphaned workers, the longest-lived gone %" PRId64
         " ms after its master\n",
         tr, WORKERS_MIN, p->workers_max_seen, p->scale_ups, p->scale_downs,
         p->replaced, p->norphans, p->orphan_max_ms);
  printf("[%s] reconnects (a success from another worker): %" PRIu64
         "; longest wait %u ms (c%u#%u, %s) against timeout %d + slack %d "
         "ms\n",
         tr, t->moves, t->max_wait_ms, t->max_wait_client, t->max_wait_seq,
         t->max_wait_rc ? svc_err_name(t->max_wait_rc) : "ok", p->o->timeout_ms,
         p->o->slack_ms);
  printf("[%s] after %.1f s: %d workers; master fds %d (start %d), threads "
         "%d (start %d); worker fds %d (start %d), threads %d (start %d)\n",
         tr, p->settle_ms / 1000.0, p->final_workers, p->final_fds, p->m.fds0,
         p->final_threads, p->m.threads0, p->final_wfds, p->worker_fds0,
         p->final_wthreads, p->worker_threads0);
  printf("[%s] %s\n", tr,
         t->violations ? "FAIL"
                       : "ok: no call ran twice, every success ran "
                         "once, every failure actionable");
  fflush(stdout);
}

/* One transport's phase, from an empty directory to the verdict. */
static uint64_t run_phase(const opts *o, int index, const char *transport,
                          const char *root, int64_t slice_ms) {
  phase *p = calloc(1, sizeof *p);
  if (!p) {
    fprintf(stderr, "soak: out of memory\n");
    return 1;
  }
  p->o = o;
  p->index = index;
  p->t.transport = transport;
  p->rng = o->seed ^ (0x5eedull << 48) ^ (uint64_t)index;
  p->capacity = (uint32_t)((slice_ms / 1000 + 1) * CALLS_PER_SEC);
  uint64_t violations = 0;
  if (phase_files(p, root, transport) != 0) {
    fprintf(stderr, "soak: files under %s: %s\n", root, strerror(errno));
    free(p);
    return 1;
  }
  int url_rc = strcmp(transport, "shm") == 0 ? PATH_FMT(p->url, "shm://soak")
               : strcmp(transport, "unix") == 0
                   ? PATH_FMT(p->url, "unix://%s/soak.sock", p->dir)
                   : PATH_FMT(p->url, "tcp://127.0.0.1:%d", free_tcp_port());
  if (url_rc != 0) {
    fprintf(stderr, "soak: the URL under %s: %s\n", p->dir, strerror(errno));
    free(p);
    return 1;
  }

  int64_t t0 = soak_now_ms(), end = t0 + slice_ms;
  if (start_master(p) == 0 && start_clients(p, end) == 0) {
    /* the chaos loop, until the phase's time is up */
    while (!g_interrupted && soak_now_ms() < end) {
      sleep_ticking(p,
                    soak_now_ms() + soak_rand_range(&p->rng, CHAOS_GAP_MIN_MS,
                                                    CHAOS_GAP_MAX_MS));
      if (soak_now_ms() >= end || g_interrupted)
        break;
      if (p->m.exited && !p->m.killed) {
        soak_violation(&p->t, "master %d died on its own (status %#x)",
                       (int)p->m.pid, p->m.status);
        if (start_master(p) != 0)
          break;
      }
      if (chaos_step(p) != 0)
        break;
    }
    resume_paused(p);
    int64_t wait_end = end + o->timeout_ms + o->slack_ms + 5000;
    while (clients_running(p) && soak_now_ms() < wait_end && !g_interrupted)
      sleep_ticking(p, soak_now_ms() + TICK_MS);
    if (clients_running(p) && !g_interrupted)
      soak_violation(&p->t, "%d clients still running %d ms after the phase",
                     clients_running(p), o->timeout_ms + o->slack_ms + 5000);
    int64_t ran = soak_now_ms() - t0;
    if (p->m.pid && !p->m.exited && !g_interrupted && !clients_running(p)) {
      settle(p);
      stop_master(p);
    }
    reap_all(p);
    /* Scaling is part of what is soaked: a phase long enough for it
     * (several CPU samples between master kills) must have grown. */
    if (slice_ms >= GROWTH_SLICE_MS && p->workers_max_seen < 2 &&
        !g_interrupted)
      soak_violation(&p->t,
                     "the pool never grew past %d worker in %.1f s of load "
                     "(scaling untested; log %s)",
                     p->workers_max_seen, slice_ms / 1000.0, p->log_path);
    read_server_log(p);
    soak_check_in in = {.exec = p->exec,
                        .heads = p->heads,
                        .client_status = p->client_status,
                        .clients = (uint32_t)o->clients,
                        .capacity = p->capacity,
                        .timeout_ms = o->timeout_ms,
                        .slack_ms = o->slack_ms,
                        .orphans = p->orphans,
                        .norphans = p->norphans};
    if (!g_interrupted) {
      soak_check(&in, &p->t);
      print_phase(p, ran);
    }
  }
  reap_all(p);
  violations = p->t.violations;
  if (violations)
    printf("[%s] kept for inspection: %s (server.log, exec, client*)\n",
           transport, p->dir);
  munmap(p->exec, p->exec_size);
  for (int i = 0; i < o->clients; i++)
    if (p->heads[i])
      munmap(p->heads[i], p->client_size);
  free(p->orphans);
  free(p);
  return violations;
}

static int rm_entry(const char *path, const struct stat *st, int flag,
                    struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(path);
}

static void usage(void) {
  fprintf(stderr, "usage: soak_driver [--seconds N] [--seed S] [--clients N] "
                  "[--timeout-ms MS] [--slack-ms MS] [--keep] "
                  "[--chaos KIND[,KIND]...]\n  KIND: all");
  for (int k = 0; k < CHAOS_KINDS; k++)
    fprintf(stderr, " %s", chaos_kinds[k].name);
  fprintf(stderr, "\n");
  exit(2);
}

/* "all" or a comma-separated list of chaos kinds, as bits. */
static int parse_chaos(const char *v) {
  if (!v)
    usage();
  if (strcmp(v, "all") == 0)
    return (1 << CHAOS_KINDS) - 1;
  int mask = 0;
  char buf[256];
  snprintf(buf, sizeof buf, "%s", v);
  for (char *save, *w = strtok_r(buf, ",", &save); w;
       w = strtok_r(NULL, ",", &save)) {
    int k = 0;
    while (k < CHAOS_KINDS && strcmp(w, chaos_kinds[k].name) != 0)
      k++;
    if (k == CHAOS_KINDS)
      usage();
    mask |= 1 << k;
  }
  return mask ? mask : parse_chaos(NULL);
}

static long parse_num(const char *v, long lo, long hi) {
  char *end;
  errno = 0;
  long x = v ? strtol(v, &end, 10) : 0;
  if (!v || errno || *end || x < lo || x > hi)
    usage();
  return x;
}

int main(int argc, char **argv) {
  opts o = {.seconds = 60,
            .clients = 4,
            .timeout_ms = 1000,
            .slack_ms = 500,
            .chaos = (1 << CHAOS_KINDS) - 1};
  int have_seed = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--keep") == 0) {
      o.keep = 1;
      continue;
    }
    i++;
    if (strcmp(a, "--seconds") == 0)
      o.seconds = (int)parse_num(v, 3, 7 * 24 * 3600);
    else if (strcmp(a, "--clients") == 0)
      o.clients = (int)parse_num(v, 1, MAX_CLIENTS);
    else if (strcmp(a, "--timeout-ms") == 0)
      o.timeout_ms = (int)parse_num(v, 50, 60000);
    else if (strcmp(a, "--slack-ms") == 0)
      o.slack_ms = (int)parse_num(v, 0, 60000);
    else if (strcmp(a, "--chaos") == 0)
      o.chaos = parse_chaos(v);
    else if (strcmp(a, "--seed") == 0 && v) {
      char *end;
      errno = 0;
      o.seed = strtoull(v, &end, 10);
      if (errno || *end)
        usage();
      have_seed = 1;
    } else
      usage();
  }
  if (!have_seed) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    o.seed = ((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec) ^
             ((uint64_t)getpid() << 32);
    o.seed %= 1000000000000ull; /* short enough to type */
  }

  if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) {
    perror("soak: PR_SET_CHILD_SUBREAPER");
    return 2;
  }
  struct sigaction sa = {.sa_handler = on_signal};
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  /* The operator's worker settings would replace the soak's own. */
  const char *env[] = {"SVC_WORKERS_MIN",       "SVC_WORKERS_MAX",
                       "SVC_SCALE_UP_PCT",      "SVC_SCALE_UP_SECS",
                       "SVC_SCALE_DOWN_PCT",    "SVC_SCALE_DOWN_SECS",
                       "SVC_SCALE_INTERVAL_MS", "SVC_RETIRE_GRACE_MS"};
  for (size_t i = 0; i < sizeof env / sizeof env[0]; i++)
    unsetenv(env[i]);
  /* CPU sampled every 250 ms (docs/workers.md), not every second: a sample
   * counts a worker alive since the one before, and the chaos loop kills
   * the only worker about once a second. */
  setenv("SVC_SCALE_INTERVAL_MS", SCALE_INTERVAL_MS, 1);
  const char *tmp = getenv("TMPDIR");
  char root[PATH_MAX];
  snprintf(root, sizeof root, "%s/svc-soak-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (!mkdtemp(root)) {
    perror("soak: mkdtemp");
    return 2;
  }
  setenv("SVC_RUNTIME_DIR", root, 1); /* shm://soak's rendezvous socket */

  static const char *transports[] = {"shm", "unix", "tcp"};
  int64_t slice_ms = (int64_t)o.seconds * 1000 / 3;
  printf("soak: %d s (%.1f s per transport), %d clients, timeout %d ms "
         "(+%d ms slack), workers %d..%d, seed %" PRIu64 "\n",
         o.seconds, slice_ms / 1000.0, o.clients, o.timeout_ms, o.slack_ms,
         WORKERS_MIN, WORKERS_MAX, o.seed);
  printf("soak: repeat with: ci/soak %d --seed %" PRIu64, o.seconds, o.seed);
  if (o.clients != 4 || o.timeout_ms != 1000 || o.slack_ms != 500)
    printf(" --clients %d --timeout-ms %d --slack-ms %d", o.clients,
           o.timeout_ms, o.slack_ms);
  if (o.chaos != (1 << CHAOS_KINDS) - 1)
    for (int k = 0, first = 1; k < CHAOS_KINDS; k++)
      if (o.chaos & (1 << k)) {
        printf("%s%s", first ? " --chaos " : ",", chaos_kinds[k].name);
        first = 0;
      }
  printf("\n");
  fflush(stdout);
  int64_t t0 = soak_now_ms();
  uint64_t violations = 0;
  for (int i = 0; i < 3 && !g_interrupted; i++)
    violations += run_phase(&o, i, transports[i], root, slice_ms);
  double took = (soak_now_ms() - t0) / 1000.0;
  if (!violations && !o.keep)
    nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  if (g_interrupted) {
    printf("soak: interrupted after %.1f s\n", took);
    return 130;
  }
  if (violations) {
    printf("soak: FAIL: %" PRIu64 " violations in %.1f s (seed %" PRIu64
           "; files in %s)\n",
           violations, took, o.seed, root);
    return 1;
  }
  printf("soak: PASS in %.1f s (seed %" PRIu64 ")\n", took, o.seed);
  return 0;
}

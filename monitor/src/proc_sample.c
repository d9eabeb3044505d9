/* proc_sample.c — /proc parsers and the per-tick tree sampler. One pass over
 * PROCROOT/[0-9]* reads every stat file, assigns processes to services by
 * session, process group or ancestry, and sums the members. */
#include "proc_sample.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mon_sys.h"

/* ---- parsers ---- */

int mon_ps_parse_stat(const char *buf, size_t len, mon_ps_stat *out) {
  char tmp[1024];
  if (len == 0 || len >= sizeof tmp)
    return -1;
  memcpy(tmp, buf, len);
  tmp[len] = '\0';
  memset(out, 0, sizeof *out);
  char *end;
  errno = 0;
  long pid = strtol(tmp, &end, 10);
  if (end == tmp || pid <= 0 || errno)
    return -1;
  char *rp = strrchr(tmp, ')');
  if (!rp || rp < end)
    return -1;
  /* fields 3.. after ") " */
  char *p = rp + 1;
  unsigned long long f[22];
  int nf = 0;
  char state = 0;
  while (*p == ' ')
    p++;
  if (!*p || *p == '\n')
    return -1;
  state = *p++;
  f[nf++] = 0;      /* field 3 (state) placeholder */
  while (nf < 22) { /* fields 3..24 are all we use */
    while (*p == ' ')
      p++;
    if (!*p || *p == '\n')
      break;
    char *e;
    errno = 0;
    /* unsigned: rsslim is 2^64-1; negative fields (nice) just wrap */
    unsigned long long v = strtoull(p, &e, 10);
    if (e == p || errno)
      return -1;
    f[nf++] = v;
    p = e;
    if (*p && *p != ' ' && *p != '\n')
      return -1;
  }
  /* f[k] holds field k+3 (1-based, man 5 proc) */
  if (nf < 22)
    return -1;
  out->pid = (int)pid;
  out->state = state;
  out->ppid = (int)f[1];
  out->pgrp = (int)f[2];
  out->session = (int)f[3];
  out->utime = f[11];
  out->stime = f[12];
  out->num_threads = (long)f[17];
  out->starttime = f[19];
  out->rss_pages = (long long)f[21];
  return 0;
}

/* Finds "key:" at a line start and parses the number after it. */
static int ps_field(const char *buf, size_t len, const char *key,
                    unsigned long long *out) {
  size_t klen = strlen(key);
  const char *p = buf, *end = buf + len;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *le = nl ? nl : end;
    if ((size_t)(le - p) > klen && !memcmp(p, key, klen) && p[klen] == ':') {
      const char *q = p + klen + 1;
      while (q < le && (*q == ' ' || *q == '\t'))
        q++;
      if (q == le || !isdigit((unsigned char)*q))
        return -1;
      unsigned long long v = 0;
      while (q < le && isdigit((unsigned char)*q)) {
        if (v > (~0ULL - 9) / 10)
          return -1;
        v = v * 10 + (unsigned)(*q++ - '0');
      }
      while (q < le && *q == ' ')
        q++;
      if (le - q >= 2 && !memcmp(q, "kB", 2)) {
        if (v > (~0ULL >> 10))
          return -1;
        v *= 1024;
      }
      *out = v;
      return 0;
    }
    p = le + 1;
  }
  return -1;
}

int mon_ps_parse_status(const char *buf, size_t len,
                        unsigned long long *rss_bytes, long *threads) {
  unsigned long long t = 0;
  if (ps_field(buf, len, "VmRSS", rss_bytes) != 0)
    return -1;
  if (ps_field(buf, len, "Threads", &t) == 0)
    *threads = (long)t;
  else
    *threads = 0;
  return 0;
}

int mon_ps_parse_smaps_rollup(const char *buf, size_t len,
                              unsigned long long *pss_bytes) {
  return ps_field(buf, len, "Pss", pss_bytes);
}

int mon_ps_parse_io(const char *buf, size_t len, unsigned long long *rd,
                    unsigned long long *wr) {
  if (ps_field(buf, len, "read_bytes", rd) != 0 ||
      ps_field(buf, len, "write_bytes", wr) != 0)
    return -1;
  return 0;
}

/* Reads a small /proc file into buf. Returns bytes read or -1 (errno
 * set: ps_gone tells whether the process is simply not there). */
static ssize_t ps_read(const char *procroot, int pid, const char *file,
                       char *buf, size_t cap) {
  char path[512];
  snprintf(path, sizeof path, "%s/%d/%s", procroot, pid, file);
  int fd = mon__open(path, O_RDONLY | O_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  size_t len = 0;
  int err = 0;
  while (len < cap - 1) {
    ssize_t n = read(fd, buf + len, cap - 1 - len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      err = errno;
    if (n <= 0)
      break;
    len += (size_t)n;
  }
  close(fd);
  buf[len] = '\0';
  if (err && !len) {
    errno = err;
    return -1;
  }
  return (ssize_t)len;
}

/* Whether a failed ps_read means the process (or that file of it) is not
 * there for us: it exited, or it is not ours to read (io of another user's
 * process). Anything else (no fds, no memory) would leave a live process
 * out of its tree's sums: the tick then gives no sample rather than a
 * wrong one. */
static bool ps_gone(int err) {
  return err == ENOENT || err == ESRCH || err == EACCES || err == EPERM;
}

int mon_ps_read_stat(const char *procroot, int pid, mon_ps_stat *out) {
  char buf[1024];
  ssize_t n = ps_read(procroot, pid, "stat", buf, sizeof buf);
  if (n <= 0)
    return -1;
  return mon_ps_parse_stat(buf, (size_t)n, out);
}

/* ---- sampler ---- */

typedef struct ps_base {
  int pid;
  unsigned long long starttime;
  unsigned long long ticks; /* utime + stime */
  unsigned long long rd, wr;
  bool io_valid;
} ps_base;

typedef struct ps_proc {
  mon_ps_stat st;
  int owner; /* service index, -1 none, -2 not yet resolved */
} ps_proc;

struct mon_sampler {
  char *procroot;
  long clk_tck, page_size;
  int pss_every, tick_no;
  uint64_t last_ms;
  ps_base *base; /* sorted by pid */
  size_t nbase;
  ps_proc *procs;
  size_t nprocs, capprocs;
  uint64_t *pss; /* per service, last known */
  bool *pss_ok;
  size_t npss;
};

mon_sampler *mon_sampler_new(const char *procroot, long clk_tck, long page_size,
                             int pss_every) {
  mon_sampler *s = mon__calloc(1, sizeof *s);
  if (!s || !(s->procroot = mon__strdup(procroot))) {
    free(s);
    return NULL;
  }
  s->clk_tck = clk_tck > 0 ? clk_tck : 100;
  s->page_size = page_size > 0 ? page_size : 4096;
  s->pss_every = pss_every > 0 ? pss_every : 1;
  return s;
}

void mon_sampler_free(mon_sampler *s) {
  if (!s)
    return;
  free(s->procroot);
  free(s->base);
  free(s->procs);
  free(s->pss);
  free(s->pss_ok);
  free(s);
}

static int ps_cmp_proc(const void *a, const void *b) {
  int x = ((const ps_proc *)a)->st.pid, y = ((const ps_proc *)b)->st.pid;
  return (x > y) - (x < y);
}

static int ps_cmp_base(const void *a, const void *b) {
  int x = ((const ps_base *)a)->pid, y = ((const ps_base *)b)->pid;
  return (x > y) - (x < y);
}

static ps_proc *ps_find(mon_sampler *s, int pid) {
  ps_proc key = {.st.pid = pid};
  return s->nprocs ? bsearch(&key, s->procs, s->nprocs, sizeof key, ps_cmp_proc)
                   : NULL;
}

static const ps_base *ps_find_base(const ps_base *b, size_t n, int pid) {
  ps_base key = {.pid = pid};
  return n ? bsearch(&key, b, n, sizeof key, ps_cmp_base) : NULL;
}

static int ps_root_index(const int *roots, size_t n, int pid) {
  for (size_t i = 0; i < n; i++)
    if (roots[i] > 0 && roots[i] == pid)
      return (int)i;
  return -1;
}

/* The service a process belongs to, following ppid links (memoised). */
static int ps_owner(mon_sampler *s, ps_proc *p, const int *roots, size_t n,
                    int depth) {
  if (p->owner != -2)
    return p->owner;
  int o = ps_root_index(roots, n, p->st.pid);
  if (o < 0)
    o = ps_root_index(roots, n, p->st.session);
  if (o < 0)
    o = ps_root_index(roots, n, p->st.pgrp);
  if (o < 0 && depth < 64 && p->st.ppid > 1) {
    ps_proc *parent = ps_find(s, p->st.ppid);
    if (parent)
      o = ps_owner(s, parent, roots, n, depth + 1);
  }
  p->owner = o;
  return o;
}

static int ps_scan(mon_sampler *s) {
  DIR *d = mon__opendir(s->procroot);
  if (!d)
    return -1;
  s->nprocs = 0;
  struct dirent *e;
  char buf[1024];
  while ((e = readdir(d))) {
    if (!isdigit((unsigned char)e->d_name[0]))
      continue;
    int pid = (int)strtol(e->d_name, NULL, 10);
    ssize_t n = ps_read(s->procroot, pid, "stat", buf, sizeof buf);
    if (n < 0 && !ps_gone(errno))
      goto fail;
    if (n <= 0)
      continue; /* gone meanwhile */
    if (s->nprocs == s->capprocs) {
      size_t cap = s->capprocs ? s->capprocs * 2 : 256;
      ps_proc *np = mon__realloc(s->procs, cap * sizeof *np);
      if (!np)
        goto fail;
      s->procs = np;
      s->capprocs = cap;
    }
    ps_proc *p = &s->procs[s->nprocs];
    if (mon_ps_parse_stat(buf, (size_t)n, &p->st) != 0 || p->st.pid != pid)
      continue;
    p->owner = -2;
    s->nprocs++;
  }
  closedir(d);
  qsort(s->procs, s->nprocs, sizeof *s->procs, ps_cmp_proc);
  return 0;
fail: /* a list without some live process: no list */
  closedir(d);
  s->nprocs = 0;
  return -1;
}

int mon_sampler_tick(mon_sampler *s, uint64_t now_ms, const int *roots,
                     size_t n, mon_sample *out) {
  memset(out, 0, n * sizeof *out);
  if (n > s->npss) {
    uint64_t *np = mon__realloc(s->pss, n * sizeof *np);
    if (np)
      s->pss = np;
    bool *nk = mon__realloc(s->pss_ok, n * sizeof *nk);
    if (nk)
      s->pss_ok = nk;
    if (!np || !nk)
      return -1;
    memset(s->pss + s->npss, 0, (n - s->npss) * sizeof *np);
    memset(s->pss_ok + s->npss, 0, (n - s->npss) * sizeof *nk);
    s->npss = n;
  }
  if (ps_scan(s) != 0)
    return -1;
  bool read_pss = s->tick_no++ % s->pss_every == 0;
  double dt = s->last_ms && now_ms > s->last_ms
                  ? (double)(now_ms - s->last_ms) / 1000.0
                  : 0.0;
  uint64_t *pss_now = mon__calloc(n ? n : 1, sizeof *pss_now);
  ps_base *nb = mon__calloc(s->nprocs ? s->nprocs : 1, sizeof *nb);
  if (!pss_now || !nb) {
    free(pss_now);
    free(nb);
    return -1;
  }
  size_t nnb = 0;
  double *ticks = mon__calloc(n ? n : 1, sizeof *ticks);
  if (!ticks) {
    free(pss_now);
    free(nb);
    return -1;
  }
  char buf[4096];
  for (size_t k = 0; k < s->nprocs; k++) {
    ps_proc *p = &s->procs[k];
    int o = ps_owner(s, p, roots, n, 0);
    if (o < 0 || p->st.state == 'Z')
      continue;
    mon_sample *m = &out[o];
    m->valid = true;
    m->nprocs++;
    if (p->st.ppid == roots[o]) { /* procs are sorted: pids stay ascending */
      if (m->nworkers < MON_WORKERS_MAX)
        m->workers[m->nworkers] = p->st.pid;
      m->nworkers++;
    }
    m->rss_bytes += (uint64_t)(p->st.rss_pages > 0 ? p->st.rss_pages : 0) *
                    (uint64_t)s->page_size;
    ps_base *b = &nb[nnb++];
    b->pid = p->st.pid;
    b->starttime = p->st.starttime;
    b->ticks = p->st.utime + p->st.stime;
    ssize_t len = ps_read(s->procroot, p->st.pid, "io", buf, sizeof buf);
    if (len < 0 && !ps_gone(errno))
      goto fail;
    b->io_valid =
        len > 0 && mon_ps_parse_io(buf, (size_t)len, &b->rd, &b->wr) == 0;
    if (read_pss) {
      unsigned long long pss;
      len = ps_read(s->procroot, p->st.pid, "smaps_rollup", buf, sizeof buf);
      if (len < 0 && !ps_gone(errno))
        goto fail;
      if (len > 0 && mon_ps_parse_smaps_rollup(buf, (size_t)len, &pss) == 0)
        pss_now[o] += pss;
    }
    const ps_base *old = ps_find_base(s->base, s->nbase, b->pid);
    if (!old || old->starttime != b->starttime || dt <= 0)
      continue; /* new process (or a reused pid): no delta yet */
    if (b->ticks >= old->ticks) {
      ticks[o] += (double)(b->ticks - old->ticks);
      m->cpu_valid = true;
    }
    if (b->io_valid && old->io_valid) {
      if (b->rd >= old->rd)
        m->read_bytes += b->rd - old->rd;
      if (b->wr >= old->wr)
        m->write_bytes += b->wr - old->wr;
    }
  }
  for (size_t i = 0; i < n; i++) {
    if (out[i].cpu_valid)
      out[i].cpu_pct = ticks[i] / (double)s->clk_tck / dt * 100.0;
    if (read_pss && out[i].valid) {
      s->pss[i] = pss_now[i];
      s->pss_ok[i] = pss_now[i] > 0;
    } else if (!out[i].valid) {
      s->pss_ok[i] = false;
    }
    out[i].pss_valid = out[i].valid && s->pss_ok[i];
    out[i].pss_bytes = out[i].pss_valid ? s->pss[i] : 0;
  }
  free(ticks);
  free(pss_now);
  qsort(nb, nnb, sizeof *nb, ps_cmp_base);
  free(s->base);
  s->base = nb;
  s->nbase = nnb;
  s->last_ms = now_ms;
  return 0;
fail: /* the baselines stay those of the last tick that had every process */
  memset(out, 0, n * sizeof *out);
  free(ticks);
  free(pss_now);
  free(nb);
  return -1;
}

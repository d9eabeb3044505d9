/* proc_sample.h — reads CPU, memory, IO and process counts of each
 * service's whole process tree from a /proc tree (its root is a parameter,
 * so tests use fixture trees). Structs out; no SQL, no wall clock. */
#ifndef MON_PROC_SAMPLE_H
#define MON_PROC_SAMPLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MON_WORKERS_MAX 64 /* worker pids kept per service and tick */

typedef struct mon_ps_stat {
  int pid;
  char state; /* R, S, D, Z, ... */
  int ppid, pgrp, session;
  unsigned long long utime;     /* clock ticks */
  unsigned long long stime;     /* clock ticks */
  unsigned long long starttime; /* ticks after boot: with pid, an identity */
  long num_threads;
  long long rss_pages;
} mon_ps_stat;

/* Parses the text of /proc/PID/stat. The command name may hold spaces and
 * parentheses, so fields are read after the last ')'. 0, or -1 if malformed. */
int mon_ps_parse_stat(const char *buf, size_t len, mon_ps_stat *out);
/* VmRSS (bytes) and Threads from /proc/PID/status. -1 if VmRSS is absent
 * (a zombie or kernel thread). */
int mon_ps_parse_status(const char *buf, size_t len,
                        unsigned long long *rss_bytes, long *threads);
/* Pss (bytes) from /proc/PID/smaps_rollup. -1 if absent. */
int mon_ps_parse_smaps_rollup(const char *buf, size_t len,
                              unsigned long long *pss_bytes);
/* read_bytes and write_bytes from /proc/PID/io. -1 if absent. */
int mon_ps_parse_io(const char *buf, size_t len, unsigned long long *rd,
                    unsigned long long *wr);
/* Reads and parses PROCROOT/PID/stat. 0 or -1. */
int mon_ps_read_stat(const char *procroot, int pid, mon_ps_stat *out);

/* One service's tree at one tick. */
typedef struct mon_sample {
  bool valid;     /* the service had at least one live process */
  bool cpu_valid; /* false on a tree's first sample (no baseline) */
  double cpu_pct; /* 100 = one core */
  uint64_t rss_bytes;
  bool pss_valid; /* smaps_rollup read this tick or earlier */
  uint64_t pss_bytes;
  uint64_t read_bytes;  /* in this interval */
  uint64_t write_bytes; /* in this interval */
  int nprocs;
  int nworkers; /* live children of the main process (prefork workers) */
  int workers[MON_WORKERS_MAX]; /* their pids, ascending (the first
                                   MON_WORKERS_MAX of them) */
} mon_sample;

typedef struct mon_sampler mon_sampler;

/* procroot: "/proc" or a fixture tree. clk_tck: sysconf(_SC_CLK_TCK).
 * page_size: bytes per page. pss_every: read smaps_rollup every N ticks
 * (it walks every mapping, so it costs more). NULL when out of memory. */
mon_sampler *mon_sampler_new(const char *procroot, long clk_tck, long page_size,
                             int pss_every);
void mon_sampler_free(mon_sampler *s);
/* Samples n services whose main pids are roots[i] (0 = not running) at
 * monotonic time now_ms. A process belongs to root R when its session or
 * process group is R, or R is among its ancestors. CPU and IO are deltas
 * against the previous tick, matched by (pid, starttime), so a PID that is
 * reused contributes nothing rather than a wrong value. Writes out[0..n).
 * 0, or -1 when the proc root cannot be read. */
int mon_sampler_tick(mon_sampler *s, uint64_t now_ms, const int *roots,
                     size_t n, mon_sample *out);

#ifdef __cplusplus
}
#endif
#endif

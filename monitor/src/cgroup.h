/* cgroup.h — the monitor's own cgroup v2 subtree: one child cgroup per
 * service carrying its memory_max and cpu_max. Optional by design: where
 * cgroups cannot be used (v1 or hybrid hierarchy, no delegation, missing
 * controllers) the monitor runs without them and says why once. */
#ifndef MON_CGROUP_H
#define MON_CGROUP_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mon_cgroups mon_cgroups;

/* Extracts this process's cgroup v2 path ("/a/b") from the text of
 * /proc/self/cgroup, which must be exactly one "0::/path" line: any other
 * line means v1 hierarchies are mounted (legacy or hybrid mode), where the
 * memory and cpu controllers are not on the v2 tree. Pure. 0, or -1 with
 * a reason in why. */
int mon_cgroups_parse_self(const char *text, char *path, size_t pathlen,
                           char *why, size_t whylen);

/* Sets up the subtree for this process. root is where cgroup2 is mounted
 * ("/sys/fs/cgroup"), proc_self_cgroup the file to read ("/proc/self/
 * cgroup"); both are parameters so tests run on a fixture tree. OWN (this
 * process's cgroup) must be writable, offer "memory" and "cpu" in its
 * cgroup.controllers and hold no other process. Because cgroup v2 lets only
 * leaves hold processes, this process (all its threads) moves into
 * OWN/monitor, then "+memory +cpu" goes into OWN/cgroup.subtree_control;
 * if that fails it moves back. Blocks only on cgroupfs writes (short).
 * Returns NULL with a reason in why when cgroups cannot be used: not an
 * error for the monitor, which then ignores memory_max and cpu_max. Free
 * with mon_cgroups_free. */
mon_cgroups *mon_cgroups_new(const char *root, const char *proc_self_cgroup,
                             char *why, size_t whylen);

/* Releases cg (NULL is fine). Leaves the cgroups in place: the service
 * cgroups are removed with mon_cgroups_remove, and OWN/monitor cannot be
 * removed while this process is in it (systemd removes a unit's whole
 * tree when it stops). */
void mon_cgroups_free(mon_cgroups *cg);

/* OWN's directory ("/sys/fs/cgroup/system.slice/svc-monitor.service"),
 * for log lines. Owned by cg. */
const char *mon_cgroups_dir(const mon_cgroups *cg);

/* Before each start of service s: creates OWN/svc-NAME if needed and
 * writes its memory.max (s->memory_max bytes, or "max") and cpu.max
 * (s->cpu_max percent of one core as "QUOTA 100000", or "max 100000"),
 * so a reloaded config applies to the next start. Returns an
 * O_WRONLY|O_CLOEXEC fd of its cgroup.procs for mon_spawn_ex (the caller
 * closes it after the spawn), or -1 with a reason in why. cg NULL gives -1
 * with why empty (no cgroups: spawn without one). */
int mon_cgroups_prepare(mon_cgroups *cg, const mon_service_cfg *s, char *why,
                        size_t whylen);

/* Once a service's processes are gone and it left the config: removes
 * OWN/svc-NAME. 0 when removed or absent (and when cg is NULL), else a
 * negative errno (-EBUSY while a process is still in it). */
int mon_cgroups_remove(mon_cgroups *cg, const char *name);

/* What the kernel counts for one service cgroup, for the dashboard. */
typedef struct mon_cgroup_stats {
  long long memory_current; /* memory.current, bytes */
  long long oom_kills;      /* "oom_kill" of memory.events */
} mon_cgroup_stats;

/* Reads NAME's memory.current and memory.events (two small reads of
 * cgroupfs). 0, or -1 when cg is NULL or either file is unreadable. */
int mon_cgroups_stats(const mon_cgroups *cg, const char *name,
                      mon_cgroup_stats *out);

/* True when some service sets memory_max or cpu_max: only then is the
 * absence of cgroups worth the one warning at start. */
bool mon_cgroups_wanted(const mon_config *cfg);

#ifdef __cplusplus
}
#endif
#endif

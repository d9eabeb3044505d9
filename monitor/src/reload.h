/* reload.h — what a config reload changes: which services of the new
 * config are the same as before, changed, or added, and which old ones are
 * removed; and which [monitor] keys need a restart of svc-monitor itself.
 * Pure: compares two parsed configs. */
#ifndef MON_RELOAD_H
#define MON_RELOAD_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum mon_reload_kind {
  MON_RELOAD_SAME = 0, /* every key equal: keeps running, same pid */
  MON_RELOAD_CHANGED,  /* same name, other keys: restarted */
  MON_RELOAD_ADDED     /* new name: started if autostart */
} mon_reload_kind;

typedef struct mon_reload_plan {
  size_t nold, nnew;
  int *old_of_new;       /* [nnew]: index in the old config, or -1 (added) */
  int *new_of_old;       /* [nold]: index in the new config, or -1 (removed) */
  mon_reload_kind *kind; /* [nnew] */
  size_t nsame, nchanged, nadded, nremoved;
  char restart_keys[128]; /* [monitor] keys that changed but apply only
                             after a restart of svc-monitor: "http db" */
  bool monitor_changed;   /* sample_interval_ms, retention_days or
                             alert_webhook changed (applied at once) */
} mon_reload_plan;

/* 0, or -1 when out of memory. */
int mon_reload_plan_make(const mon_config *old, const mon_config *cur,
                         mon_reload_plan *p);
void mon_reload_plan_fini(mon_reload_plan *p);
/* Nothing to do at all. */
bool mon_reload_plan_empty(const mon_reload_plan *p);
/* "added a b; changed c; removed d; unchanged 3" (only the parts that
 * apply), into out. */
void mon_reload_plan_describe(const mon_reload_plan *p, const mon_config *old,
                              const mon_config *cur, char *out, size_t len);
/* The same as a JSON object: {"added":[..],"changed":[..],"removed":[..],
 * "unchanged":[..],"restart_needed":[..]}, malloc'd (free it), or NULL. */
char *mon_reload_plan_json(const mon_reload_plan *p, const mon_config *old,
                           const mon_config *cur);

#ifdef __cplusplus
}
#endif
#endif

/* reload.c — the difference between the running config and a new one. A
 * service is matched by name; mon_service_cfg_same decides whether it
 * changed. */
#include "reload.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mon_sys.h"

static int reload_find(const mon_config *c, const char *name) {
  for (size_t i = 0; i < c->nservices; i++)
    if (!strcmp(c->services[i].name, name))
      return (int)i;
  return -1;
}

static void reload_note_key(mon_reload_plan *p, const char *key) {
  size_t n = strlen(p->restart_keys);
  snprintf(p->restart_keys + n, sizeof p->restart_keys - n, "%s%s",
           n ? " " : "", key);
}

static bool reload_same_str(const char *a, const char *b) {
  return (!a && !b) || (a && b && !strcmp(a, b));
}

int mon_reload_plan_make(const mon_config *old, const mon_config *cur,
                         mon_reload_plan *p) {
  memset(p, 0, sizeof *p);
  p->nold = old->nservices;
  p->nnew = cur->nservices;
  p->old_of_new = mon__calloc(p->nnew + 1, sizeof *p->old_of_new);
  p->new_of_old = mon__calloc(p->nold + 1, sizeof *p->new_of_old);
  p->kind = mon__calloc(p->nnew + 1, sizeof *p->kind);
  if (!p->old_of_new || !p->new_of_old || !p->kind) {
    mon_reload_plan_fini(p);
    return -1;
  }
  for (size_t i = 0; i < p->nold; i++)
    p->new_of_old[i] = -1;
  for (size_t j = 0; j < p->nnew; j++) {
    int i = reload_find(old, cur->services[j].name);
    p->old_of_new[j] = i;
    if (i < 0) {
      p->kind[j] = MON_RELOAD_ADDED;
      p->nadded++;
      continue;
    }
    p->new_of_old[i] = (int)j;
    if (mon_service_cfg_same(&old->services[i], &cur->services[j])) {
      p->kind[j] = MON_RELOAD_SAME;
      p->nsame++;
    } else {
      p->kind[j] = MON_RELOAD_CHANGED;
      p->nchanged++;
    }
  }
  for (size_t i = 0; i < p->nold; i++)
    if (p->new_of_old[i] < 0)
      p->nremoved++;
  if (!reload_same_str(old->http_host, cur->http_host) ||
      old->http_port != cur->http_port)
    reload_note_key(p, "http");
  if (!reload_same_str(old->db, cur->db))
    reload_note_key(p, "db");
  if (!reload_same_str(old->log_dir, cur->log_dir))
    reload_note_key(p, "log_dir");
  if (!reload_same_str(old->token_file, cur->token_file))
    reload_note_key(p, "token_file");
  p->monitor_changed = old->sample_interval_ms != cur->sample_interval_ms ||
                       old->retention_days != cur->retention_days ||
                       !reload_same_str(old->alert_webhook, cur->alert_webhook);
  return 0;
}

void mon_reload_plan_fini(mon_reload_plan *p) {
  free(p->old_of_new);
  free(p->new_of_old);
  free(p->kind);
  memset(p, 0, sizeof *p);
}

bool mon_reload_plan_empty(const mon_reload_plan *p) {
  return !p->nchanged && !p->nadded && !p->nremoved && !p->monitor_changed;
}

/* Appends "label a b" for the services of one kind. */
static void reload_part(char *out, size_t len, const char *label,
                        const mon_reload_plan *p, const mon_config *old,
                        const mon_config *cur, int kind) {
  size_t n = strlen(out);
  bool first = true;
  size_t count = kind < 0 ? p->nold : p->nnew;
  for (size_t k = 0; k < count && n + 1 < len; k++) {
    const char *name;
    if (kind < 0) {
      if (p->new_of_old[k] >= 0)
        continue;
      name = old->services[k].name;
    } else {
      if ((int)p->kind[k] != kind)
        continue;
      name = cur->services[k].name;
    }
    snprintf(out + n, len - n, "%s%s%s %s", first && n ? "; " : "",
             first ? label : "", first ? "" : ",", name);
    first = false;
    n = strlen(out);
  }
}

void mon_reload_plan_describe(const mon_reload_plan *p, const mon_config *old,
                              const mon_config *cur, char *out, size_t len) {
  if (!len)
    return;
  out[0] = '\0';
  reload_part(out, len, "added", p, old, cur, MON_RELOAD_ADDED);
  reload_part(out, len, "changed", p, old, cur, MON_RELOAD_CHANGED);
  reload_part(out, len, "removed", p, old, cur, -1);
  size_t n = strlen(out);
  if (p->monitor_changed && n + 1 < len)
    snprintf(out + n, len - n, "%s[monitor] changed", n ? "; " : "");
  n = strlen(out);
  if (p->restart_keys[0] && n + 1 < len)
    snprintf(out + n, len - n, "%s[monitor] %s apply after a restart",
             n ? "; " : "", p->restart_keys);
  n = strlen(out);
  if (n + 1 < len)
    snprintf(out + n, len - n, "%sunchanged %zu", n ? "; " : "", p->nsame);
}

char *mon_reload_plan_json(const mon_reload_plan *p, const mon_config *old,
                           const mon_config *cur) {
  json_t *o = json_object();
  json_t *lists[4] = {json_array(), json_array(), json_array(), json_array()};
  static const char *const names[4] = {"unchanged", "changed", "added",
                                       "removed"};
  json_t *keys = json_array();
  char *out = NULL;
  if (!o || !keys || !lists[0] || !lists[1] || !lists[2] || !lists[3])
    goto out;
  for (size_t j = 0; j < p->nnew; j++)
    json_array_append_new(lists[p->kind[j]],
                          json_string(cur->services[j].name));
  for (size_t i = 0; i < p->nold; i++)
    if (p->new_of_old[i] < 0)
      json_array_append_new(lists[3], json_string(old->services[i].name));
  char buf[sizeof p->restart_keys];
  snprintf(buf, sizeof buf, "%s", p->restart_keys);
  for (char *save, *w = strtok_r(buf, " ", &save); w;
       w = strtok_r(NULL, " ", &save))
    json_array_append_new(keys, json_string(w));
  for (int k = 0; k < 4; k++) {
    json_object_set_new(o, names[k], lists[k]);
    lists[k] = NULL;
  }
  json_object_set_new(o, "restart_needed", keys);
  keys = NULL;
  out = json_dumps(o, JSON_COMPACT);
out:
  for (int k = 0; k < 4; k++)
    json_decref(lists[k]);
  json_decref(keys);
  json_decref(o);
  return out;
}

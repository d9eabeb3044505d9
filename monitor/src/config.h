/* config.h — svc-monitor's .ini configuration: the [monitor] section and one
 * [service.NAME] section per supervised service, parsed with inih into plain
 * structs. Errors name the file and line ("services.ini:12: unknown key"). */
#ifndef MON_CONFIG_H
#define MON_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MON_NAME_MAX 64 /* bytes in a service name, as libsvc allows */

typedef enum mon_restart {
  MON_RESTART_ON_FAILURE = 0, /* restart after a non-zero exit or a signal */
  MON_RESTART_ALWAYS,         /* restart after any exit */
  MON_RESTART_NEVER
} mon_restart;

/* When a STARTING service counts as RUNNING. */
typedef enum mon_ready {
  MON_READY_AUTO = 0, /* PING when the service has a port, else UPTIME */
  MON_READY_PING,     /* it answers svc.ping on shm://NAME */
  MON_READY_UPTIME    /* it stayed up start_secs */
} mon_ready;

/* A health probe besides readiness (health = ...). */
typedef enum mon_health_kind {
  MON_HEALTH_NONE = 0,
  MON_HEALTH_HTTP, /* GET http://HOST:PORT/PATH answers 2xx */
  MON_HEALTH_TCP,  /* tcp://HOST:PORT accepts a connection */
  MON_HEALTH_EXEC  /* exec:/path/to/check args exits 0 */
} mon_health_kind;

/* A parsed http:// or tcp:// address: HOST is a name, an IPv4 literal or a
 * bracketed IPv6 literal (kept without brackets). */
typedef struct mon_net_url {
  char host[256];
  int port;
  char path[512]; /* "/..." for http; "/" when absent */
} mon_net_url;

/* Parses "http://HOST[:PORT][/PATH]" (port 80 by default) when scheme is
 * "http", or "tcp://HOST:PORT" when scheme is "tcp". Pure. 0, or -1 with a
 * reason in err. */
int mon_net_url_parse(const char *text, const char *scheme, mon_net_url *out,
                      char *err, size_t errlen);

/* "512M" -> 536870912: digits with an optional K, M, G or T suffix (powers
 * of 1024, either case, optionally followed by B or iB). Pure. */
bool mon_size_parse(const char *text, long long *out);

#define MON_RLIMIT_UNSET (-2LL)    /* key absent: inherit the monitor's */
#define MON_RLIMIT_INFINITY (-1LL) /* "unlimited" */

typedef struct mon_service_cfg {
  char *name;           /* [service.NAME] */
  char *command;        /* as written in the file */
  char **argv;          /* command split like a shell would; NULL-terminated */
  int port;             /* 0 = none */
  int workers_min;      /* SVC_WORKERS_MIN */
  int workers_max;      /* SVC_WORKERS_MAX */
  bool autostart;       /* start when the monitor starts */
  mon_restart restart;  /* what to do after an exit */
  int start_retries;    /* restarts in a row before FATAL; -1 = forever */
  int start_secs;       /* uptime after which a plain command is RUNNING */
  int ready_timeout_ms; /* a PING service not answering by then failed */
  int stop_timeout_ms;  /* SIGTERM, then SIGKILL after this */
  int backoff_ms;       /* first restart delay; doubles per retry */
  int backoff_max_ms;   /* cap of the exponential backoff */
  mon_ready ready;      /* see mon_ready */
  char **env;           /* KEY=VALUE from env_file then env; NULL-terminated */
  size_t nenv;
  char *env_file;          /* path as written, or NULL */
  char *directory;         /* working directory, or NULL for the monitor's */
  long long log_max_bytes; /* rotate a log file past this size; 0 = never */
  int log_backups;         /* rotated files kept (NAME.stdout.log.1 ...) */
  bool timestamps;         /* prefix captured lines with an ISO-8601 time */
  char **depends_on;       /* names this service starts after; NULL-ended */
  size_t ndeps;
  int *deps;              /* their indices into services[], resolved */
  mon_health_kind health; /* see mon_health_kind */
  char *health_text;      /* health = ... as written, or NULL */
  mon_net_url health_url; /* for HTTP and TCP */
  char **health_argv;     /* for EXEC; NULL-terminated */
  int health_interval_ms; /* between probes, once RUNNING */
  int health_timeout_ms;  /* one probe's bound */
  int health_failures;    /* failures in a row that restart the service */
  long long memory_max;   /* cgroup memory.max in bytes; 0 = none */
  int cpu_max;            /* cgroup cpu.max, percent of one core; 0 = none */
  long long max_memory_restart; /* tree RSS above this 3 samples: restart */
  long long rlimit_nofile;      /* MON_RLIMIT_UNSET, _INFINITY or a count */
  long long rlimit_core;        /* the same, in bytes */
  int line;                     /* line of the section header */
  int port_line;                /* line of the port key, for duplicate errors */
  int deps_line;                /* line of depends_on, for its errors */
} mon_service_cfg;

typedef struct mon_config {
  char *path;             /* file name used in messages */
  char *http_host;        /* IPv4 literal to bind, "127.0.0.1" by default */
  int http_port;          /* 5155 by default; 0 = any free port */
  char *db;               /* SQLite file */
  char *log_dir;          /* NAME.stdout.log / NAME.stderr.log live here */
  char *token_file;       /* bearer token for the control routes */
  int sample_interval_ms; /* sampling period */
  int retention_days;     /* minute rows are kept this long */
  char *alert_webhook;    /* http:// URL the alerts are POSTed to, or NULL */
  mon_net_url alert_url;  /* alert_webhook parsed */
  mon_service_cfg *services;
  size_t nservices;
} mon_config;

/* Parses len bytes of .ini text; filename only names the source in errors.
 * On success fills *cfg (release with mon_config_fini) and returns 0. On a
 * bad config returns -1, leaves *cfg empty and writes "file:line: message"
 * into err. Pure: reads no file except an env_file named by the text when
 * read_env_files is true. */
int mon_config_parse(const char *text, size_t len, const char *filename,
                     bool read_env_files, mon_config *cfg, char *err,
                     size_t errlen);
/* Reads and parses the file at path. -1 with err set on failure. */
int mon_config_load(const char *path, mon_config *cfg, char *err,
                    size_t errlen);
/* Frees everything; safe on a zeroed or half-built config. */
void mon_config_fini(mon_config *cfg);

/* True when a and b would run the same way: every key compared except the
 * lines they were written on (a reload restarts a service that differs). */
bool mon_service_cfg_same(const mon_service_cfg *a, const mon_service_cfg *b);

/* Splits a command line the way sh would split words, honouring '...',
 * "..." (with \" \\ \$ \` escapes) and backslash escapes, without expanding
 * anything. On success *argv_out is a NULL-terminated malloc'd array (free
 * with mon_argv_free) and the word count is returned; an empty line gives 0.
 * -1 for an unterminated quote or a trailing backslash, -2 out of memory. */
int mon_split_command(const char *line, char ***argv_out);
void mon_argv_free(char **argv);
/* The same words in the same order (NULL is the same as empty). */
bool mon_argv_same(char *const *a, char *const *b);

/* True for a usable service name: 1..64 of [A-Za-z0-9._-], not starting
 * with a dot (the name becomes part of file names). */
bool mon_name_valid(const char *name);

#ifdef __cplusplus
}
#endif
#endif

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
  int line;                /* line of the section header */
  int port_line;           /* line of the port key, for duplicate errors */
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

/* Splits a command line the way sh would split words, honouring '...',
 * "..." (with \" \\ \$ \` escapes) and backslash escapes, without expanding
 * anything. On success *argv_out is a NULL-terminated malloc'd array (free
 * with mon_argv_free) and the word count is returned; an empty line gives 0.
 * -1 for an unterminated quote or a trailing backslash, -2 out of memory. */
int mon_split_command(const char *line, char ***argv_out);
void mon_argv_free(char **argv);

/* True for a usable service name: 1..64 of [A-Za-z0-9._-], not starting
 * with a dot (the name becomes part of file names). */
bool mon_name_valid(const char *name);

#ifdef __cplusplus
}
#endif
#endif

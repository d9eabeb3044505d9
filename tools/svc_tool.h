/* svc_tool.h — what the `svc` tool's source files share: exit codes, the
 * command line parser, error reporting, and a few helpers (all in svc.c),
 * and the subcommands that live in their own file (svc_bench.c). */
#ifndef SVC_TOOL_H
#define SVC_TOOL_H

#include <stddef.h>
#include <stdint.h>

#include <svc.h>

#define EXIT_FAIL 1  /* the call or connection failed */
#define EXIT_USAGE 2 /* bad command line */

/* ---- command line: positional arguments and options, in any order ---- */

typedef struct opt {
  const char *name;  /* "-n" or "--rate" */
  const char *alias; /* or NULL */
  int takes_value;
  const char *value; /* set when given ("" for a flag) */
} opt;

typedef struct args {
  const char *pos[8];
  int npos;
} args;

/* Splits argv into positional arguments and the options in opts.
 * Returns 0, 1 for --help, or EXIT_USAGE after printing why. */
int parse_args(int argc, char **argv, opt *opts, int nopts, int max_pos,
               const char *usage, args *a);
/* Prints "svc: " fmt (with arg) and usage; returns EXIT_USAGE. */
int usage_error(const char *usage, const char *fmt, const char *arg);
/* Parses a whole non-negative number; -1 if it is not one. */
long long parse_num(const char *s);

/* ---- helpers ---- */

/* CLOCK_MONOTONIC in ns. */
int64_t now_ns(void);
/* Prints "svc: SVC_ENAME: text" (plus the handler's code) and returns the
 * exit code for a failed call. */
int fail(int rc, svc_client *c, const char *what);
/* A duration for people: "850ns", "12.3us", "4.56ms", "1.20s". */
const char *fmt_ns(double ns, char *buf, size_t cap);
/* Opens url with a per-call timeout, reporting failure; NULL then, with
 * the exit code in *exit. */
svc_client *open_client(const char *url, int timeout_ms, int *exit);

/* ---- subcommands in their own files ---- */

int cmd_bench(int argc, char **argv); /* svc_bench.c */

#endif

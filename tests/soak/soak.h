/* soak.h — what the soak's driver, clients and server share: the layout of
 * a numbered call on the wire, of the server's execution counts and of each
 * client's record of its calls (both MAP_SHARED files that outlive a
 * SIGKILL of whoever wrote them), and the driver's helpers. */
#ifndef SVC_SOAK_H
#define SVC_SOAK_H

#include <stdint.h>
#include <sys/types.h>

#define SOAK_METHOD "work"
#define SOAK_BURN_MAX_US 10000 /* the most CPU one call may ask for */

/* The request of every numbered call: who calls, its number, and how much
 * CPU the handler spends (the load that makes the pool grow). */
typedef struct soak_request {
  uint32_t client;
  uint32_t seq;
  uint32_t burn_us;
  uint32_t magic; /* SOAK_MAGIC: a request from this soak, not garbage */
} soak_request;

#define SOAK_MAGIC 0x50414b53u

/* The reply: the call it answers and the worker that ran it. */
typedef struct soak_reply {
  uint32_t client;
  uint32_t seq;
  uint32_t pid;
  uint32_t magic;
} soak_reply;

/* One call as the server saw it, at [client * capacity + seq] of the
 * execution file. */
typedef struct soak_exec {
  uint32_t count;    /* executions: the handler adds 1 before working */
  uint32_t pid[2];   /* the first two processes that ran it */
  uint32_t first_ms; /* CLOCK_MONOTONIC ms (truncated) of the first run */
} soak_exec;

/* The execution file: soak_exec[clients * capacity], then uint32_t
 * [clients], each 1 + the highest number of that client that ran (so the
 * check reads no further than calls ran). */
static inline size_t soak_exec_file_size(uint32_t clients, uint32_t capacity) {
  return (size_t)clients * capacity * sizeof(soak_exec) +
         clients * sizeof(uint32_t);
}

static inline uint32_t *soak_exec_highest(soak_exec *slots, uint32_t clients,
                                          uint32_t capacity) {
  return (uint32_t *)(slots + (size_t)clients * capacity);
}

enum soak_call_state {
  SOAK_CALL_UNUSED = 0,
  SOAK_CALL_STARTED = 1, /* the client began it and never heard the end */
  SOAK_CALL_DONE = 2,
};

enum soak_call_how {
  SOAK_HOW_CALL = 1,      /* svc_call */
  SOAK_HOW_PIPELINED = 2, /* svc_call_send + svc_call_recv */
};

enum soak_call_stage {
  SOAK_STAGE_FINISH = 0, /* the outcome of a call that was sent */
  SOAK_STAGE_SEND = 1,   /* svc_call_send refused it: it has no id */
};

/* Outcomes that are the soak's own verdicts, not SVC_E* codes. */
#define SOAK_RC_BAD_REPLY 1001 /* rc 0 with a reply to some other call */
#define SOAK_RC_LOST 1002      /* never finished, long past its deadline */

/* One call as its client saw it, at [seq] of the client's file. */
typedef struct soak_call {
  int32_t rc;          /* 0, an SVC_E* code, or SOAK_RC_* */
  uint32_t elapsed_us; /* from before the send to its outcome */
  uint32_t reply_pid;  /* the worker that answered, when rc is 0 */
  uint32_t start_ms;   /* CLOCK_MONOTONIC ms (truncated) of the send */
  uint8_t state;       /* enum soak_call_state */
  uint8_t how;         /* enum soak_call_how */
  uint8_t stage;       /* enum soak_call_stage */
  uint8_t pad[5];
} soak_call;

/* The head of a client's file; soak_call[capacity] follow. */
typedef struct soak_client_head {
  uint32_t ncalls;       /* numbers 0 .. ncalls-1 were used */
  uint32_t full;         /* stopped early: every number was used */
  uint32_t opened;       /* svc_client_open succeeded at least once */
  uint32_t open_max_ms;  /* the longest svc_client_open (not a call) */
  uint32_t moves;        /* a success from another worker than the last */
  uint32_t unknown_ids;  /* svc_call_recv named a call never sent */
  uint32_t lost_batches; /* batches abandoned after SOAK_RC_LOST */
  uint32_t exit_ok;      /* reached the end of the phase */
  int32_t open_bad_rc;   /* an svc_client_open failure a caller could not
                            act on (see soak_check.c), else 0 */
  uint8_t pad[28];
} soak_client_head;

/* What one client process does in a phase. */
typedef struct soak_client_cfg {
  const char *url;
  const char *path; /* its record file, soak_client_head + soak_call[] */
  uint32_t id;
  uint32_t capacity;
  int timeout_ms;
  int slack_ms;
  int64_t end_ms; /* CLOCK_MONOTONIC: stop calling */
  uint64_t seed;
} soak_client_cfg;

/* Runs the client until cfg->end_ms and _exits (0, or 2 when its record
 * file could not be used). Call in a child right after fork. */
void soak_client_main(const soak_client_cfg *cfg) __attribute__((noreturn));

/* ---- the end-of-phase check (soak_check.c) ---- */

/* A failure a caller can act on: nothing listens (SVC_ECONNREFUSED), the
 * server died under the call (SVC_EPEERGONE), or the call's own timeout
 * (SVC_ETIMEDOUT): what svc.h and the README promise a call may end with
 * when servers die and restart. Everything else is a violation. */
int soak_rc_actionable(int rc);

/* A worker whose master the chaos loop killed. */
typedef struct soak_orphan {
  pid_t pid;
  pid_t master;
  int64_t master_died_ms; /* CLOCK_MONOTONIC */
  int64_t gone_ms;        /* when it was reaped; 0 while alive */
  int overdue;            /* outlived the limit: the driver killed it */
} soak_orphan;

#define SOAK_CODES 16 /* outcomes by -rc, for SVC_E* codes -1 .. -15 */

/* The counts of one transport's phase. */
typedef struct soak_tally {
  const char *transport;
  uint64_t calls, ok, failed;
  uint64_t by_code[SOAK_CODES]; /* failures by -rc */
  uint64_t not_sent;            /* svc_call_send said SVC_EAGAIN */
  uint64_t other;               /* SOAK_RC_* and codes outside SVC_E* */
  uint64_t executed;            /* calls that ran at least once */
  uint64_t executed_failed;     /* ... of which the caller saw fail */
  uint64_t by_orphans;          /* first ran by a worker of a dead master */
  uint64_t moves;               /* successes from another worker */
  uint32_t max_wait_ms, max_wait_client, max_wait_seq;
  int max_wait_rc;
  uint32_t full_clients; /* used every number of their file */
  uint64_t violations;
} soak_tally;

/* What soak_check reads: the phase's files and what the driver saw. */
typedef struct soak_check_in {
  soak_exec *exec; /* the execution file */
  soak_client_head *const *heads;
  const int *client_status; /* each client's wait status */
  uint32_t clients, capacity;
  int timeout_ms, slack_ms;
  const soak_orphan *orphans;
  int norphans;
} soak_check_in;

/* Checks every call of the phase and adds to t; each violation is a line
 * on stdout through soak_violation. */
void soak_check(const soak_check_in *in, soak_tally *t);

/* Counts a violation and prints it ("VIOLATION [shm] ..."); after the
 * first 25 of a phase only counts. */
void soak_violation(soak_tally *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ---- shared helpers ---- */

int64_t soak_now_ms(void);
void soak_sleep_ms(int ms);
/* splitmix64: the soak's only randomness, so a seed repeats a run. */
uint64_t soak_rand(uint64_t *state);
/* Uniform in [lo, hi]. */
int soak_rand_range(uint64_t *state, int lo, int hi);
/* Maps path (made and sized by the caller) read-write MAP_SHARED: NULL
 * with errno on failure. */
void *soak_map(const char *path, size_t size);
/* Makes path a sparse file of size bytes (mode 0600). 0 or -1 with errno. */
int soak_make_file(const char *path, size_t size);

/* ---- /proc (soak_proc.c) ---- */

/* Open fds of pid, -1 if it is gone. */
int soak_proc_fds(pid_t pid);
/* Threads of pid, -1 if it is gone. */
int soak_proc_threads(pid_t pid);
/* Up to max children of pid (its main thread's) into out; their number,
 * -1 if pid is gone. Zombies are left out. */
int soak_proc_children(pid_t pid, pid_t *out, int max);
/* 1 if pid exists and is not a zombie. */
int soak_proc_alive(pid_t pid);

#endif

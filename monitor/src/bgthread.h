/* bgthread.h — a background thread that waits on a condition variable until
 * it is given work or told to quit: the lifecycle the readiness prober and
 * the statistics poller share. Their own state stays in their structs,
 * guarded by mu. */
#ifndef MON_BGTHREAD_H
#define MON_BGTHREAD_H

#include <pthread.h>
#include <stdbool.h>

typedef struct mon_bgthread {
  pthread_t thread;
  pthread_mutex_t mu; /* guards quit and the owner's shared state */
  pthread_cond_t cv;  /* signalled on new work and on quit */
  bool quit;
} mon_bgthread;

/* Starts fn(arg) on a new thread (which inherits the caller's signal
 * mask). 0, or -1 with nothing left to undo. */
int mon_bgthread_start(mon_bgthread *t, void *(*fn)(void *), void *arg);

/* Sets quit, wakes the thread, waits for it to return, and destroys mu and
 * cv. The thread must check quit after every wait and every unlocked
 * stretch of work. */
void mon_bgthread_stop(mon_bgthread *t);

#endif

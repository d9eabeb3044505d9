/* bgthread.c — start and stop of the monitor's background threads (see
 * bgthread.h). */
#include "bgthread.h"
#include "mon_sys.h"

int mon_bgthread_start(mon_bgthread *t, void *(*fn)(void *), void *arg) {
  t->quit = false;
  pthread_mutex_init(&t->mu, NULL);
  pthread_cond_init(&t->cv, NULL);
  if (mon__pthread_create(&t->thread, NULL, fn, arg) == 0)
    return 0;
  pthread_cond_destroy(&t->cv);
  pthread_mutex_destroy(&t->mu);
  return -1;
}

void mon_bgthread_stop(mon_bgthread *t) {
  pthread_mutex_lock(&t->mu);
  t->quit = true;
  pthread_cond_signal(&t->cv);
  pthread_mutex_unlock(&t->mu);
  pthread_join(t->thread, NULL);
  pthread_cond_destroy(&t->cv);
  pthread_mutex_destroy(&t->mu);
}

/* alert.c — the webhook alerter: events become JSON bodies in a bounded
 * queue on the caller's side; the alerter thread POSTs them one at a time
 * with libcurl, retrying with exponential backoff. The restart burst rule
 * is a pure function over the last restart times kept per service. */
#include "alert.h"

#include "bgthread.h"
#include "config.h"
#include "mon_sys.h"
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define ALERT_DETAIL_MAX 1024   /* bytes of detail posted */
#define ALERT_SERVICES_MAX 1024 /* services whose restarts are tracked */
#define ALERT_CONNECT_MS 2000
#define ALERT_TOTAL_MS 5000

/* The last restart times of one service, for the burst rule. */
typedef struct alert_restarts {
  char name[MON_NAME_MAX + 1];
  int64_t t[MON_ALERT_RESTARTS]; /* ring */
  size_t n, head;                /* n <= MON_ALERT_RESTARTS */
  uint64_t used;                 /* for eviction when the table is full */
} alert_restarts;

struct mon_alerter {
  mon_bgthread bg; /* bg.mu guards everything below but quit_now */
  char *url;       /* NULL: alerts off */
  char **q;        /* ring of JSON bodies */
  size_t qcap, qhead, qlen;
  int backoff_ms; /* first retry delay */
  bool busy;      /* a body is in flight or between its tries */
  bool said_drop; /* the first drop was reported on stderr */
  bool said_fail; /* a failure was reported; quiet until a success */
  mon_alert_stats st;
  alert_restarts *rs; /* per service, up to ALERT_SERVICES_MAX */
  size_t nrs;
  uint64_t uses;
  char host[256];       /* gethostname, once */
  atomic_bool quit_now; /* read by curl's progress callback */
};

int mon_alert_restart_fifth(const int64_t *earlier, size_t n, int64_t now_ms) {
  size_t inside = 0;
  for (size_t k = 0; k < n; k++)
    /* unsigned: the difference of any two int64 fits */
    if (earlier[k] > now_ms ||
        (uint64_t)now_ms - (uint64_t)earlier[k] < MON_ALERT_WINDOW_MS)
      inside++;
  return inside == MON_ALERT_RESTARTS - 1;
}

static int64_t alert_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A JSON string of at most max bytes of s; bytes that would make it
 * invalid UTF-8 (jansson refuses those) become '?'. */
static json_t *alert_jstr(const char *s, size_t max) {
  if (!s)
    s = "";
  size_t len = strnlen(s, max);
  json_t *j = json_stringn(s, len);
  if (j)
    return j;
  char *c = mon__malloc(len + 1);
  if (!c)
    return NULL;
  for (size_t k = 0; k < len; k++)
    c[k] = (unsigned char)s[k] < 0x80 ? s[k] : '?';
  j = json_stringn(c, len); /* NUL-free ASCII now */
  free(c);
  return j;
}

/* The body of one alert, malloc'd; NULL out of memory. */
static char *alert_body(const mon_alerter *a, const char *service,
                        const char *kind, const char *detail, int64_t ts_ms) {
  json_t *o = json_object();
  if (!o)
    return NULL;
  char *out = NULL;
  if (json_object_set_new(o, "service", alert_jstr(service, 256)) == 0 &&
      json_object_set_new(o, "kind", alert_jstr(kind, 64)) == 0 &&
      json_object_set_new(o, "detail", alert_jstr(detail, ALERT_DETAIL_MAX)) ==
          0 &&
      json_object_set_new(o, "ts_ms", json_integer(ts_ms)) == 0 &&
      json_object_set_new(o, "host", alert_jstr(a->host, sizeof a->host)) == 0)
    out = json_dumps(o, JSON_COMPACT);
  json_decref(o);
  return out;
}

/* Called with mu held: queues body (owned from now on), dropping the
 * oldest when full. */
static void alert_push_locked(mon_alerter *a, char *body) {
  if (!a->url) {
    free(body);
    a->st.dropped++;
    return;
  }
  if (a->qlen == a->qcap) {
    free(a->q[a->qhead]);
    a->qhead = (a->qhead + 1) % a->qcap;
    a->qlen--;
    a->st.dropped++;
    if (!a->said_drop)
      fprintf(stderr,
              "svc-monitor: alert queue full (%zu): dropping the oldest "
              "alerts (said once)\n",
              a->qcap);
    a->said_drop = true;
  }
  a->q[(a->qhead + a->qlen) % a->qcap] = body;
  a->qlen++;
  a->st.queued++;
  pthread_cond_signal(&a->bg.cv);
}

static void alert_drop_queue_locked(mon_alerter *a) {
  for (; a->qlen; a->qlen--) {
    free(a->q[a->qhead]);
    a->qhead = (a->qhead + 1) % a->qcap;
    a->st.dropped++;
  }
}

/* Called with mu held: the restart times of service, NULL when it cannot
 * be tracked (out of memory). A full table forgets its least used entry. */
static alert_restarts *alert_restarts_of(mon_alerter *a, const char *service) {
  alert_restarts *r = NULL;
  for (size_t k = 0; k < a->nrs; k++)
    if (!strcmp(a->rs[k].name, service)) {
      r = &a->rs[k];
      r->used = ++a->uses;
      return r;
    }
  if (a->nrs < ALERT_SERVICES_MAX) {
    alert_restarts *nr = mon__realloc(a->rs, (a->nrs + 1) * sizeof *nr);
    if (!nr)
      return NULL;
    a->rs = nr;
    r = &a->rs[a->nrs++];
  } else {
    r = &a->rs[0];
    for (size_t k = 1; k < a->nrs; k++)
      if (a->rs[k].used < r->used)
        r = &a->rs[k];
  }
  memset(r, 0, sizeof *r);
  snprintf(r->name, sizeof r->name, "%s", service);
  r->used = ++a->uses;
  return r;
}

/* Called with mu held: records a restart; 1 when it makes the burst. */
static int alert_restart_locked(mon_alerter *a, const char *service,
                                int64_t ts_ms) {
  alert_restarts *r = alert_restarts_of(a, service);
  if (!r)
    return 0;
  int fire = mon_alert_restart_fifth(r->t, r->n, ts_ms);
  r->t[(r->head + r->n) % MON_ALERT_RESTARTS] = ts_ms;
  if (r->n < MON_ALERT_RESTARTS)
    r->n++;
  else
    r->head = (r->head + 1) % MON_ALERT_RESTARTS;
  return fire;
}

void mon_alerter_event(mon_alerter *a, const char *service, const char *kind,
                       const char *detail, int64_t ts_ms) {
  if (!a || !kind)
    return;
  if (!service)
    service = "";
  bool restart = strcmp(kind, "restart") == 0;
  if (!restart && strcmp(kind, "fatal") != 0 && strcmp(kind, "health") != 0 &&
      strcmp(kind, "memory") != 0)
    return;
  char burst[ALERT_DETAIL_MAX];
  if (restart) {
    pthread_mutex_lock(&a->bg.mu);
    /* counted even while alerts are off, so turning them on mid-burst
     * neither misses nor repeats it */
    int fire = alert_restart_locked(a, service, ts_ms) && a->url;
    pthread_mutex_unlock(&a->bg.mu);
    if (!fire)
      return;
    snprintf(burst, sizeof burst, "%d restarts within %d minutes (last: %s)",
             MON_ALERT_RESTARTS, MON_ALERT_WINDOW_MS / 60000,
             detail ? detail : "");
    kind = "restarts";
    detail = burst;
  }
  /* built outside the lock: the thread may be copying the URL meanwhile */
  char *body = alert_body(a, service, kind, detail, ts_ms);
  pthread_mutex_lock(&a->bg.mu);
  if (body)
    alert_push_locked(a, body);
  else
    a->st.dropped++;
  pthread_mutex_unlock(&a->bg.mu);
}

/* ---- the sending thread ---- */

static size_t alert_discard(char *p, size_t size, size_t n, void *arg) {
  (void)p;
  (void)arg;
  return size * n; /* the receiver's answer body is of no use */
}

static int alert_progress(void *arg, curl_off_t dt, curl_off_t dn,
                          curl_off_t ut, curl_off_t un) {
  (void)dt;
  (void)dn;
  (void)ut;
  (void)un;
  mon_alerter *a = arg;
  return atomic_load(&a->quit_now) ? 1 : 0; /* 1 aborts the transfer */
}

typedef enum { ALERT_DONE, ALERT_RETRY, ALERT_GIVE_UP } alert_outcome;

/* One POST of body to url; why gets a short reason when it is not DONE. */
static alert_outcome alert_post(mon_alerter *a, const char *url,
                                const char *body, char *why, size_t len) {
  CURL *c = curl_easy_init();
  struct curl_slist *h = curl_slist_append(NULL, "Content-Type: "
                                                 "application/json");
  struct curl_slist *h2 = h ? curl_slist_append(h, "Expect:") : NULL;
  if (!c || !h2) {
    if (c)
      curl_easy_cleanup(c);
    curl_slist_free_all(h);
    snprintf(why, len, "out of memory");
    return ALERT_RETRY;
  }
  h = h2;
  CURLcode rc = CURLE_OK;
#define ALERT_SET(opt, val)                                                    \
  if (rc == CURLE_OK)                                                          \
  rc = curl_easy_setopt(c, opt, val)
  ALERT_SET(CURLOPT_URL, url);
  ALERT_SET(CURLOPT_PROTOCOLS_STR, "http");
  ALERT_SET(CURLOPT_REDIR_PROTOCOLS_STR, "http");
  ALERT_SET(CURLOPT_FOLLOWLOCATION, 0L);
  ALERT_SET(CURLOPT_NOPROXY, "*");
  ALERT_SET(CURLOPT_NOSIGNAL, 1L);
  ALERT_SET(CURLOPT_CONNECTTIMEOUT_MS, (long)ALERT_CONNECT_MS);
  ALERT_SET(CURLOPT_TIMEOUT_MS, (long)ALERT_TOTAL_MS);
  ALERT_SET(CURLOPT_HTTPHEADER, h);
  ALERT_SET(CURLOPT_POSTFIELDS, body);
  ALERT_SET(CURLOPT_POSTFIELDSIZE, (long)strlen(body));
  ALERT_SET(CURLOPT_USERAGENT, "svc-monitor");
  ALERT_SET(CURLOPT_WRITEFUNCTION, alert_discard);
  ALERT_SET(CURLOPT_XFERINFOFUNCTION, alert_progress);
  ALERT_SET(CURLOPT_XFERINFODATA, (void *)a);
  ALERT_SET(CURLOPT_NOPROGRESS, 0L);
#undef ALERT_SET
  alert_outcome out = ALERT_GIVE_UP;
  if (rc != CURLE_OK) {
    snprintf(why, len, "curl: %s", curl_easy_strerror(rc));
  } else if ((rc = curl_easy_perform(c)) != CURLE_OK) {
    snprintf(why, len, "%s", curl_easy_strerror(rc));
    /* a bad URL or scheme stays bad; anything else may pass later */
    out = rc == CURLE_UNSUPPORTED_PROTOCOL || rc == CURLE_URL_MALFORMAT
              ? ALERT_GIVE_UP
              : ALERT_RETRY;
  } else {
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    snprintf(why, len, "HTTP %ld", code);
    if (code >= 200 && code <= 299)
      out = ALERT_DONE;
    else if (code >= 500 || code == 408 || code == 429)
      out = ALERT_RETRY;
  }
  curl_slist_free_all(h);
  curl_easy_cleanup(c);
  return out;
}

/* Called with mu held: waits until deadline (monotonic ms) or quit. */
static void alert_sleep_locked(mon_alerter *a, int64_t deadline) {
  while (!a->bg.quit) {
    int64_t now = alert_now_ms();
    if (now >= deadline)
      return;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t left = deadline - now;
    ts.tv_sec += left / 1000;
    ts.tv_nsec += (left % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000;
    }
    pthread_cond_clockwait(&a->bg.cv, &a->bg.mu, CLOCK_MONOTONIC, &ts);
  }
}

/* Sends one body with its retries; called and returns with mu held. */
static void alert_deliver_locked(mon_alerter *a, char *body) {
  alert_outcome out = ALERT_RETRY;
  char why[256] = "";
  for (int k = 0; k < MON_ALERT_TRIES && out == ALERT_RETRY; k++) {
    if (k > 0)
      alert_sleep_locked(a,
                         alert_now_ms() + ((int64_t)a->backoff_ms << (k - 1)));
    if (a->bg.quit || !a->url)
      break; /* stopping, or alerts were turned off meanwhile */
    char *url = mon__strdup(a->url);
    pthread_mutex_unlock(&a->bg.mu);
    if (url)
      out = alert_post(a, url, body, why, sizeof why);
    else
      snprintf(why, sizeof why, "out of memory");
    free(url);
    pthread_mutex_lock(&a->bg.mu);
  }
  if (out == ALERT_DONE) {
    a->st.sent++;
    if (a->said_fail)
      fprintf(stderr, "svc-monitor: alerts are delivered again\n");
    a->said_fail = false;
  } else if (out == ALERT_RETRY && (a->bg.quit || !a->url)) {
    a->st.dropped++; /* cut short, not refused */
  } else {
    a->st.failed++;
    if (!a->said_fail)
      fprintf(stderr,
              "svc-monitor: alert_webhook: gave up on an alert (%s); "
              "quiet until one gets through\n",
              why);
    a->said_fail = true;
  }
  free(body);
}

static void *alert_main(void *arg) {
  mon_alerter *a = arg;
  pthread_mutex_lock(&a->bg.mu);
  while (!a->bg.quit) {
    if (a->qlen == 0) {
      pthread_cond_wait(&a->bg.cv, &a->bg.mu);
      continue;
    }
    char *body = a->q[a->qhead];
    a->qhead = (a->qhead + 1) % a->qcap;
    a->qlen--;
    a->busy = true;
    alert_deliver_locked(a, body);
    a->busy = false;
  }
  pthread_mutex_unlock(&a->bg.mu);
  return NULL;
}

static pthread_once_t alert_curl_once = PTHREAD_ONCE_INIT;
static CURLcode alert_curl_rc;
static void alert_curl_init(void) {
  alert_curl_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

mon_alerter *mon_alerter_new_ex(const char *url, int backoff_ms,
                                size_t queue_max) {
  pthread_once(&alert_curl_once, alert_curl_init);
  if (alert_curl_rc != CURLE_OK)
    return NULL;
  mon_alerter *a = mon__calloc(1, sizeof *a);
  if (!a)
    return NULL;
  a->backoff_ms = backoff_ms > 0 ? backoff_ms : MON_ALERT_BACKOFF_MS;
  a->qcap = queue_max ? queue_max : MON_ALERT_QUEUE_MAX;
  a->q = mon__calloc(a->qcap, sizeof *a->q);
  a->url = url ? mon__strdup(url) : NULL;
  if (!a->q || (url && !a->url))
    goto fail;
  if (gethostname(a->host, sizeof a->host) != 0)
    snprintf(a->host, sizeof a->host, "unknown");
  a->host[sizeof a->host - 1] = '\0'; /* truncation need not terminate */
  atomic_init(&a->quit_now, false);
  if (mon_bgthread_start(&a->bg, alert_main, a) != 0)
    goto fail;
  return a;
fail:
  free(a->url);
  free(a->q);
  free(a);
  return NULL;
}

mon_alerter *mon_alerter_new(const char *url) {
  return mon_alerter_new_ex(url, 0, 0);
}

void mon_alerter_free(mon_alerter *a) {
  if (!a)
    return;
  atomic_store(&a->quit_now, true); /* aborts a POST in flight */
  mon_bgthread_stop(&a->bg);        /* wakes a retry wait; joins */
  for (size_t k = 0; k < a->qlen; k++)
    free(a->q[(a->qhead + k) % a->qcap]); /* never sent */
  free(a->q);
  free(a->rs);
  free(a->url);
  free(a);
}

void mon_alerter_set_url(mon_alerter *a, const char *url) {
  if (!a)
    return;
  char *copy = url ? mon__strdup(url) : NULL;
  if (url && !copy) {
    fprintf(stderr, "svc-monitor: alert_webhook: out of memory, alerts off\n");
  }
  pthread_mutex_lock(&a->bg.mu);
  char *old = a->url;
  a->url = copy;
  if (!copy)
    alert_drop_queue_locked(a);
  pthread_cond_signal(&a->bg.cv);
  pthread_mutex_unlock(&a->bg.mu);
  free(old);
}

void mon_alerter_stats(mon_alerter *a, mon_alert_stats *out) {
  memset(out, 0, sizeof *out);
  if (!a)
    return;
  pthread_mutex_lock(&a->bg.mu);
  *out = a->st;
  out->pending = a->qlen + (a->busy ? 1 : 0);
  pthread_mutex_unlock(&a->bg.mu);
}

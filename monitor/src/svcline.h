/* svcline.h — recognises the one-line scaling and worker-replacement notes
 * that libsvc's worker master writes on stderr, so the monitor can record
 * them as events. A pure function over one captured line. */
#ifndef MON_SVCLINE_H
#define MON_SVCLINE_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MON_SVCLINE_KIND_MAX 16
#define MON_SVCLINE_DETAIL_MAX 128

/* line (len bytes, need not be NUL-terminated, may hold anything):
 *   "svc[NAME]: scale up: 2 workers (cpu 93% over 5 s)"
 *     -> kind "scale", detail "up: 2 workers (cpu 93% over 5 s)"
 *   "svc[NAME]: worker 123 killed by signal 9; replacing"
 *   "svc[NAME]: worker 123 exited with code 1; replacing"
 *     -> kind "worker", detail "worker 123 killed by signal 9; replacing"
 * A trailing '\r' is ignored. Returns 1 and fills kind/detail (detail
 * truncated to fit, NUL-terminated) on a match, else 0. Never reads past
 * len. */
int mon_svcline_parse(const char *line, size_t len,
                      char kind[MON_SVCLINE_KIND_MAX],
                      char detail[MON_SVCLINE_DETAIL_MAX]);

#ifdef __cplusplus
}
#endif
#endif

/* render_svg.h — server-rendered SVG line charts for the dashboard: no
 * script, no CDN; presentation attributes only, so the page's CSP
 * (default-src 'self') needs no 'unsafe-inline'. */
#ifndef MON_RENDER_SVG_H
#define MON_RENDER_SVG_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum mon_unit {
  MON_U_PERCENT,
  MON_U_BYTES,
  MON_U_BPS,
  MON_U_NS /* a duration in nanoseconds: "850 ns", "1.2 us", "3.4 ms" */
} mon_unit;

typedef struct mon_series {
  const int64_t *ts; /* ms */
  const double *v;   /* NaN = no value (gap) */
  size_t n;
  const char *color; /* an SVG colour literal, e.g. "#3b82f6" */
  const char *label; /* escaped on output */
} mon_series;

typedef struct mon_chart {
  int width, height; /* pixels */
  int64_t from, to;  /* x range, ms */
  int64_t gap_ms;    /* a jump larger than this breaks the line */
  mon_unit unit;
  const char *title; /* escaped on output; NULL for a sparkline */
} mon_chart;

/* Appends an <svg> element. A sparkline (title NULL) has no axes. */
void mon_svg_chart(mon_buf *b, const mon_chart *c, const mon_series *s,
                   size_t ns);
/* "12.3 MiB", "4.5 %", "1.2 KiB/s", "1.2 ms" */
void mon_fmt_value(char *out, size_t cap, double v, mon_unit u);

#ifdef __cplusplus
}
#endif
#endif

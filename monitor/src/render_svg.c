/* render_svg.c — draws time series as SVG paths: y from 0 to a rounded
 * maximum, x over the requested window; missing samples break the line
 * instead of being drawn as zero. */
#include "render_svg.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

void mon_fmt_value(char *out, size_t cap, double v, mon_unit u) {
  if (isnan(v)) {
    snprintf(out, cap, "-");
    return;
  }
  if (u == MON_U_PERCENT) {
    snprintf(out, cap, "%.1f %%", v);
    return;
  }
  if (u == MON_U_NS) {
    static const char *const t[] = {"ns", "us", "ms", "s"};
    int k = 0;
    while (fabs(v) >= 1000 && k < 3) {
      v /= 1000;
      k++;
    }
    snprintf(out, cap, k ? "%.1f %s" : "%.0f %s", v, t[k]);
    return;
  }
  static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int k = 0;
  while (fabs(v) >= 1024 && k < 4) {
    v /= 1024;
    k++;
  }
  snprintf(out, cap, k ? "%.1f %s%s" : "%.0f %s%s", v, units[k],
           u == MON_U_BPS ? "/s" : "");
}

/* The y axis top: 1, 2, 5 x 10^k for percent and durations, a power of
 * two for bytes. */
static double svg_nice_max(double v, mon_unit u) {
  if (!(v > 0))
    return u == MON_U_PERCENT ? 100 : u == MON_U_NS ? 1000 : 1024;
  if (u != MON_U_PERCENT && u != MON_U_NS) {
    double p = 1;
    while (p < v)
      p *= 2;
    return p;
  }
  double p = pow(10, floor(log10(v)));
  static const double m[] = {1, 2, 5, 10};
  for (int i = 0; i < 4; i++)
    if (p * m[i] >= v)
      return p * m[i];
  return v;
}

static void svg_rel_time(char *out, size_t cap, int64_t span_ms) {
  if (span_ms >= 3600000)
    snprintf(out, cap, "-%lld h", (long long)(span_ms / 3600000));
  else
    snprintf(out, cap, "-%lld min", (long long)(span_ms / 60000));
}

void mon_svg_chart(mon_buf *b, const mon_chart *c, const mon_series *s,
                   size_t ns) {
  bool spark = c->title == NULL;
  int w = c->width, h = c->height;
  int left = spark ? 1 : 62, right = spark ? 1 : 8;
  int top = spark ? 2 : 20, bottom = spark ? 2 : 18;
  double pw = w - left - right, ph = h - top - bottom;
  double span = (double)(c->to - c->from);
  if (span <= 0)
    span = 1;
  double vmax = 0;
  for (size_t k = 0; k < ns; k++)
    for (size_t i = 0; i < s[k].n; i++)
      if (!isnan(s[k].v[i]) && s[k].v[i] > vmax)
        vmax = s[k].v[i];
  double ymax = svg_nice_max(vmax, c->unit);

  mon_buf_printf(b,
                 "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"%s\" "
                 "width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
                 "role=\"img\">",
                 spark ? "spark" : "chart", w, h, w, h);
  if (!spark) {
    char lo[32], hi[32], t0[32];
    mon_fmt_value(hi, sizeof hi, ymax, c->unit);
    mon_fmt_value(lo, sizeof lo, 0, c->unit);
    svg_rel_time(t0, sizeof t0, c->to - c->from);
    mon_buf_puts(b, "<text x=\"4\" y=\"13\" font-size=\"12\" "
                    "font-weight=\"bold\" fill=\"#222\">");
    mon_buf_html(b, c->title, strlen(c->title));
    mon_buf_puts(b, "</text>");
    mon_buf_printf(b,
                   "<rect x=\"%d\" y=\"%d\" width=\"%.0f\" height=\"%.0f\" "
                   "fill=\"#fafafa\" stroke=\"#ccc\"/>",
                   left, top, pw, ph);
    for (int g = 1; g < 4; g++)
      mon_buf_printf(b,
                     "<line x1=\"%d\" x2=\"%.0f\" y1=\"%.1f\" y2=\"%.1f\" "
                     "stroke=\"#eee\"/>",
                     left, left + pw, top + ph * g / 4, top + ph * g / 4);
    mon_buf_printf(b,
                   "<text x=\"%d\" y=\"%d\" font-size=\"10\" fill=\"#555\" "
                   "text-anchor=\"end\">%s</text>",
                   left - 4, top + 9, hi);
    mon_buf_printf(b,
                   "<text x=\"%d\" y=\"%.0f\" font-size=\"10\" fill=\"#555\" "
                   "text-anchor=\"end\">%s</text>",
                   left - 4, top + ph, lo);
    mon_buf_printf(b,
                   "<text x=\"%d\" y=\"%d\" font-size=\"10\" "
                   "fill=\"#555\">%s</text>"
                   "<text x=\"%.0f\" y=\"%d\" font-size=\"10\" fill=\"#555\" "
                   "text-anchor=\"end\">now</text>",
                   left, h - 4, t0, left + pw, h - 4);
  }
  for (size_t k = 0; k < ns; k++) {
    const mon_series *se = &s[k];
    mon_buf_printf(b,
                   "<path fill=\"none\" stroke=\"%s\" stroke-width=\"%s\" d=\"",
                   se->color, spark ? "1.2" : "1.5");
    bool pen = false;
    int64_t prev = 0;
    for (size_t i = 0; i < se->n; i++) {
      double v = se->v[i];
      if (isnan(v) || se->ts[i] < c->from || se->ts[i] > c->to) {
        pen = false;
        continue;
      }
      if (pen && c->gap_ms > 0 && se->ts[i] - prev > c->gap_ms)
        pen = false;
      double x = left + pw * (double)(se->ts[i] - c->from) / span;
      double y = top + ph - ph * (v > ymax ? 1 : v / ymax);
      mon_buf_printf(b, "%c%.1f %.1f", pen ? 'L' : 'M', x, y);
      pen = true;
      prev = se->ts[i];
    }
    mon_buf_puts(b, "\"/>");
    if (!spark && se->label) {
      mon_buf_printf(b,
                     "<text x=\"%.0f\" y=\"13\" font-size=\"10\" fill=\"%s\" "
                     "text-anchor=\"end\">",
                     left + pw - 70.0 * (double)(ns - 1 - k), se->color);
      mon_buf_html(b, se->label, strlen(se->label));
      mon_buf_puts(b, "</text>");
    }
  }
  mon_buf_puts(b, "</svg>");
}

# latency.gp — plots round-trip latency (p50) against payload size, log-log,
# one line per transport, from the latency.dat that report.py writes.
# usage: gnuplot -e "datafile='latency.dat'; outfile='latency.svg'; ncols=9" latency.gp
# (ncols = columns in datafile, the size column included)
if (!exists("datafile")) datafile = "latency.dat"
if (!exists("outfile")) outfile = "latency.svg"
if (!exists("ncols")) ncols = 9

set terminal svg size 900,600 dynamic enhanced font "sans,12" background "white"
set output outfile
set title "Round-trip latency (p50) against payload size"
set xlabel "payload each way"
set ylabel "round trip, µs"
set logscale xy
set grid xtics ytics mytics
set key top left box opaque
set datafile missing "?"
set xtics ("16 B" 16, "64 B" 64, "256 B" 256, "4 KiB" 4096, "64 KiB" 65536, \
           "1 MiB" 1048576, "16 MiB" 16777216)
set format y "%g"

# Raw baselines dashed, libsvc solid and thick: the header names say which.
is_svc(i) = strstrt(word(header, i), "svc-") > 0
header = system("head -1 '" . datafile . "'")
plot for [i=2:ncols] datafile using 1:i with linespoints \
     dashtype (is_svc(i) ? 1 : 2) linewidth (is_svc(i) ? 2.5 : 1.2) \
     pointtype (i - 1) title columnheader(i)

# latency.gp — plots round-trip latency (p50) against payload size, log-log,
# one line per transport, from the latency.dat that report.py writes.
# usage: gnuplot -e "datafile='latency.dat'; outfile='latency.svg'; ncols=11" latency.gp
# (bench_peers' peers.dat too, with plottitle set)
# (ncols = columns in datafile, the size column included)
if (!exists("datafile")) datafile = "latency.dat"
if (!exists("outfile")) outfile = "latency.svg"
if (!exists("ncols")) ncols = 11

set terminal svg size 1000,600 dynamic enhanced font "sans,12" background "white"
set output outfile
if (!exists("plottitle")) plottitle = "Round-trip latency (p50) against payload size"
set title plottitle
set xlabel "payload each way"
set ylabel "round trip, µs"
set logscale xy
set grid xtics ytics mytics
set key outside right top box
set datafile missing "?"
set xtics ("16 B" 16, "64 B" 64, "256 B" 256, "4 KiB" 4096, "64 KiB" 65536, \
           "1 MiB" 1048576, "16 MiB" 16777216)
set format y "%g"

set xrange [10:30000000]

# Raw baselines dashed, libsvc solid and thick: the header names say which.
# A fixed colour per transport name, so every report looks the same.
header = system("head -1 '" . datafile . "'")
is_svc(i) = strstrt(word(header, i), "svc-") > 0
names = "pipe unix tcp futex spin svc-shm svc-unix svc-tcp svc-shm-prep " . \
        "iceoryx-poll iceoryx-waitset zmq-ipc zmq-tcp nng-ipc nng-tcp grpc-unix " . \
        "svc-tls"
colors = "#7f7f7f #1f77b4 #2ca02c #9467bd #000000 #d62728 #17becf #ff7f0e #8c564b " . \
         "#e377c2 #f7b6d2 #2ca02c #98df8a #1f77b4 #aec7e8 #9467bd " . \
         "#ffbb78"
index_of(n) = sum [k=1:words(names)] (word(names, k) eq n ? k : 0)
color(i) = index_of(word(header, i)) > 0 ? word(colors, index_of(word(header, i))) : "#bcbd22"
plot for [i=2:ncols] datafile using 1:i with linespoints \
     dashtype is_svc(i) ? 1 : 2 linewidth (is_svc(i) ? 2.5 : 1.2) \
     linecolor rgb color(i) pointtype (i - 1) title columnheader(i)

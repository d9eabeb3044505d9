#!/usr/bin/env bash
# measure.sh — the monitor's two performance targets, measured:
#  1. sampling 50 services at 1 Hz costs < 2% of one core: runs svc-monitor
#     with 50 `sleep` services for SECONDS and reads its utime+stime;
#  2. the dashboard answers < 100 ms with 24 h of data: the same monitor
#     runs on a store pre-filled by svcmon_synth, and curl times the pages.
# usage: monitor/tests/measure.sh BUILD_DIR [SECONDS=60]
set -euo pipefail
build=$(cd "$1" && pwd); secs=${2:-60}
dir=$(mktemp -d /tmp/svcmon-measure.XXXXXX)
trap 'kill $mon 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"' EXIT
"$build/monitor/tests/svcmon_synth" "$dir/m.sqlite" 50 24
{
  printf '[monitor]\nhttp = 127.0.0.1:0\ndb = %s/m.sqlite\nlog_dir = %s/logs\n' "$dir" "$dir"
  printf 'token_file = %s/token\nsample_interval_ms = 1000\n' "$dir"
  for i in $(seq 0 49); do
    printf '[service.svc-%d]\ncommand = sleep 100000\n' "$i"
  done
} > "$dir/m.ini"
"$build/monitor/svc-monitor" --config "$dir/m.ini" > "$dir/out" 2>&1 &
mon=$!
for _ in $(seq 100); do grep -q dashboard "$dir/out" && break; sleep 0.1; done
port=$(grep -o '127.0.0.1:[0-9]*' "$dir/out" | head -1 | cut -d: -f2)
sleep 5 # start-up (50 spawns) is not the steady state
tck=$(getconf CLK_TCK)
cpu() { awk '{ s = $0; sub(/.*\) /, "", s); split(s, f, " "); print f[12] + f[13] }' "/proc/$mon/stat"; }
c0=$(cpu); t0=$(date +%s.%N)
sleep "$secs"
c1=$(cpu); t1=$(date +%s.%N)
awk -v c0="$c0" -v c1="$c1" -v t0="$t0" -v t1="$t1" -v hz="$tck" 'BEGIN {
  printf "sampling 50 services at 1 Hz: %.2f%% of one core (%d ticks in %.1f s)\n",
         100 * (c1 - c0) / hz / (t1 - t0), c1 - c0, t1 - t0 }'
for path in / /service/svc-7 "/api/services/svc-7/metrics?from=$(( ($(date +%s) - 86400) * 1000 ))" /metrics; do
  best=9; for _ in 1 2 3 4 5; do
    t=$(curl -s -o /dev/null -w '%{time_total}' "http://127.0.0.1:$port$path")
    best=$(awk -v a="$best" -v b="$t" 'BEGIN { print (b < a) ? b : a }')
  done
  printf 'GET %-60s best of 5: %.1f ms\n' "$path" "$(awk -v t="$best" 'BEGIN { print t * 1000 }')"
done

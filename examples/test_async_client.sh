#!/usr/bin/env bash
# test_async_client.sh — ctest for examples/async_client.c: starts
# echo_server and kv_server (shm://, unique names, ports picked free) in a
# private runtime dir, runs the example against both, and checks that every
# call came back with its own reply.
#   test_async_client.sh BUILD_EXAMPLES_DIR
set -euo pipefail
bin=$1
rt=$(mktemp -d /tmp/svc-example.XXXXXX)
chmod 700 "$rt"
export SVC_RUNTIME_DIR=$rt
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$rt"; }
trap cleanup EXIT
port=$((20000 + $$ % 20000))
"$bin/echo_server" "echo-$$" "$port" 2>"$rt/echo.log" & pids+=($!)
"$bin/kv_server" "kv-$$" "$((port + 1))" 2>"$rt/kv.log" & pids+=($!)
for _ in $(seq 100); do
  [[ -S $rt/echo-$$.sock && -S $rt/kv-$$.sock ]] && break
  sleep 0.05
done
out=$(timeout 20 "$bin/async_client" "shm://echo-$$" "shm://kv-$$" 20)
n_echo=$(grep -c '^shm://echo-[0-9]* echo #[0-9]* -> "hello [0-9]*"$' <<<"$out" || true)
n_get=$(grep -c '^shm://kv-[0-9]* get #[0-9]* -> "value-[0-9]*"$' <<<"$out" || true)
# Each reply is its own call's: "echo #N" -> "hello N", "get #2K+1" -> "value-K".
bad=$(awk '/ echo #/ { n = $3; sub("#", "", n); if ($5 != "\"hello" || $6 != n "\"") print }
           / get #/  { n = $3; sub("#", "", n); if ($5 != "\"value-" int(n / 2) "\"") print }' <<<"$out")
if [[ $n_echo != 20 || $n_get != 10 || -n $bad ]]; then
  echo "test_async_client: unexpected output (echo $n_echo/20, get $n_get/10):" >&2
  echo "$out" >&2
  [[ -n $bad ]] && echo "mismatched: $bad" >&2
  exit 1
fi
echo "test_async_client: 20 echo and 20 kv calls, each with its own reply"

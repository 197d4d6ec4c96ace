#!/usr/bin/env bash
# Concurrent calls with prompt audio, measured by our own load generator
# (benches/loadgen.rs): probe calls time every RTP packet they receive.
#
#   bench/loadgen.sh CALLS SECONDS [PROBES] [SETUP_RATE] [churn]
#
# Prints the load generator's report and the server's CPU time and peak RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
calls=${1:?calls}; secs=${2:?seconds}; probes=${3:-3}; rate=${4:-500}; mode=${5:-hold}
cargo bench -q --bench loadgen --no-run
source bench/server.sh 5092
start_cpu=$(awk '{print $14 + $15}' "/proc/$server/stat")
cargo bench -q --bench loadgen -- 127.0.0.1:5092 "$calls" "$secs" "$probes" "$rate" "$mode" &
gen=$!
watch_server "$gen"
# The floor, measured in the same run with the server stopped: a minimal C
# sender/receiver pair pacing the same number of streams (bench/floor.c).
if [ "$mode" = hold ] && command -v gcc >/dev/null; then
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    gcc -O2 -pthread -o "$work/floor" bench/floor.c
    "$work/floor" "$calls" "$secs"
fi

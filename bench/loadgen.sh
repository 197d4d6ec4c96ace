#!/usr/bin/env bash
# Concurrent calls with prompt audio, measured by our own load generator
# (benches/loadgen.rs): probe calls time every RTP packet they receive and,
# when callers send audio too, how soon a key press starts the next prompt.
#
#   bench/loadgen.sh CALLS SECONDS [PROBES] [SETUP_RATE] [hold|churn] [oneway|both]
#
# both (the default): every caller also sends 50 RTP packets/s, as on a trunk;
# oneway: only the server sends audio (the benchmark before issue 9).
# LOADGEN_SOURCES=distinct: every call's media from its own address (see below).
# Prints the load generator's report, the server's CPU time and peak RSS and
# what its log says about overload, then (hold mode) the floor of the same
# run: bench/floor.c pacing the same number of streams in each direction.
set -euo pipefail
cd "$(dirname "$0")/.."
calls=${1:?calls}; secs=${2:?seconds}; probes=${3:-3}; rate=${4:-500}; mode=${5:-hold}; media=${6:-both}
case "$media" in oneway|both) ;; *) echo "media: oneway or both" >&2; exit 2 ;; esac
cargo bench -q --bench loadgen --no-run
# LOADGEN_SOURCES=distinct: each bulk call's media comes from its own
# loopback address (127.1.x.y), as calls on a trunk do — what a server with
# `rtp_shared_port` tells them apart by. The generator then listens on all
# addresses, so the whole run goes into a network namespace of its own whose
# only interface is loopback (needs root, as `unshare --net` does).
if [ "${LOADGEN_SOURCES:-}" = distinct ] && [ -z "${LOADGEN_NETNS:-}" ]; then
    CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ivr-target}" cargo build --release -q -p ivr-cli
    exec unshare --net env LOADGEN_NETNS=1 bash -c 'ip link set lo up && exec "$0" "$@"' "$0" "$@"
fi
source bench/server.sh 5092
start_cpu=$(awk '{print $14 + $15}' "/proc/$server/stat")
cargo bench -q --bench loadgen -- 127.0.0.1:5092 "$calls" "$secs" "$probes" "$rate" "$mode" "$media" | tee "$work/gen.out" &
gen=$!
watch_server "$gen"
wait "$gen" || true
echo "server log: $(grep -c 'media clock is overloaded' "$work/err.log" || true) overload warnings (new calls refused), $(grep -c 'has recovered' "$work/err.log" || true) recoveries, $(grep -c ' WARN ' "$work/err.log" || true) warnings in all"
grep -E ' WARN |has recovered' "$work/err.log" | grep -v 'play 200 ms of silence' | cut -c1-200 | head -n 6 || true
# The floor, measured in the same run with the server stopped: a minimal C
# sender/receiver pair pacing as many streams as there were calls up (the
# server may have refused some) in each direction (bench/floor.c).
if [ "$mode" = hold ] && command -v gcc >/dev/null; then
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    up=$(sed -n 's/^calls: \([0-9]*\) established.*/\1/p' "$work/gen.out")
    gcc -O2 -pthread -o "$work/floor" bench/floor.c
    "$work/floor" "${up:-$calls}" "$secs" "$media"
fi

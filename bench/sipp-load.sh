#!/usr/bin/env bash
# Load benchmarks of `ivr serve` with sipp on loopback (not run in CI).
#
#   bench/sipp-load.sh rate  RATE CALLS     # call set-up rate: RATE calls/s, CALLS calls of 1 s
#   bench/sipp-load.sh hold  CALLS SECONDS  # CALLS concurrent calls hearing prompts for SECONDS
#
# Builds the release binary, starts the server on 127.0.0.1 with its own data
# directory, drives it with sipp (tests/sipp/uac_hold.xml), and prints sipp's
# totals and the server's CPU time and peak RSS. Results: docs/PERFORMANCE.md.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:?rate or hold}; a=${2:?}; b=${3:?}
source bench/server.sh 5090
if [ "$mode" = rate ]; then
    args=(-r "$a" -m "$b" -l "$((a * 3))" -d 1000)
else
    args=(-r 500 -m "$a" -l "$a" -d "$((b * 1000))")
fi
start_cpu=$(awk '{print $14 + $15}' "/proc/$server/stat")
sipp 127.0.0.1:5090 -sf tests/sipp/uac_hold.xml -s 962588 -i 127.0.0.1 -p 5091 -mp 40000 \
    -nostdin -timeout 600s -trace_stat -stf "$work/stat.csv" "${args[@]}" > "$work/sipp.log" 2>&1 || true &
sipp_pid=$!
watch_server "$sipp_pid"
[ -f "$work/stat.csv" ] || { tail -n 20 "$work/sipp.log"; exit 1; }
tail -n 1 "$work/stat.csv" | tr ';' '\n' > "$work/last"
header=$(head -n 1 "$work/stat.csv" | tr ';' '\n')
paste <(echo "$header") "$work/last" | grep -E '^(TotalCallCreated|SuccessfulCall\(C\)|FailedCall\(C\)|CallRate\(C\)|ElapsedTime\(C\))' || true
grep -c "call ended" "$work/err.log" | sed 's/^/server call records: /'

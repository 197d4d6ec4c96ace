#!/usr/bin/env bash
# Concurrent calls with prompt audio, measured by our own load generator
# (benches/loadgen.rs): probe calls time every RTP packet they receive.
#
#   bench/loadgen.sh CALLS SECONDS [PROBES]
#
# Prints the load generator's report and the server's CPU time and peak RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ivr-target}"
calls=${1:?calls}; secs=${2:?seconds}; probes=${3:-3}
cargo build --release -q -p ivr-cli
cargo bench -q --bench loadgen --no-run 2>/dev/null
work=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
cp flows/data/quotes.csv "$work/"
cat > "$work/ivr.toml" <<TOML
listen = "127.0.0.1:5092"
rtp_ports = [20000, 39999]
data = "$work"
max_calls = 20000
rate_per_source = 1000000
TOML
"$CARGO_TARGET_DIR/release/ivr" serve --config "$work/ivr.toml" > "$work/out.log" 2> "$work/err.log" &
server=$!
until grep -q "ivr serving" "$work/out.log" 2>/dev/null; do sleep 0.1; done
start_cpu=$(awk '{print $14 + $15}' "/proc/$server/stat")
cargo bench -q --bench loadgen -- 127.0.0.1:5092 "$calls" "$secs" "$probes" 500 &
gen=$!
peak=0
while kill -0 "$gen" 2>/dev/null; do
    rss=$(awk '/VmRSS/ {print $2}' "/proc/$server/status")
    [ "$rss" -gt "$peak" ] && peak=$rss
    sleep 0.5
done
end_cpu=$(awk '{print $14 + $15}' "/proc/$server/stat")
echo "server CPU: $(( (end_cpu - start_cpu) / $(getconf CLK_TCK) )) s, peak RSS: $((peak / 1024)) MiB"

# Sourced by the bench scripts: builds the release binary and starts `ivr serve`
# on loopback port $1 with its own data directory; sets $work and $server, and
# stops the server on exit.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ivr-target}"
cargo build --release -q -p ivr-cli
work=$(mktemp -d)
# BENCH_LOG=FILE keeps the server's log there.
trap 'kill "$server" 2>/dev/null || true; [ -n "${BENCH_LOG:-}" ] && cp "$work/err.log" "$BENCH_LOG"; rm -rf "$work"' EXIT
cp flows/data/quotes.csv "$work/"
cat > "$work/ivr.toml" <<TOML
listen = "127.0.0.1:$1"
rtp_ports = [10000, 29999]  # below the kernel's ephemeral ports (32768–60999)
data = "$work"
max_calls = 20000
rate_per_source = 1000000
# The load generator is one address: it is a trusted proxy here.
trusted_sources = ["127.0.0.1"]
TOML
# More configuration (agents, queues) from the caller of this script.
[ -n "${EXTRA_TOML:-}" ] && cat "$EXTRA_TOML" >> "$work/ivr.toml"
"$CARGO_TARGET_DIR/release/ivr" serve --config "$work/ivr.toml" > "$work/out.log" 2> "$work/err.log" &
server=$!
until grep -q "ivr serving" "$work/out.log" 2>/dev/null; do sleep 0.1; done

# Prints the server's CPU time since $start_cpu (and its main thread's: the
# tokio runtime with the signalling, every call's RTP receive task and half
# of the media tick), its peak RSS and the wall time while $1 runs.
watch_server() {
    local peak=0 rss t0=$SECONDS main0
    main0=$(awk '{print $14 + $15}' "/proc/$server/task/$server/stat")
    while kill -0 "$1" 2>/dev/null; do
        rss=$(awk '/VmRSS/ {print $2}' "/proc/$server/status")
        [ "$rss" -gt "$peak" ] && peak=$rss
        sleep 0.5
    done
    local end_cpu main1 hz
    end_cpu=$(awk '{print $14 + $15}' "/proc/$server/stat")
    main1=$(awk '{print $14 + $15}' "/proc/$server/task/$server/stat")
    hz=$(getconf CLK_TCK)
    awk -v c=$((end_cpu - start_cpu)) -v m=$((main1 - main0)) -v hz="$hz" -v w=$((SECONDS - t0)) -v rss=$((peak / 1024)) \
        'BEGIN { printf "server CPU: %.1f s (main thread %.1f s) over %d s, peak RSS: %d MiB\n", c / hz, m / hz, w, rss }'

}

#!/usr/bin/env bash
# Bridged calls under load (not run in CI): CALLS callers (sipp UAC, PCMU)
# each press 0, are queued, bridged to one of CALLS agents (one sipp UAS
# answering for all of them with -rtp_echo, so every caller's audio goes
# through the relay twice), talk for SECONDS and hang up.
#
#   bench/agents-load.sh CALLS SECONDS [RATE]
#
# Prints sipp's totals on both sides, the ACD's view at mid-run (agents
# talking), the server's CPU time and peak RSS, and the kernel's UDP counters.
set -euo pipefail
cd "$(dirname "$0")/.."
calls=${1:?calls}; secs=${2:?seconds}; rate=${3:-100}
# Two seconds of G.711 bytes for the callers to loop (bench/sipp/uac_agent_hold.xml).
head -c 16000 /dev/zero | tr '\000' '\125' > bench/sipp/load-audio.ulaw
extra=$(mktemp)
{
    echo 'flows = ["tests/agents/agents.ivr"]'
    echo 'admin = "127.0.0.1:18094"'
    for i in $(seq 1 "$calls"); do
        printf '\n[[agents]]\nid = "%d"\nskills = [["general", 5]]\naddress = "sip:%d@127.0.0.1:5095"\nauto_login = true\n' $((10000 + i)) $((10000 + i))
    done
    printf '\n[[queues]]\nname = "general"\nwrap_up_ms = 0\nannounce_every_ms = 0\nring_ms = 10000\n'
} > "$extra"
EXTRA_TOML="$extra" source bench/server.sh 5094
udp() { awk '/^Udp: [0-9]/ {print "InDatagrams " $2 ", RcvbufErrors " $6}' /proc/net/snmp; }
echo "UDP before: $(udp)"
sipp -sf tests/sipp/uas_agent_caller_hangs_up.xml -i 127.0.0.1 -p 5095 -mp 42000 -rtp_echo \
    -m "$calls" -l "$calls" -nostdin -timeout "$((secs + 120))s" -trace_stat -stf "$work/agents.csv" > "$work/agents.log" 2>&1 &
agents=$!
start_cpu=$(awk '{print $14 + $15}' "/proc/$server/stat")
sipp 127.0.0.1:5094 -sf bench/sipp/uac_agent_hold.xml -s 7001 -i 127.0.0.1 -p 5096 -mp 44000 \
    -key key0 /usr/share/sip-tester/dtmf_2833_0.pcap -r "$rate" -m "$calls" -l "$calls" -d "$((secs * 1000))" \
    -nostdin -timeout "$((secs + 120))s" -trace_stat -stf "$work/callers.csv" > "$work/callers.log" 2>&1 &
callers=$!
( sleep "$((calls / rate + secs / 2 + 3))"; curl -s 127.0.0.1:18094/queues > "$work/mid.json" ) &
watch_server "$callers"
wait "$agents" || true
echo "mid-run (ACD): $(tr -d ' \n' < "$work/mid.json" | grep -o '"talking":[0-9]*\|"waiting":[0-9]*' | tr '\n' ' ')"
for side in callers agents; do
    [ -f "$work/$side.csv" ] || { tail -n 20 "$work/$side.log"; continue; }
    header=$(head -n 1 "$work/$side.csv" | tr ';' '\n')
    echo "$side:"
    paste <(echo "$header") <(tail -n 1 "$work/$side.csv" | tr ';' '\n') | grep -E '^(TotalCallCreated|SuccessfulCall\(C\)|FailedCall\(C\))' || true
done
echo "UDP after: $(udp)"
rm -f "$extra"

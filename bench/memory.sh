#!/usr/bin/env bash
# The gateway's peak memory under load (issue 12: "memory is bounded under load").
#
#   bench/memory.sh [SESSIONS] [SIZE] [IDLE]      (defaults 200, 10000000 and 1000)
#
# Run by hand, as root, after `cargo build --release`; needs Postfix's smtp-source and
# smtp-sink (Debian package `postfix`) and python3. Two runs, each on a fresh `ccgate run`
# (bench/lib.sh's instance: one migrated user, next hop smtp-sink, default settings unless
# CC_SMTP_EXTRA adds [smtp] keys):
#
#   1. SESSIONS clients send one SIZE-octet message each, all at once
#      (`smtp-source -s SESSIONS -m SESSIONS -l SIZE`, 80-octet lines); the gateway relays
#      them to smtp-sink meanwhile. Reported: wall time, messages queued (250) and refused
#      (452 4.3.1, past the memory budget), and the peak RSS (VmHWM) once the queue is empty.
#   2. IDLE clients connect, read the greeting and stay idle for 5 s. Reported: RSS with all
#      of them connected, and the peak.

set -euo pipefail
SESSIONS=${1:-200}
SIZE=${2:-10000000}
IDLE=${3:-1000}
N=0
DOMAIN=modern.example.test
source "$(dirname "$0")/lib.sh"

SINK_PORT=$(free_port)
"$SMTP_SINK" -u nobody "127.0.0.1:$SINK_PORT" 1024 & PIDS+=($!)
wait_port "$SINK_PORT" || die "smtp-sink did not start"

kib() { awk -v k="$1" '$1==k":" {print $2}' "/proc/$CC_PID/status"; }
mib() { echo $(( $1 / 1024 )); }
stop() {
    local pid=$CC_PID; CC_PID=""
    kill -TERM "$pid"; wait "$pid" || die "ccgate exited $? on SIGTERM"
}

echo "memory: $SESSIONS x $SIZE-octet messages at once; $IDLE idle connections; $(nproc) cores, $(uname -r)"
echo "ccgate: $CCGATE ${CC_SMTP_EXTRA:+(extra: $CC_SMTP_EXTRA)}"

cc_start 1
echo "  at start: RSS $(mib "$(kib VmRSS)") MiB"
t0=$(now)
"$SMTP_SOURCE" -A -s "$SESSIONS" -m "$SESSIONS" -l "$SIZE" -f bench@client.test -t "rcpt@$DOMAIN" \
    "127.0.0.1:$CC_PORT" > "$W/source.out" 2>&1 || true
t1=$(now)
cc_drain
queued=$(grep -c ' queued queue_id=' "$CC_DIR/ccgate.log" || true)
refused=$(grep -c 'memory budget for messages in transit is used up' "$CC_DIR/ccgate.log" || true)
printf '  %d x %d octets: %.1f s, %d queued, %d refused (452 4.3.1); peak RSS %d MiB\n' \
    "$SESSIONS" "$SIZE" "$(echo "$t1 - $t0" | bc -l)" "$queued" "$refused" "$(mib "$(kib VmHWM)")"
stop

cc_start 2
python3 - "$CC_PORT" "$IDLE" "/proc/$CC_PID/status" <<'PY'
import socket, sys, time
port, n, status = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
def kib(key):
    for line in open(status):
        if line.startswith(key + ":"):
            return int(line.split()[1])
socks, greeted = [], 0
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    socks.append(s)
for s in socks:
    if s.recv(512).startswith(b"220"):
        greeted += 1
time.sleep(5)
print(f"  {n} idle connections, {greeted} greeted with 220: RSS {kib('VmRSS') // 1024} MiB, "
      f"peak {kib('VmHWM') // 1024} MiB")
for s in socks:
    s.close()
PY
stop

#!/usr/bin/env bash
# End-to-end relay benchmark: smtp-source -> gateway -> smtp-sink, ccgate vs Postfix.
#
#   bench/relay.sh [MESSAGES_PER_RUN] [ROUNDS]        (defaults 5000 and 3)
#
# Run by hand (not in CI), as root, after `cargo build --release`. Needs Postfix (smtp-source,
# smtp-sink, postfix). The Postfix instance, the ccgate configuration (one migrated recipient,
# modern next hop smtp://127.0.0.1:SINK) and their start/stop functions live in bench/lib.sh,
# shared with bench/ingest.sh (see bench/README.md), so both benchmarks measure the same setups.
#
# Load: `smtp-source -s 20 -m N -l 4096` (20 sessions, 4 KB, one recipient each).
# Measured, end to end: from smtp-source's start until smtp-sink has counted N more messages
# (`smtp-sink -c` running counter), i.e. received, queued durably, and relayed. The targets
# alternate in every round, each on a fresh queue.

set -euo pipefail

N=${1:-5000}
ROUNDS=${2:-3}
SESSIONS=20
SIZE=4096
DOMAIN=modern.example.test

# The tools and checks, the work folder, the Postfix and ccgate instances: bench/lib.sh.
source "$(dirname "$0")/lib.sh"

# --- the next hop both relay to ---------------------------------------------------------------
SINK_PORT=$(free_port)
"$SMTP_SINK" -c -u nobody "127.0.0.1:$SINK_PORT" 256 > "$W/sink.count" 2>&1 & PIDS+=($!)
wait_port "$SINK_PORT" || die "smtp-sink did not start"
pf_init

# --- one measured run ---------------------------------------------------------------------------
sink_count() { tail -c 200 "$W/sink.count" | tr '\r' '\n' | sed -n 's/.*mesg=\([0-9]*\).*/\1/p' | tail -1; }
measure() {   # $1 = target name, $2 = port
    local t0 t1 before want
    before=$(sink_count); before=${before:-0}; want=$((before + N))
    t0=$(now)
    "$SMTP_SOURCE" -s "$SESSIONS" -m "$N" -l "$SIZE" -f bench@client.test -t "rcpt@$DOMAIN" \
        "127.0.0.1:$2" > "$W/source.out" 2>&1 || { cat "$W/source.out" >&2; die "smtp-source against $1 failed"; }
    local ingest; ingest=$(echo "$(now) - $t0" | bc -l)
    for _ in $(seq 12000); do [ "$(sink_count)" -ge "$want" ] && break; sleep 0.01; done
    t1=$(now)
    [ "$(sink_count)" -ge "$want" ] || die "$1: smtp-sink counted $(( $(sink_count) - before )) of $N"
    local rate; rate=$(echo "$N / ($t1 - $t0)" | bc -l)
    printf '%s %s %.3f %.0f %.3f\n' "$1" "$ROUND" "$(echo "$t1 - $t0" | bc -l)" "$rate" "$ingest" >> "$RESULTS"
    printf '  %-8s %6d msgs  end to end %7.3f s  %6.0f msg/s  (smtp-source done at %.3f s)\n' \
        "$1" "$N" "$(echo "$t1 - $t0" | bc -l)" "$rate" "$ingest"
}

echo "relay: smtp-source -s $SESSIONS -m $N -l $SIZE -> gateway -> smtp-sink, $ROUNDS rounds, $(nproc) cores, $(uname -r)"
echo "ccgate: $CCGATE; postfix $(postconf -d -h mail_version)"
for ROUND in $(seq "$ROUNDS"); do
    echo "round $ROUND"
    cc_start "$ROUND"; measure ccgate "$CC_PORT"; cc_drain; cc_stop
    pf_start yes;      measure postfix "$PF_PORT"; pf_stop
done

CC=$(rate_of ccgate | median); PFR=$(rate_of postfix | median)
echo
printf '| %-8s | %s |\n' target "median msg/s end to end (runs)"
for t in ccgate postfix; do printf '| %-8s | %6.0f (%s) |\n' "$t" "$(rate_of $t | median)" "$(rate_of $t | tr '\n' ' ' | sed 's/ $//')"; done
printf 'ratio ccgate/postfix end to end = %.2f (target >= 2)\n' "$(echo "$CC / $PFR" | bc -l)"

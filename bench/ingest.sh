#!/usr/bin/env bash
# Side-by-side SMTP ingest benchmark: ccgate vs a private Postfix set up as the same relay.
#
#   bench/ingest.sh [MESSAGES_PER_RUN] [ROUNDS]        (defaults 5000 and 3)
#
# Run by hand (not in CI), as root, after `cargo build --release`. Needs Postfix (smtp-source,
# smtp-sink, postfix; Debian package `postfix`, "No configuration" is enough).
#
# Load: `smtp-source -s 20 -m N -l 4096` (20 sessions, 4 KB messages, one recipient each).
# Measured: wall time from smtp-source's start to its exit, i.e. until every message got its
# 250 (smtp-source exits 1 on any other reply, which aborts the run). Ingest only.
#
# Targets, alternated in every round (fresh data for each run, so no run inherits a queue):
#   ccgate       `ccgate run` (target/release), the recipient a migrated user of its modern
#                domain (one-row directory), modern next hop `smtp://127.0.0.1:SINK`, the same
#                smtp-sink as Postfix. A build with the SMTP next hop relays while it receives
#                and the next run waits until its queue has drained; a build without it keeps
#                the mail queued, which measures ingest alone (receive, Received: header,
#                durable enqueue with fdatasync before the 250). The summary says which.
#   postfix      a private Postfix 3.7 instance (`postfix -c DIR`) relaying the same domain to
#                the same smtp-sink (`relay_transport = relay:[127.0.0.1]:SINK`), default
#                durability (cleanup fsyncs the queue file before smtpd answers 250), defaults
#                otherwise; its queue manager and smtp client deliver while it receives. The
#                next run waits until its queue has drained.
#   postfix-nq   the same instance without qmgr (mail stays in `incoming`) and
#                `in_flow_delay = 0s` (nothing to wait for without qmgr): Postfix's ingest
#                alone, the like-for-like figure while ccgate does not yet deliver.
#
# Both sides have bare-newline rejection on (`smtpd_forbid_bare_newline = yes`, no exclusions),
# log every message (ccgate INFO to a file, Postfix through postlogd to a file) and listen on
# 127.0.0.1 only. Everything lives in a mktemp -d folder, removed at exit.

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
"$SMTP_SINK" -u nobody "127.0.0.1:$SINK_PORT" 256 & PIDS+=($!)
wait_port "$SINK_PORT" || die "smtp-sink did not start"
pf_init

# --- one measured run ---------------------------------------------------------------------------
measure() {   # $1 = target name, $2 = port
    local t0 t1
    t0=$(now)
    "$SMTP_SOURCE" -s "$SESSIONS" -m "$N" -l "$SIZE" -f bench@client.test -t "rcpt@$DOMAIN" \
        "127.0.0.1:$2" > "$W/source.out" 2>&1 || { cat "$W/source.out" >&2; die "smtp-source against $1 failed"; }
    t1=$(now)
    local rate; rate=$(echo "$N / ($t1 - $t0)" | bc -l)
    printf '%s %s %.3f %.0f\n' "$1" "$ROUND" "$(echo "$t1 - $t0" | bc -l)" "$rate" >> "$RESULTS"
    printf '  %-11s %6d msgs  %7.3f s  %6.0f msg/s\n' "$1" "$N" "$(echo "$t1 - $t0" | bc -l)" "$rate"
}

echo "ingest: smtp-source -s $SESSIONS -m $N -l $SIZE, $ROUNDS rounds, $(nproc) cores, $(uname -r)"
echo "ccgate: $CCGATE ($("$CCGATE" --version 2>/dev/null || echo '?')); postfix $(postconf -d -h mail_version)"
for ROUND in $(seq "$ROUNDS"); do
    echo "round $ROUND"
    cc_start "$ROUND";     measure ccgate "$CC_PORT";     cc_drain; cc_stop
    pf_start yes;          measure postfix "$PF_PORT"
    for _ in $(seq 600); do [ "$(pf_queued)" -eq 0 ] && break; sleep 0.1; done
    [ "$(pf_queued)" -eq 0 ] || echo "  (postfix queue not drained: $(pf_queued) left)"
    sent=$(grep -c 'relay=127.0.0.1.*status=sent' "$PF/maillog" || true)
    [ "$sent" -ge $((N * ROUND)) ] || die "postfix relayed $sent messages to smtp-sink so far, expected $((N * ROUND))"
    pf_stop
    pf_start no;           measure postfix-nq "$PF_PORT"
    q=$(find "$PF/queue/incoming" -type f | wc -l)
    [ "$q" -ge "$N" ] || die "postfix-nq left $q messages in incoming, expected $N"
    pf_stop
done

# --- table --------------------------------------------------------------------------------------
CC=$(rate_of ccgate | median); PFR=$(rate_of postfix | median); PFN=$(rate_of postfix-nq | median)
echo
echo "| target | msg/s per round | median msg/s | ccgate / target |"
echo "|---|---|---|---|"
for t in ccgate postfix postfix-nq; do
    m=$(rate_of "$t" | median)
    printf '| %s | %s | %.0f | %.2f |\n' "$t" "$(rate_of "$t" | paste -sd' ')" "$m" "$(echo "$CC / $m" | bc -l)"
done
echo
echo "ccgate mode: $CC_MODE"
printf 'ratio ccgate/postfix (relaying) = %.2f, ccgate/postfix-nq (ingest only) = %.2f (target >= 2)\n' \
    "$(echo "$CC / $PFR" | bc -l)" "$(echo "$CC / $PFN" | bc -l)"

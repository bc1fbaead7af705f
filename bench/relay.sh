#!/usr/bin/env bash
# End-to-end relay benchmark: smtp-source -> gateway -> smtp-sink, ccgate vs Postfix.
#
#   bench/relay.sh [MESSAGES_PER_RUN] [ROUNDS]        (defaults 5000 and 3)
#
# Run by hand (not in CI), as root, after `cargo build --release`. Needs Postfix (smtp-source,
# smtp-sink, postfix). The Postfix instance, the ccgate configuration (one migrated recipient,
# modern next hop smtp://127.0.0.1:SINK) and their start/stop functions are copied from
# bench/ingest.sh (see bench/README.md), so both benchmarks measure the same setups.
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

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CCGATE=$(realpath "${CCGATE:-$ROOT/target/release/ccgate}")
SMTP_SOURCE=$(command -v smtp-source || echo /usr/sbin/smtp-source)
SMTP_SINK=$(command -v smtp-sink || echo /usr/sbin/smtp-sink)
POSTFIX=$(command -v postfix || echo /usr/sbin/postfix)
DAEMONS=$(postconf -h daemon_directory 2>/dev/null || echo /usr/lib/postfix/sbin)

die() { echo "relay.sh: $*" >&2; exit 2; }
[ "$(id -u)" = 0 ] || die "run as root (a private Postfix instance needs it)"
[ -x "$CCGATE" ] || die "$CCGATE missing: run cargo build --release"
for t in "$SMTP_SOURCE" "$SMTP_SINK" "$POSTFIX"; do [ -x "$t" ] || die "$t missing: apt-get install postfix"; done
getent passwd postfix >/dev/null || die "no postfix user (install the Debian postfix package)"
getent group postdrop >/dev/null || die "no postdrop group (install the Debian postfix package)"

W=$(mktemp -d /tmp/ccgate-bench.XXXXXX)
chmod 755 "$W"
PIDS=()
PF=""
cleanup() {
    set +e
    [ -n "$PF" ] && "$POSTFIX" -c "$PF/etc" stop >/dev/null 2>&1
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    rm -rf "$W"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }
now() { date +%s.%N; }

# --- the next hop both relay to ---------------------------------------------------------------
SINK_PORT=$(free_port)
"$SMTP_SINK" -c -u nobody "127.0.0.1:$SINK_PORT" 256 > "$W/sink.count" 2>&1 & PIDS+=($!)
wait_port "$SINK_PORT" || die "smtp-sink did not start"

# --- Postfix ------------------------------------------------------------------------------------
PF=$W/postfix
PF_PORT=$(free_port)
mkdir -p "$PF/etc" "$PF/queue" "$PF/data"
chown postfix "$PF/data"
cat > "$PF/etc/main.cf" <<CF
compatibility_level = 3.6
config_directory = $PF/etc
queue_directory = $PF/queue
data_directory = $PF/data
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix.bench.test
mydomain = bench.test
myorigin = \$myhostname
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
relay_domains = $DOMAIN
relay_transport = relay:[127.0.0.1]:$SINK_PORT
default_transport = error:outside the benchmark
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_forbid_bare_newline = yes
smtpd_forbid_bare_newline_exclusions =
smtp_tls_security_level = none
smtpd_tls_security_level = none
smtp_dns_support_level = disabled
biff = no
maillog_file = $PF/maillog
maillog_file_prefixes = $W
CF
master_cf() {   # $1 = with qmgr (yes/no)
    local q="qmgr      unix  n       -       n       300     1       qmgr"
    [ "$1" = no ] && q="#$q"
    cat > "$PF/etc/master.cf" <<MCF
127.0.0.1:$PF_PORT inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
$q
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
MCF
}
pf_queued() { find "$PF/queue/incoming" "$PF/queue/active" "$PF/queue/deferred" "$PF/queue/maildrop" -type f 2>/dev/null | wc -l; }
pf_start() {   # $1 = yes/no (qmgr)
    master_cf "$1"
    if [ "$1" = no ]; then postconf -c "$PF/etc" -e 'in_flow_delay = 0s'; else postconf -c "$PF/etc" -X in_flow_delay; fi
    # postfix(1) reports to stderr only when it is a terminal: rerun under script(1) to show why.
    "$POSTFIX" -c "$PF/etc" check >/dev/null 2>&1 ||
        { script -qc "$POSTFIX -c $PF/etc check" /dev/null >&2; die "postfix check failed"; }
    "$POSTFIX" -c "$PF/etc" start >/dev/null 2>&1 ||
        { script -qc "$POSTFIX -c $PF/etc start" /dev/null >&2; tail -20 "$PF/maillog" >&2; die "postfix start failed"; }
    wait_port "$PF_PORT" || { tail -20 "$PF/maillog" >&2; die "postfix smtpd not listening on $PF_PORT"; }
}
pf_stop() {
    "$POSTFIX" -c "$PF/etc" stop >/dev/null 2>&1 || true
    for _ in $(seq 100); do [ -e "$PF/queue/pid/master.pid" ] || break; sleep 0.1; done
    # fresh queue for the next run
    find "$PF/queue/incoming" "$PF/queue/active" "$PF/queue/deferred" "$PF/queue/maildrop" \
         "$PF/queue/bounce" "$PF/queue/defer" "$PF/queue/trace" -type f -delete 2>/dev/null || true
}

# --- ccgate -------------------------------------------------------------------------------------
CC_PID=""
cc_start() {
    local d=$W/ccgate.$1
    mkdir -p "$d"
    cat > "$d/ccgate.toml" <<TOML
data_dir = "data"
[smtp]
listen = ["127.0.0.1:0"]
hostname = "ccgate.bench.test"
[legacy]
domain = "legacy.bench.test"
[modern]
domain = "$DOMAIN"
next_hop = "smtp://127.0.0.1:$SINK_PORT"
[directory]
source = "directory.csv"
[admin]
listen = "127.0.0.1:0"
TOML
    printf '%s\n' 'display_name,legacy_name,post_office,proxy_addresses,target_address,state' \
        "Bench Rcpt,\"Rcpt, Bench\",HQ,SMTP:rcpt@$DOMAIN,SMTP:rcpt@$DOMAIN,migrated" > "$d/directory.csv"
    "$CCGATE" --config "$d/ccgate.toml" run 2>"$d/ccgate.log" & CC_PID=$!
    for _ in $(seq 100); do grep -q '^ccgate: smtp ' "$d/ccgate.log" && break; sleep 0.1; done
    CC_PORT=$(sed -n 's/^ccgate: smtp *127\.0\.0\.1:\([0-9]*\).*/\1/p' "$d/ccgate.log")
    [ -n "$CC_PORT" ] || { cat "$d/ccgate.log" >&2; die "ccgate did not start"; }
    CC_DIR=$d
}
cc_queued() { "$CCGATE" --config "$CC_DIR/ccgate.toml" queue list --json 2>/dev/null | wc -l; }
cc_drain() {   # like Postfix: the next run starts only when this one's deliveries are done
    if grep -q 'next hop is not built yet' "$CC_DIR/ccgate.log"; then
        CC_MODE="ingest only: this build has no SMTP next hop, mail stays queued"
        return
    fi
    CC_MODE="relaying to smtp-sink while receiving"
    for _ in $(seq 600); do [ "$(cc_queued)" -eq 0 ] && return; sleep 0.5; done
    echo "  (ccgate queue not drained: $(cc_queued) left)"
}
cc_stop() {
    kill -TERM "$CC_PID"; wait "$CC_PID" || die "ccgate exited $? on SIGTERM"
    local q; q=$(grep -c ' queued queue_id=' "$CC_DIR/ccgate.log" || true)
    [ "$q" -ge "$N" ] || die "ccgate logged $q queued messages, expected $N"
    rm -rf "$CC_DIR"
}

# --- one measured run ---------------------------------------------------------------------------
sink_count() { tail -c 200 "$W/sink.count" | tr '\r' '\n' | sed -n 's/.*mesg=\([0-9]*\).*/\1/p' | tail -1; }
RESULTS=$W/results
: > "$RESULTS"
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

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
rate_of() { awk -v t="$1" '$1==t {print $4}' "$RESULTS"; }
CC=$(rate_of ccgate | median); PFR=$(rate_of postfix | median)
echo
printf '| %-8s | %s |\n' target "median msg/s end to end (runs)"
for t in ccgate postfix; do printf '| %-8s | %6.0f (%s) |\n' "$t" "$(rate_of $t | median)" "$(rate_of $t | tr '\n' ' ' | sed 's/ $//')"; done
printf 'ratio ccgate/postfix end to end = %.2f (target >= 2)\n' "$(echo "$CC / $PFR" | bc -l)"

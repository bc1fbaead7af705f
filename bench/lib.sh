# shellcheck shell=bash
# Shared by bench/ingest.sh and bench/relay.sh (sourced, not run), so that both benchmarks
# measure the same setups: the tools and checks, the work folder (a mktemp -d folder, removed
# at exit with everything started), the private Postfix instance and the ccgate instance.
#
# The sourcing script sets N (messages per run) and DOMAIN (the relayed domain) first, then
# starts smtp-sink on SINK_PORT (its own options) and calls pf_init, which writes Postfix's
# main.cf relaying DOMAIN to it. Then, per run:
#   cc_start ROUND / cc_drain / cc_stop   ccgate (target/release or $CCGATE) on CC_PORT
#                                         (CC_SMTP_EXTRA: more [smtp] keys, one per line)
#   pf_start yes|no / pf_stop             Postfix with or without qmgr on PF_PORT
# and the script appends "target round seconds msg/s ..." lines to RESULTS, which rate_of
# and median read for the table.

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CCGATE=$(realpath "${CCGATE:-$ROOT/target/release/ccgate}")
SMTP_SOURCE=$(command -v smtp-source || echo /usr/sbin/smtp-source)
SMTP_SINK=$(command -v smtp-sink || echo /usr/sbin/smtp-sink)
POSTFIX=$(command -v postfix || echo /usr/sbin/postfix)

die() { echo "${0##*/}: $*" >&2; exit 2; }
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
    # A ccgate still running (a failed round) is stopped before its folder goes.
    [ -n "${CC_PID:-}" ] && kill "$CC_PID" 2>/dev/null && wait "$CC_PID" 2>/dev/null
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    rm -rf "$W"
}
trap cleanup EXIT

source "$(dirname "$0")/helpers.sh"

# --- Postfix ------------------------------------------------------------------------------------
pf_init() {   # after smtp-sink listens on SINK_PORT
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
}
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
${CC_SMTP_EXTRA:-}
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
    local pid=$CC_PID
    CC_PID=""
    kill -TERM "$pid"; wait "$pid" || die "ccgate exited $? on SIGTERM"
    local q; q=$(grep -c ' queued queue_id=' "$CC_DIR/ccgate.log" || true)
    [ "$q" -ge "$N" ] || die "ccgate logged $q queued messages, expected $N"
    rm -rf "$CC_DIR"
}

# --- results ------------------------------------------------------------------------------------
RESULTS=$W/results
: > "$RESULTS"
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
rate_of() { awk -v t="$1" '$1==t {print $4}' "$RESULTS"; }

#!/usr/bin/env bash
# The legacy paths against the SMTP path, on one gateway in one run.
#
#   bench/legacy.sh [MESSAGES] [ROUNDS] [IMPORT_BATCH]       (defaults 5000, 3 and 50)
#
# Run by hand (not in CI), as root or not, after `cargo build --release`. Needs Postfix's
# smtp-source and smtp-sink (apt-get install postfix; no Postfix instance runs).
#
# One `ccgate run` (release) with a one-file directory: a migrated user (modern side, next hop
# smtp://127.0.0.1:SINK, the smtp-sink) and a legacy user (the drop folder, no import_command).
# Each round measures, with the same message count N and about 4 KB per message:
#
#   smtp->smtp     smtp-source -s 20 -m N -l 4096 to the migrated user, until smtp-sink has
#                  counted N more messages (received, queued durably, relayed);
#   export->smtp   one export file of N messages (legacy sender to the migrated user) in the
#                  pickup folder, from the moment the gateway claims it (its "claimed" log
#                  line: the stability wait of one poll is the protocol, not throughput) until
#                  smtp-sink has counted N more;
#   smtp->import   smtp-source -s 20 -m N -l 4096 to the legacy user, until the import files in
#                  the drop folder hold N messages (written, fsynced, renamed).
#
# The table gives msg/s per round, the medians and the ratios to smtp->smtp (target >= 1.0).

set -euo pipefail

N=${1:-5000}
ROUNDS=${2:-3}
BATCH=${3:-50}
SESSIONS=20
SIZE=4096

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CCGATE=$(realpath "${CCGATE:-$ROOT/target/release/ccgate}")
SMTP_SOURCE=$(command -v smtp-source || echo /usr/sbin/smtp-source)
SMTP_SINK=$(command -v smtp-sink || echo /usr/sbin/smtp-sink)
die() { echo "${0##*/}: $*" >&2; exit 2; }
[ -x "$CCGATE" ] || die "$CCGATE missing: run cargo build --release"
for t in "$SMTP_SOURCE" "$SMTP_SINK"; do [ -x "$t" ] || die "$t missing: apt-get install postfix"; done

W=$(mktemp -d /tmp/ccgate-legacy-bench.XXXXXX)
chmod 755 "$W"
PIDS=()
CC_PID=""
cleanup() {
    set +e
    [ -n "$CC_PID" ] && kill "$CC_PID" 2>/dev/null && wait "$CC_PID" 2>/dev/null
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    rm -rf "$W"
}
trap cleanup EXIT
source "$(dirname "$0")/helpers.sh"

SINK_PORT=$(free_port)
SINK_USER=$(id -un); [ "$(id -u)" = 0 ] && SINK_USER=nobody
"$SMTP_SINK" -c -u "$SINK_USER" "127.0.0.1:$SINK_PORT" 256 > "$W/sink.count" 2>&1 & PIDS+=($!)
wait_port "$SINK_PORT" || die "smtp-sink did not start"
sink_count() { tail -c 200 "$W/sink.count" | tr '\r' '\n' | sed -n 's/.*mesg=\([0-9]*\).*/\1/p' | tail -1; }

# The export file: N messages from the legacy user to the migrated user, ~4 KB each, each
# its own subject (the ledger keys a message by its content).
python3 - "$N" "$W/export.txt" <<'PY'
import sys
n, path = int(sys.argv[1]), sys.argv[2]
line = "The quick brown fox jumps over the lazy dog; " * 2 + "\r\n"
body = (line * (4096 // len(line)))
with open(path, "w", newline="") as f:
    for i in range(n):
        f.write(f"Message:\r\nFrom: Sender, Legacy at HQ\r\nDate: 11/23/26 9:00\r\n"
                f"To: Rcpt, Bench at HQ\r\nSubject: bench {i}\r\nContents:\r\nText item:\r\n{body}")
PY

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
poll_interval = "1s"
import_batch = $BATCH
[modern]
domain = "modern.bench.test"
next_hop = "smtp://127.0.0.1:$SINK_PORT"
[directory]
source = "directory.csv"
[admin]
listen = "127.0.0.1:0"
TOML
    printf '%s\n' 'display_name,legacy_name,post_office,proxy_addresses,target_address,state' \
        'Bench Rcpt,"Rcpt, Bench",HQ,SMTP:rcpt@modern.bench.test,SMTP:rcpt@modern.bench.test,migrated' \
        'Legacy Sender,"Sender, Legacy",HQ,SMTP:sender@legacy.bench.test,,legacy' > "$d/directory.csv"
    "$CCGATE" --config "$d/ccgate.toml" run 2>"$d/ccgate.log" & CC_PID=$!
    for _ in $(seq 100); do grep -q '^ccgate: smtp ' "$d/ccgate.log" && break; sleep 0.1; done
    CC_PORT=$(sed -n 's/^ccgate: smtp *127\.0\.0\.1:\([0-9]*\).*/\1/p' "$d/ccgate.log")
    [ -n "$CC_PORT" ] || { cat "$d/ccgate.log" >&2; die "ccgate did not start"; }
    CC_DIR=$d
}
cc_stop() {
    local pid=$CC_PID; CC_PID=""
    kill -TERM "$pid"; wait "$pid" || die "ccgate exited $? on SIGTERM"
    [ -n "${KEEP_LOGS:-}" ] && cp "$CC_DIR/ccgate.log" "$KEEP_LOGS.$ROUND"
    rm -rf "$CC_DIR"
}
# Messages in the import files so far. A G*.CCM appears whole (written under a hidden name,
# fsynced, renamed) and never changes, so each file is counted once when it first shows up:
# re-reading every file at every poll (megabytes by the end) would load the 2-core machine
# more than the gateway's own work and slow the path being measured.
declare -A COUNTED=()
IMPORTED=0
count_imported() {
    local f new=()
    for f in "$CC_DIR"/data/legacy/inbound/G*.CCM; do
        [ -e "$f" ] && [ -z "${COUNTED[$f]:-}" ] || continue
        COUNTED[$f]=1
        new+=("$f")
    done
    # One grep for all the new files (a process per file would cost more than the poll).
    [ ${#new[@]} -eq 0 ] || IMPORTED=$((IMPORTED + $(cat -- "${new[@]}" | grep -c '^Message:' || true)))
}

RESULTS=$W/results; : > "$RESULTS"
record() {   # name round seconds
    local rate; rate=$(echo "$N / $3" | bc -l)
    printf '%s %s %.3f %.0f\n' "$1" "$2" "$3" "$rate" >> "$RESULTS"
    printf '  %-13s %6d msgs  %7.3f s  %6.0f msg/s\n' "$1" "$N" "$3" "$rate"
}
wait_until() {   # command-producing-a-count target what
    for _ in $(seq 30000); do [ "$($1)" -ge "$2" ] && return 0; sleep 0.01; done
    die "$3: $($1) of $2"
}

smtp_to_smtp() {
    local before t0; before=$(sink_count); before=${before:-0}
    t0=$(now)
    "$SMTP_SOURCE" -s "$SESSIONS" -m "$N" -l "$SIZE" -f bench@client.test -t rcpt@modern.bench.test \
        "127.0.0.1:$CC_PORT" > "$W/source.out" 2>&1 || { cat "$W/source.out" >&2; die "smtp-source failed"; }
    wait_until sink_count $((before + N)) "smtp->smtp: smtp-sink counted"
    record smtp-smtp "$ROUND" "$(echo "$(now) - $t0" | bc -l)"
}
export_to_smtp() {
    local before t0 pickup=$CC_DIR/data/legacy/outbound
    before=$(sink_count); before=${before:-0}
    cp "$W/export.txt" "$pickup/.EXPORT.TXT.part" && mv "$pickup/.EXPORT.TXT.part" "$pickup/EXPORT.TXT"
    for _ in $(seq 3000); do grep -q 'claimed from the pickup folder' "$CC_DIR/ccgate.log" && break; sleep 0.01; done
    t0=$(now)
    wait_until sink_count $((before + N)) "export->smtp: smtp-sink counted"
    record export-smtp "$ROUND" "$(echo "$(now) - $t0" | bc -l)"
}
smtp_to_import() {
    local t0; t0=$(now)
    "$SMTP_SOURCE" -s "$SESSIONS" -m "$N" -l "$SIZE" -f bench@client.test -t sender@legacy.bench.test \
        "127.0.0.1:$CC_PORT" > "$W/source.out" 2>&1 || { cat "$W/source.out" >&2; die "smtp-source failed"; }
    for _ in $(seq 30000); do count_imported; [ "$IMPORTED" -ge "$N" ] && break; sleep 0.01; done
    [ "$IMPORTED" -ge "$N" ] || die "smtp->import: $IMPORTED of $N messages in import files"
    record smtp-import "$ROUND" "$(echo "$(now) - $t0" | bc -l)"
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
rate_of() { awk -v t="$1" '$1==t {print $4}' "$RESULTS"; }

echo "legacy: $N messages per path, $ROUNDS rounds, import_batch $BATCH, $(nproc) cores, $(uname -r)"
echo "ccgate: $CCGATE"
for ROUND in $(seq "$ROUNDS"); do
    echo "round $ROUND"
    cc_start "$ROUND"
    smtp_to_smtp
    export_to_smtp
    smtp_to_import
    echo "  import files: $(ls "$CC_DIR"/data/legacy/inbound/G*.CCM | wc -l)"
    cc_stop
    COUNTED=(); IMPORTED=0
done
S=$(rate_of smtp-smtp | median)
echo
printf '| %-13s | %s | %s |\n' path "median msg/s (rounds)" "ratio to smtp->smtp"
for t in smtp-smtp export-smtp smtp-import; do
    printf '| %-13s | %6.0f (%s) | %.2f |\n' "$t" "$(rate_of $t | median)" \
        "$(rate_of $t | tr '\n' ' ' | sed 's/ $//')" "$(echo "$(rate_of $t | median) / $S" | bc -l)"
done

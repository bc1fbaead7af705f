#!/usr/bin/env bash
# Does the console slow SMTP, and how fast is it on a loaded queue?
#
#   bench/console.sh [N] [HELD] [ROUNDS]   (after cargo build --release; smtp-source, curl, bc)
#
# 1. SMTP ingest with smtp-source -s 20 -m N -l 4096 into a Maildir next hop: alone; while
#    four curl loops fetch /healthz (what the clients cost on a small machine); while four
#    curl loops fetch console pages (overview, queue, people search, trace, metrics) without
#    pause; while four loops fetch them with 0.5 s between pages (people browsing): msg/s each
#    time, and how many pages were served meanwhile with their median time.
# 2. HELD messages for a user being migrated: the time of the overview and of the held-queue
#    page, then of the cutover that releases them (rewrite, reload, release), and until the
#    last one is in the Maildir.
# Prints a table; everything runs in a mktemp -d folder removed at exit.
set -euo pipefail
N=${1:-5000}
HELD=${2:-2000}
ROUNDS=${3:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CCGATE=$(realpath "${CCGATE:-$ROOT/target/release/ccgate}")
SMTP_SOURCE=$(command -v smtp-source || echo /usr/sbin/smtp-source)
die() { echo "${0##*/}: $*" >&2; exit 2; }
[ -x "$CCGATE" ] || die "$CCGATE missing: run cargo build --release"
[ -x "$SMTP_SOURCE" ] || die "smtp-source missing: apt-get install postfix"
command -v curl >/dev/null || die "curl missing"
W=$(mktemp -d /tmp/ccgate-console-bench.XXXXXX)
PIDS=()
cleanup() {
    set +e
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    rm -rf "$W"
}
trap cleanup EXIT
TOKEN=bench-console-token-0123456789
echo "$TOKEN" > "$W/token"
cat > "$W/ccgate.toml" <<TOML
data_dir = "data"
[smtp]
listen = ["127.0.0.1:0"]
hostname = "ccgate.bench.test"
[legacy]
domain = "legacy.bench.test"
[modern]
domain = "modern.bench.test"
[directory]
source = "directory.csv"
[admin]
listen = "127.0.0.1:0"
token_file = "token"
TOML
{
    echo 'display_name,legacy_name,post_office,proxy_addresses,target_address,state'
    echo 'Bench Rcpt,"Rcpt, Bench",HQ,SMTP:rcpt@modern.bench.test,SMTP:rcpt@modern.bench.test,migrated'
    echo 'Pat Lee,"Lee, Pat",HQ,SMTP:pat.lee@legacy.bench.test,SMTP:pat.lee@modern.bench.test,migrating'
    for i in $(seq 1000); do
        echo "User $i,\"User, N$i\",HQ,SMTP:user$i@legacy.bench.test,,legacy"
    done
} > "$W/directory.csv"
"$CCGATE" --config "$W/ccgate.toml" run 2>"$W/ccgate.log" & PIDS+=($!)
for _ in $(seq 100); do grep -q '^ccgate: admin' "$W/ccgate.log" && break; sleep 0.1; done
SMTP=$(sed -n 's/^ccgate: smtp *\(127\.0\.0\.1:[0-9]*\).*/\1/p' "$W/ccgate.log")
ADMIN=$(sed -n 's|^ccgate: admin *http://\([0-9.:]*\)/metrics.*|\1|p' "$W/ccgate.log")
[ -n "$SMTP" ] && [ -n "$ADMIN" ] || { cat "$W/ccgate.log" >&2; die "ccgate did not start"; }
maildir() { find "$W/data/modern/new" -type f 2>/dev/null | wc -l; }
source "$(dirname "$0")/helpers.sh"
ingest() {   # prints msg/s of N messages, waiting until all are delivered
    local before start end
    before=$(maildir); start=$(now)
    "$SMTP_SOURCE" -s 20 -m "$N" -l 4096 -f sender@outside.test -t rcpt@modern.bench.test "$SMTP"
    while [ "$(maildir)" -lt $((before + N)) ]; do sleep 0.05; done
    end=$(now)
    echo "$N / ($end - $start)" | bc -l
}
pages() {   # one client: $2 (page set) in a loop until killed; one "seconds" line per page
    local paths=("/" "/queue" "/people?q=user1" "/trace?q=rcpt@modern" "/metrics")
    [ "$2" = probe ] && paths=("/healthz")
    while :; do
        for p in "${paths[@]}"; do
            curl -s -o /dev/null -w '%{time_total}\n' "http://$ADMIN$p" >> "$W/$2.$1" || true
            [ "$2" = paced ] && sleep 0.5
        done
    done
}
with_clients() {   # ingest while 4 clients fetch page set $1; prints "msg/s pages median"
    local rate served med
    for c in 1 2 3 4; do pages "$c" "$1" & PIDS+=($!); done
    sleep 1
    rate=$(ingest)
    for p in "${PIDS[@]:1}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null || true; done
    PIDS=("${PIDS[0]}")
    served=$(cat "$W/$1".* | wc -l)
    med=$(cat "$W/$1".* | median)
    echo "$rate $served $med"
}
median() { sort -n | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]; else print "n/a"}'; }

# Rounds alternate the three loads (the machine is shared: compare medians).
for r in $(seq "$ROUNDS"); do
    ingest >> "$W/alone.rates"
    read -r rate served med <<<"$(with_clients probe)"; echo "$rate" >> "$W/probe.rates"; echo "$served $med" >> "$W/probe.pages"
    read -r rate served med <<<"$(with_clients console)"; echo "$rate" >> "$W/console.rates"; echo "$served $med" >> "$W/console.pages"
    read -r rate served med <<<"$(with_clients paced)"; echo "$rate" >> "$W/paced.rates"; echo "$served $med" >> "$W/paced.pages"
    rm -f "$W"/probe.[0-9] "$W"/console.[0-9] "$W"/paced.[0-9]
    echo "round $r: alone $(tail -1 "$W/alone.rates"), probe $(tail -1 "$W/probe.rates"), console $(tail -1 "$W/console.rates"), paced $(tail -1 "$W/paced.rates") msg/s" >&2
done
alone=$(median < "$W/alone.rates")
probe=$(median < "$W/probe.rates"); probe_served=$(awk '{n+=$1} END {print n}' "$W/probe.pages"); probe_median=$(awk '{print $2}' "$W/probe.pages" | median)
paced=$(median < "$W/paced.rates"); paced_served=$(awk '{n+=$1} END {print n}' "$W/paced.pages"); paced_median=$(awk '{print $2}' "$W/paced.pages" | median)
with=$(median < "$W/console.rates"); served=$(awk '{n+=$1} END {print n}' "$W/console.pages"); page_median=$(awk '{print $2}' "$W/console.pages" | median)

# Held mail at cutover.
before=$(maildir)
"$SMTP_SOURCE" -s 20 -m "$HELD" -l 4096 -f sender@outside.test -t pat.lee@legacy.bench.test "$SMTP"
until "$CCGATE" --config "$W/ccgate.toml" queue list --json --state held 2>/dev/null | wc -l | grep -qx "$HELD"; do sleep 0.2; done
t_overview=$(curl -s -o /dev/null -w '%{time_total}' "http://$ADMIN/")
t_held=$(curl -s -o /dev/null -w '%{time_total}' "http://$ADMIN/queue?state=held")
start=$(now)
curl -s -o "$W/cutover.html" -H "Authorization: Bearer $TOKEN" --data-urlencode "names=Lee, Pat" -d state=migrated "http://$ADMIN/cutover"
t_cutover=$(echo "$(now) - $start" | bc -l)
grep -q "$HELD held messages released" "$W/cutover.html" || { sed 's/<[^>]*>/ /g' "$W/cutover.html" >&2; die "the cutover did not release $HELD messages"; }
while [ "$(maildir)" -lt $((before + HELD)) ]; do sleep 0.05; done
t_delivered=$(echo "$(now) - $start" | bc -l)

printf '\n| what | figure |\n|---|---|\n'
printf '| SMTP ingest, smtp-source -s 20 -m %s -l 4096, median of %s rounds: alone | %.0f msg/s |\n' "$N" "$ROUNDS" "$alone"
printf '| same, while 4 curl loops fetch /healthz (the cost of the clients themselves) | %.0f msg/s (%s answers, median %.3f s) |\n' "$probe" "$probe_served" "$probe_median"
printf '| same, while 4 curl loops fetch console pages (overview, queue, people, trace, metrics) | %.0f msg/s (%s pages served, median %.3f s) |\n' "$with" "$served" "$page_median"
printf '| same, while 4 people browse (each a console page every 0.5 s) | %.0f msg/s (%s pages served, median %.3f s) |\n' "$paced" "$paced_served" "$paced_median"
printf '| %s held messages: overview / held-queue page (first 500 rows) | %.3f s / %.3f s |\n' "$HELD" "$t_overview" "$t_held"
printf '| cutover of the user: rewrite, reload, release / until all %s are delivered | %.3f s / %.2f s |\n' "$HELD" "$t_cutover" "$t_delivered"

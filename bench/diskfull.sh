#!/usr/bin/env bash
# Disk full, then freed: how long until ccgate takes mail again, and is anything lost?
#
#   bench/diskfull.sh [FULL_SECONDS] [SENDERS]      (as root, after cargo build --release)
#
# ccgate's data folder is put on its own small tmpfs (64 MiB) with the default settings
# (min_free "auto"; a 1 s retry so the drain is quick). SENDERS Python smtplib clients send
# 4 KiB messages in a loop the whole time and note every 250 with its queue id. After 3 s the
# file system is filled to the last byte, kept full FULL_SECONDS (default 10), then the filler
# is removed. The script prints the replies seen while full, the time from freeing the space
# to the next 250, and, after the queue drains into the Maildir (same tmpfs), how many
# acknowledged messages were not delivered. Target: accepted again within 5 s, 0 lost.
set -euo pipefail

FULL=${1:-10}
SENDERS=${2:-4}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CCGATE=$(realpath "${CCGATE:-$ROOT/target/release/ccgate}")
die() { echo "${0##*/}: $*" >&2; exit 2; }
[ "$(id -u)" = 0 ] || die "run as root (it mounts a tmpfs)"
[ -x "$CCGATE" ] || die "$CCGATE missing: run cargo build --release"
command -v python3 >/dev/null || die "python3 missing"

W=$(mktemp -d /tmp/ccgate-diskfull.XXXXXX)
CC_PID=""; SEND_PID=""
cleanup() {
    set +e
    [ -n "$SEND_PID" ] && kill "$SEND_PID" 2>/dev/null && wait "$SEND_PID" 2>/dev/null
    [ -n "$CC_PID" ] && kill "$CC_PID" 2>/dev/null && wait "$CC_PID" 2>/dev/null
    if [ -n "${KEEP:-}" ]; then
        cp "$W/ccgate.log" "$KEEP.ccgate.log" 2>/dev/null
        "$CCGATE" --config "$W/ccgate.toml" queue list 2>/dev/null | head -20 > "$KEEP.queue" 
    fi
    mountpoint -q "$W/data" && umount -l "$W/data"
    rm -rf "$W"
}
trap cleanup EXIT
source "$(dirname "$0")/helpers.sh"

mkdir -p "$W/data"
mount -t tmpfs -o size=64m tmpfs "$W/data"
PORT=$(free_port); ADMIN=$(free_port)
cat > "$W/directory.csv" <<'CSV'
display_name,legacy_name,post_office,proxy_addresses,target_address,state
Bench User,"User, Bench",HQ,SMTP:bench@modern.bench.test,SMTP:bench@modern.bench.test,migrated
CSV
cat > "$W/ccgate.toml" <<TOML
data_dir = "data"
[smtp]
listen = ["127.0.0.1:$PORT"]
hostname = "mx.bench.test"
[legacy]
domain = "legacy.bench.test"
[modern]
domain = "modern.bench.test"
[directory]
source = "directory.csv"
[queue]
retry = ["1s"]
[admin]
listen = "127.0.0.1:$ADMIN"
TOML
(cd "$W" && exec "$CCGATE" --config ccgate.toml run 2> "$W/ccgate.log") &
CC_PID=$!
wait_port "$PORT" || die "ccgate did not listen; log: $(cat "$W/ccgate.log")"

cat > "$W/send.py" <<'PY'
import smtplib, sys, threading, time
port, senders, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
body = ("Subject: bench\r\n\r\n" + ("x" * 70 + "\r\n") * 56).encode()
stop = time.time() + float(sys.argv[4])
lock = threading.Lock()
log = open(out, "w")
def run(n):
    while time.time() < stop:
        t = time.time()
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
                s.ehlo("client.bench.test")
                code, text = s.mail("sender@client.bench.test")
                if code == 250:
                    s.rcpt("bench@modern.bench.test")
                    code, text = s.data(body)
        except smtplib.SMTPResponseException as e:
            code, text = e.smtp_code, e.smtp_error
        except Exception as e:  # connection trouble counts as "no answer"
            code, text = 0, str(e).encode()
        text = text.decode(errors="replace").replace("\n", " ")
        with lock:
            log.write(f"{t:.3f} {code} {text}\n"); log.flush()
        if code != 250:
            time.sleep(0.05)
ts = [threading.Thread(target=run, args=(i,)) for i in range(senders)]
for t in ts: t.start()
for t in ts: t.join()
PY
TOTAL=$((FULL + 13))
python3 "$W/send.py" "$PORT" "$SENDERS" "$W/replies.log" "$TOTAL" &
SEND_PID=$!
sleep 3
# Fill to the last byte (dd stops at ENOSPC), keep it full, then free it.
dd if=/dev/zero of="$W/data/filler" bs=64k 2>/dev/null || true
FULL_AT=$(date +%s.%N)
sleep "$FULL"
READY_FULL=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ADMIN/readyz" || echo -)
HEALTH_FULL=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ADMIN/healthz" || echo -)
rm -f "$W/data/filler"
FREED_AT=$(date +%s.%N)
wait "$SEND_PID"; SEND_PID=""

# Drain: every acknowledged message must reach the Maildir. Mail that met the full disk in
# the Maildir is deferred (and the lane may cool off, 5 min), so this waits up to 7 minutes.
DRAIN_START=$(date +%s.%N)
for _ in $(seq 840); do
    "$CCGATE" --config "$W/ccgate.toml" queue list --json 2>/dev/null | grep -q . || break
    sleep 0.5
done
DRAINED=$(echo "$(date +%s.%N) - $DRAIN_START" | bc)
"$CCGATE" --config "$W/ccgate.toml" queue list --json > "$W/queued.json" 2>/dev/null || true
python3 - "$W/replies.log" "$W/data/modern/new" "$FULL_AT" "$FREED_AT" "$FULL" "$READY_FULL" "$HEALTH_FULL" "$W/queued.json" "$DRAINED" <<'PY'
import json, os, re, sys
replies, maildir, full_at, freed_at = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
full, ready, health, queued_file, drained = sys.argv[5], sys.argv[6], sys.argv[7], sys.argv[8], float(sys.argv[9])
queued = {json.loads(l)["queue_id"] for l in open(queued_file) if l.strip()}
acked, during, codes = set(), 0, {}
first_after = None
for line in open(replies):
    t, code, text = line.split(" ", 2)
    t, code = float(t), int(code)
    if code == 250:
        m = re.search(r"queued as (\S+)", text)
        if m: acked.add(m.group(1))
        if t >= freed_at and first_after is None: first_after = t
    if full_at <= t < freed_at:
        during += 1
        codes[code] = codes.get(code, 0) + 1
delivered = set()
for name in os.listdir(maildir):
    with open(os.path.join(maildir, name), "rb") as f:
        head = f.read(4096).decode(errors="replace")
    m = re.search(r"\sid (\S+?);", head)
    if m: delivered.add(m.group(1))
lost = acked - delivered - queued
again = f"{first_after - freed_at:.2f} s" if first_after else "never"
print(f"disk full for {full} s: {during} attempts while full, replies {dict(sorted(codes.items()))}; /readyz {ready}, /healthz {health}")
print(f"accepted again after the space was freed: {again}")
print(f"acknowledged: {len(acked)}, delivered: {len(acked & delivered)}, still queued: {len(acked & queued)}, lost: {len(lost)} (queue drained {drained:.1f} s after the senders stopped)")
sys.exit(1 if lost or not first_after else 0)
PY

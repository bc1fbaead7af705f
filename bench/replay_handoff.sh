#!/bin/bash
# replay_handoff.sh [N]: `ccgate replay` handing N .eml files (about 4 KB, one recipient) to a
# running gateway's SMTP listener, then lettre 0.11.23 sending to the same listener on one
# connection: SmtpConnection::send (N/5 messages: each waits about 40 ms) and the same
# commands with body and final dot in one write. Prints one line each. Needs the network once
# to fetch lettre; CCGATE=path picks the binary (default: release, else debug build).
set -euo pipefail
N=${1:-1000}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
. "$HERE/helpers.sh"
CCGATE=${CCGATE:-$ROOT/target/release/ccgate}
[ -x "$CCGATE" ] || CCGATE=$ROOT/target/debug/ccgate
PROBE_TARGET=$ROOT/target/lettre-probe
(cd "$HERE/lettre-probe" && CARGO_TARGET_DIR=$PROBE_TARGET cargo build --release -q)
PROBE=$PROBE_TARGET/release/lettre-probe

WORK=$(mktemp -d)
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
cd "$WORK"
"$CCGATE" init . >/dev/null
PORT=$(free_port)
sed -i "s/^listen = \[\"127.0.0.1:2525\"\]/listen = [\"127.0.0.1:$PORT\"]/; s/^listen = \"127.0.0.1:8025\".*/listen = \"127.0.0.1:0\"/" ccgate.toml
mkdir in
line=$(printf 'x%.0s' $(seq 70))
for i in $(seq "$N"); do
  { printf 'From: <alice@example.org>\r\nTo: <jane.doe@modern.example.com>\r\nMessage-ID: <r%d-%d@bench.example>\r\nSubject: replay %d\r\n\r\n' "$i" $$ "$i"
    for _ in $(seq 56); do printf '%s\r\n' "$line"; done
  } > "in/m$i.eml"
done
"$CCGATE" --config ccgate.toml run 2>run.log &
PID=$!
wait_port "$PORT"
s=$(now)
"$CCGATE" --config ccgate.toml replay in >replay.out 2>replay.err || true
e=$(now)
echo "ccgate replay (own client, end to end): $N messages in $(echo "$e - $s" | bc) s: $(echo "$N / ($e - $s)" | bc) msg/s; $(grep -c 'queued as' replay.out) queued"
"$PROBE" "127.0.0.1:$PORT" $((N / 5)) send alice@example.org jane.doe@modern.example.com
"$PROBE" "127.0.0.1:$PORT" "$N" onewrite alice@example.org jane.doe@modern.example.com

#!/usr/bin/env bash
# What a default Postfix does with long text lines (the reference for ccgate's behaviour):
#
#   bench/longlines.sh
#
# Run by hand, as root. A private Postfix instance (bench/lib.sh, defaults otherwise) relays
# to smtp-sink, which dumps every message it receives (`smtp-sink -d`). Python's smtplib
# sends one message per line length (2,000 and 50,000 octets, in a plain text body, and a
# 50,000-octet line in a MIME part declared 8bit), and the script prints, for each: Postfix's
# reply, the longest line smtp-sink received, and whether the text came through unchanged
# once the lines Postfix broke are joined again.

set -euo pipefail
N=0
DOMAIN=modern.example.test
CCGATE=${CCGATE:-$(dirname "$0")/../target/debug/ccgate}
source "$(dirname "$0")/lib.sh"

SINK_PORT=$(free_port)
mkdir -p "$W/dump"; chown nobody "$W/dump"
"$SMTP_SINK" -u nobody -d "$W/dump/%H%M%S." "127.0.0.1:$SINK_PORT" 256 & PIDS+=($!)
wait_port "$SINK_PORT" || die "smtp-sink did not start"
pf_init
pf_start yes
echo "postfix $(postconf -d -h mail_version); smtp_line_length_limit=$(postconf -c "$PF/etc" -h smtp_line_length_limit)"
python3 - "$PF_PORT" "$DOMAIN" <<'PY'
import smtplib, sys
port, domain = int(sys.argv[1]), sys.argv[2]
cases = [
    ("plain-2000", b"Subject: plain-2000\r\n\r\n", 2000),
    ("plain-50000", b"Subject: plain-50000\r\n\r\n", 50000),
    ("mime8bit-50000", b"Subject: mime8bit-50000\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n", 50000),
]
for name, head, n in cases:
    line = ("<p>" + "caf\u00e9 " * n)[:n].encode()[:n]
    body = head + line + b"\r\nend\r\n"
    s = smtplib.SMTP("127.0.0.1", port)
    try:
        s.sendmail("probe@client.test", ["rcpt@" + domain], body)
        print(f"{name}: accepted ({len(line)}-octet line)")
    except smtplib.SMTPException as e:
        print(f"{name}: refused: {e}")
    s.quit()
PY
for _ in $(seq 100); do [ "$(pf_queued)" -eq 0 ] && break; sleep 0.1; done
python3 - "$W/dump" <<'PY'
import os, sys, email, email.policy
d = sys.argv[1]
for f in sorted(os.listdir(d)):
    raw = open(os.path.join(d, f), "rb").read()
    msg = raw.split(b"\r\n\r\n", 1)
    text = raw.replace(b"\r\n", b"\n")
    subject = [l for l in text.split(b"\n") if l.startswith(b"Subject:")]
    longest = max(len(l) for l in text.split(b"\n"))
    m = email.message_from_bytes(raw, policy=email.policy.compat32)
    cte = m.get("Content-Transfer-Encoding", "(none)")
    payload = m.get_payload(decode=True) or b""
    first = payload.split(b"\n", 1)[0].rstrip(b"\r")
    lines = payload.split(b"\n")
    broken = [l for l in lines[1:] if l.startswith(b" ")]
    joined = b"".join(l.rstrip(b"\r") if i == 0 else l.rstrip(b"\r")[1:] if l.startswith(b" ") else b"\n" + l.rstrip(b"\r") for i, l in enumerate(lines))
    print(f"{subject[0].decode() if subject else f}: longest line received {longest} octets, "
          f"Content-Transfer-Encoding {cte}, {len(broken)} continuation lines starting with a space "
          f"(Postfix inserted CR LF SPACE), body text {len(first)} octets on its first line")
PY
grep -E 'status=|warning' "$PF/maillog" | sed 's/^.*postfix/postfix/' | cut -c1-200 || true

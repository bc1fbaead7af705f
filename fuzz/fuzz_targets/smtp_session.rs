//! The sans-I/O SMTP session on arbitrary bytes fed in chunks (chunk size and TLS from the
//! first byte), then on an alphabet-mapped copy whose bytes become SMTP tokens. Never panics,
//! never stalls, never acknowledges a message by itself, and every reply is well formed.
#![no_main]

use ccgate_smtp::{
    EmailAddress, Event, NotQueued, QueueId, RcptVerdict, RecipientPolicy, Session, SessionConfig,
};
use libfuzzer_sys::fuzz_target;

struct Policy;

impl RecipientPolicy for Policy {
    fn check(&self, rcpt: &EmailAddress) -> RcptVerdict {
        match (rcpt.local(), rcpt.domain()) {
            ("nobody", _) => RcptVerdict::Unknown,
            ("tempfail", _) => RcptVerdict::TempFail,
            (_, "legacy.example.com" | "modern.example.com") => RcptVerdict::Accept,
            _ => RcptVerdict::RelayDenied,
        }
    }
}

const ALPHABET: [&[u8]; 32] = [
    b"EHLO client.example\r\n",
    b"HELO client.example\r\n",
    b"MAIL FROM:<a@client.example>\r\n",
    b"MAIL FROM:<> SIZE=100 BODY=8BITMIME SMTPUTF8\r\n",
    b"RCPT TO:<u@legacy.example.com>\r\n",
    b"RCPT TO:<nobody@legacy.example.com>\r\n",
    b"RCPT TO:<v%x@legacy.example.com>\r\n",
    b"RCPT TO:<postmaster>\r\n",
    b"RCPT TO:<z@elsewhere.example>\r\n",
    b"DATA\r\n",
    b"RSET\r\n",
    b"STARTTLS\r\n",
    b"NOOP\r\n",
    b"VRFY x\r\n",
    b"QUIT\r\n",
    b"\r\n",
    b".",
    b"..",
    b"\r",
    b"\n",
    b"\r\n.\r\n",
    b"\n.\n",
    b"\r.\r\n",
    b"\x00",
    b"Subject: x",
    b" ",
    b":",
    b"<",
    b">",
    b"@",
    b"\xc3\xa9",
    b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
];

fn check_reply(wire: &[u8]) {
    assert!(wire.ends_with(b"\r\n"), "{wire:?}");
    for line in wire.split(|&b| b == b'\n') {
        if line.is_empty() {
            continue;
        }
        let line = line.strip_suffix(b"\r").expect("every line ends in CR LF");
        assert!(!line.contains(&b'\r'), "bare CR in reply {wire:?}");
        assert!(
            line.len() >= 3 && line[..3].iter().all(u8::is_ascii_digit),
            "{wire:?}"
        );
    }
}

fn run(input: &[u8], step: usize, tls: bool, seed: u8) {
    let mut config = SessionConfig::new("mx.ccgate.test").unwrap();
    config.tls_available = tls;
    config.limits.max_message_size = 2000;
    config.limits.max_recipients = 4;
    config.limits.max_errors = 8;
    let mut session = Session::new(config, None, Policy);
    check_reply(&session.greeting().to_bytes());
    let mut pending: Vec<u8> = Vec::new();
    let mut queued = 0u128;
    for chunk in input.chunks(step) {
        pending.extend_from_slice(chunk);
        loop {
            let out = session.feed(&pending);
            assert!(out.consumed <= pending.len());
            pending.drain(..out.consumed);
            let mut wire = Vec::new();
            out.encode_replies(&mut wire);
            if !wire.is_empty() {
                check_reply(&wire);
            }
            assert!(
                !String::from_utf8_lossy(&wire).contains("queued as"),
                "the session acknowledged a message by itself"
            );
            if out.close {
                assert!(session.is_closed() && out.event.is_none());
                return;
            }
            match out.event {
                Some(Event::MessageComplete { envelope, data, .. }) => {
                    assert!(data.len() <= 2000);
                    assert!(!envelope.recipients.is_empty() && envelope.recipients.len() <= 4);
                    queued += 1;
                    let result = match (seed.wrapping_add(queued as u8)) % 5 {
                        0 => Err(NotQueued::Temporary),
                        1 => Err(NotQueued::DiskFull),
                        _ => Ok(QueueId::from_u128(queued)),
                    };
                    let reply = session
                        .message_queued(result)
                        .expect("a message was awaited");
                    check_reply(&reply.to_bytes());
                }
                Some(Event::StartTls) => {
                    assert!(tls && pending.is_empty());
                    session.tls_established();
                }
                None => {
                    assert!(pending.is_empty(), "the session stalled");
                    break;
                }
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let (first, input) = match data.split_first() {
        Some((first, rest)) => (*first, rest),
        None => (0, data),
    };
    let step = usize::from(first % 64) + 1;
    let tls = first & 0x40 != 0;
    run(input, step, tls, first);
    let mapped: Vec<u8> = input
        .iter()
        .flat_map(|&b| ALPHABET[usize::from(b) % ALPHABET.len()].iter().copied())
        .collect();
    run(&mapped, step.saturating_mul(4), tls, first);
});

//! Replays `tests/data/transcripts/*.txt` against the sans-I/O session.
//!
//! The format is described in `tests/data/transcripts/README.md`.

// Test helpers outside #[test] fns may panic: clippy.toml allows it only inside them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use ccgate_core::{EmailAddress, QueueId};
use ccgate_smtp::{Event, NotQueued, RcptVerdict, RecipientPolicy, Session, SessionConfig};

/// Accepts `@legacy.example.com` and `@modern.example.com` unless the local part is
/// `nobody` (unknown) or `tempfail` (temporary failure); every other domain is relaying.
struct FakePolicy;

impl RecipientPolicy for FakePolicy {
    fn check(&self, rcpt: &EmailAddress) -> RcptVerdict {
        match rcpt.domain() {
            "legacy.example.com" | "modern.example.com" => match rcpt.local() {
                "nobody" => RcptVerdict::Unknown,
                "tempfail" => RcptVerdict::TempFail,
                _ => RcptVerdict::Accept,
            },
            _ => RcptVerdict::RelayDenied,
        }
    }
}

/// Decodes `\r \n \t \0 \\ \xHH` and `\{N:TEXT}` (TEXT repeated N times).
fn unescape(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(pos) = rest.find('\\') {
        out.extend_from_slice(&rest.as_bytes()[..pos]);
        let after = &rest[pos + 1..];
        let mut chars = after.chars();
        let c = chars.next().ok_or("trailing backslash")?;
        rest = chars.as_str();
        match c {
            'r' => out.push(b'\r'),
            'n' => out.push(b'\n'),
            't' => out.push(b'\t'),
            '0' => out.push(0),
            '\\' => out.push(b'\\'),
            'x' => {
                let hex = rest.get(..2).ok_or("short \\x escape")?;
                out.push(u8::from_str_radix(hex, 16).map_err(|e| e.to_string())?);
                rest = &rest[2..];
            }
            '{' => {
                let end = rest.find('}').ok_or("unterminated \\{")?;
                let (count, repeated) =
                    rest[..end].split_once(':').ok_or("\\{N:TEXT} needs ':'")?;
                let count: usize = count.parse().map_err(|_| "bad repeat count")?;
                out.extend_from_slice(&repeated.as_bytes().repeat(count));
                rest = &rest[end + 1..];
            }
            other => return Err(format!("unknown escape \\{other}")),
        }
    }
    out.extend_from_slice(rest.as_bytes());
    Ok(out)
}

struct Runner {
    session: Session<FakePolicy>,
    packet: Vec<u8>,
    replies: VecDeque<String>,
    events: VecDeque<String>,
    messages: Vec<Vec<u8>>,
    expected_data: Option<Vec<u8>>,
    queue_answer: Option<NotQueued>,
    next_id: u128,
}

impl Runner {
    fn feed_packet(&mut self) {
        if self.packet.is_empty() {
            return;
        }
        let packet = std::mem::take(&mut self.packet);
        let mut input = packet.as_slice();
        loop {
            let out = self.session.feed(input);
            assert!(out.consumed <= input.len());
            input = &input[out.consumed..];
            for reply in &out.replies {
                let wire = reply.to_string();
                self.replies
                    .extend(wire.split_terminator("\r\n").map(str::to_owned));
            }
            if out.close {
                self.events.push_back("close".to_owned());
                return;
            }
            match out.event {
                Some(Event::MessageComplete { envelope, data, .. }) => {
                    let mut text = format!("message <{}>", envelope.sender);
                    for rcpt in &envelope.recipients {
                        write!(text, " <{rcpt}>").unwrap();
                    }
                    self.events.push_back(text);
                    self.messages.push(data);
                    let result = match self.queue_answer.take() {
                        Some(error) => Err(error),
                        None => {
                            self.next_id += 1;
                            Ok(QueueId::from_u128(self.next_id))
                        }
                    };
                    let reply = self.session.message_queued(result).expect("awaited");
                    self.replies.extend(
                        reply
                            .to_string()
                            .split_terminator("\r\n")
                            .map(str::to_owned),
                    );
                }
                Some(Event::StartTls) => {
                    assert!(input.is_empty(), "input left after STARTTLS");
                    self.events.push_back("starttls".to_owned());
                    self.session.tls_established();
                }
                None => {
                    assert!(input.is_empty(), "input left without an event");
                    return;
                }
            }
        }
    }

    fn check_data(&mut self) -> Result<(), String> {
        if let Some(expected) = self.expected_data.take() {
            let got = self.messages.last().ok_or("D: lines but no message")?;
            if *got != expected {
                return Err(format!(
                    "message data differs:\n  expected {:?}\n  got      {:?}",
                    String::from_utf8_lossy(&expected),
                    String::from_utf8_lossy(got)
                ));
            }
        }
        Ok(())
    }
}

fn config(options: &[(String, String)]) -> Result<SessionConfig, String> {
    let mut config = SessionConfig::new("mx.ccgate.test").map_err(|e| e.to_string())?;
    for (key, value) in options {
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("bad number {value:?}"))
        };
        let size = || number().map(|n| usize::try_from(n).unwrap());
        match key.as_str() {
            "max_message_size" => config.limits.max_message_size = number()?,
            "max_recipients" => config.limits.max_recipients = size()?,
            "max_errors" => config.limits.max_errors = u32::try_from(number()?).unwrap(),
            "max_command_line" => config.limits.max_command_line = size()?,
            "max_text_line" => config.limits.max_text_line = size()?,
            "tls" => config.tls_available = value == "on",
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(config)
}

/// Runs one transcript; the error names the line that failed.
fn run(text: &str) -> Result<(), String> {
    let lines: Vec<(usize, &str, &str)> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
        .map(|(n, l)| {
            let (tag, rest) = l.split_at(l.find(':').map_or(l.len(), |p| p + 1));
            (n + 1, tag, rest.strip_prefix(' ').unwrap_or(rest))
        })
        .collect();
    let options: Vec<(String, String)> = lines
        .iter()
        .filter(|(_, tag, _)| *tag == "O:")
        .map(|(_, _, rest)| {
            let (k, v) = rest.split_once('=').unwrap_or((rest, ""));
            (k.trim().to_owned(), v.trim().to_owned())
        })
        .collect();
    // The greeting is sent first unless the client speaks first (an early talker).
    let client_first = lines
        .iter()
        .find(|(_, tag, _)| matches!(*tag, "C:" | "R:" | "S:"))
        .is_some_and(|(_, tag, _)| *tag != "S:");
    let mut runner = Runner {
        session: Session::new(
            config(&options)?,
            Some("192.0.2.1".parse().unwrap()),
            FakePolicy,
        ),
        packet: Vec::new(),
        replies: VecDeque::new(),
        events: VecDeque::new(),
        messages: Vec::new(),
        expected_data: None,
        queue_answer: None,
        next_id: 0,
    };
    if !client_first {
        let greeting = runner.session.greeting().to_string();
        runner
            .replies
            .extend(greeting.split_terminator("\r\n").map(str::to_owned));
    }
    for &(number, tag, rest) in &lines {
        let at = |e: String| format!("line {number}: {e}");
        if !matches!(tag, "C:" | "R:") {
            runner.feed_packet();
        }
        if tag != "D:" {
            runner.check_data().map_err(at)?;
        }
        match tag {
            "O:" => {}
            "C:" => {
                runner.packet.extend(unescape(rest).map_err(at)?);
                runner.packet.extend_from_slice(b"\r\n");
            }
            "R:" => runner.packet.extend(unescape(rest).map_err(at)?),
            "S:" => {
                let got = runner
                    .replies
                    .pop_front()
                    .ok_or_else(|| at(format!("expected {rest:?}, got no reply")))?;
                let ok = match rest.strip_suffix("...") {
                    Some(prefix) => got.starts_with(prefix),
                    None => got == rest,
                };
                if !ok {
                    return Err(at(format!("expected {rest:?}, got {got:?}")));
                }
            }
            "E:" => {
                let got = runner
                    .events
                    .pop_front()
                    .ok_or_else(|| at(format!("expected event {rest:?}, got none")))?;
                if got != rest {
                    return Err(at(format!("expected event {rest:?}, got {got:?}")));
                }
            }
            "D:" => {
                let data = runner.expected_data.get_or_insert_with(Vec::new);
                data.extend(unescape(rest).map_err(at)?);
                data.extend_from_slice(b"\r\n");
            }
            "Q:" => {
                runner.queue_answer = match rest {
                    "temporary" => Some(NotQueued::Temporary),
                    "diskfull" => Some(NotQueued::DiskFull),
                    other => return Err(at(format!("unknown queue answer {other:?}"))),
                }
            }
            other => return Err(at(format!("unknown tag {other:?}"))),
        }
    }
    runner.feed_packet();
    runner
        .check_data()
        .map_err(|e| format!("at the end: {e}"))?;
    if !runner.replies.is_empty() {
        return Err(format!(
            "unexpected replies at the end: {:?}",
            runner.replies
        ));
    }
    if !runner.events.is_empty() {
        return Err(format!("unexpected events at the end: {:?}", runner.events));
    }
    Ok(())
}

fn transcripts() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/transcripts");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort();
    files
}

#[test]
fn all_transcripts_pass() {
    let files = transcripts();
    assert!(files.len() >= 20, "found only {} transcripts", files.len());
    let mut failures = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        if let Err(e) = run(&text) {
            failures.push(format!(
                "{}: {e}",
                path.file_name().unwrap().to_string_lossy()
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn the_runner_catches_mismatches() {
    let cases = [
        (
            "S: 220 mx.ccgate.test ESMTP ccgate\nC: NOOP\nS: 250 2.0.0 Ok\n",
            true,
        ),
        (
            "S: 220 mx.ccgate.test ESMTP ccgate\nC: NOOP\nS: 250 2.0.0 ...\n",
            true,
        ),
        (
            "S: 220 mx.ccgate.test ESMTP ccgate\nC: NOOP\nS: 250 2.0.0 Okay\n",
            false,
        ),
        ("S: 220 mx.ccgate.test ESMTP ccgate\nC: NOOP\n", false),
        (
            "S: 220 mx.ccgate.test ESMTP ccgate\nC: QUIT\nS: 221 2.0.0 Bye\n",
            false,
        ),
        (
            "S: 220 mx.ccgate.test ESMTP ccgate\nC: QUIT\nS: 221 2.0.0 Bye\nE: close\n",
            true,
        ),
        ("S: 220 ...\nE: close\n", false),
        ("S: 220 ...\nD: x\n", false),
        ("X: what\n", false),
    ];
    for (text, passes) in cases {
        assert_eq!(run(text).is_ok(), passes, "{text}");
    }
}

#[test]
fn escapes() {
    let cases: [(&str, &[u8]); 4] = [
        ("a\\r\\nb", b"a\r\nb"),
        ("\\x00\\\\\\t", b"\x00\\\t"),
        ("<\\{3:ab}>", b"<ababab>"),
        ("\\0.", b"\x00."),
    ];
    for (text, bytes) in cases {
        assert_eq!(unescape(text).unwrap(), bytes, "{text}");
    }
    assert!(unescape("\\q").is_err());
}

//! The message trace: a bounded event log in the data folder (`trace/events.log`, then
//! `trace/events.log.1`), one JSON object per line, for "where is my mail?".
//!
//! Events: `accepted`, `routed`, `rewritten`, `held`, `delivered`, `deferred`, `bounced`,
//! `quarantined`, `replayed`, each with its time, queue id, sender, recipients, Message-ID,
//! side and the reply or reason. No message bodies, no subjects. The log is bounded by size:
//! when `events.log` passes half the bound it becomes `events.log.1` (replacing the older one),
//! so at most the bound is kept and the oldest events go first.
//!
//! Recording never blocks: events go through a bounded channel to one writer thread; when the
//! channel is full the event is dropped and counted (`dropped`).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ccgate_core::{EmailAddress, Envelope, Lane, QueueId, ReversePath};
use ccgate_queue::Route;

/// The current file's name inside the trace folder.
pub const TRACE_FILE: &str = "events.log";
/// The default bound on the trace files together.
pub const DEFAULT_TRACE_SIZE: u64 = 64 << 20;
/// Events waiting for the writer at most.
const QUEUE: usize = 16 * 1024;
/// Header bytes searched for a Message-ID.
const MAX_HEADER_SCAN: usize = 64 * 1024;

/// One step of a message's story.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TraceEvent {
    /// When (Unix milliseconds).
    pub at: u64,
    /// `accepted`, `routed`, `rewritten`, `held`, `delivered`, `deferred`, `bounced`,
    /// `quarantined` or `replayed`.
    pub event: String,
    /// The queue id, once there is one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub queue_id: String,
    /// The envelope sender (`<>` for the null sender).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub from: String,
    /// The recipients concerned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<String>,
    /// The Message-ID header, without angle brackets.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message_id: String,
    /// Where: `smtp`, `legacy`, or the lane.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub side: String,
    /// The reply, reason, file:line or new address.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn sender_text(sender: &ReversePath) -> String {
    match sender {
        ReversePath::Null => "<>".to_owned(),
        other => other.to_string(),
    }
}

impl TraceEvent {
    /// An event of `kind` now.
    pub fn new(kind: &str, queue_id: &QueueId) -> Self {
        Self {
            at: now_ms(),
            event: kind.to_owned(),
            queue_id: queue_id.to_string(),
            from: String::new(),
            to: Vec::new(),
            message_id: String::new(),
            side: String::new(),
            detail: String::new(),
        }
    }

    /// A message of `size` octets accepted from `side` (`smtp`, `legacy`, `replay`), then one
    /// `routed`, `rewritten` or `held` event per recipient. `head` is the start of the message
    /// (its header section, for the Message-ID; empty when it is not at hand).
    pub fn accepted(
        side: &str,
        id: &QueueId,
        envelope: &Envelope,
        routes: &[Route],
        (head, size): (&[u8], u64),
        detail: &str,
    ) -> Vec<Self> {
        let message_id = message_id(head);
        let from = sender_text(&envelope.sender);
        let kind = if side == "replay" {
            "replayed"
        } else {
            "accepted"
        };
        let mut events = vec![Self {
            from: from.clone(),
            to: envelope
                .recipients
                .iter()
                .map(ToString::to_string)
                .collect(),
            message_id: message_id.clone(),
            side: side.to_owned(),
            detail: format!("{detail}{size} bytes"),
            ..Self::new(kind, id)
        }];
        for (rcpt, route) in envelope.recipients.iter().zip(routes) {
            events.push(Self::routed(id, &from, &message_id, rcpt, route));
        }
        events
    }

    /// How one recipient was routed.
    pub fn routed(
        id: &QueueId,
        from: &str,
        message_id: &str,
        rcpt: &EmailAddress,
        route: &Route,
    ) -> Self {
        let (kind, detail) = if route.hold {
            (
                "held",
                format!("held in {} until released", route.destination),
            )
        } else if route.deliver_to != *rcpt {
            (
                "rewritten",
                format!("to {} via {}", route.deliver_to, route.destination),
            )
        } else {
            ("routed", format!("via {}", route.destination))
        };
        Self {
            from: from.to_owned(),
            to: vec![rcpt.to_string()],
            message_id: message_id.to_owned(),
            side: route.destination.clone(),
            detail: detail.to_owned(),
            ..Self::new(kind, id)
        }
    }

    /// A delivery outcome for one recipient on `lane`.
    pub fn delivery(kind: &str, id: &QueueId, lane: Lane, to: &EmailAddress, detail: &str) -> Self {
        Self {
            to: vec![to.to_string()],
            side: lane.into(),
            detail: detail.to_owned(),
            ..Self::new(kind, id)
        }
    }

    /// A legacy message set aside by the pickup (no queue id: it never entered the queue).
    pub fn quarantined(file: &str, line: u64, reason: &str) -> Self {
        Self {
            at: now_ms(),
            event: "quarantined".to_owned(),
            queue_id: String::new(),
            from: String::new(),
            to: Vec::new(),
            message_id: String::new(),
            side: "legacy".to_owned(),
            detail: format!("{file}:{line}: {reason}"),
        }
    }

    fn mentions(&self, needle: &str) -> bool {
        let has = |s: &str| s.to_lowercase().contains(needle);
        has(&self.queue_id)
            || has(&self.message_id)
            || has(&self.from)
            || self.to.iter().any(|t| has(t))
            || (self.event == "quarantined" && has(&self.detail))
    }
}

/// The Message-ID of a message's header section, without angle brackets ("" if none).
pub fn message_id(body: &[u8]) -> String {
    let head = body
        .get(..MAX_HEADER_SCAN.min(body.len()))
        .unwrap_or_default();
    // Only the header: the body is never looked at (nor converted).
    let end = head
        .windows(2)
        .position(|w| w == b"\n\n" || w == b"\n\r")
        .map_or(head.len(), |at| at + 1);
    let text = String::from_utf8_lossy(head.get(..end).unwrap_or_default());
    let mut lines = text.split('\n').map(|l| l.trim_end_matches('\r'));
    while let Some(line) = lines.next() {
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.trim().eq_ignore_ascii_case("message-id")
        {
            let mut value = value.trim().to_owned();
            if value.is_empty() {
                value = lines.next().unwrap_or("").trim().to_owned();
            }
            return value
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_owned();
        }
    }
    String::new()
}

/// What to look for in the trace.
#[derive(Debug, Clone, Default)]
pub struct TraceQuery {
    /// An address, queue id or Message-ID (case-insensitive, part of one is enough); empty
    /// matches everything.
    pub text: String,
    /// Not before (Unix seconds).
    pub since: Option<u64>,
    /// Not after (Unix seconds).
    pub until: Option<u64>,
}

/// The trace log: a writer thread fed by [`TraceLog::record`], and searches.
#[derive(Debug)]
pub struct TraceLog {
    dir: PathBuf,
    tx: Option<SyncSender<String>>,
    dropped: AtomicU64,
}

impl TraceLog {
    /// Opens the trace folder `dir` for writing (created if missing) with a bound of
    /// `max_bytes` on its files, and starts the writer thread.
    ///
    /// # Errors
    /// The folder cannot be created or the file opened.
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let path = dir.join(TRACE_FILE);
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let (tx, rx) = sync_channel(QUEUE);
        let half = (max_bytes / 2).max(4096);
        std::thread::Builder::new()
            .name("ccgate-trace".to_owned())
            .spawn(move || write_loop(&rx, file, &path, half))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            tx: Some(tx),
            dropped: AtomicU64::new(0),
        })
    }

    /// Opens the trace folder `dir` for searching only (the CLI).
    pub fn reader(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            tx: None,
            dropped: AtomicU64::new(0),
        }
    }

    /// Records an event; never blocks (dropped and counted when the writer is behind).
    pub fn record(&self, event: &TraceEvent) {
        let Some(tx) = &self.tx else { return };
        let Ok(mut line) = serde_json::to_string(event) else {
            return;
        };
        line.push('\n');
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = tx.try_send(line) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Appends events to the trace in `dir` at once, from another process than the gateway
    /// (`ccgate replay` queuing by itself): one `write` of whole lines to a file opened for
    /// appending, so lines never interleave with the gateway's.
    ///
    /// # Errors
    /// The folder or file cannot be written.
    pub fn append(dir: &Path, events: &[TraceEvent]) -> io::Result<()> {
        fs::create_dir_all(dir)?;
        let mut text = String::new();
        for event in events {
            text.push_str(&serde_json::to_string(event).map_err(io::Error::other)?);
            text.push('\n');
        }
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(TRACE_FILE))?
            .write_all(text.as_bytes())
    }

    /// Events dropped because the writer was behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The events matching `query`, newest first, at most `limit`. A message whose queue id
    /// matches once is shown whole: searching by the address a message was sent to also finds
    /// its delivery under the rewritten address.
    pub fn search(&self, query: &TraceQuery, limit: usize) -> Vec<TraceEvent> {
        let needle = query.text.trim().to_lowercase();
        let needle = needle.trim_start_matches('<').trim_end_matches('>');
        let in_time = |e: &TraceEvent| {
            query.since.is_none_or(|s| e.at / 1000 >= s)
                && query.until.is_none_or(|u| e.at / 1000 <= u)
        };
        let mut all: Vec<TraceEvent> = Vec::new();
        for name in [format!("{TRACE_FILE}.1"), TRACE_FILE.to_owned()] {
            let Ok(file) = File::open(self.dir.join(name)) else {
                continue;
            };
            for line in BufReader::new(file).lines() {
                let Ok(line) = line else { break };
                if let Ok(event) = serde_json::from_str::<TraceEvent>(&line)
                    && in_time(&event)
                {
                    all.push(event);
                }
            }
        }
        let ids: std::collections::HashSet<String> = all
            .iter()
            .filter(|e| !e.queue_id.is_empty() && e.mentions(needle))
            .map(|e| e.queue_id.clone())
            .collect();
        let mut found: Vec<TraceEvent> = all
            .into_iter()
            .filter(|e| needle.is_empty() || e.mentions(needle) || ids.contains(&e.queue_id))
            .collect();
        found.reverse();
        found.truncate(limit);
        found
    }
}

fn write_loop(rx: &Receiver<String>, file: File, path: &Path, half: u64) {
    let mut size = file.metadata().map_or(0, |m| m.len());
    let mut out = io::BufWriter::new(file);
    let mut next = rx.recv().ok();
    while let Some(line) = next {
        let len = line.len() as u64;
        if size > 0 && size + len > half {
            let _ = out.flush();
            let old = path.with_file_name(format!("{TRACE_FILE}.1"));
            if fs::rename(path, &old).is_ok()
                && let Ok(f) = OpenOptions::new().create(true).append(true).open(path)
            {
                out = io::BufWriter::new(f);
                size = 0;
            }
        }
        if out.write_all(line.as_bytes()).is_ok() {
            size += len;
        }
        next = match rx.try_recv() {
            Ok(more) => Some(more),
            Err(_) => {
                if out.flush().is_err() {
                    std::thread::sleep(Duration::from_millis(100));
                }
                rx.recv().ok()
            }
        };
    }
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait_for(log: &TraceLog, query: &TraceQuery, n: usize) -> Vec<TraceEvent> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let found = log.search(query, 100);
            if found.len() >= n || std::time::Instant::now() > deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn message_ids_are_read_from_the_header_only() {
        assert_eq!(
            message_id(b"Subject: x\r\nMessage-ID: <a.b@c>\r\n\r\nbody"),
            "a.b@c"
        );
        assert_eq!(
            message_id(b"message-id:\r\n <folded@x>\r\n\r\n"),
            "folded@x"
        );
        assert_eq!(
            message_id(b"Subject: x\r\n\r\nMessage-ID: <in-body@x>\r\n"),
            ""
        );
    }

    #[test]
    fn events_are_found_by_address_id_and_message_id_and_a_delivery_by_the_original_address() {
        let dir = tempfile::tempdir().unwrap();
        let log = TraceLog::open(dir.path(), 1 << 20).unwrap();
        let id = QueueId::generate();
        let envelope = Envelope {
            sender: "a@x.example".parse().unwrap(),
            recipients: vec!["jane@legacy.example".parse().unwrap()],
        };
        let rewritten: EmailAddress = "jane.doe@modern.example".parse().unwrap();
        let routes = [Route::new(Lane::Modern, rewritten.clone())];
        for e in TraceEvent::accepted(
            "smtp",
            &id,
            &envelope,
            &routes,
            (b"Message-ID: <m1@x>\r\n\r\nhi\r\n", 26),
            "",
        ) {
            log.record(&e);
        }
        log.record(&TraceEvent::delivery(
            "delivered",
            &id,
            Lane::Modern,
            &rewritten,
            "250 ok",
        ));
        let by_address = wait_for(
            &log,
            &TraceQuery {
                text: "JANE@legacy.example".into(),
                ..TraceQuery::default()
            },
            3,
        );
        let kinds: Vec<&str> = by_address.iter().map(|e| e.event.as_str()).collect();
        assert_eq!(kinds, ["delivered", "rewritten", "accepted"]);
        assert_eq!(
            log.search(
                &TraceQuery {
                    text: "<m1@x>".into(),
                    ..TraceQuery::default()
                },
                10
            )
            .len(),
            3
        );
        assert_eq!(
            log.search(
                &TraceQuery {
                    text: id.to_string(),
                    ..TraceQuery::default()
                },
                10
            )
            .len(),
            3
        );
        assert!(
            log.search(
                &TraceQuery {
                    text: "nobody@else".into(),
                    ..TraceQuery::default()
                },
                10
            )
            .is_empty()
        );
        let future = TraceQuery {
            since: Some(u64::MAX / 1000),
            ..TraceQuery::default()
        };
        assert!(log.search(&future, 10).is_empty());
    }

    #[test]
    fn the_log_stays_within_its_bound() {
        let dir = tempfile::tempdir().unwrap();
        let log = TraceLog::open(dir.path(), 16 * 1024).unwrap();
        let id = QueueId::generate();
        let to: EmailAddress = "x@y.example".parse().unwrap();
        for n in 0..2000 {
            log.record(&TraceEvent::delivery(
                "deferred",
                &id,
                Lane::Modern,
                &to,
                &format!("451 try {n}"),
            ));
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while log
            .search(&TraceQuery::default(), 1)
            .first()
            .map(|e| e.detail.as_str())
            != Some("451 try 1999")
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the last event never arrived"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let total: u64 = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        assert!(total <= 16 * 1024, "{total} bytes kept");
        assert!(
            log.search(&TraceQuery::default(), 5000).len() < 2000,
            "the oldest went first"
        );
    }
}

//! Test harness (not a tool): enqueues and "delivers" messages against a real spool so that
//! `tests/kill.rs` can SIGKILL it at any point and check that acknowledged mail survives.
//!
//! ```text
//! queue-stress SPOOL DELIVERIES run [MESSAGES]   enqueue and deliver until killed (or done)
//! queue-stress SPOOL DELIVERIES drain            deliver what is queued, then exit 0
//! queue-stress SPOOL DELIVERIES serve            own the spool and tick (no delivery) until killed
//! queue-stress SPOOL DELIVERIES fill [MESSAGES]  enqueue without delivering, then exit
//! ```
//!
//! Standard output, one line each, flushed at once:
//! - `ACK <id>` after `enqueue` returned (the message is durable);
//! - `DONE <id> <idx>` after `complete` returned for a delivered recipient (durable);
//! - `READY` once the spool is open; `DRAINED` when drain mode finds the queue empty.
//!
//! The fake destination appends `D <id> <idx> <pid>` (bounces: `... bounce-of <orig>`) to the
//! DELIVERIES file *before* reporting success, as a real destination accepts mail before the
//! gateway records it. Recipients named `fail...` are rejected permanently (so bounces flow);
//! bounces are routed to the same fake lane.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ccgate_core::{EmailAddress, Envelope, ReversePath};
use ccgate_queue::{
    DeadPolicy, DeliveryError, DeliveryResult, FailureScope, RetryPolicy, Route, Spool,
    SpoolOptions, now,
};

const LANE: &str = "fake";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(spool_dir), Some(deliveries), Some(mode)) = (args.get(1), args.get(2), args.get(3))
    else {
        eprintln!(
            "usage: queue-stress SPOOL DELIVERIES run [MESSAGES] | drain | serve | fill [MESSAGES]"
        );
        return ExitCode::from(2);
    };
    let messages = args
        .get(4)
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(1_000_000);
    match run(Path::new(spool_dir), Path::new(deliveries), mode, messages) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("queue-stress: {e}");
            ExitCode::from(1)
        }
    }
}

fn options() -> SpoolOptions {
    SpoolOptions {
        retry: RetryPolicy {
            retry: vec![Duration::from_millis(500)],
            max_lifetime: Duration::from_secs(86_400),
        },
        // Kills are expected here: never quarantine because of them.
        quarantine_after: 1000,
        attempt_timeout: Duration::from_secs(30),
        lanes: HashMap::from([(LANE.to_owned(), 8)]),
        dead: DeadPolicy {
            dead_after: 0,
            ..SpoolOptions::default().dead
        },
        journal_segment_bytes: 256 << 10,
        data_segment_bytes: 256 << 10,
        ..SpoolOptions::default()
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn say(out: &Mutex<std::io::Stdout>, line: &str) {
    let mut out = out
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn run(spool_dir: &Path, deliveries: &Path, mode: &str, messages: u64) -> Result<(), BoxError> {
    let spool = Arc::new(Spool::open(spool_dir, options())?);
    for finding in spool.recovery_report().findings() {
        eprintln!("recovery: {finding}");
    }
    let out = Arc::new(Mutex::new(std::io::stdout()));
    say(&out, "READY");
    let stop = Arc::new(AtomicBool::new(false));
    if mode == "serve" {
        loop {
            spool.tick(now())?;
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    if mode == "fill" {
        for n in 0..messages {
            let rcpt: EmailAddress = format!("user{n}@example.com").parse()?;
            let lane = if n % 3 == 0 { "legacy" } else { LANE };
            let envelope = Envelope {
                sender: format!("sender{}@example.com", n % 5).parse::<ReversePath>()?,
                recipients: vec![rcpt.clone()],
            };
            let body = format!("Subject: message {n}\r\n\r\nbody {n}\r\n");
            let id = spool.enqueue(&envelope, &[Route::new(lane, rcpt)], body.as_bytes(), now())?;
            say(&out, &format!("ACK {id}"));
        }
        return Ok(());
    }
    let sink = Arc::new(Mutex::new(
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(deliveries)?,
    ));
    let mut handles = Vec::new();
    for _ in 0..4 {
        let (spool, sink, out, stop) = (
            Arc::clone(&spool),
            Arc::clone(&sink),
            Arc::clone(&out),
            Arc::clone(&stop),
        );
        handles.push(std::thread::spawn(move || {
            deliver(&spool, &sink, &out, &stop)
        }));
    }
    let enqueued = Arc::new(AtomicU64::new(0));
    if mode == "run" {
        for _ in 0..4 {
            let (spool, out, enqueued) =
                (Arc::clone(&spool), Arc::clone(&out), Arc::clone(&enqueued));
            handles.push(std::thread::spawn(move || -> Result<(), BoxError> {
                loop {
                    let n = enqueued.fetch_add(1, Ordering::SeqCst);
                    if n >= messages {
                        return Ok(());
                    }
                    let mut recipients: Vec<EmailAddress> =
                        vec![format!("user{n}@example.com").parse()?];
                    if n % 7 == 3 {
                        recipients.push(format!("fail{n}@example.com").parse()?);
                    }
                    let routes: Vec<Route> = recipients
                        .iter()
                        .map(|r| Route::new(LANE, r.clone()))
                        .collect();
                    let envelope = Envelope {
                        sender: "sender@example.com".parse::<ReversePath>()?,
                        recipients,
                    };
                    let body = format!("Subject: message {n}\r\n\r\nbody {n}\r\n");
                    let id = spool.enqueue(&envelope, &routes, body.as_bytes(), now())?;
                    say(&out, &format!("ACK {id}"));
                }
            }));
        }
    }
    // Housekeeping on this thread: route bounces, tick, and stop when drained.
    loop {
        let t = now();
        for unrouted in spool.unrouted(100) {
            let routes: Vec<(u16, Route)> = unrouted
                .recipients
                .iter()
                .map(|(idx, addr)| (*idx, Route::new(LANE, addr.clone())))
                .collect();
            spool.route(unrouted.queue_id, &routes, t)?;
        }
        spool.tick(t)?;
        let all_enqueued = mode != "run" || enqueued.load(Ordering::SeqCst) >= messages;
        if all_enqueued && spool.is_empty() {
            stop.store(true, Ordering::SeqCst);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for h in handles {
        h.join().map_err(|_| "a thread panicked")??;
    }
    say(&out, "DRAINED");
    Arc::into_inner(spool)
        .ok_or("spool still shared")?
        .close()?;
    Ok(())
}

fn deliver(
    spool: &Spool,
    sink: &Mutex<File>,
    out: &Mutex<std::io::Stdout>,
    stop: &AtomicBool,
) -> Result<(), BoxError> {
    while !stop.load(Ordering::SeqCst) {
        let leases = spool.lease(LANE, 2, now())?;
        if leases.is_empty() {
            std::thread::sleep(Duration::from_millis(2));
            continue;
        }
        for lease in leases {
            let mut results: Vec<DeliveryResult> = Vec::new();
            let mut delivered = Vec::new();
            for r in &lease.recipients {
                if r.address.local().starts_with("fail") {
                    results.push(Err(DeliveryError::permanent(
                        FailureScope::Recipient,
                        "no such user",
                    )));
                    continue;
                }
                let pid = std::process::id();
                let line = match lease.bounce_of {
                    Some(orig) => {
                        format!("D {} {} {pid} bounce-of {orig}\n", lease.queue_id, r.index)
                    }
                    None => format!("D {} {} {pid}\n", lease.queue_id, r.index),
                };
                sink.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .write_all(line.as_bytes())?;
                delivered.push(r.index);
                results.push(Ok(()));
            }
            let id = lease.queue_id;
            spool.complete(lease, &results, now())?;
            for idx in delivered {
                say(out, &format!("DONE {id} {idx}"));
            }
        }
    }
    Ok(())
}

//! Scale benchmark (plain timing code, not run in CI):
//!
//! ```text
//! cargo bench -p ccgate-queue --bench scale
//! CCGATE_BENCH_N=100000 cargo bench -p ccgate-queue --bench scale     # fewer messages
//! CCGATE_BENCH_DIR=/var/spool/test cargo bench ...                    # where to write
//! CCGATE_BENCH_THREADS=32 cargo bench ...                             # enqueuers (default 8)
//! ```
//!
//! Fills a spool with N messages (default 1,000,000; about 1.5 KB each, one recipient, three
//! destinations, arrival times spread over two days), then measures:
//!
//! 1. durable enqueue rate with one thread, then with 8 threads (group commit);
//! 2. in a fresh process: restart recovery time and resident memory (VmRSS) after recovery,
//!    the owner's in-memory `summary`, and what one `/metrics` scrape reads (summary + depth);
//! 3. in another fresh process: `ccgate queue summary`'s path (a read-only `QueueView` of the
//!    whole journal, then the table).
//!
//! Targets (issue 3): recovery <= 20 s, summary <= 2 s, memory < 500 MB.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use ccgate_core::{EmailAddress, Envelope, ReversePath};
use ccgate_queue::{QueueView, Route, Spool, SpoolOptions};

fn main() {
    if let Ok(mode) = std::env::var("CCGATE_BENCH_CHILD") {
        let dir = PathBuf::from(std::env::var("CCGATE_BENCH_DIR").unwrap());
        match mode.as_str() {
            "recover" => child_recover(&dir),
            "view" => child_view(&dir),
            other => panic!("unknown child mode {other}"),
        }
        return;
    }
    let n: u64 = std::env::var("CCGATE_BENCH_N")
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(1_000_000);
    let threads: u64 = std::env::var("CCGATE_BENCH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8)
        .max(1);
    let base = std::env::var("CCGATE_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir());
    std::fs::create_dir_all(&base).unwrap();
    let tmp = tempfile::tempdir_in(&base).unwrap();
    let dir = tmp.path().join("queue");
    println!("scale benchmark: N = {n}, spool in {}", dir.display());
    println!(
        "machine: {} CPUs, {}",
        std::thread::available_parallelism().map_or(0, usize::from),
        std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| m.lines().next().map(str::to_owned))
            .unwrap_or_default()
    );

    let now = ccgate_queue::now();
    let spool = Spool::open(&dir, SpoolOptions::default()).unwrap();
    let single = n.min(20_000);
    let started = Instant::now();
    for i in 0..single {
        enqueue(&spool, i, now);
    }
    let t1 = started.elapsed();
    println!(
        "enqueue, 1 thread:  {single} messages in {:.2} s = {:.0} msg/s",
        t1.as_secs_f64(),
        single as f64 / t1.as_secs_f64()
    );

    let rest = n - single;
    let next = AtomicU64::new(single);
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    enqueue(&spool, i, now);
                }
            });
        }
    });
    let t8 = started.elapsed();
    if rest > 0 {
        println!(
            "enqueue, {threads} threads: {rest} messages in {:.2} s = {:.0} msg/s",
            t8.as_secs_f64(),
            rest as f64 / t8.as_secs_f64()
        );
    }
    let started = Instant::now();
    let summary = spool.summary(now);
    println!(
        "summary (owner, in memory, after enqueue): {:.3} s",
        started.elapsed().as_secs_f64()
    );
    print!("{summary}");
    assert_eq!(spool.len() as u64, n);
    spool.close().unwrap();
    println!("spool on disk: {}", du(&dir));

    for mode in ["recover", "view"] {
        let status = Command::new(std::env::current_exe().unwrap())
            .env("CCGATE_BENCH_CHILD", mode)
            .env("CCGATE_BENCH_DIR", &dir)
            .status()
            .unwrap();
        assert!(status.success());
    }
}

fn enqueue(spool: &Spool, i: u64, now: SystemTime) {
    let (dest, domain) = match i % 10 {
        0..=5 => ("modern", "modern.example.com"),
        6..=8 => ("legacy", "legacy.example.com"),
        _ => ("external", "example.org"),
    };
    let rcpt: EmailAddress = format!("user{}@{domain}", i % 50_000).parse().unwrap();
    let envelope = Envelope {
        sender: format!("sender{}@example.com", i % 10_000)
            .parse::<ReversePath>()
            .unwrap(),
        recipients: vec![rcpt.clone()],
    };
    let mut body = format!(
        "From: sender{0}@example.com\r\nTo: {rcpt}\r\nSubject: message {i}\r\nMessage-ID: <{i}@example.com>\r\n\r\n",
        i % 10_000
    )
    .into_bytes();
    body.resize(1500, b'x');
    body.extend_from_slice(b"\r\n");
    // Arrival times spread over two days so that every qshape column has mail.
    let age = Duration::from_secs((i * 7919) % 172_800);
    spool
        .enqueue(&envelope, &[Route::new(dest, rcpt)], &body, now - age)
        .unwrap();
}

fn child_recover(dir: &Path) {
    let started = Instant::now();
    let spool = Spool::open(dir, SpoolOptions::default()).unwrap();
    let t = started.elapsed();
    println!(
        "restart recovery: {} messages in {:.2} s ({} journal segments, {} records){}",
        spool.len(),
        t.as_secs_f64(),
        spool.recovery_report().journal_segments,
        spool.recovery_report().records,
        if spool.recovery_report().is_clean() {
            ""
        } else {
            " NOT CLEAN"
        }
    );
    println!("resident memory after recovery: {}", vm_rss());
    let started = Instant::now();
    let _ = spool.summary(ccgate_queue::now());
    println!(
        "summary (owner, in memory): {:.3} s",
        started.elapsed().as_secs_f64()
    );
    // What one /metrics scrape reads from the spool (the age table and the depth by state).
    let started = Instant::now();
    let _ = spool.summary(ccgate_queue::now());
    let _ = spool.depth(ccgate_queue::now());
    println!(
        "/metrics queue gauges (owner, in memory): {:.3} s",
        started.elapsed().as_secs_f64()
    );
}

fn child_view(dir: &Path) {
    let started = Instant::now();
    let view = QueueView::open(dir).unwrap();
    let read = started.elapsed();
    let _ = view.summary(ccgate_queue::now());
    let total = started.elapsed();
    println!(
        "`queue summary` (read-only view of {} messages): {:.2} s (journal read {:.2} s); memory {}",
        view.len(),
        total.as_secs_f64(),
        read.as_secs_f64(),
        vm_rss()
    );
}

fn vm_rss() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(|l| l.trim_start_matches("VmRSS:").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

fn du(dir: &Path) -> String {
    let mut total = 0u64;
    let mut files = 0;
    for sub in ["journal", "data"] {
        for e in std::fs::read_dir(dir.join(sub)).unwrap() {
            let e = e.unwrap();
            total += e.metadata().unwrap().len();
            files += 1;
        }
    }
    format!("{:.1} MB in {files} segment files", total as f64 / 1e6)
}

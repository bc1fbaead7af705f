//! Router benchmark (plain timing code; issue 5 item 7):
//!
//! ```text
//! cargo bench -p ccgate-router --bench route
//! CCGATE_BENCH_N=1000000 cargo bench -p ccgate-router --bench route   # more entries
//! ```
//!
//! Builds a directory CSV of N entries (default 100,000: a third each legacy, migrating and
//! migrated, three proxies each), then measures:
//!
//! 1. loading it: CSV reading, validation and index building (`Directory::from_csv`), the
//!    median of 5 runs (target: 1 s or less for 100,000 rows);
//! 2. routing one recipient: the median over 2,000 batches of 500 random recipients each, for
//!    an SMTP recipient that matches, a legacy name that matches (parsing included), and an
//!    SMTP recipient in our domain that matches nothing (target: 2 us or less), and the
//!    reply address issued for a legacy sender outside the directory (decoding, the directory
//!    miss and the HMAC-SHA256 check of its tag), and issuing such an address.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::{Duration, Instant};

use ccgate_router::{
    Directory, Origin, Recipient, ReplyTags, Router, RouterConfig, TagKey, TagKeys,
};

fn main() {
    let n: usize = std::env::var("CCGATE_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let csv = directory_csv(n);
    println!(
        "directory: {n} entries, {:.1} MB of CSV",
        csv.len() as f64 / 1e6
    );

    let mut loads = Vec::new();
    let mut directory = None;
    for _ in 0..5 {
        let start = Instant::now();
        let loaded = Directory::from_csv(csv.as_bytes()).unwrap();
        loads.push(start.elapsed());
        directory = Some(loaded);
    }
    let directory = directory.unwrap();
    assert_eq!(directory.len(), n);
    let load = median(&mut loads);
    println!(
        "load {n} rows: median {:.3} s (min {:.3} s) target <= 1 s for 100,000: {}",
        load.as_secs_f64(),
        loads.iter().min().unwrap().as_secs_f64(),
        verdict(load <= Duration::from_secs(1).mul_f64(n as f64 / 100_000.0))
    );

    let config = RouterConfig {
        reply_tags: Some(ReplyTags::new(
            TagKeys {
                current: TagKey::new([3; 32]),
                previous: Some(TagKey::new([4; 32])),
            },
            30,
        )),
        ..RouterConfig::default()
    };
    let router = Router::new(&directory, &config);
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut random = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        usize::try_from(seed % n as u64).unwrap()
    };
    let smtp: Vec<Recipient> = (0..500)
        .map(|_| Recipient::parse(&format!("user{}@legacy.example.com", random())).unwrap())
        .collect();
    let names: Vec<String> = (0..500)
        .map(|_| format!("Last{}, First at PO{}", random(), random() % 10))
        .collect();
    let misses: Vec<Recipient> = (0..500)
        .map(|i| Recipient::parse(&format!("nobody{i}@legacy.example.com")).unwrap())
        .collect();

    let per_route = |label: &str, f: &dyn Fn(usize)| {
        let mut samples = Vec::with_capacity(2_000);
        for _ in 0..2_000 {
            let start = Instant::now();
            for i in 0..500 {
                f(i);
            }
            samples.push(start.elapsed() / 500);
        }
        let m = median(&mut samples);
        println!(
            "route one recipient, {label}: median {:.0} ns target <= 2 us: {}",
            m.as_nanos(),
            verdict(m <= Duration::from_micros(2))
        );
    };
    per_route("SMTP address that matches", &|i| {
        black_box(router.route(Origin::Smtp, &smtp[i]));
    });
    per_route("legacy name that matches (parsed)", &|i| {
        let recipient = Recipient::parse(&names[i]).unwrap();
        black_box(router.route(Origin::Legacy, &recipient));
    });
    per_route("SMTP address in our domain, no entry", &|i| {
        black_box(router.route(Origin::Smtp, &misses[i]));
    });
    let strangers: Vec<ccgate_ccmail::LegacyAddress> = (0..500)
        .map(|i| ccgate_ccmail::parse_address(&format!("Stranger{i}, Sam at HQ")).unwrap())
        .collect();
    let issued: Vec<Recipient> = strangers
        .iter()
        .map(|s| Recipient::Smtp(router.smtp_form(s).unwrap().address))
        .collect();
    assert!(
        issued
            .iter()
            .all(|r| !router.route(Origin::Smtp, r).is_reject())
    );
    per_route("reply address with a tag (checked)", &|i| {
        black_box(router.route(Origin::Smtp, &issued[i]));
    });
    per_route("issue a tagged reply address", &|i| {
        black_box(router.smtp_form(&strangers[i]).unwrap());
    });
}

fn directory_csv(n: usize) -> String {
    let mut csv = String::with_capacity(n * 200);
    csv.push_str("display_name,legacy_name,post_office,proxy_addresses,target_address,state\n");
    for i in 0..n {
        let (state, target) = match i % 3 {
            0 => ("legacy", String::new()),
            1 => ("migrating", format!("SMTP:user{i}@modern.example.com")),
            _ => ("migrated", format!("SMTP:user{i}@modern.example.com")),
        };
        let po = i % 10;
        writeln!(
            csv,
            "First Last{i},\"Last{i}, First\",PO{po},\"SMTP:user{i}@legacy.example.com;smtp:f.last{i}@legacy.example.com;CCMAIL:Last{i}, First at PO{po}\",{target},{state}"
        )
        .unwrap();
    }
    csv
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn verdict(ok: bool) -> &'static str {
    if ok { "ok" } else { "MISSED" }
}

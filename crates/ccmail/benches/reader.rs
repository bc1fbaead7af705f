//! Reader throughput on a generated corpus of at least 50 MB: small and large messages, sized
//! (`/ITEMSIZE`) and unsized forms. Criterion prints MB/s (`thrpt`).
//!
//! `cargo bench -p ccgate-ccmail --bench reader`

// A benchmark is test code: it may panic on a broken generator, and criterion's macros make
// undocumented items.
#![allow(
    missing_docs,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::hint::black_box;

use ccgate_ccmail::{
    Header, Item, ItemBody, ItemKind, Message, ReadOptions, Reader, SliceReader, WriteOptions,
    write_messages,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const TARGET_BYTES: usize = 50 * 1024 * 1024;

/// A small deterministic generator (no dependency, same corpus every run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> usize {
        (self.next() % n) as usize
    }
}

fn text(rng: &mut Lcg, bytes: usize) -> String {
    const WORDS: [&str; 12] = [
        "budget",
        "meeting",
        "the",
        "report",
        "quarterly",
        "and",
        "please",
        "review",
        "Friday",
        "numbers",
        "of",
        "lunch",
    ];
    let mut out = String::with_capacity(bytes + 80);
    let mut line = 0;
    while out.len() < bytes {
        let w = WORDS[rng.below(WORDS.len() as u64)];
        out.push_str(w);
        line += w.len() + 1;
        if line > 66 {
            out.push_str("\r\n");
            line = 0;
        } else {
            out.push(' ');
        }
    }
    out
}

fn message(rng: &mut Lcg, large: bool) -> Message {
    let mut headers = vec![Header::From(format!(
        "Sender{}, Pat at HQ",
        rng.below(1000)
    ))];
    for _ in 0..1 + rng.below(4) {
        headers.push(Header::To(format!(
            "User{}, Sam at PO{}",
            rng.below(5000),
            rng.below(9)
        )));
    }
    headers.push(Header::Subject(format!(
        "Quarterly numbers {}",
        rng.below(100)
    )));
    let n_text = 500 + rng.below(3000);
    let mut items = vec![Item {
        kind: ItemKind::Text,
        title: String::new(),
        stamp: None,
        body: ItemBody::Text(text(rng, n_text)),
    }];
    if large {
        let n = 100_000 + rng.below(900_000);
        let data: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
        items.push(Item {
            kind: ItemKind::File,
            title: "REPORT.WK4".into(),
            stamp: None,
            body: ItemBody::Bytes(data),
        });
    }
    Message { headers, items }
}

/// Strips the size lines from writer output: the unsized form.
fn strip_sizes(sized: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(sized.len());
    let mut prev_keyword = false;
    for line in sized.split_inclusive(|b| *b == b'\n') {
        let body = line.strip_suffix(b"\r\n").unwrap_or(line);
        let is_size = !body.is_empty() && body.iter().all(u8::is_ascii_digit);
        if !(prev_keyword && is_size) {
            out.extend_from_slice(line);
        }
        prev_keyword = body == b"Message:"
            || body == b"Contents:"
            || body.ends_with(b" item:")
            || body.windows(6).any(|w| w == b" item:");
    }
    out
}

fn corpus(sized: bool, large: bool) -> (Vec<u8>, usize) {
    let mut rng = Lcg(if large { 7 } else { 3 });
    let mut out = Vec::with_capacity(TARGET_BYTES + 2_000_000);
    let mut n = 0;
    while out.len() < TARGET_BYTES {
        let mut one = Vec::new();
        // Unsized large messages would be read by lines through binary data: keep the
        // unsized corpus to text, as real size-less exports are.
        write_messages(
            &message(&mut rng, large && sized),
            &WriteOptions::default(),
            &mut one,
        )
        .expect("generated messages are valid");
        out.extend_from_slice(&if sized { one } else { strip_sizes(&one) });
        n += 1;
    }
    (out, n)
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("reader");
    group.sample_size(10);
    for (label, sized, large) in [
        ("sized-small", true, false),
        ("sized-large", true, true),
        ("unsized-small", false, false),
    ] {
        let (bytes, n) = corpus(sized, large);
        let parsed = SliceReader::new(&bytes).filter(Result::is_ok).count();
        assert_eq!(parsed, n, "{label}: every generated message parses");
        eprintln!(
            "{label}: {} messages, {:.1} MB",
            n,
            bytes.len() as f64 / 1e6
        );
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function(format!("{label}/frame"), |b| {
            b.iter(|| {
                SliceReader::new(black_box(&bytes))
                    .filter(Result::is_ok)
                    .count()
            })
        });
        group.bench_function(format!("{label}/decode"), |b| {
            let opts = ReadOptions::default();
            b.iter(|| {
                SliceReader::new(black_box(&bytes))
                    .filter_map(Result::ok)
                    .map(|m| m.decode(&opts).0.items.len())
                    .sum::<usize>()
            })
        });
        group.bench_function(format!("{label}/stream"), |b| {
            b.iter(|| {
                Reader::new(black_box(bytes.as_slice()), ReadOptions::default())
                    .filter(Result::is_ok)
                    .count()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! Golden files: `data/{ok,malformed,export}/NNN.txt` against `NNN.expected`.
//!
//! The summary of each file (every message, diagnostic and error, as the streaming reader sees
//! it) must equal the `.expected` file; a mismatch writes `NNN.actual` beside it, and
//! `UPDATE_EXPECT=1` rewrites the expectations. Each file is also read with its line ends
//! converted (CR LF to LF or LF to CR LF): the messages read must be the same, modulo line ends
//! in text, offsets, sizes and the warnings about size lines that no longer fit (files holding
//! binary item data are left out of that second check: converting their line ends corrupts them).

// Test helpers outside #[test] fns may panic: clippy.toml allows it only inside them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use ccgate_ccmail::{
    Header, ItemBody, ParseErrorKind, ReadError, ReadOptions, Reader, SliceReader,
};

fn summary(bytes: &[u8], normalized: bool) -> String {
    let mut out = String::new();
    // Read with tiny reads so the streaming reader's incomplete-buffer paths are exercised.
    let reader = Reader::new(
        Trickle {
            data: bytes,
            pos: 0,
            step: 7,
        },
        ReadOptions::default(),
    );
    for (n, result) in reader.enumerate() {
        match result {
            Ok(read) => {
                if normalized {
                    let _ = writeln!(out, "message {} at line {}", n + 1, read.position.line);
                } else {
                    let _ = writeln!(
                        out,
                        "message {} at {}:{} offset {} ({} bytes{})",
                        n + 1,
                        read.position.line,
                        read.position.column,
                        read.position.offset,
                        read.len,
                        if read.sized { ", sized" } else { "" }
                    );
                }
                for h in &read.message.headers {
                    let value = match h {
                        Header::Date(d) => format!("{d:?}"),
                        Header::Other { value, .. } => format!("{value:?} (kept)"),
                        other => format!(
                            "{:?}",
                            other
                                .address()
                                .or(read.message.subject())
                                .unwrap_or_default()
                        ),
                    };
                    let _ = writeln!(out, "  {}: {value}", h.keyword());
                }
                for item in &read.message.items {
                    let body = match &item.body {
                        // A size line counted for CR LF can, after conversion, end exactly one
                        // line end later and still be trusted: compare without trailing ends.
                        ItemBody::Text(t) if normalized => {
                            format!("text {:?}", t.replace("\r\n", "\n").trim_end_matches('\n'))
                        }
                        ItemBody::Text(t) => format!("text {} chars {t:?}", t.chars().count()),
                        ItemBody::Bytes(_) if normalized => "bytes".to_owned(),
                        ItemBody::Bytes(b) => {
                            format!("{} bytes {:?}", b.len(), String::from_utf8_lossy(b))
                        }
                    };
                    let stamp = item
                        .stamp
                        .map(|s| format!(" stamp {s:?}"))
                        .unwrap_or_default();
                    let _ = writeln!(
                        out,
                        "  item {} {:?}{stamp}: {body}",
                        item.kind.as_str(),
                        item.title
                    );
                }
                if !normalized {
                    for d in &read.diagnostics {
                        let _ = writeln!(out, "  warning {}: {}", d.position, d.message);
                    }
                }
            }
            Err(ReadError::Parse { error, raw }) => {
                if normalized {
                    // Byte counts differ with the line ends; what is wrong does not.
                    let kind = match &error.kind {
                        ParseErrorKind::Truncated { block, .. } => format!("truncated {block}"),
                        other => other.to_string(),
                    };
                    let _ = writeln!(out, "error at line {}: {kind}", error.position.line);
                } else {
                    let _ = writeln!(
                        out,
                        "error at {}: {} ({} raw bytes set aside)",
                        error.position,
                        error.kind,
                        raw.len()
                    );
                }
            }
            Err(e) => panic!("io error reading a slice: {e}"),
        }
    }
    out
}

/// A reader that hands out a few bytes at a time.
struct Trickle<'a> {
    data: &'a [u8],
    pos: usize,
    step: usize,
}

impl std::io::Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.step.min(buf.len()).min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn convert_line_ends(bytes: &[u8]) -> Vec<u8> {
    if bytes.windows(2).any(|w| w == b"\r\n") {
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'\r' && bytes.get(i + 1) == Some(&b'\n') {
                i += 1;
                continue;
            }
            out.push(bytes[i]);
            i += 1;
        }
        out
    } else {
        let mut out = Vec::with_capacity(bytes.len() * 2);
        for &b in bytes {
            if b == b'\n' {
                out.push(b'\r');
            }
            out.push(b);
        }
        out
    }
}

fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let mut found = Vec::new();
    for dir in ["ok", "malformed", "export"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "txt") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

#[test]
fn golden_files() {
    let cases = cases();
    assert!(cases.len() >= 10, "found only {} golden cases", cases.len());
    let update = std::env::var_os("UPDATE_EXPECT").is_some();
    let mut failures = Vec::new();
    for path in &cases {
        let bytes = std::fs::read(path).unwrap();
        let actual = summary(&bytes, false);
        let expected_path = path.with_extension("expected");
        let actual_path = path.with_extension("actual");
        if update {
            std::fs::write(&expected_path, &actual).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if actual == expected {
            let _ = std::fs::remove_file(&actual_path);
        } else {
            std::fs::write(&actual_path, &actual).unwrap();
            failures.push(format!(
                "{} differs; see {}",
                path.display(),
                actual_path.display()
            ));
        }
        // The slice reader agrees with the streaming reader on what is a message.
        let slice: Vec<bool> = SliceReader::new(&bytes).map(|r| r.is_ok()).collect();
        let stream: Vec<bool> = Reader::new(bytes.as_slice(), ReadOptions::default())
            .map(|r| r.is_ok())
            .collect();
        assert_eq!(slice, stream, "{}", path.display());
        // The same messages with the other line ends; not for files holding binary item data,
        // where converting line ends corrupts the data itself.
        let binary = bytes.iter().any(|b| *b < 0x09 || (0x0E..0x20).contains(b));
        if !binary {
            let converted = convert_line_ends(&bytes);
            assert_eq!(
                summary(&converted, true),
                summary(&bytes, true),
                "{} with converted line ends",
                path.display()
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn malformed_files_hold_errors_and_good_messages() {
    // Every malformed file except the pure-warning ones yields at least one error, and the good
    // messages around a broken one are still read.
    for path in cases()
        .iter()
        .filter(|p| p.to_string_lossy().contains("malformed"))
    {
        let bytes = std::fs::read(path).unwrap();
        let results: Vec<_> = Reader::new(bytes.as_slice(), ReadOptions::default()).collect();
        let errors = results.iter().filter(|r| r.is_err()).count();
        let warnings: usize = results
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .map(|m| m.diagnostics.len())
            .sum();
        assert!(
            errors + warnings > 0,
            "{} has neither an error nor a warning",
            path.display()
        );
    }
}

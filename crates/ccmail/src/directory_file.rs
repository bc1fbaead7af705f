//! Directory files: entries of `Label: value` lines (legacy-format.md §8).
//!
//! The Lotus layout is not public beyond the `Addr:` field and the location codes, so ccgate
//! settles it (decision 6 of legacy-format.md §12):
//!
//! ```text
//! Name: Doe, Jane
//! Locn: r
//! Addr: jane.doe@modern.example.com at SMTPGW
//! Comments: migrated by ccgate
//! ```
//!
//! - An entry is a block of `Label: value` lines; a blank line or a new `Name:` line ends it.
//!   Labels are matched in any case; unknown labels are kept in order.
//! - `Name:` is mandatory. `Locn:` holds one location code, `P p L l R r A a`. `Addr:` holds the
//!   post office for local entries and `address at PO` for foreign ones.
//! - The writer puts `Name`, `Locn`, `Addr`, `Comments`, then the other labels, one blank line
//!   after each entry, CR LF line ends, entries sorted in Export's order: location group
//!   `P p L l R r A a`, then name without regard to case.

use std::fmt;

use crate::frame::{self, Input, excerpt};
use crate::{Codepage, ParseError, ParseErrorKind, SliceReader};

/// A location code (legacy-format.md §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Location(char);

/// The location codes in Export's sort order.
pub const LOCATION_ORDER: [char; 8] = ['P', 'p', 'L', 'l', 'R', 'r', 'A', 'a'];

impl Location {
    /// The location for a code letter.
    pub fn new(code: char) -> Option<Self> {
        LOCATION_ORDER.contains(&code).then_some(Self(code))
    }

    /// The code letter.
    pub fn code(self) -> char {
        self.0
    }

    /// Its rank in Export's sort order.
    pub fn rank(self) -> usize {
        LOCATION_ORDER
            .iter()
            .position(|c| *c == self.0)
            .unwrap_or(LOCATION_ORDER.len())
    }

    /// What the code means, as far as the public record goes.
    pub fn describe(self) -> &'static str {
        match self.0 {
            'P' => "directly connected post office",
            'p' => "indirectly connected post office",
            'L' => "local user",
            'l' => "remote local user",
            'R' => "remote user (mail waits here)",
            'r' => "remote user, or foreign alias through a gateway",
            'A' => "local alias",
            _ => "remote alias",
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// One directory entry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DirectoryEntry {
    /// `Name:` — the mailbox, post office or alias name.
    pub name: String,
    /// `Locn:`.
    pub location: Option<Location>,
    /// `Addr:`.
    pub address: Option<String>,
    /// `Comments:`.
    pub comments: Option<String>,
    /// Other labels, in order, as (label, value).
    pub other: Vec<(String, String)>,
}

/// Reads a directory file. Every good entry is returned; each broken line or entry becomes an
/// error with its position, and reading goes on.
pub fn parse_directory(input: &[u8], codepage: Codepage) -> (Vec<DirectoryEntry>, Vec<ParseError>) {
    let text = Input {
        buf: input,
        eof: true,
    };
    let mut entries = Vec::new();
    let mut errors = Vec::new();
    let mut positions = SliceReader::new(input);
    let mut current: Option<(usize, DirectoryEntry)> = None;
    let mut pos = 0;
    let mut finish = |current: &mut Option<(usize, DirectoryEntry)>,
                      errors: &mut Vec<ParseError>,
                      positions: &mut SliceReader<'_>| {
        if let Some((offset, entry)) = current.take() {
            if entry.name.trim().is_empty() {
                errors.push(ParseError {
                    position: positions.position(offset),
                    kind: ParseErrorKind::MissingName,
                    message_offset: offset as u64,
                    resume_offset: offset as u64,
                });
            } else {
                entries.push(entry);
            }
        }
    };
    while let Ok(Some(line)) = text.line(pos) {
        pos = line.next;
        if frame::is_blank(line.text) {
            finish(&mut current, &mut errors, &mut positions);
            continue;
        }
        let Some((label, value)) = frame::header_line(line.text) else {
            errors.push(ParseError {
                position: positions.position(line.start),
                kind: ParseErrorKind::ExpectedLabel {
                    found: excerpt(line.text),
                },
                message_offset: line.start as u64,
                resume_offset: line.next as u64,
            });
            continue;
        };
        let label = codepage.decode(label);
        let value = codepage.decode(value);
        let lower = label.to_ascii_lowercase();
        if lower == "name" && current.is_some() {
            finish(&mut current, &mut errors, &mut positions);
        }
        let (_, entry) = current.get_or_insert_with(|| (line.start, DirectoryEntry::default()));
        match lower.as_str() {
            "name" => entry.name = value,
            "locn" | "location" => {
                let mut chars = value.trim().chars();
                match (chars.next().and_then(Location::new), chars.next()) {
                    (Some(loc), None) => entry.location = Some(loc),
                    _ => errors.push(ParseError {
                        position: positions.position(line.start + label.len() + 2),
                        kind: ParseErrorKind::BadLocation { found: value },
                        message_offset: line.start as u64,
                        resume_offset: line.next as u64,
                    }),
                }
            }
            "addr" | "address" => entry.address = Some(value),
            "comments" | "comment" => entry.comments = Some(value),
            _ => entry.other.push((label, value)),
        }
    }
    finish(&mut current, &mut errors, &mut positions);
    (entries, errors)
}

/// Writes entries in Export's order. Returns the bytes and how many characters the code page
/// could not hold.
pub fn write_directory(entries: &[DirectoryEntry], codepage: Codepage) -> (Vec<u8>, usize) {
    // Line breaks inside values become spaces; sort by what is written so that writing what
    // was read gives the same bytes.
    let one_line = |v: &str| v.replace(['\r', '\n'], " ");
    let cleaned: Vec<DirectoryEntry> = entries
        .iter()
        .map(|e| DirectoryEntry {
            name: one_line(&e.name),
            location: e.location,
            address: e.address.as_deref().map(one_line),
            comments: e.comments.as_deref().map(one_line),
            other: e
                .other
                .iter()
                .map(|(l, v)| (one_line(l), one_line(v)))
                .collect(),
        })
        .collect();
    let mut sorted: Vec<&DirectoryEntry> = cleaned.iter().collect();
    sorted.sort_by_cached_key(|e| {
        (
            e.location.map_or(LOCATION_ORDER.len(), Location::rank),
            e.name.to_lowercase(),
            e.name.clone(),
        )
    });
    let mut out = Vec::new();
    let mut replaced = 0;
    let mut line = |out: &mut Vec<u8>, label: &str, value: &str| {
        out.extend_from_slice(label.as_bytes());
        out.extend_from_slice(b": ");
        replaced += codepage.encode_into(value, out);
        out.extend_from_slice(b"\r\n");
    };
    for entry in sorted {
        line(&mut out, "Name", &entry.name);
        if let Some(loc) = entry.location {
            line(&mut out, "Locn", &loc.to_string());
        }
        if let Some(addr) = &entry.address {
            line(&mut out, "Addr", addr);
        }
        if let Some(comments) = &entry.comments {
            line(&mut out, "Comments", comments);
        }
        for (label, value) in &entry.other {
            line(&mut out, label, value);
        }
        out.extend_from_slice(b"\r\n");
    }
    (out, replaced)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, loc: char, addr: &str) -> DirectoryEntry {
        DirectoryEntry {
            name: name.into(),
            location: Location::new(loc),
            address: Some(addr.into()),
            ..Default::default()
        }
    }

    #[test]
    fn reads_blocks_and_keeps_unknown_labels() {
        let text = b"Name: Doe, Jane\nLocn: L\nAddr: HQ\nPhone: 555\n\nNAME: HUB2\nlocn: P\n\nName: Unexpected, Sally\nLocn: R\nAddr: sallyu@fubar.edu at PMDF\n";
        let (entries, errors) = parse_directory(text, Codepage::Ibm437);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(entries.len(), 3);
        assert_eq!(
            entries[0].other,
            vec![("Phone".to_owned(), "555".to_owned())]
        );
        assert_eq!(entries[1].location, Location::new('P'));
        assert_eq!(
            entries[2].address.as_deref(),
            Some("sallyu@fubar.edu at PMDF")
        );
    }

    #[test]
    fn errors_name_the_line_and_reading_goes_on() {
        let text = b"Name: A\nLocn: Q\n\nthis is not a label line\nName: B\n\nLocn: L\n";
        let (entries, errors) = parse_directory(text, Codepage::Ibm437);
        assert_eq!(
            entries.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
            ["A", "B"]
        );
        let found: Vec<(u64, u64)> = errors
            .iter()
            .map(|e| (e.position.line, e.position.column))
            .collect();
        assert_eq!(found, [(2, 7), (4, 1), (7, 1)]);
    }

    #[test]
    fn writes_in_export_order_and_reads_back() {
        let entries = vec![
            entry("zed", 'L', "HQ"),
            entry("Hub", 'P', ""),
            entry("Able", 'L', "HQ"),
            entry("jdoe@x.test at SMTPGW", 'r', "SMTPGW"),
        ];
        let (bytes, replaced) = write_directory(&entries, Codepage::Ibm850);
        assert_eq!(replaced, 0);
        let (back, errors) = parse_directory(&bytes, Codepage::Ibm850);
        assert!(errors.is_empty());
        let names: Vec<&str> = back.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["Hub", "Able", "zed", "jdoe@x.test at SMTPGW"]);
        assert!(bytes.windows(2).all(|w| w != b"\n\n"), "CR LF only");
    }
}

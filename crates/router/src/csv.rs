//! The directory CSV (docs/directory.md): a small RFC 4180 reader that knows line and column
//! numbers, so that every problem reads `file:line:column: what is wrong`.
//!
//! - UTF-8, with or without a byte-order mark; LF or CR LF line ends.
//! - A header row is required; its column names (any case, any order) are those of
//!   [`COLUMNS`]. `legacy_name`, `post_office`, `proxy_addresses` and `state` are required;
//!   `display_name` and `target_address` may be left out. An unknown or repeated column is an
//!   error (a misspelt column would otherwise be ignored silently).
//! - A line whose first character other than spaces is `#` is a comment, outside quotes; blank
//!   lines are skipped.
//! - Fields are separated by `,`. A field may be quoted with `"`, and then holds commas, line
//!   breaks and `""` for one quote (`"Doe, Jane"`). Spaces around fields are trimmed. A `"`
//!   inside an unquoted field is kept as written (legacy names may hold quotes, xmg06007).
//! - `proxy_addresses` is split at `;` (see [`crate::split_proxies`]).
//!
//! A row with the wrong number of fields is reported and skipped; a quoted field left open at
//! the end of the file ends the reading. Every other problem is reported with its row, and
//! reading goes on so that one run lists them all.

use crate::directory::{Directory, MAX_ENTRIES, RawEntry, RawField, split_proxies};
use crate::error::{Error, Problem, ProblemKind};

/// The column names, in the order `ccgate init` writes them.
pub const COLUMNS: [&str; 6] = [
    "display_name",
    "legacy_name",
    "post_office",
    "proxy_addresses",
    "target_address",
    "state",
];

/// The columns a header must name.
const REQUIRED: [&str; 4] = ["legacy_name", "post_office", "proxy_addresses", "state"];

/// Longest field, in bytes.
pub const MAX_FIELD_LEN: usize = 64 * 1024;

/// Most fields in one row.
const MAX_FIELDS: usize = 64;

/// Reads a directory CSV into rows, with every problem found on the way. Rows are not
/// validated here: [`Directory::from_raw`] does that.
pub fn parse_csv(input: &[u8]) -> (Vec<RawEntry>, Vec<Problem>) {
    let input = input.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(input);
    let text = match std::str::from_utf8(input) {
        Ok(text) => text,
        Err(e) => {
            let good = input.get(..e.valid_up_to()).unwrap_or_default();
            let good = std::str::from_utf8(good).unwrap_or_default();
            let line = good.matches('\n').count().saturating_add(1);
            let column = good
                .rsplit('\n')
                .next()
                .map_or(0, |l| l.chars().count())
                .saturating_add(1);
            return (
                Vec::new(),
                vec![problem(line, column, ProblemKind::NotUtf8)],
            );
        }
    };
    let mut reader = Reader {
        text,
        pos: 0,
        line: 1,
        line_start: 0,
    };
    let mut problems = Vec::new();

    // The header.
    let header = loop {
        match reader.record() {
            None => {
                problems.push(problem(1, 1, ProblemKind::MissingHeader));
                return (Vec::new(), problems);
            }
            Some(Err((fatal, p))) => {
                problems.push(*p);
                if fatal {
                    return (Vec::new(), problems);
                }
            }
            Some(Ok(record)) => break record,
        }
    };
    let mut slots: [Option<usize>; COLUMNS.len()] = [None; COLUMNS.len()];
    let mut first_column = [0usize; COLUMNS.len()];
    for (index, field) in header.fields.iter().enumerate() {
        let name = field.value.trim().to_ascii_lowercase();
        match COLUMNS.iter().position(|c| *c == name) {
            Some(known) => {
                if let (Some(Some(_)), Some(first)) = (slots.get(known), first_column.get(known)) {
                    problems.push(problem(
                        header.line,
                        field.column,
                        ProblemKind::DuplicateColumn {
                            name,
                            first_column: *first,
                        },
                    ));
                } else {
                    if let Some(slot) = slots.get_mut(known) {
                        *slot = Some(index);
                    }
                    if let Some(first) = first_column.get_mut(known) {
                        *first = field.column;
                    }
                }
            }
            None => problems.push(problem(
                header.line,
                field.column,
                ProblemKind::UnknownColumn {
                    name: field.value.trim().to_owned(),
                },
            )),
        }
    }
    for name in REQUIRED {
        let known = COLUMNS.iter().position(|c| *c == name);
        if known
            .and_then(|k| slots.get(k).copied().flatten())
            .is_none()
        {
            problems.push(problem(header.line, 1, ProblemKind::MissingColumn { name }));
        }
    }
    if !problems.is_empty() {
        return (Vec::new(), problems);
    }
    let expected = header.fields.len();
    let slot = |name: &str| {
        COLUMNS
            .iter()
            .position(|c| *c == name)
            .and_then(|k| slots.get(k).copied().flatten())
    };
    let [display, legacy, po, proxies, target, state] = COLUMNS.map(slot);

    // The rows.
    let mut rows = Vec::new();
    while let Some(record) = reader.record() {
        let record = match record {
            Ok(record) => record,
            Err((fatal, p)) => {
                problems.push(*p);
                if fatal {
                    break;
                }
                continue;
            }
        };
        if record.fields.len() != expected {
            let column = record
                .fields
                .get(expected)
                .map_or(1, |f| f.column.saturating_sub(1).max(1));
            problems.push(problem(
                record.line,
                column,
                ProblemKind::FieldCount {
                    found: record.fields.len(),
                    expected,
                },
            ));
            continue;
        }
        if rows.len() >= MAX_ENTRIES {
            problems.push(problem(
                record.line,
                1,
                ProblemKind::TooManyEntries { max: MAX_ENTRIES },
            ));
            break;
        }
        let mut fields = record.fields;
        let mut take = |slot: Option<usize>| -> RawField {
            slot.and_then(|i| fields.get_mut(i))
                .map(|f| RawField {
                    value: std::mem::take(&mut f.value),
                    column: f.column,
                })
                .unwrap_or_else(|| RawField::new(""))
        };
        let proxy_field = take(proxies);
        let proxy_addresses = split_proxies(&proxy_field.value)
            .into_iter()
            .map(|(offset, value)| RawField {
                value,
                column: proxy_field.column.saturating_add(offset),
            })
            .collect();
        rows.push(RawEntry {
            line: record.line,
            id: None,
            display_name: take(display),
            legacy_name: take(legacy),
            post_office: take(po),
            proxy_addresses,
            target_address: take(target),
            state: take(state),
        });
    }
    (rows, problems)
}

impl Directory {
    /// Reads, validates and compiles a directory CSV (docs/directory.md).
    ///
    /// # Errors
    /// [`Error::Invalid`] with every problem of the file: CSV syntax ([`parse_csv`]) and
    /// directory rules ([`Directory::from_raw`]), in line order.
    pub fn from_csv(input: &[u8]) -> Result<Self, Error> {
        let (rows, problems) = parse_csv(input);
        Self::from_raw_with(rows, problems)
    }
}

fn problem(line: usize, column: usize, kind: ProblemKind) -> Problem {
    Problem {
        line,
        column: column.max(1),
        id: None,
        kind,
    }
}

/// One record: its first line and its fields (value, column of the first content character).
struct Record {
    line: usize,
    fields: Vec<RawField>,
}

/// A record-at-a-time reader over the text.
struct Reader<'a> {
    text: &'a str,
    pos: usize,
    line: usize,
    line_start: usize,
}

/// A problem, and whether reading must stop.
type RecordError = (bool, Box<Problem>);

impl Reader<'_> {
    fn byte(&self, pos: usize) -> Option<u8> {
        self.text.as_bytes().get(pos).copied()
    }

    /// The 1-based character column of byte `pos` on the current line.
    fn column(&self, pos: usize) -> usize {
        self.text
            .get(self.line_start..pos)
            .map_or(0, |s| s.chars().count())
            .saturating_add(1)
    }

    fn newline(&mut self, after: usize) {
        self.line = self.line.saturating_add(1);
        self.line_start = after;
    }

    /// Skips to the start of the next line.
    fn skip_line(&mut self) {
        match self.text.get(self.pos..).and_then(|rest| rest.find('\n')) {
            Some(offset) => {
                self.pos = self.pos.saturating_add(offset).saturating_add(1);
                self.newline(self.pos);
            }
            None => self.pos = self.text.len(),
        }
    }

    /// Skips blank and comment lines; false at the end of the text.
    fn skip_blank_and_comments(&mut self) -> bool {
        loop {
            let Some(rest) = self.text.get(self.pos..) else {
                return false;
            };
            if rest.is_empty() {
                return false;
            }
            let line = rest.split('\n').next().unwrap_or_default();
            let content = line.trim_start_matches([' ', '\t']);
            if content.trim_end_matches('\r').is_empty() || content.starts_with('#') {
                self.skip_line();
                continue;
            }
            return true;
        }
    }

    fn record(&mut self) -> Option<Result<Record, RecordError>> {
        if !self.skip_blank_and_comments() {
            return None;
        }
        let line = self.line;
        let mut fields = Vec::new();
        loop {
            while matches!(self.byte(self.pos), Some(b' ' | b'\t')) {
                self.pos = self.pos.saturating_add(1);
            }
            let field = if self.byte(self.pos) == Some(b'"') {
                match self.quoted() {
                    Ok(field) => field,
                    Err(e) => return Some(Err(e)),
                }
            } else {
                self.unquoted()
            };
            if field.value.len() > MAX_FIELD_LEN {
                let p = problem(
                    line,
                    field.column,
                    ProblemKind::TooLarge {
                        what: "a field",
                        max: MAX_FIELD_LEN,
                    },
                );
                self.skip_rest_of_record();
                return Some(Err((false, Box::new(p))));
            }
            fields.push(field);
            match self.byte(self.pos) {
                Some(b',') if fields.len() < MAX_FIELDS => {
                    self.pos = self.pos.saturating_add(1);
                }
                Some(b',') => {
                    let p = problem(
                        line,
                        self.column(self.pos),
                        ProblemKind::TooLarge {
                            what: "the number of fields in a row",
                            max: MAX_FIELDS,
                        },
                    );
                    self.skip_line();
                    return Some(Err((false, Box::new(p))));
                }
                Some(b'\n') => {
                    self.pos = self.pos.saturating_add(1);
                    self.newline(self.pos);
                    return Some(Ok(Record { line, fields }));
                }
                None => return Some(Ok(Record { line, fields })),
                Some(_) => {
                    // Text after a closing quote.
                    let p = problem(line, self.column(self.pos), ProblemKind::TextAfterQuote);
                    self.skip_rest_of_record();
                    return Some(Err((false, Box::new(p))));
                }
            }
        }
    }

    /// After an error inside a record: skips to the end of the current line.
    fn skip_rest_of_record(&mut self) {
        self.skip_line();
    }

    /// An unquoted field: up to `,` or the end of the line, trimmed.
    fn unquoted(&mut self) -> RawField {
        let start = self.pos;
        let column = self.column(start);
        let rest = self.text.get(start..).unwrap_or_default();
        let len = rest.find([',', '\n']).unwrap_or(rest.len());
        self.pos = start.saturating_add(len);
        let value = rest
            .get(..len)
            .unwrap_or_default()
            .trim_end_matches(['\r', ' ', '\t']);
        RawField {
            value: value.to_owned(),
            column,
        }
    }

    /// A quoted field; `self.pos` is at the opening quote. Leaves `self.pos` after the closing
    /// quote and any spaces.
    fn quoted(&mut self) -> Result<RawField, RecordError> {
        let open_line = self.line;
        let open_column = self.column(self.pos);
        self.pos = self.pos.saturating_add(1);
        let column = open_column.saturating_add(1);
        let mut value = String::new();
        loop {
            let rest = self.text.get(self.pos..).unwrap_or_default();
            let Some(offset) = rest.find(['"', '\n']) else {
                let p = problem(open_line, open_column, ProblemKind::UnterminatedQuote);
                self.pos = self.text.len();
                return Err((true, Box::new(p)));
            };
            value.push_str(rest.get(..offset).unwrap_or_default());
            if value.len() > MAX_FIELD_LEN {
                let p = problem(
                    open_line,
                    column,
                    ProblemKind::TooLarge {
                        what: "a field",
                        max: MAX_FIELD_LEN,
                    },
                );
                self.pos = self.text.len();
                return Err((true, Box::new(p)));
            }
            let at = self.pos.saturating_add(offset);
            match self.byte(at) {
                Some(b'\n') => {
                    value.push('\n');
                    self.pos = at.saturating_add(1);
                    self.newline(self.pos);
                }
                _ if self.byte(at.saturating_add(1)) == Some(b'"') => {
                    value.push('"');
                    self.pos = at.saturating_add(2);
                }
                _ => {
                    self.pos = at.saturating_add(1);
                    while matches!(self.byte(self.pos), Some(b' ' | b'\t' | b'\r')) {
                        self.pos = self.pos.saturating_add(1);
                    }
                    // A quoted field keeps CR LF line breaks inside it as LF.
                    let value = if value.contains('\r') {
                        value.replace("\r\n", "\n")
                    } else {
                        value
                    };
                    return Ok(RawField { value, column });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str =
        "display_name,legacy_name,post_office,proxy_addresses,target_address,state\n";

    fn problems_of(text: &str) -> Vec<String> {
        match Directory::from_csv(text.as_bytes()) {
            Ok(_) => Vec::new(),
            Err(Error::Invalid { problems }) => problems.iter().map(ToString::to_string).collect(),
            Err(other) => vec![other.to_string()],
        }
    }

    #[test]
    fn reads_quoted_fields_comments_and_any_column_order() {
        let text = "\u{feff}# the directory\r\n\
            State, Legacy_Name ,post_office,proxy_addresses\r\n\
            \r\n\
            legacy,\"Doe, Jane\",HQ,\"SMTP:jane.doe@legacy.example.com;CCMAIL:Doe, Jane at HQ\"\r\n\
            # a comment between rows\r\n\
            legacy,\"Say \"\"Hi\"\", Bob\",HQ,smtp:bob@legacy.example.com\r\n\
            legacy,Plain \"Quote\",HQ,\r\n";
        let (rows, problems) = parse_csv(text.as_bytes());
        assert!(problems.is_empty(), "{problems:?}");
        let names: Vec<(&str, usize)> = rows
            .iter()
            .map(|r| (r.legacy_name.value.as_str(), r.line))
            .collect();
        assert_eq!(
            names,
            [
                ("Doe, Jane", 4),
                ("Say \"Hi\", Bob", 6),
                ("Plain \"Quote\"", 7)
            ]
        );
        let first = rows.first().unwrap();
        assert_eq!(first.proxy_addresses.len(), 2);
        assert_eq!(first.legacy_name.column, 9);
        assert_eq!(first.proxy_addresses.get(1).unwrap().column, 57);
        let directory = Directory::from_csv(text.as_bytes()).unwrap();
        assert_eq!(directory.len(), 3);
    }

    #[test]
    fn multi_line_quoted_field_keeps_the_first_line() {
        let text = format!(
            "{HEADER}\"Jane\nDoe\",\"Doe, Jane\",HQ,,,legacy\nBob,\"Smith, Bob\",HQ,,,legacy\n"
        );
        let (rows, problems) = parse_csv(text.as_bytes());
        assert!(problems.is_empty(), "{problems:?}");
        let lines: Vec<usize> = rows.iter().map(|r| r.line).collect();
        assert_eq!(lines, [2, 4]);
        assert_eq!(rows.first().unwrap().display_name.value, "Jane\nDoe");
    }

    #[test]
    fn problems_name_line_and_column() {
        let cases: [(String, &str); 10] = [
            (String::new(), "1:1: no header row"),
            ("# only a comment\n".to_owned(), "1:1: no header row"),
            (
                "legacy_name,post_office,state\n".to_owned(),
                "1:1: required column \"proxy_addresses\" is missing",
            ),
            (
                "legacy_name,post_office,proxy_addresses,state,colour\n".to_owned(),
                "1:47: unknown column \"colour\"",
            ),
            (
                "legacy_name,post_office,proxy_addresses,state,STATE\n".to_owned(),
                "1:47: column \"state\" appears twice (first in column 41)",
            ),
            (
                format!("{HEADER}a,b,c\n"),
                "2:1: row has 3 fields, the header has 6",
            ),
            (
                format!("{HEADER}a,\"b\"x,c,d,e,f\n"),
                "2:6: text after the closing quote",
            ),
            (
                format!("{HEADER}a,\"b,c,d,e,f\n"),
                "2:3: quoted field is not closed",
            ),
            (
                format!("{HEADER}Jane,\"Doe, Jane\",HQ,SMTP:bad,,legacy\n"),
                "2:21: bad proxy address \"SMTP:bad\"",
            ),
            (
                format!("{HEADER}Jane,\"Doe, Jane\",HQ,,,legacy\nJ,\"DOE, JANE\",HQ2,,,legacy\n"),
                "3:4: legacy name \"DOE, JANE\" is also line 2",
            ),
        ];
        for (text, expected) in cases {
            let found = problems_of(&text);
            assert!(
                found.iter().any(|p| p.starts_with(expected)),
                "{text:?}: {found:?} lacks {expected}"
            );
        }
    }

    #[test]
    fn reading_goes_on_after_a_bad_row() {
        let text = format!("{HEADER}a,b\nJane,\"Doe, Jane\",HQ,,,legacy\nx,y,HQ,,,sleeping\n");
        let found = problems_of(&text);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found.first().unwrap().starts_with("2:1: row has 2 fields"));
        assert!(found.get(1).unwrap().starts_with("4:"), "{found:?}");
    }

    #[test]
    fn invalid_utf8_is_located() {
        let mut bytes = HEADER.as_bytes().to_vec();
        bytes.extend_from_slice(b"Jane,Doe\xff");
        let (_, problems) = parse_csv(&bytes);
        assert_eq!(
            problems.first().map(ToString::to_string).as_deref(),
            Some("2:9: not UTF-8 text (save the directory as UTF-8)")
        );
    }
}

//! The strict writer: Import files that the configured Import version accepts.

use crate::address::{RenderOptions, parse_address};
use crate::text::crlf_only;
use crate::{Codepage, DateOrder, Header, ItemBody, ItemKind, Message, WriteError};

/// What the post office's Import accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Dialect {
    /// Import 5.12-5.15: tolerant of brackets.
    Ie5,
    /// Import 6.x/8.x: rejects `[`/`]` in addresses, subjects with both brackets, headers over
    /// the header buffer (KB Q232687, Q234350, Q166499).
    #[default]
    Ie8,
}

/// How to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOptions {
    /// Which Import version's rules to follow.
    pub dialect: Dialect,
    /// Field order of `Date:`.
    pub date_order: DateOrder,
    /// The post office's code page.
    pub codepage: Codepage,
    /// The gateway's post-office name, used to re-encode bracketed SMTP forms as
    /// `user@domain at GATEWAYPO`.
    pub gateway_po: String,
    /// Largest header block in bytes (Import 8.x's "Header Buffer Full" at 4,096).
    pub max_header_bytes: usize,
    /// Largest text item in bytes (Import turns larger ones into file items).
    pub max_text_item_bytes: usize,
}

impl Default for WriteOptions {
    fn default() -> Self {
        Self {
            dialect: Dialect::Ie8,
            date_order: DateOrder::Us,
            codepage: Codepage::Ibm437,
            gateway_po: "SMTPGW".to_owned(),
            max_header_bytes: 4096,
            max_text_item_bytes: 20 * 1024,
        }
    }
}

/// What the writer did besides writing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WriteReport {
    /// How many messages were written (more than one when recipients were split over
    /// several messages to stay within the header buffer).
    pub messages: usize,
    /// Characters the code page could not hold, written as `?`.
    pub replaced_chars: usize,
    /// Each change made to stay within what Import accepts, as a sentence.
    pub changes: Vec<String>,
}

/// One encoded header line (without its line end) and whether it names a recipient.
struct Line {
    bytes: Vec<u8>,
    recipient: bool,
}

/// Writes `msg` as one or more Import messages appended to `out`.
///
/// Strict: CR LF only, size lines always (message, contents and each item; each counts the
/// bytes after its size line to the end of its block, the item count excluding the CR LF that
/// follows the data), keywords capitalised, one recipient per line, dates in the configured
/// order, text in the code page. In the `ie8` dialect addresses never hold `[` or `]` and a
/// subject never holds both. In both dialects headers stay within `max_header_bytes` (the
/// recipients are split over several messages) and text items within `max_text_item_bytes`
/// (split into several text items at line ends). The same input always gives the same bytes.
///
/// # Errors
/// [`WriteError`] when the message cannot be written so that Import accepts it; nothing is
/// appended to `out` then.
pub fn write_messages(
    msg: &Message,
    opts: &WriteOptions,
    out: &mut Vec<u8>,
) -> Result<WriteReport, WriteError> {
    let mut report = WriteReport::default();
    let lines = header_lines(msg, opts, &mut report)?;
    let contents = contents_block(msg, opts, &mut report)?;

    let line_len = |l: &Line| l.bytes.len() + 2;
    let total: usize = lines.iter().map(line_len).sum();
    let groups: Vec<Vec<&Line>> = if total <= opts.max_header_bytes {
        vec![lines.iter().collect()]
    } else {
        let fixed: usize = lines.iter().filter(|l| !l.recipient).map(line_len).sum();
        let widest = lines
            .iter()
            .filter(|l| l.recipient)
            .map(line_len)
            .max()
            .unwrap_or(0);
        if fixed + widest > opts.max_header_bytes {
            return Err(WriteError::HeaderTooLarge {
                needed: fixed + widest,
                limit: opts.max_header_bytes,
            });
        }
        // Greedy: fill each message with the next recipients in order, keeping every other
        // header line in its place.
        let mut groups = Vec::new();
        let mut taken = 0;
        let n_rcpts = lines.iter().filter(|l| l.recipient).count();
        while taken < n_rcpts {
            let mut size = fixed;
            let mut rcpt_idx = 0;
            let mut full = false;
            let mut group = Vec::new();
            for line in &lines {
                if !line.recipient {
                    group.push(line);
                    continue;
                }
                rcpt_idx += 1;
                if rcpt_idx <= taken || full {
                    continue;
                }
                if size + line_len(line) <= opts.max_header_bytes {
                    size += line_len(line);
                    group.push(line);
                    taken = rcpt_idx;
                } else {
                    full = true;
                }
            }
            groups.push(group);
        }
        report.changes.push(format!(
            "headers of {total} bytes exceed {} bytes: recipients split over {} messages",
            opts.max_header_bytes,
            groups.len()
        ));
        groups
    };

    let mut written = Vec::new();
    for group in &groups {
        let mut body = Vec::with_capacity(total + contents.len() + 32);
        for line in group {
            body.extend_from_slice(&line.bytes);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"Contents:\r\n");
        body.extend_from_slice(contents.len().to_string().as_bytes());
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(&contents);
        written.extend_from_slice(b"Message:\r\n");
        written.extend_from_slice(body.len().to_string().as_bytes());
        written.extend_from_slice(b"\r\n");
        written.extend_from_slice(&body);
    }
    report.messages = groups.len();
    out.extend_from_slice(&written);
    Ok(report)
}

fn header_lines(
    msg: &Message,
    opts: &WriteOptions,
    report: &mut WriteReport,
) -> Result<Vec<Line>, WriteError> {
    let render = RenderOptions {
        dialect: opts.dialect,
        gateway_po: opts.gateway_po.clone(),
    };
    let mut lines = Vec::with_capacity(msg.headers.len());
    let mut has_from = false;
    let mut has_rcpt = false;
    for header in &msg.headers {
        let keyword = header.keyword();
        let value = match header {
            Header::From(a) | Header::To(a) | Header::Cc(a) | Header::Bcc(a) => {
                let bad = |reason: String| WriteError::BadAddress {
                    header: keyword.to_owned(),
                    address: a.clone(),
                    reason,
                };
                if a.trim().is_empty() {
                    return Err(if matches!(header, Header::From(_)) {
                        WriteError::EmptyFrom
                    } else {
                        bad("empty address".to_owned())
                    });
                }
                let parsed = parse_address(a).map_err(|e| bad(e.to_string()))?;
                let rendered = parsed.render(&render).map_err(|e| bad(e.to_string()))?;
                // An address is never transliterated: a changed address would reach nobody.
                if let Some(c) = rendered.chars().find(|c| !opts.codepage.can_encode(*c)) {
                    return Err(bad(format!(
                        "{c:?} has no equivalent in code page {}",
                        opts.codepage.name()
                    )));
                }
                if rendered != *a {
                    report
                        .changes
                        .push(format!("{keyword}: {a:?} written as {rendered:?}"));
                }
                has_from |= matches!(header, Header::From(_));
                has_rcpt |= header.is_recipient();
                rendered
            }
            Header::Date(d) => d.display(opts.date_order).to_string(),
            Header::Subject(s) => {
                let mut subject = one_line(s);
                if opts.dialect == Dialect::Ie8 && subject.contains('[') && subject.contains(']') {
                    subject = subject.replace('[', "(").replace(']', ")");
                    report.changes.push(format!("Subject: brackets replaced by parentheses (Import 8.x rejects a subject with both, KB Q234350): {subject:?}"));
                }
                subject
            }
            Header::Other { keyword, value } => {
                if keyword.eq_ignore_ascii_case("date") {
                    return Err(WriteError::BadDate {
                        value: value.clone(),
                    });
                }
                let reserved = ["message", "contents", "from", "to", "cc", "bcc", "subject"]
                    .iter()
                    .any(|r| keyword.eq_ignore_ascii_case(r));
                let word = keyword
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic())
                    && keyword.len() <= 64
                    && keyword
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-');
                if reserved || !word {
                    return Err(WriteError::BadKeyword {
                        keyword: keyword.clone(),
                    });
                }
                one_line(value)
            }
        };
        let mut bytes = Vec::with_capacity(keyword.len() + 2 + value.len());
        bytes.extend_from_slice(keyword.as_bytes());
        bytes.extend_from_slice(b": ");
        report.replaced_chars += opts.codepage.encode_into(&value, &mut bytes);
        lines.push(Line {
            bytes,
            recipient: header.is_recipient(),
        });
    }
    if !has_from {
        return Err(WriteError::EmptyFrom);
    }
    if !has_rcpt {
        return Err(WriteError::NoRecipients);
    }
    Ok(lines)
}

/// Line breaks inside a header value become spaces.
fn one_line(value: &str) -> String {
    if value.contains(['\r', '\n']) {
        value.replace("\r\n", " ").replace(['\r', '\n'], " ")
    } else {
        value.to_owned()
    }
}

fn contents_block(
    msg: &Message,
    opts: &WriteOptions,
    report: &mut WriteReport,
) -> Result<Vec<u8>, WriteError> {
    let mut out = Vec::new();
    for item in &msg.items {
        let kind = item.kind.as_str();
        let valid_kind = match &item.kind {
            ItemKind::Other(word) => {
                !word.is_empty()
                    && word.len() <= 32
                    && word.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    && ItemKind::from_word(word) == item.kind
            }
            _ => true,
        };
        if !valid_kind {
            return Err(WriteError::BadKind {
                kind: kind.to_owned(),
            });
        }
        if item.title.contains(['\r', '\n']) {
            return Err(WriteError::BadTitle {
                title: item.title.clone(),
            });
        }
        let title = if item.kind == ItemKind::Text {
            item.title.trim().to_owned()
        } else {
            bare_name(&item.title, opts.date_order)
        };
        let mut head = Vec::with_capacity(title.len() + 16);
        head.extend_from_slice(kind.as_bytes());
        head.extend_from_slice(b" item:");
        if !title.is_empty() {
            head.push(b' ');
            report.replaced_chars += opts.codepage.encode_into(&title, &mut head);
        }
        let chunks: Vec<Vec<u8>> = match (&item.kind, &item.body) {
            (ItemKind::Text, body) => {
                let decoded;
                let text = match body {
                    ItemBody::Text(t) => t.as_str(),
                    ItemBody::Bytes(b) => {
                        decoded = opts.codepage.decode(b);
                        decoded.as_str()
                    }
                };
                let crlf = crlf_only(text);
                if crlf != text {
                    report
                        .changes
                        .push("text item line ends written as CR LF".to_owned());
                }
                let mut encoded = Vec::with_capacity(crlf.len());
                report.replaced_chars += opts.codepage.encode_into(&crlf, &mut encoded);
                let chunks = split_text(encoded, opts.max_text_item_bytes);
                if chunks.len() > 1 {
                    report.changes.push(format!(
                        "a text item over {} bytes split into {} text items",
                        opts.max_text_item_bytes,
                        chunks.len()
                    ));
                }
                chunks
            }
            (_, ItemBody::Bytes(bytes)) => vec![bytes.clone()],
            (_, ItemBody::Text(text)) => {
                let mut encoded = Vec::with_capacity(text.len());
                report.replaced_chars += opts.codepage.encode_into(text, &mut encoded);
                vec![encoded]
            }
        };
        for data in chunks {
            out.extend_from_slice(&head);
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(data.len().to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(&data);
            out.extend_from_slice(b"\r\n");
        }
    }
    Ok(out)
}

/// A file item's name as written: trimmed, and without anything the reader would take for the
/// exporter's date stamp (the writer writes bare names, legacy-format.md §2.4).
fn bare_name(title: &str, order: DateOrder) -> String {
    let mut name = title.trim().to_owned();
    loop {
        match crate::reader::split_stamp(name.clone(), order) {
            (rest, Some(_)) => name = rest,
            (rest, None) => return rest,
        }
    }
}

/// Splits encoded text into chunks of at most `max` bytes, at a line end when there is one.
fn split_text(text: Vec<u8>, max: usize) -> Vec<Vec<u8>> {
    if text.len() <= max || max < 2 {
        return vec![text];
    }
    let mut chunks = Vec::new();
    let mut rest = text.as_slice();
    while rest.len() > max {
        let window = rest.get(..max).unwrap_or(rest);
        // Cut after the last CR LF in the window, else hard at the limit.
        let cut = memchr::memmem::rfind(window, b"\r\n").map_or(max, |i| i + 2);
        let (head, tail) = rest.split_at(cut);
        chunks.push(head.to_vec());
        rest = tail;
    }
    chunks.push(rest.to_vec());
    chunks
}

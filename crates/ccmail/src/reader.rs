//! The tolerant reader: messages out of Import/Export files, one at a time.
//!
//! [`SliceReader`] reads a file that is in memory and borrows from it ([`RawMessage`]: keywords,
//! values and item data are slices of the input, nothing is copied). [`Reader`] streams any
//! `io::Read` with a buffer that holds at most one message (capped by
//! [`ReadOptions::max_message_size`]) and yields decoded, owned [`ReadMessage`]s. Both use the
//! same function, [`parse_one`], so they agree on every byte.
//!
//! Rules (legacy-format.md §2.5): CR LF or bare LF; keywords in any case; size lines present
//! or absent. A size line is trusted only when the block it counts ends at the end of the input,
//! a `Message:` line or (inside a message) an item line; otherwise the block is read by lines
//! and a diagnostic says so. A broken message yields a [`ParseError`] with its position, and
//! reading resumes at the next `Message:` line: one bad message never fails the file.

use std::io::{self, Read};

use crate::error::Position;
use crate::frame::{self, Incomplete, Input, excerpt};
use crate::{
    Codepage, DateOrder, Diagnostic, Header, Item, ItemBody, ItemKind, Message, ParseError,
    ParseErrorKind, parse_date,
};

/// Default cap on one message for the streaming reader (bytes).
pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 64 * 1024 * 1024;

/// How to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadOptions {
    /// Field order of dates.
    pub date_order: DateOrder,
    /// The post office's code page.
    pub codepage: Codepage,
    /// The streaming reader's cap on one message; larger ones are reported and skipped.
    pub max_message_size: u64,
}

impl Default for ReadOptions {
    fn default() -> Self {
        Self {
            date_order: DateOrder::Us,
            codepage: Codepage::Ibm437,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
        }
    }
}

/// One header line as it is in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawHeader<'a> {
    /// Offset of the line, relative to the start of the input.
    pub offset: usize,
    /// The keyword without the colon.
    pub keyword: &'a [u8],
    /// The value, without leading blanks and the line end.
    pub value: &'a [u8],
}

/// One item as it is in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawItem<'a> {
    /// Offset of the item line.
    pub offset: usize,
    /// The kind word (`Text`, `File` …).
    pub kind: &'a [u8],
    /// The title after `item:`.
    pub title: &'a [u8],
    /// The size line, when one was present and trusted.
    pub size: Option<u64>,
    /// The data.
    pub data: &'a [u8],
}

/// One message as it is in the file, borrowing from it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RawMessage<'a> {
    /// Offset of the `Message:` line, relative to the start of the input.
    pub offset: usize,
    /// Bytes from the `Message:` line to the start of what follows the message.
    pub len: usize,
    /// The message size line, if present (trusted or not).
    pub size: Option<u64>,
    /// The contents size line, if present.
    pub contents_size: Option<u64>,
    /// Header lines in order.
    pub headers: Vec<RawHeader<'a>>,
    /// Items in order.
    pub items: Vec<RawItem<'a>>,
    /// What was worked around, as (offset, text).
    pub notes: Vec<(usize, String)>,
}

/// What [`parse_one`] found at the start of a buffer.
#[derive(Debug)]
pub(crate) enum Step<'a> {
    /// Nothing but blank lines up to the end of the input.
    End,
    /// A message; the next one starts `consumed` bytes in.
    Message(RawMessage<'a>, usize),
    /// A broken message; reading resumes as `resume` says.
    Broken {
        offset: usize,
        kind: ParseErrorKind,
        message_offset: usize,
        resume: Resume,
    },
}

/// Where reading goes on after a broken message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resume {
    /// At this offset (the next `Message:` line, or the end of the input).
    At(usize),
    /// At the first `Message:` line after the line that holds this offset, which lies beyond
    /// the buffer: the streaming reader reads on (up to its limit) to find it.
    AfterLineAt(usize),
    /// The same for garbage that cannot be a message at all: the streaming reader looks for
    /// the next `Message:` line at once, without keeping what it skips.
    Garbage(usize),
}

/// What bounds a parse: whether the end of the buffer (at `eof`) is the end of the file, so
/// that a counted block running past it is a truncated file, and the largest block a size
/// line may claim before the whole input is there.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) file_end: bool,
    pub(crate) max_block: u64,
}

impl Limits {
    /// The whole file, no limit (a file held in memory).
    pub(crate) const WHOLE: Self = Self {
        file_end: true,
        max_block: u64::MAX,
    };
}

/// Whether a block of `claimed` bytes from `from` runs past the end of the input, even counting
/// each bare LF as the CR LF it was before a line-end conversion (an ASCII transfer shortens a
/// file without cutting it: the same lines, fewer bytes).
fn runs_past_end(input: Input<'_>, from: usize, claimed: u64) -> bool {
    let rest = input.buf.get(from..).unwrap_or_default();
    let bare_lf = memchr::memchr_iter(b'\n', rest)
        .filter(|&i| i == 0 || rest.get(i - 1) != Some(&b'\r'))
        .count();
    ((rest.len() + bare_lf) as u64) < claimed
}

/// A partial first line (no line end yet) that cannot become a `Message:` line or a blank
/// line, however it goes on.
fn cannot_start_message(rest: &[u8]) -> bool {
    const KEYWORD: &[u8] = b"message:";
    const ENOUGH: usize = 64;
    if rest.len() < ENOUGH || memchr::memchr(b'\n', rest).is_some() {
        return false;
    }
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    if rest.iter().all(blank) {
        return false;
    }
    let head = rest.get(..KEYWORD.len()).unwrap_or(rest);
    let tail = rest.get(KEYWORD.len()..).unwrap_or_default();
    !(head.eq_ignore_ascii_case(KEYWORD) && tail.iter().all(|b| blank(b) || *b == b'\r'))
}

/// A broken message, before positions are known.
struct Broken {
    offset: usize,
    kind: ParseErrorKind,
    /// Where to go on, when not at the next `Message:` line (a truncated file: its end).
    resume: Option<usize>,
}

impl Broken {
    fn new(offset: usize, kind: ParseErrorKind) -> Self {
        Self {
            offset,
            kind,
            resume: None,
        }
    }

    /// A counted block running past the end of the file: the message ends there.
    fn truncated(
        input: Input<'_>,
        size_line: usize,
        block: &'static str,
        claimed: u64,
        from: usize,
    ) -> Self {
        Self {
            offset: size_line,
            kind: ParseErrorKind::Truncated {
                block,
                claimed,
                available: input.len().saturating_sub(from) as u64,
            },
            resume: Some(input.len()),
        }
    }

    /// A size line claiming more than the limit, before the bytes are there.
    fn over_limit(size_line: usize, block: &'static str, claimed: u64, limit: u64) -> Self {
        Self::new(
            size_line,
            ParseErrorKind::SizeOverLimit {
                block,
                claimed,
                limit,
            },
        )
    }
}

/// Parses the message at the start of `input` (after blank lines).
pub(crate) fn parse_one(input: Input<'_>, limits: Limits) -> Result<Step<'_>, Incomplete> {
    // Blank lines between messages.
    let mut pos = 0;
    let first = loop {
        // Garbage (a line with no end, zero bytes): said at once, not after reading it all.
        if !input.eof
            && let Some(rest) = input.buf.get(pos..)
            && cannot_start_message(rest)
        {
            return Ok(Step::Broken {
                offset: pos,
                kind: ParseErrorKind::ExpectedMessage {
                    found: excerpt(rest),
                },
                message_offset: pos,
                resume: Resume::Garbage(pos),
            });
        }
        match input.line(pos)? {
            None => return Ok(Step::End),
            Some(line) if frame::is_blank(line.text) => pos = line.next,
            Some(line) => break line,
        }
    };
    let start = first.start;
    let broken = |b: Broken| -> Result<Step<'_>, Incomplete> {
        let resume = match b.resume {
            Some(at) => Resume::At(at),
            None => match next_message_line(input, first.next) {
                Ok(at) => Resume::At(at),
                Err(Incomplete) => Resume::AfterLineAt(start),
            },
        };
        Ok(Step::Broken {
            offset: b.offset,
            kind: b.kind,
            message_offset: start,
            resume,
        })
    };
    if !frame::is_message_line(first.text) {
        return broken(Broken::new(
            start,
            ParseErrorKind::ExpectedMessage {
                found: excerpt(first.text),
            },
        ));
    }
    let mut msg = RawMessage {
        offset: start,
        ..RawMessage::default()
    };
    let mut body_start = first.next;
    let mut size_at = first.next;
    if let Some(line) = input.line(body_start)?
        && let Some(n) = frame::size_line(line.text)
    {
        msg.size = Some(n);
        size_at = line.start;
        body_start = line.next;
    }

    // A trusted message size bounds the message: parse inside it as if it were the whole input.
    if let Some(n) = msg.size {
        let end = usize::try_from(n)
            .ok()
            .and_then(|n| body_start.checked_add(n));
        // Over the limit: said once a limit's worth is read without the file ending (a file
        // that ends first is a truncated one, as the slice reader says).
        if n > limits.max_block && input.len() as u64 > limits.max_block {
            return broken(Broken::over_limit(size_at, "message", n, limits.max_block));
        }
        if end.is_none_or(|end| end > input.len())
            && input.eof
            && limits.file_end
            && runs_past_end(input, body_start, n)
        {
            return broken(Broken::truncated(input, size_at, "message", n, body_start));
        }
        let next = match end {
            Some(end) => input.block_end(end, false)?,
            None => None,
        };
        if let (Some(end), Some(next)) = (end, next) {
            let bounded = Input {
                buf: input.buf.get(..end).unwrap_or(input.buf),
                eof: true,
            };
            let inside = Limits {
                file_end: false,
                ..limits
            };
            return match parse_body(bounded, body_start, &mut msg, true, inside)? {
                Ok(_) => {
                    msg.len = next - start;
                    Ok(Step::Message(msg, next))
                }
                Err(b) => broken(b),
            };
        }
        msg.notes.push((start, format!("message size line says {n} bytes, which do not end at a 'Message:' line or the end of the file; read by lines")));
    }
    let sized = msg.size.is_some();
    match parse_body(input, body_start, &mut msg, sized, limits)? {
        Ok(end) => {
            msg.len = end - start;
            Ok(Step::Message(msg, end))
        }
        Err(b) => broken(b),
    }
}

/// Headers, `Contents:` and items, from `pos`; answers where the message ends.
fn parse_body<'a>(
    input: Input<'a>,
    mut pos: usize,
    msg: &mut RawMessage<'a>,
    sized: bool,
    limits: Limits,
) -> Result<Result<usize, Broken>, Incomplete> {
    // *header-line "Contents:"
    loop {
        let Some(line) = input.line(pos)? else {
            return Ok(Err(Broken::new(
                input.len(),
                ParseErrorKind::MissingContents {
                    before: "the end of the file",
                },
            )));
        };
        if frame::is_contents_line(line.text) {
            pos = line.next;
            break;
        }
        if frame::is_message_line(line.text) {
            return Ok(Err(Broken::new(
                line.start,
                ParseErrorKind::MissingContents {
                    before: "the next 'Message:'",
                },
            )));
        }
        if frame::item_line(line.text).is_some_and(|(kind, _)| frame::is_known_kind(kind)) {
            return Ok(Err(Broken::new(
                line.start,
                ParseErrorKind::MissingContents {
                    before: "an item line",
                },
            )));
        }
        if !frame::is_blank(line.text) {
            let Some((keyword, value)) = frame::header_line(line.text) else {
                return Ok(Err(Broken::new(
                    line.start,
                    ParseErrorKind::ExpectedHeader {
                        found: excerpt(line.text),
                    },
                )));
            };
            msg.headers.push(RawHeader {
                offset: line.start,
                keyword,
                value,
            });
        }
        pos = line.next;
    }
    // [size-line]
    let contents_start = pos;
    let mut contents_size_at = pos;
    if let Some(line) = input.line(pos)?
        && let Some(n) = frame::size_line(line.text)
    {
        msg.contents_size = Some(n);
        contents_size_at = line.start;
        pos = line.next;
    }
    let items_start = pos;
    // *item
    while let Some(line) = input.line(pos)? {
        if frame::is_blank(line.text) {
            pos = line.next;
            continue;
        }
        if frame::is_message_line(line.text) {
            break;
        }
        let Some((kind, title)) = frame::item_line(line.text) else {
            return Ok(Err(Broken::new(
                line.start,
                ParseErrorKind::ExpectedItem {
                    found: excerpt(line.text),
                },
            )));
        };
        let counted = sized || msg.contents_size.is_some();
        let (item, next) = match parse_item(input, line, (kind, title), counted, msg, limits)? {
            Ok(found) => found,
            Err(b) => return Ok(Err(b)),
        };
        msg.items.push(item);
        pos = next;
    }
    if let Some(n) = msg.contents_size
        && input.eof
        && limits.file_end
        && pos >= input.len()
        && runs_past_end(input, items_start, n)
    {
        return Ok(Err(Broken::truncated(
            input,
            contents_size_at,
            "contents",
            n,
            items_start,
        )));
    }
    if let Some(n) = msg.contents_size {
        let counted = pos.saturating_sub(items_start);
        let counted_eol_less = input
            .buf
            .get(items_start..pos)
            .map_or(counted, trailing_eol_free_len);
        if u64::try_from(counted).ok() != Some(n) && u64::try_from(counted_eol_less).ok() != Some(n)
        {
            msg.notes.push((
                contents_start,
                format!("contents size line says {n} bytes, the contents have {counted}"),
            ));
        }
    }
    Ok(Ok(pos))
}

fn trailing_eol_free_len(b: &[u8]) -> usize {
    b.strip_suffix(b"\r\n")
        .or_else(|| b.strip_suffix(b"\n"))
        .map_or(b.len(), <[u8]>::len)
}

/// One item after its item line: `[size-line] item-data`.
///
/// `sized`: the message or its contents carry a size line, so a number line after the item
/// line is a size line (written by the same `/ITEMSIZE` run) and one that runs past the end of
/// the file is a truncated file; in an unsized message it may be the first line of the text.
fn parse_item<'a>(
    input: Input<'a>,
    line: frame::Line<'a>,
    (kind, title): (&'a [u8], &'a [u8]),
    sized: bool,
    msg: &mut RawMessage<'a>,
    limits: Limits,
) -> Result<Result<(RawItem<'a>, usize), Broken>, Incomplete> {
    let mut item = RawItem {
        offset: line.start,
        kind,
        title,
        size: None,
        data: &[],
    };
    let mut data_start = line.next;
    if let Some(size) = input.line(data_start)?
        && let Some(n) = frame::size_line(size.text)
    {
        let end = usize::try_from(n)
            .ok()
            .and_then(|n| size.next.checked_add(n));
        if sized && n > limits.max_block && input.len() as u64 > limits.max_block {
            return Ok(Err(Broken::over_limit(
                size.start,
                "item",
                n,
                limits.max_block,
            )));
        }
        if sized
            && end.is_none_or(|end| end > input.len())
            && input.eof
            && limits.file_end
            && runs_past_end(input, size.next, n)
        {
            return Ok(Err(Broken::truncated(
                input, size.start, "item", n, size.next,
            )));
        }
        let next = match end {
            Some(end) => input.block_end(end, true)?,
            None => None,
        };
        if let (Some(end), Some(next)) = (end, next) {
            item.size = Some(n);
            item.data = input.buf.get(size.next..end).unwrap_or_default();
            return Ok(Ok((item, next)));
        }
        if sized {
            // In a sized message the line is a size line that cannot be trusted.
            msg.notes.push((size.start, format!("item size line says {n} bytes, which do not end at an item or 'Message:' line; read by lines")));
            data_start = size.next;
        }
    }
    // Unsized: lines up to the next known item line or `Message:` line.
    let mut pos = data_start;
    let end = loop {
        match input.line(pos)? {
            None => break pos,
            Some(l) if frame::is_message_line(l.text) => break l.start,
            Some(l) if frame::item_line(l.text).is_some_and(|(k, _)| frame::is_known_kind(k)) => {
                break l.start;
            }
            Some(l) => pos = l.next,
        }
    };
    let data = input.buf.get(data_start..end).unwrap_or_default();
    item.data = data
        .strip_suffix(b"\r\n")
        .or_else(|| data.strip_suffix(b"\n"))
        .unwrap_or(data);
    Ok(Ok((item, end)))
}

/// The start of the next `Message:` line at or after `pos` (or the end of the input).
fn next_message_line(input: Input<'_>, mut pos: usize) -> Result<usize, Incomplete> {
    loop {
        match input.line(pos)? {
            None => return Ok(input.len()),
            Some(line) if frame::is_message_line(line.text) => return Ok(line.start),
            Some(line) => pos = line.next,
        }
    }
}

impl RawMessage<'_> {
    /// Decodes the message: code page to Unicode, dates in the given order, file-item stamps.
    /// Problems (a date that does not parse) become diagnostics as (offset, text); the header is
    /// then kept as [`Header::Other`].
    pub fn decode(&self, opts: &ReadOptions) -> (Message, Vec<(usize, String)>) {
        let cp = opts.codepage;
        let mut notes = self.notes.clone();
        let headers = self
            .headers
            .iter()
            .map(|h| {
                let value = cp.decode(h.value);
                let keyword = cp.decode(h.keyword);
                match keyword.to_ascii_lowercase().as_str() {
                    "from" => Header::From(value),
                    "to" => Header::To(value),
                    "cc" => Header::Cc(value),
                    "bcc" => Header::Bcc(value),
                    "subject" => Header::Subject(value),
                    "date" => match parse_date(&value, opts.date_order) {
                        Ok(d) => Header::Date(d),
                        Err(e) => {
                            notes.push((h.offset, e.to_string()));
                            Header::Other { keyword, value }
                        }
                    },
                    _ => Header::Other { keyword, value },
                }
            })
            .collect();
        let items = self
            .items
            .iter()
            .map(|i| {
                let kind = ItemKind::from_word(&cp.decode(i.kind));
                let title = cp.decode(i.title);
                let (title, stamp) = if kind == ItemKind::Text {
                    (title, None)
                } else {
                    split_stamp(title, opts.date_order)
                };
                let body = if kind == ItemKind::Text {
                    ItemBody::Text(cp.decode(i.data))
                } else {
                    ItemBody::Bytes(i.data.to_vec())
                };
                Item {
                    kind,
                    title,
                    stamp,
                    body,
                }
            })
            .collect();
        (Message { headers, items }, notes)
    }
}

/// Splits a trailing date (and time) off a file item's title: `Abc.wk4 5/6/97 3:10PM`.
pub(crate) fn split_stamp(
    title: String,
    order: DateOrder,
) -> (String, Option<crate::LegacyDateTime>) {
    let words: Vec<&str> = title.split(' ').collect();
    // Try the longest stamp first: date + time + AM/PM, date + time, date.
    for n in [3, 2, 1] {
        let Some(split) = words.len().checked_sub(n).filter(|s| *s > 0) else {
            continue;
        };
        let (name, stamp) = words.split_at(split);
        if let Ok(date) = parse_date(&stamp.join(" "), order) {
            return (name.join(" ").trim_end().to_owned(), Some(date));
        }
    }
    (title, None)
}

/// Reads messages out of a file held in memory, borrowing from it.
#[derive(Debug, Clone)]
pub struct SliceReader<'a> {
    buf: &'a [u8],
    pos: usize,
    lines: LineCounter,
}

impl<'a> SliceReader<'a> {
    /// A reader over the whole input.
    pub fn new(buf: &'a [u8]) -> Self {
        Self {
            buf,
            pos: 0,
            lines: LineCounter::default(),
        }
    }

    /// Line and column of an offset at or after the last one asked for (counted lazily, so
    /// callers that never ask pay nothing).
    pub fn position(&mut self, offset: usize) -> Position {
        self.lines.position(self.buf, offset)
    }
}

impl<'a> Iterator for SliceReader<'a> {
    type Item = Result<RawMessage<'a>, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.buf.get(self.pos..)?;
        let step = parse_one(
            Input {
                buf: rest,
                eof: true,
            },
            Limits::WHOLE,
        )
        .ok()?;
        let base = self.pos;
        match step {
            Step::End => {
                self.pos = self.buf.len();
                None
            }
            Step::Message(mut msg, consumed) => {
                msg.offset += base;
                for h in &mut msg.headers {
                    h.offset += base;
                }
                for i in &mut msg.items {
                    i.offset += base;
                }
                for n in &mut msg.notes {
                    n.0 += base;
                }
                self.pos = base + consumed.max(1);
                Some(Ok(msg))
            }
            Step::Broken {
                offset,
                kind,
                message_offset,
                resume,
            } => {
                let position = self.position(base + offset);
                // With the whole input at hand the next `Message:` line is always found.
                let resume = match resume {
                    Resume::At(at) | Resume::AfterLineAt(at) | Resume::Garbage(at) => at,
                };
                self.pos = base + resume.max(1);
                Some(Err(ParseError {
                    position,
                    kind,
                    message_offset: (base + message_offset) as u64,
                    resume_offset: self.pos as u64,
                }))
            }
        }
    }
}

/// Counts lines up to increasing offsets.
#[derive(Debug, Clone, Copy, Default)]
struct LineCounter {
    offset: usize,
    newlines: u64,
}

impl LineCounter {
    fn position(&mut self, buf: &[u8], offset: usize) -> Position {
        let offset = offset.min(buf.len());
        if offset < self.offset {
            *self = Self::default();
        }
        self.newlines +=
            memchr::memchr_iter(b'\n', buf.get(self.offset..offset).unwrap_or_default()).count()
                as u64;
        self.offset = offset;
        let line_start =
            memchr::memrchr(b'\n', buf.get(..offset).unwrap_or_default()).map_or(0, |i| i + 1);
        Position {
            offset: offset as u64,
            line: self.newlines + 1,
            column: (offset - line_start) as u64 + 1,
        }
    }
}

/// A decoded message with where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadMessage {
    /// Where its `Message:` line is.
    pub position: Position,
    /// Its length in the file.
    pub len: u64,
    /// Whether it carried a message size line.
    pub sized: bool,
    /// The message.
    pub message: Message,
    /// What the reader worked around.
    pub diagnostics: Vec<Diagnostic>,
    /// Byte length of each header line's value and the header block, for the dialect checks.
    pub header_bytes: usize,
}

/// What the streaming reader can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The input could not be read; the reader stops.
    #[error("read error: {0}")]
    Io(#[from] io::Error),
    /// One message is broken; the reader goes on with the next.
    #[error("{error}")]
    Parse {
        /// What and where.
        error: ParseError,
        /// The broken message's bytes (at most the size limit), e.g. for quarantine.
        raw: Vec<u8>,
    },
}

/// Reads messages from any `io::Read`, holding at most one message in memory.
#[derive(Debug)]
pub struct Reader<R> {
    inner: R,
    opts: ReadOptions,
    buf: Vec<u8>,
    /// Bytes of `buf` already handed out.
    start: usize,
    /// File offset of `buf[0]`.
    base: u64,
    eof: bool,
    failed: bool,
    /// Newlines before `buf[0]` plus those counted inside `buf` up to `counted`.
    newlines: u64,
    counted: usize,
}

const READ_CHUNK: usize = 64 * 1024;

impl<R: Read> Reader<R> {
    /// A reader over `inner`.
    pub fn new(inner: R, opts: ReadOptions) -> Self {
        Self {
            inner,
            opts,
            buf: Vec::new(),
            start: 0,
            base: 0,
            eof: false,
            failed: false,
            newlines: 0,
            counted: 0,
        }
    }

    fn position(&mut self, rel: usize) -> Position {
        let abs = (self.start + rel).min(self.buf.len());
        if abs >= self.counted {
            self.newlines +=
                memchr::memchr_iter(b'\n', self.buf.get(self.counted..abs).unwrap_or_default())
                    .count() as u64;
            self.counted = abs;
        }
        let line_start =
            memchr::memrchr(b'\n', self.buf.get(..abs).unwrap_or_default()).map_or(0, |i| i + 1);
        Position {
            offset: self.base + abs as u64,
            line: self.newlines + 1,
            column: (abs - line_start) as u64 + 1,
        }
    }

    fn fill(&mut self) -> io::Result<()> {
        if self.start > 0 && self.start >= self.buf.len() / 2 {
            // Drop what was handed out, keeping line counting exact.
            self.newlines += memchr::memchr_iter(
                b'\n',
                self.buf.get(self.counted..self.start).unwrap_or_default(),
            )
            .count() as u64;
            self.buf.drain(..self.start);
            self.base += self.start as u64;
            self.start = 0;
            self.counted = 0;
        }
        // Grow by doubling, but never past one message plus a read: the buffer is bounded.
        let held = self.buf.len() - self.start;
        let cap = usize::try_from(self.opts.max_message_size)
            .unwrap_or(usize::MAX)
            .saturating_add(READ_CHUNK);
        let want = READ_CHUNK
            .max(held)
            .min(cap.saturating_sub(held).max(READ_CHUNK));
        let old = self.buf.len();
        self.buf.reserve_exact(want);
        self.buf.resize(old + want, 0);
        let n = loop {
            match self.inner.read(self.buf.get_mut(old..).unwrap_or_default()) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.buf.truncate(old);
                    return Err(e);
                }
            }
        };
        self.buf.truncate(old + n);
        if n == 0 {
            self.eof = true;
        }
        Ok(())
    }

    /// Hands out everything before `abs` (an index into the buffer), counting its lines.
    fn advance_to(&mut self, abs: usize) {
        let abs = abs.min(self.buf.len()).max(self.start);
        let _ = self.position(abs - self.start);
        self.start = abs;
    }

    /// Skips to the next `Message:` line, starting at `abs` (an index into the buffer; in the
    /// middle of a line when `mid_line`), keeping nothing it skips: a line with no end or a
    /// gigabyte of garbage costs one read buffer, not its size.
    fn skip_to_message(&mut self, mut abs: usize, mut mid_line: bool) -> io::Result<()> {
        /// A longer line is no `Message:` line (it may have trailing blanks, but not this many).
        const MAX_KEYWORD_LINE: usize = 1024;
        loop {
            if mid_line {
                match memchr::memchr(b'\n', self.buf.get(abs..).unwrap_or_default()) {
                    Some(i) => {
                        abs += i + 1;
                        mid_line = false;
                    }
                    None => {
                        self.advance_to(self.buf.len());
                        if self.eof {
                            return Ok(());
                        }
                        self.fill()?;
                        abs = self.start;
                        continue;
                    }
                }
            }
            let input = Input {
                buf: &self.buf,
                eof: self.eof,
            };
            match input.line(abs) {
                Ok(None) => {
                    self.advance_to(self.buf.len());
                    return Ok(());
                }
                Ok(Some(line)) if frame::is_message_line(line.text) => {
                    self.advance_to(line.start);
                    return Ok(());
                }
                Ok(Some(line)) => abs = line.next,
                Err(Incomplete) if self.buf.len() - abs > MAX_KEYWORD_LINE => mid_line = true,
                Err(Incomplete) => {
                    self.advance_to(abs);
                    self.fill()?;
                    abs = self.start;
                }
            }
        }
    }

    /// The bytes of a broken message (at most `cap` of them), for quarantine.
    fn raw_excerpt(&self, from: usize, to: usize, cap: usize) -> Vec<u8> {
        // Never more than one message's worth.
        let cap = cap.min(usize::try_from(self.opts.max_message_size).unwrap_or(usize::MAX));
        let to = to.min(self.buf.len()).min(from.saturating_add(cap));
        self.buf.get(from..to).unwrap_or_default().to_vec()
    }
}

/// The most kept for quarantine of a message whose end is beyond the buffer (its first bytes).
const MAX_RAW: usize = 1 << 20;

impl<R: Read> Iterator for Reader<R> {
    type Item = Result<ReadMessage, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let limits = Limits {
            file_end: true,
            max_block: self.opts.max_message_size,
        };
        loop {
            let input = Input {
                buf: self.buf.get(self.start..).unwrap_or_default(),
                eof: self.eof,
            };
            let step = match parse_one(input, limits) {
                Ok(step) => step,
                Err(Incomplete) => {
                    if (input.len() as u64) > self.opts.max_message_size {
                        let position = self.position(0);
                        let message_offset = position.offset;
                        let raw = self.raw_excerpt(self.start, self.buf.len(), MAX_RAW);
                        let from = self.start + 1;
                        return Some(match self.skip_to_message(from, true) {
                            Ok(()) => Err(ReadError::Parse {
                                error: ParseError {
                                    position,
                                    kind: ParseErrorKind::TooLarge {
                                        limit: self.opts.max_message_size,
                                    },
                                    message_offset,
                                    resume_offset: self.base + self.start as u64,
                                },
                                raw,
                            }),
                            Err(e) => {
                                self.failed = true;
                                Err(ReadError::Io(e))
                            }
                        });
                    }
                    if let Err(e) = self.fill() {
                        self.failed = true;
                        return Some(Err(ReadError::Io(e)));
                    }
                    continue;
                }
            };
            return match step {
                Step::End => None,
                Step::Message(raw, consumed) => {
                    let (message, mut notes) = raw.decode(&self.opts);
                    notes.sort_by_key(|(at, _)| *at);
                    let header_bytes = raw
                        .headers
                        .iter()
                        .map(|h| h.keyword.len() + 2 + h.value.len() + 2)
                        .sum();
                    let (len, sized, offset) = (raw.len as u64, raw.size.is_some(), raw.offset);
                    let position = self.position(offset);
                    let diagnostics = notes
                        .into_iter()
                        .map(|(at, text)| Diagnostic {
                            position: self.position(at),
                            message: text,
                        })
                        .collect();
                    self.start += consumed.max(1);
                    Some(Ok(ReadMessage {
                        position,
                        len,
                        sized,
                        message,
                        diagnostics,
                        header_bytes,
                    }))
                }
                Step::Broken {
                    resume: Resume::AfterLineAt(_),
                    ..
                } if !self.eof && (input.len() as u64) <= self.opts.max_message_size => {
                    // Read on to the next `Message:` line, so the whole broken message is
                    // set aside (up to the limit).
                    if let Err(e) = self.fill() {
                        self.failed = true;
                        return Some(Err(ReadError::Io(e)));
                    }
                    continue;
                }
                Step::Broken {
                    offset,
                    kind,
                    message_offset,
                    resume,
                } => {
                    let from = self.start + message_offset;
                    let (raw, skipped) = match resume {
                        Resume::At(at) => (
                            self.raw_excerpt(from, self.start + at, usize::MAX),
                            Ok(self.start + at.max(1)),
                        ),
                        Resume::AfterLineAt(at) | Resume::Garbage(at) => (
                            self.raw_excerpt(from, self.buf.len(), MAX_RAW),
                            Err(self.start + at),
                        ),
                    };
                    let message_offset = self.position(message_offset).offset;
                    let position = self.position(offset);
                    match skipped {
                        Ok(next) => self.advance_to(next),
                        Err(at) => {
                            if let Err(e) = self.skip_to_message(at, true) {
                                self.failed = true;
                                return Some(Err(ReadError::Io(e)));
                            }
                        }
                    }
                    Some(Err(ReadError::Parse {
                        error: ParseError {
                            position,
                            kind,
                            message_offset,
                            resume_offset: self.base + self.start as u64,
                        },
                        raw,
                    }))
                }
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    const GOOD: &[u8] =
        b"Message:\r\nFrom: A at HQ\r\nTo: B at HQ\r\nContents:\r\nText item:\r\nafter\r\n";
    const LIMIT: u64 = 1 << 20;

    fn opts() -> ReadOptions {
        ReadOptions {
            max_message_size: LIMIT,
            ..ReadOptions::default()
        }
    }

    /// Reads everything; answers (error kinds with their line, good subjects' count, the
    /// largest buffer capacity seen).
    fn read_all(input: impl Read) -> (Vec<(u64, ParseErrorKind)>, usize, usize) {
        let mut reader = Reader::new(input, opts());
        let (mut errors, mut good, mut peak) = (Vec::new(), 0, 0);
        while let Some(result) = reader.next() {
            peak = peak.max(reader.buf.capacity());
            match result {
                Ok(_) => good += 1,
                Err(ReadError::Parse { error, raw }) => {
                    assert!(raw.len() <= MAX_RAW, "raw kept: {}", raw.len());
                    errors.push((error.position.line, error.kind));
                }
                Err(e) => panic!("{e}"),
            }
        }
        (errors, good, peak.max(reader.buf.capacity()))
    }

    /// The buffer never holds more than one message plus two reads.
    fn assert_bounded(peak: usize) {
        assert!(
            peak as u64 <= LIMIT + 2 * READ_CHUNK as u64,
            "buffer grew to {peak} bytes"
        );
    }

    #[test]
    fn garbage_without_line_ends_is_one_error_and_costs_one_buffer() {
        let garbage = io::repeat(0).take(64 << 20);
        let (errors, good, peak) = read_all(garbage.chain(&b"\r\n"[..]).chain(GOOD));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            matches!(errors[0], (1, ParseErrorKind::ExpectedMessage { .. })),
            "{errors:?}"
        );
        assert_eq!(good, 1, "reading resumes at the next 'Message:' line");
        assert_bounded(peak);
    }

    #[test]
    fn a_header_line_with_no_end_is_too_large_and_reading_resumes() {
        let head = &b"Message:\r\nFrom: A at HQ\r\nSubject: "[..];
        let endless = io::repeat(b'x').take(16 << 20);
        let input = head.chain(endless).chain(&b"\r\n"[..]).chain(GOOD);
        let (errors, good, peak) = read_all(input);
        assert_eq!(
            errors,
            vec![(1, ParseErrorKind::TooLarge { limit: LIMIT })],
            "{errors:?}"
        );
        assert_eq!(good, 1);
        assert_bounded(peak);
    }

    #[test]
    fn a_size_line_claiming_terabytes_is_refused_within_the_limit() {
        let head = &b"Message:\r\n1099511627776\r\nFrom: A at HQ\r\n"[..];
        let rest = io::repeat(b'y').take(8 << 20);
        let input = head.chain(rest).chain(&b"\r\n"[..]).chain(GOOD);
        let (errors, good, peak) = read_all(input);
        assert_eq!(
            errors,
            vec![(
                2,
                ParseErrorKind::SizeOverLimit {
                    block: "message",
                    claimed: 1 << 40,
                    limit: LIMIT
                }
            )],
        );
        assert_eq!(good, 1);
        assert_bounded(peak);
    }

    #[test]
    fn truncation_is_an_error_but_a_line_end_conversion_is_not() {
        let sized = b"Message:\r\n65\r\nFrom: A at HQ\r\nTo: B at HQ\r\nContents:\r\n22\r\nText item:\r\n5\r\nhello\r\n";
        let whole = read_all(&sized[..]);
        assert_eq!((whole.0.len(), whole.1), (0, 1), "{:?}", whole.0);
        // The same lines with LF only (an ASCII transfer): fewer bytes, nothing missing.
        let lf: Vec<u8> = sized.iter().copied().filter(|b| *b != b'\r').collect();
        let converted = read_all(lf.as_slice());
        assert_eq!(
            (converted.0.len(), converted.1),
            (0, 1),
            "{:?}",
            converted.0
        );
        // Cut inside the item: the message is not read in part.
        let cut = &sized[..sized.len() - 5];
        let (errors, good, _) = read_all(cut);
        assert_eq!(good, 0);
        assert!(
            matches!(
                errors.as_slice(),
                [(
                    2,
                    ParseErrorKind::Truncated {
                        block: "message",
                        claimed: 65,
                        ..
                    }
                )]
            ),
            "{errors:?}"
        );
    }
}

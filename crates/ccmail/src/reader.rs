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
    /// A broken message; reading resumes `resume` bytes in.
    Broken {
        offset: usize,
        kind: ParseErrorKind,
        message_offset: usize,
        resume: usize,
    },
}

/// A broken message, before positions are known.
struct Broken {
    offset: usize,
    kind: ParseErrorKind,
}

/// Parses the message at the start of `input` (after blank lines).
pub(crate) fn parse_one(input: Input<'_>) -> Result<Step<'_>, Incomplete> {
    // Blank lines between messages.
    let mut pos = 0;
    let first = loop {
        match input.line(pos)? {
            None => return Ok(Step::End),
            Some(line) if frame::is_blank(line.text) => pos = line.next,
            Some(line) => break line,
        }
    };
    let start = first.start;
    let broken = |b: Broken| -> Result<Step<'_>, Incomplete> {
        let resume = next_message_line(input, first.next)?;
        Ok(Step::Broken {
            offset: b.offset,
            kind: b.kind,
            message_offset: start,
            resume,
        })
    };
    if !frame::is_message_line(first.text) {
        return broken(Broken {
            offset: start,
            kind: ParseErrorKind::ExpectedMessage {
                found: excerpt(first.text),
            },
        });
    }
    let mut msg = RawMessage {
        offset: start,
        ..RawMessage::default()
    };
    let mut body_start = first.next;
    if let Some(line) = input.line(body_start)?
        && let Some(n) = frame::size_line(line.text)
    {
        msg.size = Some(n);
        body_start = line.next;
    }

    // A trusted message size bounds the message: parse inside it as if it were the whole input.
    if let Some(n) = msg.size {
        let end = usize::try_from(n)
            .ok()
            .and_then(|n| body_start.checked_add(n));
        let next = match end {
            Some(end) => input.block_end(end, false)?,
            None => None,
        };
        if let (Some(end), Some(next)) = (end, next) {
            let bounded = Input {
                buf: input.buf.get(..end).unwrap_or(input.buf),
                eof: true,
            };
            return match parse_body(bounded, body_start, &mut msg, true)? {
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
    match parse_body(input, body_start, &mut msg, sized)? {
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
) -> Result<Result<usize, Broken>, Incomplete> {
    // *header-line "Contents:"
    loop {
        let Some(line) = input.line(pos)? else {
            return Ok(Err(Broken {
                offset: input.len(),
                kind: ParseErrorKind::MissingContents {
                    before: "the end of the file",
                },
            }));
        };
        if frame::is_contents_line(line.text) {
            pos = line.next;
            break;
        }
        if frame::is_message_line(line.text) {
            return Ok(Err(Broken {
                offset: line.start,
                kind: ParseErrorKind::MissingContents {
                    before: "the next 'Message:'",
                },
            }));
        }
        if frame::item_line(line.text).is_some_and(|(kind, _)| frame::is_known_kind(kind)) {
            return Ok(Err(Broken {
                offset: line.start,
                kind: ParseErrorKind::MissingContents {
                    before: "an item line",
                },
            }));
        }
        if !frame::is_blank(line.text) {
            let Some((keyword, value)) = frame::header_line(line.text) else {
                return Ok(Err(Broken {
                    offset: line.start,
                    kind: ParseErrorKind::ExpectedHeader {
                        found: excerpt(line.text),
                    },
                }));
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
    if let Some(line) = input.line(pos)?
        && let Some(n) = frame::size_line(line.text)
    {
        msg.contents_size = Some(n);
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
            return Ok(Err(Broken {
                offset: line.start,
                kind: ParseErrorKind::ExpectedItem {
                    found: excerpt(line.text),
                },
            }));
        };
        let (item, next) = parse_item(input, line, kind, title, sized, msg)?;
        msg.items.push(item);
        pos = next;
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
fn parse_item<'a>(
    input: Input<'a>,
    line: frame::Line<'a>,
    kind: &'a [u8],
    title: &'a [u8],
    sized: bool,
    msg: &mut RawMessage<'a>,
) -> Result<(RawItem<'a>, usize), Incomplete> {
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
        let next = match end {
            Some(end) => input.block_end(end, true)?,
            None => None,
        };
        if let (Some(end), Some(next)) = (end, next) {
            item.size = Some(n);
            item.data = input.buf.get(size.next..end).unwrap_or_default();
            return Ok((item, next));
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
    Ok((item, end))
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
        let step = parse_one(Input {
            buf: rest,
            eof: true,
        })
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
        let want = READ_CHUNK.max(self.buf.len() - self.start);
        let old = self.buf.len();
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

    /// Skips a message over the size limit: discards bytes up to the next `Message:` line.
    fn skip_oversized(&mut self) -> Result<Vec<u8>, io::Error> {
        let limit = usize::try_from(self.opts.max_message_size).unwrap_or(usize::MAX);
        let raw: Vec<u8> = self
            .buf
            .get(self.start..)
            .unwrap_or_default()
            .iter()
            .take(limit)
            .copied()
            .collect();
        // Start looking after the first line (the oversized message's own `Message:`).
        let first_line_end = memchr::memchr(b'\n', self.buf.get(self.start..).unwrap_or_default())
            .map_or(self.buf.len(), |i| self.start + i + 1);
        let mut scan = first_line_end;
        loop {
            let input = Input {
                buf: self.buf.get(..).unwrap_or_default(),
                eof: self.eof,
            };
            match next_message_line(input, scan) {
                Ok(found) => {
                    let _ = self.position(found - self.start);
                    self.start = found;
                    return Ok(raw);
                }
                Err(Incomplete) => {
                    // Keep only the unfinished last line, then read on.
                    let keep_from = memchr::memrchr(b'\n', self.buf.get(..).unwrap_or_default())
                        .map_or(scan, |i| (i + 1).max(scan));
                    let _ = self.position(keep_from - self.start);
                    self.start = keep_from;
                    self.fill()?;
                    scan = self.start;
                }
            }
        }
    }
}

impl<R: Read> Iterator for Reader<R> {
    type Item = Result<ReadMessage, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        loop {
            let input = Input {
                buf: self.buf.get(self.start..).unwrap_or_default(),
                eof: self.eof,
            };
            let step = match parse_one(input) {
                Ok(step) => step,
                Err(Incomplete) => {
                    if (input.len() as u64) > self.opts.max_message_size {
                        let position = self.position(0);
                        let message_offset = position.offset;
                        return Some(match self.skip_oversized() {
                            Ok(raw) => Err(ReadError::Parse {
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
                    offset,
                    kind,
                    message_offset,
                    resume,
                } => {
                    let raw = self
                        .buf
                        .get(self.start + message_offset..self.start + resume)
                        .unwrap_or_default()
                        .to_vec();
                    let message_offset = self.position(message_offset).offset;
                    let position = self.position(offset);
                    self.start += resume.max(1);
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

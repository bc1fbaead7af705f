//! Sans-I/O framing: command lines and the DATA stream, over whatever bytes have arrived.
//!
//! Both decoders take `&mut &[u8]`, consume what they can, and advance the slice; running out
//! of input is [`LineStatus::NeedsMoreData`] / [`DataStatus::NeedsMoreData`], never an error.
//! Neither buffers more than its limit: a command line is kept up to
//! [`MAX_COMMAND_LINE`] octets (the rest of an over-long line is skipped up to its LF), and
//! message text is handed to the caller as it is decoded, up to the message size limit.
//!
//! Line ends are strict because of SMTP smuggling (CVE-2023-51764): a line ends only with
//! CR LF, the message ends only with CR LF `.` CR LF, and a bare LF is an error (as Postfix's
//! `smtpd_forbid_bare_newline`). A bare CR in message text is text, as Postfix takes it: it
//! never ends a line or the data, and [`encode_data`] never sends it on bare (CR LF in the
//! body, a dot after it stuffed; a space in the header section). In a command line a bare CR
//! is an error.
//! In DATA, errors are not reported when found: the decoder keeps consuming to the real end of
//! the data and reports the first error then, so the session can answer one 5xx and stay in
//! step with the client.

use memchr::memchr2;

use crate::error::{Error, Part};

/// Longest command line, CR LF included (RFC 5321 4.5.3.1.4).
pub const MAX_COMMAND_LINE: usize = 512;
/// Longest text line of a message RFC 5321 4.5.3.1.6 requires a server to accept, CR LF
/// included. A server may accept longer lines, and Postfix does (it keeps any line up to the
/// message size), so the session's default is [`NO_LINE_LIMIT`]; this value is what a
/// next hop may refuse beyond, and what `max_text_line` can be set to for RFC strictness.
pub const MAX_TEXT_LINE: usize = 1000;
/// No limit on the length of a message text line (only the message size limit applies).
pub const NO_LINE_LIMIT: usize = usize::MAX;

/// What [`LineDecoder::decode`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineStatus {
    /// A complete command line, without its CR LF.
    Line(Vec<u8>),
    /// The input ended inside a line; feed more.
    NeedsMoreData,
}

/// Splits the command stream into lines ending in CR LF.
///
/// A line longer than the limit is not kept: the decoder skips to its LF and then reports
/// [`Error::CommandLineTooLong`] once. A bare LF ends the line it is on and makes it an
/// [`Error::BareLf`]; a bare CR makes its line an [`Error::BareCr`]. Either way the decoder is
/// ready for the next line after the error, so the client and server stay in step.
#[derive(Debug, Clone)]
pub struct LineDecoder {
    buf: Vec<u8>,
    limit: usize,
    pending_cr: bool,
    overflowed: bool,
    error: Option<Error>,
}

impl LineDecoder {
    /// A decoder for lines of at most `limit` octets, CR LF included.
    pub fn new(limit: usize) -> Self {
        Self {
            buf: Vec::new(),
            limit,
            pending_cr: false,
            overflowed: false,
            error: None,
        }
    }

    /// True when no part of a line is held.
    pub fn is_idle(&self) -> bool {
        self.buf.is_empty() && !self.pending_cr && !self.overflowed && self.error.is_none()
    }

    /// Consumes input up to the end of the next line.
    ///
    /// # Errors
    /// The line that just ended was too long ([`Error::CommandLineTooLong`]) or held a bare
    /// CR or LF ([`Error::BareCr`], [`Error::BareLf`]); the line is consumed and dropped.
    pub fn decode(&mut self, input: &mut &[u8]) -> Result<LineStatus, Error> {
        loop {
            if self.pending_cr {
                let Some((&first, rest)) = input.split_first() else {
                    return Ok(LineStatus::NeedsMoreData);
                };
                self.pending_cr = false;
                if first == b'\n' {
                    *input = rest;
                    return self.finish();
                }
                self.fail(Error::BareCr {
                    part: Part::Command,
                    line: 0,
                });
                self.append(b"\r");
                continue;
            }
            let Some(pos) = memchr2(b'\r', b'\n', input) else {
                self.append(input);
                *input = &[];
                return Ok(LineStatus::NeedsMoreData);
            };
            let (text, rest) = input.split_at(pos);
            self.append(text);
            let Some((&end, rest)) = rest.split_first() else {
                // Unreachable: memchr2 found a byte at `pos`.
                *input = &[];
                return Ok(LineStatus::NeedsMoreData);
            };
            *input = rest;
            if end == b'\r' {
                self.pending_cr = true;
            } else {
                self.fail(Error::BareLf {
                    part: Part::Command,
                    line: 0,
                });
                return self.finish();
            }
        }
    }

    fn append(&mut self, bytes: &[u8]) {
        if self.overflowed {
            return;
        }
        let content_limit = self.limit.saturating_sub(2);
        if self.buf.len().saturating_add(bytes.len()) > content_limit {
            self.overflowed = true;
            self.buf.clear();
            self.fail(Error::CommandLineTooLong { limit: self.limit });
        } else {
            self.buf.extend_from_slice(bytes);
        }
    }

    fn fail(&mut self, error: Error) {
        if self.error.is_none() {
            self.error = Some(error);
        }
    }

    fn finish(&mut self) -> Result<LineStatus, Error> {
        let line = std::mem::take(&mut self.buf);
        self.overflowed = false;
        self.pending_cr = false;
        match self.error.take() {
            Some(error) => Err(error),
            None => Ok(LineStatus::Line(line)),
        }
    }
}

impl Default for LineDecoder {
    fn default() -> Self {
        Self::new(MAX_COMMAND_LINE)
    }
}

/// What [`DataDecoder::decode`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataStatus {
    /// The input ended before the end of data; feed more.
    NeedsMoreData,
    /// `CR LF . CR LF` was consumed and the message is well formed.
    Complete {
        /// Octets of message text (after dot-unstuffing, line ends included).
        size: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DataState {
    /// At the start of a line (after CR LF, or at the start of the data).
    LineStart,
    /// Saw `.` at the start of a line.
    Dot,
    /// Saw `.` CR at the start of a line.
    DotCr,
    /// Inside a line.
    Text,
    /// Saw CR inside a line.
    Cr,
    /// Consumed the end of data.
    Done,
}

/// Decodes the DATA stream: dot-unstuffing, strict line ends, line and size limits.
///
/// Decoded message text is appended to the caller's buffer as it arrives (a chunk per call),
/// so the caller may hand it to a spool writer at once; the decoder itself holds only a few
/// octets of state. Once the message exceeds the size limit, or any error is found, nothing
/// more is appended; the decoder keeps consuming to `CR LF . CR LF` and then returns the
/// first error.
///
/// ```
/// use ccgate_smtp::framing::{DataDecoder, DataStatus};
///
/// let mut decoder = DataDecoder::new(1_000_000, 1000);
/// let mut message = Vec::new();
/// let mut input: &[u8] = b"Subject: hi\r\n\r\n..dot\r\n.\r\nQUIT\r\n";
/// let status = decoder.decode(&mut input, &mut message).unwrap();
/// assert_eq!(status, DataStatus::Complete { size: 21 });
/// assert_eq!(message, b"Subject: hi\r\n\r\n.dot\r\n");
/// assert_eq!(input, b"QUIT\r\n");
/// ```
#[derive(Debug, Clone)]
pub struct DataDecoder {
    state: DataState,
    max_size: u64,
    max_line: usize,
    size: u64,
    line_len: usize,
    line: u64,
    error: Option<Error>,
}

impl DataDecoder {
    /// A decoder for messages of at most `max_size` octets with lines of at most `max_line`
    /// octets (CR LF included).
    pub fn new(max_size: u64, max_line: usize) -> Self {
        Self {
            state: DataState::LineStart,
            max_size,
            max_line,
            size: 0,
            line_len: 0,
            line: 1,
            error: None,
        }
    }

    /// True once an error was found: the message will be refused, and what was appended to
    /// the caller's buffer so far can be dropped.
    pub fn has_failed(&self) -> bool {
        self.error.is_some()
    }

    /// Octets of message text seen so far, including any past the size limit.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Refuses the message for a reason found outside the decoder (the I/O layer ran out of
    /// room for it): nothing more is appended, the rest of the data is consumed, and at its
    /// end `error` is returned (unless an error of the message itself came first).
    pub fn refuse(&mut self, error: Error) {
        self.fail(error);
    }

    /// Consumes input, appends decoded message text to `out`, and stops right after the end
    /// of data. Once complete, further calls consume nothing and return the same outcome.
    ///
    /// # Errors
    /// Only at the end of data: the first error found in the message
    /// ([`Error::BareLf`], [`Error::TextLineTooLong`], [`Error::MessageTooLarge`]).
    pub fn decode(&mut self, input: &mut &[u8], out: &mut Vec<u8>) -> Result<DataStatus, Error> {
        loop {
            if self.state == DataState::Done {
                return match &self.error {
                    Some(error) => Err(error.clone()),
                    None => Ok(DataStatus::Complete { size: self.size }),
                };
            }
            if self.state == DataState::Text {
                let Some(pos) = memchr2(b'\r', b'\n', input) else {
                    self.text(input, out);
                    *input = &[];
                    return Ok(DataStatus::NeedsMoreData);
                };
                let (text, rest) = input.split_at(pos);
                self.text(text, out);
                *input = rest;
            }
            let Some((&byte, rest)) = input.split_first() else {
                return Ok(DataStatus::NeedsMoreData);
            };
            // Each arm either consumes `byte` (`*input = rest`) or changes state to Text
            // without consuming it, so the loop always makes progress.
            match (self.state, byte) {
                (DataState::LineStart, b'.') => {
                    *input = rest;
                    self.state = DataState::Dot;
                }
                (DataState::Dot, b'\r') => {
                    *input = rest;
                    self.state = DataState::DotCr;
                }
                (DataState::DotCr, b'\n') => {
                    *input = rest;
                    self.state = DataState::Done;
                }
                (DataState::DotCr, _) => {
                    // `.` CR followed by something else: the dot was stuffing, the CR bare
                    // (text).
                    self.text(b"\r", out);
                    self.state = DataState::Text;
                }
                (DataState::Text | DataState::LineStart, b'\r') => {
                    *input = rest;
                    self.state = DataState::Cr;
                }
                (DataState::Text | DataState::LineStart | DataState::Dot, b'\n') => {
                    // A bare LF never starts a new line, so `\n.\n` and `\n.\r\n` cannot end
                    // the data.
                    *input = rest;
                    self.fail(Error::BareLf {
                        part: Part::Data,
                        line: self.line,
                    });
                    self.state = DataState::Text;
                }
                (DataState::Cr, b'\n') => {
                    *input = rest;
                    self.emit(b"\r\n", out);
                    self.line = self.line.saturating_add(1);
                    self.line_len = 0;
                    self.state = DataState::LineStart;
                }
                (DataState::Cr, _) => {
                    // A bare CR: text, not a line end.
                    self.text(b"\r", out);
                    self.state = DataState::Text;
                }
                (DataState::LineStart | DataState::Dot | DataState::Text, _) => {
                    // The first octet of a line's text (after an unstuffed dot, if any).
                    self.state = DataState::Text;
                }
                (DataState::Done, _) => {}
            }
        }
    }

    /// Line text: counts toward the line length, then is emitted.
    fn text(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        if bytes.is_empty() {
            return;
        }
        self.line_len = self.line_len.saturating_add(bytes.len());
        if self.line_len > self.max_line.saturating_sub(2) {
            self.fail(Error::TextLineTooLong {
                limit: self.max_line,
                line: self.line,
            });
        }
        self.emit(bytes, out);
    }

    fn emit(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        let len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        self.size = self.size.saturating_add(len);
        if self.size > self.max_size {
            self.fail(Error::MessageTooLarge {
                limit: self.max_size,
            });
        }
        if self.error.is_none() {
            out.extend_from_slice(bytes);
        }
    }

    fn fail(&mut self, error: Error) {
        if self.error.is_none() {
            self.error = Some(error);
        }
    }
}

/// Encodes a message for the DATA phase: every line ends in CR LF (a bare CR or bare LF in
/// `message` becomes CR LF, so no bare line end is ever sent), lines starting with `.` get
/// another `.` (RFC 5321 4.5.2), a missing final CR LF is added, and `.` CR LF ends it.
///
/// In the header section (up to the first empty line) a bare CR becomes a space instead:
/// this gateway reads `Subject: x` CR `Auto-Submitted: y` as one header (lines end at LF),
/// and so must the next hop; made a line end, it would be two.
///
/// For a message whose lines all end in CR LF, [`DataDecoder`] returns it unchanged.
pub fn encode_data(message: &[u8], out: &mut Vec<u8>) {
    out.reserve(message.len().saturating_add(5));
    let mut rest = message;
    let mut at_line_start = true;
    let mut in_header = true;
    while !rest.is_empty() {
        if at_line_start && rest.first() == Some(&b'.') {
            out.push(b'.');
        }
        match memchr2(b'\r', b'\n', rest) {
            None => {
                out.extend_from_slice(rest);
                at_line_start = false;
                rest = &[];
            }
            Some(pos) => {
                let (text, tail) = rest.split_at(pos);
                out.extend_from_slice(text);
                let bare_cr = tail.first() == Some(&b'\r') && tail.get(1) != Some(&b'\n');
                if in_header && bare_cr {
                    out.push(b' ');
                    at_line_start = false;
                    rest = tail.get(1..).unwrap_or_default();
                    continue;
                }
                if at_line_start && text.is_empty() {
                    in_header = false;
                }
                out.extend_from_slice(b"\r\n");
                at_line_start = true;
                rest = match tail {
                    [b'\r', b'\n', after @ ..] => after,
                    [_, after @ ..] => after,
                    [] => &[],
                };
            }
        }
    }
    if !at_line_start {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn lines(chunks: &[&[u8]], limit: usize) -> Vec<Result<Vec<u8>, Error>> {
        let mut decoder = LineDecoder::new(limit);
        let mut found = Vec::new();
        for chunk in chunks {
            let mut input = *chunk;
            loop {
                match decoder.decode(&mut input) {
                    Ok(LineStatus::Line(line)) => found.push(Ok(line)),
                    Ok(LineStatus::NeedsMoreData) => break,
                    Err(e) => found.push(Err(e)),
                }
            }
            assert!(input.is_empty());
        }
        found
    }

    #[test]
    fn command_lines() {
        let bare_lf = Error::BareLf {
            part: Part::Command,
            line: 0,
        };
        let bare_cr = Error::BareCr {
            part: Part::Command,
            line: 0,
        };
        let too_long = Error::CommandLineTooLong { limit: 10 };
        type Case<'a> = (Vec<&'a [u8]>, Vec<Result<&'a [u8], Error>>);
        let cases: Vec<Case> = vec![
            (vec![b"EHLO x\r\n"], vec![Ok(b"EHLO x")]),
            (
                vec![b"EH", b"LO x\r", b"\nQUIT\r\n"],
                vec![Ok(b"EHLO x"), Ok(b"QUIT")],
            ),
            (vec![b"\r\n"], vec![Ok(b"")]),
            (
                vec![b"EHLO x\nQUIT\r\n"],
                vec![Err(bare_lf.clone()), Ok(b"QUIT")],
            ),
            (
                vec![b"EHLO\rx\r\nQUIT\r\n"],
                vec![Err(bare_cr.clone()), Ok(b"QUIT")],
            ),
            (vec![b"EHLO\r", b"\r\n"], vec![Err(bare_cr.clone())]),
            (vec![b"\n"], vec![Err(bare_lf)]),
            // 8 octets of text plus CR LF is exactly the limit of 10.
            (vec![b"12345678\r\n"], vec![Ok(b"12345678")]),
            (
                vec![b"123456789\r\nOK\r\n"],
                vec![Err(too_long.clone()), Ok(b"OK")],
            ),
            (
                vec![b"1234567", b"89012345", b"678\r", b"\nOK\r\n"],
                vec![Err(too_long.clone()), Ok(b"OK")],
            ),
            (vec![b"12345678\r", b"x\r\n"], vec![Err(bare_cr)]),
            (
                vec![b"12345678\r", b"\r\n"],
                vec![Err(Error::BareCr {
                    part: Part::Command,
                    line: 0,
                })],
            ),
            (vec![b"partial"], vec![]),
        ];
        for (chunks, expected) in cases {
            let expected: Vec<Result<Vec<u8>, Error>> = expected
                .into_iter()
                .map(|r| r.map(<[u8]>::to_vec))
                .collect();
            assert_eq!(lines(&chunks, 10), expected, "{chunks:?}");
        }
    }

    #[test]
    fn over_long_line_is_not_buffered() {
        let mut decoder = LineDecoder::new(MAX_COMMAND_LINE);
        let junk = vec![b'x'; 100_000];
        for _ in 0..10 {
            let mut input = junk.as_slice();
            assert_eq!(decoder.decode(&mut input), Ok(LineStatus::NeedsMoreData));
            assert!(decoder.buf.capacity() <= MAX_COMMAND_LINE);
        }
        let mut input: &[u8] = b"\r\nNOOP\r\n";
        assert_eq!(
            decoder.decode(&mut input),
            Err(Error::CommandLineTooLong { limit: 512 })
        );
        assert_eq!(
            decoder.decode(&mut input),
            Ok(LineStatus::Line(b"NOOP".to_vec()))
        );
        assert!(decoder.is_idle());
    }

    /// Feeds `chunks` to a fresh decoder; returns the outcome, the message, and what was left
    /// of the input after the end of data.
    fn data(chunks: &[&[u8]], max_size: u64) -> (Result<DataStatus, Error>, Vec<u8>, Vec<u8>) {
        let mut decoder = DataDecoder::new(max_size, 20);
        let mut out = Vec::new();
        let mut status = Ok(DataStatus::NeedsMoreData);
        let mut left = Vec::new();
        for chunk in chunks {
            let mut input = *chunk;
            if status == Ok(DataStatus::NeedsMoreData) {
                status = decoder.decode(&mut input, &mut out);
            }
            left.extend_from_slice(input);
        }
        (status, out, left)
    }

    #[test]
    fn data_stream() {
        let complete = |size| Ok(DataStatus::Complete { size });
        let bare_lf = |line| Error::BareLf {
            part: Part::Data,
            line,
        };
        type Case<'a> = (Vec<&'a [u8]>, Result<DataStatus, Error>, &'a [u8], &'a [u8]);
        let cases: Vec<Case> = vec![
            (vec![b".\r\n"], complete(0), b"", b""),
            (vec![b"hi\r\n.\r\n"], complete(4), b"hi\r\n", b""),
            (
                vec![b"hi\r\n", b"..\r\n", b".a\r\n", b".\r\n"],
                complete(10),
                b"hi\r\n.\r\na\r\n",
                b"",
            ),
            (
                vec![b"a\r", b"\n.", b"\r", b"\n", b"MAIL"],
                complete(3),
                b"a\r\n",
                b"MAIL",
            ),
            (
                vec![b"a\r\n.\r\nQUIT\r\n"],
                complete(3),
                b"a\r\n",
                b"QUIT\r\n",
            ),
            (vec![b"a\r\n", b".\r", b"\n"], complete(3), b"a\r\n", b""),
            (vec![b"a\r\n.", b"\r\n"], complete(3), b"a\r\n", b""),
            // Still open: no end of data yet.
            (
                vec![b"a\r\n."],
                Ok(DataStatus::NeedsMoreData),
                b"a\r\n",
                b"",
            ),
            (
                vec![b"a\r\n.\r"],
                Ok(DataStatus::NeedsMoreData),
                b"a\r\n",
                b"",
            ),
            // SMTP smuggling probes (CVE-2023-51764 and its siblings): none ends the data; each is refused at the
            // real end.
            (vec![b"a\n.\nb\r\n.\r\n"], Err(bare_lf(1)), b"a", b""),
            (vec![b"a\n.\rb\r\n.\r\n"], Err(bare_lf(1)), b"a", b""),
            // A bare CR is text (as Postfix reads it): `\r.\r\n` ends nothing.
            (vec![b"a\r.\nb\r\n.\r\n"], Err(bare_lf(1)), b"a\r.", b""),
            (vec![b"a\r.\rb\r\n.\r\n"], complete(7), b"a\r.\rb\r\n", b""),
            (
                vec![b"a\n.\r\nMAIL FROM:<x@y.z>\r\n.\r\n"],
                Err(bare_lf(1)),
                b"a",
                b"",
            ),
            (
                vec![b"a\r.\r\nMAIL FROM:<x@y.z>\r\n.\r\n"],
                complete(24),
                b"a\r.\r\nMAIL FROM:<x@y.z>\r\n",
                b"",
            ),
            (
                vec![b"a\r\n\x00.\r\nb\r\n.\r\n"],
                complete(10),
                b"a\r\n\x00.\r\nb\r\n",
                b"",
            ),
            (vec![b"\n.\r\n", b".\r\n"], Err(bare_lf(1)), b"", b""),
            (vec![b".\n.\r\n", b".\r\n"], Err(bare_lf(1)), b"", b""),
            (
                vec![b"a\r\n.\rb\r\n.\r\n"],
                complete(7),
                b"a\r\n\rb\r\n",
                b"",
            ),
            (vec![b"a\r\n.\r\r\n.\r\n"], complete(6), b"a\r\n\r\r\n", b""),
            (vec![b"a\r\r\n.\r\n"], complete(4), b"a\r\r\n", b""),
            // Lines: 18 octets of text plus CR LF fit the test limit of 20.
            (
                vec![b"123456789012345678\r\n.\r\n"],
                complete(20),
                b"123456789012345678\r\n",
                b"",
            ),
            (
                vec![b"ok\r\n1234567890123456789\r\n.\r\n"],
                Err(Error::TextLineTooLong { limit: 20, line: 2 }),
                b"ok\r\n",
                b"",
            ),
            // A stuffed dot does not count toward the line length.
            (
                vec![b"..23456789012345678\r\n.\r\n"],
                complete(20),
                b".23456789012345678\r\n",
                b"",
            ),
        ];
        for (chunks, status, message, left) in cases {
            let got = data(&chunks, 1000);
            assert_eq!(got, (status, message.to_vec(), left.to_vec()), "{chunks:?}");
        }
    }

    #[test]
    fn size_limit_stops_storing() {
        let too_large = Err(Error::MessageTooLarge { limit: 8 });
        type Case<'a> = (&'a [u8], Result<DataStatus, Error>, &'a [u8]);
        let cases: Vec<Case> = vec![
            (b"1234\r\n12\r\n.\r\n", too_large.clone(), b"1234\r\n12"),
            (
                b"123456\r\n.\r\n",
                Ok(DataStatus::Complete { size: 8 }),
                b"123456\r\n",
            ),
            (b"1234567\r\n.\r\n", too_large, b"1234567"),
        ];
        for (input, status, stored) in cases {
            assert_eq!(data(&[input], 8), (status, stored.to_vec(), Vec::new()));
        }
        let mut decoder = DataDecoder::new(8, 1000);
        let mut out = Vec::new();
        let big = vec![b'x'; 900];
        for _ in 0..100 {
            let mut line = big.as_slice();
            assert_eq!(
                decoder.decode(&mut line, &mut out),
                Ok(DataStatus::NeedsMoreData)
            );
            let mut crlf: &[u8] = b"\r\n";
            assert_eq!(
                decoder.decode(&mut crlf, &mut out),
                Ok(DataStatus::NeedsMoreData)
            );
        }
        assert!(out.len() <= 8);
        assert_eq!(decoder.size(), 90_200);
        let mut end: &[u8] = b".\r\n";
        assert_eq!(
            decoder.decode(&mut end, &mut out),
            Err(Error::MessageTooLarge { limit: 8 })
        );
    }

    #[test]
    fn encoder() {
        let cases: [(&[u8], &[u8]); 9] = [
            (b"", b".\r\n"),
            // Bare CRs taken as text are never sent on bare: in the body a line end (a dot
            // after one is stuffed), in the header section a space.
            (
                b"H: 1\r\n\r\na\r.\rb\r\n",
                b"H: 1\r\n\r\na\r\n..\r\nb\r\n.\r\n",
            ),
            (
                b"S: x\rA: y\r\n\r\n.\r\r\n",
                b"S: x A: y\r\n\r\n..\r\n\r\n.\r\n",
            ),
            (b"a\r\n", b"a\r\n.\r\n"),
            (b"a", b"a\r\n.\r\n"),
            (b".\r\n..x\r\n", b"..\r\n...x\r\n.\r\n"),
            (b"\r\na\nb\rc\r\n", b"\r\na\r\nb\r\nc\r\n.\r\n"),
            (b"\r\n.", b"\r\n..\r\n.\r\n"),
            (b"x\r\n.\r\n", b"x\r\n..\r\n.\r\n"),
        ];
        for (message, wire) in cases {
            let mut out = Vec::new();
            encode_data(message, &mut out);
            assert_eq!(out, wire, "{message:?}");
        }
    }

    fn crlf_message() -> impl Strategy<Value = Vec<u8>> {
        let line = proptest::collection::vec(
            any::<u8>().prop_filter("no CR/LF", |b| *b != b'\r' && *b != b'\n'),
            0..200,
        );
        proptest::collection::vec(line, 0..20).prop_map(|lines| {
            let mut message = Vec::new();
            for line in lines {
                message.extend_from_slice(&line);
                message.extend_from_slice(b"\r\n");
            }
            message
        })
    }

    proptest! {
        #[test]
        fn stuffing_round_trips(message in crlf_message(), cut in any::<prop::sample::Index>()) {
            let mut wire = Vec::new();
            encode_data(&message, &mut wire);
            wire.extend_from_slice(b"NEXT");
            let (first, second) = wire.split_at(cut.index(wire.len()));
            let mut decoder = DataDecoder::new(u64::MAX, MAX_TEXT_LINE);
            let mut out = Vec::new();
            let mut input = first;
            let mut status = decoder.decode(&mut input, &mut out);
            let mut left = input.to_vec();
            if status == Ok(DataStatus::NeedsMoreData) {
                prop_assert!(left.is_empty());
                let mut input = second;
                status = decoder.decode(&mut input, &mut out);
                left = input.to_vec();
            } else {
                left.extend_from_slice(second);
            }
            let size = u64::try_from(message.len()).unwrap();
            prop_assert_eq!(status, Ok(DataStatus::Complete { size }));
            prop_assert_eq!(out, message);
            prop_assert_eq!(left, b"NEXT".to_vec());
        }

        #[test]
        fn decoders_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..2000),
            sizes in proptest::collection::vec(1usize..64, 1..50),
        ) {
            let mut lines = LineDecoder::new(64);
            let mut data = DataDecoder::new(500, 80);
            let mut out = Vec::new();
            let mut rest = bytes.as_slice();
            let mut sizes = sizes.iter().cycle();
            while !rest.is_empty() {
                let n = (*sizes.next().unwrap()).min(rest.len());
                let (chunk, tail) = rest.split_at(n);
                rest = tail;
                let mut input = chunk;
                while lines.decode(&mut input) != Ok(LineStatus::NeedsMoreData) {}
                prop_assert!(input.is_empty());
                prop_assert!(lines.buf.len() <= 62);
                let mut input = chunk;
                while !input.is_empty() {
                    let before = input.len();
                    match data.decode(&mut input, &mut out) {
                        Ok(DataStatus::NeedsMoreData) => prop_assert!(input.is_empty()),
                        _ => {
                            prop_assert!(input.len() < before);
                            data = DataDecoder::new(500, 80);
                            out.clear();
                        }
                    }
                    prop_assert!(out.len() <= 500);
                }
            }
        }
    }
}

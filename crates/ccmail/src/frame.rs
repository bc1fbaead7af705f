//! Framing: lines, size lines and the checks that decide whether a size line can be trusted.
//!
//! The functions here work on a byte buffer that may end before the input does (`eof ==
//! false`): when they would need a byte past the end they answer [`Incomplete`], never a wrong
//! answer. The streaming reader then reads more and asks again. With `eof == true` the end of
//! the buffer is the end of the input.

use memchr::memchr;

/// The buffer ends before the answer is known; read more and ask again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Incomplete;

/// A byte buffer and whether it holds the rest of the input.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Input<'a> {
    pub(crate) buf: &'a [u8],
    pub(crate) eof: bool,
}

/// One line: its content without the line end, and where the next line starts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Line<'a> {
    pub(crate) start: usize,
    pub(crate) text: &'a [u8],
    pub(crate) next: usize,
}

/// The kind words of `item:` lines that end an unsized item (legacy-format.md §2.2). Other
/// words start an item only where an item is expected, so that a body line such as
/// `Action item: call Bob` stays text.
const KNOWN_KINDS: [&[u8]; 6] = [b"text", b"file", b"fax", b"graphics", b"sound", b"message"];

/// Longest size line accepted (19 digits fit a u64).
const MAX_SIZE_DIGITS: usize = 19;

impl<'a> Input<'a> {
    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    /// The line that starts at `pos`, or `None` at the end of the input.
    pub(crate) fn line(&self, pos: usize) -> Result<Option<Line<'a>>, Incomplete> {
        let Some(rest) = self.buf.get(pos..).filter(|r| !r.is_empty()) else {
            return if self.eof { Ok(None) } else { Err(Incomplete) };
        };
        let (raw, next) = match memchr(b'\n', rest) {
            Some(i) => (rest.get(..i).unwrap_or(rest), pos + i + 1),
            None if self.eof => (rest, self.buf.len()),
            None => return Err(Incomplete),
        };
        let text = raw.strip_suffix(b"\r").unwrap_or(raw);
        Ok(Some(Line {
            start: pos,
            text,
            next,
        }))
    }

    /// Skips one optional line end (CR LF or LF) at `pos`.
    pub(crate) fn skip_eol(&self, pos: usize) -> Result<usize, Incomplete> {
        match self.buf.get(pos..) {
            Some([b'\r', b'\n', ..]) => Ok(pos + 2),
            Some([b'\n', ..]) => Ok(pos + 1),
            Some([b'\r']) if !self.eof => Err(Incomplete),
            Some([]) | None if !self.eof => Err(Incomplete),
            _ => Ok(pos),
        }
    }

    /// Whether a counted block that ends at `end` is followed by what may follow it: the end
    /// of the input, a `Message:` line, or (when `item_may_follow`) a known item line, after
    /// an optional line end and blank lines. Answers where the next thing starts when it is.
    pub(crate) fn block_end(
        &self,
        end: usize,
        item_may_follow: bool,
    ) -> Result<Option<usize>, Incomplete> {
        if end > self.buf.len() {
            return if self.eof { Ok(None) } else { Err(Incomplete) };
        }
        let after = self.skip_eol(end)?;
        let mut pos = after;
        loop {
            match self.line(pos)? {
                None => return Ok(Some(after)),
                Some(line) if line.text.iter().all(|b| *b == b' ' || *b == b'\t') => {
                    pos = line.next
                }
                Some(line) => {
                    let ok = is_message_line(line.text)
                        || (item_may_follow && item_line(line.text).is_some());
                    return Ok(ok.then_some(after));
                }
            }
        }
    }
}

fn trim_end(text: &[u8]) -> &[u8] {
    let n = text
        .iter()
        .rposition(|b| *b != b' ' && *b != b'\t')
        .map_or(0, |i| i + 1);
    text.get(..n).unwrap_or(text)
}

fn trim_start(text: &[u8]) -> &[u8] {
    let n = text
        .iter()
        .position(|b| *b != b' ' && *b != b'\t')
        .unwrap_or(text.len());
    text.get(n..).unwrap_or_default()
}

/// `"Message:" CRLF` — the line alone, any case, trailing blanks allowed.
pub(crate) fn is_message_line(text: &[u8]) -> bool {
    trim_end(text).eq_ignore_ascii_case(b"Message:")
}

/// `"Contents:" CRLF`.
pub(crate) fn is_contents_line(text: &[u8]) -> bool {
    trim_end(text).eq_ignore_ascii_case(b"Contents:")
}

/// A blank line (nothing but spaces and tabs).
pub(crate) fn is_blank(text: &[u8]) -> bool {
    text.iter().all(|b| *b == b' ' || *b == b'\t')
}

/// `size-line = 1*DIGIT CRLF`.
pub(crate) fn size_line(text: &[u8]) -> Option<u64> {
    let text = trim_end(text);
    if text.is_empty() || text.len() > MAX_SIZE_DIGITS || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(text).ok()?.parse().ok()
}

/// `item = kind " item:" [SP title] CRLF` — the kind word and the title.
pub(crate) fn item_line(text: &[u8]) -> Option<(&[u8], &[u8])> {
    let colon = memchr(b':', text)?;
    let (head, rest) = text.split_at(colon);
    let title = trim_end(trim_start(rest.get(1..).unwrap_or_default()));
    if head.len() < 6 || !head.get(head.len() - 5..)?.eq_ignore_ascii_case(b" item") {
        return None;
    }
    let kind = head.get(..head.len() - 5)?;
    let is_word = !kind.is_empty()
        && kind.len() <= 32
        && kind.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-');
    is_word.then_some((kind, title))
}

/// True for the item kinds of legacy-format.md §2.2.
pub(crate) fn is_known_kind(kind: &[u8]) -> bool {
    KNOWN_KINDS.iter().any(|k| k.eq_ignore_ascii_case(kind))
}

/// `header-line = keyword ":" SP value CRLF` — the keyword and the value.
pub(crate) fn header_line(text: &[u8]) -> Option<(&[u8], &[u8])> {
    let colon = memchr(b':', text)?;
    let (keyword, rest) = text.split_at(colon);
    let ok = !keyword.is_empty()
        && keyword.len() <= 64
        && keyword.first().is_some_and(u8::is_ascii_alphabetic)
        && keyword
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b' '));
    // One blank after the colon belongs to the syntax; any further ones to the value.
    let value = rest.get(1..).unwrap_or_default();
    let value = value
        .strip_prefix(b" ")
        .or_else(|| value.strip_prefix(b"\t"))
        .unwrap_or(value);
    ok.then(|| (trim_end(keyword), value))
}

/// The first few characters of a line, for error messages.
pub(crate) fn excerpt(text: &[u8]) -> String {
    const MAX: usize = 40;
    let shown = text.get(..MAX).unwrap_or(text);
    let mut s: String = shown
        .iter()
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                char::from(b)
            } else {
                '\u{FFFD}'
            }
        })
        .collect();
    if text.len() > MAX {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_with_either_line_end() {
        let input = Input {
            buf: b"a\r\nb\nc",
            eof: true,
        };
        let a = input.line(0).unwrap().unwrap();
        assert_eq!((a.text, a.next), (&b"a"[..], 3));
        let b = input.line(3).unwrap().unwrap();
        assert_eq!((b.text, b.next), (&b"b"[..], 5));
        let c = input.line(5).unwrap().unwrap();
        assert_eq!((c.text, c.next), (&b"c"[..], 6));
        assert!(input.line(6).unwrap().is_none());
        let partial = Input {
            buf: b"a\r\nb",
            eof: false,
        };
        assert_eq!(partial.line(3).unwrap_err(), Incomplete);
    }

    #[test]
    fn keywords() {
        assert!(is_message_line(b"MESSAGE:  "));
        assert!(!is_message_line(b"Message: hello"));
        assert!(is_contents_line(b"contents:"));
        assert_eq!(size_line(b"179 "), Some(179));
        assert_eq!(size_line(b"17a"), None);
        assert_eq!(size_line(b"99999999999999999999"), None);
        assert_eq!(
            item_line(b"Text item: Note"),
            Some((&b"Text"[..], &b"Note"[..]))
        );
        assert_eq!(item_line(b"FILE ITEM:"), Some((&b"FILE"[..], &b""[..])));
        assert_eq!(item_line(b"item: x"), None);
        assert_eq!(
            header_line(b"Subject: hi"),
            Some((&b"Subject"[..], &b"hi"[..]))
        );
        assert_eq!(header_line(b"From:"), Some((&b"From"[..], &b""[..])));
        assert_eq!(header_line(b": x"), None);
        assert_eq!(header_line(b"no colon"), None);
    }

    #[test]
    fn block_end_needs_a_follower() {
        let input = Input {
            buf: b"abc\r\nMessage:\r\n",
            eof: true,
        };
        assert_eq!(input.block_end(3, false), Ok(Some(5)));
        assert_eq!(input.block_end(2, false), Ok(None));
        assert_eq!(input.block_end(99, false), Ok(None));
        let items = Input {
            buf: b"abcVideo item:\r\n",
            eof: true,
        };
        assert_eq!(items.block_end(3, true), Ok(Some(3)));
        assert_eq!(items.block_end(3, false), Ok(None));
        let partial = Input {
            buf: b"abc\r\nMess",
            eof: false,
        };
        assert_eq!(partial.block_end(3, false), Err(Incomplete));
    }
}

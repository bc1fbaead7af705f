//! Reading mbox files (`From ` separator lines; mboxrd `>From ` unescaped).

use std::io::{self, BufRead};

/// Messages of an mbox file, one at a time: a `From ` line at the start of the file or after a
/// blank line separates them; the blank line before a separator belongs to no message;
/// `>From `, `>>From `, ... lose one `>` (mboxrd).
pub(super) struct Mbox<R> {
    pub(super) inner: R,
    pub(super) line: u64,
    /// The line number of the separator that starts the next message.
    pub(super) next_start: Option<u64>,
    pub(super) done: bool,
}

impl<R: BufRead> Mbox<R> {
    pub(super) fn new(inner: R) -> Self {
        Self {
            inner,
            line: 0,
            next_start: None,
            done: false,
        }
    }

    pub(super) fn read_line(&mut self, buf: &mut Vec<u8>) -> io::Result<bool> {
        buf.clear();
        let n = self.inner.read_until(b'\n', buf)?;
        if n > 0 {
            self.line += 1;
        }
        Ok(n > 0)
    }

    pub(super) fn next_message(&mut self) -> io::Result<Option<(u64, Vec<u8>)>> {
        let mut buf = Vec::new();
        let start = match self.next_start.take() {
            Some(start) => start,
            None => loop {
                if self.done || !self.read_line(&mut buf)? {
                    self.done = true;
                    return Ok(None);
                }
                if buf.starts_with(b"From ") {
                    break self.line;
                }
                // Text before the first separator (blank lines) is not a message.
            },
        };
        let mut message = Vec::new();
        let mut previous_blank = false;
        loop {
            if !self.read_line(&mut buf)? {
                self.done = true;
                break;
            }
            if previous_blank && buf.starts_with(b"From ") {
                self.next_start = Some(self.line);
                // The separator's blank line is not part of the message.
                strip_last_line_end(&mut message);
                break;
            }
            previous_blank = buf.trim_ascii().is_empty();
            let quoted = buf.iter().take_while(|&&b| b == b'>').count();
            if quoted > 0 && buf.get(quoted..).is_some_and(|r| r.starts_with(b"From ")) {
                message.extend_from_slice(buf.get(1..).unwrap_or_default());
            } else {
                message.extend_from_slice(&buf);
            }
        }
        Ok(Some((start, message)))
    }
}

/// Drops the last line end of `message` (the blank line before an mbox separator).
pub(super) fn strip_last_line_end(message: &mut Vec<u8>) {
    if message.ends_with(b"\r\n") {
        message.truncate(message.len() - 2);
    } else if message.ends_with(b"\n") {
        message.truncate(message.len() - 1);
    }
}

/// Every line end as CR LF (as the SMTP listener stores messages).
pub(super) fn crlf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 32);
    let mut previous = 0u8;
    for &b in bytes {
        if b == b'\n' && previous != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        previous = b;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn messages(text: &str) -> Vec<(u64, String)> {
        let mut mbox = Mbox::new(text.as_bytes());
        let mut out = Vec::new();
        while let Some((line, bytes)) = mbox.next_message().unwrap() {
            out.push((line, String::from_utf8(bytes).unwrap()));
        }
        out
    }

    #[test]
    pub(super) fn mbox_splits_on_separators_after_blank_lines_and_unescapes_mboxrd() {
        let text = "From a@x Mon Jan  1 00:00:00 2024\nSubject: one\n\n>From here\n>>From there\nFrom inside a paragraph\n\n\
From b@x Mon Jan  1 00:00:00 2024\nSubject: two\n\nbody\n";
        assert_eq!(
            messages(text),
            vec![
                (
                    1,
                    "Subject: one\n\nFrom here\n>From there\nFrom inside a paragraph\n".to_owned()
                ),
                (8, "Subject: two\n\nbody\n".to_owned()),
            ]
        );
        assert!(messages("").is_empty());
    }

    #[test]
    pub(super) fn line_ends_become_crlf() {
        assert_eq!(crlf(b"a\nb\r\nc"), b"a\r\nb\r\nc".to_vec());
    }
}

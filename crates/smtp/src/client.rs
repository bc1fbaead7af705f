//! The client side, without I/O: reading a server's (possibly multi-line) replies and the
//! capabilities in its EHLO reply. The gateway's delivery agent and `ccgate replay` both read
//! replies through [`ReplyReader`]; both send message data through
//! [`encode_data`](crate::encode_data).

use std::fmt;

/// Longest reply line read, in bytes, line end included (RFC 5321 allows 512; real servers
/// send longer texts, and a line past this is a protocol error rather than a memory risk).
pub const MAX_REPLY_LINE: usize = 4096;
/// Most lines in one reply (EHLO replies are the longest).
pub const MAX_REPLY_LINES: usize = 200;

/// A reply from an SMTP server: its code and its text lines, without the code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerReply {
    /// The three-digit reply code (200-599).
    pub code: u16,
    /// Each line's text after the code and its separator.
    pub lines: Vec<String>,
}

impl ServerReply {
    /// A 2xx reply.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// The lines joined by `\n`.
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }
}

impl fmt::Display for ServerReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.lines.join(" "))
    }
}

/// Why a reply could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// A line without a reply code 200-599 and a space or `-` after it.
    #[error("malformed reply line {0:?}")]
    Malformed(String),
    /// A continuation line with another code than the first line.
    #[error("reply code changed within a reply: {0:?}")]
    CodeChanged(String),
    /// More than [`MAX_REPLY_LINES`] lines.
    #[error("reply longer than {MAX_REPLY_LINES} lines")]
    TooManyLines,
    /// A line longer than [`MAX_REPLY_LINE`] bytes.
    #[error("reply line longer than {MAX_REPLY_LINE} bytes")]
    LineTooLong,
}

/// Assembles one reply from its lines, as the I/O layer reads them (each with or without its
/// line end): `123-text` continues, `123 text` (or a bare `123`) ends the reply.
#[derive(Debug, Default)]
pub struct ReplyReader {
    code: Option<u16>,
    lines: Vec<String>,
}

impl ReplyReader {
    /// A reader at the start of a reply.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes one line; `Ok(Some(reply))` when it was the last line of the reply, after which the
    /// reader starts over.
    ///
    /// # Errors
    /// [`ReplyError`]; the reply is unusable and the connection should be dropped.
    pub fn push_line(&mut self, raw: &[u8]) -> Result<Option<ServerReply>, ReplyError> {
        if raw.len() > MAX_REPLY_LINE {
            return Err(ReplyError::LineTooLong);
        }
        let text = String::from_utf8_lossy(raw);
        let text = text.trim_end_matches(['\r', '\n']);
        let code = text
            .get(..3)
            .filter(|c| c.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|c| c.parse::<u16>().ok())
            .filter(|c| (200..600).contains(c))
            .ok_or_else(|| ReplyError::Malformed(text.to_owned()))?;
        if self.code.is_some_and(|c| c != code) {
            return Err(ReplyError::CodeChanged(text.to_owned()));
        }
        self.code = Some(code);
        self.lines.push(text.get(4..).unwrap_or("").to_owned());
        match text.as_bytes().get(3) {
            Some(b'-') if self.lines.len() < MAX_REPLY_LINES => Ok(None),
            Some(b'-') => Err(ReplyError::TooManyLines),
            Some(b' ') | None => {
                self.code = None;
                Ok(Some(ServerReply {
                    code,
                    lines: std::mem::take(&mut self.lines),
                }))
            }
            Some(_) => Err(ReplyError::Malformed(text.to_owned())),
        }
    }
}

/// What a server offered in its EHLO reply (the keywords after the first line).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Capabilities {
    /// `PIPELINING` (RFC 2920).
    pub pipelining: bool,
    /// `STARTTLS` (RFC 3207).
    pub starttls: bool,
    /// `8BITMIME` (RFC 6152).
    pub eightbitmime: bool,
    /// `SMTPUTF8` (RFC 6531).
    pub smtputf8: bool,
    /// `SIZE` (RFC 1870) with its limit; `Some(0)` when offered without one.
    pub size: Option<usize>,
}

impl Capabilities {
    /// Reads the keywords of an EHLO reply, in any case; unknown ones are ignored.
    pub fn from_ehlo(reply: &ServerReply) -> Self {
        let mut caps = Self::default();
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            match keyword.to_ascii_uppercase().as_str() {
                "PIPELINING" => caps.pipelining = true,
                "STARTTLS" => caps.starttls = true,
                "8BITMIME" => caps.eightbitmime = true,
                "SMTPUTF8" => caps.smtputf8 = true,
                "SIZE" => {
                    caps.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0));
                }
                _ => {}
            }
        }
        caps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(lines: &[&[u8]]) -> Result<Option<ServerReply>, ReplyError> {
        let mut reader = ReplyReader::new();
        let mut last = None;
        for line in lines {
            last = reader.push_line(line)?;
        }
        Ok(last)
    }

    #[test]
    fn single_and_multi_line_replies() {
        let reply = read(&[b"250 2.0.0 Ok: queued as X\r\n"]).unwrap().unwrap();
        assert_eq!(
            (reply.code, reply.text()),
            (250, "2.0.0 Ok: queued as X".into())
        );
        assert!(reply.is_positive());
        let ehlo = read(&[
            b"250-mx.example\r\n",
            b"250-pipelining\r\n",
            b"250-SIZE 1000\r\n",
            b"250-8BITMIME\r\n",
            b"250-SMTPUTF8\r\n",
            b"250 STARTTLS\r\n",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(ehlo.lines.len(), 6);
        assert_eq!(
            Capabilities::from_ehlo(&ehlo),
            Capabilities {
                pipelining: true,
                starttls: true,
                eightbitmime: true,
                smtputf8: true,
                size: Some(1000),
            }
        );
        assert_eq!(read(&[b"354"]).unwrap().unwrap().code, 354);
        assert_eq!(read(&[b"250-a\r\n"]).unwrap(), None, "continues");
    }

    #[test]
    fn the_reader_starts_over_after_each_reply() {
        let mut reader = ReplyReader::new();
        assert_eq!(reader.push_line(b"220 hi\r\n").unwrap().unwrap().code, 220);
        assert_eq!(reader.push_line(b"550 no\r\n").unwrap().unwrap().code, 550);
    }

    #[test]
    fn broken_replies_are_errors() {
        for (lines, expected) in [
            (&[&b"hello\r\n"[..]][..], "malformed"),
            (&[b"199 too low\r\n"], "malformed"),
            (&[b"+50 sign\r\n"], "malformed"),
            (&[b"250x\r\n"], "malformed"),
            (&[b"250-a\r\n", b"550 b\r\n"], "code changed"),
        ] {
            let error = read(lines).unwrap_err().to_string();
            assert!(error.contains(expected), "{error}");
        }
        let long = vec![b'2'; MAX_REPLY_LINE + 1];
        assert_eq!(read(&[&long]), Err(ReplyError::LineTooLong));
        let mut reader = ReplyReader::new();
        let result = (0..MAX_REPLY_LINES).try_for_each(|_| reader.push_line(b"250-x").map(drop));
        assert_eq!(result, Err(ReplyError::TooManyLines));
    }
}

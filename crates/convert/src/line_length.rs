//! Making a message's lines short enough for an SMTP next hop, without changing its content.
//!
//! The gateway accepts text lines of any length (as Postfix does), but RFC 5321 4.5.3.1.6 lets
//! a server refuse lines over 1,000 octets, and many do (aiosmtpd: `500 Line too long`). Before
//! such a message is relayed, [`fit_line_length`] re-encodes what is too long so that every
//! line fits and a MIME reader decodes the same content as before:
//!
//! - a leaf part (the whole body of a message without MIME) sent as `7bit`, `8bit`, `binary`
//!   or without a `Content-Transfer-Encoding` becomes `quoted-printable` (RFC 2045 6.7); its
//!   header says so, and a message without MIME gets `MIME-Version: 1.0`;
//! - a `base64` part with long lines is wrapped at 76 characters (the same data);
//! - a `quoted-printable` part with long lines gets soft line breaks (`=` CR LF);
//! - a nested `message/rfc822` is fitted the same way, recursively;
//! - a header line is folded at the last blank before the limit.
//!
//! Postfix 3.7, by contrast, breaks a long line by inserting CR LF SPACE
//! (`smtp_line_length_limit = 998`), which changes the text (`bench/longlines.sh` shows it).
//! What cannot be fitted without changing content (a header line with no blank to fold at, a
//! multipart preamble) is left as it is.

use std::borrow::Cow;

use mail_parser::{Encoding, HeaderName, PartType};

/// Longest line RFC 5321 lets a next hop insist on, CR LF excluded.
pub const SMTP_MAX_LINE: usize = 998;

/// Length of the lines this module writes when it re-encodes (RFC 2045: at most 76).
const ENCODED_LINE: usize = 76;

/// Nesting of `message/rfc822` parts followed before the rest is left as it is.
const MAX_DEPTH: usize = 8;

/// `message` with every line at most `max` octets (CR LF excluded) where that can be done
/// without changing what a MIME reader decodes; borrowed when no line is longer already.
///
/// ```
/// use ccgate_convert::fit_line_length;
///
/// let long = format!("Subject: x\r\n\r\n{}\r\n", "a=b ".repeat(600));
/// let fitted = fit_line_length(long.as_bytes(), 998);
/// let text = String::from_utf8(fitted.to_vec()).unwrap();
/// assert!(text.lines().all(|l| l.len() <= 998));
/// assert!(text.contains("Content-Transfer-Encoding: quoted-printable\r\n"));
/// assert!(text.contains("a=3Db a=3Db"));
/// ```
pub fn fit_line_length(message: &[u8], max: usize) -> Cow<'_, [u8]> {
    let max = max.max(ENCODED_LINE + 2);
    if longest_line(message) <= max {
        return Cow::Borrowed(message);
    }
    Cow::Owned(fit(message, max, 0))
}

/// The length of the longest line, line end excluded.
fn longest_line(bytes: &[u8]) -> usize {
    let mut longest = 0;
    let mut start = 0;
    for end in memchr::memchr_iter(b'\n', bytes) {
        let line = end.saturating_sub(start);
        let line = if end > start && bytes.get(end - 1) == Some(&b'\r') {
            line - 1
        } else {
            line
        };
        longest = longest.max(line);
        start = end + 1;
    }
    let last = bytes.get(start..).unwrap_or_default();
    longest.max(last.strip_suffix(b"\r").unwrap_or(last).len())
}

/// One replacement of `start..end` of the message.
struct Edit {
    start: usize,
    end: usize,
    with: Vec<u8>,
}

fn fit(message: &[u8], max: usize, depth: usize) -> Vec<u8> {
    let Ok(Some(parsed)) = crate::mime::parse(message) else {
        return fit_unparsed(message, max);
    };
    let mut edits: Vec<Edit> = Vec::new();
    let is_mime = parsed
        .parts
        .first()
        .is_some_and(|p| p.headers.iter().any(|h| h.name == HeaderName::MimeVersion));
    for (index, part) in parsed.parts.iter().enumerate() {
        let header_start = to_usize(part.offset_header);
        let body_start = to_usize(part.offset_body);
        let body_end = to_usize(part.offset_end).min(message.len());
        if header_start > body_start || body_start > body_end {
            continue;
        }
        let (Some(head), Some(body)) = (
            message.get(header_start..body_start),
            message.get(body_start..body_end),
        ) else {
            continue;
        };
        if longest_line(head) > max {
            edits.push(Edit {
                start: header_start,
                end: body_start,
                with: fold_headers(head, max),
            });
        }
        if longest_line(body) <= max {
            continue;
        }
        let with = match (&part.body, part.encoding) {
            (PartType::Multipart(_), _) => continue,
            (PartType::Message(_), _) if depth < MAX_DEPTH => fit(body, max, depth + 1),
            (PartType::Message(_), _) => continue,
            (_, Encoding::Base64) => wrap_base64(body),
            (_, Encoding::QuotedPrintable) => soft_break_qp(body),
            (_, Encoding::None) => {
                // The header must now say quoted-printable: drop any old
                // Content-Transfer-Encoding field and add ours at the end of the header.
                let mut head_edit = head.to_vec();
                if let Some(h) = part
                    .headers
                    .iter()
                    .find(|h| h.name == HeaderName::ContentTransferEncoding)
                {
                    let from = to_usize(h.offset_field).saturating_sub(header_start);
                    let to = field_end(head, from);
                    if to > from {
                        head_edit.drain(from..to);
                    }
                }
                let insert_at = header_end(&head_edit);
                let mut added = Vec::new();
                if index == 0 && !is_mime {
                    added.extend_from_slice(b"MIME-Version: 1.0\r\n");
                }
                added.extend_from_slice(b"Content-Transfer-Encoding: quoted-printable\r\n");
                head_edit.splice(insert_at..insert_at, added);
                if longest_line(&head_edit) > max {
                    head_edit = fold_headers(&head_edit, max);
                }
                // Replace a header edit made above for the same range.
                edits.retain(|e| e.start != header_start || e.end != body_start);
                edits.push(Edit {
                    start: header_start,
                    end: body_start,
                    with: head_edit,
                });
                encode_qp(body)
            }
        };
        edits.push(Edit {
            start: body_start,
            end: body_end,
            with,
        });
    }
    apply(message, edits)
}

/// A message mail-parser cannot read: fold the header, re-encode nothing.
fn fit_unparsed(message: &[u8], max: usize) -> Vec<u8> {
    let split = memchr::memmem::find(message, b"\r\n\r\n").map_or(message.len(), |i| i + 2);
    let (head, body) = message.split_at(split);
    let mut out = fold_headers(head, max);
    out.extend_from_slice(body);
    out
}

/// Applies non-overlapping edits (an edit inside an earlier one is dropped: a nested part
/// inside a re-encoded `message/rfc822` was already handled by the recursion).
fn apply(message: &[u8], mut edits: Vec<Edit>) -> Vec<u8> {
    edits.sort_by_key(|e| (e.start, std::cmp::Reverse(e.end)));
    let mut out = Vec::with_capacity(message.len() + message.len() / 20);
    let mut at = 0;
    for edit in edits {
        if edit.start < at {
            continue;
        }
        out.extend_from_slice(message.get(at..edit.start).unwrap_or_default());
        out.extend_from_slice(&edit.with);
        at = edit.end;
    }
    out.extend_from_slice(message.get(at..).unwrap_or_default());
    out
}

fn to_usize(offset: u32) -> usize {
    usize::try_from(offset).unwrap_or(usize::MAX)
}

/// The end of the header field starting at `from` (after its last continuation line's LF).
fn field_end(head: &[u8], from: usize) -> usize {
    let mut at = from;
    loop {
        let Some(rest) = head.get(at..) else {
            return head.len();
        };
        let Some(nl) = memchr::memchr(b'\n', rest) else {
            return head.len();
        };
        at += nl + 1;
        match head.get(at) {
            Some(b' ' | b'\t') => {}
            _ => return at,
        }
    }
}

/// Where a new field goes in a header block: before the blank line that ends it.
fn header_end(head: &[u8]) -> usize {
    if head.ends_with(b"\r\n\r\n") {
        head.len() - 2
    } else if head.ends_with(b"\n\n") {
        head.len() - 1
    } else if head == b"\r\n" || head == b"\n" {
        0
    } else {
        head.len()
    }
}

/// Folds header lines longer than `max` at the last blank before the limit.
fn fold_headers(head: &[u8], max: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(head.len() + 16);
    for line in head.split_inclusive(|&b| b == b'\n') {
        let (text, end) = match line {
            [text @ .., b'\r', b'\n'] => (text, &b"\r\n"[..]),
            [text @ .., b'\n'] => (text, &b"\n"[..]),
            text => (text, &b""[..]),
        };
        let mut rest = text;
        while rest.len() > max {
            // A blank past the first octet (a fold must leave text on both sides).
            let window = rest.get(..max).unwrap_or(rest);
            let Some(cut) = window
                .iter()
                .rposition(|&b| b == b' ' || b == b'\t')
                .filter(|&i| i > 0)
            else {
                break;
            };
            let (first, second) = rest.split_at(cut);
            out.extend_from_slice(first);
            out.extend_from_slice(b"\r\n");
            rest = second;
        }
        out.extend_from_slice(rest);
        out.extend_from_slice(end);
    }
    out
}

/// Quoted-printable (RFC 2045 6.7): CR LF stays a hard line break, every other octet that is
/// not printable ASCII (and `=`, and a blank before a line end) is `=XX`, and lines get soft
/// breaks before 76 characters.
fn encode_qp(body: &[u8]) -> Vec<u8> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = Vec::with_capacity(body.len() + body.len() / 3);
    let mut col = 0usize;
    let mut i = 0usize;
    while let Some(&b) = body.get(i) {
        if b == b'\r' && body.get(i + 1) == Some(&b'\n') {
            out.extend_from_slice(b"\r\n");
            col = 0;
            i += 2;
            continue;
        }
        let at_line_end = matches!(
            (body.get(i + 1), body.get(i + 2)),
            (None, _) | (Some(b'\r'), Some(b'\n'))
        );
        let literal =
            matches!(b, 33..=60 | 62..=126) || ((b == b' ' || b == b'\t') && !at_line_end);
        let width = if literal { 1 } else { 3 };
        if col + width > ENCODED_LINE - 1 {
            out.extend_from_slice(b"=\r\n");
            col = 0;
        }
        if literal {
            out.push(b);
        } else {
            out.push(b'=');
            out.push(HEX.get(usize::from(b >> 4)).copied().unwrap_or(b'0'));
            out.push(HEX.get(usize::from(b & 15)).copied().unwrap_or(b'0'));
        }
        col += width;
        i += 1;
    }
    out
}

/// Base64 text with its line breaks moved: the same characters, 76 to a line.
fn wrap_base64(body: &[u8]) -> Vec<u8> {
    let chars: Vec<u8> = body
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let mut out = Vec::with_capacity(chars.len() + chars.len() / ENCODED_LINE * 2 + 2);
    for line in chars.chunks(ENCODED_LINE) {
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Quoted-printable text with soft line breaks added where a line is too long, never inside
/// an `=XX` escape.
fn soft_break_qp(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / 30);
    for line in body.split_inclusive(|&b| b == b'\n') {
        let (text, end) = match line {
            [text @ .., b'\r', b'\n'] => (text, &b"\r\n"[..]),
            [text @ .., b'\n'] => (text, &b"\n"[..]),
            text => (text, &b""[..]),
        };
        let mut col = 0usize;
        let mut i = 0usize;
        while let Some(&b) = text.get(i) {
            let width = if b == b'=' { 3.min(text.len() - i) } else { 1 };
            if col + width > ENCODED_LINE - 1 {
                out.extend_from_slice(b"=\r\n");
                col = 0;
            }
            out.extend_from_slice(text.get(i..i + width).unwrap_or_default());
            col += width;
            i += width;
        }
        out.extend_from_slice(end);
    }
    out
}

#[cfg(test)]
mod tests {
    use mail_parser::{MessageParser, MimeHeaders};

    use super::*;

    /// What a MIME reader decodes from each leaf part, in order.
    fn decoded(message: &[u8]) -> Vec<Vec<u8>> {
        let parsed = MessageParser::default().parse(message).unwrap();
        parsed
            .parts
            .iter()
            .filter_map(|p| match &p.body {
                PartType::Text(t) | PartType::Html(t) => Some(t.as_bytes().to_vec()),
                PartType::Binary(b) | PartType::InlineBinary(b) => Some(b.to_vec()),
                _ => None,
            })
            .collect()
    }

    fn assert_fits(fitted: &[u8]) {
        for line in fitted.split(|&b| b == b'\n') {
            assert!(line.len() <= SMTP_MAX_LINE + 1, "{} octets", line.len());
        }
    }

    #[test]
    fn short_lines_are_borrowed() {
        let m = b"Subject: x\r\n\r\nhello\r\n";
        assert!(matches!(fit_line_length(m, 998), Cow::Borrowed(_)));
        // Found by fuzzing: a last line without LF but with a CR is as long as its text.
        let mut m = b"MIME-Version: 1.0\r\n".to_vec();
        m.extend_from_slice(&[b'x'; 78]);
        m.push(b'\r');
        assert!(matches!(fit_line_length(&m, 78), Cow::Borrowed(_)));
        assert_eq!(longest_line(&m), 78);
    }

    #[test]
    fn plain_body_becomes_quoted_printable_with_the_same_text() {
        for n in [2_000, 50_000] {
            let line: String = "café = ok\t".repeat(n / 10 + 1).chars().take(n).collect();
            let m = format!(
                "Subject: long\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{line}\r\nend \r\n"
            );
            let fitted = fit_line_length(m.as_bytes(), 998);
            assert_fits(&fitted);
            let text = String::from_utf8_lossy(&fitted);
            assert!(text.contains("MIME-Version: 1.0\r\n"), "{text:.300}");
            assert!(text.contains("Content-Transfer-Encoding: quoted-printable\r\n"));
            assert_eq!(decoded(&fitted), decoded(m.as_bytes()), "n={n}");
            assert_eq!(
                decoded(&fitted)[0],
                format!("{line}\r\nend \r\n").into_bytes()
            );
        }
    }

    #[test]
    fn an_8bit_part_of_a_multipart_is_re_encoded_alone() {
        let long = "<p>".to_owned() + &"x".repeat(5000);
        let m = format!(
            "MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"b\"\r\n\r\n\
             --b\r\nContent-Type: text/plain\r\n\r\nshort\r\n\
             --b\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{long}\r\n\
             --b--\r\n"
        );
        let fitted = fit_line_length(m.as_bytes(), 998);
        assert_fits(&fitted);
        let text = String::from_utf8_lossy(&fitted);
        assert!(!text.contains("8bit"), "{text:.400}");
        assert_eq!(text.matches("quoted-printable").count(), 1);
        assert_eq!(text.matches("MIME-Version").count(), 1);
        assert!(text.contains("--b\r\nContent-Type: text/plain\r\n\r\nshort\r\n"));
        assert_eq!(decoded(&fitted), decoded(m.as_bytes()));
        let parsed = MessageParser::default().parse(&fitted[..]).unwrap();
        assert_eq!(
            parsed.parts[2].content_type().unwrap().subtype(),
            Some("html")
        );
    }

    #[test]
    fn unwrapped_base64_is_wrapped() {
        let data: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
        let b64 = base64(&data);
        let m = format!(
            "MIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n{b64}\r\n"
        );
        let fitted = fit_line_length(m.as_bytes(), 998);
        assert_fits(&fitted);
        assert_eq!(decoded(&fitted), vec![data]);
    }

    #[test]
    fn long_quoted_printable_lines_get_soft_breaks() {
        let qp = "caf=C3=A9 ".repeat(300);
        let m = format!(
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n{qp}x\r\n"
        );
        let fitted = fit_line_length(m.as_bytes(), 998);
        assert_fits(&fitted);
        assert_eq!(decoded(&fitted), decoded(m.as_bytes()));
    }

    #[test]
    fn long_headers_are_folded_at_a_blank() {
        let to = (0..200)
            .map(|i| format!("u{i}@example.test"))
            .collect::<Vec<_>>()
            .join(", ");
        let m = format!("To: {to}\r\nSubject: s\r\n\r\nbody\r\n");
        let fitted = fit_line_length(m.as_bytes(), 998);
        assert_fits(&fitted);
        let parsed = MessageParser::default().parse(&fitted[..]).unwrap();
        assert_eq!(parsed.to().unwrap().iter().count(), 200);
        assert!(fitted.ends_with(b"\r\n\r\nbody\r\n"));
    }

    #[test]
    fn qp_encoding_rules() {
        let cases: [(&[u8], &[u8]); 5] = [
            (b"a=b\r\n", b"a=3Db\r\n"),
            (b"end \r\nx\t", b"end=20\r\nx=09"),
            (b"\xc3\xa9", b"=C3=A9"),
            (b"bare\rcr\nlf", b"bare=0Dcr=0Alf"),
            (b"", b""),
        ];
        for (input, expected) in cases {
            assert_eq!(encode_qp(input), expected, "{input:?}");
        }
        let long = encode_qp(&[b'x'; 200]);
        assert!(long.split(|&b| b == b'\n').all(|l| l.len() <= 77));
    }

    fn base64(data: &[u8]) -> String {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in data.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |acc, (i, &b)| acc | u32::from(b) << (16 - 8 * i));
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}

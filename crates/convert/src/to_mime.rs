//! Legacy → MIME: one decoded legacy message to one RFC 5322 message, byte for byte the same
//! every time (no clock, no randomness: the Message-ID and the MIME boundaries derive from the
//! message itself).

use std::borrow::Cow;

use ccgate_ccmail::{
    Header, ItemBody, ItemKind, LegacyDateTime, Message, SliceReader, parse_address,
};
use ccgate_core::EmailAddress;
use mail_builder::headers::address::Address;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::raw::Raw;
use mail_builder::headers::text::Text;
use mail_builder::mime::{BodyPart, MimePart};

use crate::date::{legacy_to_unix, rfc5322_date};
use crate::message_id::{crlf, legacy_message_id};
use crate::{AddressMap, ConvertError, ConvertOptions, Mailbox, media_type};

/// How deep forwarded legacy messages inside forwarded messages are converted; deeper ones are
/// embedded as text.
pub const MAX_NESTING: usize = 4;

/// What the caller knows about a legacy message besides its contents.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LegacyContext {
    /// The date to write when the message has no usable `Date:` (e.g. when the file was picked
    /// up, in the post office's offset). Without either, the MIME message has no `Date:` and a
    /// note says so.
    pub received: Option<LegacyDateTime>,
}

/// A legacy message converted to RFC 5322.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MimeMessage {
    /// The message, CR LF line ends, 7-bit unless a forwarded item forced 8-bit.
    pub bytes: Vec<u8>,
    /// Its `Message-ID:` with angle brackets, derived from the legacy message.
    pub message_id: String,
    /// The mapped `From:`: the envelope sender.
    pub sender: EmailAddress,
    /// Every mapped `To:`, `Cc:` and `Bcc:` recipient in order, without duplicates: the
    /// envelope recipients (`Bcc:` recipients appear only here, never in the headers).
    pub recipients: Vec<EmailAddress>,
    /// The message date, seconds since the epoch, if it has one.
    pub date: Option<i64>,
    /// What was changed or left out, one sentence each.
    pub notes: Vec<String>,
}

impl MimeMessage {
    /// The `From ` line that starts this message in an mbox file (no line end):
    /// `From sender asctime-date` in UTC.
    pub fn mbox_from_line(&self) -> String {
        format!(
            "From {} {}",
            self.sender,
            crate::date::asctime(self.date.unwrap_or(0))
        )
    }
}

/// Converts one legacy message to RFC 5322.
///
/// See the crate documentation for the mapping tables. The output depends only on the
/// arguments.
///
/// # Errors
/// [`ConvertError::NoSender`] without `From:`, [`ConvertError::BadSender`] when the sender does
/// not parse or has no SMTP form. Recipients without an SMTP form are left out with a note.
pub fn legacy_to_mime(
    msg: &Message,
    ctx: &LegacyContext,
    opts: &ConvertOptions,
    map: &dyn AddressMap,
) -> Result<MimeMessage, ConvertError> {
    let mut notes = Vec::new();
    let built = build(msg, ctx, opts, map, 0, &mut notes)?;
    Ok(MimeMessage {
        bytes: built.bytes,
        message_id: built.message_id,
        sender: built.sender,
        recipients: built.recipients,
        date: built.date,
        notes,
    })
}

struct Built {
    bytes: Vec<u8>,
    message_id: String,
    sender: EmailAddress,
    recipients: Vec<EmailAddress>,
    date: Option<i64>,
}

/// A body part before assembly: runs of text items become one text part.
enum Part<'x> {
    Text { title: String, text: String },
    Other(MimePart<'x>),
}

fn build(
    msg: &Message,
    ctx: &LegacyContext,
    opts: &ConvertOptions,
    map: &dyn AddressMap,
    depth: usize,
    notes: &mut Vec<String>,
) -> Result<Built, ConvertError> {
    let message_id = legacy_message_id(msg, &opts.legacy_domain);
    let hash = message_id.get(1..17).unwrap_or("0").to_owned();

    // Sender.
    let from_text = msg.from().ok_or(ConvertError::NoSender)?;
    let from_parsed = parse_address(from_text).map_err(|e| ConvertError::BadSender {
        address: from_text.to_owned(),
        reason: e.to_string(),
    })?;
    let from = map
        .to_smtp(&from_parsed)
        .ok_or_else(|| ConvertError::BadSender {
            address: from_text.to_owned(),
            reason: "no SMTP form in the address map".to_owned(),
        })?;

    // Recipients.
    let mut to = Vec::new();
    let mut cc = Vec::new();
    let mut recipients: Vec<EmailAddress> = Vec::new();
    for header in &msg.headers {
        let (list, text) = match header {
            Header::To(a) => (Some(&mut to), a),
            Header::Cc(a) => (Some(&mut cc), a),
            Header::Bcc(a) => (None, a),
            _ => continue,
        };
        let mailbox = match parse_address(text) {
            Ok(parsed) => map.to_smtp(&parsed),
            Err(e) => {
                notes.push(format!("{}: {text:?} left out: {e}", header.keyword()));
                continue;
            }
        };
        let Some(mailbox) = mailbox else {
            notes.push(format!(
                "{}: {text:?} left out: no SMTP form in the address map",
                header.keyword()
            ));
            continue;
        };
        if !recipients.contains(&mailbox.address) {
            recipients.push(mailbox.address.clone());
        }
        if let Some(list) = list {
            list.push(mailbox);
        }
    }

    // Date.
    let date = msg.date().or_else(|| {
        if msg
            .headers
            .iter()
            .any(|h| h.keyword().eq_ignore_ascii_case("date"))
        {
            notes.push("Date: does not parse; the pickup date is used".to_owned());
        }
        ctx.received
    });
    if date.is_none() {
        notes.push("no Date: and no pickup date: the message has no Date:".to_owned());
    }

    let mut out = Vec::with_capacity(1024);
    if let Some(date) = &date {
        write_header(
            &mut out,
            "Date",
            &Raw::new(rfc5322_date(date, opts.utc_offset_minutes)),
        );
    }
    write_header(&mut out, "From", &address(&from));
    if !to.is_empty() {
        write_header(&mut out, "To", &address_list(&to));
    }
    if !cc.is_empty() {
        write_header(&mut out, "Cc", &address_list(&cc));
    }
    if let Some(subject) = msg.subject() {
        write_header(&mut out, "Subject", &Text::new(one_line(subject)));
    }
    write_header(&mut out, "Message-ID", &Raw::new(message_id.as_str()));
    for header in &msg.headers {
        if let Header::Other { keyword, value } = header {
            other_header(&mut out, keyword, value, &from, notes);
        }
    }
    out.extend_from_slice(b"MIME-Version: 1.0\r\n");

    // Body.
    let mut parts: Vec<Part<'_>> = Vec::new();
    for (item_idx, item) in msg.items.iter().enumerate() {
        match &item.kind {
            ItemKind::Text => {
                let text = match &item.body {
                    ItemBody::Text(t) => crlf(t),
                    ItemBody::Bytes(b) => crlf(&opts.codepage.decode(b)),
                };
                let title = item.title.trim().to_owned();
                if let Some(Part::Text {
                    title: last_title,
                    text: last_text,
                }) = parts.last_mut()
                    && *last_title == title
                {
                    last_text.push_str(&text);
                } else {
                    parts.push(Part::Text { title, text });
                }
            }
            ItemKind::Message => {
                let part = forwarded(item, ctx, opts, map, depth, notes);
                parts.push(Part::Other(part));
            }
            kind => {
                let bytes = item_bytes(&item.body, opts);
                let title = item.title.trim();
                let name = if title.is_empty() {
                    format!("ATT{:05}.DAT", item_idx + 1)
                } else {
                    title.to_owned()
                };
                let media = if *kind == ItemKind::File {
                    media_type::for_file_name(&name)
                } else {
                    media_type::OCTET_STREAM
                };
                let mut disposition =
                    ContentType::new("attachment").attribute("filename", name.clone());
                if let Some(stamp) = &item.stamp {
                    disposition = disposition.attribute(
                        "modification-date",
                        rfc5322_date(stamp, opts.utc_offset_minutes),
                    );
                }
                let mut part = MimePart::new(
                    ContentType::new(media).attribute("name", name),
                    BodyPart::Binary(Cow::Owned(base64(&bytes))),
                )
                .header("Content-Disposition", disposition);
                if *kind != ItemKind::File {
                    part = part.header("X-Legacy-Item", Raw::new(kind.as_str().to_owned()));
                }
                parts.push(Part::Other(part.transfer_encoding("base64")));
            }
        }
    }
    // Empty text runs carry nothing; the body is one empty text part when nothing else is left.
    parts.retain(|p| !matches!(p, Part::Text { text, .. } if text.is_empty()));
    let mut mime_parts: Vec<MimePart<'_>> = parts.into_iter().map(into_mime).collect();
    let root = if mime_parts.len() == 1 {
        mime_parts
            .pop()
            .unwrap_or_else(|| text_part(String::new(), ""))
    } else if mime_parts.is_empty() {
        text_part(String::new(), "")
    } else {
        MimePart::new(
            ContentType::new("multipart/mixed").attribute("boundary", format!("=_ccgate_{hash}")),
            BodyPart::Multipart(mime_parts),
        )
    };
    root.write_part(&mut out);

    Ok(Built {
        bytes: out,
        message_id,
        sender: from.address,
        recipients,
        date: date.map(|d| legacy_to_unix(&d, opts.utc_offset_minutes)),
    })
}

fn into_mime<'x>(part: Part<'x>) -> MimePart<'x> {
    match part {
        Part::Text { title, text } => text_part(text, &title),
        Part::Other(part) => part,
    }
}

fn text_part<'x>(text: String, title: &str) -> MimePart<'x> {
    let part = MimePart::new(
        ContentType::new("text/plain").attribute("charset", "utf-8"),
        BodyPart::Text(Cow::Owned(text)),
    );
    if title.is_empty() {
        part
    } else {
        part.header("Content-Description", Text::new(title.to_owned()))
    }
}

/// A non-text item's data as bytes (text held by mistake is encoded in the code page, as the
/// writer would).
fn item_bytes(body: &ItemBody, opts: &ConvertOptions) -> Vec<u8> {
    match body {
        ItemBody::Bytes(b) => b.clone(),
        ItemBody::Text(t) => opts.codepage.encode(t).0,
    }
}

/// A forwarded (`Message`) item as a message/rfc822 part.
fn forwarded<'x>(
    item: &ccgate_ccmail::Item,
    ctx: &LegacyContext,
    opts: &ConvertOptions,
    map: &dyn AddressMap,
    depth: usize,
    notes: &mut Vec<String>,
) -> MimePart<'x> {
    let bytes = item_bytes(&item.body, opts);
    let title = one_line(item.title.trim());
    let embedded = forwarded_bytes(
        &bytes,
        &title,
        item.stamp.as_ref(),
        ctx,
        opts,
        map,
        depth,
        notes,
    );
    let encoding = if embedded.is_ascii() { "7bit" } else { "8bit" };
    let mut part = MimePart::new(
        ContentType::new("message/rfc822"),
        BodyPart::Binary(Cow::Owned(embedded)),
    );
    if !title.is_empty() {
        part = part.header("Content-Description", Text::new(title));
    }
    part.transfer_encoding(encoding)
}

#[allow(clippy::too_many_arguments)]
fn forwarded_bytes(
    bytes: &[u8],
    title: &str,
    stamp: Option<&LegacyDateTime>,
    ctx: &LegacyContext,
    opts: &ConvertOptions,
    map: &dyn AddressMap,
    depth: usize,
    notes: &mut Vec<String>,
) -> Vec<u8> {
    // A legacy message inside: convert it the same way.
    let starts_legacy = bytes
        .split(|b| *b == b'\n')
        .find(|l| !l.iter().all(u8::is_ascii_whitespace))
        .is_some_and(|l| l.trim_ascii().eq_ignore_ascii_case(b"message:"));
    if starts_legacy && depth + 1 < MAX_NESTING {
        let mut reader = SliceReader::new(bytes);
        if let Some(Ok(raw)) = reader.next() {
            let (inner, _) = raw.decode(&opts.read_options());
            let mut inner_notes = Vec::new();
            match build(&inner, ctx, opts, map, depth + 1, &mut inner_notes) {
                Ok(built) => {
                    notes.extend(
                        inner_notes
                            .into_iter()
                            .map(|n| format!("forwarded message {title:?}: {n}")),
                    );
                    return built.bytes;
                }
                Err(e) => notes.push(format!("forwarded message {title:?} embedded as text: {e}")),
            }
        }
    }
    let text = crlf(&opts.codepage.decode(bytes));
    if let Some((headers, body)) = split_rfc822(&text) {
        let is_mime = headers.iter().any(|(name, _)| {
            name.eq_ignore_ascii_case("mime-version") || name.eq_ignore_ascii_case("content-type")
        });
        if is_mime && bytes.is_ascii() {
            return text.into_bytes();
        }
        let mut out = Vec::with_capacity(text.len() + 256);
        for (name, value) in &headers {
            if name.eq_ignore_ascii_case("mime-version")
                || name.to_ascii_lowercase().starts_with("content-")
            {
                continue;
            }
            if value.is_ascii() && !name.eq_ignore_ascii_case("subject") {
                write_header(&mut out, name, &Raw::new(value.as_str()));
            } else {
                write_header(&mut out, name, &Text::new(value.as_str()));
            }
        }
        out.extend_from_slice(b"MIME-Version: 1.0\r\n");
        text_part(body.to_owned(), "").write_part(&mut out);
        return out;
    }
    // Plain text: a minimal message around it.
    let mut out = Vec::with_capacity(text.len() + 256);
    if let Some(stamp) = stamp {
        write_header(
            &mut out,
            "Date",
            &Raw::new(rfc5322_date(stamp, opts.utc_offset_minutes)),
        );
    }
    if !title.is_empty() {
        write_header(&mut out, "Subject", &Text::new(title));
    }
    out.extend_from_slice(b"MIME-Version: 1.0\r\n");
    text_part(text, "").write_part(&mut out);
    out
}

/// Splits text that starts with an RFC 822 header block (`Name: value` lines, folded lines,
/// naming at least one of From, To, Date, Subject, then a blank line) into headers and body.
pub(crate) fn split_rfc822(text: &str) -> Option<(Vec<(String, String)>, &str)> {
    let (head, body) = match text.find("\r\n\r\n") {
        Some(i) => (text.get(..i)?, text.get(i + 4..)?),
        None => (text.strip_suffix("\r\n").unwrap_or(text), ""),
    };
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            let (_, value) = headers.last_mut()?;
            value.push(' ');
            value.push_str(line.trim());
            continue;
        }
        let (name, value) = line.split_once(':')?;
        let valid = !name.is_empty()
            && name.len() <= 76
            && name.starts_with(|c: char| c.is_ascii_alphabetic())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !valid {
            return None;
        }
        headers.push((name.to_owned(), value.trim().to_owned()));
    }
    let known = headers.iter().any(|(name, _)| {
        ["from", "to", "date", "subject"]
            .iter()
            .any(|k| name.eq_ignore_ascii_case(k))
    });
    known.then_some((headers, body))
}

/// Maps one `Header::Other` to MIME: priority and receipt keywords by the tables in the crate
/// documentation, anything else as `X-Legacy-<Keyword>`.
fn other_header(
    out: &mut Vec<u8>,
    keyword: &str,
    value: &str,
    from: &Mailbox,
    notes: &mut Vec<String>,
) {
    let value_lc = value.trim().to_ascii_lowercase();
    if keyword.eq_ignore_ascii_case("priority") {
        let mapped = match value_lc.as_str() {
            "urgent" | "highest" | "1" => Some(("high", "1 (Highest)")),
            "high" | "2" => Some(("high", "2 (High)")),
            "normal" | "3" => Some(("normal", "")),
            "low" | "lowest" | "4" | "5" => Some(("low", "5 (Lowest)")),
            _ => None,
        };
        match mapped {
            Some(("normal", _)) => {}
            Some((importance, x_priority)) => {
                write_header(out, "Importance", &Raw::new(importance));
                write_header(out, "X-Priority", &Raw::new(x_priority));
            }
            None => write_header(out, "X-Legacy-Priority", &Text::new(one_line(value))),
        }
        return;
    }
    let kw_lc = keyword.to_ascii_lowercase();
    let is_receipt = kw_lc == "rrt" || kw_lc.starts_with("receipt") || kw_lc == "return-receipt";
    if is_receipt {
        if matches!(
            value_lc.as_str(),
            "" | "no" | "n" | "0" | "false" | "off" | "none"
        ) {
            return;
        }
        write_header(out, "Disposition-Notification-To", &address(from));
        return;
    }
    let name: String = keyword
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if name.is_empty() || name.len() > 64 {
        notes.push(format!(
            "header {keyword:?} left out: not a usable field name"
        ));
        return;
    }
    write_header(
        out,
        &format!("X-Legacy-{name}"),
        &Text::new(one_line(value)),
    );
}

fn address<'x>(mailbox: &Mailbox) -> Address<'x> {
    Address::new_address(mailbox.display.clone(), mailbox.address.to_string())
}

fn address_list<'x>(mailboxes: &[Mailbox]) -> Address<'x> {
    Address::new_list(mailboxes.iter().map(address).collect())
}

fn write_header(out: &mut Vec<u8>, name: &str, value: &impl mail_builder::headers::Header) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    value.write_header(out, name.len() + 2);
}

/// Line breaks and other control characters in a header value become spaces.
fn one_line(value: &str) -> String {
    value
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Base64 in lines of 76 characters separated by CR LF (RFC 2045 §6.8), no final line end.
pub(crate) fn base64(bytes: &[u8]) -> Vec<u8> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let sym = |v: u32| ALPHABET.get((v & 63) as usize).copied().unwrap_or(b'=');
    let mut out = Vec::with_capacity(bytes.len() * 4 / 3 + bytes.len() / 38 + 4);
    for (idx, chunk) in bytes.chunks(3).enumerate() {
        if idx > 0 && idx % 19 == 0 {
            out.extend_from_slice(b"\r\n");
        }
        let b0 = u32::from(chunk.first().copied().unwrap_or(0));
        let b1 = u32::from(chunk.get(1).copied().unwrap_or(0));
        let b2 = u32::from(chunk.get(2).copied().unwrap_or(0));
        let n = b0 << 16 | b1 << 8 | b2;
        out.push(sym(n >> 18));
        out.push(sym(n >> 12));
        out.push(if chunk.len() > 1 { sym(n >> 6) } else { b'=' });
        out.push(if chunk.len() > 2 { sym(n) } else { b'=' });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_lines() {
        assert_eq!(base64(b""), b"");
        assert_eq!(base64(b"f"), b"Zg==");
        assert_eq!(base64(b"fo"), b"Zm8=");
        assert_eq!(base64(b"foobar"), b"Zm9vYmFy");
        let long = base64(&[0u8; 120]);
        let text = String::from_utf8(long).unwrap();
        let lines: Vec<&str> = text.split("\r\n").collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0].len(), 76);
        assert_eq!(
            mail_parser::decoders::base64::base64_decode(text.as_bytes()).unwrap(),
            vec![0u8; 120]
        );
    }

    #[test]
    fn rfc822_header_blocks() {
        let (headers, body) =
            split_rfc822("From: a@b\r\nSubject: x\r\n  y\r\n\r\nbody\r\n").unwrap();
        assert_eq!(
            headers,
            vec![
                ("From".to_owned(), "a@b".to_owned()),
                ("Subject".to_owned(), "x y".to_owned())
            ]
        );
        assert_eq!(body, "body\r\n");
        assert!(split_rfc822("Just text\r\n\r\nmore").is_none());
        assert!(split_rfc822("X-Only: header\r\n\r\nbody").is_none());
        assert!(split_rfc822("Action item: call Bob\r\n").is_none());
    }
}

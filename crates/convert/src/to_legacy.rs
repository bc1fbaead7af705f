//! MIME → legacy: any bytes to one legacy message that the strict writer accepts.
//!
//! Never fails: odd MIME is read as well as mail-parser can, and when parts of it could not be
//! decoded (or nothing could) the original bytes ride along as a file item `ORIGINAL.EML`.

use ccgate_ccmail::{
    Header, Item, ItemBody, ItemKind, Message, RenderOptions, parse_address, write_messages,
};
use ccgate_core::EmailAddress;
use mail_parser::decoders::base64::base64_decode;
use mail_parser::decoders::charsets::map::charset_decoder;
use mail_parser::decoders::quoted_printable::quoted_printable_decode;
use mail_parser::{
    Addr, Address, Encoding, HeaderName, HeaderValue, MessagePart, MimeHeaders, PartType,
};

use crate::date::{DateProblem, mime_to_legacy_date};
use crate::message_id::{content_identity, crlf};
use crate::{AddressMap, ConvertOptions, html, media_type};

/// The file item that carries the original bytes when the MIME could not be fully decoded.
pub const ORIGINAL_NAME: &str = "ORIGINAL.EML";
/// Longest subject kept, in characters (the header buffer is 4,096 bytes, KB Q166499).
pub const MAX_SUBJECT_CHARS: usize = 512;
/// Longest forwarded-item title, in characters (the old connector cut them to 30, KB Q184991).
pub const MAX_FORWARD_TITLE_CHARS: usize = 30;
/// Most `X-Legacy-*` headers carried back, and their longest value in characters.
const MAX_OTHER_HEADERS: usize = 8;
const MAX_OTHER_VALUE_CHARS: usize = 200;

/// An RFC 5322 message converted to a legacy message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversion {
    /// The legacy message; [`write_messages`] with the options' writer settings accepts it.
    pub message: Message,
    /// The input's `Message-ID:` with angle brackets, if it had one.
    pub message_id: Option<String>,
    /// What was changed, guessed or left out, one sentence each.
    pub notes: Vec<String>,
}

impl Conversion {
    /// The identity of the input for replay dedupe: its Message-ID, else a content hash of the
    /// raw bytes (`sha256:...`).
    pub fn identity(&self, raw: &[u8]) -> String {
        self.message_id
            .clone()
            .unwrap_or_else(|| content_identity(raw))
    }
}

/// Converts an RFC 5322 message (any bytes) to a legacy message. Never fails; see the crate
/// documentation for the mapping tables and what happens to odd input.
pub fn mime_to_legacy(raw: &[u8], opts: &ConvertOptions, map: &dyn AddressMap) -> Conversion {
    mime_to_legacy_from(raw, None, opts, map)
}

/// As [`mime_to_legacy`], for a message whose envelope sender is known (mail received by
/// SMTP): when the message has no usable `From:` or `Sender:`, the legacy `From:` is the
/// envelope sender (`MAIL FROM`), before `Reply-To:` and `Return-Path:` are tried. `None`
/// (the null sender `<>`) adds nothing: a message without any sender gets a placeholder.
pub fn mime_to_legacy_from(
    raw: &[u8],
    envelope_sender: Option<&EmailAddress>,
    opts: &ConvertOptions,
    map: &dyn AddressMap,
) -> Conversion {
    let mut conv = Converter {
        opts,
        map,
        envelope_sender,
        notes: Vec::new(),
        unnamed: 0,
        names: Vec::new(),
    };
    let parsed = crate::mime::parse(raw);
    let parsed = match parsed {
        Ok(Some(parsed)) if !parsed.parts.is_empty() => parsed,
        Ok(_) => {
            conv.notes
                .push("the input is not a readable RFC 5322 message".to_owned());
            let from = conv.envelope_from();
            return fallback(raw, None, from, opts, conv.notes);
        }
        Err(_) => {
            conv.notes
                .push("the MIME parser failed on the input".to_owned());
            let from = conv.envelope_from();
            return fallback(raw, None, from, opts, conv.notes);
        }
    };
    let message_id = parsed.message_id().map(|id| format!("<{id}>"));
    let mut headers = conv.headers(&parsed);
    let mut items = Vec::new();
    let mut problem = false;
    conv.items(&parsed, &mut items, &mut problem, 0);
    if problem {
        conv.notes.push(format!(
            "parts of the message could not be decoded: the original is attached as {ORIGINAL_NAME}"
        ));
        items.push(original_item(raw));
    }
    let mut notes = conv.notes;

    // The guarantee: what we hand back, the writer accepts. Shed what can be shed until it does.
    let wopts = opts.write_options();
    let mut message = Message {
        headers: headers.clone(),
        items,
    };
    if let Err(e) = write_messages(&message, &wopts, &mut Vec::new()) {
        notes.push(format!(
            "the writer refused the message ({e}): extra headers left out"
        ));
        headers.retain(|h| !matches!(h, Header::Other { .. }));
        message.headers = headers;
        if let Err(e) = write_messages(&message, &wopts, &mut Vec::new()) {
            notes.push(format!("the writer refused the message ({e})"));
            let from = message.headers.iter().find_map(|h| match h {
                Header::From(from) => Some(from.clone()),
                _ => None,
            });
            return fallback(raw, message_id, from, opts, notes);
        }
    }
    Conversion {
        message,
        message_id,
        notes,
    }
}

/// The last resort: a message that says the original could not be converted and carries it,
/// from `from` when its sender is known.
fn fallback(
    raw: &[u8],
    message_id: Option<String>,
    from: Option<String>,
    opts: &ConvertOptions,
    mut notes: Vec<String>,
) -> Conversion {
    notes.push(format!(
        "the message could not be converted: the original is attached as {ORIGINAL_NAME}"
    ));
    let message = Message {
        headers: vec![
            Header::From(from.unwrap_or_else(|| unknown_sender(opts))),
            Header::To(placeholder("Undisclosed recipients", opts)),
            Header::Subject("Message that could not be converted".to_owned()),
        ],
        items: vec![
            Item {
                kind: ItemKind::Text,
                title: String::new(),
                stamp: None,
                body: ItemBody::Text(format!(
                    "The gateway could not convert this message; the original is attached as {ORIGINAL_NAME}.\r\n"
                )),
            },
            original_item(raw),
        ],
    };
    Conversion {
        message,
        message_id,
        notes,
    }
}

fn original_item(raw: &[u8]) -> Item {
    Item {
        kind: ItemKind::File,
        title: ORIGINAL_NAME.to_owned(),
        stamp: None,
        body: ItemBody::Bytes(raw.to_vec()),
    }
}

/// `"Text" at GATEWAYPO`: a display-only legacy address (KB Q179677 quoting).
fn placeholder(text: &str, opts: &ConvertOptions) -> String {
    format!("\"{text}\" at {}", opts.gateway_po)
}

/// The legacy `From:` written for a message without a sender the legacy side can hold
/// (none at all, or only addresses it cannot write, such as an address literal for `ie8`).
pub fn unknown_sender(opts: &ConvertOptions) -> String {
    placeholder("Unknown sender", opts)
}

struct Converter<'a> {
    opts: &'a ConvertOptions,
    map: &'a dyn AddressMap,
    /// The SMTP envelope sender, if known and not null.
    envelope_sender: Option<&'a EmailAddress>,
    notes: Vec<String>,
    /// Unnamed attachments so far (for `ATTnnnnn.EXT`).
    unnamed: usize,
    /// File names used so far, upper case (for 8.3 uniqueness).
    names: Vec<String>,
}

type ParsedMessage<'x> = mail_parser::Message<'x>;

impl Converter<'_> {
    fn headers(&mut self, parsed: &ParsedMessage<'_>) -> Vec<Header> {
        let mut headers = Vec::new();
        let root = &parsed.parts;

        // Sender: From, else Sender, the envelope sender (when known), Reply-To, Return-Path.
        let mut from = self.first_address(parsed, &[HeaderName::From, HeaderName::Sender]);
        if from.is_none() {
            from = self.envelope_from();
        }
        if from.is_none() {
            from = self.first_address(parsed, &[HeaderName::ReplyTo, HeaderName::ReturnPath]);
        }
        headers.push(Header::From(from.unwrap_or_else(|| {
            self.notes
                .push("no usable sender address: From: is a placeholder".to_owned());
            unknown_sender(self.opts)
        })));

        // Date, in the post office's offset.
        if let Some(date) = parsed.date() {
            match mime_to_legacy_date(date, self.opts.utc_offset_minutes) {
                Ok(d) => headers.push(Header::Date(d)),
                Err(DateProblem::Invalid) => {
                    self.notes.push("Date: is not a valid date: left out".to_owned());
                }
                Err(DateProblem::OutOfRange) => self.notes.push(
                    "Date: is outside 1970-2069, which two-digit legacy years cannot hold: left out"
                        .to_owned(),
                ),
            }
        } else if root
            .first()
            .is_some_and(|p| p.headers.iter().any(|h| h.name == HeaderName::Date))
        {
            self.notes.push("Date: does not parse: left out".to_owned());
        }

        // Recipients.
        let mut n_rcpts = 0;
        for (name, make) in [
            (HeaderName::To, Header::To as fn(String) -> Header),
            (HeaderName::Cc, Header::Cc),
            (HeaderName::Bcc, Header::Bcc),
        ] {
            let mut seen: Vec<String> = Vec::new();
            for addr in header_addrs(parsed, name.clone()) {
                let Some(legacy) = self.legacy_address(&addr) else {
                    continue;
                };
                if !seen.contains(&legacy) {
                    seen.push(legacy.clone());
                    headers.push(make(legacy));
                    n_rcpts += 1;
                }
            }
        }
        if n_rcpts == 0 {
            for name in ["Delivered-To", "X-Original-To", "Envelope-To"] {
                let values = raw_header_values(parsed, name);
                for value in values {
                    let addr = Addr {
                        name: None,
                        address: Some(value.trim().trim_matches(['<', '>']).to_owned().into()),
                    };
                    if let Some(legacy) = self.legacy_address(&addr) {
                        headers.push(Header::To(legacy));
                        n_rcpts += 1;
                    }
                }
                if n_rcpts > 0 {
                    self.notes
                        .push(format!("no usable To:/Cc:: recipients taken from {name}:"));
                    break;
                }
            }
        }
        if n_rcpts == 0 {
            self.notes
                .push("no usable recipient: To: is a placeholder".to_owned());
            headers.push(Header::To(placeholder("Undisclosed recipients", self.opts)));
        }

        // Subject, cut to what the header buffer holds.
        if let Some(subject) = parsed.subject() {
            let mut subject = one_line(subject);
            // Undeclared 8-bit in the header: mail-parser read it as UTF-8 with losses.
            if let Some(raw) = raw_header_bytes(parsed, "Subject").first()
                && std::str::from_utf8(raw).is_err()
                && let Some(decode) = charset_decoder(b"windows-1252")
            {
                subject = one_line(&decode(raw));
                self.notes
                    .push("Subject: undeclared 8-bit text read as windows-1252".to_owned());
            }
            if subject.chars().count() > MAX_SUBJECT_CHARS {
                subject = subject.chars().take(MAX_SUBJECT_CHARS).collect();
                self.notes
                    .push(format!("Subject: cut to {MAX_SUBJECT_CHARS} characters"));
            }
            headers.push(Header::Subject(subject));
        }

        // Priority and receipt requests.
        let priority = priority_of(parsed);
        if let Some(priority) = priority {
            headers.push(Header::Other {
                keyword: "Priority".to_owned(),
                value: priority.to_owned(),
            });
        }
        let wants_receipt = [
            "Disposition-Notification-To",
            "Return-Receipt-To",
            "X-Confirm-Reading-To",
        ]
        .iter()
        .any(|name| !raw_header_values(parsed, name).is_empty());
        if wants_receipt {
            headers.push(Header::Other {
                keyword: "Receipt".to_owned(),
                value: "Yes".to_owned(),
            });
        }

        // X-Legacy-<Keyword> headers written by legacy → MIME come back as they were.
        let mut n_other = 0;
        if let Some(root) = root.first() {
            for header in &root.headers {
                let HeaderName::Other(name) = &header.name else {
                    continue;
                };
                let Some(keyword) = strip_prefix_ignore_case(name, "X-Legacy-") else {
                    continue;
                };
                if keyword.eq_ignore_ascii_case("item") {
                    continue;
                }
                let taken = (keyword.eq_ignore_ascii_case("priority") && priority.is_some())
                    || (keyword.eq_ignore_ascii_case("receipt") && wants_receipt);
                if taken || !writable_keyword(keyword) || n_other >= MAX_OTHER_HEADERS {
                    continue;
                }
                let value = match &header.value {
                    HeaderValue::Text(t) => t.to_string(),
                    HeaderValue::TextList(list) => list.join(", "),
                    _ => continue,
                };
                headers.push(Header::Other {
                    keyword: keyword.to_owned(),
                    value: one_line(&value)
                        .chars()
                        .take(MAX_OTHER_VALUE_CHARS)
                        .collect(),
                });
                n_other += 1;
            }
        }
        headers
    }

    /// The legacy text for one SMTP address, checked to be writable; `None` with a note.
    /// The first address of the first header among `names` that has a legacy form (with a
    /// note when it is not `From:`).
    fn first_address(
        &mut self,
        parsed: &ParsedMessage<'_>,
        names: &[HeaderName<'static>],
    ) -> Option<String> {
        for name in names {
            for addr in header_addrs(parsed, name.clone()) {
                if let Some(legacy) = self.legacy_address(&addr) {
                    if *name != HeaderName::From {
                        self.notes.push(format!(
                            "no usable From: the sender is taken from {}:",
                            name.as_str()
                        ));
                    }
                    return Some(legacy);
                }
            }
        }
        None
    }

    /// The envelope sender's legacy form, if there is an envelope sender (with a note).
    fn envelope_from(&mut self) -> Option<String> {
        let sender = self.envelope_sender?;
        let addr = Addr {
            name: None,
            address: Some(sender.to_string().into()),
        };
        let legacy = self.legacy_address(&addr)?;
        self.notes.push(format!(
            "no usable From: the sender is taken from the envelope (MAIL FROM:<{sender}>)"
        ));
        Some(legacy)
    }

    fn legacy_address(&mut self, addr: &Addr<'_>) -> Option<String> {
        let text = addr.address.as_deref()?.trim();
        if text.is_empty() {
            return None;
        }
        let Ok(smtp) = text.parse::<EmailAddress>() else {
            self.notes
                .push(format!("address {text:?} left out: not an SMTP address"));
            return None;
        };
        let Some(legacy) = self.map.to_legacy(&smtp, addr.name.as_deref()) else {
            self.notes.push(format!(
                "address {text:?} left out: no legacy form in the address map"
            ));
            return None;
        };
        let render = RenderOptions {
            dialect: self.opts.dialect,
            gateway_po: self.opts.gateway_po.clone(),
        };
        let rendered = parse_address(&legacy)
            .and_then(|a| a.render(&render))
            .map_err(|e| e.to_string())
            .and_then(
                |r| match r.chars().find(|c| !self.opts.codepage.can_encode(*c)) {
                    Some(c) => Err(format!(
                        "{c:?} has no equivalent in code page {}",
                        self.opts.codepage.name()
                    )),
                    None => Ok(r),
                },
            );
        match rendered {
            Ok(r) => Some(r),
            Err(e) => {
                self.notes.push(format!(
                    "address {text:?} left out: {legacy:?} cannot be written: {e}"
                ));
                None
            }
        }
    }

    /// Appends the items of `parsed` in MIME order: body text as text items, everything else
    /// as file items, nested messages as forwarded items followed by their attachments.
    fn items(
        &mut self,
        parsed: &ParsedMessage<'_>,
        items: &mut Vec<Item>,
        problem: &mut bool,
        depth: usize,
    ) {
        let mut ids: Vec<u32> = parsed
            .text_body
            .iter()
            .chain(parsed.attachments.iter())
            .copied()
            .collect();
        ids.sort_unstable();
        ids.dedup();
        *problem |= parsed.parts.iter().any(|p| {
            // A multipart whose boundary never came is read as text by mail-parser.
            let broken_multipart = is_multipart(p) && !matches!(p.body, PartType::Multipart(_));
            p.is_encoding_problem || broken_multipart
        });
        for id in ids {
            let Some(part) = parsed.parts.get(id as usize) else {
                continue;
            };
            // The text of a broken multipart is still the best body there is.
            let broken_text = matches!(part.body, PartType::Text(_)) && is_multipart(part);
            let is_attachment = parsed.attachments.contains(&id) && !broken_text;
            if !is_attachment {
                let text = match &part.body {
                    PartType::Html(html) => html::html_to_text(html),
                    PartType::Text(_) => self.text_of(parsed, part),
                    _ => continue,
                };
                let text = self.printable(&crlf(&text));
                if text.is_empty() {
                    continue;
                }
                items.push(Item {
                    kind: ItemKind::Text,
                    title: part.content_description().map(one_line).unwrap_or_default(),
                    stamp: None,
                    body: ItemBody::Text(text),
                });
                continue;
            }
            match &part.body {
                PartType::Message(nested)
                    if !nested.parts.is_empty() && depth < crate::MAX_NESTING =>
                {
                    let title = part
                        .content_description()
                        .or_else(|| nested.subject())
                        .map(one_line)
                        .filter(|t| !t.trim().is_empty())
                        .unwrap_or_else(|| "Forwarded message".to_owned());
                    let title: String =
                        title.trim().chars().take(MAX_FORWARD_TITLE_CHARS).collect();
                    let rendered = self.render_forwarded(nested);
                    let (bytes, replaced) = self.opts.codepage.encode(&rendered);
                    if replaced > 0 {
                        self.notes.push(format!(
                            "forwarded message {title:?}: {replaced} characters have no equivalent in code page {}",
                            self.opts.codepage.name()
                        ));
                    }
                    items.push(Item {
                        kind: ItemKind::Message,
                        title: title.clone(),
                        stamp: None,
                        body: ItemBody::Bytes(bytes),
                    });
                    // Its attachments follow it as file items.
                    let mut nested_items = Vec::new();
                    self.items(nested, &mut nested_items, problem, depth + 1);
                    for item in nested_items {
                        if item.kind != ItemKind::Text {
                            self.notes.push(format!(
                                "attachment {:?} of forwarded message {title:?} attached to the message",
                                item.title
                            ));
                            items.push(item);
                        }
                    }
                }
                _ => items.push(self.attachment(parsed, part)),
            }
        }
    }

    /// One attachment part as a file item (or the kind its `X-Legacy-Item:` names).
    fn attachment(&mut self, parsed: &ParsedMessage<'_>, part: &MessagePart<'_>) -> Item {
        let bytes = part_bytes(parsed, part);
        let media = part
            .content_type()
            .map(|ct| match &ct.c_subtype {
                Some(sub) => format!("{}/{}", ct.c_type, sub),
                None => ct.c_type.to_string(),
            })
            .unwrap_or_else(|| "text/plain".to_owned());
        let named = part
            .attachment_name()
            .map(one_line)
            .map(|n| {
                // Paths are not names: keep what follows the last separator.
                n.rsplit(['/', '\\']).next().unwrap_or("").trim().to_owned()
            })
            .filter(|n| !n.is_empty());
        let name = match named {
            Some(name) => name,
            None => {
                self.unnamed += 1;
                format!(
                    "ATT{:05}.{}",
                    self.unnamed,
                    media_type::extension_for(&media)
                )
            }
        };
        let name = if self.opts.short_file_names {
            self.short_name(&name)
        } else {
            name
        };
        let kind = part
            .headers
            .iter()
            .find(|h| matches!(&h.name, HeaderName::Other(n) if n.eq_ignore_ascii_case("X-Legacy-Item")))
            .and_then(|h| h.value.as_text())
            .map(|word| ItemKind::from_word(word.trim()))
            .filter(|kind| match kind {
                ItemKind::Fax | ItemKind::Graphics | ItemKind::Sound => true,
                ItemKind::Other(word) => {
                    !word.is_empty()
                        && word.len() <= 32
                        && word.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                }
                _ => false,
            })
            .unwrap_or(ItemKind::File);
        let stamp = part
            .content_disposition()
            .and_then(|cd| cd.attribute("modification-date"))
            .and_then(mail_parser::DateTime::parse_rfc822)
            .and_then(|d| mime_to_legacy_date(&d, self.opts.utc_offset_minutes).ok());
        Item {
            kind,
            title: name,
            stamp,
            body: ItemBody::Bytes(bytes),
        }
    }

    /// Text without the C0 control characters a DOS text item cannot hold (NUL ends a string
    /// in C): all but tab, CR, LF and form feed become spaces, with a note.
    fn printable(&mut self, text: &str) -> String {
        let bad = |c: char| c.is_ascii_control() && !matches!(c, '\t' | '\r' | '\n' | '\x0c');
        if !text.contains(bad) {
            return text.to_owned();
        }
        self.notes
            .push("control characters in the text replaced by spaces".to_owned());
        text.chars().map(|c| if bad(c) { ' ' } else { c }).collect()
    }

    /// `NAME.EXT` cut to 8.3 as the old connector did (KB Q190297), upper case, characters DOS
    /// refuses as `_`, unique within the message (`NAME~2.EXT`).
    fn short_name(&mut self, name: &str) -> String {
        let clean = |s: &str, max: usize| -> String {
            s.chars()
                .filter(|c| !c.is_whitespace())
                .map(|c| {
                    if c.is_ascii_alphanumeric() || "!#$%&'()-@^_`{}~".contains(c) {
                        c.to_ascii_uppercase()
                    } else {
                        '_'
                    }
                })
                .take(max)
                .collect()
        };
        let (stem, ext) = match name.rsplit_once('.') {
            Some((stem, ext)) if !stem.is_empty() => (clean(stem, 8), clean(ext, 3)),
            _ => (clean(name, 8), String::new()),
        };
        let stem = if stem.is_empty() {
            "FILE".to_owned()
        } else {
            stem
        };
        let join = |stem: &str| {
            if ext.is_empty() {
                stem.to_owned()
            } else {
                format!("{stem}.{ext}")
            }
        };
        let mut candidate = join(&stem);
        let mut n = 1;
        while self.names.contains(&candidate) {
            n += 1;
            let suffix = format!("~{n}");
            let keep = 8usize.saturating_sub(suffix.len());
            let base: String = stem.chars().take(keep).collect();
            candidate = join(&format!("{base}{suffix}"));
        }
        if candidate != name {
            self.notes
                .push(format!("attachment {name:?} named {candidate:?} (8.3)"));
        }
        self.names.push(candidate.clone());
        candidate
    }

    /// The text of a text part: as mail-parser decoded it for a known charset; undeclared
    /// bytes as UTF-8 when they are, else as windows-1252 (with a note).
    fn text_of(&mut self, parsed: &ParsedMessage<'_>, part: &MessagePart<'_>) -> String {
        let declared = part
            .content_type()
            .and_then(|ct| ct.attribute("charset"))
            .filter(|cs| charset_decoder(cs.as_bytes()).is_some());
        if declared.is_some() {
            return part.text_contents().unwrap_or_default().to_owned();
        }
        let bytes = part_bytes(parsed, part);
        match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(e) => {
                self.notes.push(
                    "text without a known charset that is not UTF-8: read as windows-1252"
                        .to_owned(),
                );
                charset_decoder(b"windows-1252")
                    .map(|decode| decode(e.as_bytes()))
                    .unwrap_or_else(|| String::from_utf8_lossy(e.as_bytes()).into_owned())
            }
        }
    }

    /// A forwarded message as readable text: its From, To, Cc, Date and Subject lines, a blank
    /// line, and its body text.
    fn render_forwarded(&mut self, nested: &ParsedMessage<'_>) -> String {
        let mut out = String::new();
        for (label, name) in [
            ("From", HeaderName::From),
            ("To", HeaderName::To),
            ("Cc", HeaderName::Cc),
        ] {
            let list: Vec<String> = header_addrs(nested, name).iter().map(format_addr).collect();
            if !list.is_empty() {
                out.push_str(&format!("{label}: {}\r\n", one_line(&list.join(", "))));
            }
        }
        if let Some(date) = raw_header_values(nested, "Date").first() {
            out.push_str(&format!("Date: {}\r\n", one_line(date.trim())));
        }
        if let Some(subject) = nested.subject() {
            out.push_str(&format!("Subject: {}\r\n", one_line(subject)));
        }
        out.push_str("\r\n");
        let mut first = true;
        for id in &nested.text_body {
            let Some(part) = nested.parts.get(*id as usize) else {
                continue;
            };
            if nested.attachments.contains(id) {
                continue;
            }
            let text = match &part.body {
                PartType::Html(html) => html::html_to_text(html),
                PartType::Text(_) => self.text_of(nested, part),
                _ => continue,
            };
            if !first && !out.ends_with("\r\n\r\n") {
                out.push_str("\r\n");
            }
            first = false;
            out.push_str(&crlf(&text));
        }
        out
    }
}

/// The addresses of every header `name` of the message's top part, groups flattened.
fn header_addrs<'x>(parsed: &ParsedMessage<'x>, name: HeaderName<'static>) -> Vec<Addr<'x>> {
    let Some(root) = parsed.parts.first() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for header in &root.headers {
        if header.name != name {
            continue;
        }
        match &header.value {
            HeaderValue::Address(Address::List(list)) => out.extend(list.iter().cloned()),
            HeaderValue::Address(Address::Group(groups)) => {
                out.extend(groups.iter().flat_map(|g| g.addresses.iter().cloned()));
            }
            HeaderValue::Text(text) => out.push(Addr {
                name: None,
                address: Some(text.clone()),
            }),
            _ => {}
        }
    }
    out
}

/// The raw values of every header `name` (case-insensitive) of the message's top part.
fn raw_header_values(parsed: &ParsedMessage<'_>, name: &str) -> Vec<String> {
    raw_header_bytes(parsed, name)
        .iter()
        .map(|bytes| String::from_utf8_lossy(bytes).trim().to_owned())
        .collect()
}

/// The raw bytes of every header `name` (case-insensitive) of the message's top part, trimmed.
fn raw_header_bytes<'x>(parsed: &'x ParsedMessage<'_>, name: &str) -> Vec<&'x [u8]> {
    let Some(root) = parsed.parts.first() else {
        return Vec::new();
    };
    root.headers
        .iter()
        .filter(|h| h.name.as_str().eq_ignore_ascii_case(name))
        .filter_map(|h| {
            parsed
                .raw_message
                .get(h.offset_start as usize..h.offset_end as usize)
                .map(<[u8]>::trim_ascii)
        })
        .collect()
}

/// True when the part's Content-Type says multipart.
fn is_multipart(part: &MessagePart<'_>) -> bool {
    part.content_type()
        .is_some_and(|ct| ct.c_type.eq_ignore_ascii_case("multipart"))
}

/// The decoded bytes of a part, exactly as sent (for text parts, before any charset
/// conversion), read again from the raw message.
fn part_bytes(parsed: &ParsedMessage<'_>, part: &MessagePart<'_>) -> Vec<u8> {
    if let PartType::Binary(bytes) | PartType::InlineBinary(bytes) = &part.body {
        return bytes.to_vec();
    }
    let raw = parsed
        .raw_message
        .get(part.offset_body as usize..part.offset_end as usize);
    let decoded = raw.and_then(|raw| match part.encoding {
        Encoding::Base64 => base64_decode(raw),
        Encoding::QuotedPrintable => quoted_printable_decode(raw),
        Encoding::None => Some(raw.to_vec()),
    });
    decoded.unwrap_or_else(|| part.contents().to_vec())
}

/// `Priority:` for the legacy side from `Importance:`, `X-Priority:`, `Priority:` or
/// `X-MSMail-Priority:`: `Urgent` or `Low` (normal priority writes nothing).
fn priority_of(parsed: &ParsedMessage<'_>) -> Option<&'static str> {
    for name in ["Importance", "X-Priority", "Priority", "X-MSMail-Priority"] {
        for value in raw_header_values(parsed, name) {
            let value = value.trim().to_ascii_lowercase();
            let word = value
                .split(|c: char| c.is_whitespace() || c == '(')
                .next()
                .unwrap_or("");
            match word {
                "high" | "urgent" | "1" | "2" | "highest" => return Some("Urgent"),
                "low" | "non-urgent" | "4" | "5" | "lowest" => return Some("Low"),
                _ => {}
            }
        }
    }
    None
}

/// `Name <addr>` with the name quoted when it holds specials; the bare address or name alone.
fn format_addr(addr: &Addr<'_>) -> String {
    let name = addr
        .name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty());
    let address = addr
        .address
        .as_deref()
        .map(str::trim)
        .filter(|a| !a.is_empty());
    match (name, address) {
        (Some(name), Some(address)) => {
            if name.contains([
                '(', ')', '<', '>', '[', ']', ':', ';', '@', '\\', ',', '.', '"',
            ]) {
                format!("\"{}\" <{address}>", name.replace(['"', '\\'], ""))
            } else {
                format!("{name} <{address}>")
            }
        }
        (Some(name), None) => name.to_owned(),
        (None, Some(address)) => address.to_owned(),
        (None, None) => String::new(),
    }
}

/// A keyword the writer accepts for `Header::Other`.
fn writable_keyword(keyword: &str) -> bool {
    let reserved = [
        "message", "contents", "from", "to", "cc", "bcc", "subject", "date",
    ]
    .iter()
    .any(|r| keyword.eq_ignore_ascii_case(r));
    !reserved
        && keyword.len() <= 64
        && keyword.starts_with(|c: char| c.is_ascii_alphabetic())
        && keyword
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
}

fn strip_prefix_ignore_case<'s>(s: &'s str, prefix: &str) -> Option<&'s str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| s.get(prefix.len()..))
        .flatten()
        .filter(|rest| !rest.is_empty())
}

/// Control characters (line breaks included) become spaces; the ends are trimmed.
fn one_line(value: &str) -> String {
    value
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DefaultAddressMap;

    fn convert(raw: &str) -> Conversion {
        let opts = ConvertOptions::default();
        mime_to_legacy(
            raw.as_bytes(),
            &opts,
            &DefaultAddressMap::from_options(&opts),
        )
    }

    #[test]
    fn priority_table() {
        let cases = [
            ("Importance: high\r\n", Some("Urgent")),
            ("X-Priority: 1 (Highest)\r\n", Some("Urgent")),
            ("X-Priority: 2\r\n", Some("Urgent")),
            ("X-Priority: 3 (Normal)\r\n", None),
            ("Importance: Low\r\n", Some("Low")),
            ("X-MSMail-Priority: Low\r\n", Some("Low")),
            ("Priority: urgent\r\n", Some("Urgent")),
            ("Priority: non-urgent\r\n", Some("Low")),
            ("", None),
        ];
        for (header, expected) in cases {
            let conv = convert(&format!(
                "From: a@example.org\r\nTo: b@example.org\r\n{header}\r\nbody\r\n"
            ));
            let found = conv.message.headers.iter().find_map(|h| match h {
                Header::Other { keyword, value } if keyword == "Priority" => Some(value.as_str()),
                _ => None,
            });
            assert_eq!(found, expected, "{header}");
        }
    }

    #[test]
    fn short_names() {
        let opts = ConvertOptions {
            short_file_names: true,
            ..ConvertOptions::default()
        };
        let map = DefaultAddressMap::from_options(&opts);
        let mut conv = Converter {
            opts: &opts,
            map: &map,
            envelope_sender: None,
            notes: Vec::new(),
            unnamed: 0,
            names: Vec::new(),
        };
        let cases = [
            ("Quarterly Report 1998.xlsx", "QUARTERL.XLS"),
            ("Quarterly Report 1999.xlsx", "QUARTE~2.XLS"),
            ("a.b.c.txt", "A_B_C.TXT"),
            ("noext", "NOEXT"),
            ("ÜBER.doc", "_BER.DOC"),
            (".profile", "_PROFILE"),
        ];
        for (name, expected) in cases {
            assert_eq!(conv.short_name(name), expected, "{name}");
        }
    }

    #[test]
    fn format_addresses() {
        let cases = [
            (
                Some("Jane Doe"),
                Some("jane@x.org"),
                "Jane Doe <jane@x.org>",
            ),
            (
                Some("Doe, Jane"),
                Some("jane@x.org"),
                "\"Doe, Jane\" <jane@x.org>",
            ),
            (None, Some("jane@x.org"), "jane@x.org"),
            (Some("Jane"), None, "Jane"),
        ];
        for (name, address, expected) in cases {
            let addr = Addr {
                name: name.map(Into::into),
                address: address.map(Into::into),
            };
            assert_eq!(format_addr(&addr), expected);
        }
    }
}

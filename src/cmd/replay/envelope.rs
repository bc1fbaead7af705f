//! The envelope of an RFC 5322 message, from its delivery and address headers.

use ccgate_core::{EmailAddress, ReversePath};
use mail_parser::{HeaderName, HeaderValue};

/// `Return-Path:` (`<>` is the null sender), else `Sender:`, else `From:`.
pub(super) fn envelope_sender(parsed: &mail_parser::Message<'_>) -> Result<ReversePath, String> {
    if let Some((_, raw)) = parsed
        .headers_raw()
        .find(|(name, _)| name.eq_ignore_ascii_case("Return-Path"))
    {
        let text = raw
            .trim()
            .trim_start_matches('<')
            .trim_end_matches('>')
            .trim();
        if text.is_empty() {
            return Ok(ReversePath::Null);
        }
        return text
            .parse::<EmailAddress>()
            .map(ReversePath::Mailbox)
            .map_err(|e| format!("Return-Path {text:?} is not an address: {e}"));
    }
    for header in [parsed.sender(), parsed.from()].into_iter().flatten() {
        if let Some(addr) = header.first().and_then(|a| a.address()) {
            return addr
                .parse::<EmailAddress>()
                .map(ReversePath::Mailbox)
                .map_err(|e| format!("sender {addr:?} is not an address: {e}"));
        }
    }
    Err("no sender (no Return-Path, Sender or From address)".to_owned())
}

/// The envelope recipients: the topmost `X-Original-To:` (the address as first received),
/// else the topmost `Delivered-To:`, else every `To:`, `Cc:` and `Bcc:` address; each once.
/// The second list holds what is not an address, with why.
pub(super) fn envelope_recipients(
    parsed: &mail_parser::Message<'_>,
) -> (Vec<EmailAddress>, Vec<(String, String)>) {
    let mut found: Vec<String> = Vec::new();
    for name in ["X-Original-To", "Delivered-To"] {
        if let Some((_, raw)) = parsed
            .headers_raw()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            found.extend(
                raw.split(',')
                    .map(|a| {
                        a.trim()
                            .trim_start_matches('<')
                            .trim_end_matches('>')
                            .trim()
                    })
                    .filter(|a| !a.is_empty())
                    .map(str::to_owned),
            );
            break;
        }
    }
    if found.is_empty() {
        for header in [HeaderName::To, HeaderName::Cc, HeaderName::Bcc] {
            for value in parsed.header_values(header) {
                if let HeaderValue::Address(list) = value {
                    found.extend(list.iter().filter_map(|a| a.address().map(str::to_owned)));
                }
            }
        }
    }
    let mut good: Vec<EmailAddress> = Vec::new();
    let mut bad = Vec::new();
    for text in found {
        match text.parse::<EmailAddress>() {
            Ok(addr) => {
                if !good
                    .iter()
                    .any(|g| g.to_lowercase_key() == addr.to_lowercase_key())
                {
                    good.push(addr);
                }
            }
            Err(e) => bad.push((text, e.to_string())),
        }
    }
    (good, bad)
}

#[cfg(test)]
mod tests {
    use mail_parser::MessageParser;

    use super::*;

    #[test]
    pub(super) fn envelope_from_delivery_headers_else_addresses() {
        let parse = |raw: &'static str| MessageParser::default().parse_headers(raw).unwrap();
        let m = parse(
            "Return-Path: <>\r\nDelivered-To: b@x.test\r\nDelivered-To: c@x.test\r\nX-Original-To: a@x.test\r\nFrom: f@x.test\r\nTo: t@x.test\r\n\r\n",
        );
        assert_eq!(envelope_sender(&m).unwrap(), ReversePath::Null);
        let (rcpts, bad) = envelope_recipients(&m);
        assert_eq!(rcpts, vec!["a@x.test".parse::<EmailAddress>().unwrap()]);
        assert!(bad.is_empty());
        let m = parse(
            "From: F <f@x.test>\r\nTo: T <t@x.test>, u@x.test\r\nCc: T@x.test\r\nBcc: b@x.test\r\n\r\n",
        );
        assert_eq!(envelope_sender(&m).unwrap().to_string(), "f@x.test");
        let (rcpts, _) = envelope_recipients(&m);
        let rcpts: Vec<String> = rcpts.iter().map(ToString::to_string).collect();
        assert_eq!(rcpts, ["t@x.test", "u@x.test", "b@x.test"]);
        assert!(envelope_sender(&parse("Subject: x\r\n\r\n")).is_err());
    }
}

//! Deterministic Message-IDs for legacy messages, which carry no identifier of their own.
//!
//! The id is `<H@legacy.domain>` where `H` is the first 16 bytes, in hex, of the SHA-256 of a
//! canonical encoding of the decoded message: every header (keyword in lower case, value; dates
//! as numbers) and every item (kind, title, stamp, data; text with line ends as CR LF) in order,
//! each field length-prefixed. So the same legacy message gives the same id whether its file
//! had size lines or not, CR LF or LF line ends; the replay ledger relies on it. Two messages
//! that are identical in every header, date (to the minute) and item get the same id: the
//! legacy format gives no way to tell them apart.

use ccgate_ccmail::{Header, ItemBody, ItemKind, LegacyDateTime, Message};
use sha2::{Digest, Sha256};

/// Bare CR and bare LF as CR LF (for the other modules too); part of the hashed encoding, so
/// ccmail's writer and this id see the same text.
pub(crate) use ccgate_ccmail::crlf_only as crlf;

/// The Message-ID (with angle brackets) of a legacy message.
pub fn legacy_message_id(msg: &Message, legacy_domain: &str) -> String {
    format!("<{}@{}>", hex(&digest(msg)), legacy_domain)
}

/// A content identity for raw bytes without a Message-ID: `sha256:` and 32 hex digits.
pub fn content_identity(raw: &[u8]) -> String {
    let hash = Sha256::digest(raw);
    format!("sha256:{}", hex(hash.get(..16).unwrap_or_default()))
}

fn digest(msg: &Message) -> Vec<u8> {
    let mut hasher = Sha256::new();
    let mut field = |tag: u8, bytes: &[u8]| {
        hasher.update([tag]);
        hasher.update((bytes.len() as u64).to_be_bytes());
        hasher.update(bytes);
    };
    for header in &msg.headers {
        match header {
            Header::Date(date) => field(b'D', date_bytes(date).as_bytes()),
            Header::Other { keyword, value } => {
                field(b'K', keyword.to_ascii_lowercase().as_bytes());
                field(b'V', value.as_bytes());
            }
            other => {
                field(b'K', other.keyword().to_ascii_lowercase().as_bytes());
                field(
                    b'V',
                    other
                        .address()
                        .or(msg_subject(other))
                        .unwrap_or("")
                        .as_bytes(),
                );
            }
        }
    }
    for item in &msg.items {
        field(b'I', item.kind.as_str().to_ascii_lowercase().as_bytes());
        field(b'T', item.title.trim().as_bytes());
        field(
            b'S',
            item.stamp
                .as_ref()
                .map(date_bytes)
                .unwrap_or_default()
                .as_bytes(),
        );
        match (&item.kind, &item.body) {
            (ItemKind::Text, ItemBody::Text(text)) => field(b'B', crlf(text).as_bytes()),
            (_, ItemBody::Text(text)) => field(b'B', text.as_bytes()),
            (_, ItemBody::Bytes(bytes)) => field(b'B', bytes),
        }
    }
    hasher.finalize().get(..16).unwrap_or_default().to_vec()
}

fn msg_subject(header: &Header) -> Option<&str> {
    match header {
        Header::Subject(s) => Some(s),
        _ => None,
    }
}

fn date_bytes(date: &LegacyDateTime) -> String {
    match date.time {
        Some(t) => format!(
            "{}-{}-{} {}:{}:{}",
            date.year,
            date.month,
            date.day,
            t.hour,
            t.minute,
            t.second.unwrap_or(0)
        ),
        None => format!("{}-{}-{}", date.year, date.month, date.day),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ccgate_ccmail::Item;

    fn message(body: &str) -> Message {
        Message {
            headers: vec![
                Header::From("Doe, Jane at HQ".into()),
                Header::To("Smith, John at HQ".into()),
                Header::Subject("Hi".into()),
            ],
            items: vec![Item {
                kind: ItemKind::Text,
                title: String::new(),
                stamp: None,
                body: ItemBody::Text(body.into()),
            }],
        }
    }

    #[test]
    fn same_message_same_id_and_line_ends_do_not_matter() {
        let a = legacy_message_id(&message("one\r\ntwo\r\n"), "legacy.example.com");
        let b = legacy_message_id(&message("one\ntwo\n"), "legacy.example.com");
        assert_eq!(a, b);
        assert!(
            a.starts_with('<') && a.ends_with("@legacy.example.com>"),
            "{a}"
        );
        assert_eq!(a.len(), 1 + 32 + 1 + 18 + 1);
        let c = legacy_message_id(&message("one\r\nthree\r\n"), "legacy.example.com");
        assert_ne!(a, c);
    }

    /// The replay ledger keys on these ids: they must not change from one build to the next.
    #[test]
    fn ids_are_pinned() {
        assert_eq!(
            legacy_message_id(&message("one\r\ntwo\r\n"), "legacy.example.com"),
            "<8701dfcf16d7b6880cef249b2833321a@legacy.example.com>"
        );
        assert_eq!(
            legacy_message_id(
                &message("one\ntwo\r\nthree\rfour\r\r\n\u{e9}"),
                "legacy.example.com"
            ),
            "<102376c0d509dd4e9ece379ab91c5749@legacy.example.com>"
        );
    }

    #[test]
    fn content_identity_is_stable() {
        assert_eq!(
            content_identity(b"abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223"
        );
    }
}

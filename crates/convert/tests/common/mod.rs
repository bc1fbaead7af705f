//! Helpers shared by the integration tests.
#![allow(dead_code)]

use ccgate_ccmail::{Header, Item, ItemBody, ItemKind, Message, WriteOptions, write_messages};
use ccgate_convert::{Conversion, ConvertOptions, DefaultAddressMap, mime_to_legacy};

/// The default options and map.
pub fn setup() -> (ConvertOptions, DefaultAddressMap) {
    let opts = ConvertOptions::default();
    let map = DefaultAddressMap::from_options(&opts);
    (opts, map)
}

/// Converts and asserts the writer (default, ie8) accepts the result.
pub fn to_legacy(raw: &[u8]) -> Conversion {
    let (opts, map) = setup();
    let conv = mime_to_legacy(raw, &opts, &map);
    assert_writable(&conv.message);
    conv
}

/// Asserts that `write_messages` with default (ie8) options accepts the message.
pub fn assert_writable(message: &Message) {
    let mut out = Vec::new();
    if let Err(e) = write_messages(message, &WriteOptions::default(), &mut out) {
        panic!("the writer refused {message:#?}: {e}");
    }
}

/// The text of every text item, in order.
pub fn texts(message: &Message) -> Vec<String> {
    message
        .items
        .iter()
        .filter(|i| i.kind == ItemKind::Text)
        .map(|i| match &i.body {
            ItemBody::Text(t) => t.clone(),
            ItemBody::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        })
        .collect()
}

/// (kind, title, bytes) of every non-text item.
pub fn files(message: &Message) -> Vec<(ItemKind, String, Vec<u8>)> {
    message
        .items
        .iter()
        .filter(|i| i.kind != ItemKind::Text)
        .map(|i| {
            let bytes = match &i.body {
                ItemBody::Text(t) => t.as_bytes().to_vec(),
                ItemBody::Bytes(b) => b.clone(),
            };
            (i.kind.clone(), i.title.clone(), bytes)
        })
        .collect()
}

/// Every header of a kind, as text.
pub fn values(message: &Message, keyword: &str) -> Vec<String> {
    message
        .headers
        .iter()
        .filter(|h| h.keyword().eq_ignore_ascii_case(keyword))
        .map(|h| match h {
            Header::Date(d) => format!("{d:?}"),
            Header::Other { value, .. } => value.clone(),
            Header::Subject(s) => s.clone(),
            other => other.address().unwrap_or_default().to_owned(),
        })
        .collect()
}

/// A text item.
pub fn text_item(text: &str) -> Item {
    Item {
        kind: ItemKind::Text,
        title: String::new(),
        stamp: None,
        body: ItemBody::Text(text.to_owned()),
    }
}

/// A non-text item.
pub fn item(kind: ItemKind, title: &str, bytes: &[u8]) -> Item {
    Item {
        kind,
        title: title.to_owned(),
        stamp: None,
        body: ItemBody::Bytes(bytes.to_vec()),
    }
}

/// A fixture's bytes.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

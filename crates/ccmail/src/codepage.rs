//! The post office's DOS code page: IBM437 (US) or IBM850 (international), to and from Unicode.
//!
//! Tables come from the `oem_cp` crate (generated from the Unicode consortium's mappings). Bytes
//! 0x00-0x7F are ASCII in both. On encoding, a character without an equivalent is first
//! transliterated (accents dropped, typographic quotes and dashes flattened) and only then
//! replaced by `?`; the caller learns how many were replaced, so nothing is lost silently.

use oem_cp::code_table::{
    DECODING_TABLE_CP437, DECODING_TABLE_CP850, ENCODING_TABLE_CP437, ENCODING_TABLE_CP850,
};

/// A DOS code page the legacy side writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Codepage {
    /// IBM PC US (`ibm437`).
    #[default]
    Ibm437,
    /// DOS Latin-1 (`ibm850`).
    Ibm850,
}

/// The character written for one that the code page cannot hold.
pub const REPLACEMENT: u8 = b'?';

impl Codepage {
    fn decoding_table(self) -> &'static [char; 128] {
        match self {
            Self::Ibm437 => &DECODING_TABLE_CP437,
            Self::Ibm850 => &DECODING_TABLE_CP850,
        }
    }

    /// Decodes bytes in this code page. Every byte maps to a character, so this never fails.
    pub fn decode(self, bytes: &[u8]) -> String {
        // Fast path: ASCII is the same in every DOS code page, and valid UTF-8.
        if bytes.is_ascii() {
            return std::str::from_utf8(bytes)
                .map(str::to_owned)
                .unwrap_or_default();
        }
        let table = self.decoding_table();
        let mut out = String::with_capacity(bytes.len() + bytes.len() / 2);
        for chunk in bytes.split_inclusive(|b| !b.is_ascii()) {
            let (ascii, last) = match chunk.split_last() {
                Some((last, head)) if !last.is_ascii() => (head, Some(*last)),
                _ => (chunk, None),
            };
            out.push_str(std::str::from_utf8(ascii).unwrap_or_default());
            if let Some(b) = last {
                out.push(table.get(usize::from(b - 0x80)).copied().unwrap_or('?'));
            }
        }
        out
    }

    /// True when `c` has a byte in this code page.
    pub fn can_encode(self, c: char) -> bool {
        c.is_ascii() || self.encode_char(c).is_some()
    }

    fn encode_char(self, c: char) -> Option<u8> {
        if c.is_ascii() {
            return u8::try_from(u32::from(c)).ok();
        }
        match self {
            Self::Ibm437 => ENCODING_TABLE_CP437.get(&c).copied(),
            Self::Ibm850 => ENCODING_TABLE_CP850.get(&c).copied(),
        }
    }

    /// Encodes text into this code page, appending to `out`. Returns how many characters had
    /// no equivalent and no transliteration and were written as `?`.
    pub fn encode_into(self, text: &str, out: &mut Vec<u8>) -> usize {
        let mut replaced = 0;
        // ASCII is the same in every code page: runs of it are copied whole (most mail is
        // ASCII; a character at a time was a hot loop of the legacy lane).
        let mut rest = text;
        while !rest.is_empty() {
            let ascii = rest
                .as_bytes()
                .iter()
                .position(|b| !b.is_ascii())
                .unwrap_or(rest.len());
            let (run, tail) = rest.split_at(ascii);
            out.extend_from_slice(run.as_bytes());
            let mut chars = tail.chars();
            let Some(c) = chars.next() else {
                break;
            };
            rest = chars.as_str();
            replaced += self.encode_other(c, out);
        }
        replaced
    }

    /// Encodes one character (not ASCII) into `out`; answers how many `?` it became (a
    /// transliteration counts each of its characters without an equivalent).
    fn encode_other(self, c: char, out: &mut Vec<u8>) -> usize {
        if let Some(b) = self.encode_char(c) {
            out.push(b);
            return 0;
        }
        let fallback = transliterate(c);
        if fallback.is_empty() {
            out.push(REPLACEMENT);
            return 1;
        }
        let mut replaced = 0;
        for f in fallback.chars() {
            match self.encode_char(f) {
                Some(b) => out.push(b),
                None => {
                    out.push(REPLACEMENT);
                    replaced += 1;
                }
            }
        }
        replaced
    }

    /// Encodes text into this code page; see [`Codepage::encode_into`].
    pub fn encode(self, text: &str) -> (Vec<u8>, usize) {
        let mut out = Vec::with_capacity(text.len());
        let replaced = self.encode_into(text, &mut out);
        (out, replaced)
    }

    /// The config name: `ibm437` or `ibm850`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ibm437 => "ibm437",
            Self::Ibm850 => "ibm850",
        }
    }
}

/// An ASCII stand-in for characters that DOS code pages commonly lack; empty when none fits.
fn transliterate(c: char) -> &'static str {
    match c {
        '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{2032}' => "'",
        '\u{201C}' | '\u{201D}' | '\u{201E}' | '\u{2033}' => "\"",
        '\u{2013}' | '\u{2014}' | '\u{2212}' => "-",
        '\u{2026}' => "...",
        '\u{20AC}' => "EUR",
        '\u{2122}' => "(TM)",
        '\u{00A9}' => "(C)",
        '\u{00AE}' => "(R)",
        '\u{00A0}' | '\u{2002}' | '\u{2003}' | '\u{2009}' => " ",
        '\u{2022}' => "*",
        'À' | 'Á' | 'Â' | 'Ã' | 'Ä' | 'Å' | 'Ā' | 'Ă' | 'Ą' => "A",
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ă' | 'ą' => "a",
        'Ç' | 'Ć' | 'Č' => "C",
        'ç' | 'ć' | 'č' => "c",
        'È' | 'É' | 'Ê' | 'Ë' | 'Ē' | 'Ę' | 'Ě' => "E",
        'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ę' | 'ě' => "e",
        'Ì' | 'Í' | 'Î' | 'Ï' => "I",
        'ì' | 'í' | 'î' | 'ï' | 'ı' => "i",
        'Ł' => "L",
        'ł' => "l",
        'Ñ' | 'Ń' | 'Ň' => "N",
        'ñ' | 'ń' | 'ň' => "n",
        'Ò' | 'Ó' | 'Ô' | 'Õ' | 'Ö' | 'Ø' | 'Ő' => "O",
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ő' => "o",
        'Ś' | 'Š' => "S",
        'ś' | 'š' => "s",
        'Ù' | 'Ú' | 'Û' | 'Ü' | 'Ů' | 'Ű' => "U",
        'ù' | 'ú' | 'û' | 'ü' | 'ů' | 'ű' => "u",
        'Ý' | 'Ÿ' => "Y",
        'ý' | 'ÿ' => "y",
        'Ź' | 'Ż' | 'Ž' => "Z",
        'ź' | 'ż' | 'ž' => "z",
        'ß' => "ss",
        'Æ' => "AE",
        'æ' => "ae",
        'Œ' => "OE",
        'œ' => "oe",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_bytes() {
        // 0x82 is é in both; 0x9B is ¢ in 437 and ø in 850; 0xE1 is ß in both.
        assert_eq!(Codepage::Ibm437.decode(&[0x82, 0x9B, 0xE1]), "é¢ß");
        assert_eq!(Codepage::Ibm850.decode(&[0x82, 0x9B, 0xE1]), "éøß");
    }

    #[test]
    fn every_byte_round_trips() {
        for cp in [Codepage::Ibm437, Codepage::Ibm850] {
            let all: Vec<u8> = (0..=255).collect();
            let (back, replaced) = cp.encode(&cp.decode(&all));
            assert_eq!((back, replaced), (all, 0), "{cp:?}");
        }
    }

    #[test]
    fn unmappable_is_transliterated_then_counted() {
        let (bytes, replaced) = Codepage::Ibm437.encode("\u{201C}Łódź\u{201D} — 東");
        assert_eq!(Codepage::Ibm437.decode(&bytes), "\"Lódz\" - ?");
        assert_eq!(replaced, 1);
    }

    proptest::proptest! {
        /// Copying ASCII runs whole gives the same bytes and count as a character at a time.
        #[test]
        fn ascii_runs_encode_as_single_characters(text in "[a-z \r\n\u{e9}\u{2019}\u{2026}\u{4e2d}\u{1f600}]{0,40}") {
            for cp in [Codepage::Ibm437, Codepage::Ibm850] {
                let mut one_by_one = Vec::new();
                let mut replaced = 0;
                for c in text.chars() {
                    let mut buf = [0u8; 4];
                    replaced += cp.encode_into(c.encode_utf8(&mut buf), &mut one_by_one);
                }
                let (whole, whole_replaced) = cp.encode(&text);
                proptest::prop_assert_eq!(&whole, &one_by_one);
                proptest::prop_assert_eq!(whole_replaced, replaced);
            }
        }
    }
}

//! Text helpers shared by the writer and the converter.

/// `text` with every line end as CR LF: a bare LF and a bare CR each become CR LF; CR LF stays.
///
/// Everything else is kept as it is. The converter hashes its output into legacy
/// Message-IDs (the replay ledger relies on them), so what this returns for a given input
/// must never change.
#[must_use]
pub fn crlf_only(text: &str) -> String {
    let is_end = |b: &u8| *b == b'\r' || *b == b'\n';
    if !text.as_bytes().iter().any(is_end) {
        return text.to_owned();
    }
    // Copies the runs between line ends whole (a character at a time was the converter's
    // hottest loop). CR and LF are ASCII, so every cut falls on a character boundary.
    let mut out = String::with_capacity(text.len() + 16);
    let mut rest = text;
    while let Some(at) = rest.as_bytes().iter().position(is_end) {
        let (run, tail) = rest.split_at(at);
        out.push_str(run);
        out.push_str("\r\n");
        rest = tail
            .strip_prefix("\r\n")
            .or_else(|| tail.get(1..))
            .unwrap_or_default();
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_end_becomes_crlf() {
        let cases = [
            ("", ""),
            ("plain", "plain"),
            ("a\r\nb", "a\r\nb"),
            ("a\nb", "a\r\nb"),
            ("a\rb", "a\r\nb"),
            ("a\r\rb", "a\r\n\r\nb"),
            ("a\n\rb", "a\r\n\r\nb"),
            ("a\r\n\nb\r", "a\r\n\r\nb\r\n"),
            ("\u{e9}\n\u{1f600}", "\u{e9}\r\n\u{1f600}"),
        ];
        for (input, want) in cases {
            assert_eq!(crlf_only(input), want, "{input:?}");
        }
    }

    /// The character-at-a-time definition the fast version must match exactly (the
    /// Message-IDs hashed from its output must never change).
    fn reference(text: &str) -> String {
        let mut out = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\r' => {
                    if chars.peek() == Some(&'\n') {
                        chars.next();
                    }
                    out.push_str("\r\n");
                }
                '\n' => out.push_str("\r\n"),
                c => out.push(c),
            }
        }
        out
    }

    proptest::proptest! {
        #[test]
        fn same_as_the_character_at_a_time_definition(text in "[a\r\n\u{e9}\u{1f600} ]{0,40}") {
            proptest::prop_assert_eq!(crlf_only(&text), reference(&text));
        }
    }
}

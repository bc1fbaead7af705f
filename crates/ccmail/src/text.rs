//! Text helpers shared by the writer and the converter.

/// `text` with every line end as CR LF: a bare LF and a bare CR each become CR LF; CR LF stays.
///
/// Everything else is kept as it is. The converter hashes its output into legacy
/// Message-IDs (the replay ledger relies on them), so what this returns for a given input
/// must never change.
#[must_use]
pub fn crlf_only(text: &str) -> String {
    if !text.contains(['\r', '\n']) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len() + 16);
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
}

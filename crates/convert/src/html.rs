//! HTML to readable text, for messages whose only body is HTML: tags dropped, block tags and
//! `<br>` as line breaks, list items as `- `, `<script>`/`<style>`/`<head>` skipped, entities
//! decoded, runs of blanks collapsed. Small and bounded: one pass, output no longer than the
//! input plus a line end per tag.

/// Tags that end a line (before and after).
const BLOCK_TAGS: &[&str] = &[
    "p",
    "div",
    "br",
    "tr",
    "li",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "table",
    "ul",
    "ol",
    "blockquote",
    "pre",
    "hr",
    "dd",
    "dt",
    "dl",
    "address",
    "section",
    "article",
    "header",
    "footer",
    "title",
    "center",
    "form",
];

/// Elements whose content is not text for the reader.
const SKIPPED: &[&str] = &["script", "style", "head", "template", "noscript"];

/// Converts HTML to plain text with CR LF line ends.
pub fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    let mut rest = html;
    let mut skipping: Option<String> = None;
    let mut pending_space = false;
    let mut in_pre = false;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("<!--") {
            rest = after
                .find("-->")
                .map_or("", |i| after.get(i + 3..).unwrap_or(""));
            continue;
        }
        if rest.starts_with('<') {
            let end = rest.find('>').unwrap_or(rest.len());
            let tag = rest.get(1..end).unwrap_or("");
            rest = rest.get(end + 1..).unwrap_or("");
            let closing = tag.starts_with('/');
            let name: String = tag
                .trim_start_matches('/')
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect::<String>()
                .to_ascii_lowercase();
            if let Some(skipped) = &skipping {
                if closing && *skipped == name {
                    skipping = None;
                }
                continue;
            }
            if !closing && SKIPPED.contains(&name.as_str()) && !tag.ends_with('/') {
                skipping = Some(name);
                continue;
            }
            if name == "pre" {
                in_pre = !closing;
            }
            if BLOCK_TAGS.contains(&name.as_str()) {
                pending_space = false;
                if name == "br" || !out.is_empty() && !out.ends_with("\r\n") {
                    out.push_str("\r\n");
                }
                if name == "p" && closing {
                    out.push_str("\r\n");
                }
                if name == "li" && !closing {
                    out.push_str("- ");
                }
            } else if matches!(name.as_str(), "td" | "th") && closing {
                pending_space = true;
            }
            continue;
        }
        let end = rest.find('<').unwrap_or(rest.len());
        let text = rest.get(..end).unwrap_or("");
        rest = rest.get(end..).unwrap_or("");
        if skipping.is_some() {
            continue;
        }
        let decoded = decode_entities(text);
        if in_pre {
            out.push_str(&decoded.replace("\r\n", "\n").replace('\n', "\r\n"));
            continue;
        }
        for c in decoded.chars() {
            if c.is_whitespace() && c != '\u{a0}' {
                pending_space = true;
            } else {
                if pending_space && !out.is_empty() && !out.ends_with("\r\n") {
                    out.push(' ');
                }
                pending_space = false;
                out.push(if c == '\u{a0}' { ' ' } else { c });
            }
        }
    }
    // At most one blank line in a row, no blank lines at the ends.
    let mut text = String::with_capacity(out.len());
    let mut blank = 0;
    for line in out.split("\r\n") {
        let line = line.trim_end();
        if line.is_empty() {
            blank += 1;
            continue;
        }
        if !text.is_empty() {
            text.push_str(if blank > 0 { "\r\n\r\n" } else { "\r\n" });
        }
        blank = 0;
        text.push_str(line);
    }
    if !text.is_empty() {
        text.push_str("\r\n");
    }
    text
}

/// Decodes the named entities mail uses most and every numeric one.
fn decode_entities(text: &str) -> String {
    const NAMED: &[(&str, char)] = &[
        ("amp", '&'),
        ("lt", '<'),
        ("gt", '>'),
        ("quot", '"'),
        ("apos", '\''),
        ("nbsp", '\u{a0}'),
        ("copy", '©'),
        ("reg", '®'),
        ("trade", '™'),
        ("euro", '€'),
        ("pound", '£'),
        ("yen", '¥'),
        ("cent", '¢'),
        ("sect", '§'),
        ("deg", '°'),
        ("laquo", '«'),
        ("raquo", '»'),
        ("ndash", '–'),
        ("mdash", '—'),
        ("lsquo", '‘'),
        ("rsquo", '’'),
        ("ldquo", '“'),
        ("rdquo", '”'),
        ("hellip", '…'),
        ("bull", '•'),
        ("middot", '·'),
        ("times", '×'),
        ("auml", 'ä'),
        ("ouml", 'ö'),
        ("uuml", 'ü'),
        ("Auml", 'Ä'),
        ("Ouml", 'Ö'),
        ("Uuml", 'Ü'),
        ("szlig", 'ß'),
        ("eacute", 'é'),
        ("egrave", 'è'),
        ("agrave", 'à'),
        ("ccedil", 'ç'),
    ];
    if !text.contains('&') {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(rest.get(..amp).unwrap_or(""));
        let after = rest.get(amp + 1..).unwrap_or("");
        let semi = after.find(';').filter(|i| *i <= 10);
        let decoded = semi.and_then(|i| {
            let entity = after.get(..i)?;
            let c = if let Some(num) = entity.strip_prefix('#') {
                let code = match num.strip_prefix(['x', 'X']) {
                    Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                    None => num.parse().ok()?,
                };
                char::from_u32(code)?
            } else {
                NAMED.iter().find(|(n, _)| *n == entity)?.1
            };
            Some((c, i))
        });
        match decoded {
            Some((c, i)) => {
                out.push(c);
                rest = after.get(i + 1..).unwrap_or("");
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_table() {
        let cases = [
            ("<p>Hello <b>world</b></p>", "Hello world\r\n"),
            ("a<br>b<br/>c", "a\r\nb\r\nc\r\n"),
            (
                "<html><head><title>T</title><style>p{}</style></head><body><p>One</p><p>Two</p></body></html>",
                "One\r\n\r\nTwo\r\n",
            ),
            ("<ul><li>x</li><li>y</li></ul>", "- x\r\n- y\r\n"),
            (
                "Fish &amp; chips &lt;3 &#8364;5 &#x41; &bogus; & more",
                "Fish & chips <3 €5 A &bogus; & more\r\n",
            ),
            ("<script>alert(1)</script>text<!-- hidden -->", "text\r\n"),
            ("  spaced\n\n   out  ", "spaced out\r\n"),
            ("<pre>a\n  b</pre>", "a\r\n  b\r\n"),
            ("<table><tr><td>a</td><td>b</td></tr></table>", "a b\r\n"),
            ("", ""),
            ("<unterminated", ""),
            ("caf&eacute;&nbsp;au&nbsp;lait", "café au lait\r\n"),
        ];
        for (html, text) in cases {
            assert_eq!(html_to_text(html), text, "{html}");
        }
    }
}

//! Bounces: RFC 3464 delivery status notifications, built by hand (pure, no I/O).
//!
//! A bounce is a `multipart/report; report-type=delivery-status` message (RFC 6522) with three
//! parts: a human-readable `text/plain` explanation, the machine-readable
//! `message/delivery-status` (one per-message block, then one block per failed recipient), and
//! the original message's headers as `text/rfc822-headers`. It is sent from the null sender
//! `<>` to the original envelope sender, so a bounce is never itself bounced; mail from the
//! null sender gets no bounce at all (RFC 5321 §4.5.5).

use std::fmt::Write as _;

use ccgate_core::QueueId;

use crate::outcome::StatusCode;

/// Longest excerpt of the original headers included in a bounce.
pub const MAX_RETURNED_HEADERS: usize = 64 << 10;

/// One failed recipient to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DsnRecipient {
    /// The address delivery was attempted to (`Final-Recipient`).
    pub final_recipient: String,
    /// The address as the sender gave it, when routing rewrote it (`Original-Recipient`).
    pub original_recipient: Option<String>,
    /// The RFC 3463 status (`Status`).
    pub status: StatusCode,
    /// The remote server's reply, if any (`Diagnostic-Code: smtp; ...`).
    pub diagnostic: Option<String>,
    /// Why it failed, for the human-readable part.
    pub reason: String,
    /// When the last attempt was made, in ms since the epoch (`Last-Attempt-Date`).
    pub last_attempt_ms: Option<u64>,
}

/// Everything a bounce says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DsnInput<'a> {
    /// This gateway's host name (`Reporting-MTA`, `From: MAILER-DAEMON@...`).
    pub reporting_mta: &'a str,
    /// The original message's queue id.
    pub queue_id: QueueId,
    /// The original envelope sender, the bounce's only recipient.
    pub to: &'a str,
    /// When the original message arrived (ms since the epoch).
    pub arrival_ms: u64,
    /// When the bounce is made (ms since the epoch).
    pub now_ms: u64,
    /// The failed recipients.
    pub recipients: &'a [DsnRecipient],
    /// The original message's header section (cut at [`MAX_RETURNED_HEADERS`]).
    pub original_headers: &'a [u8],
}

/// Builds the bounce message (CRLF line endings, 7-bit safe apart from the returned headers).
pub fn build_dsn(input: &DsnInput<'_>) -> Vec<u8> {
    let boundary = format!("{}/{}", input.queue_id, input.reporting_mta);
    let host = one_line(input.reporting_mta);
    let mut out = String::new();
    // Writing into a String cannot fail.
    let mut line = |s: &str| {
        out.push_str(s);
        out.push_str("\r\n");
    };
    line(&format!(
        "From: Mail Delivery System <MAILER-DAEMON@{host}>"
    ));
    line(&format!("To: <{}>", one_line(input.to)));
    line("Subject: Undelivered Mail Returned to Sender");
    line(&format!(
        "Date: {}",
        ccgate_core::rfc5322_date_ms(input.now_ms)
    ));
    line(&format!(
        "Message-ID: <{}.{}.bounce@{host}>",
        input.queue_id, input.now_ms
    ));
    line("Auto-Submitted: auto-replied");
    line("MIME-Version: 1.0");
    line(&format!(
        "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"{boundary}\""
    ));
    line("Content-Transfer-Encoding: 7bit");
    line("");
    line("This is a MIME-encapsulated message.");
    line("");

    // Part 1: for people.
    line(&format!("--{boundary}"));
    line("Content-Description: Notification");
    line("Content-Type: text/plain; charset=us-ascii");
    line("");
    line(&format!("This is the mail system at host {host}."));
    line("");
    line("I'm sorry to have to inform you that your message could not");
    line("be delivered to one or more recipients. It's attached below.");
    line("");
    line("For further assistance, please send mail to postmaster.");
    line("");
    for r in input.recipients {
        line(&format!(
            "<{}>: {}",
            one_line(&r.final_recipient),
            one_line(&r.reason)
        ));
    }
    line("");

    // Part 2: for programs (RFC 3464 §2.2, §2.3).
    line(&format!("--{boundary}"));
    line("Content-Description: Delivery report");
    line("Content-Type: message/delivery-status");
    line("");
    line(&format!("Reporting-MTA: dns; {host}"));
    line(&format!("X-Ccgate-Queue-ID: {}", input.queue_id));
    line(&format!(
        "Arrival-Date: {}",
        ccgate_core::rfc5322_date_ms(input.arrival_ms)
    ));
    for r in input.recipients {
        line("");
        line(&format!(
            "Final-Recipient: {}",
            address_field(&r.final_recipient)
        ));
        if let Some(orig) = &r.original_recipient {
            line(&format!("Original-Recipient: {}", address_field(orig)));
        }
        line("Action: failed");
        line(&format!("Status: {}", r.status));
        if let Some(diag) = &r.diagnostic {
            line(&format!("Diagnostic-Code: smtp; {}", one_line(diag)));
        }
        if let Some(at) = r.last_attempt_ms {
            line(&format!(
                "Last-Attempt-Date: {}",
                ccgate_core::rfc5322_date_ms(at)
            ));
        }
    }
    line("");

    // Part 3: the original headers.
    line(&format!("--{boundary}"));
    line("Content-Description: Undelivered Message Headers");
    line("Content-Type: text/rfc822-headers");
    line("");
    let mut bytes = out.into_bytes();
    append_crlf_lines(&mut bytes, input.original_headers);
    let mut tail = String::new();
    let _ = write!(tail, "\r\n--{boundary}--\r\n");
    bytes.extend_from_slice(tail.as_bytes());
    bytes
}

/// The header section of a message: everything before the first empty line, capped.
pub fn header_section(message: &[u8]) -> &[u8] {
    let capped = message
        .get(..message.len().min(MAX_RETURNED_HEADERS))
        .unwrap_or(message);
    let mut start = 0;
    for (i, b) in capped.iter().enumerate() {
        if *b != b'\n' {
            continue;
        }
        let line = capped.get(start..i).unwrap_or_default();
        if line.is_empty() || line == b"\r" {
            return capped.get(..start).unwrap_or_default();
        }
        start = i + 1;
    }
    capped
}

/// The header a suppressed bounce carries first, with the reason (read by the lane's agent).
pub const SUPPRESSED_HEADER: &str = "X-Ccgate-Bounce-Suppressed";

/// Why a bounce for a message from `sender` (whose header section is `original_headers`) must
/// not be sent, if it must not (backscatter and loops): the null sender (RFC 5321 §4.5.5),
/// `postmaster` or `MAILER-DAEMON` (another system's robot), mail marked `Auto-Submitted:`
/// other than `no` (RFC 3834 §2), or a message that already had a bounce (one per message).
/// Such a bounce is queued into the [`Lane::Suppressed`](ccgate_core::Lane::Suppressed) lane,
/// whose agent fails it at once: the log says why and nothing is sent; a bounce has the null
/// sender, so its failure bounces no further.
pub fn suppression(sender: &str, original_headers: &[u8], earlier_bounce: bool) -> Option<String> {
    if sender.is_empty() {
        return Some("the sender is the null sender <>".to_owned());
    }
    let local = sender.rsplit_once('@').map_or(sender, |(local, _)| local);
    let local = local.trim_matches('"');
    for robot in ["postmaster", "mailer-daemon"] {
        if local.eq_ignore_ascii_case(robot) {
            return Some(format!("the sender is {local}, a mail system's address"));
        }
    }
    if let Some(value) = header_value(original_headers, "auto-submitted") {
        let keyword = value
            .split([';', '(', ' ', '\t'])
            .find(|w| !w.is_empty())
            .unwrap_or_default();
        if !keyword.eq_ignore_ascii_case("no") {
            return Some(format!("the message is Auto-Submitted: {keyword}"));
        }
    }
    if earlier_bounce {
        return Some("a bounce was already sent for this message".to_owned());
    }
    None
}

/// The reason a suppressed bounce carries ([`SUPPRESSED_HEADER`]), if it is one.
pub fn suppressed_reason(bounce: &[u8]) -> Option<String> {
    header_value(header_section(bounce), SUPPRESSED_HEADER)
}

/// The first value of a header (unfolded, trimmed), by name without regard to case.
fn header_value(headers: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(headers);
    let mut found: Option<String> = None;
    for line in text.split('\n') {
        let line = line.trim_end_matches('\r');
        if let Some(value) = &mut found {
            if line.starts_with([' ', '\t']) {
                value.push(' ');
                value.push_str(line.trim());
                continue;
            }
            break;
        }
        if let Some((field, value)) = line.split_once(':')
            && field.trim().eq_ignore_ascii_case(name)
        {
            found = Some(value.trim().to_owned());
        }
    }
    found
}

/// Copies `text` line by line with CRLF endings (bare CR or LF become CRLF), ending with CRLF.
fn append_crlf_lines(out: &mut Vec<u8>, text: &[u8]) {
    let mut iter = text.iter().peekable();
    let mut at_line_start = true;
    while let Some(&b) = iter.next() {
        match b {
            b'\r' => {
                if iter.peek() == Some(&&b'\n') {
                    iter.next();
                }
                out.extend_from_slice(b"\r\n");
                at_line_start = true;
            }
            b'\n' => {
                out.extend_from_slice(b"\r\n");
                at_line_start = true;
            }
            _ => {
                out.push(b);
                at_line_start = false;
            }
        }
    }
    if !at_line_start {
        out.extend_from_slice(b"\r\n");
    }
}

/// `rfc822; addr` for ASCII addresses, `utf-8; addr` otherwise (RFC 6533).
fn address_field(addr: &str) -> String {
    let addr = one_line(addr);
    if addr.is_ascii() {
        format!("rfc822; {addr}")
    } else {
        format!("utf-8; {addr}")
    }
}

/// Makes a value safe for one header line: controls become spaces, runs are squeezed.
fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut space = false;
    for c in s.trim().chars() {
        if c.is_control() || c == ' ' {
            if !space {
                out.push(' ');
            }
            space = true;
        } else {
            out.push(c);
            space = false;
        }
    }
    out.trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounces_are_suppressed_for_robots_auto_submitted_mail_and_repeats() {
        let plain = b"From: a@b.test\r\nSubject: hi\r\n";
        assert_eq!(suppression("a@b.test", plain, false), None);
        for sender in [
            "",
            "MAILER-DAEMON@x.test",
            "postmaster@y.test",
            "Postmaster",
        ] {
            assert!(suppression(sender, plain, false).is_some(), "{sender}");
        }
        let auto = b"From: a@b.test\r\nAuto-Submitted:\r\n auto-replied (vacation)\r\n";
        assert_eq!(
            suppression("a@b.test", auto, false).as_deref(),
            Some("the message is Auto-Submitted: auto-replied")
        );
        let not_auto = b"auto-submitted: No\r\n";
        assert_eq!(suppression("a@b.test", not_auto, false), None);
        assert_eq!(
            suppression("a@b.test", plain, true).as_deref(),
            Some("a bounce was already sent for this message")
        );
        let dsn = format!("{SUPPRESSED_HEADER}: why not\r\nFrom: x\r\n\r\nbody\r\n");
        assert_eq!(
            suppressed_reason(dsn.as_bytes()).as_deref(),
            Some("why not")
        );
        assert_eq!(suppressed_reason(b"From: x\r\n\r\n"), None);
    }

    #[test]
    fn header_section_stops_at_blank_line() {
        for (input, expected) in [
            (
                &b"A: 1\r\nB: 2\r\n\r\nbody\r\n"[..],
                &b"A: 1\r\nB: 2\r\n"[..],
            ),
            (b"A: 1\nB: 2\n\nbody\n", b"A: 1\nB: 2\n"),
            (b"A: 1\r\n", b"A: 1\r\n"),
            (b"\r\nbody", b""),
        ] {
            assert_eq!(header_section(input), expected);
        }
    }

    #[test]
    fn dsn_has_the_three_parts() {
        let recipients = [DsnRecipient {
            final_recipient: "bob@legacy.example.com".into(),
            original_recipient: Some("Bob@Example.com".into()),
            status: StatusCode::new(5, 1, 1).unwrap(),
            diagnostic: Some("550 5.1.1 <bob@legacy.example.com>: no such user\r\n".into()),
            reason: "no such user".into(),
            last_attempt_ms: Some(1_751_373_296_000),
        }];
        let id = QueueId::from_u128(7);
        let dsn = build_dsn(&DsnInput {
            reporting_mta: "gw.example.com",
            queue_id: id,
            to: "alice@example.com",
            arrival_ms: 1_751_373_000_000,
            now_ms: 1_751_373_296_000,
            recipients: &recipients,
            original_headers: b"Subject: hello\nFrom: alice@example.com\n",
        });
        let text = String::from_utf8(dsn).unwrap();
        let boundary = format!("{id}/gw.example.com");
        for needle in [
            "To: <alice@example.com>\r\n",
            "Content-Type: multipart/report; report-type=delivery-status;",
            &format!("boundary=\"{boundary}\""),
            "Content-Type: text/plain; charset=us-ascii\r\n",
            "Content-Type: message/delivery-status\r\n",
            "Reporting-MTA: dns; gw.example.com\r\n",
            "Final-Recipient: rfc822; bob@legacy.example.com\r\n",
            "Original-Recipient: rfc822; Bob@Example.com\r\n",
            "Action: failed\r\nStatus: 5.1.1\r\n",
            "Diagnostic-Code: smtp; 550 5.1.1 <bob@legacy.example.com>: no such user\r\n",
            "Last-Attempt-Date: Tue, 1 Jul 2025 12:34:56 +0000\r\n",
            "Content-Type: text/rfc822-headers\r\n\r\nSubject: hello\r\nFrom: alice@example.com\r\n",
            &format!("\r\n--{boundary}--\r\n"),
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
        // No bare LF anywhere.
        assert!(!text.replace("\r\n", "").contains('\n'));
        assert_eq!(text.matches(&format!("--{boundary}\r\n")).count(), 3);
    }
}

//! The command parser: one command line (without CR LF) to a [`Command`].
//!
//! Grammar from RFC 5321 4.1.1 and 4.1.2, with the extensions this server offers: SIZE
//! (RFC 1870), BODY (RFC 6152) and SMTPUTF8 (RFC 6531). Verbs and parameter keywords are
//! case-insensitive. Recipients are parsed strictly, because a gateway that accepts
//! `user%elsewhere@ours` or `"user@elsewhere"@ours` may be talked into relaying: source routes,
//! the percent hack, bang paths and quoted local parts that hide another address are refused
//! with [`Error::RelayTrick`]. One form is left to the session: a quoted local part holding a
//! `%` (but no `@` or `!`), which is also how the gateway writes a long legacy name
//! (`"Name%PO%tag"`); the session accepts it only when its policy vouches for it
//! ([`crate::RecipientPolicy::vouches_for`]) and otherwise refuses it as the same trick. A
//! source route in the *sender* is accepted and ignored, as RFC 5321 Appendix C asks. Paths
//! without angle brackets are accepted, as a default Postfix accepts them.

use ccgate_core::{CoreError, EmailAddress, ReversePath};

use crate::error::{Error, RelayTrick, Verb};

/// One parsed SMTP command.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// `HELO domain`.
    Helo {
        /// The client's name for itself, as given.
        domain: String,
    },
    /// `EHLO domain`.
    Ehlo {
        /// The client's name for itself, as given.
        domain: String,
    },
    /// `MAIL FROM:<reverse-path> [params]`.
    Mail {
        /// The sender, or the null sender `<>`.
        from: ReversePath,
        /// The ESMTP parameters.
        params: MailParams,
    },
    /// `RCPT TO:<forward-path>`.
    Rcpt {
        /// The recipient.
        to: ForwardPath,
    },
    /// `DATA`.
    Data,
    /// `RSET`.
    Rset,
    /// `NOOP [string]`.
    Noop,
    /// `QUIT`.
    Quit,
    /// `VRFY string`.
    Vrfy {
        /// What the client asked about.
        argument: String,
    },
    /// `HELP [string]`.
    Help {
        /// The topic, if any.
        topic: Option<String>,
    },
    /// `STARTTLS` (RFC 3207).
    StartTls,
}

impl Command {
    /// The command's verb.
    pub fn verb(&self) -> Verb {
        match self {
            Self::Helo { .. } => Verb::Helo,
            Self::Ehlo { .. } => Verb::Ehlo,
            Self::Mail { .. } => Verb::Mail,
            Self::Rcpt { .. } => Verb::Rcpt,
            Self::Data => Verb::Data,
            Self::Rset => Verb::Rset,
            Self::Noop => Verb::Noop,
            Self::Quit => Verb::Quit,
            Self::Vrfy { .. } => Verb::Vrfy,
            Self::Help { .. } => Verb::Help,
            Self::StartTls => Verb::StartTls,
        }
    }

    /// True for commands that may only be the last of a pipelined group (RFC 2920 3.1 names
    /// EHLO, DATA, VRFY, EXPN, TURN, QUIT and NOOP; RFC 3207 adds STARTTLS; HELO is EHLO's
    /// twin). QUIT is left out: nothing after it is read anyway.
    pub fn ends_pipeline_group(&self) -> bool {
        matches!(
            self,
            Self::Helo { .. }
                | Self::Ehlo { .. }
                | Self::Data
                | Self::Noop
                | Self::Vrfy { .. }
                | Self::StartTls
        )
    }
}

/// A forward path: a mailbox, or the special `<postmaster>` (RFC 5321 4.1.1.3) that every
/// server accepts without a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardPath {
    /// `<postmaster>`, any case.
    Postmaster,
    /// `<local@domain>`.
    Mailbox(EmailAddress),
}

/// The message body type announced with `BODY=` (RFC 6152).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Body {
    /// `BODY=7BIT`.
    SevenBit,
    /// `BODY=8BITMIME`.
    EightBitMime,
}

/// The parameters of `MAIL FROM:`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct MailParams {
    /// `SIZE=n`: the size the client announced (RFC 1870).
    pub size: Option<u64>,
    /// `BODY=`: the body type (RFC 6152).
    pub body: Option<Body>,
    /// `SMTPUTF8`: the transaction may carry UTF-8 addresses and headers (RFC 6531).
    pub smtputf8: bool,
}

impl MailParams {
    /// True when no parameter was given.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Verbs that belong to other protocols: a line starting with one is not SMTP (Postfix
/// `smtpd_forbidden_commands`).
const FORBIDDEN_VERBS: [&[u8]; 5] = [b"CONNECT", b"GET", b"HEAD", b"POST", b"PUT"];

/// Longest verb this parser knows (`STARTTLS`).
const MAX_VERB_LEN: usize = 8;

/// Parses one command line, without its CR LF.
///
/// ```
/// use ccgate_smtp::command::{parse_command, Command, ForwardPath};
///
/// let cmd = parse_command(b"rcpt to:<Jane@Legacy.Example.com>").unwrap();
/// let Command::Rcpt { to: ForwardPath::Mailbox(addr) } = cmd else { panic!() };
/// assert_eq!(addr.to_string(), "Jane@legacy.example.com");
/// ```
///
/// # Errors
/// [`Error::NonSmtpCommand`] for lines that do not start with a letter or that start with an
/// HTTP verb; [`Error::UnknownCommand`], [`Error::InvalidUtf8`], [`Error::Syntax`] and the
/// address and parameter errors otherwise.
pub fn parse_command(line: &[u8]) -> Result<Command, Error> {
    match line.first() {
        None => return Err(Error::UnknownCommand),
        Some(first) if !first.is_ascii_alphabetic() => return Err(Error::NonSmtpCommand),
        Some(_) => {}
    }
    let (verb, rest) = match memchr::memchr(b' ', line) {
        Some(pos) => line.split_at(pos),
        None => (line, &b""[..]),
    };
    let mut upper = [0u8; MAX_VERB_LEN];
    let Some(upper) = upper.get_mut(..verb.len()) else {
        return Err(Error::UnknownCommand);
    };
    upper.copy_from_slice(verb);
    upper.make_ascii_uppercase();
    if FORBIDDEN_VERBS.contains(&&*upper) {
        return Err(Error::NonSmtpCommand);
    }
    let rest = std::str::from_utf8(rest).map_err(|_| Error::InvalidUtf8)?;
    let args = rest.trim_matches([' ', '\t']);
    match &*upper {
        b"HELO" => parse_hello(args, Verb::Helo).map(|domain| Command::Helo { domain }),
        b"EHLO" => parse_hello(args, Verb::Ehlo).map(|domain| Command::Ehlo { domain }),
        b"MAIL" => parse_mail(args),
        b"RCPT" => parse_rcpt(args),
        b"DATA" => no_args(args, Verb::Data, Command::Data),
        b"RSET" => no_args(args, Verb::Rset, Command::Rset),
        b"QUIT" => no_args(args, Verb::Quit, Command::Quit),
        b"STARTTLS" => no_args(args, Verb::StartTls, Command::StartTls),
        b"NOOP" => Ok(Command::Noop),
        b"VRFY" if args.is_empty() => Err(Error::Syntax { verb: Verb::Vrfy }),
        b"VRFY" => Ok(Command::Vrfy {
            argument: args.to_owned(),
        }),
        b"HELP" => Ok(Command::Help {
            topic: (!args.is_empty()).then(|| args.to_owned()),
        }),
        _ => Err(Error::UnknownCommand),
    }
}

fn no_args(args: &str, verb: Verb, command: Command) -> Result<Command, Error> {
    if args.is_empty() {
        Ok(command)
    } else {
        Err(Error::Syntax { verb })
    }
}

/// `"EHLO" SP ( Domain / address-literal )`: the first word, which must hold no control
/// characters (it goes into the `Received:` header). Anything after it is ignored, as most
/// servers do.
fn parse_hello(args: &str, verb: Verb) -> Result<String, Error> {
    let domain = args.split([' ', '\t']).next().unwrap_or_default();
    if domain.is_empty() || domain.chars().any(char::is_control) {
        return Err(Error::Syntax { verb });
    }
    Ok(domain.to_owned())
}

/// Strips a case-insensitive `FROM:` or `TO:` and the optional spaces after it (RFC 5321 has
/// none, but many clients send one).
fn strip_keyword<'a>(args: &'a str, keyword: &str) -> Option<&'a str> {
    let head = args.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    args.get(keyword.len()..)
        .map(|rest| rest.trim_start_matches(' '))
}

/// `"MAIL FROM:" Reverse-path [SP Mail-parameters]`.
fn parse_mail(args: &str) -> Result<Command, Error> {
    let syntax = Error::Syntax { verb: Verb::Mail };
    let rest = strip_keyword(args, "FROM:").ok_or_else(|| syntax.clone())?;
    let (path, params) = split_path(rest).ok_or(syntax)?;
    let params = parse_mail_params(params)?;
    let from = if path.is_empty() {
        ReversePath::Null
    } else {
        let mailbox = if path.starts_with('@') {
            // A-d-l ":" Mailbox: accepted and ignored.
            strip_route(path).ok_or(Error::BadSender {
                reason: "source route without ':'",
            })?
        } else {
            path
        };
        let (local, domain) =
            split_mailbox(mailbox).map_err(|reason| Error::BadSender { reason })?;
        let address = EmailAddress::new(local, domain)
            .map_err(|e| Error::BadSender { reason: reason(&e) })?;
        if address.needs_smtputf8() && !params.smtputf8 {
            return Err(Error::NeedsSmtputf8);
        }
        ReversePath::Mailbox(address)
    };
    Ok(Command::Mail { from, params })
}

/// `"RCPT TO:" ( "<Postmaster@" Domain ">" / "<Postmaster>" / Forward-path ) [SP Rcpt-parameters]`.
fn parse_rcpt(args: &str) -> Result<Command, Error> {
    let syntax = Error::Syntax { verb: Verb::Rcpt };
    let rest = strip_keyword(args, "TO:").ok_or_else(|| syntax.clone())?;
    let (path, params) = split_path(rest).ok_or(syntax)?;
    if let Some(param) = params.split([' ', '\t']).find(|p| !p.is_empty()) {
        let (keyword, _) = split_param(param)?;
        return Err(Error::UnsupportedParameter {
            keyword: keyword.to_ascii_uppercase(),
        });
    }
    if path.starts_with('@') {
        return Err(Error::RelayTrick {
            trick: RelayTrick::SourceRoute,
        });
    }
    if path.eq_ignore_ascii_case("postmaster") {
        return Ok(Command::Rcpt {
            to: ForwardPath::Postmaster,
        });
    }
    let (local, domain) = split_mailbox(path).map_err(|reason| Error::BadRecipient { reason })?;
    if let Some(trick) = relay_trick(local) {
        return Err(Error::RelayTrick { trick });
    }
    let address =
        EmailAddress::new(local, domain).map_err(|e| Error::BadRecipient { reason: reason(&e) })?;
    Ok(Command::Rcpt {
        to: ForwardPath::Mailbox(address),
    })
}

fn reason(error: &CoreError) -> &'static str {
    match error {
        CoreError::InvalidAddress { reason, .. } => reason,
        _ => "invalid address",
    }
}

/// A quoted local part with a `%` in it: the percent hack in quotes, or a reply address the
/// gateway issued for a long legacy name. The session refuses it unless its policy vouches.
pub(crate) fn is_quoted_percent(local: &str) -> bool {
    local.starts_with('"') && local.contains('%')
}

/// Which relay trick a recipient's local part plays, if any.
fn relay_trick(local: &str) -> Option<RelayTrick> {
    if local.starts_with('"') {
        // A `%` alone is the session's to judge (`is_quoted_percent`).
        local
            .contains(['@', '!'])
            .then_some(RelayTrick::QuotedAddress)
    } else if local.contains('%') {
        Some(RelayTrick::PercentHack)
    } else if local.contains('!') {
        Some(RelayTrick::BangPath)
    } else {
        None
    }
}

/// Splits `<path> rest` into the text between the angle brackets and what follows; `>` inside
/// a quoted local part does not end the path.
///
/// A path without angle brackets (`MAIL FROM:jane@example.com`) is accepted as a default
/// Postfix accepts it (`strict_rfc821_envelopes = no`): the path is the first word, the rest
/// are parameters. It must not be empty (the null sender needs `<>`) and must hold no `<` or
/// `>`. The address itself gets the same checks as a bracketed one.
fn split_path(text: &str) -> Option<(&str, &str)> {
    let Some(inner) = text.strip_prefix('<') else {
        let (path, rest) = match text.find([' ', '\t']) {
            Some(pos) => text.split_at(pos),
            None => (text, ""),
        };
        if path.is_empty() || path.contains(['<', '>']) {
            return None;
        }
        return Some((path, rest));
    };
    let mut quoted = false;
    let mut escaped = false;
    for (pos, c) in inner.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '>' if !quoted => {
                let path = inner.get(..pos)?;
                let rest = inner.get(pos.saturating_add(1)..)?;
                // Parameters must be separated from the path by a space.
                if !rest.is_empty() && !rest.starts_with(' ') {
                    return None;
                }
                return Some((path, rest));
            }
            _ => {}
        }
    }
    None
}

/// Drops an RFC 5321 source route (`@a,@b:`) from the front of a path; `:` inside an address
/// literal such as `@[IPv6:::1]` does not end the route.
fn strip_route(path: &str) -> Option<&str> {
    let mut in_literal = false;
    for (pos, c) in path.char_indices() {
        match c {
            '[' => in_literal = true,
            ']' => in_literal = false,
            ':' if !in_literal => return path.get(pos.saturating_add(1)..),
            _ => {}
        }
    }
    None
}

/// Splits `local@domain`, where `local` may be a quoted string holding `@`.
fn split_mailbox(mailbox: &str) -> Result<(&str, &str), &'static str> {
    if let Some(inner) = mailbox.strip_prefix('"') {
        let mut escaped = false;
        for (pos, c) in inner.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => {
                    let end = pos.saturating_add(2);
                    let (local, rest) = (mailbox.get(..end), mailbox.get(end..));
                    return match (local, rest.and_then(|r| r.strip_prefix('@'))) {
                        (Some(local), Some(domain)) => Ok((local, domain)),
                        _ => Err("no @ after quoted local part"),
                    };
                }
                _ => {}
            }
        }
        return Err("unterminated quoted local part");
    }
    mailbox.split_once('@').ok_or("no @")
}

/// `esmtp-param = esmtp-keyword ["=" esmtp-value]`.
fn split_param(param: &str) -> Result<(&str, Option<&str>), Error> {
    let (keyword, value) = match param.split_once('=') {
        Some((keyword, value)) => (keyword, Some(value)),
        None => (param, None),
    };
    // esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
    let keyword_ok = keyword
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric())
        && keyword
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    // esmtp-value = 1*(%d33-60 / %d62-126), widened to UTF-8 by RFC 6531.
    let value_ok = value.is_none_or(|v| {
        !v.is_empty() && v.chars().all(|c| c != '=' && !c.is_control() && c != ' ')
    });
    if keyword_ok && value_ok {
        Ok((keyword, value))
    } else {
        Err(Error::Syntax { verb: Verb::Mail })
    }
}

fn parse_mail_params(text: &str) -> Result<MailParams, Error> {
    let mut params = MailParams::default();
    for param in text.split([' ', '\t']).filter(|p| !p.is_empty()) {
        let (keyword, value) = split_param(param)?;
        if keyword.eq_ignore_ascii_case("SIZE") {
            let bad = Error::BadParameter { keyword: "SIZE" };
            let digits = value.filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()));
            // A number too large for 64 bits is larger than any limit: the size check answers
            // it (552 5.3.4, as Postfix does), not a syntax error.
            let size = digits
                .map(|v| v.parse().unwrap_or(u64::MAX))
                .ok_or_else(|| bad.clone())?;
            if params.size.replace(size).is_some() {
                return Err(bad);
            }
        } else if keyword.eq_ignore_ascii_case("BODY") {
            let body = match value {
                Some(v) if v.eq_ignore_ascii_case("7BIT") => Body::SevenBit,
                Some(v) if v.eq_ignore_ascii_case("8BITMIME") => Body::EightBitMime,
                _ => return Err(Error::BadParameter { keyword: "BODY" }),
            };
            if params.body.replace(body).is_some() {
                return Err(Error::BadParameter { keyword: "BODY" });
            }
        } else if keyword.eq_ignore_ascii_case("SMTPUTF8") {
            if value.is_some() || params.smtputf8 {
                return Err(Error::BadParameter {
                    keyword: "SMTPUTF8",
                });
            }
            params.smtputf8 = true;
        } else {
            return Err(Error::UnsupportedParameter {
                keyword: keyword.to_ascii_uppercase(),
            });
        }
    }
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mailbox(s: &str) -> EmailAddress {
        s.parse().unwrap()
    }

    #[test]
    fn simple_commands() {
        let cases: Vec<(&[u8], Result<Command, Error>)> = vec![
            (
                b"HELO client.example",
                Ok(Command::Helo {
                    domain: "client.example".into(),
                }),
            ),
            (
                b"ehlo [192.0.2.1]",
                Ok(Command::Ehlo {
                    domain: "[192.0.2.1]".into(),
                }),
            ),
            (
                b"EhLo  a.b extra words",
                Ok(Command::Ehlo {
                    domain: "a.b".into(),
                }),
            ),
            (b"EHLO", Err(Error::Syntax { verb: Verb::Ehlo })),
            (b"HELO ", Err(Error::Syntax { verb: Verb::Helo })),
            (b"HELO a\x01b", Err(Error::Syntax { verb: Verb::Helo })),
            (b"DATA", Ok(Command::Data)),
            (b"data ", Ok(Command::Data)),
            (b"DATA now", Err(Error::Syntax { verb: Verb::Data })),
            (b"RSET", Ok(Command::Rset)),
            (b"RSET x", Err(Error::Syntax { verb: Verb::Rset })),
            (b"NOOP anything at all", Ok(Command::Noop)),
            (b"quit", Ok(Command::Quit)),
            (b"StartTLS", Ok(Command::StartTls)),
            (
                b"STARTTLS x",
                Err(Error::Syntax {
                    verb: Verb::StartTls,
                }),
            ),
            (
                b"VRFY jane",
                Ok(Command::Vrfy {
                    argument: "jane".into(),
                }),
            ),
            (b"VRFY", Err(Error::Syntax { verb: Verb::Vrfy })),
            (b"HELP", Ok(Command::Help { topic: None })),
            (
                b"HELP mail",
                Ok(Command::Help {
                    topic: Some("mail".into()),
                }),
            ),
            (b"EXPN list", Err(Error::UnknownCommand)),
            (b"BDAT 100 LAST", Err(Error::UnknownCommand)),
            (b"XYZZYXYZZY", Err(Error::UnknownCommand)),
            (b"", Err(Error::UnknownCommand)),
            (b"GET / HTTP/1.1", Err(Error::NonSmtpCommand)),
            (b"post /x", Err(Error::NonSmtpCommand)),
            (b"CONNECT host:25 HTTP/1.0", Err(Error::NonSmtpCommand)),
            (b" HELO x", Err(Error::NonSmtpCommand)),
            (b"\x16\x03\x01\x02", Err(Error::NonSmtpCommand)),
            (b"NOOP \xff", Err(Error::InvalidUtf8)),
        ];
        for (line, expected) in cases {
            assert_eq!(
                parse_command(line),
                expected,
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn mail_from() {
        let mail = |from: ReversePath, params: MailParams| Ok(Command::Mail { from, params });
        let jane = || ReversePath::Mailbox(mailbox("jane@example.com"));
        let none = MailParams::default();
        let syntax = Err(Error::Syntax { verb: Verb::Mail });
        let cases: Vec<(&str, Result<Command, Error>)> = vec![
            ("MAIL FROM:<jane@example.com>", mail(jane(), none)),
            ("mail from:<jane@example.com>", mail(jane(), none)),
            ("MAIL FROM: <jane@example.com>", mail(jane(), none)),
            ("MAIL FROM:<>", mail(ReversePath::Null, none)),
            (
                "MAIL FROM:<@relay.example,@b.example:jane@example.com>",
                mail(jane(), none),
            ),
            (
                "MAIL FROM:<@[IPv6:::1]:jane@example.com>",
                mail(jane(), none),
            ),
            (
                "MAIL FROM:<jane@example.com> SIZE=1000 BODY=8bitmime SMTPUTF8",
                mail(
                    jane(),
                    MailParams {
                        size: Some(1000),
                        body: Some(Body::EightBitMime),
                        smtputf8: true,
                    },
                ),
            ),
            (
                "MAIL FROM:<> body=7BIT",
                mail(
                    ReversePath::Null,
                    MailParams {
                        body: Some(Body::SevenBit),
                        ..none
                    },
                ),
            ),
            (
                "MAIL FROM:<ünï@bücher.example> SMTPUTF8",
                mail(
                    ReversePath::Mailbox(mailbox("ünï@bücher.example")),
                    MailParams {
                        smtputf8: true,
                        ..none
                    },
                ),
            ),
            ("MAIL FROM:<ünï@bücher.example>", Err(Error::NeedsSmtputf8)),
            (
                "MAIL FROM:<\"odd>user\"@example.com>",
                mail(
                    ReversePath::Mailbox(mailbox("\"odd>user\"@example.com")),
                    none,
                ),
            ),
            // Without angle brackets, as a default Postfix accepts (strict_rfc821_envelopes = no).
            ("MAIL FROM:jane@example.com", mail(jane(), none)),
            ("MAIL FROM: jane@example.com", mail(jane(), none)),
            (
                "MAIL FROM:jane@example.com SIZE=10",
                mail(
                    jane(),
                    MailParams {
                        size: Some(10),
                        ..none
                    },
                ),
            ),
            ("MAIL FROM:", syntax.clone()),
            ("MAIL FROM:jane@example.com>", syntax.clone()),
            ("MAIL FROM:jane", Err(Error::BadSender { reason: "no @" })),
            ("MAIL FROM:<jane@example.com", syntax.clone()),
            ("MAIL FROM:<jane@example.com>SIZE=1", syntax.clone()),
            ("MAIL TO:<jane@example.com>", syntax.clone()),
            ("MAIL", syntax.clone()),
            ("MAIL FROM:<a@b.c> =x", syntax.clone()),
            ("MAIL FROM:<a@b.c> SIZE=", syntax),
            ("MAIL FROM:<jane>", Err(Error::BadSender { reason: "no @" })),
            (
                "MAIL FROM:<a b@c.d>",
                Err(Error::BadSender {
                    reason: "local part is not a dot-string",
                }),
            ),
            (
                "MAIL FROM:<@a.b>",
                Err(Error::BadSender {
                    reason: "source route without ':'",
                }),
            ),
            (
                "MAIL FROM:<a@b.c> SIZE=12x",
                Err(Error::BadParameter { keyword: "SIZE" }),
            ),
            // Larger than 64 bits: larger than any limit, for the size check to refuse.
            (
                "MAIL FROM:<a@b.c> SIZE=99999999999999999999999",
                mail(
                    ReversePath::Mailbox("a@b.c".parse().unwrap()),
                    MailParams {
                        size: Some(u64::MAX),
                        ..MailParams::default()
                    },
                ),
            ),
            (
                "MAIL FROM:<a@b.c> SIZE=1 SIZE=2",
                Err(Error::BadParameter { keyword: "SIZE" }),
            ),
            (
                "MAIL FROM:<a@b.c> BODY=BINARYMIME",
                Err(Error::BadParameter { keyword: "BODY" }),
            ),
            (
                "MAIL FROM:<a@b.c> SMTPUTF8=yes",
                Err(Error::BadParameter {
                    keyword: "SMTPUTF8",
                }),
            ),
            (
                "MAIL FROM:<a@b.c> RET=HDRS",
                Err(Error::UnsupportedParameter {
                    keyword: "RET".into(),
                }),
            ),
            (
                "MAIL FROM:<a@b.c> auth=<>",
                Err(Error::UnsupportedParameter {
                    keyword: "AUTH".into(),
                }),
            ),
        ];
        for (line, expected) in cases {
            assert_eq!(parse_command(line.as_bytes()), expected, "{line}");
        }
    }

    #[test]
    fn rcpt_to() {
        let rcpt = |s: &str| {
            Ok(Command::Rcpt {
                to: ForwardPath::Mailbox(mailbox(s)),
            })
        };
        let trick = |trick| Err(Error::RelayTrick { trick });
        let cases: Vec<(&str, Result<Command, Error>)> = vec![
            (
                "RCPT TO:<jane@legacy.example.com>",
                rcpt("jane@legacy.example.com"),
            ),
            (
                "rcpt to: <Jane@LEGACY.example.com>",
                rcpt("Jane@legacy.example.com"),
            ),
            (
                "RCPT TO:<\"odd user\"@legacy.example.com>",
                rcpt("\"odd user\"@legacy.example.com"),
            ),
            (
                "RCPT TO:<postmaster>",
                Ok(Command::Rcpt {
                    to: ForwardPath::Postmaster,
                }),
            ),
            (
                "RCPT TO:<PostMaster>",
                Ok(Command::Rcpt {
                    to: ForwardPath::Postmaster,
                }),
            ),
            (
                "RCPT TO:<postmaster@legacy.example.com>",
                rcpt("postmaster@legacy.example.com"),
            ),
            (
                "RCPT TO:<@a.example,@b.example:u@legacy.example.com>",
                trick(RelayTrick::SourceRoute),
            ),
            (
                "RCPT TO:<@a.example:u@legacy.example.com>",
                trick(RelayTrick::SourceRoute),
            ),
            (
                "RCPT TO:<u%victim.example@legacy.example.com>",
                trick(RelayTrick::PercentHack),
            ),
            (
                "RCPT TO:<victim.example!u@legacy.example.com>",
                trick(RelayTrick::BangPath),
            ),
            (
                "RCPT TO:<\"u@victim.example\"@legacy.example.com>",
                trick(RelayTrick::QuotedAddress),
            ),
            // Parsed: the session refuses it unless the policy vouches for it.
            (
                "RCPT TO:<\"u%victim.example\"@legacy.example.com>",
                rcpt("\"u%victim.example\"@legacy.example.com"),
            ),
            (
                "RCPT TO:<\"victim!u\"@legacy.example.com>",
                trick(RelayTrick::QuotedAddress),
            ),
            (
                "RCPT TO:<u@victim.example@legacy.example.com>",
                Err(Error::BadRecipient {
                    reason: "bad character in domain",
                }),
            ),
            ("RCPT TO:<>", Err(Error::BadRecipient { reason: "no @" })),
            (
                "RCPT TO:<jane>",
                Err(Error::BadRecipient { reason: "no @" }),
            ),
            (
                "RCPT TO:<\"jane\">",
                Err(Error::BadRecipient {
                    reason: "no @ after quoted local part",
                }),
            ),
            (
                "RCPT TO:<\"jane@x>",
                Err(Error::Syntax { verb: Verb::Rcpt }),
            ),
            // Without angle brackets, as a default Postfix accepts; the same relay checks.
            (
                "RCPT TO:jane@legacy.example.com",
                rcpt("jane@legacy.example.com"),
            ),
            (
                "RCPT TO: jane@legacy.example.com",
                rcpt("jane@legacy.example.com"),
            ),
            (
                "RCPT TO:postmaster",
                Ok(Command::Rcpt {
                    to: ForwardPath::Postmaster,
                }),
            ),
            (
                "RCPT TO:u%elsewhere.example@legacy.example.com",
                trick(RelayTrick::PercentHack),
            ),
            (
                "RCPT TO:elsewhere.example!u@legacy.example.com",
                trick(RelayTrick::BangPath),
            ),
            (
                "RCPT TO:@a.example:u@legacy.example.com",
                trick(RelayTrick::SourceRoute),
            ),
            ("RCPT TO:", Err(Error::Syntax { verb: Verb::Rcpt })),
            (
                "RCPT TO:jane@legacy.example.com> x",
                Err(Error::Syntax { verb: Verb::Rcpt }),
            ),
            (
                "RCPT FROM:<jane@legacy.example.com>",
                Err(Error::Syntax { verb: Verb::Rcpt }),
            ),
            (
                "RCPT TO:<jane@legacy.example.com> NOTIFY=NEVER",
                Err(Error::UnsupportedParameter {
                    keyword: "NOTIFY".into(),
                }),
            ),
        ];
        for (line, expected) in cases {
            assert_eq!(parse_command(line.as_bytes()), expected, "{line}");
        }
    }

    #[test]
    fn pipeline_group_enders() {
        let cases: [(&[u8], bool); 8] = [
            (b"EHLO x", true),
            (b"HELO x", true),
            (b"DATA", true),
            (b"NOOP", true),
            (b"STARTTLS", true),
            (b"MAIL FROM:<>", false),
            (b"RSET", false),
            (b"QUIT", false),
        ];
        for (line, ends) in cases {
            assert_eq!(parse_command(line).unwrap().ends_pipeline_group(), ends);
        }
    }
}

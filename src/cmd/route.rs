//! `ccgate route [--from ADDR] [--json] ADDRESS...`: explain the routing decision for each
//! recipient against the configured directory (docs/directory.md).
//!
//! - Each ADDRESS is an SMTP mailbox (`user@domain`) or any legacy form (`Name at PO`, a bare
//!   name, `user@domain at SMTPGW`, bracketed one-offs); quote it for the shell.
//! - The origin is the form of `--from`: an SMTP sender means the message arrived by SMTP, a
//!   legacy sender that it came from the legacy post office. Without `--from` (or with
//!   `--from '<>'`), each recipient's own form decides: SMTP recipients as if received by SMTP,
//!   legacy forms as if from the legacy side.
//! - One line per recipient on standard output:
//!   `RECIPIENT: DESTINATION REWRITTEN; entry line N "NAME" (DISPLAY), state S, matched PROXY;
//!   sender FROM -> REWRITTEN; why: ...`. With `--json`, one JSON object per line with the
//!   fields `recipient`, `origin`, `destination` (`legacy`, `modern`, `hold`, `reject`),
//!   `rewritten_recipient`, `code`, `reason`, `entry` (the entry's fields, or null),
//!   `matched` (the proxy or column), `state`, `sender`, `rewritten_sender`, `sender_form`,
//!   `reply_tag` (`valid`, `expired`, `missing`, `malformed`, `forged`, `no key`, or null when
//!   no tag was checked: the generated form of a name outside the directory, from SMTP),
//!   `why`.
//! - Exit 0 when every recipient would be accepted (held included), 1 when any is rejected or
//!   unreadable, or the directory has problems (listed on standard error as
//!   `file:line:column: ...`), 2 when the directory cannot be read.

use std::io::{self, Write};
use std::process::ExitCode;

use ccgate_ccmail::LegacyAddress;
use ccgate_router::{Decision, Destination, Origin, Recipient, Router};

use crate::config::Config;
use crate::directory_source;

/// The sender, as given and as rewritten for the other side.
struct Sender {
    given: String,
    origin: Option<Origin>,
    rewritten: Option<String>,
    form: Option<&'static str>,
}

/// Runs the command.
///
/// # Errors
/// The directory cannot be read, or standard output fails.
pub fn run(
    config: &Config,
    from: Option<&str>,
    json: bool,
    addresses: &[String],
) -> anyhow::Result<ExitCode> {
    let directory = match directory_source::load(config)? {
        Ok(directory) => directory,
        Err(invalid) => {
            eprintln!("{invalid}");
            eprintln!(
                "ccgate: route: the directory has {} problem(s); run `ccgate directory check`",
                invalid.problems.len()
            );
            return Ok(ExitCode::from(1));
        }
    };
    let mut router_config = directory_source::router_config(config);
    // Read the keys `ccgate run` made; without them tags are explained as unverifiable.
    router_config.reply_tags = crate::reply_keys::KeyFile::of(config).open_existing(config)?;
    if router_config.reply_tags.is_none() {
        eprintln!(
            "ccgate: route: no reply-tag key in {} yet (`ccgate run` makes it): reply addresses are shown without their tag, and tags cannot be checked",
            config.data_dir.display()
        );
    }
    let router = Router::new(&directory, &router_config);
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let mut problems = 0usize;

    let sender = match from {
        Some(text) => match sender(&router, config, text) {
            Ok(sender) => Some(sender),
            Err(e) => {
                eprintln!("ccgate: route: --from {text:?}: {e}");
                problems = problems.saturating_add(1);
                None
            }
        },
        None => None,
    };

    let legacy_sender = sender.as_ref().and_then(|s| s.origin) == Some(Origin::Legacy);
    for text in addresses {
        // `Postmaster` (or `<Postmaster>`), as in `RCPT TO:<Postmaster>`: postmaster@ the host
        // name, unless a legacy sender makes it a legacy name.
        let postmaster = (!legacy_sender && is_bare_postmaster(text))
            .then(|| router.config().postmaster())
            .flatten();
        let parsed = match postmaster {
            Some(address) => Ok(Recipient::Smtp(address)),
            None => Recipient::parse(text),
        };
        let recipient = match parsed {
            Ok(recipient) => recipient,
            Err(e) => {
                eprintln!("ccgate: route: {text:?}: {e}");
                problems = problems.saturating_add(1);
                continue;
            }
        };
        let origin = sender
            .as_ref()
            .and_then(|s| s.origin)
            .unwrap_or(match recipient {
                Recipient::Smtp(_) => Origin::Smtp,
                Recipient::Legacy(_) => Origin::Legacy,
            });
        let decision = router.route(origin, &recipient);
        if decision.is_reject() {
            problems = problems.saturating_add(1);
        }
        let line = if json {
            json_line(&router, text, origin, &decision, sender.as_ref())?
        } else {
            text_line(&router, text, origin, &decision, sender.as_ref())
        };
        if let Err(e) = writeln!(out, "{line}") {
            if e.kind() == io::ErrorKind::BrokenPipe {
                return Ok(ExitCode::SUCCESS);
            }
            return Err(e.into());
        }
    }
    out.flush()?;
    Ok(if problems > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// `Postmaster` or `<Postmaster>`, any case: SMTP's special recipient (RFC 5321 4.1.1.3).
fn is_bare_postmaster(text: &str) -> bool {
    let text = text.trim();
    let text = text
        .strip_prefix('<')
        .and_then(|t| t.strip_suffix('>'))
        .unwrap_or(text);
    text.eq_ignore_ascii_case("postmaster")
}

/// Reads `--from` and rewrites it for the other side.
fn sender(router: &Router<'_>, config: &Config, text: &str) -> anyhow::Result<Sender> {
    let trimmed = text.trim();
    if trimmed.is_empty() || trimmed == "<>" {
        return Ok(Sender {
            given: "<>".to_owned(),
            origin: None,
            rewritten: Some("<>".to_owned()),
            form: Some("null"),
        });
    }
    Ok(match Recipient::parse(trimmed)? {
        Recipient::Smtp(address) => {
            let form = router.legacy_form(&address, None);
            match router.render(&form.address) {
                Ok(rendered) => Sender {
                    given: address.to_string(),
                    origin: Some(Origin::Smtp),
                    rewritten: Some(rendered),
                    form: Some(form_name(form.form)),
                },
                // What the gateway writes too: the legacy side cannot hold this address (an
                // address literal's brackets for ie8, say), so From: gets a placeholder.
                Err(e) => {
                    eprintln!(
                        "ccgate: route: --from {address}: the legacy side cannot hold it ({e}): the gateway writes a placeholder sender"
                    );
                    Sender {
                        given: address.to_string(),
                        origin: Some(Origin::Smtp),
                        rewritten: Some(ccgate_convert::unknown_sender(
                            &crate::cmd::convert::options(config),
                        )),
                        form: Some("placeholder"),
                    }
                }
            }
        }
        Recipient::Legacy(address) => {
            let form = router.smtp_form(&address)?;
            Sender {
                given: address.to_string(),
                origin: Some(Origin::Legacy),
                rewritten: Some(form.to_string()),
                form: Some(form_name(form.form)),
            }
        }
    })
}

fn form_name(form: ccgate_router::AddressForm) -> &'static str {
    match form {
        ccgate_router::AddressForm::Directory => "directory",
        ccgate_router::AddressForm::Foreign => "foreign",
        ccgate_router::AddressForm::Generated => "generated",
        ccgate_router::AddressForm::Decoded => "decoded",
    }
}

/// The rewritten recipient as the destination gets it: legacy addresses rendered for the
/// configured dialect.
fn rewritten(router: &Router<'_>, decision: &Decision) -> Option<String> {
    match &decision.destination {
        Destination::Legacy { address } => Some(render(router, address)),
        _ => decision.rewritten_recipient(),
    }
}

fn render(router: &Router<'_>, address: &LegacyAddress) -> String {
    router
        .render(address)
        .unwrap_or_else(|_| address.to_string())
}

fn text_line(
    router: &Router<'_>,
    given: &str,
    origin: Origin,
    decision: &Decision,
    sender: Option<&Sender>,
) -> String {
    let mut line = format!("{given}: ");
    match &decision.destination {
        Destination::Legacy { .. } | Destination::Modern { .. } => {
            line.push_str(&format!(
                "{} {:?}",
                decision.destination.name(),
                rewritten(router, decision).unwrap_or_default()
            ));
        }
        Destination::Hold { target } => {
            line.push_str("hold (until migrated");
            if let Some(target) = target {
                line.push_str(&format!(", then modern {:?}", target.to_string()));
            }
            line.push(')');
        }
        Destination::Reject { code, reason } => {
            line.push_str(&format!("reject {code} {reason}"));
        }
    }
    line.push_str(&format!("; origin {origin}; "));
    match &decision.matched {
        Some(matched) => {
            let entry = &matched.entry;
            line.push_str(&format!(
                "entry line {} {:?} ({}), state {}, matched {}",
                entry.line(),
                entry.legacy_name().unwrap_or_default(),
                entry.display_name(),
                entry.state(),
                matched.describe()
            ));
        }
        None => line.push_str("no directory entry"),
    }
    if let Some(sender) = sender {
        line.push_str(&format!(
            "; sender {} -> {}",
            sender.given,
            sender.rewritten.as_deref().unwrap_or("?")
        ));
    }
    line.push_str(&format!("; why: {}", decision.why));
    line
}

fn json_line(
    router: &Router<'_>,
    given: &str,
    origin: Origin,
    decision: &Decision,
    sender: Option<&Sender>,
) -> anyhow::Result<String> {
    let (code, reason) = match &decision.destination {
        Destination::Reject { code, reason } => (Some(code.as_str()), Some(reason.as_str())),
        _ => (None, None),
    };
    let value = serde_json::json!({
        "recipient": given,
        "origin": origin,
        "destination": decision.destination.name(),
        "rewritten_recipient": rewritten(router, decision),
        "code": code,
        "reason": reason,
        "entry": decision.matched.as_ref().map(|m| &*m.entry),
        "matched": decision.matched.as_ref().map(ccgate_router::Matched::describe),
        "state": decision.matched.as_ref().map(|m| m.entry.state()),
        "sender": sender.map(|s| s.given.as_str()),
        "rewritten_sender": sender.and_then(|s| s.rewritten.as_deref()),
        "sender_form": sender.and_then(|s| s.form),
        "reply_tag": reply_tag(decision).map(ccgate_router::TagStatus::name),
        "why": decision.why.to_string(),
    });
    Ok(serde_json::to_string(&value)?)
}

/// The state of a generated form's reply tag, when the decision checked one.
fn reply_tag(decision: &Decision) -> Option<&ccgate_router::TagStatus> {
    if let ccgate_router::Rule::ReplyTag(status) = &decision.why.rule {
        return Some(status);
    }
    decision.why.steps.iter().find_map(|step| match step {
        ccgate_router::Step::Tag(status) => Some(status),
        _ => None,
    })
}

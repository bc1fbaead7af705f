//! Every routing rule of docs/directory.md against the test directory (tests/data/directory.csv).

// Test helpers outside #[test] fns may panic: clippy.toml allows it only inside them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use ccgate_core::EmailAddress;
use ccgate_router::{
    Cutover, Decision, Destination, Directory, Origin, Recipient, Router, RouterConfig, SmtpForm,
};

fn directory() -> Directory {
    Directory::from_csv(include_bytes!("data/directory.csv")).unwrap()
}

/// `destination target` in one line, `matched` proxy after a `|`.
fn summary(decision: &Decision) -> String {
    let destination = match &decision.destination {
        Destination::Legacy { address } => format!("legacy {address}"),
        Destination::Modern { recipient } => format!("modern {recipient}"),
        Destination::Hold { target } => format!(
            "hold {}",
            target.as_ref().map_or("-".to_owned(), ToString::to_string)
        ),
        Destination::Reject { code, .. } => format!("reject {code}"),
    };
    match &decision.matched {
        Some(m) => format!("{destination} | {}", m.describe()),
        None => destination,
    }
}

#[test]
fn interface_section_5() {
    use Origin::{Legacy as L, Smtp as S};
    let hold = RouterConfig::default();
    let to_legacy = RouterConfig {
        cutover: Cutover::Legacy,
        ..RouterConfig::default()
    };
    let directory = directory();
    let cases: &[(Origin, &str, &RouterConfig, &str)] = &[
        // Legacy users, matched case-insensitively by SMTP address or legacy name.
        (
            S,
            "jane.doe@legacy.example.com",
            &hold,
            "legacy Doe, Jane at HQ | SMTP:jane.doe@legacy.example.com",
        ),
        (
            S,
            "JANE.DOE@Legacy.Example.COM",
            &hold,
            "legacy Doe, Jane at HQ | SMTP:jane.doe@legacy.example.com",
        ),
        (
            L,
            "doe, jane at hq",
            &hold,
            "legacy Doe, Jane at HQ | legacy_name Doe, Jane at HQ",
        ),
        (
            L,
            "DOE,  Jane AT HQ",
            &hold,
            "legacy Doe, Jane at HQ | legacy_name Doe, Jane at HQ",
        ),
        (
            L,
            "Doe, Jane",
            &hold,
            "legacy Doe, Jane at HQ | legacy_name Doe, Jane at HQ",
        ),
        (
            L,
            "Doe, Jane at SMTPGW",
            &hold,
            "legacy Doe, Jane at HQ | legacy_name Doe, Jane at HQ",
        ),
        (
            L,
            "jane.doe@legacy.example.com at SMTPGW",
            &hold,
            "legacy Doe, Jane at HQ | SMTP:jane.doe@legacy.example.com",
        ),
        (
            L,
            "Jane [SMTP:jane.doe@legacy.example.com] at EXSITE",
            &hold,
            "legacy Doe, Jane at HQ | SMTP:jane.doe@legacy.example.com",
        ),
        (
            L,
            "[ccmail:Doe, Jane at HQ]",
            &hold,
            "legacy Doe, Jane at HQ | legacy_name Doe, Jane at HQ",
        ),
        (
            L,
            "Brown, Dave at HQ",
            &hold,
            "legacy Brown, Dave at HQ | legacy_name Brown, Dave at HQ",
        ),
        // Migrating users: held (never bounced), or legacy per cutover; MIGRATE proxies match.
        (
            S,
            "carol.jones@legacy.example.com",
            &hold,
            "hold carol.jones@modern.example.com | SMTP:carol.jones@legacy.example.com",
        ),
        (
            L,
            "Jones, Carol at BRANCH",
            &hold,
            "hold carol.jones@modern.example.com | legacy_name Jones, Carol at BRANCH",
        ),
        (
            L,
            "cjones AT branch",
            &hold,
            "hold carol.jones@modern.example.com | MIGRATE:CCMAIL:cjones at BRANCH",
        ),
        (
            S,
            "carol.jones@legacy.example.com",
            &to_legacy,
            "legacy Jones, Carol at BRANCH | SMTP:carol.jones@legacy.example.com",
        ),
        (
            L,
            "cjones at BRANCH",
            &to_legacy,
            "legacy Jones, Carol at BRANCH | MIGRATE:CCMAIL:cjones at BRANCH",
        ),
        // Migrated users: modern next hop, rewritten to the target, also from the legacy side
        // to the old legacy name (KB Q253306).
        (
            L,
            "Smith, Bob at HQ",
            &hold,
            "modern bob.smith@modern.example.com | legacy_name Smith, Bob at HQ",
        ),
        (
            L,
            "Smith, Bob",
            &hold,
            "modern bob.smith@modern.example.com | legacy_name Smith, Bob at HQ",
        ),
        (
            L,
            "Smith, Bob at EXSITE",
            &hold,
            "modern bob.smith@modern.example.com | legacy_name Smith, Bob at HQ",
        ),
        (
            S,
            "bob.smith@legacy.example.com",
            &hold,
            "modern bob.smith@modern.example.com | smtp:bob.smith@legacy.example.com",
        ),
        (
            S,
            "Bob.Smith@modern.example.com",
            &hold,
            "modern bob.smith@modern.example.com | SMTP:bob.smith@modern.example.com",
        ),
        (
            L,
            "[X500:/O=Example/OU=Site1/CN=Recipients/CN=bsmith]",
            &hold,
            "modern bob.smith@modern.example.com | X500:/o=Example/ou=Site1/cn=Recipients/cn=bsmith",
        ),
        (
            S,
            "IMCEAEX-_o=Example_ou=Site1_cn=Recipients_cn=bsmith@modern.example.com",
            &hold,
            "modern bob.smith@modern.example.com | X500:/o=Example/ou=Site1/cn=Recipients/cn=bsmith",
        ),
        (
            S,
            "erin.moved@modern.example.com",
            &hold,
            "modern erin.moved@modern.example.com | target_address SMTP:erin.moved@modern.example.com",
        ),
        (
            L,
            "moved, erin at hq",
            &to_legacy,
            "modern erin.moved@modern.example.com | legacy_name Moved, Erin at HQ",
        ),
        // Our domains, no entry: 550 5.1.1 at RCPT.
        (S, "nobody@legacy.example.com", &hold, "reject 550 5.1.1"),
        (S, "nobody@MODERN.example.com", &hold, "reject 550 5.1.1"),
        (
            L,
            "nobody@legacy.example.com at SMTPGW",
            &hold,
            "reject 550 5.1.1",
        ),
        // ... except that the modern side knows its own mailboxes for mail from the legacy side.
        (
            L,
            "newhire@modern.example.com at SMTPGW",
            &hold,
            "modern newhire@modern.example.com",
        ),
        // Outside our domains: relay denied by SMTP, relayed by the next hop from the legacy side.
        (S, "someone@outside.test", &hold, "reject 554 5.7.1"),
        (
            S,
            "someone@sub.legacy.example.com",
            &hold,
            "reject 554 5.7.1",
        ),
        (
            L,
            "someone@outside.test at SMTPGW",
            &hold,
            "modern someone@outside.test",
        ),
        (
            L,
            "SOMEONE@OUTSIDE.TEST at smtpgw",
            &hold,
            "modern SOMEONE@outside.test",
        ),
        (
            L,
            "Some One <someone@outside.test> at SMTPGW",
            &hold,
            "modern someone@outside.test",
        ),
        (
            L,
            "[SMTP:someone@outside.test]",
            &hold,
            "modern someone@outside.test",
        ),
        (
            L,
            "[ccmail:someone@outside.test at internet]",
            &hold,
            "modern someone@outside.test",
        ),
        // Legacy names not in the directory.
        (
            L,
            "Nobody, Known at HQ",
            &hold,
            "legacy Nobody, Known at HQ",
        ),
        (
            L,
            ",Smith, Grover at Ferguson",
            &hold,
            "legacy ,Smith, Grover at Ferguson",
        ),
        (L, "#Social at PO5", &hold, "legacy #Social at PO5"),
        (L, "Nobody, Known", &hold, "reject 550 5.1.1"),
        (L, "Nobody, Known at SMTPGW", &hold, "reject 550 5.1.1"),
        (L, "\"Test User\" at SITE", &hold, "reject 550 5.1.1"),
        (
            L,
            "Someone [X400:c=US;a= ;p=Org;s=One] at SITE",
            &hold,
            "reject 550 5.1.1",
        ),
        // Generated addresses route back to their legacy address from the legacy side...
        (
            L,
            "IMCEACCMAIL-Nobody+2C+20Known+20at+20HQ@legacy.example.com",
            &hold,
            "legacy Nobody, Known at HQ",
        ),
        (
            L,
            "\"Nobody, Known%HQ\"@legacy.example.com",
            &hold,
            "legacy Nobody, Known at HQ",
        ),
        // ... but from SMTP, a name outside the directory needs the tag the gateway issued
        // (tests/reply.rs), and no post office or bulletin board is open to strangers.
        (
            S,
            "IMCEACCMAIL-Nobody+2C+20Known+20at+20HQ@legacy.example.com",
            &hold,
            "reject 550 5.1.1",
        ),
        (
            S,
            "\"Nobody, Known%HQ\"@legacy.example.com",
            &hold,
            "reject 550 5.1.1",
        ),
        (
            S,
            "IMCEACCMAIL-Anyone+20at+20OTHERPO@legacy.example.com",
            &hold,
            "reject 550 5.1.1",
        ),
        (
            S,
            "IMCEACCMAIL-BB+20at+20HQ@legacy.example.com",
            &hold,
            "reject 550 5.1.1",
        ),
        (
            S,
            "IMCEACCMAIL-+23Social+20at+20HQ@legacy.example.com",
            &hold,
            "reject 550 5.1.1",
        ),
        (
            S,
            "IMCEACCMAIL-Nobody+2C+20Known+20at+20HQ.aaaaaaaaaa@legacy.example.com",
            &hold,
            "reject 550 5.1.1",
        ),
        // A name in the directory keeps its plain generated form.
        (
            S,
            "IMCEACCMAIL-Doe+2C+20Jane+20at+20HQ@legacy.example.com",
            &hold,
            "legacy Doe, Jane at HQ | legacy_name Doe, Jane at HQ",
        ),
        (
            S,
            "IMCEACCMAIL-Smith+2C+20Bob+20at+20HQ@legacy.example.com",
            &hold,
            "modern bob.smith@modern.example.com | legacy_name Smith, Bob at HQ",
        ),
        // ... but never open a relay.
        (
            S,
            "IMCEACCMAIL-x+40outside.test+20at+20SMTPGW@legacy.example.com",
            &hold,
            "reject 554 5.7.1",
        ),
        (
            S,
            "IMCEACCMAIL-Nobody@outside.test",
            &hold,
            "reject 554 5.7.1",
        ),
    ];
    let mut failures = Vec::new();
    for (origin, text, config, expected) in cases {
        let recipient = Recipient::parse(text).unwrap();
        let decision = Router::new(&directory, config).route(*origin, &recipient);
        let got = summary(&decision);
        if got != *expected {
            failures.push(format!(
                "{origin} {text:?}\n   got: {got}\n  want: {expected}\n   why: {}",
                decision.explain()
            ));
        }
        assert!(!decision.explain().is_empty());
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// RFC 5321 4.5.1: postmaster of every domain the gateway serves (and of its host name) is
/// accepted, any case, and goes to `postmaster@<hostname>` on the modern side; an entry in the
/// directory for such an address wins; postmaster elsewhere is still not ours.
#[test]
fn postmaster_of_our_domains_goes_to_postmaster_at_the_host_name() {
    let csv = format!(
        "{}Help Desk,\"Desk, Help\",HQ,SMTP:postmaster@modern.example.com,SMTP:help@modern.example.com,migrated\n",
        String::from_utf8_lossy(include_bytes!("data/directory.csv"))
    );
    let directory = Directory::from_csv(csv.as_bytes()).unwrap();
    let config = RouterConfig {
        hostname: "GW.Example.NET".to_owned(),
        ..RouterConfig::default()
    };
    let router = Router::new(&directory, &config);
    let cases = [
        (
            Origin::Smtp,
            "postmaster@legacy.example.com",
            "modern postmaster@gw.example.net",
        ),
        (
            Origin::Smtp,
            "PostMaster@LEGACY.example.com",
            "modern postmaster@gw.example.net",
        ),
        (
            Origin::Smtp,
            "postmaster@gw.example.net",
            "modern postmaster@gw.example.net",
        ),
        (
            Origin::Legacy,
            "postmaster@legacy.example.com",
            "modern postmaster@gw.example.net",
        ),
        (
            Origin::Smtp,
            "POSTMASTER@modern.example.com",
            "modern help@modern.example.com",
        ),
        (Origin::Smtp, "postmaster@outside.test", "reject 554 5.7.1"),
        (
            Origin::Smtp,
            "postmasters@legacy.example.com",
            "reject 550 5.1.1",
        ),
    ];
    for (origin, text, expected) in cases {
        let decision = router.route(origin, &Recipient::parse(text).unwrap());
        assert!(
            summary(&decision).starts_with(expected),
            "{text}: {}",
            summary(&decision)
        );
    }
    let decision = router.route(
        Origin::Smtp,
        &Recipient::parse("postmaster@legacy.example.com").unwrap(),
    );
    assert!(
        decision.explain().contains("RFC 5321 4.5.1"),
        "{}",
        decision.explain()
    );
}

#[test]
fn why_explains_the_rule() {
    let directory = directory();
    let config = RouterConfig::default();
    let router = Router::new(&directory, &config);
    let cases = [
        (
            Origin::Legacy,
            "Smith, Bob at HQ",
            "migrated user: deliver to the modern next hop as the target address (the old legacy mailbox gets nothing, KB Q253306)",
        ),
        (
            Origin::Smtp,
            "carol.jones@legacy.example.com",
            "held, released when the directory says migrated",
        ),
        (Origin::Smtp, "someone@outside.test", "relay denied"),
        (
            Origin::Smtp,
            "nobody@legacy.example.com",
            "matches no directory entry",
        ),
    ];
    for (origin, text, expected) in cases {
        let decision = router.route(origin, &Recipient::parse(text).unwrap());
        let why = decision.explain();
        assert!(why.contains(expected), "{text}: {why}");
    }
}

#[test]
fn senders_are_rewritten_both_ways() {
    let directory = directory();
    let ie5 = RouterConfig {
        dialect: ccgate_ccmail::Dialect::Ie5,
        ..RouterConfig::default()
    };
    let ie8 = RouterConfig::default();
    // Legacy sender -> SMTP.
    let to_smtp = |text: &str| -> String {
        let router = Router::new(&directory, &ie8);
        let form: SmtpForm = router
            .smtp_form(&ccgate_ccmail::parse_address(text).unwrap())
            .unwrap();
        form.to_string()
    };
    assert_eq!(
        to_smtp("Doe, Jane at HQ"),
        "Jane Doe <jane.doe@legacy.example.com>"
    );
    assert_eq!(
        to_smtp("smith, bob"),
        "Bob Smith <bob.smith@modern.example.com>"
    );
    assert_eq!(
        to_smtp("Brown, Dave at HQ"),
        "\"Dave \\\"DB\\\" Brown\" <IMCEACCMAIL-Brown+2C+20Dave+20at+20HQ@legacy.example.com>"
    );
    assert_eq!(
        to_smtp("Nobody, Known"),
        "\"Nobody, Known\" <IMCEACCMAIL-Nobody+2C+20Known+20at+20HQ@legacy.example.com>"
    );
    assert_eq!(to_smtp("x@outside.test at PMDF"), "x@outside.test");
    // SMTP sender -> legacy, per dialect.
    let to_legacy = |config: &RouterConfig, smtp: &str, display: Option<&str>| -> String {
        let router = Router::new(&directory, config);
        let form = router.legacy_form(&smtp.parse().unwrap(), display);
        router.render(&form.address).unwrap()
    };
    let cases = [
        (
            "jane.doe@legacy.example.com",
            None,
            "Doe, Jane at HQ",
            "Doe, Jane at HQ",
        ),
        (
            "bob.smith@legacy.example.com",
            None,
            "\"Bob Smith\" <bob.smith@modern.example.com> at SMTPGW",
            "bob.smith@modern.example.com at SMTPGW",
        ),
        (
            "carol.jones@legacy.example.com",
            None,
            "\"Carol Jones\" <carol.jones@legacy.example.com> at SMTPGW",
            "carol.jones@legacy.example.com at SMTPGW",
        ),
        (
            "x@outside.test",
            None,
            "x@outside.test at SMTPGW",
            "x@outside.test at SMTPGW",
        ),
        (
            "x@outside.test",
            Some("User, Test"),
            "\"User; Test\" <x@outside.test> at SMTPGW",
            "x@outside.test at SMTPGW",
        ),
        (
            "IMCEACCMAIL-Nobody+2C+20Known+20at+20HQ@legacy.example.com",
            None,
            "Nobody, Known at HQ",
            "Nobody, Known at HQ",
        ),
    ];
    for (smtp, display, ie5_form, ie8_form) in cases {
        assert_eq!(to_legacy(&ie5, smtp, display), ie5_form, "{smtp}");
        let ie8_text = to_legacy(&ie8, smtp, display);
        assert_eq!(ie8_text, ie8_form, "{smtp}");
        assert!(!ie8_text.contains(['[', ']']));
    }
}

#[test]
fn decisions_serialize_for_route_json() {
    let directory = directory();
    let config = RouterConfig::default();
    let decision = Router::new(&directory, &config).route(
        Origin::Legacy,
        &Recipient::parse("Smith, Bob at HQ").unwrap(),
    );
    let json = serde_json::to_value(&decision).unwrap();
    assert_eq!(json["destination"]["kind"], "modern");
    assert_eq!(
        json["destination"]["recipient"],
        "bob.smith@modern.example.com"
    );
    assert_eq!(json["matched"]["matched"], "legacy_name Smith, Bob at HQ");
    assert_eq!(json["matched"]["entry"]["state"], "migrated");
    assert_eq!(json["matched"]["entry"]["line"], 5);
    assert_eq!(
        json["matched"]["entry"]["proxy_addresses"][2],
        "CCMAIL:Smith, Bob at EXSITE"
    );
}

/// `ccgate route` explains the tag of a generated form (issue 13 item 5).
#[test]
fn why_explains_reply_tags() {
    let directory = directory();
    let tags = ccgate_router::ReplyTags::new(
        ccgate_router::TagKeys {
            current: ccgate_router::TagKey::new([1; 32]),
            previous: None,
        },
        30,
    );
    let config = RouterConfig {
        reply_tags: Some(tags),
        ..RouterConfig::default()
    };
    let day = ccgate_router::Day(20_000);
    let router = Router::on(&directory, &config, day);
    let issued = router
        .smtp_form(&ccgate_ccmail::parse_address("Nobody, Known at HQ").unwrap())
        .unwrap()
        .address;
    let why = |router: &Router<'_>, address: &EmailAddress| {
        let decision = router.route_smtp(Origin::Smtp, address);
        (summary(&decision), decision.why.to_string())
    };
    let (got, text) = why(&router, &issued);
    assert_eq!(got, "legacy Nobody, Known at HQ", "{text}");
    assert!(
        text.contains("reply tag valid (issued today, valid 30 more day(s))"),
        "{text}"
    );

    let later = Router::on(&directory, &config, ccgate_router::Day(20_045));
    let (got, text) = why(&later, &issued);
    assert_eq!(got, "reject 550 5.1.1");
    assert!(
        text.contains("reply tag expired (issued 45 days ago; reply addresses stay valid 30 days)"),
        "{text}"
    );

    let (local, _) = issued.local().rsplit_once('.').unwrap();
    let missing = EmailAddress::new(local, issued.domain()).unwrap();
    let (got, text) = why(&router, &missing);
    assert_eq!(got, "reject 550 5.1.1");
    assert!(text.contains("no reply tag"), "{text}");

    for bad in ["abc", "abcdefghi1", "abcdefghijk"] {
        let malformed = EmailAddress::new(&format!("{local}.{bad}"), issued.domain()).unwrap();
        let (got, text) = why(&router, &malformed);
        assert_eq!(got, "reject 550 5.1.1");
        assert!(text.contains("malformed reply tag"), "{text}");
    }

    let forged = EmailAddress::new(&format!("{local}.abcdefghij"), issued.domain()).unwrap();
    let (got, text) = why(&router, &forged);
    assert_eq!(got, "reject 550 5.1.1");
    assert!(text.contains("forged reply tag"), "{text}");

    let other_po = router
        .smtp_form(&ccgate_ccmail::parse_address("Nobody, Known at OTHERPO").unwrap())
        .unwrap()
        .address;
    let (got, text) = why(&router, &other_po);
    assert_eq!(got, "reject 550 5.1.1");
    assert!(
        text.contains("post office OTHERPO is not in [legacy] post_offices"),
        "{text}"
    );
}

/// `ccgate route` reads an SMTP mailbox whose quoted local part holds a space as SMTP, and
/// white space outside quotes as the legacy side's.
#[test]
fn a_quoted_local_part_with_a_space_is_an_smtp_mailbox() {
    for text in [
        "\"john doe\"@example.org",
        "<\"john doe\"@example.org>",
        "\"a\\\" b\"@example.org",
    ] {
        assert!(
            matches!(Recipient::parse(text), Ok(Recipient::Smtp(_))),
            "{text}: {:?}",
            Recipient::parse(text)
        );
    }
    for text in ["\"john doe\"@example.org at SMTPGW", "Smith, John at HQ"] {
        assert!(
            matches!(Recipient::parse(text), Ok(Recipient::Legacy(_))),
            "{text}: {:?}",
            Recipient::parse(text)
        );
    }
}

/// By SMTP, an outside address the directory holds (a migrated user's target in another
/// system, a proxy in a domain that is not ours) is relaying all the same: 554 5.7.1. From the
/// legacy side it still routes by the entry.
#[test]
fn an_outside_address_in_the_directory_is_not_relayed_for_smtp_clients() {
    let directory = Directory::from_csv(
        b"display_name,legacy_name,post_office,proxy_addresses,target_address,state\n\
          Bob Roe,\"Roe, Bob\",HQ,SMTP:bob.roe@legacy.example.com;smtp:bob@oldcorp.example,SMTP:bob@tenant.example,migrated\n",
    )
    .unwrap();
    let config = RouterConfig::default();
    let router = Router::new(&directory, &config);
    for text in ["bob@tenant.example", "bob@oldcorp.example"] {
        let recipient = Recipient::parse(text).unwrap();
        let by_smtp = router.route(Origin::Smtp, &recipient);
        assert_eq!(summary(&by_smtp), "reject 554 5.7.1", "{text}");
        let from_legacy = router.route(Origin::Legacy, &recipient);
        assert!(
            summary(&from_legacy).starts_with("modern bob@tenant.example"),
            "{text}: {}",
            summary(&from_legacy)
        );
    }
    // Our own domain still reaches him at his target.
    let ours = Recipient::parse("bob.roe@legacy.example.com").unwrap();
    assert!(summary(&router.route(Origin::Smtp, &ours)).starts_with("modern bob@tenant.example"));
}

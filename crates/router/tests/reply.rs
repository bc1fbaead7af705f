//! The reply property (issue 5 item 4): for every directory entry and for outside senders, a
//! reply to the rewritten sender reaches the sender's current mailbox, in both directions and
//! in both dialects, through the rendered text the other side really gets.

// Test helpers outside #[test] fns may panic: clippy.toml allows it only inside them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use ccgate_ccmail::{Dialect, LegacyAddress, parse_address};
use ccgate_core::EmailAddress;
use ccgate_router::{
    Cutover, Day, Destination, Directory, Matched, MatchedBy, Origin, RawEntry, RawField,
    RejectCode, ReplyTags, Router, RouterConfig, TagKey, TagKeys, decode_tagged,
};
use proptest::prelude::*;

/// One generated user: the parts that vary.
#[derive(Debug, Clone)]
struct User {
    last: String,
    first: String,
    po: String,
    display: String,
    primary: Option<u8>,
    secondaries: Vec<u8>,
    state: u8,
    target: bool,
}

const DOMAINS: [&str; 3] = ["legacy.example.com", "modern.example.com", "elsewhere.test"];

fn user() -> impl Strategy<Value = User> {
    (
        "[A-Z][a-z]{0,7}( [A-Z][a-z]{0,5})?",
        "[A-Z][a-z]{0,7}",
        "(HQ|BRANCH|PO[0-9]|Site 1|NorthAmerica)",
        "[A-Za-z ,.\"'()-]{0,20}",
        proptest::option::of(0u8..3),
        proptest::collection::vec(0u8..3, 0..3),
        0u8..3,
        any::<bool>(),
    )
        .prop_map(
            |(last, first, po, display, primary, secondaries, state, target)| User {
                last,
                first,
                po,
                display,
                primary,
                secondaries,
                state,
                target,
            },
        )
}

fn raw(index: usize, user: &User) -> RawEntry {
    let mut proxies = Vec::new();
    if let Some(domain) = user.primary {
        proxies.push(format!("SMTP:u{index}@{}", DOMAINS[usize::from(domain)]));
    }
    for (n, domain) in user.secondaries.iter().enumerate() {
        proxies.push(format!(
            "smtp:u{index}.{n}@{}",
            DOMAINS[usize::from(*domain)]
        ));
    }
    let state = ["legacy", "migrating", "migrated"][usize::from(user.state)];
    // Migrated users need a target; migrating ones may have one.
    let target = if user.state == 2 || user.target {
        format!("SMTP:t{index}@modern.example.com")
    } else {
        String::new()
    };
    RawEntry {
        line: index + 2,
        id: None,
        display_name: RawField::new(user.display.clone()),
        // The index keeps names unique whatever the generator draws.
        legacy_name: RawField::new(format!("{}{index}, {}", user.last, user.first)),
        post_office: RawField::new(user.po.clone()),
        proxy_addresses: proxies.into_iter().map(RawField::new).collect(),
        target_address: RawField::new(target),
        state: RawField::new(state),
    }
}

/// Tags valid this many days in the tests.
const LIFETIME: u16 = 30;

fn config(hold: bool, ie8: bool, key: [u8; 32]) -> RouterConfig {
    RouterConfig {
        cutover: if hold { Cutover::Hold } else { Cutover::Legacy },
        dialect: if ie8 { Dialect::Ie8 } else { Dialect::Ie5 },
        post_offices: vec!["HQ".to_owned(), "BRANCH".to_owned(), "Ferguson".to_owned()],
        reply_tags: Some(ReplyTags::new(
            TagKeys {
                current: TagKey::new(key),
                previous: None,
            },
            LIFETIME,
        )),
        ..RouterConfig::default()
    }
}

fn refused(decision: &Destination) -> bool {
    matches!(
        decision,
        Destination::Reject {
            code: RejectCode::UserUnknown,
            ..
        }
    )
}

/// The same address with its reply tag replaced by `tag` (or removed).
fn retagged(address: &EmailAddress, tag: Option<&str>) -> EmailAddress {
    try_retagged(address, tag).unwrap()
}

/// As [`retagged`], `None` when the result is no longer a valid address (too long).
fn try_retagged(address: &EmailAddress, tag: Option<&str>) -> Option<EmailAddress> {
    let local = address.local();
    let (head, quoted) = match local.strip_prefix('"').and_then(|l| l.strip_suffix('"')) {
        Some(inner) => (inner.rsplit_once('%').unwrap().0.to_owned(), true),
        None => (local.rsplit_once('.').unwrap().0.to_owned(), false),
    };
    let local = match (tag, quoted) {
        (Some(tag), true) => format!("\"{head}%{tag}\""),
        (Some(tag), false) => format!("{head}.{tag}"),
        (None, true) => format!("\"{head}\""),
        (None, false) => head,
    };
    EmailAddress::new(&local, address.domain()).ok()
}

/// What the legacy side receives: the rendered text, read back.
fn as_received(router: &Router<'_>, address: &LegacyAddress) -> LegacyAddress {
    let text = router.render(address).unwrap();
    if router.config().dialect == Dialect::Ie8 {
        assert!(!text.contains(['[', ']']), "{text}");
    }
    parse_address(&text).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn replies_reach_the_current_mailbox(
        users in proptest::collection::vec(user(), 1..12),
        hold in any::<bool>(),
        ie8 in any::<bool>(),
        outside in "[a-z]{1,8}(\\.[a-z]{1,5})?@[a-z]{1,8}\\.(test|org)",
        outside_display in proptest::option::of("[A-Za-z ,]{1,16}"),
        stranger in "[A-Z][a-z]{1,8}(, [A-Z][a-z]{1,8}| [A-Z][a-z]{10,30})",
        key in any::<[u8; 32]>(),
        today in 0u32..100_000,
        later in 0u16..=LIFETIME,
        mutation in (0usize..10, 0usize..32),
    ) {
        let rows: Vec<RawEntry> = users.iter().enumerate().map(|(i, u)| raw(i, u)).collect();
        let directory = Directory::from_raw(rows).unwrap();
        let config = config(hold, ie8, key);
        let router = Router::on(&directory, &config, Day(today));

        for entry in directory.entries() {
            // The sender's current mailbox: where mail for the entry goes now.
            let current = router
                .for_entry(Matched { entry: entry.clone(), by: MatchedBy::LegacyName })
                .destination;

            // Legacy sender -> SMTP; the reply comes in by SMTP.
            let legacy = entry.legacy_address().unwrap();
            let bare = LegacyAddress::Name {
                name: entry.legacy_name().unwrap().to_uppercase(),
                po: None,
                literal: false,
            };
            for sender in [legacy.clone(), bare] {
                let smtp = router.smtp_form(&sender).unwrap();
                if !config.is_our_domain(smtp.address.domain()) {
                    // Outside our domains (a migrated user's target): the reply goes straight
                    // to the mailbox they use now, not through the gateway, which refuses
                    // outside addresses from SMTP clients as relaying.
                    let direct = Destination::Modern { recipient: smtp.address.clone() };
                    prop_assert_eq!(&direct, &current, "{} -> {}", sender, smtp.address);
                    let refused = router.route_smtp(Origin::Smtp, &smtp.address);
                    prop_assert!(
                        matches!(refused.destination, Destination::Reject { code: RejectCode::RelayDenied, .. }),
                        "{} -> {}", sender, smtp.address
                    );
                    continue;
                }
                let reply = router.route_smtp(Origin::Smtp, &smtp.address);
                prop_assert_eq!(&reply.destination, &current, "{} -> {}", sender, smtp.address);
            }

            // SMTP sender (any of the entry's addresses) -> legacy; the reply comes from the
            // legacy side as the post office writes it.
            let mut addresses: Vec<EmailAddress> =
                entry.proxies().iter().filter_map(|p| p.smtp().cloned()).collect();
            addresses.extend(entry.target_address().cloned());
            for address in addresses {
                let form = router.legacy_form(&address, Some(entry.display_name()));
                let received = as_received(&router, &form.address);
                let reply = router.route_legacy(Origin::Legacy, &received);
                prop_assert_eq!(&reply.destination, &current, "{} -> {}", address, received);
            }
        }

        // An outside SMTP sender: the reply goes back out through the modern next hop.
        let outside: EmailAddress = outside.parse().unwrap();
        let form = router.legacy_form(&outside, outside_display.as_deref());
        let received = as_received(&router, &form.address);
        let reply = router.route_legacy(Origin::Legacy, &received);
        prop_assert_eq!(
            reply.destination,
            Destination::Modern { recipient: outside.clone() },
            "{} -> {}", outside, received
        );

        // A legacy sender missing from the directory: the tagged address the gateway issues
        // is accepted back at RCPT (today and until the lifetime ends, also by a router on
        // another day) and routes to that sender; the same address expired, without its tag,
        // with a mutated tag or tagged for another name is refused with 550 5.1.1.
        let later_router = Router::on(&directory, &config, Day(today + u32::from(later)));
        let expired_router =
            Router::on(&directory, &config, Day(today + u32::from(LIFETIME) + 1));
        let accepted = |address: &EmailAddress| {
            router.route_smtp(Origin::Smtp, address).destination
        };
        let mut issued = Vec::new();
        for text in [
            format!("{stranger} at BRANCH"),
            stranger.clone(),
            format!(",{stranger} at Ferguson"),
        ] {
            let sender = parse_address(&text).unwrap();
            let smtp = router.smtp_form(&sender).unwrap();
            let expected = Destination::Legacy {
                address: match &sender {
                    LegacyAddress::Name { name, po: None, literal } => LegacyAddress::Name {
                        name: name.clone(),
                        po: Some(config.post_office.clone()),
                        literal: *literal,
                    },
                    other => other.clone(),
                },
            };
            let (_, tag) = decode_tagged(&smtp.address).unwrap();
            let tag = tag.unwrap();
            prop_assert_eq!(&accepted(&smtp.address), &expected, "{} -> {}", text, smtp.address);
            let case_changed = EmailAddress::new(
                &smtp.address.local().to_uppercase(),
                smtp.address.domain(),
            ).unwrap();
            // A peer that changes the case of the local part: names are case-insensitive.
            prop_assert_eq!(
                format!("{:?}", accepted(&case_changed)).to_lowercase(),
                format!("{expected:?}").to_lowercase(),
                "{}", case_changed
            );
            prop_assert_eq!(
                &later_router.route_smtp(Origin::Smtp, &smtp.address).destination,
                &expected,
                "{} a few days later", smtp.address
            );
            prop_assert!(
                refused(&expired_router.route_smtp(Origin::Smtp, &smtp.address).destination),
                "{} expired", smtp.address
            );
            prop_assert!(
                refused(&accepted(&retagged(&smtp.address, None))),
                "{} without its tag", smtp.address
            );
            // One character of the tag changed (to another base32 character).
            let (at, by) = mutation;
            let alphabet = b"abcdefghijklmnopqrstuvwxyz234567";
            let mut mutated: Vec<u8> = tag.to_ascii_lowercase().into_bytes();
            let old = mutated[at];
            let old_index = alphabet.iter().position(|&c| c == old).unwrap();
            mutated[at] = alphabet[(old_index + 1 + by % 31) % 32];
            let mutated = String::from_utf8(mutated).unwrap();
            prop_assert!(
                refused(&accepted(&retagged(&smtp.address, Some(&mutated)))),
                "{} with tag {}", smtp.address, mutated
            );
            // A character outside base32, or one too many.
            for bad in [format!("{}1", &mutated[1..]), format!("{mutated}a")] {
                if let Some(address) = try_retagged(&smtp.address, Some(&bad)) {
                    prop_assert!(refused(&accepted(&address)), "{}", address);
                }
            }
            // Mail already accepted is routed whatever its tag says.
            prop_assert_eq!(
                &expired_router.accepted().route_smtp(Origin::Smtp, &smtp.address).destination,
                &expected
            );
            issued.push((smtp.address, tag));
        }
        // A tag made for one name does not open another.
        if let [(first, first_tag), (second, _), ..] = issued.as_slice() {
            let swapped = retagged(second, Some(first_tag));
            prop_assert!(
                first == second || refused(&accepted(&swapped)),
                "{} with the tag of {}", swapped, first
            );
        }

        // Post offices outside [legacy] post_offices and bulletin boards are not reachable
        // from SMTP, whatever the tag.
        for text in [format!("{stranger} at PO5"), "#Social at HQ".to_owned()] {
            let sender = parse_address(&text).unwrap();
            let smtp = router.smtp_form(&sender).unwrap();
            prop_assert!(refused(&accepted(&smtp.address)), "{} -> {}", text, smtp.address);
        }
    }
}

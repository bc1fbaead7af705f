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
    Cutover, Destination, Directory, Matched, MatchedBy, Origin, RawEntry, RawField, Router,
    RouterConfig,
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

fn config(hold: bool, ie8: bool) -> RouterConfig {
    RouterConfig {
        cutover: if hold { Cutover::Hold } else { Cutover::Legacy },
        dialect: if ie8 { Dialect::Ie8 } else { Dialect::Ie5 },
        ..RouterConfig::default()
    }
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
        stranger in "[A-Z][a-z]{1,8}, [A-Z][a-z]{1,8}",
    ) {
        let rows: Vec<RawEntry> = users.iter().enumerate().map(|(i, u)| raw(i, u)).collect();
        let directory = Directory::from_raw(rows).unwrap();
        let config = config(hold, ie8);
        let router = Router::new(&directory, &config);

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

        // A legacy sender missing from the directory: the generated address routes back to it.
        for text in [
            format!("{stranger} at BRANCH"),
            stranger.clone(),
            format!(",{stranger} at Ferguson"),
            "#Social at PO5".to_owned(),
        ] {
            let sender = parse_address(&text).unwrap();
            let smtp = router.smtp_form(&sender).unwrap();
            let reply = router.route_smtp(Origin::Smtp, &smtp.address);
            let expected = match &sender {
                LegacyAddress::Name { name, po: None, literal } => LegacyAddress::Name {
                    name: name.clone(),
                    po: Some(config.post_office.clone()),
                    literal: *literal,
                },
                other => other.clone(),
            };
            prop_assert_eq!(
                reply.destination,
                Destination::Legacy { address: expected },
                "{} -> {}", text, smtp.address
            );
        }
    }
}

//! Round trips of legacy addresses (`legacy-format.md` §7).
//!
//! - For generated addresses of every form: `render(a, ie8)` reads back, holds no `[`/`]`, and
//!   rendering what was read gives the same text (idempotent after one normalisation); the same
//!   for `ie5`, brackets allowed.
//! - For canonical `ie8` values (names, literal names, bulletin boards, foreign addresses,
//!   quoted display names): `parse(render(a)) == a`.
//! - `parse_address` never panics, on any string and on strings built from address tokens.

use ccgate_ccmail::{AddressError, Dialect, LegacyAddress, RenderOptions, parse_address};
use proptest::prelude::*;
use proptest::sample::select;

const GATEWAY: &str = "SMTPGW";

fn opts(dialect: Dialect) -> RenderOptions {
    RenderOptions {
        dialect,
        gateway_po: GATEWAY.to_owned(),
    }
}

fn is_at(word: &str) -> bool {
    word.eq_ignore_ascii_case("at")
}

/// A name word: letters first, then letters, digits and the punctuation names use.
fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z][A-Za-z0-9'+.-]{0,8}",
        "[A-Za-zÀ-ÿ][a-zà-ÿ]{0,6}",
        select(vec!["at", "AT", "At", "Schedule+", "-", "O'Brien", "Jr."]).prop_map(str::to_owned),
    ]
}

/// A directory name: one to four words joined by spaces, commas or ` - `.
fn name_text() -> impl Strategy<Value = String> {
    (
        word(),
        prop::collection::vec((select(vec![" ", ", ", " - ", "  "]), word()), 0..4),
    )
        .prop_map(|(first, rest)| {
            let mut name = first;
            for (sep, w) in rest {
                name.push_str(sep);
                name.push_str(&w);
            }
            name
        })
        .prop_filter("starts with a letter", |n| {
            n.starts_with(|c: char| c.is_alphabetic())
        })
}

/// A name that reads back alone (no PO): no `at` word anywhere.
fn bare_name_text() -> impl Strategy<Value = String> {
    name_text().prop_filter("no `at` word", |n| !n.split(' ').any(is_at))
}

/// A post-office name: one or two words, never the word `at`.
fn po_name() -> impl Strategy<Value = String> {
    "[A-Z][A-Za-z0-9]{0,7}( [A-Z][A-Za-z0-9]{0,5})?"
        .prop_filter("no `at` word", |p| !p.split(' ').any(is_at))
}

/// An RFC 5321 mailbox, sometimes upper-cased as PMDF writes it.
fn smtp_address() -> impl Strategy<Value = String> {
    (
        prop::collection::vec("[a-z0-9_+-]{1,8}", 1..3),
        prop::collection::vec("[a-z0-9]{1,8}", 1..3),
        "[a-z]{2,4}",
        any::<bool>(),
    )
        .prop_map(|(local, labels, tld, upper)| {
            let address = format!("{}@{}.{tld}", local.join("."), labels.join("."));
            if upper {
                address.to_uppercase()
            } else {
                address
            }
        })
}

/// A display name in the stored normal form: words, single spaces, commas allowed.
fn display_text() -> impl Strategy<Value = String> {
    (
        word(),
        prop::collection::vec((select(vec![" ", ", ", " - "]), word()), 0..4),
    )
        .prop_map(|(first, rest)| {
            rest.into_iter().fold(first, |mut display, (sep, w)| {
                display.push_str(sep);
                display.push_str(&w);
                display
            })
        })
}

/// Canonical `ie8` values: `parse(render(a)) == a`.
fn canonical() -> impl Strategy<Value = LegacyAddress> {
    prop_oneof![
        (name_text(), po_name(), any::<bool>()).prop_map(|(name, po, literal)| {
            LegacyAddress::Name {
                name,
                po: Some(po),
                literal,
            }
        }),
        (bare_name_text(), any::<bool>()).prop_map(|(name, literal)| LegacyAddress::Name {
            name,
            po: None,
            literal,
        }),
        (name_text(), po_name())
            .prop_map(|(name, po)| LegacyAddress::BulletinBoard { name, po: Some(po) }),
        bare_name_text().prop_map(|name| LegacyAddress::BulletinBoard { name, po: None }),
        (smtp_address(), po_name()).prop_map(|(address, po)| LegacyAddress::Foreign {
            address,
            po: Some(po),
        }),
        (display_text(), proptest::option::of(po_name()))
            .prop_map(|(display, po)| LegacyAddress::DisplayName { display, po }),
    ]
}

/// Address text of every form of §7, as found in legacy files.
fn any_form_text() -> impl Strategy<Value = String> {
    let at_po = || proptest::option::of((select(vec![" at ", " AT ", "  At  "]), po_name()));
    let with_po = |text: String, po: Option<(&str, String)>| match po {
        Some((sep, po)) => format!("{text}{sep}{po}"),
        None => text,
    };
    prop_oneof![
        // Name at PO, bare names, literal names.
        (name_text(), po_name()).prop_map(|(n, p)| format!("{n} at {p}")),
        bare_name_text(),
        (name_text(), po_name()).prop_map(|(n, p)| format!(",{n} at {p}")),
        (word(), word(), po_name()).prop_map(|(a, b, p)| format!("{a} [{b}] at {p}")),
        // Bulletin boards.
        (name_text(), at_po()).prop_map(move |(n, p)| with_po(format!("#{n}"), p)),
        // Foreign addresses.
        (smtp_address(), at_po()).prop_map(move |(a, p)| with_po(a, p)),
        // RFC 822 phrases.
        (display_text(), smtp_address(), at_po())
            .prop_map(move |(d, a, p)| with_po(format!("\"{d}\" <{a}>"), p)),
        (bare_name_text(), smtp_address(), at_po())
            .prop_map(move |(d, a, p)| with_po(format!("{d} <{a}>"), p)),
        (word(), word(), smtp_address(), at_po())
            .prop_map(move |(d, c, a, p)| with_po(format!("{d} ({c}) <{a}>"), p)),
        (smtp_address(), display_text(), at_po())
            .prop_map(move |(a, d, p)| with_po(format!("{a} ({d})"), p)),
        // Quoted display names (KB Q179677).
        (display_text(), at_po()).prop_map(move |(d, p)| with_po(format!("\"{d}\""), p)),
        // Bracketed one-offs.
        (
            any::<bool>(),
            proptest::option::of(display_text()),
            smtp_address(),
            at_po()
        )
            .prop_map(move |(lit, d, a, p)| {
                let comma = if lit { "," } else { "" };
                let display = d.map(|d| format!("{d} ")).unwrap_or_default();
                with_po(format!("{comma}{display}[SMTP:{a}]"), p)
            }),
        (name_text(), po_name(), at_po())
            .prop_map(move |(n, po, p)| with_po(format!("[ccmail:{n} at {po}]"), p)),
        (smtp_address(), at_po())
            .prop_map(move |(a, p)| with_po(format!("[ccmail:{a} at internet]"), p)),
        (display_text(), word(), at_po())
            .prop_map(move |(d, s, p)| with_po(format!("{d} [X400:c=US;a= ;s={s}]"), p)),
    ]
}

/// Tokens that make parsers take unusual branches.
const TOKENS: &[&str] = &[
    "[", "]", "<", ">", "\"", ",", "@", "#", "(", ")", " ", "  ", "at", "AT", " at ", " AT ",
    "SMTP:", "ccmail:", "X400:", "\\", ";", ":", ".", "-", "a", "b", "Smith", "PO", "u@d", "é",
    "\u{a0}", "\t",
];

fn token_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(select(TOKENS), 0..24).prop_map(|parts| parts.concat())
}

/// The properties every parsed value must have when rendered.
fn check_rendering(text: &str) -> Result<(), TestCaseError> {
    let Ok(address) = parse_address(text) else {
        return Ok(());
    };
    for dialect in [Dialect::Ie5, Dialect::Ie8] {
        let options = opts(dialect);
        match address.render(&options) {
            Ok(rendered) => {
                if dialect == Dialect::Ie8 {
                    prop_assert!(!rendered.contains(['[', ']']), "{text:?} -> {rendered:?}");
                }
                let back = parse_address(&rendered);
                prop_assert!(back.is_ok(), "{text:?} -> {rendered:?}: {back:?}");
                let back = back.map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(Ok(back.clone()), address.to_dialect(&options));
                prop_assert_eq!(back.render(&options), Ok(rendered));
            }
            // A value read from a file must never be rendered as something that reads back
            // differently; the other refusals are legitimate (no ie8 form, too long).
            Err(err) => prop_assert!(
                !matches!(err, AddressError::Ambiguous { .. }),
                "{text:?} ({address:?}): {err}"
            ),
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn canonical_ie8_values_round_trip(address in canonical()) {
        let options = opts(Dialect::Ie8);
        let rendered = address.render(&options);
        prop_assert!(rendered.is_ok(), "{address:?}: {rendered:?}");
        let rendered = rendered.map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(!rendered.contains(['[', ']']));
        prop_assert_eq!(parse_address(&rendered), Ok(address.clone()), "{}", rendered);
        // The ie5 form of a canonical value is the same text.
        prop_assert_eq!(address.render(&opts(Dialect::Ie5)), Ok(rendered));
    }

    #[test]
    fn every_form_renders_idempotently(text in any_form_text()) {
        let address = parse_address(&text);
        prop_assert!(address.is_ok(), "{text:?}: {address:?}");
        let address = address.map_err(|e| TestCaseError::fail(e.to_string()))?;
        for dialect in [Dialect::Ie5, Dialect::Ie8] {
            let options = opts(dialect);
            let rendered = address.render(&options);
            prop_assert!(rendered.is_ok(), "{text:?} {dialect:?}: {rendered:?}");
            let rendered = rendered.map_err(|e| TestCaseError::fail(e.to_string()))?;
            if dialect == Dialect::Ie8 {
                prop_assert!(!rendered.contains(['[', ']']), "{text:?} -> {rendered:?}");
            }
            let back = parse_address(&rendered);
            prop_assert!(back.is_ok(), "{text:?} -> {rendered:?}: {back:?}");
            let back = back.map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(back.render(&options), Ok(rendered.clone()));
            // The SMTP address survives every dialect.
            prop_assert_eq!(
                back.smtp_address(),
                address.smtp_address(),
                "{:?} -> {:?}",
                text,
                rendered
            );
        }
    }

    #[test]
    fn never_panics_on_any_string(text in any::<String>()) {
        check_rendering(&text)?;
    }

    #[test]
    fn never_panics_on_address_tokens(text in token_soup()) {
        check_rendering(&text)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn many_token_soups(text in token_soup()) {
        check_rendering(&text)?;
    }
}

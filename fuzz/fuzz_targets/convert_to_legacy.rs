//! MIME -> legacy on arbitrary bytes: never panics, and what it makes is a message the strict
//! writer accepts for the post office in both dialects (what the legacy agent relies on).
#![no_main]

use ccgate_ccmail::{Dialect, write_messages};
use ccgate_convert::{ConvertOptions, DefaultAddressMap, mime_to_legacy};
use libfuzzer_sys::fuzz_target;

#[path = "shared/mail_parser_panics.rs"]
mod mail_parser_panics;
use mail_parser_panics::contain_mail_parser_panics;

fuzz_target!(|data: &[u8]| {
    contain_mail_parser_panics();
    let map = DefaultAddressMap::new("legacy.example.com", "HQ", "SMTPGW");
    for dialect in [Dialect::Ie8, Dialect::Ie5] {
        let opts = ConvertOptions {
            dialect,
            ..ConvertOptions::default()
        };
        let conversion = mime_to_legacy(data, &opts, &map);
        let mut out = Vec::new();
        if let Err(e) = write_messages(&conversion.message, &opts.write_options(), &mut out) {
            panic!("the writer refused a converted message ({dialect:?}): {e}");
        }
        assert!(!out.is_empty());
    }
});

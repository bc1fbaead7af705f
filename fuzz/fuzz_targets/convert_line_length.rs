//! Fitting long lines for an SMTP next hop, on arbitrary bytes: never panics, and leaves a
//! message whose lines already fit untouched.
#![no_main]

use std::borrow::Cow;

use ccgate_convert::fit_line_length;
use libfuzzer_sys::fuzz_target;

#[path = "shared/mail_parser_panics.rs"]
mod mail_parser_panics;
use mail_parser_panics::contain_mail_parser_panics;

fuzz_target!(|data: &[u8]| {
    contain_mail_parser_panics();
    for max in [78usize, 998] {
        let fitted = fit_line_length(data, max);
        let fits = data.split(|&b| b == b'\n').all(|l| {
            let l = l.strip_suffix(b"\r").unwrap_or(l);
            l.len() <= max
        });
        if fits {
            assert!(matches!(fitted, Cow::Borrowed(_)));
        }
    }
});

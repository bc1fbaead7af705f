//! The reply-tag parser and the tagged generated forms on arbitrary text: never panics; a tag
//! that parses re-reads the same; no address the fuzzer makes up verifies unless it is exactly
//! what the gateway issues for that name, and every issued address decodes to its name and tag.
#![no_main]

use ccgate_core::EmailAddress;
use ccgate_router::{
    Day, Generated, ReplyTags, TagKey, TagKeys, decode_tagged, encode_tagged, parse_tag,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let tags = ReplyTags::new(
        TagKeys {
            current: TagKey::new([0x5a; 32]),
            previous: Some(TagKey::new([0xa5; 32])),
        },
        30,
    );
    let today = Day(20_000);

    // The parser alone.
    if let Ok(raw) = parse_tag(text) {
        assert!(raw.stamp < 1024);
        assert!(raw.mac < 1 << 40);
    }

    // The text as a local part in the legacy domain: decoding never panics, and a tag found
    // verifies only when it is the one the gateway makes for the decoded name.
    if let Ok(address) = EmailAddress::new(text, "legacy.example.com")
        && let Some((Generated::Legacy(legacy), tag)) = decode_tagged(&address)
    {
        let name = legacy.to_string();
        let status = tags.verify(&name, tag.as_deref(), today);
        if status.is_valid() {
            let tag = tag.unwrap_or_default().to_ascii_lowercase();
            let made = (-1i64..=30).any(|age| {
                let day = Day(u32::try_from(20_000 - age).unwrap_or(0));
                tags.make(&name, day) == tag
            });
            assert!(made, "{text:?} verified without being issued");
        }
        // What the gateway would issue for that name decodes back to it, with its tag.
        let issued = tags.make(&name, today);
        if let Ok(encoded) = encode_tagged(&legacy, "legacy.example.com", Some(&issued)) {
            let (again, tag) = decode_tagged(&encoded).expect("an issued address decodes");
            assert_eq!(again, Generated::Legacy(legacy), "{encoded}");
            assert_eq!(tag.as_deref(), Some(issued.as_str()), "{encoded}");
            assert!(tags.verify(&name, tag.as_deref(), today).is_valid());
        }
    }
});

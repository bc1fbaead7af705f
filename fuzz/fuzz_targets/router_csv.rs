//! The directory CSV reader on arbitrary bytes: never panics; every problem has a line and a
//! column; a directory it accepts finds each entry again by its own primary SMTP address and
//! legacy name.
#![no_main]

use ccgate_router::Directory;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match Directory::from_csv(data) {
        Ok(directory) => {
            for entry in directory.entries() {
                if let Some(address) = entry.primary_smtp() {
                    let found = directory.lookup_smtp(address).expect("own address found");
                    assert_eq!(found.entry.line(), entry.line());
                }
                if let Some(key) = entry.legacy_address().and_then(|a| a.name_key()) {
                    let found = directory
                        .lookup_name_key(&key)
                        .expect("own legacy name found");
                    assert_eq!(found.entry.line(), entry.line());
                }
            }
        }
        Err(error) => {
            let text = error.to_string();
            assert!(!text.is_empty());
        }
    }
});

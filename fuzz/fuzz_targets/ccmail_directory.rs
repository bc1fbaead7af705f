//! The directory reader on arbitrary bytes: never panics; what it reads, the writer writes and
//! the reader reads back unchanged (modulo Export's sort order).
#![no_main]

use ccgate_ccmail::{Codepage, parse_directory, write_directory};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (entries, _errors) = parse_directory(data, Codepage::Ibm850);
    let (bytes, _) = write_directory(&entries, Codepage::Ibm850);
    let (again, errors) = parse_directory(&bytes, Codepage::Ibm850);
    assert!(errors.is_empty(), "{errors:?}");
    let (bytes2, _) = write_directory(&again, Codepage::Ibm850);
    assert_eq!(bytes, bytes2);
});

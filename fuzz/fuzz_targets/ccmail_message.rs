//! The message reader on arbitrary bytes: never panics, never loops, and the streaming reader
//! (fed in chunks whose size comes from the first byte) agrees with the slice reader.
#![no_main]

use ccgate_ccmail::{ReadError, ReadOptions, Reader, SliceReader};
use libfuzzer_sys::fuzz_target;

struct Chunks<'a>(&'a [u8], usize);

impl std::io::Read for Chunks<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.1.min(buf.len()).min(self.0.len());
        let (head, tail) = self.0.split_at(n);
        buf[..n].copy_from_slice(head);
        self.0 = tail;
        Ok(n)
    }
}

fuzz_target!(|data: &[u8]| {
    let (step, input) = match data.split_first() {
        Some((first, rest)) => (usize::from(*first % 64) + 1, rest),
        None => (1, data),
    };
    let opts = ReadOptions::default();
    let slice: Vec<_> = SliceReader::new(input)
        .map(|r| r.map(|m| m.decode(&opts).0).map_err(|e| e.position))
        .collect();
    let stream: Vec<_> = Reader::new(Chunks(input, step), opts.clone())
        .map(|r| match r {
            Ok(m) => Ok(m.message),
            Err(ReadError::Parse { error, .. }) => Err(error.position),
            Err(e) => panic!("reading from memory failed: {e}"),
        })
        .collect();
    assert_eq!(slice, stream);
    // Also read with the alphabet-mapped copy: structure tokens are likelier.
    let mapped: Vec<u8> = input
        .iter()
        .map(|b| match b % 8 {
            0 => b'\n',
            1 => b'\r',
            2 => b':',
            3 => b' ',
            4 => b'0' + (b / 8) % 10,
            _ => *b,
        })
        .collect();
    for r in SliceReader::new(&mapped) {
        if let Ok(m) = r {
            let _ = m.decode(&opts);
        }
    }
});

//! The spool's record decoder and recovery on arbitrary bytes as a journal segment: a read-only
//! view and a full open both take the segment without a panic, and every message they keep
//! can be listed and shown (what `ccgate queue list|show` and `ccgate run` do after a crash).
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use ccgate_queue::{Filter, QueueView, Spool, SpoolOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // On a memory file system where there is one: fsync is then nearly free.
    let dir = tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .expect("temp dir");
    let journal = dir.path().join("journal");
    std::fs::create_dir_all(&journal).expect("journal folder");
    std::fs::write(journal.join("J00000001.log"), data).expect("segment");
    let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    if let Ok(view) = QueueView::open(dir.path()) {
        for id in view.ids(&Filter::default(), now) {
            let _ = view.show(id, now);
        }
    }
    let options = SpoolOptions {
        min_free: 0,
        ..SpoolOptions::default()
    };
    if let Ok(spool) = Spool::open(dir.path(), options) {
        let _ = spool.depth(now);
        let _ = spool.close();
    }
});

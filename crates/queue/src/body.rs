//! A message body handed to the spool in parts, so that no layer has to hold a large message
//! in memory whole, or copy it, to queue it: shared buffers ([`Bytes`]), and a spill file
//! that a receiver writes the message text to as it arrives ([`Spool::spill_file`]).
//!
//! [`Spool::spill_file`]: crate::Spool::spill_file

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use bytes::Bytes;

use crate::error::{IoContext, Result};

/// Octets read from a spill file at a time (checksum, copy into the data segment).
pub(crate) const SPILL_CHUNK: usize = 1 << 20;

/// One part of a message body.
#[derive(Debug)]
pub enum BodyPart {
    /// Octets in memory, shared with the caller.
    Bytes(Bytes),
    /// Everything written to a spill file.
    File(SpillFile),
}

impl From<Bytes> for BodyPart {
    fn from(bytes: Bytes) -> Self {
        Self::Bytes(bytes)
    }
}

impl BodyPart {
    /// The part's length in octets.
    pub fn len(&self) -> u64 {
        match self {
            Self::Bytes(b) => b.len() as u64,
            Self::File(f) => f.len,
        }
    }

    /// True for an empty part.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A temporary file in the spool's folder, already unlinked (nothing is left behind by a
/// crash), that a receiver appends message text to; queued as a [`BodyPart::File`], its
/// content is copied into the spool's data segment by the writer, a chunk at a time.
#[derive(Debug)]
pub struct SpillFile {
    file: File,
    len: u64,
    /// Where the file was created (for error messages; the name is gone).
    path: PathBuf,
}

impl SpillFile {
    pub(crate) fn new(file: File, path: PathBuf) -> Self {
        Self { file, len: 0, path }
    }

    /// Appends `bytes`.
    ///
    /// # Errors
    /// [`QueueError::Io`](crate::QueueError::Io) when the write fails (a full disk among
    /// others: see [`QueueError::is_disk_full`](crate::QueueError::is_disk_full)).
    pub fn append(&mut self, bytes: &[u8]) -> Result<()> {
        self.file.write_all(bytes).at(&self.path)?;
        self.len = self.len.saturating_add(bytes.len() as u64);
        Ok(())
    }

    /// Octets written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Calls `f` with the content, in order, a chunk at a time.
    pub(crate) fn for_each_chunk(
        &self,
        buf: &mut Vec<u8>,
        mut f: impl FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        buf.resize(SPILL_CHUNK, 0);
        let mut offset = 0u64;
        while offset < self.len {
            let want = usize::try_from(self.len - offset)
                .unwrap_or(SPILL_CHUNK)
                .min(SPILL_CHUNK);
            let chunk = buf.get_mut(..want).unwrap_or_default();
            self.file.read_exact_at(chunk, offset).at(&self.path)?;
            f(chunk)?;
            offset += want as u64;
        }
        Ok(())
    }
}

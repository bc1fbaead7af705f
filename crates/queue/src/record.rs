//! The on-disk form: typed journal records and body frames, each with a CRC32 and a commit byte.
//!
//! This is deliberately separate from `ccgate_core::Envelope`: records hold plain strings and
//! small integers so that the format can be decoded without validation failures and evolves
//! on its own (a new record type is a new type code; an unknown code is reported, never guessed).
//!
//! Journal frame (all integers little-endian):
//!
//! ```text
//! magic  0xCC 0x51 | type u8 | len u32 | payload (len bytes) | crc32 u32 | commit 0xC3
//! ```
//!
//! The CRC covers type, len and payload. A frame is valid only when it is complete, its CRC
//! matches and its last byte is the commit byte; anything else is a torn or corrupt write.
//!
//! Body frame (in data segments):
//!
//! ```text
//! magic 0xCC 0xB0 | id u128 | len u64 | header crc32 u32 | body (len bytes) | body crc32 u32 | commit 0xC3
//! ```

use ccgate_core::QueueId;

use crate::outcome::{FailureScope, Severity, StatusCode};

/// First bytes of every journal frame.
pub(crate) const JOURNAL_MAGIC: [u8; 2] = [0xCC, 0x51];
/// First bytes of every body frame.
pub(crate) const BODY_MAGIC: [u8; 2] = [0xCC, 0xB0];
/// First bytes of every journal copy frame (a writer pass's journal bytes, repeated in the
/// data segment so that one fsync makes them durable).
pub(crate) const COPY_MAGIC: [u8; 2] = [0xCC, 0x5C];
/// Bytes of a journal copy frame before the copied bytes.
pub(crate) const COPY_HEADER_LEN: usize = 2 + 4 + 8 + 4 + 4;
/// Bytes of a journal copy frame after the copied bytes.
pub(crate) const COPY_TRAILER_LEN: usize = 4 + 1;
/// Largest journal copy accepted when reading one back.
pub(crate) const MAX_COPY_LEN: u32 = 1 << 30;
/// Last byte of every complete frame.
pub(crate) const COMMIT: u8 = 0xC3;
/// Bytes of a journal frame around its payload.
pub(crate) const FRAME_OVERHEAD: usize = 2 + 1 + 4 + 4 + 1;
/// Bytes of a body frame before the body.
pub(crate) const BODY_HEADER_LEN: usize = 2 + 16 + 8 + 4;
/// Bytes of a body frame after the body.
pub(crate) const BODY_TRAILER_LEN: usize = 4 + 1;
/// Largest journal record payload accepted (a message with thousands of recipients fits).
pub const MAX_RECORD_LEN: usize = 16 << 20;
/// Largest message body the spool stores.
pub const MAX_BODY_LEN: u64 = 1 << 30;
/// Largest string (address, error text) inside a record.
pub const MAX_STRING_LEN: usize = 64 << 10;

/// Why bytes could not be decoded.
pub(crate) type DecodeError = &'static str;

/// A per-recipient state as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RcptState {
    /// Never attempted (or made due again by an administrator): due at its next-attempt time.
    Pending,
    /// Failed transiently; due again at its next-attempt time.
    Deferred,
    /// Held by an administrator or by routing (a user being migrated); never retried or expired.
    Held,
    /// Accepted by the destination. Final.
    Delivered,
    /// Failed permanently (or expired). Final; the sender is owed a bounce.
    Failed,
}

impl RcptState {
    /// Delivered or failed: nothing more will happen to this recipient.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Delivered | Self::Failed)
    }

    fn code(self) -> u8 {
        match self {
            Self::Pending => 0,
            Self::Deferred => 1,
            Self::Held => 2,
            Self::Delivered => 3,
            Self::Failed => 4,
        }
    }

    fn from_code(code: u8) -> Result<Self, DecodeError> {
        Ok(match code {
            0 => Self::Pending,
            1 => Self::Deferred,
            2 => Self::Held,
            3 => Self::Delivered,
            4 => Self::Failed,
            _ => return Err("unknown recipient state"),
        })
    }
}

/// An administrator's action on a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdminAction {
    /// Hold every unfinished recipient: never retried, never expired while held.
    Hold,
    /// Release held recipients and lift a quarantine: due now.
    Release,
    /// Make deferred recipients due now (and give their dead lanes another chance).
    Retry,
    /// Remove the message without a bounce.
    Delete,
    /// Mark the message for re-routing with the current directory (like `postsuper -r`).
    Requeue,
}

impl AdminAction {
    fn code(self) -> u8 {
        match self {
            Self::Hold => 0,
            Self::Release => 1,
            Self::Retry => 2,
            Self::Delete => 3,
            Self::Requeue => 4,
        }
    }

    fn from_code(code: u8) -> Result<Self, DecodeError> {
        Ok(match code {
            0 => Self::Hold,
            1 => Self::Release,
            2 => Self::Retry,
            3 => Self::Delete,
            4 => Self::Requeue,
            _ => return Err("unknown admin action"),
        })
    }
}

/// Where a message body lives: a frame in a data segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct BodyRef {
    /// Data segment number.
    pub seg: u32,
    /// Offset of the frame (not of the body) in the segment.
    pub offset: u64,
    /// Body length.
    pub len: u64,
    /// CRC32 of the body.
    pub crc: u32,
}

impl BodyRef {
    /// Offset just past the frame.
    pub fn frame_end(&self) -> u64 {
        self.offset
            .saturating_add(BODY_HEADER_LEN as u64)
            .saturating_add(self.len)
            .saturating_add(BODY_TRAILER_LEN as u64)
    }
}

/// A delivery error as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ErrorRec {
    pub severity: Severity,
    pub scope: FailureScope,
    pub status: Option<StatusCode>,
    pub diagnostic: Option<String>,
    pub text: String,
    pub at_ms: u64,
}

/// One recipient as stored in an enqueue or snapshot record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RcptRec {
    /// The address delivered to (after routing).
    pub addr: String,
    /// The address as received, when routing rewrote it.
    pub orig: Option<String>,
    /// The lane ("" while unrouted).
    pub dest: String,
    pub state: RcptState,
    pub attempts: u16,
    pub next_ms: u64,
    pub bounced: bool,
    /// The lease of an attempt in flight, 0 if none.
    pub lease: u64,
    pub error: Option<ErrorRec>,
}

/// A whole message as stored: at enqueue, or as a snapshot written by compaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MessageRec {
    pub id: QueueId,
    pub arrival_ms: u64,
    pub body: BodyRef,
    /// The envelope sender, "" for the null sender.
    pub sender: String,
    pub needs_routing: bool,
    pub crashes: u16,
    pub quarantine: Option<String>,
    /// For a bounce: the message and recipient indices it reports on.
    pub bounce_for: Option<(QueueId, Vec<u16>)>,
    pub rcpts: Vec<RcptRec>,
    /// Where `max_lifetime` counts from when not the arrival (mail held at a cutover), kept by
    /// snapshots. Encoded last and only when set: a record without it reads as before.
    pub lifetime_from_ms: Option<u64>,
    /// The ledger keys this message fulfils (a picked-up legacy message's Message-ID, a
    /// replayed message's keys), so that a crash between queueing and the ledger's own write
    /// cannot queue it twice. Encoded after `lifetime_from_ms` (then written as 0 when unset)
    /// and only when not empty.
    pub origins: Vec<String>,
}

/// The result of one attempt for one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResultKind {
    Delivered,
    Deferred { next_ms: u64 },
    Failed,
}

/// One recipient's result inside an outcome record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RcptResult {
    pub idx: u16,
    pub kind: ResultKind,
    /// False when the decision was made without an attempt (expiry).
    pub attempted: bool,
    pub error: Option<ErrorRec>,
}

/// A new route for one recipient (after requeue, or for a bounce).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RouteRec {
    pub idx: u16,
    pub addr: String,
    pub dest: String,
    pub hold: bool,
}

/// One journal record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Record {
    /// First record of every journal segment.
    Header { seq: u32, created_ms: u64 },
    /// A newly accepted message.
    Enqueue(MessageRec),
    /// The complete current state of a message, written by compaction; replaces what came before.
    Snapshot(MessageRec),
    /// A delivery attempt started (lease handed out).
    Attempt {
        id: QueueId,
        lease: u64,
        at_ms: u64,
        rcpts: Vec<u16>,
    },
    /// Results of an attempt (lease 0: decided without one, e.g. expiry).
    Outcome {
        id: QueueId,
        lease: u64,
        at_ms: u64,
        results: Vec<RcptResult>,
    },
    /// An attempt crashed or timed out: its recipients are deferred to `next_ms`, the message's
    /// crash count grows, and it may be quarantined.
    Crash {
        id: QueueId,
        lease: u64,
        at_ms: u64,
        next_ms: u64,
        reason: String,
        quarantine: bool,
    },
    /// An attempt was given back unfinished (clean shutdown): no count, due again.
    Abandon { id: QueueId, lease: u64 },
    /// An administrator's action (hold, release, retry, delete, requeue).
    Admin {
        id: QueueId,
        at_ms: u64,
        action: AdminAction,
    },
    /// New routes for recipients of a message marked for routing.
    Route {
        id: QueueId,
        at_ms: u64,
        routes: Vec<RouteRec>,
    },
    /// A lane was marked dead until `dead_until_ms` (0: alive again).
    Lane {
        name: String,
        at_ms: u64,
        dead_until_ms: u64,
        reason: String,
    },
}

impl Record {
    fn type_code(&self) -> u8 {
        match self {
            Self::Header { .. } => 1,
            Self::Enqueue(_) => 2,
            Self::Snapshot(_) => 3,
            Self::Attempt { .. } => 4,
            Self::Outcome { .. } => 5,
            Self::Crash { .. } => 6,
            Self::Abandon { .. } => 7,
            Self::Admin { .. } => 8,
            Self::Route { .. } => 9,
            Self::Lane { .. } => 10,
        }
    }

    /// The message this record is about, if any.
    pub fn queue_id(&self) -> Option<QueueId> {
        match self {
            Self::Header { .. } | Self::Lane { .. } => None,
            Self::Enqueue(m) | Self::Snapshot(m) => Some(m.id),
            Self::Attempt { id, .. }
            | Self::Outcome { id, .. }
            | Self::Crash { id, .. }
            | Self::Abandon { id, .. }
            | Self::Admin { id, .. }
            | Self::Route { id, .. } => Some(*id),
        }
    }

    /// Appends the complete frame of this record to `out`.
    pub fn encode_frame(&self, out: &mut Vec<u8>) {
        frame_with(self.type_code(), out, |e| self.encode_payload(e));
    }

    /// Appends the frame of this record to `out` if its payload fits [`MAX_RECORD_LEN`], the
    /// limit recovery enforces; otherwise leaves `out` as it was and returns the payload's
    /// size (a record recovery would throw away must never be written).
    pub fn try_encode_frame(&self, out: &mut Vec<u8>) -> Result<(), u64> {
        checked(out, |out| self.encode_frame(out))
    }

    fn encode_payload(&self, e: &mut Enc<'_>) {
        match self {
            Self::Header { seq, created_ms } => {
                e.u32(*seq);
                e.u64(*created_ms);
            }
            Self::Enqueue(m) | Self::Snapshot(m) => encode_message(e, m),
            Self::Attempt {
                id,
                lease,
                at_ms,
                rcpts,
            } => {
                e.id(*id);
                e.u64(*lease);
                e.u64(*at_ms);
                e.len(rcpts.len());
                for r in rcpts {
                    e.u16(*r);
                }
            }
            Self::Outcome {
                id,
                lease,
                at_ms,
                results,
            } => {
                e.id(*id);
                e.u64(*lease);
                e.u64(*at_ms);
                e.len(results.len());
                for r in results {
                    e.u16(r.idx);
                    match r.kind {
                        ResultKind::Delivered => e.u8(0),
                        ResultKind::Deferred { next_ms } => {
                            e.u8(1);
                            e.u64(next_ms);
                        }
                        ResultKind::Failed => e.u8(2),
                    }
                    e.bool(r.attempted);
                    encode_error(e, r.error.as_ref());
                }
            }
            Self::Crash {
                id,
                lease,
                at_ms,
                next_ms,
                reason,
                quarantine,
            } => {
                e.id(*id);
                e.u64(*lease);
                e.u64(*at_ms);
                e.u64(*next_ms);
                e.str(reason);
                e.bool(*quarantine);
            }
            Self::Abandon { id, lease } => {
                e.id(*id);
                e.u64(*lease);
            }
            Self::Admin { id, at_ms, action } => {
                e.id(*id);
                e.u64(*at_ms);
                e.u8(action.code());
            }
            Self::Route { id, at_ms, routes } => {
                e.id(*id);
                e.u64(*at_ms);
                e.len(routes.len());
                for r in routes {
                    e.u16(r.idx);
                    e.str(&r.addr);
                    e.str(&r.dest);
                    e.bool(r.hold);
                }
            }
            Self::Lane {
                name,
                at_ms,
                dead_until_ms,
                reason,
            } => {
                e.str(name);
                e.u64(*at_ms);
                e.u64(*dead_until_ms);
                e.str(reason);
            }
        }
    }

    /// Decodes a payload of the given type.
    pub fn decode_payload(type_code: u8, payload: &[u8]) -> Result<Self, DecodeError> {
        let mut d = Dec::new(payload);
        let record = match type_code {
            1 => Self::Header {
                seq: d.u32()?,
                created_ms: d.u64()?,
            },
            2 => Self::Enqueue(decode_message(&mut d)?),
            3 => Self::Snapshot(decode_message(&mut d)?),
            4 => {
                let id = d.id()?;
                let lease = d.u64()?;
                let at_ms = d.u64()?;
                let n = d.len(2)?;
                let mut rcpts = Vec::with_capacity(n);
                for _ in 0..n {
                    rcpts.push(d.u16()?);
                }
                Self::Attempt {
                    id,
                    lease,
                    at_ms,
                    rcpts,
                }
            }
            5 => {
                let id = d.id()?;
                let lease = d.u64()?;
                let at_ms = d.u64()?;
                let n = d.len(4)?;
                let mut results = Vec::with_capacity(n);
                for _ in 0..n {
                    let idx = d.u16()?;
                    let kind = match d.u8()? {
                        0 => ResultKind::Delivered,
                        1 => ResultKind::Deferred { next_ms: d.u64()? },
                        2 => ResultKind::Failed,
                        _ => return Err("unknown result kind"),
                    };
                    let attempted = d.bool()?;
                    let error = decode_error(&mut d)?;
                    results.push(RcptResult {
                        idx,
                        kind,
                        attempted,
                        error,
                    });
                }
                Self::Outcome {
                    id,
                    lease,
                    at_ms,
                    results,
                }
            }
            6 => Self::Crash {
                id: d.id()?,
                lease: d.u64()?,
                at_ms: d.u64()?,
                next_ms: d.u64()?,
                reason: d.string()?,
                quarantine: d.bool()?,
            },
            7 => Self::Abandon {
                id: d.id()?,
                lease: d.u64()?,
            },
            8 => Self::Admin {
                id: d.id()?,
                at_ms: d.u64()?,
                action: AdminAction::from_code(d.u8()?)?,
            },
            9 => {
                let id = d.id()?;
                let at_ms = d.u64()?;
                let n = d.len(4)?;
                let mut routes = Vec::with_capacity(n);
                for _ in 0..n {
                    routes.push(RouteRec {
                        idx: d.u16()?,
                        addr: d.string()?,
                        dest: d.string()?,
                        hold: d.bool()?,
                    });
                }
                Self::Route { id, at_ms, routes }
            }
            10 => Self::Lane {
                name: d.string()?,
                at_ms: d.u64()?,
                dead_until_ms: d.u64()?,
                reason: d.string()?,
            },
            _ => return Err("unknown record type"),
        };
        if !d.is_empty() {
            return Err("trailing bytes in record");
        }
        Ok(record)
    }
}

/// What [`check_frame`] found at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Frame<'a> {
    /// A valid frame of `len` bytes in total.
    Complete {
        type_code: u8,
        payload: &'a [u8],
        len: usize,
    },
    /// The buffer ends inside a frame that looks valid so far: a torn tail (or one being written).
    Incomplete,
    /// The bytes are not a valid frame.
    Invalid(DecodeError),
}

/// Checks the frame at the start of `buf` without decoding its payload.
pub(crate) fn check_frame(buf: &[u8]) -> Frame<'_> {
    let Some(head) = buf.get(..7) else {
        return if JOURNAL_MAGIC.starts_with(buf.get(..buf.len().min(2)).unwrap_or_default()) {
            Frame::Incomplete
        } else {
            Frame::Invalid("bad magic")
        };
    };
    if head.get(..2) != Some(&JOURNAL_MAGIC[..]) {
        return Frame::Invalid("bad magic");
    }
    let type_code = head.get(2).copied().unwrap_or(0);
    let len = u32::from_le_bytes(array(head.get(3..7)));
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    if len > MAX_RECORD_LEN {
        return Frame::Invalid("record length out of range");
    }
    let total = len + FRAME_OVERHEAD;
    let Some(frame) = buf.get(..total) else {
        return Frame::Incomplete;
    };
    let crc_at = 7 + len;
    let stored = u32::from_le_bytes(array(frame.get(crc_at..crc_at + 4)));
    if crc32fast::hash(frame.get(2..crc_at).unwrap_or_default()) != stored {
        return Frame::Invalid("checksum mismatch");
    }
    if frame.get(crc_at + 4) != Some(&COMMIT) {
        return Frame::Invalid("missing commit marker");
    }
    Frame::Complete {
        type_code,
        payload: frame.get(7..crc_at).unwrap_or_default(),
        len: total,
    }
}

/// Appends a complete body frame for `body` to `out`.
#[cfg(test)]
pub(crate) fn encode_body_frame(id: QueueId, body: &[u8], body_crc: u32, out: &mut Vec<u8>) {
    encode_body_header(id, body.len() as u64, out);
    out.extend_from_slice(body);
    encode_body_trailer(body_crc, out);
}

/// Appends the part of a body frame before a body of `len` octets.
pub(crate) fn encode_body_header(id: QueueId, len: u64, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&BODY_MAGIC);
    out.extend_from_slice(&id.to_u128().to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    let header_crc = crc32fast::hash(out.get(start..).unwrap_or_default());
    out.extend_from_slice(&header_crc.to_le_bytes());
}

/// Appends the part of a body frame after the body.
pub(crate) fn encode_body_trailer(body_crc: u32, out: &mut Vec<u8>) {
    out.extend_from_slice(&body_crc.to_le_bytes());
    out.push(COMMIT);
}

/// Appends a complete journal copy frame: `bytes` are what the pass appends to journal
/// segment `journal_seq` at `journal_offset`.
pub(crate) fn encode_copy_frame(
    journal_seq: u32,
    journal_offset: u64,
    bytes: &[u8],
    out: &mut Vec<u8>,
) {
    let start = out.len();
    out.extend_from_slice(&COPY_MAGIC);
    out.extend_from_slice(&journal_seq.to_le_bytes());
    out.extend_from_slice(&journal_offset.to_le_bytes());
    out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_le_bytes());
    let header_crc = crc32fast::hash(out.get(start..).unwrap_or_default());
    out.extend_from_slice(&header_crc.to_le_bytes());
    out.extend_from_slice(bytes);
    out.extend_from_slice(&crc32fast::hash(bytes).to_le_bytes());
    out.push(COMMIT);
}

/// The header of a journal copy frame: `(journal seq, journal offset, length)`.
pub(crate) fn decode_copy_header(
    header: &[u8; COPY_HEADER_LEN],
) -> Result<(u32, u64, u32), DecodeError> {
    if header.get(..2) != Some(&COPY_MAGIC[..]) {
        return Err("bad magic");
    }
    let stored = u32::from_le_bytes(array(header.get(18..22)));
    if crc32fast::hash(header.get(..18).unwrap_or_default()) != stored {
        return Err("header checksum mismatch");
    }
    let len = u32::from_le_bytes(array(header.get(14..18)));
    if len > MAX_COPY_LEN {
        return Err("length out of range");
    }
    Ok((
        u32::from_le_bytes(array(header.get(2..6))),
        u64::from_le_bytes(array(header.get(6..14))),
        len,
    ))
}

/// Checks the copied bytes of a journal copy frame against its trailer.
pub(crate) fn check_copy_trailer(bytes: &[u8], trailer: &[u8]) -> Result<(), DecodeError> {
    if u32::from_le_bytes(array(trailer.get(..4))) != crc32fast::hash(bytes) {
        return Err("checksum mismatch");
    }
    if trailer.get(4) != Some(&COMMIT) {
        return Err("missing commit marker");
    }
    Ok(())
}

/// The length of the body of a body frame whose header is `header`, if the header checks out.
pub(crate) fn decode_body_header(header: &[u8; BODY_HEADER_LEN]) -> Result<u64, DecodeError> {
    if header.get(..2) != Some(&BODY_MAGIC[..]) {
        return Err("bad magic");
    }
    let stored = u32::from_le_bytes(array(header.get(26..30)));
    if crc32fast::hash(header.get(..26).unwrap_or_default()) != stored {
        return Err("header checksum mismatch");
    }
    let len = u64::from_le_bytes(array(header.get(18..26)));
    if len > MAX_BODY_LEN {
        return Err("length out of range");
    }
    Ok(len)
}

/// Checks a whole body frame read back from disk and returns the body.
pub(crate) fn check_body_frame(
    frame: &[u8],
    id: QueueId,
    body: &BodyRef,
) -> Result<(), DecodeError> {
    let header = frame.get(..BODY_HEADER_LEN).ok_or("frame too short")?;
    if header.get(..2) != Some(&BODY_MAGIC[..]) {
        return Err("bad magic");
    }
    let stored_header_crc = u32::from_le_bytes(array(header.get(26..30)));
    if crc32fast::hash(header.get(..26).unwrap_or_default()) != stored_header_crc {
        return Err("header checksum mismatch");
    }
    if u128::from_le_bytes(array(header.get(2..18))) != id.to_u128() {
        return Err("frame belongs to another message");
    }
    if u64::from_le_bytes(array(header.get(18..26))) != body.len {
        return Err("length mismatch");
    }
    let len = usize::try_from(body.len).map_err(|_| "length out of range")?;
    let data = frame
        .get(BODY_HEADER_LEN..BODY_HEADER_LEN + len)
        .ok_or("frame too short")?;
    let trailer = frame
        .get(BODY_HEADER_LEN + len..BODY_HEADER_LEN + len + BODY_TRAILER_LEN)
        .ok_or("frame too short")?;
    let crc = crc32fast::hash(data);
    if crc != body.crc || u32::from_le_bytes(array(trailer.get(..4))) != crc {
        return Err("body checksum mismatch");
    }
    if trailer.get(4) != Some(&COMMIT) {
        return Err("missing commit marker");
    }
    Ok(())
}

fn array<const N: usize>(bytes: Option<&[u8]>) -> [u8; N] {
    let mut out = [0; N];
    if let Some(b) = bytes
        && b.len() == N
    {
        out.copy_from_slice(b);
    }
    out
}

/// Writes the frame of `payload` with `type_code` to `out`.
fn frame_with(type_code: u8, out: &mut Vec<u8>, payload: impl FnOnce(&mut Enc<'_>)) {
    let start = out.len();
    out.extend_from_slice(&JOURNAL_MAGIC);
    out.push(type_code);
    out.extend_from_slice(&[0; 4]);
    let payload_start = out.len();
    let mut enc = Enc(out);
    payload(&mut enc);
    let payload_len = out.len().saturating_sub(payload_start);
    let len_bytes = u32::try_from(payload_len).unwrap_or(u32::MAX).to_le_bytes();
    if let Some(slot) = out.get_mut(start + 3..start + 7) {
        slot.copy_from_slice(&len_bytes);
    }
    let crc = crc32fast::hash(out.get(start + 2..).unwrap_or_default());
    out.extend_from_slice(&crc.to_le_bytes());
    out.push(COMMIT);
}

/// Runs `encode`, then undoes it if the frame's payload is larger than [`MAX_RECORD_LEN`].
fn checked(out: &mut Vec<u8>, encode: impl FnOnce(&mut Vec<u8>)) -> Result<(), u64> {
    let start = out.len();
    encode(out);
    let payload = out
        .len()
        .saturating_sub(start)
        .saturating_sub(FRAME_OVERHEAD);
    if payload > MAX_RECORD_LEN {
        out.truncate(start);
        return Err(payload as u64);
    }
    Ok(())
}

/// Appends the enqueue (or snapshot) frame of `m` without building a [`Record`]; the caller
/// has checked its size ([`MessageRec::fits`]).
pub(crate) fn encode_message_frame(m: &MessageRec, snapshot: bool, out: &mut Vec<u8>) {
    frame_with(if snapshot { 3 } else { 2 }, out, |e| encode_message(e, m));
}

/// Longest reply or error text stored per recipient; longer texts are cut. A next hop's
/// reply can be long (multi-line), and a message's records must stay within
/// [`MAX_RECORD_LEN`] whatever its recipients were told.
pub const MAX_REPLY_TEXT: usize = 1000;

/// Cuts `text` to [`MAX_REPLY_TEXT`] bytes at a character boundary, marking the cut.
pub(crate) fn cap_text(text: &str) -> String {
    if text.len() <= MAX_REPLY_TEXT {
        return text.to_owned();
    }
    let mut end = MAX_REPLY_TEXT - 3;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", text.get(..end).unwrap_or_default())
}

/// `text` cut to at most [`MAX_REPLY_TEXT`] bytes, at a character boundary.
fn cut_text(text: &str) -> &str {
    let mut end = text.len().min(MAX_REPLY_TEXT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default()
}

/// Bytes a recipient's record can grow by over its life: an error with capped texts.
pub(crate) const RCPT_GROWTH: u64 = 2 * MAX_REPLY_TEXT as u64 + 64;

impl MessageRec {
    /// Checks that this message's record, and every later record about it (a snapshot after
    /// each recipient has been given an error of the longest stored size), fits in
    /// [`MAX_RECORD_LEN`]. Returns the worst-case payload size otherwise.
    pub(crate) fn fits(&self) -> Result<(), u64> {
        let mut buf = Vec::new();
        encode_message_frame(self, false, &mut buf);
        let payload = buf.len().saturating_sub(FRAME_OVERHEAD) as u64;
        let worst = payload.saturating_add((self.rcpts.len() as u64).saturating_mul(RCPT_GROWTH));
        if worst > MAX_RECORD_LEN as u64 {
            return Err(worst);
        }
        Ok(())
    }
}

fn encode_message(e: &mut Enc<'_>, m: &MessageRec) {
    e.id(m.id);
    e.u64(m.arrival_ms);
    e.u32(m.body.seg);
    e.u64(m.body.offset);
    e.u64(m.body.len);
    e.u32(m.body.crc);
    e.str(&m.sender);
    e.bool(m.needs_routing);
    e.u16(m.crashes);
    e.opt_str(m.quarantine.as_deref());
    match &m.bounce_for {
        None => e.u8(0),
        Some((id, rcpts)) => {
            e.u8(1);
            e.id(*id);
            e.len(rcpts.len());
            for r in rcpts {
                e.u16(*r);
            }
        }
    }
    e.len(m.rcpts.len());
    for r in &m.rcpts {
        e.str(&r.addr);
        e.opt_str(r.orig.as_deref());
        e.str(&r.dest);
        e.u8(r.state.code());
        e.u16(r.attempts);
        e.u64(r.next_ms);
        e.bool(r.bounced);
        e.u64(r.lease);
        encode_error(e, r.error.as_ref());
    }
    if m.lifetime_from_ms.is_some() || !m.origins.is_empty() {
        e.u64(m.lifetime_from_ms.unwrap_or(0));
    }
    if !m.origins.is_empty() {
        e.len(m.origins.len());
        for origin in &m.origins {
            e.str(origin);
        }
    }
}

fn decode_message(d: &mut Dec<'_>) -> Result<MessageRec, DecodeError> {
    let id = d.id()?;
    let arrival_ms = d.u64()?;
    let body = BodyRef {
        seg: d.u32()?,
        offset: d.u64()?,
        len: d.u64()?,
        crc: d.u32()?,
    };
    let sender = d.string()?;
    let needs_routing = d.bool()?;
    let crashes = d.u16()?;
    let quarantine = d.opt_string()?;
    let bounce_for = match d.u8()? {
        0 => None,
        1 => {
            let of = d.id()?;
            let n = d.len(2)?;
            let mut rcpts = Vec::with_capacity(n);
            for _ in 0..n {
                rcpts.push(d.u16()?);
            }
            Some((of, rcpts))
        }
        _ => return Err("bad bounce flag"),
    };
    let n = d.len(8)?;
    let mut rcpts = Vec::with_capacity(n);
    for _ in 0..n {
        rcpts.push(RcptRec {
            addr: d.string()?,
            orig: d.opt_string()?,
            dest: d.string()?,
            state: RcptState::from_code(d.u8()?)?,
            attempts: d.u16()?,
            next_ms: d.u64()?,
            bounced: d.bool()?,
            lease: d.u64()?,
            error: decode_error(d)?,
        });
    }
    let lifetime_from_ms = if d.is_empty() {
        None
    } else {
        Some(d.u64()?).filter(|&ms| ms != 0)
    };
    let mut origins = Vec::new();
    if !d.is_empty() {
        let n = d.len(4)?;
        origins.reserve(n);
        for _ in 0..n {
            origins.push(d.string()?);
        }
    }
    Ok(MessageRec {
        id,
        arrival_ms,
        body,
        sender,
        needs_routing,
        crashes,
        quarantine,
        bounce_for,
        rcpts,
        lifetime_from_ms,
        origins,
    })
}

fn encode_error(e: &mut Enc<'_>, err: Option<&ErrorRec>) {
    let Some(err) = err else {
        e.u8(0);
        return;
    };
    e.u8(1);
    e.u8(match err.severity {
        Severity::Transient => 0,
        Severity::Permanent => 1,
    });
    e.u8(match err.scope {
        FailureScope::Recipient => 0,
        FailureScope::Message => 1,
        FailureScope::Destination => 2,
    });
    match err.status {
        None => e.u8(0),
        Some(s) => {
            e.u8(s.class());
            e.u16(s.subject());
            e.u16(s.detail());
        }
    }
    // Stored texts are capped (see `MAX_REPLY_TEXT`); the spool caps them when it makes
    // them, this keeps the format's promise whoever built the value.
    e.opt_str(err.diagnostic.as_deref().map(cut_text));
    e.str(cut_text(&err.text));
    e.u64(err.at_ms);
}

fn decode_error(d: &mut Dec<'_>) -> Result<Option<ErrorRec>, DecodeError> {
    match d.u8()? {
        0 => return Ok(None),
        1 => {}
        _ => return Err("bad error flag"),
    }
    let severity = match d.u8()? {
        0 => Severity::Transient,
        1 => Severity::Permanent,
        _ => return Err("bad severity"),
    };
    let scope = match d.u8()? {
        0 => FailureScope::Recipient,
        1 => FailureScope::Message,
        2 => FailureScope::Destination,
        _ => return Err("bad failure scope"),
    };
    let status = match d.u8()? {
        0 => None,
        class => {
            let subject = d.u16()?;
            let detail = d.u16()?;
            Some(StatusCode::new(class, subject, detail).ok_or("bad status code")?)
        }
    };
    Ok(Some(ErrorRec {
        severity,
        scope,
        status,
        diagnostic: d.opt_string()?,
        text: d.string()?,
        at_ms: d.u64()?,
    }))
}

/// Little-endian writer over a byte vector.
struct Enc<'a>(&'a mut Vec<u8>);

impl Enc<'_> {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn bool(&mut self, v: bool) {
        self.0.push(u8::from(v));
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn id(&mut self, id: QueueId) {
        self.0.extend_from_slice(&id.to_u128().to_le_bytes());
    }
    fn len(&mut self, n: usize) {
        self.u32(u32::try_from(n).unwrap_or(u32::MAX));
    }
    /// Strings longer than [`MAX_STRING_LEN`] are cut (at a character boundary): callers bound
    /// addresses and texts before they get here, so this only guards the format.
    fn str(&mut self, s: &str) {
        let mut end = s.len().min(MAX_STRING_LEN);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        let s = s.get(..end).unwrap_or_default();
        self.len(s.len());
        self.0.extend_from_slice(s.as_bytes());
    }
    fn opt_str(&mut self, s: Option<&str>) {
        match s {
            None => self.u8(0),
            Some(s) => {
                self.u8(1);
                self.str(s);
            }
        }
    }
}

/// Little-endian reader over a byte slice; every read is bounds-checked.
struct Dec<'a> {
    buf: &'a [u8],
}

impl<'a> Dec<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }
    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.buf.len() {
            return Err("record ends early");
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(array::<1>(Some(self.take(1)?))[0])
    }
    fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err("bad boolean"),
        }
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(array(Some(self.take(2)?))))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(array(Some(self.take(4)?))))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(array(Some(self.take(8)?))))
    }
    fn id(&mut self) -> Result<QueueId, DecodeError> {
        Ok(QueueId::from_u128(u128::from_le_bytes(array(Some(
            self.take(16)?,
        )))))
    }
    /// A count of items each at least `min_item` bytes long (bounds the allocation).
    fn len(&mut self, min_item: usize) -> Result<usize, DecodeError> {
        let n = usize::try_from(self.u32()?).map_err(|_| "count out of range")?;
        if n.saturating_mul(min_item) > self.buf.len() {
            return Err("count larger than the record");
        }
        Ok(n)
    }
    fn string(&mut self) -> Result<String, DecodeError> {
        let n = self.len(1)?;
        if n > MAX_STRING_LEN {
            return Err("string too long");
        }
        let bytes = self.take(n)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| "string is not UTF-8")
    }
    fn opt_string(&mut self) -> Result<Option<String>, DecodeError> {
        match self.u8()? {
            0 => Ok(None),
            1 => self.string().map(Some),
            _ => Err("bad option flag"),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use proptest::prelude::*;

    use super::*;

    fn id_strategy() -> impl Strategy<Value = QueueId> {
        any::<u128>().prop_map(QueueId::from_u128)
    }

    fn error_strategy() -> impl Strategy<Value = Option<ErrorRec>> {
        proptest::option::of(
            (
                any::<bool>(),
                0u8..3,
                proptest::option::of((4u8..6, 0u16..10, 0u16..10)),
                proptest::option::of(".{0,20}"),
                ".{0,30}",
                any::<u64>(),
            )
                .prop_map(|(perm, scope, status, diagnostic, text, at_ms)| ErrorRec {
                    severity: if perm {
                        Severity::Permanent
                    } else {
                        Severity::Transient
                    },
                    scope: match scope {
                        0 => FailureScope::Recipient,
                        1 => FailureScope::Message,
                        _ => FailureScope::Destination,
                    },
                    status: status.and_then(|(c, s, d)| StatusCode::new(c, s, d)),
                    diagnostic,
                    text,
                    at_ms,
                }),
        )
    }

    fn rcpt_strategy() -> impl Strategy<Value = RcptRec> {
        (
            "[a-z]{1,8}@[a-z]{1,8}\\.com",
            proptest::option::of("[a-z]{1,8}@x\\.org"),
            "(modern|legacy|)",
            0u8..5,
            any::<u16>(),
            any::<u64>(),
            any::<bool>(),
            any::<u64>(),
            error_strategy(),
        )
            .prop_map(
                |(addr, orig, dest, state, attempts, next_ms, bounced, lease, error)| RcptRec {
                    addr,
                    orig,
                    dest,
                    state: RcptState::from_code(state).unwrap(),
                    attempts,
                    next_ms,
                    bounced,
                    lease,
                    error,
                },
            )
    }

    pub(crate) fn message_strategy() -> impl Strategy<Value = MessageRec> {
        (
            id_strategy(),
            any::<u64>(),
            (any::<u32>(), any::<u64>(), any::<u64>(), any::<u32>()),
            "([a-z]{1,8}@[a-z]{1,8}\\.com)?",
            any::<bool>(),
            any::<u16>(),
            proptest::option::of(".{0,20}"),
            proptest::option::of((id_strategy(), proptest::collection::vec(any::<u16>(), 0..4))),
            proptest::collection::vec(rcpt_strategy(), 1..5),
            // Both trailing fields, each optional: 0 is no time stamp (it reads as unset).
            proptest::option::of(1u64..),
            proptest::collection::vec(".{0,20}", 0..3),
        )
            .prop_map(
                |(
                    id,
                    arrival_ms,
                    (seg, offset, len, crc),
                    sender,
                    needs_routing,
                    crashes,
                    quarantine,
                    bounce_for,
                    rcpts,
                    lifetime_from_ms,
                    origins,
                )| MessageRec {
                    id,
                    arrival_ms,
                    body: BodyRef {
                        seg,
                        offset,
                        len,
                        crc,
                    },
                    sender,
                    needs_routing,
                    crashes,
                    quarantine,
                    bounce_for,
                    rcpts,
                    lifetime_from_ms,
                    origins,
                },
            )
    }

    fn record_strategy() -> impl Strategy<Value = Record> {
        prop_oneof![
            (any::<u32>(), any::<u64>())
                .prop_map(|(seq, created_ms)| Record::Header { seq, created_ms }),
            message_strategy().prop_map(Record::Enqueue),
            message_strategy().prop_map(Record::Snapshot),
            (
                id_strategy(),
                any::<u64>(),
                any::<u64>(),
                proptest::collection::vec(any::<u16>(), 0..5)
            )
                .prop_map(|(id, lease, at_ms, rcpts)| Record::Attempt {
                    id,
                    lease,
                    at_ms,
                    rcpts
                }),
            (
                id_strategy(),
                any::<u64>(),
                any::<u64>(),
                proptest::collection::vec(
                    (
                        any::<u16>(),
                        0u8..3,
                        any::<u64>(),
                        any::<bool>(),
                        error_strategy()
                    ),
                    0..4
                )
            )
                .prop_map(|(id, lease, at_ms, results)| Record::Outcome {
                    id,
                    lease,
                    at_ms,
                    results: results
                        .into_iter()
                        .map(|(idx, k, next_ms, attempted, error)| RcptResult {
                            idx,
                            kind: match k {
                                0 => ResultKind::Delivered,
                                1 => ResultKind::Deferred { next_ms },
                                _ => ResultKind::Failed,
                            },
                            attempted,
                            error,
                        })
                        .collect(),
                }),
            (
                id_strategy(),
                any::<u64>(),
                any::<u64>(),
                any::<u64>(),
                ".{0,20}",
                any::<bool>()
            )
                .prop_map(|(id, lease, at_ms, next_ms, reason, quarantine)| {
                    Record::Crash {
                        id,
                        lease,
                        at_ms,
                        next_ms,
                        reason,
                        quarantine,
                    }
                }),
            (id_strategy(), any::<u64>()).prop_map(|(id, lease)| Record::Abandon { id, lease }),
            (id_strategy(), any::<u64>(), 0u8..5).prop_map(|(id, at_ms, a)| Record::Admin {
                id,
                at_ms,
                action: AdminAction::from_code(a).unwrap()
            }),
            (
                id_strategy(),
                any::<u64>(),
                proptest::collection::vec(
                    (
                        any::<u16>(),
                        "[a-z]{1,5}@y\\.z",
                        "[a-z]{0,6}",
                        any::<bool>()
                    ),
                    0..3
                )
            )
                .prop_map(|(id, at_ms, routes)| Record::Route {
                    id,
                    at_ms,
                    routes: routes
                        .into_iter()
                        .map(|(idx, addr, dest, hold)| RouteRec {
                            idx,
                            addr,
                            dest,
                            hold
                        })
                        .collect()
                }),
            ("[a-z]{0,8}", any::<u64>(), any::<u64>(), ".{0,10}").prop_map(
                |(name, at_ms, dead_until_ms, reason)| Record::Lane {
                    name,
                    at_ms,
                    dead_until_ms,
                    reason
                }
            ),
        ]
    }

    fn decode_one(buf: &[u8]) -> Record {
        match check_frame(buf) {
            Frame::Complete {
                type_code,
                payload,
                len,
            } => {
                assert_eq!(len, buf.len());
                Record::decode_payload(type_code, payload).unwrap()
            }
            other => panic!("{other:?}"),
        }
    }

    proptest! {
        #[test]
        fn record_round_trip(record in record_strategy()) {
            let mut buf = Vec::new();
            record.encode_frame(&mut buf);
            prop_assert_eq!(decode_one(&buf), record);
        }

        #[test]
        fn every_cut_is_incomplete(record in record_strategy(), cut in 0usize..10_000) {
            let mut buf = Vec::new();
            record.encode_frame(&mut buf);
            let cut = cut % buf.len();
            prop_assert_eq!(check_frame(&buf[..cut]), Frame::Incomplete);
        }

        #[test]
        fn any_flipped_byte_is_detected(record in record_strategy(), at in 0usize..10_000, bit in 0u8..8) {
            let mut buf = Vec::new();
            record.encode_frame(&mut buf);
            let at = at % buf.len();
            buf[at] ^= 1 << bit;
            // A flip in the length field may make the frame look longer (incomplete); any
            // other flip must be reported as invalid. Never a silently different record.
            match check_frame(&buf) {
                Frame::Complete { .. } => prop_assert!(false, "flip at {} not detected", at),
                Frame::Incomplete | Frame::Invalid(_) => {}
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), t in 0u8..12) {
            let _ = check_frame(&bytes);
            let _ = Record::decode_payload(t, &bytes);
        }
    }

    #[test]
    fn missing_commit_marker_is_invalid() {
        let mut buf = Vec::new();
        Record::Header {
            seq: 1,
            created_ms: 2,
        }
        .encode_frame(&mut buf);
        *buf.last_mut().unwrap() = 0;
        assert_eq!(check_frame(&buf), Frame::Invalid("missing commit marker"));
    }

    #[test]
    fn body_frame_round_trip() {
        let id = QueueId::generate();
        let body = b"Subject: hi\r\n\r\nhello\r\n";
        let crc = crc32fast::hash(body);
        let mut out = Vec::new();
        encode_body_frame(id, body, crc, &mut out);
        let r = BodyRef {
            seg: 1,
            offset: 0,
            len: body.len() as u64,
            crc,
        };
        assert_eq!(out.len() as u64, r.frame_end());
        check_body_frame(&out, id, &r).unwrap();
        assert!(check_body_frame(&out, QueueId::generate(), &r).is_err());
        let mut bad = out.clone();
        bad[BODY_HEADER_LEN + 2] ^= 1;
        assert!(check_body_frame(&bad, id, &r).is_err());
        assert!(check_body_frame(&out[..out.len() - 1], id, &r).is_err());
    }
}

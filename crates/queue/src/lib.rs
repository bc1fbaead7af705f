#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod admin;
mod body;
mod bounce;
mod clock;
mod control;
mod error;
mod outcome;
mod record;
mod recover;
mod schedule;
mod spool;
mod state;
mod store;
mod view;

pub use admin::{
    AdminReport, AdminRequest, Depth, DepthRow, Filter, HistoryEntry, MessageDetail, MessageInfo,
    QueueState, RecipientInfo, Summary, SummaryRow,
};
pub use body::{BodyPart, SpillFile};
pub use bounce::{
    DsnInput, DsnRecipient, MAX_RETURNED_HEADERS, SUPPRESSED_HEADER, build_dsn, header_section,
    suppressed_reason, suppression,
};
pub use clock::now;
pub use control::{Via, admin_request, submit};
pub use error::{QueueError, Result};
pub use outcome::{DeliveryError, DeliveryResult, FailureScope, Severity, StatusCode};
pub use record::{AdminAction, MAX_BODY_LEN, MAX_RECORD_LEN, MAX_REPLY_TEXT, RcptState};
pub use recover::{Discarded, RecoveryReport};
pub use schedule::{
    AGE_BUCKETS, DeadPolicy, LaneHealth, LaneStatus, RetryPolicy, age_bucket, retry_delay,
};
pub use spool::{
    Completion, DEFAULT_MIN_FREE, LaneInfo, Lease, LeaseId, LeasedRecipient, Route, Spool,
    SpoolOptions, SpoolStatus, TickReport, Unrouted, Wake, spool_dir,
};
pub use view::QueueView;

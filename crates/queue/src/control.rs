//! Admin requests from other processes: how `ccgate queue hold|release|retry|delete|requeue`
//! reaches a running `ccgate run`.
//!
//! Only the owner of the spool (the holder of its `lock` file) writes the journal. Another
//! process that wants to change the queue:
//!
//! 1. tries to take the lock itself; if it gets it, nobody is running: it opens the spool,
//!    carries out the request directly, and closes it;
//! 2. otherwise writes its request as JSON to `control/<id>.req` (via `tmp/`, fsynced, renamed)
//!    and waits for `control/<id>.done`, which the owner writes after the request's journal
//!    records are durable ([`crate::Spool::tick`] polls the folder about once a second);
//! 3. while waiting, keeps trying the lock: if the owner stops first, the waiting process
//!    takes over and carries out every pending request itself, so none is lost.
//!
//! Reading (`list`, `show`, `summary`) never needs the lock: see [`crate::QueueView`].
//!
//! A whole message can be handed over the same way ([`submit`]: `ccgate replay` next to a
//! running gateway): its text as `control/<id>.msg`, then its envelope and routes as
//! `control/<id>.sub`, both durable before `submit` returns; the owner queues it under that
//! id at its next tick and removes both (a crash in between finds the id queued and only
//! removes them). Nobody waits for an answer: once written, the message is the spool's.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use ccgate_core::{EmailAddress, Envelope, QueueId, ReversePath};

use crate::admin::{AdminReport, AdminRequest};
use crate::error::{IoContext, QueueError, Result};
use crate::spool::{Route, Spool, SpoolOptions};
use crate::store::{self, Dirs};

/// Suffix of a pending request.
const REQUEST_SUFFIX: &str = ".req";
/// Suffix of an answered request.
const DONE_SUFFIX: &str = ".done";
/// Suffix of a submitted message's envelope and routes (JSON).
const SUBMISSION_SUFFIX: &str = ".sub";
/// Suffix of a submitted message's text.
const SUBMISSION_BODY_SUFFIX: &str = ".msg";
/// Answers nobody collected are removed after this long.
const STALE_ANSWER: Duration = Duration::from_secs(3600);
/// How often a waiting process looks for its answer.
const POLL: Duration = Duration::from_millis(20);

/// How an admin request was carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// This process owned the spool (nothing else was running).
    Direct,
    /// The running owner carried it out.
    Owner,
}

/// Carries out an admin request on the spool in `dir`, whether or not another process owns
/// it (see the module docs). `timeout` bounds the wait for a running owner.
///
/// # Errors
/// [`QueueError::NoAnswer`] if the owner did not answer in time (the request stays queued and
/// will still be carried out); [`QueueError::Io`] and the errors of [`Spool::open`].
pub fn admin_request(
    dir: &Path,
    options: &SpoolOptions,
    request: &AdminRequest,
    timeout: Duration,
) -> Result<(AdminReport, Via)> {
    if let Some(report) = try_directly(dir, options, Some(request))? {
        return Ok((report, Via::Direct));
    }
    let dirs = Dirs::new(dir);
    let name = QueueId::generate().to_string();
    let req_path = dirs.control.join(format!("{name}{REQUEST_SUFFIX}"));
    let done_path = dirs.control.join(format!("{name}{DONE_SUFFIX}"));
    let json = serde_json::to_vec(request).map_err(|e| QueueError::BadControl {
        path: req_path.clone(),
        reason: e.to_string(),
    })?;
    store::write_durably(&dirs.tmp, &req_path, &json)?;
    let started = Instant::now();
    let mut last_lock_try = Instant::now();
    loop {
        if let Some(report) = take_answer(&done_path)? {
            return Ok((report, Via::Owner));
        }
        if started.elapsed() >= timeout {
            return Err(QueueError::NoAnswer {
                path: req_path,
                waited: timeout,
            });
        }
        if last_lock_try.elapsed() >= Duration::from_secs(1) {
            last_lock_try = Instant::now();
            // The owner may have stopped: then we carry out the pending requests ourselves.
            if try_directly(dir, options, None)?.is_some()
                && let Some(report) = take_answer(&done_path)?
            {
                return Ok((report, Via::Direct));
            }
        }
        std::thread::sleep(POLL);
    }
}

/// Opens the spool if nobody owns it, carries out `request` (if any) and every pending
/// request, and closes it. `None` when another process owns it.
fn try_directly(
    dir: &Path,
    options: &SpoolOptions,
    request: Option<&AdminRequest>,
) -> Result<Option<AdminReport>> {
    let spool = match Spool::open(dir, options.clone()) {
        Ok(s) => s,
        Err(QueueError::Locked { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let now = crate::clock::now();
    process(&spool, now)?;
    let report = match request {
        Some(r) => spool.admin(r, now)?,
        None => AdminReport::default(),
    };
    spool.close()?;
    Ok(Some(report))
}

/// A message handed to the spool's owner ([`submit`]).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Submission {
    /// The envelope sender, `""` for the null sender.
    sender: String,
    recipients: Vec<SubmittedRecipient>,
}

/// One recipient of a [`Submission`], with its route.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct SubmittedRecipient {
    address: String,
    destination: String,
    deliver_to: String,
    hold: bool,
}

/// Queues a message under `id` whether or not another process owns the spool in `dir`: when
/// nobody does, directly (pending requests are carried out too); otherwise it is written to
/// the control folder for the owner, which queues it at its next tick (see the module docs).
/// Either way the message is durable when this returns.
///
/// # Errors
/// [`QueueError::Io`], [`QueueError::BadControl`], and the errors of [`Spool::open`] and
/// [`Spool::enqueue_with_id`].
pub fn submit(
    dir: &Path,
    options: &SpoolOptions,
    id: QueueId,
    envelope: &Envelope,
    routes: &[Route],
    body: &[u8],
) -> Result<Via> {
    match Spool::open(dir, options.clone()) {
        Ok(spool) => {
            let now = crate::clock::now();
            process(&spool, now)?;
            spool.enqueue_with_id(id, envelope, routes, body, now)?;
            spool.close()?;
            return Ok(Via::Direct);
        }
        Err(QueueError::Locked { .. }) => {}
        Err(e) => return Err(e),
    }
    let dirs = Dirs::new(dir);
    let submission = Submission {
        sender: envelope
            .sender
            .mailbox()
            .map(ToString::to_string)
            .unwrap_or_default(),
        recipients: envelope
            .recipients
            .iter()
            .zip(routes)
            .map(|(address, route)| SubmittedRecipient {
                address: address.to_string(),
                destination: route.destination.clone(),
                deliver_to: route.deliver_to.to_string(),
                hold: route.hold,
            })
            .collect(),
    };
    let sub_path = dirs.control.join(format!("{id}{SUBMISSION_SUFFIX}"));
    let json = serde_json::to_vec(&submission).map_err(|e| QueueError::BadControl {
        path: sub_path.clone(),
        reason: e.to_string(),
    })?;
    let msg_path = dirs.control.join(format!("{id}{SUBMISSION_BODY_SUFFIX}"));
    // The text first: the envelope is what makes the owner act.
    store::write_durably(&dirs.tmp, &msg_path, body)?;
    store::write_durably(&dirs.tmp, &sub_path, &json)?;
    Ok(Via::Owner)
}

/// The envelope and routes of a submission, or why it cannot be queued.
fn parse_submission(bytes: &[u8]) -> std::result::Result<(Envelope, Vec<Route>), String> {
    let sub: Submission = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let address = |text: &str| {
        text.parse::<EmailAddress>()
            .map_err(|e| format!("{text:?}: {e}"))
    };
    let sender = if sub.sender.is_empty() {
        ReversePath::Null
    } else {
        ReversePath::Mailbox(address(&sub.sender)?)
    };
    let mut recipients = Vec::with_capacity(sub.recipients.len());
    let mut routes = Vec::with_capacity(sub.recipients.len());
    for r in &sub.recipients {
        recipients.push(address(&r.address)?);
        let mut route = Route::new(r.destination.clone(), address(&r.deliver_to)?);
        route.hold = r.hold;
        routes.push(route);
    }
    if recipients.is_empty() {
        return Err("no recipient".to_owned());
    }
    Ok((Envelope { sender, recipients }, routes))
}

/// Queues the submissions waiting in `control/` (owner side); returns how many were taken.
/// One that cannot be read or parsed is set aside (`.bad`); one the spool cannot take now
/// (a full disk) stays for the next tick.
fn process_submissions(spool: &Spool, stems: &[String], now: SystemTime) -> Result<usize> {
    let dirs = spool.dirs();
    let mut taken = 0;
    for stem in stems {
        let sub_path = dirs.control.join(format!("{stem}{SUBMISSION_SUFFIX}"));
        let msg_path = dirs.control.join(format!("{stem}{SUBMISSION_BODY_SUFFIX}"));
        let parsed = read_request(&sub_path)
            .map_err(|e| e.to_string())
            .and_then(|bytes| parse_submission(&bytes))
            .and_then(|(envelope, routes)| {
                let id = stem
                    .parse::<QueueId>()
                    .map_err(|e| format!("{stem}: not a queue id: {e}"))?;
                let body =
                    fs::read(&msg_path).map_err(|e| format!("{}: {e}", msg_path.display()))?;
                Ok((id, envelope, routes, body))
            });
        let Ok((id, envelope, routes, body)) = parsed else {
            set_aside(&sub_path);
            set_aside(&msg_path);
            continue;
        };
        match spool.enqueue_with_id(id, &envelope, &routes, &body, now) {
            // Queued before a crash left the files behind.
            Ok(_) | Err(QueueError::DuplicateId { .. }) => {}
            Err(_) => continue,
        }
        taken += 1;
        if fs::remove_file(&sub_path).is_err() {
            set_aside(&sub_path);
        }
        let _ = fs::remove_file(&msg_path);
    }
    Ok(taken)
}

/// Reads and removes an answer, if it is there.
fn take_answer(path: &Path) -> Result<Option<AdminReport>> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).at(path),
    };
    let report = serde_json::from_slice(&bytes).map_err(|e| QueueError::BadControl {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    fs::remove_file(path).at(path)?;
    Ok(Some(report))
}

/// Largest control request read; a request names ids and filters, a few KiB at most.
const MAX_REQUEST: u64 = 1 << 20;

/// Reads a request file, refusing anything but a regular file of sane size.
fn read_request(path: &Path) -> std::io::Result<Vec<u8>> {
    let meta = fs::symlink_metadata(path)?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    if meta.len() > MAX_REQUEST {
        return Err(std::io::Error::other(format!(
            "{} bytes, more than a request can be ({MAX_REQUEST})",
            meta.len()
        )));
    }
    fs::read(path)
}

/// Writes the answer `<stem>.done` durably.
fn answer(dirs: &crate::store::Dirs, stem: &str, report: &AdminReport) -> Result<()> {
    let done = dirs.control.join(format!("{stem}{DONE_SUFFIX}"));
    let json = serde_json::to_vec(report).map_err(|e| QueueError::BadControl {
        path: done.clone(),
        reason: e.to_string(),
    })?;
    store::write_durably(&dirs.tmp, &done, &json)
}

/// Renames a request that cannot be removed to `<name>.bad`, out of the way of later ticks
/// (left for the administrator to look at). If even that fails it is retried next tick,
/// which answers it again without stopping anything else.
fn set_aside(path: &Path) {
    let mut bad = path.as_os_str().to_owned();
    bad.push(".bad");
    let _ = fs::rename(path, PathBuf::from(bad));
}

/// Carries out every pending request in `control/` (owner side); returns how many.
pub(crate) fn process(spool: &Spool, now: SystemTime) -> Result<usize> {
    let dirs = spool.dirs();
    let mut requests: Vec<(String, PathBuf)> = Vec::new();
    let mut submissions: Vec<String> = Vec::new();
    let entries = match fs::read_dir(&dirs.control) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e).at(&dirs.control),
    };
    for entry in entries {
        let entry = entry.at(&dirs.control)?;
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if let Some(stem) = name.strip_suffix(REQUEST_SUFFIX) {
            requests.push((stem.to_owned(), path.clone()));
        } else if let Some(stem) = name.strip_suffix(SUBMISSION_SUFFIX) {
            submissions.push(stem.to_owned());
        } else if name.ends_with(DONE_SUFFIX) {
            let stale = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age > STALE_ANSWER);
            if stale {
                let _ = fs::remove_file(&path);
            }
        }
    }
    submissions.sort();
    let submitted = process_submissions(spool, &submissions, now)?;
    requests.sort();
    for (stem, path) in &requests {
        // Junk in the control folder (an unreadable or oversized file, a folder named like a
        // request) is answered with an error and set aside: it never stops housekeeping.
        let bytes = match read_request(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                let report = AdminReport {
                    error: Some(format!("{}: cannot read the request: {e}", path.display())),
                    ..AdminReport::default()
                };
                answer(dirs, stem, &report)?;
                set_aside(path);
                continue;
            }
        };
        let report = match serde_json::from_slice::<AdminRequest>(&bytes) {
            Ok(request) => spool.admin(&request, now)?,
            Err(e) => AdminReport {
                error: Some(format!("{}: invalid request: {e}", path.display())),
                ..AdminReport::default()
            },
        };
        answer(dirs, stem, &report)?;
        if fs::remove_file(path).is_err() {
            set_aside(path);
        }
    }
    if !requests.is_empty() || submitted > 0 {
        store::sync_dir(&dirs.control)?;
    }
    Ok(requests.len() + submitted)
}

//! Quarantine: legacy messages the pickup set aside (the raw bytes, with a `.err` file giving
//! the reason as file:line:column), and queue messages set aside after repeated crashes or
//! timeouts. A legacy message can be released after a fix (its text, edited or not, goes back
//! into the pickup folder as a new export file) or deleted.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use ccgate_queue::{Filter, QueueState};
use maud::html;
use serde::Deserialize;

use crate::auth::Viewer;
use crate::error::ConsoleError;
use crate::form::Fields;
use crate::layout::{self, Page, csrf_field, encode, utc};
use crate::{Console, queue};

/// Raw bytes shown at most.
const MAX_RAW: u64 = 256 * 1024;
/// Files listed at most.
const MAX_FILES: usize = 1000;

/// One set-aside legacy message.
#[derive(Debug)]
pub struct SetAside {
    /// The raw file's name.
    pub name: String,
    /// The reason (the `.err` file's first line).
    pub reason: String,
    /// Size of the raw bytes.
    pub size: u64,
    /// When it was set aside (Unix seconds).
    pub at: u64,
}

fn err_path(raw: &Path) -> PathBuf {
    let mut s = raw.as_os_str().to_owned();
    s.push(".err");
    PathBuf::from(s)
}

/// How many legacy messages are set aside.
pub fn count(dir: &Path) -> usize {
    fs::read_dir(dir).map_or(0, |entries| {
        entries
            .filter_map(Result::ok)
            .filter(|e| !e.file_name().to_string_lossy().ends_with(".err"))
            .count()
    })
}

/// The set-aside legacy messages, newest first.
pub fn list_dir(dir: &Path) -> Vec<SetAside> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<SetAside> = entries
        .filter_map(Result::ok)
        .filter(|e| !e.file_name().to_string_lossy().ends_with(".err"))
        .take(MAX_FILES)
        .map(|e| {
            let path = e.path();
            let meta = e.metadata().ok();
            SetAside {
                name: e.file_name().to_string_lossy().into_owned(),
                reason: fs::read_to_string(err_path(&path))
                    .map(|r| r.lines().next().unwrap_or("").to_owned())
                    .unwrap_or_else(|_| "(no reason file)".to_owned()),
                size: meta.as_ref().map_or(0, fs::Metadata::len),
                at: meta
                    .and_then(|m| m.modified().ok())
                    .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_secs()),
            }
        })
        .collect();
    out.sort_by(|a, b| b.at.cmp(&a.at).then_with(|| a.name.cmp(&b.name)));
    out
}

/// The path of a set-aside file named by a request, if it is one.
fn named(dir: &Path, name: &str) -> Result<PathBuf, ConsoleError> {
    if name.is_empty()
        || name.contains('/')
        || name.contains('\\')
        || name.starts_with('.')
        || name.ends_with(".err")
    {
        return Err(ConsoleError::BadRequest(format!(
            "{name:?} is not a quarantined file"
        )));
    }
    let path = dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(ConsoleError::NotFound(format!(
            "{name}: not in the quarantine (released or deleted?)"
        )))
    }
}

/// GET `/quarantine`.
pub async fn list(State(console): State<Arc<Console>>, viewer: Viewer) -> Response {
    let dir = console.parts.quarantine_dir.clone();
    let spool = Arc::clone(&console.parts.spool);
    let read = console
        .scan(move || {
            let filter = Filter {
                state: Some(QueueState::Quarantined),
                ..Filter::default()
            };
            (list_dir(&dir), spool.list(&filter, SystemTime::now()))
        })
        .await;
    let (files, messages) = match read {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let body = html! {
        h1 { "Quarantine" }
        h2 { "Legacy messages set aside by the pickup (" (files.len()) ")" }
        p.muted { "Each was never delivered in part. Fix the text and release it into the pickup folder, or delete it." }
        div.scroll tabindex="0" role="region" aria-label="Scrollable table" {
            table {
                thead { tr { th scope="col" { "file" } th scope="col" { "reason" } th.num scope="col" { "bytes" } th scope="col" { "set aside" } } }
                tbody {
                    @for f in &files {
                        tr {
                            td { a href=(format!("/quarantine/file?name={}", encode(&f.name))) { code { (f.name) } } }
                            td { (f.reason) }
                            td.num { (f.size) }
                            td { (utc(f.at)) }
                        }
                    }
                    @if files.is_empty() { tr { td colspan="4" { "Nothing set aside." } } }
                }
            }
        }
        h2 { "Queue messages set aside after crashes or timeouts (" (messages.len()) ")" }
        p.muted { "Release puts them back in the queue; see each message for its reason." }
        form method="post" action="/queue/action" {
            (csrf_field(&viewer))
            (queue::message_table(&messages, true))
            div.actions {
                button type="submit" name="action" value="release" { "Release" }
                button.danger type="submit" name="action" value="delete" { "Delete" }
            }
        }
    };
    layout::page(&Page::new("Quarantine", "quarantine"), &viewer, body).into_response()
}

/// `?name=`.
#[derive(Debug, Deserialize)]
pub struct NameQuery {
    #[serde(default)]
    name: String,
}

/// GET `/quarantine/file?name=`: the reason and the raw bytes, with the release form.
pub async fn show(
    State(console): State<Arc<Console>>,
    viewer: Viewer,
    Query(q): Query<NameQuery>,
) -> Response {
    let dir = console.parts.quarantine_dir.clone();
    let name = q.name.clone();
    let read = console
        .blocking(move || -> Result<(String, Vec<u8>, u64), ConsoleError> {
            let path = named(&dir, &name)?;
            let reason = fs::read_to_string(err_path(&path)).unwrap_or_default();
            let file = fs::File::open(&path)
                .map_err(|e| ConsoleError::NotFound(format!("{name}: {e}")))?;
            let size = file.metadata().map_or(0, |m| m.len());
            let mut raw = Vec::new();
            std::io::Read::read_to_end(&mut std::io::Read::take(file, MAX_RAW), &mut raw)
                .map_err(|e| ConsoleError::NotFound(format!("{name}: {e}")))?;
            Ok((reason, raw, size))
        })
        .await;
    let (reason, raw, size) = match read {
        Ok(Ok(r)) => r,
        Ok(Err(e)) | Err(e) => return e.into_response(),
    };
    let text = String::from_utf8_lossy(&raw);
    let body = html! {
        h1 { "Set aside: " code { (q.name) } }
        p { strong { "Reason: " } (reason) }
        p.muted { (size) " bytes" @if size > MAX_RAW { " (the first " (MAX_RAW) " shown; release sends the file as it is)" } "." }
        h2 { "Raw bytes" }
        pre { (text) }
        h2 { "Release or delete" }
        form method="post" action="/quarantine/action" class="stack" {
            (csrf_field(&viewer))
            input type="hidden" name="name" value=(q.name);
            @if size <= MAX_RAW {
                label for="fix" { "Text to release (edit to fix it)" }
                textarea id="fix" name="text" rows="14" { (text) }
            }
            div.actions {
                button type="submit" name="action" value="release" { "Release into the pickup folder" }
                button.danger type="submit" name="action" value="delete" { "Delete" }
            }
        }
    };
    layout::page(&Page::new("Quarantined file", "quarantine"), &viewer, body).into_response()
}

/// Writes `bytes` into `dir` as `name`, durably, without a reader ever seeing part of it.
fn write_into(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<PathBuf> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let target = dir.join(name);
    let mut f = fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, &target)?;
    fs::File::open(dir)?.sync_all()?;
    Ok(target)
}

/// POST `/quarantine/action`: `name`, `action` (release or delete), and `text` for release.
pub async fn action(State(console): State<Arc<Console>>, viewer: Viewer, body: Bytes) -> Response {
    let fields = Fields::parse(&body);
    let who = match viewer.may_act(&console, fields.get("csrf")) {
        Ok(who) => who,
        Err(refusal) => return *refusal,
    };
    let name = fields.get("name").unwrap_or("").to_owned();
    let verb = fields.get("action").unwrap_or("").to_owned();
    let text = fields
        .get("text")
        .map(|t| t.replace("\r\n", "\n").replace('\n', "\r\n"));
    let (dir, pickup) = (
        console.parts.quarantine_dir.clone(),
        console.parts.pickup_dir.clone(),
    );
    let (n, v) = (name.clone(), verb.clone());
    let done = console
        .blocking(move || -> Result<String, ConsoleError> {
            let path = named(&dir, &n)?;
            let io = |e: std::io::Error| ConsoleError::BadRequest(format!("{n}: {e}"));
            match v.as_str() {
                "release" => {
                    let bytes = match text {
                        Some(t) => t.into_bytes(),
                        None => fs::read(&path).map_err(io)?,
                    };
                    let stamp = SystemTime::now()
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs());
                    let target = write_into(&pickup, &format!("released-{stamp}-{n}"), &bytes)
                        .map_err(io)?;
                    fs::remove_file(err_path(&path)).ok();
                    fs::remove_file(&path).map_err(io)?;
                    Ok(format!("released into {}", target.display()))
                }
                "delete" => {
                    fs::remove_file(err_path(&path)).ok();
                    fs::remove_file(&path).map_err(io)?;
                    Ok("deleted".to_owned())
                }
                other => Err(ConsoleError::BadRequest(format!(
                    "unknown action {other:?}"
                ))),
            }
        })
        .await;
    match done {
        Ok(Ok(what)) => {
            tracing::info!(who = %who, action = %verb, file = %name, result = %what, "console quarantine action");
            let body = html! {
                h1 { "Quarantine" }
                p role="status" { code { (name) } ": " (what) "." }
                p { a href="/quarantine" { "Back to the quarantine" } }
            };
            layout::page(&Page::new("Quarantine", "quarantine"), &viewer, body).into_response()
        }
        Ok(Err(e)) | Err(e) => e.into_response(),
    }
}

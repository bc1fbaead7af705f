//! The queue: the `queue list` filters, one message with its per-recipient history and
//! headers, and the actions hold, release, retry, requeue and delete (through the spool's admin
//! request, the same one `ccgate queue` sends).

use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use ccgate_core::{QueueId, parse_duration};
use ccgate_queue::{AdminAction, AdminRequest, Filter, MessageInfo, QueueState};
use maud::{Markup, html};
use serde::Deserialize;

use crate::Console;
use crate::auth::Viewer;
use crate::error::ConsoleError;
use crate::form::Fields;
use crate::layout::{self, Page, age, csrf_field, encode, utc};

/// Rows shown at most in a listing.
const MAX_ROWS: usize = 500;
/// Header bytes shown at most.
const MAX_HEADER: usize = 64 * 1024;

/// The listing's filters (query string).
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    destination: String,
    #[serde(default)]
    sender: String,
    #[serde(default)]
    recipient: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    older_than: String,
}

fn some(text: &str) -> Option<String> {
    let t = text.trim();
    (!t.is_empty()).then(|| t.to_owned())
}

/// The spool filter of a query.
///
/// # Errors
/// A bad state or duration.
pub fn filter(q: &ListQuery) -> Result<Filter, ConsoleError> {
    let state = match q.state.trim() {
        "" => None,
        s => Some(
            QueueState::ALL
                .into_iter()
                .find(|st| st.to_string() == s)
                .ok_or_else(|| {
                    ConsoleError::BadRequest(format!(
                        "state {s:?}: not active, deferred, held or quarantined"
                    ))
                })?,
        ),
    };
    let older_than = match q.older_than.trim() {
        "" => None,
        d => Some(
            parse_duration(d)
                .map_err(|e| ConsoleError::BadRequest(format!("older than {d:?}: {e}")))?,
        ),
    };
    Ok(Filter {
        destination: some(&q.destination),
        sender: some(&q.sender),
        recipient: some(&q.recipient),
        state,
        older_than,
    })
}

/// GET `/queue`.
pub async fn list(
    State(console): State<Arc<Console>>,
    viewer: Viewer,
    Query(q): Query<ListQuery>,
) -> Response {
    let filter = match filter(&q) {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let spool = Arc::clone(&console.parts.spool);
    let listed = console
        .scan(move || spool.list(&filter, SystemTime::now()))
        .await;
    let messages = match listed {
        Ok(m) => m,
        Err(e) => return e.into_response(),
    };
    let body = html! {
        h1 { "Queue" }
        form.filters method="get" action="/queue" role="search" aria-label="Queue filters" {
            div { label for="f-dest" { "Destination" } input id="f-dest" name="destination" value=(q.destination) placeholder="modern, legacy, cutover ..."; }
            div { label for="f-sender" { "Sender" } input id="f-sender" name="sender" value=(q.sender); }
            div { label for="f-rcpt" { "Recipient" } input id="f-rcpt" name="recipient" value=(q.recipient); }
            div {
                label for="f-state" { "State" }
                select id="f-state" name="state" {
                    option value="" { "any" }
                    @for st in QueueState::ALL {
                        option value=(st) selected[q.state == st.to_string()] { (st) }
                    }
                }
            }
            div { label for="f-older" { "Older than" } input id="f-older" name="older_than" value=(q.older_than) placeholder="15m, 2d" size="8"; }
            div { button type="submit" { "Filter" } }
        }
        p { (messages.len()) " messages" @if messages.len() > MAX_ROWS { " (the first " (MAX_ROWS) " shown)" } "." }
        form method="post" action="/queue/action" {
            (csrf_field(&viewer))
            (message_table(&messages, true))
            (action_buttons())
        }
    };
    layout::page(&Page::new("Queue", "queue"), &viewer, body).into_response()
}

/// The action buttons of a form carrying `id` fields.
fn action_buttons() -> Markup {
    html! {
        div.actions {
            button type="submit" name="action" value="hold" { "Hold" }
            button type="submit" name="action" value="release" { "Release" }
            button type="submit" name="action" value="retry" { "Retry now" }
            button type="submit" name="action" value="requeue" { "Requeue (route again)" }
            button.danger type="submit" name="action" value="delete" { "Delete" }
        }
    }
}

/// A table of messages; with checkboxes when `select`.
pub fn message_table(messages: &[MessageInfo], select: bool) -> Markup {
    html! {
        div.scroll tabindex="0" role="region" aria-label="Scrollable table" {
            table {
                thead { tr {
                    @if select { th scope="col" { span.muted { "select" } } }
                    th scope="col" { "queue id" } th scope="col" { "state" } th scope="col" { "age" }
                    th.num scope="col" { "size" } th scope="col" { "sender" } th scope="col" { "recipients" }
                } }
                tbody {
                    @for m in messages.iter().take(MAX_ROWS) {
                        tr {
                            @if select {
                                td { input type="checkbox" name="id" value=(m.queue_id) id=(format!("sel-{}", m.queue_id)) aria-label=(format!("select {}", m.queue_id)); }
                            }
                            td { a href=(format!("/message?id={}", m.queue_id)) { code { (m.queue_id) } } }
                            td { (m.queue_name) }
                            td { (age(m.age_seconds)) }
                            td.num { (m.message_size) }
                            td { (if m.sender.is_empty() { "<>" } else { &m.sender }) }
                            td {
                                @for r in &m.recipients {
                                    div {
                                        (r.address) " → " code { (r.destination) } " " span.muted { (format!("{:?}", r.state).to_lowercase()) }
                                        @if let Some(reason) = r.delay_reason.as_ref().or(r.bounce_reason.as_ref()) { " " span.muted { "(" (reason) ")" } }
                                    }
                                }
                            }
                        }
                    }
                    @if messages.is_empty() { tr { td colspan="7" { "Nothing queued here." } } }
                }
            }
        }
    }
}

/// `?id=`.
#[derive(Debug, Deserialize)]
pub struct IdQuery {
    #[serde(default)]
    id: String,
}

/// GET `/message?id=`.
pub async fn show(
    State(console): State<Arc<Console>>,
    viewer: Viewer,
    Query(q): Query<IdQuery>,
) -> Response {
    let Ok(id) = q.id.trim().parse::<QueueId>() else {
        return ConsoleError::BadRequest(format!("{:?} is not a queue id", q.id)).into_response();
    };
    let spool = Arc::clone(&console.parts.spool);
    let detail = match console
        .blocking(move || spool.show(id, SystemTime::now()))
        .await
    {
        Ok(Ok(d)) => d,
        Ok(Err(e)) => return ConsoleError::NotFound(format!("{id}: {e}")).into_response(),
        Err(e) => return e.into_response(),
    };
    let end = detail
        .body
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(detail.body.len())
        .min(MAX_HEADER);
    let headers = String::from_utf8_lossy(detail.body.get(..end).unwrap_or_default());
    let info = &detail.info;
    let body = html! {
        h1 { "Message " code { (info.queue_id) } }
        p {
            (info.queue_name) " · arrived " (utc(info.arrival_time)) " (" (age(info.age_seconds)) " ago) · "
            (info.message_size) " bytes · from " (if info.sender.is_empty() { "<>" } else { &info.sender })
            @if let Some(q) = &info.quarantine_reason { " · " span.bad { "quarantined: " (q) } }
            @if let Some(b) = &info.bounce_of { " · bounce of " a href=(format!("/message?id={b}")) { (b) } }
        }
        @if let Some(e) = &detail.body_error {
            p.bad role="alert" { "The stored message cannot be read: " (e) }
        }
        p { a href=(format!("/trace?q={}", encode(&info.queue_id))) { "Trace this message" } }
        form method="post" action="/queue/action" {
            (csrf_field(&viewer))
            input type="hidden" name="id" value=(info.queue_id);
            (action_buttons())
        }
        h2 { "Recipients" }
        div.scroll tabindex="0" role="region" aria-label="Scrollable table" {
            table {
                thead { tr { th scope="col" { "recipient" } th scope="col" { "as received" } th scope="col" { "lane" } th scope="col" { "state" } th.num scope="col" { "attempts" } th scope="col" { "next attempt" } th scope="col" { "last error" } } }
                tbody {
                    @for r in &info.recipients {
                        tr {
                            td { (r.address) }
                            td { (r.orig_address.as_deref().unwrap_or("")) }
                            td { code { (r.destination) } }
                            td { (format!("{:?}", r.state).to_lowercase()) @if r.in_flight { " (in flight)" } }
                            td.num { (r.attempts) }
                            td { (r.next_attempt.map(utc).unwrap_or_default()) }
                            td { (r.status.as_deref().unwrap_or("")) " " (r.delay_reason.as_deref().or(r.bounce_reason.as_deref()).unwrap_or("")) }
                        }
                    }
                }
            }
        }
        h2 { "History" }
        div.scroll tabindex="0" role="region" aria-label="Scrollable table" {
            table {
                thead { tr { th scope="col" { "when" } th scope="col" { "event" } } }
                tbody {
                    @for h in &detail.history {
                        tr { td { (utc(h.at_ms / 1000)) } td { (h.event) } }
                    }
                }
            }
        }
        h2 { "Headers" }
        pre { (headers) }
    };
    layout::page(&Page::new("Message", "queue"), &viewer, body).into_response()
}

/// POST `/queue/action`: `action` and one or more `id`.
pub async fn action(State(console): State<Arc<Console>>, viewer: Viewer, body: Bytes) -> Response {
    let fields = Fields::parse(&body);
    let who = match viewer.may_act(&console, fields.get("csrf")) {
        Ok(who) => who,
        Err(refusal) => return *refusal,
    };
    let action = match fields.get("action").unwrap_or("") {
        "hold" => AdminAction::Hold,
        "release" => AdminAction::Release,
        "retry" => AdminAction::Retry,
        "delete" => AdminAction::Delete,
        "requeue" => AdminAction::Requeue,
        other => {
            return ConsoleError::BadRequest(format!("unknown action {other:?}")).into_response();
        }
    };
    let ids = fields.all("id");
    if ids.is_empty() {
        return ConsoleError::BadRequest("select at least one message".to_owned()).into_response();
    }
    let request = AdminRequest {
        action,
        ids: ids.clone(),
        all: false,
        filter: Filter::default(),
    };
    let spool = Arc::clone(&console.parts.spool);
    let report = match console
        .blocking(move || spool.admin(&request, SystemTime::now()))
        .await
    {
        Ok(Ok(report)) => report,
        Ok(Err(e)) => {
            return ConsoleError::BadRequest(format!("the queue refused: {e}")).into_response();
        }
        Err(e) => return e.into_response(),
    };
    let verb = fields.get("action").unwrap_or("");
    tracing::info!(who = %who, action = %verb, ids = %ids.join(","), affected = report.affected.len(), "console queue action");
    let body = html! {
        h1 { "Queue: " (verb) }
        p role="status" { (report.affected.len()) " messages: " (verb) " done." }
        @if !report.affected.is_empty() {
            ul { @for id in &report.affected { li { a href=(format!("/message?id={id}")) { code { (id) } } } } }
        }
        @if !report.not_found.is_empty() {
            p.warn { "Not in the queue: " (report.not_found.join(", ")) }
        }
        @if let Some(e) = &report.error { p.bad { (e) } }
        p { a href="/queue" { "Back to the queue" } }
    };
    layout::page(&Page::new("Queue action", "queue"), &viewer, body).into_response()
}

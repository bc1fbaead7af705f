//! Message trace ("where is my mail?"): the gateway's event log searched by address, queue
//! id or Message-ID and a time range, across both sides, each step with its reply or reason.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use ccgate_server::{TraceEvent, TraceQuery};
use maud::{Markup, html};
use serde::Deserialize;

use crate::Console;
use crate::auth::Viewer;
use crate::error::ConsoleError;
use crate::layout::{self, Page, encode, parse_utc, utc};

/// Events shown at most.
const MAX_EVENTS: usize = 500;

/// The search form's fields.
#[derive(Debug, Default, Deserialize)]
pub struct TraceForm {
    #[serde(default)]
    q: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
}

fn time(field: &str, text: &str) -> Result<Option<u64>, ConsoleError> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    parse_utc(text).map(Some).ok_or_else(|| {
        ConsoleError::BadRequest(format!(
            "{field} {text:?}: not a UTC time like 2026-12-02T20:30"
        ))
    })
}

/// GET `/trace`.
pub async fn page(
    State(console): State<Arc<Console>>,
    viewer: Viewer,
    Query(form): Query<TraceForm>,
) -> Response {
    let query = match (time("from", &form.since), time("until", &form.until)) {
        (Ok(since), Ok(until)) => TraceQuery {
            text: form.q.clone(),
            since,
            until,
        },
        (Err(e), _) | (_, Err(e)) => return e.into_response(),
    };
    let searched = !form.q.trim().is_empty() || query.since.is_some() || query.until.is_some();
    let events = match (&console.parts.trace, searched) {
        (Some(log), true) => {
            let log = Arc::clone(log);
            match console
                .blocking(move || log.search(&query, MAX_EVENTS))
                .await
            {
                Ok(e) => e,
                Err(e) => return e.into_response(),
            }
        }
        _ => Vec::new(),
    };
    let body = html! {
        h1 { "Message trace" }
        p.muted { "What the gateway did with each message: accepted, routed, rewritten, held, delivered, deferred, bounced, quarantined, replayed. Kept in the data folder up to a size bound (oldest first out); no message bodies or subjects are kept." }
        form.filters method="get" action="/trace" role="search" aria-label="Search the trace" {
            div { label for="t-q" { "Address, queue id or Message-ID" } input id="t-q" name="q" type="search" value=(form.q) size="36"; }
            div { label for="t-since" { "From (UTC)" } input id="t-since" name="since" type="datetime-local" value=(form.since); }
            div { label for="t-until" { "Until (UTC)" } input id="t-until" name="until" type="datetime-local" value=(form.until); }
            div { button type="submit" { "Search" } }
        }
        @if console.parts.trace.is_none() {
            p.notice { "The message trace is off." }
        } @else if searched {
            p { (events.len()) " events" @if events.len() >= MAX_EVENTS { " (the newest " (MAX_EVENTS) ")" } "." }
            (event_table(&events))
        }
    };
    layout::page(&Page::new("Message trace", "trace"), &viewer, body).into_response()
}

/// Events as a table, newest first.
pub fn event_table(events: &[TraceEvent]) -> Markup {
    html! {
        div.scroll tabindex="0" role="region" aria-label="Scrollable table" {
            table {
                thead { tr { th scope="col" { "when (UTC)" } th scope="col" { "event" } th scope="col" { "queue id" } th scope="col" { "from" } th scope="col" { "to" } th scope="col" { "where" } th scope="col" { "reply or reason" } } }
                tbody {
                    @for e in events {
                        tr {
                            td { (utc(e.at / 1000)) }
                            td { (e.event) }
                            td { @if !e.queue_id.is_empty() { a href=(format!("/trace?q={}", encode(&e.queue_id))) { code { (e.queue_id) } } } }
                            td { (e.from) }
                            td { (e.to.join(", ")) }
                            td { (e.side) }
                            td { (e.detail) @if !e.message_id.is_empty() { br; span.muted { "Message-ID " (e.message_id) } } }
                        }
                    }
                    @if events.is_empty() { tr { td colspan="7" { "No events." } } }
                }
            }
        }
    }
}

//! People: the directory searched by name or any address; one person with state, proxies,
//! target, how mail to each address routes now, their queued and held mail, and their recent
//! mail both ways (from the message trace).

use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use ccgate_queue::{Filter, MessageInfo};
use ccgate_router::{Entry, Origin, Router};
use ccgate_server::{TraceEvent, TraceQuery};
use maud::{Markup, html};
use serde::Deserialize;

use crate::auth::Viewer;
use crate::error::ConsoleError;
use crate::layout::{self, Page, encode};
use crate::{Console, queue, trace};

/// Results shown at most.
const MAX_RESULTS: usize = 200;

/// `?q=`.
#[derive(Debug, Default, Deserialize)]
pub struct SearchQuery {
    #[serde(default)]
    q: String,
}

/// The key that names an entry in links: its legacy name, else its primary SMTP address,
/// else its display name.
pub fn key(entry: &Entry) -> String {
    entry
        .legacy_name()
        .map(str::to_owned)
        .or_else(|| entry.primary_smtp().map(ToString::to_string))
        .unwrap_or_else(|| entry.display_name().to_owned())
}

fn matches(entry: &Entry, needle: &str) -> bool {
    let has = |s: &str| s.to_lowercase().contains(needle);
    has(entry.display_name())
        || entry.legacy_name().is_some_and(has)
        || entry.proxies().iter().any(|p| has(p.as_str()))
        || entry.target_address().is_some_and(|t| has(&t.to_string()))
}

/// Whether `key` names `entry` exactly (legacy name, display name or any address).
fn is(entry: &Entry, key: &str) -> bool {
    let key = key.trim();
    let eq = |s: &str| s.eq_ignore_ascii_case(key);
    entry.legacy_name().is_some_and(eq)
        || entry.legacy_address().is_some_and(|a| eq(&a.to_string()))
        || eq(entry.display_name())
        || entry.proxies().iter().any(|p| {
            eq(p.as_str())
                || p.smtp().is_some_and(|a| eq(&a.to_string()))
                || p.legacy().is_some_and(|a| eq(&a.to_string()))
        })
        || entry.target_address().is_some_and(|t| eq(&t.to_string()))
}

/// GET `/people?q=`.
pub async fn search(
    State(console): State<Arc<Console>>,
    viewer: Viewer,
    Query(q): Query<SearchQuery>,
) -> Response {
    let needle = q.q.trim().to_lowercase();
    let c = Arc::clone(&console);
    let n = needle.clone();
    let found = console
        .blocking(move || {
            let directory = c.parts.routing.handle().current();
            let all: Vec<Arc<Entry>> = directory
                .entries()
                .iter()
                .filter(|e| n.is_empty() || matches(e, &n))
                .cloned()
                .collect();
            (directory.len(), all)
        })
        .await;
    let (total, found) = match found {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let names: Vec<String> = found.iter().take(MAX_RESULTS).map(|e| key(e)).collect();
    let body = html! {
        h1 { "People" }
        form.filters method="get" action="/people" role="search" aria-label="Search people" {
            div {
                label for="q" { "Name or any address" }
                input id="q" name="q" type="search" value=(q.q) size="32" placeholder="Doe, Jane or jane.doe@...";
            }
            div { button type="submit" { "Search" } }
        }
        p {
            (found.len()) " of " (total) " people"
            @if found.len() > MAX_RESULTS { " (the first " (MAX_RESULTS) " shown)" } "."
            @if !found.is_empty() && !needle.is_empty() {
                " " a href=(format!("/cutover?names={}", encode(&names.join("\n")))) { "Cut these people over" }
            }
        }
        div.scroll tabindex="0" role="region" aria-label="Scrollable table" {
            table {
                thead { tr { th scope="col" { "name" } th scope="col" { "legacy name" } th scope="col" { "primary address" } th scope="col" { "state" } th scope="col" { "target" } } }
                tbody {
                    @for e in found.iter().take(MAX_RESULTS) {
                        tr {
                            td { a href=(format!("/person?key={}", encode(&key(e)))) { (e.display_name()) } }
                            td { (e.legacy_address().map(ToString::to_string).unwrap_or_default()) }
                            td { (e.primary_smtp().map(ToString::to_string).unwrap_or_default()) }
                            td { (e.state()) }
                            td { (e.target_address().map(ToString::to_string).unwrap_or_default()) }
                        }
                    }
                }
            }
        }
    };
    layout::page(&Page::new("People", "people"), &viewer, body).into_response()
}

/// `?key=`.
#[derive(Debug, Default, Deserialize)]
pub struct PersonQuery {
    #[serde(default)]
    key: String,
}

/// One person's entry, routes, queued mail and recent events.
type Found = (Arc<Entry>, Vec<Route>, Vec<MessageInfo>, Vec<TraceEvent>);

struct Route {
    address: String,
    destination: String,
    rewritten: String,
    explain: String,
}

/// GET `/person?key=`.
pub async fn person(
    State(console): State<Arc<Console>>,
    viewer: Viewer,
    Query(q): Query<PersonQuery>,
) -> Response {
    let c = Arc::clone(&console);
    let wanted = q.key.clone();
    let found = console
        .scan(move || -> Result<Found, ConsoleError> {
            let directory = c.parts.routing.handle().current();
            let entry = directory
                .entries()
                .iter()
                .find(|e| is(e, &wanted))
                .cloned()
                .ok_or_else(|| {
                    ConsoleError::NotFound(format!(
                        "{wanted:?}: nobody in the directory has this name or address"
                    ))
                })?;
            let router_config = c.parts.routing.config();
            let router = Router::new(&directory, &router_config);
            let mut routes = Vec::new();
            let mut addresses = Vec::new();
            for proxy in entry.proxies() {
                let decision = if let Some(a) = proxy.smtp() {
                    addresses.push(a.to_string());
                    router.route_smtp(Origin::Smtp, a)
                } else if let Some(a) = proxy.legacy() {
                    router.route_legacy(Origin::Legacy, a)
                } else {
                    continue;
                };
                routes.push(Route {
                    address: proxy.as_str().to_owned(),
                    destination: decision.destination.name().to_owned(),
                    rewritten: decision.rewritten_recipient().unwrap_or_default(),
                    explain: decision.explain(),
                });
            }
            if let Some(t) = entry.target_address() {
                addresses.push(t.to_string());
            }
            let now = SystemTime::now();
            let mut mail: Vec<MessageInfo> = Vec::new();
            for a in &addresses {
                for filter in [
                    Filter {
                        recipient: Some(a.clone()),
                        ..Filter::default()
                    },
                    Filter {
                        sender: Some(a.clone()),
                        ..Filter::default()
                    },
                ] {
                    for m in c.parts.spool.list(&filter, now) {
                        if !mail.iter().any(|x| x.queue_id == m.queue_id) {
                            mail.push(m);
                        }
                    }
                }
            }
            let mut events = Vec::new();
            if let Some(log) = &c.parts.trace {
                for a in addresses
                    .iter()
                    .chain(entry.legacy_address().map(ToString::to_string).iter())
                {
                    let query = TraceQuery {
                        text: a.clone(),
                        ..TraceQuery::default()
                    };
                    for e in log.search(&query, 100) {
                        if !events.contains(&e) {
                            events.push(e);
                        }
                    }
                }
                events.sort_by_key(|e: &TraceEvent| std::cmp::Reverse(e.at));
                events.truncate(100);
            }
            Ok((entry, routes, mail, events))
        })
        .await;
    let (entry, routes, mail, events) = match found {
        Ok(Ok(f)) => f,
        Ok(Err(e)) | Err(e) => return e.into_response(),
    };
    let key = key(&entry);
    let body = html! {
        h1 { (entry.display_name()) }
        dl {
            dt { "State" } dd { strong { (entry.state()) } }
            dt { "Legacy mailbox" } dd { (entry.legacy_address().map(ToString::to_string).unwrap_or_else(|| "none".to_owned())) }
            dt { "Target address" } dd { (entry.target_address().map(ToString::to_string).unwrap_or_else(|| "none".to_owned())) }
            dt { "Directory line" } dd { (entry.line()) }
        }
        p { a href=(format!("/cutover?names={}", encode(&key))) { "Cut over this person" } }
        h2 { "How mail to each address routes now" }
        (route_table(&routes))
        h2 { "Queued and held mail (" (mail.len()) ")" }
        (queue::message_table(&mail, false))
        h2 { "Recent mail, both ways" }
        @if console.parts.trace.is_some() {
            (trace::event_table(&events))
        } @else {
            p.muted { "The message trace is off." }
        }
    };
    layout::page(&Page::new(entry.display_name(), "people"), &viewer, body).into_response()
}

fn route_table(routes: &[Route]) -> Markup {
    html! {
        div.scroll tabindex="0" role="region" aria-label="Scrollable table" {
            table {
                thead { tr { th scope="col" { "address" } th scope="col" { "goes to" } th scope="col" { "delivered as" } th scope="col" { "why" } } }
                tbody {
                    @for r in routes {
                        tr { td { code { (r.address) } } td { (r.destination) } td { (r.rewritten) } td { (r.explain) } }
                    }
                }
            }
        }
    }
}

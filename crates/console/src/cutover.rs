//! Cutover: select people (one, a search result, or a CSV list) and move them to `migrating`
//! or `migrated`. The binary's [`DirectoryEditor`] changes the directory source for real,
//! reloads it and releases the held mail; the page shows the result per person.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use ccgate_router::State as PersonState;
use maud::html;
use serde::Deserialize;

use crate::Console;
use crate::auth::Viewer;
use crate::error::ConsoleError;
use crate::form::Fields;
use crate::layout::{self, Page, csrf_field};
use crate::schedule::Scheduled;

/// People to move, and where.
#[derive(Debug, Clone)]
pub struct CutoverRequest {
    /// Legacy names or addresses, as given.
    pub names: Vec<String>,
    /// The new state.
    pub state: PersonState,
    /// Who asked (for the log).
    pub who: String,
}

/// What happened to one person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CutoverOutcome {
    /// The name as given.
    pub name: String,
    /// `Ok("legacy -> migrated")` or why not.
    pub result: Result<String, String>,
}

/// What a cutover did as a whole.
#[derive(Debug, Clone, Default)]
pub struct CutoverReport {
    /// Per person.
    pub people: Vec<CutoverOutcome>,
    /// Messages whose held mail was routed again after the reload.
    pub released: u64,
    /// Set when the source could not be changed at all (nothing was changed).
    pub error: Option<String>,
}

/// Changes people's state in the directory source, reloads it, releases held mail.
/// Called off the async workers: it may block.
pub trait DirectoryEditor: Send + Sync {
    /// Carries out `request`.
    fn set_state(&self, request: &CutoverRequest) -> CutoverReport;
    /// Where the directory comes from, for the page.
    fn describe(&self) -> String;
}

/// Runs a scheduled cutover at its time: a task sleeps until then (at once if the time passed
/// while the gateway was down), carries it out, logs the result and removes it from the list.
pub(crate) fn spawn(console: &Arc<Console>, entry: &Scheduled) {
    let console = Arc::clone(console);
    let (id, at) = (entry.id, entry.at);
    tokio::spawn(async move {
        let wait = at.saturating_sub(layout::now_secs());
        tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
        // Cancelled meanwhile: nothing to do.
        let Some(entry) = console.schedule.start(id, at) else {
            return;
        };
        let late = layout::now_secs().saturating_sub(at);
        let request = entry.request;
        let editor = Arc::clone(&console.parts.editor);
        let r = request.clone();
        match console.blocking(move || editor.set_state(&r)).await {
            Ok(report) => {
                let ok = report.people.iter().filter(|p| p.result.is_ok()).count();
                tracing::info!(id, who = %request.who, state = %request.state, people = request.names.len(), changed = ok, released = report.released, late_secs = late, error = report.error.as_deref().unwrap_or(""), "console cutover (scheduled)");
            }
            Err(e) => {
                // The runtime is stopping: the entry stays in the file and runs at the next start.
                tracing::warn!(id, who = %request.who, error = %e, "scheduled cutover not run; it runs at the next start");
                return;
            }
        }
        if let Err(e) = console.schedule.done(id) {
            tracing::warn!(id, error = %e, "scheduled cutover ran but stays in the list: it runs again (harmlessly) at the next start");
        }
    });
}

/// `?names=` to preselect people (from a search result).
#[derive(Debug, Default, Deserialize)]
pub struct Preselect {
    #[serde(default)]
    names: String,
}

/// GET `/cutover`.
pub async fn page(
    State(console): State<Arc<Console>>,
    viewer: Viewer,
    Query(q): Query<Preselect>,
) -> Response {
    let source = console.parts.editor.describe();
    let pending = console.schedule.entries();
    let body = html! {
        h1 { "Cutover" }
        p { "Move people to " strong { "migrating" } " (their mail is held, never bounced) or " strong { "migrated" } " (their mail, held mail included, goes to the modern side). The directory source (" code { (source) } ") is changed for real, reloaded at once, and held mail is released." }
        form method="post" action="/cutover" class="stack" {
            (csrf_field(&viewer))
            label for="names" { "People: one per line, legacy names or addresses (a CSV list may be pasted: its first column is used)" }
            textarea id="names" name="names" rows="8" { (q.names) }
            fieldset {
                legend { "New state" }
                input type="radio" id="st-migrating" name="state" value="migrating";
                label for="st-migrating" { " migrating " }
                input type="radio" id="st-migrated" name="state" value="migrated" checked;
                label for="st-migrated" { " migrated " }
                input type="radio" id="st-legacy" name="state" value="legacy";
                label for="st-legacy" { " legacy (roll back) " }
            }
            label for="at" { "At (UTC; empty: now)" }
            input id="at" name="at" type="datetime-local";
            div.actions { button type="submit" { "Apply" } }
        }
        @if let Some(e) = &console.schedule_error {
            p.bad role="alert" { "Scheduled cutovers could not be read, so none is carried out: " (e) ". Fix or remove the file, then restart the gateway." }
        }
        @if !pending.is_empty() {
            h2 { "Scheduled" }
            p { "Kept in the data folder: a restart does not forget them; one whose time passes while the gateway is down runs when it is back." }
            ul.scheduled {
                @for s in &pending {
                    li {
                        (layout::utc(s.at)) ": " (s.request.names.len()) " people to " (s.request.state) " (" (s.request.who) "): " (s.request.names.join("; "))
                        @if s.running {
                            " (running)"
                        } @else {
                            form method="post" action="/cutover/cancel" class="inline" {
                                (csrf_field(&viewer))
                                input type="hidden" name="id" value=(s.id);
                                button type="submit" aria-label=(format!("Cancel the cutover at {}", layout::utc(s.at))) { "Cancel" }
                            }
                        }
                    }
                }
            }
        }
    };
    layout::page(&Page::new("Cutover", "cutover"), &viewer, body).into_response()
}

/// The names of a pasted list: one per line; a CSV line gives its first field (quoted or not);
/// comments, blanks and a header line (`legacy_name`, `name`, `address`) are skipped.
pub fn names(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let head = line.split(',').next().unwrap_or(line).trim();
        if ["legacy_name", "name", "address", "display_name"]
            .contains(&head.to_ascii_lowercase().as_str())
        {
            continue;
        }
        let first = if let Some(rest) = line.strip_prefix('"') {
            rest.split_once('"').map_or(rest, |(f, _)| f)
        } else if head.contains('@') {
            head
        } else {
            // A legacy name holds a comma (`Doe, Jane`): an unquoted line is one name.
            line
        };
        let first = first.trim();
        if !first.is_empty() && !out.iter().any(|n| n == first) {
            out.push(first.to_owned());
        }
    }
    out
}

/// POST `/cutover`.
pub async fn action(State(console): State<Arc<Console>>, viewer: Viewer, body: Bytes) -> Response {
    let fields = Fields::parse(&body);
    let who = match viewer.may_act(&console, fields.get("csrf")) {
        Ok(who) => who,
        Err(refusal) => return *refusal,
    };
    let state = match fields.get("state").unwrap_or("") {
        "migrating" => PersonState::Migrating,
        "migrated" => PersonState::Migrated,
        "legacy" => PersonState::Legacy,
        other => {
            return ConsoleError::BadRequest(format!(
                "state {other:?}: not legacy, migrating or migrated"
            ))
            .into_response();
        }
    };
    let mut people = names(fields.get("names").unwrap_or(""));
    people.extend(fields.all("name"));
    if people.is_empty() {
        return ConsoleError::BadRequest("name at least one person".to_owned()).into_response();
    }
    let request = CutoverRequest {
        names: people,
        state,
        who: who.clone(),
    };
    let at = match fields.get("at").unwrap_or("").trim() {
        "" => None,
        text => match layout::parse_utc(text) {
            Some(at) if at > layout::now_secs() => Some(at),
            Some(_) => None,
            None => {
                return ConsoleError::BadRequest(format!(
                    "at {text:?}: not a UTC time like 2026-12-02T23:30"
                ))
                .into_response();
            }
        },
    };
    if let Some(at) = at {
        let n = request.names.len();
        if console.schedule_error.is_some() {
            return ConsoleError::Unavailable(
                "the scheduled cutovers on disk could not be read: fix them first".to_owned(),
            )
            .into_response();
        }
        let schedule = Arc::clone(&console);
        let entry = match console
            .blocking(move || schedule.schedule.add(at, request))
            .await
        {
            Ok(Ok(entry)) => entry,
            Ok(Err(e)) => {
                tracing::warn!(who = %who, error = %e, "console cutover not scheduled");
                return ConsoleError::Unavailable(format!("not scheduled: {e}")).into_response();
            }
            Err(e) => return e.into_response(),
        };
        spawn(&console, &entry);
        tracing::info!(id = entry.id, who = %who, state = %state, people = n, at = %layout::utc(at), "console cutover scheduled");
        let body = html! {
            h1 { "Cutover scheduled" }
            p role="status" { (n) " people move to " (state) " at " (layout::utc(at)) ". The result is written to the log then. The schedule is kept in the data folder: a restart does not forget it." }
            p { a href="/cutover" { "Back to the cutover" } }
        };
        return layout::page(&Page::new("Cutover scheduled", "cutover"), &viewer, body)
            .into_response();
    }
    let editor = Arc::clone(&console.parts.editor);
    let r = request.clone();
    let report = match console.blocking(move || editor.set_state(&r)).await {
        Ok(report) => report,
        Err(e) => return e.into_response(),
    };
    let ok = report.people.iter().filter(|p| p.result.is_ok()).count();
    tracing::info!(who = %who, state = %state, people = request.names.len(), changed = ok, released = report.released, "console cutover");
    let body = html! {
        h1 { "Cutover to " (state) }
        @if let Some(e) = &report.error {
            p.bad role="alert" { "Nothing was changed: " (e) }
        }
        p role="status" { (ok) " of " (report.people.len()) " people changed; " (report.released) " held messages released." }
        div.scroll tabindex="0" role="region" aria-label="Scrollable table" {
            table {
                thead { tr { th scope="col" { "person" } th scope="col" { "result" } } }
                tbody {
                    @for p in &report.people {
                        tr {
                            td { a href=(format!("/person?key={}", layout::encode(&p.name))) { (p.name) } }
                            td {
                                @match &p.result {
                                    Ok(what) => span.ok { "✔ " (what) },
                                    Err(why) => span.bad { "✖ " (why) },
                                }
                            }
                        }
                    }
                }
            }
        }
        p { a href="/cutover" { "Another cutover" } " · " a href="/" { "Overview" } }
    };
    layout::page(&Page::new("Cutover result", "cutover"), &viewer, body).into_response()
}

/// POST `/cutover/cancel`: removes a scheduled cutover that has not started.
pub async fn cancel(State(console): State<Arc<Console>>, viewer: Viewer, body: Bytes) -> Response {
    let fields = Fields::parse(&body);
    let who = match viewer.may_act(&console, fields.get("csrf")) {
        Ok(who) => who,
        Err(refusal) => return *refusal,
    };
    let Some(id) = fields
        .get("id")
        .and_then(|id| id.trim().parse::<u64>().ok())
    else {
        return ConsoleError::BadRequest("id: the number of a scheduled cutover".to_owned())
            .into_response();
    };
    let schedule = Arc::clone(&console);
    let (heading, text) = match console.blocking(move || schedule.schedule.cancel(id)).await {
        Err(e) => return e.into_response(),
        Ok(Err(e)) => {
            return ConsoleError::Unavailable(format!("not cancelled: {e}")).into_response();
        }
        Ok(Ok(None)) => {
            return ConsoleError::NotFound(format!(
                "no scheduled cutover {id}: it ran or was cancelled"
            ))
            .into_response();
        }
        Ok(Ok(Some(Err(running)))) => (
            "Cutover running",
            format!(
                "The cutover of {} people to {} has started and can no longer be cancelled.",
                running.request.names.len(),
                running.request.state
            ),
        ),
        Ok(Ok(Some(Ok(gone)))) => {
            tracing::info!(id, who = %who, state = %gone.request.state, people = gone.request.names.len(), at = %layout::utc(gone.at), "console cutover cancelled");
            (
                "Cutover cancelled",
                format!(
                    "The cutover of {} people to {} at {} is cancelled.",
                    gone.request.names.len(),
                    gone.request.state,
                    layout::utc(gone.at)
                ),
            )
        }
    };
    let body = html! {
        h1 { (heading) }
        p role="status" { (text) }
        p { a href="/cutover" { "Back to the cutover" } }
    };
    layout::page(&Page::new(heading, "cutover"), &viewer, body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pasted_lists() {
        let text = "legacy_name,state\n\"Doe, Jane\",legacy\n# comment\n\nbob@legacy.example.com,x\nSmith, Ann at HQ\nDoe, Jane\n";
        assert_eq!(
            names(text),
            ["Doe, Jane", "bob@legacy.example.com", "Smith, Ann at HQ"]
        );
    }
}

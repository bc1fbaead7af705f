//! The overview: mail flow both ways, the queue by lane and state with the qshape ages, held
//! mail at cutover, quarantine, the health of each part, and migration progress.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use ccgate_core::Lane;
use ccgate_queue::{Depth, LaneInfo, LaneStatus, QueueState, Summary};
use ccgate_router::State as PersonState;
use ccgate_server::MetricEvent;
use maud::{Markup, html};

use crate::auth::Viewer;
use crate::flow::Window;
use crate::layout::{self, Page, age, now_secs, utc};
use crate::{Console, quarantine};

struct Snapshot {
    depth: Depth,
    summary: Summary,
    lanes: Vec<LaneInfo>,
    status: ccgate_queue::SpoolStatus,
    states: [(PersonState, u64); 3],
    entries: usize,
    generation: u64,
    quarantined_files: usize,
    spool_free: Option<(u64, u64)>,
    pickup_free: Option<(u64, u64)>,
}

/// Free and total bytes of the filesystem holding `path`.
fn space(path: &std::path::Path) -> Option<(u64, u64)> {
    let s = rustix::fs::statvfs(path).ok()?;
    Some((
        s.f_bavail.saturating_mul(s.f_frsize),
        s.f_blocks.saturating_mul(s.f_frsize),
    ))
}

fn free(space: Option<(u64, u64)>) -> String {
    let gb = |n: u64| n as f64 / 1e9;
    match space {
        Some((free, total)) if total > 0 => format!(
            "{:.1} GB free of {:.1} GB ({}%)",
            gb(free),
            gb(total),
            free.saturating_mul(100) / total
        ),
        _ => "free space unknown".to_owned(),
    }
}

/// GET `/`.
pub async fn page(State(console): State<Arc<Console>>, viewer: Viewer) -> Response {
    let c = Arc::clone(&console);
    let snapshot = console
        .scan(move || {
            let now = SystemTime::now();
            let directory = c.parts.routing.handle().current();
            let mut states = [
                (PersonState::Legacy, 0u64),
                (PersonState::Migrating, 0),
                (PersonState::Migrated, 0),
            ];
            for entry in directory.entries() {
                for (state, n) in &mut states {
                    if *state == entry.state() {
                        *n += 1;
                    }
                }
            }
            Snapshot {
                depth: c.parts.spool.depth(now),
                summary: c.parts.spool.summary(now),
                lanes: c.parts.spool.lanes(now),
                status: c.parts.spool.status(),
                states,
                entries: directory.len(),
                generation: c.parts.routing.handle().generation(),
                quarantined_files: quarantine::count(&c.parts.quarantine_dir),
                spool_free: space(c.parts.spool.dir()),
                pickup_free: space(&c.parts.pickup_dir),
            }
        })
        .await;
    let snapshot = match snapshot {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let hour = console.flow.window(&console, 3600);
    let day = console.flow.window(&console, 86_400);
    let body = html! {
        h1 { "Overview" }
        div id="live" {
            (live(&console, &snapshot, &hour, &day))
        }
        script src="/console.js" {}
    };
    layout::page(&Page::new("Overview", "overview"), &viewer, body).into_response()
}

fn live(console: &Console, s: &Snapshot, hour: &Window, day: &Window) -> Markup {
    let held_cutover: u64 = s
        .depth
        .recipients
        .iter()
        .filter(|r| r.destination == Lane::Cutover && r.state == QueueState::Held)
        .map(|r| r.recipients)
        .sum();
    let messages = |state: QueueState| {
        s.depth
            .messages
            .iter()
            .find(|(st, _)| *st == state)
            .map_or(0, |(_, n)| *n)
    };
    let dir = console.parts.metrics.directory_status();
    let when = |t: Option<std::time::SystemTime>| {
        t.and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or_else(|| "never".to_owned(), |d| utc(d.as_secs()))
    };
    let ready = console.parts.ready.load(Ordering::Relaxed);
    html! {
        div.grid {
            section.card aria-labelledby="flow-h" {
                h2 id="flow-h" { "Mail flow" }
                div.scroll tabindex="0" role="region" aria-label="Scrollable table" {
                    table {
                        caption.muted { "Messages accepted and recipients delivered" }
                        thead { tr { th scope="col" { "" } th.num scope="col" { "last hour" } th.num scope="col" { "last day" } } }
                        tbody {
                            (flow_row("Accepted by SMTP (modern side and outside)", hour.get(MetricEvent::Accepted, "smtp"), day.get(MetricEvent::Accepted, "smtp"), "accepted-smtp"))
                            (flow_row("Accepted from the legacy side", hour.get(MetricEvent::Accepted, "legacy"), day.get(MetricEvent::Accepted, "legacy"), "accepted-legacy"))
                            (flow_row("Delivered to the legacy post office", hour.get(MetricEvent::Delivered, Lane::Legacy.as_str()), day.get(MetricEvent::Delivered, Lane::Legacy.as_str()), "delivered-legacy"))
                            (flow_row("Delivered to the modern side", hour.get(MetricEvent::Delivered, Lane::Modern.as_str()), day.get(MetricEvent::Delivered, Lane::Modern.as_str()), "delivered-modern"))
                            (flow_row("Deferred attempts", hour.total(MetricEvent::Deferred), day.total(MetricEvent::Deferred), "deferred"))
                            (flow_row("Bounced", hour.total(MetricEvent::Bounced), day.total(MetricEvent::Bounced), "bounced"))
                            (flow_row("Refused at RCPT", hour.total(MetricEvent::Rejected), day.total(MetricEvent::Rejected), "rejected"))
                        }
                    }
                }
                @if day.covered < 86_400 {
                    p.muted { "Counted since the gateway started " (age(day.covered)) " ago." }
                }
            }
            section.card aria-labelledby="queue-h" {
                h2 id="queue-h" { "Queue" }
                p {
                    a href="/queue?state=active" { span.big data-figure="active" { (messages(QueueState::Active)) } " active" } ", "
                    a href="/queue?state=deferred" { (messages(QueueState::Deferred)) " deferred" } ", "
                    a href="/queue?state=held" { (messages(QueueState::Held)) " held" } ", "
                    a href="/quarantine" { (messages(QueueState::Quarantined)) " quarantined" }
                }
                p { "Held at cutover: " a href="/queue?destination=cutover&state=held" { strong data-figure="held-cutover" { (held_cutover) } " recipients" } }
                p { "Legacy messages set aside by the pickup: " a href="/quarantine" { strong data-figure="quarantined-files" { (s.quarantined_files) } } }
            }
            section.card aria-labelledby="progress-h" {
                h2 id="progress-h" { "Migration progress" }
                (chart(&s.states))
            }
        }
        section aria-labelledby="lanes-h" {
            h2 id="lanes-h" { "Recipients by lane and state" }
            div.scroll tabindex="0" role="region" aria-label="Scrollable table" { (depth_table(&s.depth)) }
        }
        section aria-labelledby="shape-h" {
            h2 id="shape-h" { "Messages by destination and age (qshape, minutes)" }
            div.scroll tabindex="0" role="region" aria-label="Scrollable table" { (summary_table(&s.summary)) }
        }
        section aria-labelledby="health-h" {
            h2 id="health-h" { "Health" }
            div.scroll tabindex="0" role="region" aria-label="Scrollable table" {
                table {
                    thead { tr { th scope="col" { "part" } th scope="col" { "state" } th scope="col" { "detail" } } }
                    tbody {
                        tr { td { "SMTP listener" } td { (flag(ready, "up", "starting")) } td { "" } }
                        tr { td { "Spool" } td { @if s.status == ccgate_queue::SpoolStatus::Accepting { span.ok { "✔ taking mail" } } @else { span.bad { "✖ " (s.status) } } } td { (s.depth.messages.iter().map(|(_, n)| n).sum::<u64>()) " messages queued; " (free(s.spool_free)) } }
                        @for lane in &s.lanes {
                            tr { td { "Lane " code { (lane.name) } } td { (lane_status(lane)) } td { (lane.in_flight) " of " (lane.limit) " attempts running" } }
                        }
                        tr {
                            td { "Directory" }
                            td { (flag(dir.failed_at <= dir.loaded_at, "loaded", "last reload failed (see the log)")) }
                            td { (s.entries) " entries; last loaded " (when(dir.loaded_at)) "; " (dir.loads) " loads (generation " (s.generation) "), " (dir.failures) " failed reloads" @if dir.failures > 0 { ", the last " (when(dir.failed_at)) } }
                        }
                        tr { td { "Legacy pickup" } td { (flag(s.quarantined_files == 0, "clean", "files set aside")) } td { (s.quarantined_files) " messages in quarantine; pickup folder " (free(s.pickup_free)) } }
                        @for (part, detail) in &console.parts.facts {
                            tr { td { (part) } td { "" } td { code { (detail) } } }
                        }
                    }
                }
            }
            p.muted { "As of " (utc(now_secs())) "." }
        }
    }
}

fn flow_row(label: &str, hour: u64, day: u64, key: &str) -> Markup {
    html! {
        tr { th scope="row" { (label) } td.num data-figure=(format!("{key}-hour")) { (hour) } td.num data-figure=(format!("{key}-day")) { (day) } }
    }
}

fn flag(good: bool, yes: &str, no: &str) -> Markup {
    html! {
        @if good { span.ok { "✔ " (yes) } } @else { span.bad { "✖ " (no) } }
    }
}

fn lane_status(lane: &LaneInfo) -> Markup {
    match lane.status {
        LaneStatus::Alive => html! { span.ok { "✔ delivering" } },
        LaneStatus::Probing => html! { span.warn { "probing after a cool-off" } },
        LaneStatus::Dead { until_ms } => {
            html! { span.bad { "✖ cooling off until " (utc(until_ms / 1000)) } }
        }
    }
}

fn depth_table(depth: &Depth) -> Markup {
    let mut lanes: Vec<&str> = depth
        .recipients
        .iter()
        .map(|r| r.destination.as_str())
        .collect();
    lanes.dedup();
    html! {
        table {
            thead { tr { th scope="col" { "lane" } @for st in QueueState::ALL { th.num scope="col" { (st) } } } }
            tbody {
                @for lane in &lanes {
                    tr {
                        th scope="row" { a href=(format!("/queue?destination={}", crate::layout::encode(lane))) { (lane) } }
                        @for st in QueueState::ALL {
                            td.num { (depth.recipients.iter().filter(|r| r.destination == *lane && r.state == st).map(|r| r.recipients).sum::<u64>()) }
                        }
                    }
                }
                @if lanes.is_empty() { tr { td colspan="5" { "No recipients queued." } } }
            }
        }
    }
}

fn summary_table(summary: &Summary) -> Markup {
    html! {
        table {
            thead { tr { th scope="col" { "destination" } @for c in &summary.columns { th.num scope="col" { (c) } } } }
            tbody {
                @for row in &summary.rows {
                    tr { th scope="row" { (row.destination) } @for n in &row.counts { td.num { (n) } } }
                }
            }
        }
    }
}

/// Users per state as horizontal bars (inline SVG, numbers as text beside them).
fn chart(states: &[(PersonState, u64); 3]) -> Markup {
    let total: u64 = states.iter().map(|(_, n)| n).sum();
    let colors = ["#5b6470", "#b35c00", "#1d6b2f"];
    let label = states
        .iter()
        .map(|(s, n)| format!("{n} {s}"))
        .collect::<Vec<_>>()
        .join(", ");
    let width = 260u64;
    html! {
        svg role="img" aria-label=(format!("People by migration state: {label}")) viewBox="0 0 400 110" class="chart" {
            @for (i, ((state, n), color)) in states.iter().zip(colors).enumerate() {
                @let y = 8 + i * 34;
                @let w = if total == 0 { 0 } else { (n * width).div_ceil(total) };
                text x="0" y=(y + 17) { (state) }
                rect x="90" y=(y) width=(w.max(1)) height="24" fill=(color) {}
                text x=(95 + w) y=(y + 17) data-figure=(format!("people-{state}")) { (n) }
            }
        }
        p.muted { (total) " people in the directory; "
            (states.iter().find(|(s, _)| *s == PersonState::Migrated).map_or(0, |(_, n)| *n) * 100 / total.max(1)) "% migrated." }
    }
}

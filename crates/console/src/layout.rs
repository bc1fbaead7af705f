//! The page shell (navigation, sign-in state), the style sheet and small formatting helpers.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::header;
use axum::response::IntoResponse;
use maud::{DOCTYPE, Markup, html};

use crate::auth::Viewer;

/// A page's title and which navigation entry is current.
pub struct Page<'a> {
    title: &'a str,
    nav: &'a str,
}

impl<'a> Page<'a> {
    /// A page titled `title` under the navigation entry `nav`.
    pub fn new(title: &'a str, nav: &'a str) -> Self {
        Self { title, nav }
    }
}

const NAV: [(&str, &str, &str); 6] = [
    ("overview", "/", "Overview"),
    ("people", "/people", "People"),
    ("trace", "/trace", "Message trace"),
    ("queue", "/queue", "Queue"),
    ("quarantine", "/quarantine", "Quarantine"),
    ("cutover", "/cutover", "Cutover"),
];

/// The whole page around `body`.
pub fn page(p: &Page<'_>, viewer: &Viewer, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (p.title) " · ccgate" }
                link rel="stylesheet" href="/console.css";
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header {
                    span.brand { "ccgate" }
                    nav aria-label="Main" {
                        ul {
                            @for (key, href, label) in NAV {
                                li {
                                    @if key == p.nav {
                                        a href=(href) aria-current="page" { (label) }
                                    } @else {
                                        a href=(href) { (label) }
                                    }
                                }
                            }
                        }
                    }
                    div.who {
                        @if let Some(name) = &viewer.name {
                            span { "Signed in: " (name) }
                            @if viewer.csrf.is_some() {
                                form method="post" action="/logout" class="inline" {
                                    button type="submit" class="link" { "Sign out" }
                                }
                            }
                        } @else {
                            a href="/login" { "Sign in to act" }
                        }
                    }
                }
                main id="main" {
                    (body)
                }
            }
        }
    }
}

/// The hidden CSRF field of a session's forms.
pub fn csrf_field(viewer: &Viewer) -> Markup {
    html! {
        @if let Some(csrf) = &viewer.csrf {
            input type="hidden" name="csrf" value=(csrf);
        }
    }
}

/// GET `/console.css`.
pub async fn css() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS)
}

const CSS: &str = r#"
:root { --fg:#1b1f24; --muted:#4a5360; --bg:#ffffff; --panel:#f3f5f8; --line:#c9d0d9;
  --accent:#0b5cad; --ok:#1d6b2f; --warn:#8a4b00; --bad:#a3121f; }
* { box-sizing: border-box; }
body { margin:0; font: 16px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; color:var(--fg); background:var(--bg); }
a { color: var(--accent); }
.skip { position:absolute; left:-999px; } .skip:focus { left:8px; top:8px; background:#fff; padding:4px; }
header { display:flex; flex-wrap:wrap; align-items:center; gap:.5rem 1.5rem; padding:.6rem 1rem; background:#14325a; color:#fff; }
header a { color:#fff; }
.brand { font-weight:700; letter-spacing:.03em; }
nav ul { list-style:none; display:flex; flex-wrap:wrap; gap:.25rem .9rem; margin:0; padding:0; }
nav a { text-decoration:none; padding:.2rem .1rem; }
nav a[aria-current=page] { border-bottom:3px solid #ffd166; font-weight:600; }
.who { margin-left:auto; display:flex; gap:.6rem; align-items:center; font-size:.9rem; }
main { padding:1rem; max-width:1400px; margin:0 auto; }
h1 { font-size:1.5rem; margin:.2rem 0 1rem; } h2 { font-size:1.15rem; margin:1.4rem 0 .5rem; }
.grid { display:grid; grid-template-columns:repeat(auto-fit, minmax(280px, 1fr)); gap:1rem; }
.card { background:var(--panel); border:1px solid var(--line); border-radius:6px; padding:.8rem 1rem; }
.card h2 { margin-top:0; }
.scroll { overflow-x:auto; }
table { border-collapse:collapse; width:100%; font-size:.92rem; }
th, td { text-align:left; padding:.3rem .5rem; border-bottom:1px solid var(--line); vertical-align:top; }
th { background:#e6eaf0; }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; }
.big { font-size:1.6rem; font-weight:700; }
.ok { color:var(--ok); font-weight:600; } .warn { color:var(--warn); font-weight:600; } .bad { color:var(--bad); font-weight:600; }
.muted { color:var(--muted); }
form.inline { display:inline; }
ul.scheduled li { margin:.3rem 0; } ul.scheduled form { margin-left:.6rem; }
form.stack { display:grid; gap:.4rem; max-width:28rem; }
form.filters { display:flex; flex-wrap:wrap; gap:.5rem 1rem; align-items:flex-end; margin-bottom:1rem; }
form.filters div { display:flex; flex-direction:column; }
label { font-weight:600; font-size:.9rem; }
input, select, textarea, button { font:inherit; padding:.35rem .5rem; border:1px solid #7a8594; border-radius:4px; }
button { background:var(--accent); color:#fff; border-color:var(--accent); cursor:pointer; }
button.danger { background:var(--bad); border-color:var(--bad); }
button.link { background:none; border:none; color:#fff; text-decoration:underline; padding:0; }
pre { background:var(--panel); border:1px solid var(--line); padding:.6rem; overflow:auto; max-height:32rem; white-space:pre-wrap; word-break:break-all; }
.notice { background:#fff4d6; border:1px solid #d9a400; padding:.5rem .8rem; border-radius:4px; }
.actions { display:flex; flex-wrap:wrap; gap:.5rem; margin:.6rem 0; }
.chart { width:100%; max-width:400px; }
svg text { font: 13px system-ui, "DejaVu Sans", sans-serif; fill:#1b1f24; }
@media (max-width: 600px) { main { padding:.6rem; } .who { margin-left:0; } th, td { padding:.25rem .3rem; } }
"#;

/// GET `/console.js`.
pub async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
}

/// Progressive enhancement: the figures refresh every 15 s without reloading the page.
const SCRIPT: &str = r#"
setInterval(function () {
  fetch(location.href, {credentials: "same-origin"}).then(function (r) { return r.text(); })
    .then(function (t) {
      var d = new DOMParser().parseFromString(t, "text/html").getElementById("live");
      var here = document.getElementById("live");
      if (d && here) { here.innerHTML = d.innerHTML; }
    }).catch(function () {});
}, 15000);
"#;

/// Percent-encodes a query value.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Seconds since the epoch as `2026-12-02 20:31:05Z`.
pub fn utc(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil(i64::try_from(days).unwrap_or(0));
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) (H. Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Parses `2026-12-02T20:31` or `2026-12-02 20:31:05` (UTC) into seconds since the epoch.
pub fn parse_utc(text: &str) -> Option<u64> {
    let text = text.trim().trim_end_matches('Z');
    let (date, time) = text.split_once(['T', ' ']).unwrap_or((text, "00:00"));
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.split(':').map(|p| p.parse::<i64>().ok());
    let (hh, mm) = (t.next()??, t.next()??);
    let ss = t.next().flatten().unwrap_or(0);
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()
}

/// Now, in seconds since the epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// An age like `3m`, `2h 5m`, `4d 1h`.
pub fn age(secs: u64) -> String {
    let units = [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)];
    let mut parts = Vec::new();
    let mut rest = secs;
    for (unit, per) in units {
        if rest >= per || (parts.is_empty() && per == 1) {
            parts.push(format!("{}{unit}", rest / per));
            rest %= per;
        }
        if parts.len() == 2 {
            break;
        }
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        assert_eq!(utc(0), "1970-01-01 00:00:00Z");
        assert_eq!(utc(1_796_243_465), "2026-12-02 20:31:05Z");
        assert_eq!(parse_utc("2026-12-02T20:31:05"), Some(1_796_243_465));
        assert_eq!(parse_utc("2026-12-02 20:31:05Z"), Some(1_796_243_465));
        assert_eq!(parse_utc("2024-02-29T00:00"), Some(1_709_164_800));
        assert_eq!(parse_utc("2026-13-01T00:00"), None);
        assert_eq!(parse_utc("yesterday"), None);
    }

    #[test]
    fn encoding() {
        assert_eq!(encode("Doe, Jane at HQ"), "Doe%2C%20Jane%20at%20HQ");
        assert_eq!(encode("/queue?x=1"), "/queue%3Fx%3D1");
    }
}

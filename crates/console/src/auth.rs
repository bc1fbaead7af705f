//! Who may do what.
//!
//! - Reading is open to anyone who reaches a loopback listener. On any other address every
//!   page needs a signed-in session or the bearer token (the probes and `/metrics` stay open).
//! - Every action (a POST) needs the token of `[admin] token_file`: either an
//!   `Authorization: Bearer TOKEN` header (scripts), or a session from the login form, which
//!   sets an `HttpOnly; SameSite=Strict` cookie. A session's forms carry a per-session CSRF
//!   token in a hidden field, checked on every POST, and a POST whose `Origin` (or
//!   `Sec-Fetch-Site`) says it came from another site is refused.
//! - Without a token file every action is refused.
//! - Each action is logged with who did it: the name given at login (or `bearer`) and the
//!   peer address.

use std::collections::HashMap;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Form, FromRequestParts, State};
use axum::http::request::Parts as RequestParts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

use crate::Console;
use crate::layout::{Page, page};

/// The session cookie's name.
pub const COOKIE: &str = "ccgate_session";
/// A session lasts this long.
const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// At most this many sessions are kept (the oldest is dropped).
const MAX_SESSIONS: usize = 256;

#[derive(Debug, Clone)]
struct Session {
    name: String,
    csrf: String,
    created: Instant,
}

/// Signed-in sessions, by cookie value.
#[derive(Debug, Default)]
pub struct Sessions {
    inner: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    fn get(&self, id: &str) -> Option<Session> {
        let mut map = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        map.retain(|_, s| s.created.elapsed() < SESSION_LIFETIME);
        map.get(id).cloned()
    }

    fn insert(&self, name: String) -> Option<(String, String)> {
        let id = random_hex()?;
        let csrf = random_hex()?;
        let mut map = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.created)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        map.insert(
            id.clone(),
            Session {
                name,
                csrf: csrf.clone(),
                created: Instant::now(),
            },
        );
        Some((id, csrf))
    }

    fn remove(&self, id: &str) {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
    }
}

/// 32 random bytes from the kernel, as hex.
fn random_hex() -> Option<String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .ok()?;
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Compares without stopping at the first difference.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The viewer of a request: where from, and whether signed in.
#[derive(Debug, Clone)]
pub struct Viewer {
    /// The peer address.
    pub peer: SocketAddr,
    /// The signed-in name (or `bearer`), if any.
    pub name: Option<String>,
    /// The session's CSRF token, for forms.
    pub csrf: Option<String>,
    bearer: bool,
    cross_site: bool,
    session_id: Option<String>,
}

impl Viewer {
    /// Who to name in the log for an action, if this request may act. `form_csrf` is the
    /// hidden field of the form that was posted.
    ///
    /// # Errors
    /// The refusal to send back: 403 with the reason.
    pub fn may_act(
        &self,
        console: &Console,
        form_csrf: Option<&str>,
    ) -> Result<String, Box<Response>> {
        let refuse = |why: &str| {
            tracing::warn!(peer = %self.peer, reason = why, "console action refused");
            Err(Box::new(
                (StatusCode::FORBIDDEN, format!("refused: {why}\n")).into_response(),
            ))
        };
        if console.parts.token.is_none() {
            return refuse("no [admin] token_file is configured, so console actions are disabled");
        }
        if self.cross_site {
            return refuse("the request came from another site");
        }
        if self.bearer {
            return Ok(format!("bearer@{}", self.peer.ip()));
        }
        match (&self.name, &self.csrf) {
            (Some(name), Some(csrf)) if form_csrf.is_some_and(|f| same(f, csrf)) => {
                Ok(format!("{name}@{}", self.peer.ip()))
            }
            (Some(_), Some(_)) => {
                refuse("the form's CSRF token is missing or stale; reload the page")
            }
            _ => refuse("sign in with the token first (or send Authorization: Bearer)"),
        }
    }
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// True when the request says it came from a page of another origin.
fn cross_site(headers: &HeaderMap) -> bool {
    let text = |h| headers.get(h).and_then(|v: &HeaderValue| v.to_str().ok());
    if text("sec-fetch-site").is_some_and(|s| s == "cross-site" || s == "same-site") {
        return true;
    }
    match (text("origin"), text("host")) {
        (Some("null"), _) => true,
        (Some(origin), Some(host)) => {
            let rest = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"));
            rest != Some(host)
        }
        (Some(_), None) => true,
        (None, _) => false,
    }
}

impl FromRequestParts<Arc<Console>> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut RequestParts,
        console: &Arc<Console>,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<crate::listener::Peer>>()
            .map_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)), |c| c.0.0);
        let headers = &parts.headers;
        let bearer = match (&console.parts.token, headers.get(header::AUTHORIZATION)) {
            (Some(token), Some(value)) => value
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .is_some_and(|given| same(given.trim(), token)),
            _ => false,
        };
        let session_id = cookie(headers, COOKIE);
        let session = session_id
            .as_deref()
            .and_then(|id| console.sessions.get(id));
        let viewer = Self {
            peer,
            name: if bearer {
                Some("bearer".to_owned())
            } else {
                session.as_ref().map(|s| s.name.clone())
            },
            csrf: session.map(|s| s.csrf),
            bearer,
            cross_site: cross_site(headers),
            session_id,
        };
        let open = ["/login", "/console.css", "/console.js"].contains(&parts.uri.path());
        if !console.loopback_only && viewer.name.is_none() && !open {
            let next = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            let target = format!("/login?next={}", crate::layout::encode(next));
            return Err(Redirect::to(&target).into_response());
        }
        Ok(viewer)
    }
}

/// The login form's fields.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    /// Who signs in (for the log).
    #[serde(default)]
    name: String,
    /// The token.
    #[serde(default)]
    token: String,
    /// Where to go next.
    #[serde(default)]
    next: String,
}

/// `?next=` on the login page.
#[derive(Debug, Deserialize)]
pub struct Next {
    #[serde(default)]
    next: String,
}

fn safe_next(next: &str) -> &str {
    if next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') {
        next
    } else {
        "/"
    }
}

/// GET `/login`.
pub async fn login_page(
    State(console): State<Arc<Console>>,
    viewer: Viewer,
    axum::extract::Query(q): axum::extract::Query<Next>,
) -> Response {
    let disabled = console.parts.token.is_none();
    let body = html! {
        h1 { "Sign in" }
        @if disabled {
            p.notice role="status" { "Actions are disabled: no " code { "[admin] token_file" } " is configured. Reading needs no sign-in on loopback." }
        } @else {
            @if let Some(name) = &viewer.name {
                p role="status" { "Signed in as " strong { (name) } "." }
            }
            p { "Actions (hold, release, cutover ...) need the token in " code { "[admin] token_file" } ". Your name is written to the log with each action." }
            form method="post" action="/login" class="stack" {
                input type="hidden" name="next" value=(safe_next(&q.next));
                label for="login-name" { "Your name" }
                input id="login-name" name="name" type="text" autocomplete="username" required maxlength="64";
                label for="login-token" { "Token" }
                input id="login-token" name="token" type="password" autocomplete="current-password" required;
                button type="submit" { "Sign in" }
            }
        }
    };
    page(&Page::new("Sign in", "login"), &viewer, body).into_response()
}

/// POST `/login`.
pub async fn login(
    State(console): State<Arc<Console>>,
    viewer: Viewer,
    Form(form): Form<LoginForm>,
) -> Response {
    let Some(token) = &console.parts.token else {
        return (
            StatusCode::FORBIDDEN,
            "refused: no [admin] token_file is configured\n",
        )
            .into_response();
    };
    if viewer.cross_site {
        return (
            StatusCode::FORBIDDEN,
            "refused: the request came from another site\n",
        )
            .into_response();
    }
    let name: String = form
        .name
        .chars()
        .filter(|c| c.is_alphanumeric() || " .-_@".contains(*c))
        .take(64)
        .collect();
    let name = if name.trim().is_empty() {
        "admin".to_owned()
    } else {
        name.trim().to_owned()
    };
    if !same(form.token.trim(), token) {
        tracing::warn!(peer = %viewer.peer, name = %name, "console sign-in refused: wrong token");
        return (StatusCode::FORBIDDEN, "refused: wrong token\n").into_response();
    }
    let Some((id, _csrf)) = console.sessions.insert(name.clone()) else {
        return (StatusCode::SERVICE_UNAVAILABLE, "cannot create a session\n").into_response();
    };
    tracing::info!(peer = %viewer.peer, name = %name, "console sign-in");
    let cookie = format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        SESSION_LIFETIME.as_secs()
    );
    let mut response = Redirect::to(safe_next(&form.next)).into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// POST `/logout`.
pub async fn logout(State(console): State<Arc<Console>>, viewer: Viewer) -> Response {
    if let Some(id) = &viewer.session_id {
        console.sessions.remove(id);
    }
    let mut response = Redirect::to("/").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("ccgate_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_of_another_site_is_cross_site() {
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("127.0.0.1:8025"));
        assert!(!cross_site(&h), "no Origin: a same-site form or a script");
        h.insert("origin", HeaderValue::from_static("http://127.0.0.1:8025"));
        assert!(!cross_site(&h));
        h.insert("origin", HeaderValue::from_static("http://evil.example"));
        assert!(cross_site(&h));
        h.insert("origin", HeaderValue::from_static("null"));
        assert!(cross_site(&h));
        h.remove("origin");
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(cross_site(&h));
    }

    #[test]
    fn comparison_and_redirect_targets() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "abcd"));
        assert_eq!(safe_next("/queue?state=held"), "/queue?state=held");
        assert_eq!(safe_next("//evil.example/"), "/");
        assert_eq!(safe_next("https://evil.example/"), "/");
    }
}

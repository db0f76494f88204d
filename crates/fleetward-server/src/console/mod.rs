//! The web console: the fleet, releases and security at a glance, for
//! people who would rather look than script.
//!
//! It is server-rendered HTML on the operator listener, embedded in the
//! binary (no CDN, no separate web server: the machine may have no
//! internet), with one small same-origin script that refreshes live pages.
//! It is another door to the same rules, not a second set of them:
//!
//! - **Sessions** are the operator token itself, in an `HttpOnly`,
//!   `SameSite=Strict` cookie scoped to `/console`. Every request checks it
//!   exactly as the API checks a bearer token ([`auth::caller_for_token`]),
//!   so an expired or revoked token logs the browser out at once and no
//!   session state lives in one replica's memory.
//! - **Roles** are the API's: a page or button shows only when the role
//!   allows what it would do, and every action checks again on the server.
//! - **CSRF**: every form carries a token derived from the session token
//!   (SHA-256 with a domain tag), compared in constant time; the cookie's
//!   `SameSite=Strict` is the second lock.
//! - **Headers**: a CSP without `unsafe-inline` (scripts and styles come
//!   only from `/console/static`), `frame-ancestors 'none'`, `nosniff`,
//!   no referrer, no caching.
//! - **Escaping**: pages are built with `maud`, which escapes every
//!   interpolated value; device ids, tags and messages never reach the
//!   page as markup.

mod chart;
mod pages;
mod releases;
mod rollouts;

use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use fleetward_core::{Permission, Role};
use maud::{DOCTYPE, Markup, html};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::AppState;
use crate::auth::{self, Caller};
use crate::error::ApiError;

/// The session cookie's name.
const COOKIE: &str = "fleetward_session";
/// Longest a browser session lasts even when the token lives longer.
const MAX_SESSION_SECS: i64 = 12 * 3600;
/// The longest token a login form may carry (a real one is 64 bytes).
const MAX_TOKEN_LEN: usize = 128;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The console's routes, under `/console`.
pub fn router(state: AppState) -> Router<AppState> {
    use axum::routing::{get, post};
    Router::new()
        .route("/console", get(|| async { Redirect::to("/console/") }))
        .route("/console/", get(pages::overview))
        .route("/console/login", get(login_form).post(login))
        .route("/console/logout", post(logout))
        .route("/console/devices", get(pages::devices))
        .route("/console/devices/{id}", get(pages::device))
        .route("/console/devices/{id}/quarantine", post(pages::quarantine))
        .route("/console/releases", get(releases::list))
        .route("/console/releases/{version}", get(releases::show))
        .route(
            "/console/rollouts",
            get(rollouts::list).post(rollouts::start),
        )
        .route("/console/rollouts/new", get(rollouts::new))
        .route("/console/rollouts/{id}", get(rollouts::show))
        .route("/console/rollouts/{id}/{action}", post(rollouts::act))
        .route("/console/events", get(pages::events))
        .route("/console/events/{seq}", get(pages::event))
        .route("/console/audit", get(pages::audit))
        .route("/console/static/console.css", get(stylesheet))
        .route("/console/static/console.js", get(script))
        .layer(axum::middleware::from_fn_with_state(
            state,
            security_headers,
        ))
}

async fn security_headers(
    State(_): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn stylesheet() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("static/console.css"),
    )
}

async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("static/console.js"),
    )
}

/// The signed-in operator of a console request.
pub struct Session {
    pub caller: Caller,
    /// The CSRF token every form of this session must carry back.
    pub csrf: String,
}

impl std::fmt::Debug for Session {
    // The CSRF token is derived from the session's secret: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("caller", &self.caller)
            .finish_non_exhaustive()
    }
}

impl Session {
    pub fn can(&self, permission: Permission) -> bool {
        self.caller.role.allows(permission)
    }

    /// Refuses (403) when the role does not allow `permission`.
    pub fn require(&self, permission: Permission) -> Result<(), ApiError> {
        if self.can(permission) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("your role ({}) may not see or do this", self.caller.role),
            ))
        }
    }

    /// Refuses (403) a form whose CSRF token is missing or wrong.
    pub fn check_csrf(&self, presented: &str) -> Result<(), ApiError> {
        if bool::from(presented.as_bytes().ct_eq(self.csrf.as_bytes())) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "csrf",
                "the form expired or did not come from this console; reload the page and try again",
            ))
        }
    }
}

/// The form token of a session: a keyed hash of the session's operator
/// token, so it cannot be computed without the cookie and needs no state.
fn csrf_for(token: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"fleetward console csrf v1\0");
    h.update(token.as_bytes());
    hex::encode(h.finalize())
}

fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
        .filter(|value| !value.is_empty() && value.len() <= MAX_TOKEN_LEN)
}

fn to_login(reason: Option<&str>) -> Response {
    let target = match reason {
        Some(reason) => format!("/console/login?reason={reason}"),
        None => "/console/login".to_owned(),
    };
    (
        [(header::SET_COOKIE, clear_cookie())],
        Redirect::to(&target),
    )
        .into_response()
}

fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0")
}

impl FromRequestParts<AppState> for Session {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Some(token) = session_cookie(&parts.headers) else {
            return Err(to_login(None));
        };
        match auth::caller_for_token(state, &token, auth::source_of(parts)).await {
            Ok(caller) => Ok(Session {
                csrf: csrf_for(&token),
                caller,
            }),
            Err(error) if error.status == StatusCode::UNAUTHORIZED => {
                if let Some(peer) = auth::peer_of(parts) {
                    crate::monitor::record_auth_failure(
                        state,
                        peer,
                        "operator:?",
                        "operator.auth_failed",
                        error.code,
                    )
                    .await;
                }
                Err(to_login(Some(error.code)))
            }
            Err(error) => Err(error_page(None, &error)),
        }
    }
}

#[derive(Debug, serde::Deserialize)]
struct LoginQuery {
    reason: Option<String>,
}

async fn login_form(axum::extract::Query(query): axum::extract::Query<LoginQuery>) -> Response {
    let notice = query.reason.as_deref().map(|reason| match reason {
        "token_expired" => "Your token has expired; sign in with a current one.",
        "token_revoked" => "Your token has been revoked.",
        _ => "Please sign in again.",
    });
    login_page(StatusCode::OK, notice)
}

fn login_page(status: StatusCode, notice: Option<&str>) -> Response {
    let body = html! {
        main class="login" {
            h1 { "fleetward console" }
            @if let Some(notice) = notice {
                p class="notice error" role="alert" { (notice) }
            }
            form method="post" action="/console/login" {
                label for="token" { "Operator token" }
                input id="token" name="token" type="password" autocomplete="off" required autofocus;
                button type="submit" { "Sign in" }
            }
            p class="muted" {
                "Tokens come from " code { "fleetward init" } " or " code { "fleetward token create" }
                ". The console allows exactly what the token's role allows in the API."
            }
        }
    };
    html_response(status, document("Sign in", body))
}

#[derive(Debug, serde::Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(
    State(state): State<AppState>,
    parts: ConnectParts,
    axum::extract::Form(form): axum::extract::Form<LoginForm>,
) -> Response {
    let token = form.token.trim();
    if token.is_empty() || token.len() > MAX_TOKEN_LEN {
        return login_page(
            StatusCode::UNAUTHORIZED,
            Some("That is not an operator token."),
        );
    }
    match auth::caller_for_token(&state, token, parts.source.clone()).await {
        Ok(caller) => {
            let now = state.now();
            let max_age = caller
                .expires_at
                .map(|expiry| (expiry - now).whole_seconds())
                .unwrap_or(MAX_SESSION_SECS)
                .clamp(1, MAX_SESSION_SECS);
            let secure = if state.config.listen.ip().is_loopback() {
                ""
            } else {
                "; Secure"
            };
            let cookie = format!(
                "{COOKIE}={token}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
            );
            ([(header::SET_COOKIE, cookie)], Redirect::to("/console/")).into_response()
        }
        Err(error) if error.status == StatusCode::UNAUTHORIZED => {
            if let Some(peer) = parts.peer {
                crate::monitor::record_auth_failure(
                    &state,
                    peer,
                    "operator:?",
                    "operator.auth_failed",
                    error.code,
                )
                .await;
            }
            login_page(
                StatusCode::UNAUTHORIZED,
                Some("That token is not valid, has expired or has been revoked."),
            )
        }
        Err(error) => error_page(None, &error),
    }
}

#[derive(Debug, serde::Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
}

async fn logout(
    session: Session,
    axum::extract::Form(form): axum::extract::Form<CsrfForm>,
) -> Response {
    if let Err(refused) = session.check_csrf(&form.csrf) {
        return error_page(Some(&session), &refused);
    }
    to_login(None)
}

/// The peer of a request, for handlers that need it outside [`Session`].
pub(crate) struct ConnectParts {
    pub peer: Option<std::net::SocketAddr>,
    pub source: String,
}

impl FromRequestParts<AppState> for ConnectParts {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(ConnectParts {
            peer: auth::peer_of(parts),
            source: auth::source_of(parts),
        })
    }
}

/// Which top-level page is showing, for the navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Section {
    Overview,
    Devices,
    Releases,
    Rollouts,
    Events,
    Audit,
}

const SECTIONS: [(Section, &str, &str, Permission); 6] = [
    (
        Section::Overview,
        "/console/",
        "Overview",
        Permission::FleetRead,
    ),
    (
        Section::Devices,
        "/console/devices",
        "Devices",
        Permission::FleetRead,
    ),
    (
        Section::Releases,
        "/console/releases",
        "Releases",
        Permission::ReleaseRead,
    ),
    (
        Section::Rollouts,
        "/console/rollouts",
        "Rollouts",
        Permission::RolloutRead,
    ),
    (
        Section::Events,
        "/console/events",
        "Security events",
        Permission::AuditRead,
    ),
    (
        Section::Audit,
        "/console/audit",
        "Audit log",
        Permission::AuditRead,
    ),
];

/// A whole HTML document around `body`.
fn document(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · fleetward" }
                link rel="stylesheet" href="/console/static/console.css";
                script src="/console/static/console.js" defer {}
            }
            body { (body) }
        }
    }
}

/// How a page's `<main>` behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refresh {
    Static,
    /// Re-rendered in place every so many seconds.
    Every(u32),
}

/// A console page: navigation for `session`'s role around `content`; or,
/// for a live refresh (`?fragment=main`), the `<main>` alone.
pub(crate) fn page(
    session: &Session,
    section: Section,
    title: &str,
    refresh: Refresh,
    fragment: bool,
    content: Markup,
) -> Response {
    let main = html! {
        @match refresh {
            Refresh::Every(secs) => main id="main" data-refresh=(secs) { (content) },
            Refresh::Static => main id="main" { (content) },
        }
    };
    if fragment {
        return html_response(StatusCode::OK, main);
    }
    let body = html! {
        a class="skip" href="#main" { "Skip to content" }
        header {
            a class="brand" href="/console/" { "fleetward" }
            nav aria-label="Sections" {
                @for (id, href, label, permission) in SECTIONS {
                    @if session.can(permission) {
                        @if id == section {
                            a href=(href) aria-current="page" { (label) }
                        } @else {
                            a href=(href) { (label) }
                        }
                    }
                }
            }
            div class="who" {
                span { (session.caller.name) " · " (role_label(session.caller.role)) }
                form class="inline" method="post" action="/console/logout" {
                    input type="hidden" name="csrf" value=(session.csrf);
                    button class="plain" type="submit" { "Sign out" }
                }
            }
        }
        (main)
    };
    html_response(StatusCode::OK, document(title, body))
}

fn html_response(status: StatusCode, markup: Markup) -> Response {
    (status, axum::response::Html(markup.into_string())).into_response()
}

fn role_label(role: Role) -> &'static str {
    role.as_str()
}

/// An error as a page (the API's error mapping, shown to people).
pub(crate) fn error_page(session: Option<&Session>, error: &ApiError) -> Response {
    let content = html! {
        h1 { (error.status.as_u16()) " " (error.status.canonical_reason().unwrap_or("Error")) }
        p class="notice error" role="alert" { (error.message) }
        p { a href="/console/" { "Back to the overview" } }
    };
    let body = match session {
        Some(session) => page(
            session,
            Section::Overview,
            "Error",
            Refresh::Static,
            false,
            content,
        ),
        None => html_response(
            StatusCode::OK,
            document("Error", html! { main { (content) } }),
        ),
    };
    let mut response = body;
    *response.status_mut() = error.status;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_found_among_others_and_bounded() {
        let check = |cookie: &str, expected: Option<&str>| {
            let mut headers = HeaderMap::new();
            headers.insert(header::COOKIE, HeaderValue::from_str(cookie).unwrap());
            assert_eq!(session_cookie(&headers).as_deref(), expected, "{cookie}");
        };
        check("fleetward_session=abc", Some("abc"));
        check("a=1; fleetward_session=abc; b=2", Some("abc"));
        check("fleetward_sessionx=abc", None);
        check("fleetward_session=", None);
        check(&format!("fleetward_session={}", "x".repeat(200)), None);
    }

    #[test]
    fn csrf_tokens_depend_on_the_session_token() {
        assert_ne!(csrf_for("fwt_a"), csrf_for("fwt_b"));
        assert_eq!(csrf_for("fwt_a"), csrf_for("fwt_a"));
        assert_eq!(csrf_for("fwt_a").len(), 64);
    }
}

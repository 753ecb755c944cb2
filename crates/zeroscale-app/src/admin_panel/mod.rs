//! The admin panel at `/admin`: server-rendered HTML for admin accounts (backends and
//! readiness with a chart of requests/s and p95 latency, provider health with "check
//! now", queues with dead jobs to retry or purge, users with credits, recent generations).
//!
//! Security: the panel's login sets an HttpOnly, SameSite=Strict cookie (Secure when
//! `server.behind_tls` or an `https` public URL) holding an ordinary session; every form
//! carries a CSRF token derived from that session (the login form a double-submit one);
//! logins go through the same throttling as `POST /v1/auth/login`; pages carry a strict
//! CSP that allows only the panel's own script and style, both compiled into the binary.
//! CORS never applies to `/admin` (`crate::headers` limits it to the API). A bearer token
//! or API key of an admin also opens the pages (for scripts), without forms' CSRF
//! because such credentials are never sent by a browser on its own.

mod pages;

use axum::Router;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use sha2::Digest as _;
use zeroscale_core::domain::{Role, User};

use crate::api::ApiState;
use crate::checks::Checker;

/// The session cookie.
const COOKIE: &str = "zs_admin";
/// The login form's double-submit cookie.
const LOGIN_COOKIE: &str = "zs_admin_login";

/// The panel's CSP: its own script and style only, no framing, forms only to itself.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
                   base-uri 'none'";

const PANEL_JS: &str = include_str!("panel.js");
const PANEL_CSS: &str = include_str!("panel.css");

/// What the panel's handlers share.
#[derive(Debug, Clone)]
pub(crate) struct PanelState {
    pub(crate) api: ApiState,
    pub(crate) checker: std::sync::Arc<Checker>,
    /// Whether metrics (and so the traffic chart) are on.
    pub(crate) metrics_on: bool,
}

impl axum::extract::FromRef<PanelState> for ApiState {
    fn from_ref(state: &PanelState) -> ApiState {
        state.api.clone()
    }
}

/// The panel's routes.
pub(crate) fn router(state: PanelState) -> Router {
    Router::new()
        .route("/admin", get(overview))
        .route("/admin/", get(|| async { Redirect::to("/admin") }))
        .route("/admin/login", get(login_page).post(login))
        .route("/admin/logout", post(logout))
        .route("/admin/providers", get(providers))
        .route("/admin/providers/{name}/check", post(check_provider))
        .route("/admin/jobs", get(jobs))
        .route("/admin/jobs/{id}/retry", post(retry_job))
        .route("/admin/queues/{queue}/purge", post(purge_queue))
        .route("/admin/users", get(users))
        .route("/admin/generations", get(generations))
        .route("/admin/traffic.json", get(traffic))
        .route("/admin/assets/panel.js", get(script))
        .route("/admin/assets/panel.css", get(style))
        .with_state(state)
}

/// An HTML page with the panel's headers.
fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", PANEL_JS)
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", PANEL_CSS)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// The value of cookie `name`.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// Whether cookies must be `Secure`: the server is reached over TLS.
fn secure_cookies(state: &PanelState) -> bool {
    let server = &state.api.config.server;
    server.behind_tls || server.public_url().starts_with("https://")
}

fn set_cookie(state: &PanelState, name: &str, value: &str, max_age: Option<i64>) -> HeaderValue {
    let mut text = format!("{name}={value}; Path=/admin; HttpOnly; SameSite=Strict");
    if let Some(secs) = max_age {
        text.push_str(&format!("; Max-Age={secs}"));
    }
    if secure_cookies(state) {
        text.push_str("; Secure");
    }
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The CSRF token of a session: a hash of its secret token, so it needs no storage and
/// only someone holding the session (never another site: the cookie is HttpOnly and
/// SameSite=Strict) can know it.
fn csrf_for(session_token: &str) -> String {
    let digest = sha2::Sha256::digest(format!("zeroscale admin csrf\0{session_token}"));
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// Compares two tokens in time independent of where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// An admin looking at the panel.
pub(crate) struct PanelAdmin {
    user: User,
    /// The forms' CSRF token: for a cookie session, derived from it; empty for bearer
    /// credentials, which need none.
    csrf: String,
}

impl FromRequestParts<PanelState> for PanelAdmin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &PanelState) -> Result<Self, Response> {
        if let Some(token) = cookie(&parts.headers, COOKIE) {
            return match state.api.domain.sessions().validate(&token).await {
                Ok((_, user)) if user.role == Role::Admin => Ok(PanelAdmin {
                    user,
                    csrf: csrf_for(&token),
                }),
                Ok(_) => Err(pages::forbidden()),
                Err(_) => Err(Redirect::to("/admin/login").into_response()),
            };
        }
        let has_credentials = parts.headers.contains_key(header::AUTHORIZATION)
            || parts.headers.contains_key("x-api-key");
        if !has_credentials {
            return Err(Redirect::to("/admin/login").into_response());
        }
        match crate::api::auth::Admin::from_request_parts(parts, &state.api).await {
            Ok(admin) => Ok(PanelAdmin {
                user: admin.caller().user().clone(),
                csrf: String::new(),
            }),
            Err(e) if e.status() == StatusCode::FORBIDDEN => Err(pages::forbidden()),
            Err(e) => Err(e.into_response()),
        }
    }
}

/// A form's CSRF field.
#[derive(Debug, Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

impl PanelAdmin {
    /// The refusal of a form whose token does not match this session's (a cookie session); a
    /// bearer-authenticated call needs none.
    fn refuse(&self, form: &CsrfForm) -> Option<Response> {
        if self.csrf.is_empty() || same(&self.csrf, &form.csrf) {
            None
        } else {
            Some(pages::message(
                StatusCode::FORBIDDEN,
                "Form expired",
                "The form's security token does not match your session. Go back, reload the page and try again.",
            ))
        }
    }
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    username: String,
    password: String,
    #[serde(default)]
    csrf: String,
}

async fn login_page(State(state): State<PanelState>) -> Response {
    let token = zeroscale_core::queue::driver::new_lease_token();
    let mut response = html(StatusCode::OK, pages::login(&token, None));
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&state, LOGIN_COOKIE, &token, None),
    );
    response
}

/// The login form again, with `problem`, a fresh double-submit token and `status`.
fn login_again(state: &PanelState, status: StatusCode, problem: &str) -> Response {
    let token = zeroscale_core::queue::driver::new_lease_token();
    let mut response = html(status, pages::login(&token, Some(problem)));
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(state, LOGIN_COOKIE, &token, None),
    );
    response
}

async fn login(
    State(state): State<PanelState>,
    client: crate::throttle::ClientAddr,
    headers: HeaderMap,
    axum::Form(form): axum::Form<LoginForm>,
) -> Response {
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !same(&expected, &form.csrf) {
        return login_again(
            &state,
            StatusCode::FORBIDDEN,
            "The login form expired. Try again.",
        );
    }
    let throttle = &state.api.throttle;
    if let Err(e) = throttle.check_login(&form.username, client.0).await {
        let mut response = login_again(&state, e.status(), e.message());
        if let Some(secs) = e.retry_after() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        return response;
    }
    let users = state.api.domain.users();
    let user = match users.authenticate(&form.username, &form.password).await {
        Ok(user) => {
            throttle.login_succeeded(&form.username).await;
            user
        }
        Err(e) if e.kind() == zeroscale_core::ErrorKind::Unauthenticated => {
            throttle.login_failed(&form.username, client.0).await;
            return login_again(
                &state,
                StatusCode::UNAUTHORIZED,
                "Wrong username or password.",
            );
        }
        Err(e) => {
            let e = crate::api::error::ApiError::from(e);
            return login_again(&state, e.status(), e.message());
        }
    };
    if user.role != Role::Admin {
        return login_again(
            &state,
            StatusCode::FORBIDDEN,
            "This account is not an admin: the panel is for admins only.",
        );
    }
    let session = match state.api.domain.sessions().create(&user.id).await {
        Ok(session) => session,
        Err(e) => {
            let e = crate::api::error::ApiError::from(e);
            return login_again(&state, e.status(), e.message());
        }
    };
    tracing::info!(user = %user.username, "admin panel login");
    let mut response = Redirect::to("/admin").into_response();
    let headers = response.headers_mut();
    headers.append(
        header::SET_COOKIE,
        set_cookie(&state, COOKIE, &session.token, None),
    );
    headers.append(
        header::SET_COOKIE,
        set_cookie(&state, LOGIN_COOKIE, "", Some(0)),
    );
    response
}

async fn logout(
    State(state): State<PanelState>,
    admin: PanelAdmin,
    headers: HeaderMap,
    axum::Form(form): axum::Form<CsrfForm>,
) -> Response {
    if let Some(refused) = admin.refuse(&form) {
        return refused;
    }
    if let Some(token) = cookie(&headers, COOKIE)
        && let Err(e) = state.api.domain.sessions().revoke_token(&token).await
    {
        tracing::warn!(error = %e.chain(), "admin panel logout: the session was not revoked");
    }
    let mut response = Redirect::to("/admin/login").into_response();
    response
        .headers_mut()
        .append(header::SET_COOKIE, set_cookie(&state, COOKIE, "", Some(0)));
    response
}

async fn overview(State(state): State<PanelState>, admin: PanelAdmin) -> Response {
    let checks = state.checker.run().await;
    let ready = checks.iter().all(|c| c.ok || !c.required);
    let seconds = crate::traffic::last(60);
    html(
        StatusCode::OK,
        pages::overview(&admin, &state, &checks, ready, &seconds),
    )
}

async fn traffic(State(state): State<PanelState>, _admin: PanelAdmin) -> Response {
    let body = serde_json::json!({
        "metrics": state.metrics_on,
        "seconds": crate::traffic::last(60),
    });
    ([(header::CACHE_CONTROL, "no-store")], axum::Json(body)).into_response()
}

#[derive(Debug, Deserialize)]
struct CheckedQuery {
    checked: Option<String>,
    ok: Option<bool>,
}

async fn providers(
    State(state): State<PanelState>,
    admin: PanelAdmin,
    Query(query): Query<CheckedQuery>,
) -> Response {
    let health = state.api.models.health();
    let note = query.checked.map(|name| (name, query.ok.unwrap_or(false)));
    html(
        StatusCode::OK,
        pages::providers(&admin, &health, note.as_ref()),
    )
}

async fn check_provider(
    State(state): State<PanelState>,
    admin: PanelAdmin,
    Path(name): Path<String>,
    axum::Form(form): axum::Form<CsrfForm>,
) -> Response {
    if let Some(refused) = admin.refuse(&form) {
        return refused;
    }
    let ok = match state.api.models.check(&name).await {
        Ok(()) => true,
        Err(zeroscale_core::Error::NotFound { .. }) => {
            return pages::message(
                StatusCode::NOT_FOUND,
                "No such provider",
                &format!("There is no provider `{name}`."),
            );
        }
        Err(_) => false,
    };
    let to = format!(
        "/admin/providers?checked={}&ok={ok}",
        pages::url_encode(&name)
    );
    Redirect::to(&to).into_response()
}

#[derive(Debug, Deserialize)]
struct JobsQuery {
    queue: Option<String>,
    done: Option<String>,
}

/// The queues the panel shows: the workers' queues, `default` first when listed.
fn queues(state: &PanelState) -> Vec<String> {
    let mut queues = state.api.config.workers.queues.clone();
    if queues.is_empty() {
        queues.push("default".to_owned());
    }
    queues
}

async fn jobs(
    State(state): State<PanelState>,
    admin: PanelAdmin,
    Query(query): Query<JobsQuery>,
) -> Response {
    let queues = queues(&state);
    let selected = query
        .queue
        .filter(|q| queues.contains(q))
        .unwrap_or_else(|| queues[0].clone());
    let queue = match state.api.queue.get().await {
        Ok(queue) => queue,
        Err(e) => {
            return pages::message(
                StatusCode::SERVICE_UNAVAILABLE,
                "Queue unavailable",
                &e.chain(),
            );
        }
    };
    let mut stats = Vec::new();
    for name in &queues {
        stats.push((name.clone(), queue.stats(name).await.map_err(|e| e.chain())));
    }
    let dead = queue
        .list_dead(
            &selected,
            zeroscale_core::queue::PageOptions {
                limit: Some(100),
                after: None,
            },
        )
        .await
        .map_err(|e| e.chain());
    html(
        StatusCode::OK,
        pages::jobs(&admin, &stats, &selected, &dead, query.done.as_deref()),
    )
}

async fn retry_job(
    State(state): State<PanelState>,
    admin: PanelAdmin,
    Path(id): Path<String>,
    Query(query): Query<JobsQuery>,
    axum::Form(form): axum::Form<CsrfForm>,
) -> Response {
    if let Some(refused) = admin.refuse(&form) {
        return refused;
    }
    let Ok(job_id) = id.parse() else {
        return pages::message(StatusCode::BAD_REQUEST, "Not a job id", &id);
    };
    let result = match state.api.queue.get().await {
        Ok(queue) => queue.requeue_dead(job_id).await,
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        let e = crate::api::error::ApiError::from(e);
        return pages::message(e.status(), "Retry failed", e.message());
    }
    back_to_jobs(query.queue.as_deref(), "retried")
}

async fn purge_queue(
    State(state): State<PanelState>,
    admin: PanelAdmin,
    Path(queue_name): Path<String>,
    axum::Form(form): axum::Form<CsrfForm>,
) -> Response {
    if let Some(refused) = admin.refuse(&form) {
        return refused;
    }
    let result = match state.api.queue.get().await {
        Ok(queue) => queue.purge_dead(&queue_name).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(_) => back_to_jobs(Some(&queue_name), "purged"),
        Err(e) => {
            let e = crate::api::error::ApiError::from(e);
            pages::message(e.status(), "Purge failed", e.message())
        }
    }
}

fn back_to_jobs(queue: Option<&str>, done: &str) -> Response {
    let mut to = format!("/admin/jobs?done={done}");
    if let Some(queue) = queue {
        to.push_str(&format!("&queue={}", pages::url_encode(queue)));
    }
    Redirect::to(&to).into_response()
}

async fn users(State(state): State<PanelState>, admin: PanelAdmin) -> Response {
    match state.api.domain.users().list(None, Some(200)).await {
        Ok(users) => html(StatusCode::OK, pages::users(&admin, &users)),
        Err(e) => {
            let e = crate::api::error::ApiError::from(e);
            pages::message(e.status(), "Users unavailable", e.message())
        }
    }
}

async fn generations(State(state): State<PanelState>, admin: PanelAdmin) -> Response {
    let domain = &state.api.domain;
    let recent = match domain.credits().list_recent(50).await {
        Ok(recent) => recent,
        Err(e) => {
            let e = crate::api::error::ApiError::from(e);
            return pages::message(e.status(), "Generations unavailable", e.message());
        }
    };
    // Usernames for the rows, looked up once per user.
    let mut names = std::collections::HashMap::new();
    for generation in &recent {
        if !names.contains_key(&generation.user_id) {
            let name = domain
                .users()
                .get(&generation.user_id)
                .await
                .map(|u| u.username)
                .unwrap_or_else(|_| generation.user_id.clone());
            names.insert(generation.user_id.clone(), name);
        }
    }
    html(StatusCode::OK, pages::generations(&admin, &recent, &names))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_by_name_only() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; zs_admin=tok"),
        );
        headers.append(header::COOKIE, HeaderValue::from_static("zs_admin_login=x"));
        assert_eq!(cookie(&headers, COOKIE).as_deref(), Some("tok"));
        assert_eq!(cookie(&headers, LOGIN_COOKIE).as_deref(), Some("x"));
        assert_eq!(cookie(&headers, "zs"), None);
    }

    #[test]
    fn csrf_tokens_differ_per_session_and_compare_exactly() {
        let a = csrf_for("zs_sess_a");
        assert_eq!(a.len(), 32);
        assert_ne!(a, csrf_for("zs_sess_b"));
        assert!(same(&a, &csrf_for("zs_sess_a")));
        assert!(!same(&a, &a[..31]));
        assert!(!same(&a, ""));
    }
}

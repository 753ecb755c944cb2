//! Read-your-writes with read replicas (`database.replicas`): after a user writes, that
//! user's requests read from the primary for `database.read_your_writes_ms`, on every
//! instance.
//!
//! A request that changes something (any method but GET, HEAD and OPTIONS, except the
//! searches and embeddings sent as POST) by an
//! authenticated user leaves a mark `ryw:<user id>` in the shared counters (the same
//! store as the rate limits: Redis or the database at stages 3 and 4, so another instance
//! sees it). When [`Caller`](crate::api::auth::Caller) authenticates a request, a mark
//! younger than the window switches the rest of that request's reads to the primary
//! ([`zeroscale_db::replicas::read_primary_from_now`]). Without replicas none of this runs.
//! When the counters cannot be reached, the request reads from the primary (never stale).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;

use crate::wiring::Services;

/// Routes that are reads though sent as POST (a query too large for a URL): they mark no
/// one, or a user who searches a lot would read from the primary all the time.
const READ_ONLY_POSTS: &[&str] = &["/v1/documents/search", "/v1/embeddings"];

/// Who the request authenticated as, filled in by the `Caller` extractor.
#[derive(Clone, Default)]
pub(crate) struct Writer(Arc<Mutex<Option<String>>>);

fn mark(user_id: &str) -> String {
    format!("ryw:{user_id}")
}

/// The window, when this process has read replicas.
fn window(services: &Services) -> Option<Duration> {
    match &services.config.database {
        zeroscale_core::config::DatabaseConfig::Postgres(pg) if !pg.replicas.is_empty() => {
            Some(Duration::from_millis(pg.read_your_writes_ms))
        }
        _ => None,
    }
}

/// The middleware: reads may switch to the primary inside the request; a write by an
/// authenticated user marks that user once the handler is done.
pub(crate) async fn track(
    State(services): State<Services>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(window) = window(&services) else {
        return next.run(request).await;
    };
    let writes = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) && !READ_ONLY_POSTS.contains(&request.uri().path());
    let writer = Writer::default();
    request.extensions_mut().insert(writer.clone());
    let response = zeroscale_db::replicas::switchable_reads(next.run(request)).await;
    let user = writer.0.lock().unwrap_or_else(|e| e.into_inner()).take();
    if writes
        && let Some(user) = user
        && let Err(e) = services
            .throttle
            .counters()
            .hit(&mark(&user), 1, window)
            .await
    {
        tracing::warn!(error = %e.chain(), "a write was not marked for read-your-writes; this user's next reads may miss it on a replica");
    }
    response
}

/// Called once a request knows its user: records the user for the mark and, when the
/// user wrote within the window (or the mark cannot be read), sends the request's reads
/// to the primary.
pub(crate) async fn authenticated(
    parts: &axum::http::request::Parts,
    services: &Services,
    user_id: &str,
) {
    let Some(writer) = parts.extensions.get::<Writer>() else {
        return;
    };
    *writer.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(user_id.to_owned());
    let recent = match services.throttle.counters().get(&mark(user_id)).await {
        Ok(w) => w.count > 0 && w.resets_at > chrono::Utc::now(),
        Err(e) => {
            tracing::warn!(error = %e.chain(), "the read-your-writes mark could not be read; this request reads from the primary");
            true
        }
    };
    if recent {
        zeroscale_db::replicas::read_primary_from_now();
    }
}

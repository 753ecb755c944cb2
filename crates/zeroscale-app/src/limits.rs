//! Request rate limits and quotas (`[limits]`, per-key overrides) on the shared counters.
//!
//! Every authenticated request counts against its API key (`rl:key:<id>`) and its user
//! (`rl:user:<id>`), in windows of one minute from the first request counted. Over the
//! limit it is answered 429 with `Retry-After`; every counted response carries
//! `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset` (seconds until the
//! window ends) for the tighter of the two. Counting happens in one atomic operation per
//! counter, so of a burst of `2N` requests exactly `N` pass, however many servers share
//! the counters. Concurrent requests' hits reach the engine together, one call per round
//! trip ([`zeroscale_queue::counters::coalescing`]), so a limit costs little under load. When the counters cannot be reached, requests pass and it is logged.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use zeroscale_core::Error;
use zeroscale_core::counters::WindowCount;

use crate::api::ApiState;
use crate::api::auth::{Caller, Credential};
use crate::api::error::ApiResult;

const MINUTE: Duration = Duration::from_secs(60);
const DAY: Duration = Duration::from_secs(24 * 3600);

/// Where a request's limit check leaves what its response headers say.
#[derive(Debug, Clone, Default)]
struct Slot(Arc<Mutex<Option<Standing>>>);

/// A counted request's standing against its tightest limit.
#[derive(Debug, Clone, Copy)]
struct Standing {
    limit: u64,
    remaining: u64,
    reset: Duration,
}

fn seconds_up(d: Duration) -> u64 {
    u64::try_from(d.as_millis().div_ceil(1000)).unwrap_or(u64::MAX)
}

impl Standing {
    fn of(limit: u64, window: WindowCount) -> Self {
        let reset = (window.resets_at - chrono::Utc::now())
            .to_std()
            .unwrap_or_default();
        Standing {
            limit,
            remaining: limit.saturating_sub(window.count),
            reset,
        }
    }
}

/// The middleware that puts the headers on every response a limit counted.
pub(crate) async fn headers(mut request: Request, next: Next) -> Response {
    let slot = Slot::default();
    request.extensions_mut().insert(slot.clone());
    let mut response = next.run(request).await;
    let standing = *slot.0.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = standing {
        let h = response.headers_mut();
        h.insert("x-ratelimit-limit", HeaderValue::from(s.limit));
        h.insert("x-ratelimit-remaining", HeaderValue::from(s.remaining));
        h.insert("x-ratelimit-reset", HeaderValue::from(seconds_up(s.reset)));
    }
    response
}

/// Counts an authenticated request against its key's and its user's limits; 429 when
/// either is spent.
pub(crate) async fn check(parts: &Parts, state: &ApiState, caller: &Caller) -> ApiResult<()> {
    let config = &state.config.limits;
    let key = match &caller.credential {
        Credential::ApiKey { key_id, limit } => {
            let n = limit.unwrap_or(config.requests_per_minute_per_key);
            (n > 0).then(|| (format!("rl:key:{key_id}"), u64::from(n), "this API key"))
        }
        Credential::Session { .. } => None,
    };
    let user = (config.requests_per_minute_per_user > 0).then(|| {
        (
            format!("rl:user:{}", caller.user.id),
            u64::from(config.requests_per_minute_per_user),
            "this user",
        )
    });
    if key.is_none() && user.is_none() {
        return Ok(());
    }
    let counters = state.throttle.counters();
    let mut tightest: Option<Standing> = None;
    let mut over: Option<(Standing, &str)> = None;
    // Both counters at once: with the batching counters they share one engine call.
    let counted = futures::future::join_all(
        key.iter()
            .chain(user.iter())
            .map(|(counter, _, _)| counters.hit(counter, 1, MINUTE)),
    )
    .await;
    for ((_, limit, whose), counted) in key.iter().chain(user.iter()).zip(counted) {
        let window = match counted {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e.chain(), "a request was not counted against its rate limit");
                continue;
            }
        };
        let standing = Standing::of(*limit, window);
        if window.count > *limit && over.is_none() {
            over = Some((standing, whose));
        }
        if tightest.is_none_or(|t| standing.remaining < t.remaining) {
            tightest = Some(standing);
        }
    }
    if let Some(slot) = parts.extensions.get::<Slot>() {
        *slot.0.lock().unwrap_or_else(|e| e.into_inner()) = over.map(|(s, _)| s).or(tightest);
    }
    if let Some((standing, whose)) = over {
        let secs = seconds_up(standing.reset).max(1);
        return Err(Error::rate_limited(
            format!(
                "{whose} may make {} requests a minute: try again in {secs} s",
                standing.limit
            ),
            Some(Duration::from_secs(secs)),
        )
        .into());
    }
    Ok(())
}

/// Refuses an embeddings request from a user whose daily token quota is spent.
pub(crate) async fn check_embedding_quota(state: &ApiState, user_id: &str) -> ApiResult<()> {
    let quota = state.config.limits.embedding_tokens_per_day_per_user;
    if quota == 0 {
        return Ok(());
    }
    let used = state
        .throttle
        .counters()
        .get(&format!("quota:embed:{user_id}"))
        .await;
    match used {
        Ok(w) if w.count >= quota => {
            let left = (w.resets_at - chrono::Utc::now())
                .to_std()
                .unwrap_or_default();
            let secs = seconds_up(left).max(1);
            Err(Error::rate_limited(
                format!(
                    "the daily quota of {quota} embedding tokens is used up: it renews in {secs} s"
                ),
                Some(Duration::from_secs(secs)),
            )
            .into())
        }
        Ok(_) => Ok(()),
        Err(e) => {
            tracing::warn!(error = %e.chain(), "the embedding quota is off: its counter cannot be read");
            Ok(())
        }
    }
}

/// Counts the tokens an embeddings request used against the user's daily quota.
pub(crate) async fn spend_embedding_tokens(state: &ApiState, user_id: &str, tokens: u64) {
    if state.config.limits.embedding_tokens_per_day_per_user == 0 || tokens == 0 {
        return;
    }
    let spent = state
        .throttle
        .counters()
        .hit(&format!("quota:embed:{user_id}"), tokens, DAY)
        .await
        .map(|_| ());
    if let Err(e) = spent {
        tracing::warn!(error = %e.chain(), tokens, "embedding tokens were not counted");
    }
}

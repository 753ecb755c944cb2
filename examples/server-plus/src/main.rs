//! The full zeroscale server plus one route and one job of your own.
//!
//! `POST /v1/word-counts` (any signed-in user) enqueues the `example.count_words` job on
//! behalf of the caller; the job counts the words of the text, keeps the counts in
//! object storage (`word-counts/<job id>.json`) and returns them as its result, which
//! the caller reads at `GET /v1/jobs/{id}`; `GET /v1/word-counts/{id}` reads the stored
//! counts back. Everything else (config, backends by stage,
//! `serve`, `worker`, `migrate`, `doctor`, …) is zeroscale's, unchanged.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::json;
use utoipa_axum::{router::OpenApiRouter, routes};
use zeroscale_app::http::{ApiError, ApiResult, Caller, Json};
use zeroscale_app::{App, HandlerResult, Job, Services, TaskContext};
use zeroscale_core::queue::NewJob;
use zeroscale_core::storage::{ObjectKey, StorageExt};

/// The text to count.
#[derive(Debug, Deserialize, serde::Serialize, utoipa::ToSchema)]
struct CountWords {
    /// Any text; words are split on whitespace and compared in lower case.
    text: String,
}

/// Counts the words of a text in the background.
#[utoipa::path(
    post, path = "/v1/word-counts", tag = "example",
    security(("bearer" = []), ("api_key" = [])),
    request_body = CountWords,
    responses((status = 202, description = "enqueued: read the job at /v1/jobs/{id}"))
)]
async fn count_words(
    State(services): State<Services>,
    caller: Caller,
    Json(body): Json<CountWords>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    let job = NewJob::new("default", WordCount::NAME, json!(body));
    let status = services.enqueue_for(&caller.user().id, job).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "id": status.id.to_string() })),
    ))
}

/// The counts a finished `POST /v1/word-counts` job kept, read back from storage.
#[utoipa::path(
    get, path = "/v1/word-counts/{id}", tag = "example",
    security(("bearer" = []), ("api_key" = [])),
    params(("id" = String, Path, description = "the job's id")),
    responses(
        (status = 200, description = "the counts"),
        (status = 404, description = "no finished count of the caller's"),
    )
)]
async fn get_word_count(
    State(services): State<Services>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let not_found = || ApiError::not_found(format!("no word count {id} of yours"));
    // Only the user who asked (the job's owner, recorded by `enqueue_for`).
    match services.domain().jobs().find(&id).await? {
        Some(job) if job.user_id == caller.user().id => {}
        _ => return Err(not_found()),
    }
    let key = ObjectKey::parse(format!("word-counts/{id}.json"))?;
    match services.storage().get_json(&key).await {
        Ok(counts) => Ok(Json(counts)),
        Err(zeroscale_core::Error::NotFound { .. }) => Err(not_found()),
        Err(e) => Err(e.into()),
    }
}

/// The job behind `POST /v1/word-counts`.
struct WordCount;

impl Job for WordCount {
    const NAME: &'static str = "example.count_words";
    type Payload = CountWords;

    async fn run(&self, cx: TaskContext, payload: CountWords) -> HandlerResult {
        let mut counts = BTreeMap::<String, u64>::new();
        for word in payload.text.split_whitespace() {
            *counts.entry(word.to_lowercase()).or_default() += 1;
        }
        let result = json!({ "words": counts.values().sum::<u64>(), "counts": counts });
        // Keyed by the job's id: a second run of the same job writes the same object.
        let key = ObjectKey::parse(format!("word-counts/{}.json", cx.job.id))?;
        cx.services.storage().put_json(&key, &result).await?;
        Ok(Some(result))
    }
}

fn main() -> std::process::ExitCode {
    App::new()
        .routes(|| {
            OpenApiRouter::new()
                .routes(routes!(count_words))
                .routes(routes!(get_word_count))
        })
        .job(WordCount)
        .run()
}

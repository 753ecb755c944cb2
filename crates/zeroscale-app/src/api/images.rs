//! Images: `POST /v1/images` reserves credits, records a pending generation and queues a
//! job that runs it through the model router (with failover), stores the images as the
//! caller's files and settles the credits (charged, or refunded when every provider
//! failed). `GET /v1/images/{id}` gives the status and signed URLs of the images.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use zeroscale_core::Queue;
use zeroscale_core::domain::{Generation, GenerationStatus};
use zeroscale_core::queue::{JobStatus, NewJob};
use zeroscale_core::storage::SignedMethod;
use zeroscale_db::domain::NewGeneration;

use super::ApiState;
use super::auth::Caller;
use super::error::{ApiError, ApiResult, ErrorBody, Json};
use super::files::{SignedView, file_key, sign};
use super::jobs::{JobView, submit};
use crate::tasks::{self, GenerateImage, ImageParams};

/// An image request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateImage {
    /// What to draw.
    #[schema(pattern = r"\S")]
    prompt: String,
    /// An image model id; default `models.default_image_model`.
    #[serde(default)]
    model: Option<String>,
    /// What to avoid.
    #[serde(default)]
    negative_prompt: Option<String>,
    /// Pixels, 1 to 2048. Default 512.
    #[serde(default = "default_side")]
    #[schema(minimum = 1, maximum = 2048)]
    width: u32,
    /// Pixels, 1 to 2048. Default 512.
    #[serde(default = "default_side")]
    #[schema(minimum = 1, maximum = 2048)]
    height: u32,
    /// Images, 1 to 8. Default 1.
    #[serde(default = "default_count")]
    #[schema(minimum = 1, maximum = 8)]
    count: u32,
    /// A seed, for reproducible output (and the image cache).
    #[serde(default)]
    seed: Option<u64>,
}

fn default_side() -> u32 {
    512
}

fn default_count() -> u32 {
    1
}

/// One generated image.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ImageView {
    /// The image is one of the caller's files: `/v1/files/{file_id}`.
    file_id: String,
    content_type: Option<String>,
    seed: Option<u64>,
    /// A signed download URL, valid for an hour.
    url: Option<SignedView>,
}

/// A generation.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct GenerationView {
    id: String,
    /// `pending`, `succeeded` or `failed`.
    status: String,
    model: String,
    prompt: String,
    /// Credits taken when it was created.
    reserved_credits: i64,
    /// What it finally cost; the rest was refunded.
    actual_cost: Option<i64>,
    /// The provider that made the images.
    provider: Option<String>,
    /// Why it failed (every credit was refunded).
    error: Option<String>,
    images: Vec<ImageView>,
    created_at: DateTime<Utc>,
    completed_at: Option<DateTime<Utc>>,
}

async fn view(state: &ApiState, generation: Generation) -> ApiResult<GenerationView> {
    let mut images = Vec::new();
    if generation.status == GenerationStatus::Succeeded
        && let Some(files) = generation
            .result
            .as_ref()
            .and_then(|r| r.get("files"))
            .and_then(|f| f.as_array())
    {
        for file in files {
            let Some(id) = file.get("file_id").and_then(|v| v.as_str()) else {
                continue;
            };
            let key = file_key(&generation.user_id, id)?;
            let url = sign(
                state.storage.as_ref(),
                &key,
                id,
                SignedMethod::Get,
                Some(3600),
            )
            .await
            .ok();
            images.push(ImageView {
                file_id: id.to_owned(),
                content_type: file
                    .get("content_type")
                    .and_then(|v| v.as_str())
                    .map(str::to_owned),
                seed: file.get("seed").and_then(serde_json::Value::as_u64),
                url,
            });
        }
    }
    Ok(GenerationView {
        id: generation.id,
        status: generation.status.as_str().to_owned(),
        model: generation.model,
        prompt: generation.prompt,
        reserved_credits: generation.reserved_credits,
        actual_cost: generation.actual_cost,
        provider: generation.provider,
        error: generation.error,
        images,
        created_at: generation.created_at,
        completed_at: generation.completed_at,
    })
}

/// The generation and the job running it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CreatedImage {
    generation: GenerationView,
    job: JobView,
}

/// Starts an image generation: reserves the most it can cost (over the model's provider
/// chain), then runs it in the background.
#[utoipa::path(
    post, path = "/v1/images", tag = "images",
    security(("bearer" = []), ("api_key" = [])),
    request_body = CreateImage,
    responses(
        (status = 202, description = "credits reserved; a job is generating", body = CreatedImage),
        (status = 400, description = "invalid fields", body = ErrorBody),
        (status = 404, description = "unknown image model id", body = ErrorBody),
        (status = 409, description = "not enough credits", body = ErrorBody),
    )
)]
pub(crate) async fn create_image(
    State(state): State<ApiState>,
    caller: Caller,
    Json(body): Json<CreateImage>,
) -> ApiResult<impl IntoResponse> {
    if body.prompt.trim().is_empty() {
        return Err(ApiError::bad_request("prompt must not be empty"));
    }
    if !(1..=2048).contains(&body.width) || !(1..=2048).contains(&body.height) {
        return Err(ApiError::bad_request("width and height must be 1 to 2048"));
    }
    if !(1..=8).contains(&body.count) {
        return Err(ApiError::bad_request("count must be 1 to 8"));
    }
    let model = body
        .model
        .unwrap_or_else(|| state.config.models.default_image_model.clone());
    state
        .models
        .check_image_size(&model, body.width, body.height)?;
    let estimate = state.models.image_cost_estimate(&model, body.count)?;
    let params = ImageParams {
        negative_prompt: body.negative_prompt,
        width: body.width,
        height: body.height,
        count: body.count,
        seed: body.seed,
    };
    let new = NewGeneration {
        user_id: caller.user.id.clone(),
        model,
        prompt: body.prompt,
        params: serde_json::to_value(&params).expect("params serialize"),
        cost: estimate.ceil().max(0.0) as i64,
    };
    let (generation, job) = start(&state, &caller.user.id, new).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(CreatedImage {
            generation: view(&state, generation).await?,
            job: job.into(),
        }),
    ))
}

/// Reserves the credits of `new`, records it as pending and queues the job that
/// generates it: in one transaction when the queue is in the app's database.
pub(crate) async fn start(
    state: &ApiState,
    user_id: &str,
    new: NewGeneration,
) -> ApiResult<(Generation, JobStatus)> {
    match state.queue.database() {
        Some(queue) => reserve_and_enqueue(state, queue, user_id, new).await,
        None => reserve_then_enqueue(state, user_id, new).await,
    }
}

fn generate_job(generation: &Generation) -> NewJob {
    let payload = serde_json::to_value(GenerateImage {
        generation_id: generation.id.clone(),
    })
    .expect("payload serializes");
    NewJob::new("default", tasks::GENERATE_IMAGE, payload)
}

/// With the queue in the app's database: the credits, the pending generation, its job
/// and the job's owner commit as one transaction, or none of them does.
async fn reserve_and_enqueue(
    state: &ApiState,
    queue: &zeroscale_db::queue::DbQueue,
    user_id: &str,
    new: NewGeneration,
) -> ApiResult<(Generation, JobStatus)> {
    let db = state.domain.db();
    let mut txn = db.begin_job_txn().await?;
    let generation = state.domain.credits().reserve_in(&mut txn, new).await?;
    let job = generate_job(&generation);
    let (queue_name, task) = (job.queue.clone(), job.task.clone());
    let id = queue.enqueue_in(&mut txn, job).await?;
    state
        .domain
        .jobs()
        .record_in(&txn, &id.to_string(), user_id, &queue_name, &task)
        .await?;
    txn.commit(db).await?;
    Ok((generation, queue.status(id).await?))
}

/// With a queue elsewhere: reserve, then enqueue; if the enqueue fails, the credits go
/// back at once (and a generation whose job is lost is failed and refunded after
/// `workers.generation_timeout_secs`).
async fn reserve_then_enqueue(
    state: &ApiState,
    user_id: &str,
    new: NewGeneration,
) -> ApiResult<(Generation, JobStatus)> {
    let generation = state.domain.credits().reserve(new).await?;
    match submit(state, user_id, generate_job(&generation)).await {
        Ok(job) => Ok((generation, job)),
        Err(e) => {
            let _ = state
                .domain
                .credits()
                .fail(&generation.id, "the job could not be queued")
                .await;
            Err(e)
        }
    }
}

/// A generation's status, and signed URLs of its images once it succeeded.
#[utoipa::path(
    get, path = "/v1/images/{id}", tag = "images",
    security(("bearer" = []), ("api_key" = [])),
    params(("id" = String, Path, description = "the generation's id", pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")),
    responses(
        (status = 200, description = "the generation", body = GenerationView),
        (status = 404, description = "no such generation of the caller's", body = ErrorBody),
    )
)]
pub(crate) async fn get_image(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<GenerationView>> {
    let generation = match state.domain.credits().get(&id).await {
        Ok(g) if g.user_id == caller.user.id || caller.is_admin() => g,
        Ok(_) | Err(zeroscale_core::Error::NotFound { .. }) => {
            return Err(zeroscale_core::Error::not_found(format!("generation {id}")).into());
        }
        Err(e) => return Err(e.into()),
    };
    Ok(Json(view(&state, generation).await?))
}

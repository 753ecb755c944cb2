//! Background jobs: enqueue a named task, read its status and progress, cancel it. A user
//! sees only the jobs they submitted (recorded in `user_jobs`); admins see any. Tasks
//! named `internal.*` (document embedding, image generation) are started by their own
//! routes and cannot be submitted here.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use zeroscale_core::Error;
use zeroscale_core::queue::{EnqueueOptions, JobId, JobState, JobStatus, NewJob};

use super::ApiState;
use super::auth::Caller;
use super::error::{ApiError, ApiResult, ErrorBody, Json, Query};

/// The prefix of tasks only the app itself enqueues.
pub(crate) const INTERNAL_PREFIX: &str = "internal.";

/// A job's progress report.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ProgressView {
    /// 0 to 100.
    percent: u8,
    message: Option<String>,
}

/// A job as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct JobView {
    id: String,
    queue: String,
    task: String,
    /// `queued`, `scheduled`, `running`, `failed` (waiting to retry), `succeeded`, `dead`
    /// or `cancelled`.
    #[schema(value_type = String)]
    state: JobState,
    attempts: u32,
    max_attempts: u32,
    progress: Option<ProgressView>,
    /// What the task returned.
    result: Option<serde_json::Value>,
    last_error: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
}

impl From<JobStatus> for JobView {
    fn from(s: JobStatus) -> Self {
        JobView {
            id: s.id.to_string(),
            queue: s.queue,
            task: s.task,
            state: s.state,
            attempts: s.attempts,
            max_attempts: s.max_attempts,
            progress: s.progress.map(|p| ProgressView {
                percent: p.percent,
                message: p.message,
            }),
            result: s.result,
            last_error: s.last_error,
            created_at: s.created_at,
            updated_at: s.updated_at,
            finished_at: s.finished_at,
        }
    }
}

/// A job to enqueue.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EnqueueRequest {
    /// The task name a worker handles (e.g. `zeroscale.echo`, `zeroscale.sleep`); not
    /// `internal.*`.
    #[schema(pattern = r"^(?!internal\.).{1,128}$")]
    task: String,
    /// The task's input.
    #[serde(default)]
    payload: serde_json::Value,
    /// One of `workers.queues`; default `default`.
    #[serde(default)]
    queue: Option<String>,
    /// Run no earlier than this many seconds from now.
    #[serde(default)]
    delay_secs: Option<u64>,
    /// Attempts before dead letters; the queue's default when omitted.
    #[serde(default)]
    max_attempts: Option<u32>,
    /// A second enqueue with the same key, while the first job is unfinished, returns it.
    #[serde(default)]
    idempotency_key: Option<String>,
    /// Higher runs first. Default 0.
    #[serde(default)]
    priority: i32,
}

/// Enqueues a job; a worker runs it in the background.
#[utoipa::path(
    post, path = "/v1/jobs", tag = "jobs",
    security(("bearer" = []), ("api_key" = [])),
    request_body = EnqueueRequest,
    responses(
        (status = 202, description = "enqueued", body = JobView),
        (status = 400, description = "invalid fields, a task no worker handles, or an unknown queue", body = ErrorBody),
        (status = 403, description = "an internal task", body = ErrorBody),
        (status = 503, description = "the queue is unreachable", body = ErrorBody),
    )
)]
pub(crate) async fn enqueue_job(
    State(state): State<ApiState>,
    caller: Caller,
    Json(body): Json<EnqueueRequest>,
) -> ApiResult<impl IntoResponse> {
    if body.task.starts_with(INTERNAL_PREFIX) {
        return Err(ApiError::forbidden(format!(
            "task `{}` is started by the app itself, not through /v1/jobs",
            body.task
        )));
    }
    if !state.extensions.accepts_task(&body.task) {
        return Err(ApiError::bad_request(format!(
            "task: no worker of this app handles `{}` (tasks: {})",
            body.task,
            state.extensions.task_names().join(", ")
        )));
    }
    let queue_name = body.queue.unwrap_or_else(|| "default".to_owned());
    if !state.config.workers.queues.contains(&queue_name) {
        return Err(ApiError::bad_request(format!(
            "queue: no worker takes jobs from `{queue_name}` (workers.queues: {})",
            state.config.workers.queues.join(", ")
        )));
    }
    let status = submit(
        &state,
        &caller.user.id,
        NewJob {
            queue: queue_name,
            task: body.task,
            payload: body.payload,
            options: EnqueueOptions {
                delay: body.delay_secs.map(Duration::from_secs),
                max_attempts: body.max_attempts,
                idempotency_key: body.idempotency_key,
                priority: body.priority,
                ..EnqueueOptions::default()
            },
        },
    )
    .await?;
    Ok((StatusCode::ACCEPTED, Json(JobView::from(status))))
}

/// Enqueues `job` for `user_id`, records the owner and returns the job's status.
pub(crate) async fn submit(state: &ApiState, user_id: &str, job: NewJob) -> ApiResult<JobStatus> {
    Ok(state.enqueue_for(user_id, job).await?)
}

/// The caller's job `id` (any job for an admin); another user's job is not found.
async fn owned(state: &ApiState, caller: &Caller, id: &str) -> ApiResult<JobId> {
    let not_found = || ApiError::from(Error::not_found(format!("job {id}")));
    let job_id: JobId = id.parse().map_err(|_| not_found())?;
    if caller.is_admin() {
        return Ok(job_id);
    }
    match state.domain.jobs().find(id).await? {
        Some(record) if record.user_id == caller.user.id => Ok(job_id),
        _ => Err(not_found()),
    }
}

/// A job's status, progress and result.
#[utoipa::path(
    get, path = "/v1/jobs/{id}", tag = "jobs",
    security(("bearer" = []), ("api_key" = [])),
    params(("id" = String, Path, description = "the job's id", pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")),
    responses(
        (status = 200, description = "the job", body = JobView),
        (status = 404, description = "no such job of the caller's", body = ErrorBody),
    )
)]
pub(crate) async fn get_job(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<JobView>> {
    let job_id = owned(&state, &caller, &id).await?;
    let queue = state.queue.get().await?;
    Ok(Json(queue.status(job_id).await?.into()))
}

/// Cancels a job that has not finished; a running job stops at its next lease check.
#[utoipa::path(
    post, path = "/v1/jobs/{id}/cancel", tag = "jobs",
    security(("bearer" = []), ("api_key" = [])),
    params(("id" = String, Path, description = "the job's id", pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")),
    responses(
        (status = 200, description = "the job after cancelling", body = JobView),
        (status = 403, description = "an internal job (documents, images)", body = ErrorBody),
        (status = 404, description = "no such job of the caller's", body = ErrorBody),
        (status = 409, description = "the job already finished", body = ErrorBody),
    )
)]
pub(crate) async fn cancel_job(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<JobView>> {
    let job_id = owned(&state, &caller, &id).await?;
    let queue = state.queue.get().await?;
    let status = queue.status(job_id).await?;
    if status.task.starts_with(INTERNAL_PREFIX) {
        // Cancelling it would leave its resource (a generation and its reserved credits)
        // half done.
        return Err(ApiError::forbidden(format!(
            "job {id} runs `{}` for another route and cannot be cancelled here",
            status.task
        )));
    }
    queue.cancel(job_id).await?;
    Ok(Json(queue.status(job_id).await?.into()))
}

/// Paging through jobs.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct JobsQuery {
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Jobs per page: default 50, at most 200.
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u64>,
}

/// A page of jobs, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct JobList {
    data: Vec<JobView>,
    next_cursor: Option<String>,
}

/// The caller's jobs, newest first.
#[utoipa::path(
    get, path = "/v1/jobs", tag = "jobs",
    security(("bearer" = []), ("api_key" = [])),
    params(JobsQuery),
    responses(
        (status = 200, description = "a page of jobs", body = JobList),
    )
)]
pub(crate) async fn list_jobs(
    State(state): State<ApiState>,
    caller: Caller,
    Query(query): Query<JobsQuery>,
) -> ApiResult<Json<JobList>> {
    let limit = super::page_limit(query.limit, 50, 200)?;
    let records = state
        .domain
        .jobs()
        .list(&caller.user.id, query.cursor.as_deref(), Some(limit))
        .await?;
    let queue = state.queue.get().await?;
    let mut data = Vec::with_capacity(records.len());
    for record in &records {
        let Ok(id) = record.job_id.parse::<JobId>() else {
            continue;
        };
        match queue.status(id).await {
            Ok(status) => data.push(JobView::from(status)),
            // Purged from the queue (or lost with an in-memory queue's restart).
            Err(Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let next_cursor = if records.len() as u64 == limit {
        records.last().map(|r| r.job_id.clone())
    } else {
        None
    };
    Ok(Json(JobList { data, next_cursor }))
}

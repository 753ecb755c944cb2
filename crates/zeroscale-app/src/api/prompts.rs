//! System prompts: admins write, any authenticated caller reads.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use zeroscale_core::domain::SystemPrompt;

use super::ApiState;
use super::auth::{Admin, Caller};
use super::error::{ApiError, ApiResult, ErrorBody, Json};

/// A system prompt.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PromptView {
    id: String,
    /// Unique name.
    name: String,
    content: String,
    /// Starts at 1; every update adds 1.
    version: i32,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<SystemPrompt> for PromptView {
    fn from(p: SystemPrompt) -> Self {
        PromptView {
            id: p.id,
            name: p.name,
            content: p.content,
            version: p.version,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

/// A prompt to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreatePrompt {
    /// Unique, 1 to 128 characters.
    #[schema(pattern = r"\S", max_length = 128)]
    name: String,
    content: String,
}

/// Changes to a prompt; omitted fields stay.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdatePrompt {
    /// Unique, 1 to 128 characters.
    #[serde(default)]
    #[schema(pattern = r"\S", max_length = 128)]
    name: Option<String>,
    #[serde(default)]
    content: Option<String>,
}

/// Prompts by name.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PromptList {
    data: Vec<PromptView>,
}

/// Creates a system prompt (admin).
#[utoipa::path(
    post, path = "/v1/prompts", tag = "prompts",
    security(("bearer" = []), ("api_key" = [])),
    request_body = CreatePrompt,
    responses(
        (status = 201, description = "created", body = PromptView),
        (status = 400, description = "invalid fields", body = ErrorBody),
        (status = 403, description = "not an admin", body = ErrorBody),
        (status = 409, description = "the name is taken", body = ErrorBody),
    )
)]
pub(crate) async fn create_prompt(
    State(state): State<ApiState>,
    _admin: Admin,
    Json(body): Json<CreatePrompt>,
) -> ApiResult<impl IntoResponse> {
    let prompt = state
        .domain
        .prompts()
        .create(&body.name, &body.content)
        .await?;
    Ok((StatusCode::CREATED, Json(PromptView::from(prompt))))
}

/// Lists system prompts.
#[utoipa::path(
    get, path = "/v1/prompts", tag = "prompts",
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "every prompt", body = PromptList),
    )
)]
pub(crate) async fn list_prompts(
    State(state): State<ApiState>,
    _caller: Caller,
) -> ApiResult<Json<PromptList>> {
    let prompts = state.domain.prompts().list().await?;
    Ok(Json(PromptList {
        data: prompts.into_iter().map(PromptView::from).collect(),
    }))
}

/// One system prompt.
#[utoipa::path(
    get, path = "/v1/prompts/{id}", tag = "prompts",
    security(("bearer" = []), ("api_key" = [])),
    params(("id" = String, Path, description = "the prompt's id")),
    responses(
        (status = 200, description = "the prompt", body = PromptView),
        (status = 404, description = "no such prompt", body = ErrorBody),
    )
)]
pub(crate) async fn get_prompt(
    State(state): State<ApiState>,
    _caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<PromptView>> {
    Ok(Json(state.domain.prompts().get(&id).await?.into()))
}

/// Changes a system prompt (admin); its version goes up by one.
#[utoipa::path(
    patch, path = "/v1/prompts/{id}", tag = "prompts",
    security(("bearer" = []), ("api_key" = [])),
    params(("id" = String, Path, description = "the prompt's id")),
    request_body = UpdatePrompt,
    responses(
        (status = 200, description = "updated", body = PromptView),
        (status = 400, description = "invalid fields", body = ErrorBody),
        (status = 403, description = "not an admin", body = ErrorBody),
        (status = 404, description = "no such prompt", body = ErrorBody),
        (status = 409, description = "the name is taken", body = ErrorBody),
    )
)]
pub(crate) async fn update_prompt(
    State(state): State<ApiState>,
    _admin: Admin,
    Path(id): Path<String>,
    Json(body): Json<UpdatePrompt>,
) -> ApiResult<Json<PromptView>> {
    if body.name.is_none() && body.content.is_none() {
        return Err(ApiError::bad_request(
            "nothing to change: send `name` and/or `content`",
        ));
    }
    let prompt = state
        .domain
        .prompts()
        .update(&id, body.name.as_deref(), body.content.as_deref())
        .await?;
    Ok(Json(prompt.into()))
}

/// Deletes a system prompt (admin); refused while an API key links it.
#[utoipa::path(
    delete, path = "/v1/prompts/{id}", tag = "prompts",
    security(("bearer" = []), ("api_key" = [])),
    params(("id" = String, Path, description = "the prompt's id")),
    responses(
        (status = 204, description = "deleted"),
        (status = 403, description = "not an admin", body = ErrorBody),
        (status = 404, description = "no such prompt", body = ErrorBody),
        (status = 409, description = "an API key links it", body = ErrorBody),
    )
)]
pub(crate) async fn delete_prompt(
    State(state): State<ApiState>,
    _admin: Admin,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    state.domain.prompts().delete(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

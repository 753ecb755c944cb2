//! Chat history: append, list with cursor pagination, delete a session. Session ids are
//! chosen by the client and scoped to the caller: two users may both use `main` and never
//! see each other's messages (stored as `<user id>:<session id>`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use zeroscale_core::domain::{ChatMessage, ChatRole};
use zeroscale_db::domain::NewMessage;

use super::ApiState;
use super::auth::{Caller, Credential};
use super::error::{ApiError, ApiResult, ErrorBody, Json, Query};

fn scoped(caller: &Caller, session_id: &str) -> ApiResult<String> {
    crate::owned::check_name("session id", session_id)?;
    Ok(crate::owned::scoped(&caller.user.id, session_id))
}

/// A chat message.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MessageView {
    /// Also the pagination cursor.
    id: String,
    session_id: String,
    /// `system`, `user`, `assistant` or `tool`.
    #[schema(value_type = String)]
    role: ChatRole,
    content: String,
    #[schema(value_type = Object)]
    metadata: serde_json::Value,
    created_at: DateTime<Utc>,
}

fn view(message: ChatMessage, session_id: &str) -> MessageView {
    MessageView {
        id: message.id,
        session_id: session_id.to_owned(),
        role: message.role,
        content: message.content,
        metadata: message.metadata,
        created_at: message.created_at,
    }
}

/// A message to append.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AppendMessage {
    /// `system`, `user`, `assistant` or `tool`.
    #[schema(value_type = String)]
    role: ChatRole,
    content: String,
    /// A JSON object.
    #[serde(default)]
    #[schema(value_type = Object)]
    metadata: serde_json::Value,
}

/// Appends a message to one of the caller's chat sessions (created on first message).
#[utoipa::path(
    post, path = "/v1/chat/{session_id}/messages", tag = "chat",
    security(("bearer" = []), ("api_key" = [])),
    params(("session_id" = String, Path, description = "the caller's session id", pattern = r"^[A-Za-z0-9._-]{1,90}$")),
    request_body = AppendMessage,
    responses(
        (status = 201, description = "appended", body = MessageView),
        (status = 400, description = "invalid fields", body = ErrorBody),
        (status = 409, description = "the session is full (`chat.max_messages_per_session`)", body = ErrorBody),
    )
)]
pub(crate) async fn append_message(
    State(state): State<ApiState>,
    caller: Caller,
    Path(session_id): Path<String>,
    Json(body): Json<AppendMessage>,
) -> ApiResult<impl IntoResponse> {
    let stored = scoped(&caller, &session_id)?;
    let api_key_id = match &caller.credential {
        Credential::ApiKey { key_id, .. } => Some(key_id.clone()),
        Credential::Session { .. } => None,
    };
    let message = state
        .domain
        .chat()
        .append(NewMessage {
            session_id: stored,
            role: body.role,
            content: body.content,
            user_id: Some(caller.user.id.clone()),
            api_key_id,
            metadata: body.metadata,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(view(message, &session_id))))
}

/// Paging through a session.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct PageQuery {
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Messages per page: default 100, at most 1000.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u64>,
}

/// One page of messages.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MessagePage {
    /// Oldest first.
    data: Vec<MessageView>,
    /// Pass as `cursor` for the next page; null on the last page.
    next_cursor: Option<String>,
}

/// Lists a session's messages, oldest first.
#[utoipa::path(
    get, path = "/v1/chat/{session_id}/messages", tag = "chat",
    security(("bearer" = []), ("api_key" = [])),
    params(("session_id" = String, Path, description = "the caller's session id", pattern = r"^[A-Za-z0-9._-]{1,90}$"), PageQuery),
    responses(
        (status = 200, description = "a page (empty for an unknown session)", body = MessagePage),
        (status = 400, description = "invalid session id or paging", body = ErrorBody),
    )
)]
pub(crate) async fn list_messages(
    State(state): State<ApiState>,
    caller: Caller,
    Path(session_id): Path<String>,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<MessagePage>> {
    let stored = scoped(&caller, &session_id)?;
    let page = state
        .domain
        .chat()
        .list(
            &stored,
            page.cursor.as_deref(),
            Some(super::page_limit(page.limit, 100, 1000)?),
        )
        .await?;
    Ok(Json(MessagePage {
        data: page
            .messages
            .into_iter()
            .map(|m| view(m, &session_id))
            .collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Deletes a chat session and all its messages.
#[utoipa::path(
    delete, path = "/v1/chat/{session_id}", tag = "chat",
    security(("bearer" = []), ("api_key" = [])),
    params(("session_id" = String, Path, description = "the caller's session id", pattern = r"^[A-Za-z0-9._-]{1,90}$")),
    responses(
        (status = 204, description = "deleted"),
        (status = 404, description = "no such session", body = ErrorBody),
    )
)]
pub(crate) async fn delete_session(
    State(state): State<ApiState>,
    caller: Caller,
    Path(session_id): Path<String>,
) -> ApiResult<StatusCode> {
    let stored = scoped(&caller, &session_id)?;
    let deleted = state.domain.chat().delete_session(&stored).await?;
    if deleted == 0 {
        return Err(ApiError::from(zeroscale_core::Error::not_found(format!(
            "chat session `{session_id}`"
        ))));
    }
    Ok(StatusCode::NO_CONTENT)
}

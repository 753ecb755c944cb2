//! Chat history: append, list with cursor pagination, delete a session. Session ids are
//! chosen by the client and scoped to the caller: two users may both use `main` and never
//! see each other's messages (stored as `<user id>:<session id>`).
//!
//! A page the domain serves from its cache (`chat.cache_ttl_ms`) is turned into JSON once:
//! [`RenderedPages`] keeps the bytes beside the cached page they came from.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use zeroscale_core::domain::{ChatMessage, ChatRole};
use zeroscale_db::domain::{ChatPage, NewMessage};

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
) -> ApiResult<Response> {
    let stored = scoped(&caller, &session_id)?;
    let page = state
        .domain
        .chat()
        .list_shared(
            &stored,
            page.cursor.as_deref(),
            Some(super::page_limit(page.limit, 100, 1000)?),
        )
        .await?;
    let body = state.rendered_pages.json(&page, &session_id)?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// [`MessagePage`] over a borrowed page, to render without copying it.
#[derive(Serialize)]
struct PageRef<'a> {
    data: Vec<MessageRef<'a>>,
    next_cursor: Option<&'a str>,
}

/// [`MessageView`] over a borrowed message.
#[derive(Serialize)]
struct MessageRef<'a> {
    id: &'a str,
    session_id: &'a str,
    role: ChatRole,
    content: &'a str,
    metadata: &'a serde_json::Value,
    created_at: DateTime<Utc>,
}

fn render(page: &ChatPage, session_id: &str) -> ApiResult<Bytes> {
    let body = PageRef {
        data: page
            .messages
            .iter()
            .map(|m| MessageRef {
                id: &m.id,
                session_id,
                role: m.role,
                content: &m.content,
                metadata: &m.metadata,
                created_at: m.created_at,
            })
            .collect(),
        next_cursor: page.next_cursor.as_deref(),
    };
    serde_json::to_vec(&body)
        .map(Bytes::from)
        .map_err(|e| ApiError::from(zeroscale_core::Error::backend("json", e)))
}

/// Renders kept at most before those of pages the domain no longer caches are dropped.
const RENDERS_KEPT: usize = 256;

/// A page's address, the page (kept alive) and its JSON.
type Renders = HashMap<usize, (Arc<ChatPage>, Bytes)>;

/// The JSON of pages the domain cache holds, keyed by the identity of the cached
/// `Arc<ChatPage>` (each entry keeps its page alive, so the address cannot be reused while
/// the entry exists). A page the domain has dropped or replaced is never found again, so a
/// render is exactly as fresh as the domain's cache.
#[derive(Debug, Clone, Default)]
pub(crate) struct RenderedPages {
    renders: Arc<Mutex<Renders>>,
}

impl RenderedPages {
    /// The page as the response body. `session_id` is the caller's (unscoped) id: the same
    /// for every caller of one stored session, so it is part of what the key names.
    fn json(&self, page: &Arc<ChatPage>, session_id: &str) -> ApiResult<Bytes> {
        let key = Arc::as_ptr(page) as usize;
        if let Some((_, body)) = self.lock().get(&key) {
            return Ok(body.clone());
        }
        let body = render(page, session_id)?;
        // Only a page the domain keeps (another holder than us) is worth keeping.
        if Arc::strong_count(page) > 1 {
            let mut renders = self.lock();
            if renders.len() >= RENDERS_KEPT {
                // Drop the renders of pages only this map still holds.
                renders.retain(|_, (p, _)| Arc::strong_count(p) > 1);
                if renders.len() >= RENDERS_KEPT * 4 {
                    renders.clear();
                }
            }
            renders.insert(key, (Arc::clone(page), body.clone()));
        }
        Ok(body)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Renders> {
        // Plain data: a panic elsewhere cannot leave it half-written.
        self.renders.lock().unwrap_or_else(|e| e.into_inner())
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn page(text: &str) -> ChatPage {
        ChatPage {
            messages: vec![ChatMessage {
                id: "01".into(),
                session_id: "u1:main".into(),
                role: ChatRole::Assistant,
                content: text.into(),
                user_id: Some("u1".into()),
                api_key_id: None,
                metadata: serde_json::json!({"k": [1, "two"]}),
                created_at: Utc::now(),
            }],
            next_cursor: Some("01".into()),
        }
    }

    #[test]
    fn a_render_is_the_owned_view_serialised() {
        let page = page("hi \"there\"");
        let owned = MessagePage {
            data: page
                .messages
                .iter()
                .cloned()
                .map(|m| view(m, "main"))
                .collect(),
            next_cursor: page.next_cursor.clone(),
        };
        assert_eq!(
            render(&page, "main").unwrap(),
            serde_json::to_vec(&owned).unwrap()
        );
    }

    #[test]
    fn renders_follow_the_identity_of_the_cached_page() {
        let renders = RenderedPages::default();
        let cached = Arc::new(page("first"));
        let held = Arc::clone(&cached); // what the domain's cache holds
        let body = renders.json(&cached, "main").unwrap();
        drop(cached); // the request is done
        assert!(std::str::from_utf8(&body).unwrap().contains("first"));
        assert_eq!(renders.lock().len(), 1, "a page the domain keeps is kept");
        // The domain replaced the page: a new Arc is rendered afresh.
        let replaced = Arc::new(page("second"));
        let held2 = Arc::clone(&replaced);
        let body = renders.json(&replaced, "main").unwrap();
        drop(replaced);
        assert!(std::str::from_utf8(&body).unwrap().contains("second"));
        // A page nobody else holds is rendered but not kept.
        drop(held);
        let alone = Arc::new(page("alone"));
        renders.json(&alone, "main").unwrap();
        assert_eq!(renders.lock().len(), 2);
        // Past the bound, renders of pages the domain dropped go; live ones stay (up to
        // four times the bound).
        let kept: Vec<_> = (0..RENDERS_KEPT + 1)
            .map(|i| {
                let p = Arc::new(page(&format!("p{i}")));
                let domain_holds = Arc::clone(&p);
                renders.json(&p, "main").unwrap();
                domain_holds
            })
            .collect();
        let left = renders.lock().len();
        assert_eq!(left, RENDERS_KEPT + 2, "every live render is kept");
        drop(held2);
        assert!(
            renders
                .lock()
                .values()
                .all(|(p, _)| !p.messages[0].content.starts_with("first")),
            "the dropped page's render went first"
        );
        drop(kept);
    }
}

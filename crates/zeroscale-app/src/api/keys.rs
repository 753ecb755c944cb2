//! API keys (admin only): create (the plaintext is shown once), list, change the rate
//! limit, revoke.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use zeroscale_core::domain::ApiKey;
use zeroscale_db::domain::NewApiKey;

use super::ApiState;
use super::auth::Admin;
use super::error::{ApiResult, Json, Query};

/// An API key as listed (never the secret).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct KeyView {
    id: String,
    /// Requests with the key act as this user.
    user_id: String,
    /// The non-secret start of the key, to recognise it.
    prefix: String,
    client_name: String,
    notes: Option<String>,
    active: bool,
    created_at: DateTime<Utc>,
    last_used_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
    /// Requests per minute for this key; null: `limits.requests_per_minute_per_key`.
    rate_limit_per_minute: Option<u32>,
}

impl From<ApiKey> for KeyView {
    fn from(key: ApiKey) -> Self {
        KeyView {
            id: key.id,
            user_id: key.user_id,
            prefix: key.prefix,
            client_name: key.client_name,
            notes: key.notes,
            active: key.active && key.revoked_at.is_none(),
            created_at: key.created_at,
            last_used_at: key.last_used_at,
            revoked_at: key.revoked_at,
            rate_limit_per_minute: key.rate_limit_per_minute,
        }
    }
}

/// A key to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateKey {
    /// Who uses the key (1 to 128 characters).
    #[schema(pattern = r"\S", max_length = 128)]
    client_name: String,
    /// The owner; default the calling admin.
    #[serde(default)]
    user_id: Option<String>,
    /// Free text.
    #[serde(default)]
    notes: Option<String>,
    /// A system prompt to link to the key.
    #[serde(default)]
    system_prompt_id: Option<String>,
    /// Requests per minute for this key (over `limits.requests_per_minute_per_key`).
    #[serde(default)]
    rate_limit_per_minute: Option<u32>,
}

/// A new key and its secret.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CreatedKey {
    key: KeyView,
    /// The whole key (`zs_…`). Shown only now; store it safely.
    plaintext: String,
}

/// Creates an API key.
#[utoipa::path(
    post, path = "/v1/api-keys", tag = "api keys",
    security(("bearer" = []), ("api_key" = [])),
    request_body = CreateKey,
    responses(
        (status = 201, description = "created; the plaintext is shown only now", body = CreatedKey),
        (status = 400, description = "invalid fields", body = super::error::ErrorBody),
        (status = 403, description = "not an admin", body = super::error::ErrorBody),
        (status = 404, description = "no such user", body = super::error::ErrorBody),
    )
)]
pub(crate) async fn create_key(
    State(state): State<ApiState>,
    Admin(admin): Admin,
    Json(body): Json<CreateKey>,
) -> ApiResult<impl IntoResponse> {
    let user_id = body.user_id.unwrap_or(admin.user.id);
    // A clear 404 for an unknown owner, rather than a foreign-key failure.
    state.domain.users().get(&user_id).await?;
    let created = state
        .domain
        .api_keys()
        .create(NewApiKey {
            user_id,
            client_name: body.client_name,
            notes: body.notes,
            system_prompt_id: body.system_prompt_id,
            adapter_name: None,
            rate_limit_per_minute: body.rate_limit_per_minute,
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedKey {
            key: created.key.into(),
            plaintext: created.plaintext,
        }),
    ))
}

/// Filters for listing keys.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeyFilter {
    /// Only this user's keys.
    user_id: Option<String>,
}

/// Keys, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct KeyList {
    data: Vec<KeyView>,
}

/// Lists API keys.
#[utoipa::path(
    get, path = "/v1/api-keys", tag = "api keys",
    security(("bearer" = []), ("api_key" = [])),
    params(KeyFilter),
    responses(
        (status = 200, description = "the keys", body = KeyList),
        (status = 403, description = "not an admin", body = super::error::ErrorBody),
    )
)]
pub(crate) async fn list_keys(
    State(state): State<ApiState>,
    _admin: Admin,
    Query(filter): Query<KeyFilter>,
) -> ApiResult<Json<KeyList>> {
    let keys = state
        .domain
        .api_keys()
        .list(filter.user_id.as_deref())
        .await?;
    Ok(Json(KeyList {
        data: keys.into_iter().map(KeyView::from).collect(),
    }))
}

/// What to change on a key.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateKey {
    /// Requests per minute for this key; null goes back to
    /// `limits.requests_per_minute_per_key`.
    rate_limit_per_minute: Option<u32>,
}

/// Changes an API key's rate limit; it applies at once.
#[utoipa::path(
    patch, path = "/v1/api-keys/{id}", tag = "api keys",
    security(("bearer" = []), ("api_key" = [])),
    params(("id" = String, Path, description = "the key's id")),
    request_body = UpdateKey,
    responses(
        (status = 200, description = "changed", body = KeyView),
        (status = 400, description = "invalid fields", body = super::error::ErrorBody),
        (status = 403, description = "not an admin", body = super::error::ErrorBody),
        (status = 404, description = "no such key", body = super::error::ErrorBody),
    )
)]
pub(crate) async fn update_key(
    State(state): State<ApiState>,
    _admin: Admin,
    Path(id): Path<String>,
    Json(body): Json<UpdateKey>,
) -> ApiResult<Json<KeyView>> {
    let key = state
        .domain
        .api_keys()
        .set_rate_limit(&id, body.rate_limit_per_minute)
        .await?;
    Ok(Json(key.into()))
}

/// Revokes an API key: it stops working at once.
#[utoipa::path(
    delete, path = "/v1/api-keys/{id}", tag = "api keys",
    security(("bearer" = []), ("api_key" = [])),
    params(("id" = String, Path, description = "the key's id")),
    responses(
        (status = 200, description = "revoked", body = KeyView),
        (status = 403, description = "not an admin", body = super::error::ErrorBody),
        (status = 404, description = "no such key", body = super::error::ErrorBody),
    )
)]
pub(crate) async fn revoke_key(
    State(state): State<ApiState>,
    _admin: Admin,
    Path(id): Path<String>,
) -> ApiResult<Json<KeyView>> {
    let key = state.domain.api_keys().revoke(&id).await?;
    Ok(Json(key.into()))
}

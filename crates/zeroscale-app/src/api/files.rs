//! Files: upload (streamed, size-limited, content type kept), download (streamed, with
//! range requests), head, delete, list, and signed URLs. Keys follow
//! [`crate::owned`]: every route builds them from the caller's own id.

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use zeroscale_core::storage::{
    ListOptions, ObjectKey, ObjectMeta, PutOptions, SignedMethod, SignedUrlOptions,
};
use zeroscale_core::{Error, Storage};

use super::ApiState;
use super::auth::Caller;
use crate::owned::{new_file_id, owner_prefix};

/// The storage key of the caller's file `id` (an id that cannot be a file is not found).
pub(crate) fn file_key(user_id: &str, id: &str) -> ApiResult<ObjectKey> {
    Ok(crate::owned::file_key(user_id, id)?)
}
use super::error::{ApiError, ApiResult, ErrorBody, Json, Query};

/// Metadata key of the original file name (percent-encoded: storage metadata is ASCII).
const FILENAME: &str = "filename";
/// Longest signed URL lifetime.
const MAX_SIGNED_SECS: u64 = 7 * 24 * 3600;

fn encode_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b" ._-()[]+,".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn decode_name(encoded: &str) -> String {
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = encoded.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A stored file.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct FileView {
    /// Use it in `/v1/files/{id}`.
    id: String,
    /// The name given at upload, if any.
    filename: Option<String>,
    content_type: Option<String>,
    size: u64,
    updated_at: DateTime<Utc>,
}

fn file_view(meta: &ObjectMeta) -> FileView {
    let id = meta
        .key
        .as_str()
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    FileView {
        id,
        filename: meta.metadata.get(FILENAME).map(|n| decode_name(n)),
        content_type: meta.content_type.clone(),
        size: meta.size,
        updated_at: meta.last_modified,
    }
}

/// Upload options.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct UploadQuery {
    /// The file's name, kept with it (at most 255 bytes).
    #[param(min_length = 1, max_length = 255)]
    filename: Option<String>,
}

/// Uploads a file: the request body is the file, streamed to storage; its `Content-Type`
/// is kept. At most `server.max_upload_bytes`.
#[utoipa::path(
    post, path = "/v1/files", tag = "files",
    security(("bearer" = []), ("api_key" = [])),
    params(UploadQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "the file's bytes"),
    responses(
        (status = 201, description = "stored", body = FileView),
        (status = 400, description = "bad file name or interrupted upload", body = ErrorBody),
        (status = 413, description = "larger than `server.max_upload_bytes`", body = ErrorBody),
    )
)]
pub(crate) async fn upload_file(
    State(state): State<ApiState>,
    caller: Caller,
    Query(query): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let limit = state.config.server.max_upload_bytes;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the file is larger than the {limit} bytes `server.max_upload_bytes` allows"),
        )
    };
    if zeroscale_storage::http::declared_too_large(&headers, Some(limit)) {
        return Err(too_large());
    }
    let mut metadata = std::collections::BTreeMap::new();
    if let Some(name) = &query.filename {
        if name.is_empty() || name.len() > 255 || name.chars().any(char::is_control) {
            return Err(ApiError::bad_request(
                "filename: 1 to 255 bytes without control characters",
            ));
        }
        metadata.insert(FILENAME.to_owned(), encode_name(name));
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let id = new_file_id();
    let key = file_key(&caller.user.id, &id)?;
    let (stream, exceeded) = zeroscale_storage::http::limited_body(body, Some(limit));
    // Stored with the object: S3 and R2 answer presigned downloads with it too.
    let content_disposition = state
        .config
        .server
        .download_policy()
        .disposition(content_type.as_deref(), query.filename.as_deref());
    let opts = PutOptions {
        content_type: content_type.clone(),
        content_disposition: Some(content_disposition),
        metadata,
        ..Default::default()
    };
    // The put is the commit: the object shows in listings only once it is complete, and
    // nothing that could fail comes after it, so a file is listed only if its 201 was
    // decided. (A crash in between the two leaves a file its client was not told of.) A
    // put that fails or is dropped may still have reached the store (its answer lost):
    // the guard removes whatever it left.
    let guard = state.removals.guard(key.clone());
    let stored = match state.storage.put_stream(&key, stream, opts).await {
        Ok(stored) => {
            guard.acknowledged();
            stored
        }
        // The put wrote nothing (a failed multipart upload is aborted).
        Err(_) if exceeded.load(Ordering::Relaxed) => return Err(too_large()),
        Err(e) => return Err(e.into()),
    };
    let view = FileView {
        id,
        filename: query.filename,
        content_type,
        size: stored.size,
        updated_at: Utc::now(),
    };
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// Paging through files.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Files per page: default 50, at most 100.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u64>,
}

/// A page of the caller's files.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct FileList {
    data: Vec<FileView>,
    /// Pass as `cursor` for the next page; null on the last page.
    next_cursor: Option<String>,
}

/// Lists the caller's files.
#[utoipa::path(
    get, path = "/v1/files", tag = "files",
    security(("bearer" = []), ("api_key" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "a page of files", body = FileList),
    )
)]
pub(crate) async fn list_files(
    State(state): State<ApiState>,
    caller: Caller,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<FileList>> {
    let page = state
        .storage
        .list(ListOptions {
            prefix: Some(owner_prefix(&caller.user.id)),
            page_size: Some(super::page_limit(query.limit, 50, 100)? as usize),
            page_token: query.cursor,
        })
        .await?;
    let mut data = Vec::with_capacity(page.objects.len());
    for object in &page.objects {
        // Listings do not carry metadata on every backend: ask for it.
        match state.storage.head(&object.key).await {
            Ok(meta) => data.push(file_view(&meta)),
            Err(Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Json(FileList {
        data,
        next_cursor: page.next_page_token,
    }))
}

/// The caller's file `id` as a response: bytes (or one range), or only headers.
async fn serve_file(
    state: &ApiState,
    caller: &Caller,
    id: &str,
    headers: &HeaderMap,
    head_only: bool,
) -> ApiResult<Response> {
    let key = file_key(&caller.user.id, id)?;
    let storage = state.storage.as_ref();
    let policy = state.config.server.download_policy();
    zeroscale_storage::http::object_response(storage, &key, headers, head_only, &policy)
        .await
        .map_err(|e| by_id(e, id))
}

/// `e` with a missing object named by the file's id: the storage key (with the owner's
/// user id) is the server's business, not the client's.
fn by_id(e: Error, id: &str) -> ApiError {
    match e {
        Error::NotFound { .. } => Error::not_found(format!("file {id}")).into(),
        other => other.into(),
    }
}

/// Downloads a file, streamed; honours one `Range: bytes=…` (206, or 416 when it is
/// outside the file).
#[utoipa::path(
    get, path = "/v1/files/{id}", tag = "files",
    security(("bearer" = []), ("api_key" = [])),
    params(("id" = String, Path, description = "the file's id", pattern = r"^[0-9a-f]{32}$")),
    responses(
        (status = 200, description = "the file, with the content type given at upload", content_type = "*/*", body = Vec<u8>),
        (status = 206, description = "the requested range (`Content-Range` says which)", content_type = "*/*", body = Vec<u8>),
        (status = 404, description = "no such file of the caller's", body = ErrorBody),
        (status = 416, description = "the range is outside the file"),
    )
)]
pub(crate) async fn download_file(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    serve_file(&state, &caller, &id, &headers, false).await
}

/// A file's headers (size, type, ETag) without its bytes.
#[utoipa::path(
    head, path = "/v1/files/{id}", tag = "files",
    security(("bearer" = []), ("api_key" = [])),
    params(("id" = String, Path, description = "the file's id", pattern = r"^[0-9a-f]{32}$")),
    responses(
        (status = 200, description = "the file exists"),
        (status = 401, description = "not authenticated"),
        (status = 404, description = "no such file of the caller's"),
    )
)]
pub(crate) async fn head_file(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    serve_file(&state, &caller, &id, &headers, true).await
}

/// Deletes a file.
#[utoipa::path(
    delete, path = "/v1/files/{id}", tag = "files",
    security(("bearer" = []), ("api_key" = [])),
    params(("id" = String, Path, description = "the file's id", pattern = r"^[0-9a-f]{32}$")),
    responses(
        (status = 204, description = "deleted"),
        (status = 404, description = "no such file of the caller's", body = ErrorBody),
    )
)]
pub(crate) async fn delete_file(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let key = file_key(&caller.user.id, &id)?;
    if !state.storage.delete(&key).await? {
        return Err(Error::not_found(format!("file {id}")).into());
    }
    Ok(StatusCode::NO_CONTENT)
}

/// What a signed URL should allow.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SignRequest {
    /// `GET` (download) or `PUT` (replace the file's bytes). Default `GET`.
    #[serde(default = "default_method")]
    #[schema(value_type = String)]
    method: SignedMethod,
    /// Seconds the URL works: default 3600, at most 604800 (7 days).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 604800)]
    expires_in_secs: Option<u64>,
}

fn default_method() -> SignedMethod {
    SignedMethod::Get
}

/// A signed URL: no credentials needed to use it, until it expires.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SignedView {
    /// The file it is for.
    id: String,
    url: String,
    /// `GET` or `PUT`.
    method: String,
    expires_at: DateTime<Utc>,
}

impl SignedView {
    /// The URL.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }
}

pub(crate) async fn sign(
    storage: &dyn Storage,
    key: &ObjectKey,
    id: &str,
    method: SignedMethod,
    expires_in_secs: Option<u64>,
) -> ApiResult<SignedView> {
    let secs = expires_in_secs.unwrap_or(3600);
    if secs == 0 || secs > MAX_SIGNED_SECS {
        return Err(ApiError::bad_request(format!(
            "expires_in_secs must be 1 to {MAX_SIGNED_SECS}"
        )));
    }
    let signed = storage
        .signed_url(
            key,
            SignedUrlOptions {
                method,
                expires_in: Duration::from_secs(secs),
            },
        )
        .await?;
    Ok(SignedView {
        id: id.to_owned(),
        url: signed.url,
        method: signed.method.as_str().to_owned(),
        expires_at: signed.expires_at,
    })
}

/// A signed URL for one of the caller's files (GET to download, PUT to replace).
#[utoipa::path(
    post, path = "/v1/files/{id}/signed-url", tag = "files",
    security(("bearer" = []), ("api_key" = [])),
    params(("id" = String, Path, description = "the file's id", pattern = r"^[0-9a-f]{32}$")),
    request_body = SignRequest,
    responses(
        (status = 200, description = "the URL", body = SignedView),
        (status = 400, description = "bad method or expiry", body = ErrorBody),
        (status = 404, description = "no such file of the caller's", body = ErrorBody),
    )
)]
pub(crate) async fn signed_url(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<SignRequest>,
) -> ApiResult<Json<SignedView>> {
    let key = file_key(&caller.user.id, &id)?;
    state.storage.head(&key).await.map_err(|e| by_id(e, &id))?;
    Ok(Json(
        sign(
            state.storage.as_ref(),
            &key,
            &id,
            body.method,
            body.expires_in_secs,
        )
        .await?,
    ))
}

/// Options for a direct upload.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UploadUrlRequest {
    /// Seconds the URL works: default 3600, at most 604800.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 604800)]
    expires_in_secs: Option<u64>,
}

/// A signed PUT URL for a new file: upload to it directly (no credentials), then use the
/// returned id like any other file's.
#[utoipa::path(
    post, path = "/v1/files/upload-url", tag = "files",
    security(("bearer" = []), ("api_key" = [])),
    request_body = UploadUrlRequest,
    responses(
        (status = 200, description = "the new file's id and PUT URL", body = SignedView),
        (status = 400, description = "bad expiry", body = ErrorBody),
    )
)]
pub(crate) async fn upload_url(
    State(state): State<ApiState>,
    caller: Caller,
    Json(body): Json<UploadUrlRequest>,
) -> ApiResult<Json<SignedView>> {
    let id = new_file_id();
    let key = file_key(&caller.user.id, &id)?;
    Ok(Json(
        sign(
            state.storage.as_ref(),
            &key,
            &id,
            SignedMethod::Put,
            body.expires_in_secs,
        )
        .await?,
    ))
}

//! The `/files/{key}` route serving app-signed URLs (memory and local storage): GET
//! streams the object, PUT stores the request body. Requests need the `method`, `expires`
//! and `sig` query parameters that [`UrlSigner::sign`](crate::UrlSigner::sign) produces;
//! anything expired or tampered with is refused with 403.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::TryStreamExt;
use zeroscale_core::storage::{ObjectKey, PutOptions, SignedMethod};
use zeroscale_core::{Error, ErrorKind, Storage};

use crate::UrlSigner;

#[derive(Clone)]
struct FilesState {
    storage: Arc<dyn Storage>,
    signer: Arc<UrlSigner>,
}

/// The router for `/files/{*key}`; mount it at the app's root.
pub fn files_router(storage: Arc<dyn Storage>, signer: Arc<UrlSigner>) -> Router {
    Router::new()
        .route("/files/{*key}", get(get_file).put(put_file))
        .with_state(FilesState { storage, signer })
}

fn error_response(e: &Error) -> Response {
    let status = match e.kind() {
        ErrorKind::PermissionDenied | ErrorKind::Unauthenticated => StatusCode::FORBIDDEN,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
        ErrorKind::AlreadyExists | ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::Unavailable | ErrorKind::RateLimited => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let body = serde_json::json!({"error": {"code": e.kind().code(), "message": e.to_string()}});
    (status, axum::Json(body)).into_response()
}

/// Checks the query's signature for `method` on `key`; returns the validated key.
fn authorize(
    state: &FilesState,
    method: SignedMethod,
    key: &str,
    query: Option<&str>,
) -> Result<ObjectKey, Error> {
    let mut wanted_method = None;
    let mut expires = None;
    let mut sig = None;
    for pair in query.unwrap_or_default().split('&') {
        match pair.split_once('=') {
            Some(("method", v)) => wanted_method = Some(v.to_owned()),
            Some(("expires", v)) => expires = v.parse::<i64>().ok(),
            Some(("sig", v)) => sig = Some(v.to_owned()),
            _ => {}
        }
    }
    let (Some(wanted), Some(expires), Some(sig)) = (wanted_method, expires, sig) else {
        return Err(Error::permission_denied(
            "this URL is not signed: ask the API for a signed URL",
        ));
    };
    if wanted != method.as_str() {
        return Err(Error::permission_denied(format!(
            "this URL allows {wanted}, not {}",
            method.as_str()
        )));
    }
    state
        .signer
        .verify(method, key, expires, &sig, chrono::Utc::now().timestamp())?;
    ObjectKey::parse(key)
}

async fn get_file(
    State(state): State<FilesState>,
    Path(key): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let key = match authorize(&state, SignedMethod::Get, &key, query.as_deref()) {
        Ok(key) => key,
        Err(e) => return error_response(&e),
    };
    match state.storage.get_opts(&key, Default::default()).await {
        Ok(object) => {
            let mut headers = HeaderMap::new();
            let content_type = object
                .meta
                .content_type
                .clone()
                .unwrap_or_else(|| "application/octet-stream".to_owned());
            if let Ok(v) = HeaderValue::from_str(&content_type) {
                headers.insert(header::CONTENT_TYPE, v);
            }
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(object.meta.size));
            (headers, Body::from_stream(object.body)).into_response()
        }
        Err(e) => error_response(&e),
    }
}

async fn put_file(
    State(state): State<FilesState>,
    Path(key): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let key = match authorize(&state, SignedMethod::Put, &key, query.as_deref()) {
        Ok(key) => key,
        Err(e) => return error_response(&e),
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let stream = body
        .into_data_stream()
        .map_err(|e| Error::invalid_input(format!("upload interrupted: {e}")));
    let opts = PutOptions {
        content_type,
        ..Default::default()
    };
    match state.storage.put_stream(&key, Box::pin(stream), opts).await {
        Ok(put) => (
            StatusCode::OK,
            axum::Json(
                serde_json::json!({"key": key.as_str(), "size": put.size, "etag": put.etag}),
            ),
        )
            .into_response(),
        Err(e) => error_response(&e),
    }
}

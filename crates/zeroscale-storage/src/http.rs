//! The `/files/{token}` route serving app-signed URLs (memory and local storage): GET
//! streams the object (whole, or one byte range), PUT stores the request body. The token
//! is what [`UrlSigner::sign`](crate::UrlSigner::sign) made; anything expired, tampered
//! with or for another method is refused with 403. [`object_response`] is the streaming
//! download with `Range` support and the safe download headers, shared with the app's own
//! file routes.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::TryStreamExt;
use zeroscale_core::download::{DOWNLOAD_CSP, DownloadPolicy};
use zeroscale_core::error::PublicError;
use zeroscale_core::storage::{GetOptions, ObjectKey, ObjectMeta, PutOptions, SignedMethod};
use zeroscale_core::{Error, Storage};

use crate::UrlSigner;

#[derive(Clone)]
struct FilesState {
    storage: Arc<dyn Storage>,
    signer: Arc<UrlSigner>,
    max_put_bytes: Option<u64>,
    policy: Arc<DownloadPolicy>,
}

/// The router for `/files/{token}`; mount it at the app's root. Downloads follow `policy`
/// (see [`object_response`]). A signed PUT larger than `max_put_bytes` is refused with
/// 413 and writes nothing (the object, if any, is left as it was).
pub fn files_router(
    storage: Arc<dyn Storage>,
    signer: Arc<UrlSigner>,
    max_put_bytes: Option<u64>,
    policy: DownloadPolicy,
) -> Router {
    Router::new()
        .route("/files/{token}", get(get_file).put(put_file))
        .with_state(FilesState {
            storage,
            signer,
            max_put_bytes,
            policy: Arc::new(policy),
        })
}

/// A request body as a [`ByteStream`](zeroscale_core::storage::ByteStream) that fails once
/// more than `max` bytes have arrived; the flag says whether that is why it failed. A
/// `Content-Length` over `max` is caught before reading: check [`declared_too_large`].
pub fn limited_body(
    body: Body,
    max: Option<u64>,
) -> (
    zeroscale_core::storage::ByteStream,
    Arc<std::sync::atomic::AtomicBool>,
) {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let seen = Arc::new(AtomicU64::new(0));
    let exceeded = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&exceeded);
    let stream = body
        .into_data_stream()
        .map_err(|e| Error::invalid_input(format!("upload interrupted: {e}")))
        .and_then(move |chunk| {
            let total = seen.fetch_add(chunk.len() as u64, Ordering::Relaxed) + chunk.len() as u64;
            let over = max.is_some_and(|max| total > max);
            if over {
                flag.store(true, Ordering::Relaxed);
            }
            async move {
                if over {
                    Err(Error::invalid_input("the upload is larger than allowed"))
                } else {
                    Ok(chunk)
                }
            }
        });
    (Box::pin(stream), exceeded)
}

/// Whether the request's `Content-Length` is over `max`.
pub fn declared_too_large(headers: &HeaderMap, max: Option<u64>) -> bool {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    matches!((declared, max), (Some(length), Some(max)) if length > max)
}

fn error_response(e: &Error) -> Response {
    let public = PublicError::from(e);
    if let Some(reference) = &public.reference {
        tracing::error!(error = %e.chain(), reference, "signed file request failed");
    } else if public.status == 503 {
        tracing::warn!(error = %e.chain(), "signed file request: storage is unavailable");
    }
    let status = StatusCode::from_u16(public.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::json!({"error": {"code": public.code, "message": public.message}});
    let mut response = (status, axum::Json(body)).into_response();
    if let Some(secs) = public.retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

/// The object key the URL's token allows `method` on.
fn authorize(state: &FilesState, method: SignedMethod, token: &str) -> Result<ObjectKey, Error> {
    state
        .signer
        .open(method, token, chrono::Utc::now().timestamp())
}

async fn get_file(
    State(state): State<FilesState>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Response {
    let key = match authorize(&state, SignedMethod::Get, &token) {
        Ok(key) => key,
        Err(e) => return error_response(&e),
    };
    match object_response(state.storage.as_ref(), &key, &headers, false, &state.policy).await {
        Ok(response) => response,
        Err(e) => error_response(&e),
    }
}

/// The bytes of a `Range` header this server honours: one range, in bytes. Anything else
/// (several ranges, other units, garbage) is ignored and the whole object is sent, as
/// RFC 9110 allows.
fn requested_range(headers: &HeaderMap) -> Option<(Option<u64>, Option<u64>)> {
    let value = headers.get(header::RANGE)?.to_str().ok()?;
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (start, end) = spec.split_once('-')?;
    let parse = |s: &str| -> Option<Option<u64>> {
        let s = s.trim();
        if s.is_empty() {
            Some(None)
        } else {
            s.parse().ok().map(Some)
        }
    };
    let (start, end) = (parse(start)?, parse(end)?);
    if start.is_none() && end.is_none() {
        return None;
    }
    Some((start, end))
}

/// Streams `key` as an HTTP response: the whole object (200), or one byte range (206
/// with `Content-Range`) when the request has a satisfiable `Range` header, or 416 when
/// it is not satisfiable. With `head_only` only the headers are sent. The content type
/// given at upload, the size, `ETag`, `Last-Modified` and `Accept-Ranges: bytes` are set,
/// and so are the headers that keep user content from running on our origin:
/// `X-Content-Type-Options: nosniff`, `Content-Security-Policy: sandbox; …`
/// ([`DOWNLOAD_CSP`]) and a `Content-Disposition` that `policy` allows (`attachment` for
/// every type that may not be inline, whatever was stored).
pub async fn object_response(
    storage: &dyn Storage,
    key: &ObjectKey,
    request: &HeaderMap,
    head_only: bool,
    policy: &DownloadPolicy,
) -> Result<Response, Error> {
    let requested = requested_range(request);
    if !head_only && requested.is_none() {
        // The whole object: one trip, and the headers describe exactly the bytes sent.
        let object = storage.get_opts(key, GetOptions::default()).await?;
        let mut headers = object_headers(&object.meta, policy);
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(object.meta.size));
        return Ok((StatusCode::OK, headers, Body::from_stream(object.body)).into_response());
    }
    let meta = storage.head(key).await?;
    let size = meta.size;
    let mut headers = object_headers(&meta, policy);
    let range = match requested {
        None => None,
        Some((Some(start), end)) if start < size => {
            let end = end.map_or(size, |e| e.saturating_add(1).min(size));
            (end > start).then_some(start..end)
        }
        Some((None, Some(suffix))) if suffix > 0 && size > 0 => {
            Some(size.saturating_sub(suffix)..size)
        }
        Some(_) => {
            headers.insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{size}")).expect("ASCII"),
            );
            return Ok((StatusCode::RANGE_NOT_SATISFIABLE, headers).into_response());
        }
    };
    let (status, length) = match &range {
        Some(r) => {
            headers.insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes {}-{}/{size}", r.start, r.end - 1))
                    .expect("ASCII"),
            );
            (StatusCode::PARTIAL_CONTENT, r.end - r.start)
        }
        None => (StatusCode::OK, size),
    };
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    if head_only {
        return Ok((status, headers).into_response());
    }
    let opts = zeroscale_core::storage::GetOptions {
        range: range.map(zeroscale_core::storage::ByteRange::Bounded),
    };
    let object = storage.get_opts(key, opts).await?;
    Ok((status, headers, Body::from_stream(object.body)).into_response())
}

/// The headers every answer about an object carries (all but the length and range).
fn object_headers(meta: &ObjectMeta, policy: &DownloadPolicy) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let content_type = meta
        .content_type
        .as_deref()
        .unwrap_or("application/octet-stream");
    if let Ok(v) = HeaderValue::from_str(content_type) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    let disposition = policy.enforce(
        meta.content_type.as_deref(),
        meta.content_disposition.as_deref(),
    );
    let disposition = HeaderValue::from_str(&disposition)
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"));
    headers.insert(header::CONTENT_DISPOSITION, disposition);
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(DOWNLOAD_CSP),
    );
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Some(etag) = &meta.etag {
        let quoted = if etag.starts_with('"') || etag.starts_with("W/") {
            etag.clone()
        } else {
            format!("\"{etag}\"")
        };
        if let Ok(v) = HeaderValue::from_str(&quoted) {
            headers.insert(header::ETAG, v);
        }
    }
    let modified = meta
        .last_modified
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    if let Ok(v) = HeaderValue::from_str(&modified) {
        headers.insert(header::LAST_MODIFIED, v);
    }
    headers
}

async fn put_file(
    State(state): State<FilesState>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let key = match authorize(&state, SignedMethod::Put, &token) {
        Ok(key) => key,
        Err(e) => return error_response(&e),
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let too_large = || {
        let body = serde_json::json!({"error": {
            "code": "payload_too_large",
            "message": format!("the upload is larger than the {} bytes allowed", state.max_put_bytes.unwrap_or_default()),
        }});
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            [(header::CONNECTION, "close")],
            axum::Json(body),
        )
            .into_response()
    };
    if declared_too_large(&headers, state.max_put_bytes) {
        return too_large();
    }
    let (stream, exceeded) = limited_body(body, state.max_put_bytes);
    let opts = PutOptions {
        content_disposition: Some(state.policy.disposition(content_type.as_deref(), None)),
        content_type,
        ..Default::default()
    };
    let put = state.storage.put_stream(&key, stream, opts).await;
    // A failed put writes nothing (a multipart upload is aborted): the object as it was
    // stays.
    if put.is_err() && exceeded.load(std::sync::atomic::Ordering::Relaxed) {
        return too_large();
    }
    match put {
        Ok(put) => (
            StatusCode::OK,
            axum::Json(serde_json::json!({"size": put.size, "etag": put.etag})),
        )
            .into_response(),
        Err(e) => error_response(&e),
    }
}

//! Errors as HTTP responses: `{"error": {"code", "message", "request_id"}}` with the
//! status that fits the core error kind, and JSON extraction that names the offending
//! field. A response carries its error as an [`ErrorReport`] extension; the request-id
//! layer (`crate::request_id`) writes the body with the request's id and logs the
//! operator's detail under it.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use utoipa::ToSchema;
use zeroscale_core::Error;
use zeroscale_core::error::PublicError;

/// The body of every error response (schema `ErrorBody` in `/openapi.json`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub(crate) error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorDetail {
    /// Stable machine-readable code: `not_found`, `already_exists`, `invalid_input`,
    /// `unauthenticated`, `permission_denied`, `conflict`, `rate_limited`, `unavailable`,
    /// `not_supported`, `payload_too_large`, `timeout`, `internal`.
    pub(crate) code: String,
    /// For people: what went wrong and, where possible, how to fix it.
    pub(crate) message: String,
    /// The request's id, also in the `x-request-id` response header: the server's log
    /// has the details of a 5xx under it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) request_id: Option<String>,
}

/// An error response's parts, for the request-id layer to finish.
#[derive(Debug, Clone)]
pub(crate) struct ErrorReport {
    pub(crate) code: &'static str,
    pub(crate) message: String,
    /// What the operator needs (engine addresses, SQL, paths): logged, never sent.
    pub(crate) detail: Option<String>,
    /// A 500's log reference.
    pub(crate) reference: Option<String>,
    /// The request field at fault, when known (OpenAI's `param`).
    pub(crate) param: Option<String>,
    /// The code OpenAI's API gives this error, where it differs from the one derived from
    /// the status (e.g. `insufficient_quota`); see `crate::api::openai`.
    pub(crate) openai_code: Option<&'static str>,
}

/// An error on its way to becoming a response: the status, a stable code and a message
/// for people, sent as [`ErrorBody`] with the request's id. Any `zeroscale_core::Error`
/// converts with `?` (not found is 404, invalid input 400, unavailable 503, …).
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<u64>,
    detail: Option<String>,
    reference: Option<String>,
    /// What the OpenAI routes add (boxed: most errors have none).
    openai: Option<Box<OpenAiHint>>,
    retry: bool,
}

/// An error's `param` and OpenAI code, for the OpenAI routes.
#[derive(Debug, Default)]
struct OpenAiHint {
    param: Option<String>,
    code: Option<&'static str>,
}

/// A handler's result: its response, or an [`ApiError`].
pub type ApiResult<T> = std::result::Result<T, ApiError>;

impl ApiError {
    /// The status it answers with.
    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }

    /// What the client is told.
    pub(crate) fn message(&self) -> &str {
        &self.message
    }

    /// Seconds to wait before trying again, when it says.
    pub(crate) fn retry_after(&self) -> Option<u64> {
        self.retry_after
    }

    /// An error answered with `status`, the machine-readable `code` (`not_found`,
    /// `conflict`, … or your own) and `message` for people.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
            detail: None,
            reference: None,
            openai: None,
            retry: true,
        }
    }

    /// Names the request field at fault (shown as `param` on the OpenAI routes).
    pub(crate) fn with_param(mut self, param: impl Into<String>) -> Self {
        self.openai.get_or_insert_default().param = Some(param.into());
        self
    }

    /// The code the OpenAI routes answer with instead of the one their status implies.
    pub(crate) fn with_openai_code(mut self, code: &'static str) -> Self {
        self.openai.get_or_insert_default().code = Some(code);
        self
    }

    /// Tells clients that retrying the same request will not help (or would repeat work
    /// that goes on): `x-should-retry: false`, which the OpenAI SDKs obey.
    pub(crate) fn no_retry(mut self) -> Self {
        self.retry = false;
        self
    }

    /// 400 `invalid_input`: say which field is wrong and why.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_input", message)
    }

    /// 401 `unauthenticated`.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    /// 403 `permission_denied`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "permission_denied", message)
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        let public = PublicError::from(&error);
        ApiError {
            status: StatusCode::from_u16(public.status)
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code: public.code,
            // Internal details (SQL, file paths, engine addresses) go to the log only.
            detail: (public.status >= 500).then(|| error.chain()),
            message: public.message,
            retry_after: public.retry_after,
            reference: public.reference,
            openai: None,
            retry: true,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message.clone(),
                request_id: None,
            },
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        response.extensions_mut().insert(ErrorReport {
            code: self.code,
            message: self.message,
            detail: self.detail,
            reference: self.reference,
            param: self.openai.as_ref().and_then(|o| o.param.clone()),
            openai_code: self.openai.and_then(|o| o.code),
        });
        if !self.retry {
            response.headers_mut().insert(
                axum::http::HeaderName::from_static("x-should-retry"),
                HeaderValue::from_static("false"),
            );
        }
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::PAYLOAD_TOO_LARGE {
            // The rest of the body is not read: the connection cannot be reused.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "the request body is larger than `server.max_body_bytes` allows",
                )
            }
            JsonRejection::MissingJsonContentType(_) => ApiError::bad_request(
                "the request body must be JSON with `Content-Type: application/json`",
            ),
            // serde's message names the field and the expected type, with line and column.
            other => ApiError::bad_request(other.body_text()),
        }
    }
}

/// `axum::Json` whose rejections are [`ApiError`]s.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let axum::Json(value) = axum::Json::<T>::from_request(req, state).await?;
        Ok(Json(value))
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// `axum::extract::Query` whose rejections are [`ApiError`]s.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Query(value) =
            axum::extract::Query::<T>::from_request_parts(parts, state)
                .await
                .map_err(|e: QueryRejection| ApiError::bad_request(e.body_text()))?;
        Ok(Query(value))
    }
}

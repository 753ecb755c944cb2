//! An [`Error`] as an axum response (feature `axum`), so a handler of your own can
//! return `zeroscale_core::Result<T>` and use `?` on every zeroscale call.
//!
//! The response is what zeroscale's own API answers: the status of the error's kind
//! ([`ErrorKind::http_status`](crate::ErrorKind::http_status)) and the body
//! `{"error": {"code": "not_found", "message": "…"}}`, with `Retry-After` when waiting
//! helps. A 500's details and an unreachable engine's address are not sent: they are
//! logged (`tracing`) with the reference the body gives ([`PublicError`]).
//!
//! ```
//! use axum::{Router, routing::get};
//!
//! async fn missing() -> zeroscale_core::Result<String> {
//!     Err(zeroscale_core::Error::not_found("upload `a.txt`"))
//! }
//!
//! let app: Router = Router::new().route("/missing", get(missing));
//! # drop(app);
//! ```

use axum_core::body::Body;
use axum_core::response::{IntoResponse, Response};

use crate::error::{Error, PublicError};

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let public = PublicError::from(&self);
        if let Some(reference) = &public.reference {
            tracing::error!(reference = %reference, error = %self.chain(), "request failed");
        } else if public.status == 503 {
            tracing::warn!(error = %self.chain(), "request failed: a service is unavailable");
        }
        let mut detail = serde_json::json!({ "code": public.code, "message": public.message });
        if let Some(reference) = &public.reference {
            detail["reference"] = reference.clone().into();
        }
        let body = serde_json::json!({ "error": detail }).to_string();
        let mut response = Response::new(Body::from(body));
        *response.status_mut() = http::StatusCode::from_u16(public.status)
            .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
        let headers = response.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        if let Some(seconds) = public.retry_after {
            headers.insert(http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_become_statuses_and_json_bodies() {
        let response = Error::not_found("upload `a.txt`").into_response();
        assert_eq!(response.status(), 404);
        assert_eq!(
            response.headers()[http::header::CONTENT_TYPE],
            "application/json"
        );
        let response =
            Error::overloaded("busy", std::time::Duration::from_millis(1500)).into_response();
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()[http::header::RETRY_AFTER], "2");
        let response = Error::backend("s3", "SELECT secret FROM x failed").into_response();
        assert_eq!(response.status(), 500);
    }

    #[tokio::test]
    async fn a_500_hides_its_details_behind_a_reference() {
        let response = Error::backend("s3", "SELECT secret FROM x failed").into_response();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body["error"]["code"], "internal");
        assert!(body["error"]["reference"].is_string(), "{body}");
        assert!(!body.to_string().contains("secret"), "{body}");
    }
}

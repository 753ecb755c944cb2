//! The OpenAI-compatible routes: the openai SDKs (Python, Node) and the libraries built on
//! them (LangChain) use a zeroscale server as their `base_url` unchanged, with the
//! registry, router, failover, caches and credits behind it.
//!
//! - [`models`]: `GET /v1/models`, `GET /v1/models/{id}`.
//! - [`embeddings`]: `POST /v1/embeddings` (text, or token ids in `cl100k_base`).
//! - [`images`]: `POST /v1/images/generations`, synchronous like OpenAI's.
//!
//! Errors on these routes take OpenAI's shape, `{"error": {"message", "type", "param",
//! "code"}}` ([`error_body`], written by the request-id layer for the routes that
//! [`serves`] names), with the statuses the SDKs turn into their exception types. The
//! request id stays in the `x-request-id` header, which the SDKs expose.

pub(crate) mod embeddings;
pub(crate) mod images;
pub(crate) mod models;

use axum::response::IntoResponse as _;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::ErrorReport;

/// The route templates answered in OpenAI's error shape.
const ROUTES: &[&str] = &[
    "/v1/models",
    "/v1/models/{id}",
    "/v1/embeddings",
    "/v1/images/generations",
];

/// Whether errors on route template `route` take OpenAI's shape.
pub(crate) fn serves(route: &str) -> bool {
    ROUTES.contains(&route)
}

/// OpenAI's error body (schema `OpenAiErrorBody` in `/openapi.json`).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OpenAiErrorBody {
    error: OpenAiError,
}

/// What went wrong, as OpenAI's API says it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OpenAiError {
    /// For people: what went wrong and how to fix it.
    message: String,
    /// `invalid_request_error` (4xx), `requests` (rate limits), `insufficient_quota`
    /// (credits spent) or `server_error` (5xx).
    #[serde(rename = "type")]
    kind: &'static str,
    /// The request field at fault, when known.
    param: Option<String>,
    /// `invalid_api_key`, `model_not_found`, `rate_limit_exceeded`,
    /// `insufficient_quota`, or zeroscale's own code; null for a plain bad request.
    code: Option<String>,
}

/// The OpenAI-shaped body for an error answered with `status`.
pub(crate) fn error_body(status: u16, report: &ErrorReport) -> OpenAiErrorBody {
    let code = match (report.openai_code, status, report.code) {
        (Some(code), _, _) => Some(code),
        (None, 401, _) => Some("invalid_api_key"),
        (None, 404, _) => Some("model_not_found"),
        (None, 429, _) => Some("rate_limit_exceeded"),
        (None, _, "invalid_input") => None,
        (None, _, ours) => Some(ours),
    };
    let kind = match (code, status) {
        (Some("insufficient_quota"), _) => "insufficient_quota",
        (_, 429) => "requests",
        (_, 500..) => "server_error",
        _ => "invalid_request_error",
    };
    OpenAiErrorBody {
        error: OpenAiError {
            message: report.message.clone(),
            kind,
            param: report.param.clone(),
            code: code.map(str::to_owned),
        },
    }
}

/// OpenAI endpoints that zeroscale does not serve (it has no chat or text-generation
/// models): each answers an OpenAI-shaped 404 saying so, rather than a bare 404 or 405
/// the SDKs would report without a reason. Not in the OpenAPI document.
const UNSERVED: &[&str] = &[
    "/v1/completions",
    "/v1/responses",
    "/v1/moderations",
    "/v1/images/edits",
    "/v1/images/variations",
    "/v1/audio/speech",
    "/v1/audio/transcriptions",
    "/v1/audio/translations",
];

/// The routes of [`UNSERVED`], plus `POST /v1/chat/completions` (which shares its path
/// pattern with chat history's `/v1/chat/{session_id}`, where only DELETE is served).
pub(crate) fn unserved_routes() -> axum::Router {
    let mut router = axum::Router::new().route(
        "/v1/chat/{session_id}",
        axum::routing::post(
            |axum::extract::Path(session): axum::extract::Path<String>| async move {
                if session == "completions" {
                    not_served("/v1/chat/completions")
                } else {
                    axum::http::StatusCode::METHOD_NOT_ALLOWED.into_response()
                }
            },
        ),
    );
    for path in UNSERVED {
        router = router.route(
            path,
            axum::routing::post(move || async move { not_served(path) }),
        );
    }
    router
}

/// OpenAI's 404 for `POST path`.
fn not_served(path: &str) -> axum::response::Response {
    let body = OpenAiErrorBody {
        error: OpenAiError {
            message: format!(
                "zeroscale does not serve POST {path}: it has no chat or text-generation \
                 models. It serves GET /v1/models, POST /v1/embeddings and POST \
                 /v1/images/generations."
            ),
            kind: "invalid_request_error",
            param: None,
            code: Some("unsupported_endpoint".to_owned()),
        },
    };
    (axum::http::StatusCode::NOT_FOUND, axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(code: &'static str) -> ErrorReport {
        ErrorReport {
            code,
            message: "m".to_owned(),
            detail: None,
            reference: None,
            param: None,
            openai_code: None,
        }
    }

    fn shape(status: u16, report: &ErrorReport) -> serde_json::Value {
        serde_json::to_value(error_body(status, report)).expect("serializes")
    }

    #[test]
    fn statuses_map_to_the_types_and_codes_the_sdks_expect() {
        let bad = shape(400, &report("invalid_input"));
        assert_eq!(bad["error"]["type"], "invalid_request_error");
        assert!(bad["error"]["code"].is_null() && bad["error"]["param"].is_null());
        assert_eq!(
            shape(401, &report("unauthenticated"))["error"]["code"],
            "invalid_api_key"
        );
        assert_eq!(
            shape(404, &report("not_found"))["error"]["code"],
            "model_not_found"
        );
        let limited = shape(429, &report("rate_limited"));
        assert_eq!(limited["error"]["type"], "requests");
        assert_eq!(limited["error"]["code"], "rate_limit_exceeded");
        let mut quota = report("conflict");
        quota.openai_code = Some("insufficient_quota");
        quota.param = Some("n".to_owned());
        let quota = shape(429, &quota);
        assert_eq!(quota["error"]["type"], "insufficient_quota");
        assert_eq!(quota["error"]["code"], "insufficient_quota");
        assert_eq!(quota["error"]["param"], "n");
        let down = shape(503, &report("unavailable"));
        assert_eq!(down["error"]["type"], "server_error");
        assert_eq!(down["error"]["code"], "unavailable");
    }

    #[test]
    fn only_the_openai_routes_are_reshaped() {
        assert!(serves("/v1/embeddings") && serves("/v1/models/{id}"));
        assert!(!serves("/v1/images") && !serves("/v1/images/{id}"));
    }
}

//! Request ids: every response carries `x-request-id` (the caller's, when it sent a
//! sensible one, else a new one), every log line of the request is in a span with it, and
//! every API error body says it (`error.request_id`; the OpenAI routes answer in OpenAI's
//! error shape, see `crate::api::openai`, and keep the id in the header only), so a client's report leads to the
//! operator's log line with the details the client was not shown.

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument as _;

use crate::api::error::{ErrorBody, ErrorDetail, ErrorReport};

/// The header, on requests and responses.
pub(crate) const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The longest id taken from a caller.
const MAX_LEN: usize = 64;

/// The caller's id when it is 1 to 64 letters, digits, `-`, `_`, `.` or `:` (anything
/// else could forge log lines or bloat them), else `None`.
fn accepted(value: &HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?;
    let fine = !text.is_empty()
        && text.len() <= MAX_LEN
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    fine.then(|| text.to_owned())
}

/// The layer: names the request, runs it in a span with its id, and finishes error
/// responses (the id in the body, the detail in the log).
///
/// With metrics on (`metrics_on`, the state), it also counts and times the request
/// (`crate::metrics::Timing`), since it sees every request, its route and its status.
pub(crate) async fn layer(
    axum::extract::State(metrics_on): axum::extract::State<bool>,
    request: Request,
    next: Next,
) -> Response {
    let timing = metrics_on.then(|| crate::metrics::Timing::start(request.method()));
    let id = request
        .headers()
        .get(&HEADER)
        .and_then(accepted)
        .unwrap_or_else(zeroscale_core::domain::new_id);
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    // `otel.*` and the `http.*` names are OpenTelemetry's, for traces; the log line
    // shows them too.
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        http.request.method = %method,
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
    );
    crate::telemetry::continue_request_trace(request.headers(), &span);
    let mut response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    span.record("http.response.status_code", status);
    if let Some(timing) = timing {
        timing.finish(&route, status);
    }
    if let Some(report) = response.extensions_mut().remove::<ErrorReport>() {
        let status = response.status().as_u16();
        if let Some(detail) = &report.detail {
            match &report.reference {
                Some(reference) => tracing::error!(
                    request_id = %id, status, reference, error = %detail, "request failed"
                ),
                None => tracing::warn!(request_id = %id, status, error = %detail, "request failed"),
            }
        }
        let bytes = if crate::api::openai::serves(&route) {
            serde_json::to_vec(&crate::api::openai::error_body(status, &report))
        } else {
            serde_json::to_vec(&ErrorBody {
                error: ErrorDetail {
                    code: report.code.to_owned(),
                    message: report.message,
                    request_id: Some(id.clone()),
                },
            })
        };
        if let Ok(bytes) = bytes {
            response.headers_mut().remove(header::CONTENT_LENGTH);
            *response.body_mut() = Body::from(bytes);
        }
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HEADER, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_ids_are_taken_from_callers() {
        let ok = |s: &str| accepted(&HeaderValue::from_str(s).unwrap());
        assert_eq!(ok("abc-123_x.y:z").as_deref(), Some("abc-123_x.y:z"));
        assert_eq!(ok(""), None);
        assert_eq!(ok("has space"), None);
        assert_eq!(ok("line\tbreak"), None);
        assert_eq!(ok(&"a".repeat(64)).map(|s| s.len()), Some(64));
        assert_eq!(ok(&"a".repeat(65)), None);
        assert_eq!(ok("{\"json\":1}"), None);
    }
}

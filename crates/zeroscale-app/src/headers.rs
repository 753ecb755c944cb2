//! The headers every answer carries (tower-http layers): the usual ones for a JSON API
//! (`nosniff`, no framing, no referrer, HSTS when `server.behind_tls`), and CORS for the
//! API when `server.cors` allows other origins.
//!
//! Downloads of users' files set their own stricter `Content-Security-Policy` and a
//! `Content-Disposition` (see `zeroscale_core::download`); these layers only add what an
//! answer does not have yet.

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use zeroscale_core::config::{CorsConfig, ServerConfig};

/// The CSP of JSON answers: nothing may load, nothing may frame them.
const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'";
/// One year, subdomains too.
const HSTS: &str = "max-age=31536000; includeSubDomains";

/// `app` with the security headers and, when configured, CORS.
pub(crate) fn secure(app: Router, server: &ServerConfig) -> Router {
    let mut app = app;
    if let Some(cors) = cors_layer(&server.cors) {
        app = app.layer(cors).layer(axum::middleware::from_fn(cors_scope));
    }
    let set = |name: HeaderName, value: &'static str| {
        SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value))
    };
    app = app
        .layer(set(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(set(header::X_FRAME_OPTIONS, "DENY"))
        .layer(set(header::CONTENT_SECURITY_POLICY, API_CSP))
        .layer(set(header::REFERRER_POLICY, "no-referrer"));
    if server.behind_tls {
        app = app.layer(set(header::STRICT_TRANSPORT_SECURITY, HSTS));
    }
    app
}

/// The tower-http CORS layer for `cors`, or none when no origin is allowed. The config
/// was validated at load (`*` never with credentials; origins well formed); a method or
/// header name that does not parse is skipped with a warning.
fn cors_layer(cors: &CorsConfig) -> Option<CorsLayer> {
    if cors.allowed_origins.is_empty() {
        return None;
    }
    let origins = if cors.allowed_origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            cors.allowed_origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o.trim_end_matches('/')).ok()),
        )
    };
    let methods: Vec<Method> = cors
        .allowed_methods
        .iter()
        .filter_map(|m| {
            let parsed = Method::from_bytes(m.to_ascii_uppercase().as_bytes()).ok();
            if parsed.is_none() {
                tracing::warn!(method = %m, "server.cors.allowed_methods: not a method; skipped");
            }
            parsed
        })
        .collect();
    let headers: Vec<HeaderName> = cors
        .allowed_headers
        .iter()
        .filter_map(|h| {
            let parsed = HeaderName::from_bytes(h.to_ascii_lowercase().as_bytes()).ok();
            if parsed.is_none() {
                tracing::warn!(header = %h, "server.cors.allowed_headers: not a header name; skipped");
            }
            parsed
        })
        .collect();
    let exposed = [
        header::CONTENT_DISPOSITION,
        header::CONTENT_RANGE,
        header::ETAG,
        header::RETRY_AFTER,
        HeaderName::from_static("x-zeroscale-provider"),
        crate::request_id::HEADER,
    ];
    Some(
        CorsLayer::new()
            .allow_origin(origins)
            .allow_methods(methods)
            .allow_headers(headers)
            .expose_headers(exposed)
            .max_age(std::time::Duration::from_secs(cors.max_age_secs))
            .allow_credentials(cors.allow_credentials),
    )
}

/// Whether CORS applies to `path`: the API, except its admin routes (an admin UI lives on
/// the server's own origin and never needs other origins).
fn in_cors_scope(path: &str) -> bool {
    path.starts_with("/v1/") && !path.starts_with("/v1/admin")
}

fn is_preflight(request: &Request) -> bool {
    request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// Around the CORS layer: outside its scope, or for an origin it does not allow, the
/// answer loses every CORS header (a refused preflight is 403); a preflight it allowed
/// gets 204 No Content.
async fn cors_scope(request: Request, next: Next) -> Response {
    let in_scope = in_cors_scope(request.uri().path());
    let preflight = is_preflight(&request);
    let mut response = next.run(request).await;
    let allowed = in_scope
        && response
            .headers()
            .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN);
    if allowed {
        if preflight && response.status() == StatusCode::OK {
            *response.status_mut() = StatusCode::NO_CONTENT;
        }
        return response;
    }
    let names: Vec<HeaderName> = response
        .headers()
        .keys()
        .filter(|name| name.as_str().starts_with("access-control-"))
        .cloned()
        .collect();
    for name in names {
        response.headers_mut().remove(name);
    }
    if preflight {
        *response.status_mut() = StatusCode::FORBIDDEN;
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope() {
        assert!(in_cors_scope("/v1/me"));
        assert!(in_cors_scope("/v1/files/abc"));
        assert!(!in_cors_scope("/v1/admin/users"));
        assert!(!in_cors_scope("/files/token"));
        assert!(!in_cors_scope("/healthz"));
    }
}

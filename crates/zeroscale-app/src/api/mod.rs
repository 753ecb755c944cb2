//! The HTTP API under `/v1`: every handler is annotated for OpenAPI and registered through
//! `utoipa_axum::routes!`, so `/openapi.json` lists exactly the routes that are served.
//!
//! - [`error`]: the error body and JSON/query extractors that report bad fields as 400.
//! - [`auth`]: who is calling (session token or API key), register/login/logout/me.
//! - [`keys`]: API keys (admin).
//! - [`embeddings`]: the OpenAI-compatible `POST /v1/embeddings`.

pub(crate) mod auth;
pub(crate) mod embeddings;
pub(crate) mod error;
pub(crate) mod keys;

use axum::Router;
use utoipa::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// What every API handler shares: the connected services.
pub(crate) type ApiState = crate::wiring::Services;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "zeroscale",
        description = "The zeroscale HTTP API. Authenticate with `Authorization: Bearer <session token or API key>` or `X-API-Key: <API key>`. Errors are `{\"error\": {\"code\", \"message\"}}`."
    ),
    modifiers(&Security),
    components(schemas(error::ErrorBody, error::ErrorDetail))
)]
struct ApiDoc;

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("a session token (`zss_…`) or an API key (`zs_…`)"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
    }
}

/// The API routes and their OpenAPI document.
pub(crate) fn routes(state: ApiState) -> (Router, utoipa::openapi::OpenApi) {
    let body_limit = usize::try_from(state.config.server.max_body_bytes).unwrap_or(usize::MAX);
    let (router, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(auth::register))
        .routes(routes!(auth::login))
        .routes(routes!(auth::logout))
        .routes(routes!(auth::me))
        .routes(routes!(keys::create_key, keys::list_keys))
        .routes(routes!(keys::revoke_key))
        .routes(routes!(embeddings::create_embeddings))
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .with_state(state)
        .split_for_parts();
    (router, openapi)
}

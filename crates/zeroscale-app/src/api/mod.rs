//! The HTTP API under `/v1`: every handler is annotated for OpenAPI and registered through
//! `utoipa_axum::routes!`, so `/openapi.json` lists exactly the routes that are served.
//!
//! - [`error`]: the error body and JSON/query extractors that report bad fields as 400.
//! - [`auth`]: who is calling (session token or API key), register/login/logout/me.
//! - [`keys`]: API keys (admin).
//! - [`prompts`], [`chat`]: system prompts and chat history.
//! - [`files`]: uploads, downloads with ranges, signed URLs.
//! - [`jobs`]: background jobs.
//! - [`openai`]: the OpenAI-compatible routes: models, embeddings, image generations.
//! - [`documents`]: collections of texts and semantic search.
//! - [`images`]: image generation with credits.
//! - [`admin`]: provider health, job stats and dead letters, users.

pub(crate) mod admin;
pub(crate) mod auth;
pub(crate) mod chat;
pub(crate) mod documents;
pub(crate) mod error;
pub(crate) mod files;
pub(crate) mod images;
pub(crate) mod jobs;
pub(crate) mod keys;
pub(crate) mod openai;
pub(crate) mod prompts;
pub(crate) mod unacknowledged;

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
        description = "The zeroscale HTTP API. Authenticate with `Authorization: Bearer <session token or API key>` or `X-API-Key: <API key>`. Errors are `{\"error\": {\"code\", \"message\"}}`, but on the OpenAI-compatible routes (tag `openai`) they are OpenAI's `{\"error\": {\"message\", \"type\", \"param\", \"code\"}}`."
    ),
    modifiers(&Security),
    components(schemas(error::ErrorBody, error::ErrorDetail, openai::OpenAiErrorBody, openai::OpenAiError))
)]
struct ApiDoc;

struct Security;

/// Adds the responses every operation can give to every operation that does not list
/// them (so handlers list only their own): 400 (malformed JSON, a wrong type, an unknown field or a bad value: the message
/// names it), 401 where credentials are needed, 500 (with a log reference) and 503 (an
/// engine is down, or `server.request_timeout_secs` passed).
pub(crate) fn add_common_responses(openapi: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{RefOr, ResponseBuilder, content::ContentBuilder};
    for (path, item) in openapi.paths.paths.iter_mut() {
        let schema = if openai::serves(path) {
            "OpenAiErrorBody"
        } else {
            "ErrorBody"
        };
        let error = || {
            ContentBuilder::new()
                .schema(Some(utoipa::openapi::Ref::from_schema_name(schema)))
                .build()
        };
        for operation in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.head,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
            let responses = &mut operation.responses.responses;
            let mut add = |code: &str, description: &str| {
                responses.entry(code.to_owned()).or_insert_with(|| {
                    RefOr::T(
                        ResponseBuilder::new()
                            .description(description)
                            .content("application/json", error())
                            .build(),
                    )
                });
            };
            add(
                "400",
                "invalid input: malformed JSON, a wrong type, an unknown field or a bad value (the message names it)",
            );
            if secured {
                add("401", "not authenticated");
                add(
                    "429",
                    "the API key's or the user's requests per minute (`limits.*`) are spent; \
                     `Retry-After` says when to try again, `X-RateLimit-*` the standing",
                );
            }
            add(
                "500",
                "internal error (the message carries a reference to the server log)",
            );
            add(
                "503",
                "an engine is unreachable, or the request took longer than `server.request_timeout_secs`",
            );
        }
    }
}

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
    let extensions = std::sync::Arc::clone(&state.extensions);
    let tracked = state.clone();
    let mut api = if extensions.builtin_api {
        builtin()
    } else {
        OpenApiRouter::with_openapi(ApiDoc::openapi())
    };
    // The app's own routes, under the same limits as ours.
    for routes in extensions.routes() {
        api = api.merge(routes);
    }
    let (router, openapi) = api
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(
            std::time::Duration::from_secs(state.config.server.request_timeout_secs.max(1)),
            timeout,
        ))
        // Uploads stream to storage under their own limit (`server.max_upload_bytes`).
        .merge(if extensions.builtin_api {
            file_routes()
        } else {
            OpenApiRouter::new()
        })
        .with_state(state)
        .split_for_parts();
    let router = if extensions.builtin_api {
        router.merge(openai::unserved_routes())
    } else {
        router
    };
    // `X-RateLimit-*` on every response a rate limit counted.
    let router = router.layer(axum::middleware::from_fn(crate::limits::headers));
    // Reads after a user's write go to the primary (with read replicas only).
    let router = router.layer(axum::middleware::from_fn_with_state(
        tracked,
        crate::read_your_writes::track,
    ));
    let mut openapi = openapi;
    add_common_responses(&mut openapi);
    (router, openapi)
}

/// zeroscale's own `/v1` routes but the file transfers.
fn builtin() -> OpenApiRouter<ApiState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(auth::register))
        .routes(routes!(auth::login))
        .routes(routes!(auth::logout))
        .routes(routes!(auth::me))
        .routes(routes!(keys::create_key, keys::list_keys))
        .routes(routes!(keys::revoke_key, keys::update_key))
        .routes(routes!(prompts::create_prompt, prompts::list_prompts))
        .routes(routes!(
            prompts::get_prompt,
            prompts::update_prompt,
            prompts::delete_prompt
        ))
        .routes(routes!(chat::append_message, chat::list_messages))
        .routes(routes!(chat::delete_session))
        .routes(routes!(jobs::enqueue_job, jobs::list_jobs))
        .routes(routes!(jobs::get_job))
        .routes(routes!(jobs::cancel_job))
        .routes(routes!(openai::models::list_models))
        .routes(routes!(openai::models::retrieve_model))
        .routes(routes!(openai::embeddings::create_embeddings))
        .routes(routes!(openai::images::create_image_generation))
        .routes(routes!(documents::add_documents))
        .routes(routes!(documents::search_documents))
        .routes(routes!(images::create_image))
        .routes(routes!(images::get_image))
        .routes(routes!(admin::list_providers))
        .routes(routes!(admin::check_provider))
        .routes(routes!(admin::job_stats))
        .routes(routes!(admin::dead_jobs))
        .routes(routes!(admin::list_users))
        .routes(routes!(admin::update_user))
}

/// The file transfers, which stream under their own limit (`server.max_upload_bytes`)
/// and are not timed.
fn file_routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(files::upload_file, files::list_files))
        .routes(routes!(
            files::download_file,
            files::head_file,
            files::delete_file
        ))
        .routes(routes!(files::signed_url))
        .routes(routes!(files::upload_url))
        .layer(axum::extract::DefaultBodyLimit::disable())
}

/// Answers 503 when a request takes longer than `server.request_timeout_secs` (file
/// transfers are not timed: they take as long as the network needs).
async fn timeout(
    axum::extract::State(limit): axum::extract::State<std::time::Duration>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => error::ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!(
                "the request took longer than {}s (`server.request_timeout_secs`)",
                limit.as_secs()
            ),
        )
        .into_response(),
    }
}

/// The page size a request asked for: `default` when it gave none, 400 outside
/// `1..=max` (the cap is documented on every paged route).
pub(crate) fn page_limit(limit: Option<u64>, default: u64, max: u64) -> error::ApiResult<u64> {
    match limit {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(error::ApiError::bad_request(format!(
            "limit: {n} is outside 1 to {max}"
        ))),
    }
}

//! `POST /v1/images/generations`: OpenAI's image request and response over the same
//! path as `POST /v1/images` (credits reserved, a job through the router with failover
//! and the image cache, images stored as the caller's files), but synchronous, as
//! OpenAI's is: the request waits for the job, up to just under
//! `server.request_timeout_secs`.

use std::time::Duration;

use axum::extract::State;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use zeroscale_core::StorageExt as _;
use zeroscale_core::domain::{Generation, GenerationStatus};
use zeroscale_core::storage::SignedMethod;
use zeroscale_db::domain::NewGeneration;

use super::super::ApiState;
use super::super::auth::Caller;
use super::super::error::{ApiError, ApiResult, Json};
use super::super::files::{file_key, sign};
use super::OpenAiErrorBody;
use crate::tasks::ImageParams;

/// Most images in one request.
const MAX_IMAGES: u32 = 8;
/// Largest side, in pixels, that the providers are asked for.
const MAX_SIDE: u32 = 2048;
/// The size when a request names none or says `auto` (OpenAI's default too).
const DEFAULT_SIZE: (u32, u32) = (1024, 1024);
/// How long signed image URLs stay valid.
const URL_SECS: u64 = 3600;

/// How the images come back.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ResponseFormat {
    /// A signed URL of the stored image, valid for an hour.
    #[default]
    Url,
    /// The image's bytes in base64.
    B64Json,
}

/// OpenAI's image generation request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ImageGenerationRequest {
    /// What to draw.
    #[schema(pattern = r"\S")]
    prompt: String,
    /// An image model id; default `models.default_image_model`.
    #[serde(default)]
    model: Option<String>,
    /// Images, 1 to 8. Default 1.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 8)]
    n: Option<u32>,
    /// `WIDTHxHEIGHT` in pixels (each 1 to 2048, and one the model's providers make:
    /// `models.registry.<id>.routes.<provider>.sizes`), or `auto` (the default: 1024x1024,
    /// or the first size the model's provider lists when it does not make that).
    #[serde(default)]
    #[schema(example = "1024x1024")]
    size: Option<String>,
    /// `url` (default) or `b64_json`.
    #[serde(default)]
    response_format: Option<ResponseFormat>,
    /// An end-user id, accepted for compatibility and logged.
    #[serde(default)]
    user: Option<String>,
}

/// One image.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ImageData {
    /// A signed URL of the image (with `response_format = url`).
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    /// The image in base64 (with `response_format = b64_json`).
    #[serde(skip_serializing_if = "Option::is_none")]
    b64_json: Option<String>,
    /// The prompt the provider actually drew, when it rewrote the request's.
    #[serde(skip_serializing_if = "Option::is_none")]
    revised_prompt: Option<String>,
}

/// OpenAI's image generation response.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ImagesResponse {
    /// Unix seconds.
    created: i64,
    data: Vec<ImageData>,
}

/// `size` as pixels (`None` for the model's default), or why it cannot be made.
fn parse_size(size: Option<&str>) -> ApiResult<Option<(u32, u32)>> {
    let bad = |why: String| ApiError::bad_request(why).with_param("size");
    let Some(size) = size.filter(|s| *s != "auto") else {
        return Ok(None);
    };
    let parsed = size
        .split_once('x')
        .and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)));
    match parsed {
        Some((w, h)) if (1..=MAX_SIDE).contains(&w) && (1..=MAX_SIDE).contains(&h) => {
            Ok(Some((w, h)))
        }
        Some(_) => Err(bad(format!(
            "size {size}: the image providers make sides of 1 to {MAX_SIDE} pixels"
        ))),
        None => Err(bad(format!(
            "size {size:?}: expected `WIDTHxHEIGHT` in pixels (e.g. `1024x1024`) or `auto`"
        ))),
    }
}

/// `error` with `param` = `model` when the model is unknown or not an image model, else
/// `param` = `otherwise`.
fn with_model_param(error: zeroscale_core::Error, otherwise: &str) -> ApiError {
    let about_model = matches!(error, zeroscale_core::Error::NotFound { .. })
        || error.to_string().contains("is not an");
    ApiError::from(error).with_param(if about_model { "model" } else { otherwise })
}

/// Generates images and answers when they are stored: signed URLs or base64, as asked.
#[utoipa::path(
    post, path = "/v1/images/generations", tag = "openai",
    security(("bearer" = []), ("api_key" = [])),
    request_body = ImageGenerationRequest,
    responses(
        (status = 200, description = "the images", body = ImagesResponse),
        (status = 400, description = "invalid fields, or a size the providers cannot make", body = OpenAiErrorBody),
        (status = 404, description = "unknown image model id (`model_not_found`)", body = OpenAiErrorBody),
        (status = 429, description = "not enough credits (`insufficient_quota`, with `x-should-retry: false`), or a rate limit (`Retry-After`)", body = OpenAiErrorBody),
        (status = 503, description = "every provider failed (the credits were refunded), or the images were not ready before the request timeout: the message names the generation, `GET /v1/images/{id}` has it when done, and it is charged only if it succeeds", body = OpenAiErrorBody),
    )
)]
pub(crate) async fn create_image_generation(
    State(state): State<ApiState>,
    caller: Caller,
    Json(body): Json<ImageGenerationRequest>,
) -> ApiResult<Json<ImagesResponse>> {
    if body.prompt.trim().is_empty() {
        return Err(ApiError::bad_request("prompt must not be empty").with_param("prompt"));
    }
    let count = body.n.unwrap_or(1);
    if !(1..=MAX_IMAGES).contains(&count) {
        return Err(ApiError::bad_request(format!("n must be 1 to {MAX_IMAGES}")).with_param("n"));
    }
    let size = parse_size(body.size.as_deref())?;
    let model = body
        .model
        .unwrap_or_else(|| state.config.models.default_image_model.clone());
    let (width, height) = match size {
        Some((w, h)) => {
            state
                .models
                .check_image_size(&model, w, h)
                .map_err(|e| with_model_param(e, "size"))?;
            (w, h)
        }
        None => state
            .models
            .default_image_size(&model, DEFAULT_SIZE)
            .map_err(|e| with_model_param(e, "model"))?,
    };
    let estimate = state
        .models
        .image_cost_estimate(&model, count)
        .map_err(|e| with_model_param(e, "model"))?;
    let params = ImageParams {
        negative_prompt: None,
        width,
        height,
        count,
        seed: None,
    };
    let new = NewGeneration {
        user_id: caller.user.id.clone(),
        model,
        prompt: body.prompt,
        params: serde_json::to_value(&params).expect("params serialize"),
        cost: estimate.ceil().max(0.0) as i64,
    };
    let (generation, _job) = super::super::images::start(&state, &caller.user.id, new)
        .await
        .map_err(|e| {
            if e.status() == axum::http::StatusCode::CONFLICT {
                // Credits spent: OpenAI's "quota" error, which clients must not retry.
                ApiError::new(
                    axum::http::StatusCode::TOO_MANY_REQUESTS,
                    "insufficient_quota",
                    format!(
                        "{}; an admin can add credits (PATCH /v1/admin/users/{{id}})",
                        e.message()
                    ),
                )
                .with_openai_code("insufficient_quota")
                .no_retry()
            } else {
                e
            }
        })?;
    tracing::debug!(user = %caller.user.id, end_user = ?body.user, generation = %generation.id, "image generation (OpenAI route)");
    let limit = Duration::from_secs(state.config.server.request_timeout_secs.max(1));
    let done = wait(
        &state,
        &generation.id,
        limit - (limit / 10).min(Duration::from_secs(1)),
    )
    .await?;
    match done.status {
        GenerationStatus::Succeeded => Ok(Json(ImagesResponse {
            created: done.created_at.timestamp(),
            data: images(&state, &done, body.response_format.unwrap_or_default()).await?,
        })),
        GenerationStatus::Failed => Err(ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!(
                "the images could not be generated ({}); every credit was refunded",
                done.error.as_deref().unwrap_or("no reason recorded")
            ),
        )),
        GenerationStatus::Pending => Err(ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!(
                "generation {id} was not done within {secs}s (`server.request_timeout_secs`); \
                 it goes on: GET /v1/images/{id} gives its images when it is done. It is \
                 charged only if it succeeds.",
                id = done.id,
                secs = limit.as_secs()
            ),
        )
        .no_retry()),
    }
}

/// The generation once it is no longer pending, or as it is at `deadline`.
async fn wait(state: &ApiState, id: &str, within: Duration) -> ApiResult<Generation> {
    let deadline = tokio::time::Instant::now() + within;
    let mut pause = Duration::from_millis(20);
    loop {
        let generation = state.domain.credits().get(id).await?;
        let now = tokio::time::Instant::now();
        if generation.status != GenerationStatus::Pending || now >= deadline {
            return Ok(generation);
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 3 / 2).min(Duration::from_millis(250));
    }
}

/// The succeeded generation's images, as signed URLs or base64.
async fn images(
    state: &ApiState,
    generation: &Generation,
    format: ResponseFormat,
) -> ApiResult<Vec<ImageData>> {
    let result = generation.result.as_ref();
    let files = result
        .and_then(|r| r.get("files"))
        .and_then(|f| f.as_array())
        .map(Vec::as_slice)
        .unwrap_or_default();
    let revised = result
        .and_then(|r| r.pointer("/metadata/revised_prompts"))
        .and_then(|p| p.as_array());
    let mut data = Vec::with_capacity(files.len());
    for (i, file) in files.iter().enumerate() {
        let Some(id) = file.get("file_id").and_then(|v| v.as_str()) else {
            continue;
        };
        let key = file_key(&generation.user_id, id)?;
        let revised_prompt = revised
            .and_then(|r| r.get(i))
            .and_then(|p| p.as_str())
            .map(str::to_owned);
        data.push(match format {
            ResponseFormat::Url => ImageData {
                url: Some(
                    sign(
                        state.storage.as_ref(),
                        &key,
                        id,
                        SignedMethod::Get,
                        Some(URL_SECS),
                    )
                    .await?
                    .url()
                    .to_owned(),
                ),
                b64_json: None,
                revised_prompt,
            },
            ResponseFormat::B64Json => ImageData {
                url: None,
                b64_json: Some(
                    base64::engine::general_purpose::STANDARD
                        .encode(state.storage.get_bytes(&key).await?),
                ),
                revised_prompt,
            },
        });
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size(None).ok(), Some(None));
        assert_eq!(parse_size(Some("auto")).ok(), Some(None));
        assert_eq!(parse_size(Some("256x512")).ok(), Some(Some((256, 512))));
        for bad in ["4096x4096", "0x10", "big", "10x", "x10", "1024X1024"] {
            let error = parse_size(Some(bad)).expect_err(bad);
            assert_eq!(error.status(), axum::http::StatusCode::BAD_REQUEST);
        }
    }
}

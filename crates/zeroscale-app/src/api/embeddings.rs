//! `POST /v1/embeddings`, compatible with OpenAI's embeddings API: any OpenAI client (or
//! another zeroscale instance's `openai` provider) can use this server's models.

use axum::extract::State;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use super::ApiState;
use super::auth::Caller;
use super::error::{ApiError, ApiResult, Json};

/// Most texts in one request (OpenAI's limit too).
pub(crate) const MAX_INPUTS: usize = 2048;

/// One text or a list of texts.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum EmbeddingInput {
    /// One text.
    One(String),
    /// Several texts, embedded in order.
    Many(Vec<String>),
}

impl<'de> Deserialize<'de> for EmbeddingInput {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        match serde_json::Value::deserialize(deserializer)? {
            serde_json::Value::String(text) => Ok(EmbeddingInput::One(text)),
            serde_json::Value::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, item)| match item {
                    serde_json::Value::String(text) => Ok(text),
                    serde_json::Value::Number(_) | serde_json::Value::Array(_) => {
                        Err(D::Error::custom(format!(
                            "input[{i}]: token arrays are not accepted; send the text"
                        )))
                    }
                    other => Err(D::Error::custom(format!(
                        "input[{i}]: expected a string, got {other}"
                    ))),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(EmbeddingInput::Many),
            other => Err(D::Error::custom(format!(
                "input: expected a string or a list of strings, got {other}"
            ))),
        }
    }
}

/// How vectors are encoded in the response.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum EncodingFormat {
    /// JSON numbers.
    #[default]
    Float,
    /// Base64 of little-endian 32-bit floats.
    Base64,
}

/// An OpenAI-compatible embeddings request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EmbeddingsRequest {
    /// The text(s) to embed.
    input: EmbeddingInput,
    /// A model id from the registry; default `models.default_embedding_model`.
    #[serde(default)]
    model: Option<String>,
    /// `float` (default) or `base64`.
    #[serde(default)]
    encoding_format: EncodingFormat,
    /// Accepted when it equals the model's dimensions; vectors are not shortened.
    #[serde(default)]
    dimensions: Option<usize>,
    /// An end-user id, accepted for compatibility and logged.
    #[serde(default)]
    user: Option<String>,
}

/// One vector.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EmbeddingItem {
    /// Always `embedding`.
    object: &'static str,
    /// Position in the request's input.
    index: usize,
    /// Numbers, or base64 with `encoding_format = base64`.
    embedding: serde_json::Value,
}

/// Token counts.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EmbeddingUsage {
    prompt_tokens: u64,
    total_tokens: u64,
}

/// An OpenAI-compatible embeddings response.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EmbeddingsResponse {
    /// Always `list`.
    object: &'static str,
    data: Vec<EmbeddingItem>,
    /// The model id used.
    model: String,
    usage: EmbeddingUsage,
}

/// Embeds text with a registry model (the router picks the provider, with failover and
/// the embedding cache). The response says which provider served in the
/// `X-Zeroscale-Provider` header.
#[utoipa::path(
    post, path = "/v1/embeddings", tag = "models",
    security(("bearer" = []), ("api_key" = [])),
    request_body = EmbeddingsRequest,
    responses(
        (status = 200, description = "one vector per input, in order", body = EmbeddingsResponse),
        (status = 400, description = "bad input", body = super::error::ErrorBody),
        (status = 404, description = "unknown model id", body = super::error::ErrorBody),
        (status = 429, description = "a rate limit or the daily embedding token quota (`limits.*`) is spent; see `Retry-After`", body = super::error::ErrorBody),
        (status = 503, description = "no provider could serve", body = super::error::ErrorBody),
    )
)]
pub(crate) async fn create_embeddings(
    State(state): State<ApiState>,
    caller: Caller,
    Json(body): Json<EmbeddingsRequest>,
) -> ApiResult<Response> {
    let inputs = match body.input {
        EmbeddingInput::One(text) => vec![text],
        EmbeddingInput::Many(texts) => texts,
    };
    if inputs.is_empty() {
        return Err(ApiError::bad_request("input: at least one text is needed"));
    }
    if inputs.len() > MAX_INPUTS {
        return Err(ApiError::bad_request(format!(
            "input: {} texts is more than the {MAX_INPUTS} allowed in one request",
            inputs.len()
        )));
    }
    let model = body
        .model
        .unwrap_or_else(|| state.config.models.default_embedding_model.clone());
    crate::limits::check_embedding_quota(&state, &caller.user.id).await?;
    let routed = state.models.embed(&model, inputs).await?;
    let response = routed.value;
    crate::limits::spend_embedding_tokens(&state, &caller.user.id, response.usage.total_tokens)
        .await;
    if let Some(wanted) = body.dimensions
        && wanted != response.dimensions
    {
        return Err(ApiError::bad_request(format!(
            "dimensions: model `{model}` gives {} dimensions and cannot shorten them; omit \
             `dimensions` or send {}",
            response.dimensions, response.dimensions
        )));
    }
    tracing::debug!(user = %caller.user.id, end_user = ?body.user, model, provider = %routed.provider, "embeddings");
    let data = response
        .vectors
        .into_iter()
        .enumerate()
        .map(|(index, vector)| EmbeddingItem {
            object: "embedding",
            index,
            embedding: encode(&vector, body.encoding_format),
        })
        .collect();
    let mut http = Json(EmbeddingsResponse {
        object: "list",
        data,
        model,
        usage: EmbeddingUsage {
            prompt_tokens: response.usage.prompt_tokens,
            total_tokens: response.usage.total_tokens,
        },
    })
    .into_response();
    if let Ok(value) = HeaderValue::from_str(&routed.provider) {
        http.headers_mut().insert("x-zeroscale-provider", value);
    }
    Ok(http)
}

fn encode(vector: &[f32], format: EncodingFormat) -> serde_json::Value {
    match format {
        EncodingFormat::Float => serde_json::Value::from(vector.to_vec()),
        EncodingFormat::Base64 => {
            let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
            serde_json::Value::from(base64::engine::general_purpose::STANDARD.encode(bytes))
        }
    }
}

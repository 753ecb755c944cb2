//! `POST /v1/embeddings`, compatible with OpenAI's embeddings API: any OpenAI client (or
//! another zeroscale instance's `openai` provider) can use this server's models. Input
//! comes in every form OpenAI documents, text or `cl100k_base` token ids.

use axum::extract::State;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use super::super::ApiState;
use super::super::auth::Caller;
use super::super::error::{ApiError, ApiResult, Json};
use super::OpenAiErrorBody;

/// Most texts in one request (OpenAI's limit too).
pub(crate) const MAX_INPUTS: usize = 2048;

/// Most token ids in one input (OpenAI's limit for its embedding models).
pub(crate) const MAX_TOKENS_PER_INPUT: usize = 8192;

/// What to embed: every form OpenAI's API takes. Token ids are in OpenAI's `cl100k_base`
/// vocabulary (what LangChain and other clients that count tokens with `tiktoken` send);
/// they are decoded to text and embedded with the requested model's own tokenizer.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum EmbeddingInput {
    /// One text.
    One(String),
    /// Several texts, embedded in order.
    Many(Vec<String>),
    /// One text as `cl100k_base` token ids.
    Tokens(Vec<u32>),
    /// Several texts as `cl100k_base` token ids.
    ManyTokens(Vec<Vec<u32>>),
}

/// A JSON value as a token id, or why not.
fn token(value: &serde_json::Value, at: &str) -> Result<u32, String> {
    value
        .as_u64()
        .and_then(|id| u32::try_from(id).ok())
        .ok_or_else(|| format!("{at}: expected a token id (a whole number from 0), got {value}"))
}

/// A list of JSON values as token ids.
fn tokens(items: &[serde_json::Value], at: &str) -> Result<Vec<u32>, String> {
    if items.len() > MAX_TOKENS_PER_INPUT {
        return Err(format!(
            "{at}: {} token ids is more than the {MAX_TOKENS_PER_INPUT} allowed in one input",
            items.len()
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(j, item)| token(item, &format!("{at}[{j}]")))
        .collect()
}

impl<'de> Deserialize<'de> for EmbeddingInput {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        use serde_json::Value;
        let items = match Value::deserialize(deserializer)? {
            Value::String(text) => return Ok(EmbeddingInput::One(text)),
            Value::Array(items) => items,
            other => {
                return Err(D::Error::custom(format!(
                    "input: expected a string, a list of strings, a list of token ids or a \
                     list of lists of token ids, got {other}"
                )));
            }
        };
        // The first item decides the form; every other item must match it.
        match items.first() {
            None | Some(Value::String(_)) => items
                .into_iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Value::String(text) => Ok(text),
                    other => Err(D::Error::custom(format!(
                        "input[{i}]: expected a string like input[0], got {other}"
                    ))),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(EmbeddingInput::Many),
            Some(Value::Number(_)) => tokens(&items, "input")
                .map(EmbeddingInput::Tokens)
                .map_err(D::Error::custom),
            Some(Value::Array(_)) => items
                .iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Value::Array(ids) => tokens(ids, &format!("input[{i}]")),
                    other => Err(format!(
                        "input[{i}]: expected a list of token ids like input[0], got {other}"
                    )),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(EmbeddingInput::ManyTokens)
                .map_err(D::Error::custom),
            Some(other) => Err(D::Error::custom(format!(
                "input[0]: expected a string, a token id or a list of token ids, got {other}"
            ))),
        }
    }
}

/// The text behind `cl100k_base` token ids `ids`, the `at`-th input. Bytes that do not
/// form UTF-8 on their own (a character split across inputs) become U+FFFD.
fn decode_tokens(ids: &[u32], at: &str) -> ApiResult<String> {
    if ids.is_empty() {
        return Err(
            ApiError::bad_request(format!("{at}: an input needs at least one token id"))
                .with_param("input"),
        );
    }
    let bytes = tiktoken_rs::cl100k_base_singleton()
        .decode_bytes(ids)
        .map_err(|e| {
            ApiError::bad_request(format!(
                "{at}: token id {} is not in the cl100k_base vocabulary",
                e.token
            ))
            .with_param("input")
        })?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The request's input as texts, in order.
fn texts(input: EmbeddingInput) -> ApiResult<Vec<String>> {
    Ok(match input {
        EmbeddingInput::One(text) => vec![text],
        EmbeddingInput::Many(texts) => texts,
        EmbeddingInput::Tokens(ids) => vec![decode_tokens(&ids, "input")?],
        EmbeddingInput::ManyTokens(lists) => lists
            .iter()
            .enumerate()
            .map(|(i, ids)| decode_tokens(ids, &format!("input[{i}]")))
            .collect::<ApiResult<Vec<_>>>()?,
    })
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
    /// Shorter vectors, where the model makes them (an `openai` provider's
    /// `text-embedding-3` models); other models take only their own width.
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
    post, path = "/v1/embeddings", tag = "openai",
    security(("bearer" = []), ("api_key" = [])),
    request_body = EmbeddingsRequest,
    responses(
        (status = 200, description = "one vector per input, in order", body = EmbeddingsResponse),
        (status = 400, description = "bad input", body = OpenAiErrorBody),
        (status = 404, description = "unknown model id", body = OpenAiErrorBody),
        (status = 429, description = "a rate limit or the daily embedding token quota (`limits.*`) is spent; see `Retry-After`", body = OpenAiErrorBody),
        (status = 503, description = "no provider could serve", body = OpenAiErrorBody),
    )
)]
pub(crate) async fn create_embeddings(
    State(state): State<ApiState>,
    caller: Caller,
    Json(body): Json<EmbeddingsRequest>,
) -> ApiResult<Response> {
    let input_count = match &body.input {
        EmbeddingInput::One(_) | EmbeddingInput::Tokens(_) => 1,
        EmbeddingInput::Many(texts) => texts.len(),
        EmbeddingInput::ManyTokens(lists) => lists.len(),
    };
    if input_count == 0 {
        return Err(ApiError::bad_request("input: at least one text is needed").with_param("input"));
    }
    if input_count > MAX_INPUTS {
        return Err(ApiError::bad_request(format!(
            "input: {input_count} texts is more than the {MAX_INPUTS} allowed in one request"
        ))
        .with_param("input"));
    }
    let inputs = texts(body.input)?;
    let model = body
        .model
        .unwrap_or_else(|| state.config.models.default_embedding_model.clone());
    crate::limits::check_embedding_quota(&state, &caller.user.id).await?;
    if body.dimensions == Some(0) {
        return Err(
            ApiError::bad_request("dimensions: must be at least 1").with_param("dimensions")
        );
    }
    let options = zeroscale_models::router::EmbedOptions {
        dimensions: body.dimensions,
    };
    let routed = state
        .models
        .embed_with(&model, inputs, &options)
        .await
        .map_err(|e| {
            let error = ApiError::from(e);
            if error.status() == axum::http::StatusCode::NOT_FOUND {
                error.with_param("model")
            } else if error.message().contains("dimensions:") {
                error.with_param("dimensions")
            } else {
                error
            }
        })?;
    let response = routed.value;
    // Inputs the cache answered are not charged to the quota.
    let charged = response.usage.total_tokens
        - response
            .usage
            .cached_tokens
            .min(response.usage.total_tokens);
    crate::limits::spend_embedding_tokens(&state, &caller.user.id, charged).await;
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

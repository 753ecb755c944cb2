//! OpenAI-compatible embeddings: `POST {base_url}/embeddings` with `{"model", "input"}`,
//! answered by `{"data": [{"index", "embedding"}], "usage": {"prompt_tokens",
//! "total_tokens"}}`.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use zeroscale_core::config::RemoteProviderConfig;
use zeroscale_core::models::{EmbeddingProvider, EmbeddingRequest, EmbeddingResponse, Usage};
use zeroscale_core::{Error, Result};

use super::ApiClient;

/// An OpenAI-compatible embeddings API.
#[derive(Debug, Clone)]
pub struct OpenAiEmbeddings(ApiClient);

#[derive(Serialize)]
struct Request<'a> {
    model: &'a str,
    input: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    dimensions: Option<usize>,
}

#[derive(Deserialize)]
struct Item {
    index: usize,
    embedding: Vec<f32>,
}

#[derive(Deserialize, Default)]
struct ApiUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    total_tokens: u64,
}

#[derive(Deserialize)]
struct Response {
    data: Vec<Item>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    usage: Option<ApiUsage>,
}

impl OpenAiEmbeddings {
    /// A client for the provider `name` configured by `config`.
    pub fn new(name: &str, config: &RemoteProviderConfig) -> Result<Self> {
        ApiClient::new(name, config).map(OpenAiEmbeddings)
    }
}

#[async_trait]
impl EmbeddingProvider for OpenAiEmbeddings {
    fn name(&self) -> &str {
        &self.0.name
    }

    async fn embed(&self, request: EmbeddingRequest) -> Result<EmbeddingResponse> {
        let api = &self.0;
        let answer = api
            .json(
                api.client.post(api.url("/embeddings")).json(&Request {
                    model: &request.model,
                    input: &request.inputs,
                    dimensions: request.dimensions,
                }),
                "Bearer",
            )
            .await?;
        let mut body: Response = serde_json::from_value(answer).map_err(|e| {
            Error::backend(
                api.name.clone(),
                std::io::Error::other(format!("unexpected answer: {e}")),
            )
        })?;
        if body.data.len() != request.inputs.len() {
            return Err(Error::backend(
                self.0.name.clone(),
                std::io::Error::other(format!(
                    "returned {} embeddings for {} inputs",
                    body.data.len(),
                    request.inputs.len()
                )),
            ));
        }
        body.data.sort_by_key(|item| item.index);
        let vectors: Vec<Vec<f32>> = body.data.into_iter().map(|item| item.embedding).collect();
        let dimensions = vectors.first().map_or(0, Vec::len);
        if vectors.iter().any(|v| v.len() != dimensions) {
            return Err(Error::backend(
                self.0.name.clone(),
                std::io::Error::other("returned vectors of different lengths"),
            ));
        }
        if let Some(wanted) = request.dimensions
            && wanted != dimensions
        {
            return Err(Error::invalid_input(format!(
                "dimensions: `{}` at provider `{}` gave {dimensions} dimensions, not {wanted}: \
                 the model cannot shorten its vectors; omit `dimensions`",
                request.model, self.0.name
            )));
        }
        let usage = body.usage.unwrap_or_default();
        Ok(EmbeddingResponse {
            model: body.model.unwrap_or(request.model),
            vectors,
            dimensions,
            usage: Usage {
                prompt_tokens: usage.prompt_tokens,
                total_tokens: usage.total_tokens,
                cached_tokens: 0,
            },
        })
    }

    async fn health(&self) -> Result<()> {
        self.0.health().await
    }
}

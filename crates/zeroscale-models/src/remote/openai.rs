//! OpenAI-compatible embeddings: `POST {base_url}/embeddings` with `{"model", "input"}`,
//! answered by `{"data": [{"index", "embedding"}], "usage": {"prompt_tokens",
//! "total_tokens"}}`.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use zeroscale_core::config::RemoteProviderConfig;
use zeroscale_core::models::{EmbeddingProvider, EmbeddingRequest, EmbeddingResponse, Usage};
use zeroscale_core::{Error, Result, Secret};

use super::{http_error, transport_error};

/// An OpenAI-compatible embeddings API.
#[derive(Debug, Clone)]
pub struct OpenAiEmbeddings {
    name: String,
    base_url: String,
    api_key: Option<Secret<String>>,
    client: reqwest::Client,
}

#[derive(Serialize)]
struct Request<'a> {
    model: &'a str,
    input: &'a [String],
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
        if !(config.base_url.starts_with("http://") || config.base_url.starts_with("https://")) {
            return Err(Error::config(
                format!("models.providers.{name}.base_url"),
                "set an http(s) URL, e.g. https://api.example.com/v1",
            ));
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(config.timeout_secs.max(1)))
            .build()
            .map_err(|e| Error::config(format!("models.providers.{name}"), e.to_string()))?;
        Ok(OpenAiEmbeddings {
            name: name.to_owned(),
            base_url: config.base_url.trim_end_matches('/').to_owned(),
            api_key: config.api_key.clone(),
            client,
        })
    }
}

#[async_trait]
impl EmbeddingProvider for OpenAiEmbeddings {
    fn name(&self) -> &str {
        &self.name
    }

    async fn embed(&self, request: EmbeddingRequest) -> Result<EmbeddingResponse> {
        let mut call = self
            .client
            .post(format!("{}/embeddings", self.base_url))
            .json(&Request {
                model: &request.model,
                input: &request.inputs,
            });
        if let Some(key) = &self.api_key {
            call = call.bearer_auth(key.expose());
        }
        let response = call
            .send()
            .await
            .map_err(|e| transport_error(&self.name, e))?;
        let status = response.status();
        if !status.is_success() {
            let headers = response.headers().clone();
            let body = response.text().await.unwrap_or_default();
            return Err(http_error(&self.name, status, &headers, &body));
        }
        let mut body: Response = response
            .json()
            .await
            .map_err(|e| transport_error(&self.name, e))?;
        if body.data.len() != request.inputs.len() {
            return Err(Error::backend(
                self.name.clone(),
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
                self.name.clone(),
                std::io::Error::other("returned vectors of different lengths"),
            ));
        }
        let usage = body.usage.unwrap_or_default();
        Ok(EmbeddingResponse {
            model: body.model.unwrap_or(request.model),
            vectors,
            dimensions,
            usage: Usage {
                prompt_tokens: usage.prompt_tokens,
                total_tokens: usage.total_tokens,
            },
        })
    }

    async fn health(&self) -> Result<()> {
        crate::reachable(&self.name, &self.base_url, Duration::from_secs(5))
            .await
            .map(|_| ())
    }
}

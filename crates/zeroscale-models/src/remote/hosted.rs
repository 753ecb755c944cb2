//! Hosted APIs: Hugging Face Inference feature-extraction (embeddings), Replicate
//! predictions and Fal's queue (images). Replicate and Fal run asynchronously: the client
//! submits, polls until the job finishes (within the provider's timeout), then fetches the
//! output images.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{Value, json};
use zeroscale_core::config::RemoteProviderConfig;
use zeroscale_core::models::{
    EmbeddingProvider, EmbeddingRequest, EmbeddingResponse, ImageProvider, ImageRequest,
    ImageResponse, Usage,
};
use zeroscale_core::{Error, Result};

use super::{ApiClient, with_request_options};

/// How often asynchronous jobs are polled.
const POLL: Duration = Duration::from_millis(500);

fn urls(output: &Value) -> Vec<String> {
    match output {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items.iter().flat_map(urls).collect(),
        Value::Object(map) => map
            .get("url")
            .and_then(Value::as_str)
            .map(|u| vec![u.to_owned()])
            .unwrap_or_else(|| map.get("images").map(urls).unwrap_or_default()),
        _ => Vec::new(),
    }
}

/// Hugging Face Inference feature-extraction: `POST {base_url}/{model}` with
/// `{"inputs": [...]}`, answered by one vector per input (token vectors are mean-pooled).
#[derive(Debug, Clone)]
pub struct HuggingFaceEmbeddings(ApiClient);

impl HuggingFaceEmbeddings {
    /// A client for provider `name`.
    pub fn new(name: &str, config: &RemoteProviderConfig) -> Result<Self> {
        ApiClient::new(name, config).map(HuggingFaceEmbeddings)
    }
}

fn pooled(value: &Value) -> Option<Vec<f32>> {
    let rows = value.as_array()?;
    if rows.first()?.is_number() {
        return rows.iter().map(|x| x.as_f64().map(|f| f as f32)).collect();
    }
    // Token vectors: mean over tokens.
    let tokens: Vec<Vec<f32>> = rows.iter().map(pooled).collect::<Option<_>>()?;
    let dims = tokens.first()?.len();
    let mut mean = vec![0.0f32; dims];
    for t in &tokens {
        for (m, x) in mean.iter_mut().zip(t) {
            *m += x / tokens.len() as f32;
        }
    }
    Some(mean)
}

#[async_trait]
impl EmbeddingProvider for HuggingFaceEmbeddings {
    fn name(&self) -> &str {
        &self.0.name
    }

    async fn embed(&self, request: EmbeddingRequest) -> Result<EmbeddingResponse> {
        let http = &self.0;
        let answer = http
            .json(
                http.client
                    .post(http.url(&format!("/{}", request.model)))
                    .json(&json!({"inputs": request.inputs, "options": {"wait_for_model": true}})),
                "Bearer",
            )
            .await?;
        let vectors: Vec<Vec<f32>> = answer
            .as_array()
            .map(|items| items.iter().map(pooled).collect::<Option<Vec<_>>>())
            .unwrap_or(None)
            .filter(|v| v.len() == request.inputs.len())
            .ok_or_else(|| {
                Error::backend(
                    http.name.clone(),
                    std::io::Error::other("unexpected feature-extraction answer"),
                )
            })?;
        let dimensions = vectors.first().map_or(0, Vec::len);
        // Feature extraction has no width option: only the model's own is served.
        request.check_dimensions(&request.model, dimensions)?;
        Ok(EmbeddingResponse {
            model: request.model,
            vectors,
            dimensions,
            usage: Usage::default(),
        })
    }

    async fn health(&self) -> Result<()> {
        self.0.health().await
    }
}

/// Replicate: `POST {base_url}/predictions` with `{"version", "input"}`, polled at
/// `urls.get` until `succeeded` (or `failed`/`canceled`), then the output URLs fetched.
/// The model route's `version` (else the model name) is the version.
#[derive(Debug, Clone)]
pub struct ReplicateImages(ApiClient);

impl ReplicateImages {
    /// A client for provider `name`.
    pub fn new(name: &str, config: &RemoteProviderConfig) -> Result<Self> {
        ApiClient::new(name, config).map(ReplicateImages)
    }
}

#[async_trait]
impl ImageProvider for ReplicateImages {
    fn name(&self) -> &str {
        &self.0.name
    }

    async fn generate(&self, request: ImageRequest) -> Result<ImageResponse> {
        let http = &self.0;
        let input = with_request_options(
            json!({
                "prompt": request.prompt,
                "width": request.width,
                "height": request.height,
                "num_outputs": request.count,
            }),
            &request,
        );
        let started = Instant::now();
        let mut prediction = http
            .json(
                http.client
                    .post(http.url("/predictions"))
                    .json(&json!({"version": request.model, "input": input})),
                "Bearer",
            )
            .await?;
        loop {
            match prediction["status"].as_str().unwrap_or("") {
                "succeeded" => break,
                "failed" | "canceled" => {
                    let why = prediction["error"].as_str().unwrap_or("no reason given");
                    return Err(Error::unavailable(format!(
                        "{} prediction {}: {why}",
                        http.name, prediction["status"]
                    )));
                }
                _ => {}
            }
            if let Some(e) = http.timed_out(started, "the prediction") {
                return Err(e);
            }
            tokio::time::sleep(POLL).await;
            let url = prediction["urls"]["get"]
                .as_str()
                .map(str::to_owned)
                .or_else(|| {
                    prediction["id"]
                        .as_str()
                        .map(|id| format!("/predictions/{id}"))
                })
                .ok_or_else(|| {
                    Error::backend(
                        http.name.clone(),
                        std::io::Error::other("prediction has no id"),
                    )
                })?;
            prediction = http.json(http.client.get(http.url(&url)), "Bearer").await?;
        }
        let mut images = Vec::new();
        for url in urls(&prediction["output"]) {
            let mut image = http.fetch_image(&url).await?;
            image.seed = request.seed;
            images.push(image);
        }
        if images.is_empty() {
            return Err(Error::backend(
                http.name.clone(),
                std::io::Error::other("the prediction has no output"),
            ));
        }
        let mut metadata = serde_json::Map::new();
        metadata.insert("prediction_id".into(), prediction["id"].clone());
        Ok(ImageResponse {
            model: request.model,
            images,
            metadata,
        })
    }

    async fn health(&self) -> Result<()> {
        self.0.health().await
    }
}

/// Fal's queue: `POST {base_url}/{endpoint}` submits and answers `request_id`,
/// `status_url` and `response_url`; the status is polled until `COMPLETED`, then the
/// response's `images[].url` are fetched. The endpoint is the model route's `endpoint`
/// (else the model name). Fal keys are sent as `Authorization: Key …`.
#[derive(Debug, Clone)]
pub struct FalImages(ApiClient);

impl FalImages {
    /// A client for provider `name`.
    pub fn new(name: &str, config: &RemoteProviderConfig) -> Result<Self> {
        ApiClient::new(name, config).map(FalImages)
    }
}

#[async_trait]
impl ImageProvider for FalImages {
    fn name(&self) -> &str {
        &self.0.name
    }

    async fn generate(&self, request: ImageRequest) -> Result<ImageResponse> {
        let http = &self.0;
        let input = with_request_options(
            json!({
                "prompt": request.prompt,
                "image_size": {"width": request.width, "height": request.height},
                "num_images": request.count,
            }),
            &request,
        );
        let started = Instant::now();
        let submitted = http
            .json(
                http.client
                    .post(http.url(&format!("/{}", request.model)))
                    .json(&input),
                "Key",
            )
            .await?;
        let id = submitted["request_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let status_url = submitted["status_url"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("/{}/requests/{id}/status", request.model));
        let response_url = submitted["response_url"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("/{}/requests/{id}", request.model));
        loop {
            let status = http
                .json(http.client.get(http.url(&status_url)), "Key")
                .await?;
            match status["status"].as_str().unwrap_or("") {
                "COMPLETED" => break,
                "FAILED" | "ERROR" => {
                    return Err(Error::unavailable(format!(
                        "{} request {id} failed: {status}",
                        http.name
                    )));
                }
                _ => {}
            }
            if let Some(e) = http.timed_out(started, "the request") {
                return Err(e);
            }
            tokio::time::sleep(POLL).await;
        }
        let result = http
            .json(http.client.get(http.url(&response_url)), "Key")
            .await?;
        let mut images = Vec::new();
        for url in urls(&result["images"]) {
            let mut image = http.fetch_image(&url).await?;
            image.seed = result["seed"].as_u64().or(request.seed);
            images.push(image);
        }
        if images.is_empty() {
            return Err(Error::backend(
                http.name.clone(),
                std::io::Error::other("the result has no images"),
            ));
        }
        let mut metadata = serde_json::Map::new();
        metadata.insert("request_id".into(), json!(id));
        Ok(ImageResponse {
            model: request.model,
            images,
            metadata,
        })
    }

    async fn health(&self) -> Result<()> {
        self.0.health().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_pools_token_vectors() {
        assert_eq!(pooled(&json!([1.0, 2.0])), Some(vec![1.0, 2.0]));
        assert_eq!(
            pooled(&json!([[1.0, 2.0], [3.0, 4.0]])),
            Some(vec![2.0, 3.0])
        );
        assert_eq!(pooled(&json!("x")), None);
    }

    #[test]
    fn finds_output_urls() {
        assert_eq!(urls(&json!("http://a")), ["http://a"]);
        assert_eq!(
            urls(&json!(["http://a", "http://b"])),
            ["http://a", "http://b"]
        );
        assert_eq!(
            urls(&json!([{"url": "http://a"}, {"url": "http://b"}])),
            ["http://a", "http://b"]
        );
    }
}

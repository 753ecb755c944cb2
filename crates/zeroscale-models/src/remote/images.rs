//! Image clients for an OpenAI-compatible `/images/generations` API and a self-hosted
//! Automatic1111 server (`/sdapi/v1/txt2img`); both return images as base64, decoded here.

use async_trait::async_trait;
use base64::Engine as _;
use bytes::Bytes;
use serde_json::{Value, json};
use zeroscale_core::config::RemoteProviderConfig;
use zeroscale_core::models::{
    GeneratedImage, ImageData, ImageProvider, ImageRequest, ImageResponse,
};
use zeroscale_core::{Error, Result};

use super::ApiClient;

/// Which protocol an [`HttpImages`] speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageApi {
    /// `POST {base}/images/generations` (OpenAI-compatible).
    OpenAi,
    /// `POST {base}/sdapi/v1/txt2img` (Automatic1111).
    Automatic1111,
}

/// An image generation API over HTTP.
#[derive(Debug, Clone)]
pub struct HttpImages {
    api: ImageApi,
    http: ApiClient,
}

fn decode(provider: &str, b64: &str) -> Result<Bytes> {
    // Automatic1111 may prefix a data URL header.
    let data = b64.rsplit_once(',').map_or(b64, |(_, d)| d);
    base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map(Bytes::from)
        .map_err(|e| {
            Error::backend(
                provider.to_owned(),
                std::io::Error::other(format!("bad base64 image: {e}")),
            )
        })
}

fn sniff_mime(bytes: &[u8]) -> &'static str {
    if bytes.starts_with(b"\x89PNG") {
        "image/png"
    } else if bytes.starts_with(&[0xff, 0xd8]) {
        "image/jpeg"
    } else if bytes.starts_with(b"RIFF") {
        "image/webp"
    } else {
        "application/octet-stream"
    }
}

impl HttpImages {
    /// A client for provider `name` speaking `api`.
    pub fn new(name: &str, api: ImageApi, config: &RemoteProviderConfig) -> Result<Self> {
        Ok(HttpImages {
            api,
            http: ApiClient::new(name, config)?,
        })
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value> {
        self.http
            .json(
                self.http.client.post(self.http.url(path)).json(&body),
                "Bearer",
            )
            .await
    }
}

#[async_trait]
impl ImageProvider for HttpImages {
    fn name(&self) -> &str {
        &self.http.name
    }

    async fn generate(&self, request: ImageRequest) -> Result<ImageResponse> {
        let mut images = Vec::new();
        let mut metadata = serde_json::Map::new();
        match self.api {
            ImageApi::OpenAi => {
                let mut body = json!({
                    "model": request.model,
                    "prompt": request.prompt,
                    "n": request.count,
                    "size": format!("{}x{}", request.width, request.height),
                    "response_format": "b64_json",
                });
                for (k, v) in &request.extra {
                    body[k] = v.clone();
                }
                let answer = self.post("/images/generations", body).await?;
                // The prompt each image was drawn from, where the API rewrote it.
                let revised: Vec<Value> = answer["data"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|item| item["b64_json"].is_string() || item["url"].is_string())
                    .map(|item| item["revised_prompt"].clone())
                    .collect();
                if revised.iter().any(Value::is_string) {
                    metadata.insert("revised_prompts".to_owned(), Value::Array(revised));
                }
                for item in answer["data"].as_array().into_iter().flatten() {
                    let data = match (item["b64_json"].as_str(), item["url"].as_str()) {
                        (Some(b64), _) => {
                            let bytes = decode(&self.http.name, b64)?;
                            ImageData::Bytes {
                                mime_type: sniff_mime(&bytes).to_owned(),
                                data: bytes,
                            }
                        }
                        (None, Some(url)) => ImageData::Url(url.to_owned()),
                        _ => continue,
                    };
                    images.push(GeneratedImage {
                        data,
                        seed: request.seed,
                    });
                }
            }
            ImageApi::Automatic1111 => {
                let mut body = json!({
                    "prompt": request.prompt,
                    "negative_prompt": request.negative_prompt.clone().unwrap_or_default(),
                    "width": request.width,
                    "height": request.height,
                    "batch_size": request.count,
                    "seed": request.seed.map_or(-1, |s| s as i64),
                });
                if !request.model.is_empty() {
                    body["override_settings"] = json!({"sd_model_checkpoint": request.model});
                }
                for (k, v) in &request.extra {
                    body[k] = v.clone();
                }
                let answer = self.post("/sdapi/v1/txt2img", body).await?;
                // `info` is a JSON string with the seeds actually used.
                let info: Value = answer["info"]
                    .as_str()
                    .and_then(|s| serde_json::from_str(s).ok())
                    .unwrap_or(Value::Null);
                for (i, b64) in answer["images"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .enumerate()
                {
                    let Some(b64) = b64.as_str() else { continue };
                    let bytes = decode(&self.http.name, b64)?;
                    let seed = info["all_seeds"][i].as_u64().or(request.seed);
                    images.push(GeneratedImage {
                        data: ImageData::Bytes {
                            mime_type: sniff_mime(&bytes).to_owned(),
                            data: bytes,
                        },
                        seed,
                    });
                }
            }
        }
        if images.is_empty() {
            return Err(Error::backend(
                self.http.name.clone(),
                std::io::Error::other("the answer held no images"),
            ));
        }
        Ok(ImageResponse {
            model: request.model,
            images,
            metadata,
        })
    }

    async fn health(&self) -> Result<()> {
        self.http.health().await
    }
}

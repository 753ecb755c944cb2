//! Remote API providers (feature `remote-models`): HTTP clients with rustls, and the one
//! mapping from HTTP failures to zeroscale's error kinds that they all use.

pub mod hosted;
pub mod images;
pub mod openai;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde_json::Value;
use zeroscale_core::config::{ModelsConfig, ProviderConfig, RemoteProviderConfig};
use zeroscale_core::models::{GeneratedImage, ImageData};
use zeroscale_core::{Error, Result, Secret};

use crate::registry::BuiltProvider;

/// The remote settings of provider `provider`.
fn remote_config<'a>(kind: &str, provider: &'a ProviderConfig) -> Result<&'a RemoteProviderConfig> {
    match provider {
        ProviderConfig::Openai(c)
        | ProviderConfig::HuggingFace(c)
        | ProviderConfig::Replicate(c)
        | ProviderConfig::Fal(c)
        | ProviderConfig::Automatic1111(c) => Ok(c),
        other => Err(zeroscale_core::registry::wrong_config(kind, other.kind())),
    }
}

/// The registry's builder for `kind = "openai"`: embeddings and images.
pub(crate) fn build_openai(
    name: &str,
    _: &ModelsConfig,
    provider: &ProviderConfig,
) -> Result<BuiltProvider> {
    let c = remote_config("openai", provider)?;
    Ok(BuiltProvider {
        embeddings: Some(Arc::new(openai::OpenAiEmbeddings::new(name, c)?)),
        images: Some(Arc::new(images::HttpImages::new(
            name,
            images::ImageApi::OpenAi,
            c,
        )?)),
    })
}

/// The registry's builder for `kind = "hugging_face"`: embeddings.
pub(crate) fn build_hugging_face(
    name: &str,
    _: &ModelsConfig,
    provider: &ProviderConfig,
) -> Result<BuiltProvider> {
    let c = remote_config("hugging_face", provider)?;
    Ok(BuiltProvider {
        embeddings: Some(Arc::new(hosted::HuggingFaceEmbeddings::new(name, c)?)),
        ..Default::default()
    })
}

/// The registry's builder for `kind = "replicate"`: images.
pub(crate) fn build_replicate(
    name: &str,
    _: &ModelsConfig,
    provider: &ProviderConfig,
) -> Result<BuiltProvider> {
    let c = remote_config("replicate", provider)?;
    Ok(BuiltProvider {
        images: Some(Arc::new(hosted::ReplicateImages::new(name, c)?)),
        ..Default::default()
    })
}

/// The registry's builder for `kind = "fal"`: images.
pub(crate) fn build_fal(
    name: &str,
    _: &ModelsConfig,
    provider: &ProviderConfig,
) -> Result<BuiltProvider> {
    let c = remote_config("fal", provider)?;
    Ok(BuiltProvider {
        images: Some(Arc::new(hosted::FalImages::new(name, c)?)),
        ..Default::default()
    })
}

/// The registry's builder for `kind = "automatic1111"`: images.
pub(crate) fn build_automatic1111(
    name: &str,
    _: &ModelsConfig,
    provider: &ProviderConfig,
) -> Result<BuiltProvider> {
    let c = remote_config("automatic1111", provider)?;
    Ok(BuiltProvider {
        images: Some(Arc::new(images::HttpImages::new(
            name,
            images::ImageApi::Automatic1111,
            c,
        )?)),
        ..Default::default()
    })
}

/// The registry's probe for every remote kind: its endpoint accepts a connection.
pub(crate) fn probe<'a>(
    name: &'a str,
    _: &'a ModelsConfig,
    provider: &'a ProviderConfig,
) -> futures::future::BoxFuture<'a, Result<String>> {
    Box::pin(async move {
        let c = remote_config(provider.kind(), provider)?;
        crate::reachable(name, &c.base_url, Duration::from_secs(5)).await
    })
}

/// Downloads an image a provider returned as a URL: at most `max_bytes` (checked against
/// `Content-Length` first, then while reading) within `timeout`.
pub(crate) async fn download_image(
    url: &str,
    max_bytes: u64,
    timeout: Duration,
) -> Result<(Bytes, String)> {
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(|e| Error::backend("http", e))?;
    let unavailable = |what: &str, e: reqwest::Error| {
        let why = if e.is_timeout() {
            format!("no answer within {}s", timeout.as_secs())
        } else {
            e.to_string()
        };
        Error::unavailable(format!("{what} the image at {url} failed: {why}"))
    };
    let mut response = client
        .get(url)
        .send()
        .await
        .map_err(|e| unavailable("downloading", e))?;
    if !response.status().is_success() {
        return Err(Error::unavailable(format!(
            "downloading the image at {url} answered {}",
            response.status()
        )));
    }
    let too_large = || {
        Error::invalid_input(format!(
            "the image at {url} is larger than {max_bytes} bytes (server.max_upload_bytes)"
        ))
    };
    if response.content_length().is_some_and(|n| n > max_bytes) {
        return Err(too_large());
    }
    let mime = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_owned();
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| unavailable("reading", e))?
    {
        if (body.len() + chunk.len()) as u64 > max_bytes {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body.freeze(), mime))
}

/// A `Retry-After` header: seconds, or an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return (secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    (when.with_timezone(&chrono::Utc) - chrono::Utc::now())
        .to_std()
        .ok()
}

/// The message in an API error body (`{"error": {"message": …}}` or `{"error": "…"}`),
/// else the body itself, shortened.
fn body_message(body: &str) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let message = parsed.as_ref().and_then(|v| {
        v.pointer("/error/message")
            .or_else(|| v.get("error"))
            .or_else(|| v.get("detail"))
            .and_then(|m| m.as_str().map(str::to_owned))
    });
    let text = message.unwrap_or_else(|| body.trim().to_owned());
    text.chars().take(300).collect()
}

/// Maps an HTTP error response from `provider` to an error kind: 429 → rate limited (with
/// `Retry-After`), 401/403 → unauthenticated, other 4xx → invalid input, 5xx → unavailable.
pub(crate) fn http_error(
    provider: &str,
    status: StatusCode,
    headers: &HeaderMap,
    body: &str,
) -> Error {
    let message = format!(
        "{provider} answered HTTP {}: {}",
        status.as_u16(),
        body_message(body)
    );
    match status.as_u16() {
        429 => Error::rate_limited(message, retry_after(headers)),
        401 | 403 => Error::unauthenticated(format!("{message} (check the provider's api_key)")),
        400..=499 => Error::invalid_input(message),
        _ => Error::unavailable(message),
    }
}

/// Maps a transport failure (connect, timeout, bad body) from `provider`.
pub(crate) fn transport_error(provider: &str, e: reqwest::Error) -> Error {
    if e.is_decode() {
        return Error::backend(provider.to_owned(), e);
    }
    Error::unavailable_from(format!("{provider} did not answer"), e)
}

/// An HTTP client for one provider: its base URL, key and timeout, and the error mapping.
#[derive(Debug, Clone)]
pub(crate) struct ApiClient {
    pub(crate) name: String,
    pub(crate) base_url: String,
    api_key: Option<Secret<String>>,
    timeout: Duration,
    pub(crate) client: reqwest::Client,
}

impl ApiClient {
    pub(crate) fn new(name: &str, config: &RemoteProviderConfig) -> Result<Self> {
        if !(config.base_url.starts_with("http://") || config.base_url.starts_with("https://")) {
            return Err(Error::config(
                format!("models.providers.{name}.base_url"),
                "set an http(s) URL",
            ));
        }
        let timeout = Duration::from_secs(config.timeout_secs.max(1));
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| Error::config(format!("models.providers.{name}"), e.to_string()))?;
        Ok(ApiClient {
            name: name.to_owned(),
            base_url: config.base_url.trim_end_matches('/').to_owned(),
            api_key: config.api_key.clone(),
            timeout,
            client,
        })
    }

    pub(crate) fn url(&self, path_or_url: &str) -> String {
        if path_or_url.starts_with("http://") || path_or_url.starts_with("https://") {
            path_or_url.to_owned()
        } else {
            format!("{}{path_or_url}", self.base_url)
        }
    }

    pub(crate) async fn send(
        &self,
        request: reqwest::RequestBuilder,
        auth: &str,
    ) -> Result<reqwest::Response> {
        let request = match &self.api_key {
            Some(key) => request.header("authorization", format!("{auth} {}", key.expose())),
            None => request,
        };
        let response = request
            .send()
            .await
            .map_err(|e| transport_error(&self.name, e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let headers = response.headers().clone();
        let body = response.text().await.unwrap_or_default();
        Err(http_error(&self.name, status, &headers, &body))
    }

    pub(crate) async fn json(&self, request: reqwest::RequestBuilder, auth: &str) -> Result<Value> {
        self.send(request, auth)
            .await?
            .json()
            .await
            .map_err(|e| transport_error(&self.name, e))
    }

    pub(crate) async fn fetch_image(&self, url: &str) -> Result<GeneratedImage> {
        let response = self.send(self.client.get(url), "Bearer").await?;
        let mime = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/octet-stream")
            .to_owned();
        let data: Bytes = response
            .bytes()
            .await
            .map_err(|e| transport_error(&self.name, e))?;
        Ok(GeneratedImage {
            data: ImageData::Bytes {
                data,
                mime_type: mime,
            },
            seed: None,
        })
    }

    pub(crate) fn timed_out(&self, started: Instant, what: &str) -> Option<Error> {
        (started.elapsed() > self.timeout).then(|| {
            Error::unavailable(format!(
                "{} did not finish {what} within {}s",
                self.name,
                self.timeout.as_secs()
            ))
        })
    }
}

impl ApiClient {
    /// The provider's host answers on its port (APIs rarely have a free health route).
    pub(crate) async fn health(&self) -> Result<()> {
        crate::reachable(&self.name, &self.base_url, Duration::from_secs(5))
            .await
            .map(|_| ())
    }
}

/// Adds the request's optional seed and negative prompt, then its provider-specific
/// options (as given, overriding), to a JSON request body.
pub(crate) fn with_request_options(
    mut input: Value,
    request: &zeroscale_core::models::ImageRequest,
) -> Value {
    if let Some(seed) = request.seed {
        input["seed"] = serde_json::json!(seed);
    }
    if let Some(neg) = &request.negative_prompt {
        input["negative_prompt"] = serde_json::json!(neg);
    }
    for (k, v) in &request.extra {
        input[k] = v.clone();
    }
    input
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds_or_date() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, "2".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        let later = (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc2822();
        h.insert(RETRY_AFTER, later.parse().unwrap());
        let d = retry_after(&h).unwrap();
        assert!(
            d > Duration::from_secs(25) && d <= Duration::from_secs(30),
            "{d:?}"
        );
    }

    #[test]
    fn status_kinds() {
        let h = HeaderMap::new();
        let e = http_error(
            "p",
            StatusCode::BAD_REQUEST,
            &h,
            r#"{"error":{"message":"too long"}}"#,
        );
        assert!(
            matches!(e, Error::InvalidInput { .. }) && e.to_string().contains("too long"),
            "{e}"
        );
        assert!(matches!(
            http_error("p", StatusCode::UNAUTHORIZED, &h, ""),
            Error::Unauthenticated { .. }
        ));
        assert!(matches!(
            http_error("p", StatusCode::BAD_GATEWAY, &h, ""),
            Error::Unavailable { .. }
        ));
        assert!(matches!(
            http_error("p", StatusCode::TOO_MANY_REQUESTS, &h, ""),
            Error::RateLimited { .. }
        ));
    }
}

//! Generated images cached in storage. Only requests with an explicit seed are cached:
//! without one, asking twice is asking for two different images. The key is the SHA-256
//! of the model id and every option of the request (prompt, negative prompt, size, count,
//! seed, provider options), so any change misses.
//!
//! Layout under the prefix (default `model-cache/images`): `<hash>/<n>` per image and
//! `<hash>.json`, the manifest, written last so a half-written entry is never a hit. The
//! cache is best effort: a storage failure is logged and the request goes to a provider.

use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use zeroscale_core::models::{GeneratedImage, ImageData, ImageRequest, ImageResponse};
use zeroscale_core::storage::{ObjectKey, PutOptions};
use zeroscale_core::{Error, Result, Storage, StorageExt};

/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "model-cache/images";

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    model: String,
    provider: String,
    images: Vec<ManifestImage>,
    metadata: serde_json::Map<String, Value>,
}

#[derive(Debug, Serialize, Deserialize)]
struct ManifestImage {
    key: String,
    mime_type: String,
    seed: Option<u64>,
}

/// A hit: the response and the provider that first made it.
#[derive(Debug, Clone)]
pub struct CachedImages {
    /// The images as first generated.
    pub response: ImageResponse,
    /// The provider that generated them.
    pub provider: String,
}

/// Images cached in a [`Storage`]; see the module docs.
#[derive(Debug, Clone)]
pub struct StorageImageCache {
    storage: Arc<dyn Storage>,
    prefix: String,
}

/// JSON with every object's keys sorted, whatever order they were built in.
fn canonical(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), canonical(&map[k])))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

impl StorageImageCache {
    /// A cache in `storage` under [`DEFAULT_PREFIX`].
    pub fn new(storage: Arc<dyn Storage>) -> Self {
        Self::with_prefix(storage, DEFAULT_PREFIX)
    }

    /// A cache in `storage` under `prefix`.
    pub fn with_prefix(storage: Arc<dyn Storage>, prefix: &str) -> Self {
        StorageImageCache {
            storage,
            prefix: prefix.trim_end_matches('/').to_owned(),
        }
    }

    /// The cache key of `request` for model id `model`, or `None` when the request has
    /// no seed and so is not cached.
    pub fn key(model: &str, request: &ImageRequest) -> Option<String> {
        let seed = request.seed?;
        let options = serde_json::json!({
            "model": model,
            "prompt": request.prompt,
            "negative_prompt": request.negative_prompt,
            "width": request.width,
            "height": request.height,
            "count": request.count,
            "seed": seed,
            "extra": Value::Object(request.extra.clone()),
        });
        let text = canonical(&options).to_string();
        Some(zeroscale_core::hex(&Sha256::digest(text.as_bytes())))
    }

    fn object(&self, name: &str) -> Result<ObjectKey> {
        ObjectKey::parse(format!("{}/{name}", self.prefix))
    }

    /// The cached images for `request`, if any.
    pub async fn get(&self, model: &str, request: &ImageRequest) -> Option<CachedImages> {
        let hash = Self::key(model, request)?;
        match self.try_get(&hash).await {
            Ok(hit) => hit,
            Err(e) => {
                tracing::warn!(model, key = %hash, error = %e.chain(), "image cache read failed; generating instead");
                None
            }
        }
    }

    async fn try_get(&self, hash: &str) -> Result<Option<CachedImages>> {
        let manifest: Manifest = match self
            .storage
            .get_json(&self.object(&format!("{hash}.json"))?)
            .await
        {
            Ok(m) => m,
            Err(Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut images = Vec::with_capacity(manifest.images.len());
        for image in manifest.images {
            let key = ObjectKey::parse(image.key)?;
            let data = match self.storage.get_bytes(&key).await {
                Ok(data) => data,
                // An image removed behind the manifest's back: a miss, regenerated.
                Err(Error::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(e),
            };
            images.push(GeneratedImage {
                data: ImageData::Bytes {
                    data,
                    mime_type: image.mime_type,
                },
                seed: image.seed,
            });
        }
        Ok(Some(CachedImages {
            response: ImageResponse {
                model: manifest.model,
                images,
                metadata: manifest.metadata,
            },
            provider: manifest.provider,
        }))
    }

    /// Stores `response` for `request`. Only requests with a seed and responses whose
    /// images are bytes (not provider URLs, which expire) are stored; returns whether it
    /// was.
    pub async fn put(
        &self,
        model: &str,
        request: &ImageRequest,
        provider: &str,
        response: &ImageResponse,
    ) -> bool {
        let Some(hash) = Self::key(model, request) else {
            return false;
        };
        let all_bytes = response
            .images
            .iter()
            .all(|i| matches!(i.data, ImageData::Bytes { .. }));
        if !all_bytes || response.images.is_empty() {
            return false;
        }
        match self.try_put(&hash, provider, response).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(model, key = %hash, error = %e.chain(), "image cache write failed");
                false
            }
        }
    }

    async fn try_put(&self, hash: &str, provider: &str, response: &ImageResponse) -> Result<()> {
        let mut images = Vec::with_capacity(response.images.len());
        for (n, image) in response.images.iter().enumerate() {
            let ImageData::Bytes { data, mime_type } = &image.data else {
                continue;
            };
            let key = self.object(&format!("{hash}/{n}"))?;
            self.storage
                .put_opts(
                    &key,
                    Bytes::clone(data),
                    PutOptions::with_content_type(mime_type.clone()),
                )
                .await?;
            images.push(ManifestImage {
                key: key.into_string(),
                mime_type: mime_type.clone(),
                seed: image.seed,
            });
        }
        let manifest = Manifest {
            model: response.model.clone(),
            provider: provider.to_owned(),
            images,
            metadata: response.metadata.clone(),
        };
        self.storage
            .put_json(&self.object(&format!("{hash}.json"))?, &manifest)
            .await?;
        Ok(())
    }
}

//! Model provider interfaces: text embeddings, image generation, and the embedding cache
//! that lets the models crate cache vectors without knowing the database.

use std::fmt;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::Result;

/// A batch of texts to embed with one model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddingRequest {
    /// The provider-side model name.
    pub model: String,
    /// The texts, embedded in order.
    pub inputs: Vec<String>,
    /// Shorter vectors of this many dimensions, where the model can make them (OpenAI's
    /// `text-embedding-3` models); a provider that cannot refuses with
    /// [`Error::InvalidInput`](crate::Error::InvalidInput) unless it equals the model's
    /// own width. `None`: the model's width.
    pub dimensions: Option<usize>,
}

impl EmbeddingRequest {
    /// `inputs` for the provider-side model `model`, at the model's own width.
    pub fn new(model: impl Into<String>, inputs: Vec<String>) -> Self {
        EmbeddingRequest {
            model: model.into(),
            inputs,
            dimensions: None,
        }
    }

    /// Refuses `dimensions` other than `native`, the width of a model that cannot
    /// shorten its vectors (what providers without the option call).
    pub fn check_dimensions(&self, model: &str, native: usize) -> crate::Result<()> {
        match self.dimensions {
            Some(wanted) if wanted != native => Err(crate::Error::invalid_input(format!(
                "dimensions: model `{model}` gives {native} dimensions and cannot shorten \
                 them; omit `dimensions` or send {native}"
            ))),
            _ => Ok(()),
        }
    }
}

/// Token counts reported by a provider (estimated where the provider does not say).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens in the input.
    pub prompt_tokens: u64,
    /// Tokens in all (for embeddings, the same as `prompt_tokens`).
    pub total_tokens: u64,
    /// The part of `prompt_tokens` in inputs the embedding cache answered: counted by the
    /// provider's tokenizer, never sent to the provider, and not charged.
    #[serde(default)]
    pub cached_tokens: u64,
}

/// Vectors for an [`EmbeddingRequest`], one per input, in the same order.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingResponse {
    /// The model that produced them.
    pub model: String,
    /// One vector per input.
    pub vectors: Vec<Vec<f32>>,
    /// Length of every vector.
    pub dimensions: usize,
    /// Token usage.
    pub usage: Usage,
}

/// Something that turns text into vectors: a local model or a remote API.
#[async_trait]
pub trait EmbeddingProvider: Send + Sync + fmt::Debug + 'static {
    /// The provider's name in config (e.g. `local`, `openai`).
    fn name(&self) -> &str;

    /// Embeds a batch.
    async fn embed(&self, request: EmbeddingRequest) -> Result<EmbeddingResponse>;

    /// The tokens `inputs` take in the model, counted without embedding them, where the
    /// provider can (a local model's tokenizer); `None` where it cannot (a remote API
    /// counts only while it embeds). The router reports the tokens of cached inputs with
    /// it. The default is `None`.
    async fn count_tokens(&self, inputs: &[String]) -> Option<u64> {
        let _ = inputs;
        None
    }

    /// Checks that the provider can serve (model files present, API reachable).
    async fn health(&self) -> Result<()>;
}

/// An image generation request.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageRequest {
    /// The provider-side model name or version.
    pub model: String,
    /// What to draw.
    pub prompt: String,
    /// What to avoid.
    pub negative_prompt: Option<String>,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// How many images.
    pub count: u32,
    /// A seed, for reproducible output where the provider supports it.
    pub seed: Option<u64>,
    /// Provider-specific options passed through as given.
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// One generated image: its bytes, or a URL where the provider keeps it.
#[derive(Clone, PartialEq, Eq)]
pub enum ImageData {
    /// The image itself.
    Bytes {
        /// Encoded image bytes.
        data: Bytes,
        /// e.g. `image/png`.
        mime_type: String,
    },
    /// A URL to fetch it from.
    Url(String),
}

impl fmt::Debug for ImageData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageData::Bytes { data, mime_type } => f
                .debug_struct("Bytes")
                .field("len", &data.len())
                .field("mime_type", mime_type)
                .finish(),
            ImageData::Url(url) => f.debug_tuple("Url").field(url).finish(),
        }
    }
}

/// One image and the seed that made it, when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedImage {
    /// The image.
    pub data: ImageData,
    /// The seed used.
    pub seed: Option<u64>,
}

/// The result of an [`ImageRequest`].
#[derive(Debug, Clone, PartialEq)]
pub struct ImageResponse {
    /// The model that produced them.
    pub model: String,
    /// The images.
    pub images: Vec<GeneratedImage>,
    /// Provider details worth keeping (prediction id, timings, a placeholder label).
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

/// Something that draws images from prompts.
#[async_trait]
pub trait ImageProvider: Send + Sync + fmt::Debug + 'static {
    /// The provider's name in config (e.g. `placeholder`, `replicate`).
    fn name(&self) -> &str;

    /// Generates images.
    async fn generate(&self, request: ImageRequest) -> Result<ImageResponse>;

    /// Checks that the provider can serve.
    async fn health(&self) -> Result<()>;
}

/// A cache key for one embedding: the SHA-256 of the model id and the input text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EmbeddingCacheKey(String);

impl EmbeddingCacheKey {
    /// The key for `input` embedded by `model_id`.
    pub fn new(model_id: &str, input: &str) -> Self {
        let mut hasher = Sha256::new();
        hasher.update((model_id.len() as u64).to_le_bytes());
        hasher.update(model_id.as_bytes());
        hasher.update(input.as_bytes());
        EmbeddingCacheKey(crate::hex(&hasher.finalize()))
    }

    /// The key as 64 hex characters.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A store of embeddings by [`EmbeddingCacheKey`]: memory in the models crate, a table in
/// the database crate.
#[async_trait]
pub trait EmbeddingCache: Send + Sync + fmt::Debug + 'static {
    /// The cached vector, if any.
    async fn get(&self, key: &EmbeddingCacheKey) -> Result<Option<Vec<f32>>>;

    /// Stores a vector, replacing any previous one.
    async fn put(&self, key: &EmbeddingCacheKey, vector: &[f32]) -> Result<()>;

    /// The cached vectors of `keys`, in order. The default asks [`EmbeddingCache::get`]
    /// once per key; a cache behind a network or a database answers in one round trip.
    async fn get_many(&self, keys: &[EmbeddingCacheKey]) -> Result<Vec<Option<Vec<f32>>>> {
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            out.push(self.get(key).await?);
        }
        Ok(out)
    }

    /// Stores each `(key, vector)`, replacing previous ones. The default calls
    /// [`EmbeddingCache::put`] once per entry.
    async fn put_many(&self, entries: &[(&EmbeddingCacheKey, &[f32])]) -> Result<()> {
        for (key, vector) in entries {
            self.put(key, vector).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_keys_separate_model_and_input() {
        let a = EmbeddingCacheKey::new("minilm", "hello");
        assert_eq!(a, EmbeddingCacheKey::new("minilm", "hello"));
        assert_eq!(a.as_str().len(), 64);
        assert_ne!(a, EmbeddingCacheKey::new("minilm", "hello!"));
        assert_ne!(a, EmbeddingCacheKey::new("other", "hello"));
        // The model id's length is hashed, so ("ab", "c") and ("a", "bc") differ.
        assert_ne!(
            EmbeddingCacheKey::new("ab", "c"),
            EmbeddingCacheKey::new("a", "bc")
        );
    }
}

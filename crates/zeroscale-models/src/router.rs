//! The model router: a model id from the registry is served by its default provider; a
//! retriable failure (rate limit, outage) is retried with backoff, honouring
//! `Retry-After`, up to `router.max_retries`; then the fallbacks are tried in order. A
//! provider that fails `allowed_fails` times within `fail_window_secs` cools down for
//! `cooldown_secs` and is skipped meanwhile. Embeddings go through the cache, so repeated
//! inputs never reach a provider; images of requests with an explicit seed go through
//! the storage image cache. Every call is logged with model, provider, latency,
//! cost and outcome.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use zeroscale_core::config::{ModelCost, ModelEntry, ModelKind, ModelsConfig, RouterConfig};
use zeroscale_core::models::{
    EmbeddingCache, EmbeddingCacheKey, EmbeddingProvider, EmbeddingRequest, EmbeddingResponse,
    ImageProvider, ImageRequest, ImageResponse, Usage,
};
use zeroscale_core::{Error, Result};

use crate::image_cache::StorageImageCache;

/// A result and how it was obtained.
#[derive(Debug, Clone)]
pub struct Routed<T> {
    /// The result.
    pub value: T,
    /// The provider that served it (`cache` when nothing was asked of a provider).
    pub provider: String,
    /// What it cost, in credits.
    pub cost: f64,
}

/// How [`Router::embed_with`] embeds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EmbedOptions {
    /// Vectors of this many dimensions, where the model can shorten its vectors
    /// (OpenAI's `text-embedding-3` through an `openai` provider); a provider that cannot
    /// refuses any width but its own (`InvalidInput`, no failover). Default: the model's
    /// own width.
    pub dimensions: Option<usize>,
}

/// A provider's health as the router sees it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ProviderHealth {
    /// Skipped until this time, if cooling down.
    pub cooling_down_until: Option<DateTime<Utc>>,
    /// The last failure.
    pub last_error: Option<String>,
    /// Calls that succeeded.
    pub successes: u64,
    /// Calls that failed.
    pub failures: u64,
}

#[derive(Debug, Default)]
struct State {
    health: ProviderHealth,
    recent_failures: VecDeque<Instant>,
    cooling_until: Option<Instant>,
}

/// Routes model ids to providers; see the module docs.
pub struct Router {
    registry: HashMap<String, ModelEntry>,
    settings: RouterConfig,
    embedders: HashMap<String, Arc<dyn EmbeddingProvider>>,
    imagers: HashMap<String, Arc<dyn ImageProvider>>,
    cache: Option<Arc<dyn EmbeddingCache>>,
    image_cache: Option<StorageImageCache>,
    states: Mutex<HashMap<String, State>>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("models", &self.registry.keys().collect::<Vec<_>>())
            .field("embedders", &self.embedders.keys().collect::<Vec<_>>())
            .field("imagers", &self.imagers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

enum Outcome<T> {
    Done(T),
    /// The caller's input is wrong: no other provider will do better.
    Stop(Error),
    /// This provider failed; try the next.
    Next(Error),
}

impl Router {
    /// A router for the registry of `config`, with no providers yet.
    pub fn new(config: &ModelsConfig) -> Self {
        Router {
            registry: config.registry.clone().into_iter().collect(),
            settings: config.router.clone(),
            embedders: HashMap::new(),
            imagers: HashMap::new(),
            cache: None,
            image_cache: None,
            states: Mutex::default(),
        }
    }

    /// A router with a provider for every entry of `config.providers` whose kind this
    /// build can run: placeholder always; with `remote-models` the HTTP clients
    /// (`openai` serves both embeddings and images); with `local-models` the local
    /// embedding model (loaded on first use). Returns the router and, per provider that
    /// this build cannot run, why.
    pub fn from_config(config: &ModelsConfig) -> Result<(Router, Vec<(String, Error)>)> {
        crate::registry::validate(config)?;
        let mut router = Router::new(config);
        let mut missing = Vec::new();
        for (name, provider) in &config.providers {
            let key = crate::registry::kind_key(name);
            let entry = match crate::registry::PROVIDERS.entry_for(&key, provider.kind()) {
                Ok(entry) => entry,
                Err(why) => {
                    missing.push((name.clone(), why));
                    continue;
                }
            };
            let built = (entry.build)(name, config, provider)?;
            if let Some(embeddings) = built.embeddings {
                router.add_embedding_provider(name, embeddings);
            }
            if let Some(images) = built.images {
                router.add_image_provider(name, images);
            }
        }
        for (name, why) in &missing {
            tracing::warn!(provider = %name, reason = %why, "model provider not available");
        }
        Ok((router, missing))
    }

    /// Adds an embedding provider under its config name.
    pub fn add_embedding_provider(&mut self, name: &str, provider: Arc<dyn EmbeddingProvider>) {
        self.embedders.insert(name.to_owned(), provider);
    }

    /// Adds an image provider under its config name.
    pub fn add_image_provider(&mut self, name: &str, provider: Arc<dyn ImageProvider>) {
        self.imagers.insert(name.to_owned(), provider);
    }

    /// Caches images of requests with an explicit seed in `cache`.
    pub fn set_image_cache(&mut self, cache: StorageImageCache) {
        self.image_cache = Some(cache);
    }

    /// Caches embeddings in `cache`.
    pub fn set_embedding_cache(&mut self, cache: Arc<dyn EmbeddingCache>) {
        self.cache = Some(cache);
    }

    /// The model ids this router serves, sorted, with their registry entries.
    pub fn models(&self) -> Vec<(&str, &ModelEntry)> {
        let mut models: Vec<(&str, &ModelEntry)> = self
            .registry
            .iter()
            .map(|(id, entry)| (id.as_str(), entry))
            .collect();
        models.sort_unstable_by_key(|(id, _)| *id);
        models
    }

    /// Model id `model`'s registry entry, if this router serves it.
    pub fn model(&self, model: &str) -> Option<&ModelEntry> {
        self.registry.get(model)
    }

    fn entry(&self, model: &str, kind: ModelKind) -> Result<&ModelEntry> {
        let entry = self.registry.get(model).ok_or_else(|| {
            Error::not_found(format!(
                "model `{model}` (known models: {})",
                self.registry.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })?;
        if entry.kind != kind {
            return Err(Error::invalid_input(format!(
                "model `{model}` is not an {kind:?} model"
            )));
        }
        Ok(entry)
    }

    fn chain(entry: &ModelEntry) -> Vec<String> {
        std::iter::once(entry.provider.clone())
            .chain(entry.fallbacks.iter().cloned())
            .collect()
    }

    fn cooling(&self, provider: &str) -> bool {
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        let state = states.entry(provider.to_owned()).or_default();
        match state.cooling_until {
            Some(until) if until > Instant::now() => true,
            Some(_) => {
                state.cooling_until = None;
                state.health.cooling_down_until = None;
                false
            }
            None => false,
        }
    }

    fn record(&self, provider: &str, result: std::result::Result<(), &Error>) {
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        let state = states.entry(provider.to_owned()).or_default();
        match result {
            Ok(()) => state.health.successes += 1,
            Err(e) => {
                state.health.failures += 1;
                state.health.last_error = Some(e.chain());
                let now = Instant::now();
                let window = Duration::from_secs(self.settings.fail_window_secs);
                state.recent_failures.push_back(now);
                while state
                    .recent_failures
                    .front()
                    .is_some_and(|t| now.duration_since(*t) > window)
                {
                    state.recent_failures.pop_front();
                }
                if state.recent_failures.len() as u32 >= self.settings.allowed_fails.max(1) {
                    let cooldown = Duration::from_secs(self.settings.cooldown_secs);
                    state.cooling_until = Some(now + cooldown);
                    state.health.cooling_down_until =
                        Some(Utc::now() + chrono::Duration::from_std(cooldown).unwrap_or_default());
                    state.recent_failures.clear();
                    tracing::warn!(
                        provider,
                        cooldown_secs = cooldown.as_secs(),
                        "provider cooling down"
                    );
                }
            }
        }
    }

    /// How long to wait before retry number `attempt` (from 1) after `error`.
    fn wait(&self, attempt: u32, error: &Error) -> Duration {
        let cap = Duration::from_secs(self.settings.max_retry_after_secs);
        match error.retry_after() {
            Some(after) => after.min(cap),
            None => Duration::from_millis(self.settings.backoff_base_ms)
                .saturating_mul(1 << attempt.saturating_sub(1).min(16))
                .min(cap),
        }
    }

    /// Tries `call` on each provider of the chain with retries; `kind` names the work.
    async fn route<T, F, Fut>(
        &self,
        model: &str,
        chain: Vec<String>,
        call: F,
    ) -> Result<(T, String)>
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = Outcome<T>>,
    {
        let mut failures = Vec::new();
        // The shortest pause an overloaded provider asked for.
        let mut overloaded: Option<Duration> = None;
        for provider in chain {
            if self.cooling(&provider) {
                failures.push(format!("{provider}: cooling down"));
                failover(model, &provider, "cooling_down");
                continue;
            }
            let mut attempt = 0;
            loop {
                attempt += 1;
                let started = Instant::now();
                // One span per provider attempt (the trace shows each retry and failover).
                let span = tracing::info_span!(
                    "model_call",
                    otel.name = %format_args!("model {model} via {provider}"),
                    otel.kind = "client",
                    model,
                    provider = %provider,
                    attempt,
                    outcome = tracing::field::Empty,
                );
                let outcome =
                    tracing::Instrument::instrument(call(provider.clone()), span.clone()).await;
                let took = started.elapsed();
                let latency_ms = took.as_millis() as u64;
                let word = match &outcome {
                    Outcome::Done(_) => "ok",
                    Outcome::Next(e) if e.is_overloaded() => "overloaded",
                    Outcome::Stop(e) | Outcome::Next(e) => e.kind().code(),
                };
                span.record("outcome", word);
                count_call(model, &provider, word, took);
                match outcome {
                    Outcome::Done(value) => {
                        self.record(&provider, Ok(()));
                        tracing::info!(model, %provider, attempt, latency_ms, outcome = word, "model call");
                        return Ok((value, provider));
                    }
                    Outcome::Stop(e) => {
                        tracing::info!(model, %provider, attempt, latency_ms, outcome = word, "model call");
                        return Err(e);
                    }
                    Outcome::Next(e) if e.is_overloaded() => {
                        // Working but busy: no failure counted (no cooldown), no retry
                        // that would queue the call out of sight; the next provider, or
                        // the caller is told when to come back.
                        tracing::info!(model, %provider, attempt, latency_ms, outcome = word, "model call");
                        let after = e.retry_after().unwrap_or(Duration::from_secs(1));
                        overloaded = Some(overloaded.map_or(after, |o| o.min(after)));
                        failures.push(format!("{provider}: {}", e.chain()));
                        failover(model, &provider, word);
                        break;
                    }
                    Outcome::Next(e) => {
                        self.record(&provider, Err(&e));
                        tracing::warn!(model, %provider, attempt, latency_ms, outcome = word, error = %e.chain(), "model call");
                        if e.is_retriable()
                            && attempt <= self.settings.max_retries
                            && !self.cooling(&provider)
                        {
                            tokio::time::sleep(self.wait(attempt, &e)).await;
                            continue;
                        }
                        failures.push(format!("{provider}: {}", e.chain()));
                        failover(model, &provider, word);
                        break;
                    }
                }
            }
        }
        let message = format!(
            "every provider of model `{model}` failed: {}",
            failures.join("; ")
        );
        Err(match overloaded {
            Some(after) => Error::overloaded(message, after),
            None => Error::unavailable(message),
        })
    }

    fn classify<T>(result: Result<T>) -> Outcome<T> {
        match result {
            Ok(v) => Outcome::Done(v),
            Err(e @ Error::InvalidInput { .. }) => Outcome::Stop(e),
            Err(e) => Outcome::Next(e),
        }
    }

    fn cost(entry: &ModelEntry, provider: &str) -> ModelCost {
        entry
            .routes
            .get(provider)
            .map(|r| r.cost.clone())
            .unwrap_or_default()
    }

    fn remote_model(entry: &ModelEntry, model: &str, provider: &str) -> String {
        entry
            .routes
            .get(provider)
            .and_then(|r| r.remote_model.clone())
            .unwrap_or_else(|| model.to_owned())
    }

    /// Embeds `inputs` with model id `model`.
    pub async fn embed(
        &self,
        model: &str,
        inputs: Vec<String>,
    ) -> Result<Routed<EmbeddingResponse>> {
        self.embed_with(model, inputs, &EmbedOptions::default())
            .await
    }

    /// Embeds `inputs` with model id `model` as `options` say.
    pub async fn embed_with(
        &self,
        model: &str,
        inputs: Vec<String>,
        options: &EmbedOptions,
    ) -> Result<Routed<EmbeddingResponse>> {
        let entry = self.entry(model, ModelKind::Embedding)?;
        // Shortened vectors are other vectors: cached apart from the full ones.
        let cache_id = match options.dimensions {
            Some(d) => format!("{model}@{d}"),
            None => model.to_owned(),
        };
        let keys: Vec<EmbeddingCacheKey> = inputs
            .iter()
            .map(|i| EmbeddingCacheKey::new(&cache_id, i))
            .collect();
        let mut vectors: Vec<Option<Vec<f32>>> = vec![None; inputs.len()];
        if let Some(cache) = &self.cache {
            vectors = cache.get_many(&keys).await?;
            let hits = vectors.iter().filter(|v| v.is_some()).count() as u64;
            count_cache(
                "embeddings",
                hits,
                keys.len() as u64 - hits.min(keys.len() as u64),
            );
            if vectors.len() != keys.len() {
                return Err(Error::backend(
                    "embedding cache",
                    std::io::Error::other(format!(
                        "returned {} entries for {} keys",
                        vectors.len(),
                        keys.len()
                    )),
                ));
            }
        }
        let missing: Vec<usize> = (0..inputs.len())
            .filter(|&i| vectors[i].is_none())
            .collect();
        let cached: Vec<String> = (0..inputs.len())
            .filter(|&i| vectors[i].is_some())
            .map(|i| inputs[i].clone())
            .collect();
        let cached_tokens = self.count_tokens(entry, &cached).await;
        if missing.is_empty() && !inputs.is_empty() {
            let vectors: Vec<Vec<f32>> = vectors.into_iter().flatten().collect();
            let dimensions = vectors.first().map_or(0, Vec::len);
            return Ok(Routed {
                value: EmbeddingResponse {
                    model: model.to_owned(),
                    vectors,
                    dimensions,
                    usage: Usage {
                        prompt_tokens: cached_tokens,
                        total_tokens: cached_tokens,
                        cached_tokens,
                    },
                },
                provider: "cache".to_owned(),
                cost: 0.0,
            });
        }
        let batch: Vec<String> = missing.iter().map(|&i| inputs[i].clone()).collect();
        let (response, provider) = self
            .route(model, Self::chain(entry), |provider| {
                let batch = batch.clone();
                let embedder = self.embedders.get(&provider).cloned();
                let remote = Self::remote_model(entry, model, &provider);
                let dimensions = options.dimensions;
                async move {
                    let Some(embedder) = embedder else {
                        return Outcome::Next(Error::config(
                            format!("models.providers.{provider}"),
                            "no embedding provider of that name is running",
                        ));
                    };
                    let expected = batch.len();
                    match embedder
                        .embed(EmbeddingRequest {
                            model: remote,
                            inputs: batch,
                            dimensions,
                        })
                        .await
                    {
                        Ok(r) if r.vectors.len() != expected => Outcome::Next(Error::backend(
                            provider.clone(),
                            std::io::Error::other(format!(
                                "returned {} vectors for {expected} inputs",
                                r.vectors.len()
                            )),
                        )),
                        other => Self::classify(other),
                    }
                }
            })
            .await?;
        if let Some(cache) = &self.cache {
            let entries: Vec<(&EmbeddingCacheKey, &[f32])> = missing
                .iter()
                .zip(&response.vectors)
                .map(|(&i, vector)| (&keys[i], vector.as_slice()))
                .collect();
            cache.put_many(&entries).await?;
        }
        for (&i, vector) in missing.iter().zip(response.vectors.iter()) {
            vectors[i] = Some(vector.clone());
        }
        let price = Self::cost(entry, &provider);
        let cost =
            price.per_call + price.per_1k_tokens * response.usage.prompt_tokens as f64 / 1000.0;
        let vectors: Vec<Vec<f32>> = vectors.into_iter().flatten().collect();
        Ok(Routed {
            value: EmbeddingResponse {
                model: model.to_owned(),
                dimensions: response.dimensions,
                usage: Usage {
                    prompt_tokens: response.usage.prompt_tokens + cached_tokens,
                    total_tokens: response.usage.total_tokens + cached_tokens,
                    cached_tokens,
                },
                vectors,
            },
            provider,
            cost,
        })
    }

    /// The tokens of `inputs` (answered by the cache) as the model's first running
    /// provider that can count them says; 0 when none can.
    async fn count_tokens(&self, entry: &ModelEntry, inputs: &[String]) -> u64 {
        if inputs.is_empty() {
            return 0;
        }
        for provider in Self::chain(entry) {
            if let Some(embedder) = self.embedders.get(&provider)
                && let Some(tokens) = embedder.count_tokens(inputs).await
            {
                return tokens;
            }
        }
        0
    }

    /// The provider-side name of an image model: the route's `version` (Replicate), else
    /// its `endpoint` (Fal), else its `remote_model`, else the model id.
    fn remote_image_model(entry: &ModelEntry, model: &str, provider: &str) -> String {
        entry
            .routes
            .get(provider)
            .and_then(|r| {
                r.version
                    .clone()
                    .or_else(|| r.endpoint.clone())
                    .or_else(|| r.remote_model.clone())
            })
            .unwrap_or_else(|| model.to_owned())
    }

    /// Generates images with model id `model`.
    pub async fn generate(
        &self,
        model: &str,
        request: ImageRequest,
    ) -> Result<Routed<ImageResponse>> {
        let entry = self.entry(model, ModelKind::Image)?;
        let hit = match &self.image_cache {
            Some(cache) => {
                let hit = cache.get(model, &request).await;
                count_cache("images", u64::from(hit.is_some()), u64::from(hit.is_none()));
                hit
            }
            None => None,
        };
        if let Some(hit) = hit {
            tracing::info!(
                model,
                provider = "cache",
                generated_by = %hit.provider,
                images = hit.response.images.len(),
                "model call served from the image cache"
            );
            return Ok(Routed {
                value: hit.response,
                provider: "cache".to_owned(),
                cost: 0.0,
            });
        }
        let chain = Self::size_chain(model, entry, request.width, request.height)?;
        let (response, provider) = self
            .route(model, chain, |provider| {
                let imager = self.imagers.get(&provider).cloned();
                let mut request = request.clone();
                request.model = Self::remote_image_model(entry, model, &provider);
                async move {
                    match imager {
                        Some(imager) => Self::classify(imager.generate(request).await),
                        None => Outcome::Next(Error::config(
                            format!("models.providers.{provider}"),
                            "no image provider of that name is running",
                        )),
                    }
                }
            })
            .await?;
        if let Some(cache) = &self.image_cache {
            cache.put(model, &request, &provider, &response).await;
        }
        let price = Self::cost(entry, &provider);
        let cost = price.per_call + price.per_image * response.images.len() as f64;
        Ok(Routed {
            value: response,
            provider,
            cost,
        })
    }

    /// The providers of image model `entry` that make `width` x `height` images
    /// (`models.registry.<id>.routes.<provider>.sizes`), in order; an error listing the
    /// sizes they make when none does.
    fn size_chain(model: &str, entry: &ModelEntry, width: u32, height: u32) -> Result<Vec<String>> {
        let chain = Self::chain(entry);
        let makes = |provider: &String| {
            entry
                .routes
                .get(provider)
                .is_none_or(|route| route.makes_size(width, height))
        };
        let usable: Vec<String> = chain.iter().filter(|p| makes(p)).cloned().collect();
        if !usable.is_empty() {
            return Ok(usable);
        }
        let mut sizes: Vec<&str> = chain
            .iter()
            .filter_map(|p| entry.routes.get(p))
            .flat_map(|route| route.sizes.iter().map(String::as_str))
            .collect();
        sizes.sort_unstable();
        sizes.dedup();
        Err(Error::invalid_input(format!(
            "size {width}x{height}: model `{model}` is made only in {}",
            sizes.join(", ")
        )))
    }

    /// Checks that some provider of image model `model` makes `width` x `height` images
    /// (before credits are reserved); the error lists the sizes it is made in.
    pub fn check_image_size(&self, model: &str, width: u32, height: u32) -> Result<()> {
        let entry = self.entry(model, ModelKind::Image)?;
        Self::size_chain(model, entry, width, height).map(drop)
    }

    /// The size image model `model` is made in when a request names none: `preferred`
    /// when a provider makes it, else the first size its first provider lists.
    pub fn default_image_size(&self, model: &str, preferred: (u32, u32)) -> Result<(u32, u32)> {
        let entry = self.entry(model, ModelKind::Image)?;
        if Self::size_chain(model, entry, preferred.0, preferred.1).is_ok() {
            return Ok(preferred);
        }
        Ok(Self::chain(entry)
            .iter()
            .filter_map(|p| entry.routes.get(p))
            .flat_map(|route| route.sizes.iter())
            .find_map(|size| zeroscale_core::config::parse_size(size))
            .unwrap_or(preferred))
    }

    /// The most `count` images of model id `model` can cost, over every provider it may
    /// fall back to: what to reserve before generating.
    pub fn image_cost_estimate(&self, model: &str, count: u32) -> Result<f64> {
        let entry = self.entry(model, ModelKind::Image)?;
        Ok(Self::chain(entry)
            .iter()
            .map(|provider| {
                let price = Self::cost(entry, provider);
                price.per_call + price.per_image * f64::from(count)
            })
            .fold(0.0, f64::max))
    }

    /// Every provider's health, by name.
    pub fn health(&self) -> Vec<(String, ProviderHealth)> {
        let names: Vec<String> = self
            .embedders
            .keys()
            .chain(self.imagers.keys())
            .cloned()
            .collect();
        let mut out: Vec<(String, ProviderHealth)> = names
            .into_iter()
            .map(|name| {
                let cooling = self.cooling(&name);
                let states = self.states.lock().unwrap_or_else(|p| p.into_inner());
                let mut health = states
                    .get(&name)
                    .map(|s| s.health.clone())
                    .unwrap_or_default();
                if !cooling {
                    health.cooling_down_until = None;
                }
                (name, health)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out.dedup_by(|a, b| a.0 == b.0);
        out
    }

    /// Whether this router has a provider called `name` (it is configured and its kind is
    /// compiled in).
    pub fn has_provider(&self, name: &str) -> bool {
        self.embedders.contains_key(name) || self.imagers.contains_key(name)
    }

    /// Runs provider `name`'s health check now; a success ends its cooldown.
    pub async fn check(&self, name: &str) -> Result<()> {
        let result = if let Some(p) = self.embedders.get(name) {
            p.health().await
        } else if let Some(p) = self.imagers.get(name) {
            p.health().await
        } else {
            return Err(Error::not_found(format!("provider `{name}`")));
        };
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        let state = states.entry(name.to_owned()).or_default();
        match &result {
            Ok(()) => {
                state.cooling_until = None;
                state.health.cooling_down_until = None;
            }
            Err(e) => state.health.last_error = Some(e.chain()),
        }
        result
    }
}

/// Records one provider call of `model`.
fn count_call(model: &str, provider: &str, outcome: &'static str, took: Duration) {
    metrics::counter!(
        zeroscale_core::metrics::MODEL_CALLS,
        "model" => model.to_owned(),
        "provider" => provider.to_owned(),
        "outcome" => outcome
    )
    .increment(1);
    metrics::histogram!(
        zeroscale_core::metrics::MODEL_DURATION,
        "model" => model.to_owned(),
        "provider" => provider.to_owned()
    )
    .record(took.as_secs_f64());
}

/// Records and logs the router leaving `provider` for the next in `model`'s chain (or
/// giving up, when it was the last), and why.
fn failover(model: &str, provider: &str, reason: &'static str) {
    tracing::info!(
        model,
        provider,
        reason,
        "leaving provider for the next in the chain"
    );
    metrics::counter!(
        zeroscale_core::metrics::MODEL_FAILOVERS,
        "model" => model.to_owned(),
        "provider" => provider.to_owned(),
        "reason" => reason
    )
    .increment(1);
}

/// Records cache lookups of `cache` (`embeddings` or `images`).
fn count_cache(cache: &'static str, hits: u64, misses: u64) {
    let m = zeroscale_core::metrics::MODEL_CACHE;
    if hits > 0 {
        metrics::counter!(m, "cache" => cache, "result" => "hit").increment(hits);
    }
    if misses > 0 {
        metrics::counter!(m, "cache" => cache, "result" => "miss").increment(misses);
    }
}

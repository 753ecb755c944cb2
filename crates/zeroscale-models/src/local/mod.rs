//! The local embedding provider: a sentence-transformers BERT model (all-MiniLM-L6-v2 by
//! default) run on the CPU, doing what the model's own sentence-transformers config says:
//! tokenise with truncation at `max_seq_length`, encode, pool (mean over the tokens for
//! MiniLM), L2-normalise when the model has a `Normalize` module. The encoder
//! (`encoder.rs`) packs a batch's sentences without padding; its matrix products
//! (`small.rs`, weights packed in panels, SIMD width chosen at run time) and the rest
//! (`kernels.rs`) are our own loops.
//!
//! The model is loaded once, on first use or by [`LocalEmbeddings::load`], and shared;
//! loading and inference run on the blocking thread pool. A missing model is reported as
//! unavailable with the command that installs it, and is looked for again on the next
//! call, so `cargo xtask models fetch` on a running server needs no restart.

mod batcher;
mod encoder;
mod kernels;
mod lanes;
mod small;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use tokenizers::{Tokenizer, TruncationParams};
use tokio::sync::OnceCell;
use zeroscale_core::models::{EmbeddingProvider, EmbeddingRequest, EmbeddingResponse, Usage};
use zeroscale_core::{Error, Result};

use batcher::{BatchOptions, Batcher, Embedded};
use encoder::{BertConfig, Encoder};
use kernels::Pooling;

const BACKEND: &str = "local model";

/// A model loaded in memory.
struct Loaded {
    encoder: Encoder,
    tokenizer: Tokenizer,
    pooling: Pooling,
    normalize: bool,
    max_seq_length: usize,
    dimensions: usize,
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("pooling", &self.pooling)
            .field("normalize", &self.normalize)
            .field("max_seq_length", &self.max_seq_length)
            .field("dimensions", &self.dimensions)
            .finish_non_exhaustive()
    }
}

/// How the local provider batches; [`LocalOptions::default`] is what config defaults to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalOptions {
    /// Texts per forward pass (default 32).
    pub max_batch: usize,
    /// How long to wait for concurrent requests to join a batch (default 2 ms); a lone
    /// request never waits.
    pub batch_window: Duration,
    /// Texts that may wait; past this a request fails as overloaded (default 1024).
    pub max_queue: usize,
    /// Threads computing a batch (default 0: one per CPU, or `RAYON_NUM_THREADS`).
    pub threads: usize,
}

impl Default for LocalOptions {
    fn default() -> Self {
        LocalOptions {
            max_batch: 32,
            batch_window: Duration::from_millis(2),
            max_queue: 1024,
            threads: 0,
        }
    }
}

/// A loaded model and the worker that batches requests for it.
#[derive(Debug)]
struct Running {
    loaded: Arc<Loaded>,
    batcher: Batcher,
}

/// The local embedding provider (`kind = "local"`); see the module docs. Concurrent
/// requests are batched together (dynamic batching; see [`LocalOptions`]).
#[derive(Debug)]
pub struct LocalEmbeddings {
    name: String,
    model_name: String,
    dir: PathBuf,
    options: LocalOptions,
    running: OnceCell<Arc<Running>>,
}

impl LocalEmbeddings {
    /// A provider named `name` for the model `model_name` in folder `dir`, running at most
    /// `max_batch` texts per forward pass, other options at their defaults. Nothing is
    /// read until first use.
    pub fn new(
        name: impl Into<String>,
        model_name: impl Into<String>,
        dir: impl Into<PathBuf>,
        max_batch: usize,
    ) -> Self {
        LocalEmbeddings::with_options(
            name,
            model_name,
            dir,
            LocalOptions {
                max_batch,
                ..Default::default()
            },
        )
    }

    /// [`LocalEmbeddings::new`] with every option.
    pub fn with_options(
        name: impl Into<String>,
        model_name: impl Into<String>,
        dir: impl Into<PathBuf>,
        options: LocalOptions,
    ) -> Self {
        LocalEmbeddings {
            name: name.into(),
            model_name: model_name.into(),
            dir: dir.into(),
            options: LocalOptions {
                max_batch: options.max_batch.max(1),
                max_queue: options.max_queue.max(1),
                ..options
            },
            running: OnceCell::new(),
        }
    }

    /// The folder the model is read from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Loads the model now (it is otherwise loaded on first use).
    pub async fn load(&self) -> Result<()> {
        self.running().await.map(|_| ())
    }

    /// The vector width, once the model is loaded.
    pub fn dimensions(&self) -> Option<usize> {
        self.running.get().map(|r| r.loaded.dimensions)
    }

    async fn running(&self) -> Result<Arc<Running>> {
        self.running
            .get_or_try_init(|| async {
                self.check_files()?;
                let dir = self.dir.clone();
                let started = std::time::Instant::now();
                let loaded = tokio::task::spawn_blocking(move || load_model(&dir))
                    .await
                    .map_err(|e| Error::backend(BACKEND, e))??;
                let loaded = Arc::new(loaded);
                tracing::info!(
                    provider = %self.name,
                    model = %self.model_name,
                    dir = %self.dir.display(),
                    dimensions = loaded.dimensions,
                    max_seq_length = loaded.max_seq_length,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "local model loaded"
                );
                let options = self.options;
                let model = Arc::clone(&loaded);
                let batcher = Batcher::start(
                    BatchOptions {
                        threads: options.threads,
                        max_batch: options.max_batch,
                        window: options.batch_window,
                        max_queue: options.max_queue,
                    },
                    Arc::new(move |texts: &[String]| embed_all(&model, texts, options.max_batch)),
                )?;
                Ok(Arc::new(Running { loaded, batcher }))
            })
            .await
            .cloned()
    }

    fn check_files(&self) -> Result<()> {
        crate::check_local_model(&self.name, &self.model_name, &self.dir)
    }
}

#[async_trait]
impl EmbeddingProvider for LocalEmbeddings {
    fn name(&self) -> &str {
        &self.name
    }

    async fn embed(&self, request: EmbeddingRequest) -> Result<EmbeddingResponse> {
        let running = self.running().await?;
        request.check_dimensions(&self.model_name, running.loaded.dimensions)?;
        let embedded = running.batcher.embed(request.inputs).await?;
        let tokens = embedded.iter().map(|(_, t)| t).sum();
        let vectors: Vec<Vec<f32>> = embedded.into_iter().map(|(v, _)| v).collect();
        Ok(EmbeddingResponse {
            model: self.model_name.clone(),
            vectors,
            dimensions: running.loaded.dimensions,
            usage: Usage {
                prompt_tokens: tokens,
                total_tokens: tokens,
                cached_tokens: 0,
            },
        })
    }

    /// Counts with the model's tokenizer, as `embed` does (special tokens included,
    /// truncated at the model's sequence length).
    async fn count_tokens(&self, inputs: &[String]) -> Option<u64> {
        let running = self.running().await.ok()?;
        let texts: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let encodings = running.loaded.tokenizer.encode_batch(texts, true).ok()?;
        Some(encodings.iter().map(|e| e.get_ids().len() as u64).sum())
    }

    /// The model can serve: its files are installed (and verified). It is not loaded
    /// here: loading stays lazy (first use), so a readiness probe never costs a 90 MB load.
    async fn health(&self) -> Result<()> {
        self.check_files()
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::unavailable_from(format!("cannot read {}", path.display()), e))?;
    serde_json::from_str(&text)
        .map_err(|e| Error::backend(BACKEND, format!("{} is not valid: {e}", path.display())))
}

#[derive(Deserialize)]
struct Module {
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
}

#[derive(Deserialize)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
}

/// Reads the sentence-transformers pipeline from `modules.json`: the pooling mode and
/// whether vectors are normalised.
fn read_pipeline(dir: &Path) -> Result<(Pooling, bool)> {
    let modules: Vec<Module> = read_json(&dir.join("modules.json"))?;
    let mut pooling = None;
    let mut normalize = false;
    for module in &modules {
        match module.kind.rsplit('.').next().unwrap_or_default() {
            "Transformer" => {}
            "Pooling" => {
                let config: PoolingConfig = read_json(&dir.join(&module.path).join("config.json"))?;
                let modes = [
                    (config.pooling_mode_mean_tokens, Pooling::Mean),
                    (config.pooling_mode_cls_token, Pooling::Cls),
                    (config.pooling_mode_max_tokens, Pooling::Max),
                    (
                        config.pooling_mode_mean_sqrt_len_tokens,
                        Pooling::MeanSqrtLen,
                    ),
                ];
                let chosen: Vec<Pooling> = modes
                    .iter()
                    .filter(|(on, _)| *on)
                    .map(|(_, mode)| *mode)
                    .collect();
                if chosen.len() != 1 {
                    return Err(Error::backend(
                        BACKEND,
                        format!(
                            "{}/config.json enables {} pooling modes; exactly one is supported",
                            module.path,
                            chosen.len()
                        ),
                    ));
                }
                pooling = Some(chosen[0]);
            }
            "Normalize" => normalize = true,
            other => {
                return Err(Error::backend(
                    BACKEND,
                    format!(
                        "modules.json has a `{other}` module, which the local provider does \
                         not run (supported: Transformer, Pooling, Normalize)"
                    ),
                ));
            }
        }
    }
    let pooling = pooling
        .ok_or_else(|| Error::backend(BACKEND, "modules.json has no Pooling module".to_owned()))?;
    Ok((pooling, normalize))
}

fn load_model(dir: &Path) -> Result<Loaded> {
    let config: BertConfig = read_json(&dir.join("config.json"))?;
    let (pooling, normalize) = read_pipeline(dir)?;
    let max_seq_length = match dir.join("sentence_bert_config.json") {
        path if path.is_file() => read_json::<SentenceBertConfig>(&path)?.max_seq_length,
        _ => None,
    }
    .unwrap_or(config.max_position_embeddings)
    .min(config.max_position_embeddings);

    let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))
        .map_err(|e| Error::backend(BACKEND, format!("tokenizer.json cannot be loaded: {e}")))?;
    // The tokenizer file carries its own truncation and fixed padding; sentence-transformers
    // overrides both. The encoder packs sentences without padding, so none is wanted.
    tokenizer
        .with_truncation(Some(TruncationParams {
            max_length: max_seq_length,
            ..Default::default()
        }))
        .map_err(|e| Error::backend(BACKEND, format!("tokenizer truncation: {e}")))?;
    tokenizer.with_padding(None);
    let encoder = Encoder::load(&config, &dir.join("model.safetensors"))?;
    Ok(Loaded {
        dimensions: encoder.hidden(),
        encoder,
        tokenizer,
        pooling,
        normalize,
        max_seq_length,
    })
}

/// Embeds `inputs` in order, `max_batch` at a time; returns each text's vector and
/// token count.
fn embed_all(loaded: &Loaded, inputs: &[String], max_batch: usize) -> Result<Vec<Embedded>> {
    // Batch texts of similar length together so the batches' shapes stay even.
    let mut order: Vec<usize> = (0..inputs.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(inputs[i].len()));
    let mut out = vec![(Vec::new(), 0); inputs.len()];
    for chunk in order.chunks(max_batch) {
        let texts: Vec<&str> = chunk.iter().map(|&i| inputs[i].as_str()).collect();
        for (&i, embedded) in chunk.iter().zip(embed_batch(loaded, &texts)?) {
            out[i] = embedded;
        }
    }
    Ok(out)
}

fn embed_batch(loaded: &Loaded, texts: &[&str]) -> Result<Vec<Embedded>> {
    let encodings = loaded
        .tokenizer
        .encode_batch(texts.to_vec(), true)
        .map_err(|e| Error::invalid_input(format!("the text cannot be tokenised: {e}")))?;
    let mut ids = Vec::new();
    let mut types = Vec::new();
    let mut lens = Vec::with_capacity(encodings.len());
    for encoding in &encodings {
        ids.extend_from_slice(encoding.get_ids());
        types.extend_from_slice(encoding.get_type_ids());
        lens.push(encoding.get_ids().len());
    }
    let hidden = loaded.encoder.forward(&ids, &types, &lens)?;
    let vectors = kernels::pool(
        &hidden,
        loaded.dimensions,
        &lens,
        loaded.pooling,
        loaded.normalize,
    );
    Ok(vectors
        .into_iter()
        .zip(lens)
        .map(|(v, len)| (v, len as u64))
        .collect())
}

/// The registry's builder for `kind = "local"`: the model is loaded on first use.
pub(crate) fn build(
    name: &str,
    config: &zeroscale_core::config::ModelsConfig,
    provider: &zeroscale_core::config::ProviderConfig,
) -> Result<crate::registry::BuiltProvider> {
    let zeroscale_core::config::ProviderConfig::Local(c) = provider else {
        return Err(zeroscale_core::registry::wrong_config(
            "local",
            provider.kind(),
        ));
    };
    let dir = crate::local_model_dir(config, &c.model, c.path.as_deref());
    Ok(crate::registry::BuiltProvider {
        embeddings: Some(Arc::new(LocalEmbeddings::with_options(
            name,
            &c.model,
            dir,
            LocalOptions {
                max_batch: c.max_batch,
                batch_window: Duration::from_millis(c.batch_window_ms),
                max_queue: c.max_queue,
                threads: c.threads,
            },
        ))),
        ..Default::default()
    })
}

/// The registry's probe for `kind = "local"`: the model's files are there.
pub(crate) fn probe<'a>(
    name: &'a str,
    config: &'a zeroscale_core::config::ModelsConfig,
    provider: &'a zeroscale_core::config::ProviderConfig,
) -> futures::future::BoxFuture<'a, Result<String>> {
    Box::pin(async move {
        let zeroscale_core::config::ProviderConfig::Local(c) = provider else {
            return Err(zeroscale_core::registry::wrong_config(
                "local",
                provider.kind(),
            ));
        };
        let dir = crate::local_model_dir(config, &c.model, c.path.as_deref());
        crate::check_local_model(name, &c.model, &dir)?;
        Ok(format!("local model {} in {}", c.model, dir.display()))
    })
}

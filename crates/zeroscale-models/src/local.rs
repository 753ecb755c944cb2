//! The local embedding provider: a sentence-transformers BERT model (all-MiniLM-L6-v2 by
//! default) run with candle on the CPU, doing what the model's own sentence-transformers
//! config says: tokenise with truncation at `max_seq_length`, pad the batch with an
//! attention mask, pool (mean over real tokens for MiniLM), L2-normalise when the model
//! has a `Normalize` module.
//!
//! The model is loaded once, on first use or by [`LocalEmbeddings::load`], and shared;
//! loading and inference run on the blocking thread pool. A missing model is reported as
//! unavailable with the command that installs it, and is looked for again on the next
//! call, so `cargo xtask models fetch` on a running server needs no restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig, DTYPE};
use serde::Deserialize;
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};
use tokio::sync::OnceCell;
use zeroscale_core::models::{EmbeddingProvider, EmbeddingRequest, EmbeddingResponse, Usage};
use zeroscale_core::{Error, Result};

const BACKEND: &str = "local model (candle)";

/// How token vectors become one sentence vector (`1_Pooling/config.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pooling {
    Mean,
    Cls,
    Max,
    MeanSqrtLen,
}

/// A model loaded in memory.
struct Loaded {
    model: BertModel,
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

/// The local embedding provider (`kind = "local"`); see the module docs.
#[derive(Debug)]
pub struct LocalEmbeddings {
    name: String,
    model_name: String,
    dir: PathBuf,
    max_batch: usize,
    loaded: OnceCell<Arc<Loaded>>,
}

impl LocalEmbeddings {
    /// A provider named `name` for the model `model_name` in folder `dir`, running at most
    /// `max_batch` texts per forward pass. Nothing is read until first use.
    pub fn new(
        name: impl Into<String>,
        model_name: impl Into<String>,
        dir: impl Into<PathBuf>,
        max_batch: usize,
    ) -> Self {
        LocalEmbeddings {
            name: name.into(),
            model_name: model_name.into(),
            dir: dir.into(),
            max_batch: max_batch.max(1),
            loaded: OnceCell::new(),
        }
    }

    /// The folder the model is read from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Loads the model now (it is otherwise loaded on first use).
    pub async fn load(&self) -> Result<()> {
        self.model().await.map(|_| ())
    }

    async fn model(&self) -> Result<Arc<Loaded>> {
        self.loaded
            .get_or_try_init(|| async {
                self.check_files()?;
                let dir = self.dir.clone();
                let started = std::time::Instant::now();
                let loaded = tokio::task::spawn_blocking(move || load_model(&dir))
                    .await
                    .map_err(|e| Error::backend(BACKEND, e))??;
                tracing::info!(
                    provider = %self.name,
                    model = %self.model_name,
                    dir = %self.dir.display(),
                    dimensions = loaded.dimensions,
                    max_seq_length = loaded.max_seq_length,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "local model loaded"
                );
                Ok(Arc::new(loaded))
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
        let loaded = self.model().await?;
        let max_batch = self.max_batch;
        let inputs = request.inputs;
        let (vectors, tokens) =
            tokio::task::spawn_blocking(move || embed_all(&loaded, &inputs, max_batch))
                .await
                .map_err(|e| Error::backend(BACKEND, e))??;
        let dimensions = vectors.first().map_or(0, Vec::len);
        Ok(EmbeddingResponse {
            model: self.model_name.clone(),
            vectors,
            dimensions,
            usage: Usage {
                prompt_tokens: tokens,
                total_tokens: tokens,
            },
        })
    }

    /// The model can serve: its files are installed (and verified). It is not loaded
    /// here: loading stays lazy (first use), so a readiness probe never costs a 90 MB load.
    async fn health(&self) -> Result<()> {
        self.check_files()
    }
}

fn candle_err(context: &str) -> impl Fn(candle_core::Error) -> Error + '_ {
    move |e| Error::backend(BACKEND, format!("{context}: {e}"))
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
    // overrides both, and so do we.
    tokenizer
        .with_truncation(Some(TruncationParams {
            max_length: max_seq_length,
            ..Default::default()
        }))
        .map_err(|e| Error::backend(BACKEND, format!("tokenizer truncation: {e}")))?;
    let pad_id = config.pad_token_id as u32;
    let pad_token = tokenizer
        .id_to_token(pad_id)
        .unwrap_or_else(|| "[PAD]".to_owned());
    tokenizer.with_padding(Some(PaddingParams {
        strategy: PaddingStrategy::BatchLongest,
        pad_id,
        pad_token,
        ..Default::default()
    }));

    let weights = dir.join("model.safetensors");
    // SAFETY: the weights are memory-mapped read-only. Mapping is unsafe only because
    // another process could change the file while it is mapped; the file is installed
    // atomically by `cargo xtask models fetch` (written beside, then renamed into place)
    // and never written afterwards, and docs/models.md says not to edit it in place.
    #[allow(unsafe_code)]
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DTYPE, &Device::Cpu) }
        .map_err(candle_err("model.safetensors cannot be mapped"))?;
    let model = BertModel::load(vb, &config).map_err(candle_err("the BERT weights"))?;
    Ok(Loaded {
        model,
        tokenizer,
        pooling,
        normalize,
        max_seq_length,
        dimensions: config.hidden_size,
    })
}

/// Embeds `inputs` in order, `max_batch` at a time; returns the vectors and the number of
/// real tokens seen.
fn embed_all(loaded: &Loaded, inputs: &[String], max_batch: usize) -> Result<(Vec<Vec<f32>>, u64)> {
    // Batch texts of similar length together so little compute goes to padding.
    let mut order: Vec<usize> = (0..inputs.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(inputs[i].len()));
    let mut vectors = vec![Vec::new(); inputs.len()];
    let mut tokens = 0;
    for chunk in order.chunks(max_batch) {
        let texts: Vec<&str> = chunk.iter().map(|&i| inputs[i].as_str()).collect();
        let (batch, seen) = embed_batch(loaded, &texts)?;
        tokens += seen;
        for (&i, vector) in chunk.iter().zip(batch) {
            vectors[i] = vector;
        }
    }
    Ok((vectors, tokens))
}

fn embed_batch(loaded: &Loaded, texts: &[&str]) -> Result<(Vec<Vec<f32>>, u64)> {
    let encodings = loaded
        .tokenizer
        .encode_batch(texts.to_vec(), true)
        .map_err(|e| Error::invalid_input(format!("the text cannot be tokenised: {e}")))?;
    let rows = encodings.len();
    let width = encodings.first().map_or(0, |e| e.get_ids().len());
    let mut ids = Vec::with_capacity(rows * width);
    let mut mask = Vec::with_capacity(rows * width);
    for encoding in &encodings {
        ids.extend_from_slice(encoding.get_ids());
        mask.extend_from_slice(encoding.get_attention_mask());
    }
    let tokens: u64 = mask.iter().map(|&m| u64::from(m)).sum();
    let device = &Device::Cpu;
    let err = candle_err("inference");
    let ids = Tensor::from_vec(ids, (rows, width), device).map_err(&err)?;
    let mask = Tensor::from_vec(mask, (rows, width), device).map_err(&err)?;
    let type_ids = ids.zeros_like().map_err(&err)?;
    let hidden = loaded
        .model
        .forward(&ids, &type_ids, Some(&mask))
        .map_err(&err)?;
    let pooled = pool(loaded.pooling, &hidden, &mask).map_err(&err)?;
    let pooled = if loaded.normalize {
        let norm = pooled
            .sqr()
            .and_then(|t| t.sum_keepdim(1))
            .and_then(|t| t.sqrt())
            .and_then(|t| t.clamp(1e-12, f32::MAX))
            .map_err(&err)?;
        pooled.broadcast_div(&norm).map_err(&err)?
    } else {
        pooled
    };
    let vectors = pooled.to_vec2::<f32>().map_err(&err)?;
    Ok((vectors, tokens))
}

/// Pools `hidden` (batch, tokens, dims) to (batch, dims), looking only at real tokens.
fn pool(pooling: Pooling, hidden: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
    let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
    match pooling {
        Pooling::Cls => hidden.narrow(1, 0, 1)?.squeeze(1),
        Pooling::Max => {
            // Padding positions get a very low value so they never win.
            let low = ((mask.ones_like()? - &mask)? * -1e9f64)?;
            hidden.broadcast_add(&low)?.max(1)
        }
        Pooling::Mean | Pooling::MeanSqrtLen => {
            let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
            let counts = mask.sum(1)?.clamp(1e-9, f32::MAX)?;
            let divisor = if pooling == Pooling::Mean {
                counts
            } else {
                counts.sqrt()?
            };
            summed.broadcast_div(&divisor)
        }
    }
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
        embeddings: Some(Arc::new(LocalEmbeddings::new(
            name,
            &c.model,
            dir,
            c.max_batch,
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

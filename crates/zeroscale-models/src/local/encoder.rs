//! A BERT encoder for sentence embeddings, on packed rows: the tokens of every sentence
//! in a batch one after the other, no padding. The linear layers are one matrix product
//! over all rows (candle's gemm, which picks AVX-512, AVX2/FMA or NEON kernels at run
//! time); attention runs per sentence over its own tokens, so no mask is needed and no
//! work goes to padding. The query, key and value projections are one product.
//!
//! The element-wise steps (bias, GELU, residual and layer norm) are fused into one pass
//! over each product's output (`kernels.rs`).

use std::path::Path;

use candle_core::{DType, Device, Storage, Tensor};
use serde::Deserialize;
use zeroscale_core::{Error, Result};

use super::kernels::{self, Activation, Heads, LayerNorm};
use super::{BACKEND, candle_err};

/// The fields of a BERT `config.json` the encoder uses.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct BertConfig {
    pub(crate) vocab_size: usize,
    pub(crate) hidden_size: usize,
    pub(crate) num_hidden_layers: usize,
    pub(crate) num_attention_heads: usize,
    pub(crate) intermediate_size: usize,
    pub(crate) hidden_act: String,
    pub(crate) max_position_embeddings: usize,
    #[serde(default = "one")]
    pub(crate) type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub(crate) layer_norm_eps: f64,
    #[serde(default = "absolute")]
    pub(crate) position_embedding_type: String,
}

fn one() -> usize {
    1
}

fn default_eps() -> f64 {
    1e-12
}

fn absolute() -> String {
    "absolute".to_owned()
}

/// A linear layer: `x · weight + bias` with `weight` stored `(in, out)`, contiguous.
#[derive(Debug)]
struct Linear {
    weight: Tensor,
    bias: Vec<f32>,
}

impl Linear {
    /// `x · weight` (without the bias, which the caller fuses into its next step).
    fn product(&self, x: &Tensor) -> Result<Tensor> {
        x.matmul(&self.weight).map_err(candle_err("matrix product"))
    }
}

#[derive(Debug)]
struct Layer {
    /// Query, key and value side by side: `(hidden, 3 · hidden)`.
    qkv: Linear,
    attention_out: Linear,
    attention_norm: LayerNorm,
    up: Linear,
    down: Linear,
    output_norm: LayerNorm,
}

/// The encoder's weights; see the module docs.
#[derive(Debug)]
pub(crate) struct Encoder {
    hidden: usize,
    heads: Heads,
    activation: Activation,
    max_positions: usize,
    /// `(vocab, hidden)`, `(positions, hidden)` and `(types, hidden)`, row-major.
    words: Vec<f32>,
    positions: Vec<f32>,
    types: Vec<f32>,
    embedding_norm: LayerNorm,
    layers: Vec<Layer>,
}

/// Calls `f` with the contents of a contiguous f32 CPU tensor, without copying them.
fn with_values<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else {
        return Err(Error::backend(
            BACKEND,
            "a tensor is not on the CPU".to_owned(),
        ));
    };
    let values = cpu.as_slice::<f32>().map_err(candle_err("tensor values"))?;
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| Error::backend(BACKEND, "a tensor is not contiguous".to_owned()))?;
    Ok(f(&values[start..end]))
}

fn to_tensor(values: Vec<f32>, rows: usize, cols: usize) -> Result<Tensor> {
    Tensor::from_vec(values, (rows, cols), &Device::Cpu).map_err(candle_err("tensor"))
}

/// The weights by name, read from a safetensors file; names may carry a `bert.` prefix.
struct Weights {
    tensors: std::collections::HashMap<String, Tensor>,
    file: String,
}

impl Weights {
    fn read(path: &Path) -> Result<Weights> {
        let bytes = std::fs::read(path)
            .map_err(|e| Error::unavailable_from(format!("cannot read {}", path.display()), e))?;
        let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
            .map_err(candle_err("model.safetensors cannot be read"))?;
        Ok(Weights {
            tensors,
            file: path.display().to_string(),
        })
    }

    /// The tensor `name` as f32 with `shape`.
    fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let t = self
            .tensors
            .get(name)
            .or_else(|| self.tensors.get(&format!("bert.{name}")))
            .ok_or_else(|| {
                Error::backend(
                    BACKEND,
                    format!("{} has no tensor `{name}`: is it a BERT model?", self.file),
                )
            })?;
        if t.dims() != shape {
            return Err(Error::backend(
                BACKEND,
                format!(
                    "{}: `{name}` has shape {:?}, config.json implies {shape:?}",
                    self.file,
                    t.dims()
                ),
            ));
        }
        t.to_dtype(DType::F32).map_err(candle_err(name))
    }

    fn vector(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        self.get(name, shape)?
            .flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(candle_err(name))
    }

    fn norm(&self, prefix: &str, width: usize, eps: f32) -> Result<LayerNorm> {
        Ok(LayerNorm {
            weight: self.vector(&format!("{prefix}.weight"), &[width])?,
            bias: self.vector(&format!("{prefix}.bias"), &[width])?,
            eps,
        })
    }

    /// The linear layers `prefixes` (each `(out, in)` in the file) as one `(in, Σ out)`.
    fn linear(&self, prefixes: &[&str], input: usize, output: usize) -> Result<Linear> {
        let mut weights = Vec::new();
        let mut bias = Vec::new();
        for prefix in prefixes {
            weights.push(self.get(&format!("{prefix}.weight"), &[output, input])?);
            bias.extend(self.vector(&format!("{prefix}.bias"), &[output])?);
        }
        let weight = Tensor::cat(&weights, 0)
            .and_then(|w| w.t())
            .and_then(|w| w.contiguous())
            .map_err(candle_err("linear weights"))?;
        Ok(Linear { weight, bias })
    }
}

impl Encoder {
    /// Reads the weights of a model described by `config` from `path` (safetensors).
    pub(crate) fn load(config: &BertConfig, path: &Path) -> Result<Encoder> {
        let unsupported = |what: String| {
            Err(Error::backend(
                BACKEND,
                format!("config.json: {what}; the local provider runs BERT encoders only"),
            ))
        };
        let activation = match config.hidden_act.as_str() {
            "gelu" => Activation::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" => Activation::GeluTanh,
            "relu" => Activation::Relu,
            other => return unsupported(format!("hidden_act `{other}` is not supported")),
        };
        if config.position_embedding_type != "absolute" {
            return unsupported(format!(
                "position_embedding_type `{}` is not supported",
                config.position_embedding_type
            ));
        }
        let hidden = config.hidden_size;
        if config.num_attention_heads == 0 || !hidden.is_multiple_of(config.num_attention_heads) {
            return unsupported(format!(
                "hidden_size {hidden} is not a multiple of num_attention_heads {}",
                config.num_attention_heads
            ));
        }
        let heads = Heads {
            count: config.num_attention_heads,
            size: hidden / config.num_attention_heads,
        };
        let eps = config.layer_norm_eps as f32;
        let w = Weights::read(path)?;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let p = format!("encoder.layer.{i}");
            let inter = config.intermediate_size;
            layers.push(Layer {
                qkv: w.linear(
                    &[
                        &format!("{p}.attention.self.query"),
                        &format!("{p}.attention.self.key"),
                        &format!("{p}.attention.self.value"),
                    ],
                    hidden,
                    hidden,
                )?,
                attention_out: w.linear(
                    &[&format!("{p}.attention.output.dense")],
                    hidden,
                    hidden,
                )?,
                attention_norm: w.norm(&format!("{p}.attention.output.LayerNorm"), hidden, eps)?,
                up: w.linear(&[&format!("{p}.intermediate.dense")], hidden, inter)?,
                down: w.linear(&[&format!("{p}.output.dense")], inter, hidden)?,
                output_norm: w.norm(&format!("{p}.output.LayerNorm"), hidden, eps)?,
            });
        }
        Ok(Encoder {
            hidden,
            heads,
            activation,
            max_positions: config.max_position_embeddings,
            words: w.vector(
                "embeddings.word_embeddings.weight",
                &[config.vocab_size, hidden],
            )?,
            positions: w.vector(
                "embeddings.position_embeddings.weight",
                &[config.max_position_embeddings, hidden],
            )?,
            types: w.vector(
                "embeddings.token_type_embeddings.weight",
                &[config.type_vocab_size, hidden],
            )?,
            embedding_norm: w.norm("embeddings.LayerNorm", hidden, eps)?,
            layers,
        })
    }

    /// The width of a token vector.
    pub(crate) fn hidden(&self) -> usize {
        self.hidden
    }

    /// Encodes packed sentences: `ids` and `types` hold every sentence's tokens one after
    /// the other, `lens` the sentences' token counts. Returns one `hidden`-wide row per token.
    pub(crate) fn forward(&self, ids: &[u32], types: &[u32], lens: &[usize]) -> Result<Vec<f32>> {
        let rows = ids.len();
        if lens.iter().sum::<usize>() != rows || types.len() != rows {
            return Err(Error::backend(
                BACKEND,
                "token ids, types and lengths disagree".to_owned(),
            ));
        }
        let hidden = self.hidden;
        let vocab = self.words.len() / hidden;
        let type_count = self.types.len() / hidden;
        // Embeddings: word + position + token type, then layer norm.
        let mut x = vec![0.0f32; rows * hidden];
        let mut row = 0;
        for &len in lens {
            if len > self.max_positions {
                return Err(Error::invalid_input(format!(
                    "a text of {len} tokens is longer than the model's {} positions",
                    self.max_positions
                )));
            }
            for position in 0..len {
                let id = ids[row] as usize;
                let kind = types[row] as usize;
                if id >= vocab || kind >= type_count {
                    return Err(Error::backend(
                        BACKEND,
                        format!("token {id} (type {kind}) is outside the model's vocabulary"),
                    ));
                }
                let out = &mut x[row * hidden..(row + 1) * hidden];
                let word = &self.words[id * hidden..(id + 1) * hidden];
                let pos = &self.positions[position * hidden..(position + 1) * hidden];
                let typ = &self.types[kind * hidden..(kind + 1) * hidden];
                for (((o, &a), &b), &c) in out.iter_mut().zip(word).zip(pos).zip(typ) {
                    *o = a + b + c;
                }
                row += 1;
            }
        }
        self.embedding_norm.rows(&mut x);
        let mut x = to_tensor(x, rows, hidden)?;
        for layer in &self.layers {
            x = self.layer(layer, &x, lens)?;
        }
        x.flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(candle_err("encoder output"))
    }

    fn layer(&self, layer: &Layer, x: &Tensor, lens: &[usize]) -> Result<Tensor> {
        let rows = x.dims()[0];
        let hidden = self.hidden;
        let qkv = layer.qkv.product(x)?;
        let context = with_values(&qkv, |qkv| {
            kernels::attention(qkv, &layer.qkv.bias, lens, self.heads)
        })?;
        drop(qkv);
        let attended = layer
            .attention_out
            .product(&to_tensor(context, rows, hidden)?)?;
        let x = with_values(&attended, |a| {
            with_values(x, |x| {
                layer
                    .attention_norm
                    .residual(a, &layer.attention_out.bias, x)
            })
        })??;
        let x = to_tensor(x, rows, hidden)?;
        let up = layer.up.product(&x)?;
        let up = with_values(&up, |u| {
            kernels::bias_activation(u, &layer.up.bias, self.activation)
        })?;
        let inter = layer.up.bias.len();
        let down = layer.down.product(&to_tensor(up, rows, inter)?)?;
        let out = with_values(&down, |d| {
            with_values(&x, |x| layer.output_norm.residual(d, &layer.down.bias, x))
        })??;
        to_tensor(out, rows, hidden)
    }
}

//! A BERT encoder for sentence embeddings, on packed rows: the tokens of every sentence
//! in a batch one after the other, no padding. The linear layers are one matrix product
//! over all rows (`small.rs`: weights packed in panels at load time, SIMD width picked
//! at run time); attention runs per sentence over its own tokens, so no mask is needed
//! and no work goes to padding. The query, key and value projections are one product.
//!
//! The element-wise steps (bias, GELU, residual and layer norm) are fused into one pass
//! over each product's output (`kernels.rs`).
//!
//! The layers run on every thread of the provider's pool at once (`lanes.rs`): each lane
//! computes the queries, keys, values and attention of its share of the heads, then its
//! share of the feed-forward columns, and the lanes add up their partial outputs twice a
//! layer, so a forward pass wakes the other threads once, not once per product.

use std::collections::HashMap;
use std::path::Path;

use safetensors::{Dtype, SafeTensors};
use serde::Deserialize;
use zeroscale_core::{Error, Result};

use super::BACKEND;
use super::kernels::{self, Activation, Heads, LayerNorm};
use super::lanes::{Lane, Lanes};
use super::small::{Out, Panels};

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

/// A linear layer: `x · weight + bias`, the weight packed for [`Panels::part`].
#[derive(Debug)]
struct Linear {
    weight: Panels,
    bias: Vec<f32>,
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

/// The weights by name, read from a safetensors file; names may carry a `bert.` prefix.
struct Weights {
    tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
    file: String,
}

/// The little-endian values of a tensor as f32.
fn to_f32(dtype: Dtype, bytes: &[u8]) -> Option<Vec<f32>> {
    Some(match dtype {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        _ => return None,
    })
}

impl Weights {
    fn read(path: &Path) -> Result<Weights> {
        let file = path.display().to_string();
        let bytes = std::fs::read(path)
            .map_err(|e| Error::unavailable_from(format!("cannot read {file}"), e))?;
        let parsed = SafeTensors::deserialize(&bytes).map_err(|e| {
            Error::backend(BACKEND, format!("{file} is not a safetensors file: {e}"))
        })?;
        let mut tensors = HashMap::new();
        for (name, view) in parsed.tensors() {
            // Integer tensors (position ids) are not weights.
            if let Some(values) = to_f32(view.dtype(), view.data()) {
                tensors.insert(name, (view.shape().to_vec(), values));
            }
        }
        Ok(Weights { tensors, file })
    }

    /// The values of tensor `name`, which must have `shape`.
    fn get(&self, name: &str, shape: &[usize]) -> Result<&[f32]> {
        let (dims, values) = self
            .tensors
            .get(name)
            .or_else(|| self.tensors.get(&format!("bert.{name}")))
            .ok_or_else(|| {
                Error::backend(
                    BACKEND,
                    format!(
                        "{} has no f32/f16/bf16 tensor `{name}`: is it a BERT model?",
                        self.file
                    ),
                )
            })?;
        if dims != shape {
            return Err(Error::backend(
                BACKEND,
                format!(
                    "{}: `{name}` has shape {dims:?}, config.json implies {shape:?}",
                    self.file
                ),
            ));
        }
        Ok(values)
    }

    fn vector(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        self.get(name, shape).map(<[f32]>::to_vec)
    }

    fn norm(&self, prefix: &str, width: usize, eps: f32) -> Result<LayerNorm> {
        Ok(LayerNorm {
            weight: self.vector(&format!("{prefix}.weight"), &[width])?,
            bias: self.vector(&format!("{prefix}.bias"), &[width])?,
            eps,
        })
    }

    /// The linear layers `prefixes` (each `(out, in)` in the file) side by side as one
    /// `(in, Σ out)` weight.
    fn linear(&self, prefixes: &[&str], input: usize, output: usize) -> Result<Linear> {
        let total = output * prefixes.len();
        let mut weight = vec![0.0f32; input * total];
        let mut bias = Vec::with_capacity(total);
        for (part, prefix) in prefixes.iter().enumerate() {
            let w = self.get(&format!("{prefix}.weight"), &[output, input])?;
            for (o, row) in w.chunks_exact(input).enumerate() {
                for (i, &v) in row.iter().enumerate() {
                    weight[i * total + part * output + o] = v;
                }
            }
            bias.extend(self.vector(&format!("{prefix}.bias"), &[output])?);
        }
        Ok(Linear {
            weight: Panels::pack(&weight, total),
            bias,
        })
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
        // Every thread of the pool runs the layers as a lane (see `lanes.rs`); all lanes
        // end with the same rows.
        let lanes = Lanes::new(rayon::current_num_threads());
        let mut outputs = rayon::broadcast(|context| {
            let lane = lanes.lane(context.index());
            let mut x = x.clone();
            for layer in &self.layers {
                x = self.layer(layer, &lane, &x, lens)?;
            }
            Some(x)
        });
        outputs
            .swap_remove(0)
            .ok_or_else(|| Error::backend(BACKEND, "a lane of the forward pass stopped".to_owned()))
    }

    /// One layer, this lane's share: the queries, keys and values of its heads and their
    /// attention; its heads' part of the attention output (summed with the other lanes');
    /// its share of the feed-forward columns and their part of the output (summed).
    fn layer(&self, layer: &Layer, lane: &Lane<'_>, x: &[f32], lens: &[usize]) -> Option<Vec<f32>> {
        let hidden = self.hidden;
        let rows = x.len() / hidden;
        let d = self.heads.size;
        let own = lane.share(self.heads.count);
        let cols = own.start * d..own.end * d;
        let width = cols.len();
        let mut qkv = vec![0.0f32; rows * 3 * width];
        for part in 0..3 {
            let from = part * hidden;
            let out = Out {
                y: &mut qkv,
                stride: 3 * width,
                at: part * width,
            };
            let columns = from + cols.start..from + cols.end;
            layer.qkv.weight.part_into(x, (columns, 0..hidden), out);
        }
        let context = kernels::attention(&qkv, &layer.qkv.bias, lens, self.heads, own);
        drop(qkv);
        let partial = layer
            .attention_out
            .weight
            .part(&context, rows, 0..hidden, cols);
        let attended = lane.sum(partial)?;
        let x = layer
            .attention_norm
            .residual(&attended, &layer.attention_out.bias, x);
        // The feed-forward columns, shared out by whole panels.
        let inter = layer.up.bias.len();
        let panel = layer.up.weight.width();
        let panels = lane.share(inter.div_ceil(panel));
        let share = (panels.start * panel).min(inter)..(panels.end * panel).min(inter);
        let up = layer.up.weight.part(&x, rows, share.clone(), 0..hidden);
        let up = kernels::bias_activation(&up, &layer.up.bias[share.clone()], self.activation);
        let partial = layer.down.weight.part(&up, rows, 0..hidden, share);
        let down = lane.sum(partial)?;
        Some(layer.output_norm.residual(&down, &layer.down.bias, &x))
    }
}

//! The element-wise and per-sentence arithmetic of the encoder, on packed rows (every
//! sentence's tokens one after the other, no padding): layer norm, GELU, softmax attention
//! and pooling. Written as plain loops without branches in the inner loops so the compiler
//! vectorises them, run through `pulp`'s dispatch so that happens for the widest SIMD the
//! CPU has (AVX-512, AVX2/FMA, NEON), chosen at run time: no CPU-specific build.
//! The matrix products are not here: see `small.rs`.

use std::ops::Range;

use pulp::{Arch, Simd, WithSimd};

/// `e^x` to within a few ulp, without a libm call so loops over it vectorise.
/// `x` is clamped to [-87, 88] (the range where `e^x` is a normal `f32`).
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    // e^x = 2^n · e^g with n = round(x·log2 e) and |g| ≤ ln2 / 2; g is computed with ln 2
    // split in two (Cody and Waite) so it keeps its precision when n is large.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.0, 88.0);
    // Adding and subtracting 1.5 · 2^23 rounds to the nearest integer in f32 arithmetic.
    const ROUND: f32 = 12_582_912.0;
    let t = x * std::f32::consts::LOG2_E + ROUND;
    let n = t - ROUND;
    let g = (x - n * LN2_HI) - n * LN2_LO;
    // Taylor series of e^g to degree 7: |g|^8 / 8! < 5e-9 for |g| ≤ 0.347.
    let p = 1.0
        + g * (1.0
            + g * (1.0 / 2.0
                + g * (1.0 / 6.0
                    + g * (1.0 / 24.0
                        + g * (1.0 / 120.0 + g * (1.0 / 720.0 + g * (1.0 / 5040.0)))))));
    // 2^n from its exponent bits, n + 127 in [1, 254] after the clamp. `t`'s low mantissa
    // bits hold n (1.5 · 2^23 has an ulp of 1), so integer arithmetic on its bits gives
    // the exponent without a float-to-int conversion, which would not vectorise.
    let biased = t.to_bits().wrapping_sub(ROUND.to_bits()).wrapping_add(127);
    let scale = f32::from_bits(biased << 23);
    p * scale
}

/// The error function to within 1.5e-7 (Abramowitz and Stegun, formula 7.1.26).
#[inline(always)]
pub(crate) fn erf(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_72,
        1.421_413_8,
        -1.453_152_1,
        1.061_405_4,
    ];
    let z = x.abs();
    let t = 1.0 / (1.0 + P * z);
    let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
    let y = 1.0 - poly * exp(-z * z);
    y.copysign(x)
}

/// The activation between the two feed-forward products.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Activation {
    /// `x · Φ(x)` with the exact normal CDF (BERT's `gelu`).
    Gelu,
    /// The tanh approximation (`gelu_new`, `gelu_pytorch_tanh`).
    GeluTanh,
    Relu,
}

/// `out[r, c] = act(x[r, c] + bias[c])` for every row of `x` (row length `bias.len()`).
pub(crate) fn bias_activation(x: &[f32], bias: &[f32], act: Activation) -> Vec<f32> {
    let mut out = vec![0.0f32; x.len()];
    Arch::new().dispatch(Activate {
        out: &mut out,
        x,
        bias,
        act,
    });
    out
}

/// [`bias_activation`] on some rows, compiled for the SIMD `pulp` picked.
struct Activate<'a> {
    out: &'a mut [f32],
    x: &'a [f32],
    bias: &'a [f32],
    act: Activation,
}

impl WithSimd for Activate<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) {
        let Activate { out, x, bias, act } = self;
        let width = bias.len();
        for (out, x) in out.chunks_exact_mut(width).zip(x.chunks_exact(width)) {
            match act {
                Activation::Gelu => {
                    for ((o, &v), &b) in out.iter_mut().zip(x).zip(bias) {
                        let v = v + b;
                        *o = 0.5 * v * (1.0 + erf(v * std::f32::consts::FRAC_1_SQRT_2));
                    }
                }
                Activation::GeluTanh => {
                    const C: f32 = 0.797_884_6; // sqrt(2 / pi)
                    for ((o, &v), &b) in out.iter_mut().zip(x).zip(bias) {
                        let v = v + b;
                        let u = C * (v + 0.044_715 * v * v * v);
                        // tanh(u) = 1 - 2 / (e^{2u} + 1)
                        let tanh = 1.0 - 2.0 / (exp(2.0 * u) + 1.0);
                        *o = 0.5 * v * (1.0 + tanh);
                    }
                }
                Activation::Relu => {
                    for ((o, &v), &b) in out.iter_mut().zip(x).zip(bias) {
                        *o = (v + b).max(0.0);
                    }
                }
            }
        }
    }
}

/// A layer norm's parameters.
#[derive(Debug)]
pub(crate) struct LayerNorm {
    pub(crate) weight: Vec<f32>,
    pub(crate) bias: Vec<f32>,
    pub(crate) eps: f32,
}

impl LayerNorm {
    /// Normalises one row in place.
    #[inline(always)]
    fn row(&self, row: &mut [f32]) {
        let n = row.len() as f32;
        let mean = row.iter().sum::<f32>() / n;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
        let inv = 1.0 / (var + self.eps).sqrt();
        for ((v, &w), &b) in row.iter_mut().zip(&self.weight).zip(&self.bias) {
            *v = (*v - mean) * inv * w + b;
        }
    }

    /// Normalises every row of `x` in place.
    pub(crate) fn rows(&self, x: &mut [f32]) {
        Arch::new().dispatch(Normalise {
            norm: self,
            out: x,
            add: None,
        });
    }

    /// `LayerNorm(x + bias + residual)` row by row: a projection's output joined back to
    /// the stream it branched from.
    pub(crate) fn residual(&self, x: &[f32], bias: &[f32], residual: &[f32]) -> Vec<f32> {
        let mut out = x.to_vec();
        Arch::new().dispatch(Normalise {
            norm: self,
            out: &mut out,
            add: Some((bias, residual)),
        });
        out
    }
}

/// Layer norm of some rows in place, after adding a bias and a residual when given;
/// compiled for the SIMD `pulp` picked.
struct Normalise<'a> {
    norm: &'a LayerNorm,
    out: &'a mut [f32],
    add: Option<(&'a [f32], &'a [f32])>,
}

impl WithSimd for Normalise<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) {
        let Normalise { norm, out, add } = self;
        let width = norm.weight.len();
        match add {
            Some((bias, residual)) => {
                for (out, residual) in out
                    .chunks_exact_mut(width)
                    .zip(residual.chunks_exact(width))
                {
                    for ((o, &b), &r) in out.iter_mut().zip(bias).zip(residual) {
                        *o += b + r;
                    }
                    norm.row(out);
                }
            }
            None => {
                for row in out.chunks_exact_mut(width) {
                    norm.row(row);
                }
            }
        }
    }
}

/// The shape of multi-head attention.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Heads {
    pub(crate) count: usize,
    pub(crate) size: usize,
}

impl Heads {
    fn hidden(self) -> usize {
        self.count * self.size
    }
}

/// Self-attention of each sentence over its own tokens, for the heads `own` (a lane's
/// share). `qkv` holds, per packed row, those heads' queries, then their keys, then their
/// values (before `bias`, which is the whole layer's: queries, keys, values of every
/// head); `lens` are the sentences' token counts in row order. Returns the attended rows,
/// the heads `own` side by side.
pub(crate) fn attention(
    qkv: &[f32],
    bias: &[f32],
    lens: &[usize],
    heads: Heads,
    own: Range<usize>,
) -> Vec<f32> {
    let width = own.len() * heads.size;
    let rows: usize = lens.iter().sum();
    let mut out = vec![0.0f32; rows * width];
    let mut start = 0;
    for &len in lens {
        for h in own.clone() {
            let values = Arch::new().dispatch(Head {
                qkv,
                bias,
                start,
                len,
                h,
                first: own.start,
                width,
                heads,
            });
            let col = (h - own.start) * heads.size;
            for (i, values) in values.chunks_exact(heads.size).enumerate() {
                let at = (start + i) * width + col;
                out[at..at + heads.size].copy_from_slice(values);
            }
        }
        start += len;
    }
    out
}

/// One head of one sentence, compiled for the SIMD `pulp` picked.
struct Head<'a> {
    qkv: &'a [f32],
    bias: &'a [f32],
    start: usize,
    len: usize,
    /// The head, and the first of the heads in `qkv`, which are `width` columns wide.
    h: usize,
    first: usize,
    width: usize,
    heads: Heads,
}

impl WithSimd for Head<'_> {
    type Output = Vec<f32>;

    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) -> Vec<f32> {
        head(&self)
    }
}

/// One head of one sentence: `len` rows from `start`; returns `len × heads.size` values.
#[inline(always)]
fn head(at: &Head<'_>) -> Vec<f32> {
    let &Head {
        qkv,
        bias,
        start,
        len,
        h,
        first,
        width,
        heads,
    } = at;
    let hidden = heads.hidden();
    let d = heads.size;
    let scale = 1.0 / (d as f32).sqrt();
    // Gather this head's queries, keys and values (with their biases) contiguously.
    let gather = |part: usize, factor: f32| -> Vec<f32> {
        let col = part * width + (h - first) * d;
        let b = &bias[part * hidden + h * d..part * hidden + (h + 1) * d];
        let mut m = Vec::with_capacity(len * d);
        for row in start..start + len {
            let at = row * 3 * width + col;
            m.extend(qkv[at..at + d].iter().zip(b).map(|(v, b)| (v + b) * factor));
        }
        m
    };
    let q = gather(0, scale);
    let k = gather(1, 1.0);
    let v = gather(2, 1.0);
    let mut out = vec![0.0f32; len * d];
    let mut scores = vec![0.0f32; len];
    for (qi, oi) in q.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        for (s, kj) in scores.iter_mut().zip(k.chunks_exact(d)) {
            *s = qi.iter().zip(kj).map(|(a, b)| a * b).sum();
        }
        let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut total = 0.0;
        for s in scores.iter_mut() {
            *s = exp(*s - max);
            total += *s;
        }
        let inv = 1.0 / total;
        for (&p, vj) in scores.iter().zip(v.chunks_exact(d)) {
            let p = p * inv;
            for (o, &x) in oi.iter_mut().zip(vj) {
                *o += p * x;
            }
        }
    }
    out
}

/// How token vectors become one sentence vector (`1_Pooling/config.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pooling {
    Mean,
    Cls,
    Max,
    MeanSqrtLen,
}

/// Pools the packed `hidden` rows (width `dims`) of each sentence to one vector,
/// L2-normalised when `normalize`.
pub(crate) fn pool(
    hidden: &[f32],
    dims: usize,
    lens: &[usize],
    pooling: Pooling,
    normalize: bool,
) -> Vec<Vec<f32>> {
    let mut vectors = Vec::with_capacity(lens.len());
    let mut at = 0;
    for &len in lens {
        let rows = &hidden[at * dims..(at + len) * dims];
        at += len;
        let mut v = match pooling {
            Pooling::Cls => rows[..dims].to_vec(),
            Pooling::Max => {
                let mut v = vec![f32::NEG_INFINITY; dims];
                for row in rows.chunks_exact(dims) {
                    for (m, &x) in v.iter_mut().zip(row) {
                        *m = m.max(x);
                    }
                }
                v
            }
            Pooling::Mean | Pooling::MeanSqrtLen => {
                let mut v = vec![0.0f32; dims];
                for row in rows.chunks_exact(dims) {
                    for (m, &x) in v.iter_mut().zip(row) {
                        *m += x;
                    }
                }
                let n = len.max(1) as f32;
                let divisor = if pooling == Pooling::Mean {
                    n
                } else {
                    n.sqrt()
                };
                v.iter_mut().for_each(|x| *x /= divisor);
                v
            }
        };
        if normalize {
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
            v.iter_mut().for_each(|x| *x /= norm);
        }
        vectors.push(v);
    }
    vectors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_std_across_the_range() {
        let mut worst = 0.0f32;
        let mut x = -80.0f32;
        while x < 80.0 {
            let rel = ((exp(x) - x.exp()) / x.exp()).abs();
            worst = worst.max(rel);
            x += 0.013;
        }
        assert!(worst < 1e-6, "worst relative error {worst}");
        assert!((0.0..1e-37).contains(&exp(-1000.0)));
        assert!(exp(1000.0).is_finite());
    }

    #[test]
    fn erf_matches_known_values() {
        // erf(0.5), erf(1), erf(2) and an odd-symmetry check.
        for (x, want) in [
            (0.0f32, 0.0f32),
            (0.5, 0.520_499_9),
            (1.0, 0.842_700_8),
            (2.0, 0.995_322_3),
            (-1.0, -0.842_700_8),
            (6.0, 1.0),
        ] {
            assert!((erf(x) - want).abs() < 3e-7, "erf({x}) = {}", erf(x));
        }
    }

    #[test]
    fn layer_norm_gives_zero_mean_unit_variance() {
        let ln = LayerNorm {
            weight: vec![1.0; 4],
            bias: vec![0.0; 4],
            eps: 1e-12,
        };
        let mut x = vec![1.0, 2.0, 3.0, 4.0, 10.0, 10.0, 10.0, 14.0];
        ln.rows(&mut x);
        for row in x.chunks(4) {
            let mean: f32 = row.iter().sum::<f32>() / 4.0;
            let var: f32 = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / 4.0;
            assert!(mean.abs() < 1e-6 && (var - 1.0).abs() < 1e-5, "{row:?}");
        }
    }

    #[test]
    fn attention_of_one_token_returns_its_value() {
        // One sentence of one token, one head of size 2: softmax over one key is 1.
        let heads = Heads { count: 1, size: 2 };
        let qkv = [0.3, -0.2, 0.5, 0.1, 7.0, -3.0];
        let bias = [0.0, 0.0, 0.0, 0.0, 1.0, 1.0];
        assert_eq!(attention(&qkv, &bias, &[1], heads, 0..1), vec![8.0, -2.0]);
    }

    #[test]
    fn attention_keeps_sentences_apart() {
        // Two sentences of one token each: neither sees the other's value.
        let heads = Heads { count: 1, size: 1 };
        let qkv = [1.0, 1.0, 5.0, 1.0, 1.0, -5.0];
        let out = attention(&qkv, &[0.0; 3], &[1, 1], heads, 0..1);
        assert_eq!(out, vec![5.0, -5.0]);
    }

    #[test]
    fn a_share_of_the_heads_matches_those_heads_of_all() {
        // Two heads of size 1, one sentence of three tokens; rows are q0 q1 k0 k1 v0 v1.
        let heads = Heads { count: 2, size: 1 };
        let all: Vec<f32> = (0..18)
            .map(|i| ((i * 37 % 11) as f32 - 5.0) / 4.0)
            .collect();
        let bias = [0.1, -0.2, 0.3, 0.05, 1.0, -1.0];
        let whole = attention(&all, &bias, &[3], heads, 0..2);
        for h in 0..2 {
            // Only head h's columns: q_h k_h v_h per row.
            let share: Vec<f32> = all
                .chunks_exact(6)
                .flat_map(|row| [row[h], row[2 + h], row[4 + h]])
                .collect();
            let got = attention(&share, &bias, &[3], heads, h..h + 1);
            let want: Vec<f32> = whole.chunks_exact(2).map(|row| row[h]).collect();
            assert_eq!(got, want, "head {h}");
        }
    }

    #[test]
    fn mean_pooling_averages_each_sentences_rows() {
        let hidden = [1.0, 0.0, 3.0, 0.0, 0.0, 2.0];
        let v = pool(&hidden, 2, &[2, 1], Pooling::Mean, false);
        assert_eq!(v, vec![vec![2.0, 0.0], vec![0.0, 2.0]]);
        let n = pool(&hidden, 2, &[2, 1], Pooling::Mean, true);
        assert_eq!(n, vec![vec![1.0, 0.0], vec![0.0, 1.0]]);
    }
}

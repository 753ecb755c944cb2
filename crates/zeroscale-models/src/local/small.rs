//! The matrix product for a few rows (one short sentence): `x · w` with `x` of `rows × k`
//! row-major and `w` packed at load time into panels of a few columns ([`Panels`]). gemm
//! tiles rows by 48 or 64 on AVX-512, so 20 rows would leave most of each tile idle and
//! its weight reads stride across pages; here six rows at a time meet one panel read
//! front to back, so nothing is padded and the weight streams from memory. The SIMD width
//! is chosen at run time (`pulp`: AVX-512, AVX2/FMA, NEON or scalar), never at build time.
//! Panels are shared between threads.

use pulp::{Arch, Simd, WithSimd};
use rayon::prelude::*;

/// Rows computed together against one pass over a panel.
const ROWS: usize = 6;

/// Tasks per thread a product is split into: a few, so a thread that finishes early
/// steals work, but few fork-joins.
const TASKS_PER_THREAD: usize = 2;

/// A `k × n` weight stored as panels of `width` columns (two SIMD vectors of this CPU),
/// each panel `k × width` row-major and contiguous; the last panel is padded with zeros.
#[derive(Debug)]
pub(crate) struct Panels {
    values: Vec<f32>,
    k: usize,
    n: usize,
    width: usize,
}

struct Lanes;

impl WithSimd for Lanes {
    type Output = usize;

    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) -> usize {
        S::F32_LANES
    }
}

impl Panels {
    /// Packs the row-major `k × n` matrix `w` for this CPU's SIMD width.
    pub(crate) fn pack(w: &[f32], n: usize) -> Panels {
        Panels::pack_width(w, n, 2 * Arch::new().dispatch(Lanes))
    }

    /// Packs `w` in panels of `width` columns (twice the SIMD lanes that will run it).
    fn pack_width(w: &[f32], n: usize, width: usize) -> Panels {
        let k = w.len() / n.max(1);
        let count = n.div_ceil(width);
        let mut values = vec![0.0f32; count * k * width];
        for (j, panel) in values.chunks_exact_mut(k * width).enumerate() {
            let from = j * width;
            let cols = width.min(n - from);
            for (p, row) in panel.chunks_exact_mut(width).enumerate() {
                row[..cols].copy_from_slice(&w[p * n + from..p * n + from + cols]);
            }
        }
        Panels {
            values,
            k,
            n,
            width,
        }
    }

    /// `x · w` for `rows` rows of `x`, row-major `rows × n`.
    pub(crate) fn product(&self, x: &[f32], rows: usize) -> Vec<f32> {
        self.product_by(x, rows, |panel| Arch::new().dispatch(panel))
    }

    /// [`Panels::product`] with each panel run by `run` (a SIMD dispatch).
    fn product_by(&self, x: &[f32], rows: usize, run: impl Fn(Panel<'_>) + Sync) -> Vec<f32> {
        let (k, n, width) = (self.k, self.n, self.width);
        debug_assert_eq!(x.len(), rows * k);
        let panel = k * width;
        let panels = self.values.len() / panel.max(1);
        let per_task = panels
            .div_ceil(TASKS_PER_THREAD * rayon::current_num_threads())
            .max(1);
        let blocks: Vec<Vec<f32>> = self
            .values
            .par_chunks(panel * per_task)
            .map(|panels| {
                let count = panels.len() / panel;
                let mut out = vec![0.0f32; count * rows * width];
                for (w, out) in panels
                    .chunks_exact(panel)
                    .zip(out.chunks_exact_mut(rows * width))
                {
                    run(Panel { x, rows, k, w, out });
                }
                out
            })
            .collect();
        let mut y = vec![0.0f32; rows * n];
        let mut j = 0;
        for block in &blocks {
            for part in block.chunks_exact(rows * width) {
                let from = j * width;
                let cols = width.min(n - from);
                for (r, values) in part.chunks_exact(width).enumerate() {
                    y[r * n + from..r * n + from + cols].copy_from_slice(&values[..cols]);
                }
                j += 1;
            }
        }
        y
    }
}

/// One panel's product: `out` (`rows × width`) = `x` (`rows × k`) · `w` (`k × width`).
struct Panel<'a> {
    x: &'a [f32],
    rows: usize,
    k: usize,
    w: &'a [f32],
    out: &'a mut [f32],
}

impl WithSimd for Panel<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let Panel { x, rows, k, w, out } = self;
        let mut r = 0;
        while r < rows {
            match rows - r {
                1 => tile::<S, 1>(simd, x, r, k, w, out),
                2 => tile::<S, 2>(simd, x, r, k, w, out),
                3 => tile::<S, 3>(simd, x, r, k, w, out),
                4 => tile::<S, 4>(simd, x, r, k, w, out),
                5 => tile::<S, 5>(simd, x, r, k, w, out),
                _ => tile::<S, ROWS>(simd, x, r, k, w, out),
            }
            r += ROWS;
        }
    }
}

/// Rows `r..r + R` of `x` times the panel `w`, into the same rows of `out`.
#[inline(always)]
fn tile<S: Simd, const R: usize>(
    simd: S,
    x: &[f32],
    r: usize,
    k: usize,
    w: &[f32],
    out: &mut [f32],
) {
    let width = 2 * S::F32_LANES;
    let zero = simd.splat_f32s(0.0);
    let mut acc = [[zero; 2]; R];
    let xs: [&[f32]; R] = std::array::from_fn(|i| &x[(r + i) * k..(r + i + 1) * k]);
    let (panel, _) = S::as_simd_f32s(&w[..k * width]);
    for (p, pair) in panel.chunks_exact(2).enumerate() {
        for i in 0..R {
            let xv = simd.splat_f32s(xs[i][p]);
            acc[i][0] = simd.mul_add_f32s(xv, pair[0], acc[i][0]);
            acc[i][1] = simd.mul_add_f32s(xv, pair[1], acc[i][1]);
        }
    }
    for (i, acc) in acc.iter().enumerate() {
        let start = (r + i) * width;
        let (dst, _) = S::as_mut_simd_f32s(&mut out[start..start + width]);
        dst[0] = acc[0];
        dst[1] = acc[1];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(x: &[f32], rows: usize, w: &[f32], n: usize) -> Vec<f32> {
        let k = w.len() / n;
        let mut y = vec![0.0; rows * n];
        for r in 0..rows {
            for c in 0..n {
                y[r * n + c] = (0..k).map(|p| x[r * k + p] * w[p * n + c]).sum();
            }
        }
        y
    }

    #[test]
    fn equals_the_naive_product_for_every_shape() {
        let value = |i: usize| ((i * 7919 % 257) as f32 - 128.0) / 64.0;
        for (rows, k, n) in [
            (1, 3, 5),
            (5, 16, 64),
            (7, 33, 100),
            (25, 384, 1152),
            (4, 8, 200),
        ] {
            let x: Vec<f32> = (0..rows * k).map(value).collect();
            let w: Vec<f32> = (0..k * n).map(|i| value(i + 11)).collect();
            let want = naive(&x, rows, &w, n);
            let check = |got: Vec<f32>, path: &str| {
                for (g, e) in got.iter().zip(&want) {
                    assert!(
                        (g - e).abs() <= 1e-3 * (1.0 + e.abs()),
                        "{path} {rows}×{k}×{n}: {g} vs {e}"
                    );
                }
            };
            // What this CPU runs, and every narrower path CI's CPUs may take.
            check(Panels::pack(&w, n).product(&x, rows), "dispatched");
            let scalar = pulp::Scalar::new();
            check(
                Panels::pack_width(&w, n, 2).product_by(&x, rows, |p| Simd::vectorize(scalar, p)),
                "scalar",
            );
            #[cfg(target_arch = "x86_64")]
            if let Some(v3) = pulp::x86::V3::try_new() {
                check(
                    Panels::pack_width(&w, n, 16).product_by(&x, rows, |p| Simd::vectorize(v3, p)),
                    "AVX2",
                );
            }
        }
    }
}

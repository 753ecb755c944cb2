//! The matrix product for a few rows (one short sentence): `x · w` with `x` of `rows × k`
//! row-major and `w` packed at load time into panels of a few columns ([`Panels`]). gemm
//! tiles rows by 48 or 64 on AVX-512, so 20 rows would leave most of each tile idle and
//! its weight reads stride across pages; here six rows at a time meet one panel read
//! front to back, so nothing is padded and the weight streams from memory. The SIMD width
//! is chosen at run time (`pulp`: AVX-512, AVX2/FMA, NEON or scalar), never at build time.
//! Panels are shared between threads: each lane of a forward pass computes its own
//! columns, or its own share of the inner dimension ([`Panels::part`]).

use std::ops::Range;

use pulp::{Arch, Simd, WithSimd};

/// Rows computed together against one pass over a panel.
const ROWS: usize = 6;

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

    /// The width of a panel: a share of the columns that starts on a multiple of it
    /// computes no column twice.
    pub(crate) fn width(&self) -> usize {
        self.width
    }

    /// The columns `cols` of `x · w[ks, ..]` on this thread alone: `x` is `rows ×
    /// ks.len()` (the rows `ks` of the weight are its inner dimension), the result `rows ×
    /// cols.len()` row-major. A lane of [`super::lanes`] computes its share of a product
    /// with this: some of the columns, or (with `ks`) a partial sum over some of the
    /// inner dimension.
    pub(crate) fn part(
        &self,
        x: &[f32],
        rows: usize,
        cols: Range<usize>,
        ks: Range<usize>,
    ) -> Vec<f32> {
        let mut y = vec![0.0f32; rows * cols.len()];
        let stride = cols.len();
        self.part_into(
            x,
            (cols, ks),
            Out {
                y: &mut y,
                stride,
                at: 0,
            },
        );
        y
    }

    /// [`Panels::part`] of `x` for the columns and inner rows `(cols, ks)`, written into
    /// `out`; the rows of `x` are as many as `out`'s.
    pub(crate) fn part_into(
        &self,
        x: &[f32],
        (cols, ks): (Range<usize>, Range<usize>),
        out: Out<'_>,
    ) {
        self.part_by(x, (cols, ks), out, |panel| {
            Arch::new().dispatch(panel);
        });
    }

    /// [`Panels::part_into`] with each panel run by `run` (a SIMD dispatch).
    fn part_by(
        &self,
        x: &[f32],
        (cols, ks): (Range<usize>, Range<usize>),
        Out { y, stride, at }: Out<'_>,
        run: impl Fn(Panel<'_>),
    ) {
        if cols.is_empty() {
            return;
        }
        let (width, k) = (self.width, ks.len());
        assert!(at + cols.len() <= stride, "a part wider than its output");
        let rows = y.len() / stride;
        assert!(
            cols.end <= self.n && ks.end <= self.k,
            "a part outside the weight"
        );
        assert_eq!(x.len(), rows * k, "the input is not rows × ks");
        if k == 0 {
            for row in y.chunks_exact_mut(stride).take(rows) {
                row[at..at + cols.len()].fill(0.0);
            }
            return;
        }
        let panel = self.k * width;
        let mut block = vec![0.0f32; rows * width];
        for j in cols.start / width..cols.end.div_ceil(width) {
            let w = &self.values[j * panel + ks.start * width..j * panel + ks.end * width];
            run(Panel {
                x,
                rows,
                k,
                w,
                out: &mut block,
            });
            // The columns of this panel inside `cols`, relative to the panel and to `cols`.
            let (from, to) = ((j * width).max(cols.start), ((j + 1) * width).min(cols.end));
            let (src, dst) = (from - j * width, at + from - cols.start);
            for (values, row) in block.chunks_exact(width).zip(y.chunks_exact_mut(stride)) {
                row[dst..dst + to - from].copy_from_slice(&values[src..src + to - from]);
            }
        }
    }
}

/// Where a part of a product goes: `y`, row-major with rows `stride` wide, from column
/// `at` of each row.
pub(crate) struct Out<'a> {
    pub(crate) y: &'a mut [f32],
    pub(crate) stride: usize,
    pub(crate) at: usize,
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

    /// The whole product, put together from parts the way lanes compute them: three
    /// column shares (not on panel boundaries), each the sum of two shares of the inner
    /// dimension.
    fn full(panels: &Panels, x: &[f32], rows: usize, run: &dyn Fn(Panel<'_>)) -> Vec<f32> {
        let (k, n) = (panels.k, panels.n);
        let mut y = vec![0.0f32; rows * n];
        let (a, b) = (n / 3, 2 * n / 3 + 1);
        let split = k / 2;
        for cols in [0..a, a..b.min(n), b.min(n)..n] {
            for ks in [0..split, split..k] {
                let xs: Vec<f32> = x
                    .chunks_exact(k)
                    .flat_map(|r| r[ks.clone()].to_vec())
                    .collect();
                let mut part = vec![0.0f32; rows * n];
                let out = Out {
                    y: &mut part,
                    stride: n,
                    at: cols.start,
                };
                panels.part_by(&xs, (cols.clone(), ks), out, run);
                for (y, p) in y.iter_mut().zip(&part) {
                    *y += p;
                }
            }
        }
        y
    }

    #[test]
    fn parts_make_the_naive_product_for_every_shape() {
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
            check(
                full(&Panels::pack(&w, n), &x, rows, &|p| Arch::new().dispatch(p)),
                "dispatched",
            );
            let scalar = pulp::Scalar::new();
            check(
                full(&Panels::pack_width(&w, n, 2), &x, rows, &|p| {
                    Simd::vectorize(scalar, p);
                }),
                "scalar",
            );
            #[cfg(target_arch = "x86_64")]
            if let Some(v3) = pulp::x86::V3::try_new() {
                check(
                    full(&Panels::pack_width(&w, n, 16), &x, rows, &|p| {
                        Simd::vectorize(v3, p);
                    }),
                    "AVX2",
                );
            }
        }
    }
}

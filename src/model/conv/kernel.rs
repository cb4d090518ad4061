//! The convolution block's arithmetic on plain `f32` slices (NCHW, contiguous): a 3×3,
//! stride-1, padding-1 convolution with bias, ReLU and a 2×2 max-pool, forward and backward.
//!
//! Per image: the input's 3×3 neighbourhoods as columns (`im2col`, `[in·9, h·w]`), one matrix
//! product with the weight (`[out, in·9]`), then bias, ReLU and pooling in one pass that keeps,
//! for each pooled value, which of its four inputs won (or that ReLU closed it). The backward
//! routes the output gradient through those codes and takes the weight gradient and the input
//! gradient as two more matrix products. Images run in parallel on rayon's pool (the one burn's
//! flex backend uses); each matrix product is single-threaded.

use rayon::prelude::*;

/// Images per parallel job of the backward.
const CHUNK: usize = 8;

/// The pooled value came from none of its window: every input was ≤ 0, so ReLU closed it.
pub const CLOSED: u8 = 4;

/// The sizes of one block's work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dims {
    pub batch: usize,
    pub c_in: usize,
    pub c_out: usize,
    /// Input height and width; both even.
    pub h: usize,
    pub w: usize,
}

impl Dims {
    fn plane(&self) -> usize {
        self.h * self.w
    }
    fn rows(&self) -> usize {
        self.c_in * 9
    }
    /// Elements of one image's pooled output.
    pub fn pooled(&self) -> usize {
        self.c_out * (self.h / 2) * (self.w / 2)
    }
    /// Elements of one input image.
    pub fn image(&self) -> usize {
        self.c_in * self.plane()
    }
}

/// `cols[(c·9 + ki·3 + kj), i·w + j] = x[c, i + ki − 1, j + kj − 1]`, zero outside the image.
/// Each of the nine shifted copies is one copy of the whole plane (less a row of padding for
/// ki ≠ 1), then a column of zeros where a horizontal shift ran into the next or previous row:
/// one large copy instead of `h` short ones (the short ones were most of im2col's time).
fn im2col(x: &[f32], d: &Dims, cols: &mut [f32]) {
    let (w, n) = (d.w, d.plane());
    for c in 0..d.c_in {
        let plane = &x[c * n..(c + 1) * n];
        for k in 0..9 {
            let (ki, kj) = (k / 3, k % 3);
            let row = &mut cols[(c * 9 + k) * n..(c * 9 + k + 1) * n];
            // Output row i reads input row i + ki − 1: the first output row is padding for
            // ki = 0, the last for ki = 2.
            let (dst, src) = match ki {
                0 => {
                    let (pad, dst) = row.split_at_mut(w);
                    pad.fill(0.0);
                    (dst, &plane[..n - w])
                }
                1 => (row, plane),
                _ => {
                    let (dst, pad) = row.split_at_mut(n - w);
                    pad.fill(0.0);
                    (dst, &plane[w..])
                }
            };
            let len = dst.len();
            match kj {
                0 => {
                    dst[1..].copy_from_slice(&src[..len - 1]);
                    dst.chunks_exact_mut(w).for_each(|r| r[0] = 0.0);
                }
                1 => dst.copy_from_slice(src),
                _ => {
                    dst[..len - 1].copy_from_slice(&src[1..]);
                    dst.chunks_exact_mut(w).for_each(|r| r[w - 1] = 0.0);
                }
            }
        }
    }
}

/// The adjoint of [`im2col`]: adds each column entry back onto the input position it came from.
fn col2im_add(cols: &[f32], d: &Dims, dx: &mut [f32]) {
    let (h, w) = (d.h, d.w);
    for c in 0..d.c_in {
        let plane = &mut dx[c * h * w..(c + 1) * h * w];
        for k in 0..9 {
            let (ki, kj) = (k / 3, k % 3);
            let row = &cols[(c * 9 + k) * h * w..(c * 9 + k + 1) * h * w];
            for i in 0..h {
                let Some(si) = (i + ki).checked_sub(1).filter(|&si| si < h) else {
                    continue;
                };
                let src = &row[i * w..(i + 1) * w];
                let dst = &mut plane[si * w..(si + 1) * w];
                let (dst, src) = match kj {
                    0 => (&mut dst[..w - 1], &src[1..]),
                    1 => (&mut dst[..], src),
                    _ => (&mut dst[1..], &src[..w - 1]),
                };
                for (a, b) in dst.iter_mut().zip(src) {
                    *a += b;
                }
            }
        }
    }
}

/// A strided `[m, k] · [k, n]` matrix operand: the slice and its row and column strides.
#[derive(Clone, Copy)]
struct Operand<'a> {
    data: &'a [f32],
    row_stride: usize,
    col_stride: usize,
}

impl<'a> Operand<'a> {
    fn rows(data: &'a [f32], width: usize) -> Self {
        Self {
            data,
            row_stride: width,
            col_stride: 1,
        }
    }
    /// The transpose of a row-major matrix of `width` columns.
    fn transposed(data: &'a [f32], width: usize) -> Self {
        Self {
            data,
            row_stride: 1,
            col_stride: width,
        }
    }
}

/// `dst[m, n] (+)= lhs[m, k] · rhs[k, n]`, `dst` row-major; adds onto `dst` when `accumulate`.
fn matmul(dst: &mut [f32], [m, n, k]: [usize; 3], lhs: Operand, rhs: Operand, accumulate: bool) {
    assert!(dst.len() >= m * n);
    // The furthest element each operand's strides reach must lie inside its slice.
    let reach = |o: &Operand, rows: usize, cols: usize| {
        (rows - 1) * o.row_stride + (cols - 1) * o.col_stride
    };
    assert!(reach(&lhs, m, k) < lhs.data.len() && reach(&rhs, k, n) < rhs.data.len());
    // SAFETY: the asserts above keep every index the strides produce inside the slices, and
    // `dst` is borrowed mutably, so it aliases neither operand.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// `maxpool2(relu(conv3x3(x) + bias))` and the routing codes its backward needs: for each pooled
/// value, the window position (0–3, row-major) that won, or [`CLOSED`].
pub fn forward(x: &[f32], weight: &[f32], bias: &[f32], d: Dims) -> (Vec<f32>, Vec<u8>) {
    assert_eq!(x.len(), d.batch * d.image());
    assert_eq!(weight.len(), d.c_out * d.rows());
    assert_eq!(bias.len(), d.c_out);
    assert!(d.h.is_multiple_of(2) && d.w.is_multiple_of(2) && d.w >= 2);
    let mut y = vec![0.0; d.batch * d.pooled()];
    let mut codes = vec![0; d.batch * d.pooled()];
    y.par_chunks_mut(d.pooled())
        .zip(codes.par_chunks_mut(d.pooled()))
        .enumerate()
        .for_each_init(
            || {
                (
                    vec![0.0; d.rows() * d.plane()],
                    vec![0.0; d.c_out * d.plane()],
                    pool_scratch(&d),
                )
            },
            |(cols, z, (pairs, pair_codes)), (b, (y, codes))| {
                im2col(&x[b * d.image()..(b + 1) * d.image()], &d, cols);
                matmul(
                    z,
                    [d.c_out, d.plane(), d.rows()],
                    Operand::rows(weight, d.rows()),
                    Operand::rows(cols, d.plane()),
                    false,
                );
                pool(z, bias, &d, (pairs, pair_codes), y, codes);
            },
        );
    (y, codes)
}

/// Whether `v` beats the maximum so far, `best`: the first of equal maxima wins, as in burn's
/// max-pool, and a NaN beats any number.
#[inline(always)]
fn beats(v: f32, best: f32) -> bool {
    (v > best) | (v.is_nan() & !best.is_nan())
}

/// `a` where `take` is set, else `b`, without a branch (`take` is `0` or `!0`).
#[inline(always)]
fn pick(take: u32, a: f32, b: f32) -> f32 {
    f32::from_bits((a.to_bits() & take) | (b.to_bits() & !take))
}

/// [`pool`]'s buffers for one image: the best of each horizontal pair and which of the two won.
fn pool_scratch(d: &Dims) -> (Vec<f32>, Vec<u8>) {
    let pairs = d.c_out * d.plane() / 2;
    (vec![0.0; pairs], vec![0; pairs])
}

/// Bias, ReLU and 2×2 max-pooling of one image's convolution `z` (`[out, h·w]`), in two passes
/// over buffers `pairs` and `pair_codes` ([`pool_scratch`]): first each row's horizontal pairs,
/// one flat loop over the whole image that the compiler vectorises (rows are `w` wide, `w` even,
/// so pair `p` is `z[2p]`, `z[2p + 1]`); then the two rows of each window. The result is the
/// row-major "first of equal maxima" of all four, as one pass over each window would give.
fn pool(
    z: &[f32],
    bias: &[f32],
    d: &Dims,
    (pairs, pair_codes): (&mut [f32], &mut [u8]),
    y: &mut [f32],
    codes: &mut [u8],
) {
    for ((zz, best), at) in z
        .chunks_exact(2)
        .zip(pairs.iter_mut())
        .zip(pair_codes.iter_mut())
    {
        let right = beats(zz[1], zz[0]);
        *best = pick(u32::from(right).wrapping_neg(), zz[1], zz[0]);
        *at = u8::from(right);
    }
    let wp = d.w / 2;
    let per_channel = d.pooled() / d.c_out;
    let planes = pairs.chunks_exact(d.plane() / 2);
    let plane_codes = pair_codes.chunks_exact(d.plane() / 2);
    let outputs = y
        .chunks_exact_mut(per_channel)
        .zip(codes.chunks_exact_mut(per_channel));
    for (((plane, plane_codes), &b), (y, codes)) in planes.zip(plane_codes).zip(bias).zip(outputs) {
        let rows = plane
            .chunks_exact(2 * wp)
            .zip(plane_codes.chunks_exact(2 * wp));
        for ((rows, row_codes), (y, codes)) in
            rows.zip(y.chunks_exact_mut(wp).zip(codes.chunks_exact_mut(wp)))
        {
            let (top, bottom) = rows.split_at(wp);
            let (top_at, bottom_at) = row_codes.split_at(wp);
            for j in 0..wp {
                let lower = u32::from(beats(bottom[j], top[j])).wrapping_neg();
                let best = pick(lower, bottom[j], top[j]);
                let at = ((2 + bottom_at[j]) & lower as u8) | (top_at[j] & !lower as u8);
                let v = best + b;
                // A NaN passes, as through burn's ReLU, so a diverged model shows; a closed
                // cell is +0.0 (all bits clear).
                let open = u32::from((v > 0.0) | v.is_nan()).wrapping_neg();
                y[j] = pick(open, v, 0.0);
                codes[j] = (at & open as u8) | (CLOSED & !open as u8);
            }
        }
    }
}

/// The gradients of the block: of the input (when `input_grad`), of the weight and of the bias,
/// from the output gradient `dy` and the forward's `codes`.
pub fn backward(
    x: &[f32],
    weight: &[f32],
    codes: &[u8],
    dy: &[f32],
    d: Dims,
    input_grad: bool,
) -> (Option<Vec<f32>>, Vec<f32>, Vec<f32>) {
    assert_eq!(codes.len(), d.batch * d.pooled());
    assert_eq!(dy.len(), d.batch * d.pooled());
    // Fixed chunks of images, summed in order: the gradients do not depend on how many threads
    // ran or which finished first, so a seed gives the same run on any machine.
    let inputs = BackwardInputs {
        x,
        weight,
        codes,
        dy,
        d,
    };
    let chunk = |c: usize, dx: Option<&mut [f32]>| {
        let first = c * CHUNK;
        let mut acc = Partial::new(&d);
        let images = first..(first + CHUNK).min(d.batch);
        match dx {
            Some(dx) => {
                // Written before `col2im_add` reads it: a fresh zeroed allocation maps the
                // shared zero page on a first read, and the first write after it is a
                // copy-on-write fault with a TLB flush on every core (16 % of bench-small's
                // cycles on an AMD EPYC VM went to page faults, most of them these).
                dx.fill(0.0);
                for (b, dx) in images.zip(dx.chunks_exact_mut(d.image())) {
                    acc.add_image(b, &inputs, Some(dx));
                }
            }
            None => {
                for b in images {
                    acc.add_image(b, &inputs, None);
                }
            }
        }
        acc
    };
    let (dx, partials): (_, Vec<Partial>) = if input_grad {
        let mut dx = vec![0.0; d.batch * d.image()];
        let partials = dx
            .par_chunks_mut(CHUNK * d.image())
            .enumerate()
            .map(|(c, dx)| chunk(c, Some(dx)))
            .collect();
        (Some(dx), partials)
    } else {
        let chunks = d.batch.div_ceil(CHUNK);
        (
            None,
            (0..chunks)
                .into_par_iter()
                .map(|c| chunk(c, None))
                .collect(),
        )
    };
    let mut partials = partials.into_iter();
    let first = partials.next().expect("a batch of at least one image");
    let total = partials.fold(first, Partial::merge);
    (dx, total.dw, total.db)
}

/// What the backward pass reads: the forward's input, weight and `codes`, the output gradient
/// `dy`, and the block's dimensions.
struct BackwardInputs<'a> {
    x: &'a [f32],
    weight: &'a [f32],
    codes: &'a [u8],
    dy: &'a [f32],
    d: Dims,
}

/// One chunk's weight and bias gradients and its scratch buffers.
struct Partial {
    dw: Vec<f32>,
    db: Vec<f32>,
    cols: Vec<f32>,
    dz: Vec<f32>,
}

impl Partial {
    fn new(d: &Dims) -> Self {
        Self {
            dw: vec![0.0; d.c_out * d.rows()],
            db: vec![0.0; d.c_out],
            cols: Vec::new(),
            dz: Vec::new(),
        }
    }

    /// Add image `b`'s weight and bias gradients, and write its input gradient into `dx`.
    fn add_image(&mut self, b: usize, inputs: &BackwardInputs<'_>, dx: Option<&mut [f32]>) {
        let BackwardInputs {
            x,
            weight,
            codes,
            dy,
            d,
        } = inputs;
        self.cols.resize(d.rows() * d.plane(), 0.0);
        self.dz.clear();
        self.dz.resize(d.c_out * d.plane(), 0.0);
        let (w, wp) = (d.w, d.w / 2);
        let per_channel = d.pooled() / d.c_out;
        let codes = codes[b * d.pooled()..(b + 1) * d.pooled()].chunks_exact(per_channel);
        let dy = dy[b * d.pooled()..(b + 1) * d.pooled()].chunks_exact(per_channel);
        let planes = self.dz.chunks_exact_mut(d.plane());
        for (((plane, db), codes), dy) in planes.zip(&mut self.db).zip(codes).zip(dy) {
            let rows = plane.chunks_exact_mut(2 * w);
            for ((rows, codes), dy) in rows.zip(codes.chunks_exact(wp)).zip(dy.chunks_exact(wp)) {
                for (pj, (&code, &g)) in codes.iter().zip(dy).enumerate() {
                    if code != CLOSED {
                        rows[usize::from(code / 2) * w + 2 * pj + usize::from(code % 2)] = g;
                        *db += g;
                    }
                }
            }
        }
        im2col(&x[b * d.image()..(b + 1) * d.image()], d, &mut self.cols);
        // dW [out, in·9] += dz [out, h·w] · colsᵀ [h·w, in·9]
        matmul(
            &mut self.dw,
            [d.c_out, d.rows(), d.plane()],
            Operand::rows(&self.dz, d.plane()),
            Operand::transposed(&self.cols, d.plane()),
            true,
        );
        if let Some(dx) = dx {
            // dcols [in·9, h·w] = Wᵀ [in·9, out] · dz [out, h·w], then back onto the image;
            // the columns' buffer is free again once the weight gradient has read it.
            matmul(
                &mut self.cols,
                [d.rows(), d.plane(), d.c_out],
                Operand::transposed(weight, d.rows()),
                Operand::rows(&self.dz, d.plane()),
                false,
            );
            col2im_add(&self.cols, d, dx);
        }
    }

    fn merge(mut self, other: Self) -> Self {
        for (a, b) in self.dw.iter_mut().zip(&other.dw) {
            *a += b;
        }
        for (a, b) in self.db.iter_mut().zip(&other.db) {
            *a += b;
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A NaN in the input reaches the output (as through burn's convolution, ReLU and pooling),
    /// so a diverged model does not look healthy.
    #[test]
    fn a_nan_passes_through_the_block() {
        let d = Dims {
            batch: 1,
            c_in: 1,
            c_out: 2,
            h: 4,
            w: 4,
        };
        let mut x = vec![0.5; 16];
        x[5] = f32::NAN;
        let (y, _) = forward(&x, &[0.1; 18], &[0.0, -10.0], d);
        // Every pooled window sees the NaN through some 3×3 neighbourhood.
        assert!(y.iter().all(|v| v.is_nan()), "{y:?}");
    }

    /// The same gradients, to the bit, whatever the number of threads: a run is reproducible
    /// from its seed on any machine.
    #[test]
    fn the_backward_does_not_depend_on_the_thread_count() {
        let d = Dims {
            batch: 37,
            c_in: 3,
            c_out: 5,
            h: 6,
            w: 4,
        };
        // Deterministic, irregular values.
        let values = |n: usize, k: f32| (0..n).map(|i| (i as f32 * k).sin()).collect::<Vec<f32>>();
        let (x, weight, bias) = (
            values(d.batch * d.image(), 0.37),
            values(d.c_out * 27, 1.3),
            values(5, 2.1),
        );
        let (_, codes) = forward(&x, &weight, &bias, d);
        let dy = values(d.batch * d.pooled(), 0.71);
        let run = |threads| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| backward(&x, &weight, &codes, &dy, d, true))
        };
        let one = run(1);
        for threads in [2, 3, 5] {
            assert_eq!(run(threads), one, "{threads} threads");
        }
    }

    /// The two-pass pooling is one pass over each window, value and code: the first of equal
    /// maxima in row-major order wins, a NaN beats any number (the first NaN wins), and ReLU
    /// closes a cell at or below zero. Values from a small set make ties and NaNs common.
    #[test]
    fn pooling_picks_the_first_maximum_of_each_window() {
        let d = Dims {
            batch: 1,
            c_in: 1,
            c_out: 3,
            h: 6,
            w: 10,
        };
        let set = [-1.0, 0.0, 0.5, 1.0, f32::NAN];
        let z: Vec<f32> = (0..d.c_out * d.plane())
            .map(|i| set[(i.wrapping_mul(2_654_435_761) >> 9) % set.len()])
            .collect();
        let bias = [0.0, -0.75, 0.25];
        let (mut pairs, mut pair_codes) = pool_scratch(&d);
        let (mut y, mut codes) = (vec![0.0; d.pooled()], vec![0; d.pooled()]);
        pool(
            &z,
            &bias,
            &d,
            (&mut pairs, &mut pair_codes),
            &mut y,
            &mut codes,
        );
        let (hp, wp) = (d.h / 2, d.w / 2);
        let mut seen_tie = false;
        for c in 0..d.c_out {
            for i in 0..hp {
                for j in 0..wp {
                    let at = |k: usize| z[c * d.plane() + (2 * i + k / 2) * d.w + 2 * j + k % 2];
                    let (mut best, mut win) = (at(0), 0u8);
                    for k in 1..4 {
                        seen_tie |= at(k) == best;
                        if at(k) > best || (at(k).is_nan() && !best.is_nan()) {
                            (best, win) = (at(k), k as u8);
                        }
                    }
                    let v = best + bias[c];
                    let open = v > 0.0 || v.is_nan();
                    let cell = (c * hp + i) * wp + j;
                    assert_eq!(codes[cell], if open { win } else { CLOSED }, "cell {cell}");
                    let want = if open { v } else { 0.0 };
                    assert_eq!(y[cell].to_bits(), want.to_bits(), "cell {cell}");
                }
            }
        }
        assert!(seen_tie, "the data has ties");
        assert!(y.iter().any(|v| v.is_nan()) && codes.contains(&CLOSED));
    }
}

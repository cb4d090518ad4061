//! The fused block's CubeCL kernels, for burn's cubecl backend (wgpu here).
//!
//! On wgpu, burn computes the block as a convolution, a ReLU and a max-pool, and the
//! convolution's weight gradient as one matrix product whose inner dimension is
//! batch × height × width, built from slices (benches/README.md: 44 such products were half the
//! device time of a bench-small iteration on an H200, and 2 300 launches the other half). Here
//! the block is six launches in all:
//!
//! * forward: each invocation computes the four convolution outputs of one pooled cell, adds the
//!   bias, pools and applies the ReLU, and writes the pooled value and its routing code
//!   (which of the four won, or 4 where the ReLU closed it). It reads the weights transposed to
//!   `[in, out, 3, 3]` (burn's copy, one small launch), so that the kernels of four consecutive
//!   output channels are one vector load;
//! * backward: the output gradient is routed back to the convolution's outputs (`dz`), then the
//!   input gradient is a direct transposed convolution of `dz`, and the weight and bias gradients
//!   are summed per image in parallel and the images summed by burn's own reduction.
//!
//! The weights are most of the forward's and the input gradient's loads (every invocation reads
//! all of them, one channel pair at a time), so both read them four floats to a load where the
//! channel count divides by 4 (`load_kernels`). On lavapipe, which reads a load inside a loop
//! one lane at a time, that made the second block of cnn-small 1.3–1.6× faster
//! (benches/README.md); on a GPU a 16-byte load costs what a 4-byte one does.
//!
//! The routing codes are kept as `f32` (0–3, or 4 for closed), so the autodiff state is one more
//! float tensor. Everything is f32 and contiguous NCHW; `mod.rs` takes this path only then.

// Kernel code is CubeCL IR, where `(a + b - 1) / b` is the integer arithmetic it has (no `div_ceil`).
#![allow(clippy::manual_div_ceil)]
use burn::backend::fusion::custom::TensorSpec;
use burn::backend::ops::FloatTensorOps;
use burn::backend::wgpu::{CubeBackend, CubeTensor};
use burn::cubecl;
use burn::cubecl::calculate_cube_count_elemwise;
use burn::cubecl::prelude::*;
use burn::tensor::{DType, Shape};
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;

/// `n` zeros, in registers.
#[cube]
fn zeros(#[comptime] n: usize) -> Array<f32> {
    let mut a = Array::<f32>::new(n);
    #[unroll]
    for i in 0..n {
        a[i] = 0.0;
    }
    a
}

/// The 4×4 input patch of pooled cell `(py, px)` in the `h × w` plane at `x_base`: input rows
/// and columns 2 py - 1 ..= 2 py + 2 (padded row 2 py + r), zero outside the plane.
#[cube]
fn load_patch(
    x: &Tensor<f32>,
    x_base: usize,
    py: usize,
    px: usize,
    h: usize,
    w: usize,
    patch: &mut Array<f32>,
) {
    #[unroll]
    for r in 0..4usize {
        #[unroll]
        for c in 0..4usize {
            let row = 2 * py + r;
            let col = 2 * px + c;
            let mut v = 0.0f32;
            if row >= 1 && row <= h && col >= 1 && col <= w {
                v = x[x_base + (row - 1) * w + (col - 1)];
            }
            patch[r * 4 + c] = v;
        }
    }
}

/// Nine vectors of `N` floats from `weight` at vector `base` into `kernel`: the 3×3 kernels of
/// `N` channels side by side (float `9 l + k` is channel `l`'s tap `k`). One vector load serves
/// `N` taps: on lavapipe a load inside a loop is read lane by lane, and the weights are most of
/// the kernels' loads; on a GPU a wide load is as cheap as a narrow one.
#[cube]
fn load_kernels<N: Size>(weight: &Tensor<Vector<f32, N>>, base: usize, kernel: &mut Array<f32>) {
    let n = weight.vector_size().comptime();
    #[unroll]
    for v in 0..9usize {
        let line = weight[base + v];
        #[unroll]
        for e in 0..n {
            kernel[v * n + e] = line.extract(e);
        }
    }
}

/// Forward: one invocation per pooled cell `(batch, h/2, w/2)`, for every output channel. The
/// cell's 4×4 input patch of each input channel is read once and its 36 products with each
/// output channel's 3×3 kernel (the same for every invocation: `N` channels' kernels to a
/// vector of `weight_t`, `[in, out, 3, 3]`) are summed in registers.
#[cube(launch)]
fn block_forward_kernel<N: Size>(
    x: &Tensor<f32>,
    weight_t: &Tensor<Vector<f32, N>>,
    bias: &Tensor<f32>,
    y: &mut Tensor<f32>,
    codes: &mut Tensor<f32>,
    #[comptime] c_out: usize,
) {
    let hp = y.shape(2);
    let wp = y.shape(3);
    let pos = ABSOLUTE_POS;
    if pos >= y.shape(0) * hp * wp {
        terminate!();
    }
    let c_in = x.shape(1);
    let h = x.shape(2);
    let w = x.shape(3);
    let px = pos % wp;
    let py = (pos / wp) % hp;
    let b = pos / (wp * hp);
    let n = weight_t.vector_size().comptime();
    let groups = comptime!(c_out / n);

    // acc[4 co + sub]: the convolution outputs of the window, in the order top-left, top-right,
    // bottom-left, bottom-right (the routing code's order), without the bias.
    let mut acc = zeros(comptime!(c_out * 4));
    let mut patch = Array::<f32>::new(16usize);
    let mut kernel = Array::<f32>::new(comptime!(9 * n));
    for ci in 0..c_in {
        let x_base = (b * c_in + ci) * h * w;
        load_patch(x, x_base, py, px, h, w, &mut patch);
        #[unroll]
        for g in 0..groups {
            // weight_t is [in, out, 3, 3]: output channels g n .. g n + n of input channel ci.
            load_kernels::<N>(weight_t, (ci * groups + g) * 9, &mut kernel);
            #[unroll]
            for l in 0..n {
                let co = g * n + l;
                #[unroll]
                for sub in 0..4usize {
                    let mut s = acc[co * 4 + sub];
                    #[unroll]
                    for k in 0..9usize {
                        s += patch[(sub / 2 + k / 3) * 4 + sub % 2 + k % 3] * kernel[l * 9 + k];
                    }
                    acc[co * 4 + sub] = s;
                }
            }
        }
    }
    #[unroll]
    for co in 0..c_out {
        // The first of equal maxima wins, as in burn's max-pool; a NaN beats any number.
        let mut best = acc[co * 4];
        let mut at = 0.0f32;
        #[unroll]
        for sub in 1..4usize {
            let v = acc[co * 4 + sub];
            if v > best || (v.is_nan() && !best.is_nan()) {
                best = v;
                at = f32::cast_from(sub);
            }
        }
        let v = best + bias[co];
        let out = ((b * c_out + co) * hp + py) * wp + px;
        // A NaN passes, as through burn's ReLU, so a diverged model shows. Closed (4): no
        // gradient flows back through this cell.
        if v > 0.0 || v.is_nan() {
            y[out] = v;
            codes[out] = at;
        } else {
            y[out] = 0.0;
            codes[out] = 4.0;
        }
    }
}

/// The input gradient, a transposed convolution of the routed output gradient: one invocation
/// per 2×2 block of input pixels (the pooled cell's window), for every input channel, so that
/// each 3×3 kernel read serves four pixels (`N` input channels' kernels to a vector). The nine
/// pooled cells around the block are read once per output channel. x[y, x] fed
/// z[y + 1 - ky, x + 1 - kx] through w[ky, kx].
#[cube(launch)]
fn input_grad_kernel<N: Size>(
    codes: &Tensor<f32>,
    dy: &Tensor<f32>,
    weight: &Tensor<Vector<f32, N>>,
    dx: &mut Tensor<f32>,
    #[comptime] c_in: usize,
) {
    let h = dx.shape(2);
    let w = dx.shape(3);
    let hp = h / 2;
    let wp = w / 2;
    let pos = ABSOLUTE_POS;
    if pos >= dx.shape(0) * hp * wp {
        terminate!();
    }
    let c_out = dy.shape(1);
    let px = pos % wp;
    let py = (pos / wp) % hp;
    let b = pos / (wp * hp);
    let n = weight.vector_size().comptime();
    let groups = comptime!(c_in / n);
    // acc[4 ci + sub], sub the block's pixel (top-left, top-right, bottom-left, bottom-right).
    let mut acc = zeros(comptime!(c_in * 4));
    // The pooled cells around the block: rows py - 1 ..= py + 1 and the same columns, each
    // cell's code and gradient read once (outside the plane: closed, no gradient).
    let mut cell_code = Array::<f32>::new(9usize);
    let mut cell_dy = Array::<f32>::new(9usize);
    // The routed gradient at z rows 2 py - 1 ..= 2 py + 2 and the same columns: window row r is
    // z row 2 py + r - 1, in cell row (r + 1) / 2 at sub-row (r + 1) % 2.
    let mut near = Array::<f32>::new(16usize);
    let mut kernel = Array::<f32>::new(comptime!(9 * n));
    for co in 0..c_out {
        let plane = (b * c_out + co) * hp;
        #[unroll]
        for i in 0..3usize {
            #[unroll]
            for j in 0..3usize {
                let mut code = 4.0f32;
                let mut g = 0.0f32;
                if py + i >= 1 && py + i <= hp && px + j >= 1 && px + j <= wp {
                    let cell = (plane + py + i - 1) * wp + px + j - 1;
                    code = codes[cell];
                    g = dy[cell];
                }
                cell_code[i * 3 + j] = code;
                cell_dy[i * 3 + j] = g;
            }
        }
        #[unroll]
        for r in 0..4usize {
            #[unroll]
            for c in 0..4usize {
                let at = ((r + 1) / 2) * 3 + (c + 1) / 2;
                let sub = ((r + 1) % 2) * 2 + (c + 1) % 2;
                near[r * 4 + c] = select(cell_code[at] == f32::cast_from(sub), cell_dy[at], 0.0);
            }
        }
        #[unroll]
        for g in 0..groups {
            // weight is [out, in, 3, 3]: input channels g n .. g n + n of output channel co.
            load_kernels::<N>(weight, (co * groups + g) * 9, &mut kernel);
            #[unroll]
            for l in 0..n {
                let ci = g * n + l;
                #[unroll]
                for sub in 0..4usize {
                    // Pixel (2 py + sub / 2, 2 px + sub % 2) reads z row y + 1 - ky: window row
                    // sub / 2 + 2 - ky.
                    let mut s = acc[ci * 4 + sub];
                    #[unroll]
                    for k in 0..9usize {
                        s += near[(sub / 2 + 2 - k / 3) * 4 + sub % 2 + 2 - k % 3]
                            * kernel[l * 9 + k];
                    }
                    acc[ci * 4 + sub] = s;
                }
            }
        }
    }
    #[unroll]
    for ci in 0..c_in {
        let base = ((b * c_in + ci) * h + 2 * py) * w + 2 * px;
        dx[base] = acc[ci * 4];
        dx[base + 1] = acc[ci * 4 + 1];
        dx[base + w] = acc[ci * 4 + 2];
        dx[base + w + 1] = acc[ci * 4 + 3];
    }
}

/// The weight and bias gradients of a band of `band` pooled rows of one image and one input
/// channel: one invocation per `(batch, band, c_in)`, for every output channel. Each pooled
/// cell's 4×4 input patch is read once; its routed gradient flows to one of the window's four
/// convolution outputs. The partial sums, `[batch · bands, c_out, c_in, 9]` and (from the
/// invocations of input channel 0) `[batch · bands, c_out]`, are summed by burn's reduction.
#[cube(launch)]
fn weight_grad_kernel(
    x: &Tensor<f32>,
    codes: &Tensor<f32>,
    dy: &Tensor<f32>,
    partial: &mut Tensor<f32>,
    partial_bias: &mut Tensor<f32>,
    band: usize,
    #[comptime] c_out: usize,
) {
    let c_in = x.shape(1);
    let h = x.shape(2);
    let w = x.shape(3);
    let hp = h / 2;
    let wp = w / 2;
    let bands = (hp + band - 1) / band;
    let pos = ABSOLUTE_POS;
    if pos >= x.shape(0) * bands * c_in {
        terminate!();
    }
    let ci = pos % c_in;
    let at_band = (pos / c_in) % bands;
    let b = pos / (c_in * bands);
    let mut acc = zeros(comptime!(c_out * 9));
    let mut acc_bias = zeros(c_out);
    let mut patch = Array::<f32>::new(16usize);
    let x_base = (b * c_in + ci) * h * w;
    let first = at_band * band;
    let mut last = first + band;
    if last > hp {
        last = hp;
    }
    for py in first..last {
        for px in 0..wp {
            load_patch(x, x_base, py, px, h, w, &mut patch);
            #[unroll]
            for co in 0..c_out {
                let cell = ((b * c_out + co) * hp + py) * wp + px;
                let code = codes[cell];
                let g = dy[cell];
                acc_bias[co] += select(code < 4.0, g, 0.0);
                #[unroll]
                for sub in 0..4usize {
                    // The convolution output (2 py + sub / 2, 2 px + sub % 2) read input rows
                    // oy + ky - 1: patch row sub / 2 + ky.
                    let gs = select(code == f32::cast_from(sub), g, 0.0);
                    #[unroll]
                    for k in 0..9usize {
                        acc[co * 9 + k] += gs * patch[(sub / 2 + k / 3) * 4 + sub % 2 + k % 3];
                    }
                }
            }
        }
    }
    let block = b * bands + at_band;
    let out_base = block * c_out * c_in;
    #[unroll]
    for co in 0..c_out {
        #[unroll]
        for k in 0..9usize {
            partial[((out_base + co * c_in) + ci) * 9 + k] = acc[co * 9 + k];
        }
    }
    if ci == 0 {
        #[unroll]
        for co in 0..c_out {
            partial_bias[block * c_out + co] = acc_bias[co];
        }
    }
}

/// The pooled output's shape for `x` `[batch, in, h, w]` and `weight` `[out, in, 3, 3]`.
fn pooled_shape(x: &Shape, weight: &Shape) -> Shape {
    Shape::new([x[0], weight[0], x[2] / 2, x[3] / 2])
}

/// Fusion's description of the forward's output (the pooled values).
pub fn pooled_spec(x: &TensorSpec, weight: &TensorSpec, _bias: &TensorSpec) -> TensorSpec {
    TensorSpec::new(pooled_shape(&x.shape, &weight.shape), x.dtype)
}

/// Fusion's description of the routed forward's outputs: the pooled values and their codes.
pub fn routed_spec(
    x: &TensorSpec,
    weight: &TensorSpec,
    bias: &TensorSpec,
) -> (TensorSpec, TensorSpec) {
    let y = pooled_spec(x, weight, bias);
    (y.clone(), y)
}

/// Fusion's description of the backward's outputs: the input, weight and bias gradients (the
/// input gradient a `[1]` placeholder where `input_grad` is false).
pub fn backward_spec(
    x: &TensorSpec,
    weight: &TensorSpec,
    _codes: &TensorSpec,
    _dy: &TensorSpec,
    input_grad: &bool,
) -> (TensorSpec, TensorSpec, TensorSpec) {
    let dx = match input_grad {
        true => x.clone(),
        false => TensorSpec::new(Shape::new([1]), x.dtype),
    };
    let bias = TensorSpec::new(Shape::new([weight.shape[0]]), weight.dtype);
    (dx, weight.clone(), bias)
}

/// Pooled rows per invocation of the weight gradient: enough parallel work for a GPU (bands of
/// 4 pooled rows: 2 for a 14×14 input, 4 for 28×28), few partial sums to reduce.
const BAND: usize = 4;

/// The most input or output channels the kernels take: they keep 4 (forward, input gradient)
/// or 9 (weight gradient) sums per channel in registers, unrolled. cnn-small's blocks (1 → 16,
/// 16 → 32) and vgg-small's first (32 → 32) fit; wider blocks keep burn's operations.
pub const MAX_CHANNELS: usize = 32;

/// A contiguous f32 tensor of `shape` on `like`'s device.
fn empty(like: &CubeTensor, shape: Shape) -> CubeTensor {
    empty_device_contiguous_dtype(like.client.clone(), like.device.clone(), shape, DType::F32)
}

/// The launch grid for `n` invocations.
fn grid(like: &CubeTensor, n: usize) -> (CubeCount, CubeDim) {
    let dim = CubeDim::new(&like.client, n);
    (calculate_cube_count_elemwise(&like.client, n, dim), dim)
}

/// The weights' vector width for kernels grouped `channels` at a time: 4 where they divide.
fn vector_size(channels: usize) -> usize {
    if channels.is_multiple_of(4) { 4 } else { 1 }
}

/// The pooled output and its routing codes.
pub fn forward(x: CubeTensor, weight: CubeTensor, bias: CubeTensor) -> (CubeTensor, CubeTensor) {
    let (x, bias) = (into_contiguous(x), into_contiguous(bias));
    let shape = pooled_shape(x.meta.shape(), weight.meta.shape());
    let [batch, c_out, hp, wp] = shape.dims();
    // [in, out, 3, 3], contiguous (one copy, whatever the weights' layout), so that the kernels
    // of consecutive output channels are one vector.
    let weight_t = into_contiguous(CubeBackend::float_swap_dims(weight, 0, 1));
    let y = empty(&x, shape.clone());
    let codes = empty(&x, shape);
    let (count, dim) = grid(&x, batch * hp * wp);
    block_forward_kernel::launch(
        &x.client.clone(),
        count,
        dim,
        vector_size(c_out),
        x.into_tensor_arg(),
        weight_t.into_tensor_arg(),
        bias.into_tensor_arg(),
        y.clone().into_tensor_arg(),
        codes.clone().into_tensor_arg(),
        c_out,
    );
    (y, codes)
}

/// The input (where `input_grad`; else a `[1]` placeholder), weight and bias gradients from
/// the forward's input, weight and codes and the output gradient `dy`.
pub fn backward(
    x: CubeTensor,
    weight: CubeTensor,
    codes: CubeTensor,
    dy: CubeTensor,
    input_grad: bool,
) -> (CubeTensor, CubeTensor, CubeTensor) {
    let (x, weight, codes, dy) = (
        into_contiguous(x),
        into_contiguous(weight),
        into_contiguous(codes),
        into_contiguous(dy),
    );
    let [batch, c_in, h, w] = x.meta.shape().dims();
    let c_out = weight.meta.shape()[0];
    let client = x.client.clone();

    let dx = if input_grad {
        let dx = empty(&x, Shape::new([batch, c_in, h, w]));
        let (count, dim) = grid(&x, batch * (h / 2) * (w / 2));
        input_grad_kernel::launch(
            &client,
            count,
            dim,
            vector_size(c_in),
            codes.clone().into_tensor_arg(),
            dy.clone().into_tensor_arg(),
            weight.clone().into_tensor_arg(),
            dx.clone().into_tensor_arg(),
            c_in,
        );
        dx
    } else {
        // A placeholder the autodiff step drops unread: allocated, not filled (no launch).
        empty(&x, Shape::new([1]))
    };

    let blocks = batch * (h / 2).div_ceil(BAND);
    let dw = empty(&x, Shape::new([blocks, c_out * c_in * 9]));
    let db = empty(&x, Shape::new([blocks, c_out]));
    let (count, dim) = grid(&x, blocks * c_in);
    weight_grad_kernel::launch(
        &client,
        count,
        dim,
        x.into_tensor_arg(),
        codes.into_tensor_arg(),
        dy.into_tensor_arg(),
        dw.clone().into_tensor_arg(),
        db.clone().into_tensor_arg(),
        BAND,
        c_out,
    );
    let dw = CubeBackend::float_sum_dim(dw, 0);
    let dw = CubeBackend::float_reshape(dw, Shape::new([c_out, c_in, 3, 3]));
    let db = CubeBackend::float_sum_dim(db, 0);
    let db = CubeBackend::float_reshape(db, Shape::new([c_out]));
    (dx, dw, db)
}

//! The fused block's CubeCL kernels, for burn's cubecl backend (wgpu here).
//!
//! On wgpu, burn computes the block as a convolution, a ReLU and a max-pool, and the
//! convolution's weight gradient as one matrix product whose inner dimension is
//! batch × height × width, built from slices (benches/README.md: 44 such products were half the
//! device time of a bench-small iteration on an H200, and 2 300 launches the other half). Here
//! the block is five kernels in all:
//!
//! * forward: each invocation computes the four convolution outputs of one pooled cell, adds the
//!   bias, pools and applies the ReLU, and writes the pooled value and its routing code
//!   (which of the four won, or 4 where the ReLU closed it);
//! * backward: the output gradient is routed back to the convolution's outputs (`dz`), then the
//!   input gradient is a direct transposed convolution of `dz`, and the weight and bias gradients
//!   are summed per image in parallel and the images summed by burn's own reduction.
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

/// Forward: one invocation per pooled cell `(batch, h/2, w/2)`, for every output channel. The
/// cell's 4×4 input patch of each input channel is read once and its 36 products with each
/// output channel's 3×3 kernel (the same for every invocation: one load for all of them) are
/// summed in registers.
#[cube(launch)]
fn block_forward_kernel(
    x: &Tensor<f32>,
    weight: &Tensor<f32>,
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

    // acc[4 co + sub]: the convolution outputs of the window, in the order top-left, top-right,
    // bottom-left, bottom-right (the routing code's order), without the bias.
    let mut acc = zeros(comptime!(c_out * 4));
    let mut patch = Array::<f32>::new(16usize);
    let mut kernel = Array::<f32>::new(9usize);
    for ci in 0..c_in {
        let x_base = (b * c_in + ci) * h * w;
        load_patch(x, x_base, py, px, h, w, &mut patch);
        #[unroll]
        for co in 0..c_out {
            let w_base = (co * c_in + ci) * 9;
            #[unroll]
            for k in 0..9usize {
                kernel[k] = weight[w_base + k];
            }
            #[unroll]
            for sub in 0..4usize {
                let mut s = acc[co * 4 + sub];
                #[unroll]
                for k in 0..9usize {
                    s += patch[(sub / 2 + k / 3) * 4 + sub % 2 + k % 3] * kernel[k];
                }
                acc[co * 4 + sub] = s;
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

/// The output gradient routed back to one convolution output: `dy` of its pooled cell where the
/// cell's code names it (`sub`: 0–3 within the window), else 0.
#[cube]
fn routed(codes: &Tensor<f32>, dy: &Tensor<f32>, cell: usize, sub: usize) -> f32 {
    let mut g = 0.0f32;
    if codes[cell] == f32::cast_from(sub) {
        g = dy[cell];
    }
    g
}

/// The input gradient, a transposed convolution of the routed output gradient: one invocation
/// per 2×2 block of input pixels (the pooled cell's window), for every input channel, so that
/// each 3×3 kernel read serves four pixels. x[y, x] fed z[y + 1 - ky, x + 1 - kx] through
/// w[ky, kx].
#[cube(launch)]
fn input_grad_kernel(
    codes: &Tensor<f32>,
    dy: &Tensor<f32>,
    weight: &Tensor<f32>,
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
    // acc[4 ci + sub], sub the block's pixel (top-left, top-right, bottom-left, bottom-right).
    let mut acc = zeros(comptime!(c_in * 4));
    // The routed gradient at z rows 2 py - 1 ..= 2 py + 2 and the same columns: window row r is
    // z row 2 py + r - 1, in pooled row py + (r + 1) / 2 - 1 at sub-row (r + 1) % 2.
    let mut near = Array::<f32>::new(16usize);
    let mut kernel = Array::<f32>::new(9usize);
    for co in 0..c_out {
        let plane = (b * c_out + co) * hp;
        #[unroll]
        for r in 0..4usize {
            #[unroll]
            for c in 0..4usize {
                let prow = py + (r + 1) / 2;
                let pcol = px + (c + 1) / 2;
                let mut v = 0.0f32;
                if prow >= 1 && prow <= hp && pcol >= 1 && pcol <= wp {
                    let cell = (plane + prow - 1) * wp + pcol - 1;
                    v = routed(codes, dy, cell, ((r + 1) % 2) * 2 + (c + 1) % 2);
                }
                near[r * 4 + c] = v;
            }
        }
        #[unroll]
        for ci in 0..c_in {
            let w_base = (co * c_in + ci) * 9;
            #[unroll]
            for k in 0..9usize {
                kernel[k] = weight[w_base + k];
            }
            #[unroll]
            for sub in 0..4usize {
                // Pixel (2 py + sub / 2, 2 px + sub % 2) reads z row y + 1 - ky: window row
                // sub / 2 + 2 - ky.
                let mut s = acc[ci * 4 + sub];
                #[unroll]
                for k in 0..9usize {
                    s += near[(sub / 2 + 2 - k / 3) * 4 + sub % 2 + 2 - k % 3] * kernel[k];
                }
                acc[ci * 4 + sub] = s;
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

/// The pooled output and its routing codes.
pub fn forward(x: CubeTensor, weight: CubeTensor, bias: CubeTensor) -> (CubeTensor, CubeTensor) {
    let (x, weight, bias) = (
        into_contiguous(x),
        into_contiguous(weight),
        into_contiguous(bias),
    );
    let shape = pooled_shape(x.meta.shape(), weight.meta.shape());
    let [batch, c_out, hp, wp] = shape.dims();
    let y = empty(&x, shape.clone());
    let codes = empty(&x, shape);
    let (count, dim) = grid(&x, batch * hp * wp);
    block_forward_kernel::launch(
        &x.client.clone(),
        count,
        dim,
        x.into_tensor_arg(),
        weight.into_tensor_arg(),
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

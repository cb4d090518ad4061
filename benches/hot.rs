//! `cargo bench`: the hot pieces of a SOPHON outer iteration of bench-small (cnn-small, 1×28×28,
//! 10 classes, batch 150 = 130 support + 20 query), on each CPU backend and on wgpu when an
//! adapter exists. `sophon-workbench bench` times whole outer iterations; this splits them.

use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::MaxPool2dConfig;
use burn::prelude::Device;
use burn::tensor::activation::relu;
use burn::tensor::{Distribution, Tensor};
use divan::Bencher;
use sophon_workbench::model::conv::conv_relu_pool;
use sophon_workbench::sophon::Devices;
use sophon_workbench::sophon::bench::Pieces;

fn main() {
    divan::main();
}

fn devices(name: &str) -> Option<Devices> {
    let device = match name {
        "flex" => Device::flex(),
        #[allow(deprecated)]
        "ndarray" => Device::ndarray(),
        _ => {
            sophon_workbench::run::backend::probe_adapter()?;
            sophon_workbench::run::backend::select(sophon_workbench::run::BackendChoice::Wgpu)
                .ok()?
                .device
        }
    };
    Some(Devices::new(device))
}

const BACKENDS: [&str; 3] = ["flex", "ndarray", "wgpu"];

/// One simulated fine-tuning step (forward, backward, SGD update) plus the query loss's gradient.
#[divan::bench(args = BACKENDS, sample_count = 10, sample_size = 1)]
fn inner_step(bencher: Bencher, backend: &str) {
    let Some(devices) = devices(backend) else {
        return;
    };
    let mut pieces = Pieces::new(&devices);
    pieces.inner_step(); // warm-up: shader compilation, allocator
    bencher.bench_local(|| pieces.inner_step());
}

/// One FTS step: K = 10 inner steps, first-order accumulation, clipping, the Adam update.
#[divan::bench(args = BACKENDS, sample_count = 5, sample_size = 1)]
fn fts_step(bencher: Bencher, backend: &str) {
    let Some(devices) = devices(backend) else {
        return;
    };
    let mut pieces = Pieces::new(&devices);
    pieces.fts_step();
    bencher.bench_local(|| pieces.fts_step());
}

/// One NTR step: cross-entropy on a batch of 150 original images, Adam.
#[divan::bench(args = BACKENDS, sample_count = 10, sample_size = 1)]
fn ntr_step(bencher: Bencher, backend: &str) {
    let Some(devices) = devices(backend) else {
        return;
    };
    let mut pieces = Pieces::new(&devices);
    pieces.ntr_step();
    bencher.bench_local(|| pieces.ntr_step());
}

/// Generating a batch of 150 procedural 28×28 images (shapes) on the CPU.
#[divan::bench(sample_count = 10)]
fn procedural_batch() -> usize {
    sophon_workbench::sophon::bench::procedural_batch(150)
}

/// cnn-small's two convolutions on a support batch of 130: (in, out, side).
const CONVS: [(usize, usize, usize); 2] = [(1, 16, 28), (16, 32, 14)];

fn conv_layer(device: &Device, (c_in, c_out, side): (usize, usize, usize)) -> (Conv2d, Tensor<4>) {
    let conv = Conv2dConfig::new([c_in, c_out], [3, 3])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .init(device);
    let x = Tensor::random(
        [130, c_in, side, side],
        Distribution::Normal(0.0, 1.0),
        device,
    );
    (conv, x)
}

/// One convolution of cnn-small, forward only (flex).
#[divan::bench(args = CONVS, sample_count = 20, sample_size = 1)]
fn conv_forward(bencher: Bencher, shape: (usize, usize, usize)) {
    let device = Device::flex().autodiff();
    let (conv, x) = conv_layer(&device, shape);
    bencher.bench_local(|| conv.forward(x.clone()).sum().into_scalar::<f32>());
}

/// The same convolution, forward and backward: the weight gradient, and the input gradient
/// for the second layer (whose input comes from the first). The difference to
/// `conv_forward` is the backward pass.
#[divan::bench(args = CONVS, sample_count = 20, sample_size = 1)]
fn conv_forward_backward(bencher: Bencher, shape: (usize, usize, usize)) {
    let device = Device::flex().autodiff();
    let (conv, x) = conv_layer(&device, shape);
    let x = if shape.0 > 1 { x.require_grad() } else { x };
    bencher.bench_local(|| {
        let grads = conv.forward(x.clone()).sum().backward();
        conv.weight
            .grad(&grads)
            .map(|g| g.sum().into_scalar::<f32>())
    });
}

fn block_forward_backward(bencher: Bencher, shape: (usize, usize, usize), fused: bool) {
    block_on(bencher, &Device::flex().autodiff(), shape, fused);
}

/// One block's forward and backward on `device`, fused or as burn's three operations; the
/// weight gradient's sum is read back, so a GPU's queue is drained in every sample.
fn block_on(bencher: Bencher, device: &Device, shape: (usize, usize, usize), fused: bool) {
    let (conv, x) = conv_layer(device, shape);
    let x = if shape.0 > 1 { x.require_grad() } else { x };
    let pool = MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init();
    bencher.bench_local(|| {
        let y = if fused {
            conv_relu_pool(&conv, &pool, x.clone())
        } else {
            pool.forward(relu(conv.forward(x.clone())))
        };
        let grads = y.sum().backward();
        conv.weight
            .grad(&grads)
            .map(|g| g.sum().into_scalar::<f32>())
    });
}

/// One of cnn-small's blocks (convolution, ReLU, 2×2 max-pool), forward and backward, as
/// burn's three operations (flex).
#[divan::bench(args = CONVS, sample_count = 20, sample_size = 1)]
fn block_burn(bencher: Bencher, shape: (usize, usize, usize)) {
    block_forward_backward(bencher, shape, false);
}

/// The same block as the workbench's fused operation (`model::conv::conv_relu_pool`).
#[divan::bench(args = CONVS, sample_count = 20, sample_size = 1)]
fn block_fused(bencher: Bencher, shape: (usize, usize, usize)) {
    block_forward_backward(bencher, shape, true);
}

/// The wgpu device (autodiff), or `None` with a visible "skipped" where no adapter exists.
fn wgpu_autodiff() -> Option<Device> {
    match devices("wgpu") {
        Some(d) => Some(d.train),
        None => {
            eprintln!("wgpu_block_*: skipped (no wgpu adapter)");
            None
        }
    }
}

/// One block on wgpu, forward and backward, as burn's three operations. With `wgpu_block_fused`
/// and `wgpu_block_fused_forward` it splits the fused block's cost on an adapter (lavapipe here,
/// where CubeCL's profiler gets no device timings). The first sample includes compiling the
/// kernels; the median does not.
#[divan::bench(args = CONVS, sample_count = 10, sample_size = 1)]
fn wgpu_block_burn(bencher: Bencher, shape: (usize, usize, usize)) {
    if let Some(device) = wgpu_autodiff() {
        block_on(bencher, &device, shape, false);
    }
}

/// The same block on wgpu as the fused CubeCL kernels (`SOPHON_WGPU_FUSED=0` turns them off:
/// then this times burn's operations too).
#[divan::bench(args = CONVS, sample_count = 10, sample_size = 1)]
fn wgpu_block_fused(bencher: Bencher, shape: (usize, usize, usize)) {
    if let Some(device) = wgpu_autodiff() {
        block_on(bencher, &device, shape, true);
    }
}

/// The fused block's forward alone on wgpu (the pooled output's sum read back).
#[divan::bench(args = CONVS, sample_count = 10, sample_size = 1)]
fn wgpu_block_fused_forward(bencher: Bencher, shape: (usize, usize, usize)) {
    let Some(device) = wgpu_autodiff() else {
        return;
    };
    let (conv, x) = conv_layer(&device, shape);
    let pool = MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init();
    bencher.bench_local(|| {
        conv_relu_pool(&conv, &pool, x.clone())
            .sum()
            .into_scalar::<f32>()
    });
}

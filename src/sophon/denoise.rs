//! The denoising task's measurements and noising: batches noised for the ε-MSE loss, a
//! deterministic test ε-MSE, and sample grids (clean | noised to step t | denoised by the
//! reverse chain). Training itself is the tasks' common loop (`train.rs`).

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};

use crate::data::ImageSet;
use crate::data::batch::{self, epoch_batches};
use crate::data::rng::Rng;
use crate::diffusion::schedule::{Schedule, eps_mse};
use crate::model::unet::Unet;

/// Standard normal noise from the workbench's own generator: reproducible on every backend.
pub(crate) fn noise_like(n: usize, set: &ImageSet, rng: &mut Rng, device: &Device) -> Tensor<4> {
    let values: Vec<f32> = (0..n * set.image_len()).map(|_| rng.normal()).collect();
    Tensor::from_data(
        TensorData::new(values, [n, set.channels, set.height, set.width]),
        device,
    )
}

/// Images `idx` of `set` noised at time steps from `schedule.sample_t(.., fixed_t, rng)`:
/// `(x_t, t, ε)`, the noise from `rng`.
pub(crate) fn noised(
    set: &ImageSet,
    idx: &[usize],
    schedule: &Schedule,
    fixed_t: Option<usize>,
    rng: &mut Rng,
    device: &Device,
) -> (Tensor<4>, Vec<usize>, Tensor<4>) {
    let t = schedule.sample_t(idx.len(), fixed_t, rng);
    noised_at(set, idx, schedule, t, rng, device)
}

/// Images `idx` of `set` noised at the time steps `t`: `(x_t, t, ε)`, the noise from `rng`.
pub(crate) fn noised_at(
    set: &ImageSet,
    idx: &[usize],
    schedule: &Schedule,
    t: Vec<usize>,
    rng: &mut Rng,
    device: &Device,
) -> (Tensor<4>, Vec<usize>, Tensor<4>) {
    let x0 = batch::images(set, idx, device);
    let eps = noise_like(idx.len(), set, rng, device);
    (schedule.noise(x0, &t, eps.clone()), t, eps)
}

/// Test ε-MSE of `unet` on `set`: the same time steps and noise for every model (keyed by
/// `seed`), so models are compared on equal terms. Lower means better denoising.
pub fn test_mse(
    unet: &Unet,
    set: &ImageSet,
    schedule: &Schedule,
    batch_size: usize,
    seed: u64,
    device: &Device,
) -> f64 {
    let model = unet.valid();
    let mut rng = Rng::from_keys(&[seed, 0x4D_53_45]);
    let (mut sum, mut n) = (0.0, 0usize);
    for idx in epoch_batches(set.len(), batch_size, None) {
        let (xt, t, eps) = noised(set, &idx, schedule, None, &mut rng, device);
        let mse = eps_mse(model.forward(xt, &t), eps).into_scalar::<f32>() as f64;
        sum += mse * idx.len() as f64;
        n += idx.len();
    }
    sum / n.max(1) as f64
}

/// The first `n` test images, noised to step `t` and denoised by the reverse chain from there:
/// `(clean, noisy, denoised)` as image sets in [0, 1], and the PSNR (dB) of denoised vs clean.
pub fn samples(
    unet: &Unet,
    set: &ImageSet,
    n: usize,
    schedule: &Schedule,
    t: usize,
    seed: u64,
    device: &Device,
) -> ([ImageSet; 3], f64) {
    let model = unet.valid();
    let idx: Vec<usize> = (0..n.min(set.len())).collect();
    let mut rng = Rng::from_keys(&[seed, 0x47_52_49, t as u64]);
    let x0 = batch::images(set, &idx, device);
    let eps = noise_like(idx.len(), set, &mut rng, device);
    let xt = schedule.noise(x0.clone(), &vec![t; idx.len()], eps);
    let denoised = schedule.sample_from(
        xt.clone(),
        t,
        |x, s| model.forward(x, s),
        || noise_like(idx.len(), set, &mut rng, device),
    );
    let to_set = |x: Tensor<4>, name: &str| {
        let values: Vec<f32> = x.into_data().try_to_vec::<f32>().expect("f32 images");
        let mut out = ImageSet::empty(name, set.channels, set.height, set.width, set.classes);
        for (i, chunk) in values.chunks(set.image_len()).enumerate() {
            let img: Vec<f32> = chunk
                .iter()
                .map(|v| ((v + 1.0) / 2.0).clamp(0.0, 1.0))
                .collect();
            out.push(&img, set.labels[i]);
        }
        out
    };
    let clean = to_set(x0, "clean");
    let noisy = to_set(xt, "noisy");
    let denoised = to_set(denoised, "denoised");
    let psnr = psnr(&clean, &denoised);
    ([clean, noisy, denoised], psnr)
}

/// Peak signal-to-noise ratio (dB) of `b` against `a`, images in [0, 1] (peak 1).
pub fn psnr(a: &ImageSet, b: &ImageSet) -> f64 {
    let n = a.pixels.len().min(b.pixels.len());
    let mse: f64 = a.pixels[..n]
        .iter()
        .zip(&b.pixels[..n])
        .map(|(x, y)| ((x - y) as f64).powi(2))
        .sum::<f64>()
        / n.max(1) as f64;
    if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (1.0 / mse).log10()
    }
}

//! A small ε-prediction UNet for DDPM: a sinusoidal time embedding, residual blocks (GroupNorm,
//! SiLU, 3×3 convolutions, the time embedding added per channel), two resolutions below the
//! input (stride-2 convolutions down, 2×2 transposed convolutions up) with skip connections.
//! Sized to train on 28×28 grey and 32×32 RGB images on a CPU; sides must be divisible by 4.

use burn::config::Config;
use burn::module::{Module, ParamGroup};
use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::{GroupNorm, GroupNormConfig, Linear, LinearConfig};
use burn::tensor::activation::silu;
use burn::tensor::{Device, Tensor, TensorData};

use super::cnn::conv3x3;

/// How to build a [`Unet`].
#[derive(Config, Debug)]
pub struct UnetConfig {
    /// Image channels (1 grey, 3 RGB); the output has as many.
    pub channels: usize,
    /// Channels of the first level; the second and the middle have twice as many.
    #[config(default = 32)]
    pub base: usize,
    /// Residual blocks per level, on the way down and on the way up.
    #[config(default = 2)]
    pub blocks_per_level: usize,
    /// Width of the sinusoidal time embedding.
    #[config(default = 64)]
    pub time_dim: usize,
}

/// A residual block: `x + conv(silu(norm(conv(silu(norm(x))) + emb(t))))`, with a 1×1
/// convolution on the skip path when the channel count changes.
#[derive(Module, Debug)]
pub struct ResBlock {
    norm1: GroupNorm,
    conv1: Conv2d,
    time: Linear,
    norm2: GroupNorm,
    conv2: Conv2d,
    skip: Option<Conv2d>,
}

fn groups(channels: usize) -> usize {
    [8, 4, 2, 1]
        .into_iter()
        .find(|g| channels.is_multiple_of(*g))
        .unwrap_or(1)
}

impl ResBlock {
    fn new(c_in: usize, c_out: usize, time_dim: usize, device: &Device) -> Self {
        Self {
            norm1: GroupNormConfig::new(groups(c_in), c_in).init(device),
            conv1: conv3x3(c_in, c_out, 1, device),
            time: LinearConfig::new(time_dim, c_out).init(device),
            norm2: GroupNormConfig::new(groups(c_out), c_out).init(device),
            conv2: conv3x3(c_out, c_out, 1, device),
            skip: (c_in != c_out).then(|| Conv2dConfig::new([c_in, c_out], [1, 1]).init(device)),
        }
    }

    /// `[b, c_in, h, w]`, `[b, time_dim]` → `[b, c_out, h, w]`.
    fn forward(&self, x: Tensor<4>, emb: Tensor<2>) -> Tensor<4> {
        let h = self.conv1.forward(silu(self.norm1.forward(x.clone())));
        let t: Tensor<4> = self.time.forward(emb).unsqueeze_dims(&[2, 3]);
        let h = self.conv2.forward(silu(self.norm2.forward(h + t)));
        let skip = match &self.skip {
            Some(conv) => conv.forward(x),
            None => x,
        };
        skip + h
    }
}

/// The ε-prediction network.
#[derive(Module, Debug)]
pub struct Unet {
    time1: Linear,
    time2: Linear,
    conv_in: Conv2d,
    down1: Vec<ResBlock>,
    pool1: Conv2d,
    down2: Vec<ResBlock>,
    pool2: Conv2d,
    mid: Vec<ResBlock>,
    up2: ConvTranspose2d,
    dec2: Vec<ResBlock>,
    up1: ConvTranspose2d,
    dec1: Vec<ResBlock>,
    norm_out: GroupNorm,
    conv_out: Conv2d,
    time_dim: usize,
}

impl UnetConfig {
    pub fn init(&self, device: &Device) -> Unet {
        let (c1, c2, td) = (self.base, self.base * 2, self.time_dim);
        let n = self.blocks_per_level.max(1);
        let blocks = |first_in: usize, c: usize| -> Vec<ResBlock> {
            (0..n)
                .map(|i| ResBlock::new(if i == 0 { first_in } else { c }, c, td, device))
                .collect()
        };
        let up = |c: usize| {
            ConvTranspose2dConfig::new([c, c], [2, 2])
                .with_stride([2, 2])
                .init(device)
        };
        Unet {
            time1: LinearConfig::new(td, td).init(device),
            time2: LinearConfig::new(td, td).init(device),
            conv_in: conv3x3(self.channels, c1, 1, device),
            down1: blocks(c1, c1),
            pool1: conv3x3(c1, c1, 2, device),
            down2: blocks(c1, c2),
            pool2: conv3x3(c2, c2, 2, device),
            mid: blocks(c2, c2),
            up2: up(c2),
            dec2: blocks(c2 + c2, c2),
            up1: up(c2),
            dec1: blocks(c2 + c1, c1),
            norm_out: GroupNormConfig::new(groups(c1), c1).init(device),
            conv_out: conv3x3(c1, self.channels, 1, device),
            time_dim: td,
        }
    }
}

impl Unet {
    /// Replace the output convolution (the UNet's "head") by a freshly initialised one.
    pub fn reinit_out(mut self, device: &Device) -> Self {
        let [out, c1, _, _] = self.conv_out.weight.shape().dims();
        self.conv_out = conv3x3(c1, out, 1, device);
        self
    }

    /// Freeze everything except the output convolution.
    pub fn train_out_only(self) -> Self {
        let group = ParamGroup::ids_from_module(self.conv_out.clone());
        self.freeze().unfreeze_group(group)
    }

    /// `x_t: [b, c, h, w]` (h, w divisible by 4) and the time steps `t` (one per image, 1..=T)
    /// → the predicted noise ε̂, `[b, c, h, w]`.
    pub fn forward(&self, x: Tensor<4>, t: &[usize]) -> Tensor<4> {
        let device = x.device();
        let emb = timestep_embedding(t, self.time_dim, &device);
        let emb = self.time2.forward(silu(self.time1.forward(emb)));
        let run = |blocks: &[ResBlock], mut h: Tensor<4>| {
            for b in blocks {
                h = b.forward(h, emb.clone());
            }
            h
        };
        let h1 = run(&self.down1, self.conv_in.forward(x));
        let h2 = run(&self.down2, self.pool1.forward(h1.clone()));
        let h = run(&self.mid, self.pool2.forward(h2.clone()));
        let h = run(&self.dec2, Tensor::cat(vec![self.up2.forward(h), h2], 1));
        let h = run(&self.dec1, Tensor::cat(vec![self.up1.forward(h), h1], 1));
        self.conv_out.forward(silu(self.norm_out.forward(h)))
    }
}

/// The sinusoidal embedding of time steps (Transformer / DDPM form): `[b, dim]`, the first
/// half sines and the second half cosines of `t · 10000^(−i / (dim/2))`.
pub fn timestep_embedding(t: &[usize], dim: usize, device: &Device) -> Tensor<2> {
    let half = dim / 2;
    let mut values = Vec::with_capacity(t.len() * dim);
    for &step in t {
        let args: Vec<f32> = (0..half)
            .map(|i| step as f32 * (-(10_000f32.ln()) * i as f32 / half as f32).exp())
            .collect();
        values.extend(args.iter().map(|a| a.sin()));
        values.extend(args.iter().map(|a| a.cos()));
        values.extend(std::iter::repeat_n(0.0, dim - 2 * half));
    }
    Tensor::from_data(TensorData::new(values, [t.len(), dim]), device)
}

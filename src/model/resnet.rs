use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use super::cnn::conv3x3;

/// A 1×1 convolution and BatchNorm that match a residual's shape to the block's output.
#[derive(Module, Debug)]
pub struct Downsample {
    pub conv: Conv2d,
    pub bn: BatchNorm,
}

/// The basic residual block: conv-BN-ReLU-conv-BN plus the (projected) input, then ReLU.
#[derive(Module, Debug)]
pub struct BasicBlock {
    pub conv1: Conv2d,
    pub bn1: BatchNorm,
    pub conv2: Conv2d,
    pub bn2: BatchNorm,
    pub downsample: Option<Downsample>,
}

impl BasicBlock {
    fn new(c_in: usize, c_out: usize, stride: usize, device: &Device) -> Self {
        let downsample = (stride != 1 || c_in != c_out).then(|| Downsample {
            conv: Conv2dConfig::new([c_in, c_out], [1, 1])
                .with_stride([stride, stride])
                .with_bias(false)
                .init(device),
            bn: BatchNormConfig::new(c_out).init(device),
        });
        Self {
            conv1: conv3x3(c_in, c_out, stride, device),
            bn1: BatchNormConfig::new(c_out).init(device),
            conv2: conv3x3(c_out, c_out, 1, device),
            bn2: BatchNormConfig::new(c_out).init(device),
            downsample,
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        relu(self.forward_pre(x))
    }

    /// The block's output before its final ReLU (the residual sum).
    fn forward_pre(&self, x: Tensor<4>) -> Tensor<4> {
        let identity = match &self.downsample {
            Some(d) => d.bn.forward(d.conv.forward(x.clone())),
            None => x.clone(),
        };
        let y = relu(self.bn1.forward(self.conv1.forward(x)));
        let y = self.bn2.forward(self.conv2.forward(y));
        y + identity
    }
}

/// `resnet-small`: stem Conv 3×3 →16 + BN + ReLU, residual blocks of 16, 32 (stride 2) and 64
/// (stride 2) channels, global average pooling, Linear →classes. BatchNorm throughout, so that
/// normalisation statistics are exercised.
#[derive(Module, Debug)]
pub struct ResnetSmall {
    pub stem: Conv2d,
    pub stem_bn: BatchNorm,
    pub blocks: Vec<BasicBlock>,
    pub pool: AdaptiveAvgPool2d,
    pub head: Linear,
}

impl ResnetSmall {
    pub fn new(channels: usize, classes: usize, device: &Device) -> Self {
        Self {
            stem: conv3x3(channels, 16, 1, device),
            stem_bn: BatchNormConfig::new(16).init(device),
            blocks: vec![
                BasicBlock::new(16, 16, 1, device),
                BasicBlock::new(16, 32, 2, device),
                BasicBlock::new(32, 64, 2, device),
            ],
            pool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            head: LinearConfig::new(64, classes).init(device),
        }
    }

    /// `[batch, c, h, w]` → the head's input, the pooled features `[batch, 64]` (already
    /// non-negative: the average of the last block's ReLUs).
    pub fn pre_features(&self, x: Tensor<4>) -> Tensor<2> {
        self.pool
            .forward(relu(self.last_pre_activation(x)))
            .flatten(1, 3)
    }

    /// The last block's residual sum before its ReLU, `[batch, 64, h, w]`: the units whose
    /// ReLUs, pooled, feed the head. Feature DoS pushes these below −1 (every position, so the
    /// pooled features are 0); the pooled features themselves are never negative.
    pub fn last_pre_activation(&self, x: Tensor<4>) -> Tensor<4> {
        let mut x = relu(self.stem_bn.forward(self.stem.forward(x)));
        let (last, rest) = self.blocks.split_last().expect("resnet-small has blocks");
        for block in rest {
            x = block.forward(x);
        }
        last.forward_pre(x)
    }
}

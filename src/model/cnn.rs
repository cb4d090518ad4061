use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::{Device, Tensor};

use super::conv::conv_relu_pool;

/// `cnn-small`: Conv 3×3 in→16 pad 1, ReLU, MaxPool 2, Conv 3×3 16→32 pad 1, ReLU, MaxPool 2,
/// Flatten, Linear →128, ReLU, Linear →classes.
#[derive(Module, Debug)]
pub struct CnnSmall {
    pub conv1: Conv2d,
    pub conv2: Conv2d,
    pub pool: MaxPool2d,
    pub fc: Linear,
    pub head: Linear,
}

pub(crate) fn conv3x3(c_in: usize, c_out: usize, stride: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([c_in, c_out], [3, 3])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .init(device)
}

pub(crate) fn pool2() -> MaxPool2d {
    MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init()
}

impl CnnSmall {
    pub fn new(channels: usize, size: usize, classes: usize, device: &Device) -> Self {
        let side = size / 4;
        Self {
            conv1: conv3x3(channels, 16, 1, device),
            conv2: conv3x3(16, 32, 1, device),
            pool: pool2(),
            fc: LinearConfig::new(32 * side * side, 128).init(device),
            head: LinearConfig::new(128, classes).init(device),
        }
    }

    /// `[batch, c, h, w]` → the hidden layer before its ReLU `[batch, 128]` (the head's input
    /// is its ReLU).
    pub fn pre_features(&self, x: Tensor<4>) -> Tensor<2> {
        let x = conv_relu_pool(&self.conv1, &self.pool, x);
        let x = conv_relu_pool(&self.conv2, &self.pool, x);
        let x: Tensor<2> = x.flatten(1, 3);
        self.fc.forward(x)
    }
}

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::pool::MaxPool2d;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use super::cnn::{conv3x3, pool2};
use super::conv::conv_relu_pool;

/// `vgg-small`: two VGG blocks (2 × Conv 3×3 + ReLU, MaxPool 2) of 32 and 64 channels, then
/// Linear →256, ReLU, Linear →classes.
#[derive(Module, Debug)]
pub struct VggSmall {
    pub convs: Vec<Conv2d>,
    pub pool: MaxPool2d,
    pub fc: Linear,
    pub head: Linear,
}

impl VggSmall {
    pub fn new(channels: usize, size: usize, classes: usize, device: &Device) -> Self {
        let side = size / 4;
        Self {
            convs: vec![
                conv3x3(channels, 32, 1, device),
                conv3x3(32, 32, 1, device),
                conv3x3(32, 64, 1, device),
                conv3x3(64, 64, 1, device),
            ],
            pool: pool2(),
            fc: LinearConfig::new(64 * side * side, 256).init(device),
            head: LinearConfig::new(256, classes).init(device),
        }
    }

    /// `[batch, c, h, w]` → the hidden layer before its ReLU `[batch, 256]` (the head's input
    /// is its ReLU).
    pub fn pre_features(&self, mut x: Tensor<4>) -> Tensor<2> {
        for block in self.convs.chunks(2) {
            let (last, first) = block.split_last().expect("two convolutions per block");
            for conv in first {
                x = relu(conv.forward(x));
            }
            x = conv_relu_pool(last, &self.pool, x);
        }
        let x: Tensor<2> = x.flatten(1, 3);
        self.fc.forward(x)
    }
}

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

/// Flatten, then `Linear → ReLU` per hidden width, then the head.
#[derive(Module, Debug)]
pub struct Mlp {
    pub hidden: Vec<Linear>,
    pub head: Linear,
}

impl Mlp {
    pub fn new(inputs: usize, widths: &[usize], classes: usize, device: &Device) -> Self {
        let mut hidden = Vec::with_capacity(widths.len());
        let mut d = inputs;
        for &w in widths {
            hidden.push(LinearConfig::new(d, w).init(device));
            d = w;
        }
        Self {
            hidden,
            head: LinearConfig::new(d, classes).init(device),
        }
    }

    /// `[batch, c, h, w]` → `[batch, classes]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let mut x: Tensor<2> = x.flatten(1, 3);
        for layer in &self.hidden {
            x = relu(layer.forward(x));
        }
        self.head.forward(x)
    }
}

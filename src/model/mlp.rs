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

    /// `[batch, c, h, w]` → the last hidden layer before its ReLU `[batch, width]` (the head's
    /// input is its ReLU; validation asks for at least one hidden layer).
    pub fn pre_features(&self, x: Tensor<4>) -> Tensor<2> {
        let mut x: Tensor<2> = x.flatten(1, 3);
        for (i, layer) in self.hidden.iter().enumerate() {
            if i > 0 {
                x = relu(x);
            }
            x = layer.forward(x);
        }
        x
    }
}

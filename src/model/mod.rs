//! Classifiers as burn modules, built from a [`ClassifierConfig`]. Every classifier ends in a
//! `head: Linear` so that attacker strategies can re-initialise or train the head alone.

pub mod cnn;
pub mod conv;
pub mod mlp;
pub mod resnet;
pub mod unet;
pub mod vgg;

use burn::config::Config;
use burn::module::{Module, ParamGroup};
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

pub use cnn::CnnSmall;
pub use mlp::Mlp;
pub use resnet::ResnetSmall;
pub use vgg::VggSmall;

use crate::config::ModelKind;

/// Which classifier to build, for which input and how many classes.
#[derive(Config, Debug)]
pub struct ClassifierConfig {
    pub kind: ModelKind,
    pub channels: usize,
    pub size: usize,
    pub classes: usize,
    /// Hidden widths of the MLP.
    #[config(default = "vec![256, 128]")]
    pub hidden: Vec<usize>,
}

/// One of the workbench's classifiers.
#[derive(Module, Debug)]
pub enum Classifier {
    Mlp(Mlp),
    CnnSmall(CnnSmall),
    VggSmall(VggSmall),
    ResnetSmall(ResnetSmall),
}

impl ClassifierConfig {
    pub fn init(&self, device: &Device) -> Classifier {
        let (c, s, k) = (self.channels, self.size, self.classes);
        match self.kind {
            ModelKind::Mlp => Classifier::Mlp(Mlp::new(c * s * s, &self.hidden, k, device)),
            ModelKind::CnnSmall => Classifier::CnnSmall(CnnSmall::new(c, s, k, device)),
            ModelKind::VggSmall => Classifier::VggSmall(VggSmall::new(c, s, k, device)),
            ModelKind::ResnetSmall => Classifier::ResnetSmall(ResnetSmall::new(c, k, device)),
            // Validation pairs the UNet with the denoising task, never with a classifier.
            ModelKind::Unet => panic!("the UNet is a denoiser, not a classifier"),
        }
    }
}

/// A fresh head as SOPHON's reference re-initialises it: Xavier-uniform weights, zero bias.
pub fn fresh_head(d_input: usize, classes: usize, device: &Device) -> Linear {
    LinearConfig::new(d_input, classes)
        .with_initializer(Initializer::XavierUniform { gain: 1.0 })
        .init(device)
        .map_bias_zero()
}

trait ZeroBias {
    fn map_bias_zero(self) -> Self;
}

impl ZeroBias for Linear {
    fn map_bias_zero(mut self) -> Self {
        if let Some(bias) = self.bias.take() {
            let zeros = bias.val().zeros_like();
            self.bias = Some(burn::module::Param::from_tensor(zeros));
        }
        self
    }
}

impl Classifier {
    /// `x`: `[batch, channels, size, size]` → logits `[batch, classes]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.head().forward(self.features(x))
    }

    /// `x`: `[batch, channels, size, size]` → the head's input `[batch, head_dims()[0]]`, the
    /// ReLU of [`Classifier::pre_features`].
    pub fn features(&self, x: Tensor<4>) -> Tensor<2> {
        relu(self.pre_features(x))
    }

    /// `x` → the head's input before its ReLU: the last hidden layer's pre-activation
    /// (resnet-small: its pooled features, already non-negative, which the ReLU leaves alone).
    pub fn pre_features(&self, x: Tensor<4>) -> Tensor<2> {
        match self {
            Classifier::Mlp(m) => m.pre_features(x),
            Classifier::CnnSmall(m) => m.pre_features(x),
            Classifier::VggSmall(m) => m.pre_features(x),
            Classifier::ResnetSmall(m) => m.pre_features(x),
        }
    }

    /// `x` → the pre-activations feature DoS pushes below −1, `[batch, n]`: the last hidden
    /// layer's (as [`Classifier::pre_features`]), or resnet-small's last residual sum at every
    /// position (its pooled features are an average of ReLUs, never negative, so a hinge on
    /// them could never close).
    pub fn dos_pre_activations(&self, x: Tensor<4>) -> Tensor<2> {
        match self {
            Classifier::ResnetSmall(m) => m.last_pre_activation(x).flatten(1, 3),
            _ => self.pre_features(x),
        }
    }

    /// `x` → the head's input and [`Classifier::dos_pre_activations`], from one forward pass.
    pub fn features_and_dos(&self, x: Tensor<4>) -> (Tensor<2>, Tensor<2>) {
        match self {
            Classifier::ResnetSmall(m) => {
                let pre = m.last_pre_activation(x);
                let features = m.pool.forward(relu(pre.clone())).flatten(1, 3);
                (features, pre.flatten(1, 3))
            }
            _ => {
                let pre = self.pre_features(x);
                (relu(pre.clone()), pre)
            }
        }
    }

    pub fn head(&self) -> &Linear {
        match self {
            Classifier::Mlp(m) => &m.head,
            Classifier::CnnSmall(m) => &m.head,
            Classifier::VggSmall(m) => &m.head,
            Classifier::ResnetSmall(m) => &m.head,
        }
    }

    fn head_mut(&mut self) -> &mut Linear {
        match self {
            Classifier::Mlp(m) => &mut m.head,
            Classifier::CnnSmall(m) => &mut m.head,
            Classifier::VggSmall(m) => &mut m.head,
            Classifier::ResnetSmall(m) => &mut m.head,
        }
    }

    /// `[d_input, classes]` of the head.
    pub fn head_dims(&self) -> [usize; 2] {
        self.head().weight.shape().dims()
    }

    /// Replace the head by a freshly initialised one (Xavier, zero bias).
    pub fn reinit_head(mut self, device: &Device) -> Self {
        let [d_in, classes] = self.head_dims();
        *self.head_mut() = fresh_head(d_in, classes, device);
        self
    }

    /// The parameters of the head, as a group for freezing or separate optimisation.
    pub fn head_group(&self) -> ParamGroup {
        ParamGroup::ids_from_module(self.head().clone())
    }

    /// Freeze everything except the head.
    pub fn train_head_only(self) -> Self {
        let group = self.head_group();
        self.freeze().unfreeze_group(group)
    }

    /// A copy with its own parameters *and* its own normalisation statistics (a plain clone
    /// shares BatchNorm's running state with the original). Parameter ids are kept, so gradients
    /// taken on the copy apply to the original.
    pub fn detached_copy(&self) -> Self {
        self.valid().train()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(kind: ModelKind, channels: usize, size: usize) -> ClassifierConfig {
        ClassifierConfig::new(kind, channels, size, 10).with_hidden(vec![32])
    }

    #[test]
    fn every_model_maps_images_to_class_logits() {
        let device = Device::flex();
        for kind in ModelKind::ALL {
            for (c, s) in [(1, 28), (3, 32), (1, 8)] {
                let model = config(kind, c, s).init(&device);
                let x = Tensor::<4>::zeros([2, c, s, s], &device);
                assert_eq!(model.forward(x).dims(), [2, 10], "{kind:?} {c}×{s}×{s}");
                assert_eq!(model.head_dims()[1], 10);
            }
        }
    }

    #[test]
    fn cnn_small_has_the_specified_parameter_count() {
        // conv 1→16: 160, conv 16→32: 4640, linear 32·7·7→128: 200 832, linear 128→10: 1290.
        let model = config(ModelKind::CnnSmall, 1, 28).init(&Device::flex());
        assert_eq!(model.num_params(), 160 + 4640 + 200_832 + 1290);
    }
}

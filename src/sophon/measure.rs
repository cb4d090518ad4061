//! The measures of a classifier that training, the losses and the evaluation share: the
//! cross-entropy, the accuracy, and the share of head-feeding units that are on.

use burn::module::Module;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor};

use crate::data::ImageSet;
use crate::data::batch::{self, epoch_batches};
use crate::model::Classifier;

/// Mean cross-entropy of `logits` `[batch, classes]` against `labels` `[batch]`.
pub fn cross_entropy(logits: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
    let logp = log_softmax(logits, 1);
    logp.gather(1, labels.unsqueeze_dim(1)).mean().neg()
}

/// Fraction of `set` classified correctly, in batches of `batch_size`, without gradients.
pub fn accuracy(model: &Classifier, set: &ImageSet, batch_size: usize, device: &Device) -> f64 {
    let model = model.valid();
    let mut correct = 0i64;
    for idx in epoch_batches(set.len(), batch_size, None) {
        let x = batch::images(set, &idx, device);
        let y = batch::labels(set, &idx, device);
        let pred = model.forward(x).argmax(1).squeeze_dim::<1>(1);
        correct += pred.equal(y).int().sum().into_scalar::<i64>();
    }
    correct as f64 / set.len().max(1) as f64
}

/// Share of the units feeding the head that are on (pre-activation > 0), averaged over the images
/// of `set` and the units, in batches of `batch_size`, without gradients. Feature DoS drives it
/// towards 0 on the restricted domain.
pub fn units_on(model: &Classifier, set: &ImageSet, batch_size: usize, device: &Device) -> f64 {
    let model = model.valid();
    let mut on = 0.0;
    for idx in epoch_batches(set.len(), batch_size, None) {
        let x = batch::images(set, &idx, device);
        let share = model.pre_features(x).greater_elem(0.0).float().mean();
        on += share.into_scalar::<f32>() as f64 * idx.len() as f64;
    }
    on / set.len().max(1) as f64
}

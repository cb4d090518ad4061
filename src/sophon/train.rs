//! Ordinary training (pre-training, NTR and attacker steps, for any task) and the accuracy of
//! classifiers.

use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor};

use super::divergence::{finite, finite_parameters, report};
use super::task::Protectable;
use super::{Devices, Halt, Monitor};
use crate::config::PretrainConfig;
use crate::data::batch::{self, epoch_batches};
use crate::data::rng::Rng;
use crate::data::{Domain, ImageSet};
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

/// One gradient step of the task's loss on `idx` of `set`; returns the updated model and the
/// batch loss.
#[allow(clippy::too_many_arguments)]
pub fn train_step<M: Protectable>(
    model: M,
    optim: &mut ModuleOptimizer,
    lr: f64,
    ctx: &M::Context,
    set: &ImageSet,
    idx: &[usize],
    rng: &mut Rng,
    device: &Device,
) -> (M, f64) {
    let loss = model.task_loss(ctx, set, idx, rng, device);
    let value = loss.clone().into_scalar::<f32>() as f64;
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    (optim.step(lr, model, grads), value)
}

/// Train `model` on the original domain's training split for `config.epochs` epochs, reporting
/// the loss every step (`pretrain/loss`) and the original-domain validation measure after every
/// epoch (`pretrain/original_acc` or `pretrain/original_mse`). A NaN or infinite loss, parameter or
/// score ends it with [`Halt::Diverged`] (reported to the monitor).
#[allow(clippy::too_many_arguments)]
pub fn pretrain<M: Protectable>(
    mut model: M,
    ctx: &M::Context,
    original: &Domain,
    config: &PretrainConfig,
    eval_batch: usize,
    seed: u64,
    devices: &Devices,
    monitor: &mut dyn Monitor,
) -> Result<M, Halt> {
    let mut optim = super::optim::build(&config.optimizer);
    let per_epoch = original.train.len().div_ceil(config.batch_size);
    monitor.phase("pretrain", per_epoch * config.epochs);
    let metric = M::METRIC.name();
    let mut step = 0;
    for epoch in 0..config.epochs {
        let mut rng = Rng::from_keys(&[seed, 0x50_52_45, epoch as u64]);
        for idx in epoch_batches(original.train.len(), config.batch_size, Some(&mut rng)) {
            let (m, loss) = train_step(
                model,
                &mut optim,
                config.optimizer.lr,
                ctx,
                &original.train,
                &idx,
                &mut rng,
                &devices.train,
            );
            model = m;
            step += 1;
            let loss = finite(loss, "pretrain", step, "loss").map_err(|d| report(monitor, d))?;
            monitor.metric("pretrain/loss", step, loss);
            monitor.step(step)?;
        }
        model = finite_parameters(model, "pretrain", step).map_err(|d| report(monitor, d))?;
        let score = model.score(ctx, &original.validation, eval_batch, seed, &devices.eval);
        let quantity = format!("original_{metric}");
        let score = finite(score, "pretrain", step, &quantity).map_err(|d| report(monitor, d))?;
        monitor.metric(&format!("pretrain/original_{metric}"), epoch + 1, score);
        monitor.log(&format!(
            "pre-training epoch {}: original validation {} {:.4}",
            epoch + 1,
            M::METRIC.label(),
            score
        ));
    }
    Ok(model)
}

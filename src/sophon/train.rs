//! Ordinary training, for any task: the one gradient step that pre-training, NTR, the probe and
//! the attacks share, and pre-training itself.

use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::Device;

use super::context::RunContext;
use super::divergence::{finite, finite_parameters, report};
use super::series;
use super::task::Protectable;
use super::{Halt, Monitor, Phase};
use crate::config::PretrainConfig;
use crate::data::ImageSet;
use crate::data::batch::epoch_batches;
use crate::data::rng::Rng;

/// What one gradient step needs besides the model and its batch: the optimizer (and its
/// state), the learning rate, the task's context and the device. Pre-training, NTR, the probe and
/// the attacks all step through it.
pub struct Trainer<'a, M: Protectable> {
    pub optim: &'a mut ModuleOptimizer,
    pub lr: f64,
    pub ctx: &'a M::Context,
    pub device: &'a Device,
}

impl<'a, M: Protectable> Trainer<'a, M> {
    /// A trainer of `optim` at `lr` on `run`'s task context and training device.
    pub fn on(run: &RunContext<'a, M>, optim: &'a mut ModuleOptimizer, lr: f64) -> Self {
        Self {
            optim,
            lr,
            ctx: run.ctx,
            device: &run.devices.train,
        }
    }

    /// One gradient step of the task's loss on `idx` of `set`; returns the updated model and
    /// the batch loss.
    pub fn step(&mut self, model: M, set: &ImageSet, idx: &[usize], rng: &mut Rng) -> (M, f64) {
        let loss = model.task_loss(self.ctx, set, idx, rng, self.device);
        let value = loss.clone().into_scalar::<f32>() as f64;
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        (self.optim.step(self.lr, model, grads), value)
    }
}

/// Train `model` on the original domain's training split for `config.epochs` epochs, reporting
/// the loss every step (`pretrain/loss`) and the original-domain validation measure after every
/// epoch (`pretrain/original_acc` or `pretrain/original_mse`). A NaN or infinite loss, parameter or
/// score ends it with [`Halt::Diverged`] (reported to the monitor).
pub fn pretrain<M: Protectable>(
    mut model: M,
    run: &RunContext<'_, M>,
    config: &PretrainConfig,
    monitor: &mut dyn Monitor,
) -> Result<M, Halt> {
    let (original, seed) = (run.original, run.seed);
    let mut optim = super::optim::build(&config.optimizer);
    let mut trainer = Trainer::on(run, &mut optim, config.optimizer.lr);
    let per_epoch = original.train.len().div_ceil(config.batch_size);
    monitor.phase(Phase::Pretrain, per_epoch * config.epochs);
    let metric = M::METRIC.name();
    let mut step = 0;
    for epoch in 0..config.epochs {
        let mut rng = Rng::from_keys(&[seed, 0x50_52_45, epoch as u64]);
        for idx in epoch_batches(original.train.len(), config.batch_size, Some(&mut rng)) {
            let (m, loss) = trainer.step(model, &original.train, &idx, &mut rng);
            model = m;
            step += 1;
            let loss = finite(loss, "pretrain", step, "loss").map_err(|d| report(monitor, d))?;
            monitor.metric(series::PRETRAIN_LOSS, step, loss);
            monitor.step(step)?;
        }
        model = finite_parameters(model, "pretrain", step).map_err(|d| report(monitor, d))?;
        let score = run.score(&model, &original.validation);
        let quantity = format!("original_{metric}");
        let score = finite(score, "pretrain", step, &quantity).map_err(|d| report(monitor, d))?;
        monitor.metric(&series::pretrain_original(M::METRIC), epoch + 1, score);
        monitor.log(&format!(
            "pre-training epoch {}: original validation {} {:.4}",
            epoch + 1,
            M::METRIC.label(),
            score
        ));
    }
    Ok(model)
}

//! The attacker evaluation: fine-tune a starting model on the restricted domain with a strategy
//! and record restricted-domain test accuracy after every epoch.

use serde::{Deserialize, Serialize};

use super::train::{accuracy, train_step};
use super::{Devices, Interrupted, Monitor};
use crate::config::{AttackStrategy, Layers, Start};
use crate::data::Domain;
use crate::data::batch::epoch_batches;
use crate::data::rng::Rng;
use crate::model::Classifier;

/// The outcome of one strategy from one starting point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttackResult {
    pub strategy: String,
    pub start: Start,
    /// Restricted-domain test accuracy before any fine-tuning (after a head re-init, if any).
    pub initial_restricted_acc: f64,
    /// Restricted-domain test accuracy after each epoch.
    pub restricted_acc: Vec<f64>,
    pub final_restricted_acc: f64,
    /// Mean over the epochs: how fast the attacker learns, not only where it ends.
    pub mean_restricted_acc: f64,
}

/// The metric series of one attack: `attack/<strategy>/<start>/restricted_acc`, step = epoch.
pub fn series(strategy: &str, start: Start) -> String {
    format!("attack/{strategy}/{start}/restricted_acc")
}

/// How many optimisation steps [`fine_tune`] takes.
pub fn steps(strategy: &AttackStrategy, restricted: &Domain) -> usize {
    restricted.train.len().div_ceil(strategy.batch_size) * strategy.epochs
}

/// Fine-tune a copy of `start_model` (the model itself is untouched). The data order depends on
/// the seed and the strategy only, so every starting point sees the same batches.
#[allow(clippy::too_many_arguments)]
pub fn fine_tune(
    start_model: &Classifier,
    start: Start,
    strategy: &AttackStrategy,
    restricted: &Domain,
    eval_batch: usize,
    seed: u64,
    devices: &Devices,
    monitor: &mut dyn Monitor,
    step: &mut usize,
) -> Result<AttackResult, Interrupted> {
    let mut model = start_model.detached_copy();
    model = match strategy.layers {
        Layers::All => model,
        Layers::ReinitHead => model.reinit_head(&devices.train),
        Layers::HeadOnly => model.train_head_only(),
    };
    let mut optim = super::optim::build(&strategy.optimizer);
    let series = series(&strategy.name, start);
    let initial = accuracy(&model, &restricted.test, eval_batch, &devices.eval);
    monitor.metric(&series, 0, initial);
    let mut per_epoch = Vec::with_capacity(strategy.epochs);
    let name_key = strategy
        .name
        .bytes()
        .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
    for epoch in 0..strategy.epochs {
        let mut rng = Rng::from_keys(&[seed, 0x41_54_4B, name_key, epoch as u64]);
        for idx in epoch_batches(restricted.train.len(), strategy.batch_size, Some(&mut rng)) {
            let (m, _) = train_step(
                model,
                &mut optim,
                strategy.optimizer.lr,
                &restricted.train,
                &idx,
                &devices.train,
            );
            model = m;
            *step += 1;
            monitor.step(*step)?;
        }
        let acc = accuracy(&model, &restricted.test, eval_batch, &devices.eval);
        monitor.metric(&series, epoch + 1, acc);
        per_epoch.push(acc);
    }
    monitor.log(&format!(
        "attack {} from {start}: restricted accuracy {:.3} → {:.3}",
        strategy.name,
        initial,
        per_epoch.last().copied().unwrap_or(initial)
    ));
    Ok(AttackResult {
        strategy: strategy.name.clone(),
        start,
        initial_restricted_acc: initial,
        final_restricted_acc: per_epoch.last().copied().unwrap_or(initial),
        mean_restricted_acc: per_epoch.iter().sum::<f64>() / per_epoch.len().max(1) as f64,
        restricted_acc: per_epoch,
    })
}

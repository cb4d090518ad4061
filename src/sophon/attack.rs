//! The attacker evaluation: fine-tune a starting model on the restricted domain with a strategy
//! and record the restricted-domain test measure (accuracy, or ε-MSE for a denoiser) after
//! every epoch.

use serde::{Deserialize, Serialize};

use super::divergence::{Divergence, finite, parameter_norm, report};
use super::task::{Metric, Protectable};
use super::train::train_step;
use super::{Devices, Interrupted, Monitor};
use crate::config::{AttackStrategy, Start};
use crate::data::Domain;
use crate::data::batch::epoch_batches;
use crate::data::rng::Rng;

/// The outcome of one strategy from one starting point. In `summary.json` the measures are
/// named after the task's metric: `restricted_acc`, `final_restricted_acc`, … for classifiers,
/// `restricted_mse`, `final_restricted_mse`, … for denoisers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "AttackRecord", try_from = "AttackRecord")]
pub struct AttackResult {
    pub strategy: String,
    pub start: Start,
    pub metric: Metric,
    /// Before any fine-tuning (after a head re-init, if any).
    pub initial: f64,
    /// After each epoch.
    pub per_epoch: Vec<f64>,
    /// After the last epoch.
    pub final_score: f64,
    /// Mean over the epochs: how fast the attacker learns, not only where it ends.
    pub mean: f64,
    /// The attacker's fine-tuning turned NaN or infinite: `per_epoch` stops before it, and the
    /// figures are no measure of protection (a diverged attacker scores at chance from any
    /// start; a real one would lower its learning rate).
    pub diverged: Option<Divergence>,
}

/// [`AttackResult`] as `summary.json` spells it.
#[derive(Serialize, Deserialize)]
struct AttackRecord {
    strategy: String,
    start: Start,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    initial_restricted_acc: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    restricted_acc: Option<Vec<f64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    final_restricted_acc: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mean_restricted_acc: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    initial_restricted_mse: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    restricted_mse: Option<Vec<f64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    final_restricted_mse: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mean_restricted_mse: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    diverged: Option<Divergence>,
}

impl From<AttackResult> for AttackRecord {
    fn from(a: AttackResult) -> Self {
        let acc = a.metric == Metric::Acc;
        let pick = |v: f64, want: bool| want.then_some(v);
        Self {
            strategy: a.strategy,
            start: a.start,
            initial_restricted_acc: pick(a.initial, acc),
            final_restricted_acc: pick(a.final_score, acc),
            mean_restricted_acc: pick(a.mean, acc),
            initial_restricted_mse: pick(a.initial, !acc),
            final_restricted_mse: pick(a.final_score, !acc),
            mean_restricted_mse: pick(a.mean, !acc),
            restricted_acc: acc.then(|| a.per_epoch.clone()),
            restricted_mse: (!acc).then_some(a.per_epoch),
            diverged: a.diverged,
        }
    }
}

impl TryFrom<AttackRecord> for AttackResult {
    type Error = String;

    fn try_from(r: AttackRecord) -> Result<Self, String> {
        let missing = |f: &str| format!("attack entry {} from {}: no {f}", r.strategy, r.start);
        let (metric, initial, per_epoch, final_score, mean) =
            match (&r.restricted_acc, &r.restricted_mse) {
                (Some(curve), _) => (
                    Metric::Acc,
                    r.initial_restricted_acc,
                    curve.clone(),
                    r.final_restricted_acc,
                    r.mean_restricted_acc,
                ),
                (None, Some(curve)) => (
                    Metric::Mse,
                    r.initial_restricted_mse,
                    curve.clone(),
                    r.final_restricted_mse,
                    r.mean_restricted_mse,
                ),
                (None, None) => return Err(missing("restricted_acc or restricted_mse")),
            };
        let m = metric.name();
        Ok(Self {
            initial: initial.ok_or_else(|| missing(&format!("initial_restricted_{m}")))?,
            final_score: final_score.ok_or_else(|| missing(&format!("final_restricted_{m}")))?,
            mean: mean.ok_or_else(|| missing(&format!("mean_restricted_{m}")))?,
            strategy: r.strategy,
            start: r.start,
            metric,
            per_epoch,
            diverged: r.diverged,
        })
    }
}

/// The metric series of one attack: `attack/<strategy>/<start>/restricted_<metric>`, step =
/// epoch.
pub fn series(strategy: &str, start: Start, metric: Metric) -> String {
    format!("attack/{strategy}/{start}/restricted_{}", metric.name())
}

/// How many optimisation steps [`fine_tune`] takes.
pub fn steps(strategy: &AttackStrategy, restricted: &Domain) -> usize {
    restricted.train.len().div_ceil(strategy.batch_size) * strategy.epochs
}

/// Fine-tune a copy of `start_model` (the model itself is untouched). The data order (and a
/// denoiser's noise) depends on the seed and the strategy only, so every starting point sees
/// the same batches. A NaN or infinite loss, parameter or score ends the attack early with
/// `diverged` set (reported to the monitor); the epochs before it stand.
#[allow(clippy::too_many_arguments)]
pub fn fine_tune<M: Protectable>(
    start_model: &M,
    ctx: &M::Context,
    start: Start,
    strategy: &AttackStrategy,
    restricted: &Domain,
    eval_batch: usize,
    seed: u64,
    devices: &Devices,
    monitor: &mut dyn Monitor,
    step: &mut usize,
) -> Result<(M, AttackResult), Interrupted> {
    let mut model = start_model.attacker_copy(strategy.layers, &devices.train);
    let mut optim = super::optim::build(&strategy.optimizer);
    let series = series(&strategy.name, start, M::METRIC);
    let score = |m: &M| m.score(ctx, &restricted.test, eval_batch, seed, &devices.eval);
    let initial = score(&model);
    monitor.metric(&series, 0, initial);
    let mut per_epoch = Vec::with_capacity(strategy.epochs);
    let name_key = strategy
        .name
        .bytes()
        .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
    let phase = format!("attack {} from {start}", strategy.name);
    let mut diverged = None;
    'epochs: for epoch in 0..strategy.epochs {
        let mut rng = Rng::from_keys(&[seed, 0x41_54_4B, name_key, epoch as u64]);
        for idx in epoch_batches(restricted.train.len(), strategy.batch_size, Some(&mut rng)) {
            let (m, loss) = train_step(
                model,
                &mut optim,
                strategy.optimizer.lr,
                ctx,
                &restricted.train,
                &idx,
                &mut rng,
                &devices.train,
            );
            model = m;
            *step += 1;
            if let Err(d) = finite(loss, &phase, epoch + 1, "loss") {
                diverged = Some(report(monitor, d));
                break 'epochs;
            }
            monitor.step(*step)?;
        }
        let checked = finite(parameter_norm(&model), &phase, epoch + 1, "parameters")
            .and_then(|_| finite(score(&model), &phase, epoch + 1, &series));
        match checked {
            Ok(s) => {
                monitor.metric(&series, epoch + 1, s);
                per_epoch.push(s);
            }
            Err(d) => {
                diverged = Some(report(monitor, d));
                break;
            }
        }
    }
    let final_score = per_epoch.last().copied().unwrap_or(initial);
    match &diverged {
        None => monitor.log(&format!(
            "attack {} from {start}: restricted {} {:.4} → {:.4}",
            strategy.name,
            M::METRIC.label(),
            initial,
            final_score
        )),
        Some(d) => monitor.log(&format!(
            "attack {} from {start} diverged at epoch {} ({} is {}): its figures stop there and measure nothing; lower this attacker's learning rate",
            strategy.name, d.step, d.quantity, d.value
        )),
    }
    let result = AttackResult {
        strategy: strategy.name.clone(),
        start,
        metric: M::METRIC,
        initial,
        final_score,
        mean: if per_epoch.is_empty() {
            initial
        } else {
            per_epoch.iter().sum::<f64>() / per_epoch.len() as f64
        },
        per_epoch,
        diverged,
    };
    Ok((model, result))
}

//! The attacker evaluation: fine-tune a starting model on the restricted domain with a strategy
//! and record the restricted-domain test measure (accuracy, or ε-MSE for a denoiser) after
//! every epoch.

use serde::{Deserialize, Serialize};

use super::context::RunContext;
use super::divergence::{Divergence, finite, parameter_norm, report};
use super::series;
use super::task::Protectable;
use super::train::Trainer;
use super::{Interrupted, Monitor};
use crate::config::Metric;
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

/// An attack entry of `summary.json` that lacks a field it needs.
#[derive(Debug, thiserror::Error)]
#[error("attack entry {strategy} from {start}: no {field}")]
pub struct IncompleteAttack {
    pub strategy: String,
    pub start: Start,
    pub field: String,
}

impl TryFrom<AttackRecord> for AttackResult {
    type Error = IncompleteAttack;

    fn try_from(r: AttackRecord) -> Result<Self, IncompleteAttack> {
        let missing = |f: &str| IncompleteAttack {
            strategy: r.strategy.clone(),
            start: r.start,
            field: f.to_string(),
        };
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

/// How many optimisation steps [`fine_tune`] takes.
pub fn steps(strategy: &AttackStrategy, restricted: &Domain) -> usize {
    epoch_steps(strategy, restricted) * strategy.epochs
}

/// Optimisation steps per epoch of `strategy`.
pub fn epoch_steps(strategy: &AttackStrategy, restricted: &Domain) -> usize {
    restricted
        .attacker_train()
        .len()
        .div_ceil(strategy.batch_size)
}

/// How an attack run reports each epoch: the phase a divergence names, the metric series its
/// test measure goes to (when any), and whether it scores the validation split too.
pub struct Reporting<'a> {
    pub phase: &'a str,
    pub series: Option<&'a str>,
    pub validate: bool,
}

/// One attacker's fine-tuning of a copy of a starting model, resumable epoch by epoch (the
/// best-effort search stops most candidates early and continues the rest). The data order (and
/// a denoiser's noise) depends on the seed, the strategy's name and the epoch only, so every
/// starting point sees the same batches and a continued run equals an uninterrupted one.
pub struct AttackRun<M> {
    pub strategy: AttackStrategy,
    /// Always `Some` between calls (taken while a step owns it, so that the optimizer can update
    /// the only reference to the parameters in place).
    model: Option<M>,
    optim: burn::optim::ModuleOptimizer,
    name_key: u64,
    /// The restricted test measure before any fine-tuning, then after each epoch.
    pub initial: f64,
    pub test: Vec<f64>,
    /// The restricted validation measure after each epoch (when asked for).
    pub validation: Vec<f64>,
    pub diverged: Option<Divergence>,
}

impl<M: Protectable> AttackRun<M> {
    pub fn new(start_model: &M, strategy: &AttackStrategy, a: &RunContext<'_, M>) -> Self {
        let model = start_model.attacker_copy(strategy.layers, &a.devices.train);
        let initial = a.score(&model, &a.restricted.test);
        Self {
            strategy: strategy.clone(),
            optim: super::optim::build(&strategy.optimizer),
            name_key: strategy
                .name
                .bytes()
                .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64)),
            model: Some(model),
            initial,
            test: Vec::new(),
            validation: Vec::new(),
            diverged: None,
        }
    }

    pub fn epochs_done(&self) -> usize {
        self.test.len()
    }

    /// Train on to epoch `to` (or until it diverges), scoring the test split after every epoch
    /// (sent to `how.series` when given) and, with `how.validate`, the validation split. A NaN
    /// or infinity sets `diverged` (not reported to the monitor: the caller decides what it
    /// means). `step` counts optimisation steps for the monitor's progress.
    pub fn advance(
        &mut self,
        to: usize,
        how: &Reporting<'_>,
        a: &RunContext<'_, M>,
        monitor: &mut dyn Monitor,
        step: &mut usize,
    ) -> Result<(), Interrupted> {
        let Reporting {
            phase,
            series,
            validate,
        } = *how;
        let score = |m: &M, set| a.score(m, set);
        while self.diverged.is_none() && self.epochs_done() < to {
            let epoch = self.epochs_done();
            let mut rng = Rng::from_keys(&[a.seed, 0x41_54_4B, self.name_key, epoch as u64]);
            let len = a.restricted.attacker_train().len();
            for idx in epoch_batches(len, self.strategy.batch_size, Some(&mut rng)) {
                let model = self
                    .model
                    .take()
                    .expect("the model is back after every step");
                let lr = self.strategy.optimizer.lr;
                let mut trainer = Trainer::on(a, &mut self.optim, lr);
                let (m, loss) = trainer.step(model, a.restricted.attacker_train(), &idx, &mut rng);
                self.model = Some(m);
                *step += 1;
                if let Err(d) = finite(loss, phase, epoch + 1, "loss") {
                    self.diverged = Some(d);
                    return Ok(());
                }
                monitor.step(*step)?;
            }
            let quantity = format!("restricted_{}", M::METRIC.name());
            let model = self.model();
            let checked = finite(parameter_norm(model), phase, epoch + 1, "parameters")
                .and_then(|_| {
                    finite(
                        score(model, &a.restricted.test),
                        phase,
                        epoch + 1,
                        &quantity,
                    )
                })
                .and_then(|t| {
                    let v = if validate {
                        Some(finite(
                            score(model, &a.restricted.validation),
                            phase,
                            epoch + 1,
                            &format!("validation_{quantity}"),
                        )?)
                    } else {
                        None
                    };
                    Ok((t, v))
                });
            match checked {
                Ok((t, v)) => {
                    if let Some(series) = series {
                        monitor.metric(series, epoch + 1, t);
                    }
                    self.test.push(t);
                    self.validation.extend(v);
                }
                Err(d) => self.diverged = Some(d),
            }
        }
        Ok(())
    }

    /// The fine-tuned model.
    pub fn model(&self) -> &M {
        self.model
            .as_ref()
            .expect("the model is back after every step")
    }

    /// The fine-tuned model, owned.
    pub fn into_model(self) -> M {
        self.model.expect("the model is back after every step")
    }

    /// The outcome, reported under `name` from `start`.
    pub fn result(&self, name: &str, start: Start) -> AttackResult {
        let per_epoch = self.test.clone();
        AttackResult {
            strategy: name.to_string(),
            start,
            metric: M::METRIC,
            initial: self.initial,
            final_score: per_epoch.last().copied().unwrap_or(self.initial),
            mean: if per_epoch.is_empty() {
                self.initial
            } else {
                per_epoch.iter().sum::<f64>() / per_epoch.len() as f64
            },
            per_epoch,
            diverged: self.diverged.clone(),
        }
    }
}

/// Fine-tune a copy of `start_model` (the model itself is untouched) with a fixed strategy,
/// recording the restricted test measure after every epoch. A NaN or infinite loss, parameter
/// or score ends the attack early with `diverged` set (reported to the monitor); the epochs
/// before it stand.
pub fn fine_tune<M: Protectable>(
    start_model: &M,
    start: Start,
    strategy: &AttackStrategy,
    a: &RunContext<'_, M>,
    monitor: &mut dyn Monitor,
    step: &mut usize,
) -> Result<(M, AttackResult), Interrupted> {
    let series = series::attack(&strategy.name, start, M::METRIC);
    let mut run = AttackRun::new(start_model, strategy, a);
    monitor.metric(&series, 0, run.initial);
    let phase = format!("attack {} from {start}", strategy.name);
    let how = Reporting {
        phase: &phase,
        series: Some(&series),
        validate: false,
    };
    run.advance(strategy.epochs, &how, a, monitor, step)?;
    let mut result = run.result(&strategy.name, start);
    match &run.diverged {
        None => monitor.log(&format!(
            "attack {} from {start}: restricted {} {:.4} → {:.4}",
            strategy.name,
            M::METRIC.label(),
            result.initial,
            result.final_score
        )),
        Some(d) => {
            let d = report(monitor, d.clone());
            monitor.log(&format!(
                "attack {} from {start} diverged at epoch {} ({} is {}): its figures stop there and measure nothing; lower this attacker's learning rate",
                strategy.name, d.step, d.quantity, d.value
            ));
            result.diverged = Some(d);
        }
    }
    Ok((run.into_model(), result))
}

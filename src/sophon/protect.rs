//! SOPHON's outer loop: ℓ_FTS fine-tuning-suppression steps, then ℓ_NTR normal-training steps,
//! per outer iteration; periodic intactness and non-fine-tunability probes; the intactness
//! guard; live setting changes; resumable checkpoints.

use std::cmp::Ordering;
use std::time::Instant;

use burn::optim::ModuleOptimizer;
use serde::{Deserialize, Serialize};

use super::config::{ProbeConfig, SelectConfig, SophonConfig};
use super::fts::{fts_step, sample_batch};
use super::task::{Metric, Protectable, SaveModel, Scores, show_samples};
use super::train::train_step;
use super::{Devices, Interrupted, LiveUpdate, Monitor};
use crate::config::{Layers, OptimizerConfig, OptimizerKind};
use crate::data::Domain;
use crate::data::rng::Rng;

/// Where a SOPHON run stands: enough, with the model and both optimizers, to resume it exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Outer iterations completed.
    pub iteration: usize,
    pub alpha: f64,
    pub beta: f64,
    pub fts_loops: usize,
    pub ntr_loops: usize,
    pub eval_every: usize,
    /// Latest measurements (for the summary after a resume): the task's original-domain
    /// measure and the probe's restricted-domain measure.
    #[serde(alias = "original_acc")]
    pub original_score: f64,
    #[serde(alias = "probe_restricted_acc")]
    pub probe_score: f64,
    /// The pre-trained model's original-domain measure (iteration 0's evaluation), which model
    /// selection compares against.
    #[serde(default)]
    pub pretrained_score: Option<f64>,
    /// With model selection: the best evaluation so far (its model is in the checkpoint).
    #[serde(default)]
    pub selected: Option<Selected>,
}

/// The evaluation model selection keeps.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Selected {
    pub iteration: usize,
    pub original_score: f64,
    pub probe_score: f64,
}

impl Progress {
    fn new(config: &SophonConfig) -> Self {
        Self {
            iteration: 0,
            alpha: config.alpha,
            beta: config.beta,
            fts_loops: config.fts_loops,
            ntr_loops: config.ntr_loops,
            eval_every: config.eval_every,
            original_score: f64::NAN,
            probe_score: f64::NAN,
            pretrained_score: None,
            selected: None,
        }
    }
}

/// What a resumable checkpoint holds.
pub struct Checkpoint<'a> {
    pub model: &'a dyn SaveModel,
    pub fts_optim: &'a ModuleOptimizer,
    pub ntr_optim: &'a ModuleOptimizer,
    pub progress: &'a Progress,
    /// With model selection: the best evaluated model so far.
    pub selected: Option<&'a dyn SaveModel>,
}

/// A checkpoint read back, to continue from.
pub struct Resume<M> {
    pub model: M,
    pub fts_optim: ModuleOptimizer,
    pub ntr_optim: ModuleOptimizer,
    pub progress: Progress,
    /// With model selection: the best evaluated model so far.
    pub selected: Option<M>,
}

/// SOPHON's part of `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SophonSummary {
    /// After SOPHON: original-domain measure (intactness), restricted-domain measure before any
    /// fine-tuning, the last non-fine-tunability probe (restricted, after a short fine-tune),
    /// and a denoiser's sample PSNR.
    #[serde(flatten)]
    pub scores: Scores,
    /// Outer iterations completed.
    pub iterations: usize,
    /// The intactness guard rolled the last iteration back and stopped SOPHON.
    pub guard_triggered: bool,
    /// With model selection: the outer iteration whose model was handed on (`None`: the last).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selected_iteration: Option<usize>,
    /// The settings used (live changes applied: their history is in `metrics.jsonl`).
    pub settings: SophonConfig,
    pub seconds: f64,
}

/// The two Adam optimizers of SOPHON, fresh.
pub fn optimizers() -> (ModuleOptimizer, ModuleOptimizer) {
    let adam = OptimizerConfig::new(OptimizerKind::Adam, 1.0);
    (super::optim::build(&adam), super::optim::build(&adam))
}

/// The restricted-domain measure on `restricted.test` after a short fine-tune of a copy of
/// `model` on `restricted.train`.
#[allow(clippy::too_many_arguments)]
pub fn probe<M: Protectable>(
    model: &M,
    ctx: &M::Context,
    restricted: &Domain,
    config: &ProbeConfig,
    eval_batch: usize,
    seed: u64,
    iteration: usize,
    devices: &Devices,
) -> f64 {
    let mut copy = model.attacker_copy(Layers::All, &devices.train);
    let mut optim = super::optim::build(&config.optimizer);
    let mut rng = Rng::from_keys(&[seed, 0x50_52_4F_42, iteration as u64]);
    for _ in 0..config.steps {
        let idx = sample_batch(restricted.train.len(), config.batch_size, &mut rng);
        copy = train_step(
            copy,
            &mut optim,
            config.optimizer.lr,
            ctx,
            &restricted.train,
            &idx,
            &mut rng,
            &devices.train,
        )
        .0;
    }
    copy.score(ctx, &restricted.test, eval_batch, seed, &devices.eval)
}

/// What the periodic evaluation needs.
struct EvalContext<'a, M: Protectable> {
    ctx: &'a M::Context,
    original: &'a Domain,
    restricted: &'a Domain,
    /// What the probe fine-tunes on and is scored on: the restricted domain, or with model
    /// selection its training set split into a fine-tuning part and a held-out part.
    probe_data: &'a Domain,
    config: &'a SophonConfig,
    eval_batch: usize,
    seed: u64,
    devices: &'a Devices,
}

impl<M: Protectable> EvalContext<'_, M> {
    /// The original-domain test measure.
    fn intactness(&self, model: &M) -> f64 {
        model.score(
            self.ctx,
            &self.original.test,
            self.eval_batch,
            self.seed,
            &self.devices.eval,
        )
    }

    /// Measure intactness and the probe at outer iteration `it`, record both (and a
    /// classifier's share of hidden units on per domain, a denoiser's sample grids).
    fn evaluate(&self, model: &M, it: usize, p: &mut Progress, monitor: &mut dyn Monitor) {
        let metric = M::METRIC.name();
        p.original_score = self.intactness(model);
        p.probe_score = probe(
            model,
            self.ctx,
            self.probe_data,
            &self.config.probe,
            self.eval_batch,
            self.seed,
            it,
            self.devices,
        );
        monitor.metric(&format!("sophon/original_{metric}"), it, p.original_score);
        monitor.metric(
            &format!("sophon/probe_restricted_{metric}"),
            it,
            p.probe_score,
        );
        for (domain, set) in [
            ("original", &self.original.test),
            ("restricted", &self.restricted.test),
        ] {
            if let Some(on) = model.units_on(set, self.eval_batch, &self.devices.eval) {
                monitor.metric(&format!("sophon/{domain}_units_on"), it, on);
            }
        }
        show_samples(
            model,
            self.ctx,
            "sophon",
            "sophon",
            it,
            &self.original.test,
            &self.restricted.test,
            self.seed,
            &self.devices.eval,
            monitor,
        );
    }
}

fn record_settings(monitor: &mut dyn Monitor, p: &Progress, step: usize) {
    monitor.metric("sophon/alpha", step, p.alpha);
    monitor.metric("sophon/beta", step, p.beta);
    monitor.metric("sophon/fts_loops", step, p.fts_loops as f64);
    monitor.metric("sophon/ntr_loops", step, p.ntr_loops as f64);
    monitor.metric("sophon/eval_every", step, p.eval_every as f64);
}

fn apply(update: LiveUpdate, p: &mut Progress) {
    match update {
        LiveUpdate::Alpha(a) if a > 0.0 && a.is_finite() => p.alpha = a,
        LiveUpdate::Beta(b) if b > 0.0 && b.is_finite() => p.beta = b,
        LiveUpdate::Loops { fts, ntr } if fts + ntr > 0 => {
            p.fts_loops = fts;
            p.ntr_loops = ntr;
        }
        LiveUpdate::EvalEvery(n) if n > 0 => p.eval_every = n,
        _ => {}
    }
}

/// Run SOPHON on `model` (pre-trained on the original domain), or continue from `resume`.
#[allow(clippy::too_many_arguments)]
pub fn protect<M: Protectable>(
    model: M,
    ctx: &M::Context,
    original: &Domain,
    restricted: &Domain,
    config: &SophonConfig,
    eval_batch: usize,
    seed: u64,
    devices: &Devices,
    monitor: &mut dyn Monitor,
    resume: Option<Resume<M>>,
) -> Result<(M, SophonSummary), Interrupted> {
    let started = Instant::now();
    let (mut model, mut fts_optim, mut ntr_optim, mut p, mut selected) = match resume {
        Some(r) => (r.model, r.fts_optim, r.ntr_optim, r.progress, r.selected),
        None => {
            let (f, n) = optimizers();
            (model, f, n, Progress::new(config), None)
        }
    };
    monitor.phase("sophon", config.outer_iterations);
    let held_out = config.select.as_ref().map(|s| {
        let (train, test) = restricted.train.split_last(s.holdout);
        Domain { train, test }
    });
    let eval = EvalContext::<M> {
        ctx,
        original,
        restricted,
        probe_data: held_out.as_ref().unwrap_or(restricted),
        config,
        eval_batch,
        seed,
        devices,
    };
    if p.iteration == 0 {
        record_settings(monitor, &p, 0);
        eval.evaluate(&model, 0, &mut p, monitor);
        p.pretrained_score = Some(p.original_score);
    }
    let mut guard_triggered = false;
    while p.iteration < config.outer_iterations {
        let it = p.iteration + 1;
        let updates = monitor.take_updates();
        if !updates.is_empty() {
            for u in updates {
                apply(u, &mut p);
            }
            record_settings(monitor, &p, it);
            monitor.log(&format!(
                "from iteration {it}: α {:.2e}, β {:.2e}, loops {}:{}, evaluate every {}",
                p.alpha, p.beta, p.fts_loops, p.ntr_loops, p.eval_every
            ));
        }
        let rollback = config
            .guard
            .as_ref()
            .map(|_| model.attacker_copy(Layers::All, &devices.train));
        let mut rng = Rng::from_keys(&[seed, 0x46_54_53, it as u64]);

        let mut fts_loss = 0.0;
        for _ in 0..p.fts_loops {
            let (m, stats) = fts_step(
                model,
                &mut fts_optim,
                p.alpha,
                config,
                ctx,
                &restricted.train,
                &mut rng,
                devices,
                monitor,
            )?;
            model = m;
            fts_loss += stats.loss / p.fts_loops as f64;
            monitor.metric("sophon/fts_grad_norm", it, stats.grad_norm);
        }
        if p.fts_loops > 0 {
            monitor.metric("sophon/fts_loss", it, fts_loss);
        }
        let mut ntr_loss = 0.0;
        for _ in 0..p.ntr_loops {
            let idx = sample_batch(original.train.len(), config.ntr_batch_size, &mut rng);
            let (m, loss) = train_step(
                model,
                &mut ntr_optim,
                p.beta,
                ctx,
                &original.train,
                &idx,
                &mut rng,
                &devices.train,
            );
            model = m;
            ntr_loss += loss / p.ntr_loops as f64;
            monitor.poll()?;
        }
        if p.ntr_loops > 0 {
            monitor.metric("sophon/ntr_loss", it, ntr_loss);
        }

        if it % p.eval_every == 0 || it == config.outer_iterations {
            eval.evaluate(&model, it, &mut p, monitor);
            let broken = config
                .guard
                .as_ref()
                .is_some_and(|g| g.broken_by(p.original_score));
            if let Some(select) = &config.select
                && !broken
                && is_better::<M>(select, &p)
            {
                p.selected = Some(Selected {
                    iteration: it,
                    original_score: p.original_score,
                    probe_score: p.probe_score,
                });
                selected = Some(model.attacker_copy(Layers::All, &devices.train));
            }
            if broken && let (Some(guard), Some(start)) = (&config.guard, rollback) {
                monitor.log(&format!(
                        "intactness guard: original {} {:.4} past {:.4} at iteration {it}; rolled back to its start and stopped",
                        M::METRIC.label(), p.original_score, guard.threshold()
                    ));
                model = start;
                p.original_score = eval.intactness(&model);
                guard_triggered = true;
                break;
            }
        }
        p.iteration = it;
        if config.checkpoint_every > 0 && it % config.checkpoint_every == 0 {
            let optims = (&fts_optim, &ntr_optim);
            save(monitor, &model, optims, &p, selected.as_ref());
        }
        monitor.step(it)?;
    }
    let optims = (&fts_optim, &ntr_optim);
    save(monitor, &model, optims, &p, selected.as_ref());
    let mut selected_iteration = None;
    if let (Some(s), Some(best)) = (p.selected, selected) {
        monitor.log(&format!(
            "model selection: the model of iteration {} is handed on (original {} {:.4}, held-out probe {:.4}); the last one had {:.4} and {:.4}",
            s.iteration,
            M::METRIC.label(),
            s.original_score,
            s.probe_score,
            p.original_score,
            p.probe_score
        ));
        model = best;
        // Measured again: the summary's figure is the handed-on model's own.
        p.original_score = eval.intactness(&model);
        p.probe_score = s.probe_score;
        selected_iteration = Some(s.iteration);
    } else if config.select.is_some() {
        monitor.log("model selection: no evaluated model kept intactness within the tolerance; the last one is handed on");
    }
    let mut settings = config.clone();
    settings.alpha = p.alpha;
    settings.beta = p.beta;
    settings.fts_loops = p.fts_loops;
    settings.ntr_loops = p.ntr_loops;
    settings.eval_every = p.eval_every;
    let mut scores = Scores::new(
        M::METRIC,
        p.original_score,
        model.score(ctx, &restricted.test, eval_batch, seed, &devices.eval),
    );
    scores.probe = Some(p.probe_score);
    if let Some((o, r)) = show_samples(
        &model,
        ctx,
        "protected",
        "protected",
        p.iteration,
        &original.test,
        &restricted.test,
        seed,
        &devices.eval,
        monitor,
    ) {
        scores.original_psnr = Some(o);
        scores.restricted_psnr = Some(r);
    }
    let summary = SophonSummary {
        scores,
        iterations: p.iteration,
        guard_triggered,
        selected_iteration,
        settings,
        seconds: started.elapsed().as_secs_f64(),
    };
    Ok((model, summary))
}

/// Whether the evaluation just recorded in `p` beats the selected one: intactness within the
/// tolerance of the pre-trained model's, and a better (for the defender) held-out probe; on an
/// equal probe (a probe held at chance gives many), the better intactness.
fn is_better<M: Protectable>(select: &SelectConfig, p: &Progress) -> bool {
    let pretrained = p.pretrained_score.unwrap_or(f64::NAN);
    if !select.keeps_intactness(M::METRIC, pretrained, p.original_score) {
        return false;
    }
    let Some(s) = p.selected else {
        return true;
    };
    // Ordered so that "greater" is better for the defender.
    let (probe, original) = match M::METRIC {
        Metric::Acc => (
            s.probe_score.partial_cmp(&p.probe_score),
            p.original_score.partial_cmp(&s.original_score),
        ),
        Metric::Mse => (
            p.probe_score.partial_cmp(&s.probe_score),
            s.original_score.partial_cmp(&p.original_score),
        ),
    };
    match probe {
        Some(Ordering::Greater) => true,
        Some(Ordering::Equal) => original == Some(Ordering::Greater),
        _ => false,
    }
}

/// Write a resumable checkpoint (a failure is logged: the run goes on).
fn save<M: Protectable>(
    monitor: &mut dyn Monitor,
    model: &M,
    (fts_optim, ntr_optim): (&ModuleOptimizer, &ModuleOptimizer),
    progress: &Progress,
    selected: Option<&M>,
) {
    let checkpoint = Checkpoint {
        model,
        fts_optim,
        ntr_optim,
        progress,
        selected: selected.map(|m| m as &dyn SaveModel),
    };
    if let Err(e) = monitor.save_checkpoint(&checkpoint) {
        monitor.log(&format!("warning: checkpoint not saved: {e}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ExperimentConfig;
    use crate::model::Classifier;
    use crate::model::unet::Unet;

    /// An evaluation scoring `original` and `probe`, against a selected one scoring `selected`.
    fn progress(pretrained: f64, original: f64, probe: f64, selected: (f64, f64)) -> Progress {
        let config = ExperimentConfig::from_toml(crate::QUICK_PRESET, "quick", &[]).unwrap();
        let mut p = Progress::new(config.sophon.as_ref().unwrap());
        p.pretrained_score = Some(pretrained);
        p.original_score = original;
        p.probe_score = probe;
        p.selected = Some(Selected {
            iteration: 10,
            original_score: selected.0,
            probe_score: selected.1,
        });
        p
    }

    #[test]
    fn selection_prefers_the_better_probe_then_the_better_intactness() {
        let select = SelectConfig {
            holdout: 100,
            tolerance: 0.05,
        };
        let better = |p: &Progress| is_better::<Classifier>(&select, p);
        // Accuracy: a lower probe wins; on an equal probe, the higher intactness.
        assert!(better(&progress(0.9, 0.86, 0.1, (0.9, 0.2))));
        assert!(!better(&progress(0.9, 0.9, 0.3, (0.86, 0.2))));
        assert!(better(&progress(0.9, 0.9, 0.1, (0.86, 0.1))));
        assert!(!better(&progress(0.9, 0.86, 0.1, (0.9, 0.1))));
        assert!(
            !better(&progress(0.9, 0.86, 0.1, (0.86, 0.1))),
            "a tie keeps the first"
        );
        // Outside the tolerance nothing wins.
        assert!(!better(&progress(0.9, 0.84, 0.0, (0.9, 0.5))));
        // ε-MSE: a higher probe wins; on an equal probe, the lower original ε-MSE.
        let better = |p: &Progress| is_better::<Unet>(&select, p);
        assert!(better(&progress(0.1, 0.1, 0.5, (0.1, 0.4))));
        assert!(better(&progress(0.1, 0.09, 0.4, (0.1, 0.4))));
        assert!(!better(&progress(0.1, 0.104, 0.4, (0.1, 0.4))));
    }
}

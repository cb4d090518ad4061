//! SOPHON's outer loop: ℓ_FTS fine-tuning-suppression steps, then ℓ_NTR normal-training steps,
//! per outer iteration; periodic intactness and non-fine-tunability probes; the intactness
//! guard; divergence handling; live setting changes; resumable checkpoints.
//!
//! A stop asked for during an outer iteration takes effect at its end (the next safe point):
//! the iteration finishes, a checkpoint is written, and the loop ends with [`Interrupted`].

use std::cmp::Ordering;
use std::time::Instant;

use burn::optim::ModuleOptimizer;
use serde::{Deserialize, Serialize};

use super::context::RunContext;
use super::divergence::{Divergence, finite, finite_parameters, parameter_norm, report};
use super::fts::{FtsContext, fts_step, sample_batch};
use super::series;
use super::summary::{SophonSummary, Summary};
use super::task::{Protectable, SampleGrid, SaveModel};
use super::train::Trainer;
use super::{Devices, Halt, Interrupted, LiveUpdate, Monitor, Phase, ResumeFrom, StoreError};
use crate::config::sophon::{DivergencePolicy, ProbeConfig, SelectConfig, SophonConfig};
use crate::config::{Layers, Metric, OptimizerConfig, OptimizerKind};
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
    /// With a selection window: the probes of the last evaluations, oldest first (at most the
    /// window's length).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent_probes: Vec<f64>,
}

/// The evaluation model selection keeps.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Selected {
    pub iteration: usize,
    pub original_score: f64,
    /// The probe selection judged it by (with a window, the mean over the window).
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
            recent_probes: Vec::new(),
        }
    }

    /// Record the probe just measured and return what selection judges this evaluation by:
    /// the mean of the last `window` probes, or nothing while fewer have been measured.
    fn judge_probe(&mut self, window: usize) -> Option<f64> {
        self.recent_probes.push(self.probe_score);
        let excess = self.recent_probes.len().saturating_sub(window);
        self.recent_probes.drain(..excess);
        (self.recent_probes.len() == window)
            .then(|| self.recent_probes.iter().sum::<f64>() / window as f64)
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

/// The two Adam optimizers of SOPHON, fresh.
pub fn optimizers() -> (ModuleOptimizer, ModuleOptimizer) {
    let adam = OptimizerConfig::new(OptimizerKind::Adam, 1.0);
    (super::optim::build(&adam), super::optim::build(&adam))
}

/// The restricted-domain measure on `restricted.validation` after a short fine-tune of a copy
/// of `model` on `restricted.train` (never on the test split: the probe picks models): after
/// its last step, or with `curve = n` the mean over n evenly spaced points of the fine-tune. A
/// NaN or infinite loss or score is a [`Divergence`] of the `probe` at outer iteration
/// `iteration` (not a figure: a diverged attacker scores at chance, which would read as perfect
/// protection).
pub fn probe<M: Protectable>(
    model: &M,
    run: &RunContext<'_, M>,
    config: &ProbeConfig,
    iteration: usize,
) -> Result<f64, Divergence> {
    let (restricted, devices) = (run.restricted, run.devices);
    let mut copy = model.attacker_copy(Layers::All, &devices.train);
    let mut optim = super::optim::build(&config.optimizer);
    let mut trainer = Trainer::on(run, &mut optim, config.optimizer.lr);
    let mut rng = Rng::from_keys(&[run.seed, 0x50_52_4F_42, iteration as u64]);
    let quantity = format!("restricted_{}", M::METRIC.name());
    let points = config.curve.max(1);
    let mut scores = 0.0;
    let mut next_point = 1;
    for k in 1..=config.steps {
        let idx = sample_batch(restricted.train.len(), config.batch_size, &mut rng);
        let (c, loss) = trainer.step(copy, &restricted.train, &idx, &mut rng);
        copy = c;
        finite(loss, "probe", iteration, &format!("loss at probe step {k}"))?;
        // Scored after step ⌈steps·j/points⌉ for j = 1..points: the last step always.
        if k * points >= next_point * config.steps {
            // (A classifier with NaN parameters still scores a finite accuracy, at chance.)
            finite(parameter_norm(&copy), "probe", iteration, "parameters")?;
            let score = run.score(&copy, &restricted.validation);
            scores += finite(score, "probe", iteration, &quantity)?;
            next_point += 1;
        }
    }
    Ok(scores / points as f64)
}

/// What the periodic evaluation needs.
struct EvalContext<'a, M: Protectable> {
    run: &'a RunContext<'a, M>,
    config: &'a SophonConfig,
}

impl<M: Protectable> EvalContext<'_, M> {
    /// The original-domain validation measure (what selection and the guard read).
    fn intactness(&self, model: &M) -> f64 {
        self.run.score(model, &self.run.original.validation)
    }

    /// The probe of `model` at outer iteration `it`.
    fn probe(&self, model: &M, it: usize) -> Result<f64, Divergence> {
        probe(model, self.run, &self.config.probe, it)
    }

    /// Measure intactness and the probe at outer iteration `it`, record both (and a
    /// classifier's share of hidden units on per domain, a denoiser's sample grids). A
    /// parameter, an intactness or a probe that is not finite is a divergence, and nothing is
    /// recorded.
    fn evaluate(
        &self,
        model: &M,
        it: usize,
        p: &mut Progress,
        monitor: &mut dyn Monitor,
    ) -> Result<(), Divergence> {
        let metric = M::METRIC.name();
        finite(parameter_norm(model), "sophon", it, "parameters")?;
        let original = format!("original_{metric}");
        p.original_score = finite(self.intactness(model), "sophon", it, &original)?;
        p.probe_score = self.probe(model, it)?;
        monitor.metric(&series::sophon_original(M::METRIC), it, p.original_score);
        monitor.metric(&series::sophon_probe(M::METRIC), it, p.probe_score);
        let run = self.run;
        let sets = (&run.original.validation, &run.restricted.validation);
        for (domain, set) in [("original", sets.0), ("restricted", sets.1)] {
            if let Some(on) = model.units_on(set, run.eval_batch, &run.devices.eval) {
                monitor.metric(&series::units_on(domain), it, on);
            }
        }
        run.show_samples(model, "sophon", "sophon", it, sets, monitor);
        Ok(())
    }
}

/// The last evaluated model that was finite and within the guard: what a divergence or the
/// guard rolls back to.
struct LastGood<M> {
    iteration: usize,
    model: M,
    original_score: f64,
    probe_score: f64,
}

fn record_settings(monitor: &mut dyn Monitor, p: &Progress, step: usize) {
    monitor.metric(series::ALPHA, step, p.alpha);
    monitor.metric(series::BETA, step, p.beta);
    monitor.metric(series::FTS_LOOPS, step, p.fts_loops as f64);
    monitor.metric(series::NTR_LOOPS, step, p.ntr_loops as f64);
    monitor.metric(series::EVAL_EVERY, step, p.eval_every as f64);
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
///
/// A NaN or infinity in a loss, the FTS gradient norm, the parameters or an evaluation is
/// reported to the monitor and handled by `config.on_divergence`: roll back to the last good
/// evaluation and hand that model on (the summary says so), or end with [`Halt::Diverged`].
pub fn protect<M: Protectable>(
    model: M,
    run: &RunContext<'_, M>,
    config: &SophonConfig,
    monitor: &mut dyn Monitor,
    resume: Option<Resume<M>>,
) -> Result<(M, SophonSummary), Halt> {
    let (original, restricted, seed, devices) =
        (run.original, run.restricted, run.seed, run.devices);
    let started = Instant::now();
    let resumed = resume.is_some();
    let (mut model, mut fts_optim, mut ntr_optim, mut p, mut selected) = match resume {
        Some(r) => (r.model, r.fts_optim, r.ntr_optim, r.progress, r.selected),
        None => {
            let (f, n) = optimizers();
            (model, f, n, Progress::new(config), None)
        }
    };
    monitor.phase(Phase::Sophon, config.outer_iterations);
    let eval = EvalContext::<M> { run, config };
    let fts = FtsContext::<M> {
        config,
        ctx: run.ctx,
        restricted: &restricted.train,
        devices,
    };
    if p.iteration == 0 && !resumed {
        record_settings(monitor, &p, 0);
        eval.evaluate(&model, 0, &mut p, monitor)
            .map_err(|d| report(monitor, d))?;
        p.pretrained_score = Some(p.original_score);
        if let Some(select) = &config.select {
            p.judge_probe(select.window);
        }
    } else {
        // A resumed run's figures are measured again on the loaded model, never taken from
        // the state file (which a stale or damaged checkpoint folder could contradict).
        let it = p.iteration;
        model = finite_parameters(model, "sophon", it).map_err(|d| report(monitor, d))?;
        let quantity = format!("original_{}", M::METRIC.name());
        p.original_score = finite(eval.intactness(&model), "sophon", it, &quantity)
            .map_err(|d| report(monitor, d))?;
        p.probe_score = eval.probe(&model, it).map_err(|d| report(monitor, d))?;
    }
    let mut last_good = LastGood {
        iteration: p.iteration,
        model: model.attacker_copy(Layers::All, &devices.train),
        original_score: p.original_score,
        probe_score: p.probe_score,
    };
    let mut guard_triggered = false;
    let mut diverged = None;
    let mut rolled_back_to = None;
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
        let mut rng = Rng::from_keys(&[seed, 0x46_54_53, it as u64]);
        // A stop asked for inside the iteration is remembered and honoured at its end.
        let mut deferred = DeferStop {
            inner: &mut *monitor,
            stop: false,
        };
        let mut event = None;

        let mut fts_loss = 0.0;
        for _ in 0..p.fts_loops {
            let (m, stats) = fts_step(
                model,
                &mut fts_optim,
                p.alpha,
                &fts,
                &mut rng,
                &mut deferred,
            )?;
            model = m;
            if let Err(d) = finite(stats.loss, "sophon", it, "fts_loss")
                .and_then(|_| finite(stats.grad_norm, "sophon", it, "fts_grad_norm"))
            {
                event = Some(d);
                break;
            }
            fts_loss += stats.loss / p.fts_loops as f64;
            deferred.metric(series::FTS_GRAD_NORM, it, stats.grad_norm);
        }
        if event.is_none() && p.fts_loops > 0 {
            deferred.metric(series::FTS_LOSS, it, fts_loss);
        }
        let mut ntr_loss = 0.0;
        for _ in 0..p.ntr_loops {
            if event.is_some() {
                break;
            }
            let idx = sample_batch(original.train.len(), config.ntr_batch_size, &mut rng);
            let mut trainer = Trainer::on(run, &mut ntr_optim, p.beta);
            let (m, loss) = trainer.step(model, &original.train, &idx, &mut rng);
            model = m;
            match finite(loss, "sophon", it, "ntr_loss") {
                Ok(loss) => ntr_loss += loss / p.ntr_loops as f64,
                Err(d) => event = Some(d),
            }
            deferred.poll()?;
        }
        if event.is_none() && p.ntr_loops > 0 {
            deferred.metric(series::NTR_LOSS, it, ntr_loss);
        }
        if event.is_none() {
            event = finite(parameter_norm(&model), "sophon", it, "parameters").err();
        }

        if event.is_none() && (it % p.eval_every == 0 || it == config.outer_iterations) {
            match eval.evaluate(&model, it, &mut p, &mut deferred) {
                Err(d) => event = Some(d),
                Ok(()) => {
                    let broken = config
                        .guard
                        .as_ref()
                        .is_some_and(|g| g.broken_by(p.original_score));
                    let judged = config
                        .select
                        .as_ref()
                        .and_then(|select| Some((select, p.judge_probe(select.window)?)));
                    if let Some((select, probe)) = judged
                        && !broken
                        && is_better::<M>(select, &p, probe)
                    {
                        p.selected = Some(Selected {
                            iteration: it,
                            original_score: p.original_score,
                            probe_score: probe,
                        });
                        selected = Some(model.attacker_copy(Layers::All, &devices.train));
                    }
                    if let Some(guard) = config.guard.as_ref().filter(|_| broken) {
                        deferred.log(&format!(
                            "intactness guard: original {} {:.4} past {:.4} at iteration {it}; rolled back to iteration {} (the last evaluation within it) and stopped",
                            M::METRIC.label(),
                            p.original_score,
                            guard.threshold(),
                            last_good.iteration
                        ));
                        model = roll_back(&last_good, &mut p, &mut rolled_back_to, devices);
                        guard_triggered = true;
                        break;
                    }
                    last_good = LastGood {
                        iteration: it,
                        model: model.attacker_copy(Layers::All, &devices.train),
                        original_score: p.original_score,
                        probe_score: p.probe_score,
                    };
                }
            }
        }
        let stop = deferred.stop;
        if let Some(d) = event {
            let d = report(monitor, d);
            if config.on_divergence == DivergencePolicy::Stop {
                monitor.log("on_divergence = \"stop\": the run ends here; the checkpoints on disk were written before the divergence");
                return Err(d.into());
            }
            monitor.log(&format!(
                "rolled back to iteration {} (the last evaluation that was finite and within the guard); SOPHON ends there",
                last_good.iteration
            ));
            model = roll_back(&last_good, &mut p, &mut rolled_back_to, devices);
            diverged = Some(d);
            break;
        }
        p.iteration = it;
        let optims = (&fts_optim, &ntr_optim);
        let saved = stop || (config.checkpoint_every > 0 && it % config.checkpoint_every == 0);
        if saved {
            save(monitor, &model, optims, &p, selected.as_ref());
        }
        if stop {
            return Err(Interrupted.into());
        }
        if let Err(i) = monitor.step(it) {
            if !saved {
                save(monitor, &model, optims, &p, selected.as_ref());
            }
            return Err(i.into());
        }
    }
    // A diverged run's optimizers may hold NaN moments: its last periodic checkpoint stays the
    // resumable one.
    if diverged.is_none() {
        let optims = (&fts_optim, &ntr_optim);
        save(monitor, &model, optims, &p, selected.as_ref());
    }
    let mut selected_iteration = None;
    if let (Some(s), Some(best)) = (p.selected, selected) {
        model = best;
        // Measured again: the summary's figures are the handed-on model's own.
        p.original_score = eval.intactness(&model);
        p.probe_score = eval
            .probe(&model, s.iteration)
            .map_err(|d| report(monitor, d))?;
        // One point each on the curves' axes, so the window and the report mark the model
        // handed on (the curves' last points are the last model's).
        monitor.metric(
            &series::selected_original(M::METRIC),
            s.iteration,
            p.original_score,
        );
        monitor.metric(
            &series::selected_probe(M::METRIC),
            s.iteration,
            p.probe_score,
        );
        monitor.log(&format!(
            "model selection: the model of iteration {} is handed on (original validation {} {:.4}, validation probe {:.4})",
            s.iteration,
            M::METRIC.label(),
            p.original_score,
            p.probe_score,
        ));
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
    // The reported figures: the handed-on model's test measures, read once.
    let mut scores = run.test_scores(&model, "protected", p.iteration, monitor);
    scores.probe = Some(p.probe_score);
    let summary = SophonSummary {
        scores,
        original_validation: Some(p.original_score),
        iterations: p.iteration,
        guard_triggered,
        diverged,
        rolled_back_to,
        selected_iteration,
        settings,
        seconds: started.elapsed().as_secs_f64(),
    };
    Ok((model, summary))
}

/// The model of `last_good`, with its figures restored in `p`.
fn roll_back<M: Protectable>(
    last_good: &LastGood<M>,
    p: &mut Progress,
    rolled_back_to: &mut Option<usize>,
    devices: &Devices,
) -> M {
    p.original_score = last_good.original_score;
    p.probe_score = last_good.probe_score;
    *rolled_back_to = Some(last_good.iteration);
    last_good.model.attacker_copy(Layers::All, &devices.train)
}

/// A monitor that passes everything on but turns a stop into a note (`stop`), so that an outer
/// iteration always finishes and the loop can stop at its end with a checkpoint.
struct DeferStop<'a> {
    inner: &'a mut dyn Monitor,
    stop: bool,
}

impl Monitor for DeferStop<'_> {
    fn phase(&mut self, phase: Phase, total_steps: usize) {
        self.inner.phase(phase, total_steps);
    }
    fn step(&mut self, step: usize) -> Result<(), Interrupted> {
        if self.inner.step(step).is_err() {
            self.stop = true;
        }
        Ok(())
    }
    fn poll(&mut self) -> Result<(), Interrupted> {
        if self.inner.poll().is_err() {
            self.stop = true;
        }
        Ok(())
    }
    fn take_updates(&mut self) -> Vec<LiveUpdate> {
        self.inner.take_updates()
    }
    fn metric(&mut self, series: &str, step: usize, value: f64) {
        self.inner.metric(series, step, value);
    }
    fn log(&mut self, message: &str) {
        self.inner.log(message);
    }
    fn divergence(&mut self, event: &Divergence) {
        self.inner.divergence(event);
    }
    fn summary(&mut self, summary: &Summary) {
        self.inner.summary(summary);
    }
    fn save_model(&mut self, name: &str, model: &dyn SaveModel) -> Result<(), StoreError> {
        self.inner.save_model(name, model)
    }
    fn samples(&mut self, grid: SampleGrid<'_>) {
        self.inner.samples(grid);
    }
    fn resume_state(&mut self) -> Result<Option<ResumeFrom>, StoreError> {
        self.inner.resume_state()
    }
    fn save_checkpoint(&mut self, checkpoint: &Checkpoint<'_>) -> Result<(), StoreError> {
        self.inner.save_checkpoint(checkpoint)
    }
}

/// Whether the evaluation just recorded in `p`, judged by `probe` (its own, or the mean over
/// the selection window), beats the selected one: intactness within the tolerance of the
/// pre-trained model's, and a better (for the defender) held-out probe; on an equal probe (a
/// probe held at chance gives many), the better intactness.
fn is_better<M: Protectable>(select: &SelectConfig, p: &Progress, probe: f64) -> bool {
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
            s.probe_score.partial_cmp(&probe),
            p.original_score.partial_cmp(&s.original_score),
        ),
        Metric::Mse => (
            probe.partial_cmp(&s.probe_score),
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
            holdout: None,
            tolerance: 0.05,
            window: 1,
        };
        let better = |p: &Progress| is_better::<Classifier>(&select, p, p.probe_score);
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
        let better = |p: &Progress| is_better::<Unet>(&select, p, p.probe_score);
        assert!(better(&progress(0.1, 0.1, 0.5, (0.1, 0.4))));
        assert!(better(&progress(0.1, 0.09, 0.4, (0.1, 0.4))));
        assert!(!better(&progress(0.1, 0.104, 0.4, (0.1, 0.4))));
    }

    #[test]
    fn a_selection_window_judges_an_evaluation_by_the_mean_of_the_last_probes() {
        let mut p = progress(0.9, 0.9, f64::NAN, (0.9, 0.5));
        let mut judge = |probe: f64| {
            p.probe_score = probe;
            p.judge_probe(3)
        };
        // Nothing is judged until the window is full.
        assert_eq!(judge(0.4), None);
        assert_eq!(judge(0.1), None);
        // Then the mean of the last three: one lucky probe among high ones is not enough.
        let lucky = judge(0.4).unwrap();
        assert!((lucky - 0.3).abs() < 1e-12, "{lucky}");
        let spike = judge(0.05).unwrap();
        assert!((spike - (0.1 + 0.4 + 0.05) / 3.0).abs() < 1e-12, "{spike}");
        judge(0.12);
        let held = judge(0.11).unwrap();
        assert!((held - (0.05 + 0.12 + 0.11) / 3.0).abs() < 1e-12, "{held}");
        assert_eq!(p.recent_probes, vec![0.05, 0.12, 0.11]);
        // A window of one is the probe itself, judged at once.
        let mut q = progress(0.9, 0.9, 0.2, (0.9, 0.5));
        assert_eq!(q.judge_probe(1), Some(0.2));
        assert_eq!(q.recent_probes, vec![0.2]);
    }
}

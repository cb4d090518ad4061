//! One whole experiment: load the domains, pre-train (or load) the original model, protect it
//! with SOPHON when configured, then run the attacker evaluation from every starting point.
//! Written once over [`Protectable`]; the preset's `task` picks the classifier or the denoiser.

use std::time::Instant;

use burn::module::{ModuleVisitor, Param};
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::attack::{self, AttackContext, AttackResult};
use super::divergence::{Divergence, parameter_norm};
use super::protect::{self, SophonSummary};
use super::search::{self, BestEffort};
use super::task::{Protectable, Scores, show_samples};
use super::train::pretrain;
use super::verdict::{Verdict, VerdictInputs, default_tolerance, verdict};
use super::{Devices, Halt, Interrupted, Monitor, load_model};
use crate::config::{BestEffortConfig, ExperimentConfig, Start, Task};
use crate::data::{self, DataError, Domain};
use crate::model::Classifier;
use crate::model::unet::Unet;

/// Why an experiment did not finish.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Interrupted(#[from] Interrupted),
    /// Pre-training diverged, or SOPHON with `on_divergence = "stop"`.
    #[error(transparent)]
    Diverged(#[from] Divergence),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("{0}")]
    Model(String),
}

impl From<Halt> for EngineError {
    fn from(h: Halt) -> Self {
        match h {
            Halt::Interrupted(i) => Self::Interrupted(i),
            Halt::Diverged(d) => Self::Diverged(d),
        }
    }
}

/// Where a run stands, as `summary.json` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunStatus {
    /// Going on, or killed without a chance to say otherwise (`resume` continues it).
    #[default]
    Running,
    /// Every phase ran to its end with finite numbers.
    Finished,
    /// Stopped by the user or a signal at a safe point; `resume` continues it.
    Stopped,
    /// Something turned NaN or infinite (`divergences` says what and where); what ran before
    /// it stands, nothing after it is reported as a result.
    Diverged,
    /// An error ended it (bad data, a file that could not be written).
    Failed,
}

impl RunStatus {
    pub fn name(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Finished => "finished",
            RunStatus::Stopped => "stopped",
            RunStatus::Diverged => "diverged",
            RunStatus::Failed => "failed",
        }
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Pre-training results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PretrainSummary {
    /// The pre-trained model's original-domain measure and its restricted-domain measure
    /// before any fine-tuning (and a denoiser's sample PSNR).
    #[serde(flatten)]
    pub scores: Scores,
    pub seconds: f64,
}

/// How many images each split of a domain holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitSizes {
    pub train: usize,
    pub validation: usize,
    pub test: usize,
}

impl SplitSizes {
    pub fn of(domain: &Domain) -> Self {
        Self {
            train: domain.train.len(),
            validation: domain.validation.len(),
            test: domain.test.len(),
        }
    }
}

impl std::fmt::Display for SplitSizes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} train / {} validation / {} test",
            self.train, self.validation, self.test
        )
    }
}

/// The split sizes of both domains, as the run used them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Splits {
    pub original: SplitSizes,
    pub restricted: SplitSizes,
}

/// What `summary.json` holds. Filled in as the run goes, so a stopped run keeps what it did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub status: RunStatus,
    pub name: String,
    pub seed: u64,
    pub classes: usize,
    /// The images of each split (validation carved out of the training set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub splits: Option<Splits>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pretrain: Option<PretrainSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sophon: Option<SophonSummary>,
    pub attack: Vec<AttackResult>,
    /// The best-effort attacker's search from each start (its curve is in `attack`, named
    /// `best-effort`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub best_effort: Vec<BestEffort>,
    /// Protected or not, stated once (with a protected model and its attacks only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    /// Every NaN or infinity met, in order (empty unless `status` is `diverged`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub divergences: Vec<Divergence>,
    pub seconds: f64,
}

impl Summary {
    /// Every divergence the results hold: pre-training or SOPHON's, and each attack's.
    fn collect_divergences(&mut self) {
        let sophon = self.sophon.as_ref().and_then(|s| s.diverged.clone());
        let attacks = self.attack.iter().filter_map(|a| a.diverged.clone());
        for d in sophon.into_iter().chain(attacks) {
            if !self.divergences.contains(&d) {
                self.divergences.push(d);
            }
        }
    }
}

/// Load both domains with their validation splits held out of training (the model's class
/// count is the larger of the two).
pub fn load_domains(config: &ExperimentConfig) -> Result<(Domain, Domain), DataError> {
    let seed = config.seed;
    let original = data::load_domain(&config.original, &config.input, seed)?;
    let n = config.validation.original().count(original.train.len());
    let original = original.hold_out_validation(n, seed, "validation.original")?;
    let restricted = data::load_domain(&config.restricted, &config.input, seed ^ 0x5EED)?;
    let n = config.restricted_validation().count(restricted.train.len());
    let restricted = restricted.hold_out_validation(n, seed ^ 0x5EED, "validation.restricted")?;
    Ok((original, restricted))
}

/// A freshly initialised model, deterministic in `seed`. burn initialises parameters lazily,
/// at their first use; they are drawn here, so that random draws between now and that use
/// (a sample grid's reverse chain, a fresh head) cannot change them.
pub fn fresh_model<M: Protectable>(
    config: &ExperimentConfig,
    classes: usize,
    seed: u64,
    devices: &Devices,
) -> M {
    devices.train.seed(seed);
    let model = M::build(config, classes, &devices.train);
    model.visit(&mut Materialize);
    model
}

/// Draws every lazily initialised parameter of the visited module.
struct Materialize;

impl ModuleVisitor for Materialize {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let _ = param.val();
    }
}

/// Run the experiment, updating `summary` as results come in.
pub fn run(
    config: &ExperimentConfig,
    devices: &Devices,
    monitor: &mut dyn Monitor,
    summary: &mut Summary,
) -> Result<(), EngineError> {
    let started = Instant::now();
    summary.status = RunStatus::Running;
    summary.attack.clear();
    summary.best_effort.clear();
    summary.verdict = None;
    summary.divergences.clear();
    summary.name = config.name.clone();
    summary.seed = config.seed;
    monitor.phase("loading data", 1);
    let (original, restricted) = load_domains(config)?;
    let classes = original.classes().max(restricted.classes());
    summary.classes = classes;
    let splits = Splits {
        original: SplitSizes::of(&original),
        restricted: SplitSizes::of(&restricted),
    };
    monitor.log(&format!(
        "original: {} ({}), restricted: {} ({}), {classes} classes",
        original.train.name, splits.original, restricted.train.name, splits.restricted,
    ));
    summary.splits = Some(splits);
    check_batches(config, &original, &restricted)?;
    let result = match config.task {
        Task::Classification => {
            run_task::<Classifier>(config, &original, &restricted, devices, monitor, summary)
        }
        Task::Denoising => {
            run_task::<Unet>(config, &original, &restricted, devices, monitor, summary)
        }
    };
    summary.seconds = started.elapsed().as_secs_f64();
    if let Err(EngineError::Diverged(d)) = &result {
        summary.divergences.push(d.clone());
    }
    summary.collect_divergences();
    match result {
        Ok(()) if summary.divergences.is_empty() => summary.status = RunStatus::Finished,
        Ok(()) | Err(EngineError::Diverged(_)) => summary.status = RunStatus::Diverged,
        Err(_) => {}
    }
    result
}

/// Batches drawn at random from a training set (NTR, the simulated attackers, the probe) must
/// fit in it: a larger one would repeat images and could ask for more memory than the machine
/// has. The error names the field and the set's size.
fn check_batches(
    config: &ExperimentConfig,
    original: &Domain,
    restricted: &Domain,
) -> Result<(), DataError> {
    let Some(s) = &config.sophon else {
        return Ok(());
    };
    let probe_pool = restricted.train.len();
    let mut checks = vec![
        (
            "sophon.ntr_batch_size".to_string(),
            s.ntr_batch_size,
            &original.train,
            original.train.len(),
            "the original training set",
        ),
        (
            "sophon.probe.batch_size".to_string(),
            s.probe.batch_size,
            &restricted.train,
            probe_pool,
            "the restricted training split the probe fine-tunes on",
        ),
    ];
    for (i, env) in s.environments.iter().enumerate() {
        checks.push((
            format!("sophon.environments[{i}].batch_size"),
            env.batch_size,
            &restricted.train,
            restricted.train.len(),
            "the restricted training set",
        ));
    }
    for (field, batch, set, available, what) in checks {
        if batch > available {
            return Err(DataError::Invalid(format!(
                "{field} = {batch} is larger than {what} ({}: {available} images)",
                set.name
            )));
        }
    }
    Ok(())
}

/// The test measures of `model` on both domains, and a denoiser's sample grids under `phase`.
#[allow(clippy::too_many_arguments)]
fn scores<M: Protectable>(
    model: &M,
    ctx: &M::Context,
    phase: &str,
    step: usize,
    config: &ExperimentConfig,
    (original, restricted): (&Domain, &Domain),
    devices: &Devices,
    monitor: &mut dyn Monitor,
) -> Scores {
    let (batch, seed, device) = (config.evaluation.batch_size, config.seed, &devices.eval);
    let mut s = Scores::new(
        M::METRIC,
        model.score(ctx, &original.test, batch, seed, device),
        model.score(ctx, &restricted.test, batch, seed, device),
    );
    if let Some((o, r)) = show_samples(
        model,
        ctx,
        phase,
        phase,
        step,
        &original.test,
        &restricted.test,
        seed,
        device,
        monitor,
    ) {
        s.original_psnr = Some(o);
        s.restricted_psnr = Some(r);
    }
    s
}

/// Pre-train, protect and attack a model of type `M`.
fn run_task<M: Protectable>(
    config: &ExperimentConfig,
    original: &Domain,
    restricted: &Domain,
    devices: &Devices,
    monitor: &mut dyn Monitor,
    summary: &mut Summary,
) -> Result<(), EngineError> {
    let eval_batch = config.evaluation.batch_size;
    let classes = summary.classes;
    let ctx = M::context(config);
    let label = M::METRIC.label();

    // Pre-training on the original domain (or a checkpoint, or the run being resumed).
    let skeleton: M = fresh_model(config, classes, config.seed, devices);
    let resume = monitor.resume_state().map_err(EngineError::Model)?;
    let (model, sophon_resume) = match resume {
        Some(r) => {
            monitor.log("resuming from the run's checkpoints");
            let pretrained = load_model(&skeleton, &r.pretrained).map_err(EngineError::Model)?;
            let sophon = match r.sophon {
                Some(s) => Some(s.load(&skeleton).map_err(EngineError::Model)?),
                None => None,
            };
            if summary.pretrain.is_none() {
                // The run was killed before its summary said how pre-training went: measure the
                // pre-trained model again (its training time is not known any more).
                let scores = scores(
                    &pretrained,
                    &ctx,
                    "pretrain",
                    config.pretrain.epochs,
                    config,
                    (original, restricted),
                    devices,
                    monitor,
                );
                summary.pretrain = Some(PretrainSummary {
                    scores,
                    seconds: 0.0,
                });
            }
            (pretrained, sophon)
        }
        None => {
            let t = Instant::now();
            let model = match &config.pretrain.load {
                Some(path) => load_model(&skeleton, path).map_err(EngineError::Model)?,
                None => pretrain(
                    skeleton,
                    &ctx,
                    original,
                    &config.pretrain,
                    eval_batch,
                    config.seed,
                    devices,
                    monitor,
                )?,
            };
            monitor
                .save_model("pretrained", &model)
                .map_err(EngineError::Model)?;
            let steps = config.pretrain.epochs;
            let scores = scores(
                &model,
                &ctx,
                "pretrain",
                steps,
                config,
                (original, restricted),
                devices,
                monitor,
            );
            monitor.log(&format!(
                "pre-trained: original {label} {:.4}, restricted {label} (no fine-tuning) {:.4}",
                scores.original, scores.restricted
            ));
            summary.pretrain = Some(PretrainSummary {
                scores,
                seconds: t.elapsed().as_secs_f64(),
            });
            (model, None)
        }
    };
    monitor.summary(summary);

    // SOPHON.
    let protected = match &config.sophon {
        Some(sophon) if sophon.load.is_some() => {
            let path = sophon.load.as_deref().expect("matched Some");
            let t = Instant::now();
            let protected = load_model(&model, path).map_err(EngineError::Model)?;
            monitor
                .save_model("protected", &protected)
                .map_err(EngineError::Model)?;
            let scores = scores(
                &protected,
                &ctx,
                "protected",
                0,
                config,
                (original, restricted),
                devices,
                monitor,
            );
            monitor.log(&format!(
                "protected model loaded from {}: original {label} {:.4}, restricted {label} (no fine-tuning) {:.4}",
                path.display(),
                scores.original,
                scores.restricted
            ));
            summary.sophon = Some(SophonSummary {
                scores,
                original_validation: None,
                iterations: 0,
                guard_triggered: false,
                diverged: None,
                rolled_back_to: None,
                selected_iteration: None,
                settings: sophon.clone(),
                seconds: t.elapsed().as_secs_f64(),
            });
            Some(protected)
        }
        Some(sophon) => {
            let (protected, s) = protect::protect(
                model.clone(),
                &ctx,
                original,
                restricted,
                sophon,
                eval_batch,
                config.seed,
                devices,
                monitor,
                sophon_resume,
            )?;
            monitor
                .save_model("protected", &protected)
                .map_err(EngineError::Model)?;
            monitor.log(&format!(
                "protected: original {label} {:.4}, restricted {label} (no fine-tuning) {:.4}, probe {:.4}",
                s.scores.original,
                s.scores.restricted,
                s.scores.probe.unwrap_or(f64::NAN)
            ));
            summary.sophon = Some(s);
            Some(protected)
        }
        None => None,
    };
    monitor.summary(summary);

    // The attacker evaluation: the fixed strategies, then the best-effort attacker's search.
    let starts = config.evaluation.starts(config.sophon.is_some());
    let best_effort = config.evaluation.best_effort.as_ref();
    let total: usize = config
        .evaluation
        .strategies
        .iter()
        .map(|s| attack::steps(s, restricted) * starts.len())
        .sum::<usize>()
        + best_effort.map_or(0, |b| search::steps(b, restricted) * starts.len());
    monitor.phase("attack", total);
    let scratch: M = fresh_model(config, classes, config.seed ^ 0x5C2A_7C11, devices);
    let from = |start| match (start, &protected) {
        (Start::Protected, Some(p)) => p,
        (Start::Original | Start::Protected, _) => &model,
        (Start::Scratch, _) => &scratch,
    };
    let a = AttackContext {
        ctx: &ctx,
        restricted,
        eval_batch,
        seed: config.seed,
        devices,
    };
    let samples = |attacked: &M, name: &str, start: Start, epochs, monitor: &mut dyn Monitor| {
        show_samples(
            attacked,
            &ctx,
            &format!("attack-{name}-{start}"),
            &format!("attack/{name}/{start}"),
            epochs,
            &original.test,
            &restricted.test,
            config.seed,
            &devices.eval,
            monitor,
        );
    };
    let mut step = 0;
    for strategy in &config.evaluation.strategies {
        for &start in &starts {
            let (attacked, result) =
                attack::fine_tune(from(start), start, strategy, &a, monitor, &mut step)?;
            if result.diverged.is_none() {
                samples(&attacked, &strategy.name, start, strategy.epochs, monitor);
            }
            summary.attack.push(result);
            monitor.summary(summary);
        }
    }
    if let Some(b) = best_effort {
        for &start in &starts {
            let (attacked, result, record) =
                search::best_effort(from(start), start, b, &a, monitor, &mut step)?;
            if let Some(attacked) = &attacked {
                samples(attacked, BestEffortConfig::NAME, start, b.epochs, monitor);
            }
            summary.attack.push(result);
            summary.best_effort.push(record);
            monitor.summary(summary);
        }
    }
    summary.verdict = protected.as_ref().and_then(|p| {
        let pre = summary.pretrain.as_ref()?;
        let sophon = summary.sophon.as_ref()?;
        let tolerance = config
            .evaluation
            .tolerance
            .unwrap_or(default_tolerance(M::METRIC));
        Some(verdict(&VerdictInputs {
            metric: M::METRIC,
            classes,
            pretrained: pre.scores.original,
            protected: sophon.scores.original,
            finite_model: parameter_norm(p).is_finite(),
            sophon_diverged: sophon.diverged.as_ref(),
            tolerance,
            margin: config.evaluation.margin,
            attacks: &summary.attack,
        }))
    });
    if let Some(v) = &summary.verdict {
        monitor.log(&format!("verdict: {} ({})", v.status, v.reason));
    }
    monitor.summary(summary);
    Ok(())
}

//! One whole experiment: load the domains, pre-train (or load) the original model, protect it
//! with SOPHON when configured, then run the attacker evaluation from every starting point.
//! Written once over [`Protectable`]; the preset's `task` picks the classifier or the denoiser.

use std::time::Instant;

use burn::module::{ModuleVisitor, Param};
use burn::tensor::Tensor;

use super::attack;
use super::context::RunContext;
use super::divergence::{Divergence, parameter_norm};
use super::protect;
use super::summary::{PretrainSummary, RunStatus, SophonSummary, SplitSizes, Splits, Summary};
use super::task::Protectable;
use super::train::pretrain;
use super::verdict::{VerdictInputs, default_tolerance, verdict};
use super::{Devices, Halt, Interrupted, Monitor, Phase, StoreError, load_model};
use super::{search, series};
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
    /// A model or checkpoint could not be saved or loaded.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<Halt> for EngineError {
    fn from(h: Halt) -> Self {
        match h {
            Halt::Interrupted(i) => Self::Interrupted(i),
            Halt::Diverged(d) => Self::Diverged(d),
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
    let restricted = match config.evaluation.attacker_images {
        Some(n) => restricted.hold_out_attacker(n, seed ^ 0x5EED, "evaluation.attacker_images")?,
        None => restricted,
    };
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
    monitor.phase(Phase::LoadingData, 1);
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
    let run = RunContext::<M> {
        ctx: &ctx,
        original,
        restricted,
        eval_batch,
        seed: config.seed,
        devices,
    };
    let label = M::METRIC.label();

    // Pre-training on the original domain (or a checkpoint, or the run being resumed).
    let skeleton: M = fresh_model(config, classes, config.seed, devices);
    let resume = monitor.resume_state()?;
    let (model, sophon_resume) = match resume {
        Some(r) => {
            monitor.log("resuming from the run's checkpoints");
            let pretrained = load_model(&skeleton, &r.pretrained)?;
            let sophon = match r.sophon {
                Some(s) => Some(s.load(&skeleton)?),
                None => None,
            };
            if summary.pretrain.is_none() {
                // The run was killed before its summary said how pre-training went: measure the
                // pre-trained model again (its training time is not known any more).
                let scores =
                    run.test_scores(&pretrained, "pretrain", config.pretrain.epochs, monitor);
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
                Some(path) => load_model(&skeleton, path)?,
                None => pretrain(skeleton, &run, &config.pretrain, monitor)?,
            };
            monitor.save_model("pretrained", &model)?;
            let steps = config.pretrain.epochs;
            let scores = run.test_scores(&model, "pretrain", steps, monitor);
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
            let protected = load_model(&model, path)?;
            monitor.save_model("protected", &protected)?;
            let scores = run.test_scores(&protected, "protected", 0, monitor);
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
            let (protected, s) =
                protect::protect(model.clone(), &run, sophon, monitor, sophon_resume)?;
            monitor.save_model("protected", &protected)?;
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
    monitor.phase(Phase::Attack, total);
    let scratch: M = fresh_model(config, classes, config.seed ^ 0x5C2A_7C11, devices);
    let from = |start| match (start, &protected) {
        (Start::Protected, Some(p)) => p,
        (Start::Original | Start::Protected, _) => &model,
        (Start::Scratch, _) => &scratch,
    };
    let samples = |attacked: &M, name: &str, start: Start, epochs, monitor: &mut dyn Monitor| {
        let phase = format!("attack-{name}-{start}");
        let prefix = series::attack_prefix(name, start);
        let sets = (&original.test, &restricted.test);
        run.show_samples(attacked, &phase, &prefix, epochs, sets, monitor);
    };
    let mut step = 0;
    for strategy in &config.evaluation.strategies {
        for &start in &starts {
            let (attacked, result) =
                attack::fine_tune(from(start), start, strategy, &run, monitor, &mut step)?;
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
                search::best_effort(from(start), start, b, &run, monitor, &mut step)?;
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
            attacker_own_images: restricted.attacker.as_ref().map(|a| a.len()),
        }))
    });
    if let Some(v) = &summary.verdict {
        monitor.log(&format!("verdict: {} ({})", v.status, v.reason));
    }
    monitor.summary(summary);
    Ok(())
}

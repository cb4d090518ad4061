//! One whole experiment: load the domains, pre-train (or load) the original model, protect it
//! with SOPHON when configured, then run the attacker evaluation from every starting point.
//! Written once over [`Protectable`]; the preset's `task` picks the classifier or the denoiser.

use std::time::Instant;

use burn::module::{ModuleVisitor, Param};
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::attack::{self, AttackResult};
use super::protect::{self, SophonSummary};
use super::task::{Protectable, Scores, show_samples};
use super::train::pretrain;
use super::{Devices, Interrupted, Monitor, load_model};
use crate::config::{ExperimentConfig, Start, Task};
use crate::data::{self, DataError, Domain};
use crate::model::Classifier;
use crate::model::unet::Unet;

/// Why an experiment did not finish.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Interrupted(#[from] Interrupted),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("{0}")]
    Model(String),
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

/// What `summary.json` holds. Filled in as the run goes, so a stopped run keeps what it did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// `running`, `finished`, `stopped` or `failed`.
    pub status: String,
    pub name: String,
    pub seed: u64,
    pub classes: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pretrain: Option<PretrainSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sophon: Option<SophonSummary>,
    pub attack: Vec<AttackResult>,
    pub seconds: f64,
}

/// Load both domains; the model's class count is the larger of the two.
pub fn load_domains(config: &ExperimentConfig) -> Result<(Domain, Domain), DataError> {
    let original = data::load_domain(&config.original, &config.input, config.seed)?;
    let restricted = data::load_domain(&config.restricted, &config.input, config.seed ^ 0x5EED)?;
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
    summary.status = "running".into();
    summary.attack.clear();
    summary.name = config.name.clone();
    summary.seed = config.seed;
    monitor.phase("loading data", 1);
    let (original, restricted) = load_domains(config)?;
    let classes = original.classes().max(restricted.classes());
    summary.classes = classes;
    monitor.log(&format!(
        "original: {} ({} train / {} test), restricted: {} ({} train / {} test), {classes} classes",
        original.train.name,
        original.train.len(),
        original.test.len(),
        restricted.train.name,
        restricted.train.len(),
        restricted.test.len()
    ));
    match config.task {
        Task::Classification => {
            run_task::<Classifier>(config, &original, &restricted, devices, monitor, summary)?
        }
        Task::Denoising => {
            run_task::<Unet>(config, &original, &restricted, devices, monitor, summary)?
        }
    }
    summary.seconds = started.elapsed().as_secs_f64();
    summary.status = "finished".into();
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
    if let Some(select) = config.sophon.as_ref().and_then(|s| s.select.as_ref())
        && select.holdout >= restricted.train.len()
    {
        return Err(DataError::Invalid(format!(
            "sophon.select.holdout = {}: the restricted training set ({}) has only {} images, and the probe needs some of them to fine-tune on",
            select.holdout,
            restricted.train.name,
            restricted.train.len()
        ))
        .into());
    }

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
                iterations: 0,
                guard_triggered: false,
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

    // The attacker evaluation.
    let starts = config.evaluation.starts(config.sophon.is_some());
    let total: usize = config
        .evaluation
        .strategies
        .iter()
        .map(|s| attack::steps(s, restricted) * starts.len())
        .sum();
    monitor.phase("attack", total);
    let scratch: M = fresh_model(config, classes, config.seed ^ 0x5C2A_7C11, devices);
    let mut step = 0;
    for strategy in &config.evaluation.strategies {
        for &start in &starts {
            let from = match (start, &protected) {
                (Start::Protected, Some(p)) => p,
                (Start::Original | Start::Protected, _) => &model,
                (Start::Scratch, _) => &scratch,
            };
            let (attacked, result) = attack::fine_tune(
                from,
                &ctx,
                start,
                strategy,
                restricted,
                eval_batch,
                config.seed,
                devices,
                monitor,
                &mut step,
            )?;
            show_samples(
                &attacked,
                &ctx,
                &format!("attack-{}-{start}", strategy.name),
                &format!("attack/{}/{start}", strategy.name),
                strategy.epochs,
                &original.test,
                &restricted.test,
                config.seed,
                &devices.eval,
                monitor,
            );
            summary.attack.push(result);
        }
    }
    Ok(())
}

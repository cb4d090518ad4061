//! One whole experiment: load the domains, pre-train (or load) the original model, protect it
//! with SOPHON when configured, then run the attacker evaluation from every starting point.

use std::time::Instant;

use burn::module::Module;
use serde::{Deserialize, Serialize};

use super::attack::{self, AttackResult};
use super::protect::{self, SophonSummary};
use super::train::{accuracy, pretrain};
use super::{Devices, Interrupted, Monitor};
use crate::config::{ExperimentConfig, Start};
use crate::data::{self, DataError, Domain};
use crate::model::{Classifier, ClassifierConfig};

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
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PretrainSummary {
    /// Original-domain test accuracy of the pre-trained model.
    pub original_acc: f64,
    /// Restricted-domain test accuracy of the pre-trained model, before any fine-tuning.
    pub restricted_acc: f64,
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

pub fn model_config(config: &ExperimentConfig, classes: usize) -> ClassifierConfig {
    ClassifierConfig::new(
        config.model.kind,
        config.input.channels,
        config.input.size,
        classes,
    )
    .with_hidden(config.model.hidden.clone())
}

/// A freshly initialised model, deterministic in `seed`.
pub fn fresh_model(
    config: &ExperimentConfig,
    classes: usize,
    seed: u64,
    devices: &Devices,
) -> Classifier {
    devices.train.seed(seed);
    model_config(config, classes).init(&devices.train)
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
    let eval_batch = config.evaluation.batch_size;

    // Pre-training on the original domain (or a checkpoint, or the run being resumed).
    let skeleton = fresh_model(config, classes, config.seed, devices);
    let resume = monitor
        .resume_state(&skeleton)
        .map_err(EngineError::Model)?;
    let (model, sophon_resume) = match resume {
        Some(r) => {
            monitor.log("resuming from the run's checkpoints");
            (r.pretrained, r.sophon)
        }
        None => {
            let t = Instant::now();
            let model = match &config.pretrain.load {
                Some(path) => skeleton.try_load_file(path).map_err(|e| {
                    EngineError::Model(format!("{}: cannot load checkpoint: {e}", path.display()))
                })?,
                None => pretrain(
                    skeleton,
                    &original,
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
            let pre = PretrainSummary {
                original_acc: accuracy(&model, &original.test, eval_batch, &devices.eval),
                restricted_acc: accuracy(&model, &restricted.test, eval_batch, &devices.eval),
                seconds: t.elapsed().as_secs_f64(),
            };
            monitor.log(&format!(
                "pre-trained: original accuracy {:.3}, restricted accuracy (no fine-tuning) {:.3}",
                pre.original_acc, pre.restricted_acc
            ));
            summary.pretrain = Some(pre);
            (model, None)
        }
    };

    // SOPHON.
    let protected = match &config.sophon {
        Some(sophon) => {
            let (protected, s) = protect::protect(
                model.clone(),
                &original,
                &restricted,
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
                "protected: original accuracy {:.3}, restricted accuracy (no fine-tuning) {:.3}, probe {:.3}",
                s.original_acc, s.restricted_acc, s.probe_restricted_acc
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
        .map(|s| attack::steps(s, &restricted) * starts.len())
        .sum();
    monitor.phase("attack", total);
    let scratch = fresh_model(config, classes, config.seed ^ 0x5C2A_7C11, devices);
    let mut step = 0;
    for strategy in &config.evaluation.strategies {
        for &start in &starts {
            let from = match (start, &protected) {
                (Start::Protected, Some(p)) => p,
                (Start::Original | Start::Protected, _) => &model,
                (Start::Scratch, _) => &scratch,
            };
            let result = attack::fine_tune(
                from,
                start,
                strategy,
                &restricted,
                eval_batch,
                config.seed,
                devices,
                monitor,
                &mut step,
            )?;
            summary.attack.push(result);
        }
    }
    summary.seconds = started.elapsed().as_secs_f64();
    summary.status = "finished".into();
    Ok(())
}

//! The `[sophon]` section of a preset: every knob of SOPHON (docs/algorithm.md, docs/reference.md).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{AT_THRESHOLD, Metric};
use super::{ConfigError, OptimizerConfig, OptimizerKind, Task, batch_size, invalid};

/// The suppression loss L_α minimised on the query part of each simulated fine-tuning step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SuppressionLoss {
    /// Inverse cross-entropy, paper form: −log(1 − p_y).
    Ice,
    /// Inverse cross-entropy, reference-code form: CE(1 − z, y) = −log softmax(−z)_y.
    IceReference,
    /// KL from uniform: KL(U‖p) = −(1/C) Σ_j log(C·p_j); needs no labels.
    Klu,
    /// Plain cross-entropy ascent (−CE). A labelled baseline: it diverges.
    CeAscent,
    /// Feature DoS: the last hidden pre-activations pushed below −1, so the ReLUs feeding the head
    /// are switched off on the restricted domain (mean hinge max(0, u + 1)).
    FeatureDos,
    /// ICE plus feature DoS: wrong answers from the units left on, and the units switched off.
    #[serde(rename = "ice+feature-dos")]
    IceFeatureDos,
    /// Denoising: DoS, ‖ε̂‖² (the model learns to predict no noise).
    Dos,
    /// Denoising: −MSE(ε̂, ε). A labelled baseline: it diverges.
    MseAscent,
}

impl SuppressionLoss {
    /// The losses of a task, the default first.
    pub fn for_task(task: Task) -> &'static [SuppressionLoss] {
        match task {
            Task::Classification => &[
                SuppressionLoss::Ice,
                SuppressionLoss::IceReference,
                SuppressionLoss::Klu,
                SuppressionLoss::CeAscent,
                SuppressionLoss::FeatureDos,
                SuppressionLoss::IceFeatureDos,
            ],
            Task::Denoising => &[SuppressionLoss::Dos, SuppressionLoss::MseAscent],
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SuppressionLoss::Ice => "ice",
            SuppressionLoss::IceReference => "ice-reference",
            SuppressionLoss::Klu => "klu",
            SuppressionLoss::CeAscent => "ce-ascent",
            SuppressionLoss::FeatureDos => "feature-dos",
            SuppressionLoss::IceFeatureDos => "ice+feature-dos",
            SuppressionLoss::Dos => "dos",
            SuppressionLoss::MseAscent => "mse-ascent",
        }
    }
}

/// Which parameters a simulated attacker moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SimLayers {
    #[default]
    All,
    HeadOnly,
}

/// One simulated fine-tuning environment φ_i.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    /// Inner optimizer: sgd, sgd-momentum or adam.
    pub optimizer: OptimizerConfig,
    /// Restricted-domain batch per inner step (support + query).
    pub batch_size: usize,
    /// How many images of each batch form the query part.
    pub query_size: usize,
    /// Re-initialise the head (Xavier, zero bias) before the simulated fine-tuning.
    #[serde(default)]
    pub reinit_head: bool,
    #[serde(default)]
    pub layers: SimLayers,
}

impl Environment {
    /// The reference environment: plain SGD lr 1e-4, 150 = 130 support + 20 query.
    pub fn reference() -> Self {
        Self {
            optimizer: OptimizerConfig::new(OptimizerKind::Sgd, 1e-4),
            batch_size: 150,
            query_size: 20,
            reinit_head: true,
            layers: SimLayers::All,
        }
    }
}

/// The cheap non-fine-tunability probe run at each evaluation: fine-tune a copy briefly on the
/// restricted training split and measure it on the restricted validation split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeConfig {
    pub optimizer: OptimizerConfig,
    pub steps: usize,
    pub batch_size: usize,
    /// Score the probe at this many evenly spaced points of its fine-tune (after step
    /// `steps·k/curve`, k = 1..curve) and report their mean, as the verdict's "mean over epochs"
    /// does for an attacker; 1 (the default) scores it after the last step only.
    #[serde(default = "default_curve", skip_serializing_if = "is_default_curve")]
    pub curve: usize,
}

fn default_curve() -> usize {
    1
}

fn is_default_curve(n: &usize) -> bool {
    *n == default_curve()
}

/// A short SGD-momentum fine-tune (lr 1e-2, 20 steps of 64 images).
impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            optimizer: OptimizerConfig::new(OptimizerKind::SgdMomentum, 1e-2),
            steps: 20,
            batch_size: 64,
            curve: default_curve(),
        }
    }
}

/// Model selection: hand on the best evaluated model instead of the last one. SOPHON's outer
/// loop oscillates (intactness and the probe swing between evaluations), so where it stops is
/// partly luck; the reference code saves a checkpoint at each evaluation, named by both
/// measures, for a person to pick from. This picks on the validation splits only (intactness
/// on the original one, the probe scored on the restricted one), never on test data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelectConfig {
    /// Older presets: the restricted images the probe was scored on. Now the size of the
    /// restricted validation split when `[validation] restricted` is not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holdout: Option<usize>,
    /// How far the original-domain measure may fall behind the pre-trained model's for a model
    /// to be chosen: accuracy points for a classifier (0.05), a fraction of its ε-MSE for a
    /// denoiser (0.1 = 10 % higher).
    pub tolerance: f64,
    /// Judge each evaluation by the mean of the probes of the last `window` evaluations (its own
    /// and the `window − 1` before it), so that one lucky probe does not pick a model: a model
    /// is chosen where the probe stayed low. 1 (the default) reads its own probe alone.
    #[serde(default = "default_window", skip_serializing_if = "is_default_window")]
    pub window: usize,
}

fn default_window() -> usize {
    1
}

fn is_default_window(n: &usize) -> bool {
    *n == default_window()
}

impl SelectConfig {
    /// Whether an original-domain `score` is close enough to the pre-trained model's.
    pub fn keeps_intactness(&self, metric: Metric, pretrained: f64, score: f64) -> bool {
        match metric {
            Metric::Acc => score >= pretrained - self.tolerance - AT_THRESHOLD,
            Metric::Mse => score <= pretrained * (1.0 + self.tolerance) + AT_THRESHOLD,
        }
    }
}

/// The intactness guard: after an outer iteration whose original-domain accuracy fell below
/// `min_original_acc` (classification) or whose original-domain ε-MSE rose above
/// `max_original_mse` (denoising), roll back to the start of that iteration and stop.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_original_acc: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_original_mse: Option<f64>,
}

impl GuardConfig {
    /// True when `score` (the task's original-domain measure) breaks the guard.
    pub fn broken_by(&self, score: f64) -> bool {
        self.min_original_acc.is_some_and(|min| score < min)
            || self.max_original_mse.is_some_and(|max| score > max)
    }

    /// The threshold, in the task's measure.
    pub fn threshold(&self) -> f64 {
        self.min_original_acc
            .or(self.max_original_mse)
            .unwrap_or(f64::NAN)
    }

    /// Exactly the task's threshold is set, in range.
    pub fn validate(&self, task: Task) -> Result<(), ConfigError> {
        match (task, self.min_original_acc, self.max_original_mse) {
            (Task::Classification, Some(min), None) if (0.0..=1.0).contains(&min) => Ok(()),
            (Task::Classification, Some(_), None) => Err(invalid(
                "sophon.guard.min_original_acc",
                "must be a fraction in [0, 1]",
            )),
            (Task::Denoising, None, Some(max)) if max > 0.0 && max.is_finite() => Ok(()),
            (Task::Denoising, None, Some(_)) => Err(invalid(
                "sophon.guard.max_original_mse",
                "must be a positive number",
            )),
            (Task::Classification, ..) => Err(invalid(
                "sophon.guard",
                "a classifier's guard is min_original_acc (and only that)",
            )),
            (Task::Denoising, ..) => Err(invalid(
                "sophon.guard",
                "a denoiser's guard is max_original_mse (and only that)",
            )),
        }
    }
}

/// What SOPHON does when a loss, a gradient norm, a parameter or an evaluation turns NaN or
/// infinite. Either way the event is recorded (`metrics.jsonl`, `summary.json`) and the run's
/// status is `diverged`: a diverged model is never reported as a protected one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DivergencePolicy {
    /// Roll back to the last evaluated model that was finite and within the guard (at worst
    /// the pre-trained model), end SOPHON there and go on to the attacker evaluation.
    #[default]
    Rollback,
    /// End the run: no attacker evaluation; the last checkpoint (written before the
    /// divergence, so finite) stays for inspection.
    Stop,
}

/// SOPHON's loops and knobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SophonConfig {
    /// Outer iterations, each ℓ_FTS FTS steps then ℓ_NTR NTR steps.
    pub outer_iterations: usize,
    /// ℓ_FTS: fine-tuning-suppression steps per outer iteration (0 switches FTS off).
    pub fts_loops: usize,
    /// ℓ_NTR: normal-training steps per outer iteration.
    pub ntr_loops: usize,
    /// α: learning rate of the FTS Adam optimizer.
    pub alpha: f64,
    /// β: learning rate of the NTR Adam optimizer.
    pub beta: f64,
    /// K: simulated fine-tuning steps per environment.
    pub inner_steps: usize,
    pub loss: SuppressionLoss,
    /// L2 clip of the accumulated FTS gradient (0 disables).
    #[serde(default = "default_clip")]
    pub clip: f64,
    /// The simulated attackers (N ≥ 1).
    pub environments: Vec<Environment>,
    /// Each FTS step runs one environment drawn at random from `environments` (the reference
    /// code's way: N steps cost as one) instead of all N (the paper's; the default).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub draw_environment: bool,
    /// Also minimise the suppression loss at each simulated attacker's starting point (before
    /// its first step, on that step's query part), weighted as one more inner step: the protected
    /// model is then wrong on the restricted domain before any fine-tuning too, not only after
    /// the K simulated steps (off by default, as in the paper and the reference code).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suppress_start: bool,
    /// Original-domain batch of each NTR step.
    pub ntr_batch_size: usize,
    /// Evaluate intactness and the probe every this many outer iterations.
    pub eval_every: usize,
    pub probe: ProbeConfig,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guard: Option<GuardConfig>,
    /// Write a resumable checkpoint every this many outer iterations (0: only at the end).
    #[serde(default)]
    pub checkpoint_every: usize,
    /// Hand on the best evaluated model instead of the last one (off when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub select: Option<SelectConfig>,
    /// What to do when something turns NaN or infinite (default: roll back).
    #[serde(default)]
    pub on_divergence: DivergencePolicy,
    /// Skip the outer loop: load this protected model (a `.bpk` written by an earlier run, e.g.
    /// its `checkpoints/protected.bpk`) and go straight to the attacker evaluation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<PathBuf>,
}

/// A small classification run: 100 outer iterations of ICE with the reference simulated
/// attacker, loops 1 : 2, α = β = 1e-3, K = 10, evaluated every 5 (what the window starts from
/// when SOPHON is switched on).
impl Default for SophonConfig {
    fn default() -> Self {
        Self {
            outer_iterations: 100,
            fts_loops: 1,
            ntr_loops: 2,
            alpha: 1e-3,
            beta: 1e-3,
            inner_steps: 10,
            loss: SuppressionLoss::Ice,
            clip: 0.5,
            environments: vec![Environment::reference()],
            draw_environment: false,
            suppress_start: false,
            ntr_batch_size: 64,
            eval_every: 5,
            probe: ProbeConfig::default(),
            guard: None,
            checkpoint_every: 0,
            select: None,
            on_divergence: DivergencePolicy::default(),
            load: None,
        }
    }
}

fn default_clip() -> f64 {
    0.5
}

impl SophonConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let f = |name: &str| format!("sophon.{name}");
        if self.outer_iterations == 0 {
            return Err(invalid(f("outer_iterations"), "must be at least 1"));
        }
        if self.fts_loops + self.ntr_loops == 0 {
            return Err(invalid(
                f("fts_loops"),
                "fts_loops and ntr_loops cannot both be 0",
            ));
        }
        for (name, v) in [("alpha", self.alpha), ("beta", self.beta)] {
            if !(v > 0.0 && v.is_finite()) {
                return Err(invalid(
                    f(name),
                    format!("must be a positive number (got {v})"),
                ));
            }
        }
        if !(self.clip >= 0.0 && self.clip.is_finite()) {
            return Err(invalid(f("clip"), "must be ≥ 0"));
        }
        if self.inner_steps == 0 {
            return Err(invalid(f("inner_steps"), "must be at least 1"));
        }
        if self.environments.is_empty() {
            return Err(invalid(
                f("environments"),
                "needs at least one simulated environment",
            ));
        }
        for (i, env) in self.environments.iter().enumerate() {
            let e = format!("sophon.environments[{i}]");
            if !matches!(
                env.optimizer.kind,
                OptimizerKind::Sgd | OptimizerKind::SgdMomentum | OptimizerKind::Adam
            ) {
                return Err(invalid(
                    format!("{e}.optimizer.kind"),
                    "simulated attackers use sgd, sgd-momentum or adam",
                ));
            }
            env.optimizer.validate(&format!("{e}.optimizer"))?;
            batch_size(&format!("{e}.batch_size"), env.batch_size)?;
            if env.query_size == 0 || env.query_size >= env.batch_size {
                return Err(invalid(
                    format!("{e}.query_size"),
                    format!(
                        "must be between 1 and batch_size - 1 ({})",
                        env.batch_size.saturating_sub(1)
                    ),
                ));
            }
        }
        batch_size(&f("ntr_batch_size"), self.ntr_batch_size)?;
        if self.eval_every == 0 {
            return Err(invalid(f("eval_every"), "must be at least 1"));
        }
        if self.probe.steps == 0 {
            return Err(invalid(f("probe.steps"), "must be at least 1"));
        }
        batch_size(&f("probe.batch_size"), self.probe.batch_size)?;
        if self.probe.curve == 0 || self.probe.curve > self.probe.steps {
            return Err(invalid(
                f("probe.curve"),
                format!(
                    "must be between 1 and probe.steps ({}): the points of the probe's fine-tune it is scored at",
                    self.probe.steps
                ),
            ));
        }
        self.probe.optimizer.validate(&f("probe.optimizer"))?;
        if let Some(select) = &self.select {
            if select.holdout == Some(0) {
                return Err(invalid(
                    f("select.holdout"),
                    "must be at least 1 (it sizes the restricted validation split the probe is scored on)",
                ));
            }
            if !(select.tolerance >= 0.0 && select.tolerance.is_finite()) {
                return Err(invalid(f("select.tolerance"), "must be ≥ 0"));
            }
            if select.window == 0 {
                return Err(invalid(f("select.window"), "must be ≥ 1"));
            }
        }
        Ok(())
    }
}

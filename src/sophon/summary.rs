//! What `summary.json` holds: the typed record of one run, filled in as it goes, that the CLI,
//! the window, the sweep table and `report` read.

use serde::{Deserialize, Serialize};

use super::attack::AttackResult;
use super::divergence::Divergence;
use super::search::BestEffort;
use super::task::Scores;
use super::verdict::Verdict;
use crate::config::sophon::SophonConfig;
use crate::data::Domain;

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
    /// The attacker's own training images, held out of `train` (`evaluation.attacker_images`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attacker: Option<usize>,
}

impl SplitSizes {
    pub fn of(domain: &Domain) -> Self {
        Self {
            train: domain.train.len(),
            validation: domain.validation.len(),
            test: domain.test.len(),
            attacker: domain.attacker.as_ref().map(|a| a.len()),
        }
    }
}

impl std::fmt::Display for SplitSizes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} train / {} validation / {} test",
            self.train, self.validation, self.test
        )?;
        match self.attacker {
            Some(n) => write!(f, " / {n} the attacker's own"),
            None => Ok(()),
        }
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
    /// What ended a `failed` run, in one line (`None` otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub seconds: f64,
}

impl Summary {
    /// Every divergence the results hold: pre-training or SOPHON's, and each attack's.
    pub(crate) fn collect_divergences(&mut self) {
        let sophon = self.sophon.as_ref().and_then(|s| s.diverged.clone());
        let attacks = self.attack.iter().filter_map(|a| a.diverged.clone());
        for d in sophon.into_iter().chain(attacks) {
            if !self.divergences.contains(&d) {
                self.divergences.push(d);
            }
        }
    }
}

/// SOPHON's part of `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SophonSummary {
    /// After SOPHON, on the test splits: original-domain measure (intactness), restricted-domain
    /// measure before any fine-tuning, and a denoiser's sample PSNR; and the last
    /// non-fine-tunability probe (restricted, after a short fine-tune, on the validation split).
    #[serde(flatten)]
    pub scores: Scores,
    /// The original-domain measure on the validation split (what selection and the guard read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_validation: Option<f64>,
    /// Outer iterations completed.
    pub iterations: usize,
    /// The intactness guard stopped SOPHON (the model was rolled back to `rolled_back_to`).
    pub guard_triggered: bool,
    /// Something turned NaN or infinite during SOPHON (see `settings.on_divergence`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diverged: Option<Divergence>,
    /// The guard or a divergence rolled the model back to the last evaluation of this outer
    /// iteration that was finite and within the guard (0: the pre-trained model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_back_to: Option<usize>,
    /// With model selection: the outer iteration whose model was handed on (`None`: the last).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selected_iteration: Option<usize>,
    /// The settings used (live changes applied: their history is in `metrics.jsonl`).
    pub settings: SophonConfig,
    pub seconds: f64,
}

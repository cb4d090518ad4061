//! The names of the metric series the engine records (`metrics.jsonl`, the `Metric` events):
//! written here once, read by the engine, the command line and the window alike.

use crate::config::{Metric, Start};

/// Every pre-training series starts with this.
pub const PRETRAIN: &str = "pretrain/";
/// Every series of SOPHON's own loop starts with this.
pub const SOPHON: &str = "sophon/";
/// Every attack's series starts with this.
pub const ATTACK: &str = "attack/";

/// The pre-training loss, per step.
pub const PRETRAIN_LOSS: &str = "pretrain/loss";
/// The mean FTS (suppression) loss of an outer iteration.
pub const FTS_LOSS: &str = "sophon/fts_loss";
/// The L2 norm of an FTS step's gradient before clipping.
pub const FTS_GRAD_NORM: &str = "sophon/fts_grad_norm";
/// The mean NTR loss of an outer iteration.
pub const NTR_LOSS: &str = "sophon/ntr_loss";
/// SOPHON's settings as they stand (recorded at the start and after every live change).
pub const ALPHA: &str = "sophon/alpha";
pub const BETA: &str = "sophon/beta";
pub const FTS_LOOPS: &str = "sophon/fts_loops";
pub const NTR_LOOPS: &str = "sophon/ntr_loops";
pub const EVAL_EVERY: &str = "sophon/eval_every";
/// The live settings' series, each with what a user reads for it.
pub const SETTINGS: [(&str, &str); 5] = [
    (ALPHA, "α"),
    (BETA, "β"),
    (FTS_LOOPS, "ℓ_FTS"),
    (NTR_LOOPS, "ℓ_NTR"),
    (EVAL_EVERY, "evaluate every"),
];

/// The original-domain validation measure after each pre-training epoch.
pub fn pretrain_original(metric: Metric) -> String {
    format!("pretrain/original_{}", metric.name())
}

/// Intactness: the original-domain validation measure at each SOPHON evaluation.
pub fn sophon_original(metric: Metric) -> String {
    format!("sophon/original_{}", metric.name())
}

/// The non-fine-tunability probe: the restricted validation measure after a short fine-tune.
pub fn sophon_probe(metric: Metric) -> String {
    format!("sophon/probe_restricted_{}", metric.name())
}

/// Model selection's pick: intactness of the model handed on, one point at its iteration.
pub fn selected_original(metric: Metric) -> String {
    format!("sophon/selected_original_{}", metric.name())
}

/// Model selection's pick: the probe of the model handed on, one point at its iteration.
pub fn selected_probe(metric: Metric) -> String {
    format!("sophon/selected_probe_restricted_{}", metric.name())
}

/// A classifier's share of head-feeding units that are on, on `domain`'s validation split.
pub fn units_on(domain: &str) -> String {
    format!("sophon/{domain}_units_on")
}

/// The prefix of one attack's series (and of its sample grids' PSNR).
pub fn attack_prefix(strategy: &str, start: Start) -> String {
    format!("attack/{strategy}/{start}")
}

/// One attack's restricted test measure, per epoch (step 0: before fine-tuning).
pub fn attack(strategy: &str, start: Start, metric: Metric) -> String {
    format!(
        "{}/restricted_{}",
        attack_prefix(strategy, start),
        metric.name()
    )
}

/// The PSNR of a denoiser's sample grid of `domain`, under `prefix` (`sophon`, `protected`,
/// `pretrain`, an attack's prefix).
pub fn psnr(prefix: &str, domain: &str) -> String {
    format!("{prefix}/{domain}_psnr")
}

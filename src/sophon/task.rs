//! What SOPHON's loops, the pre-training and the attacker evaluation need from a model, for
//! each task: a classifier (cross-entropy, accuracy, ICE / KLU / CE ascent) and the denoising
//! UNet (ε-MSE, test ε-MSE and sample grids, DoS / MSE ascent). The loops are written once,
//! over [`Protectable`].

use std::path::Path;

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::losses::{dos, mse_ascent, suppression};
use super::measure::{accuracy, cross_entropy, units_on};
use crate::config::sophon::{Environment, SuppressionLoss};
use crate::config::{DiffusionConfig, ExperimentConfig, Layers, Metric, ModelKind};
use crate::data::rng::Rng;
use crate::data::{ImageSet, batch};
use crate::diffusion::schedule::{Schedule, eps_mse};
use crate::model::unet::{Unet, UnetConfig};
use crate::model::{Classifier, ClassifierConfig};

/// A model that can be written to a burn recorder file (object-safe, for the [`Monitor`](super::Monitor)).
pub trait SaveModel {
    fn save_to(&self, path: &Path) -> Result<(), burn::store::RecordError>;
}

impl<M: Module> SaveModel for M {
    fn save_to(&self, path: &Path) -> Result<(), burn::store::RecordError> {
        self.clone().save_file(path)
    }
}

/// Clean | noised | denoised images of one domain, and the PSNR of denoised vs clean.
#[derive(Debug, Clone)]
pub struct Samples {
    pub clean: ImageSet,
    pub noisy: ImageSet,
    pub denoised: ImageSet,
    /// The time step the images were noised to.
    pub t: usize,
    pub psnr: f64,
}

/// A model SOPHON can protect and the experiment can train, measure and attack.
pub trait Protectable: Module + Clone + Sized {
    /// What the losses need besides the batch (the noise schedule for a denoiser).
    type Context;
    /// The test measure.
    const METRIC: Metric;

    /// A freshly initialised model for `config` (deterministic in the device's seed).
    fn build(config: &ExperimentConfig, classes: usize, device: &Device) -> Self;

    /// The context of `config`.
    fn context(config: &ExperimentConfig) -> Self::Context;

    /// The copy a simulated attacker fine-tunes: the same parameter ids, its own normalisation
    /// statistics, a fresh head when the environment re-initialises it. Every parameter of the
    /// copy keeps its gradient even for a `head-only` environment: first-order MAML needs the
    /// query loss's gradient with respect to every parameter it depends on, the frozen body's
    /// included; the freezing applies to the attacker's inner steps only ([`fts_gradient`]).
    ///
    /// With `reinit_head` the real head gets no FTS gradient, and that is right: the attacker
    /// throws it away, so the fine-tuned model does not depend on it (the fresh head's
    /// parameters have new ids, and their gradients are dropped). Suppression against such an
    /// attacker acts through the body alone.
    ///
    /// [`fts_gradient`]: super::fts::fts_gradient
    fn simulated_copy(&self, env: &Environment, device: &Device) -> Self {
        self.attacker_copy(
            if env.reinit_head {
                Layers::ReinitHead
            } else {
                Layers::All
            },
            device,
        )
    }

    /// A copy for an attacker: own normalisation statistics, `layers` applied (a fresh head,
    /// or everything but the head frozen). The model itself is untouched.
    fn attacker_copy(&self, layers: Layers, device: &Device) -> Self;

    /// The (attacker's, pre-training's, NTR's) training loss on `idx` of `set`.
    fn task_loss(
        &self,
        ctx: &Self::Context,
        set: &ImageSet,
        idx: &[usize],
        rng: &mut Rng,
        device: &Device,
    ) -> Tensor<1>;

    /// The suppression loss L_α on `idx` of `set` (minimised by FTS).
    fn suppression_loss(
        &self,
        ctx: &Self::Context,
        loss: SuppressionLoss,
        set: &ImageSet,
        idx: &[usize],
        rng: &mut Rng,
        device: &Device,
    ) -> Tensor<1>;

    /// The test measure on `set` ([`Self::METRIC`]), without gradients; deterministic in `seed`
    /// so that models are compared on equal terms.
    fn score(
        &self,
        ctx: &Self::Context,
        set: &ImageSet,
        batch_size: usize,
        seed: u64,
        device: &Device,
    ) -> f64;

    /// The share of the units feeding the head that are on over `set`, where the task has such
    /// units (a classifier: the last hidden layer's ReLUs).
    fn units_on(&self, set: &ImageSet, batch_size: usize, device: &Device) -> Option<f64> {
        let _ = (set, batch_size, device);
        None
    }

    /// Sample images of `set` as the model reconstructs them, where the task has them.
    fn samples(
        &self,
        ctx: &Self::Context,
        set: &ImageSet,
        seed: u64,
        device: &Device,
    ) -> Option<Samples> {
        let _ = (ctx, set, seed, device);
        None
    }
}

impl Protectable for Classifier {
    type Context = ();
    const METRIC: Metric = Metric::Acc;

    fn build(config: &ExperimentConfig, classes: usize, device: &Device) -> Self {
        ClassifierConfig::new(
            config.model.kind,
            config.input.channels,
            config.input.size,
            classes,
        )
        .with_hidden(config.model.hidden.clone())
        .init(device)
    }

    fn context(_: &ExperimentConfig) {}

    fn attacker_copy(&self, layers: Layers, device: &Device) -> Self {
        let copy = self.detached_copy();
        match layers {
            Layers::All => copy,
            Layers::ReinitHead => copy.reinit_head(device),
            Layers::HeadOnly => copy.train_head_only(),
        }
    }

    fn task_loss(
        &self,
        _: &(),
        set: &ImageSet,
        idx: &[usize],
        _: &mut Rng,
        device: &Device,
    ) -> Tensor<1> {
        let x = batch::images(set, idx, device);
        let y = batch::labels(set, idx, device);
        cross_entropy(self.forward(x), y)
    }

    fn suppression_loss(
        &self,
        _: &(),
        loss: SuppressionLoss,
        set: &ImageSet,
        idx: &[usize],
        _: &mut Rng,
        device: &Device,
    ) -> Tensor<1> {
        let x = batch::images(set, idx, device);
        let y = batch::labels(set, idx, device);
        suppression(loss, self.features_and_dos(x), self.head(), y)
    }

    fn score(&self, _: &(), set: &ImageSet, batch_size: usize, _: u64, device: &Device) -> f64 {
        accuracy(self, set, batch_size, device)
    }

    fn units_on(&self, set: &ImageSet, batch_size: usize, device: &Device) -> Option<f64> {
        Some(units_on(self, set, batch_size, device))
    }
}

/// The noise schedule, the time-step rule and the sample-grid settings of a denoiser.
#[derive(Debug, Clone)]
pub struct DenoiseContext {
    pub schedule: Schedule,
    /// Always this t (the reference code's t = 1), else uniform over 1..=T.
    pub fixed_t: Option<usize>,
    /// The suppression loss noises to t uniform over 1..=this (else as `fixed_t` says).
    pub suppress_max_t: Option<usize>,
    /// Sample grids noise to this step.
    pub sample_t: usize,
    /// Images per sample grid.
    pub samples: usize,
}

impl DenoiseContext {
    pub fn new(config: &DiffusionConfig) -> Self {
        Self {
            schedule: Schedule::linear(config.steps, config.beta_start, config.beta_end),
            fixed_t: config.fixed_t,
            suppress_max_t: config.suppress_max_t,
            sample_t: config.sample_t,
            samples: config.samples,
        }
    }

    /// Images `idx` of `set` noised for the task loss (`fixed_t`, else uniform over 1..=T) or,
    /// with `suppression`, for the suppression loss (uniform over 1..=`suppress_max_t` when set).
    fn noised(
        &self,
        set: &ImageSet,
        idx: &[usize],
        suppression: bool,
        rng: &mut Rng,
        device: &Device,
    ) -> (Tensor<4>, Vec<usize>, Tensor<4>) {
        let t = match self.suppress_max_t.filter(|_| suppression) {
            Some(max) => self.schedule.sample_t_upto(idx.len(), max, rng),
            None => self.schedule.sample_t(idx.len(), self.fixed_t, rng),
        };
        super::denoise::noised_at(set, idx, &self.schedule, t, rng, device)
    }
}

impl Protectable for Unet {
    type Context = DenoiseContext;
    const METRIC: Metric = Metric::Mse;

    fn build(config: &ExperimentConfig, _: usize, device: &Device) -> Self {
        debug_assert_eq!(config.model.kind, ModelKind::Unet);
        UnetConfig::new(config.input.channels)
            .with_base(config.model.base)
            .with_blocks_per_level(config.model.blocks_per_level)
            .init(device)
    }

    fn context(config: &ExperimentConfig) -> DenoiseContext {
        DenoiseContext::new(&config.diffusion)
    }

    /// No normalisation statistics to detach (GroupNorm keeps none); the "head" is the output
    /// convolution.
    fn attacker_copy(&self, layers: Layers, device: &Device) -> Self {
        let copy = self.clone();
        match layers {
            Layers::All => copy,
            Layers::ReinitHead => copy.reinit_out(device),
            Layers::HeadOnly => copy.train_out_only(),
        }
    }

    fn task_loss(
        &self,
        ctx: &DenoiseContext,
        set: &ImageSet,
        idx: &[usize],
        rng: &mut Rng,
        device: &Device,
    ) -> Tensor<1> {
        let (xt, t, eps) = ctx.noised(set, idx, false, rng, device);
        eps_mse(self.forward(xt, &t), eps)
    }

    /// DoS or MSE ascent (validation keeps the classification losses away).
    fn suppression_loss(
        &self,
        ctx: &DenoiseContext,
        loss: SuppressionLoss,
        set: &ImageSet,
        idx: &[usize],
        rng: &mut Rng,
        device: &Device,
    ) -> Tensor<1> {
        let (xt, t, eps) = ctx.noised(set, idx, true, rng, device);
        let eps_hat = self.forward(xt, &t);
        match loss {
            SuppressionLoss::MseAscent => mse_ascent(eps_hat, eps),
            _ => dos(eps_hat),
        }
    }

    fn score(
        &self,
        ctx: &DenoiseContext,
        set: &ImageSet,
        batch_size: usize,
        seed: u64,
        device: &Device,
    ) -> f64 {
        super::denoise::test_mse(self, set, &ctx.schedule, batch_size, seed, device)
    }

    fn samples(
        &self,
        ctx: &DenoiseContext,
        set: &ImageSet,
        seed: u64,
        device: &Device,
    ) -> Option<Samples> {
        let ([clean, noisy, denoised], psnr) = super::denoise::samples(
            self,
            set,
            ctx.samples,
            &ctx.schedule,
            ctx.sample_t,
            seed,
            device,
        );
        Some(Samples {
            clean,
            noisy,
            denoised,
            t: ctx.sample_t,
            psnr,
        })
    }
}

/// A model's test measures on both domains. In `summary.json` the fields are named after the
/// metric (`original_acc`, `restricted_acc`, `probe_restricted_acc`, or `original_mse`, …),
/// with the PSNR of the denoised sample images beside a denoiser's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(into = "ScoresRecord", try_from = "ScoresRecord")]
pub struct Scores {
    pub metric: Metric,
    /// On the original domain's test set (intactness).
    pub original: f64,
    /// On the restricted domain's test set, before any fine-tuning.
    pub restricted: f64,
    /// SOPHON's last non-fine-tunability probe: restricted, after a short fine-tune.
    pub probe: Option<f64>,
    pub original_psnr: Option<f64>,
    pub restricted_psnr: Option<f64>,
}

impl Scores {
    pub fn new(metric: Metric, original: f64, restricted: f64) -> Self {
        Self {
            metric,
            original,
            restricted,
            probe: None,
            original_psnr: None,
            restricted_psnr: None,
        }
    }
}

/// [`Scores`] as `summary.json` spells it.
#[derive(Serialize, Deserialize)]
struct ScoresRecord {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    original_acc: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    restricted_acc: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    probe_restricted_acc: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    original_mse: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    restricted_mse: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    probe_restricted_mse: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    original_psnr: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    restricted_psnr: Option<f64>,
}

impl From<Scores> for ScoresRecord {
    fn from(s: Scores) -> Self {
        let acc = s.metric == Metric::Acc;
        let a = |v: f64| (acc.then_some(v), (!acc).then_some(v));
        let (original_acc, original_mse) = a(s.original);
        let (restricted_acc, restricted_mse) = a(s.restricted);
        let (probe_restricted_acc, probe_restricted_mse) = match s.probe {
            Some(p) => a(p),
            None => (None, None),
        };
        Self {
            original_acc,
            restricted_acc,
            probe_restricted_acc,
            original_mse,
            restricted_mse,
            probe_restricted_mse,
            original_psnr: s.original_psnr,
            restricted_psnr: s.restricted_psnr,
        }
    }
}

impl TryFrom<ScoresRecord> for Scores {
    type Error = &'static str;

    fn try_from(r: ScoresRecord) -> Result<Self, Self::Error> {
        let (metric, original, restricted, probe) = match (r.original_acc, r.original_mse) {
            (Some(o), _) => (Metric::Acc, o, r.restricted_acc, r.probe_restricted_acc),
            (None, Some(o)) => (Metric::Mse, o, r.restricted_mse, r.probe_restricted_mse),
            (None, None) => return Err("no original_acc or original_mse"),
        };
        Ok(Self {
            metric,
            original,
            restricted: restricted.ok_or("no restricted measure beside the original one")?,
            probe,
            original_psnr: r.original_psnr,
            restricted_psnr: r.restricted_psnr,
        })
    }
}

/// One domain's samples at a point of the run, for the monitor.
#[derive(Debug, Clone, Copy)]
pub struct SampleGrid<'a> {
    /// `pretrain`, `sophon`, or `attack-<strategy>-<start>`.
    pub phase: &'a str,
    /// `original` or `restricted`.
    pub domain: &'a str,
    /// The phase's step (epoch, outer iteration) the model is at.
    pub step: usize,
    pub samples: &'a Samples,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sophon::attack::AttackResult;
    use crate::sophon::summary::PretrainSummary;

    #[test]
    fn summaries_name_their_fields_after_the_metric_and_read_back() {
        let mut scores = Scores::new(Metric::Mse, 0.05, 0.3);
        scores.original_psnr = Some(31.0);
        scores.restricted_psnr = Some(22.0);
        let pre = PretrainSummary {
            scores,
            seconds: 1.5,
        };
        let json = serde_json::to_value(&pre).unwrap();
        assert_eq!(json["original_mse"], 0.05);
        assert_eq!(json["restricted_mse"], 0.3);
        assert_eq!(json["original_psnr"], 31.0);
        assert!(json.get("original_acc").is_none() && json.get("probe_restricted_mse").is_none());
        assert_eq!(
            serde_json::from_value::<PretrainSummary>(json).unwrap(),
            pre
        );

        let acc = PretrainSummary {
            scores: Scores::new(Metric::Acc, 0.9, 0.1),
            seconds: 2.0,
        };
        let json = serde_json::to_value(&acc).unwrap();
        assert_eq!(json["original_acc"], 0.9);
        assert!(json.get("original_psnr").is_none());
        assert_eq!(
            serde_json::from_value::<PretrainSummary>(json).unwrap(),
            acc
        );

        let attack = AttackResult {
            strategy: "reference".into(),
            start: crate::config::Start::Protected,
            metric: Metric::Mse,
            initial: 0.9,
            per_epoch: vec![0.5, 0.4],
            final_score: 0.4,
            mean: 0.45,
            diverged: None,
        };
        let json = serde_json::to_value(&attack).unwrap();
        assert_eq!(json["restricted_mse"], serde_json::json!([0.5, 0.4]));
        assert_eq!(json["final_restricted_mse"], 0.4);
        assert_eq!(json["mean_restricted_mse"], 0.45);
        assert_eq!(json["initial_restricted_mse"], 0.9);
        assert!(json.get("restricted_acc").is_none());
        assert_eq!(
            serde_json::from_value::<AttackResult>(json).unwrap(),
            attack
        );

        let broken =
            serde_json::json!({"strategy": "x", "start": "original", "restricted_acc": [0.5]});
        let e = serde_json::from_value::<AttackResult>(broken)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("attack entry x from original: no initial_restricted_acc"),
            "{e}"
        );
    }
}

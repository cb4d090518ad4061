//! The experiment description: one TOML file (a preset) that the window, the command line and the
//! tests share. Parsed with serde, validated once; every error names the field it is about.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub mod sophon;

use sophon::SophonConfig;

/// An error in an experiment description. Its message names the file or the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// (The I/O error is part of the message, not a `source`, so a report that prints the
    /// chain does not say it twice.)
    #[error("{}: cannot read: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{origin}: {message}")]
    Parse { origin: String, message: String },
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("--set {assignment}: {message}")]
    Override { assignment: String, message: String },
}

pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// What the model learns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Task {
    /// A classifier; accuracy measures it.
    #[default]
    Classification,
    /// An ε-prediction denoiser (DDPM); the test ε-MSE measures it.
    Denoising,
}

/// Slack for comparisons at a threshold: accuracies are counts over a test set (multiples of
/// 1/500, say), so a drop of exactly the tolerance or a protected score exactly the margin above
/// scratch is common, and its floating-point difference may land a hair past the threshold
/// (0.788 − 0.738 is 0.05000000000000004). A threshold met exactly counts as met.
pub const AT_THRESHOLD: f64 = 1e-9;

/// A task's test measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Metric {
    /// Test accuracy: higher is better.
    Acc,
    /// Test ε-MSE: lower is better.
    Mse,
}

impl Metric {
    /// The measure of a task.
    pub fn of(task: Task) -> Self {
        match task {
            Task::Classification => Metric::Acc,
            Task::Denoising => Metric::Mse,
        }
    }

    /// The suffix of its series and summary fields (`original_acc`, `restricted_mse`).
    pub fn name(self) -> &'static str {
        match self {
            Metric::Acc => "acc",
            Metric::Mse => "mse",
        }
    }

    /// What a user reads on an axis.
    pub fn label(self) -> &'static str {
        match self {
            Metric::Acc => "accuracy",
            Metric::Mse => "ε-MSE",
        }
    }
}

impl Task {
    pub fn name(self) -> &'static str {
        match self {
            Task::Classification => "classification",
            Task::Denoising => "denoising",
        }
    }
}

/// A complete experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentConfig {
    /// A short name; run folders are named after it.
    #[serde(default = "default_name")]
    pub name: String,
    /// Seeds data generation, shuffling, model initialisation and the simulated attacks.
    pub seed: u64,
    #[serde(default)]
    pub task: Task,
    pub model: ModelConfig,
    pub input: InputConfig,
    /// The domain the protected model must stay good on.
    pub original: DataSource,
    /// The domain fine-tuning must be made hard on.
    pub restricted: DataSource,
    pub pretrain: PretrainConfig,
    /// The noise schedule and sample grids of the denoising task (ignored by classification).
    #[serde(default)]
    pub diffusion: DiffusionConfig,
    /// SOPHON's loops; without this section the run pre-trains and evaluates only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sophon: Option<SophonConfig>,
    pub evaluation: EvaluationConfig,
    /// How much of each domain's training set is held out as its validation split.
    #[serde(default)]
    pub validation: ValidationConfig,
}

/// A validation split's size: a count of images (`400`) or a fraction of the training set
/// (`0.2`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SplitSize {
    Count(usize),
    Fraction(f64),
}

impl SplitSize {
    /// Images out of `train` (a fraction rounds to the nearest count, at least 1).
    pub fn count(self, train: usize) -> usize {
        match self {
            SplitSize::Count(n) => n,
            SplitSize::Fraction(f) => ((train as f64 * f).round() as usize).max(1),
        }
    }

    fn validate(self, field: &str) -> Result<(), ConfigError> {
        match self {
            SplitSize::Count(n) => at_least(field, n, 1),
            SplitSize::Fraction(f) if f > 0.0 && f < 1.0 => Ok(()),
            SplitSize::Fraction(f) => Err(invalid(
                field,
                format!("a fraction must be in (0, 1) (got {f}); a count is a whole number"),
            )),
        }
    }
}

impl fmt::Display for SplitSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SplitSize::Count(n) => write!(f, "{n}"),
            SplitSize::Fraction(x) => write!(f, "{x}"),
        }
    }
}

/// The validation split of each domain, carved at random (seeded) out of its training set
/// before anything trains. Pre-training, NTR, FTS and every attacker train on what is left;
/// model selection, the guard, the probe and the best-effort attacker's search read only the
/// validation split; the test split is read only for reported figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidationConfig {
    /// Default: 10 % of the original training set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<SplitSize>,
    /// Default: 20 % of the restricted training set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restricted: Option<SplitSize>,
}

impl ValidationConfig {
    pub const DEFAULT_ORIGINAL: SplitSize = SplitSize::Fraction(0.1);
    pub const DEFAULT_RESTRICTED: SplitSize = SplitSize::Fraction(0.2);

    pub fn original(&self) -> SplitSize {
        self.original.unwrap_or(Self::DEFAULT_ORIGINAL)
    }

    pub fn restricted(&self) -> SplitSize {
        self.restricted.unwrap_or(Self::DEFAULT_RESTRICTED)
    }
}

impl ExperimentConfig {
    /// The restricted validation split's size: `[validation] restricted`, else an older
    /// preset's `sophon.select.holdout` (the images its probe was scored on), else the default.
    pub fn restricted_validation(&self) -> SplitSize {
        let legacy = self
            .sophon
            .as_ref()
            .and_then(|s| s.select.as_ref())
            .and_then(|s| s.holdout);
        match (self.validation.restricted, legacy) {
            (Some(size), _) => size,
            (None, Some(n)) => SplitSize::Count(n),
            (None, None) => ValidationConfig::DEFAULT_RESTRICTED,
        }
    }
}

fn default_name() -> String {
    "experiment".into()
}

/// The classifier architectures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    Mlp,
    CnnSmall,
    VggSmall,
    ResnetSmall,
    /// The ε-prediction UNet of the denoising task.
    Unet,
}

impl ModelKind {
    /// The classifiers.
    pub const ALL: [ModelKind; 4] = [
        ModelKind::Mlp,
        ModelKind::CnnSmall,
        ModelKind::VggSmall,
        ModelKind::ResnetSmall,
    ];

    /// The models a task can use.
    pub fn for_task(task: Task) -> &'static [ModelKind] {
        match task {
            Task::Classification => &Self::ALL,
            Task::Denoising => &[ModelKind::Unet],
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Mlp => "mlp",
            ModelKind::CnnSmall => "cnn-small",
            ModelKind::VggSmall => "vgg-small",
            ModelKind::ResnetSmall => "resnet-small",
            ModelKind::Unet => "unet",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub kind: ModelKind,
    /// Hidden layer widths of the MLP (ignored by the other models).
    #[serde(default = "default_hidden")]
    pub hidden: Vec<usize>,
    /// UNet: channels of the first level (the second level has twice as many).
    #[serde(default = "default_unet_base")]
    pub base: usize,
    /// UNet: residual blocks per level on the way down and on the way up.
    #[serde(default = "default_unet_blocks")]
    pub blocks_per_level: usize,
}

fn default_hidden() -> Vec<usize> {
    vec![256, 128]
}

fn default_unet_base() -> usize {
    32
}

fn default_unet_blocks() -> usize {
    2
}

/// DDPM's noise schedule and the denoising task's sample grids.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiffusionConfig {
    /// T, the number of noise steps.
    #[serde(default = "default_steps")]
    pub steps: usize,
    /// β_1 of the linear schedule.
    #[serde(default = "default_beta_start")]
    pub beta_start: f64,
    /// β_T of the linear schedule.
    #[serde(default = "default_beta_end")]
    pub beta_end: f64,
    /// Train at this time step only (the reference code's accidental t = 1); by default t is
    /// uniform over 1..=T.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed_t: Option<usize>,
    /// SOPHON's suppression loss noises the restricted query images to t uniform over
    /// 1..=`suppress_max_t` only (default: all of 1..=T). Near T a noised image says nothing of
    /// its domain, so denial of service there would deny the original domain too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppress_max_t: Option<usize>,
    /// Sample grids noise the clean images to this step and denoise them back.
    #[serde(default = "default_sample_t")]
    pub sample_t: usize,
    /// Test images per domain in a sample grid (also the images PSNR is measured on).
    #[serde(default = "default_samples")]
    pub samples: usize,
}

fn default_steps() -> usize {
    1000
}
fn default_beta_start() -> f64 {
    1e-4
}
fn default_beta_end() -> f64 {
    0.02
}
fn default_sample_t() -> usize {
    20
}
fn default_samples() -> usize {
    8
}

impl Default for DiffusionConfig {
    fn default() -> Self {
        Self {
            steps: default_steps(),
            beta_start: default_beta_start(),
            beta_end: default_beta_end(),
            fixed_t: None,
            suppress_max_t: None,
            sample_t: default_sample_t(),
            samples: default_samples(),
        }
    }
}

/// The model's input: every data set is resized and converted to this.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputConfig {
    /// Side of the square input image in pixels.
    pub size: usize,
    /// 1 (grey) or 3 (RGB).
    pub channels: usize,
    /// Allow grey↔RGB conversion of data sets whose channels differ from `channels`.
    #[serde(default)]
    pub convert_channels: bool,
}

/// The ten-class procedural domains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProceduralDomain {
    /// circle, square, triangle, diamond, star, cross, ring, hexagon, arrow, crescent
    Shapes,
    /// hand-made skeletons of the digits 0–9, jittered
    Strokes,
    /// stripes, checker, dots, grid, rings, spiral, value noise, Gabor, zigzag, crosshatch
    Textures,
    /// 1–10 blobs
    Counting,
}

/// What is behind the foreground of shapes, strokes and counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Background {
    /// one flat colour (with a little pixel noise)
    #[default]
    Plain,
    /// a random texture from the textures domain at reduced contrast
    Texture,
}

/// Which CIFAR-100 labels to learn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cifar100Labels {
    /// 20 super-classes
    Coarse,
    /// 100 classes
    #[default]
    Fine,
}

/// Where a domain's images come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "kebab-case", deny_unknown_fields)]
pub enum DataSource {
    /// Generated on the fly: no files needed.
    Procedural {
        domain: ProceduralDomain,
        #[serde(default)]
        background: Background,
        /// Number of training images.
        train: usize,
        /// Number of test images.
        test: usize,
    },
    /// The UCI handwritten digits bundled with the workbench (1438 train / 359 test, 8×8 grey).
    Digits,
    /// IDX files (MNIST, Fashion-MNIST), plain or gzipped.
    Idx {
        train_images: PathBuf,
        train_labels: PathBuf,
        test_images: PathBuf,
        test_labels: PathBuf,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        train_limit: Option<usize>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        test_limit: Option<usize>,
    },
    /// The CIFAR-10 binary version: a folder with `data_batch_1..5.bin` and `test_batch.bin`.
    Cifar10 {
        dir: PathBuf,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        train_limit: Option<usize>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        test_limit: Option<usize>,
    },
    /// The CIFAR-100 binary version: a folder with `train.bin` and `test.bin`.
    Cifar100 {
        dir: PathBuf,
        #[serde(default)]
        labels: Cifar100Labels,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        train_limit: Option<usize>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        test_limit: Option<usize>,
    },
    /// Two image folders (one sub-folder per class of PNG/JPEG files).
    Folder {
        train: PathBuf,
        test: PathBuf,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        train_limit: Option<usize>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        test_limit: Option<usize>,
    },
}

impl DataSource {
    /// At most this many training images are kept.
    pub fn train_limit(&self) -> Option<usize> {
        match self {
            DataSource::Idx { train_limit, .. }
            | DataSource::Cifar10 { train_limit, .. }
            | DataSource::Cifar100 { train_limit, .. }
            | DataSource::Folder { train_limit, .. } => *train_limit,
            DataSource::Procedural { .. } | DataSource::Digits => None,
        }
    }

    /// At most this many test images are kept.
    pub fn test_limit(&self) -> Option<usize> {
        match self {
            DataSource::Idx { test_limit, .. }
            | DataSource::Cifar10 { test_limit, .. }
            | DataSource::Cifar100 { test_limit, .. }
            | DataSource::Folder { test_limit, .. } => *test_limit,
            DataSource::Procedural { .. } | DataSource::Digits => None,
        }
    }

    /// The channel count the source's files have, where it is fixed.
    pub fn native_channels(&self) -> Option<usize> {
        match self {
            DataSource::Digits | DataSource::Idx { .. } => Some(1),
            DataSource::Cifar10 { .. } | DataSource::Cifar100 { .. } => Some(3),
            DataSource::Procedural { .. } | DataSource::Folder { .. } => None,
        }
    }

    /// The files and folders the source reads, by field name.
    pub fn paths_mut(&mut self) -> Vec<(&'static str, &mut PathBuf)> {
        match self {
            DataSource::Idx {
                train_images,
                train_labels,
                test_images,
                test_labels,
                ..
            } => vec![
                ("train_images", train_images),
                ("train_labels", train_labels),
                ("test_images", test_images),
                ("test_labels", test_labels),
            ],
            DataSource::Cifar10 { dir, .. } | DataSource::Cifar100 { dir, .. } => {
                vec![("dir", dir)]
            }
            DataSource::Folder { train, test, .. } => vec![("train", train), ("test", test)],
            DataSource::Procedural { .. } | DataSource::Digits => Vec::new(),
        }
    }

    /// A short human description.
    pub fn describe(&self) -> String {
        match self {
            DataSource::Procedural {
                domain, background, ..
            } => match background {
                Background::Plain => format!("{domain:?}").to_lowercase(),
                Background::Texture => format!("{domain:?} on texture").to_lowercase(),
            },
            DataSource::Digits => "UCI digits".into(),
            DataSource::Idx { train_images, .. } => format!("IDX {}", train_images.display()),
            DataSource::Cifar10 { dir, .. } => format!("CIFAR-10 {}", dir.display()),
            DataSource::Cifar100 { dir, .. } => format!("CIFAR-100 {}", dir.display()),
            DataSource::Folder { train, .. } => format!("folder {}", train.display()),
        }
    }
}

/// The optimizers an attacker (or the pre-training) may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OptimizerKind {
    Sgd,
    SgdMomentum,
    Adam,
    Adagrad,
    Rmsprop,
}

impl OptimizerKind {
    pub fn name(self) -> &'static str {
        match self {
            OptimizerKind::Sgd => "sgd",
            OptimizerKind::SgdMomentum => "sgd-momentum",
            OptimizerKind::Adam => "adam",
            OptimizerKind::Adagrad => "adagrad",
            OptimizerKind::Rmsprop => "rmsprop",
        }
    }
}

/// An optimizer and its settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimizerConfig {
    pub kind: OptimizerKind,
    /// Learning rate.
    pub lr: f64,
    /// Momentum of `sgd-momentum` (default 0.9); ignored by the others.
    #[serde(default = "default_momentum")]
    pub momentum: f64,
    /// L2 weight decay added to the gradient.
    #[serde(default)]
    pub weight_decay: f64,
}

fn default_momentum() -> f64 {
    0.9
}

impl OptimizerConfig {
    pub fn new(kind: OptimizerKind, lr: f64) -> Self {
        Self {
            kind,
            lr,
            momentum: default_momentum(),
            weight_decay: 0.0,
        }
    }

    /// The one check of every optimizer block (pre-training, simulated environments, the probe,
    /// attackers): a positive finite learning rate, momentum in [0, 1), a finite weight decay
    /// ≥ 0. `field` is the block's dotted path, for the message.
    pub fn validate(&self, field: &str) -> Result<(), ConfigError> {
        positive(&format!("{field}.lr"), self.lr)?;
        if !(0.0..1.0).contains(&self.momentum) {
            return Err(invalid(
                format!("{field}.momentum"),
                format!("must be in [0, 1) (got {})", self.momentum),
            ));
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return Err(invalid(
                format!("{field}.weight_decay"),
                format!("must be a finite number ≥ 0 (got {})", self.weight_decay),
            ));
        }
        Ok(())
    }
}

/// Training the model on the original domain before anything else.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PretrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub optimizer: OptimizerConfig,
    /// Start from this checkpoint (a `.bpk` written by an earlier run) instead of training.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<PathBuf>,
}

/// The three starting points of the attacker evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Start {
    /// The model under test (SOPHON-protected).
    Protected,
    /// The pre-trained, unprotected model.
    Original,
    /// A freshly initialised model.
    Scratch,
}

impl Start {
    pub fn name(self) -> &'static str {
        match self {
            Start::Protected => "protected",
            Start::Original => "original",
            Start::Scratch => "scratch",
        }
    }
}

impl fmt::Display for Start {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which parameters the attacker fine-tunes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layers {
    /// every parameter, starting from the model as it is
    All,
    /// a freshly initialised classification head, then every parameter
    ReinitHead,
    /// the classification head only (the rest frozen)
    HeadOnly,
}

/// One attacker fine-tuning strategy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttackStrategy {
    pub name: String,
    pub layers: Layers,
    pub optimizer: OptimizerConfig,
    pub batch_size: usize,
    pub epochs: usize,
}

/// One optimizer of the best-effort attacker's grid and the learning rates it tries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchOptimizer {
    pub kind: OptimizerKind,
    pub lrs: Vec<f64>,
    /// Momentum of `sgd-momentum` (default 0.9).
    #[serde(default = "default_momentum")]
    pub momentum: f64,
    #[serde(default)]
    pub weight_decay: f64,
}

/// The best-effort attacker: a real attacker tunes its learning rate, so this one searches a
/// grid (layers × optimizer × learning rate × batch size) from every starting point alike, by
/// successive halving on the restricted *validation* split: every setting trains to the first
/// rung's epochs, the best `1/eta` go on to the next rung, and so on to `epochs`. The setting
/// with the best validation measure at the end is reported, with its test curve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BestEffortConfig {
    #[serde(default = "default_search_layers")]
    pub layers: Vec<Layers>,
    #[serde(default = "default_search_optimizers")]
    pub optimizers: Vec<SearchOptimizer>,
    #[serde(default = "default_search_batches")]
    pub batch_sizes: Vec<usize>,
    /// The full budget, in epochs over the restricted training split.
    #[serde(default = "default_search_epochs")]
    pub epochs: usize,
    /// The epochs at which the candidates are cut (increasing, below `epochs`).
    #[serde(default = "default_rungs")]
    pub rungs: Vec<usize>,
    /// Each rung keeps the best ⌈n / eta⌉ candidates.
    #[serde(default = "default_eta")]
    pub eta: usize,
}

fn default_search_layers() -> Vec<Layers> {
    vec![Layers::All]
}

fn default_search_optimizers() -> Vec<SearchOptimizer> {
    vec![
        SearchOptimizer {
            kind: OptimizerKind::SgdMomentum,
            lrs: vec![1e-3, 3e-3, 1e-2, 3e-2],
            momentum: 0.9,
            weight_decay: 1e-4,
        },
        SearchOptimizer {
            kind: OptimizerKind::Adam,
            lrs: vec![1e-4, 3e-4, 1e-3, 3e-3],
            momentum: 0.9,
            weight_decay: 0.0,
        },
    ]
}

fn default_search_batches() -> Vec<usize> {
    vec![100]
}

fn default_search_epochs() -> usize {
    10
}

fn default_rungs() -> Vec<usize> {
    vec![1, 3]
}

fn default_eta() -> usize {
    3
}

impl Default for BestEffortConfig {
    fn default() -> Self {
        Self {
            layers: default_search_layers(),
            optimizers: default_search_optimizers(),
            batch_sizes: default_search_batches(),
            epochs: default_search_epochs(),
            rungs: default_rungs(),
            eta: default_eta(),
        }
    }
}

impl BestEffortConfig {
    /// The name of the best-effort attacker's entries (not allowed for a fixed strategy).
    pub const NAME: &'static str = "best-effort";

    /// Every setting of the grid, as a strategy named after its setting.
    pub fn candidates(&self) -> Vec<AttackStrategy> {
        let mut out = Vec::new();
        for &layers in &self.layers {
            for o in &self.optimizers {
                for &lr in &o.lrs {
                    for &batch_size in &self.batch_sizes {
                        let optimizer = OptimizerConfig {
                            kind: o.kind,
                            lr,
                            momentum: o.momentum,
                            weight_decay: o.weight_decay,
                        };
                        let layer_name = match layers {
                            Layers::All => "all",
                            Layers::ReinitHead => "reinit-head",
                            Layers::HeadOnly => "head-only",
                        };
                        out.push(AttackStrategy {
                            name: format!(
                                "{} lr {lr:e} batch {batch_size} {layer_name}",
                                o.kind.name()
                            ),
                            layers,
                            optimizer,
                            batch_size,
                            epochs: self.epochs,
                        });
                    }
                }
            }
        }
        out
    }

    /// The number of candidates that train in each stage (one per rung, then the last).
    pub fn survivors(&self) -> Vec<usize> {
        let mut n = self.candidates().len();
        let mut out = vec![n];
        for _ in &self.rungs {
            n = n.div_ceil(self.eta.max(1)).max(1);
            out.push(n);
        }
        out
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let f = |name: &str| format!("evaluation.best_effort.{name}");
        if self.layers.is_empty() || self.optimizers.is_empty() || self.batch_sizes.is_empty() {
            return Err(invalid(
                f("optimizers"),
                "layers, optimizers and batch_sizes each need at least one entry",
            ));
        }
        for (i, o) in self.optimizers.iter().enumerate() {
            if o.lrs.is_empty() {
                return Err(invalid(
                    f(&format!("optimizers[{i}].lrs")),
                    "needs at least one learning rate",
                ));
            }
            for lr in &o.lrs {
                let c = OptimizerConfig {
                    kind: o.kind,
                    lr: *lr,
                    momentum: o.momentum,
                    weight_decay: o.weight_decay,
                };
                c.validate(&f(&format!("optimizers[{i}]")))?;
            }
        }
        for &b in &self.batch_sizes {
            batch_size(&f("batch_sizes"), b)?;
        }
        at_least(&f("epochs"), self.epochs, 1)?;
        at_least(&f("eta"), self.eta, 2)?;
        let mut last = 0;
        for &r in &self.rungs {
            if r <= last || r >= self.epochs {
                return Err(invalid(
                    f("rungs"),
                    format!(
                        "must increase, each at least 1 and below epochs = {} (got {:?})",
                        self.epochs, self.rungs
                    ),
                ));
            }
            last = r;
        }
        Ok(())
    }
}

/// The attacker evaluation that measures (non-)fine-tunability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvaluationConfig {
    /// Starting points; by default protected, original and scratch (without SOPHON: original
    /// and scratch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts: Option<Vec<Start>>,
    pub strategies: Vec<AttackStrategy>,
    /// Batch size for measuring test accuracy (no gradients).
    #[serde(default = "default_eval_batch")]
    pub batch_size: usize,
    /// The best-effort attacker (off when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_effort: Option<BestEffortConfig>,
    /// How much better than scratch the protected start may end and still count as "no better":
    /// accuracy points for a classifier, a fraction of scratch's ε-MSE for a denoiser.
    #[serde(default = "default_margin")]
    pub margin: f64,
    /// The verdict's intactness tolerance: how far the protected model's original test measure
    /// may fall behind the pre-trained model's (accuracy points; a fraction of a denoiser's
    /// ε-MSE). Default: 0.05 for a classifier, 0.1 for a denoiser. Model selection has its own
    /// (`sophon.select.tolerance`, on validation), which should be tighter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance: Option<f64>,
    /// The attacker's own restricted training images: this many are drawn (seeded) out of the
    /// restricted training set, after the validation split, and every attacker fine-tunes on
    /// them alone, while SOPHON (FTS and the probe) trains on the rest and never sees them.
    /// Absent: no split, and the attackers fine-tune on the images SOPHON trained on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attacker_images: Option<usize>,
}

fn default_eval_batch() -> usize {
    500
}

fn default_margin() -> f64 {
    0.02
}

impl EvaluationConfig {
    /// The starting points to evaluate, defaults resolved.
    pub fn starts(&self, has_sophon: bool) -> Vec<Start> {
        match &self.starts {
            Some(s) => s.clone(),
            None if has_sophon => vec![Start::Protected, Start::Original, Start::Scratch],
            None => vec![Start::Original, Start::Scratch],
        }
    }
}

pub(crate) fn positive(field: &str, v: f64) -> Result<(), ConfigError> {
    if v > 0.0 && v.is_finite() {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("must be a positive number (got {v})"),
        ))
    }
}

pub(crate) fn at_least(field: &str, v: usize, min: usize) -> Result<(), ConfigError> {
    if v >= min {
        Ok(())
    } else {
        Err(invalid(field, format!("must be at least {min} (got {v})")))
    }
}

/// A batch size: at least 1 and at most [`MAX_BATCH`](crate::limits::MAX_BATCH).
pub(crate) fn batch_size(field: &str, v: usize) -> Result<(), ConfigError> {
    at_least(field, v, 1)?;
    at_most(field, v, crate::limits::MAX_BATCH)
}

pub(crate) fn at_most(field: &str, v: usize, max: usize) -> Result<(), ConfigError> {
    if v <= max {
        Ok(())
    } else {
        Err(invalid(field, format!("must be at most {max} (got {v})")))
    }
}

impl ExperimentConfig {
    /// Read, override (`key=value` dotted paths) and validate a preset. Relative file paths in
    /// it (data sets, `pretrain.load`, `sophon.load`) are resolved against the preset's folder, so a preset
    /// works from any working directory and the resolved config names absolute paths.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        let mut config = Self::from_toml(&text, &path.display().to_string(), overrides)?;
        let base = path.parent().unwrap_or(Path::new("."));
        let base = std::fs::canonicalize(base).unwrap_or_else(|_| base.to_path_buf());
        config.resolve_paths(&base);
        Ok(config)
    }

    /// Make relative file paths absolute against `base`.
    pub fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            // An empty path stays empty, so validation can say that it is missing.
            if p.is_relative() && !p.as_os_str().is_empty() {
                *p = base.join(&*p);
            }
        };
        for source in [&mut self.original, &mut self.restricted] {
            for (_, p) in source.paths_mut() {
                fix(p);
            }
        }
        if let Some(p) = &mut self.pretrain.load {
            fix(p);
        }
        if let Some(p) = self.sophon.as_mut().and_then(|s| s.load.as_mut()) {
            fix(p);
        }
    }

    /// Parse, override and validate TOML text; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str, overrides: &[String]) -> Result<Self, ConfigError> {
        let mut table: toml::Table =
            toml::from_str(text).map_err(|e| parse_error(origin, text, &e))?;
        for assignment in overrides {
            apply_override(&mut table, assignment)?;
        }
        let text = toml::to_string(&table).map_err(|e| ConfigError::Parse {
            origin: origin.into(),
            message: e.to_string(),
        })?;
        let config: Self = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            origin: origin.into(),
            message: one_line(e.message()),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// The full resolved config as TOML (what `config.toml` in a run folder holds).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("an experiment config always serialises")
    }

    /// Check ranges and contradictions; the error names the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.name.trim().is_empty() || self.name.contains(['/', '\\']) {
            return Err(invalid(
                "name",
                "must be a non-empty name without path separators",
            ));
        }
        let input = &self.input;
        if input.channels != 1 && input.channels != 3 {
            return Err(invalid(
                "input.channels",
                format!("must be 1 or 3 (got {})", input.channels),
            ));
        }
        at_least("input.size", input.size, 8)?;
        at_most("input.size", input.size, 256)?;
        self.validate_task()?;
        if self.model.kind == ModelKind::Mlp
            && (self.model.hidden.is_empty() || self.model.hidden.contains(&0))
        {
            return Err(invalid(
                "model.hidden",
                "needs at least one layer, each wider than 0",
            ));
        }
        for (field, source) in [
            ("original", &self.original),
            ("restricted", &self.restricted),
        ] {
            self.validate_source(field, source)?;
        }
        let p = &self.pretrain;
        if p.load.is_none() {
            at_least("pretrain.epochs", p.epochs, 1)?;
        }
        batch_size("pretrain.batch_size", p.batch_size)?;
        p.optimizer.validate("pretrain.optimizer")?;
        if let Some(s) = &self.sophon {
            s.validate()?;
        }
        for (field, size) in [
            ("validation.original", self.validation.original),
            ("validation.restricted", self.validation.restricted),
        ] {
            if let Some(size) = size {
                size.validate(field)?;
            }
        }
        let e = &self.evaluation;
        batch_size("evaluation.batch_size", e.batch_size)?;
        let starts = e.starts(self.sophon.is_some());
        if starts.is_empty() {
            return Err(invalid(
                "evaluation.starts",
                "needs at least one starting point",
            ));
        }
        if starts.contains(&Start::Protected) && self.sophon.is_none() {
            return Err(invalid(
                "evaluation.starts",
                "`protected` needs a [sophon] section (there is no protected model without SOPHON)",
            ));
        }
        if let Some(b) = &e.best_effort {
            b.validate()?;
        }
        if !(e.margin >= 0.0 && e.margin.is_finite()) {
            return Err(invalid("evaluation.margin", "must be a finite number ≥ 0"));
        }
        if let Some(t) = e.tolerance
            && !(t >= 0.0 && t.is_finite())
        {
            return Err(invalid(
                "evaluation.tolerance",
                "must be a finite number ≥ 0",
            ));
        }
        if let Some(n) = e.attacker_images {
            at_least("evaluation.attacker_images", n, 1)?;
        }
        let mut names = HashSet::new();
        for (i, s) in e.strategies.iter().enumerate() {
            let f = format!("evaluation.strategies[{i}]");
            if s.name.trim().is_empty() || !names.insert(s.name.as_str()) {
                return Err(invalid(format!("{f}.name"), "must be non-empty and unique"));
            }
            if s.name == BestEffortConfig::NAME {
                return Err(invalid(
                    format!("{f}.name"),
                    "`best-effort` names the searched attacker ([evaluation.best_effort])",
                ));
            }
            at_least(&format!("{f}.epochs"), s.epochs, 1)?;
            batch_size(&format!("{f}.batch_size"), s.batch_size)?;
            s.optimizer.validate(&format!("{f}.optimizer"))?;
        }
        Ok(())
    }

    /// The model, the SOPHON loss, the guard and the diffusion settings fit the task.
    fn validate_task(&self) -> Result<(), ConfigError> {
        let kinds = ModelKind::for_task(self.task);
        if !kinds.contains(&self.model.kind) {
            let names: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
            return Err(invalid(
                "model.kind",
                format!(
                    "{} is not a model for {}; use {}",
                    self.model.kind.name(),
                    self.task.name(),
                    names.join(", ")
                ),
            ));
        }
        if let Some(s) = &self.sophon {
            let losses = sophon::SuppressionLoss::for_task(self.task);
            if !losses.contains(&s.loss) {
                let names: Vec<&str> = losses.iter().map(|l| l.name()).collect();
                return Err(invalid(
                    "sophon.loss",
                    format!(
                        "{} is not a loss for {}; use {}",
                        s.loss.name(),
                        self.task.name(),
                        names.join(", ")
                    ),
                ));
            }
            if let Some(g) = &s.guard {
                g.validate(self.task)?;
            }
        }
        if self.task != Task::Denoising {
            return Ok(());
        }
        let m = &self.model;
        at_least("model.base", m.base, 4)?;
        at_most("model.base", m.base, 256)?;
        at_least("model.blocks_per_level", m.blocks_per_level, 1)?;
        if !self.input.size.is_multiple_of(4) {
            return Err(invalid(
                "input.size",
                format!(
                    "the UNet halves the image twice: use a multiple of 4 (got {})",
                    self.input.size
                ),
            ));
        }
        let d = &self.diffusion;
        at_least("diffusion.steps", d.steps, 1)?;
        if !(d.beta_start > 0.0 && d.beta_start <= d.beta_end && d.beta_end < 1.0) {
            return Err(invalid(
                "diffusion.beta_start",
                format!(
                    "needs 0 < beta_start ≤ beta_end < 1 (got {} and {})",
                    d.beta_start, d.beta_end
                ),
            ));
        }
        if let Some(t) = d.fixed_t {
            at_least("diffusion.fixed_t", t, 1)?;
            at_most("diffusion.fixed_t", t, d.steps)?;
        }
        if let Some(t) = d.suppress_max_t {
            at_least("diffusion.suppress_max_t", t, 1)?;
            at_most("diffusion.suppress_max_t", t, d.steps)?;
        }
        at_least("diffusion.sample_t", d.sample_t, 1)?;
        at_most("diffusion.sample_t", d.sample_t, d.steps)?;
        at_least("diffusion.samples", d.samples, 1)?;
        at_most("diffusion.samples", d.samples, 64)?;
        Ok(())
    }

    fn validate_source(&self, field: &str, source: &DataSource) -> Result<(), ConfigError> {
        if let DataSource::Procedural { train, test, .. } = source {
            at_least(&format!("{field}.train"), *train, 1)?;
            at_least(&format!("{field}.test"), *test, 1)?;
            // Generated images live in memory: refuse what the machine cannot hold.
            let per_image = (self.input.channels * self.input.size * self.input.size) as u64;
            for (name, n) in [("train", *train), ("test", *test)] {
                let f = format!("{field}.{name}");
                let bytes = crate::limits::image_bytes(n as u64, per_image);
                crate::limits::check_image_memory(&format!("{n} images"), bytes)
                    .map_err(|m| invalid(f, m))?;
            }
        }
        for (name, path) in source.clone().paths_mut() {
            if path.as_os_str().is_empty() {
                return Err(invalid(
                    format!("{field}.{name}"),
                    "no file or folder chosen",
                ));
            }
        }
        for (name, limit) in [
            ("train_limit", source.train_limit()),
            ("test_limit", source.test_limit()),
        ] {
            if limit == Some(0) {
                return Err(invalid(format!("{field}.{name}"), "must be at least 1"));
            }
        }
        if let Some(native) = source.native_channels()
            && native != self.input.channels
            && !self.input.convert_channels
        {
            return Err(invalid(
                format!("{field}.source"),
                format!(
                    "{} has {native} channel(s) but input.channels = {}; set input.convert_channels = true to convert",
                    source.describe(),
                    self.input.channels
                ),
            ));
        }
        Ok(())
    }
}

/// A TOML syntax error as one line with its line and column.
fn parse_error(origin: &str, text: &str, e: &toml::de::Error) -> ConfigError {
    let place = e.span().map(|span| {
        let before = &text[..span.start.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        format!("line {line}, column {col}: ")
    });
    ConfigError::Parse {
        origin: origin.into(),
        message: format!("{}{}", place.unwrap_or_default(), one_line(e.message())),
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Apply `a.b.c=value` to a TOML table. The value is read as TOML (number, boolean, string in
/// quotes, array, inline table) and otherwise taken as a bare string. Numeric segments index
/// arrays (`evaluation.strategies.0.epochs=3`).
pub fn apply_override(table: &mut toml::Table, assignment: &str) -> Result<(), ConfigError> {
    let fail = |message: String| ConfigError::Override {
        assignment: assignment.into(),
        message,
    };
    let (key, raw) = assignment
        .split_once('=')
        .ok_or_else(|| fail("expected key=value".into()))?;
    let path: Vec<&str> = key.trim().split('.').collect();
    if path.iter().any(|s| s.is_empty()) {
        return Err(fail("the key has an empty segment".into()));
    }
    let mut root = toml::Value::Table(std::mem::take(table));
    let result = set_path(&mut root, &path, parse_value(raw.trim()));
    if let toml::Value::Table(t) = root {
        *table = t;
    }
    result.map_err(fail)
}

fn set_path(node: &mut toml::Value, path: &[&str], value: toml::Value) -> Result<(), String> {
    let (seg, rest) = path.split_first().expect("paths are never empty");
    let child = match node {
        toml::Value::Table(t) => {
            if rest.is_empty() {
                t.insert(seg.to_string(), value);
                return Ok(());
            }
            t.entry(seg.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        }
        toml::Value::Array(a) => {
            let i: usize = seg
                .parse()
                .map_err(|_| format!("`{seg}` indexes a list: use a number"))?;
            let len = a.len();
            let slot = a
                .get_mut(i)
                .ok_or_else(|| format!("index {i} is past the list's {len} entries"))?;
            if rest.is_empty() {
                *slot = value;
                return Ok(());
            }
            slot
        }
        _ => return Err(format!("`{seg}` is inside a value that is not a table")),
    };
    set_path(child, rest, value)
}

fn parse_value(raw: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

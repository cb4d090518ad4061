//! Pre-training, SOPHON's fine-tuning suppression (FTS) and normal training (NTR) loops, the
//! suppression losses and the attacker fine-tuning evaluation. Nothing here knows of threads or
//! windows: a [`Monitor`] receives progress and metrics and may interrupt.

pub mod attack;
pub mod bench;
pub mod context;
pub mod denoise;
pub mod divergence;
pub mod experiment;
pub mod fts;
pub mod losses;
pub mod measure;
pub mod optim;
pub mod protect;
pub mod search;
pub mod series;
pub mod summary;
pub mod task;
pub mod train;
pub mod verdict;

use std::path::PathBuf;

use burn::tensor::Device;

use task::{SampleGrid, SaveModel};

/// The user stopped the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("stopped by the user")]
pub struct Interrupted;

pub use divergence::Divergence;

/// Why a model, a checkpoint or a sample image could not be written or read. The message names
/// the file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Writing `what` (a checkpoint, a model, an optimizer, the checksums …) at `path` failed.
    #[error("{}: cannot save {what}: {message}", path.display())]
    Save {
        path: PathBuf,
        what: &'static str,
        message: String,
    },
    /// Reading or loading `path` failed.
    #[error("{}: cannot load: {message}", path.display())]
    Load { path: PathBuf, message: String },
    #[error("{}: not found", path.display())]
    NotFound { path: PathBuf },
    /// The file's SHA-256 is not the one recorded when it was written.
    #[error(
        "{}: checksum mismatch: the file changed since it was written (SHA-256 {recorded}… recorded, {found}… found); refusing to load it",
        path.display()
    )]
    ChecksumMismatch {
        path: PathBuf,
        recorded: String,
        found: String,
    },
}

impl StoreError {
    /// A failed write of `what` at `path`.
    pub fn save(path: &std::path::Path, what: &'static str, e: impl std::fmt::Display) -> Self {
        Self::Save {
            path: path.to_path_buf(),
            what,
            message: e.to_string(),
        }
    }

    /// A failed read or load of `path`.
    pub fn load(path: &std::path::Path, e: impl std::fmt::Display) -> Self {
        Self::Load {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    }
}

/// Why a training loop ended before its last step.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Halt {
    #[error(transparent)]
    Interrupted(#[from] Interrupted),
    /// A NaN or infinity, already reported to the monitor.
    #[error(transparent)]
    Diverged(#[from] Divergence),
}

/// The phases of an experiment, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    LoadingData,
    Pretrain,
    Sophon,
    Attack,
}

impl Phase {
    pub const ALL: [Phase; 4] = [
        Phase::LoadingData,
        Phase::Pretrain,
        Phase::Sophon,
        Phase::Attack,
    ];

    /// A phase that starts at one of the story's boundaries (pre-trained → protect → attack),
    /// where presenter mode waits for *Next*.
    pub fn is_stop(self) -> bool {
        matches!(self, Phase::Sophon | Phase::Attack)
    }

    /// What the progress bar and the status bar say.
    pub fn name(self) -> &'static str {
        match self {
            Phase::LoadingData => "loading data",
            Phase::Pretrain => "pretrain",
            Phase::Sophon => "sophon",
            Phase::Attack => "attack",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What an engine loop reports to, and how it can be paused or stopped.
pub trait Monitor {
    /// A new phase begins with this many steps.
    fn phase(&mut self, phase: Phase, total_steps: usize);
    /// One step of the current phase is done. Blocks while paused; `Err` when stopped.
    fn step(&mut self, step: usize) -> Result<(), Interrupted>;
    /// A check inside a long step: `Err` when stopped. Pausing waits for the next [`step`].
    ///
    /// [`step`]: Monitor::step
    fn poll(&mut self) -> Result<(), Interrupted> {
        Ok(())
    }
    /// Settings changed live since the last call (applied from the next outer iteration).
    fn take_updates(&mut self) -> Vec<LiveUpdate> {
        Vec::new()
    }
    /// A point of a metric series.
    fn metric(&mut self, series: &str, step: usize, value: f64);
    /// A line for the log.
    fn log(&mut self, message: &str);
    /// Something turned NaN or infinite; called once, where it was caught.
    fn divergence(&mut self, event: &Divergence) {
        self.log(&format!("diverged: {event}"));
    }
    /// The summary as it stands between phases (written to disk, so a killed run keeps what it
    /// did).
    fn summary(&mut self, summary: &summary::Summary) {
        let _ = summary;
    }
    /// Persist a model (checkpoint) under a short name.
    fn save_model(&mut self, name: &str, model: &dyn SaveModel) -> Result<(), StoreError> {
        let _ = (name, model);
        Ok(())
    }
    /// Sample images of one domain as a model reconstructs them (the denoising task).
    fn samples(&mut self, grid: SampleGrid<'_>) {
        let _ = grid;
    }
    /// A run being resumed: where its pre-trained model is and SOPHON's last checkpoint.
    /// `None` for a new run.
    fn resume_state(&mut self) -> Result<Option<ResumeFrom>, StoreError> {
        Ok(None)
    }
    /// Persist a resumable SOPHON checkpoint.
    fn save_checkpoint(&mut self, checkpoint: &protect::Checkpoint<'_>) -> Result<(), StoreError> {
        let _ = checkpoint;
        Ok(())
    }
}

/// What a resumed run continues from: model files (the engine loads them into its own model
/// type) and SOPHON's optimizers and progress.
pub struct ResumeFrom {
    pub pretrained: PathBuf,
    pub sophon: Option<protect::Resume<PathBuf>>,
}

/// Load a model file written by `save_file` into a copy of `skeleton`; the error names the file.
pub fn load_model<M: burn::module::Module>(
    skeleton: &M,
    path: &std::path::Path,
) -> Result<M, StoreError> {
    skeleton
        .clone()
        .try_load_file(path)
        .map_err(|e| StoreError::load(path, e))
}

impl protect::Resume<PathBuf> {
    /// Load the checkpoint's models into copies of `skeleton`.
    pub fn load<M: burn::module::Module>(
        self,
        skeleton: &M,
    ) -> Result<protect::Resume<M>, StoreError> {
        Ok(protect::Resume {
            model: load_model(skeleton, &self.model)?,
            fts_optim: self.fts_optim,
            ntr_optim: self.ntr_optim,
            progress: self.progress,
            selected: match &self.selected {
                Some(path) => Some(load_model(skeleton, path)?),
                None => None,
            },
        })
    }
}

/// A setting changed while a run goes on.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LiveUpdate {
    /// α, the FTS learning rate.
    Alpha(f64),
    /// β, the NTR learning rate.
    Beta(f64),
    /// ℓ_FTS : ℓ_NTR.
    Loops { fts: usize, ntr: usize },
    /// Evaluate every this many outer iterations.
    EvalEvery(usize),
}

/// The devices a run computes on: `train` has autodiff, `eval` is the same device without it.
#[derive(Debug, Clone)]
pub struct Devices {
    pub train: Device,
    pub eval: Device,
}

impl Devices {
    pub fn new(device: Device) -> Self {
        let eval = device.clone().inner();
        Self {
            train: device.autodiff(),
            eval,
        }
    }
}

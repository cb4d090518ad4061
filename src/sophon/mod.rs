//! Pre-training, SOPHON's fine-tuning suppression (FTS) and normal training (NTR) loops, the
//! suppression losses and the attacker fine-tuning evaluation. Nothing here knows of threads or
//! windows: a [`Monitor`] receives progress and metrics and may interrupt.

pub mod attack;
pub mod bench;
pub mod config;
pub mod denoise;
pub mod experiment;
pub mod fts;
pub mod losses;
pub mod optim;
pub mod protect;
pub mod train;

use burn::tensor::Device;

use crate::model::Classifier;

/// The user stopped the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("stopped by the user")]
pub struct Interrupted;

/// What an engine loop reports to, and how it can be paused or stopped.
pub trait Monitor {
    /// A new phase begins (`pretrain`, `sophon`, `attack …`) with this many steps.
    fn phase(&mut self, name: &str, total_steps: usize);
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
    /// Persist a model (checkpoint) under a short name.
    fn save_model(&mut self, name: &str, model: &Classifier) -> Result<(), String>;
    /// A run being resumed: the pre-trained model and SOPHON's last checkpoint, loaded into
    /// copies of `skeleton`. `None` for a new run.
    fn resume_state(&mut self, skeleton: &Classifier) -> Result<Option<ResumeFrom>, String> {
        let _ = skeleton;
        Ok(None)
    }
    /// Persist a resumable SOPHON checkpoint.
    fn save_checkpoint(&mut self, checkpoint: &protect::Checkpoint<'_>) -> Result<(), String> {
        let _ = checkpoint;
        Ok(())
    }
}

/// What a resumed run continues from.
pub struct ResumeFrom {
    pub pretrained: Classifier,
    pub sophon: Option<protect::Resume>,
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

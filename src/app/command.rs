//! What the window's panels ask for. UI functions return these instead of acting: the frame
//! applies them in one place ([`Workbench::apply`](super::Workbench::apply)), after every panel
//! is drawn, so no panel starts a thread, a dialog or a run itself.

use std::path::PathBuf;

use crate::config::ExperimentConfig;
use crate::run::sweep::Axis;

use super::runs::RunsAction;
use super::setup::SetupAction;

/// A file the window exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Export {
    /// Every metric series, as CSV.
    MetricsCsv,
    /// The window itself, as PNG.
    WindowPng,
    /// The run's one-page report (curves, attack plot, sample grids, verdict), as PNG.
    ReportPng,
}

/// One thing a panel asks the window to do.
#[derive(Debug)]
pub enum AppCommand {
    /// Start a run of this experiment (the edited one, or a sweep's next point).
    Start(Box<ExperimentConfig>),
    Pause,
    Resume,
    Step,
    Stop,
    /// Presenter mode on or off.
    Presenter(bool),
    /// Send the live knobs that changed since they were last sent.
    ApplyLive,
    /// Ask for a preset file with a dialog, then open it.
    OpenPresetDialog,
    /// Read this preset file; it replaces the experiment when it is valid.
    OpenPreset(PathBuf),
    /// Ask where to save the experiment as a preset.
    SavePresetDialog,
    /// Replace the experiment with a built-in preset (its TOML and its name).
    Builtin(&'static str, &'static str),
    /// Ask where to export, then write.
    Export(Export),
    /// What the setup panel asked for (a file or folder dialog).
    Setup(SetupAction),
    /// What the Runs tab asked for.
    Runs(RunsAction),
    /// Lay these runs (a sweep over these axes) out as a sweep folder, queue them, start the
    /// first when idle and watch the folder in the Runs tab.
    QueueSweep(Vec<ExperimentConfig>, Vec<Axis>),
}

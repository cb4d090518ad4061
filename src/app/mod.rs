//! The window (eframe/egui). It reads the worker's events and sends it commands; it never trains
//! and never blocks: file dialogs, data previews and run-folder reads run on helper threads
//! whose answers arrive over channels, drained once per frame with a time budget.

mod command;
pub mod explain;
mod jobs;
mod logic;
mod panels;
pub mod plots;
pub mod preview;
pub mod runs;
pub mod samples;
pub mod series;
pub mod setup;
mod stress;
pub mod sweep;
mod window;

pub use command::{AppCommand, Export};
pub use window::{WorkbenchApp, run_window};

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, unbounded};

use crate::config::Metric;
use crate::config::{ConfigError, ExperimentConfig};
use crate::run::{BackendChoice, WorkerHandle};
use crate::sophon::Phase;
use crate::sophon::summary::{RunStatus, Summary};
use jobs::Reply;
use plots::{Marker, PlotSettings};
use preview::Preview;
use runs::RunEntry;
use samples::SampleStore;
use series::SeriesStore;
use setup::FieldError;
use sweep::SweepSpec;

/// How the window is started.
#[derive(Debug, Clone, Default)]
pub struct AppOptions {
    /// Open this preset instead of the remembered one.
    pub preset: Option<PathBuf>,
    /// Press Start as soon as the window opens.
    pub run_on_start: bool,
    /// Where run folders go and where the runs list looks (default `runs`).
    pub runs_dir: Option<PathBuf>,
    /// Fill the curves with this many synthetic points (to measure frame time under load).
    pub stress_points: usize,
    /// Open in presenter mode (`--present`).
    pub present: bool,
    /// Watch this sweep folder in the Runs tab (`--watch`).
    pub watch: Option<PathBuf>,
}

/// What the window remembers between starts (eframe persistence).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Settings {
    /// The experiment as last edited, as preset TOML.
    pub preset_toml: String,
    /// Where it was last opened from or saved to.
    pub preset_path: Option<PathBuf>,
    pub backend: BackendChoice,
    pub show_explain: bool,
    pub tab: Tab,
    pub plots: PlotSettings,
    pub sweep: SweepSpec,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            preset_toml: String::new(),
            preset_path: None,
            backend: BackendChoice::Auto,
            show_explain: true,
            tab: Tab::Curves,
            plots: PlotSettings::default(),
            sweep: SweepSpec::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Tab {
    Curves,
    Runs,
    Log,
}

/// The state of the current run, as the events tell it.
#[derive(Debug, Clone, Default)]
pub struct RunView {
    pub active: bool,
    pub paused: bool,
    pub dir: Option<PathBuf>,
    pub backend: String,
    pub adapter: String,
    pub software_adapter: bool,
    pub phase: Option<Phase>,
    pub total_steps: usize,
    pub step: usize,
    /// The first progress after warm-up in this phase: (time, step).
    timed_from: Option<(Instant, usize)>,
    /// Steps per second in this phase, measured after warm-up.
    pub rate: Option<f64>,
    pub summary: Option<Summary>,
    /// Presenter mode's phase stop the run waits at (until *Next*).
    pub waiting: Option<Phase>,
    /// How the last run ended: finished, stopped, diverged or failed.
    pub ended: Option<RunStatus>,
    /// The divergences met so far (NaN or infinity), newest last.
    pub divergences: Vec<crate::sophon::Divergence>,
    /// The run's test measure (accuracy, or a denoiser's ε-MSE).
    pub metric: Option<Metric>,
}

/// Progress events before the rate is measured (shader compilation, caches).
const WARM_UP_STEPS: usize = 3;

impl RunView {
    pub fn eta(&self) -> Option<Duration> {
        let rate = self.rate.filter(|r| *r > 0.0)?;
        let left = self.total_steps.saturating_sub(self.step) as f64;
        Some(Duration::from_secs_f64(left / rate))
    }

    /// Step `step`, reached by the worker at `at`.
    fn progress(&mut self, step: usize, at: Instant) {
        self.step = step;
        match self.timed_from {
            None if step >= WARM_UP_STEPS => self.timed_from = Some((at, step)),
            Some((t0, s0)) if step > s0 => {
                let secs = at.duration_since(t0).as_secs_f64();
                if secs > 0.0 {
                    self.rate = Some((step - s0) as f64 / secs);
                }
            }
            _ => {}
        }
    }
}

/// Live-editable knobs, applied from the next outer iteration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LiveKnobs {
    pub alpha: f64,
    pub beta: f64,
    pub fts: usize,
    pub ntr: usize,
    pub eval_every: usize,
}

/// The workbench window's state.
pub struct Workbench {
    pub settings: Settings,
    pub config: ExperimentConfig,
    /// Where the experiment came from ("built-in default" or a path).
    pub origin: String,
    runs_dir: PathBuf,
    worker: Option<WorkerHandle>,
    pub run: RunView,
    pub series: SeriesStore,
    pub samples: SampleStore,
    pub markers: Vec<Marker>,
    live: Option<LiveKnobs>,
    live_sent: Option<LiveKnobs>,
    pub log: VecDeque<String>,
    /// The last error, shown in a banner until dismissed.
    pub error: Option<String>,
    pub notice: Option<String>,
    previews: [Option<Preview>; 2],
    replies: (Sender<Reply>, Receiver<Reply>),
    /// Dialog or read in flight, by kind; one of each at a time.
    busy_dialog: bool,
    pub runs: Vec<RunEntry>,
    /// The sweep folder the Runs tab watches, if any.
    pub watch: Option<runs::Watch>,
    sweep_open: bool,
    /// A sweep's points still to run, each with its run folder in the sweep folder.
    pub queue: VecDeque<(ExperimentConfig, PathBuf)>,
    run_on_start: bool,
    stress_points: usize,
    preset_path_text: String,
    png_target: Option<PathBuf>,
    /// CPU time of recent frames (ms), from eframe.
    frame_ms: VecDeque<f32>,
    rss: (Instant, Option<u64>),
    /// `--present`: switch presenter mode on at the first frame (it needs the egui context).
    present_on_start: bool,
    /// How soon the window redraws while training: [`Pace::GPU`] unless the window is drawn by
    /// a software rasteriser.
    pub pace: Pace,
}

const LOG_LINES: usize = 500;
/// How much presenter mode enlarges everything (type, lines, buttons) for a projector.
const PRESENTER_ZOOM: f32 = 1.4;
/// Time per frame spent draining worker events.
const DRAIN_BUDGET: Duration = Duration::from_millis(4);
/// How soon the window redraws while a run trains: after a worker's event (`events`), and to
/// keep the status line (memory, rate) moving (`status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    pub events: Duration,
    pub status: Duration,
}

impl Pace {
    /// Drawn on a GPU: the curves move at up to 20 frames a second instead of a frame per
    /// metric point.
    pub const GPU: Pace = Pace {
        events: Duration::from_millis(50),
        status: Duration::from_millis(250),
    };
    /// Drawn by a software rasteriser (llvmpipe under Xvfb, a machine without a GPU): every
    /// frame is drawn on the CPU cores that train, so the window redraws at most once a second
    /// while training (docs/experiments.md, 2026-12-02: the lesson in the window).
    pub const SOFTWARE: Pace = Pace {
        events: Duration::from_millis(1000),
        status: Duration::from_millis(1000),
    };
}

impl Workbench {
    /// A window state on `config`; `settings` are the remembered ones.
    pub fn new(
        config: ExperimentConfig,
        origin: String,
        settings: Settings,
        options: &AppOptions,
    ) -> Self {
        let runs_dir = options
            .runs_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("runs"));
        let mut app = Self {
            settings,
            config,
            origin,
            runs_dir,
            worker: None,
            run: RunView::default(),
            series: SeriesStore::default(),
            samples: SampleStore::default(),
            markers: Vec::new(),
            live: None,
            live_sent: None,
            log: VecDeque::new(),
            error: None,
            notice: None,
            previews: [None, None],
            replies: unbounded(),
            busy_dialog: false,
            runs: Vec::new(),
            watch: None,
            sweep_open: false,
            queue: VecDeque::new(),
            run_on_start: options.run_on_start,
            stress_points: options.stress_points,
            preset_path_text: String::new(),
            png_target: None,
            frame_ms: VecDeque::new(),
            rss: (Instant::now() - Duration::from_secs(10), None),
            present_on_start: options.present,
            pace: Pace::GPU,
        };
        app.fill_stress();
        match &options.watch {
            Some(dir) => app.watch_sweep(dir.clone()),
            None => app.refresh_runs(),
        }
        app
    }

    /// Open with the preset of `options`, else the remembered experiment, else the default.
    pub fn from_options(settings: Option<Settings>, options: &AppOptions) -> Self {
        let mut settings = settings.unwrap_or_default();
        let (config, origin) = match &options.preset {
            Some(path) => match ExperimentConfig::load(path, &[]) {
                Ok(c) => (c, path.display().to_string()),
                Err(e) => {
                    let mut app = Self::default_with(settings, options);
                    app.error = Some(e.to_string());
                    return app;
                }
            },
            None => {
                match ExperimentConfig::from_toml(&settings.preset_toml, "remembered preset", &[]) {
                    Ok(c) => (c, remembered_origin(&settings)),
                    Err(_) => {
                        settings.preset_path = None;
                        return Self::default_with(settings, options);
                    }
                }
            }
        };
        if options.preset.is_some() {
            settings.preset_path = options.preset.clone();
        }
        Self::new(config, origin, settings, options)
    }

    fn default_with(settings: Settings, options: &AppOptions) -> Self {
        let (config, origin) = builtin(crate::DEFAULT_PRESET, "default");
        Self::new(config, origin, settings, options)
    }

    /// The first problem with the experiment as edited, if any.
    pub fn validation(&self) -> Option<FieldError> {
        match self.config.validate() {
            Ok(()) => None,
            Err(ConfigError::Invalid { field, message }) => Some(FieldError { field, message }),
            Err(e) => Some(FieldError {
                field: String::new(),
                message: e.to_string(),
            }),
        }
    }

    /// Why Start is disabled, if it is.
    pub fn start_blocked(&self) -> Option<String> {
        if self.run.active {
            return Some("a run is going".into());
        }
        self.validation().map(|e| {
            if e.field.is_empty() {
                e.message
            } else {
                format!("{}: {}", e.field, e.message)
            }
        })
    }

    /// The live knobs of the running SOPHON phase (what the *Live knobs* fields edit).
    pub fn live_mut(&mut self) -> Option<&mut LiveKnobs> {
        self.live.as_mut().filter(|_| self.run.active)
    }

    /// Presenter mode (View → Presenter, `--present`; not remembered between starts). Held in
    /// the plot settings, which draw thicker lines and the attack's gaps from it.
    pub fn presenter(&self) -> bool {
        self.settings.plots.presenter
    }

    fn frame_p95(&self) -> Option<f32> {
        self.frame_stats().map(|(_, p95, _)| p95)
    }

    /// Frame-time figures over the recent frames: (median, p95, max) in ms.
    pub fn frame_stats(&self) -> Option<(f32, f32, f32)> {
        let mut v: Vec<f32> = self.frame_ms.iter().copied().collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f32::total_cmp);
        Some((
            v[v.len() / 2],
            v[(v.len() * 95 / 100).min(v.len() - 1)],
            v[v.len() - 1],
        ))
    }
}

/// A built-in preset (compiled in, so always valid) and its origin label.
fn builtin(text: &str, name: &str) -> (ExperimentConfig, String) {
    let config = ExperimentConfig::from_toml(text, name, &[])
        .expect("the built-in presets are valid (tests/engine/config.rs parses them)");
    (config, format!("built-in {name}"))
}

fn remembered_origin(settings: &Settings) -> String {
    settings.preset_path.as_ref().map_or_else(
        || "remembered".into(),
        |p| format!("{} (remembered)", p.display()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rate is the worker's: measured on when it reached each step, not on when the window
    /// handled the event (once a second on a software rasteriser, many events in one frame).
    #[test]
    fn the_rate_is_measured_on_when_the_worker_reached_the_steps() {
        let t0 = Instant::now();
        let mut run = RunView {
            total_steps: 1000,
            ..RunView::default()
        };
        for step in 0..=200 {
            run.progress(step, t0 + Duration::from_millis(10 * step as u64));
        }
        // 100 steps a second, although all the events were handled at once.
        let rate = run.rate.expect("a rate after warm-up");
        assert!((rate - 100.0).abs() < 1e-6, "rate {rate}");
        let eta = run.eta().expect("an estimate").as_secs_f64();
        assert!((eta - 8.0).abs() < 1e-6, "eta {eta}");
    }
}

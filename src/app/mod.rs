//! The window (eframe/egui). It reads the worker's events and sends it commands; it never trains
//! and never blocks: file dialogs, data previews and run-folder reads run on helper threads
//! whose answers arrive over channels, drained once per frame with a time budget.

pub mod explain;
mod panels;
pub mod plots;
pub mod preview;
pub mod runs;
pub mod samples;
pub mod series;
pub mod setup;
pub mod sweep;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, unbounded};
use egui::Ui;

use crate::config::{ConfigError, DataSource, ExperimentConfig};
use crate::run::{self, BackendChoice, Command, Event, OutDir, RunRequest, WorkerHandle};
use crate::sophon::LiveUpdate;
use crate::sophon::experiment::Summary;
use crate::sophon::task::Metric;
use plots::{Marker, PlotSettings};
use preview::{Preview, PreviewData, PreviewState, load_preview};
use runs::RunEntry;
use samples::SampleStore;
use series::SeriesStore;
use setup::{FieldError, PickTarget, Side};
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
    pub phase: Option<String>,
    pub total_steps: usize,
    pub step: usize,
    /// The first progress after warm-up in this phase: (time, step).
    timed_from: Option<(Instant, usize)>,
    /// Steps per second in this phase, measured after warm-up.
    pub rate: Option<f64>,
    pub summary: Option<Summary>,
    /// How the last run ended: finished, stopped, diverged or failed.
    pub ended: Option<String>,
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

    fn progress(&mut self, step: usize) {
        self.step = step;
        let now = Instant::now();
        match self.timed_from {
            None if step >= WARM_UP_STEPS => self.timed_from = Some((now, step)),
            Some((t0, s0)) if step > s0 => {
                let secs = now.duration_since(t0).as_secs_f64();
                if secs > 0.0 {
                    self.rate = Some((step - s0) as f64 / secs);
                }
            }
            _ => {}
        }
    }
}

/// Answers from helper threads.
enum Reply {
    Picked(PickTarget, Option<PathBuf>),
    /// A preset read and validated on a helper thread (`None`: the dialog was cancelled).
    OpenedPreset(Option<(PathBuf, Result<Box<ExperimentConfig>, String>)>),
    SavePresetTo(Option<PathBuf>),
    ExportCsvTo(Option<PathBuf>),
    ExportPngTo(Option<PathBuf>),
    Screenshot(std::sync::Arc<egui::ColorImage>),
    Preview(Side, DataSource, Result<PreviewData, String>),
    Runs(Vec<RunEntry>),
    RunOpened(Result<Box<RunEntry>, String>),
    RunSeries(PathBuf, Result<SeriesStore, String>),
    Done(String),
    Error(String),
    /// A dialog closed without a choice.
    Cancelled,
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
    sweep_open: bool,
    pub queue: VecDeque<ExperimentConfig>,
    run_on_start: bool,
    stress_points: usize,
    preset_path_text: String,
    png_target: Option<PathBuf>,
    /// CPU time of recent frames (ms), from eframe.
    frame_ms: VecDeque<f32>,
    rss: (Instant, Option<u64>),
}

const LOG_LINES: usize = 500;
/// Time per frame spent draining worker events.
const DRAIN_BUDGET: Duration = Duration::from_millis(4);
/// A worker's event asks for a frame within this time, not at once: the curves move at up to
/// 20 frames a second instead of a frame per metric point. Without a GPU the window is drawn on
/// the CPU cores that train (docs/experiments.md, speed and memory: the default experiment on 2 cores trains
/// 3.4 outer iterations a second beside a frame per event, 3.85 with this; 6 headless).
const WORKER_REPAINT: Duration = Duration::from_millis(50);

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
            sweep_open: false,
            queue: VecDeque::new(),
            run_on_start: options.run_on_start,
            stress_points: options.stress_points,
            preset_path_text: String::new(),
            png_target: None,
            frame_ms: VecDeque::new(),
            rss: (Instant::now() - Duration::from_secs(10), None),
        };
        app.fill_stress();
        app.refresh_runs();
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

    fn send(&mut self, command: Command) {
        if let Some(w) = &self.worker
            && w.commands.send(command).is_err()
        {
            self.error = Some("the worker thread has stopped; restart the window".into());
        }
    }

    /// Start a run of `config` (the edited experiment unless a sweep gives one).
    pub fn start(&mut self, ctx: &egui::Context, config: ExperimentConfig) {
        if self.worker.is_none() {
            let ctx = ctx.clone();
            self.worker = Some(run::spawn(Box::new(move || {
                ctx.request_repaint_after(WORKER_REPAINT)
            })));
        }
        self.series.clear();
        self.samples.clear();
        self.fill_stress();
        self.markers.clear();
        self.run = RunView {
            active: true,
            metric: Some(Metric::of(config.task)),
            ..RunView::default()
        };
        self.live = config.sophon.as_ref().map(|s| LiveKnobs {
            alpha: s.alpha,
            beta: s.beta,
            fts: s.fts_loops,
            ntr: s.ntr_loops,
            eval_every: s.eval_every,
        });
        self.live_sent = self.live;
        self.error = None;
        self.notice = None;
        let request = RunRequest {
            config,
            backend: self.settings.backend,
            out: OutDir::In(self.runs_dir.clone()),
            resume: false,
        };
        self.send(Command::Start(Box::new(request)));
    }

    /// The live knobs of the running SOPHON phase (what the *Live knobs* fields edit).
    pub fn live_mut(&mut self) -> Option<&mut LiveKnobs> {
        self.live.as_mut().filter(|_| self.run.active)
    }

    pub fn pause(&mut self) {
        self.send(Command::Pause);
    }

    pub fn resume(&mut self) {
        self.send(Command::Resume);
    }

    pub fn step(&mut self) {
        self.send(Command::Step);
    }

    pub fn stop(&mut self) {
        self.queue.clear();
        self.send(Command::Stop);
    }

    /// Send the live knobs that changed since they were last sent.
    fn apply_live(&mut self) {
        let (Some(now), Some(sent)) = (self.live, self.live_sent) else {
            return;
        };
        let mut updates = Vec::new();
        if now.alpha != sent.alpha {
            updates.push(LiveUpdate::Alpha(now.alpha));
        }
        if now.beta != sent.beta {
            updates.push(LiveUpdate::Beta(now.beta));
        }
        if (now.fts, now.ntr) != (sent.fts, sent.ntr) {
            updates.push(LiveUpdate::Loops {
                fts: now.fts,
                ntr: now.ntr,
            });
        }
        if now.eval_every != sent.eval_every {
            updates.push(LiveUpdate::EvalEvery(now.eval_every.max(1)));
        }
        for u in updates {
            self.send(Command::Update(u));
        }
        self.live_sent = Some(now);
    }

    /// Handle worker events until the queue is empty or the frame's budget is spent.
    pub fn drain_events(&mut self, ctx: &egui::Context) {
        let Some(events) = self.worker.as_ref().map(|w| w.events.clone()) else {
            return;
        };
        let deadline = Instant::now() + DRAIN_BUDGET;
        while Instant::now() < deadline {
            match events.try_recv() {
                Ok(e) => self.on_event(ctx, e),
                Err(_) => return,
            }
        }
        ctx.request_repaint(); // more waiting: the next frame goes on
    }

    fn on_event(&mut self, ctx: &egui::Context, event: Event) {
        match event {
            Event::Started {
                dir,
                backend,
                adapter,
                software_adapter,
                reason,
            } => {
                self.push_log(format!(
                    "run folder {} on {backend} ({reason})",
                    dir.display()
                ));
                self.run.dir = Some(dir);
                self.run.backend = backend;
                self.run.adapter = adapter;
                self.run.software_adapter = software_adapter;
            }
            Event::Phase { name, total_steps } => {
                self.run.phase = Some(name);
                self.run.total_steps = total_steps;
                self.run.step = 0;
                self.run.timed_from = None;
                self.run.rate = None;
            }
            Event::Progress { step } => self.run.progress(step),
            Event::Metric(p) => {
                self.series.push(&p.series, p.step as f64, p.value);
                self.marker_for(&p.series, p.step as f64, p.value);
            }
            Event::Samples(grid) => self.samples.push(ctx, *grid),
            Event::Log(line) => self.push_log(line),
            Event::Paused => self.run.paused = true,
            Event::Resumed => self.run.paused = false,
            Event::Diverged(d) => {
                // A mark on the curves where it happened (SOPHON's and the attacks' steps are
                // outer iterations and epochs; the mark says which phase).
                self.markers.push(Marker {
                    step: d.step as f64,
                    label: format!("diverged: {} {} is {}", d.phase, d.quantity, d.value),
                });
                self.run.divergences.push(d);
            }
            Event::Finished(summary) => {
                let how = summary.status.name();
                self.ended(ctx, how, Some(*summary))
            }
            Event::Stopped(summary) => self.ended(ctx, "stopped", Some(*summary)),
            Event::Failed(message) => {
                self.push_log(format!("failed: {message}"));
                self.error = Some(message);
                self.ended(ctx, "failed", None);
            }
        }
    }

    /// A settings series that changes value mid-run becomes a marker on the curves.
    fn marker_for(&mut self, series: &str, step: f64, value: f64) {
        let label = match series {
            "sophon/alpha" => "α",
            "sophon/beta" => "β",
            "sophon/fts_loops" => "ℓ_FTS",
            "sophon/ntr_loops" => "ℓ_NTR",
            "sophon/eval_every" => "evaluate every",
            _ => return,
        };
        let points = self.series.get(series).unwrap_or_default();
        if points.len() >= 2 {
            let previous = points[points.len() - 2][1];
            if previous != value {
                self.markers.push(Marker {
                    step,
                    label: format!("{label} {previous} -> {value}"),
                });
            }
        }
    }

    /// Stop the running experiment and wait (at most `limit`) for the worker to write its
    /// checkpoint and summary: closing the window during a run loses nothing.
    pub fn stop_and_wait(&mut self, limit: Duration) -> bool {
        let Some(worker) = &self.worker else {
            return true;
        };
        if worker.commands.send(Command::Stop).is_err() {
            return true;
        }
        let deadline = Instant::now() + limit;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match worker.events.recv_timeout(left) {
                Ok(e) if e.is_terminal() => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        false
    }

    fn ended(&mut self, ctx: &egui::Context, how: &str, summary: Option<Summary>) {
        self.run.active = false;
        self.run.paused = false;
        self.run.ended = Some(how.into());
        if let Some(it) = summary
            .as_ref()
            .and_then(|s| s.sophon.as_ref())
            .and_then(|s| s.selected_iteration)
        {
            self.markers.push(Marker {
                step: it as f64,
                label: format!("model kept: iteration {it}"),
            });
        }
        self.run.summary = summary;
        self.push_log(format!("run {how}"));
        self.refresh_runs();
        if how != "failed"
            && let Some(next) = self.queue.pop_front()
        {
            self.push_log(format!(
                "sweep: starting {} ({} more queued)",
                next.name,
                self.queue.len()
            ));
            self.start(ctx, next);
        } else if how == "failed" {
            self.queue.clear();
        }
    }

    fn push_log(&mut self, line: String) {
        if self.log.len() == LOG_LINES {
            self.log.pop_front();
        }
        self.log.push_back(line);
    }

    /// `--stress-points N`: N synthetic points of history (at negative outer iterations, before
    /// the run's own) in the SOPHON plots, to measure frame time under load.
    fn fill_stress(&mut self) {
        let n = self.stress_points;
        for i in 0..n {
            let x = i as f64 - n as f64;
            self.series.push(
                "sophon/fts_loss",
                x,
                1.0 + (x * 0.001).sin() + 0.2 * ((i * 7919 % 101) as f64 / 101.0),
            );
            self.series
                .push("sophon/ntr_loss", x, 0.5 + 0.3 * (x * 0.0003).cos());
            if i % 10 == 0 {
                self.series
                    .push("sophon/original_acc", x, 0.8 + 0.05 * (x * 0.0001).sin());
                self.series.push(
                    "sophon/probe_restricted_acc",
                    x,
                    0.2 + 0.1 * (x * 0.0002).cos(),
                );
            }
        }
    }

    // ----- helper threads -----

    fn spawn<F: FnOnce() -> Reply + Send + 'static>(&self, ctx: &egui::Context, job: F) {
        let tx = self.replies.0.clone();
        let ctx = ctx.clone();
        std::thread::spawn(move || {
            let _ = tx.send(job());
            ctx.request_repaint();
        });
    }

    fn dialog<F: FnOnce(Option<PathBuf>) -> Reply + Send + 'static>(
        &mut self,
        ctx: &egui::Context,
        dialog: rfd::AsyncFileDialog,
        save: bool,
        folder: bool,
        reply: F,
    ) {
        if self.busy_dialog {
            return;
        }
        self.busy_dialog = true;
        self.spawn(ctx, move || {
            let picked = futures_lite::future::block_on(async move {
                if save {
                    dialog.save_file().await
                } else if folder {
                    dialog.pick_folder().await
                } else {
                    dialog.pick_file().await
                }
            });
            reply(picked.map(|h| h.path().to_path_buf()))
        });
    }

    /// Write `bytes` to `path` atomically on a helper thread; the outcome comes back as a
    /// notice or an error naming the file.
    fn write_file(&self, ctx: &egui::Context, path: PathBuf, bytes: Vec<u8>, verb: &'static str) {
        self.spawn(ctx, move || {
            match run::folder::write_atomic(&path, &bytes) {
                Ok(()) => Reply::Done(format!("{verb} {}", path.display())),
                Err(e) => Reply::Error(format!("{}: cannot write: {e}", path.display())),
            }
        });
    }

    fn refresh_runs(&mut self) {
        let base = self.runs_dir.clone();
        let (tx, _) = &self.replies;
        let tx = tx.clone();
        std::thread::spawn(move || {
            let _ = tx.send(Reply::Runs(runs::scan(&base)));
        });
    }

    fn handle_replies(&mut self, ctx: &egui::Context) {
        while let Ok(reply) = self.replies.1.try_recv() {
            match reply {
                Reply::Picked(target, path) => {
                    self.busy_dialog = false;
                    if let Some(p) = path {
                        setup::apply_pick(&mut self.config, &target, p);
                    }
                }
                Reply::OpenedPreset(opened) => {
                    self.busy_dialog = false;
                    match opened {
                        Some((path, Ok(config))) => {
                            // Opened: the path field empties (on an error it keeps the text to fix).
                            self.preset_path_text.clear();
                            self.config = *config;
                            self.origin = path.display().to_string();
                            self.settings.preset_path = Some(path);
                            self.error = None;
                        }
                        Some((_, Err(e))) => self.error = Some(e),
                        None => {}
                    }
                }
                Reply::SavePresetTo(path) => {
                    self.busy_dialog = false;
                    if let Some(p) = path {
                        let text = self.config.to_toml();
                        let target = p.clone();
                        self.settings.preset_path = Some(p.clone());
                        self.origin = p.display().to_string();
                        self.write_file(ctx, target, text.into_bytes(), "saved");
                    }
                }
                Reply::ExportCsvTo(path) => {
                    self.busy_dialog = false;
                    if let Some(p) = path {
                        let csv = self.series.to_csv();
                        self.write_file(ctx, p, csv.into_bytes(), "exported");
                    }
                }
                Reply::ExportPngTo(path) => {
                    self.busy_dialog = false;
                    if let Some(p) = path {
                        self.png_target = Some(p);
                        let tx = self.replies.0.clone();
                        let repaint = ctx.clone();
                        ctx.request_screenshot(move |image| {
                            let _ = tx.send(Reply::Screenshot(image));
                            repaint.request_repaint();
                        });
                    }
                }
                Reply::Screenshot(image) => {
                    if let Some(p) = self.png_target.take() {
                        self.spawn(ctx, move || match save_png(&p, &image) {
                            Ok(()) => Reply::Done(format!("exported {}", p.display())),
                            Err(e) => Reply::Error(e),
                        });
                    }
                }
                Reply::Preview(side, source, result) => {
                    if let Some(p) = &mut self.previews[side as usize]
                        && p.source == source
                    {
                        p.state = PreviewState::arrived(ctx, side, result);
                    }
                }
                Reply::Runs(mut list) => {
                    // Keep overlays and loaded curves across refreshes.
                    for r in &mut list {
                        if let Some(old) = self.runs.iter_mut().find(|o| o.dir == r.dir) {
                            r.overlay = old.overlay;
                            r.series = old.series.take();
                        }
                    }
                    let extra: Vec<RunEntry> = self
                        .runs
                        .drain(..)
                        .filter(|o| {
                            !list.iter().any(|r| r.dir == o.dir)
                                && !o.dir.starts_with(&self.runs_dir)
                        })
                        .collect();
                    list.extend(extra);
                    self.runs = list;
                }
                Reply::RunOpened(Ok(entry)) => {
                    self.busy_dialog = false;
                    if !self.runs.iter().any(|r| r.dir == entry.dir) {
                        self.runs.push(*entry);
                    }
                }
                Reply::RunOpened(Err(e)) | Reply::Error(e) => {
                    self.busy_dialog = false;
                    self.error = Some(e);
                }
                Reply::RunSeries(dir, result) => match result {
                    Ok(store) => {
                        if let Some(r) = self.runs.iter_mut().find(|r| r.dir == dir) {
                            r.series = Some(store);
                        }
                    }
                    Err(e) => self.error = Some(e),
                },
                Reply::Cancelled => self.busy_dialog = false,
                Reply::Done(msg) => {
                    self.push_log(msg.clone());
                    self.notice = Some(msg);
                }
            }
        }
    }

    /// Read a preset on a helper thread; it replaces the experiment when it is valid.
    fn open_preset(&mut self, ctx: &egui::Context, path: PathBuf) {
        self.spawn(ctx, move || Reply::OpenedPreset(Some(read_preset(path))));
    }

    /// Start loading thumbnails of a data source when it changed.
    fn ensure_preview(&mut self, ctx: &egui::Context, side: Side) {
        let source = match side {
            Side::Original => self.config.original.clone(),
            Side::Restricted => self.config.restricted.clone(),
        };
        if self.previews[side as usize]
            .as_ref()
            .is_some_and(|p| p.source == source)
        {
            return;
        }
        let field = side.field();
        let invalid = self
            .validation()
            .filter(|e| e.field.starts_with(field))
            .map(|e| e.message);
        self.previews[side as usize] = Some(Preview {
            source: source.clone(),
            state: match &invalid {
                Some(m) => PreviewState::Failed(m.clone()),
                None => PreviewState::Loading,
            },
        });
        if invalid.is_some() {
            return;
        }
        let input = self.config.input.clone();
        let seed = self.config.seed;
        self.spawn(ctx, move || {
            let result = load_preview(&source, &input, seed);
            Reply::Preview(side, source, result)
        });
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

fn read_preset(path: PathBuf) -> (PathBuf, Result<Box<ExperimentConfig>, String>) {
    let result = ExperimentConfig::load(&path, &[])
        .map(Box::new)
        .map_err(|e| e.to_string());
    (path, result)
}

fn remembered_origin(settings: &Settings) -> String {
    settings.preset_path.as_ref().map_or_else(
        || "remembered".into(),
        |p| format!("{} (remembered)", p.display()),
    )
}

fn save_png(path: &Path, image: &egui::ColorImage) -> Result<(), String> {
    let [w, h] = image.size;
    let bytes: Vec<u8> = image.pixels.iter().flat_map(|c| c.to_array()).collect();
    let img = image::RgbaImage::from_raw(w as u32, h as u32, bytes)
        .ok_or_else(|| format!("{}: screenshot has the wrong size", path.display()))?;
    let mut buf = std::io::Cursor::new(Vec::new());
    img.write_to(&mut buf, image::ImageFormat::Png)
        .map_err(|e| format!("{}: cannot encode PNG: {e}", path.display()))?;
    run::folder::write_atomic(path, buf.get_ref())
        .map_err(|e| format!("{}: cannot write: {e}", path.display()))
}

/// The eframe side: persistence and frame timing around [`Workbench::show`].
pub struct WorkbenchApp {
    pub bench: Workbench,
    report_frames: bool,
    last_report: Instant,
}

impl eframe::App for WorkbenchApp {
    fn ui(&mut self, ui: &mut Ui, frame: &mut eframe::Frame) {
        if let Some(cpu) = frame.info().cpu_usage {
            let ms = &mut self.bench.frame_ms;
            if ms.len() == 600 {
                ms.pop_front();
            }
            ms.push_back(cpu * 1000.0);
        }
        self.bench.show(ui);
        if self.report_frames && self.last_report.elapsed() > Duration::from_secs(5) {
            self.last_report = Instant::now();
            self.report();
        }
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        self.bench.settings.preset_toml = self.bench.config.to_toml();
        eframe::set_value(storage, eframe::APP_KEY, &self.bench.settings);
    }

    fn on_exit(&mut self) {
        if self.report_frames {
            self.report();
        }
        if self.bench.run.active && !self.bench.stop_and_wait(Duration::from_secs(60)) {
            eprintln!("the run did not stop within a minute; its last checkpoint stays valid");
        }
    }
}

impl WorkbenchApp {
    fn report(&self) {
        if let Some((p50, p95, max)) = self.bench.frame_stats() {
            eprintln!(
                "frame CPU time over the last {} frames with {} points ({}): median {p50:.2} ms, p95 {p95:.2} ms, max {max:.2} ms",
                self.bench.frame_ms.len(),
                self.bench.series.len(),
                if self.bench.run.active {
                    "training"
                } else {
                    "idle"
                },
            );
        }
    }
}

/// Open the window; returns when it is closed.
pub fn run_window(options: AppOptions) -> Result<(), String> {
    let native = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_inner_size([1400.0, 860.0])
            .with_title("SOPHON Workbench"),
        ..Default::default()
    };
    eframe::run_native(
        "sophon-workbench",
        native,
        Box::new(move |cc| {
            let settings = cc
                .storage
                .and_then(|s| eframe::get_value::<Settings>(s, eframe::APP_KEY));
            let report_frames = options.stress_points > 0;
            Ok(Box::new(WorkbenchApp {
                bench: Workbench::from_options(settings, &options),
                report_frames,
                last_report: Instant::now(),
            }))
        }),
    )
    .map_err(|e| {
        format!(
            "cannot open the window: {e} (headless machines: use `sophon-workbench run <preset>`)"
        )
    })
}

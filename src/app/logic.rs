//! The window's logic, apart from drawing: once a frame, the helper threads' answers and the
//! worker's events are drained (with a time budget) and a worker that disconnected or panicked
//! is noticed and shown; the panels' [`AppCommand`]s are applied in one place.

use std::time::{Duration, Instant};

use crossbeam_channel::TryRecvError;

use super::command::{AppCommand, Export};
use super::jobs::{Reply, read_preset};
use super::plots::Marker;
use super::runs::{self, RunsAction};
use super::setup::{SetupAction, Side};
use super::{DRAIN_BUDGET, LOG_LINES, LiveKnobs, PRESENTER_ZOOM, RunView, Workbench, builtin};
use crate::config::{ExperimentConfig, Metric};
use crate::run::{self, Command, Event, OutDir, RunRequest};
use crate::sophon::LiveUpdate;
use crate::sophon::series as names;
use crate::sophon::summary::{RunStatus, Summary};

impl Workbench {
    /// Everything a frame does before it draws: answers from helper threads, the worker's
    /// events (a dead worker included), a `--run-on-start` start, the data previews.
    pub fn logic(&mut self, ctx: &egui::Context) {
        self.handle_replies(ctx);
        self.drain_events(ctx);
        if self.present_on_start {
            self.present_on_start = false;
            self.set_presenter(ctx, true);
        }
        if self.run_on_start {
            self.run_on_start = false;
            if self.start_blocked().is_none() {
                let config = self.config.clone();
                self.start(ctx, config);
            }
        }
        if let Some(w) = &self.watch {
            if !w.reading && w.last.elapsed() >= runs::WATCH_EVERY {
                self.refresh_runs();
            }
            ctx.request_repaint_after(runs::WATCH_EVERY);
        }
        self.ensure_preview(ctx, Side::Original);
        self.ensure_preview(ctx, Side::Restricted);
        if self.run.active {
            // Keep the status (memory, rate) moving while training.
            ctx.request_repaint_after(self.pace.status);
        }
    }

    /// Carry out what a panel asked for.
    pub fn apply(&mut self, ctx: &egui::Context, command: AppCommand) {
        match command {
            AppCommand::Start(config) => self.start(ctx, *config),
            AppCommand::Pause => self.pause(),
            AppCommand::Resume => self.resume(),
            AppCommand::Step => self.step(),
            AppCommand::Presenter(on) => self.set_presenter(ctx, on),
            AppCommand::Stop => self.stop(),
            AppCommand::ApplyLive => self.apply_live(),
            AppCommand::OpenPresetDialog => {
                let d = rfd::AsyncFileDialog::new().add_filter("preset", &["toml"]);
                self.dialog(ctx, d, false, false, |p| {
                    Reply::OpenedPreset(p.map(read_preset))
                });
            }
            AppCommand::OpenPreset(path) => self.open_preset(ctx, path),
            AppCommand::SavePresetDialog => {
                let d = rfd::AsyncFileDialog::new()
                    .add_filter("preset", &["toml"])
                    .set_file_name(format!("{}.toml", self.config.name));
                self.dialog(ctx, d, true, false, Reply::SavePresetTo);
            }
            AppCommand::Builtin(text, name) => (self.config, self.origin) = builtin(text, name),
            AppCommand::Export(what) => {
                let (ext, file, reply): (&str, &str, fn(_) -> Reply) = match what {
                    Export::MetricsCsv => ("csv", "metrics.csv", Reply::ExportCsvTo),
                    Export::WindowPng => ("png", "curves.png", Reply::ExportPngTo),
                    Export::ReportPng => {
                        if self.run.active || self.run.summary.is_none() {
                            self.error = Some(
                                "Export report: no finished run yet; start one and let it end (or `sophon-workbench report <run folder>`)".into(),
                            );
                            return;
                        }
                        ("png", "report.png", Reply::ExportReportTo)
                    }
                };
                let d = rfd::AsyncFileDialog::new()
                    .add_filter(ext.to_uppercase(), &[ext])
                    .set_file_name(file);
                self.dialog(ctx, d, true, false, reply);
            }
            AppCommand::Setup(SetupAction::Pick(target)) => {
                let d = rfd::AsyncFileDialog::new();
                let folder = target.folder;
                self.dialog(ctx, d, false, folder, move |p| Reply::Picked(target, p));
            }
            AppCommand::Runs(action) => self.runs_action(ctx, action),
            AppCommand::QueueSweep(configs, axes) => {
                // The sweep folder is written on a helper thread; its points queue when it is.
                let base = self.config.clone();
                let runs_dir = self.runs_dir.clone();
                self.spawn(ctx, move || {
                    let folder =
                        run::sweep_folder::SweepFolder::create(&runs_dir, &base, &axes, &configs)
                            .map_err(|e| e.to_string());
                    Reply::SweepFolder(folder.map(|f| (f, configs)))
                });
            }
        }
    }

    pub(super) fn runs_action(&mut self, ctx: &egui::Context, action: RunsAction) {
        match action {
            RunsAction::Refresh => self.refresh_runs(),
            RunsAction::OpenFolder => {
                if !self.busy_dialog {
                    self.busy_dialog = true;
                    let d = rfd::AsyncFileDialog::new();
                    self.spawn(ctx, move || {
                        match futures_lite::future::block_on(d.pick_folder()) {
                            Some(h) => Reply::RunOpened(runs::read_run(h.path()).map(Box::new)),
                            None => Reply::Cancelled,
                        }
                    });
                }
            }
            RunsAction::LoadSeries(i) => {
                let dir = self.runs[i].dir.clone();
                self.spawn(ctx, move || {
                    let result = runs::load_series(&dir);
                    Reply::RunSeries(dir, result)
                });
            }
            RunsAction::Sweep => self.sweep_open = true,
            RunsAction::OpenSweep => {
                let d = rfd::AsyncFileDialog::new().set_directory(&self.runs_dir);
                self.dialog(ctx, d, false, true, Reply::WatchPicked);
            }
            RunsAction::StopWatching => self.stop_watching(),
        }
    }

    /// The worker's channel closed: its thread is gone (a panic; it never ends on its own while
    /// the window lives). Say so, with the panic's message, end the run as failed, and let the
    /// next Start begin a fresh worker.
    fn worker_gone(&mut self, ctx: &egui::Context) {
        let Some(worker) = self.worker.take() else {
            return;
        };
        let why = match worker.thread.join() {
            Err(payload) => payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".into()),
            Ok(()) => "it ended".into(),
        };
        let message = format!(
            "the worker thread stopped unexpectedly ({why}); what the run wrote stays in its run folder, and Start begins a new worker"
        );
        self.push_log(message.clone());
        if self.run.active {
            self.ended(ctx, RunStatus::Failed, None);
        }
        self.error = Some(message);
    }

    /// Attach a worker (a test's stand-in; the window starts its own on the first Start).
    #[doc(hidden)]
    pub fn attach_worker(&mut self, worker: run::WorkerHandle) {
        self.worker = Some(worker);
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
        let out = OutDir::In(self.runs_dir.clone());
        self.start_in(ctx, config, out);
    }

    /// Start a run of `config` writing its run folder as `out` says (a sweep's point: its
    /// folder in the sweep folder).
    pub(super) fn start_in(&mut self, ctx: &egui::Context, config: ExperimentConfig, out: OutDir) {
        if self.worker.is_none() {
            let ctx = ctx.clone();
            let after = self.pace.events;
            self.worker = Some(run::spawn(Box::new(move || {
                ctx.request_repaint_after(after)
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
            out,
            resume: false,
        };
        self.send(Command::Start(Box::new(request)));
        if self.presenter() {
            self.send(Command::StopAtPhases(true));
        }
    }

    /// Presenter mode on or off (View → Presenter, `--present`): larger type, the setup panel
    /// folded away, the Explain panel narrating, and a running experiment waiting for *Next* at
    /// each phase boundary from now on.
    pub fn set_presenter(&mut self, ctx: &egui::Context, on: bool) {
        self.settings.plots.presenter = on;
        if on {
            self.settings.show_explain = true;
        }
        ctx.set_zoom_factor(if on { PRESENTER_ZOOM } else { 1.0 });
        if self.run.active {
            self.send(Command::StopAtPhases(on));
        }
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
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Disconnected) => {
                    self.worker_gone(ctx);
                    return;
                }
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
            Event::Phase { phase, total_steps } => {
                self.run.phase = Some(phase);
                self.run.total_steps = total_steps;
                self.run.step = 0;
                self.run.timed_from = None;
                self.run.rate = None;
            }
            Event::Progress { step, at } => self.run.progress(step, at),
            Event::Metric(p) => {
                self.series.push(&p.series, p.step as f64, p.value);
                self.marker_for(&p.series, p.step as f64, p.value);
            }
            Event::Samples(grid) => self.samples.push(ctx, *grid),
            Event::Log(line) => self.push_log(line),
            Event::WaitingAt(phase) => self.run.waiting = Some(phase),
            Event::Paused => self.run.paused = true,
            Event::Resumed => {
                self.run.paused = false;
                self.run.waiting = None;
            }
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
                let how = summary.status;
                self.ended(ctx, how, Some(*summary))
            }
            Event::Stopped(summary) => self.ended(ctx, RunStatus::Stopped, Some(*summary)),
            Event::Failed(failure) => {
                let message = failure.to_string();
                self.push_log(format!("failed: {message}"));
                self.error = Some(message);
                self.ended(ctx, RunStatus::Failed, None);
            }
        }
    }

    /// A settings series that changes value mid-run becomes a marker on the curves.
    fn marker_for(&mut self, series: &str, step: f64, value: f64) {
        let Some(&(_, label)) = names::SETTINGS.iter().find(|(name, _)| *name == series) else {
            return;
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

    fn ended(&mut self, ctx: &egui::Context, how: RunStatus, summary: Option<Summary>) {
        self.run.active = false;
        self.run.paused = false;
        self.run.ended = Some(how);
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
        if how != RunStatus::Failed
            && let Some(next) = self.queue.pop_front()
        {
            self.push_log(format!(
                "sweep: starting {} ({} more queued)",
                next.0.name,
                self.queue.len()
            ));
            self.start_in(ctx, next.0, OutDir::Exact(next.1));
        } else if how == RunStatus::Failed {
            self.queue.clear();
        }
    }

    pub(super) fn push_log(&mut self, line: String) {
        if self.log.len() == LOG_LINES {
            self.log.pop_front();
        }
        self.log.push_back(line);
    }
}

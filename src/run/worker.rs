//! The worker thread. It waits for `Start`, runs the experiment, and between every training
//! step drains the command channel: `Pause` blocks until `Resume`/`Step`/`Stop`, `Stop` ends the
//! run cleanly (the summary is written with status `stopped`).

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, TryRecvError, unbounded};

use super::backend::{self, Backend, BackendChoice, NoAdapter};
use super::folder::{Environment, EventLine, MetricPoint, RunFolder, Verified, verify_checkpoint};
use crate::config::ExperimentConfig;
use crate::sophon::experiment::{self, EngineError};
use crate::sophon::protect::Checkpoint;
use crate::sophon::summary::{RunStatus, Summary};
use crate::sophon::task::{SampleGrid, SaveModel};
use crate::sophon::{
    Devices, Divergence, Interrupted, LiveUpdate, Monitor, Phase, ResumeFrom, StoreError,
};

/// Where the run folder goes.
#[derive(Debug, Clone, PartialEq)]
pub enum OutDir {
    /// A new timestamped folder inside this one.
    In(PathBuf),
    /// Exactly this folder (must not already hold a run).
    Exact(PathBuf),
}

/// Everything needed to start a run.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub config: ExperimentConfig,
    pub backend: BackendChoice,
    pub out: OutDir,
    /// Continue the run in `out` (an `OutDir::Exact` run folder) from its last checkpoint.
    pub resume: bool,
}

/// Messages to the worker.
#[derive(Debug, Clone)]
pub enum Command {
    Start(Box<RunRequest>),
    Pause,
    Resume,
    /// While paused: run one step (in SOPHON, one outer iteration), then pause again.
    Step,
    Stop,
    /// Change a setting live; it applies from the next outer iteration.
    Update(LiveUpdate),
    /// Presenter mode: when on, the run waits at each phase boundary (before SOPHON and before
    /// the attack) until `Resume` (the window's *Next*), as if paused there.
    StopAtPhases(bool),
}

/// Messages from the worker.
#[derive(Debug, Clone)]
pub enum Event {
    Started {
        dir: PathBuf,
        backend: String,
        adapter: String,
        software_adapter: bool,
        reason: String,
    },
    Phase {
        phase: Phase,
        total_steps: usize,
    },
    Progress {
        step: usize,
        /// When the worker reached the step. The window may handle the event later (it redraws
        /// once a second on a software rasteriser), so rates are measured on this.
        at: Instant,
    },
    Metric(MetricPoint),
    /// A denoiser's sample grid (written to the run folder as `file`).
    Samples(Box<SamplesEvent>),
    Log(String),
    /// Something turned NaN or infinite (also a line in `metrics.jsonl`).
    Diverged(Divergence),
    /// The run waits at the start of this phase (presenter mode's phase stop); `Paused`
    /// follows, and `Resume` goes on.
    WaitingAt(Phase),
    Paused,
    Resumed,
    /// The run ended on its own: `status` is `finished`, or `diverged` (the summary's
    /// `divergences` say where).
    Finished(Box<Summary>),
    Stopped(Box<Summary>),
    /// The run ended without a result (shared, so that events stay cheap to clone).
    Failed(Arc<RunFailure>),
}

/// Why a run ended without a result. Each message names the file, the folder or the setting at
/// fault; nothing already written is lost.
#[derive(Debug, thiserror::Error)]
pub enum RunFailure {
    /// The backend asked for cannot run here.
    #[error(transparent)]
    Backend(#[from] NoAdapter),
    /// The run folder could not be made, or already holds a run (the message names it).
    #[error("{0}")]
    Folder(io::Error),
    /// The run to resume has a `summary.json` that cannot be read.
    #[error("cannot resume: {0}")]
    ResumeSummary(io::Error),
    /// The run to resume cannot be reopened.
    #[error("cannot resume {}: {source}", dir.display())]
    Reopen { dir: PathBuf, source: io::Error },
    /// A resume was asked for a folder to create runs in, not a run folder.
    #[error("resuming needs the run folder itself")]
    ResumeNeedsRunFolder,
    /// A model to load could not be read, or does not match its recorded checksum.
    #[error(transparent)]
    Checkpoint(StoreError),
    /// A file of the run folder could not be written (`what` names it).
    #[error("{}: cannot {what}: {source}", dir.display())]
    Write {
        dir: PathBuf,
        what: &'static str,
        source: io::Error,
    },
    /// A sample grid could not be written.
    #[error(transparent)]
    Samples(StoreError),
    /// The experiment stopped on an error: bad data, a model file (the message names it).
    #[error(transparent)]
    Engine(EngineError),
}

impl From<RunFailure> for Event {
    fn from(failure: RunFailure) -> Self {
        Event::Failed(Arc::new(failure))
    }
}

/// One sample grid: clean | noised to step `t` | denoised, one row per test image.
#[derive(Debug, Clone)]
pub struct SamplesEvent {
    /// `pretrain`, `sophon`, `protected` or `attack-<strategy>-<start>`.
    pub phase: String,
    /// `original` or `restricted`.
    pub domain: String,
    /// The phase's step (epoch or outer iteration).
    pub step: usize,
    pub t: usize,
    pub psnr: f64,
    pub image: image::RgbImage,
    pub file: PathBuf,
}

impl Event {
    /// True for the last event of a run.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Event::Finished(_) | Event::Stopped(_) | Event::Failed(_)
        )
    }
}

/// The GUI's or CLI's end of a worker.
pub struct WorkerHandle {
    pub commands: Sender<Command>,
    pub events: Receiver<Event>,
    pub thread: JoinHandle<()>,
}

/// Start a worker thread. `notify` is called after each event is sent (the window asks for a
/// repaint there); it must not block.
pub fn spawn(notify: Box<dyn Fn() + Send>) -> WorkerHandle {
    let (cmd_tx, cmd_rx) = unbounded();
    let (ev_tx, ev_rx) = unbounded();
    let thread = std::thread::Builder::new()
        .name("sophon-worker".into())
        .spawn(move || worker_loop(cmd_rx, ev_tx, notify))
        .expect("the OS can start a thread");
    WorkerHandle {
        commands: cmd_tx,
        events: ev_rx,
        thread,
    }
}

fn worker_loop(commands: Receiver<Command>, events: Sender<Event>, notify: Box<dyn Fn() + Send>) {
    let emit = |e: Event| {
        let _ = events.send(e);
        notify();
    };
    while let Ok(cmd) = commands.recv() {
        if let Command::Start(request) = cmd {
            let last = execute(*request, &commands, &emit);
            emit(last);
        }
        // Pause/Resume/Step/Stop while idle mean nothing.
    }
}

/// Run one request to its end and return its terminal event.
fn execute(request: RunRequest, commands: &Receiver<Command>, emit: &dyn Fn(Event)) -> Event {
    run_request(request, commands, emit).unwrap_or_else(Event::from)
}

/// [`execute`], with a failure as an error.
fn run_request(
    request: RunRequest,
    commands: &Receiver<Command>,
    emit: &dyn Fn(Event),
) -> Result<Event, RunFailure> {
    let backend = backend::select(request.backend)?;
    let mut summary = Summary::default();
    let folder = match (&request.out, request.resume) {
        (OutDir::Exact(dir), true) => {
            match super::folder::read_summary(dir) {
                Ok(previous) => summary = previous,
                // Killed before its first summary: nothing to keep.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(RunFailure::ResumeSummary(e)),
            }
            RunFolder::reopen(dir).map_err(|source| RunFailure::Reopen {
                dir: dir.clone(),
                source,
            })?
        }
        (OutDir::In(_), true) => return Err(RunFailure::ResumeNeedsRunFolder),
        (OutDir::In(base), false) => {
            RunFolder::create_in(base, &request.config.name).map_err(RunFailure::Folder)?
        }
        (OutDir::Exact(dir), false) => RunFolder::create_at(dir).map_err(RunFailure::Folder)?,
    };
    // Models loaded from a run folder are checked against the checksums recorded there.
    let loads = [
        request.config.pretrain.load.as_ref(),
        request.config.sophon.as_ref().and_then(|s| s.load.as_ref()),
    ];
    for path in loads.into_iter().flatten() {
        match verify_checkpoint(path).map_err(RunFailure::Checkpoint)? {
            Verified::Matches => {}
            Verified::Unrecorded => emit(Event::Log(format!(
                "{}: no checksum recorded for it; loaded unverified",
                path.display()
            ))),
        }
    }
    folder
        .write_config(&request.config)
        .and_then(|()| folder.write_environment(&environment(&backend)))
        .map_err(|source| RunFailure::Write {
            dir: folder.dir.clone(),
            what: "write",
            source,
        })?;
    emit(Event::Started {
        dir: folder.dir.clone(),
        backend: backend.name.into(),
        adapter: backend.adapter_label(),
        software_adapter: backend.is_software_adapter(),
        reason: backend.reason.clone(),
    });
    if backend.adapter.is_none() {
        emit(Event::Log(super::folder::kernels_line()));
    }

    let devices = Devices::new(backend.device.clone());
    let mut monitor = ChannelMonitor {
        commands,
        emit,
        folder,
        paused: false,
        write_error: None,
        updates: Vec::new(),
        resume: request.resume,
        stop_at_phases: false,
        stopping: false,
    };
    let result = experiment::run(&request.config, &devices, &mut monitor, &mut summary);
    let folder = monitor.folder;
    let terminal = match result {
        // (`experiment::run` set the status: finished, or diverged.)
        Ok(()) | Err(EngineError::Diverged(_)) => Event::Finished(Box::new(summary.clone())),
        Err(EngineError::Interrupted(_)) => {
            summary.status = RunStatus::Stopped;
            Event::Stopped(Box::new(summary.clone()))
        }
        Err(e) => {
            summary.status = RunStatus::Failed;
            summary.error = Some(e.to_string());
            let _ = folder.write_summary(&summary);
            return Err(RunFailure::Engine(e));
        }
    };
    if let Some(e) = monitor.write_error {
        return Err(e);
    }
    folder
        .write_summary(&summary)
        .map_err(|source| RunFailure::Write {
            dir: folder.dir.clone(),
            what: "write summary.json",
            source,
        })?;
    Ok(terminal)
}

fn environment(backend: &Backend) -> Environment {
    Environment {
        crate_version: env!("CARGO_PKG_VERSION").into(),
        backend: backend.name.into(),
        adapter: backend.adapter.as_ref().map(|a| a.name.clone()),
        adapter_type: backend.adapter.as_ref().map(|a| a.device_type.clone()),
        software_adapter: backend.is_software_adapter(),
        backend_reason: backend.reason.clone(),
        os: std::env::consts::OS.into(),
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu: super::folder::Cpu::detect(),
        wgpu_fused_blocks: backend.is_wgpu().then(crate::model::conv::wgpu_fused),
    }
}

/// The engine's [`Monitor`] on the worker thread: metrics go to the run folder and the event
/// channel; commands are polled at every step.
struct ChannelMonitor<'a> {
    commands: &'a Receiver<Command>,
    emit: &'a dyn Fn(Event),
    folder: RunFolder,
    paused: bool,
    /// The first write that failed (the run goes on; it fails at the end, naming the file).
    write_error: Option<RunFailure>,
    updates: Vec<LiveUpdate>,
    resume: bool,
    /// Presenter mode's phase stops are on.
    stop_at_phases: bool,
    /// `Stop` arrived where it could not be returned (at a phase stop): the next step stops.
    stopping: bool,
}

impl ChannelMonitor<'_> {
    /// Keep the first failed write of the run folder (`what`: "append metrics", …).
    fn write_failed(&mut self, what: &'static str, source: io::Error) {
        let dir = &self.folder.dir;
        self.write_error.get_or_insert_with(|| RunFailure::Write {
            dir: dir.clone(),
            what,
            source,
        });
    }

    /// Apply one command; `Ok(true)` when it lets one step run. Pausing takes effect (and
    /// `Paused` is sent) at the next step boundary.
    fn handle(&mut self, cmd: Command) -> Result<bool, Interrupted> {
        match cmd {
            Command::Stop => return Err(Interrupted),
            Command::Pause => self.paused = true,
            // Announced wherever it arrives: while blocked at a boundary, or polled inside the
            // single step that `Step` let run (else the window would show "paused" forever).
            Command::Resume => {
                if self.paused {
                    self.paused = false;
                    (self.emit)(Event::Resumed);
                }
            }
            Command::Step => return Ok(true),
            Command::Update(u) => self.updates.push(u),
            Command::StopAtPhases(on) => self.stop_at_phases = on,
            // A second Start while running is ignored: one run at a time.
            Command::Start(_) => {}
        }
        Ok(false)
    }

    /// Presenter mode's phase stop: paused before the phase's first step until `Resume` (or
    /// `Step`, which lets one step run); a `Stop` here stops the run at its first step.
    fn wait_at(&mut self, phase: Phase) {
        self.paused = true;
        (self.emit)(Event::WaitingAt(phase));
        (self.emit)(Event::Paused);
        while self.paused {
            match self
                .commands
                .recv()
                .map_err(|_| Interrupted)
                .and_then(|c| self.handle(c))
            {
                Ok(false) => {}
                Ok(true) => return,
                Err(Interrupted) => {
                    self.stopping = true;
                    return;
                }
            }
        }
    }
}

impl Monitor for ChannelMonitor<'_> {
    fn phase(&mut self, phase: Phase, total_steps: usize) {
        (self.emit)(Event::Phase { phase, total_steps });
        if self.poll().is_err() {
            self.stopping = true;
            return;
        }
        if self.stop_at_phases && phase.is_stop() {
            self.wait_at(phase);
        }
    }

    fn step(&mut self, step: usize) -> Result<(), Interrupted> {
        if self.stopping {
            return Err(Interrupted);
        }
        (self.emit)(Event::Progress {
            step,
            at: Instant::now(),
        });
        // A disconnected channel means nobody can ever resume or stop us: finish as stopped.
        self.poll()?;
        if !self.paused {
            return Ok(());
        }
        (self.emit)(Event::Paused);
        while self.paused {
            match self.commands.recv() {
                Ok(cmd) => {
                    if self.handle(cmd)? {
                        return Ok(()); // one step, then paused again at the next boundary
                    }
                }
                Err(_) => return Err(Interrupted),
            }
        }
        Ok(())
    }

    fn poll(&mut self) -> Result<(), Interrupted> {
        if self.stopping {
            return Err(Interrupted);
        }
        loop {
            match self.commands.try_recv() {
                Ok(cmd) => {
                    self.handle(cmd)?;
                }
                Err(TryRecvError::Empty) => return Ok(()),
                Err(TryRecvError::Disconnected) => return Err(Interrupted),
            }
        }
    }

    fn take_updates(&mut self) -> Vec<LiveUpdate> {
        std::mem::take(&mut self.updates)
    }

    fn metric(&mut self, series: &str, step: usize, value: f64) {
        if !value.is_finite() {
            // The engine checks what it reads back; whatever slips through is still an event,
            // never a `null` in metrics.jsonl.
            let phase = series.split('/').next().unwrap_or(series);
            self.divergence(&Divergence::new(phase, step, series, value));
            return;
        }
        let point = MetricPoint {
            series: series.into(),
            step,
            value,
        };
        if let Err(source) = self.folder.append_metric(&point) {
            self.write_failed("append metrics", source);
        }
        (self.emit)(Event::Metric(point));
    }

    fn log(&mut self, message: &str) {
        (self.emit)(Event::Log(message.into()));
    }

    fn divergence(&mut self, event: &Divergence) {
        if let Err(e) = self
            .folder
            .append_event(&EventLine::Divergence(event.clone()))
        {
            self.write_failed("append metrics", e);
        }
        (self.emit)(Event::Log(format!("diverged: {event}")));
        (self.emit)(Event::Diverged(event.clone()));
    }

    fn summary(&mut self, summary: &Summary) {
        if let Err(e) = self.folder.write_summary(summary) {
            self.write_failed("write summary.json", e);
        }
    }

    fn save_model(&mut self, name: &str, model: &dyn SaveModel) -> Result<(), StoreError> {
        let path = self.folder.save_model(name, model)?;
        (self.emit)(Event::Log(format!("saved {}", path.display())));
        Ok(())
    }

    fn samples(&mut self, grid: SampleGrid<'_>) {
        match self.folder.save_samples(&grid) {
            Ok((image, file)) => (self.emit)(Event::Samples(Box::new(SamplesEvent {
                phase: grid.phase.into(),
                domain: grid.domain.into(),
                step: grid.step,
                t: grid.samples.t,
                psnr: grid.samples.psnr,
                image,
                file,
            }))),
            Err(e) => {
                self.write_error.get_or_insert(RunFailure::Samples(e));
            }
        }
    }

    fn save_checkpoint(&mut self, checkpoint: &Checkpoint<'_>) -> Result<(), StoreError> {
        self.folder.save_checkpoint(checkpoint)
    }

    fn resume_state(&mut self) -> Result<Option<ResumeFrom>, StoreError> {
        if self.resume {
            self.folder.load_resume()
        } else {
            Ok(None)
        }
    }
}

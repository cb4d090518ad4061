//! Command line: with no subcommand the window opens (on the remembered experiment, else the
//! built-in default); `run` executes a preset headless with a progress bar, `sweep` a grid of
//! them with a table of results, `eval` a finished run's attack again on its saved models.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use sophon_workbench::config::{ExperimentConfig, Metric};
use sophon_workbench::run::sweep::Axis;
use sophon_workbench::run::sweep_folder::SweepFolder;
use sophon_workbench::run::{self, BackendChoice, Command, Event, OutDir, RunRequest};
use sophon_workbench::sophon::series;
use sophon_workbench::sophon::summary::{RunStatus, Summary};
use sophon_workbench::sophon::task::Scores;

/// The exit code of a run that diverged (its summary says where).
const EXIT_DIVERGED: u8 = 3;

/// A run ended with status `diverged`: the error that carries the exit code.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct DivergedRun(String);

/// SIGINT and SIGTERM for the headless commands: the first asks the running experiment to stop
/// at its next safe point (the end of an outer iteration, with a checkpoint, or the current
/// training step) and write its summary as `stopped`; a sweep starts no further run. A second
/// signal exits at once. The process then exits with 128 + the signal's number.
mod signals {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicI32, Ordering};

    use crossbeam_channel::Sender;
    use signal_hook::consts::{SIGINT, SIGTERM};
    use signal_hook::iterator::Signals;
    use sophon_workbench::run::Command;

    static RECEIVED: AtomicI32 = AtomicI32::new(0);
    static WORKER: Mutex<Option<Sender<Command>>> = Mutex::new(None);

    pub fn install() -> std::io::Result<()> {
        let mut signals = Signals::new([SIGINT, SIGTERM])?;
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                for signal in signals.forever() {
                    if RECEIVED.swap(signal, Ordering::SeqCst) != 0 {
                        eprintln!("\nsecond signal: exiting at once");
                        std::process::exit(128 + signal);
                    }
                    eprintln!(
                        "\nstopping at the next safe point (a checkpoint and summary.json are written); send the signal again to exit at once"
                    );
                    stop_worker();
                }
            })?;
        Ok(())
    }

    fn stop_worker() {
        if let Ok(worker) = WORKER.lock()
            && let Some(commands) = worker.as_ref()
        {
            let _ = commands.send(Command::Stop);
        }
    }

    /// The worker a signal stops (a signal that came before it stops it at once); `None` once
    /// it is done, so that its command channel can close and the worker thread end.
    pub fn watch(commands: Option<Sender<Command>>) {
        if let Ok(mut worker) = WORKER.lock() {
            *worker = commands;
        }
        if received().is_some() {
            stop_worker();
        }
    }

    /// The signal received, if any.
    pub fn received() -> Option<i32> {
        match RECEIVED.load(Ordering::SeqCst) {
            0 => None,
            s => Some(s),
        }
    }
}

#[derive(Parser)]
#[command(
    version,
    about = "SOPHON Workbench: make pre-trained models non-fine-tunable, and measure it"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    /// Window: open this preset (TOML) instead of the remembered experiment.
    #[arg(long)]
    preset: Option<PathBuf>,
    /// Window: press Start as soon as it opens (for demos).
    #[arg(long)]
    run_on_start: bool,
    /// Window: presenter mode (larger type, the setup folded away, the run waiting for *Next*
    /// at each phase, the Explain panel narrating); e.g. `--preset presets/lesson.toml --present`.
    #[arg(long)]
    present: bool,
    /// Window: watch this sweep folder in the Runs tab (as File → Open sweep folder): its
    /// points appear and their curves grow as they run, locally or on a cluster.
    #[arg(long, value_name = "SWEEP_DIR")]
    watch: Option<PathBuf>,
    /// Window: where run folders are written and listed.
    #[arg(long, default_value = "runs")]
    runs_dir: PathBuf,
    /// Window: preload this many synthetic curve points and print frame times on exit.
    #[arg(long, default_value_t = 0, hide = true)]
    stress_points: usize,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run an experiment headless: pre-train, (protect,) attack; write a run folder.
    Run {
        /// A preset TOML file (or a run folder's config.toml); default: the built-in default.
        preset: Option<PathBuf>,
        /// The run folder to write (default: runs/<name>-<UTC time>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// auto (wgpu on a GPU, else flex), wgpu, flex or ndarray.
        #[arg(long, default_value = "auto", value_parser = parse_backend)]
        backend: BackendChoice,
        /// Override a preset field by its dotted path, e.g. --set pretrain.epochs=2
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// Run a grid of experiments headless, one after another (as the window's Sweep dialog), or
    /// as a Slurm job array (--slurm), in one sweep folder; print a table of their results.
    Sweep {
        /// A preset TOML file; default: the built-in default.
        preset: Option<PathBuf>,
        /// A preset field and its values, e.g. --vary seed=1,2,3 (repeatable: the grid of all).
        #[arg(long = "vary", value_name = "KEY=V1,V2", value_parser = parse_axis,
              required_unless_present_any = ["status", "resume_slurm"])]
        vary: Vec<Axis>,
        /// Override a preset field for every run, e.g. --set sophon.outer_iterations=100
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Where the sweep folder is made (runs/<name>-sweep-<UTC time>, a run folder per point
        /// in it); with --slurm, on a filesystem every node sees.
        #[arg(long, default_value = "runs")]
        runs_dir: PathBuf,
        #[arg(long, default_value = "auto", value_parser = parse_backend)]
        backend: BackendChoice,
        #[command(flatten)]
        slurm: SlurmArgs,
        /// Print a sweep folder's table over its finished points, and each point's state
        /// (pending / running at iteration N / finished / failed and why), asking Slurm too.
        #[arg(long, value_name = "SWEEP_DIR", conflicts_with_all = ["vary", "slurm", "resume_slurm"])]
        status: Option<PathBuf>,
        /// Submit again exactly the points of a Slurm sweep without a result that are not
        /// queued or running (a started one resumes from its last checkpoint).
        #[arg(long, value_name = "SWEEP_DIR", conflicts_with_all = ["vary", "slurm"])]
        resume_slurm: Option<PathBuf>,
    },
    /// Attack a finished run's models again (other strategies, more epochs) without repeating
    /// pre-training and SOPHON; writes a new run folder.
    Eval {
        /// The run folder (its config.toml and checkpoints/pretrained.bpk, protected.bpk).
        dir: PathBuf,
        /// Override a field of the run's config, e.g. --set evaluation.strategies.0.epochs=30
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// The run folder to write (default: runs/<name>-eval-<UTC time>).
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long, default_value = "auto", value_parser = parse_backend)]
        backend: BackendChoice,
    },
    /// Continue a stopped run from its last checkpoint, in the same run folder.
    Resume {
        /// The run folder.
        dir: PathBuf,
        #[arg(long, default_value = "auto", value_parser = parse_backend)]
        backend: BackendChoice,
    },
    /// Write contact sheets (PNG) of a preset's original and restricted test images.
    Preview {
        preset: PathBuf,
        /// Folder for original.png and restricted.png.
        #[arg(long, default_value = ".")]
        out: PathBuf,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// Time SOPHON outer iterations of the fixed bench-small configuration, per backend.
    Bench {
        /// Backends to measure (repeatable); default: flex, ndarray, and wgpu when an adapter exists.
        #[arg(long, value_parser = parse_backend)]
        backend: Vec<BackendChoice>,
        /// Inner steps K of the FTS step.
        #[arg(long, default_value_t = 10)]
        k: usize,
        /// Timed outer iterations (after 3 warm-up iterations).
        #[arg(long, default_value_t = 20)]
        iters: usize,
    },
    /// Show the compute backends and what `auto` picks here.
    Backends,
    /// The one-page report of each run folder (`report.png` and `report.svg` in it: the verdict,
    /// the curves, the attack plots, a denoiser's sample grids), and the sweep table (verdicts,
    /// mean ± sd over the runs), e.g. `report runs/lesson-seed*`.
    Report {
        /// Run folders (each with a summary.json).
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Write the page here instead (one run folder only); the SVG goes beside it.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Only print the table; draw no page.
        #[arg(long)]
        table_only: bool,
    },
}

/// `sweep --slurm` and its resources (these four also apply to `--resume-slurm`, overriding the
/// job script's).
#[derive(clap::Args)]
struct SlurmArgs {
    /// Submit the grid to Slurm as one job array (a task per point) instead of running it here.
    #[arg(long = "slurm")]
    on: bool,
    /// The Slurm partition.
    #[arg(long)]
    partition: Option<String>,
    /// Each task's time limit (HH:MM:SS); a task that hits it stops at a checkpoint, and
    /// --resume-slurm continues it.
    #[arg(long, value_name = "HH:MM:SS")]
    time: Option<String>,
    /// GPUs per task (`--gres=gpu:N`); with `--backend auto` a task on a GPU uses wgpu.
    #[arg(long)]
    gpus_per_run: Option<u32>,
    /// CPU cores per task (the CPU path uses as many threads).
    #[arg(long)]
    cpus_per_run: Option<u32>,
    /// Write the sweep folder and the job script, submit nothing.
    #[arg(long, requires = "on")]
    dry_run: bool,
}

impl SlurmArgs {
    fn resources(&self) -> Result<run::slurm::Resources> {
        let resources = run::slurm::Resources {
            partition: self.partition.clone(),
            time: self.time.clone(),
            gpus_per_run: self.gpus_per_run,
            cpus_per_run: self.cpus_per_run,
        };
        resources.check()?;
        Ok(resources)
    }

    fn options(&self, backend: BackendChoice) -> Result<run::slurm::SlurmOptions> {
        let binary = std::env::current_exe()
            .and_then(|p| p.canonicalize())
            .context("cannot find this program's own path for the job script")?;
        Ok(run::slurm::SlurmOptions {
            resources: self.resources()?,
            backend,
            binary,
        })
    }

    fn given(&self) -> bool {
        self.partition.is_some()
            || self.time.is_some()
            || self.gpus_per_run.is_some()
            || self.cpus_per_run.is_some()
    }
}

fn parse_backend(s: &str) -> Result<BackendChoice, String> {
    s.parse()
}

fn parse_axis(s: &str) -> Result<Axis, run::sweep::SweepError> {
    Axis::parse(s)
}

/// The one-page report of each run folder, then the sweep table of them all, named by their
/// experiment names.
fn report(dirs: &[PathBuf], out: Option<&PathBuf>, table_only: bool) -> Result<()> {
    if out.is_some() && (dirs.len() != 1 || table_only) {
        bail!("--out names one page: give exactly one run folder, without --table-only");
    }
    let mut runs = Vec::new();
    for dir in dirs {
        let summary = run::folder::read_summary(dir)
            .with_context(|| format!("{}: not a run folder", dir.display()))?;
        if !table_only {
            let png = out.cloned().unwrap_or_else(|| dir.join("report.png"));
            let written = run::report::write_report(dir, &png)?;
            println!(
                "wrote {} and {}",
                written.png.display(),
                written.svg.display()
            );
        }
        runs.push((summary.name.clone(), summary));
    }
    println!("{}", run::sweep::report(&runs));
    Ok(())
}

/// A preset file, or the built-in default, with `--set` overrides.
fn load_preset(preset: Option<&PathBuf>, set: &[String]) -> Result<ExperimentConfig> {
    Ok(match preset {
        Some(p) => ExperimentConfig::load(p, set),
        None => ExperimentConfig::from_toml(
            sophon_workbench::DEFAULT_PRESET,
            "built-in default preset",
            set,
        ),
    }?)
}

fn main() -> ExitCode {
    run::memory::keep_freed_memory();
    let cli = Cli::parse();
    if matches!(
        cli.command,
        Some(Cmd::Run { .. } | Cmd::Sweep { .. } | Cmd::Eval { .. } | Cmd::Resume { .. })
    ) && let Err(e) = signals::install()
    {
        eprintln!("warning: signals are not handled ({e}): Ctrl-C ends the run without a summary");
    }
    let result = match cli.command {
        Some(Cmd::Run {
            preset,
            out,
            backend,
            set,
        }) => load_preset(preset.as_ref(), &set).and_then(|config| {
            run_headless(config, backend, out.map(OutDir::Exact), false).map(|_| ())
        }),
        Some(Cmd::Sweep {
            preset,
            vary,
            set,
            runs_dir,
            backend,
            slurm,
            status,
            resume_slurm,
        }) => {
            if let Some(dir) = status {
                sweep_status(&dir)
            } else if let Some(dir) = resume_slurm {
                resume_slurm_sweep(&dir, &slurm)
            } else if slurm.on {
                load_preset(preset.as_ref(), &set).and_then(|config| {
                    slurm_sweep(
                        &config,
                        &vary,
                        &slurm.options(backend)?,
                        &runs_dir,
                        slurm.dry_run,
                    )
                })
            } else if slurm.given() {
                Err(anyhow::anyhow!(
                    "--partition, --time, --gpus-per-run and --cpus-per-run go with --slurm or --resume-slurm"
                ))
            } else {
                load_preset(preset.as_ref(), &set)
                    .and_then(|config| sweep(&config, &vary, backend, &runs_dir))
            }
        }
        Some(Cmd::Eval {
            dir,
            set,
            out,
            backend,
        }) => eval_config(&dir, &set).and_then(|config| {
            let out = out.map_or(OutDir::In(PathBuf::from("runs")), OutDir::Exact);
            run_headless(config, backend, Some(out), false).map(|_| ())
        }),
        Some(Cmd::Resume { dir, backend }) => ExperimentConfig::load(&dir.join("config.toml"), &[])
            .map_err(anyhow::Error::from)
            .and_then(|config| {
                run_headless(config, backend, Some(OutDir::Exact(dir)), true).map(|_| ())
            }),
        Some(Cmd::Backends) => show_backends(),
        Some(Cmd::Report {
            dirs,
            out,
            table_only,
        }) => report(&dirs, out.as_ref(), table_only),
        Some(Cmd::Bench { backend, k, iters }) => bench(backend, k, iters),
        Some(Cmd::Preview { preset, out, set }) => ExperimentConfig::load(&preset, &set)
            .map_err(anyhow::Error::from)
            .and_then(|config| preview(&config, &out)),
        None => sophon_workbench::app::run_window(sophon_workbench::app::AppOptions {
            preset: cli.preset,
            run_on_start: cli.run_on_start,
            runs_dir: Some(cli.runs_dir),
            stress_points: cli.stress_points,
            present: cli.present,
            watch: cli.watch,
        })
        .map_err(anyhow::Error::msg),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&format!("{e:#}")));
            if let Some(signal) = signals::received() {
                ExitCode::from((128 + signal) as u8)
            } else if e.downcast_ref::<DivergedRun>().is_some() {
                ExitCode::from(EXIT_DIVERGED)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn preview(config: &ExperimentConfig, out: &std::path::Path) -> Result<()> {
    let (original, restricted) = sophon_workbench::sophon::experiment::load_domains(config)?;
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create", out.display()))?;
    for (name, domain) in [("original", &original), ("restricted", &restricted)] {
        let path = out.join(format!("{name}.png"));
        let scale = (96 / domain.test.height).max(1) as u32;
        sophon_workbench::data::preview::save_contact_sheet(&domain.test, 8, scale, &path)
            .with_context(|| format!("{}: cannot write", path.display()))?;
        println!(
            "{name}: {} ({} classes) → {}",
            domain.test.name,
            domain.test.classes,
            path.display()
        );
    }
    Ok(())
}

fn bench(mut backends: Vec<BackendChoice>, k: usize, iters: usize) -> Result<()> {
    use sophon_workbench::run::memory;
    use sophon_workbench::sophon::{Devices, bench};
    if backends.is_empty() {
        backends = vec![BackendChoice::Flex, BackendChoice::Ndarray];
        if run::backend::probe_adapter().is_some() {
            backends.push(BackendChoice::Wgpu);
        }
    }
    println!(
        "bench-small: cnn-small 1x28x28, K = {k}, batch 150 (130/20), 3 warm-up + {iters} timed outer iterations"
    );
    println!("{}", run::folder::kernels_line());
    println!("allocator: {}", memory::keep_freed_memory());
    for choice in backends {
        let backend = run::backend::select(choice)?;
        memory::reset_peak_rss();
        let devices = Devices::new(backend.device.clone());
        let timed = bench::run(&devices, k, 3, iters);
        let (median, min, max) = bench::stats(&timed.times);
        let peak =
            memory::peak_rss_kb().map_or("?".into(), |kb| format!("{:.0} MiB", kb as f64 / 1024.0));
        println!(
            "{:<8} outer iteration  median {median:8.1} ms  min {min:8.1}  max {max:8.1}  peak RSS {peak}  [{}]",
            backend.name,
            backend.adapter_label()
        );
        if timed.launches.per_iteration > 0.0 {
            let top: Vec<String> = (timed.launches.by_kernel.iter().take(5))
                .map(|(kernel, n)| format!("{kernel} {n:.0}"))
                .collect();
            println!(
                "{:<8} kernel launches per outer iteration: {:.0} (most: {}); convolution blocks: {}",
                backend.name,
                timed.launches.per_iteration,
                top.join(", "),
                sophon_workbench::model::conv::wgpu_blocks_line(),
            );
        }
        let (median, min, max) = bench::stats(&bench::train_steps(&devices, 3, iters));
        println!(
            "{:<8} train step (batch 64, Adam)  median {median:6.1} ms  min {min:6.1}  max {max:6.1}",
            backend.name
        );
    }
    Ok(())
}

fn show_backends() -> Result<()> {
    match run::backend::probe_adapter() {
        Some(a) => println!(
            "wgpu adapter: {} ({}, {}){}",
            a.name,
            a.device_type,
            a.api,
            if a.is_software() {
                " — a software rasteriser"
            } else {
                ""
            }
        ),
        None => println!("wgpu adapter: none"),
    }
    let auto = run::backend::select(BackendChoice::Auto)?;
    println!("auto picks: {} ({})", auto.name, auto.reason);
    Ok(())
}

/// A finished run's experiment with its models loaded instead of trained: pre-training and
/// SOPHON are skipped and only the attacker evaluation runs.
fn eval_config(dir: &std::path::Path, set: &[String]) -> Result<ExperimentConfig> {
    let mut config = ExperimentConfig::load(&dir.join("config.toml"), set)?;
    let checkpoint = |name: &str, phase: &str| {
        let path = dir.join("checkpoints").join(format!("{name}.bpk"));
        if path.is_file() {
            Ok(path)
        } else {
            Err(anyhow::anyhow!(
                "{}: not found (the run did not finish {phase})",
                path.display()
            ))
        }
    };
    config.pretrain.load = Some(checkpoint("pretrained", "pre-training")?);
    if let Some(sophon) = &mut config.sophon {
        sophon.load = Some(checkpoint("protected", "SOPHON")?);
    }
    config.name = format!("{}-eval", config.name);
    Ok(config)
}

/// Every run of the grid, one after another; a failed run is reported and the sweep goes on.
/// Fails when any run failed, after the table of those that finished.
fn sweep(
    base: &ExperimentConfig,
    axes: &[Axis],
    backend: BackendChoice,
    runs_dir: &std::path::Path,
) -> Result<()> {
    let configs = run::sweep::expand(base, axes)?;
    let folder = SweepFolder::create(runs_dir, base, axes, &configs)?;
    println!("sweep folder {}", folder.dir.display());
    let total = configs.len();
    let mut done = Vec::new();
    let mut failed = Vec::new();
    for (i, config) in configs.into_iter().enumerate() {
        if signals::received().is_some() {
            eprintln!(
                "sweep: stopped by a signal; {} of {total} runs not started",
                total - i
            );
            break;
        }
        let name = config.name.clone();
        println!("sweep: run {} of {total}: {name}", i + 1);
        match run_headless(
            config,
            backend,
            Some(OutDir::Exact(folder.run_dir(i))),
            false,
        ) {
            Ok((_, summary)) => done.push((name, summary)),
            Err(e) => {
                eprintln!("sweep: {name} failed: {}", one_line(&format!("{e:#}")));
                failed.push(name);
            }
        }
    }
    println!("\n{}", run::sweep::report(&done));
    if let Some(signal) = signals::received() {
        bail!("the sweep was stopped by signal {signal}");
    }
    if !failed.is_empty() {
        bail!(
            "{} of {total} runs failed: {}",
            failed.len(),
            failed.join(", ")
        );
    }
    Ok(())
}

/// Lay the grid out as a sweep folder with a job script, and submit it (unless `dry_run`).
fn slurm_sweep(
    base: &ExperimentConfig,
    axes: &[Axis],
    options: &run::slurm::SlurmOptions,
    runs_dir: &std::path::Path,
    dry_run: bool,
) -> Result<()> {
    let configs = run::sweep::expand(base, axes)?;
    let folder = SweepFolder::create(runs_dir, base, axes, &configs)?;
    let script = run::slurm::write_script(&folder, options)?;
    println!("sweep folder {}", folder.dir.display());
    println!(
        "job script {} ({} array tasks)",
        script.display(),
        configs.len()
    );
    if dry_run {
        println!(
            "dry run: nothing submitted (`sbatch --parsable {}` would submit it; then `sweep --status {}`)",
            script.display(),
            folder.dir.display()
        );
        return Ok(());
    }
    let submission = run::slurm::submit(&folder, None, &[])?;
    println!("submitted job {}", submission.job);
    println!(
        "follow it with `sophon-workbench sweep --status {}`, or File → Open sweep folder in the window",
        folder.dir.display()
    );
    Ok(())
}

/// Each point's state, then the table over the finished ones.
fn sweep_status(dir: &std::path::Path) -> Result<()> {
    let folder = SweepFolder::open(dir)?;
    let points = run::slurm::status(&folder);
    let width = points.iter().map(|p| p.name.len()).max().unwrap_or(5);
    let finished = points.iter().filter(|p| p.state.is_done()).count();
    println!(
        "sweep {} ({}): {finished} of {} points finished",
        folder.manifest.name,
        folder.dir.display(),
        points.len()
    );
    for p in &points {
        println!("  {:>3}  {:<width$}  {}", p.index, p.name, p.describe());
    }
    let runs = folder.finished();
    if !runs.is_empty() {
        println!("\n{}", run::sweep::report(&runs));
    }
    Ok(())
}

/// Submit again the points of a Slurm sweep that have no result and are not queued.
fn resume_slurm_sweep(dir: &std::path::Path, slurm: &SlurmArgs) -> Result<()> {
    let folder = SweepFolder::open(dir)?;
    let points = run::slurm::status(&folder);
    let todo: Vec<&run::slurm::PointStatus> =
        points.iter().filter(|p| p.needs_resubmit()).collect();
    let queued = points
        .iter()
        .filter(|p| p.task.as_ref().is_some_and(run::slurm::Task::is_queued))
        .count();
    let finished = points.iter().filter(|p| p.state.is_done()).count();
    if todo.is_empty() {
        println!(
            "nothing to submit: {finished} of {} points finished, {queued} queued or running",
            points.len()
        );
        return Ok(());
    }
    let extra = slurm.resources()?.directives();
    let indices: Vec<usize> = todo.iter().map(|p| p.index).collect();
    let submission = run::slurm::submit(&folder, Some(&indices), &extra)?;
    println!(
        "submitted job {} for {} of {} points ({finished} finished, {queued} queued or running):",
        submission.job,
        todo.len(),
        points.len()
    );
    for p in todo {
        let how = if folder.started(p.index) {
            "resume"
        } else {
            "run"
        };
        println!("  {:>3}  {}  {how}: {}", p.index, p.name, p.describe());
    }
    Ok(())
}

/// Run one experiment on a worker thread, showing its progress; its folder and summary.
fn run_headless(
    config: ExperimentConfig,
    backend: BackendChoice,
    out: Option<OutDir>,
    resume: bool,
) -> Result<(PathBuf, Summary)> {
    let out = out.unwrap_or_else(|| OutDir::In(PathBuf::from("runs")));
    let worker = run::spawn(Box::new(|| {}));
    signals::watch(Some(worker.commands.clone()));
    worker
        .commands
        .send(Command::Start(Box::new(RunRequest {
            config,
            backend,
            out,
            resume,
        })))
        .context("the worker thread is gone")?;

    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos}/{len} {msg} (ETA {eta})")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    // Without a terminal the bar is hidden and so are its lines: print them plainly then.
    let say = |line: String| {
        if bar.is_hidden() {
            println!("{line}");
        } else {
            bar.println(line);
        }
    };
    let result = (|| -> Result<(PathBuf, Summary)> {
        let mut dir = PathBuf::new();
        for event in worker.events.iter() {
            match event {
                Event::Started {
                    dir: d,
                    backend,
                    adapter,
                    reason,
                    ..
                } => {
                    say(format!(
                        "run folder {}\nbackend {backend} on {adapter}: {reason}",
                        d.display()
                    ));
                    dir = d;
                }
                Event::Phase { phase, total_steps } => {
                    bar.set_prefix(phase.name());
                    bar.set_length(total_steps as u64);
                    bar.set_position(0);
                    bar.reset_eta();
                }
                Event::Progress { step, .. } => bar.set_position(step as u64),
                Event::Metric(p) if p.series == series::PRETRAIN_LOSS => {
                    bar.set_message(format!("loss {:.3}", p.value))
                }
                Event::Metric(p)
                    if [Metric::Acc, Metric::Mse]
                        .iter()
                        .any(|&m| p.series == series::sophon_original(m)) =>
                {
                    bar.set_message(format!("intactness {:.3}", p.value))
                }
                Event::Metric(_) => {}
                Event::Samples(g) => say(format!(
                    "sample grid {} (PSNR {:.1} dB)",
                    g.file.display(),
                    g.psnr
                )),
                Event::Log(line) => say(line),
                // (Said in the log line that comes with it.)
                Event::Diverged(_) | Event::WaitingAt(_) | Event::Paused | Event::Resumed => {}
                Event::Finished(summary) => {
                    bar.finish_and_clear();
                    print_summary(&summary);
                    println!("wrote {}", dir.display());
                    if summary.status == RunStatus::Diverged {
                        let events: Vec<String> = summary
                            .divergences
                            .iter()
                            .map(ToString::to_string)
                            .collect();
                        return Err(DivergedRun(format!(
                            "the run diverged ({}); no figure after a divergence is a result (summary.json in {})",
                            events.join("; "),
                            dir.display()
                        ))
                        .into());
                    }
                    return Ok((dir, *summary));
                }
                Event::Stopped(_) => {
                    bar.finish_and_clear();
                    bail!(
                        "the run was stopped; `sophon-workbench resume {}` continues it",
                        dir.display()
                    );
                }
                Event::Failed(failure) => {
                    bar.finish_and_clear();
                    bail!(failure.to_string());
                }
            }
        }
        bail!("the worker thread ended without a result")
    })();
    // Let the worker thread end before the process does: it still holds the backend.
    let run::WorkerHandle {
        commands, thread, ..
    } = worker;
    signals::watch(None);
    drop(commands);
    let _ = thread.join();
    result
}

/// The measures of one model, as a line: `original accuracy 0.912, restricted …`.
fn scores_line(s: &Scores, restricted_what: &str) -> String {
    let what = s.metric.label();
    let psnr = match (s.original_psnr, s.restricted_psnr) {
        (Some(o), Some(r)) => format!(" (sample PSNR {o:.1} / {r:.1} dB)"),
        _ => String::new(),
    };
    format!(
        "original {what} {:.4}, restricted {what} {restricted_what} {:.4}{psnr}",
        s.original, s.restricted
    )
}

fn print_summary(s: &Summary) {
    if let Some(p) = &s.pretrain {
        println!(
            "pre-trained: {}",
            scores_line(&p.scores, "before fine-tuning")
        );
    }
    if let Some(p) = &s.sophon
        && let Some(path) = &p.settings.load
    {
        println!(
            "protected (loaded from {}): {}",
            path.display(),
            scores_line(&p.scores, "before fine-tuning")
        );
    } else if let Some(p) = &s.sophon {
        let which = match p.selected_iteration {
            Some(it) => format!(", the model of iteration {it} kept by model selection"),
            None => String::new(),
        };
        let stopped = match (p.guard_triggered, &p.diverged, p.rolled_back_to) {
            (true, _, Some(it)) => {
                format!(" (stopped by the intactness guard, rolled back to iteration {it})")
            }
            (_, Some(d), Some(it)) => format!(
                " (DIVERGED at iteration {}: {} is {}; rolled back to iteration {it})",
                d.step, d.quantity, d.value
            ),
            _ => String::new(),
        };
        println!(
            "protected ({} outer iterations{which}): {}, probe {:.4}{stopped}",
            p.iterations,
            scores_line(&p.scores, "before fine-tuning"),
            p.scores.probe.unwrap_or(f64::NAN),
        );
    }
    for a in &s.attack {
        if let Some(d) = &a.diverged {
            println!(
                "attack {:<14} from {:<9}: DIVERGED at epoch {} ({} is {}): no result",
                a.strategy,
                a.start.name(),
                d.step,
                d.quantity,
                d.value
            );
            continue;
        }
        let curve: Vec<String> = a.per_epoch.iter().map(|v| format!("{v:.3}")).collect();
        println!(
            "attack {:<14} from {:<9}: final {} {:.4}, mean {:.4}  [{}]",
            a.strategy,
            a.start.name(),
            a.metric.label(),
            a.final_score,
            a.mean,
            curve.join(" ")
        );
    }
    for b in &s.best_effort {
        match &b.setting {
            Some(setting) => println!(
                "best-effort attacker from {:<9}: {} (chosen on validation: {:.4}; {} settings tried)",
                b.start.name(),
                setting.name,
                b.validation.unwrap_or(f64::NAN),
                b.candidates.len()
            ),
            None => println!(
                "best-effort attacker from {:<9}: every setting diverged",
                b.start.name()
            ),
        }
    }
    if let Some(v) = &s.verdict {
        for line in v.lines() {
            println!("{line}");
        }
    }
}

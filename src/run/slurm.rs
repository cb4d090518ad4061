//! Sweeps on a Slurm cluster: one job array per sweep folder, one array task per point (its index
//! in `sweep.json`). The job script decides at run time whether a point starts (`run`) or
//! continues (`resume`, when its run folder already holds a run), so the same script serves the
//! first submission, `--resume-slurm` and Slurm's own requeues.
//!
//! Where a point stands comes from its run folder first, then from Slurm: `squeue` for tasks
//! pending or running, `sacct` where accounting is on, and the task's log (`slurm/logs/`), where
//! `slurmstepd` writes why it ended a task (a time limit, a cancel).

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use super::BackendChoice;
use super::folder::write_atomic;
use super::sweep_folder::{PointState, SweepFolder};

/// The job script, under the sweep folder.
pub const SCRIPT: &str = "slurm/sweep.sbatch";
/// One line per submission: its job id and the points (array indices) it covers.
pub const JOBS: &str = "slurm/jobs.jsonl";
/// The array tasks' output, `<job>_<index>.out`.
pub const LOGS: &str = "slurm/logs";

/// Why a Slurm sweep could not be laid out, submitted or read: the file, the command or the
/// field is named.
#[derive(Debug, thiserror::Error)]
pub enum SlurmError {
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: io::Error },
    #[error("{field}: {problem}")]
    Option {
        field: &'static str,
        problem: String,
    },
    #[error("`{command}` could not start ({error}); is Slurm installed here (sbatch on PATH)?")]
    Spawn { command: String, error: io::Error },
    #[error("`{command}` failed: {stderr}")]
    Refused { command: String, stderr: String },
    #[error("{dir}: not a Slurm sweep (no {SCRIPT}; it was made without --slurm)")]
    NotSlurm { dir: PathBuf },
}

impl SlurmError {
    fn io(path: &Path, error: io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            error,
        }
    }
}

/// What each array task asks of Slurm (every field optional: the cluster's defaults apply).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resources {
    pub partition: Option<String>,
    /// `HH:MM:SS`, `MM:SS`, `D-HH:MM:SS` or minutes, as `sbatch --time` takes it.
    pub time: Option<String>,
    pub gpus_per_run: Option<u32>,
    pub cpus_per_run: Option<u32>,
}

impl Resources {
    /// Check the fields before anything is written or submitted: a bad one is named.
    pub fn check(&self) -> Result<(), SlurmError> {
        if let Some(t) = &self.time
            && !valid_time(t)
        {
            return Err(SlurmError::Option {
                field: "--time",
                problem: format!(
                    "{t:?} is not a Slurm time (HH:MM:SS, MM:SS, D-HH:MM:SS or minutes)"
                ),
            });
        }
        if let Some(p) = &self.partition
            && (p.is_empty() || p.contains(|c: char| c.is_whitespace() || c == '\''))
        {
            return Err(SlurmError::Option {
                field: "--partition",
                problem: format!("{p:?} is not a partition name"),
            });
        }
        for (field, n) in [
            ("--gpus-per-run", self.gpus_per_run),
            ("--cpus-per-run", self.cpus_per_run),
        ] {
            if n == Some(0) {
                return Err(SlurmError::Option {
                    field,
                    problem: "give at least 1 (or leave it out)".into(),
                });
            }
        }
        Ok(())
    }

    /// The `sbatch` options these ask for: `#SBATCH` lines in the job script, or options on
    /// the command line of a resubmission (where they override the script's).
    pub fn directives(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if let Some(p) = &self.partition {
            lines.push(format!("--partition={p}"));
        }
        if let Some(t) = &self.time {
            lines.push(format!("--time={t}"));
        }
        if let Some(n) = self.cpus_per_run {
            lines.push(format!("--cpus-per-task={n}"));
        }
        if let Some(n) = self.gpus_per_run {
            lines.push(format!("--gres=gpu:{n}"));
        }
        lines
    }
}

/// What each array task asks of Slurm, and what it runs.
#[derive(Debug, Clone, PartialEq)]
pub struct SlurmOptions {
    pub resources: Resources,
    /// The backend each task runs on (`auto`: wgpu on a GPU node, else flex).
    pub backend: BackendChoice,
    /// The `sophon-workbench` binary the nodes run (on the shared filesystem).
    pub binary: PathBuf,
}

/// `HH:MM:SS`, `MM:SS`, `D-HH:MM:SS`, `D-HH`, `D-HH:MM` or plain minutes.
fn valid_time(t: &str) -> bool {
    let (days, rest) = match t.split_once('-') {
        Some((d, r)) => (Some(d), r),
        None => (None, t),
    };
    let numeric = |s: &str| !s.is_empty() && s.len() <= 4 && s.chars().all(|c| c.is_ascii_digit());
    if days.is_some_and(|d| !numeric(d)) {
        return false;
    }
    let parts: Vec<&str> = rest.split(':').collect();
    parts.len() <= 3 && parts.iter().all(|p| numeric(p))
}

/// A string as one single-quoted shell word.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Write the job script: one array task per point of `sweep`.
pub fn write_script(sweep: &SweepFolder, options: &SlurmOptions) -> Result<PathBuf, SlurmError> {
    options.resources.check()?;
    let dir = sweep
        .dir
        .canonicalize()
        .map_err(|e| SlurmError::io(&sweep.dir, e))?;
    let text = dir.to_string_lossy();
    if text.contains(|c: char| c.is_whitespace() || c == '%') {
        return Err(SlurmError::Option {
            field: "--runs-dir",
            problem: format!(
                "{text}: Slurm's --output cannot name a path with spaces or '%'; choose another runs folder"
            ),
        });
    }
    let logs = dir.join(LOGS);
    fs::create_dir_all(&logs).map_err(|e| SlurmError::io(&logs, e))?;
    let n = sweep.manifest.points.len();
    let mut s = String::from("#!/bin/bash\n");
    s.push_str(&format!(
        "# sophon-workbench sweep {:?}: one array task per point, in the order of sweep.json.\n\
         # Submitted with `sbatch --parsable`; `sophon-workbench sweep --resume-slurm <sweep folder>`\n\
         # submits it again with --array=<the unfinished points>. A point whose run folder already\n\
         # holds a run is resumed from its last checkpoint instead of started again.\n",
        sweep.manifest.name
    ));
    s.push_str(&format!(
        "#SBATCH --job-name=sophon-{}\n",
        sweep.manifest.name
    ));
    s.push_str(&format!("#SBATCH --array=0-{}\n", n.saturating_sub(1)));
    s.push_str(&format!("#SBATCH --output={}/%A_%a.out\n", logs.display()));
    for d in options.resources.directives() {
        s.push_str(&format!("#SBATCH {d}\n"));
    }
    s.push_str("set -u\n");
    s.push_str(&format!("sweep={}\n", quote(&text)));
    s.push_str(&format!(
        "bin={}\n",
        quote(&options.binary.to_string_lossy())
    ));
    s.push_str(&format!("backend={}\n", options.backend.name()));
    s.push_str("points=(\n");
    for p in &sweep.manifest.points {
        s.push_str(&format!("    {}\n", quote(&p.name)));
    }
    s.push_str(")\n");
    s.push_str(
        "point=\"${points[$SLURM_ARRAY_TASK_ID]}\"\n\
         run_dir=\"$sweep/$point\"\n\
         # The CPU path uses as many threads as the task was given.\n\
         if [ -n \"${SLURM_CPUS_PER_TASK:-}\" ]; then export RAYON_NUM_THREADS=\"$SLURM_CPUS_PER_TASK\"; fi\n\
         echo \"sophon-workbench: point $SLURM_ARRAY_TASK_ID ($point) on $(hostname), job ${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}\"\n\
         if [ -f \"$run_dir/config.toml\" ]; then\n\
         \x20   exec \"$bin\" resume \"$run_dir\" --backend \"$backend\"\n\
         fi\n\
         exec \"$bin\" run \"$sweep/points/$point.toml\" --out \"$run_dir\" --backend \"$backend\"\n",
    );
    let path = dir.join(SCRIPT);
    write_atomic(&path, s.as_bytes()).map_err(|e| SlurmError::io(&path, e))?;
    Ok(path)
}

/// One submission, as a line of `slurm/jobs.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Submission {
    pub job: String,
    /// The array indices (points) it covers.
    pub points: Vec<usize>,
}

/// Submit the job script for the points `indices` (all of them when `None`) with
/// `sbatch --parsable`, plus any `extra` options (they override the script's); the job id is
/// recorded in `slurm/jobs.jsonl` and returned.
pub fn submit(
    sweep: &SweepFolder,
    indices: Option<&[usize]>,
    extra: &[String],
) -> Result<Submission, SlurmError> {
    let script = sweep.dir.join(SCRIPT);
    if !script.is_file() {
        return Err(SlurmError::NotSlurm {
            dir: sweep.dir.clone(),
        });
    }
    let points: Vec<usize> = indices.map_or_else(
        || (0..sweep.manifest.points.len()).collect(),
        <[usize]>::to_vec,
    );
    let mut args: Vec<String> = vec!["--parsable".into()];
    if indices.is_some() {
        let list: Vec<String> = points.iter().map(ToString::to_string).collect();
        args.push(format!("--array={}", list.join(",")));
    }
    args.extend(extra.iter().cloned());
    args.push(script.to_string_lossy().into_owned());
    let out = run_tool("sbatch", &args)?;
    // `--parsable` prints `<job id>` or `<job id>;<cluster>`.
    let job = out
        .lines()
        .next()
        .and_then(|l| l.split(';').next())
        .map(str::trim)
        .filter(|j| !j.is_empty() && j.chars().all(|c| c.is_ascii_digit()))
        .ok_or_else(|| SlurmError::Refused {
            command: format!("sbatch {}", args.join(" ")),
            stderr: format!("no job id in its output {out:?}"),
        })?
        .to_owned();
    let submission = Submission { job, points };
    let path = sweep.dir.join(JOBS);
    let mut line = serde_json::to_string(&submission)
        .map_err(|e| SlurmError::io(&path, io::Error::other(e)))?;
    line.push('\n');
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| {
            f.write_all(line.as_bytes())?;
            f.sync_all()
        })
        .map_err(|e| SlurmError::io(&path, e))?;
    Ok(submission)
}

/// Run a Slurm tool; its standard output, or why it failed.
fn run_tool(tool: &str, args: &[String]) -> Result<String, SlurmError> {
    let command = format!("{tool} {}", args.join(" "));
    let out = Command::new(tool)
        .args(args)
        .output()
        .map_err(|error| SlurmError::Spawn {
            command: command.clone(),
            error,
        })?;
    if !out.status.success() {
        return Err(SlurmError::Refused {
            command,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Every submission of a sweep, oldest first (none for a local sweep).
pub fn submissions(sweep: &SweepFolder) -> Vec<Submission> {
    fs::read_to_string(sweep.dir.join(JOBS))
        .map(|text| {
            text.lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// What Slurm says of one array task.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskState {
    /// Queued; Slurm's reason (`Resources`, `Priority`, …).
    Pending {
        reason: String,
    },
    Running,
    /// Ended: Slurm's state (`COMPLETED`, `TIMEOUT`, `CANCELLED`, `FAILED`, …) where `sacct`
    /// knows it, and why, from the task's log where `slurmstepd` said.
    Ended {
        state: Option<String>,
        why: Option<String>,
    },
}

/// One point's task: the job id, its state and its log.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub job: String,
    pub index: usize,
    pub state: TaskState,
    pub log: PathBuf,
}

impl Task {
    /// `12_3`, as Slurm names an array task.
    pub fn id(&self) -> String {
        format!("{}_{}", self.job, self.index)
    }

    pub fn is_queued(&self) -> bool {
        matches!(self.state, TaskState::Pending { .. } | TaskState::Running)
    }
}

/// The latest task of each submitted point, by index, with Slurm's word on it: `squeue` for
/// queued and running tasks, then `sacct` (where accounting is on) and the task's log for the
/// others. `None` when the sweep was never submitted; tasks are `Ended` without a state where
/// neither tool could be run.
pub fn tasks(sweep: &SweepFolder) -> Option<BTreeMap<usize, Task>> {
    let submissions = submissions(sweep);
    if submissions.is_empty() {
        return None;
    }
    let mut latest: BTreeMap<usize, String> = BTreeMap::new();
    for s in &submissions {
        for &i in &s.points {
            latest.insert(i, s.job.clone());
        }
    }
    let mut jobs: Vec<&String> = latest.values().collect();
    jobs.sort();
    jobs.dedup();
    let mut queued: BTreeMap<String, TaskState> = BTreeMap::new();
    let mut accounted: BTreeMap<String, String> = BTreeMap::new();
    for job in jobs {
        // `-r`: one line per array task, also while pending. A job Slurm has forgotten is an
        // error here: its tasks have ended.
        if let Ok(out) = run_tool(
            "squeue",
            &[
                "-h".into(),
                "-r".into(),
                "-j".into(),
                job.clone(),
                "-o".into(),
                "%i|%T|%r".into(),
            ],
        ) {
            for line in out.lines() {
                let f: Vec<&str> = line.trim().split('|').collect();
                if let [id, state, reason] = f[..] {
                    let state = match state {
                        "PENDING" => TaskState::Pending {
                            reason: reason.to_owned(),
                        },
                        "RUNNING" | "COMPLETING" | "CONFIGURING" | "SUSPENDED" => {
                            TaskState::Running
                        }
                        _ => continue,
                    };
                    queued.insert(id.to_owned(), state);
                }
            }
        }
        if let Ok(out) = run_tool(
            "sacct",
            &[
                "-n".into(),
                "-P".into(),
                "-X".into(),
                "-j".into(),
                job.clone(),
                "--format=JobID,State".into(),
            ],
        ) {
            for line in out.lines() {
                if let Some((id, state)) = line.trim().split_once('|') {
                    // `CANCELLED by 0` → `CANCELLED`.
                    let state = state.split_whitespace().next().unwrap_or(state);
                    accounted.insert(id.to_owned(), state.to_owned());
                }
            }
        }
    }
    let logs = sweep.dir.join(LOGS);
    Some(
        latest
            .into_iter()
            .map(|(index, job)| {
                let id = format!("{job}_{index}");
                let log = logs.join(format!("{id}.out"));
                let state = queued.remove(&id).unwrap_or_else(|| TaskState::Ended {
                    state: accounted.remove(&id),
                    why: why_ended(&log),
                });
                (
                    index,
                    Task {
                        job,
                        index,
                        state,
                        log,
                    },
                )
            })
            .collect(),
    )
}

/// Why a task ended, from its log: `slurmstepd`'s `*** … CANCELLED … DUE TO TIME LIMIT ***` line,
/// else the workbench's last `error:` line.
fn why_ended(log: &Path) -> Option<String> {
    let text = fs::read_to_string(log).ok()?;
    let stepd = text
        .lines()
        .rev()
        .find(|l| l.contains("***") && l.contains("CANCELLED"));
    if let Some(line) = stepd {
        return Some(if line.contains("TIME LIMIT") {
            "the time limit".to_owned()
        } else {
            "scancel".to_owned()
        });
    }
    text.lines()
        .rev()
        .find_map(|l| l.strip_prefix("error: "))
        .map(|e| e.trim().to_owned())
}

/// One point of a sweep as `--status` shows it: its run folder's state and Slurm's task.
#[derive(Debug, Clone, PartialEq)]
pub struct PointStatus {
    pub index: usize,
    pub name: String,
    pub state: PointState,
    pub task: Option<Task>,
}

impl PointStatus {
    /// Whether `--resume-slurm` submits it again: no result yet, and not queued or running.
    pub fn needs_resubmit(&self) -> bool {
        !self.state.is_done() && !self.task.as_ref().is_some_and(Task::is_queued)
    }

    /// One line: the state in words, with Slurm's view where it adds something.
    pub fn describe(&self) -> String {
        let Some(task) = &self.task else {
            return self.state.to_string();
        };
        let id = task.id();
        // Why Slurm ended it: its log's word, else sacct's state, else `otherwise`.
        let why_ended = |why: &Option<String>, state: &Option<String>, otherwise: &str| {
            why.clone()
                .or_else(|| state.clone())
                .unwrap_or_else(|| otherwise.into())
        };
        match (&self.state, &task.state) {
            (PointState::Finished { .. }, _) => format!("{} (job {id})", self.state),
            (PointState::Pending, TaskState::Pending { reason }) => {
                format!("pending (job {id}, waiting: {reason})")
            }
            (state, TaskState::Pending { reason }) => {
                format!("queued again (job {id}, waiting: {reason}); {state}")
            }
            (PointState::Running { progress, .. }, TaskState::Running) => {
                format!("running at {progress} (job {id})")
            }
            (PointState::Pending, TaskState::Running) => format!("running: starting (job {id})"),
            (state, TaskState::Running) => format!("running again (job {id}); was {state}"),
            // Ended in Slurm, but the run folder never said so: the task was killed.
            (PointState::Running { progress, .. }, TaskState::Ended { state, why }) => {
                let why = why_ended(why, state, "ended without a summary");
                format!(
                    "failed at {progress}: killed by {why}; job {id}, log {}",
                    task.log.display()
                )
            }
            (PointState::Pending, TaskState::Ended { state, why }) => {
                let why = why_ended(why, state, "no run folder was made");
                format!(
                    "failed before it started: {why}; job {id}, log {}",
                    task.log.display()
                )
            }
            (PointState::Stopped { progress }, TaskState::Ended { why: Some(why), .. }) => {
                format!("stopped by {why} at {progress} (resumable); job {id}")
            }
            (state, TaskState::Ended { .. }) => {
                format!("{state}; job {id}, log {}", task.log.display())
            }
        }
    }
}

/// Every point of the sweep with its state (and, for a Slurm sweep, its latest task).
pub fn status(sweep: &SweepFolder) -> Vec<PointStatus> {
    let mut tasks = tasks(sweep).unwrap_or_default();
    sweep
        .manifest
        .points
        .iter()
        .enumerate()
        .map(|(index, p)| PointStatus {
            index,
            name: p.name.clone(),
            state: sweep.state(index),
            task: tasks.remove(&index),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ExperimentConfig;
    use crate::run::sweep::{Axis, expand};

    #[test]
    fn times_are_checked_as_slurm_reads_them() {
        for ok in ["10", "30:00", "01:30:00", "2-00", "1-12:00:00"] {
            assert!(valid_time(ok), "{ok}");
        }
        for bad in ["", "1h", "1:2:3:4", "-5", "a-01:00"] {
            assert!(!valid_time(bad), "{bad}");
        }
        let resources = Resources {
            time: Some("1h".into()),
            cpus_per_run: Some(0),
            ..Resources::default()
        };
        assert!(
            resources
                .check()
                .unwrap_err()
                .to_string()
                .starts_with("--time")
        );
        let resources = Resources {
            cpus_per_run: Some(0),
            ..Resources::default()
        };
        let err = resources.check().unwrap_err().to_string();
        assert!(err.starts_with("--cpus-per-run"), "{err}");
    }

    #[test]
    fn the_job_script_has_one_array_task_per_point_and_resumes_a_started_one() {
        let tmp = tempfile::tempdir().unwrap();
        let base = ExperimentConfig::from_toml(crate::QUICK_PRESET, "quick", &[]).unwrap();
        let axes = [Axis::parse("seed=1,2,3").unwrap()];
        let configs = expand(&base, &axes).unwrap();
        let sweep = SweepFolder::create(tmp.path(), &base, &axes, &configs).unwrap();
        let options = SlurmOptions {
            resources: Resources {
                partition: Some("gpu".into()),
                time: Some("00:20:00".into()),
                gpus_per_run: Some(1),
                cpus_per_run: Some(4),
            },
            backend: BackendChoice::Auto,
            binary: "/opt/it's here/sophon-workbench".into(),
        };
        let path = write_script(&sweep, &options).unwrap();
        let script = fs::read_to_string(&path).unwrap();
        for line in [
            "#SBATCH --array=0-2",
            "#SBATCH --partition=gpu",
            "#SBATCH --time=00:20:00",
            "#SBATCH --cpus-per-task=4",
            "#SBATCH --gres=gpu:1",
            "bin='/opt/it'\\''s here/sophon-workbench'",
            "backend=auto",
            "    'quick-seed3'",
            "    exec \"$bin\" resume \"$run_dir\" --backend \"$backend\"",
        ] {
            assert!(
                script.lines().any(|l| l == line),
                "{line:?} missing:\n{script}"
            );
        }
        assert!(path.starts_with(sweep.dir.canonicalize().unwrap()));
        // The script is valid bash.
        let check = Command::new("bash").arg("-n").arg(&path).status().unwrap();
        assert!(check.success());
        // Not submitted: no tasks, every point pending and to be submitted.
        assert!(tasks(&sweep).is_none());
        assert!(status(&sweep).iter().all(PointStatus::needs_resubmit));
    }

    #[test]
    fn a_tasks_log_says_why_slurm_ended_it() {
        let tmp = tempfile::tempdir().unwrap();
        let log = tmp.path().join("1_0.out");
        fs::write(
            &log,
            "run folder x\nslurmstepd: error: *** JOB 5 ON vm CANCELLED AT 2026-11-30T22:00:00 DUE TO TIME LIMIT ***\n",
        )
        .unwrap();
        assert_eq!(why_ended(&log).as_deref(), Some("the time limit"));
        fs::write(&log, "error: data/x.idx: not found\n").unwrap();
        assert_eq!(why_ended(&log).as_deref(), Some("data/x.idx: not found"));
        assert_eq!(why_ended(&tmp.path().join("none.out")), None);
    }
}

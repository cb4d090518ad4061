//! The sweep folder: one folder per sweep, the same for a local sweep and a Slurm one, so that
//! `sweep --status`, `sweep --resume-slurm` and the window open either the same way.
//!
//! ```text
//! <runs-dir>/<name>-sweep-<UTC time>/
//!   sweep.json           what was varied, and the points in order (an array task's index)
//!   points/<point>.toml  every point's fully resolved preset
//!   <point>/             every point's run folder (config.toml, metrics.jsonl, summary.json, …)
//!   slurm/               a Slurm sweep's job script, its submissions (jobs.jsonl) and task logs
//! ```

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::folder::{
    checkpointed_iteration, read_last_metrics, read_summary, utc_stamp, write_atomic,
};
use super::sweep::{Axis, grid};
use crate::config::ExperimentConfig;
use crate::sophon::series;
use crate::sophon::summary::{RunStatus, Summary};

/// The file that makes a folder a sweep folder.
pub const MANIFEST: &str = "sweep.json";
/// Every point's preset, under the sweep folder.
pub const POINTS: &str = "points";

/// Why a sweep folder cannot be written or read: the file is named.
#[derive(Debug, thiserror::Error)]
pub enum SweepFolderError {
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: io::Error },
    #[error("{path}: not a sweep folder ({error})")]
    Manifest { path: PathBuf, error: String },
}

impl SweepFolderError {
    fn io(path: &Path, error: io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            error,
        }
    }
}

/// One varied field, as `sweep.json` records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AxisRecord {
    pub path: String,
    pub values: Vec<String>,
}

/// One point of the grid: its name (the run folder's and the preset's file name) and the
/// fields it sets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointRecord {
    pub name: String,
    pub sets: Vec<String>,
}

/// `sweep.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The base preset's name.
    pub name: String,
    /// UTC time of creation, `YYYYMMDD-HHMMSS`.
    pub created: String,
    pub axes: Vec<AxisRecord>,
    /// In array-task order.
    pub points: Vec<PointRecord>,
}

/// An open sweep folder.
#[derive(Debug, Clone)]
pub struct SweepFolder {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

impl SweepFolder {
    /// A new folder `<runs_dir>/<base name>-sweep-<UTC time>` holding `sweep.json` and every
    /// point's preset (`configs` as [`super::sweep::expand`] made them from `axes`).
    pub fn create(
        runs_dir: &Path,
        base: &ExperimentConfig,
        axes: &[Axis],
        configs: &[ExperimentConfig],
    ) -> Result<Self, SweepFolderError> {
        let stamp = utc_stamp(SystemTime::now());
        let mut dir = runs_dir.join(format!("{}-sweep-{stamp}", base.name));
        let mut n = 1;
        while dir.exists() {
            n += 1;
            dir = runs_dir.join(format!("{}-sweep-{stamp}-{n}", base.name));
        }
        let points_dir = dir.join(POINTS);
        fs::create_dir_all(&points_dir).map_err(|e| SweepFolderError::io(&points_dir, e))?;
        let mut points = Vec::with_capacity(configs.len());
        for (config, point) in configs.iter().zip(grid(axes)) {
            let sets = point
                .iter()
                .map(|(axis, value)| format!("{}={value}", axis.path))
                .collect();
            let path = points_dir.join(format!("{}.toml", config.name));
            write_atomic(&path, config.to_toml().as_bytes())
                .map_err(|e| SweepFolderError::io(&path, e))?;
            points.push(PointRecord {
                name: config.name.clone(),
                sets,
            });
        }
        let manifest = Manifest {
            name: base.name.clone(),
            created: stamp,
            axes: axes
                .iter()
                .map(|a| AxisRecord {
                    path: a.path.clone(),
                    values: a.values.clone(),
                })
                .collect(),
            points,
        };
        let folder = Self { dir, manifest };
        folder.write_manifest()?;
        Ok(folder)
    }

    /// Open an existing sweep folder; the error names `sweep.json` and what is wrong with it.
    pub fn open(dir: &Path) -> Result<Self, SweepFolderError> {
        let path = dir.join(MANIFEST);
        let text = fs::read_to_string(&path).map_err(|e| SweepFolderError::Manifest {
            path: path.clone(),
            error: e.to_string(),
        })?;
        let manifest: Manifest =
            serde_json::from_str(&text).map_err(|e| SweepFolderError::Manifest {
                path: path.clone(),
                error: e.to_string(),
            })?;
        Ok(Self {
            dir: dir.to_path_buf(),
            manifest,
        })
    }

    /// Whether `dir` is a sweep folder (holds `sweep.json`).
    pub fn is_sweep(dir: &Path) -> bool {
        dir.join(MANIFEST).is_file()
    }

    fn write_manifest(&self) -> Result<(), SweepFolderError> {
        let path = self.dir.join(MANIFEST);
        let mut text = serde_json::to_string_pretty(&self.manifest)
            .map_err(|e| SweepFolderError::io(&path, io::Error::other(e)))?;
        text.push('\n');
        write_atomic(&path, text.as_bytes()).map_err(|e| SweepFolderError::io(&path, e))
    }

    /// The preset file of point `i`.
    pub fn preset(&self, i: usize) -> PathBuf {
        self.dir
            .join(POINTS)
            .join(format!("{}.toml", self.manifest.points[i].name))
    }

    /// The run folder of point `i`.
    pub fn run_dir(&self, i: usize) -> PathBuf {
        self.dir.join(&self.manifest.points[i].name)
    }

    /// Whether point `i` has started: its run folder holds `config.toml`, so the job script
    /// resumes it rather than starting it again.
    pub fn started(&self, i: usize) -> bool {
        self.run_dir(i).join("config.toml").is_file()
    }

    /// Point `i`'s state as its run folder tells it (Slurm's view is added by
    /// [`super::slurm`]).
    pub fn state(&self, i: usize) -> PointState {
        PointState::of(&self.run_dir(i))
    }

    /// The finished points' summaries (finished or diverged: a result stands), by name.
    pub fn finished(&self) -> Vec<(String, Summary)> {
        (0..self.manifest.points.len())
            .filter_map(|i| match read_summary(&self.run_dir(i)) {
                Ok(s) if is_done(s.status) => Some((self.manifest.points[i].name.clone(), s)),
                _ => None,
            })
            .collect()
    }
}

/// A run that ended with a result: finished, or diverged (its summary says where; running it
/// again would diverge again).
pub fn is_done(status: RunStatus) -> bool {
    matches!(status, RunStatus::Finished | RunStatus::Diverged)
}

/// Where a point stands, read from its run folder.
#[derive(Debug, Clone, PartialEq)]
pub enum PointState {
    /// No run folder yet.
    Pending,
    /// A run folder without an ending: the last phase it wrote, and how long ago.
    Running {
        progress: RunProgress,
        idle_seconds: Option<u64>,
    },
    /// Finished (or diverged, `status` says).
    Finished { status: RunStatus },
    /// Stopped at a safe point (a signal, a time limit); `resume` continues it.
    Stopped { progress: RunProgress },
    /// An error ended it.
    Failed {
        reason: String,
        progress: RunProgress,
    },
}

/// How far a run got: the last phase it wrote a measurement for, and its last SOPHON checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RunProgress {
    pub phase: Option<ProgressPhase>,
    /// The outer iteration of the last SOPHON checkpoint (`resume` continues from it).
    pub checkpoint: Option<usize>,
}

/// The phase of a run's last metric point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressPhase {
    Pretrain,
    /// At this outer iteration.
    Sophon(usize),
    Attack,
}

impl std::fmt::Display for RunProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.phase {
            None => f.write_str("starting")?,
            Some(ProgressPhase::Pretrain) => f.write_str("pre-training")?,
            Some(ProgressPhase::Sophon(n)) => write!(f, "SOPHON iteration {n}")?,
            Some(ProgressPhase::Attack) => f.write_str("the attack")?,
        }
        if let Some(c) = self.checkpoint {
            write!(f, ", checkpoint at {c}")?;
        }
        Ok(())
    }
}

impl RunProgress {
    /// Read from the end of a run folder's `metrics.jsonl` and its checkpoint state (cheap
    /// enough to do every second for every point of a watched sweep).
    pub fn of(dir: &Path) -> Self {
        let phase = read_last_metrics(dir, 64 * 1024).ok().and_then(|points| {
            points.iter().rev().find_map(|p| {
                if p.series.starts_with(series::ATTACK) {
                    Some(ProgressPhase::Attack)
                } else if p.series.starts_with(series::SOPHON) {
                    Some(ProgressPhase::Sophon(p.step))
                } else if p.series.starts_with(series::PRETRAIN) {
                    Some(ProgressPhase::Pretrain)
                } else {
                    None
                }
            })
        });
        Self {
            phase,
            checkpoint: checkpointed_iteration(dir),
        }
    }
}

impl PointState {
    pub fn of(dir: &Path) -> Self {
        if !dir.join("config.toml").is_file() && !dir.join("metrics.jsonl").is_file() {
            return Self::Pending;
        }
        let summary = read_summary(dir).ok();
        match summary.as_ref().map(|s| s.status) {
            Some(status) if is_done(status) => Self::Finished { status },
            Some(RunStatus::Stopped) => Self::Stopped {
                progress: RunProgress::of(dir),
            },
            Some(RunStatus::Failed) => Self::Failed {
                reason: summary
                    .and_then(|s| s.error)
                    .unwrap_or_else(|| "an error (summary.json names none)".into()),
                progress: RunProgress::of(dir),
            },
            _ => {
                let idle_seconds = fs::metadata(dir.join("metrics.jsonl"))
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .map(|d| d.as_secs());
                Self::Running {
                    progress: RunProgress::of(dir),
                    idle_seconds,
                }
            }
        }
    }

    /// Whether the point has its result.
    pub fn is_done(&self) -> bool {
        matches!(self, Self::Finished { .. })
    }
}

impl std::fmt::Display for PointState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Pending => f.write_str("pending"),
            Self::Running {
                progress,
                idle_seconds,
            } => {
                write!(f, "running at {progress}")?;
                match idle_seconds {
                    Some(s) if *s >= 60 => write!(f, " (nothing written for {s} s)"),
                    _ => Ok(()),
                }
            }
            Self::Finished { status } => f.write_str(status.name()),
            Self::Stopped { progress } => write!(f, "stopped at {progress} (resumable)"),
            Self::Failed { reason, progress } => write!(f, "failed at {progress}: {reason}"),
        }
    }
}

/// Every run folder in `base`: its direct children with a `summary.json`, and the points of
/// every sweep folder among them, so a sweep's runs list with the rest.
pub fn run_dirs(base: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(base) else {
        return Vec::new();
    };
    let mut dirs = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if SweepFolder::is_sweep(&path) {
            if let Ok(sweep) = SweepFolder::open(&path) {
                dirs.extend(
                    (0..sweep.manifest.points.len())
                        .map(|i| sweep.run_dir(i))
                        .filter(|d| d.join("summary.json").is_file()),
                );
            }
        } else if path.join("summary.json").is_file() {
            dirs.push(path);
        }
    }
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quick() -> ExperimentConfig {
        ExperimentConfig::from_toml(crate::QUICK_PRESET, "quick", &[]).unwrap()
    }

    #[test]
    fn a_sweep_folder_holds_every_points_resolved_preset_and_reads_back() {
        let tmp = tempfile::tempdir().unwrap();
        let axes = [
            Axis::parse("seed=1,2").unwrap(),
            Axis::parse("sophon.alpha=1e-3,5e-4,2e-4").unwrap(),
        ];
        let configs = super::super::sweep::expand(&quick(), &axes).unwrap();
        let sweep = SweepFolder::create(tmp.path(), &quick(), &axes, &configs).unwrap();
        assert!(SweepFolder::is_sweep(&sweep.dir));
        let again = SweepFolder::open(&sweep.dir).unwrap();
        assert_eq!(again.manifest, sweep.manifest);
        assert_eq!(again.manifest.points.len(), 6);
        assert_eq!(
            again.manifest.points[4].sets,
            ["seed=2", "sophon.alpha=5e-4"]
        );
        for (i, config) in configs.iter().enumerate() {
            let read = ExperimentConfig::load(&again.preset(i), &[]).unwrap();
            assert_eq!(&read, config, "point {i}");
            assert_eq!(again.state(i), PointState::Pending);
        }
        let err = SweepFolder::open(tmp.path()).unwrap_err().to_string();
        assert!(
            err.contains("sweep.json") && err.contains("not a sweep folder"),
            "{err}"
        );
    }

    #[test]
    fn a_points_state_comes_from_its_run_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("p");
        assert_eq!(PointState::of(&dir), PointState::Pending);
        let mut folder = super::super::folder::RunFolder::create_at(&dir).unwrap();
        folder
            .append_metric(&super::super::MetricPoint {
                series: series::FTS_LOSS.into(),
                step: 12,
                value: 0.5,
            })
            .unwrap();
        let state = PointState::of(&dir);
        assert!(
            matches!(&state, PointState::Running { progress, .. } if progress.phase == Some(ProgressPhase::Sophon(12))),
            "{state:?}"
        );
        assert_eq!(state.to_string(), "running at SOPHON iteration 12");
        let mut summary = Summary {
            status: RunStatus::Failed,
            error: Some("data/x.png: not an image".into()),
            ..Summary::default()
        };
        folder.write_summary(&summary).unwrap();
        assert_eq!(
            PointState::of(&dir).to_string(),
            "failed at SOPHON iteration 12: data/x.png: not an image"
        );
        summary.status = RunStatus::Diverged;
        folder.write_summary(&summary).unwrap();
        assert!(PointState::of(&dir).is_done());
    }
}

//! Past runs: every run is a run folder. The list reads their `summary.json`, overlays their
//! curves, and places each on the intactness vs non-fine-tunability scatter. Reading happens on
//! a background thread; this module only parses and draws.

use std::path::{Path, PathBuf};

use egui::{Color32, RichText, Ui};
use egui_plot::{Legend, Plot, Points};

use super::series::SeriesStore;
use crate::config::Start;
use crate::run::folder::{read_metrics, read_summary};
use crate::run::sweep_folder::{SweepFolder, is_done, run_dirs};
use crate::sophon::summary::Summary;

/// One run folder as the runs list shows it.
#[derive(Debug, Clone)]
pub struct RunEntry {
    pub dir: PathBuf,
    pub summary: Summary,
    /// Its curves, once loaded for an overlay.
    pub series: Option<SeriesStore>,
    pub overlay: bool,
    /// A watched sweep's point still without a result: where it stands ("running at SOPHON
    /// iteration 35, checkpoint at 34"), shown instead of the bare status.
    pub state: Option<String>,
}

impl RunEntry {
    pub fn label(&self) -> String {
        self.dir.file_name().map_or_else(
            || self.dir.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        )
    }

    /// Original-domain test measure of the final model (after SOPHON, else after
    /// pre-training): accuracy, or a denoiser's ε-MSE.
    pub fn intactness(&self) -> Option<f64> {
        let s = &self.summary;
        s.sophon
            .as_ref()
            .map(|p| p.scores.original)
            .or(s.pretrain.as_ref().map(|p| p.scores.original))
    }

    /// Restricted-domain accuracy an attacker reaches from the final model: the first strategy's
    /// final accuracy from the protected start (from the original one without SOPHON), else the
    /// last probe. Lower is less fine-tunable.
    pub fn fine_tunability(&self) -> Option<f64> {
        let s = &self.summary;
        let start = if s.sophon.is_some() {
            Start::Protected
        } else {
            Start::Original
        };
        s.attack
            .iter()
            .find(|a| a.start == start)
            .map(|a| a.final_score)
            .or(s.sophon.as_ref().and_then(|p| p.scores.probe))
    }
}

/// Read one run folder (summary only; curves load on demand).
pub fn read_run(dir: &Path) -> Result<RunEntry, String> {
    let summary =
        read_summary(dir).map_err(|e| format!("{}: not a run folder ({e})", dir.display()))?;
    Ok(RunEntry {
        dir: dir.to_path_buf(),
        summary,
        series: None,
        overlay: false,
        state: None,
    })
}

/// Every run folder directly inside `base` and inside the sweep folders there, oldest first (run
/// folder names start with the name and a UTC time, so name order is close; modification time
/// decides).
pub fn scan(base: &Path) -> Vec<RunEntry> {
    let mut runs: Vec<(std::time::SystemTime, RunEntry)> = run_dirs(base)
        .into_iter()
        .filter_map(|dir| {
            let time = std::fs::metadata(&dir).and_then(|m| m.modified()).ok()?;
            Some((time, read_run(&dir).ok()?))
        })
        .collect();
    runs.sort_by_key(|(t, _)| *t);
    runs.into_iter().map(|(_, r)| r).collect()
}

/// A watched sweep folder: every point that has started, in the sweep's order. A point still
/// running before its first `summary.json` is listed as running, named after the point.
pub fn scan_sweep(dir: &Path) -> Result<(Vec<RunEntry>, usize), String> {
    let sweep = SweepFolder::open(dir).map_err(|e| e.to_string())?;
    let total = sweep.manifest.points.len();
    let runs = (0..total)
        .filter_map(|i| {
            if !sweep.started(i) {
                return None;
            }
            let run = sweep.run_dir(i);
            let mut entry = read_run(&run).unwrap_or_else(|_| RunEntry {
                summary: Summary {
                    name: sweep.manifest.points[i].name.clone(),
                    ..Summary::default()
                },
                dir: run,
                series: None,
                overlay: false,
                state: None,
            });
            // Where an unfinished point stands (a finished one's summary says all).
            if !is_done(entry.summary.status) {
                entry.state = Some(sweep.state(i).to_string());
            }
            Some(entry)
        })
        .collect();
    Ok((runs, total))
}

/// A sweep folder the Runs tab watches: it lists the sweep's points instead of the runs folder,
/// read again every [`WATCH_EVERY`], and overlaid curves of running points follow their
/// `metrics.jsonl`.
#[derive(Debug, Clone)]
pub struct Watch {
    pub dir: PathBuf,
    /// Points in the sweep.
    pub total: usize,
    pub last: std::time::Instant,
    /// A read is in flight.
    pub reading: bool,
}

/// How often a watched sweep folder is read.
pub const WATCH_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// A run's curves as a series store.
pub fn load_series(dir: &Path) -> Result<SeriesStore, String> {
    let points =
        read_metrics(dir).map_err(|e| format!("{}: {e}", dir.join("metrics.jsonl").display()))?;
    let mut store = SeriesStore::default();
    for p in points {
        store.push(&p.series, p.step as f64, p.value);
    }
    Ok(store)
}

/// What the runs tab asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum RunsAction {
    Refresh,
    OpenFolder,
    /// Load the curves of the run at this index (for an overlay).
    LoadSeries(usize),
    Sweep,
    /// Ask for a sweep folder and watch it.
    OpenSweep,
    /// List the runs folder again instead of the watched sweep.
    StopWatching,
}

pub const SCATTER_PLOT: &str = "Intactness vs fine-tunability";

pub fn runs_ui(ui: &mut Ui, runs: &mut [RunEntry], watch: Option<&Watch>) -> Vec<RunsAction> {
    let mut actions = Vec::new();
    if let Some(w) = watch {
        ui.horizontal(|ui| {
            let finished = runs.iter().filter(|r| is_done(r.summary.status)).count();
            ui.label(
                RichText::new(format!(
                    "Watching sweep {}: {} of {} points started, {finished} finished",
                    w.dir.display(),
                    runs.len(),
                    w.total
                ))
                .strong(),
            );
            if ui
                .button("Stop watching")
                .on_hover_text("List the runs folder again")
                .clicked()
            {
                actions.push(RunsAction::StopWatching);
            }
        });
    }
    ui.horizontal(|ui| {
        if ui.button("Refresh").clicked() {
            actions.push(RunsAction::Refresh);
        }
        if ui.button("Open run folder…").clicked() {
            actions.push(RunsAction::OpenFolder);
        }
        if ui
            .button("Open sweep folder…")
            .on_hover_text("Watch a sweep folder (local or Slurm): its points appear and their curves grow as they run")
            .clicked()
        {
            actions.push(RunsAction::OpenSweep);
        }
        if ui
            .button("Sweep…")
            .on_hover_text("Queue runs over a grid of one or two knobs; each lands on the scatter as it finishes.")
            .clicked()
        {
            actions.push(RunsAction::Sweep);
        }
        ui.label(format!("{} runs", runs.len()));
    });
    let height = (ui.available_height() / 2.0).max(150.0);
    egui::ScrollArea::vertical()
        .id_salt("runs-list")
        .max_height(height)
        .show(ui, |ui| {
            egui::Grid::new("runs").striped(true).num_columns(6).show(ui, |ui| {
                for h in ["overlay", "run", "status", "verdict", "intactness", "attacked acc."] {
                    ui.label(RichText::new(h).strong());
                }
                ui.end_row();
                for (i, run) in runs.iter_mut().enumerate() {
                    if ui
                        .checkbox(&mut run.overlay, "")
                        .on_hover_text("Draw this run's intactness and probe curves beside the current run")
                        .changed()
                        && run.overlay
                        && run.series.is_none()
                    {
                        actions.push(RunsAction::LoadSeries(i));
                    }
                    ui.label(run.label()).on_hover_text(run.dir.display().to_string());
                    ui.label(run.state.as_deref().unwrap_or(run.summary.status.name()));
                    match &run.summary.verdict {
                        Some(v) => ui.label(v.status.name()).on_hover_text(&v.reason),
                        None => ui.label("—"),
                    };
                    ui.label(fmt(run.intactness()));
                    ui.label(fmt(run.fine_tunability()));
                    ui.end_row();
                }
            });
        });
    let groups = seed_groups(runs);
    if !groups.is_empty() {
        egui::CollapsingHeader::new("Over seeds: mean ± sd (n)")
            .id_salt("runs-spread")
            .show(ui, |ui| {
                for (name, members) in groups {
                    ui.label(RichText::new(format!("{name}: {} runs", members.len())).strong());
                    let table: Vec<(String, Summary)> = members
                        .iter()
                        .map(|&i| (runs[i].label(), runs[i].summary.clone()))
                        .collect();
                    egui::ScrollArea::horizontal()
                        .id_salt(format!("spread-{name}"))
                        .show(ui, |ui| ui.monospace(crate::run::sweep::report(&table)));
                }
            });
    }
    ui.label(SCATTER_PLOT).on_hover_text(
        "One point per run. Up is better intactness; left is less fine-tunable. Good loop ratios sit top-left.",
    );
    Plot::new(SCATTER_PLOT)
        .legend(Legend::default())
        .x_axis_label("restricted accuracy after the attack (lower is better)")
        .y_axis_label("original accuracy (higher is better)")
        .include_x(0.0)
        .include_x(1.0)
        .include_y(0.0)
        .include_y(1.0)
        .show(ui, |plot| {
            for run in runs.iter() {
                if let (Some(x), Some(y)) = (run.fine_tunability(), run.intactness()) {
                    let color = if run.summary.sophon.is_some() {
                        Color32::from_rgb(230, 70, 70)
                    } else {
                        Color32::from_rgb(80, 140, 240)
                    };
                    plot.points(
                        Points::new(run.label(), vec![[x, y]])
                            .radius(5.0)
                            .color(color),
                    );
                }
            }
        });
    actions
}

/// Runs that differ only by seed, grouped: the experiment name with its `-seed<N>` part (as
/// `sweep --vary seed=…` names runs) taken out; only groups of two or more finished runs.
pub fn seed_groups(runs: &[RunEntry]) -> Vec<(String, Vec<usize>)> {
    let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        let name = &run.summary.name;
        let Some(at) = name.find("-seed") else {
            continue;
        };
        let rest = &name[at + 5..];
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        if digits == 0 || run.summary.attack.is_empty() {
            continue;
        }
        let key = format!("{}{}", &name[..at], &rest[digits..]);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => members.push(i),
            None => groups.push((key, vec![i])),
        }
    }
    groups.retain(|(_, m)| m.len() > 1);
    groups
}

fn fmt(v: Option<f64>) -> String {
    v.map_or_else(|| "—".into(), |v| format!("{v:.3}"))
}

#[cfg(test)]
mod spread_tests {
    use super::*;
    use crate::config::Metric;
    use crate::sophon::attack::AttackResult;

    fn run(name: &str) -> RunEntry {
        let mut summary = Summary {
            name: name.into(),
            ..Summary::default()
        };
        summary.attack.push(AttackResult {
            strategy: "adam".into(),
            start: Start::Protected,
            metric: Metric::Acc,
            initial: 0.1,
            per_epoch: vec![0.3],
            final_score: 0.3,
            mean: 0.3,
            diverged: None,
        });
        RunEntry {
            dir: PathBuf::from(name),
            summary,
            series: None,
            overlay: false,
            state: None,
        }
    }

    #[test]
    fn runs_that_differ_by_seed_only_are_pooled() {
        let runs = [
            run("default-seed42"),
            run("default-seed7"),
            run("default-seed7-alpha1e-3"),
            run("default-seed3-alpha1e-3"),
            run("default"),
            run("quick-seed1"),
        ];
        let groups = seed_groups(&runs);
        assert_eq!(
            groups,
            [
                ("default".to_string(), vec![0, 1]),
                ("default-alpha1e-3".to_string(), vec![2, 3]),
            ]
        );
    }
}

//! Sweeps: a grid of preset fields, each point a copy of one experiment with those fields set
//! (the same dotted paths as `--set`), run one after another. The window's Sweep dialog and the
//! `sweep` command both expand their grid here, and the command reports the results as a table.

use crate::config::{ConfigError, ExperimentConfig, Start};
use crate::sophon::summary::Summary;

/// The knobs the window offers: dotted preset path and a label. The command line takes any path.
pub const KNOBS: [(&str, &str); 7] = [
    ("sophon.fts_loops", "ℓ_FTS"),
    ("sophon.ntr_loops", "ℓ_NTR"),
    ("sophon.alpha", "α"),
    ("sophon.beta", "β"),
    ("sophon.inner_steps", "K"),
    ("sophon.outer_iterations", "outer iterations"),
    ("seed", "seed"),
];

/// One varied field: its dotted path and the values it takes.
/// Why a sweep could not be laid out: the axis or the grid point is named.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("{path}: give at least one value")]
    NoValues { path: String },
    #[error("{text}: expected PATH=V1,V2,...")]
    Syntax { text: String },
    /// The point `point` (`path=value, ...`) is not a valid experiment.
    #[error("{point}: {error}")]
    Point { point: String, error: ConfigError },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    pub path: String,
    pub values: Vec<String>,
}

impl Axis {
    /// `path` with values separated by commas or spaces; an error names the path when none is
    /// given.
    pub fn new(path: &str, values: &str) -> Result<Self, SweepError> {
        let values: Vec<String> = values
            .split([',', ' '])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if values.is_empty() {
            return Err(SweepError::NoValues {
                path: path.to_owned(),
            });
        }
        Ok(Self {
            path: path.to_owned(),
            values,
        })
    }

    /// `PATH=V1,V2,...`, as `sweep --vary` takes it.
    pub fn parse(text: &str) -> Result<Self, SweepError> {
        let (path, values) = text.split_once('=').ok_or_else(|| SweepError::Syntax {
            text: text.to_owned(),
        })?;
        Self::new(path.trim(), values)
    }

    /// The last part of the path, for run names (`sophon.alpha` → `alpha`).
    fn short(&self) -> &str {
        self.path.rsplit('.').next().unwrap_or(&self.path)
    }
}

/// Every point of the grid (the first axis varies slowest), each named
/// `<base name>-<field><value>...`, or the first problem, naming the fields and values.
pub fn expand(base: &ExperimentConfig, axes: &[Axis]) -> Result<Vec<ExperimentConfig>, SweepError> {
    let text = base.to_toml();
    grid(axes)
        .into_iter()
        .map(|point| {
            let mut sets: Vec<String> = point
                .iter()
                .map(|(a, v)| format!("{}={v}", a.path))
                .collect();
            let what = sets.join(", ");
            let name: String = point
                .iter()
                .map(|(a, v)| format!("-{}{}", a.short(), name_part(v)))
                .collect();
            sets.push(format!("name=\"{}{name}\"", base.name));
            ExperimentConfig::from_toml(&text, "sweep", &sets)
                .map_err(|error| SweepError::Point { point: what, error })
        })
        .collect()
}

/// Every point of the grid as its (axis, value) pairs, the first axis varying slowest.
pub fn grid(axes: &[Axis]) -> Vec<Vec<(&Axis, &String)>> {
    let mut points: Vec<Vec<(&Axis, &String)>> = vec![Vec::new()];
    for axis in axes {
        points = points
            .into_iter()
            .flat_map(|p| {
                axis.values.iter().map(move |v| {
                    let mut p = p.clone();
                    p.push((axis, v));
                    p
                })
            })
            .collect();
    }
    points
}

/// A value as part of a run name: quotes dropped, a path reduced to its file stem, anything
/// but letters, digits and `. _ + -` replaced by `_`, at most 40 characters.
fn name_part(value: &str) -> String {
    let v = value.trim().trim_matches(['"', '\'']);
    let v = match v.rsplit(['/', '\\']).next() {
        Some(last) if v.contains(['/', '\\']) => {
            last.rsplit_once('.').map_or(last, |(stem, _)| stem)
        }
        _ => v,
    };
    v.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._+-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(40)
        .collect()
}

/// The sweep's results as a table: one row per run (its verdict, the pre-trained and the
/// protected model's original test measure, then for each attacker the final and mean
/// restricted measure from the protected and the scratch start, and the original start's
/// final), then, with more than one run, the mean and the sample standard deviation of every
/// column over the runs, and how many runs each verdict and each attacker's "held" got.
pub fn report(runs: &[(String, Summary)]) -> String {
    let strategies: Vec<&str> = runs
        .first()
        .map(|(_, s)| {
            let mut names: Vec<&str> = Vec::new();
            for a in &s.attack {
                if !names.contains(&a.strategy.as_str()) {
                    names.push(&a.strategy);
                }
            }
            names
        })
        .unwrap_or_default();
    let name_width = runs.iter().map(|(n, _)| n.len()).max().unwrap_or(3).max(4);
    const GROUP: [&str; 5] = ["protected", "p. mean", "scratch", "s. mean", "original"];
    const LEAD: [&str; 2] = ["pre-trained", "intactness"];
    let group_width = GROUP.len() * 10;
    let verdict_width = 14;
    let mut header = format!(
        "{:<name_width$}  {:<verdict_width$}  {:>22}",
        "", "", "original test:"
    );
    let mut sub = format!("{:<name_width$}  {:<verdict_width$}  ", "run", "verdict");
    for g in LEAD {
        sub.push_str(&format!("{g:>11}"));
    }
    for s in &strategies {
        // A long strategy name is cut to its group's width, so the columns stay aligned.
        let label: String = format!("{s}, restricted test after the attack:")
            .chars()
            .take(group_width)
            .collect();
        header.push_str(&format!("  {label:<group_width$}"));
        sub.push_str("  ");
        for g in GROUP {
            sub.push_str(&format!("{g:>10}"));
        }
    }
    let line = |name: &str, verdict: &str, row: &[f64]| {
        let mut line = format!("{name:<name_width$}  {verdict:<verdict_width$}  ");
        for v in &row[..LEAD.len()] {
            line.push_str(&cell(*v, 11));
        }
        for chunk in row[LEAD.len()..].chunks(GROUP.len()) {
            line.push_str("  ");
            for v in chunk {
                line.push_str(&cell(*v, 10));
            }
        }
        line
    };
    let mut lines = vec![header.trim_end().to_owned(), sub.trim_end().to_owned()];
    let rows: Vec<Vec<f64>> = runs.iter().map(|(_, s)| row(s, &strategies)).collect();
    for ((name, summary), row) in runs.iter().zip(&rows) {
        let verdict = summary.verdict.as_ref().map_or("-", |v| v.status.name());
        lines.push(line(name, verdict, row));
    }
    if runs.len() > 1 {
        let columns = rows.first().map_or(0, Vec::len);
        let stats: Vec<(f64, f64)> = (0..columns)
            .map(|c| mean_sd(rows.iter().map(|r| r[c])))
            .collect();
        let mean: Vec<f64> = stats.iter().map(|s| s.0).collect();
        let sd: Vec<f64> = stats.iter().map(|s| s.1).collect();
        lines.push(line("mean", "", &mean));
        lines.push(line("sd", "", &sd));
        lines.push(String::new());
        lines.push(counts(runs, &strategies));
    }
    lines.join("\n")
}

/// Mean and sample standard deviation of the finite values (NaN where there are none; sd NaN
/// for a single value).
pub fn mean_sd(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let v: Vec<f64> = values.filter(|v| v.is_finite()).collect();
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    if v.len() < 2 {
        return (mean, f64::NAN);
    }
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

/// "n = 4 runs; verdicts: protected 3, not protected 1; held (final and mean): reference 4/4, …"
fn counts(runs: &[(String, Summary)], strategies: &[&str]) -> String {
    use crate::sophon::verdict::VerdictStatus;
    let n = runs.len();
    let mut verdicts: Vec<String> = Vec::new();
    for status in [
        VerdictStatus::Protected,
        VerdictStatus::NotProtected,
        VerdictStatus::NotIntact,
        VerdictStatus::Destroyed,
        VerdictStatus::Incomplete,
    ] {
        let k = runs
            .iter()
            .filter(|(_, s)| s.verdict.as_ref().is_some_and(|v| v.status == status))
            .count();
        if k > 0 {
            verdicts.push(format!("{status} {k}"));
        }
    }
    let without = runs.iter().filter(|(_, s)| s.verdict.is_none()).count();
    if without > 0 {
        verdicts.push(format!("no verdict {without}"));
    }
    let held: Vec<String> = strategies
        .iter()
        .map(|name| {
            let k = runs
                .iter()
                .filter(|(_, s)| {
                    s.verdict.as_ref().is_some_and(|v| {
                        v.attackers.iter().any(|a| {
                            a.attacker == *name
                                && a.held_final == Some(true)
                                && a.held_mean == Some(true)
                        })
                    })
                })
                .count();
            format!("{name} {k}/{n}")
        })
        .collect();
    format!(
        "n = {n} runs; verdicts: {}; protected start no better than scratch (final and mean): {}",
        verdicts.join(", "),
        held.join(", ")
    )
}

/// One run's figures: pre-trained and protected original test measure, then per strategy the
/// protected start's final and mean, scratch's final and mean, and the original start's final
/// (NaN where missing, e.g. a run without SOPHON or a diverged attack).
fn row(summary: &Summary, strategies: &[&str]) -> Vec<f64> {
    let pretrained = summary
        .pretrain
        .as_ref()
        .map_or(f64::NAN, |p| p.scores.original);
    let intactness = summary
        .sophon
        .as_ref()
        .map_or(f64::NAN, |s| s.scores.original);
    let find = |strategy: &str, start: Start| {
        summary
            .attack
            .iter()
            .find(|a| a.strategy == strategy && a.start == start && a.diverged.is_none())
    };
    let mut row = vec![pretrained, intactness];
    for s in strategies {
        let protected = find(s, Start::Protected);
        let scratch = find(s, Start::Scratch);
        row.push(protected.map_or(f64::NAN, |a| a.final_score));
        row.push(protected.map_or(f64::NAN, |a| a.mean));
        row.push(scratch.map_or(f64::NAN, |a| a.final_score));
        row.push(scratch.map_or(f64::NAN, |a| a.mean));
        row.push(find(s, Start::Original).map_or(f64::NAN, |a| a.final_score));
    }
    row
}

fn cell(v: f64, width: usize) -> String {
    if v.is_nan() {
        format!("{:>width$}", "-")
    } else {
        format!("{v:>width$.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_become_safe_run_names() {
        assert_eq!(name_part("3e-4"), "3e-4");
        assert_eq!(name_part("\"ice+feature-dos\""), "ice+feature-dos");
        assert_eq!(
            name_part("/runs/a/checkpoints/pretrained.bpk"),
            "pretrained"
        );
        assert_eq!(
            name_part("{ min_original_acc = 0.5 }"),
            "__min_original_acc___0.5__"
        );
        let base = ExperimentConfig::from_toml(crate::QUICK_PRESET, "quick", &[]).unwrap();
        let axis = Axis::parse("pretrain.load=/x/a.bpk,/y/b.bpk").unwrap();
        let points = expand(&base, &[axis]).unwrap();
        assert_eq!(points[0].name, "quick-loada");
        assert_eq!(
            points[1].pretrain.load.as_deref(),
            Some(std::path::Path::new("/y/b.bpk"))
        );
    }

    fn quick() -> ExperimentConfig {
        ExperimentConfig::from_toml(crate::QUICK_PRESET, "quick", &[]).unwrap()
    }

    #[test]
    fn a_grid_of_two_axes_gives_every_combination_named_after_its_values() {
        let axes = [
            Axis::parse("seed=1,2").unwrap(),
            Axis::parse("sophon.alpha=1e-3 5e-4").unwrap(),
        ];
        let runs = expand(&quick(), &axes).unwrap();
        let got: Vec<(u64, f64, &str)> = runs
            .iter()
            .map(|c| (c.seed, c.sophon.as_ref().unwrap().alpha, c.name.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (1, 1e-3, "quick-seed1-alpha1e-3"),
                (1, 5e-4, "quick-seed1-alpha5e-4"),
                (2, 1e-3, "quick-seed2-alpha1e-3"),
                (2, 5e-4, "quick-seed2-alpha5e-4"),
            ]
        );
    }

    #[test]
    fn the_report_keeps_its_columns_aligned_for_long_strategy_names() {
        use crate::config::Metric;
        use crate::sophon::attack::AttackResult;
        let mut summary = Summary::default();
        for strategy in ["reference", "a-very-long-strategy-name-from-a-preset"] {
            for start in [Start::Protected, Start::Original, Start::Scratch] {
                summary.attack.push(AttackResult {
                    strategy: strategy.into(),
                    start,
                    metric: Metric::Acc,
                    initial: 0.1,
                    per_epoch: vec![0.5],
                    final_score: 0.5,
                    mean: 0.5,
                    diverged: None,
                });
            }
        }
        let report = report(&[("run-a".into(), summary.clone()), ("b".into(), summary)]);
        let lines: Vec<&str> = report.lines().collect();
        // The second group starts at the same column in the header, the column names, the rows
        // and the mean and sd rows.
        let group = "run-a".len() + 2 + 14 + 2 + 22 + (2 + 50) + 2;
        assert!(lines[0][group..].starts_with("a-very-long"), "{report}");
        assert!(lines[1][group..].starts_with(" protected"), "{report}");
        for row in &lines[2..5] {
            assert!(row[group..].starts_with("     0.500"), "{report}");
        }
        assert!(lines[5].starts_with("sd ") && lines[5][group..].starts_with("     0.000"));
        assert!(lines[7].starts_with("n = 2 runs"), "{report}");
    }

    #[test]
    fn mean_and_sample_sd_skip_missing_values() {
        let (m, sd) = mean_sd([0.2, 0.4, f64::NAN, 0.6].into_iter());
        assert!((m - 0.4).abs() < 1e-12);
        assert!((sd - 0.2).abs() < 1e-12, "sample sd (n − 1): {sd}");
        assert!(mean_sd([0.5].into_iter()).1.is_nan());
        assert!(mean_sd(std::iter::empty()).0.is_nan());
    }

    #[test]
    fn a_bad_axis_names_its_field_and_value() {
        assert!(
            Axis::parse("seed")
                .unwrap_err()
                .to_string()
                .contains("PATH=V1,V2")
        );
        assert!(
            Axis::parse("seed=")
                .unwrap_err()
                .to_string()
                .contains("seed")
        );
        let err = expand(&quick(), &[Axis::parse("sophon.inner_steps=4,0").unwrap()]).unwrap_err();
        assert!(err.to_string().contains("sophon.inner_steps=0"), "{err}");
        let err = expand(&quick(), &[Axis::parse("sophon.no_such=1").unwrap()]).unwrap_err();
        assert!(err.to_string().contains("no_such"), "{err}");
    }
}

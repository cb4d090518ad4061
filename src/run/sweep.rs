//! Sweeps: a grid of preset fields, each point a copy of one experiment with those fields set
//! (the same dotted paths as `--set`), run one after another. The window's Sweep dialog and the
//! `sweep` command both expand their grid here, and the command reports the results as a table.

use crate::config::{ExperimentConfig, Start};
use crate::sophon::experiment::Summary;

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
#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    pub path: String,
    pub values: Vec<String>,
}

impl Axis {
    /// `path` with values separated by commas or spaces; an error names the path when none is
    /// given.
    pub fn new(path: &str, values: &str) -> Result<Self, String> {
        let values: Vec<String> = values
            .split([',', ' '])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if values.is_empty() {
            return Err(format!("{path}: give at least one value"));
        }
        Ok(Self {
            path: path.to_owned(),
            values,
        })
    }

    /// `PATH=V1,V2,...`, as `sweep --vary` takes it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (path, values) = text
            .split_once('=')
            .ok_or_else(|| format!("{text}: expected PATH=V1,V2,..."))?;
        Self::new(path.trim(), values)
    }

    /// The last part of the path, for run names (`sophon.alpha` → `alpha`).
    fn short(&self) -> &str {
        self.path.rsplit('.').next().unwrap_or(&self.path)
    }
}

/// Every point of the grid (the first axis varies slowest), each named
/// `<base name>-<field><value>...`, or the first problem, naming the fields and values.
pub fn expand(base: &ExperimentConfig, axes: &[Axis]) -> Result<Vec<ExperimentConfig>, String> {
    let text = base.to_toml();
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
            ExperimentConfig::from_toml(&text, "sweep", &sets).map_err(|e| format!("{what}: {e}"))
        })
        .collect()
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

/// The sweep's results as a table: one row per run (intactness after SOPHON, then for each
/// attacker strategy the protected model's final / mean restricted measure, and the original's
/// and scratch model's final), and, with more than one run, a row of means over the runs.
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
    const GROUP: [&str; 4] = ["protected", "p. mean", "original", "scratch"];
    let group_width = GROUP.len() * 10;
    let mut header = format!("{:<name_width$}  {:>10}", "", "");
    let mut sub = format!("{:<name_width$}  {:>10}", "run", "intactness");
    for s in &strategies {
        // A long strategy name is cut to its group's width, so the columns stay aligned.
        let label: String = format!("{s}, after the attack:")
            .chars()
            .take(group_width)
            .collect();
        header.push_str(&format!("  {label:<group_width$}"));
        sub.push_str("  ");
        for g in GROUP {
            sub.push_str(&format!("{g:>10}"));
        }
    }
    let line = |name: &str, row: &[f64]| {
        let mut line = format!("{name:<name_width$}  {}", cell(row[0], 10));
        for chunk in row[1..].chunks(GROUP.len()) {
            line.push_str("  ");
            for v in chunk {
                line.push_str(&cell(*v, 10));
            }
        }
        line
    };
    let mut lines = vec![header.trim_end().to_owned(), sub.trim_end().to_owned()];
    let mut sums = vec![0.0; 1 + GROUP.len() * strategies.len()];
    for (name, summary) in runs {
        let row = row(summary, &strategies);
        lines.push(line(name, &row));
        for (s, v) in sums.iter_mut().zip(row) {
            *s += v;
        }
    }
    if runs.len() > 1 {
        let mean: Vec<f64> = sums.iter().map(|s| s / runs.len() as f64).collect();
        lines.push(line("mean", &mean));
    }
    lines.join("\n")
}

/// One run's figures: intactness, then per strategy protected final, protected mean, original
/// final, scratch final (NaN where missing, e.g. a run without SOPHON).
fn row(summary: &Summary, strategies: &[&str]) -> Vec<f64> {
    let intactness = summary
        .sophon
        .as_ref()
        .map_or(f64::NAN, |s| s.scores.original);
    let find = |strategy: &str, start: Start| {
        summary
            .attack
            .iter()
            .find(|a| a.strategy == strategy && a.start == start)
    };
    let mut row = vec![intactness];
    for s in strategies {
        let protected = find(s, Start::Protected);
        row.push(protected.map_or(f64::NAN, |a| a.final_score));
        row.push(protected.map_or(f64::NAN, |a| a.mean));
        row.push(find(s, Start::Original).map_or(f64::NAN, |a| a.final_score));
        row.push(find(s, Start::Scratch).map_or(f64::NAN, |a| a.final_score));
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
        use crate::sophon::attack::AttackResult;
        use crate::sophon::task::Metric;
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
        // The second group starts at the same column in the header, the column names and the rows.
        let group = "run-a".len() + 2 + 10 + (2 + 40) + 2;
        assert!(lines[0][group..].starts_with("a-very-long"), "{report}");
        assert!(lines[1][group..].starts_with(" protected"), "{report}");
        for row in &lines[2..] {
            assert!(row[group..].starts_with("     0.500"), "{report}");
        }
    }

    #[test]
    fn a_bad_axis_names_its_field_and_value() {
        assert!(Axis::parse("seed").unwrap_err().contains("PATH=V1,V2"));
        assert!(Axis::parse("seed=").unwrap_err().contains("seed"));
        let err = expand(&quick(), &[Axis::parse("sophon.inner_steps=4,0").unwrap()]).unwrap_err();
        assert!(err.contains("sophon.inner_steps=0"), "{err}");
        let err = expand(&quick(), &[Axis::parse("sophon.no_such=1").unwrap()]).unwrap_err();
        assert!(err.contains("no_such"), "{err}");
    }
}

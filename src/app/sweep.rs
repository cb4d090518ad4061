//! The sweep dialog: a grid of one or two knobs, each run a copy of the current experiment with
//! those fields set (the same `--set` paths the command line takes).

use egui::Ui;

use crate::config::ExperimentConfig;

/// The knobs a sweep can vary: dotted preset path and a label.
pub const KNOBS: [(&str, &str); 7] = [
    ("sophon.fts_loops", "ℓ_FTS"),
    ("sophon.ntr_loops", "ℓ_NTR"),
    ("sophon.alpha", "α"),
    ("sophon.beta", "β"),
    ("sophon.inner_steps", "K"),
    ("sophon.outer_iterations", "outer iterations"),
    ("seed", "seed"),
];

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct SweepSpec {
    pub knob1: String,
    pub values1: String,
    /// Empty: a one-knob sweep.
    pub knob2: String,
    pub values2: String,
}

impl Default for SweepSpec {
    fn default() -> Self {
        Self {
            knob1: "sophon.fts_loops".into(),
            values1: "1, 2".into(),
            knob2: "sophon.alpha".into(),
            values2: "5e-4, 1e-3".into(),
        }
    }
}

fn values(text: &str) -> Vec<String> {
    text.split([',', ' '])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The experiments of the sweep, or the first problem (naming the knob and value).
pub fn expand(base: &ExperimentConfig, spec: &SweepSpec) -> Result<Vec<ExperimentConfig>, String> {
    let v1 = values(&spec.values1);
    if v1.is_empty() {
        return Err(format!("{}: give at least one value", spec.knob1));
    }
    let second: Vec<Option<String>> = if spec.knob2.is_empty() {
        vec![None]
    } else {
        let v2 = values(&spec.values2);
        if v2.is_empty() {
            return Err(format!("{}: give at least one value", spec.knob2));
        }
        v2.into_iter().map(Some).collect()
    };
    let text = base.to_toml();
    let mut out = Vec::new();
    for a in &v1 {
        for b in &second {
            let mut sets = vec![format!("{}={a}", spec.knob1)];
            let mut name = format!("{}-{}{a}", base.name, short(&spec.knob1));
            if let Some(b) = b {
                sets.push(format!("{}={b}", spec.knob2));
                name.push_str(&format!("-{}{b}", short(&spec.knob2)));
            }
            sets.push(format!("name=\"{name}\""));
            let config = ExperimentConfig::from_toml(&text, "sweep", &sets)
                .map_err(|e| format!("{}: {e}", sets[..sets.len() - 1].join(", ")))?;
            out.push(config);
        }
    }
    Ok(out)
}

fn short(knob: &str) -> &str {
    knob.rsplit('.').next().unwrap_or(knob)
}

/// The dialog's body; returns true when the user asks to queue the runs.
pub fn sweep_ui(
    ui: &mut Ui,
    spec: &mut SweepSpec,
    preview: &Result<Vec<ExperimentConfig>, String>,
) -> bool {
    egui::Grid::new("sweep").num_columns(3).show(ui, |ui| {
        for (knob, vals, id, optional) in [
            (&mut spec.knob1, &mut spec.values1, "knob1", false),
            (&mut spec.knob2, &mut spec.values2, "knob2", true),
        ] {
            let label = KNOBS
                .iter()
                .find(|(k, _)| *k == knob.as_str())
                .map_or("none", |(_, l)| l);
            egui::ComboBox::from_id_salt(id)
                .selected_text(label)
                .show_ui(ui, |ui| {
                    if optional {
                        ui.selectable_value(knob, String::new(), "none");
                    }
                    for (k, l) in KNOBS {
                        ui.selectable_value(knob, k.to_owned(), l);
                    }
                });
            ui.add_enabled(
                !knob.is_empty(),
                egui::TextEdit::singleline(vals).hint_text("1, 2, 4"),
            );
            ui.end_row();
        }
    });
    match preview {
        Ok(runs) => {
            ui.label(format!("{} runs, one after another", runs.len()));
            ui.button(format!("Queue {} runs", runs.len())).clicked()
        }
        Err(e) => {
            ui.colored_label(egui::Color32::LIGHT_RED, format!("Problem: {e}"));
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_two_knob_sweep_is_the_grid_of_both() {
        let base = ExperimentConfig::from_toml(crate::QUICK_PRESET, "quick", &[]).unwrap();
        let spec = SweepSpec {
            knob1: "sophon.fts_loops".into(),
            values1: "0, 1, 2".into(),
            knob2: "sophon.alpha".into(),
            values2: "1e-3 3e-3".into(),
        };
        let runs = expand(&base, &spec).unwrap();
        assert_eq!(runs.len(), 6);
        let s = runs[5].sophon.as_ref().unwrap();
        assert_eq!((s.fts_loops, s.alpha), (2, 3e-3));
        assert_eq!(runs[5].name, "quick-fts_loops2-alpha3e-3");
        let one = SweepSpec {
            knob2: String::new(),
            ..spec.clone()
        };
        assert_eq!(expand(&base, &one).unwrap().len(), 3);
        let bad = SweepSpec {
            values1: "-1".into(),
            ..spec
        };
        assert!(expand(&base, &bad).unwrap_err().contains("fts_loops"));
    }
}

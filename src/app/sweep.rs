//! The sweep dialog: a grid of one or two knobs, each run a copy of the current experiment with
//! those fields set (`run::sweep` expands it, as for the `sweep` command).

use egui::Ui;

use crate::config::ExperimentConfig;
use crate::run::sweep::{self, Axis, KNOBS, SweepError};

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

/// The experiments of the sweep and its axes, or the first problem (naming the knob and value).
pub fn expand(
    base: &ExperimentConfig,
    spec: &SweepSpec,
) -> Result<(Vec<ExperimentConfig>, Vec<Axis>), SweepError> {
    let mut axes = vec![Axis::new(&spec.knob1, &spec.values1)?];
    if !spec.knob2.is_empty() {
        axes.push(Axis::new(&spec.knob2, &spec.values2)?);
    }
    Ok((sweep::expand(base, &axes)?, axes))
}

/// The dialog's body; returns true when the user asks to queue the runs.
pub fn sweep_ui(
    ui: &mut Ui,
    spec: &mut SweepSpec,
    preview: &Result<(Vec<ExperimentConfig>, Vec<Axis>), SweepError>,
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
        Ok((runs, _)) => {
            ui.label(format!(
                "{} runs, one after another, in one sweep folder",
                runs.len()
            ));
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
        let (runs, axes) = expand(&base, &spec).unwrap();
        assert_eq!(axes.len(), 2);
        assert_eq!(runs.len(), 6);
        let s = runs[5].sophon.as_ref().unwrap();
        assert_eq!((s.fts_loops, s.alpha), (2, 3e-3));
        assert_eq!(runs[5].name, "quick-fts_loops2-alpha3e-3");
        let one = SweepSpec {
            knob2: String::new(),
            ..spec.clone()
        };
        assert_eq!(expand(&base, &one).unwrap().0.len(), 3);
        let bad = SweepSpec {
            values1: "-1".into(),
            ..spec
        };
        assert!(
            expand(&base, &bad)
                .unwrap_err()
                .to_string()
                .contains("fts_loops")
        );
    }
}

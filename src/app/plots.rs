//! Live curves: intactness and the probe, SOPHON's losses, pre-training, and the attack's
//! fine-tuning curves of protected / original / scratch on one plot. Plots draw decimated,
//! optionally smoothed views of the full history kept in a [`SeriesStore`].

use egui::{Color32, Id, Ui};
use egui_plot::{Legend, Line, LineStyle, MarkerShape, Plot, PlotUi, Points, VLine};

use super::series::{SeriesStore, decimate, segments, smooth};
use crate::config::{Metric, Start};
use crate::sophon::series as names;

/// A live change of a knob, drawn as a vertical line at the outer iteration it applied from.
#[derive(Debug, Clone, PartialEq)]
pub struct Marker {
    pub step: f64,
    pub label: String,
}

/// A past run's curves drawn beside the current one.
pub struct Overlay<'a> {
    pub name: &'a str,
    pub series: &'a SeriesStore,
}

/// What the plots remember between frames.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct PlotSettings {
    /// EMA weight on the past for the loss curves (0 = raw only).
    pub smoothing: f64,
    /// The attacker strategy whose curves are shown.
    pub strategy: Option<String>,
    /// Presenter mode: thicker lines, and the attack plot's gaps labelled (not remembered).
    #[serde(skip)]
    pub presenter: bool,
}

impl Default for PlotSettings {
    fn default() -> Self {
        Self {
            smoothing: 0.6,
            strategy: None,
            presenter: false,
        }
    }
}

impl PlotSettings {
    /// How much thicker than usual lines are drawn.
    fn thickness(&self) -> f32 {
        if self.presenter { 2.0 } else { 1.0 }
    }
}

pub const INTACT: Color32 = Color32::from_rgb(80, 200, 120);
pub const PROBE: Color32 = Color32::from_rgb(240, 150, 40);
const FTS: Color32 = Color32::from_rgb(220, 80, 80);
const NTR: Color32 = Color32::from_rgb(90, 150, 240);
const PROTECTED: Color32 = Color32::from_rgb(230, 70, 70);
const ORIGINAL: Color32 = Color32::from_rgb(80, 140, 240);
const SCRATCH: Color32 = Color32::from_rgb(170, 170, 170);

/// Draw one series: the raw line (faint when smoothed), the smoothed line, broken at NaN, at
/// most about two points per pixel.
fn draw(
    plot: &mut PlotUi<'_>,
    name: &str,
    points: &[[f64; 2]],
    color: Color32,
    smoothing: f64,
    style: LineStyle,
    thickness: f32,
) {
    let buckets = (plot.transform().frame().width() as usize).max(64);
    let raw = decimate(points, buckets);
    let smoothed = (smoothing > 0.0).then(|| decimate(&smooth(points, smoothing), buckets));
    let raw_color = if smoothed.is_some() {
        color.gamma_multiply(0.3)
    } else {
        color
    };
    let raw_name = if smoothed.is_some() {
        format!("{name} (raw)")
    } else {
        name.to_owned()
    };
    for seg in segments(&raw) {
        plot.line(
            Line::new(raw_name.as_str(), seg)
                .color(raw_color)
                .width(1.5 * thickness)
                .style(style),
        );
    }
    if let Some(s) = smoothed {
        for seg in segments(&s) {
            plot.line(
                Line::new(name, seg)
                    .color(color)
                    .width(2.0 * thickness)
                    .style(style),
            );
        }
    }
}

fn markers_on(plot: &mut PlotUi<'_>, markers: &[Marker], cursor: Option<f64>) {
    if let Some(x) = cursor {
        plot.vline(
            VLine::new("sample grids", x)
                .color(Color32::from_rgb(200, 120, 230))
                .width(2.0),
        );
    }
    for m in markers {
        plot.vline(
            VLine::new(m.label.clone(), m.step)
                .color(Color32::from_rgb(200, 200, 90))
                .style(LineStyle::dashed_loose()),
        );
    }
}

/// A plot over outer iterations whose x-axis and cursor follow the other SOPHON plot's.
fn sophon_plot(name: &str, height: f32, group: Id) -> Plot<'_> {
    Plot::new(name)
        .height(height)
        .legend(Legend::default())
        .link_axis(group, [true, false])
        .link_cursor(group, [true, false])
        .x_axis_label("outer iteration")
}

/// The legend entry of model selection's pick on the intactness plot.
const HANDED_ON: &str = "handed on (model selection)";

/// The plot names, so tests can find them.
pub const INTACTNESS_PLOT: &str = "Intactness and non-fine-tunability probe";
pub const LOSS_PLOT: &str = "SOPHON losses";
pub const ATTACK_PLOT: &str = "Attack: fine-tuning on the restricted domain";
pub const PRETRAIN_PLOT: &str = "Pre-training loss";

/// The attacker strategies that have curves in `store`.
pub fn strategies(store: &SeriesStore) -> Vec<String> {
    let mut names: Vec<String> = store
        .with_prefix(names::ATTACK)
        .filter_map(|(n, _)| n.split('/').nth(1).map(str::to_owned))
        .collect();
    names.dedup();
    names
}

/// The curves of a run whose task is measured by `metric`; `cursor` marks the outer iteration
/// of the sample grids shown beside them.
pub fn curves_ui(
    ui: &mut Ui,
    store: &SeriesStore,
    metric: Metric,
    overlays: &[Overlay<'_>],
    markers: &[Marker],
    cursor: Option<f64>,
    settings: &mut PlotSettings,
) {
    let (what, keep) = match metric {
        Metric::Acc => ("accuracy", ("high", "low")),
        Metric::Mse => ("ε-MSE", ("low", "high")),
    };
    ui.horizontal(|ui| {
        ui.add(egui::Slider::new(&mut settings.smoothing, 0.0..=0.99).text("smoothing"))
            .on_hover_text(
                "Exponential moving average of the loss curves; the raw line stays visible, faint.",
            );
        ui.separator();
        ui.label(format!("{} points", store.len()));
    });
    let group = Id::unique("sophon-x");
    let thick = settings.thickness();
    let presenter = settings.presenter;
    let height = ((ui.available_height() - 60.0) / 2.0).max(120.0);
    let width = ui.available_width() / 2.0 - 8.0;
    ui.horizontal(|ui| {
        ui.vertical(|ui| {
            ui.set_width(width);
            ui.label(INTACTNESS_PLOT).on_hover_text(format!(
                "All on the validation splits (what model selection and the guard read; test is kept for the final figures). Green: original-domain validation {what} (keep it {}). Orange: restricted validation {what} after a short fine-tune of a copy on the restricted training split (keep it {}). Dotted (classifiers): the share of the hidden units feeding the head that are on, per domain's validation images; feature DoS drives the restricted one down.",
                keep.0, keep.1
            ));
            let intact = names::sophon_original(metric);
            let probe = names::sophon_probe(metric);
            let plot = sophon_plot(INTACTNESS_PLOT, height, group).include_y(0.0);
            let plot = match metric {
                Metric::Acc => plot.include_y(1.0),
                Metric::Mse => plot,
            };
            plot.show(ui, |plot| {
                    for (series, label, color) in [
                        (intact.as_str(), "intactness (validation)", INTACT),
                        (probe.as_str(), "probe (restricted validation)", PROBE),
                    ] {
                        if let Some(p) = store.get(series) {
                            draw(plot, label, p, color, 0.0, LineStyle::Solid, thick);
                        }
                        for o in overlays {
                            if let Some(p) = o.series.get(series) {
                                let name = format!("{label}: {}", o.name);
                                draw(plot, &name, p, color, 0.0, LineStyle::dashed_dense(), thick);
                            }
                        }
                    }
                    // The model handed on by model selection, where it kept one: a diamond in
                    // its curve's colour, ringed in the text colour so it stands out on the line.
                    let ring = plot.ctx().global_style().visuals.strong_text_color();
                    let radius = if presenter { 8.0 } else { 6.0 };
                    for (series, color) in [
                        (names::selected_original(metric), INTACT),
                        (names::selected_probe(metric), PROBE),
                    ] {
                        if let Some(p) = store.get(&series) {
                            for (r, c) in [(radius + 2.5, ring), (radius, color)] {
                                plot.points(
                                    Points::new(HANDED_ON, p.to_vec())
                                        .shape(MarkerShape::Diamond)
                                        .radius(r)
                                        .color(c),
                                );
                            }
                        }
                    }
                    for (domain, label, color) in [
                        ("original", "units on (original validation)", INTACT),
                        ("restricted", "units on (restricted validation)", PROBE),
                    ] {
                        if let Some(p) = store.get(&names::units_on(domain)) {
                            draw(plot, label, p, color, 0.0, LineStyle::dotted_dense(), thick);
                        }
                    }
                    markers_on(plot, markers, cursor);
                });
        });
        ui.vertical(|ui| {
            ui.set_width(width);
            ui.label(LOSS_PLOT).on_hover_text(format!(
                "Red: the suppression loss of the simulated fine-tuning (FTS). Blue: the {} of normal training (NTR).",
                task_loss(metric)
            ));
            sophon_plot(LOSS_PLOT, height, group)
                .show(ui, |plot| {
                    for (series, label, color) in [
                        (names::FTS_LOSS, "FTS loss", FTS),
                        (names::NTR_LOSS, "NTR loss", NTR),
                    ] {
                        if let Some(p) = store.get(series) {
                            draw(plot, label, p, color, settings.smoothing, LineStyle::Solid, thick);
                        }
                    }
                    markers_on(plot, markers, cursor);
                });
        });
    });
    ui.horizontal(|ui| {
        ui.vertical(|ui| {
            ui.set_width(width);
            ui.label(PRETRAIN_PLOT);
            Plot::new(PRETRAIN_PLOT)
                .height(height)
                .legend(Legend::default())
                .x_axis_label("training step")
                .show(ui, |plot| {
                    if let Some(p) = store.get(names::PRETRAIN_LOSS) {
                        draw(plot, task_loss(metric), p, NTR, settings.smoothing, LineStyle::Solid, thick);
                    }
                });
        });
        ui.vertical(|ui| {
            ui.set_width(width);
            let names = strategies(store);
            ui.horizontal_wrapped(|ui| {
                ui.label(ATTACK_PLOT).on_hover_text(match metric {
                    Metric::Acc => "Restricted test accuracy per epoch (test split). SOPHON works when the red (protected) curve stays at or below the grey (scratch) one, far below the blue (original). `best-effort`: per start, the learning rate and optimizer chosen on the validation split by a search.",
                    Metric::Mse => "Restricted test ε-MSE per epoch (test split). SOPHON works when the red (protected) curve stays above the grey (scratch) and blue (original) ones. `best-effort`: per start, the setting chosen on the validation split by a search.",
                });
                if settings.strategy.as_ref().is_none_or(|s| !names.contains(s)) {
                    settings.strategy = names.first().cloned();
                }
                if let Some(current) = settings.strategy.clone() {
                    egui::ComboBox::from_id_salt("attack-strategy")
                        .selected_text(current)
                        .show_ui(ui, |ui| {
                            for n in &names {
                                ui.selectable_value(&mut settings.strategy, Some(n.clone()), n);
                            }
                        });
                }
            });
            // Presenter mode labels the gap at the right end: the legend goes to the left.
            let legend = if presenter {
                Legend::default().position(egui_plot::Corner::LeftTop)
            } else {
                Legend::default()
            };
            let plot = Plot::new(ATTACK_PLOT)
                .height(height)
                .legend(legend)
                .x_axis_label("epoch")
                .y_axis_label(format!("restricted test {what}"))
                .include_y(0.0);
            let plot = match metric {
                Metric::Acc => plot.include_y(1.0),
                Metric::Mse => plot,
            };
            plot.show(ui, |plot| {
                    let Some(strategy) = &settings.strategy else {
                        return;
                    };
                    for (start, color) in [
                        (Start::Protected, PROTECTED),
                        (Start::Original, ORIGINAL),
                        (Start::Scratch, SCRATCH),
                    ] {
                        let series = names::attack(strategy, start, metric);
                        if let Some(p) = store.get(&series) {
                            draw(plot, &start.to_string(), p, color, 0.0, LineStyle::Solid, thick);
                        }
                    }
                    if presenter {
                        gaps_on(plot, store, strategy, metric);
                    }
                });
        });
    });
}

/// The attack's gaps at its last epoch, labelled on the plot: protected against original (what
/// SOPHON took away from the attacker) and protected against scratch (at or below: protected).
fn gaps_on(plot: &mut PlotUi<'_>, store: &SeriesStore, strategy: &str, metric: Metric) {
    let last = |start| {
        store
            .get(&names::attack(strategy, start, metric))
            .and_then(|p| p.last().copied())
    };
    let (Some(p), Some(o)) = (last(Start::Protected), last(Start::Original)) else {
        return;
    };
    if p[0] != o[0] {
        return; // the original start's attack has not caught up yet
    }
    let gap = AttackGap::new(p[1], o[1], last(Start::Scratch).map(|s| s[1]), metric);
    plot.line(
        Line::new("", vec![[p[0], p[1]], [o[0], o[1]]])
            .color(Color32::WHITE)
            .width(2.0)
            .style(LineStyle::dashed_loose()),
    );
    let at = egui_plot::PlotPoint::new(p[0] - 0.15, (p[1] + o[1]) / 2.0);
    plot.text(
        egui_plot::Text::new(
            "",
            at,
            egui::RichText::new(gap.label())
                .strong()
                .size(15.0)
                .background_color(Color32::from_black_alpha(200)),
        )
        .anchor(egui::Align2::RIGHT_CENTER)
        .color(Color32::WHITE),
    );
}

/// The protected start's standing at the attack's end, in the attacker's favour's direction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttackGap {
    /// How far the protected start ends below the original start (ε-MSE: above).
    pub below_original: f64,
    /// How far the protected start ends below scratch (negative: above it).
    pub below_scratch: Option<f64>,
    pub metric: Metric,
}

impl AttackGap {
    pub fn new(protected: f64, original: f64, scratch: Option<f64>, metric: Metric) -> Self {
        let below = |other: f64| match metric {
            Metric::Acc => other - protected,
            Metric::Mse => protected - other,
        };
        Self {
            below_original: below(original),
            below_scratch: scratch.map(below),
            metric,
        }
    }

    /// The plot's label, e.g. "protected 0.27 below original" and "0.02 below scratch" (an
    /// ε-MSE: "worse than", "better than").
    pub fn label(&self) -> String {
        let (worse, better) = match self.metric {
            Metric::Acc => ("below", "ABOVE"),
            Metric::Mse => ("worse than", "BETTER than"),
        };
        let side = |x: f64, what: &str| {
            if x >= 0.0 {
                format!("{x:.2} {worse} {what}")
            } else {
                format!("{:.2} {better} {what}", -x)
            }
        };
        let mut text = format!("protected {}", side(self.below_original, "original"));
        if let Some(s) = self.below_scratch {
            text.push_str(&format!("\n{}", side(s, "scratch")));
        }
        text
    }
}

/// The name of the task's training loss.
fn task_loss(metric: Metric) -> &'static str {
    match metric {
        Metric::Acc => "cross-entropy",
        Metric::Mse => "ε-MSE",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_attack_gap_reads_in_the_attackers_favour_for_both_measures() {
        let acc = AttackGap::new(0.25, 0.55, Some(0.28), Metric::Acc);
        assert_eq!(
            acc.label(),
            "protected 0.30 below original\n0.03 below scratch"
        );
        let above = AttackGap::new(0.35, 0.55, Some(0.28), Metric::Acc);
        assert!(
            above.label().ends_with("0.07 ABOVE scratch"),
            "{}",
            above.label()
        );
        let mse = AttackGap::new(0.9, 0.3, None, Metric::Mse);
        assert_eq!(mse.label(), "protected 0.60 worse than original");
    }
}

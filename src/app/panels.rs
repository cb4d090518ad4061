//! The window's panels: the toolbar, the status line, the setup panel, the explanation panel,
//! the central tabs and the sweep dialog, drawn each frame from the [`Workbench`]'s state.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use egui::{Color32, RichText, Ui};

use super::plots::Overlay;
use super::preview::preview_ui;
use super::setup::{SetupState, Side};
use super::{AppCommand, Export, Tab, Workbench, explain, plots, runs, setup, sweep};
use crate::config::Metric;
use crate::run;
use crate::sophon::summary::RunStatus;
use crate::sophon::verdict::{Verdict, VerdictStatus};

impl Workbench {
    /// One frame of the whole window: draw every panel from the state, then apply what they
    /// asked for. [`Workbench::logic`] runs before it (eframe's `App::logic`).
    pub fn show(&mut self, ui: &mut Ui) {
        let ctx = ui.ctx().clone();
        let mut commands = Vec::new();
        egui::Panel::top("menu").show(ui, |ui| commands.extend(self.toolbar_ui(ui)));
        egui::Panel::bottom("status").show(ui, |ui| self.status_ui(ui));
        // Presenter mode folds the setup away: the curves and the narration get the room.
        if !self.presenter() {
            egui::Panel::left("setup")
                .default_size(380.0)
                .show(ui, |ui| {
                    egui::ScrollArea::vertical()
                        .show(ui, |ui| commands.extend(self.setup_panel_ui(ui)));
                });
        }
        if self.settings.show_explain {
            let (size, max) = if self.presenter() {
                (330.0, 420.0)
            } else {
                (240.0, 320.0)
            };
            egui::Panel::right("explain")
                .default_size(size)
                .max_size(max)
                .show(ui, |ui| self.explain_ui(ui));
        }
        egui::CentralPanel::default_margins().show(ui, |ui| commands.extend(self.central_ui(ui)));
        if self.sweep_open {
            commands.extend(self.sweep_window(&ctx));
        }
        for command in commands {
            self.apply(&ctx, command);
        }
    }

    fn toolbar_ui(&mut self, ui: &mut Ui) -> Vec<AppCommand> {
        let mut commands = Vec::new();
        ui.horizontal_wrapped(|ui| {
            // Clicks inside the menu (the path field) must not close it.
            let config = egui::containers::menu::MenuConfig::new()
                .close_behavior(egui::PopupCloseBehavior::CloseOnClickOutside);
            egui::containers::menu::MenuButton::new("File")
                .config(config)
                .ui(ui, |ui| {
                    if ui.button("Open preset…").clicked() {
                        ui.close();
                        commands.push(AppCommand::OpenPresetDialog);
                    }
                    if ui.button("Save preset as…").clicked() {
                        ui.close();
                        commands.push(AppCommand::SavePresetDialog);
                    }
                    // Without a desktop portal (a bare X server) the dialogs cannot open: a path works
                    // everywhere.
                    ui.horizontal(|ui| {
                        let l = ui.label("Path");
                        ui.add(
                            egui::TextEdit::singleline(&mut self.preset_path_text)
                                .hint_text("presets/quick.toml")
                                .desired_width(180.0),
                        )
                        .labelled_by(l.id);
                        if ui
                            .add_enabled(
                                !self.preset_path_text.trim().is_empty(),
                                egui::Button::new("Open"),
                            )
                            .clicked()
                        {
                            let path = PathBuf::from(self.preset_path_text.trim());
                            commands.push(AppCommand::OpenPreset(path));
                            ui.close();
                        }
                    });
                    ui.separator();
                    for (label, text, name) in [
                        ("Lesson (75 s; protected in 2 of 4 seeds)", crate::LESSON_PRESET, "lesson"),
                        ("Built-in default", crate::DEFAULT_PRESET, "default"),
                        ("Built-in quick", crate::QUICK_PRESET, "quick"),
                        ("Built-in denoising", crate::DENOISE_PRESET, "denoise"),
                        (
                            "Built-in denoising, quick",
                            crate::DENOISE_QUICK_PRESET,
                            "denoise-quick",
                        ),
                    ] {
                        if ui.button(label).clicked() {
                            ui.close();
                            commands.push(AppCommand::Builtin(text, name));
                        }
                    }
                    ui.separator();
                    if ui.button("Open sweep folder…").clicked() {
                        ui.close();
                        commands.push(AppCommand::Runs(runs::RunsAction::OpenSweep));
                    }
                    ui.separator();
                    for (label, what) in [
                        ("Export metrics as CSV…", Export::MetricsCsv),
                        ("Export window as PNG…", Export::WindowPng),
                        ("Export report…", Export::ReportPng),
                    ] {
                        if ui.button(label).clicked() {
                            ui.close();
                            commands.push(AppCommand::Export(what));
                        }
                    }
                });
            egui::containers::menu::MenuButton::new("View").ui(ui, |ui| {
                let mut on = self.presenter();
                if ui
                    .checkbox(&mut on, "Presenter")
                    .on_hover_text("Larger type, the setup folded away, the run waiting for Next at each phase, the Explain panel narrating")
                    .changed()
                {
                    commands.push(AppCommand::Presenter(on));
                }
                ui.checkbox(&mut self.settings.show_explain, "Explain panel");
            });
            ui.separator();
            if let Some(phase) = self.run.waiting.filter(|_| self.run.active) {
                let next = match phase {
                    crate::sophon::Phase::Sophon => "Next: protect",
                    _ => "Next: attack",
                };
                if ui
                    .button(RichText::new(next).strong())
                    .on_hover_text("Go on to the next phase")
                    .clicked()
                {
                    commands.push(AppCommand::Resume);
                }
                ui.separator();
            }
            let blocked = self.start_blocked();
            let start = ui
                .add_enabled(blocked.is_none(), egui::Button::new("Start"))
                .on_hover_text("Pre-train, protect with SOPHON, then attack");
            if start.clicked() {
                commands.push(AppCommand::Start(Box::new(self.config.clone())));
            }
            let active = self.run.active;
            let paused = self.run.paused;
            if ui
                .add_enabled(active && !paused, egui::Button::new("Pause"))
                .clicked()
            {
                commands.push(AppCommand::Pause);
            }
            if ui
                .add_enabled(active && paused, egui::Button::new("Step"))
                .on_hover_text("Run one step (one outer iteration in SOPHON), then pause again")
                .clicked()
            {
                commands.push(AppCommand::Step);
            }
            if ui
                .add_enabled(active && paused, egui::Button::new("Resume"))
                .clicked()
            {
                commands.push(AppCommand::Resume);
            }
            if ui.add_enabled(active, egui::Button::new("Stop")).clicked() {
                commands.push(AppCommand::Stop);
            }
            ui.separator();
            ui.toggle_value(&mut self.settings.show_explain, "Explain");
            if let Some(reason) = blocked.filter(|_| !active) {
                ui.colored_label(Color32::LIGHT_RED, format!("Start disabled: {reason}"));
            }
        });
        if let Some(e) = self.error.clone() {
            ui.horizontal(|ui| {
                ui.colored_label(Color32::LIGHT_RED, format!("Error: {e}"));
                if ui.small_button("dismiss").clicked() {
                    self.error = None;
                }
            });
        }
        commands
    }

    fn status_ui(&mut self, ui: &mut Ui) {
        if self.rss.0.elapsed() > Duration::from_secs(1) {
            self.rss = (Instant::now(), run::memory::rss_kb());
        }
        ui.horizontal_wrapped(|ui| {
            let r = &self.run;
            let state = if r.active {
                if r.paused { "paused" } else { "running" }
            } else {
                r.ended.map_or("idle", RunStatus::name)
            };
            ui.label(RichText::new(state).strong());
            if let Some(d) = r.divergences.last() {
                ui.colored_label(Color32::RED, format!("diverged: {d}"))
                    .on_hover_text(
                        "A loss, gradient norm, parameter or score turned NaN or infinite. It is recorded in metrics.jsonl and summary.json; nothing after it is reported as a result (see the Explain panel).",
                    );
            }
            if let Some(phase) = &r.phase {
                ui.label(format!("{phase} {}/{}", r.step, r.total_steps));
            }
            if let Some(rate) = r.rate {
                ui.label(format!("{rate:.2} it/s"));
            }
            if let Some(eta) = r.eta().filter(|_| r.active) {
                ui.label(format!("ETA {}", fmt_duration(eta)));
            }
            if !r.backend.is_empty() {
                ui.separator();
                ui.label(format!("{} on {}", r.backend, r.adapter));
                if r.software_adapter {
                    ui.colored_label(
                        Color32::YELLOW,
                        "Warning: software rasteriser (slow; the CPU backends are faster)",
                    )
                    .on_hover_text(
                        "wgpu runs on a CPU emulation of a GPU here (no hardware adapter).",
                    );
                }
            }
            ui.separator();
            if let Some(kb) = self.rss.1 {
                ui.label(format!("{:.0} MiB", kb as f64 / 1024.0));
            }
            if let Some(ms) = self.frame_p95() {
                ui.label(format!("frame {ms:.1} ms"));
            }
            if let Some(n) = &self.notice {
                ui.separator();
                ui.label(n);
            }
        });
    }

    fn setup_panel_ui(&mut self, ui: &mut Ui) -> Vec<AppCommand> {
        let mut commands = Vec::new();
        // While a run goes the setup is read-only; what can change sits on top.
        if let Some(live) = self.live.as_mut().filter(|_| self.run.active) {
            ui.label(RichText::new("Live knobs").strong())
                .on_hover_text("Change SOPHON while it runs; applied from the next outer iteration and marked on the curves.");
            egui::Grid::new("live").num_columns(2).show(ui, |ui| {
                for (name, value) in [("α", &mut live.alpha), ("β", &mut live.beta)] {
                    let l = ui.label(name);
                    ui.add(
                        egui::DragValue::new(value)
                            .range(0.0..=1.0)
                            .speed(1e-5)
                            .custom_formatter(|v, _| format!("{v:.2e}"))
                            .custom_parser(|s| s.trim().parse().ok()),
                    )
                    .labelled_by(l.id);
                    ui.end_row();
                }
                let l = ui.label("ℓ_FTS : ℓ_NTR");
                ui.horizontal(|ui| {
                    ui.add(egui::DragValue::new(&mut live.fts).range(0..=100))
                        .labelled_by(l.id);
                    ui.add(egui::DragValue::new(&mut live.ntr).range(0..=100))
                        .labelled_by(l.id);
                });
                ui.end_row();
                let l = ui.label("evaluate every");
                ui.add(egui::DragValue::new(&mut live.eval_every).range(1..=10_000))
                    .labelled_by(l.id);
                ui.end_row();
            });
            let changed = self.live != self.live_sent;
            if ui
                .add_enabled(changed, egui::Button::new("Apply live"))
                .clicked()
            {
                commands.push(AppCommand::ApplyLive);
            }
        }
        if self.live.is_some() && self.run.active {
            ui.separator();
        }
        ui.horizontal(|ui| {
            ui.heading("Experiment");
            ui.label(RichText::new(&self.origin).weak());
        });
        let error = self.validation();
        let previews = &self.previews;
        let mut footer = |ui: &mut Ui, side: Side| preview_ui(ui, previews[side as usize].as_ref());
        let actions = setup::setup_ui(
            ui,
            SetupState {
                config: &mut self.config,
                backend: &mut self.settings.backend,
                error: error.as_ref(),
                locked: self.run.active,
                domain_footer: &mut footer,
            },
        );
        commands.extend(actions.into_iter().map(AppCommand::Setup));
        commands
    }

    fn explain_ui(&mut self, ui: &mut Ui) {
        egui::ScrollArea::vertical()
            .id_salt("explain-scroll")
            .show(ui, |ui| self.explain_contents(ui));
    }

    fn explain_contents(&mut self, ui: &mut Ui) {
        if self.presenter() {
            self.narration_ui(ui);
            return;
        }
        let (title, text) = match (&self.run.ended, self.run.active) {
            (Some(how), false) => explain::ended_text(*how),
            _ => explain::phase_text(self.run.phase.filter(|_| self.run.active)),
        };
        ui.heading("What is happening");
        ui.label(RichText::new(title).strong());
        ui.label(text);
        let Some(s) = &self.run.summary else {
            return;
        };
        ui.separator();
        ui.label(RichText::new("Result").strong());
        if let Some(v) = &s.verdict {
            verdict_ui(ui, v);
            ui.separator();
        }
        let protected = match s.sophon.as_ref().and_then(|p| p.selected_iteration) {
            Some(it) => format!("protected (iteration {it}, by model selection)"),
            None => "protected".to_owned(),
        };
        let scores = [
            (
                "pre-trained".to_owned(),
                s.pretrain.as_ref().map(|p| &p.scores),
            ),
            (protected, s.sophon.as_ref().map(|p| &p.scores)),
        ];
        for (model, scores) in scores {
            if let Some(p) = scores {
                ui.label(format!(
                    "{model}: original test {} {:.3}",
                    p.metric.label(),
                    p.original
                ));
            }
        }
        ui.label(
            RichText::new("The curves during SOPHON are on the validation splits; these figures on the test splits.")
                .weak(),
        );
        for a in &s.attack {
            ui.label(format!(
                "{} from {}: restricted test {} {:.3} (mean {:.3})",
                a.strategy,
                a.start,
                a.metric.label(),
                a.final_score,
                a.mean
            ));
        }
        for b in &s.best_effort {
            if let Some(setting) = &b.setting {
                ui.label(
                    RichText::new(format!(
                        "best-effort from {}: {} (chosen on validation)",
                        b.start, setting.name
                    ))
                    .weak(),
                );
            }
        }
    }

    /// Presenter mode's Explain panel: the run's story so far, with its own numbers.
    fn narration_ui(&mut self, ui: &mut Ui) {
        let story = explain::Story {
            metric: self.run.metric.unwrap_or(Metric::of(self.config.task)),
            original: self.config.original.describe(),
            restricted: self.config.restricted.describe(),
            series: &self.series,
            phase: self.run.phase,
            waiting: self.run.waiting.filter(|_| self.run.active),
            step: self.run.step,
            total_steps: self.run.total_steps,
            strategy: self.settings.plots.strategy.as_deref(),
            summary: self.run.summary.as_ref().filter(|_| !self.run.active),
        };
        let (title, lines) = explain::narrate(&story);
        ui.heading(title);
        for line in lines {
            ui.add_space(4.0);
            ui.label(RichText::new(line).size(15.0));
        }
    }

    fn central_ui(&mut self, ui: &mut Ui) -> Vec<AppCommand> {
        let mut commands = Vec::new();
        ui.horizontal(|ui| {
            ui.selectable_value(&mut self.settings.tab, Tab::Curves, "Curves");
            ui.selectable_value(&mut self.settings.tab, Tab::Runs, "Runs");
            ui.selectable_value(&mut self.settings.tab, Tab::Log, "Log");
        });
        ui.separator();
        match self.settings.tab {
            Tab::Curves => {
                let overlays: Vec<Overlay<'_>> = self
                    .runs
                    .iter()
                    .filter(|r| r.overlay)
                    .filter_map(|r| {
                        r.series.as_ref().map(|s| Overlay {
                            name: r.dir.file_name().and_then(|n| n.to_str()).unwrap_or("run"),
                            series: s,
                        })
                    })
                    .collect();
                let metric = self.run.metric.unwrap_or(Metric::of(self.config.task));
                let (series, markers) = (&self.series, &self.markers);
                let plot_settings = &mut self.settings.plots;
                let mut curves = |ui: &mut Ui, cursor| {
                    plots::curves_ui(
                        ui,
                        series,
                        metric,
                        &overlays,
                        markers,
                        cursor,
                        plot_settings,
                    )
                };
                if self.samples.is_empty() && metric == Metric::Acc {
                    curves(ui, None);
                } else {
                    // Denoising: the curves beside the sample grids.
                    let width = ui.available_width();
                    let cursor = self.samples.cursor();
                    ui.horizontal_top(|ui| {
                        ui.vertical(|ui| {
                            ui.set_width(width * 0.6);
                            curves(ui, cursor);
                        });
                        ui.separator();
                        ui.vertical(|ui| {
                            ui.heading("Sample grids");
                            egui::ScrollArea::vertical()
                                .id_salt("samples")
                                .show(ui, |ui| self.samples.ui(ui));
                        });
                    });
                }
            }
            Tab::Runs => {
                let actions = runs::runs_ui(ui, &mut self.runs, self.watch.as_ref());
                commands.extend(actions.into_iter().map(AppCommand::Runs));
            }
            Tab::Log => {
                egui::ScrollArea::vertical()
                    .stick_to_bottom(true)
                    .show(ui, |ui| {
                        for line in &self.log {
                            ui.monospace(line);
                        }
                    });
            }
        }
        commands
    }

    fn sweep_window(&mut self, ctx: &egui::Context) -> Option<AppCommand> {
        let mut open = self.sweep_open;
        let preview = sweep::expand(&self.config, &self.settings.sweep);
        let mut queue = false;
        egui::Window::new("Sweep").open(&mut open).show(ctx, |ui| {
            queue = sweep::sweep_ui(ui, &mut self.settings.sweep, &preview);
        });
        self.sweep_open = open;
        match preview {
            Ok((configs, axes)) if queue => {
                self.sweep_open = false;
                Some(AppCommand::QueueSweep(configs, axes))
            }
            _ => None,
        }
    }
}

/// The verdict first: its status in colour, why, intactness, and per attacker the protected and
/// scratch starts' final / mean with whether it held.
fn verdict_ui(ui: &mut Ui, v: &Verdict) {
    let color = match v.status {
        VerdictStatus::Protected => Color32::from_rgb(60, 160, 90),
        VerdictStatus::Incomplete => ui.visuals().warn_fg_color,
        _ => ui.visuals().error_fg_color,
    };
    ui.label(
        RichText::new(format!("Verdict: {}", v.status))
            .strong()
            .color(color),
    );
    ui.label(&v.reason);
    let i = &v.intactness;
    ui.label(format!(
        "intactness (original test {}): {:.3} to {:.3}",
        v.metric.label(),
        i.pretrained,
        i.protected
    ));
    ui.label(
        RichText::new(format!(
            "restricted test {}, final / mean; held = no better than scratch (within {})",
            v.metric.label(),
            v.margin
        ))
        .weak(),
    );
    ui.label(RichText::new(v.attacker_data()).weak());
    egui::Grid::new("verdict-attackers")
        .striped(true)
        .num_columns(4)
        .show(ui, |ui| {
            for h in ["attacker", "protected", "scratch", "held"] {
                ui.label(RichText::new(h).strong());
            }
            ui.end_row();
            let fm = |x: Option<crate::sophon::verdict::FinalMean>| {
                x.map_or("—".to_owned(), |x| {
                    format!("{:.2} / {:.2}", x.final_score, x.mean)
                })
            };
            for a in &v.attackers {
                ui.label(&a.attacker);
                ui.label(fm(a.protected));
                ui.label(fm(a.scratch));
                let held = match (a.held_final, a.held_mean) {
                    (Some(true), Some(true)) => "yes",
                    (None, _) | (_, None) => "—",
                    _ => "no",
                };
                ui.label(held);
                ui.end_row();
            }
        });
}

fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s / 60 % 60)
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

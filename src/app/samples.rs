//! The denoising task's sample grids as they arrive: per model (phase) and domain, one grid per
//! step; a step slider picks which grids are shown and puts a cursor on the curves.

use std::collections::BTreeMap;

use egui::{ColorImage, RichText, TextureHandle, TextureOptions, Ui};

use crate::run::SamplesEvent;

/// One received grid, uploaded to the GPU once.
pub struct Grid {
    pub step: usize,
    pub t: usize,
    pub psnr: f64,
    pub texture: TextureHandle,
}

/// Every grid of the run: `phase → domain → grids by step`, phases in arrival order.
#[derive(Default)]
pub struct SampleStore {
    pub phases: Vec<String>,
    grids: BTreeMap<(String, String), Vec<Grid>>,
    /// The phase whose grids are shown.
    pub phase: Option<String>,
    /// The step picked with the slider; `None` follows the newest grid.
    pub step: Option<usize>,
}

impl SampleStore {
    pub fn clear(&mut self) {
        *self = Self::default();
    }

    pub fn is_empty(&self) -> bool {
        self.grids.is_empty()
    }

    /// Keep a grid; the panel follows the newest phase unless the user picked one.
    pub fn push(&mut self, ctx: &egui::Context, e: SamplesEvent) {
        let size = [e.image.width() as usize, e.image.height() as usize];
        let image = ColorImage::from_rgb(size, e.image.as_raw());
        let name = format!("samples-{}-{}-{}", e.phase, e.domain, e.step);
        let texture = ctx.load_texture(name, image, TextureOptions::NEAREST);
        if !self.phases.contains(&e.phase) {
            self.phases.push(e.phase.clone());
            if self.step.is_none() {
                self.phase = Some(e.phase.clone());
            }
        }
        let grids = self.grids.entry((e.phase, e.domain)).or_default();
        let grid = Grid {
            step: e.step,
            t: e.t,
            psnr: e.psnr,
            texture,
        };
        match grids.binary_search_by_key(&e.step, |g| g.step) {
            Ok(i) => grids[i] = grid,
            Err(i) => grids.insert(i, grid),
        }
    }

    /// The steps that have grids in `phase`.
    pub fn steps(&self, phase: &str) -> Vec<usize> {
        let mut steps: Vec<usize> = self
            .grids
            .iter()
            .filter(|((p, _), _)| p == phase)
            .flat_map(|(_, g)| g.iter().map(|g| g.step))
            .collect();
        steps.sort_unstable();
        steps.dedup();
        steps
    }

    /// The grid of `domain` in `phase` at the latest step ≤ `step` (the newest without one).
    pub fn grid(&self, phase: &str, domain: &str, step: Option<usize>) -> Option<&Grid> {
        let grids = self.grids.get(&(phase.to_string(), domain.to_string()))?;
        match step {
            None => grids.last(),
            Some(s) => grids.iter().rev().find(|g| g.step <= s).or(grids.first()),
        }
    }

    /// The curves' x-axis position of the picked step, when the shown phase is SOPHON's (whose
    /// steps are outer iterations, the x of the SOPHON plots).
    pub fn cursor(&self) -> Option<f64> {
        let phase = self.phase.as_deref()?;
        (phase == "sophon").then_some(self.step? as f64)
    }

    /// The panel: a phase picker, a step slider, and clean | noisy | denoised for both domains.
    pub fn ui(&mut self, ui: &mut Ui) {
        if self.grids.is_empty() {
            ui.label("Sample grids appear here when a denoising run evaluates its models.");
            return;
        }
        ui.horizontal_wrapped(|ui| {
            ui.label("Model:");
            for p in self.phases.clone() {
                let picked = self.phase.as_deref() == Some(p.as_str());
                if ui.selectable_label(picked, phase_label(&p)).clicked() {
                    self.phase = Some(p);
                    self.step = None;
                }
            }
        });
        let Some(phase) = self.phase.clone() else {
            return;
        };
        let steps = self.steps(&phase);
        if steps.len() > 1 {
            let mut index = match self.step {
                Some(s) => steps.iter().rposition(|&x| x <= s).unwrap_or(0),
                None => steps.len() - 1,
            };
            let label = ui.label("Grid step");
            let slider = egui::Slider::new(&mut index, 0..=steps.len() - 1)
                .custom_formatter(|i, _| steps[i as usize].to_string())
                .custom_parser(|text| {
                    let want: usize = text.parse().ok()?;
                    steps.iter().position(|&s| s >= want).map(|i| i as f64)
                });
            if ui.add(slider).labelled_by(label.id).changed() {
                self.step = Some(steps[index]);
            }
            if self.step.is_some() && ui.button("Follow newest").clicked() {
                self.step = None;
            }
        }
        ui.label(
            RichText::new("Columns: clean | noised to step t | denoised by the reverse chain")
                .weak(),
        );
        ui.vertical(|ui| {
            for domain in ["original", "restricted"] {
                match self.grid(&phase, domain, self.step) {
                    Some(g) => {
                        ui.label(
                            RichText::new(format!(
                                "{domain}, step {}: t = {}, PSNR {:.1} dB",
                                g.step, g.t, g.psnr
                            ))
                            .strong(),
                        );
                        let size = g.texture.size_vec2();
                        let avail = ui.available_width().max(64.0);
                        let scale = (avail / size.x).min(1.5);
                        ui.image((g.texture.id(), size * scale));
                    }
                    None => {
                        ui.label(format!("{domain}: no grid yet"));
                    }
                }
            }
        });
    }
}

/// What a phase's grids show, for a person.
pub fn phase_label(phase: &str) -> String {
    match phase {
        "pretrain" => "pre-trained".into(),
        "sophon" => "during SOPHON".into(),
        "protected" => "protected".into(),
        other => match other.strip_prefix("attack-") {
            Some(rest) => format!("attacked: {rest}"),
            None => other.into(),
        },
    }
}

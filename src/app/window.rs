//! The eframe side of the window: frame timing, persistence, closing during a run, and opening
//! the native window.

use std::time::{Duration, Instant};

use egui::Ui;

use super::{AppOptions, Pace, Settings, Workbench};
use crate::run::backend::AdapterInfo;

/// The eframe side: persistence and frame timing around [`Workbench::show`].
pub struct WorkbenchApp {
    pub bench: Workbench,
    report_frames: bool,
    last_report: Instant,
}

impl eframe::App for WorkbenchApp {
    /// Before each frame (and while the window is hidden): replies and worker events.
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        self.bench.logic(ctx);
    }

    fn ui(&mut self, ui: &mut Ui, frame: &mut eframe::Frame) {
        if let Some(cpu) = frame.info().cpu_usage {
            let ms = &mut self.bench.frame_ms;
            if ms.len() == 600 {
                ms.pop_front();
            }
            ms.push_back(cpu * 1000.0);
        }
        self.bench.show(ui);
        if self.report_frames && self.last_report.elapsed() > Duration::from_secs(5) {
            self.last_report = Instant::now();
            self.report();
        }
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        self.bench.settings.preset_toml = self.bench.config.to_toml();
        eframe::set_value(storage, eframe::APP_KEY, &self.bench.settings);
    }

    fn on_exit(&mut self) {
        if self.report_frames {
            self.report();
        }
        if self.bench.run.active && !self.bench.stop_and_wait(Duration::from_secs(60)) {
            eprintln!("the run did not stop within a minute; its last checkpoint stays valid");
        }
    }
}

impl WorkbenchApp {
    fn report(&self) {
        if let Some((p50, p95, max)) = self.bench.frame_stats() {
            eprintln!(
                "frame CPU time over the last {} frames with {} points ({}): median {p50:.2} ms, p95 {p95:.2} ms, max {max:.2} ms",
                self.bench.frame_ms.len(),
                self.bench.series.len(),
                if self.bench.run.active {
                    "training"
                } else {
                    "idle"
                },
            );
        }
    }
}

/// Open the window; returns when it is closed.
pub fn run_window(options: AppOptions) -> Result<(), String> {
    let native = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_inner_size([1400.0, 860.0])
            .with_title("SOPHON Workbench"),
        ..Default::default()
    };
    eframe::run_native(
        "sophon-workbench",
        native,
        Box::new(move |cc| {
            let settings = cc
                .storage
                .and_then(|s| eframe::get_value::<Settings>(s, eframe::APP_KEY));
            let report_frames = options.stress_points > 0;
            let mut bench = Workbench::from_options(settings, &options);
            // Drawn by a software rasteriser, each frame costs the training CPU time.
            let software = cc
                .wgpu_render_state
                .as_ref()
                .is_some_and(|render| AdapterInfo::from(render.adapter.get_info()).is_software());
            if software {
                bench.pace = Pace::SOFTWARE;
            }
            Ok(Box::new(WorkbenchApp {
                bench,
                report_frames,
                last_report: Instant::now(),
            }))
        }),
    )
    .map_err(|e| {
        format!(
            "cannot open the window: {e} (headless machines: use `sophon-workbench run <preset>`)"
        )
    })
}

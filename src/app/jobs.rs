//! Helper threads: file dialogs, preset and run-folder reads, previews, file writes. Each runs
//! off the frame and answers with a [`Reply`] over a channel that [`Workbench::logic`] drains.

use std::path::{Path, PathBuf};

use super::Workbench;
use super::preview::{Preview, PreviewData, PreviewState, load_preview};
use super::runs::{self, RunEntry};
use super::series::SeriesStore;
use super::setup::{self, PickTarget, Side};
use crate::config::{DataSource, ExperimentConfig};
use crate::run;

/// Answers from helper threads.
pub(super) enum Reply {
    Picked(PickTarget, Option<PathBuf>),
    /// A preset read and validated on a helper thread (`None`: the dialog was cancelled).
    OpenedPreset(Option<(PathBuf, Result<Box<ExperimentConfig>, String>)>),
    SavePresetTo(Option<PathBuf>),
    ExportCsvTo(Option<PathBuf>),
    ExportPngTo(Option<PathBuf>),
    ExportReportTo(Option<PathBuf>),
    Screenshot(std::sync::Arc<egui::ColorImage>),
    Preview(Side, DataSource, Result<PreviewData, String>),
    Runs(Vec<RunEntry>),
    /// A watched sweep folder read again: its points, and how many it has.
    Watched(PathBuf, Result<(Vec<RunEntry>, usize), String>),
    /// A sweep from the Sweep dialog, laid out as a sweep folder, with its points' experiments.
    SweepFolder(Result<(run::sweep_folder::SweepFolder, Vec<ExperimentConfig>), String>),
    /// The sweep folder picked to watch (`None`: the dialog was cancelled).
    WatchPicked(Option<PathBuf>),
    RunOpened(Result<Box<RunEntry>, String>),
    RunSeries(PathBuf, Result<SeriesStore, String>),
    Done(String),
    Error(String),
    /// A dialog closed without a choice.
    Cancelled,
}

impl Workbench {
    /// Watch a sweep folder in the Runs tab (File → Open sweep folder, `--watch`): its points
    /// are listed and read again every second; an error names the folder.
    pub fn watch_sweep(&mut self, dir: PathBuf) {
        if !run::sweep_folder::SweepFolder::is_sweep(&dir) {
            self.error = Some(format!(
                "{}: not a sweep folder (no {}); `sophon-workbench sweep` makes one",
                dir.display(),
                run::sweep_folder::MANIFEST
            ));
            return;
        }
        self.watch = Some(runs::Watch {
            dir,
            total: 0,
            last: std::time::Instant::now(),
            reading: false,
        });
        self.runs.clear();
        self.settings.tab = super::Tab::Runs;
        self.refresh_runs();
    }

    /// Back to the runs folder.
    pub fn stop_watching(&mut self) {
        self.watch = None;
        self.runs.clear();
        self.refresh_runs();
    }

    pub(super) fn spawn<F: FnOnce() -> Reply + Send + 'static>(&self, ctx: &egui::Context, job: F) {
        let tx = self.replies.0.clone();
        let ctx = ctx.clone();
        std::thread::spawn(move || {
            let _ = tx.send(job());
            ctx.request_repaint();
        });
    }

    pub(super) fn dialog<F: FnOnce(Option<PathBuf>) -> Reply + Send + 'static>(
        &mut self,
        ctx: &egui::Context,
        dialog: rfd::AsyncFileDialog,
        save: bool,
        folder: bool,
        reply: F,
    ) {
        if self.busy_dialog {
            return;
        }
        self.busy_dialog = true;
        self.spawn(ctx, move || {
            let picked = futures_lite::future::block_on(async move {
                if save {
                    dialog.save_file().await
                } else if folder {
                    dialog.pick_folder().await
                } else {
                    dialog.pick_file().await
                }
            });
            reply(picked.map(|h| h.path().to_path_buf()))
        });
    }

    /// Write `bytes` to `path` atomically on a helper thread; the outcome comes back as a
    /// notice or an error naming the file.
    pub(super) fn write_file(
        &self,
        ctx: &egui::Context,
        path: PathBuf,
        bytes: Vec<u8>,
        verb: &'static str,
    ) {
        self.spawn(ctx, move || {
            match run::folder::write_atomic(&path, &bytes) {
                Ok(()) => Reply::Done(format!("{verb} {}", path.display())),
                Err(e) => Reply::Error(format!("{}: cannot write: {e}", path.display())),
            }
        });
    }

    /// Carry the overlay ticks and loaded curves of the listed runs over to `list`, a fresh
    /// read of them; the indices in `list` of the overlaid runs that had no result yet (their
    /// curves are still growing).
    fn keep_overlays(&mut self, list: &mut [RunEntry]) -> Vec<usize> {
        let mut growing = Vec::new();
        for (i, r) in list.iter_mut().enumerate() {
            if let Some(old) = self.runs.iter_mut().find(|o| o.dir == r.dir) {
                r.overlay = old.overlay;
                r.series = old.series.take();
                if r.overlay && !run::sweep_folder::is_done(old.summary.status) {
                    growing.push(i);
                }
            }
        }
        growing
    }

    pub(super) fn refresh_runs(&mut self) {
        let (tx, _) = &self.replies;
        let tx = tx.clone();
        if let Some(w) = &mut self.watch {
            w.reading = true;
            w.last = std::time::Instant::now();
            let dir = w.dir.clone();
            std::thread::spawn(move || {
                let result = runs::scan_sweep(&dir);
                let _ = tx.send(Reply::Watched(dir, result));
            });
            return;
        }
        let base = self.runs_dir.clone();
        std::thread::spawn(move || {
            let _ = tx.send(Reply::Runs(runs::scan(&base)));
        });
    }

    pub(super) fn handle_replies(&mut self, ctx: &egui::Context) {
        while let Ok(reply) = self.replies.1.try_recv() {
            match reply {
                Reply::Picked(target, path) => {
                    self.busy_dialog = false;
                    if let Some(p) = path {
                        setup::apply_pick(&mut self.config, &target, p);
                    }
                }
                Reply::OpenedPreset(opened) => {
                    self.busy_dialog = false;
                    match opened {
                        Some((path, Ok(config))) => {
                            // Opened: the path field empties (on an error it keeps the text to fix).
                            self.preset_path_text.clear();
                            self.config = *config;
                            self.origin = path.display().to_string();
                            self.settings.preset_path = Some(path);
                            self.error = None;
                        }
                        Some((_, Err(e))) => self.error = Some(e),
                        None => {}
                    }
                }
                Reply::SavePresetTo(path) => {
                    self.busy_dialog = false;
                    if let Some(p) = path {
                        let text = self.config.to_toml();
                        let target = p.clone();
                        self.settings.preset_path = Some(p.clone());
                        self.origin = p.display().to_string();
                        self.write_file(ctx, target, text.into_bytes(), "saved");
                    }
                }
                Reply::ExportCsvTo(path) => {
                    self.busy_dialog = false;
                    if let Some(p) = path {
                        let csv = self.series.to_csv();
                        self.write_file(ctx, p, csv.into_bytes(), "exported");
                    }
                }
                Reply::ExportPngTo(path) => {
                    self.busy_dialog = false;
                    if let Some(p) = path {
                        self.png_target = Some(p);
                        let tx = self.replies.0.clone();
                        let repaint = ctx.clone();
                        ctx.request_screenshot(move |image| {
                            let _ = tx.send(Reply::Screenshot(image));
                            repaint.request_repaint();
                        });
                    }
                }
                Reply::ExportReportTo(path) => {
                    self.busy_dialog = false;
                    if let (Some(p), Some(dir)) = (path, self.run.dir.clone()) {
                        self.spawn(ctx, move || match run::report::write_report(&dir, &p) {
                            Ok(w) => Reply::Done(format!(
                                "exported {} and {}",
                                w.png.display(),
                                w.svg.display()
                            )),
                            Err(e) => Reply::Error(e.to_string()),
                        });
                    }
                }
                Reply::Screenshot(image) => {
                    if let Some(p) = self.png_target.take() {
                        self.spawn(ctx, move || match save_png(&p, &image) {
                            Ok(()) => Reply::Done(format!("exported {}", p.display())),
                            Err(e) => Reply::Error(e),
                        });
                    }
                }
                Reply::Preview(side, source, result) => {
                    if let Some(p) = &mut self.previews[side as usize]
                        && p.source == source
                    {
                        p.state = PreviewState::arrived(ctx, side, result);
                    }
                }
                // A read of the runs folder that a watch overtook.
                Reply::Runs(_) if self.watch.is_some() => {}
                Reply::SweepFolder(Err(e)) => self.error = Some(e),
                Reply::SweepFolder(Ok((folder, configs))) => {
                    self.push_log(format!(
                        "sweep: {} points in {}",
                        configs.len(),
                        folder.dir.display()
                    ));
                    self.queue.extend(
                        configs
                            .into_iter()
                            .enumerate()
                            .map(|(i, c)| (c, folder.run_dir(i))),
                    );
                    self.watch_sweep(folder.dir.clone());
                    if !self.run.active
                        && let Some((config, dir)) = self.queue.pop_front()
                    {
                        self.start_in(ctx, config, run::OutDir::Exact(dir));
                    }
                }
                Reply::WatchPicked(picked) => {
                    self.busy_dialog = false;
                    if let Some(dir) = picked {
                        self.watch_sweep(dir);
                    }
                }
                Reply::Watched(dir, result) => {
                    let Some(watch) = self.watch.as_mut().filter(|w| w.dir == dir) else {
                        continue;
                    };
                    watch.reading = false;
                    match result {
                        Ok((mut list, total)) => {
                            watch.total = total;
                            // An overlaid point still running (or that just ended) follows its
                            // metrics.jsonl.
                            let reload = self.keep_overlays(&mut list);
                            self.runs = list;
                            for i in reload {
                                self.runs_action(ctx, runs::RunsAction::LoadSeries(i));
                            }
                            // One more frame: the runs table sizes its columns from the frame
                            // before, and a point's state grows as it runs.
                            ctx.request_repaint();
                        }
                        Err(e) => {
                            self.error = Some(format!("stopped watching: {e}"));
                            self.watch = None;
                            self.refresh_runs();
                        }
                    }
                }
                Reply::Runs(mut list) => {
                    self.keep_overlays(&mut list);
                    let extra: Vec<RunEntry> = self
                        .runs
                        .drain(..)
                        .filter(|o| {
                            !list.iter().any(|r| r.dir == o.dir)
                                && !o.dir.starts_with(&self.runs_dir)
                        })
                        .collect();
                    list.extend(extra);
                    self.runs = list;
                }
                Reply::RunOpened(Ok(entry)) => {
                    self.busy_dialog = false;
                    if !self.runs.iter().any(|r| r.dir == entry.dir) {
                        self.runs.push(*entry);
                    }
                }
                Reply::RunOpened(Err(e)) | Reply::Error(e) => {
                    self.busy_dialog = false;
                    self.error = Some(e);
                }
                Reply::RunSeries(dir, result) => match result {
                    Ok(store) => {
                        if let Some(r) = self.runs.iter_mut().find(|r| r.dir == dir) {
                            r.series = Some(store);
                        }
                    }
                    Err(e) => self.error = Some(e),
                },
                Reply::Cancelled => self.busy_dialog = false,
                Reply::Done(msg) => {
                    self.push_log(msg.clone());
                    self.notice = Some(msg);
                }
            }
        }
    }

    /// Read a preset on a helper thread; it replaces the experiment when it is valid.
    pub(super) fn open_preset(&mut self, ctx: &egui::Context, path: PathBuf) {
        self.spawn(ctx, move || Reply::OpenedPreset(Some(read_preset(path))));
    }

    /// Start loading thumbnails of a data source when it changed.
    pub(super) fn ensure_preview(&mut self, ctx: &egui::Context, side: Side) {
        let source = match side {
            Side::Original => self.config.original.clone(),
            Side::Restricted => self.config.restricted.clone(),
        };
        if self.previews[side as usize]
            .as_ref()
            .is_some_and(|p| p.source == source)
        {
            return;
        }
        let field = side.field();
        let invalid = self
            .validation()
            .filter(|e| e.field.starts_with(field))
            .map(|e| e.message);
        self.previews[side as usize] = Some(Preview {
            source: source.clone(),
            state: match &invalid {
                Some(m) => PreviewState::Failed(m.clone()),
                None => PreviewState::Loading,
            },
        });
        if invalid.is_some() {
            return;
        }
        let input = self.config.input.clone();
        let seed = self.config.seed;
        self.spawn(ctx, move || {
            let result = load_preview(&source, &input, seed);
            Reply::Preview(side, source, result)
        });
    }
}

/// Read and validate a preset file (on a helper thread).
pub(super) fn read_preset(path: PathBuf) -> (PathBuf, Result<Box<ExperimentConfig>, String>) {
    let result = ExperimentConfig::load(&path, &[])
        .map(Box::new)
        .map_err(|e| e.to_string());
    (path, result)
}

/// Encode a screenshot as PNG and write it atomically.
fn save_png(path: &Path, image: &egui::ColorImage) -> Result<(), String> {
    let [w, h] = image.size;
    let bytes: Vec<u8> = image.pixels.iter().flat_map(|c| c.to_array()).collect();
    let img = image::RgbaImage::from_raw(w as u32, h as u32, bytes)
        .ok_or_else(|| format!("{}: screenshot has the wrong size", path.display()))?;
    let mut buf = std::io::Cursor::new(Vec::new());
    img.write_to(&mut buf, image::ImageFormat::Png)
        .map_err(|e| format!("{}: cannot encode PNG: {e}", path.display()))?;
    run::folder::write_atomic(path, buf.get_ref())
        .map_err(|e| format!("{}: cannot write: {e}", path.display()))
}

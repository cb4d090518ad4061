//! Snapshot images of the window's main states — setup, running, finished, denoising — rendered
//! with wgpu (Mesa's lavapipe in CI) and compared with the images checked in under
//! `tests/snapshots/`. After an intended change to the window,
//! `UPDATE_SNAPSHOTS=1 cargo test --release snapshots` rewrites them; look at each before
//! committing it. The status bar (memory, frame time, rate: different on every run) is cut off
//! before comparing; everything else is deterministic for a seed.

use std::path::Path;
use std::time::{Duration, Instant};

use egui_kittest::kittest::Queryable;
use egui_kittest::{Harness, HarnessBuilder, SnapshotOptions};
use sophon_workbench::app::Workbench;
use sophon_workbench::config::ExperimentConfig;
use sophon_workbench::run::{Event, MetricPoint, WorkerHandle};
use sophon_workbench::sophon::Phase;
use sophon_workbench::sophon::series;

/// The window's size in the snapshots, and the height of the status bar cut off the bottom.
const SIZE: [f32; 2] = [1400.0, 860.0];
const STATUS_BAR: u32 = 30;

/// A window on `preset` (built in), writing run folders into `runs`.
fn app(preset: &str, name: &str, runs: &Path) -> Workbench {
    let config = ExperimentConfig::from_toml(preset, name, &[]).unwrap();
    crate::window::app_on(config, &format!("built-in {name}"), runs)
}

fn harness(app: Workbench) -> Harness<'static, Workbench> {
    HarnessBuilder::default()
        .with_size(egui::Vec2::from(SIZE))
        .build_ui_state(
            |ui, app: &mut Workbench| {
                // As eframe does: the logic, then the frame.
                app.logic(ui.ctx());
                app.show(ui);
            },
            app,
        )
}

/// Step frames until `done` holds (helper threads and the worker run meanwhile).
fn frames_until(
    h: &mut Harness<'_, Workbench>,
    what: &str,
    done: impl Fn(&mut Harness<'_, Workbench>) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(180);
    while !done(h) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        h.step();
        std::thread::sleep(Duration::from_millis(20));
    }
    for _ in 0..3 {
        h.step();
    }
}

/// Both data previews have arrived (their strips are drawn).
fn previews_loaded(h: &mut Harness<'_, Workbench>) -> bool {
    h.query_all_by_label_contains("classes ·").count() == 2
}

/// Whether this machine can render; a visible skip where it cannot (a failure under
/// `SOPHON_REQUIRE_WGPU`, which CI sets).
fn can_render(test: &str) -> bool {
    if let Some(adapter) = sophon_workbench::run::backend::probe_adapter() {
        // Shown with a failure: another rasteriser draws text and images a little differently.
        println!(
            "{test}: rendering on {} ({}, {}); the committed snapshots are lavapipe's (Vulkan), \
             which `apt-get install mesa-vulkan-drivers` provides",
            adapter.name, adapter.device_type, adapter.api
        );
        return true;
    }
    let why = "no wgpu adapter to render with (install mesa-vulkan-drivers for lavapipe)";
    assert!(
        std::env::var_os("SOPHON_REQUIRE_WGPU").is_none(),
        "{why}, and SOPHON_REQUIRE_WGPU is set"
    );
    crate::skipped(test, why);
    false
}

/// Render the window, cut off the status bar, compare with `tests/snapshots/<name>.png`.
fn check(h: &mut Harness<'_, Workbench>, name: &str) {
    let image = h.render().expect("the window renders");
    let (w, height) = image.dimensions();
    let body = image::imageops::crop_imm(&image, 0, 0, w, height - STATUS_BAR).to_image();
    // Anti-aliasing may differ by a shade between Vulkan drivers; a moved widget or a changed
    // curve differs in hundreds of pixels.
    let options = SnapshotOptions::new().threshold(1.0).max_failed_pixels(40);
    egui_kittest::image_snapshot_options(&body, name, &options);
}

#[test]
fn snapshot_setup() {
    if !can_render("snapshots::snapshot_setup") {
        return;
    }
    let runs = tempfile::tempdir().unwrap();
    let mut h = harness(app(sophon_workbench::QUICK_PRESET, "quick", runs.path()));
    frames_until(&mut h, "the previews", previews_loaded);
    check(&mut h, "window-setup");
}

/// A run in SOPHON's third outer iteration, from a scripted worker (a real one would be caught
/// at a different step every time).
#[test]
fn snapshot_running() {
    if !can_render("snapshots::snapshot_running") {
        return;
    }
    let runs = tempfile::tempdir().unwrap();
    let mut app = app(sophon_workbench::QUICK_PRESET, "quick", runs.path());
    let (events_tx, events) = crossbeam_channel::unbounded();
    let (commands, _unused) = crossbeam_channel::unbounded();
    let metric = |series: &str, step: usize, value: f64| {
        Event::Metric(MetricPoint {
            series: series.into(),
            step,
            value,
        })
    };
    let mut script = vec![
        Event::Started {
            dir: runs.path().join("quick-20261130T120000Z"),
            backend: "flex".into(),
            adapter: "CPU".into(),
            software_adapter: false,
            reason: "asked for flex".into(),
        },
        Event::Phase {
            phase: Phase::Pretrain,
            total_steps: 60,
        },
    ];
    for step in 1..=60 {
        let loss = 2.3 * (-(step as f64) / 25.0).exp() + 0.2;
        script.push(metric(series::PRETRAIN_LOSS, step, loss));
    }
    script.push(Event::Phase {
        phase: Phase::Sophon,
        total_steps: 6,
    });
    let acc = sophon_workbench::config::Metric::Acc;
    for it in 0..=3 {
        script.push(metric(
            &series::sophon_original(acc),
            it,
            0.91 - 0.01 * it as f64,
        ));
        script.push(metric(
            &series::sophon_probe(acc),
            it,
            0.48 - 0.09 * it as f64,
        ));
        if it > 0 {
            script.push(metric(series::FTS_LOSS, it, 1.2 - 0.2 * it as f64));
            script.push(metric(series::NTR_LOSS, it, 0.4 + 0.05 * it as f64));
            script.push(Event::Progress {
                step: it,
                at: Instant::now(),
            });
        }
    }
    for e in script {
        events_tx.send(e).unwrap();
    }
    // The worker stays alive (its channel open) until the test ends.
    let (hold, held) = crossbeam_channel::bounded::<()>(0);
    let thread = std::thread::spawn(move || {
        let _events = events_tx;
        let _ = held.recv();
    });
    app.attach_worker(WorkerHandle {
        commands,
        events,
        thread,
    });
    app.run.active = true;
    let mut h = harness(app);
    frames_until(&mut h, "the previews and the script", |h| {
        previews_loaded(h) && h.state().run.step == 3
    });
    check(&mut h, "window-running");
    drop(hold);
}

/// Start a real run of `preset` from the button and wait for its end.
fn finished_run(preset: &str, name: &str, runs: &Path) -> Harness<'static, Workbench> {
    let mut h = harness(app(preset, name, runs));
    frames_until(&mut h, "the previews", previews_loaded);
    h.get_by_label("Start").click();
    frames_until(&mut h, "the run's end", |h| h.state().run.ended.is_some());
    h
}

#[test]
fn snapshot_finished() {
    if !can_render("snapshots::snapshot_finished") {
        return;
    }
    // A real run's curves and figures differ in their last digits between the CPU's
    // matrix-product kernels (AVX-512 or AVX2/FMA), and over the run the difference reaches the
    // plotted curves; so each kernel family has its own image.
    let kernels = sophon_workbench::run::folder::matmul_kernels().replace('+', "-");
    let name = format!("window-finished-{kernels}");
    if !Path::new(&format!("tests/snapshots/{name}.png")).exists() {
        crate::skipped(
            "snapshots::snapshot_finished",
            &format!("no snapshot committed for {kernels} kernels (tests/snapshots/{name}.png)"),
        );
        return;
    }
    let runs = tempfile::tempdir().unwrap();
    let mut h = finished_run(sophon_workbench::QUICK_PRESET, "quick", runs.path());
    check(&mut h, &name);
}

#[test]
fn snapshot_denoising() {
    if !can_render("snapshots::snapshot_denoising") {
        return;
    }
    let runs = tempfile::tempdir().unwrap();
    let mut h = finished_run(
        sophon_workbench::DENOISE_QUICK_PRESET,
        "denoise-quick",
        runs.path(),
    );
    check(&mut h, "window-denoising");
}

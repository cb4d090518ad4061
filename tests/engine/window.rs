//! The window, driven through its real state with egui_kittest (no display needed), and the real
//! binary under Xvfb with a screenshot.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use egui::accesskit::Role;
use egui_kittest::kittest::{NodeT, Queryable, by};
use egui_kittest::{Harness, HarnessBuilder};
use sophon_workbench::app::{AppOptions, Settings, Workbench};
use sophon_workbench::config::ExperimentConfig;
use sophon_workbench::run::BackendChoice;
use sophon_workbench::sophon::Phase;
use sophon_workbench::sophon::summary::RunStatus;

/// The quick preset, long enough that a test can pause it before it ends.
fn quick_app(runs: &Path) -> Workbench {
    let config = ExperimentConfig::from_toml(
        sophon_workbench::QUICK_PRESET,
        "quick",
        &[
            "pretrain.epochs=1".into(),
            "sophon.outer_iterations=100000".into(),
        ],
    )
    .unwrap();
    app_on(config, "quick", runs)
}

/// The quick preset cut down to a run of a second or two.
fn tiny_quick() -> ExperimentConfig {
    ExperimentConfig::from_toml(
        sophon_workbench::QUICK_PRESET,
        "quick",
        &[
            "original.train=600".into(),
            "restricted.train=200".into(),
            "pretrain.epochs=1".into(),
            "sophon.outer_iterations=2".into(),
            "evaluation.strategies.0.epochs=1".into(),
        ],
    )
    .unwrap()
}

/// A window on `config` (the flex backend), writing its run folders into `runs`.
pub fn app_on(config: ExperimentConfig, origin: &str, runs: &Path) -> Workbench {
    let settings = Settings {
        backend: BackendChoice::Flex,
        ..Settings::default()
    };
    let options = AppOptions {
        runs_dir: Some(runs.to_path_buf()),
        ..AppOptions::default()
    };
    Workbench::new(config, origin.into(), settings, &options)
}

fn harness(app: Workbench) -> Harness<'static, Workbench> {
    harness_of_height(app, 900.0)
}

/// Whether the Start button is disabled (an invalid setting, or a run already going).
fn start_disabled(h: &Harness<'_, Workbench>) -> bool {
    h.get_by_label("Start").accesskit_node().is_disabled()
}

fn harness_of_height(app: Workbench, height: f32) -> Harness<'static, Workbench> {
    HarnessBuilder::default()
        .with_size(egui::vec2(1400.0, height))
        .build_ui_state(
            |ui, app: &mut Workbench| {
                // As eframe does: the logic, then the frame.
                app.logic(ui.ctx());
                app.show(ui);
            },
            app,
        )
}

/// Step frames until `done` holds (the worker runs on its own thread meanwhile).
fn frames_until(h: &mut Harness<'_, Workbench>, what: &str, done: impl Fn(&Workbench) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !done(h.state()) {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {:?}",
            h.state().run
        );
        h.step();
        std::thread::sleep(Duration::from_millis(20));
    }
    h.step();
}

#[test]
fn start_shows_curves_then_pause_resume_and_stop_work_from_the_buttons() {
    let runs = tempfile::tempdir().unwrap();
    let mut h = harness(quick_app(runs.path()));
    h.step();
    assert!(!start_disabled(&h));
    assert!(
        h.get_by_label("Pause").accesskit_node().is_disabled(),
        "nothing to pause yet"
    );
    assert!(
        h.query_all_by_label("FTS loss").next().is_none(),
        "no curves before a run"
    );

    h.get_by_label("Start").click();
    frames_until(&mut h, "pre-training metrics", |a| {
        a.series.get("pretrain/loss").is_some_and(|p| p.len() >= 3)
    });
    assert!(h.state().run.active);
    assert!(start_disabled(&h), "one run at a time");
    assert!(h.query_by_label_contains("Start disabled").is_none());
    frames_until(&mut h, "SOPHON's curves", |a| {
        a.series.get("sophon/fts_loss").is_some() && a.series.get("sophon/original_acc").is_some()
    });
    assert_eq!(h.state().run.phase, Some(Phase::Sophon));
    h.step();
    for series in [
        "intactness (validation)",
        "probe (restricted validation)",
        "FTS loss",
        "NTR loss",
    ] {
        assert!(
            h.query_all_by_label(series).next().is_some(),
            "the {series} curve appears in its plot's legend"
        );
    }
    let shown = format!("{} points", h.state().series.len());
    assert!(
        h.query_by_label_contains("points").is_some(),
        "point count {shown} not shown"
    );
    assert!(
        h.query_by_label_contains("SOPHON: simulated fine-tuning")
            .is_some(),
        "the explain panel follows the phase"
    );

    h.get_by_label("Pause").click();
    frames_until(&mut h, "the pause", |a| a.run.paused);
    assert!(
        h.query_by_label("paused").is_some(),
        "status bar says paused"
    );
    let frozen = h.state().series.len();
    for _ in 0..10 {
        h.step();
        std::thread::sleep(Duration::from_millis(30));
    }
    assert_eq!(h.state().series.len(), frozen, "no metrics while paused");

    // One outer iteration, then paused again.
    let step = h.state().run.step;
    h.get_by_label("Step").click();
    frames_until(&mut h, "one step", |a| a.run.step > step);
    assert!(h.state().run.paused);

    // A live change: applied from the next outer iteration and marked on the curves.
    h.state_mut().live_mut().expect("SOPHON is running").alpha = 2e-3;
    h.step();
    h.get_by_label("Apply live").click();
    h.step();
    let step = h.state().run.step;
    h.get_by_label("Step").click();
    frames_until(&mut h, "the marker", |a| !a.markers.is_empty());
    assert_eq!(h.state().markers[0].label, "α 0.001 -> 0.002");
    assert_eq!(h.state().markers[0].step, (step + 1) as f64);
    let alphas = h.state().series.get("sophon/alpha").unwrap().to_vec();
    assert_eq!(
        alphas.last().unwrap()[1],
        2e-3,
        "the run folder records the change"
    );

    h.get_by_label("Resume").click();
    frames_until(&mut h, "the resume", |a| {
        !a.run.paused && a.run.step > step + 1
    });

    h.get_by_label("Stop").click();
    frames_until(&mut h, "the stop", |a| !a.run.active);
    assert_eq!(h.state().run.ended, Some(RunStatus::Stopped));
    h.step();
    assert!(
        h.query_by_label("Stopped").is_some(),
        "the explain panel says the run was stopped"
    );
    assert!(h.state().error.is_none(), "{:?}", h.state().error);
    assert!(!start_disabled(&h));
    let dir = h
        .state()
        .run
        .dir
        .clone()
        .expect("the run folder was reported");
    assert!(dir.starts_with(runs.path()));
    assert!(dir.join("metrics.jsonl").is_file());
    // The finished run appears in the runs list (read on a helper thread).
    frames_until(&mut h, "the runs list", |a| {
        a.runs.iter().any(|r| r.dir == dir)
    });
}

#[test]
fn an_invalid_value_disables_start_with_the_reason_next_to_the_field() {
    let runs = tempfile::tempdir().unwrap();
    let mut h = harness(quick_app(runs.path()));
    h.step();
    let name_field = || by().role(Role::TextInput).value("quick");
    h.get(name_field()).click();
    h.step();
    h.get(name_field()).type_text("/x");
    h.step();
    h.step();
    assert_eq!(h.state().config.name, "quick/x");
    assert!(start_disabled(&h));
    assert!(
        h.query_by_label_contains("Start disabled: name: must be a non-empty name")
            .is_some(),
        "the reason is shown beside Start"
    );
    assert!(
        h.query_by_label("must be a non-empty name without path separators")
            .is_some(),
        "and next to the field"
    );
    // A data source with no file chosen names the field too.
    h.state_mut().config.name = "quick".into();
    h.state_mut().config.restricted = sophon_workbench::config::DataSource::Cifar10 {
        dir: Default::default(),
        train_limit: None,
        test_limit: None,
    };
    h.step();
    h.step();
    assert!(start_disabled(&h));
    assert!(
        h.query_by_label_contains("restricted.dir: no file or folder chosen")
            .is_some()
    );
}

#[test]
fn a_worker_error_shows_in_the_window_and_it_stays_usable() {
    let runs = tempfile::tempdir().unwrap();
    let mut app = quick_app(runs.path());
    app.config.restricted = sophon_workbench::config::DataSource::Cifar10 {
        dir: "/no/such/cifar".into(),
        train_limit: None,
        test_limit: None,
    };
    app.config.input.convert_channels = true;
    let mut h = harness(app);
    h.step();
    h.get_by_label("Start").click();
    frames_until(&mut h, "the failure", |a| a.run.ended.is_some());
    assert_eq!(h.state().run.ended, Some(RunStatus::Failed));
    let banner = h.get_by_label_contains("Error: ");
    let node = banner.accesskit_node();
    let text = format!("{:?} {:?}", node.label(), node.value());
    assert!(
        text.contains("/no/such/cifar"),
        "the error names the folder: {text}"
    );
    assert!(!start_disabled(&h), "the window stays usable");
}

/// A worker thread that dies (a panic) is noticed: the run ends as failed, the banner says so
/// with the panic's message, and Start works again with a fresh worker.
#[test]
fn a_worker_that_panics_is_noticed_and_shown() {
    let runs = tempfile::tempdir().unwrap();
    let mut app = quick_app(runs.path());
    let (commands, _dropped) = crossbeam_channel::unbounded();
    let (events_tx, events) = crossbeam_channel::unbounded::<sophon_workbench::run::Event>();
    let thread = std::thread::spawn(move || {
        let _sender = events_tx;
        panic!("a bug in the engine");
    });
    app.attach_worker(sophon_workbench::run::WorkerHandle {
        commands,
        events,
        thread,
    });
    app.run.active = true;
    let mut h = harness(app);
    frames_until(&mut h, "the dead worker", |a| !a.run.active);
    assert_eq!(h.state().run.ended, Some(RunStatus::Failed));
    let banner = h.get_by_label_contains("Error: ");
    let node = banner.accesskit_node();
    let text = format!("{:?} {:?}", node.label(), node.value());
    assert!(
        text.contains("worker thread stopped") && text.contains("a bug in the engine"),
        "{text}"
    );
    assert!(!start_disabled(&h));
}

struct Killed(Child);

impl Drop for Killed {
    /// SIGTERM first, so that Xvfb removes its lock file in /tmp; SIGKILL after a second.
    fn drop(&mut self) {
        // The shell's own `kill`: a minimal image may lack procps' /bin/kill.
        let _ = Command::new("sh")
            .args(["-c", &format!("kill -TERM {}", self.0.id())])
            .status();
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The real binary under Xvfb: `--preset presets/quick.toml --run-on-start` opens straight into a
/// running experiment, and its screenshot is not blank. Needs `xvfb` and `imagemagick`
/// (`.ci/run` installs them).
#[test]
fn the_binary_opens_a_window_that_runs_the_preset_on_start() {
    assert!(
        have("Xvfb") && have("import"),
        "this test needs Xvfb and ImageMagick: apt-get install xvfb imagemagick (see README.md)"
    );
    let tmp = tempfile::tempdir().unwrap();
    // Xvfb picks a free display itself and writes its number to stdout once it is ready: a
    // display number of our own choosing can meet a stale lock file of an earlier, killed server
    // whose pid now belongs to another process, and then Xvfb refuses to start.
    let mut xvfb = Killed(
        Command::new("Xvfb")
            .args([
                "-displayfd",
                "1",
                "-screen",
                "0",
                "1400x900x24",
                "-nolisten",
                "tcp",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("Xvfb starts"),
    );
    let mut number = String::new();
    {
        use std::io::BufRead;
        let stdout = xvfb.0.stdout.take().expect("Xvfb's stdout");
        std::io::BufReader::new(stdout)
            .read_line(&mut number)
            .expect("Xvfb reports its display");
    }
    let display = format!(":{}", number.trim());
    assert!(display.len() > 1, "Xvfb did not report a display");
    let runs = tmp.path().join("runs");
    let mut app = Killed(
        Command::new(env!("CARGO_BIN_EXE_sophon-workbench"))
            .args([
                "--preset",
                concat!(env!("CARGO_MANIFEST_DIR"), "/presets/quick.toml"),
            ])
            .arg("--run-on-start")
            .arg("--runs-dir")
            .arg(&runs)
            .env("DISPLAY", &display)
            .env_remove("WAYLAND_DISPLAY")
            .env("HOME", tmp.path())
            .env("XDG_DATA_HOME", tmp.path().join("data"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the workbench starts"),
    );
    // Wait for the run to write metrics: the window started it by itself.
    let deadline = Instant::now() + Duration::from_secs(120);
    let metrics = loop {
        if let Some(status) = app.0.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read;
            app.0
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("the window exited ({status}): {err}");
        }
        let found = std::fs::read_dir(&runs)
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| {
                let m = e.ok()?.path().join("metrics.jsonl");
                (std::fs::metadata(&m).ok()?.len() > 0).then_some(m)
            });
        if let Some(m) = found {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "no run folder with metrics after 120 s"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    std::thread::sleep(Duration::from_secs(4));
    let shot = tmp.path().join("window.png");
    let status = Command::new("import")
        .args(["-window", "root"])
        .arg(&shot)
        .env("DISPLAY", &display)
        .status()
        .unwrap();
    assert!(status.success(), "import failed");
    if let Ok(keep) = std::env::var("SOPHON_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }
    let img = image::open(&shot).unwrap().to_rgb8();
    assert_eq!((img.width(), img.height()), (1400, 900));
    let mut colours = std::collections::HashSet::new();
    for p in img.pixels() {
        colours.insert(p.0);
    }
    assert!(
        colours.len() > 50,
        "the screenshot is blank ({} colours)",
        colours.len()
    );
    assert!(
        std::fs::read_to_string(metrics)
            .unwrap()
            .contains("pretrain/loss")
    );
}

#[test]
fn a_preset_opened_by_path_replaces_the_experiment_and_a_bad_one_is_named() {
    let runs = tempfile::tempdir().unwrap();
    let preset = runs.path().join("mine.toml");
    std::fs::write(
        &preset,
        sophon_workbench::QUICK_PRESET.replace("name = \"quick\"", "name = \"from-file\""),
    )
    .unwrap();
    let mut h = harness(quick_app(runs.path()));
    h.step();
    let open_path = |h: &mut Harness<'_, Workbench>, path: &str| {
        h.get_by_label("File").click();
        h.run_steps(3); // the menu opens over a couple of frames
        h.get(by().role(Role::TextInput).label("Path")).click();
        h.step();
        h.get(by().role(Role::TextInput).label("Path"))
            .type_text(path);
        h.step();
        h.get_by_label("Open").click();
        h.step();
    };
    open_path(&mut h, preset.to_str().unwrap());
    frames_until(&mut h, "the preset", |a| a.config.name == "from-file");
    assert_eq!(h.state().origin, preset.display().to_string());

    std::fs::write(runs.path().join("bad.toml"), "name = [").unwrap();
    let bad = runs.path().join("bad.toml");
    open_path(&mut h, bad.to_str().unwrap());
    frames_until(&mut h, "the error", |a| a.error.is_some());
    let error = h.state().error.clone().unwrap();
    assert!(
        error.contains("bad.toml") && error.contains("line 1"),
        "{error}"
    );
    assert_eq!(
        h.state().config.name,
        "from-file",
        "a bad preset changes nothing"
    );
}

/// The denoising task in the window: the task switch, the sample grids arriving beside the
/// curves, the step slider moving the grids and the cursor on the SOPHON curves together.
#[test]
fn a_denoising_run_shows_sample_grids_with_a_step_slider() {
    let runs = tempfile::tempdir().unwrap();
    let mut app = quick_app(runs.path());
    // Switching the task keeps the data and picks the task's model and loss.
    let mut h = harness(app);
    h.step();
    h.get_by_label("denoising").click();
    h.step();
    {
        let c = &h.state().config;
        assert_eq!(c.task, sophon_workbench::config::Task::Denoising);
        assert_eq!(c.model.kind, sophon_workbench::config::ModelKind::Unet);
        assert_eq!(
            c.sophon.as_ref().unwrap().loss,
            sophon_workbench::config::sophon::SuppressionLoss::Dos
        );
        c.validate().expect("the switched experiment is valid");
    }
    h.get_by_label("classification").click();
    h.step();
    assert_eq!(
        h.state().config.model.kind,
        sophon_workbench::config::ModelKind::CnnSmall
    );

    // The quick denoising preset, started from the window.
    app = quick_app(runs.path());
    // With model selection (any model qualifies), so the window shows which one was kept.
    app.config = ExperimentConfig::from_toml(
        sophon_workbench::DENOISE_QUICK_PRESET,
        "denoise-quick",
        &["sophon.select={holdout=100, tolerance=100.0}".into()],
    )
    .unwrap();
    let mut h = harness(app);
    h.step();
    assert!(
        h.query_by_label_contains("Sample grids appear here")
            .is_some(),
        "a denoising experiment shows where its grids will be"
    );
    h.get_by_label("Start").click();
    frames_until(&mut h, "the end of the run", |a| {
        a.run.ended.is_some() && a.samples.steps("sophon").len() == 3
    });
    assert_eq!(h.state().run.ended, Some(RunStatus::Finished));
    h.step();
    assert!(
        h.query_by_label("Finished").is_some(),
        "the explain panel says the run finished"
    );
    let verdict = h
        .state()
        .run
        .summary
        .as_ref()
        .unwrap()
        .verdict
        .clone()
        .unwrap();
    assert!(
        h.query_by_label(&format!("Verdict: {}", verdict.status))
            .is_some(),
        "the explain panel leads its result with the verdict"
    );
    let store = &h.state().samples;
    assert_eq!(store.steps("sophon"), vec![0, 2, 4]);
    for phase in [
        "pretrain",
        "sophon",
        "protected",
        "attack-reference-scratch",
    ] {
        assert!(
            store.phases.iter().any(|p| p == phase),
            "{phase} in {:?}",
            store.phases
        );
    }
    assert!(
        h.query_all_by_label_contains("ε-MSE").next().is_some(),
        "the curves and the result speak of ε-MSE"
    );
    let kept = h
        .state()
        .run
        .summary
        .as_ref()
        .unwrap()
        .sophon
        .as_ref()
        .unwrap()
        .selected_iteration;
    let kept = kept.expect("a model within a tolerance of 100× is always kept");
    assert!(
        h.query_by_label_contains(&format!("protected (iteration {kept}, by model selection)"))
            .is_some(),
        "the result names the kept model"
    );
    assert!(
        h.query_all_by_label(&format!("model kept: iteration {kept}"))
            .next()
            .is_some(),
        "a marker on the curves shows it"
    );

    // Pick the SOPHON grids and move the slider to iteration 2: the grids and the cursor follow.
    h.get_by_label("during SOPHON").click();
    h.step();
    assert!(h.query_by_label_contains("original, step 4").is_some());
    h.state_mut().samples.step = Some(2);
    h.step();
    assert!(h.query_by_label_contains("original, step 2").is_some());
    assert!(h.query_by_label_contains("restricted, step 2").is_some());
    assert_eq!(h.state().samples.cursor(), Some(2.0));
    assert!(
        h.query_all_by_label("sample grids").next().is_some(),
        "the cursor is drawn on the curves"
    );
}

#[test]
fn the_draw_one_environment_box_shows_with_two_environments_and_sets_the_preset() {
    let runs = tempfile::tempdir().unwrap();
    // Tall enough that the setup panel's SOPHON section is on screen without scrolling.
    let mut h = harness_of_height(quick_app(runs.path()), 3000.0);
    h.step();
    let label = "draw one per FTS step";
    assert!(
        h.query_by_label(label).is_none(),
        "nothing to draw from with one environment"
    );
    let sophon = h.state_mut().config.sophon.as_mut().unwrap();
    let second = sophon.environments[0].clone();
    sophon.environments.push(second);
    h.step();
    h.get_by_label(label).click();
    h.step();
    h.step();
    assert!(h.state().config.sophon.as_ref().unwrap().draw_environment);
}

/// The probe's curve has its row in the setup panel, and a curve longer than the probe's
/// fine-tune disables Start with the field named.
#[test]
fn the_probe_curve_row_shows_and_a_curve_past_the_probes_steps_is_named() {
    let runs = tempfile::tempdir().unwrap();
    // Tall enough that the setup panel's SOPHON section is on screen without scrolling.
    let mut h = harness_of_height(quick_app(runs.path()), 3000.0);
    h.step();
    assert!(h.query_all_by_label("Probe curve").next().is_some());
    assert!(!start_disabled(&h));
    let probe = &mut h.state_mut().config.sophon.as_mut().unwrap().probe;
    probe.curve = probe.steps + 1;
    h.step();
    h.step();
    assert!(start_disabled(&h));
    assert!(
        h.query_all_by_label_contains("sophon.probe.curve")
            .next()
            .is_some(),
        "the reason names the field"
    );
}

/// Model selection (its tolerance and window) and suppression at the start have their rows in
/// the setup panel: the boxes set the preset, and the window's field cannot hold the refused 0.
#[test]
fn the_selection_and_suppression_at_start_rows_set_the_preset() {
    let runs = tempfile::tempdir().unwrap();
    // Tall enough that the setup panel's SOPHON section is on screen without scrolling.
    let mut h = harness_of_height(quick_app(runs.path()), 3000.0);
    h.step();
    let sophon = |h: &Harness<'_, Workbench>| h.state().config.sophon.clone().unwrap();
    assert!(
        sophon(&h).select.is_none(),
        "the quick preset hands on its last model"
    );
    assert!(!sophon(&h).suppress_start);
    assert!(
        h.query_all_by_label("tolerance / window").next().is_none(),
        "no window without selection"
    );

    h.get_by_label("best evaluated model").click();
    h.step();
    h.step();
    let select = sophon(&h).select.expect("the box turns selection on");
    assert_eq!((select.tolerance, select.window), (0.03, 1));
    assert!(h.query_all_by_label("tolerance / window").next().is_some());

    h.get_by_label("also before fine-tuning").click();
    h.step();
    h.step();
    assert!(sophon(&h).suppress_start);

    // The window's field holds no 0 (the value a preset is refused for): it shows its minimum.
    h.state_mut()
        .config
        .sophon
        .as_mut()
        .unwrap()
        .select
        .as_mut()
        .unwrap()
        .window = 0;
    h.step();
    h.step();
    assert_eq!(sophon(&h).select.unwrap().window, 1);
    assert!(!start_disabled(&h));

    h.get_by_label("best evaluated model").click();
    h.step();
    h.step();
    assert!(sophon(&h).select.is_none(), "and off again");
}

#[test]
fn presenter_mode_waits_at_each_phase_for_next_and_narrates_with_the_runs_numbers() {
    let runs = tempfile::tempdir().unwrap();
    let config = ExperimentConfig::from_toml(
        sophon_workbench::QUICK_PRESET,
        "quick",
        &["sophon.outer_iterations=20".into()],
    )
    .unwrap();
    let mut h = harness(app_on(config, "quick", runs.path()));
    h.step();
    assert!(h.query_by_label("Experiment").is_some(), "the setup panel");
    h.get_by_label("View").click();
    h.run_steps(3); // the menu opens over a couple of frames
    h.get_by_label("Presenter").click();
    h.step();
    h.step();
    assert!(h.state().presenter());
    assert!(
        h.query_by_label("Experiment").is_none(),
        "presenter mode folds the setup panel away"
    );
    assert_eq!(h.ctx.zoom_factor(), 1.4, "larger type");

    h.get_by_label("Start").click();
    frames_until(&mut h, "the stop before SOPHON", |a| {
        a.run.waiting == Some(Phase::Sophon)
    });
    assert!(h.state().run.paused);
    for _ in 0..10 {
        h.step();
        std::thread::sleep(Duration::from_millis(30));
    }
    assert!(
        h.state().series.get("sophon/fts_loss").is_none(),
        "SOPHON waits for Next"
    );
    assert!(h.query_by_label("Pre-trained. Next: protect it").is_some());
    let pretrained = h.state().series.get("pretrain/original_acc").unwrap();
    let said = format!("scores {:.2} accuracy", pretrained.last().unwrap()[1]);
    assert!(
        h.query_by_label_contains(&said).is_some(),
        "the narration quotes the run's own number ({said})"
    );

    h.get_by_label("Next: protect").click();
    frames_until(&mut h, "the stop before the attack", |a| {
        a.run.waiting == Some(Phase::Attack)
    });
    assert_eq!(
        h.state().series.get("sophon/fts_loss").map(<[_]>::len),
        Some(20),
        "SOPHON ran every outer iteration"
    );
    assert!(
        h.state().series.names().all(|n| !n.starts_with("attack/")),
        "the attack waits for Next"
    );
    h.step();
    assert!(h.query_by_label("Protected. Next: attack it").is_some());
    assert!(h.query_by_label_contains("still scores").is_some());

    h.get_by_label("Next: attack").click();
    frames_until(&mut h, "the end of the run", |a| !a.run.active);
    h.step();
    assert_eq!(h.state().run.ended, Some(RunStatus::Finished));
    assert!(h.query_by_label_contains("Finished: ").is_some());
    let after_one = |start: &str| {
        let series = format!("attack/sgd-momentum/{start}/restricted_acc");
        h.state().series.get(&series).unwrap()[1][1]
    };
    let said = format!(
        "After one epoch, the original model reaches {:.2} accuracy on {}; a fresh model {:.2}, the protected one {:.2}.",
        after_one("original"),
        h.state().config.restricted.describe(),
        after_one("scratch"),
        after_one("protected")
    );
    assert!(
        h.query_by_label_contains(&said).is_some(),
        "after one epoch, the scratch start's own number ({said})"
    );
    assert!(h.query_by_label_contains("Verdict: ").is_some());

    // Presenter mode off: the setup panel is back at the usual size.
    h.get_by_label("View").click();
    h.run_steps(3); // the menu opens over a couple of frames
    h.get_by_label("Presenter").click();
    h.step();
    h.step();
    assert!(!h.state().presenter());
    assert!(h.query_by_label("Experiment").is_some());
    assert_eq!(h.ctx.zoom_factor(), 1.0);
}

#[test]
fn a_watched_sweep_folder_gains_a_point_in_the_runs_tab_when_its_run_finishes() {
    use sophon_workbench::run::sweep::{Axis, expand};
    use sophon_workbench::run::sweep_folder::SweepFolder;
    let runs = tempfile::tempdir().unwrap();
    let base = tiny_quick();
    let axes = [Axis::parse("seed=1,2").unwrap()];
    let sweep =
        SweepFolder::create(runs.path(), &base, &axes, &expand(&base, &axes).unwrap()).unwrap();
    let mut h = harness(app_on(base, "quick", runs.path()));

    // Not a sweep folder: named, and nothing is watched.
    h.state_mut().watch_sweep(runs.path().join("nothing"));
    assert!(h.state().watch.is_none());
    assert!(
        h.state()
            .error
            .as_ref()
            .unwrap()
            .contains("not a sweep folder")
    );
    h.state_mut().error = None;

    h.state_mut().watch_sweep(sweep.dir.clone());
    frames_until(&mut h, "the sweep folder read", |a| {
        a.watch.as_ref().is_some_and(|w| w.total == 2)
    });
    assert!(h.state().runs.is_empty(), "no point has started");
    assert!(
        h.query_by_label_contains("0 of 2 points started, 0 finished")
            .is_some()
    );

    // A point runs (as an array task would: the binary, into the point's run folder) while the
    // window watches; it appears without a refresh, and ends up finished with its figures.
    let mut task = Command::new(env!("CARGO_BIN_EXE_sophon-workbench"))
        .arg("run")
        .arg(sweep.preset(0))
        .arg("--out")
        .arg(sweep.run_dir(0))
        .args(["--backend", "flex"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let dir = sweep.run_dir(0);
    frames_until(&mut h, "the finished point in the Runs tab", |a| {
        a.runs
            .iter()
            .any(|r| r.dir == dir && r.summary.status == RunStatus::Finished)
    });
    assert!(task.wait().unwrap().success());
    let entry = h.state().runs.iter().find(|r| r.dir == dir).unwrap();
    assert!(entry.fine_tunability().is_some(), "a point on the scatter");
    h.step();
    assert!(
        h.query_all_by_label_contains("quick-seed1")
            .next()
            .is_some(),
        "the point's row"
    );
    assert!(
        h.query_by_label_contains("1 of 2 points started, 1 finished")
            .is_some()
    );
    // A point still running, overlaid: its curves follow its metrics.jsonl as it grows.
    let task = Killed(
        Command::new(env!("CARGO_BIN_EXE_sophon-workbench"))
            .arg("run")
            .arg(sweep.preset(1))
            .arg("--out")
            .arg(sweep.run_dir(1))
            .args([
                "--backend",
                "flex",
                "--set",
                "sophon.outer_iterations=100000",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let running = sweep.run_dir(1);
    frames_until(&mut h, "the running point listed with its progress", |a| {
        a.runs.iter().any(|r| {
            r.dir == running
                && r.state
                    .as_deref()
                    .is_some_and(|s| s.starts_with("running at "))
        })
    });
    h.state_mut()
        .runs
        .iter_mut()
        .find(|r| r.dir == running)
        .unwrap()
        .overlay = true;
    let losses = |a: &Workbench| {
        a.runs
            .iter()
            .find(|r| r.dir == running)
            .and_then(|r| r.series.as_ref())
            .and_then(|s| s.get("sophon/fts_loss").map(<[_]>::len))
            .unwrap_or(0)
    };
    frames_until(&mut h, "the overlaid curve", |a| losses(a) > 0);
    let first = losses(h.state());
    frames_until(&mut h, "the overlaid curve to grow", |a| {
        losses(a) > first + 5
    });
    drop(task);
    // Stop watching: the runs folder is listed again.
    h.get_by_label("Stop watching").click();
    h.step();
    assert!(h.state().watch.is_none());
}

#[test]
fn the_sweep_dialog_runs_its_grid_in_a_sweep_folder_and_watches_it() {
    let runs = tempfile::tempdir().unwrap();
    let config = tiny_quick();
    let mut app = app_on(config, "quick", runs.path());
    app.settings.sweep = sophon_workbench::app::sweep::SweepSpec {
        knob1: "seed".into(),
        values1: "1, 2".into(),
        knob2: String::new(),
        values2: String::new(),
    };
    app.settings.tab = sophon_workbench::app::Tab::Runs;
    let mut h = harness(app);
    h.step();
    h.get_by_label("Sweep…").click();
    h.run_steps(5); // the window sizes itself over a few frames
    h.get_by_label("Queue 2 runs").click();
    frames_until(&mut h, "both points finished", |a| {
        a.watch.as_ref().is_some_and(|w| w.total == 2)
            && a.runs.len() == 2
            && a.runs
                .iter()
                .all(|r| r.summary.status == RunStatus::Finished)
            && !a.run.active
    });
    let sweep = h.state().watch.as_ref().unwrap().dir.clone();
    assert!(sweep.starts_with(runs.path()));
    let folder = sophon_workbench::run::sweep_folder::SweepFolder::open(&sweep).unwrap();
    assert_eq!(
        folder.finished().len(),
        2,
        "the same folder `sweep --status` reads"
    );
    for (i, r) in h.state().runs.iter().enumerate() {
        assert_eq!(r.dir, folder.run_dir(i));
        assert_eq!(r.summary.seed, i as u64 + 1);
    }
}

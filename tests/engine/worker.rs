//! The worker thread: events, pause/resume/step, stopping midway, and the run folder.

use std::time::{Duration, Instant};

use sophon_workbench::run::folder::{read_metrics, read_summary};
use sophon_workbench::run::{self, BackendChoice, Command, Event, OutDir, RunFailure, RunRequest};
use sophon_workbench::sophon::Phase;
use sophon_workbench::sophon::summary::RunStatus;

use crate::training::small;

fn start(dir: &std::path::Path, overrides: &[&str]) -> run::WorkerHandle {
    let worker = run::spawn(Box::new(|| {}));
    let request = RunRequest {
        config: small(overrides),
        backend: BackendChoice::Flex,
        out: OutDir::Exact(dir.to_path_buf()),
        resume: false,
    };
    worker
        .commands
        .send(Command::Start(Box::new(request)))
        .unwrap();
    worker
}

fn next(worker: &run::WorkerHandle) -> Event {
    worker
        .events
        .recv_timeout(Duration::from_secs(120))
        .expect("the worker answers")
}

fn wait_for_progress(worker: &run::WorkerHandle, steps: usize) {
    let mut seen = 0;
    while seen < steps {
        match next(worker) {
            Event::Progress { .. } => seen += 1,
            e if e.is_terminal() => panic!("ended early: {e:?}"),
            _ => {}
        }
    }
}

#[test]
fn stop_ends_a_run_promptly_and_leaves_valid_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let worker = start(&out, &["pretrain.epochs=50"]);
    wait_for_progress(&worker, 5);
    let asked = Instant::now();
    worker.commands.send(Command::Stop).unwrap();
    let summary = loop {
        match next(&worker) {
            Event::Stopped(s) => break s,
            e if e.is_terminal() => panic!("{e:?}"),
            _ => {}
        }
    };
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "stopped after {:?}",
        asked.elapsed()
    );
    assert_eq!(summary.status, RunStatus::Stopped);
    assert_eq!(read_summary(&out).unwrap().status, RunStatus::Stopped);
    let metrics = read_metrics(&out).unwrap();
    assert!(
        metrics
            .iter()
            .filter(|m| m.series == "pretrain/loss")
            .count()
            >= 5
    );
    let raw = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    assert_eq!(
        raw.lines().count(),
        metrics.len(),
        "every line is whole JSON"
    );
    let config = std::fs::read_to_string(out.join("config.toml")).unwrap();
    sophon_workbench::config::ExperimentConfig::from_toml(&config, "config.toml", &[]).unwrap();
    let env: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("environment.json")).unwrap())
            .unwrap();
    assert_eq!(env["backend"], "flex");
    // What decides the CPU arithmetic, for a reader comparing two machines' figures.
    let cpu = &env["cpu"];
    assert_eq!(cpu["arch"], std::env::consts::ARCH);
    assert!(cpu["compute_threads"].as_u64().unwrap() >= 1, "{cpu}");
    assert!(cpu["features"].is_array(), "{cpu}");
    if cfg!(target_arch = "x86_64") {
        let features = cpu["features"].as_array().unwrap();
        assert!(features.iter().any(|f| f == "sse4.2"), "{cpu}");
        // gemm's kernels follow the CPU: AVX-512 where it has AVX-512F (and the build carries
        // them, the default), else AVX2/FMA where it has FMA.
        let has = |f: &str| features.iter().any(|g| g == f);
        let expected = if has("avx512f") && cfg!(feature = "avx512") {
            "avx512f"
        } else if has("fma") {
            "avx2+fma"
        } else {
            "scalar"
        };
        assert_eq!(cpu["matmul_kernels"], expected, "{cpu}");
    }
    drop(worker.commands);
    worker.thread.join().unwrap();
}

#[test]
fn pause_holds_the_run_and_step_resume_continue_it() {
    let dir = tempfile::tempdir().unwrap();
    let worker = start(&dir.path().join("run"), &["pretrain.epochs=50"]);
    wait_for_progress(&worker, 2);
    worker.commands.send(Command::Pause).unwrap();
    loop {
        if let Event::Paused = next(&worker) {
            break;
        }
    }
    // Paused: no progress for a while.
    std::thread::sleep(Duration::from_millis(400));
    let drained: Vec<Event> = worker.events.try_iter().collect();
    assert!(
        !drained.iter().any(|e| matches!(e, Event::Progress { .. })),
        "{drained:?}"
    );
    // Step: exactly one more step, then paused again.
    worker.commands.send(Command::Step).unwrap();
    let mut progressed = 0;
    loop {
        match next(&worker) {
            Event::Progress { .. } => progressed += 1,
            Event::Paused => break,
            e => assert!(!e.is_terminal(), "{e:?}"),
        }
    }
    assert_eq!(progressed, 1);
    // Step, then Resume while that step runs: the resume is announced.
    worker.commands.send(Command::Step).unwrap();
    worker.commands.send(Command::Resume).unwrap();
    loop {
        match next(&worker) {
            Event::Resumed => break,
            e => assert!(!e.is_terminal(), "{e:?}"),
        }
    }
    wait_for_progress(&worker, 3);
    worker.commands.send(Command::Stop).unwrap();
    while !next(&worker).is_terminal() {}
}

#[test]
fn an_existing_run_folder_is_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("summary.json"), "{}").unwrap();
    let worker = start(dir.path(), &[]);
    match next(&worker) {
        Event::Failed(e) => {
            assert!(matches!(*e, RunFailure::Folder(_)), "{e:?}");
            assert!(e.to_string().contains("already holds a run"), "{e}");
        }
        e => panic!("{e:?}"),
    }
    assert_eq!(
        std::fs::read_to_string(dir.path().join("summary.json")).unwrap(),
        "{}"
    );
}

#[test]
fn a_data_error_fails_the_run_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    let worker = start(
        &dir.path().join("run"),
        &[
            "restricted={ source = \"folder\", train = \"/no/such/train\", test = \"/no/such/test\" }",
        ],
    );
    loop {
        match next(&worker) {
            Event::Failed(e) => {
                assert!(matches!(*e, RunFailure::Engine(_)), "{e:?}");
                assert!(e.to_string().contains("/no/such/train"), "{e}");
                break;
            }
            e if e.is_terminal() => panic!("{e:?}"),
            _ => {}
        }
    }
}

#[test]
fn phase_stops_wait_before_sophon_and_the_attack_and_a_stop_there_ends_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let worker = start(&out, &["sophon.outer_iterations=3"]);
    worker.commands.send(Command::StopAtPhases(true)).unwrap();
    // Before SOPHON: waiting, and no SOPHON step runs until Resume.
    let mut phases = Vec::new();
    loop {
        match next(&worker) {
            Event::Phase { phase, .. } => phases.push(phase),
            Event::WaitingAt(phase) => {
                assert_eq!(phase, Phase::Sophon);
                break;
            }
            e if e.is_terminal() => panic!("ended early: {e:?}"),
            _ => {}
        }
    }
    assert_eq!(phases.last(), Some(&Phase::Sophon));
    assert!(matches!(next(&worker), Event::Paused));
    assert!(
        worker
            .events
            .recv_timeout(Duration::from_millis(500))
            .is_err(),
        "nothing happens while it waits"
    );
    worker.commands.send(Command::Resume).unwrap();
    let mut sophon_steps = 0;
    loop {
        match next(&worker) {
            Event::Progress { .. } => sophon_steps += 1,
            Event::WaitingAt(phase) => {
                assert_eq!(phase, Phase::Attack);
                break;
            }
            e if e.is_terminal() => panic!("ended early: {e:?}"),
            _ => {}
        }
    }
    assert_eq!(sophon_steps, 3, "every outer iteration ran after Next");
    // A Stop at the attack's stop ends the run as stopped, no attack run.
    worker.commands.send(Command::Stop).unwrap();
    let summary = loop {
        match next(&worker) {
            Event::Stopped(s) => break s,
            Event::Progress { .. } => panic!("no attack step after Stop"),
            e if e.is_terminal() => panic!("{e:?}"),
            _ => {}
        }
    };
    assert_eq!(summary.status, RunStatus::Stopped);
    assert!(summary.attack.is_empty());
    assert_eq!(read_summary(&out).unwrap().status, RunStatus::Stopped);
}

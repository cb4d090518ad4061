//! What a hostile or unlucky user does to a run: learning rates that diverge, sizes the machine
//! cannot hold, settings that are nonsense, files that lie, and runs stopped from outside. Each
//! test names the behaviour a user relies on: nothing silent, nothing lost.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sophon_workbench::config::ExperimentConfig;
use sophon_workbench::run::folder::{EventLine, read_events, read_summary};
use sophon_workbench::run::{self, BackendChoice, Command, Event, OutDir, RunRequest};
use sophon_workbench::sophon::summary::{RunStatus, Summary};

use crate::training::small;

/// Run `config` in `dir` on a worker (flex) to its end; the summary and `metrics.jsonl`'s
/// lines.
fn run_to_end(dir: &Path, config: ExperimentConfig) -> (Summary, String) {
    let worker = run::spawn(Box::new(|| {}));
    let request = RunRequest {
        config,
        backend: BackendChoice::Flex,
        out: OutDir::Exact(dir.to_path_buf()),
        resume: false,
    };
    worker
        .commands
        .send(Command::Start(Box::new(request)))
        .unwrap();
    loop {
        let e = worker
            .events
            .recv_timeout(Duration::from_secs(300))
            .expect("the worker answers");
        if let Event::Failed(message) = &e {
            panic!("failed: {message}");
        }
        if e.is_terminal() {
            break;
        }
    }
    let metrics = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    (read_summary(dir).unwrap(), metrics)
}

/// The quick preset, shortened: one pre-training epoch unless the case needs more.
fn quick(overrides: &[&str]) -> ExperimentConfig {
    let mut o = vec![
        "sophon.outer_iterations=4",
        "evaluation.strategies.0.epochs=1",
    ];
    o.extend_from_slice(overrides);
    small(&o)
}

/// No metric line of `metrics` holds a `null` (what a NaN becomes in JSON).
fn no_null_values(metrics: &str) {
    for line in metrics.lines() {
        assert!(
            !line.contains("null"),
            "a NaN reached metrics.jsonl: {line}"
        );
    }
}

#[test]
fn a_diverging_learning_rate_in_any_phase_is_an_event_never_a_silent_result() {
    let cases: [(&str, &str); 5] = [
        ("pretrain.optimizer.lr=1e10", "pretrain"),
        ("sophon.alpha=1e10", "sophon"),
        ("sophon.beta=1e10", "sophon"),
        ("sophon.environments.0.optimizer.lr=1e10", "sophon"),
        ("evaluation.strategies.0.optimizer.lr=1e10", "attack"),
    ];
    for (assignment, phase) in cases {
        let dir = tempfile::tempdir().unwrap();
        let (summary, metrics) = run_to_end(dir.path(), quick(&[assignment]));
        assert_eq!(summary.status, RunStatus::Diverged, "{assignment}");
        let first = summary
            .divergences
            .first()
            .expect("the divergence is listed");
        assert!(first.phase.starts_with(phase), "{assignment}: {first:?}");
        no_null_values(&metrics);
        let events = read_events(dir.path()).unwrap();
        assert!(
            events
                .iter()
                .any(|EventLine::Divergence(d)| d.phase.starts_with(phase)),
            "{assignment}: the event is in metrics.jsonl"
        );
        match phase {
            "pretrain" => {
                assert!(
                    summary.sophon.is_none() && summary.attack.is_empty(),
                    "{assignment}"
                );
            }
            "sophon" => {
                let s = summary.sophon.as_ref().expect("SOPHON's part");
                assert!(s.diverged.is_some(), "{assignment}");
                let back = s.rolled_back_to.expect("rolled back");
                assert!(back < 4, "{assignment}: rolled back to {back}");
                // The model handed on is the last good one: its intactness is a real figure
                // near the pre-trained model's, not a wreck's 0.100.
                let pre = summary.pretrain.as_ref().unwrap().scores.original;
                assert!(
                    (s.scores.original - pre).abs() < 0.1,
                    "{assignment}: {} after rollback vs {pre} pre-trained",
                    s.scores.original
                );
                assert_eq!(
                    summary.attack.len(),
                    3,
                    "the attacks ran from the rolled-back model"
                );
            }
            _ => {
                assert!(
                    summary.attack.iter().all(|a| a.diverged.is_some()),
                    "{assignment}: every start diverges at that step"
                );
            }
        }
    }
}

#[test]
fn the_guard_and_a_divergence_roll_back_to_the_last_good_evaluation() {
    // α = 1e10 wrecks the model in the first iteration; the guard at 0.5 must hand on the
    // last evaluated model that passed it (here the pre-trained one), not a wreck.
    let dir = tempfile::tempdir().unwrap();
    let config = quick(&[
        "pretrain.epochs=4",
        "sophon.alpha=1e10",
        "sophon.eval_every=1",
        "sophon.guard={ min_original_acc = 0.5 }",
    ]);
    let (summary, _) = run_to_end(dir.path(), config);
    let s = summary.sophon.unwrap();
    let pre = summary.pretrain.unwrap().scores.original;
    assert!(pre > 0.5, "the pre-trained model passes the guard ({pre})");
    assert_eq!(s.rolled_back_to, Some(0));
    assert!(
        (s.scores.original - pre).abs() < 1e-9,
        "protected {} should be the pre-trained {pre}",
        s.scores.original
    );

    // With on_divergence = "stop" the run ends at SOPHON: no attack is reported.
    let dir = tempfile::tempdir().unwrap();
    let config = quick(&["sophon.alpha=1e10", "sophon.on_divergence=stop"]);
    let (summary, _) = run_to_end(dir.path(), config);
    assert_eq!(summary.status, RunStatus::Diverged);
    assert!(summary.attack.is_empty() && summary.sophon.is_none());
    assert_eq!(summary.divergences.len(), 1);

    // A probe that diverges cannot measure anything: the run says so.
    let dir = tempfile::tempdir().unwrap();
    let (summary, _) = run_to_end(dir.path(), quick(&["sophon.probe.optimizer.lr=1e10"]));
    assert_eq!(summary.status, RunStatus::Diverged);
    assert_eq!(summary.divergences[0].phase, "probe");
}

/// The error of loading `overrides` on the quick preset.
fn config_error(overrides: &[&str]) -> String {
    let o: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    ExperimentConfig::from_toml(sophon_workbench::QUICK_PRESET, "quick", &o)
        .unwrap_err()
        .to_string()
}

#[test]
fn every_optimizer_block_and_size_is_validated_with_its_field_named() {
    for (assignment, field) in [
        (
            "sophon.environments.0.optimizer.momentum=nan",
            "sophon.environments[0].optimizer.momentum",
        ),
        (
            "sophon.environments.0.optimizer.weight_decay=-1e6",
            "sophon.environments[0].optimizer.weight_decay",
        ),
        ("sophon.probe.optimizer.lr=nan", "sophon.probe.optimizer.lr"),
        ("sophon.probe.optimizer.lr=-5", "sophon.probe.optimizer.lr"),
        ("sophon.probe.batch_size=0", "sophon.probe.batch_size"),
        (
            "sophon.ntr_batch_size=10000000000000",
            "sophon.ntr_batch_size",
        ),
        (
            "sophon.environments.0.batch_size=10000000000000",
            "sophon.environments[0].batch_size",
        ),
        (
            "sophon.probe.batch_size=10000000000000",
            "sophon.probe.batch_size",
        ),
        (
            "evaluation.strategies.0.batch_size=10000000000000",
            "evaluation.strategies[0].batch_size",
        ),
        ("original.train=10000000000000", "original.train"),
        ("restricted.test=10000000000000", "restricted.test"),
    ] {
        let e = config_error(&[assignment]);
        assert!(e.starts_with(field), "{assignment}: {e}");
    }
}

#[test]
fn a_batch_larger_than_its_training_set_is_refused_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let worker = run::spawn(Box::new(|| {}));
    let request = RunRequest {
        config: quick(&["sophon.ntr_batch_size=5000"]),
        backend: BackendChoice::Flex,
        out: OutDir::Exact(dir.path().join("run")),
        resume: false,
    };
    worker
        .commands
        .send(Command::Start(Box::new(request)))
        .unwrap();
    let message = loop {
        match worker.events.recv_timeout(Duration::from_secs(60)).unwrap() {
            Event::Failed(m) => break m.to_string(),
            e if e.is_terminal() => panic!("{e:?}"),
            _ => {}
        }
    };
    assert!(
        message
            .starts_with("sophon.ntr_batch_size = 5000 is larger than the original training set"),
        "{message}"
    );
}

fn workbench() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_sophon-workbench"))
}

/// `sophon-workbench resume <out> --backend flex`, to its end.
fn resume(out: &Path) -> std::process::Output {
    workbench()
        .arg("resume")
        .arg(out)
        .args(["--backend", "flex"])
        .output()
        .unwrap()
}

fn quick_preset() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/presets/quick.toml")
}

#[test]
fn the_command_line_says_diverged_with_its_own_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let o = workbench()
        .args(["run", quick_preset(), "--backend", "flex"])
        .args(["--set", "pretrain.epochs=1", "--set", "sophon.alpha=1e10"])
        .args(["--set", "sophon.outer_iterations=3"])
        .args(["--set", "evaluation.strategies.0.epochs=1"])
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("the run diverged (sophon diverged at step"),
        "{err}"
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("DIVERGED at iteration"), "{stdout}");
    assert_eq!(read_summary(&out).unwrap().status, RunStatus::Diverged);

    // Sizes the machine cannot hold: a clear one-line error, never an aborted allocation.
    for assignment in [
        "sophon.ntr_batch_size=10000000000000",
        "original.train=10000000000000",
    ] {
        let o = workbench()
            .args([
                "run",
                quick_preset(),
                "--backend",
                "flex",
                "--set",
                assignment,
            ])
            .arg("--out")
            .arg(dir.path().join("never"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{assignment}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{assignment}: {err}");
        let field = assignment.split('=').next().unwrap();
        assert!(
            err.contains(field) && !err.contains("memory allocation"),
            "{err}"
        );
    }
}

/// Wait until `metrics.jsonl` in `dir` has a line containing `needle`.
fn wait_for_metric(dir: &Path, needle: &str, child: &mut std::process::Child) {
    for _ in 0..600 {
        if std::fs::read_to_string(dir.join("metrics.jsonl")).is_ok_and(|m| m.contains(needle)) {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended ({status}) before {needle}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no {needle} after 30 s");
}

/// A quick run long enough in SOPHON to be stopped there.
fn long_quick_run(out: &Path) -> std::process::Child {
    workbench()
        .args(["run", quick_preset(), "--backend", "flex"])
        .args([
            "--set",
            "pretrain.epochs=1",
            "--set",
            "sophon.outer_iterations=400",
        ])
        .args(["--set", "sophon.checkpoint_every=1000"])
        .args(["--set", "evaluation.strategies.0.epochs=1"])
        .arg("--out")
        .arg(out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

fn signal(child: &std::process::Child, signal: i32) {
    // SAFETY: kill(2) on a child this test started and has not reaped.
    assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
}

#[test]
fn sigterm_stops_at_a_safe_point_with_a_checkpoint_and_resume_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut child = long_quick_run(&out);
    wait_for_metric(&out, "sophon/fts_loss", &mut child);
    signal(&child, libc::SIGTERM);
    let o = child.wait_with_output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(128 + libc::SIGTERM),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let summary = read_summary(&out).unwrap();
    assert_eq!(summary.status, RunStatus::Stopped);
    assert!(summary.pretrain.is_some());
    // The checkpoint is the iteration it stopped at (not only the periodic one, every 1000).
    let state = std::fs::read_to_string(out.join("checkpoints/sophon-state.json")).unwrap();
    assert!(state.contains("\"iteration\""), "{state}");

    // A second signal ends the process at once. (Two of the same kind sent together may be
    // delivered as one, so the second is another kind.)
    let out2 = dir.path().join("run2");
    let mut child = long_quick_run(&out2);
    wait_for_metric(&out2, "pretrain/loss", &mut child);
    signal(&child, libc::SIGINT);
    signal(&child, libc::SIGTERM);
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(128 + libc::SIGTERM));
    assert!(String::from_utf8_lossy(&o.stderr).contains("second signal"));

    // The stopped run resumes to its end, its summary whole.
    let o = resume(&out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary = read_summary(&out).unwrap();
    assert_eq!(summary.status, RunStatus::Finished);
    assert_eq!(summary.sophon.unwrap().iterations, 400);
}

#[test]
fn resume_after_kill_9_keeps_the_pretrain_section() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut child = long_quick_run(&out);
    wait_for_metric(&out, "sophon/fts_loss", &mut child);
    child.kill().unwrap();
    child.wait().unwrap();
    let killed = read_summary(&out).unwrap();
    assert_eq!(
        killed.status,
        RunStatus::Running,
        "killed: nobody said otherwise"
    );
    let pre = killed.pretrain.expect("written when pre-training ended");
    let o = resume(&out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary = read_summary(&out).unwrap();
    assert_eq!(summary.status, RunStatus::Finished);
    assert_eq!(summary.pretrain.unwrap(), pre);
}

#[test]
fn a_corrupted_checkpoint_is_refused_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let o = workbench()
        .args(["run", quick_preset(), "--backend", "flex"])
        .args([
            "--set",
            "pretrain.epochs=1",
            "--set",
            "sophon.outer_iterations=2",
        ])
        .args(["--set", "evaluation.strategies.0.epochs=1"])
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let sums = std::fs::read_to_string(out.join("checkpoints/checksums.json")).unwrap();
    for file in ["pretrained.bpk", "protected.bpk", "sophon-000002/model.bpk"] {
        assert!(sums.contains(file), "{file} has a checksum: {sums}");
    }

    // Random bytes over the middle of SOPHON's model: resume refuses, naming the file.
    let model = out.join("checkpoints/sophon-000002/model.bpk");
    corrupt(&model);
    let o = resume(&out);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("sophon-000002/model.bpk") && err.contains("checksum mismatch"),
        "{err}"
    );

    // eval checks the models it loads too.
    corrupt(&out.join("checkpoints/protected.bpk"));
    let o = workbench()
        .arg("eval")
        .arg(&out)
        .args(["--backend", "flex", "--out"])
        .arg(dir.path().join("eval"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("protected.bpk") && err.contains("checksum mismatch"),
        "{err}"
    );

    // A damaged state file is named as what it is, not as a folder that cannot be created.
    std::fs::write(out.join("checkpoints/sophon-state.json"), "{not json").unwrap();
    let o = resume(&out);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("sophon-state.json") && !err.contains("cannot create"),
        "{err}"
    );

    // So is a run folder that cannot be created.
    let o = workbench()
        .args([
            "run",
            quick_preset(),
            "--backend",
            "flex",
            "--out",
            "/proc/no/such/run",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("/proc/no/such/run"),
        "{err}"
    );
}

fn corrupt(path: &PathBuf) {
    let mut bytes = std::fs::read(path).unwrap();
    let mid = bytes.len() / 2;
    for (i, b) in bytes[mid..mid + 64].iter_mut().enumerate() {
        *b = b.wrapping_mul(31).wrapping_add(i as u8 + 1);
    }
    std::fs::write(path, bytes).unwrap();
}

/// The exit code and peak resident memory (bytes) of a child: its own `VmHWM` (that of the
/// program it runs, not of the test process it was forked from), read every few milliseconds
/// until it exits.
fn wait_peak_rss(mut child: std::process::Child) -> (i32, u64) {
    let status = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    loop {
        if let Some(code) = child.try_wait().unwrap() {
            return (code.code().unwrap_or(-1), peak);
        }
        let text = std::fs::read_to_string(&status).unwrap_or_default();
        let hwm = text
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok());
        peak = peak.max(hwm.unwrap_or(0) * 1024);
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn a_gzip_claiming_2_gib_is_refused_in_little_memory() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    // A header claiming 2 GiB of 28×28 images, then 256 MiB of zeros: 256 KiB of gzip.
    let n: u32 = (2u64 << 30).div_ceil(784) as u32;
    let bomb = dir.path().join("bomb-images.gz");
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&bomb).unwrap(),
        flate2::Compression::fast(),
    );
    for w in [0x0000_0803u32, n, 28, 28] {
        gz.write_all(&w.to_be_bytes()).unwrap();
    }
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..256 {
        gz.write_all(&zeros).unwrap();
    }
    gz.finish().unwrap();
    let preset = dir.path().join("bomb.toml");
    let text = sophon_workbench::QUICK_PRESET.replace(
        "[original]\nsource = \"procedural\"\ndomain = \"shapes\"\nbackground = \"plain\"\ntrain = 3000\ntest = 300",
        "[original]\nsource = \"idx\"\ntrain_images = \"bomb-images.gz\"\ntrain_labels = \"bomb-images.gz\"\ntest_images = \"bomb-images.gz\"\ntest_labels = \"bomb-images.gz\"",
    );
    assert!(text.contains("bomb-images.gz"));
    std::fs::write(
        &preset,
        text.replace("channels = 1", "channels = 1\nconvert_channels = true"),
    )
    .unwrap();
    let child = workbench()
        .arg("preview")
        .arg(&preset)
        .arg("--out")
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (code, peak) = wait_peak_rss(child);
    assert_eq!(code, 1, "refused");
    assert!(peak < 100 << 20, "peak RSS {} MiB", peak >> 20);
}

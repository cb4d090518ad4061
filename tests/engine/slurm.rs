//! `sweep --slurm` on a real one-node Slurm cluster on this machine (`.ci/slurm-up` starts one:
//! munged, slurmctld and slurmd on localhost). Where none answers the test says SKIPPED, unless
//! SOPHON_REQUIRE_SLURM=1 (CI), where it fails.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use sophon_workbench::run::folder::{checkpointed_iteration, read_metrics, read_summary};
use sophon_workbench::run::sweep_folder::SweepFolder;
use sophon_workbench::sophon::series;
use sophon_workbench::sophon::summary::RunStatus;

use crate::cli::{succeed, workbench};

/// Whether a Slurm cluster answers here; why not, if it does not.
fn cluster() -> Result<(), String> {
    let out = Command::new("sinfo")
        .args(["-h", "-o", "%T"])
        .output()
        .map_err(|e| {
            format!(
                "sinfo cannot run ({e}); `apt-get install slurm-wlm munge && bash .ci/slurm-up`"
            )
        })?;
    let states = String::from_utf8_lossy(&out.stdout);
    if out.status.success()
        && states
            .lines()
            .any(|s| ["idle", "mixed", "allocated"].contains(&s.trim()))
    {
        Ok(())
    } else {
        Err(format!(
            "no Slurm node is up (sinfo: {} {}); `bash .ci/slurm-up` starts one",
            states.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// `sweep --slurm` on the quick preset with `args`; the sweep folder it made.
fn submit(runs: &Path, args: &[&str]) -> SweepFolder {
    let stdout = succeed(
        workbench()
            .args([
                "sweep",
                concat!(env!("CARGO_MANIFEST_DIR"), "/presets/quick.toml"),
                "--slurm",
                "--cpus-per-run",
                "1",
                "--time",
                "00:10:00",
                "--backend",
                "flex",
                "--set",
                "pretrain.epochs=1",
            ])
            .args(args)
            .arg("--runs-dir")
            .arg(runs),
    );
    assert!(stdout.contains("submitted job "), "{stdout}");
    let dir = stdout
        .lines()
        .find_map(|l| l.strip_prefix("sweep folder "))
        .unwrap();
    SweepFolder::open(Path::new(dir)).unwrap()
}

fn status(sweep: &SweepFolder) -> String {
    succeed(workbench().arg("sweep").arg("--status").arg(&sweep.dir))
}

/// `sweep --resume-slurm` on the sweep folder; its output.
fn resume_slurm(sweep: &SweepFolder) -> String {
    succeed(
        workbench()
            .arg("sweep")
            .arg("--resume-slurm")
            .arg(&sweep.dir),
    )
}

/// Poll until `done` holds (at most `limit`), then the last `--status`; on a timeout the
/// status and the task logs are shown.
fn wait_for(sweep: &SweepFolder, what: &str, limit: Duration, done: impl Fn(&SweepFolder) -> bool) {
    let deadline = Instant::now() + limit;
    while !done(sweep) {
        if Instant::now() > deadline {
            let logs: Vec<String> = std::fs::read_dir(sweep.dir.join("slurm/logs"))
                .map(|d| {
                    d.flatten()
                        .map(|e| {
                            format!(
                                "{}:\n{}",
                                e.path().display(),
                                std::fs::read_to_string(e.path()).unwrap_or_default()
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            panic!(
                "timed out waiting for {what}:\n{}\n{}",
                status(sweep),
                logs.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn job_of(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("submitted job "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_owned()
}

#[test]
fn a_slurm_sweep_runs_every_point_and_a_cancelled_task_resumes_to_the_end() {
    if let Err(why) = cluster() {
        assert!(
            std::env::var("SOPHON_REQUIRE_SLURM").as_deref() != Ok("1"),
            "SOPHON_REQUIRE_SLURM=1 but {why}"
        );
        crate::skipped("slurm sweep", &why);
        return;
    }
    let runs = tempfile::tempdir().unwrap();

    // Four points, one array task each.
    let sweep = submit(runs.path(), &["--vary", "seed=1,2,3,4"]);
    assert_eq!(sweep.manifest.points.len(), 4);
    wait_for(
        &sweep,
        "four finished points",
        Duration::from_secs(300),
        |s| s.finished().len() == 4,
    );
    for i in 0..4 {
        let summary = read_summary(&sweep.run_dir(i)).unwrap();
        assert_eq!(summary.status, RunStatus::Finished);
        assert_eq!(summary.seed, i as u64 + 1);
        assert!(summary.verdict.is_some(), "point {i}");
    }
    let table = status(&sweep);
    assert!(table.contains("4 of 4 points finished"), "{table}");
    for p in &sweep.manifest.points {
        assert!(
            table
                .lines()
                .any(|l| l.contains(&p.name) && l.contains("finished (job ")),
            "{table}"
        );
        assert!(table.lines().any(|l| l.starts_with(&p.name)), "{table}");
    }
    assert!(table.contains("n = 4 runs; verdicts: "), "{table}");
    let logs = sweep.dir.join("slurm/logs").read_dir().unwrap().count();
    assert_eq!(logs, 4, "one log per array task");

    // One long point, cancelled midway after a checkpoint, then resumed by --resume-slurm.
    let iterations = 300;
    let sweep = submit(
        runs.path(),
        &[
            "--vary",
            "seed=5",
            "--set",
            &format!("sophon.outer_iterations={iterations}"),
            "--set",
            "sophon.checkpoint_every=20",
        ],
    );
    let run = sweep.run_dir(0);
    wait_for(
        &sweep,
        "a SOPHON checkpoint",
        Duration::from_secs(120),
        |_| checkpointed_iteration(&run).is_some_and(|i| i >= 20),
    );
    let first = sophon_workbench::run::slurm::submissions(&sweep)[0]
        .job
        .clone();
    let cancel = Command::new("scancel").arg(&first).status().unwrap();
    assert!(cancel.success());
    wait_for(
        &sweep,
        "the cancelled task to stop",
        Duration::from_secs(60),
        |s| {
            !sophon_workbench::run::slurm::status(s)[0]
                .task
                .as_ref()
                .unwrap()
                .is_queued()
        },
    );
    let stopped_at = checkpointed_iteration(&run).unwrap();
    assert!(
        stopped_at < iterations,
        "it ran to the end before the cancel"
    );
    let table = status(&sweep);
    assert!(table.contains("0 of 1 points finished"), "{table}");
    assert!(
        table.contains("stopped by scancel at SOPHON iteration") || table.contains("killed by"),
        "{table}"
    );

    let resumed = resume_slurm(&sweep);
    assert!(resumed.contains("for 1 of 1 points"), "{resumed}");
    assert!(resumed.contains("quick-seed5  resume: "), "{resumed}");
    let second = job_of(&resumed);
    assert_ne!(second, first);
    wait_for(&sweep, "the resumed point", Duration::from_secs(300), |s| {
        s.finished().len() == 1
    });
    let summary = read_summary(&run).unwrap();
    assert_eq!(summary.status, RunStatus::Finished);
    assert_eq!(summary.sophon.as_ref().unwrap().iterations, iterations);
    // metrics.jsonl reads as one run: every SOPHON iteration's loss once, in order.
    let steps: Vec<usize> = read_metrics(&run)
        .unwrap()
        .into_iter()
        .filter(|p| p.series == series::FTS_LOSS)
        .map(|p| p.step)
        .collect();
    assert!(
        steps.windows(2).all(|w| w[0] < w[1]),
        "repeated or out of order: {steps:?}"
    );
    assert_eq!(steps.last(), Some(&iterations));
    let table = status(&sweep);
    assert!(
        table.contains(&format!("finished (job {second}_0)")),
        "{table}"
    );
    // Nothing left to submit.
    let again = resume_slurm(&sweep);
    assert!(
        again.contains("nothing to submit: 1 of 1 points finished"),
        "{again}"
    );
}

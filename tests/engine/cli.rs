//! The command line binary, end to end.

use std::process::Command;

pub fn workbench() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sophon-workbench"))
}

/// Run `command`, which must exit 0; its standard output.
pub fn succeed(command: &mut Command) -> String {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn read_summary(run: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap()
}

#[test]
fn run_writes_a_complete_run_folder_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("quick");
    succeed(
        workbench()
            .args([
                "run",
                concat!(env!("CARGO_MANIFEST_DIR"), "/presets/quick.toml"),
                "--backend",
                "flex",
            ])
            .arg("--out")
            .arg(&out)
            .args(["--set", "original.train=1500", "--set", "pretrain.epochs=3"])
            .args([
                "--set",
                "restricted.train=300",
                "--set",
                "evaluation.strategies.0.epochs=1",
            ])
            .args(["--set", "sophon.outer_iterations=2"]),
    );
    let summary = read_summary(&out);
    assert_eq!(summary["status"], "finished");
    assert!(summary["pretrain"]["original_acc"].as_f64().unwrap() > 0.2);
    let attacks = summary["attack"].as_array().unwrap();
    assert_eq!(attacks.len(), 3);
    assert_eq!(summary["sophon"]["iterations"], 2);
    assert!(summary["sophon"]["original_acc"].is_f64());
    for a in attacks {
        assert_eq!(a["restricted_acc"].as_array().unwrap().len(), 1);
        assert!(a["final_restricted_acc"].is_f64());
        assert!(["protected", "original", "scratch"].contains(&a["start"].as_str().unwrap()));
    }
    assert!(out.join("checkpoints/pretrained.bpk").exists());
    assert!(out.join("checkpoints/protected.bpk").exists());
    assert!(out.join("checkpoints/sophon-state.json").exists());
    let config = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(
        config.contains("train = 1500"),
        "the resolved config holds the overrides"
    );

    // `eval` attacks the run's models again, without pre-training or SOPHON: with the same
    // strategies it gives the same figures; the run folder it writes names the loaded models.
    let again = dir.path().join("again");
    succeed(
        workbench()
            .arg("eval")
            .arg(&out)
            .args(["--backend", "flex", "--out"])
            .arg(&again),
    );
    let evaluated = read_summary(&again);
    assert_eq!(evaluated["sophon"]["iterations"], 0);
    assert!(
        evaluated["sophon"]["settings"]["load"]
            .as_str()
            .unwrap()
            .ends_with("checkpoints/protected.bpk")
    );
    assert_eq!(
        evaluated["sophon"]["original_acc"],
        summary["sophon"]["original_acc"]
    );
    assert_eq!(evaluated["attack"], summary["attack"]);
    assert!(
        !std::fs::read_to_string(again.join("metrics.jsonl"))
            .unwrap()
            .contains("pretrain/loss"),
        "no pre-training"
    );
}

#[test]
fn errors_exit_non_zero_with_one_line_naming_the_problem() {
    let out = workbench()
        .args([
            "run",
            concat!(env!("CARGO_MANIFEST_DIR"), "/presets/quick.toml"),
            "--set",
            "input.size=2",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("input.size"), "{err}");

    let out = workbench()
        .args(["run", "/no/such/preset.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/no/such/preset.toml"));

    let out = workbench()
        .args(["run", "x.toml", "--backend", "cuda"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn sweep_runs_every_point_of_the_grid_and_tabulates_them() {
    let dir = tempfile::tempdir().unwrap();
    let stdout = succeed(
        workbench()
            .args([
                "sweep",
                concat!(env!("CARGO_MANIFEST_DIR"), "/presets/quick.toml"),
                "--backend",
                "flex",
                "--vary",
                "seed=3,4",
            ])
            .args(["--set", "original.train=600", "--set", "pretrain.epochs=1"])
            .args([
                "--set",
                "restricted.train=200",
                "--set",
                "sophon.outer_iterations=1",
            ])
            .args(["--set", "evaluation.strategies.0.epochs=1"])
            .arg("--runs-dir")
            .arg(dir.path()),
    );
    // One sweep folder: sweep.json, every point's preset, and a run folder per point.
    let sweeps: Vec<std::path::PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(sweeps.len(), 1, "{sweeps:?}");
    let sweep = &sweeps[0];
    assert!(
        stdout.contains(&format!("sweep folder {}", sweep.display())),
        "{stdout}"
    );
    assert!(sweep.join("sweep.json").is_file());
    let folders: Vec<std::path::PathBuf> = ["quick-seed3", "quick-seed4"]
        .iter()
        .map(|p| sweep.join(p))
        .collect();
    for (seed, folder) in [3, 4].into_iter().zip(&folders) {
        let name = format!("quick-seed{seed}");
        let point = std::fs::read_to_string(sweep.join("points").join(format!("{name}.toml")));
        assert!(point.unwrap().contains(&format!("seed = {seed}")));
        let config = std::fs::read_to_string(folder.join("config.toml")).unwrap();
        assert!(config.contains(&format!("seed = {seed}")), "{config}");
        let row = stdout.lines().find(|l| l.starts_with(&name)).unwrap();
        // the verdict, pre-trained and protected original test accuracy, then protected final
        // and mean, scratch final and mean, original final of the one strategy
        let verdict = stdout_verdict(row);
        let figures: Vec<f64> = row[row.find(verdict).unwrap() + verdict.len()..]
            .split_whitespace()
            .map(|v| v.parse().unwrap())
            .collect();
        assert_eq!(figures.len(), 7, "{row}");
        assert!(figures.iter().all(|v| (0.0..=1.0).contains(v)), "{row}");
        let summary = read_summary(folder);
        let status = summary["verdict"]["status"]
            .as_str()
            .unwrap()
            .replace('-', " ");
        assert_eq!(verdict, status, "{row}");
    }
    assert!(stdout.lines().any(|l| l.starts_with("mean ")), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("sd ")), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("n = 2 runs; verdicts: ")),
        "{stdout}"
    );
    // `report` prints the same table from the run folders afterwards.
    let out = workbench().arg("report").args(&folders).output().unwrap();
    assert!(out.status.success());
    let table = String::from_utf8_lossy(&out.stdout);
    let rows = |t: &str| -> Vec<String> {
        let mut r: Vec<String> = t
            .lines()
            .filter(|l| {
                l.starts_with("quick-seed") || l.starts_with("mean ") || l.starts_with("sd ")
            })
            .map(str::to_owned)
            .collect();
        r.sort();
        r
    };
    assert_eq!(rows(&table), rows(&stdout), "{table}");
    // `sweep --status` tells each point's state and prints the same table.
    let status = succeed(workbench().args(["sweep", "--status"]).arg(sweep));
    assert!(status.contains("2 of 2 points finished"), "{status}");
    for name in ["quick-seed3", "quick-seed4"] {
        assert!(
            status
                .lines()
                .any(|l| l.contains(name) && l.ends_with("  finished")),
            "{status}"
        );
    }
    assert_eq!(rows(&status), rows(&stdout), "{status}");
    // … and draws each run's one-page report into its folder.
    for f in &folders {
        let png = f.join("report.png");
        assert!(
            table.contains(&format!("wrote {}", png.display())),
            "{table}"
        );
        check_report_page(&png);
        let svg = std::fs::read_to_string(png.with_extension("svg")).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.contains("Verdict: "),
            "{svg:.200}"
        );
        // Beside the verdict: whose images the attackers fine-tuned on (quick shares SOPHON's).
        assert!(
            svg.contains("the attackers fine-tuned on the restricted images SOPHON trained on"),
            "{svg:.2000}"
        );
    }
    let err = workbench()
        .args(["report", "/no/such/run"])
        .output()
        .unwrap();
    assert!(!err.status.success());
    assert!(String::from_utf8_lossy(&err.stderr).contains("/no/such/run"));

    let out = workbench()
        .args([
            "sweep",
            concat!(env!("CARGO_MANIFEST_DIR"), "/presets/quick.toml"),
        ])
        .args(["--vary", "sophon.inner_steps=2,0"])
        .arg("--runs-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("sophon.inner_steps=0"), "{err}");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "nothing ran"
    );
}

/// A report page: its size, text in the header band, the verdict in its colour, and each
/// attack curve's colour in the attack plot's band (what a slide shows).
fn check_report_page(png: &std::path::Path) {
    use sophon_workbench::run::report::{HEADER, HEIGHT, WIDTH};
    let page = image::open(png).unwrap().to_rgb8();
    assert_eq!(page.dimensions(), (WIDTH, HEIGHT));
    let count = |rows: std::ops::Range<u32>, hit: &dyn Fn([u8; 3]) -> bool| {
        rows.flat_map(|y| (0..WIDTH).map(move |x| (x, y)))
            .filter(|&(x, y)| hit(page.get_pixel(x, y).0))
            .count()
    };
    let dark = |p: [u8; 3]| p.iter().all(|&c| c < 90);
    assert!(count(0..HEADER, &dark) > 2000, "the title and the figures");
    let verdict_colours = [[40, 150, 80], [210, 50, 50], [130, 130, 130]];
    assert!(
        count(0..HEADER, &|p| verdict_colours.contains(&p)) > 300,
        "the verdict, in its colour"
    );
    // The body: two rows of charts; the attack plot is the second.
    let row = (HEIGHT - HEADER) / 2;
    let attack = HEADER + row..HEADER + 2 * row;
    for (what, colour) in [
        ("protected", [210, 50, 50]),
        ("original", [50, 100, 210]),
        ("scratch", [130, 130, 130]),
    ] {
        assert!(
            count(attack.clone(), &|p| p == colour) > 200,
            "the attack from {what} is drawn in its colour"
        );
    }
    let ink = count(HEADER..HEADER + row, &|p| p != [255, 255, 255]);
    assert!(ink > 20_000, "the SOPHON charts are drawn ({ink} pixels)");
}

/// The verdict named in a sweep table row (the statuses may have a space).
fn stdout_verdict(row: &str) -> &'static str {
    use sophon_workbench::sophon::verdict::VerdictStatus;
    [
        VerdictStatus::NotProtected,
        VerdictStatus::NotIntact,
        VerdictStatus::Protected,
        VerdictStatus::Destroyed,
        VerdictStatus::Incomplete,
    ]
    .into_iter()
    .map(|s| s.name())
    .find(|name| row.contains(&format!("  {name}  ")))
    .unwrap_or_else(|| panic!("no verdict in {row}"))
}

/// A SOPHON step so large that it wrecks the model must never read as protection: the run says
/// it diverged (exit 3, with the reason) and its verdict, printed and in summary.json, is
/// destroyed.
#[test]
fn a_wrecking_alpha_is_destroyed_never_protected() {
    let dir = tempfile::tempdir().unwrap();
    let out = workbench()
        .args([
            "run",
            concat!(env!("CARGO_MANIFEST_DIR"), "/presets/quick.toml"),
            "--set",
            "sophon.alpha=1e10",
            "--set",
            "evaluation.best_effort={epochs=2, rungs=[1], optimizers=[{kind=\"adam\", lrs=[1e-3, 3e-3]}]}",
            "--out",
        ])
        .arg(dir.path().join("run"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stdout}\n{stderr}");
    assert!(stdout.contains("verdict: DESTROYED"), "{stdout}");
    assert!(!stdout.contains("verdict: PROTECTED"), "{stdout}");
    assert!(stderr.contains("diverged"), "{stderr}");
    let summary = read_summary(&dir.path().join("run"));
    assert_eq!(summary["verdict"]["status"], "destroyed", "{summary}");
    assert_eq!(summary["status"], "diverged");
}

#[test]
fn a_slurm_dry_run_writes_the_sweep_folder_and_job_script_and_submits_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let quick = concat!(env!("CARGO_MANIFEST_DIR"), "/presets/quick.toml");
    let stdout = succeed(
        workbench()
            .args([
                "sweep",
                quick,
                "--vary",
                "seed=1,2",
                "--vary",
                "sophon.alpha=1e-3,5e-4",
            ])
            .args([
                "--slurm",
                "--dry-run",
                "--partition",
                "gpu",
                "--time",
                "02:00:00",
            ])
            .args(["--gpus-per-run", "1", "--cpus-per-run", "4"])
            .arg("--runs-dir")
            .arg(dir.path()),
    );
    assert!(stdout.contains("dry run: nothing submitted"), "{stdout}");
    let sweep = std::path::PathBuf::from(
        stdout
            .lines()
            .find_map(|l| l.strip_prefix("sweep folder "))
            .unwrap(),
    );
    let script = std::fs::read_to_string(sweep.join("slurm/sweep.sbatch")).unwrap();
    for line in [
        "#SBATCH --array=0-3",
        "#SBATCH --partition=gpu",
        "#SBATCH --time=02:00:00",
        "#SBATCH --gres=gpu:1",
        "#SBATCH --cpus-per-task=4",
        "backend=auto",
    ] {
        assert!(script.lines().any(|l| l == line), "{line}:\n{script}");
    }
    assert!(
        !sweep.join("slurm/jobs.jsonl").exists(),
        "nothing submitted"
    );
    for name in [
        "quick-seed1-alpha1e-3",
        "quick-seed1-alpha5e-4",
        "quick-seed2-alpha1e-3",
        "quick-seed2-alpha5e-4",
    ] {
        assert!(sweep.join("points").join(format!("{name}.toml")).is_file());
    }
    // Nothing has run: every point pending, and no table.
    let status = succeed(workbench().args(["sweep", "--status"]).arg(&sweep));
    assert!(status.contains("0 of 4 points finished"), "{status}");
    assert_eq!(
        status.lines().filter(|l| l.ends_with("  pending")).count(),
        4,
        "{status}"
    );

    // A bad option is named before anything is written; so is a Slurm flag without --slurm.
    for (args, named) in [
        (&["--slurm", "--time", "2h"][..], "--time"),
        (&["--partition", "gpu"][..], "--partition"),
    ] {
        let out = workbench()
            .args(["sweep", quick, "--vary", "seed=1"])
            .args(args)
            .arg("--runs-dir")
            .arg(dir.path().join("bad"))
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(named), "{err}");
        assert!(!dir.path().join("bad").exists(), "nothing written");
    }
    let out = workbench()
        .args(["sweep", "--status"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a sweep folder"));
}

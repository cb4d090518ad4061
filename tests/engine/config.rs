//! Experiment config: presets, overrides and validation messages that name the field.

use sophon_workbench::config::{ExperimentConfig, ModelKind};
use sophon_workbench::{
    DEFAULT_PRESET, DENOISE_PRESET, DENOISE_QUICK_PRESET, LESSON_PRESET, QUICK_PRESET,
};

fn quick(overrides: &[&str]) -> Result<ExperimentConfig, String> {
    let o: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    ExperimentConfig::from_toml(QUICK_PRESET, "quick.toml", &o).map_err(|e| e.to_string())
}

#[test]
fn every_preset_in_presets_is_valid() {
    let mut n = 0;
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/presets")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            ExperimentConfig::load(&path, &[]).unwrap_or_else(|e| panic!("{e}"));
            n += 1;
        }
    }
    assert!(n >= 2);
    for (text, name) in [
        (DEFAULT_PRESET, "default"),
        (DENOISE_PRESET, "denoise"),
        (DENOISE_QUICK_PRESET, "dq"),
        (LESSON_PRESET, "lesson"),
    ] {
        ExperimentConfig::from_toml(text, name, &[]).unwrap();
    }
}

#[test]
fn resolved_config_round_trips_through_toml() {
    let c = quick(&[]).unwrap();
    let again = ExperimentConfig::from_toml(&c.to_toml(), "config.toml", &[]).unwrap();
    assert_eq!(c, again);
}

#[test]
fn set_overrides_any_field_by_dotted_path() {
    let c = quick(&[
        "pretrain.optimizer.lr=3e-4",
        "model.kind=vgg-small",
        "seed=99",
        "evaluation.strategies.0.epochs=5",
        "original.background=\"texture\"",
    ])
    .unwrap();
    assert_eq!(c.pretrain.optimizer.lr, 3e-4);
    assert_eq!(c.model.kind, ModelKind::VggSmall);
    assert_eq!(c.seed, 99);
    assert_eq!(c.evaluation.strategies[0].epochs, 5);
}

#[test]
fn bad_overrides_and_fields_are_named() {
    let err = quick(&["pretrain.optimiser.lr=1"]).unwrap_err();
    assert!(err.contains("optimiser"), "{err}");
    let err = quick(&["evaluation.strategies.4.epochs=1"]).unwrap_err();
    assert!(err.contains("index 4"), "{err}");
    let err = quick(&["novalue"]).unwrap_err();
    assert!(err.contains("key=value"), "{err}");
}

#[test]
fn unknown_fields_are_rejected_with_their_name() {
    let text = QUICK_PRESET.replace("[pretrain]", "[pretrain]\nepoch = 3");
    let err = ExperimentConfig::from_toml(&text, "typo.toml", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("typo.toml") && err.contains("epoch"), "{err}");
    let text = QUICK_PRESET.replace(
        "domain = \"shapes\"\nbackground = \"plain\"",
        "domain = \"shapes\"\nbackgrund = \"plain\"",
    );
    let err = ExperimentConfig::from_toml(&text, "typo.toml", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("backgrund"), "{err}");
    let err = ExperimentConfig::from_toml("seed = [", "syntax.toml", &[])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("syntax.toml") && err.contains("line 1"),
        "{err}"
    );
}

#[test]
fn out_of_range_values_name_the_field() {
    for (set, field) in [
        ("input.channels=2", "input.channels"),
        ("input.size=4", "input.size"),
        ("pretrain.epochs=0", "pretrain.epochs"),
        ("pretrain.optimizer.lr=-1", "pretrain.optimizer.lr"),
        (
            "evaluation.strategies.0.batch_size=0",
            "evaluation.strategies[0].batch_size",
        ),
        (
            "evaluation.strategies.0.optimizer.momentum=1.5",
            "evaluation.strategies[0].optimizer.momentum",
        ),
        ("original.train=0", "original.train"),
        ("evaluation.starts=[]", "evaluation.starts"),
        (
            "sophon.environments.0.query_size=60",
            "sophon.environments[0].query_size",
        ),
        (
            "sophon.environments.0.optimizer.kind=\"rmsprop\"",
            "sophon.environments[0].optimizer.kind",
        ),
        ("sophon.alpha=0", "sophon.alpha"),
        ("sophon.eval_every=0", "sophon.eval_every"),
    ] {
        let err = quick(&[set]).unwrap_err();
        assert!(err.starts_with(field), "--set {set}: {err}");
    }
}

#[test]
fn protected_start_needs_sophon() {
    let text = QUICK_PRESET;
    let without = &text[..text.find("[sophon]").unwrap()];
    let o = vec!["evaluation.starts=[\"protected\", \"scratch\"]".to_string()];
    let err = ExperimentConfig::from_toml(without, "no-sophon.toml", &o)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("evaluation.starts") && err.contains("[sophon]"),
        "{err}"
    );
}

#[test]
fn channel_contradictions_need_a_conversion_setting() {
    let cifar = ["restricted={ source = \"cifar10\", dir = \"/nowhere\" }"];
    let err = quick(&cifar).unwrap_err();
    assert!(
        err.starts_with("restricted.source") && err.contains("convert_channels"),
        "{err}"
    );
    let ok = quick(&[cifar[0], "input.convert_channels=true"]);
    assert!(ok.is_ok(), "{ok:?}");
    let err = quick(&["input.channels=3", "original={ source = \"digits\" }"]).unwrap_err();
    assert!(err.starts_with("original.source"), "{err}");
}

#[test]
fn relative_paths_resolve_against_the_preset_folder() {
    let dir = tempfile::tempdir().unwrap();
    let text = QUICK_PRESET.replace(
        "[restricted]\nsource = \"procedural\"\ndomain = \"shapes\"\nbackground = \"texture\"\ntrain = 1500\ntest = 300",
        "[restricted]\nsource = \"folder\"\ntrain = \"imgs/train\"\ntest = \"/abs/test\"",
    );
    assert_ne!(text, QUICK_PRESET, "the replacement applied");
    let path = dir.path().join("p.toml");
    std::fs::write(&path, text).unwrap();
    let config = ExperimentConfig::load(&path, &[]).unwrap();
    let sophon_workbench::config::DataSource::Folder { train, test, .. } = &config.restricted
    else {
        panic!("{:?}", config.restricted)
    };
    assert_eq!(
        train,
        &std::fs::canonicalize(dir.path())
            .unwrap()
            .join("imgs/train")
    );
    assert_eq!(test, &std::path::PathBuf::from("/abs/test"));
}

#[test]
fn the_task_decides_which_models_losses_and_guards_fit() {
    let denoise = |overrides: &[&str]| -> Result<ExperimentConfig, String> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/presets/denoise-quick.toml");
        let o: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        ExperimentConfig::load(std::path::Path::new(path), &o).map_err(|e| e.to_string())
    };
    let c = denoise(&[]).unwrap();
    assert_eq!(c.model.kind, ModelKind::Unet);
    assert_eq!(c.diffusion.steps, 1000, "DDPM's T by default");
    assert_eq!(c.diffusion.fixed_t, None, "t uniform by default");

    let cases: [(&[&str], &str); 8] = [
        (
            &["diffusion.suppress_max_t=1001"],
            "diffusion.suppress_max_t: must be at most 1000 (got 1001)",
        ),
        (
            &["model.kind=\"cnn-small\""],
            "model.kind: cnn-small is not a model for denoising; use unet",
        ),
        (
            &["sophon.loss=\"ice\""],
            "sophon.loss: ice is not a loss for denoising; use dos, mse-ascent",
        ),
        (
            &["input.size=18"],
            "input.size: the UNet halves the image twice: use a multiple of 4 (got 18)",
        ),
        (
            &["diffusion.fixed_t=0"],
            "diffusion.fixed_t: must be at least 1 (got 0)",
        ),
        (
            &["diffusion.sample_t=2000"],
            "diffusion.sample_t: must be at most 1000 (got 2000)",
        ),
        (
            &["sophon.guard.min_original_acc=0.5"],
            "sophon.guard: a denoiser's guard is max_original_mse",
        ),
        (
            &["diffusion.beta_end=1.5"],
            "diffusion.beta_start: needs 0 < beta_start ≤ beta_end < 1",
        ),
    ];
    for (overrides, message) in cases {
        let e = denoise(overrides).unwrap_err();
        assert!(e.contains(message), "{overrides:?}: {e}");
    }
    denoise(&["sophon.guard.max_original_mse=0.3", "diffusion.fixed_t=1"]).unwrap();

    let e = quick(&["sophon.loss=\"dos\""]).unwrap_err();
    assert!(
        e.contains("sophon.loss: dos is not a loss for classification; use ice, ice-reference, klu, ce-ascent, feature-dos"),
        "{e}"
    );
    let e = quick(&["model.kind=\"unet\""]).unwrap_err();
    assert!(
        e.contains("model.kind: unet is not a model for classification"),
        "{e}"
    );
}

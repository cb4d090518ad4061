//! Real (short) training on the CPU backends.

use burn::module::Module;
use burn::tensor::Device;
use sophon_workbench::config::{ExperimentConfig, Start};
use sophon_workbench::data::Domain;
use sophon_workbench::model::Classifier;
use sophon_workbench::sophon::context::RunContext;
use sophon_workbench::sophon::experiment;
use sophon_workbench::sophon::measure::accuracy;
use sophon_workbench::sophon::summary::{RunStatus, Summary};
use sophon_workbench::sophon::train::pretrain;
use sophon_workbench::sophon::{Devices, Interrupted, Monitor, Phase};

/// Records metrics; never interrupts.
#[derive(Default)]
pub struct Recorder {
    pub metrics: Vec<(String, usize, f64)>,
    pub phases: Vec<Phase>,
}

impl Monitor for Recorder {
    fn phase(&mut self, phase: Phase, _total: usize) {
        self.phases.push(phase);
    }
    fn step(&mut self, _step: usize) -> Result<(), Interrupted> {
        Ok(())
    }
    fn metric(&mut self, series: &str, step: usize, value: f64) {
        self.metrics.push((series.into(), step, value));
    }
    fn log(&mut self, _message: &str) {}
}

/// A fresh model (seeded) pre-trained on the config's original domain, and that domain.
pub fn pretrained(config: &ExperimentConfig, seed: u64, devices: &Devices) -> (Classifier, Domain) {
    let (original, _) = experiment::load_domains(config).unwrap();
    let model = experiment::fresh_model(config, 10, seed, devices);
    let model = pretrain(
        model,
        &on(&original, seed, devices),
        &config.pretrain,
        &mut Recorder::default(),
    )
    .unwrap();
    (model, original)
}

/// The setting of a classifier test on one domain (as both domains), evaluation batch 200.
pub fn on<'a>(domain: &'a Domain, seed: u64, devices: &'a Devices) -> RunContext<'a, Classifier> {
    RunContext {
        ctx: &(),
        original: domain,
        restricted: domain,
        eval_batch: 200,
        seed,
        devices,
    }
}

/// The quick preset without its `[sophon]` section: pre-training and attacks only.
pub fn small_without_sophon(overrides: &[&str]) -> ExperimentConfig {
    let mut c = small(overrides);
    c.sophon = None;
    c
}

pub fn small(overrides: &[&str]) -> ExperimentConfig {
    let mut o: Vec<String> = vec![
        "original.test=200".into(),
        "restricted.train=500".into(),
        "restricted.test=200".into(),
        "evaluation.strategies.0.epochs=2".into(),
    ];
    o.extend(overrides.iter().map(|s| s.to_string()));
    ExperimentConfig::from_toml(sophon_workbench::QUICK_PRESET, "quick", &o).unwrap()
}

#[test]
fn a_short_pretraining_learns_the_original_domain() {
    let config = small(&[]);
    let devices = Devices::new(Device::flex());
    let (original, _) = experiment::load_domains(&config).unwrap();
    let model = experiment::fresh_model(&config, 10, 1, &devices);
    let before = accuracy(&model, &original.test, 200, &devices.eval);
    let mut rec = Recorder::default();
    let model = pretrain(
        model,
        &on(&original, 1, &devices),
        &config.pretrain,
        &mut rec,
    )
    .unwrap();
    let after = accuracy(&model, &original.test, 200, &devices.eval);
    assert!(
        after > 0.5 && after > before + 0.3,
        "accuracy {before:.3} → {after:.3}"
    );
    let losses: Vec<f64> = rec
        .metrics
        .iter()
        .filter(|m| m.0 == "pretrain/loss")
        .map(|m| m.2)
        .collect();
    let head: f64 = losses[..5].iter().sum::<f64>() / 5.0;
    let tail: f64 = losses[losses.len() - 5..].iter().sum::<f64>() / 5.0;
    assert!(tail < head * 0.6, "loss {head:.3} → {tail:.3}");
}

#[test]
fn copies_for_fine_tuning_leave_batchnorm_statistics_alone() {
    let config = small(&["model.kind=resnet-small"]);
    let devices = Devices::new(Device::flex());
    let (original, _) = experiment::load_domains(&config).unwrap();
    let model = experiment::fresh_model(&config, 10, 3, &devices);
    let snapshot = |m: &Classifier| {
        let Classifier::ResnetSmall(r) = m else {
            unreachable!()
        };
        r.stem_bn.running_mean.value().into_data()
    };
    let before = snapshot(&model);
    // Train a detached copy: the original's running statistics must not move.
    let copy = model.detached_copy();
    let mut one_epoch = config.pretrain.clone();
    one_epoch.epochs = 1;
    let train_one_epoch = |m: Classifier| {
        pretrain(
            m,
            &on(&original, 1, &devices),
            &one_epoch,
            &mut Recorder::default(),
        )
        .unwrap()
    };
    let trained = train_one_epoch(copy);
    assert_eq!(snapshot(&model), before);
    assert_ne!(
        snapshot(&trained),
        before,
        "training a copy moves the copy's statistics"
    );
    // Whereas a plain clone shares them (the trap the copy avoids).
    let clone = model.clone();
    let _ = train_one_epoch(clone);
    assert_ne!(snapshot(&model), before);
}

#[test]
fn the_experiment_shows_transfer_from_the_original_model() {
    let config = small_without_sophon(&["evaluation.strategies.0.epochs=2"]);
    let devices = Devices::new(Device::flex());
    let mut summary = Summary::default();
    let mut rec = Recorder::default();
    experiment::run(&config, &devices, &mut rec, &mut summary).unwrap();
    assert_eq!(summary.status, RunStatus::Finished);
    assert_eq!(
        rec.phases,
        [Phase::LoadingData, Phase::Pretrain, Phase::Attack]
    );
    let pre = summary.pretrain.as_ref().unwrap();
    assert!(pre.scores.original > 0.6, "{pre:?}");
    let find = |s: Start| summary.attack.iter().find(|a| a.start == s).unwrap();
    let (orig, scratch) = (find(Start::Original), find(Start::Scratch));
    assert_eq!(orig.per_epoch.len(), 2);
    assert!(
        orig.per_epoch[0] > scratch.per_epoch[0] + 0.1,
        "original {:?} vs scratch {:?}",
        orig.per_epoch,
        scratch.per_epoch
    );
    assert!(
        rec.metrics
            .iter()
            .any(|m| m.0 == "attack/sgd-momentum/original/restricted_acc" && m.1 == 2)
    );
    // The attack from the original start began where the pre-trained model is.
    assert_eq!(orig.initial, pre.scores.restricted);
}

/// An attack fine-tunes a copy: the model it starts from keeps every parameter and BatchNorm
/// statistic, so the next attack from the same start begins where the first one did.
#[test]
fn an_attack_leaves_the_model_it_starts_from_unchanged() {
    let config = small_without_sophon(&[
        "model.kind=resnet-small",
        "evaluation.strategies.0.epochs=1",
    ]);
    let devices = Devices::new(Device::flex());
    let (_, restricted) = experiment::load_domains(&config).unwrap();
    let model: Classifier = experiment::fresh_model(&config, 10, 1, &devices);
    let before = crate::sophon::snapshot(&model);
    let run = on(&restricted, 1, &devices);
    let strategy = &config.evaluation.strategies[0];
    let mut step = 0;
    let mut attack = || {
        sophon_workbench::sophon::attack::fine_tune(
            &model,
            Start::Original,
            strategy,
            &run,
            &mut Recorder::default(),
            &mut step,
        )
        .unwrap()
    };
    let (attacked, first) = attack();
    let (_, second) = attack();
    assert_ne!(
        crate::sophon::snapshot(&attacked),
        before,
        "the copy was trained"
    );
    assert_eq!(
        crate::sophon::snapshot(&model),
        before,
        "the start model was not"
    );
    assert_eq!(
        first.per_epoch, second.per_epoch,
        "a second attack repeats the first"
    );
}

/// An easy, fast task for comparing backends: the bundled digits with a small MLP.
const DIGITS_MLP: &[&str] = &[
    "original={ source = \"digits\" }",
    "model.kind=mlp",
    "model.hidden=[64]",
    "pretrain.epochs=2",
];

#[test]
fn the_ndarray_backend_trains_like_flex() {
    let _rng = crate::ndarray_rng();
    // The same tiny MLP run on both CPU backends reaches comparable accuracy.
    let config = small(DIGITS_MLP);
    let mut accs = Vec::new();
    #[allow(deprecated)]
    for device in [Device::flex(), Device::ndarray()] {
        let devices = Devices::new(device);
        let (model, original) = pretrained(&config, 5, &devices);
        accs.push(accuracy(&model, &original.test, 200, &devices.eval));
    }
    assert!(
        accs[0] > 0.7 && (accs[0] - accs[1]).abs() < 0.05,
        "flex vs ndarray: {accs:?}"
    );
}

#[test]
fn wgpu_trains_when_an_adapter_exists() {
    // CI installs Mesa's lavapipe so that the GPU code path runs there, and sets
    // SOPHON_REQUIRE_WGPU: there a missing adapter fails. Elsewhere it is a visible skip.
    let Some(adapter) = sophon_workbench::run::backend::probe_adapter() else {
        let why = "no wgpu adapter (install mesa-vulkan-drivers for lavapipe)";
        assert!(
            std::env::var_os("SOPHON_REQUIRE_WGPU").is_none(),
            "{why}, and SOPHON_REQUIRE_WGPU is set"
        );
        crate::skipped("training::wgpu_trains_when_an_adapter_exists", why);
        return;
    };
    let backend =
        sophon_workbench::run::backend::select(sophon_workbench::run::BackendChoice::Wgpu).unwrap();
    assert_eq!(backend.name, "wgpu");
    assert_eq!(backend.is_software_adapter(), adapter.is_software());
    let config = small(DIGITS_MLP);
    let devices = Devices::new(backend.device);
    let (model, original) = pretrained(&config, 5, &devices);
    let acc = accuracy(&model, &original.test, 200, &devices.eval);
    assert!(acc > 0.7, "wgpu accuracy {acc}");
    let _ = model.num_params();
}

#[test]
fn a_fresh_model_depends_on_its_seed_only() {
    // burn draws parameters lazily; random draws between building and first use must not
    // change them (the scratch model is used after sample grids have drawn noise).
    let config = small(&[]);
    let devices = Devices::new(Device::flex());
    let first = |noise: bool| {
        let model: Classifier = experiment::fresh_model(&config, 10, 5, &devices);
        if noise {
            devices.eval.seed(123);
            let _ = burn::tensor::Tensor::<2>::random(
                [64, 64],
                burn::tensor::Distribution::Normal(0.0, 1.0),
                &devices.eval,
            )
            .into_data();
        }
        model.head().weight.val().into_data()
    };
    assert_eq!(first(false), first(true));
}

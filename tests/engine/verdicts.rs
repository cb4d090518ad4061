//! What a verdict rests on: FTS gradients that reach every parameter they should, optimizers
//! that are PyTorch's, splits that never leak test data into a choice, and a verdict that calls
//! a wrecked model destroyed.

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};
use sophon_workbench::config::{OptimizerConfig, OptimizerKind};
use sophon_workbench::data::rng::Rng;
use sophon_workbench::model::Classifier;
use sophon_workbench::sophon::context::RunContext;
use sophon_workbench::sophon::fts::{FtsContext, fts_gradient};
use sophon_workbench::sophon::losses::feature_dos;
use sophon_workbench::sophon::{Devices, experiment};

use crate::training::{Recorder, small};

/// For each parameter of the visited model: its id and the sum of |gradient| in `grads`
/// (`None`: no gradient).
struct GradSums<'a> {
    grads: &'a GradientsParams,
    out: Vec<(ParamId, Option<f64>)>,
}

impl ModuleVisitor for GradSums<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let sum = self
            .grads
            .get::<D>(param.id)
            .map(|g| g.abs().sum().into_scalar::<f32>().into());
        self.out.push((param.id, sum));
    }
}

/// The ids of the head's parameters.
fn head_ids(model: &Classifier) -> Vec<ParamId> {
    let head = model.head();
    let mut ids = vec![head.weight.id];
    if let Some(b) = &head.bias {
        ids.push(b.id);
    }
    ids
}

/// (gradient sums over the body's parameters, over the head's) of one FTS gradient with the
/// small preset's environment changed by `env`.
fn fts_gradient_sums(env: &[&str]) -> (Vec<Option<f64>>, Vec<Option<f64>>) {
    let mut overrides = vec!["sophon.loss=\"ice\""];
    overrides.extend_from_slice(env);
    let config = small(&overrides);
    let sophon = config.sophon.clone().unwrap();
    let devices = Devices::new(Device::flex());
    let (_, restricted) = experiment::load_domains(&config).unwrap();
    let model: Classifier = experiment::fresh_model(&config, 10, 1, &devices);
    let (grads, _) = fts_gradient(
        &model,
        &FtsContext {
            config: &sophon,
            ctx: &(),
            restricted: &restricted.train,
            devices: &devices,
        },
        &mut Rng::new(3),
        &mut Recorder::default(),
    )
    .unwrap();
    let mut v = GradSums {
        grads: &grads,
        out: Vec::new(),
    };
    model.visit(&mut v);
    let head = head_ids(&model);
    let (h, b): (Vec<_>, Vec<_>) = v.out.into_iter().partition(|(id, _)| head.contains(id));
    let sums = |v: Vec<(ParamId, Option<f64>)>| v.into_iter().map(|(_, s)| s).collect();
    (sums(b), sums(h))
}

/// First-order MAML differentiates the query loss with respect to every parameter it depends
/// on. A head-only attacker moves only the head, but the loss at its adapted point still
/// depends on the (unchanged) body: the body must get an FTS gradient.
#[test]
fn a_head_only_simulated_attacker_still_gives_the_body_an_fts_gradient() {
    let (body, head) = fts_gradient_sums(&["sophon.environments.0.layers=\"head-only\""]);
    assert!(
        body.iter().all(|s| s.is_some_and(|s| s > 0.0)),
        "every body parameter has a non-zero FTS gradient: {body:?}"
    );
    assert!(head.iter().all(|s| s.is_some_and(|s| s > 0.0)), "{head:?}");
}

/// An attacker that re-initialises the head throws the real head away: the fine-tuned model
/// does not depend on it, so its FTS gradient is absent (and the body's is not).
#[test]
fn with_a_fresh_head_only_the_body_gets_an_fts_gradient() {
    let (body, head) = fts_gradient_sums(&["sophon.environments.0.reinit_head=true"]);
    assert!(body.iter().all(|s| s.is_some_and(|s| s > 0.0)), "{body:?}");
    assert!(
        head.iter().all(|s| s.is_none()),
        "the discarded real head gets no FTS gradient: {head:?}"
    );
}

/// resnet-small's pooled features are averages of ReLUs (never negative), so a hinge on them
/// could never fall below 1. Feature DoS acts on the last residual sum instead: pushed down,
/// its hinge closes and the units feeding the head go off.
#[test]
fn feature_dos_on_resnet_small_can_switch_its_units_off() {
    let config = small(&["model.kind=resnet-small"]);
    let devices = Devices::new(Device::flex());
    let (_, restricted) = experiment::load_domains(&config).unwrap();
    let mut model: Classifier = experiment::fresh_model(&config, 10, 1, &devices);
    let idx: Vec<usize> = (0..32).collect();
    let x = || sophon_workbench::data::batch::images(&restricted.train, &idx, &devices.train);
    let mut optim =
        sophon_workbench::sophon::optim::build(&OptimizerConfig::new(OptimizerKind::Adam, 1e-2));
    let loss_of = |m: &Classifier| feature_dos(m.dos_pre_activations(x()));
    let first = loss_of(&model).into_scalar::<f32>();
    assert!(first > 0.5, "{first}");
    for _ in 0..60 {
        let loss = loss_of(&model);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(1e-2, model, grads);
    }
    let last = loss_of(&model).into_scalar::<f32>();
    let on =
        sophon_workbench::sophon::measure::units_on(&model, &restricted.train, 64, &devices.eval);
    assert!(
        last < 0.05,
        "the hinge closes (it started at {first}, now {last})"
    );
    assert!(on < 0.05, "the pooled features are off: {on}");
}

/// burn's Adam ε is 1e-5; PyTorch's (the paper's) is 1e-8. With gradients of 1e-6 the two
/// differ tenfold; the step must be PyTorch's: m̂ / (√v̂ + ε).
#[test]
fn adam_steps_match_pytorch() {
    let device = Device::flex().autodiff();
    let lin = burn::nn::LinearConfig::new(2, 1)
        .with_bias(false)
        .init(&device);
    let w0: Vec<f32> = lin.weight.val().into_data().try_to_vec().unwrap();
    let mut optim =
        sophon_workbench::sophon::optim::build(&OptimizerConfig::new(OptimizerKind::Adam, 0.1));
    let (lr, b1, b2, eps) = (0.1f64, 0.9f64, 0.999f64, 1e-8f64);
    let steps = [[1e-6f32, -3e-6], [-2e-6, 5e-7], [4e-6, 1e-6]];
    let (mut m, mut v) = ([0f64; 2], [0f64; 2]);
    let mut want: Vec<f64> = w0.iter().map(|&w| w as f64).collect();
    let mut lin = lin;
    for (t, g) in steps.iter().enumerate() {
        let t = t as i32 + 1;
        let mut grads = GradientsParams::new();
        let g_tensor =
            Tensor::<2>::from_data(TensorData::new(g.to_vec(), [2, 1]), &device.clone().inner());
        grads.register(lin.weight.id, g_tensor);
        lin = optim.step(lr, lin, grads);
        for i in 0..2 {
            let g = g[i] as f64;
            m[i] = b1 * m[i] + (1.0 - b1) * g;
            v[i] = b2 * v[i] + (1.0 - b2) * g * g;
            let (mh, vh) = (m[i] / (1.0 - b1.powi(t)), v[i] / (1.0 - b2.powi(t)));
            want[i] -= lr * mh / (vh.sqrt() + eps);
        }
        let got: Vec<f32> = lin.weight.val().into_data().try_to_vec().unwrap();
        for i in 0..2 {
            assert!(
                (got[i] as f64 - want[i]).abs() < 2e-6,
                "step {t}, weight {i}: {} against PyTorch's {}",
                got[i],
                want[i]
            );
        }
    }
}

/// `domain` with its test split replaced by one image repeated, every label wrong: a poisoned
/// test set. Whatever reads it for a choice would choose differently.
fn poisoned(domain: &sophon_workbench::data::Domain) -> sophon_workbench::data::Domain {
    let mut d = domain.clone();
    let mut test = sophon_workbench::data::ImageSet::empty(
        &d.test.name,
        d.test.channels,
        d.test.height,
        d.test.width,
        d.test.classes,
    );
    let image = domain.test.image(0).to_vec();
    for i in 0..domain.test.len() {
        test.push(
            &image,
            (domain.test.labels[i] + 1) % domain.test.classes as u32,
        );
    }
    d.test = test;
    d
}

/// SOPHON's every recorded measure (intactness, probe, units on: what selection and the guard
/// read), its selection and the guard are the same with a poisoned test split: none of them
/// reads a test image.
#[test]
fn selection_guard_and_probe_never_read_a_test_image() {
    let config = small(&[
        "sophon.outer_iterations=4",
        "sophon.eval_every=1",
        "sophon.select={tolerance=1.0}",
        "sophon.guard={min_original_acc=0.0}",
    ]);
    let sophon = config.sophon.clone().unwrap();
    let devices = Devices::new(Device::flex());
    let (model, _) = crate::training::pretrained(&config, 1, &devices);
    let (original, restricted) = experiment::load_domains(&config).unwrap();
    let protect = |original, restricted| {
        let mut rec = Recorder::default();
        let run = RunContext::<Classifier> {
            ctx: &(),
            original,
            restricted,
            eval_batch: 200,
            seed: config.seed,
            devices: &devices,
        };
        let (_, summary) = sophon_workbench::sophon::protect::protect(
            model.clone(),
            &run,
            &sophon,
            &mut rec,
            None,
        )
        .unwrap();
        (rec.metrics, summary)
    };
    let (clean_metrics, clean) = protect(&original, &restricted);
    let (poisoned_metrics, dirty) = protect(&poisoned(&original), &poisoned(&restricted));
    assert!(clean.selected_iteration.is_some());
    assert_eq!(clean.selected_iteration, dirty.selected_iteration);
    assert_eq!(clean.original_validation, dirty.original_validation);
    assert_eq!(clean.scores.probe, dirty.scores.probe);
    assert!(
        clean_metrics.iter().any(|(s, _, _)| s.contains("probe")),
        "the probe was recorded"
    );
    assert_eq!(clean_metrics, poisoned_metrics, "every recorded measure");
    // The reported figures are the test split's: those do change.
    assert_ne!(clean.scores.original, dirty.scores.original);
}

/// The best-effort attacker chooses its setting on the validation split only: a poisoned test
/// split changes the reported curve, never the choice.
#[test]
fn the_best_effort_search_never_reads_a_test_image_to_choose() {
    let config = small(&[
        "evaluation.best_effort={optimizers=[{kind=\"sgd-momentum\", lrs=[1e-3, 3e-2]}, {kind=\"adam\", lrs=[1e-3]}], epochs=2, rungs=[1]}",
    ]);
    let b = config.evaluation.best_effort.clone().unwrap();
    assert_eq!(b.candidates().len(), 3);
    let devices = Devices::new(Device::flex());
    let (model, _) = crate::training::pretrained(&config, 1, &devices);
    let (_, restricted) = experiment::load_domains(&config).unwrap();
    let search = |restricted| {
        let a = RunContext::<Classifier> {
            ctx: &(),
            original: restricted,
            restricted,
            eval_batch: 200,
            seed: config.seed,
            devices: &devices,
        };
        let mut step = 0;
        sophon_workbench::sophon::search::best_effort(
            &model,
            sophon_workbench::config::Start::Original,
            &b,
            &a,
            &mut Recorder::default(),
            &mut step,
        )
        .unwrap()
    };
    let (_, clean_result, clean) = search(&restricted);
    let (_, dirty_result, dirty) = search(&poisoned(&restricted));
    assert!(clean.setting.is_some());
    assert_eq!(clean.setting, dirty.setting);
    assert_eq!(clean.candidates, dirty.candidates);
    assert_eq!(clean.candidates.iter().filter(|c| c.epochs == 2).count(), 1);
    assert_eq!(clean_result.per_epoch.len(), 2);
    assert_ne!(clean_result.per_epoch, dirty_result.per_epoch);
}

/// `domain` with every label of the attacker's own split shifted by one: whatever trains on
/// those images learns something else.
fn attacker_poisoned(domain: &sophon_workbench::data::Domain) -> sophon_workbench::data::Domain {
    let mut d = domain.clone();
    let own = d.attacker.as_mut().expect("the attacker has its own split");
    let classes = own.classes as u32;
    for label in own.labels.iter_mut() {
        *label = (*label + 1) % classes;
    }
    d
}

/// With `evaluation.attacker_images` the attacker brings its own images, as in the threat
/// model: they are a split of their own, disjoint from SOPHON's; SOPHON (FTS, the probe,
/// selection) never reads one, and the attackers train on them alone.
#[test]
fn with_its_own_images_the_attacker_trains_on_images_sophon_never_saw() {
    let config = small(&[
        "evaluation.attacker_images=150",
        "sophon.outer_iterations=4",
        "sophon.eval_every=1",
        "sophon.select={tolerance=1.0}",
    ]);
    let sophon = config.sophon.clone().unwrap();
    let devices = Devices::new(Device::flex());
    let (original, restricted) = experiment::load_domains(&config).unwrap();
    let own = restricted.attacker.as_ref().unwrap();
    // 500 restricted training images: 100 (20 %) validation, 150 the attacker's, 250 SOPHON's.
    assert_eq!(
        (
            restricted.validation.len(),
            own.len(),
            restricted.train.len()
        ),
        (100, 150, 250)
    );
    let sophons: std::collections::HashSet<Vec<u32>> = (0..restricted.train.len())
        .map(|i| {
            restricted
                .train
                .image(i)
                .iter()
                .map(|v| v.to_bits())
                .collect()
        })
        .collect();
    assert!(
        (0..own.len()).all(|i| {
            let bits: Vec<u32> = own.image(i).iter().map(|v| v.to_bits()).collect();
            !sophons.contains(&bits)
        }),
        "no image of the attacker's is one of SOPHON's"
    );

    let (model, _) = crate::training::pretrained(&config, 1, &devices);
    let context = |restricted| RunContext::<Classifier> {
        ctx: &(),
        original: &original,
        restricted,
        eval_batch: 200,
        seed: config.seed,
        devices: &devices,
    };
    let protect = |restricted| {
        let mut rec = Recorder::default();
        let (_, summary) = sophon_workbench::sophon::protect::protect(
            model.clone(),
            &context(restricted),
            &sophon,
            &mut rec,
            None,
        )
        .unwrap();
        (rec.metrics, summary.selected_iteration)
    };
    let poisoned = attacker_poisoned(&restricted);
    assert_eq!(
        protect(&restricted),
        protect(&poisoned),
        "SOPHON's every measure and choice ignores the attacker's images"
    );

    let strategy = &config.evaluation.strategies[0];
    assert_eq!(
        sophon_workbench::sophon::attack::steps(strategy, &restricted),
        strategy.epochs * 150_usize.div_ceil(strategy.batch_size),
        "an attacker's epoch is a pass over its own images"
    );
    let attack = |restricted| {
        let mut step = 0;
        let (_, result) = sophon_workbench::sophon::attack::fine_tune(
            &model,
            sophon_workbench::config::Start::Original,
            strategy,
            &context(restricted),
            &mut Recorder::default(),
            &mut step,
        )
        .unwrap();
        result.per_epoch
    };
    assert_ne!(
        attack(&restricted),
        attack(&poisoned),
        "the attacker trains on its own images"
    );
}

/// An attacker's split that leaves SOPHON nothing, or holds nothing, is refused, naming the
/// field.
#[test]
fn an_attackers_split_that_cannot_be_carved_is_refused_naming_the_field() {
    let too_many = small(&["evaluation.attacker_images=400"]);
    let err = experiment::load_domains(&too_many).unwrap_err().to_string();
    assert!(
        err.contains("evaluation.attacker_images") && err.contains("400"),
        "{err}"
    );
    let none = sophon_workbench::config::ExperimentConfig::from_toml(
        sophon_workbench::QUICK_PRESET,
        "quick",
        &["evaluation.attacker_images=0".to_string()],
    )
    .unwrap_err()
    .to_string();
    assert!(none.contains("evaluation.attacker_images"), "{none}");
}

/// With `suppress_start`, FTS also differentiates the suppression loss at the simulated
/// attacker's starting point (on the first step's query part) and weighs it as one more step:
/// with K = 1 the FTS gradient is the mean of the adapted point's (the gradient without it) and
/// the starting point's.
#[test]
fn suppressing_the_start_adds_the_starting_points_gradient_as_one_more_step() {
    use sophon_workbench::config::sophon::SuppressionLoss;
    use sophon_workbench::sophon::fts::sample_batch;
    use sophon_workbench::sophon::task::Protectable;
    let config = small(&[
        "sophon.loss=\"ice\"",
        "sophon.inner_steps=1",
        "sophon.draw_environment=false",
        "sophon.environments=[{optimizer={kind=\"sgd\", lr=0.05}, batch_size=40, query_size=20}]",
    ]);
    let sophon = config.sophon.clone().unwrap();
    let devices = Devices::new(Device::flex());
    let (_, restricted) = experiment::load_domains(&config).unwrap();
    let model: Classifier = experiment::fresh_model(&config, 10, 1, &devices);
    let gradient = |suppress_start: bool| {
        let mut sophon = sophon.clone();
        sophon.suppress_start = suppress_start;
        let fts = FtsContext {
            config: &sophon,
            ctx: &(),
            restricted: &restricted.train,
            devices: &devices,
        };
        let (grads, _) =
            fts_gradient(&model, &fts, &mut Rng::new(3), &mut Recorder::default()).unwrap();
        grads
    };
    let (without, with) = (gradient(false), gradient(true));
    // The starting point's gradient, on the same query images (the first batch's last 20).
    let idx = sample_batch(restricted.train.len(), 40, &mut Rng::new(3));
    let loss = model.suppression_loss(
        &(),
        SuppressionLoss::Ice,
        &restricted.train,
        &idx[20..],
        &mut Rng::new(0),
        &devices.train,
    );
    let start = GradientsParams::from_grads(loss.backward(), &model);
    let flat = |grads: &GradientsParams| {
        let mut v = GradSums {
            grads,
            out: Vec::new(),
        };
        model.visit(&mut v);
        v.out
            .into_iter()
            .map(|(_, s)| s.unwrap())
            .collect::<Vec<f64>>()
    };
    // Compared parameter by parameter on Σ|g|, which a wrong weight or a missing term moves.
    let mut mean = GradientsParams::new();
    struct Mean<'a> {
        a: &'a GradientsParams,
        b: &'a GradientsParams,
        out: &'a mut GradientsParams,
    }
    impl ModuleVisitor for Mean<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let (a, b) = (self.a.get::<D>(param.id), self.b.get::<D>(param.id));
            self.out
                .register(param.id, (a.unwrap() + b.unwrap()).div_scalar(2.0));
        }
    }
    model.visit(&mut Mean {
        a: &without,
        b: &start,
        out: &mut mean,
    });
    let (want, got, alone) = (flat(&mean), flat(&with), flat(&without));
    for (i, (w, g)) in want.iter().zip(&got).enumerate() {
        assert!(
            (w - g).abs() <= 1e-4 * w.abs().max(1e-3),
            "parameter {i}: want {w}, got {g}"
        );
    }
    assert!(
        want.iter()
            .zip(&alone)
            .any(|(w, a)| (w - a).abs() > 1e-3 * w.abs()),
        "the starting point's term changes the gradient"
    );
}

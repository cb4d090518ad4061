//! Model shapes and burn recorder round-trips.

use burn::module::Module;
use burn::tensor::{Device, Distribution, Tensor};
use sophon_workbench::config::ModelKind;
use sophon_workbench::model::ClassifierConfig;

#[test]
fn recorder_round_trip_restores_every_model_exactly() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    for kind in ModelKind::ALL {
        let config = ClassifierConfig::new(kind, 1, 16, 10).with_hidden(vec![32]);
        device.seed(1);
        let trained = config.init(&device);
        let path = dir.path().join(format!("{}.bpk", kind.name()));
        trained.clone().save_file(&path).unwrap();
        device.seed(2);
        let fresh = config.init(&device);
        let x = Tensor::<4>::random([3, 1, 16, 16], Distribution::Default, &device);
        let before = trained.forward(x.clone()).into_data();
        assert_ne!(
            fresh.forward(x.clone()).into_data(),
            before,
            "{kind:?}: seeds differ"
        );
        let loaded = fresh.try_load_file(&path).unwrap();
        loaded
            .forward(x)
            .into_data()
            .assert_approx_eq::<f32>(&before, Default::default());
    }
}

#[test]
fn loading_a_checkpoint_into_another_architecture_fails_cleanly() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cnn.bpk");
    ClassifierConfig::new(ModelKind::CnnSmall, 1, 16, 10)
        .init(&device)
        .save_file(&path)
        .unwrap();
    let mlp = ClassifierConfig::new(ModelKind::Mlp, 1, 16, 10).init(&device);
    assert!(mlp.try_load_file(&path).is_err());
    let garbage = dir.path().join("garbage.bpk");
    std::fs::write(&garbage, b"not a burnpack").unwrap();
    let cnn = ClassifierConfig::new(ModelKind::CnnSmall, 1, 16, 10).init(&device);
    assert!(cnn.try_load_file(&garbage).is_err());
}

/// The UNet keeps the image's shape for 28×28 grey and 32×32 RGB, depends on the time step, and
/// learns: a few Adam steps on one noised batch lower its ε-MSE.
#[test]
fn unet_predicts_noise_of_the_input_shape_and_trains() {
    use burn::optim::GradientsParams;
    use sophon_workbench::config::{OptimizerConfig, OptimizerKind};
    use sophon_workbench::diffusion::schedule::{Schedule, eps_mse};
    use sophon_workbench::model::unet::UnetConfig;

    let device = Device::flex();
    for (c, side) in [(1, 28), (3, 32)] {
        device.seed(1);
        let unet = UnetConfig::new(c).with_base(8).init(&device);
        let x = Tensor::<4>::random([2, c, side, side], Distribution::Default, &device);
        let a = unet.forward(x.clone(), &[1, 1]);
        assert_eq!(a.dims(), [2, c, side, side]);
        let b = unet.forward(x, &[500, 500]);
        let diff = (a.clone() - b).abs().sum().into_scalar::<f32>();
        assert!(diff > 1e-3, "the time step changes the prediction");
        // Saved and loaded with burn's recorder like the classifiers.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("unet.bpk");
        unet.clone().save_file(&path).unwrap();
        device.seed(9);
        let loaded = UnetConfig::new(c)
            .with_base(8)
            .init(&device)
            .try_load_file(&path)
            .unwrap();
        let x = Tensor::<4>::random([2, c, side, side], Distribution::Default, &device);
        loaded
            .forward(x.clone(), &[7, 7])
            .into_data()
            .assert_approx_eq::<f32>(&unet.forward(x, &[7, 7]).into_data(), Default::default());
    }

    let device = Device::flex().autodiff();
    device.seed(2);
    let mut unet = UnetConfig::new(1)
        .with_base(8)
        .with_blocks_per_level(1)
        .init(&device);
    let schedule = Schedule::ddpm();
    let x0 = Tensor::<4>::random([8, 1, 16, 16], Distribution::Uniform(-1.0, 1.0), &device);
    let eps = Tensor::<4>::random([8, 1, 16, 16], Distribution::Normal(0.0, 1.0), &device);
    let t = [10, 50, 100, 200, 300, 400, 600, 900];
    let xt = schedule.noise(x0, &t, eps.clone());
    let mut optim =
        sophon_workbench::sophon::optim::build(&OptimizerConfig::new(OptimizerKind::Adam, 2e-3));
    let mut losses = Vec::new();
    for _ in 0..30 {
        let loss = eps_mse(unet.forward(xt.clone(), &t), eps.clone());
        losses.push(loss.clone().into_scalar::<f32>());
        let grads = GradientsParams::from_grads(loss.backward(), &unet);
        unet = optim.step(2e-3, unet, grads);
    }
    let (first, last) = (losses[0], *losses.last().unwrap());
    assert!(last < 0.7 * first, "ε-MSE {first} → {last}");
}

/// Every classifier computes on flex (where cnn-small's and vgg-small's convolution blocks are
/// one fused operation) what it computes on ndarray with burn's own operations: the same
/// logits and the same gradient with respect to its input, which flows through every layer.
#[test]
fn every_classifier_computes_the_same_on_flex_and_ndarray() {
    let flex = Device::flex().autodiff();
    #[allow(deprecated)]
    let ndarray = Device::ndarray().autodiff();
    for kind in ModelKind::ALL {
        let config = ClassifierConfig::new(kind, 3, 16, 10).with_hidden(vec![32]);
        flex.seed(3);
        let on_flex = config.init(&flex);
        let on_ndarray = on_flex.clone().to_device(&ndarray);
        let x = Tensor::<4>::random([4, 3, 16, 16], Distribution::Normal(0.0, 1.0), &flex);
        let run = |model: &sophon_workbench::model::Classifier, x: Tensor<4>| {
            let x = x.require_grad();
            let logits = model.forward(x.clone());
            // Weighted so that a misrouted gradient shows.
            let weights = Tensor::<2>::from_floats(
                [[1.0, -2.0, 3.0, 0.5, -1.0, 2.0, 0.1, -0.3, 1.5, 0.7]],
                &x.device(),
            );
            let grads = (logits.clone() * weights).sum().backward();
            (logits.into_data(), x.grad(&grads).unwrap().into_data())
        };
        let (logits_a, grad_a) = run(&on_flex, x.clone());
        let (logits_b, grad_b) = run(&on_ndarray, x.to_device(&ndarray));
        let tolerance = burn::tensor::Tolerance::<f32>::absolute(1e-4);
        logits_a.assert_approx_eq::<f32>(&logits_b, tolerance);
        grad_a.assert_approx_eq::<f32>(&grad_b, tolerance);
        eprintln!("{kind:?}: same on flex and ndarray");
    }
}

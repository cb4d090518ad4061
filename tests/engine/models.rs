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

/// The fused block's CubeCL kernels on wgpu (lavapipe in CI) compute burn's convolution, ReLU
/// and pooling, with the same input, weight and bias gradients, for one and for several input
/// channels, with and without an input gradient; a block wider than its kernels take keeps
/// burn's operations. "The same" is within 1e-4, relative where a value is above 1: a weight
/// gradient sums thousands of products (up to about 400 here), and the two paths sum them in
/// different orders, which alone moves it by a few ulps of f32.
#[test]
fn the_fused_wgpu_block_is_burns_convolution_relu_and_pooling() {
    use burn::nn::PaddingConfig2d;
    use burn::nn::conv::Conv2dConfig;
    use burn::nn::pool::MaxPool2dConfig;
    use burn::tensor::activation::relu;
    use sophon_workbench::model::conv::{conv_relu_pool, fused_applies, wgpu_fused};

    let test = "models::the_fused_wgpu_block_is_burns_convolution_relu_and_pooling";
    if sophon_workbench::run::backend::probe_adapter().is_none() {
        let why = "no wgpu adapter (install mesa-vulkan-drivers for lavapipe)";
        assert!(
            std::env::var_os("SOPHON_REQUIRE_WGPU").is_none(),
            "{why}, and SOPHON_REQUIRE_WGPU is set"
        );
        crate::skipped(test, why);
        return;
    }
    if !wgpu_fused() {
        crate::skipped(test, "SOPHON_WGPU_FUSED=0 turns the fused wgpu block off");
        return;
    }
    let backend =
        sophon_workbench::run::backend::select(sophon_workbench::run::BackendChoice::Wgpu).unwrap();
    let device = backend.device.autodiff();
    let pool = MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init();
    // max |a - b| / max(1, max |b|): b is burn's.
    fn max_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
        let scale = b.clone().abs().max().into_scalar::<f32>().max(1.0);
        (a - b).abs().max().into_scalar::<f32>() / scale
    }
    // cnn-small's two blocks (1 → 16 at 28×28, 16 → 32 at 14×14), and two small odd ones: the
    // kernels read the weights four channels to a vector where the channels divide by 4, one
    // at a time otherwise (3 in, 6 out), and each case below takes a different mix.
    let cases = [
        (1, 16, false, [28, 28]),
        (3, 8, true, [6, 10]),
        (4, 6, true, [8, 6]),
        (16, 32, true, [14, 14]),
    ];
    for (c_in, c_out, input_grad, [h, w]) in cases {
        let conv = Conv2dConfig::new([c_in, c_out], [3, 3])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init(&device);
        let mut x = Tensor::<4>::random([5, c_in, h, w], Distribution::Normal(0.0, 1.0), &device);
        if input_grad {
            x = x.require_grad();
        }
        assert!(fused_applies(&conv, &pool, &x), "{c_in} in: the fused path");
        let reference = pool.forward(relu(conv.forward(x.clone())));
        let fused = conv_relu_pool(&conv, &pool, x.clone());
        assert_eq!(fused.dims(), reference.dims());
        let value = max_diff(fused.clone(), reference.clone());
        assert!(value < 1e-4, "values, {c_in} in: {value}");
        // A loss that weighs every output differently, so a misrouted gradient shows.
        let weights = Tensor::<4>::random(reference.dims(), Distribution::Default, &device);
        let g_ref = (reference * weights.clone()).sum().backward();
        let g_fused = (fused * weights).sum().backward();
        let dw = |g| conv.weight.grad(g).unwrap();
        let db = |g| conv.bias.as_ref().unwrap().grad(g).unwrap();
        let weight = max_diff(dw(&g_fused), dw(&g_ref));
        assert!(weight < 1e-4, "weight gradient, {c_in} in: {weight}");
        let bias = max_diff(db(&g_fused), db(&g_ref));
        assert!(bias < 1e-4, "bias gradient, {c_in} in: {bias}");
        match (x.grad(&g_ref), x.grad(&g_fused)) {
            (Some(reference), Some(fused)) => {
                let input = max_diff(fused, reference);
                assert!(input < 1e-4, "input gradient, {c_in} in: {input}");
            }
            (None, None) => assert!(!input_grad),
            _ => panic!("input gradient present in one path only, {c_in} in"),
        }
        // Without autodiff (evaluation) the same values.
        let plain = x.clone().without_autodiff();
        let conv_plain = conv.valid();
        let value = max_diff(
            conv_relu_pool(&conv_plain, &pool, plain.clone()),
            pool.forward(relu(conv_plain.forward(plain))),
        );
        assert!(value < 1e-4, "values without autodiff, {c_in} in: {value}");
    }
    let wide = Conv2dConfig::new([32, 64], [3, 3])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .init(&device);
    let x = Tensor::<4>::zeros([1, 32, 4, 4], &device);
    assert!(!fused_applies(&wide, &pool, &x), "64 output channels");
}

//! The denoising task's pieces: ε-MSE training of the UNet, the test ε-MSE, and sample grids
//! written as PNG and read back.

use sophon_workbench::config::{
    DataSource, DiffusionConfig, InputConfig, OptimizerConfig, OptimizerKind, PretrainConfig,
};
use sophon_workbench::data::preview::sample_grid;
use sophon_workbench::data::{Domain, load_domain};
use sophon_workbench::diffusion::Schedule;
use sophon_workbench::model::unet::Unet;
use sophon_workbench::model::unet::UnetConfig;
use sophon_workbench::sophon::Devices;
use sophon_workbench::sophon::context::RunContext;
use sophon_workbench::sophon::denoise::{psnr, samples, test_mse};
use sophon_workbench::sophon::task::DenoiseContext;
use sophon_workbench::sophon::train::pretrain;

use crate::training::Recorder;

/// Train `unet` on `domain` for `epochs` (Adam or SGD at `lr`, batches of `batch`), t uniform.
fn train(
    unet: Unet,
    domain: &Domain,
    optimizer: OptimizerConfig,
    epochs: usize,
    batch: usize,
    devices: &Devices,
    recorder: &mut Recorder,
) -> Unet {
    let config = PretrainConfig {
        epochs,
        batch_size: batch,
        optimizer,
        load: None,
    };
    let ctx = DenoiseContext::new(&DiffusionConfig::default());
    let run = RunContext::<Unet> {
        ctx: &ctx,
        original: domain,
        restricted: domain,
        eval_batch: 128,
        seed: 1,
        devices,
    };
    pretrain(unet, &run, &config, recorder).unwrap()
}

/// The bundled digits at 16×16 (the UNet wants sides divisible by 4) and flex devices.
fn digits16() -> (Domain, Devices) {
    let input = InputConfig {
        size: 16,
        channels: 1,
        convert_channels: false,
    };
    let digits = load_domain(&DataSource::Digits, &input, 1)
        .unwrap()
        .hold_out_validation(144, 1, "validation")
        .unwrap();
    (digits, Devices::new(burn::tensor::Device::flex()))
}

#[test]
fn a_denoiser_learns_the_digits_and_its_sample_grid_is_a_real_png() {
    let (digits, devices) = digits16();
    let schedule = Schedule::ddpm();
    devices.train.seed(4);
    let untrained = UnetConfig::new(1)
        .with_base(16)
        .with_blocks_per_level(1)
        .init(&devices.train);
    let before = test_mse(&untrained, &digits.test, &schedule, 128, 9, &devices.eval);
    assert_eq!(
        before,
        test_mse(&untrained, &digits.test, &schedule, 128, 9, &devices.eval),
        "the test ε-MSE is deterministic"
    );
    let mut recorder = Recorder::default();
    let trained = train(
        untrained,
        &digits,
        OptimizerConfig::new(OptimizerKind::Adam, 2e-3),
        4,
        64,
        &devices,
        &mut recorder,
    );
    let steps = recorder
        .metrics
        .iter()
        .filter(|m| m.0 == "pretrain/loss")
        .count();
    assert_eq!(steps, 4 * digits.train.len().div_ceil(64));
    let after = test_mse(&trained, &digits.test, &schedule, 128, 9, &devices.eval);
    assert!(after < 0.6 * before, "test ε-MSE {before:.3} → {after:.3}");

    // Clean | noisy (t = 20) | denoised, six rows, 4× enlarged.
    let ([clean, noisy, denoised], denoised_psnr) =
        samples(&trained, &digits.test, 6, &schedule, 20, 3, &devices.eval);
    assert_eq!((clean.len(), noisy.len(), denoised.len()), (6, 6, 6));
    let noisy_psnr = psnr(&clean, &noisy);
    assert!(noisy_psnr.is_finite() && noisy_psnr > 15.0, "{noisy_psnr}");
    assert!(
        denoised_psnr.is_finite() && denoised_psnr > 10.0,
        "{denoised_psnr}"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pretrain-original-20.png");
    sample_grid(&[&clean, &noisy, &denoised], 6, 4)
        .save(&path)
        .unwrap();
    if let Ok(keep) = std::env::var("SOPHON_GRID") {
        std::fs::copy(&path, keep).unwrap();
        eprintln!(
            "ε-MSE {before:.3} → {after:.3}; PSNR noisy {noisy_psnr:.1} dB, denoised {denoised_psnr:.1} dB"
        );
    }
    let png = image::open(&path).unwrap().to_rgb8();
    let (cell, gap, col_gap) = (16 * 4, 2, 6);
    assert_eq!(png.width(), 3 * (cell + col_gap) - col_gap + 2 * gap);
    assert_eq!(png.height(), 6 * (cell + gap) + gap);
    // The first column is the clean test image, pixel for pixel (4× blocks).
    for (y, x) in [(3, 5), (8, 8), (12, 2)] {
        let want = (clean.image(0)[y * 16 + x] * 255.0).round() as u8;
        let got = png
            .get_pixel(gap + x as u32 * 4 + 1, gap + y as u32 * 4 + 1)
            .0;
        assert_eq!(got, [want; 3], "clean pixel ({y}, {x})");
    }
    // The noisy column differs from the clean one.
    let differs = (0..cell).any(|d| {
        png.get_pixel(gap + d, gap + d) != png.get_pixel(gap + cell + col_gap + d, gap + d)
    });
    assert!(differs, "the noisy column is not the clean one");
}

fn sophon_for_denoising(k: usize) -> sophon_workbench::config::sophon::SophonConfig {
    use sophon_workbench::config::sophon::{Environment, SuppressionLoss};
    let mut config = sophon_workbench::sophon::bench::bench_config(k);
    config.loss = SuppressionLoss::Dos;
    config.clip = 0.0;
    config.environments = vec![Environment {
        optimizer: OptimizerConfig::new(OptimizerKind::Sgd, 1e-3),
        batch_size: 40,
        query_size: 10,
        reinit_head: false,
        layers: Default::default(),
    }];
    config
}

/// Mean ‖ε̂‖² on `set` after a short ε-MSE fine-tune of a copy (2 SGD steps): what DoS makes
/// small. The same batches, steps and noise for every model.
fn dos_after_finetune(
    unet: &Unet,
    set: &sophon_workbench::data::ImageSet,
    devices: &Devices,
) -> f64 {
    use burn::module::Module;
    let mut tune = set.clone();
    tune.truncate(64);
    let tune = Domain {
        train: tune,
        validation: set.clone(),
        test: set.clone(),
        attacker: None,
    };
    let tuned = train(
        unet.clone(),
        &tune,
        OptimizerConfig::new(OptimizerKind::Sgd, 1e-3),
        1,
        32,
        devices,
        &mut Recorder::default(),
    );
    let model = tuned.valid();
    let schedule = Schedule::ddpm();
    let mut rng = sophon_workbench::data::rng::Rng::new(11);
    let idx: Vec<usize> = (64..set.len().min(192)).collect();
    let x0 = sophon_workbench::data::batch::images(set, &idx, &devices.eval);
    let t = schedule.sample_t(idx.len(), None, &mut rng);
    devices.eval.seed(13); // the same noise for every model
    let eps = burn::tensor::Tensor::<4>::random(
        x0.dims(),
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &devices.eval,
    );
    let xt = schedule.noise(x0, &t, eps);
    sophon_workbench::sophon::losses::dos(model.forward(xt, &t)).into_scalar::<f32>() as f64
}

#[test]
fn a_denoiser_fts_step_leaves_the_real_model_alone_and_raises_denial_of_service() {
    use sophon_workbench::sophon::fts::{FtsContext, fts_gradient, fts_step};
    use sophon_workbench::sophon::protect::optimizers;
    let (digits, devices) = digits16();
    devices.train.seed(6);
    let unet = UnetConfig::new(1)
        .with_base(8)
        .with_blocks_per_level(1)
        .init(&devices.train);
    let unet = train(
        unet,
        &digits,
        OptimizerConfig::new(OptimizerKind::Adam, 2e-3),
        1,
        64,
        &devices,
        &mut Recorder::default(),
    );
    let ctx = DenoiseContext::new(&DiffusionConfig::default());
    let config = sophon_for_denoising(3);

    // The simulation moves a copy: the real model predicts exactly as before.
    let probe = sophon_workbench::data::batch::images(&digits.test, &[0, 1, 2], &devices.train);
    let before = unet.forward(probe.clone(), &[5, 50, 500]).into_data();
    let (grads, loss) = fts_gradient(
        &unet,
        &FtsContext {
            config: &config,
            ctx: &ctx,
            restricted: &digits.test,
            devices: &devices,
        },
        &mut sophon_workbench::data::rng::Rng::new(1),
        &mut Recorder::default(),
    )
    .unwrap();
    assert!(loss.is_finite() && !grads.is_empty());
    assert_eq!(unet.forward(probe, &[5, 50, 500]).into_data(), before);

    // One FTS step with DoS: after the same short fine-tune, the model predicts less noise.
    let held_out = &digits.test;
    let dos_before = dos_after_finetune(&unet, held_out, &devices);
    let (mut optim, _) = optimizers();
    let (protected, stats) = fts_step(
        unet,
        &mut optim,
        1e-2,
        &FtsContext {
            config: &config,
            ctx: &ctx,
            restricted: &digits.test,
            devices: &devices,
        },
        &mut sophon_workbench::data::rng::Rng::new(2),
        &mut Recorder::default(),
    )
    .unwrap();
    assert!(stats.grad_norm > 0.0);
    let dos_after = dos_after_finetune(&protected, held_out, &devices);
    assert!(
        dos_after < dos_before,
        "‖ε̂‖² after fine-tuning: {dos_before:.4} → {dos_after:.4}"
    );
}

/// The quick denoising preset end to end through the command line: the summary's denoising
/// fields, the sample grids written as PNG (decoded back: size and content), and a resume of
/// the finished run that reproduces its SOPHON measures.
#[test]
fn the_denoising_preset_runs_headless_and_writes_its_sample_grids() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("dq");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_sophon-workbench"))
        .args([
            "run",
            concat!(env!("CARGO_MANIFEST_DIR"), "/presets/denoise-quick.toml"),
            "--backend",
            "flex",
        ])
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let text = std::fs::read_to_string(out.join("summary.json")).unwrap();
    let summary: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(summary["status"], "finished");
    let pre = &summary["pretrain"];
    let mse = pre["original_mse"].as_f64().unwrap();
    assert!(
        mse > 0.0 && mse < 1.0,
        "a trained denoiser beats predicting 0: {mse}"
    );
    assert!(pre["original_psnr"].as_f64().unwrap() > 15.0);
    assert!(
        pre.get("original_acc").is_none(),
        "no accuracy for a denoiser"
    );
    let sophon = &summary["sophon"];
    assert_eq!(sophon["iterations"], 4);
    for key in ["original_mse", "restricted_mse", "probe_restricted_mse"] {
        assert!(sophon[key].is_f64(), "sophon.{key} in {text}");
    }
    let attacks = summary["attack"].as_array().unwrap();
    assert_eq!(attacks.len(), 3);
    for a in attacks {
        assert_eq!(a["restricted_mse"].as_array().unwrap().len(), 1);
        assert!(a["final_restricted_mse"].is_f64());
    }
    // The typed summary reads back what was written.
    let typed = sophon_workbench::run::folder::read_summary(&out).unwrap();
    assert_eq!(
        typed.sophon.as_ref().unwrap().scores.metric,
        sophon_workbench::config::Metric::Mse
    );

    // Grids: pre-trained, during SOPHON (iterations 0, 2, 4), protected, each attacked model.
    let samples = out.join("samples");
    for name in [
        "pretrain-original-1",
        "pretrain-restricted-1",
        "sophon-original-0",
        "sophon-restricted-4",
        "protected-restricted-4",
        "attack-reference-protected-restricted-1",
        "attack-reference-scratch-original-1",
    ] {
        let path = samples.join(format!("{name}.png"));
        let png = image::open(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .to_rgb8();
        // 4 rows of 16×16 images, 4× enlarged, three columns (clean | noisy | denoised).
        let (cell, gap, col_gap) = (16 * 4, 2, 6);
        assert_eq!(
            png.width(),
            3 * (cell + col_gap) - col_gap + 2 * gap,
            "{name}"
        );
        assert_eq!(png.height(), 4 * (cell + gap) + gap, "{name}");
        let colours: std::collections::HashSet<[u8; 3]> = png.pixels().map(|p| p.0).collect();
        assert!(colours.len() > 20, "{name} has content, not a flat fill");
    }
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    for series in [
        "pretrain/original_mse",
        "sophon/original_mse",
        "sophon/probe_restricted_mse",
        "sophon/restricted_psnr",
        "attack/reference/protected/restricted_mse",
    ] {
        assert!(
            metrics.contains(&format!("\"series\":\"{series}\"")),
            "{series} in metrics.jsonl"
        );
    }

    // The one-page report puts the sample grids in its third band, each at least a few cells
    // wide (scaled up), with the grid's own pixels in it.
    use sophon_workbench::run::report::{HEADER, HEIGHT, WIDTH, render_report};
    let page = render_report(&out).unwrap();
    assert_eq!(page.dimensions(), (WIDTH, HEIGHT));
    let band = HEADER + 2 * (HEIGHT - HEADER) / 3..HEIGHT;
    let grey = band
        .flat_map(|y| (0..WIDTH).map(move |x| (x, y)))
        .filter(|&(x, y)| {
            let [r, g, b] = page.get_pixel(x, y).0;
            r == g && g == b && r < 250
        })
        .count();
    assert!(
        grey > 4 * 100 * 100,
        "four grey-scale sample grids in the report's last band ({grey} pixels)"
    );
    // The SVG frames the grids instead of writing every pixel as a rectangle.
    let written =
        sophon_workbench::run::report::write_report(&out, &out.join("report.png")).unwrap();
    let svg = std::fs::read_to_string(&written.svg).unwrap();
    assert_eq!(svg.matches("the grid is in report.png").count(), 4);
    assert!(svg.len() < 1_000_000, "{} bytes", svg.len());
}

//! The denoising task's pieces: ε-MSE training of the UNet, the test ε-MSE, and sample grids
//! written as PNG and read back.

use sophon_workbench::config::{DataSource, InputConfig, OptimizerConfig, OptimizerKind};
use sophon_workbench::data::load_domain;
use sophon_workbench::data::preview::sample_grid;
use sophon_workbench::diffusion::Schedule;
use sophon_workbench::model::unet::UnetConfig;
use sophon_workbench::sophon::Devices;
use sophon_workbench::sophon::denoise::{psnr, samples, test_mse, train};

use crate::training::Recorder;

#[test]
fn a_denoiser_learns_the_digits_and_its_sample_grid_is_a_real_png() {
    let input = InputConfig {
        size: 16,
        channels: 1,
        convert_channels: false,
    };
    let digits = load_domain(&DataSource::Digits, &input, 1).unwrap();
    let devices = Devices::new(burn::tensor::Device::flex());
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
        &digits.train,
        &schedule,
        &OptimizerConfig::new(OptimizerKind::Adam, 2e-3),
        4,
        64,
        None,
        1,
        &devices,
        &mut recorder,
        "pretrain",
    )
    .unwrap();
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

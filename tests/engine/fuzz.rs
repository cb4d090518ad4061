//! Mutation fuzzing of every loader, bounded in time so that it runs with the test suite: valid
//! files (IDX plain and gzipped, CIFAR records, a PNG image folder, preset TOML with `--set`
//! lines) are mutated at random (bytes flipped, header words replaced by extreme values,
//! truncated, extended) and loaded again. A loader may accept a mutant or refuse it with an
//! error naming the file; it must never panic, hang or ask for unbounded memory. The seed is
//! printed, so a failure reproduces with `SOPHON_FUZZ_SEED`.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use sophon_workbench::config::ExperimentConfig;
use sophon_workbench::data::rng::Rng;
use sophon_workbench::data::{DataError, ImageSet, cifar, folder, idx};

/// How long each loader is fuzzed.
const BUDGET: Duration = Duration::from_secs(4);

fn seed() -> u64 {
    let seed = std::env::var("SOPHON_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    eprintln!("fuzz seed {seed} (SOPHON_FUZZ_SEED={seed} repeats it)");
    seed
}

/// One random mutation of `bytes`.
fn mutate(bytes: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut out = bytes.to_vec();
    match rng.below(6) {
        0 if !out.is_empty() => {
            for _ in 0..1 + rng.below(8) {
                let i = rng.below(out.len());
                out[i] ^= 1 << rng.below(8);
            }
        }
        1 if out.len() >= 4 => {
            // A header-sized word replaced by an extreme value.
            let i = 4 * rng.below(out.len().min(32) / 4);
            let extreme = [
                0u32,
                1,
                0x7fff_ffff,
                0xffff_ffff,
                0x0000_0803,
                0x0000_0801,
                4097,
            ];
            let w = extreme[rng.below(extreme.len())];
            out[i..i + 4].copy_from_slice(&w.to_be_bytes());
        }
        2 => out.truncate(rng.below(out.len() + 1)),
        3 => out.extend((0..rng.below(4096)).map(|_| rng.below(256) as u8)),
        4 if !out.is_empty() => {
            let i = rng.below(out.len());
            out.insert(i, rng.below(256) as u8);
        }
        _ => out.reverse(),
    }
    out
}

/// Mutate `valid` and write it to `path`, then load it with `load`, for the time budget.
fn fuzz(
    name: &str,
    valid: &[u8],
    path: &Path,
    mut load: impl FnMut(&Path) -> Result<(), DataError>,
) {
    let mut rng = Rng::from_keys(&[seed(), name.len() as u64]);
    let started = Instant::now();
    let (mut n, mut accepted) = (0, 0);
    while started.elapsed() < BUDGET {
        let mut bytes = mutate(valid, &mut rng);
        if rng.below(3) == 0 {
            bytes = mutate(&bytes, &mut rng);
        }
        fs::write(path, &bytes).unwrap();
        match load(path) {
            Ok(()) => accepted += 1,
            Err(e) => {
                let message = e.to_string();
                let file = path.file_name().unwrap().to_string_lossy();
                assert!(
                    message.contains(file.as_ref()),
                    "{name}: the error names no file: {message}"
                );
            }
        }
        n += 1;
    }
    eprintln!("{name}: {n} mutants, {accepted} accepted");
    assert!(n > 20, "{name}: too few mutants tried ({n})");
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

#[test]
fn idx_loaders_survive_mutated_files() {
    let dir = tempfile::tempdir().unwrap();
    let pixels: Vec<u8> = (0..20 * 28 * 28).map(|i| (i % 253) as u8).collect();
    let images = idx::encode_images(20, 28, 28, &pixels);
    let labels = idx::encode_labels(&(0..20).map(|i| (i % 10) as u8).collect::<Vec<_>>());
    let good_labels = dir.path().join("labels");
    fs::write(&good_labels, &labels).unwrap();
    fuzz("idx images", &images, &dir.path().join("images"), |p| {
        idx::load_pair(p, &good_labels, None).map(drop)
    });
    let good_images = dir.path().join("good-images");
    fs::write(&good_images, &images).unwrap();
    fuzz("idx labels", &labels, &dir.path().join("labels-m"), |p| {
        idx::read_labels(p, Some(5)).map(drop)
    });
    fuzz(
        "idx gzip",
        &gz(&images),
        &dir.path().join("images.gz"),
        |p| idx::read_images(p, None).map(drop),
    );
}

#[test]
fn cifar_loader_survives_mutated_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut records = Vec::new();
    for r in 0..4u8 {
        records.push(r % 10);
        records.extend((0..3072).map(|i| (i % 256) as u8));
    }
    fuzz("cifar-10", &records, &dir.path().join("batch.bin"), |p| {
        let mut set = ImageSet::empty("cifar", 3, 32, 32, 10);
        cifar::read_records(p, 1, 0, 10, &mut set, Some(3)).map(drop)
    });
}

#[test]
fn image_folder_loader_survives_mutated_pngs() {
    let root = tempfile::tempdir().unwrap();
    fs::create_dir(root.path().join("a")).unwrap();
    let png = root.path().join("a/x.png");
    image::RgbImage::from_fn(12, 9, |x, y| image::Rgb([x as u8 * 20, y as u8 * 25, 90]))
        .save(&png)
        .unwrap();
    let valid = fs::read(&png).unwrap();
    fuzz("folder png", &valid, &png, |_| {
        folder::load_sized(root.path(), 3, 8, true, None).map(drop)
    });
}

#[test]
fn presets_survive_mutated_text_and_overrides() {
    let mut rng = Rng::from_keys(&[seed(), 0x70_72_65]);
    let keys = [
        "seed",
        "input.size",
        "sophon.alpha",
        "sophon.environments.0.optimizer.lr",
        "sophon.probe.batch_size",
        "evaluation.strategies.0.epochs",
        "original.train",
        "sophon.guard",
        "pretrain.optimizer",
        "sophon.environments.9.batch_size",
        "a..b",
    ];
    let values = [
        "0",
        "-1",
        "nan",
        "inf",
        "1e308",
        "18446744073709551616",
        "\"x\"",
        "[1,2]",
        "{ min_original_acc = 2 }",
        "",
        "true",
        "{ kind = \"adam\", lr = 0 }",
    ];
    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < BUDGET {
        let text =
            String::from_utf8_lossy(&mutate(sophon_workbench::QUICK_PRESET.as_bytes(), &mut rng))
                .into_owned();
        let sets: Vec<String> = (0..rng.below(3))
            .map(|_| {
                format!(
                    "{}={}",
                    keys[rng.below(keys.len())],
                    values[rng.below(values.len())]
                )
            })
            .collect();
        // Either a valid experiment or an error; never a panic.
        if let Ok(config) = ExperimentConfig::from_toml(&text, "fuzzed", &sets) {
            config.validate().expect("a config that loaded validates");
        }
        n += 1;
    }
    eprintln!("presets: {n} mutants");
    assert!(n > 100);
}

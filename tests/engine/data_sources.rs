//! Every data source, including hostile files, through the public loaders.

use std::fs;
use std::io::Write;
use std::path::Path;

use flate2::{Compression, write::GzEncoder};
use sophon_workbench::config::{DataSource, InputConfig};
use sophon_workbench::data::{self, Split, cifar, folder, idx};

fn input(size: usize, channels: usize, convert: bool) -> InputConfig {
    InputConfig {
        size,
        channels,
        convert_channels: convert,
    }
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn write_idx(
    dir: &Path,
    prefix: &str,
    n: usize,
    gzip: bool,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let pixels: Vec<u8> = (0..n * 28 * 28).map(|i| (i % 251) as u8).collect();
    let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    let (mut img, mut lab) = (
        idx::encode_images(n, 28, 28, &pixels),
        idx::encode_labels(&labels),
    );
    let ext = if gzip { ".gz" } else { "" };
    if gzip {
        img = gz(&img);
        lab = gz(&lab);
    }
    let (pi, pl) = (
        dir.join(format!("{prefix}-images{ext}")),
        dir.join(format!("{prefix}-labels{ext}")),
    );
    fs::write(&pi, img).unwrap();
    fs::write(&pl, lab).unwrap();
    (pi, pl)
}

#[test]
fn idx_plain_and_gzip_load_identically() {
    let dir = tempfile::tempdir().unwrap();
    let (pi, pl) = write_idx(dir.path(), "plain", 30, false);
    let (gi, gl) = write_idx(dir.path(), "gz", 30, true);
    let a = idx::load_pair(&pi, &pl, None).unwrap();
    let b = idx::load_pair(&gi, &gl, None).unwrap();
    assert_eq!(a.pixels, b.pixels);
    assert_eq!(a.labels, b.labels);
    assert_eq!((a.len(), a.height, a.width, a.classes), (30, 28, 28, 10));
    assert!((a.pixels[1] - 1.0 / 255.0).abs() < 1e-6);
    let limited = idx::load_pair(&pi, &pl, Some(7)).unwrap();
    assert_eq!(limited.len(), 7);
}

#[test]
fn idx_hostile_files_fail_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    let (pi, pl) = write_idx(dir.path(), "ok", 10, false);
    let good = fs::read(&pi).unwrap();

    let truncated = dir.path().join("truncated-images");
    fs::write(&truncated, &good[..good.len() - 100]).unwrap();
    let err = idx::load_pair(&truncated, &pl, None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("truncated-images") && err.contains("header claims"),
        "{err}"
    );

    let short_header = dir.path().join("header-images");
    fs::write(&short_header, &good[..9]).unwrap();
    let err = idx::load_pair(&short_header, &pl, None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("header-images") && err.contains("truncated IDX header"),
        "{err}"
    );

    let wrong_magic = dir.path().join("magic-images");
    let mut bytes = good.clone();
    bytes[3] = 0x01;
    fs::write(&wrong_magic, &bytes).unwrap();
    let err = idx::load_pair(&wrong_magic, &pl, None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("magic-images") && err.contains("wrong magic"),
        "{err}"
    );

    // A header that claims a billion images of 28×28.
    let lying = dir.path().join("lying-images");
    let mut bytes = good.clone();
    bytes[4..8].copy_from_slice(&1_000_000_000u32.to_be_bytes());
    fs::write(&lying, &bytes).unwrap();
    let err = idx::load_pair(&lying, &pl, None).unwrap_err().to_string();
    assert!(err.contains("lying-images"), "{err}");

    // Labels for a different number of images.
    let (_, other_labels) = write_idx(dir.path(), "other", 12, false);
    let err = idx::load_pair(&pi, &other_labels, None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("other-labels") && err.contains("12 labels for 10 images"),
        "{err}"
    );

    // A corrupt gzip stream.
    let bad_gz = dir.path().join("bad.gz");
    fs::write(&bad_gz, [0x1f, 0x8b, 8, 0, 1, 2, 3]).unwrap();
    let err = idx::load_pair(&bad_gz, &pl, None).unwrap_err().to_string();
    assert!(err.contains("bad.gz") && err.contains("gzip"), "{err}");

    let missing = dir.path().join("missing");
    let err = idx::load_pair(&missing, &pl, None).unwrap_err().to_string();
    assert!(
        err.contains("missing") && err.contains("cannot read"),
        "{err}"
    );
}

fn cifar_record(label: &[u8], shade: u8) -> Vec<u8> {
    let mut r = label.to_vec();
    r.extend((0..3072).map(|i| if i < 1024 { shade } else { 0 }));
    r
}

#[test]
fn cifar10_and_cifar100_load_and_reject_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    for i in 1..=5 {
        let mut f = Vec::new();
        for l in 0..4u8 {
            f.extend(cifar_record(&[l], 200));
        }
        fs::write(dir.path().join(format!("data_batch_{i}.bin")), f).unwrap();
    }
    fs::write(dir.path().join("test_batch.bin"), cifar_record(&[9], 100)).unwrap();
    let train = cifar::load_cifar10(dir.path(), Split::Train, None).unwrap();
    assert_eq!((train.len(), train.channels, train.classes), (20, 3, 10));
    assert!((train.image(0)[0] - 200.0 / 255.0).abs() < 1e-6);
    assert_eq!(train.image(0)[1024], 0.0, "green plane follows red");
    let test = cifar::load_cifar10(dir.path(), Split::Test, None).unwrap();
    assert_eq!(test.labels, vec![9]);

    // Truncated record.
    let mut f = cifar_record(&[1], 1);
    f.truncate(3000);
    fs::write(dir.path().join("test_batch.bin"), f).unwrap();
    let err = cifar::load_cifar10(dir.path(), Split::Test, None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("test_batch.bin") && err.contains("whole number"),
        "{err}"
    );
    // Label out of range.
    fs::write(dir.path().join("test_batch.bin"), cifar_record(&[12], 1)).unwrap();
    let err = cifar::load_cifar10(dir.path(), Split::Test, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("label 12"), "{err}");

    // CIFAR-100 coarse and fine labels.
    let c100 = tempfile::tempdir().unwrap();
    let mut f = cifar_record(&[3, 77], 10);
    f.extend(cifar_record(&[19, 99], 10));
    fs::write(c100.path().join("train.bin"), &f).unwrap();
    let fine = cifar::load_cifar100(
        c100.path(),
        Split::Train,
        sophon_workbench::config::Cifar100Labels::Fine,
        None,
    )
    .unwrap();
    assert_eq!((fine.labels.clone(), fine.classes), (vec![77, 99], 100));
    let coarse = cifar::load_cifar100(
        c100.path(),
        Split::Train,
        sophon_workbench::config::Cifar100Labels::Coarse,
        None,
    )
    .unwrap();
    assert_eq!((coarse.labels.clone(), coarse.classes), (vec![3, 19], 20));
    let err = cifar::load_cifar100(c100.path(), Split::Test, Default::default(), None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("test.bin") && err.contains("cannot read"),
        "{err}"
    );
}

fn write_png(path: &Path, w: u32, h: u32, colour: bool) {
    if colour {
        image::RgbImage::from_fn(w, h, |x, _| image::Rgb([(x * 20) as u8, 10, 200]))
            .save(path)
            .unwrap();
    } else {
        image::GrayImage::from_fn(w, h, |x, y| image::Luma([((x + y) * 10) as u8]))
            .save(path)
            .unwrap();
    }
}

#[test]
fn image_folders_load_png_and_jpeg_and_reject_bad_ones() {
    let root = tempfile::tempdir().unwrap();
    for class in ["cat", "dog"] {
        fs::create_dir(root.path().join(class)).unwrap();
    }
    write_png(&root.path().join("cat/a.png"), 10, 12, false);
    write_png(&root.path().join("cat/b.png"), 20, 20, false);
    image::GrayImage::from_pixel(9, 9, image::Luma([128]))
        .save(root.path().join("dog/c.jpg"))
        .unwrap();
    fs::write(root.path().join("dog/readme.txt"), "not an image").unwrap();
    let set = folder::load_sized(root.path(), 1, 8, false, None).unwrap();
    assert_eq!((set.len(), set.classes, set.height), (3, 2, 8));
    let mut labels = set.labels.clone();
    labels.sort();
    assert_eq!(labels, vec![0, 0, 1]);
    // Converted to RGB on request.
    let rgb = folder::load_sized(root.path(), 3, 8, true, None).unwrap();
    assert_eq!(rgb.channels, 3);
    // ...and refused without it.
    let err = folder::load_sized(root.path(), 3, 8, false, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("convert_channels"), "{err}");

    // A corrupt image names its file.
    fs::write(
        root.path().join("dog/broken.png"),
        b"\x89PNG\r\n\x1a\nbroken",
    )
    .unwrap();
    let err = folder::load_sized(root.path(), 1, 8, false, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("broken.png"), "{err}");

    // An empty folder, and a class folder with no images.
    let empty = tempfile::tempdir().unwrap();
    let err = folder::load_sized(empty.path(), 1, 8, false, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no class sub-folders"), "{err}");
    fs::create_dir(empty.path().join("only")).unwrap();
    let err = folder::load_sized(empty.path(), 1, 8, false, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("only") && err.contains("no PNG/JPEG"), "{err}");
}

#[test]
fn domains_are_conformed_to_the_model_input() {
    // The bundled 8×8 digits, resized to 16×16 and converted to RGB.
    let digits = data::load_domain(&DataSource::Digits, &input(16, 3, true), 1).unwrap();
    assert_eq!(
        (
            digits.train.channels,
            digits.train.height,
            digits.train.len()
        ),
        (3, 16, 1438)
    );
    let err = data::load_domain(&DataSource::Digits, &input(16, 3, false), 1).unwrap_err();
    assert!(err.to_string().contains("convert_channels"));

    // IDX files through the configured source, with limits.
    let dir = tempfile::tempdir().unwrap();
    let (ti, tl) = write_idx(dir.path(), "train", 20, true);
    let (vi, vl) = write_idx(dir.path(), "test", 10, false);
    let src = DataSource::Idx {
        train_images: ti,
        train_labels: tl,
        test_images: vi,
        test_labels: vl,
        train_limit: Some(15),
        test_limit: None,
    };
    let d = data::load_domain(&src, &input(14, 1, false), 1).unwrap();
    assert_eq!((d.train.len(), d.test.len(), d.train.height), (15, 10, 14));
}

/// Run `f` on another thread: its result, or a panic when it takes longer than 20 s (a read
/// that blocks forever).
fn within_20_s<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(std::time::Duration::from_secs(20))
        .expect("the loader returned instead of blocking")
}

#[test]
fn devices_fifos_and_folders_are_refused_as_data_files() {
    let dir = tempfile::tempdir().unwrap();
    let (_, labels) = write_idx(dir.path(), "ok", 5, false);
    // /dev/zero never ends; read whole it would fill the memory.
    let l = labels.clone();
    let err = within_20_s(move || idx::load_pair(Path::new("/dev/zero"), &l, None))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("/dev/zero") && err.contains("not a regular file"),
        "{err}"
    );
    // A FIFO nobody writes to would block forever.
    let fifo = dir.path().join("fifo-images");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    if made.is_ok_and(|s| s.success()) {
        let (f, l) = (fifo.clone(), labels.clone());
        let err = within_20_s(move || idx::load_pair(&f, &l, None))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("fifo-images") && err.contains("not a regular file"),
            "{err}"
        );
        let f = fifo.clone();
        let err = within_20_s(move || {
            let mut set = data::ImageSet::empty("x", 3, 32, 32, 10);
            cifar::read_records(&f, 1, 0, 10, &mut set, None)
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("not a regular file"), "{err}");
    } else {
        crate::skipped(
            "data_sources (the FIFO case)",
            "mkfifo is not available here",
        );
    }
    let err = idx::load_pair(dir.path(), &labels, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("a folder"), "{err}");
}

#[test]
fn image_folder_test_classes_are_matched_to_training_classes_by_name() {
    let root = tempfile::tempdir().unwrap();
    let make = |split: &str, classes: &[&str]| {
        for (i, class) in classes.iter().enumerate() {
            let dir = root.path().join(split).join(class);
            fs::create_dir_all(&dir).unwrap();
            // Each class its own grey level, so a label can be checked against its image.
            let level = 40
                * (["ant", "cat", "dog", "fox"]
                    .iter()
                    .position(|c| c == class)
                    .unwrap() as u8
                    + 1);
            image::GrayImage::from_pixel(8, 8, image::Luma([level]))
                .save(dir.join(format!("{i}.png")))
                .unwrap();
        }
    };
    make("train", &["cat", "dog", "fox"]);
    make("test", &["cat", "dog"]);
    make("bad-test", &["ant", "cat", "dog"]);
    let source = |test: &str| DataSource::Folder {
        train: root.path().join("train"),
        test: root.path().join(test),
        train_limit: None,
        test_limit: None,
    };
    let d = data::load_domain(&source("test"), &input(8, 1, false), 1).unwrap();
    assert_eq!((d.train.classes, d.test.classes), (3, 3));
    // cat and dog keep the training labels 0 and 1, whatever the test folder lacks.
    for i in 0..d.test.len() {
        let level = (d.test.image(i)[0] * 255.0).round() as u32;
        let expected = match level {
            80 => 0,
            120 => 1,
            other => panic!("unexpected grey level {other}"),
        };
        assert_eq!(d.test.labels[i], expected);
    }
    // A test class that training never saw is an error that names it.
    let err = data::load_domain(&source("bad-test"), &input(8, 1, false), 1)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("ant") && err.contains("not among the training classes"),
        "{err}"
    );
}

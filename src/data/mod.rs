//! Image sets: procedural domains, the bundled UCI digits, IDX, CIFAR binary and image folders.
//!
//! Every source produces an [`ImageSet`] of `f32` pixels in `[0, 1]`, which [`ImageSet::conform`]
//! resizes and converts to the model's input and [`batch`] turns into burn tensors.

pub mod batch;
pub mod cifar;
pub mod digits;
pub mod folder;
pub mod idx;
pub mod preview;
pub mod procedural;
pub mod rng;
pub mod transform;

use std::path::{Path, PathBuf};

use crate::config::{DataSource, InputConfig};

/// An error while reading or preparing data. File errors always name the file.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{}: {problem}", path.display())]
    File { path: PathBuf, problem: String },
    #[error("{0}")]
    Invalid(String),
}

impl DataError {
    pub fn file(path: impl AsRef<Path>, problem: impl Into<String>) -> Self {
        Self::File {
            path: path.as_ref().to_path_buf(),
            problem: problem.into(),
        }
    }
}

/// Open `path` for reading when it is a regular file (a FIFO or a device such as `/dev/zero`
/// could block forever or never end); the file and its length in bytes.
pub fn open_regular(path: &Path) -> Result<(std::fs::File, u64), DataError> {
    let meta =
        std::fs::metadata(path).map_err(|e| DataError::file(path, format!("cannot read: {e}")))?;
    if !meta.is_file() {
        let what = if meta.is_dir() {
            "a folder"
        } else {
            "not a regular file (a device, FIFO or socket)"
        };
        return Err(DataError::file(
            path,
            format!("{what}; expected a data file"),
        ));
    }
    let file = std::fs::File::open(path)
        .map_err(|e| DataError::file(path, format!("cannot read: {e}")))?;
    Ok((file, meta.len()))
}

/// Err naming `path` when `images` images of `values` values each would not fit in the memory
/// the machine allows for image data.
pub fn check_memory(path: &Path, images: usize, values: usize) -> Result<(), DataError> {
    let bytes = crate::limits::image_bytes(images as u64, values as u64);
    crate::limits::check_image_memory(&format!("{images} images of {values} values"), bytes)
        .map_err(|m| DataError::file(path, m))
}

/// Which part of a data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Test,
}

impl Split {
    pub fn key(self) -> u64 {
        match self {
            Split::Train => 1,
            Split::Test => 2,
        }
    }
}

/// A labelled set of images, stored as `n × channels × height × width` floats in `[0, 1]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageSet {
    pub name: String,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub classes: usize,
    pub pixels: Vec<f32>,
    pub labels: Vec<u32>,
}

impl ImageSet {
    pub fn empty(name: &str, channels: usize, height: usize, width: usize, classes: usize) -> Self {
        Self {
            name: name.to_string(),
            channels,
            height,
            width,
            classes,
            pixels: Vec::new(),
            labels: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    pub fn image(&self, i: usize) -> &[f32] {
        let n = self.image_len();
        &self.pixels[i * n..(i + 1) * n]
    }

    pub fn push(&mut self, image: &[f32], label: u32) {
        debug_assert_eq!(image.len(), self.image_len());
        self.pixels.extend_from_slice(image);
        self.labels.push(label);
    }

    /// `n` images drawn at random (by `rng`) as the second set, the rest, in their order, as
    /// the first.
    pub fn split_random(&self, n: usize, rng: &mut rng::Rng) -> (Self, Self) {
        let mut order: Vec<usize> = (0..self.len()).collect();
        rng.shuffle(&mut order);
        let mut picked = vec![false; self.len()];
        for &i in order.iter().take(n) {
            picked[i] = true;
        }
        let empty = || {
            Self::empty(
                &self.name,
                self.channels,
                self.height,
                self.width,
                self.classes,
            )
        };
        let (mut rest, mut held) = (empty(), empty());
        for (i, &p) in picked.iter().enumerate() {
            let set = if p { &mut held } else { &mut rest };
            set.push(self.image(i), self.labels[i]);
        }
        (rest, held)
    }

    /// Keep at most `n` images (the first ones).
    pub fn truncate(&mut self, n: usize) {
        if n < self.len() {
            self.labels.truncate(n);
            self.pixels.truncate(n * self.image_len());
        }
    }

    /// Resize to `size × size` and convert to `channels`. Converting between grey and colour
    /// needs `convert_channels`; otherwise it is an error that says how to allow it.
    pub fn conform(
        self,
        channels: usize,
        size: usize,
        convert_channels: bool,
    ) -> Result<Self, DataError> {
        if self.channels != channels && !convert_channels {
            return Err(DataError::Invalid(format!(
                "{} has {} channel(s) but input.channels = {channels}; set input.convert_channels = true to convert",
                self.name, self.channels
            )));
        }
        Ok(transform::conform(self, channels, size))
    }

    /// How many images of each class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes];
        for &l in &self.labels {
            counts[l as usize] += 1;
        }
        counts
    }
}

/// The train, validation and test parts of one domain, conformed to the model's input.
///
/// Only `train` is trained on; `validation` is what choices are made on (model selection, the
/// guard, the probe, the attacker's search); `test` is read for reported figures only.
#[derive(Debug, Clone)]
pub struct Domain {
    pub train: ImageSet,
    /// Empty until [`Domain::hold_out_validation`].
    pub validation: ImageSet,
    pub test: ImageSet,
    /// The attacker's own training images, held out of `train` by [`Domain::hold_out_attacker`]
    /// (`None`: the attacker trains on `train`, the images the defender trained on).
    pub attacker: Option<ImageSet>,
}

impl Domain {
    pub fn classes(&self) -> usize {
        self.train.classes
    }

    /// Move `n` training images, drawn at random (deterministic in `seed`), to the validation
    /// split. `field` names the setting in the error when the training set cannot spare them
    /// (at least one image must stay to train on).
    pub fn hold_out_validation(self, n: usize, seed: u64, field: &str) -> Result<Self, DataError> {
        if n >= self.train.len() {
            return Err(DataError::Invalid(format!(
                "{field}: a validation split of {n} images leaves nothing to train on ({} has {} training images)",
                self.train.name,
                self.train.len()
            )));
        }
        let mut rng = rng::Rng::from_keys(&[seed, 0x56_41_4C]);
        let (train, validation) = self.train.split_random(n, &mut rng);
        Ok(Self {
            train,
            validation,
            ..self
        })
    }

    /// Move `n` training images, drawn at random (deterministic in `seed`), to the attacker's
    /// own split: what is left in `train` is the defender's alone. `field` names the setting in
    /// the error when the training set cannot spare them.
    pub fn hold_out_attacker(self, n: usize, seed: u64, field: &str) -> Result<Self, DataError> {
        if n == 0 || n >= self.train.len() {
            return Err(DataError::Invalid(format!(
                "{field}: an attacker's split of {n} images must hold at least one image and leave the defender at least one ({} has {} training images after the validation split)",
                self.train.name,
                self.train.len()
            )));
        }
        let mut rng = rng::Rng::from_keys(&[seed, 0x41_54_4B]);
        let (train, attacker) = self.train.split_random(n, &mut rng);
        Ok(Self {
            train,
            attacker: Some(attacker),
            ..self
        })
    }

    /// The images an attacker fine-tunes on: its own split when one was held out, else `train`.
    pub fn attacker_train(&self) -> &ImageSet {
        self.attacker.as_ref().unwrap_or(&self.train)
    }
}

/// Load the train and test splits of a configured data source and conform them to the model's
/// input (the validation split is carved by [`Domain::hold_out_validation`]).
pub fn load_domain(data: &DataSource, input: &InputConfig, seed: u64) -> Result<Domain, DataError> {
    let (mut train, mut test) = match data {
        // Image folders: the test split's classes are matched to the train split's by name.
        DataSource::Folder {
            train,
            test,
            train_limit,
            test_limit,
        } => {
            let train_classes = folder::class_names(train)?;
            let load = |root: &Path, limit: Option<usize>| {
                folder::load_classes(
                    root,
                    input.channels,
                    input.size,
                    input.convert_channels,
                    limit,
                    &train_classes,
                )
            };
            (load(train, *train_limit)?, load(test, *test_limit)?)
        }
        _ => (
            load_split(data, input, seed, Split::Train)?,
            load_split(data, input, seed, Split::Test)?,
        ),
    };
    if let Some(n) = data.train_limit() {
        train.truncate(n);
    }
    if let Some(n) = data.test_limit() {
        test.truncate(n);
    }
    for set in [&train, &test] {
        if set.is_empty() {
            return Err(DataError::Invalid(format!("{} has no images", set.name)));
        }
    }
    let train = train.conform(input.channels, input.size, input.convert_channels)?;
    let test = test.conform(input.channels, input.size, input.convert_channels)?;
    if train.classes != test.classes {
        return Err(DataError::Invalid(format!(
            "{}: the train split has {} classes but the test split has {}",
            train.name, train.classes, test.classes
        )));
    }
    let validation = ImageSet::empty(
        &train.name,
        train.channels,
        train.height,
        train.width,
        train.classes,
    );
    Ok(Domain {
        train,
        validation,
        test,
        attacker: None,
    })
}

fn load_split(
    data: &DataSource,
    input: &InputConfig,
    seed: u64,
    split: Split,
) -> Result<ImageSet, DataError> {
    let (limit, pick) = match split {
        Split::Train => (data.train_limit(), 0),
        Split::Test => (data.test_limit(), 1),
    };
    match data {
        DataSource::Procedural {
            domain,
            background,
            train,
            test,
        } => {
            let spec = procedural::Spec {
                domain: *domain,
                background: *background,
                size: input.size,
                channels: input.channels,
            };
            Ok(procedural::generate(
                &spec,
                seed,
                split,
                [*train, *test][pick],
            ))
        }
        DataSource::Digits => digits::load(split),
        DataSource::Idx {
            train_images,
            train_labels,
            test_images,
            test_labels,
            ..
        } => {
            let (images, labels) = [(train_images, train_labels), (test_images, test_labels)][pick];
            idx::load_pair(images, labels, limit)
        }
        DataSource::Cifar10 { dir, .. } => cifar::load_cifar10(dir, split, limit),
        DataSource::Cifar100 { dir, labels, .. } => {
            cifar::load_cifar100(dir, split, *labels, limit)
        }
        DataSource::Folder { train, test, .. } => {
            let root = [train, test][pick];
            folder::load_sized(
                root,
                input.channels,
                input.size,
                input.convert_channels,
                limit,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A random split takes `n` distinct images with their labels, keeps the rest in order, and
    /// is the same for the same generator seed.
    #[test]
    fn split_random_holds_out_n_images_and_keeps_the_rest_in_order() {
        let mut set = ImageSet::empty("s", 1, 1, 2, 5);
        for i in 0..10u32 {
            set.push(&[i as f32, -(i as f32)], i % 5);
        }
        let (rest, held) = set.split_random(3, &mut rng::Rng::new(4));
        assert_eq!((rest.len(), held.len()), (7, 3));
        assert_eq!((held.name.as_str(), held.classes, held.width), ("s", 5, 2));
        let index = |s: &ImageSet, i: usize| s.image(i)[0] as u32;
        let mut all: Vec<u32> = (0..7).map(|i| index(&rest, i)).collect();
        assert!(
            all.windows(2).all(|w| w[0] < w[1]),
            "the rest keeps its order"
        );
        for i in 0..3 {
            assert_eq!(
                held.labels[i],
                index(&held, i) % 5,
                "labels travel with images"
            );
            all.push(index(&held, i));
        }
        all.sort();
        assert_eq!(all, (0..10).collect::<Vec<_>>(), "a partition of the set");
        assert_eq!(set.split_random(3, &mut rng::Rng::new(4)), (rest, held));
        let (none, every) = set.split_random(10, &mut rng::Rng::new(1));
        assert!(none.is_empty() && every.len() == 10);
    }
}

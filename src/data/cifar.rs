//! CIFAR-10 and CIFAR-100 binary files.
//!
//! CIFAR-10: `data_batch_1..5.bin` (train) and `test_batch.bin` (test); records of 3073 bytes: the
//! label, then 1024 R, 1024 G, 1024 B bytes (32×32, row-major). CIFAR-100: `train.bin` and
//! `test.bin`; records of 3074 bytes: coarse label, fine label, then the pixels.

use std::io::Read;
use std::path::Path;

use super::{DataError, ImageSet, Split};
use crate::config::Cifar100Labels;

const PIXELS: usize = 3 * 32 * 32;

/// Parse the records of one CIFAR binary file into `set`.
pub fn read_records(
    path: &Path,
    label_bytes: usize,
    label_index: usize,
    classes: usize,
    set: &mut ImageSet,
    limit: Option<usize>,
) -> Result<(), DataError> {
    let (mut file, len) = super::open_regular(path)?;
    let record = label_bytes + PIXELS;
    if len == 0 || len % record as u64 != 0 {
        return Err(DataError::file(
            path,
            format!(
                "{len} bytes is not a whole number of {record}-byte CIFAR records (truncated or not CIFAR)"
            ),
        ));
    }
    let records = (len / record as u64) as usize;
    let keep = limit.map_or(records, |l| l.saturating_sub(set.len()).min(records));
    super::check_memory(path, set.len() + keep, PIXELS)?;
    // Only the records kept are read.
    let mut bytes = vec![0; keep * record];
    file.read_exact(&mut bytes)
        .map_err(|e| DataError::file(path, format!("cannot read: {e}")))?;
    for (r, chunk) in bytes.chunks_exact(record).enumerate() {
        if limit.is_some_and(|l| set.len() >= l) {
            break;
        }
        let label = chunk[label_index] as usize;
        if label >= classes {
            return Err(DataError::file(
                path,
                format!("record {r}: label {label} is outside 0..{classes}"),
            ));
        }
        let pixels: Vec<f32> = chunk[label_bytes..]
            .iter()
            .map(|&b| b as f32 / 255.0)
            .collect();
        set.push(&pixels, label as u32);
    }
    Ok(())
}

pub fn load_cifar10(dir: &Path, split: Split, limit: Option<usize>) -> Result<ImageSet, DataError> {
    let files: Vec<String> = match split {
        Split::Train => (1..=5).map(|i| format!("data_batch_{i}.bin")).collect(),
        Split::Test => vec!["test_batch.bin".to_string()],
    };
    let mut set = ImageSet::empty(&format!("CIFAR-10 ({})", dir.display()), 3, 32, 32, 10);
    for f in files {
        read_records(&dir.join(f), 1, 0, 10, &mut set, limit)?;
    }
    Ok(set)
}

pub fn load_cifar100(
    dir: &Path,
    split: Split,
    labels: Cifar100Labels,
    limit: Option<usize>,
) -> Result<ImageSet, DataError> {
    let file = match split {
        Split::Train => "train.bin",
        Split::Test => "test.bin",
    };
    let (index, classes) = match labels {
        Cifar100Labels::Coarse => (0, 20),
        Cifar100Labels::Fine => (1, 100),
    };
    let mut set = ImageSet::empty(
        &format!("CIFAR-100 ({})", dir.display()),
        3,
        32,
        32,
        classes,
    );
    read_records(&dir.join(file), 2, index, classes, &mut set, limit)?;
    Ok(set)
}

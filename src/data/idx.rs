//! IDX files (the MNIST family), plain or gzipped.
//!
//! Big-endian: magic `0x00000803` (u8 images, 3 dims) or `0x00000801` (u8 labels, 1 dim), then the
//! dimensions as u32, then the raw bytes.

use std::fs;
use std::io::Read;
use std::path::Path;

use flate2::read::GzDecoder;

use super::{DataError, ImageSet};

const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;

/// Read a file, transparently un-gzipping it when it starts with the gzip magic.
pub fn read_maybe_gz(path: &Path) -> Result<Vec<u8>, DataError> {
    let raw = fs::read(path).map_err(|e| DataError::file(path, format!("cannot read: {e}")))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| DataError::file(path, format!("corrupt gzip data: {e}")))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

fn header(bytes: &[u8], path: &Path, magic: u32, what: &str) -> Result<Vec<usize>, DataError> {
    let ndims = match magic {
        IMAGES_MAGIC => 3,
        _ => 1,
    };
    let need = 4 + 4 * ndims;
    if bytes.len() < need {
        return Err(DataError::file(
            path,
            format!("truncated IDX header: {} bytes, need {need}", bytes.len()),
        ));
    }
    let word = |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    let found = word(0);
    if found != magic {
        return Err(DataError::file(
            path,
            format!("wrong magic 0x{found:08x} for IDX {what} (expected 0x{magic:08x})"),
        ));
    }
    Ok((0..ndims).map(|d| word(4 + 4 * d) as usize).collect())
}

/// Read an IDX image file into `(count, rows, cols, pixels)`, keeping at most `limit` images.
pub fn read_images(
    path: &Path,
    limit: Option<usize>,
) -> Result<(usize, usize, usize, Vec<u8>), DataError> {
    let bytes = read_maybe_gz(path)?;
    let dims = header(&bytes, path, IMAGES_MAGIC, "images")?;
    let (n, rows, cols) = (dims[0], dims[1], dims[2]);
    if rows == 0 || cols == 0 || rows > 4096 || cols > 4096 {
        return Err(DataError::file(
            path,
            format!("implausible image size {rows}×{cols}"),
        ));
    }
    let body = &bytes[16..];
    let expected = n.checked_mul(rows * cols).ok_or_else(|| {
        DataError::file(
            path,
            format!("header claims {n} images of {rows}×{cols}: too large"),
        )
    })?;
    if body.len() != expected {
        return Err(DataError::file(
            path,
            format!(
                "header claims {n} images of {rows}×{cols} ({expected} bytes) but the file holds {} bytes of pixels",
                body.len()
            ),
        ));
    }
    let keep = limit.map_or(n, |l| l.min(n));
    Ok((keep, rows, cols, body[..keep * rows * cols].to_vec()))
}

/// Read an IDX label file, keeping at most `limit` labels.
pub fn read_labels(path: &Path, limit: Option<usize>) -> Result<Vec<u8>, DataError> {
    let bytes = read_maybe_gz(path)?;
    let dims = header(&bytes, path, LABELS_MAGIC, "labels")?;
    let n = dims[0];
    let body = &bytes[8..];
    if body.len() != n {
        return Err(DataError::file(
            path,
            format!("header claims {n} labels but the file holds {}", body.len()),
        ));
    }
    let keep = limit.map_or(n, |l| l.min(n));
    Ok(body[..keep].to_vec())
}

/// An image file and its label file as one set. Classes are `max label + 1` (at least 10 when the
/// labels are digits, so that splits agree).
pub fn load_pair(
    images: &Path,
    labels: &Path,
    limit: Option<usize>,
) -> Result<ImageSet, DataError> {
    let (n, rows, cols, pixels) = read_images(images, limit)?;
    let labs = read_labels(labels, limit)?;
    if labs.len() != n {
        return Err(DataError::file(
            labels,
            format!(
                "{} labels for {n} images in {}",
                labs.len(),
                images.display()
            ),
        ));
    }
    let max = labs.iter().copied().max().unwrap_or(0) as usize;
    if max >= 256 {
        return Err(DataError::file(labels, "label out of range"));
    }
    let name = images.file_name().map_or_else(
        || images.display().to_string(),
        |f| f.to_string_lossy().into_owned(),
    );
    let mut set = ImageSet::empty(&name, 1, rows, cols, (max + 1).max(10));
    set.pixels = pixels.iter().map(|&b| b as f32 / 255.0).collect();
    set.labels = labs.iter().map(|&l| l as u32).collect();
    Ok(set)
}

/// Encode images and labels as IDX (used by tests and by anyone exporting a set).
pub fn encode_images(n: usize, rows: usize, cols: usize, pixels: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + pixels.len());
    for w in [IMAGES_MAGIC, n as u32, rows as u32, cols as u32] {
        out.extend_from_slice(&w.to_be_bytes());
    }
    out.extend_from_slice(pixels);
    out
}

pub fn encode_labels(labels: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + labels.len());
    out.extend_from_slice(&LABELS_MAGIC.to_be_bytes());
    out.extend_from_slice(&(labels.len() as u32).to_be_bytes());
    out.extend_from_slice(labels);
    out
}

//! IDX files (the MNIST family), plain or gzipped.
//!
//! Big-endian: magic `0x00000803` (u8 images, 3 dims) or `0x00000801` (u8 labels, 1 dim), then the
//! dimensions as u32, then the raw bytes.

use std::io::{BufRead, Read};
use std::path::Path;

use flate2::read::GzDecoder;

use super::{DataError, ImageSet};

const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;

/// A gzip stream may inflate to at most this many times its compressed size (real image sets
/// compress 2–10×): a header that claims more is refused before anything is inflated.
pub const MAX_GZIP_RATIO: u64 = 64;
/// ...but a small file may always claim this much.
const GZIP_FLOOR: u64 = 64 << 20;

/// An IDX file's dimensions and its body, read without trusting the header: the file must be a
/// regular file, the body it claims must match the file's size (plain) or a plausible
/// inflation of it (gzip, whose output is cut at the claim), and the images must fit in
/// memory — all checked before the body is allocated.
fn read_idx(path: &Path, magic: u32, what: &str) -> Result<(Vec<usize>, Vec<u8>), DataError> {
    let (file, len) = super::open_regular(path)?;
    let mut file = std::io::BufReader::new(file);
    let gzip = file
        .fill_buf()
        .map_err(|e| DataError::file(path, format!("cannot read: {e}")))?
        .starts_with(&[0x1f, 0x8b]);
    let mut reader: Box<dyn Read> = if gzip {
        Box::new(GzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let read_error = |e: std::io::Error| {
        if gzip {
            DataError::file(path, format!("corrupt gzip data: {e}"))
        } else {
            DataError::file(path, format!("cannot read: {e}"))
        }
    };
    let ndims = if magic == IMAGES_MAGIC { 3 } else { 1 };
    let need = 4 + 4 * ndims;
    let mut head = Vec::with_capacity(need);
    (&mut reader)
        .take(need as u64)
        .read_to_end(&mut head)
        .map_err(read_error)?;
    let dims = header(&head, path, magic, what)?;
    let claimed = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64));
    let claimed = claimed.ok_or_else(|| {
        DataError::file(
            path,
            format!("header claims dimensions {dims:?}: too large"),
        )
    })?;
    if !gzip && len != need as u64 + claimed {
        return Err(DataError::file(
            path,
            format!(
                "header claims {} ({claimed} bytes) but the file holds {} bytes of {what}",
                describe(&dims),
                len.saturating_sub(need as u64)
            ),
        ));
    }
    if gzip && claimed > GZIP_FLOOR.max(len.saturating_mul(MAX_GZIP_RATIO)) {
        return Err(DataError::file(
            path,
            format!(
                "header claims {} ({claimed} bytes) from {len} bytes of gzip: more than {MAX_GZIP_RATIO}× compression, which no image set has (a lying header or a gzip bomb); refused before inflating it",
                describe(&dims)
            ),
        ));
    }
    if magic == IMAGES_MAGIC {
        let (rows, cols) = (dims[1], dims[2]);
        if rows == 0 || cols == 0 || rows > 4096 || cols > 4096 {
            return Err(DataError::file(
                path,
                format!("implausible image size {rows}×{cols}"),
            ));
        }
    }
    let values = if magic == IMAGES_MAGIC {
        dims[1] * dims[2]
    } else {
        1
    };
    super::check_memory(path, dims[0], values)?;
    let mut body = Vec::with_capacity(claimed as usize);
    reader
        .take(claimed + 1)
        .read_to_end(&mut body)
        .map_err(read_error)?;
    if body.len() as u64 != claimed {
        return Err(DataError::file(
            path,
            format!(
                "header claims {} ({claimed} bytes) but the file holds {} bytes of {what}",
                describe(&dims),
                if body.len() as u64 > claimed {
                    "more".to_string()
                } else {
                    body.len().to_string()
                }
            ),
        ));
    }
    Ok((dims, body))
}

/// `60000 images of 28×28` or `60000 labels`.
fn describe(dims: &[usize]) -> String {
    match dims {
        [n, rows, cols] => format!("{n} images of {rows}×{cols}"),
        [n] => format!("{n} labels"),
        _ => format!("{dims:?}"),
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
    let (dims, mut body) = read_idx(path, IMAGES_MAGIC, "pixels")?;
    let (n, rows, cols) = (dims[0], dims[1], dims[2]);
    let keep = limit.map_or(n, |l| l.min(n));
    body.truncate(keep * rows * cols);
    Ok((keep, rows, cols, body))
}

/// Read an IDX label file, keeping at most `limit` labels.
pub fn read_labels(path: &Path, limit: Option<usize>) -> Result<Vec<u8>, DataError> {
    let (dims, mut body) = read_idx(path, LABELS_MAGIC, "labels")?;
    body.truncate(limit.map_or(dims[0], |l| l.min(dims[0])));
    Ok(body)
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

//! Image folders: one sub-folder per class of PNG/JPEG files (torchvision's and burn's ImageFolder).
//! Classes are the sub-folder names in sorted order; a test folder's classes are matched to its
//! train folder's by name (a test class the train folder lacks is an error).

use std::fs;
use std::path::{Path, PathBuf};

use image::{DynamicImage, imageops::FilterType};

use super::{DataError, ImageSet};

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|e| DataError::file(dir, format!("cannot list folder: {e}")))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    Ok(entries)
}

/// The class names of an image folder (its sub-folders, sorted).
pub fn class_names(root: &Path) -> Result<Vec<String>, DataError> {
    let classes: Vec<String> = sorted_entries(root)?
        .into_iter()
        .filter(|p| p.is_dir())
        .filter_map(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()))
        .collect();
    if classes.is_empty() {
        return Err(DataError::file(
            root,
            "no class sub-folders (expected one folder per class of PNG/JPEG images)",
        ));
    }
    Ok(classes)
}

/// Load an image folder, decoding every image to `channels` at `size × size`, with its own
/// sub-folders as the classes. A colour image into a grey model (or the reverse) needs
/// `convert_channels`.
pub fn load_sized(
    root: &Path,
    channels: usize,
    size: usize,
    convert_channels: bool,
    limit: Option<usize>,
) -> Result<ImageSet, DataError> {
    let classes = class_names(root)?;
    load_classes(root, channels, size, convert_channels, limit, &classes)
}

/// [`load_sized`] in a given label space. `classes` is the label space (a
/// train folder's own class names; for a test folder, its train folder's): each sub-folder's
/// images get the label of its name there, and a sub-folder not named there is an error.
pub fn load_classes(
    root: &Path,
    channels: usize,
    size: usize,
    convert_channels: bool,
    limit: Option<usize>,
    classes: &[String],
) -> Result<ImageSet, DataError> {
    let name = format!("image folder {}", root.display());
    let mut set = ImageSet::empty(&name, channels, size, size, classes.len());
    // Take images round-robin across classes so that a limit keeps the classes balanced.
    let mut per_class = Vec::new();
    for class in class_names(root)? {
        let dir = root.join(&class);
        let label = classes.iter().position(|c| *c == class).ok_or_else(|| {
            DataError::file(
                &dir,
                format!(
                    "class `{class}` is not among the training classes ({}); a test class must also be a training class",
                    classes.join(", ")
                ),
            )
        })?;
        let mut files = Vec::new();
        for path in sorted_entries(&dir)?.into_iter().filter(|p| is_image(p)) {
            if !path.is_file() {
                return Err(DataError::file(&path, "not a regular file"));
            }
            files.push(path);
        }
        if files.is_empty() {
            return Err(DataError::file(
                &dir,
                "class folder holds no PNG/JPEG images",
            ));
        }
        per_class.push((label as u32, files));
    }
    let total: usize = per_class.iter().map(|(_, f)| f.len()).sum();
    super::check_memory(
        root,
        limit.map_or(total, |l| l.min(total)),
        channels * size * size,
    )?;
    let longest = per_class.iter().map(|(_, f)| f.len()).max().unwrap_or(0);
    'outer: for i in 0..longest {
        for (label, files) in &per_class {
            if limit.is_some_and(|l| set.len() >= l) {
                break 'outer;
            }
            if let Some(path) = files.get(i) {
                let pixels = decode(path, channels, size, convert_channels)?;
                set.push(&pixels, *label);
            }
        }
    }
    Ok(set)
}

/// Decode one image file to planar `channels × size × size` floats in `[0, 1]`.
pub fn decode(
    path: &Path,
    channels: usize,
    size: usize,
    convert: bool,
) -> Result<Vec<f32>, DataError> {
    let img = image::ImageReader::open(path)
        .map_err(|e| DataError::file(path, format!("cannot open: {e}")))?
        .with_guessed_format()
        .map_err(|e| DataError::file(path, format!("cannot read: {e}")))?
        .decode()
        .map_err(|e| DataError::file(path, format!("not a decodable PNG/JPEG image: {e}")))?;
    let colour = img.color().has_color();
    if !convert && (colour != (channels == 3)) {
        let what = if colour { "a colour" } else { "a grey" };
        return Err(DataError::file(
            path,
            format!(
                "{what} image for a {channels}-channel input; set input.convert_channels = true to convert"
            ),
        ));
    }
    let img = img.resize_exact(size as u32, size as u32, FilterType::Triangle);
    Ok(planar(&img, channels))
}

fn planar(img: &DynamicImage, channels: usize) -> Vec<f32> {
    let plane = (img.width() * img.height()) as usize;
    if channels == 1 {
        img.to_luma8()
            .pixels()
            .map(|p| p.0[0] as f32 / 255.0)
            .collect()
    } else {
        let rgb = img.to_rgb8();
        let mut out = vec![0.0; 3 * plane];
        for (i, p) in rgb.pixels().enumerate() {
            for c in 0..3 {
                out[c * plane + i] = p.0[c] as f32 / 255.0;
            }
        }
        out
    }
}

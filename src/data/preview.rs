//! Contact sheets of data sets as PNG: what a user looks at before a run.

use std::path::Path;

use image::{Rgb, RgbImage};

use super::ImageSet;

/// A grid of the first `per_class` images of each class: one row per class, `scale`× enlarged.
pub fn contact_sheet(set: &ImageSet, per_class: usize, scale: u32) -> RgbImage {
    let (h, w) = (set.height as u32 * scale, set.width as u32 * scale);
    let gap = 2;
    let rows = set.classes as u32;
    let mut sheet = RgbImage::from_pixel(
        per_class as u32 * (w + gap) + gap,
        rows * (h + gap) + gap,
        Rgb([40, 40, 48]),
    );
    let mut filled = vec![0usize; set.classes];
    for i in 0..set.len() {
        let class = set.labels[i] as usize;
        if filled[class] >= per_class {
            continue;
        }
        let (x0, y0) = (
            gap + filled[class] as u32 * (w + gap),
            gap + class as u32 * (h + gap),
        );
        draw(set, i, &mut sheet, x0, y0, scale);
        filled[class] += 1;
    }
    sheet
}

/// A sample grid: one column per set (e.g. clean | noisy | denoised), one row per image, a wider
/// gap between columns. Every set must hold `rows` images of the same shape.
pub fn sample_grid(columns: &[&ImageSet], rows: usize, scale: u32) -> RgbImage {
    let first = columns[0];
    let (h, w) = (first.height as u32 * scale, first.width as u32 * scale);
    let (gap, col_gap) = (2, 6);
    let cols = columns.len() as u32;
    let mut sheet = RgbImage::from_pixel(
        cols * (w + col_gap) - col_gap + 2 * gap,
        rows as u32 * (h + gap) + gap,
        Rgb([40, 40, 48]),
    );
    for (c, set) in columns.iter().enumerate() {
        for r in 0..rows.min(set.len()) {
            let (x0, y0) = (gap + c as u32 * (w + col_gap), gap + r as u32 * (h + gap));
            draw(set, r, &mut sheet, x0, y0, scale);
        }
    }
    sheet
}

fn draw(set: &ImageSet, i: usize, sheet: &mut RgbImage, x0: u32, y0: u32, scale: u32) {
    let img = set.image(i);
    let plane = set.height * set.width;
    for y in 0..set.height {
        for x in 0..set.width {
            let at = |c: usize| {
                (img[c * plane + y * set.width + x].clamp(0.0, 1.0) * 255.0).round() as u8
            };
            let px = if set.channels == 3 {
                Rgb([at(0), at(1), at(2)])
            } else {
                Rgb([at(0); 3])
            };
            for dy in 0..scale {
                for dx in 0..scale {
                    sheet.put_pixel(x0 + x as u32 * scale + dx, y0 + y as u32 * scale + dy, px);
                }
            }
        }
    }
}

/// Write a contact sheet to `path` (PNG).
pub fn save_contact_sheet(
    set: &ImageSet,
    per_class: usize,
    scale: u32,
    path: &Path,
) -> image::ImageResult<()> {
    contact_sheet(set, per_class, scale).save(path)
}

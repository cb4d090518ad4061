//! Resizing and grey↔RGB conversion to the model's input.

use super::ImageSet;

/// Convert to `channels` and resize to `size × size`. Pixels stay in `[0, 1]`.
pub fn conform(set: ImageSet, channels: usize, size: usize) -> ImageSet {
    if set.channels == channels && set.height == size && set.width == size {
        return set;
    }
    let mut out = ImageSet::empty(&set.name, channels, size, size, set.classes);
    out.pixels.reserve(set.len() * out.image_len());
    out.labels = set.labels.clone();
    for i in 0..set.len() {
        let img = convert_channels(set.image(i), set.channels, channels, set.height * set.width);
        let resized = resize(&img, channels, set.height, set.width, size, size);
        out.pixels.extend_from_slice(&resized);
    }
    out
}

/// Grey → RGB repeats the plane; RGB → grey uses ITU-R BT.601 luma.
pub fn convert_channels(image: &[f32], from: usize, to: usize, plane: usize) -> Vec<f32> {
    match (from, to) {
        (a, b) if a == b => image.to_vec(),
        (1, 3) => image.repeat(3),
        (3, 1) => (0..plane)
            .map(|p| 0.299 * image[p] + 0.587 * image[plane + p] + 0.114 * image[2 * plane + p])
            .collect(),
        _ => unreachable!("channel counts are validated to be 1 or 3"),
    }
}

/// Resize each channel plane. Bilinear when enlarging; box-averaging over the source footprint
/// when shrinking, so thin strokes do not vanish.
pub fn resize(
    image: &[f32],
    channels: usize,
    h: usize,
    w: usize,
    nh: usize,
    nw: usize,
) -> Vec<f32> {
    if h == nh && w == nw {
        return image.to_vec();
    }
    let mut out = vec![0.0; channels * nh * nw];
    let sy = h as f32 / nh as f32;
    let sx = w as f32 / nw as f32;
    for c in 0..channels {
        let src = &image[c * h * w..(c + 1) * h * w];
        let dst = &mut out[c * nh * nw..(c + 1) * nh * nw];
        for y in 0..nh {
            for x in 0..nw {
                dst[y * nw + x] = if sy > 1.0 || sx > 1.0 {
                    box_sample(src, h, w, y as f32 * sy, x as f32 * sx, sy, sx)
                } else {
                    bilinear(
                        src,
                        h,
                        w,
                        (y as f32 + 0.5) * sy - 0.5,
                        (x as f32 + 0.5) * sx - 0.5,
                    )
                };
            }
        }
    }
    out
}

fn bilinear(src: &[f32], h: usize, w: usize, y: f32, x: f32) -> f32 {
    let y = y.clamp(0.0, (h - 1) as f32);
    let x = x.clamp(0.0, (w - 1) as f32);
    let (y0, x0) = (y.floor() as usize, x.floor() as usize);
    let (y1, x1) = ((y0 + 1).min(h - 1), (x0 + 1).min(w - 1));
    let (fy, fx) = (y - y0 as f32, x - x0 as f32);
    let top = src[y0 * w + x0] * (1.0 - fx) + src[y0 * w + x1] * fx;
    let bottom = src[y1 * w + x0] * (1.0 - fx) + src[y1 * w + x1] * fx;
    top * (1.0 - fy) + bottom * fy
}

fn box_sample(src: &[f32], h: usize, w: usize, y0: f32, x0: f32, sy: f32, sx: f32) -> f32 {
    let (y1, x1) = ((y0 + sy).min(h as f32), (x0 + sx).min(w as f32));
    let (mut acc, mut area) = (0.0, 0.0);
    let mut yy = y0.floor() as usize;
    while (yy as f32) < y1 && yy < h {
        let wy = (y1.min(yy as f32 + 1.0) - y0.max(yy as f32)).max(0.0);
        let mut xx = x0.floor() as usize;
        while (xx as f32) < x1 && xx < w {
            let wx = (x1.min(xx as f32 + 1.0) - x0.max(xx as f32)).max(0.0);
            acc += src[yy * w + xx] * wy * wx;
            area += wy * wx;
            xx += 1;
        }
        yy += 1;
    }
    if area > 0.0 { acc / area } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grey_to_rgb_and_back_is_identity() {
        let grey = vec![0.0, 0.25, 0.5, 1.0];
        let rgb = convert_channels(&grey, 1, 3, 4);
        assert_eq!(rgb.len(), 12);
        let back = convert_channels(&rgb, 3, 1, 4);
        for (a, b) in grey.iter().zip(&back) {
            assert!((a - b).abs() < 1e-5);
        }
    }

    #[test]
    fn resize_preserves_constant_images_and_mean() {
        let img = vec![0.7; 8 * 8];
        let up = resize(&img, 1, 8, 8, 28, 28);
        assert!(up.iter().all(|v| (v - 0.7).abs() < 1e-5));
        let mut ramp = vec![0.0; 32 * 32];
        for (i, v) in ramp.iter_mut().enumerate() {
            *v = (i % 32) as f32 / 31.0;
        }
        let down = resize(&ramp, 1, 32, 32, 8, 8);
        let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
        assert!((mean(&ramp) - mean(&down)).abs() < 1e-4);
        assert!(down[0] < down[7]);
    }
}

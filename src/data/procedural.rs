//! Procedural image domains: shapes, strokes, textures and counting (DATASETS.md).
//!
//! Every sample is drawn alone from its own PRNG stream, seeded by (seed, split, index, domain),
//! so any sample can be regenerated identically on any machine. Shapes are rasterised from
//! signed-distance functions with about one pixel of anti-aliasing.

use std::f32::consts::{PI, TAU};

pub use crate::config::{Background, ProceduralDomain};

use super::rng::Rng;
use super::{ImageSet, Split};

impl ProceduralDomain {
    pub const ALL: [ProceduralDomain; 4] = [
        ProceduralDomain::Shapes,
        ProceduralDomain::Strokes,
        ProceduralDomain::Textures,
        ProceduralDomain::Counting,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ProceduralDomain::Shapes => "shapes",
            ProceduralDomain::Strokes => "strokes",
            ProceduralDomain::Textures => "textures",
            ProceduralDomain::Counting => "counting",
        }
    }

    pub fn class_names(self) -> [&'static str; 10] {
        match self {
            ProceduralDomain::Shapes => [
                "circle", "square", "triangle", "diamond", "star", "cross", "ring", "hexagon",
                "arrow", "crescent",
            ],
            ProceduralDomain::Strokes => ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"],
            ProceduralDomain::Textures => [
                "stripes",
                "checker",
                "dots",
                "grid",
                "rings",
                "spiral",
                "noise",
                "gabor",
                "zigzag",
                "crosshatch",
            ],
            ProceduralDomain::Counting => ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10"],
        }
    }

    fn key(self) -> u64 {
        match self {
            ProceduralDomain::Shapes => 11,
            ProceduralDomain::Strokes => 12,
            ProceduralDomain::Textures => 13,
            ProceduralDomain::Counting => 14,
        }
    }
}

/// How to draw one domain.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spec {
    pub domain: ProceduralDomain,
    pub background: Background,
    pub size: usize,
    pub channels: usize,
}

pub const CLASSES: usize = 10;

/// Generate `n` samples of a split. Classes are balanced: sample `i` has class `i % 10`.
pub fn generate(spec: &Spec, seed: u64, split: Split, n: usize) -> ImageSet {
    let bg = match spec.background {
        Background::Plain => "",
        Background::Texture => " on texture",
    };
    let name = format!("{}{bg} ({})", spec.domain.name(), split_name(split));
    let mut set = ImageSet::empty(&name, spec.channels, spec.size, spec.size, CLASSES);
    set.pixels.reserve(n * set.image_len());
    for i in 0..n {
        let (img, label) = sample(spec, seed, split, i as u64);
        set.push(&img, label);
    }
    set
}

fn split_name(split: Split) -> &'static str {
    match split {
        Split::Train => "train",
        Split::Test => "test",
    }
}

/// One sample: pixels (`channels × size × size`, in `[0, 1]`) and its class.
pub fn sample(spec: &Spec, seed: u64, split: Split, index: u64) -> (Vec<f32>, u32) {
    let mut rng = Rng::from_keys(&[seed, split.key(), index, spec.domain.key()]);
    let class = (index % CLASSES as u64) as usize;
    let n = spec.size;
    let mut canvas = Canvas::new(n, spec.channels);

    if spec.domain == ProceduralDomain::Textures {
        let tex = Texture::random(class, &mut rng);
        let (a, b) = contrasting_colours(&mut rng, spec.channels, 0.5);
        canvas.fill_with(|u, v| tex.value(u, v), &a, &b);
        canvas.add_noise(&mut rng, 0.02);
        return (canvas.into_pixels(), class as u32);
    }

    // Background first, then the foreground colour chosen to stand out from it.
    let (bg_lo, bg_hi, fg) = match spec.background {
        Background::Plain => {
            let (bg, fg) = contrasting_colours(&mut rng, spec.channels, 0.45);
            (bg.clone(), bg, fg)
        }
        Background::Texture => {
            let tex = Texture::random(rng.below(CLASSES), &mut rng);
            let (bg, fg) = contrasting_colours(&mut rng, spec.channels, 0.55);
            let spread = rng.range(0.15, 0.3);
            let lo: Vec<f32> = bg.iter().map(|c| (c - spread).clamp(0.0, 1.0)).collect();
            let hi: Vec<f32> = bg.iter().map(|c| (c + spread).clamp(0.0, 1.0)).collect();
            canvas.fill_with(|u, v| tex.value(u, v), &lo, &hi);
            (lo, hi, fg)
        }
    };
    if spec.background == Background::Plain {
        canvas.fill_with(|_, _| 0.0, &bg_lo, &bg_hi);
    }

    let px = 2.0 / n as f32; // one pixel in normalised units
    match spec.domain {
        ProceduralDomain::Shapes => {
            let shape = Shape::random(class, &mut rng);
            canvas.paint(|u, v| shape.sdf(u, v), px, &fg);
        }
        ProceduralDomain::Strokes => {
            let glyph = Glyph::random(class, &mut rng);
            canvas.paint(|u, v| glyph.sdf(u, v), px, &fg);
        }
        ProceduralDomain::Counting => {
            let blobs = blobs(class + 1, &mut rng);
            canvas.paint(
                |u, v| {
                    blobs
                        .iter()
                        .map(|&(cx, cy, r)| ((u - cx).hypot(v - cy)) - r)
                        .fold(f32::INFINITY, f32::min)
                },
                px,
                &fg,
            );
        }
        ProceduralDomain::Textures => unreachable!(),
    }
    canvas.add_noise(&mut rng, 0.03);
    (canvas.into_pixels(), class as u32)
}

/// Two colours whose luminance differs by at least `min_contrast`.
fn contrasting_colours(rng: &mut Rng, channels: usize, min_contrast: f32) -> (Vec<f32>, Vec<f32>) {
    loop {
        let a: Vec<f32> = (0..channels).map(|_| rng.unit()).collect();
        let b: Vec<f32> = (0..channels).map(|_| rng.unit()).collect();
        if (luma(&a) - luma(&b)).abs() >= min_contrast {
            return (a, b);
        }
    }
}

fn luma(c: &[f32]) -> f32 {
    if c.len() == 3 {
        0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]
    } else {
        c[0]
    }
}

/// A planar image in normalised coordinates: `u, v ∈ [-1, 1]`, `v` pointing down.
struct Canvas {
    size: usize,
    channels: usize,
    pixels: Vec<f32>,
}

impl Canvas {
    fn new(size: usize, channels: usize) -> Self {
        Self {
            size,
            channels,
            pixels: vec![0.0; channels * size * size],
        }
    }

    fn coords(&self, y: usize, x: usize) -> (f32, f32) {
        let n = self.size as f32;
        (
            (x as f32 + 0.5) / n * 2.0 - 1.0,
            (y as f32 + 0.5) / n * 2.0 - 1.0,
        )
    }

    /// Fill every pixel with `lo + t (hi - lo)`, `t = f(u, v) ∈ [0, 1]`.
    fn fill_with(&mut self, f: impl Fn(f32, f32) -> f32, lo: &[f32], hi: &[f32]) {
        let plane = self.size * self.size;
        for y in 0..self.size {
            for x in 0..self.size {
                let (u, v) = self.coords(y, x);
                let t = f(u, v).clamp(0.0, 1.0);
                for c in 0..self.channels {
                    self.pixels[c * plane + y * self.size + x] = lo[c] + t * (hi[c] - lo[c]);
                }
            }
        }
    }

    /// Paint `colour` where the signed distance is negative, anti-aliased over one pixel.
    fn paint(&mut self, sdf: impl Fn(f32, f32) -> f32, px: f32, colour: &[f32]) {
        let plane = self.size * self.size;
        for y in 0..self.size {
            for x in 0..self.size {
                let (u, v) = self.coords(y, x);
                let cover = (0.5 - sdf(u, v) / px).clamp(0.0, 1.0);
                if cover > 0.0 {
                    for (c, &col) in colour.iter().enumerate() {
                        let p = &mut self.pixels[c * plane + y * self.size + x];
                        *p = *p * (1.0 - cover) + col * cover;
                    }
                }
            }
        }
    }

    fn add_noise(&mut self, rng: &mut Rng, std: f32) {
        for p in &mut self.pixels {
            *p = (*p + std * rng.normal()).clamp(0.0, 1.0);
        }
    }

    fn into_pixels(self) -> Vec<f32> {
        self.pixels
    }
}

/// Signed distance to a closed polygon (negative inside).
fn polygon_sdf(pts: &[(f32, f32)], u: f32, v: f32) -> f32 {
    let mut d = f32::INFINITY;
    let mut inside = false;
    let n = pts.len();
    for i in 0..n {
        let (ax, ay) = pts[i];
        let (bx, by) = pts[(i + n - 1) % n];
        d = d.min(segment_distance(u, v, ax, ay, bx, by));
        if (ay > v) != (by > v) && u < (bx - ax) * (v - ay) / (by - ay) + ax {
            inside = !inside;
        }
    }
    if inside { -d } else { d }
}

fn segment_distance(u: f32, v: f32, ax: f32, ay: f32, bx: f32, by: f32) -> f32 {
    let (dx, dy) = (bx - ax, by - ay);
    let len2 = dx * dx + dy * dy;
    let t = if len2 > 0.0 {
        (((u - ax) * dx + (v - ay) * dy) / len2).clamp(0.0, 1.0)
    } else {
        0.0
    };
    (u - ax - t * dx).hypot(v - ay - t * dy)
}

fn regular_polygon(k: usize, r: f32, phase: f32) -> Vec<(f32, f32)> {
    (0..k)
        .map(|i| {
            let a = phase + TAU * i as f32 / k as f32;
            (r * a.cos(), r * a.sin())
        })
        .collect()
}

/// A placed shape: class geometry in local coordinates plus a similarity transform.
struct Shape {
    class: usize,
    cx: f32,
    cy: f32,
    scale: f32,
    cos: f32,
    sin: f32,
    outline: Vec<(f32, f32)>,
}

impl Shape {
    fn random(class: usize, rng: &mut Rng) -> Self {
        let scale = rng.range(0.45, 0.7);
        let margin = 0.95 - scale;
        let angle = rng.range(0.0, TAU);
        let outline = match class {
            1 => vec![(-0.8, -0.8), (0.8, -0.8), (0.8, 0.8), (-0.8, 0.8)],
            2 => regular_polygon(3, 1.0, -PI / 2.0),
            3 => vec![(0.0, -1.0), (0.7, 0.0), (0.0, 1.0), (-0.7, 0.0)],
            4 => (0..10)
                .map(|i| {
                    let r = if i % 2 == 0 { 1.0 } else { 0.42 };
                    let a = -PI / 2.0 + PI * i as f32 / 5.0;
                    (r * a.cos(), r * a.sin())
                })
                .collect(),
            5 => vec![
                (-0.28, -1.0),
                (0.28, -1.0),
                (0.28, -0.28),
                (1.0, -0.28),
                (1.0, 0.28),
                (0.28, 0.28),
                (0.28, 1.0),
                (-0.28, 1.0),
                (-0.28, 0.28),
                (-1.0, 0.28),
                (-1.0, -0.28),
                (-0.28, -0.28),
            ],
            7 => regular_polygon(6, 0.95, 0.0),
            8 => vec![
                (-1.0, -0.22),
                (0.2, -0.22),
                (0.2, -0.6),
                (1.0, 0.0),
                (0.2, 0.6),
                (0.2, 0.22),
                (-1.0, 0.22),
            ],
            _ => Vec::new(), // circle, ring and crescent are analytic
        };
        Self {
            class,
            cx: rng.range(-margin, margin),
            cy: rng.range(-margin, margin),
            scale,
            cos: angle.cos(),
            sin: angle.sin(),
            outline,
        }
    }

    fn sdf(&self, u: f32, v: f32) -> f32 {
        let (du, dv) = ((u - self.cx) / self.scale, (v - self.cy) / self.scale);
        let (x, y) = (
            self.cos * du + self.sin * dv,
            -self.sin * du + self.cos * dv,
        );
        let r = x.hypot(y);
        let local = match self.class {
            0 => r - 0.9,
            6 => (r - 0.72).abs() - 0.22,
            9 => (r - 0.95).max(-((x - 0.45).hypot(y) - 0.8)),
            _ => polygon_sdf(&self.outline, x, y),
        };
        local * self.scale
    }
}

/// Skeletons of the digits 0–9 as polylines in `[-1, 1]²` (`y` down).
fn digit_skeleton(d: usize) -> Vec<Vec<(f32, f32)>> {
    let arc = |cx: f32, cy: f32, rx: f32, ry: f32, a0: f32, a1: f32, k: usize| -> Vec<(f32, f32)> {
        (0..=k)
            .map(|i| {
                let a = a0 + (a1 - a0) * i as f32 / k as f32;
                (cx + rx * a.cos(), cy + ry * a.sin())
            })
            .collect()
    };
    match d {
        0 => vec![arc(0.0, 0.0, 0.45, 0.75, 0.0, TAU, 20)],
        1 => vec![vec![(-0.25, -0.55), (0.05, -0.8), (0.05, 0.8)]],
        2 => vec![{
            let mut p = arc(0.0, -0.38, 0.42, 0.4, PI * 1.05, PI * 2.2, 10);
            p.extend([(-0.48, 0.8), (0.5, 0.8)]);
            p
        }],
        3 => vec![
            arc(0.0, -0.4, 0.4, 0.38, PI * 1.1, PI * 2.5, 10),
            arc(0.0, 0.38, 0.45, 0.42, PI * 1.5, PI * 2.9, 10),
        ],
        4 => vec![vec![(0.25, 0.85), (0.25, -0.85), (-0.5, 0.3), (0.55, 0.3)]],
        5 => vec![{
            let mut p = vec![(0.45, -0.8), (-0.35, -0.8), (-0.42, -0.1)];
            p.extend(arc(0.0, 0.3, 0.45, 0.48, PI * 1.2, PI * 2.85, 12));
            p
        }],
        6 => vec![{
            let mut p = vec![(0.35, -0.8), (-0.2, -0.45), (-0.42, 0.2)];
            p.extend(arc(0.0, 0.38, 0.42, 0.42, PI, PI * 3.0, 14));
            p
        }],
        7 => vec![vec![(-0.5, -0.8), (0.5, -0.8), (-0.1, 0.85)]],
        8 => vec![
            arc(0.0, -0.42, 0.34, 0.36, 0.0, TAU, 16),
            arc(0.0, 0.4, 0.42, 0.42, 0.0, TAU, 16),
        ],
        _ => vec![
            arc(0.0, -0.35, 0.4, 0.4, 0.0, TAU, 16),
            vec![(0.4, -0.35), (0.3, 0.85)],
        ],
    }
}

/// A jittered, slanted, scaled digit skeleton and its stroke width.
struct Glyph {
    lines: Vec<Vec<(f32, f32)>>,
    half_width: f32,
}

impl Glyph {
    fn random(digit: usize, rng: &mut Rng) -> Self {
        let slant = rng.range(-0.3, 0.3);
        let scale = rng.range(0.7, 0.9);
        let (dx, dy) = (rng.range(-0.1, 0.1), rng.range(-0.08, 0.08));
        let lines = digit_skeleton(digit)
            .into_iter()
            .map(|line| {
                line.into_iter()
                    .map(|(x, y)| {
                        let (x, y) = (x + 0.05 * rng.normal(), y + 0.05 * rng.normal());
                        ((x - slant * y) * scale + dx, y * scale + dy)
                    })
                    .collect()
            })
            .collect();
        Self {
            lines,
            half_width: rng.range(0.06, 0.11),
        }
    }

    fn sdf(&self, u: f32, v: f32) -> f32 {
        let mut d = f32::INFINITY;
        for line in &self.lines {
            for w in line.windows(2) {
                d = d.min(segment_distance(u, v, w[0].0, w[0].1, w[1].0, w[1].1));
            }
        }
        d - self.half_width
    }
}

/// `count` non-overlapping blobs `(cx, cy, r)`.
fn blobs(count: usize, rng: &mut Rng) -> Vec<(f32, f32, f32)> {
    let r = if count > 6 { 0.11 } else { 0.14 };
    let mut out: Vec<(f32, f32, f32)> = Vec::with_capacity(count);
    let mut tries = 0;
    while out.len() < count {
        let rr = r * rng.range(0.8, 1.15);
        let (cx, cy) = (
            rng.range(-0.85 + rr, 0.85 - rr),
            rng.range(-0.85 + rr, 0.85 - rr),
        );
        tries += 1;
        let free = out
            .iter()
            .all(|&(x, y, q)| (cx - x).hypot(cy - y) > rr + q + 0.05);
        if free || tries > 2000 {
            out.push((cx, cy, rr));
        }
    }
    out
}

/// A texture class with random phase, frequency, orientation and contrast.
struct Texture {
    class: usize,
    freq: f32,
    phase: f32,
    cos: f32,
    sin: f32,
    contrast: f32,
    centre: (f32, f32),
    lattice: Vec<f32>,
}

const LATTICE: usize = 6;

impl Texture {
    fn random(class: usize, rng: &mut Rng) -> Self {
        let angle = rng.range(0.0, PI);
        Self {
            class,
            freq: rng.range(2.0, 4.0),
            phase: rng.range(0.0, TAU),
            cos: angle.cos(),
            sin: angle.sin(),
            contrast: rng.range(0.6, 1.0),
            centre: (rng.range(-0.4, 0.4), rng.range(-0.4, 0.4)),
            lattice: (0..LATTICE * LATTICE).map(|_| rng.unit()).collect(),
        }
    }

    /// Intensity in `[0, 1]` at `(u, v)`.
    fn value(&self, u: f32, v: f32) -> f32 {
        let (a, b) = (self.cos * u + self.sin * v, -self.sin * u + self.cos * v);
        let f = self.freq;
        let wave = |t: f32| 0.5 + 0.5 * t.sin();
        let t = match self.class {
            0 => wave(TAU * f * a + self.phase),
            1 => {
                let s = (PI * f * a + self.phase).sin() * (PI * f * b).sin();
                if s > 0.0 { 1.0 } else { 0.0 }
            }
            2 => {
                let (fa, fb) = (
                    (f * a + self.phase).rem_euclid(1.0),
                    (f * b).rem_euclid(1.0),
                );
                let d = (fa - 0.5).hypot(fb - 0.5);
                (0.5 - (d - 0.25) * 8.0).clamp(0.0, 1.0)
            }
            3 => {
                let fa = (f * a + self.phase).rem_euclid(1.0);
                let fb = (f * b).rem_euclid(1.0);
                let line = |t: f32| ((t - 0.5).abs() * 2.0 - 0.75).max(0.0) * 4.0;
                line(fa).max(line(fb))
            }
            4 => {
                let r = (u - self.centre.0).hypot(v - self.centre.1);
                wave(TAU * f * r + self.phase)
            }
            5 => {
                let (du, dv) = (u - self.centre.0, v - self.centre.1);
                let r = du.hypot(dv);
                wave(3.0 * dv.atan2(du) + TAU * f * 0.7 * r + self.phase)
            }
            6 => self.value_noise(u, v),
            7 => {
                let (du, dv) = (u - self.centre.0, v - self.centre.1);
                let env = (-(du * du + dv * dv) / (2.0 * 0.35f32.powi(2))).exp();
                0.5 + 0.5 * env * (TAU * f * a + self.phase).sin()
            }
            8 => {
                let tri = ((f * b).rem_euclid(1.0) - 0.5).abs() * 2.0;
                wave(TAU * f * (a + 0.3 * tri) + self.phase)
            }
            _ => {
                let s1 = wave(TAU * f * (a + b) * 0.7 + self.phase);
                let s2 = wave(TAU * f * (a - b) * 0.7);
                let line = |t: f32| ((t - 0.8) * 5.0).clamp(0.0, 1.0);
                line(s1).max(line(s2))
            }
        };
        0.5 + self.contrast * (t - 0.5)
    }

    fn value_noise(&self, u: f32, v: f32) -> f32 {
        let g = (LATTICE - 1) as f32;
        let (x, y) = ((u + 1.0) * 0.5 * g, (v + 1.0) * 0.5 * g);
        let (x0, y0) = (
            (x.floor() as usize).min(LATTICE - 2),
            (y.floor() as usize).min(LATTICE - 2),
        );
        let (fx, fy) = (x - x0 as f32, y - y0 as f32);
        let s = |t: f32| t * t * (3.0 - 2.0 * t);
        let (sx, sy) = (s(fx), s(fy));
        let at = |i: usize, j: usize| self.lattice[j * LATTICE + i];
        let top = at(x0, y0) * (1.0 - sx) + at(x0 + 1, y0) * sx;
        let bottom = at(x0, y0 + 1) * (1.0 - sx) + at(x0 + 1, y0 + 1) * sx;
        top * (1.0 - sy) + bottom * sy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(domain: ProceduralDomain, background: Background, channels: usize) -> Spec {
        Spec {
            domain,
            background,
            size: 28,
            channels,
        }
    }

    #[test]
    fn samples_are_deterministic_per_seed_split_index() {
        for d in ProceduralDomain::ALL {
            let s = spec(d, Background::Plain, 1);
            let a = sample(&s, 5, Split::Train, 17);
            assert_eq!(a, sample(&s, 5, Split::Train, 17), "{d:?}");
            assert_ne!(a.0, sample(&s, 5, Split::Test, 17).0, "{d:?}");
            assert_ne!(a.0, sample(&s, 6, Split::Train, 17).0, "{d:?}");
        }
    }

    #[test]
    fn generated_sets_are_balanced_and_in_range() {
        for d in ProceduralDomain::ALL {
            for bg in [Background::Plain, Background::Texture] {
                let set = generate(&spec(d, bg, 3), 1, Split::Train, 40);
                assert_eq!(set.len(), 40);
                assert_eq!(set.class_counts(), vec![4; 10]);
                assert_eq!(set.pixels.len(), 40 * 3 * 28 * 28);
                assert!(set.pixels.iter().all(|p| (0.0..=1.0).contains(p)));
            }
        }
    }

    #[test]
    fn foreground_is_visible() {
        // Each drawn sample must have real contrast: not a blank canvas.
        for d in ProceduralDomain::ALL {
            let set = generate(&spec(d, Background::Plain, 1), 2, Split::Test, 20);
            for i in 0..set.len() {
                let img = set.image(i);
                let (lo, hi) = img
                    .iter()
                    .fold((1.0f32, 0.0f32), |(lo, hi), &p| (lo.min(p), hi.max(p)));
                assert!(
                    hi - lo > 0.3,
                    "{d:?} sample {i} is nearly flat ({lo}..{hi})"
                );
            }
        }
    }

    #[test]
    fn texture_background_differs_from_plain() {
        let plain = sample(
            &spec(ProceduralDomain::Shapes, Background::Plain, 1),
            3,
            Split::Train,
            4,
        );
        let tex = sample(
            &spec(ProceduralDomain::Shapes, Background::Texture, 1),
            3,
            Split::Train,
            4,
        );
        assert_eq!(plain.1, tex.1);
        assert_ne!(plain.0, tex.0);
    }
}

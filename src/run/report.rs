//! The one-page report of a finished run, for slides: the verdict, intactness and the probe,
//! SOPHON's losses, each fixed attacker's fine-tuning curves from the three starts, and a
//! denoiser's sample grids, drawn from the run folder alone (`summary.json`, `metrics.jsonl`,
//! `samples/`) as a PNG and an SVG of the same page (its sample grids framed, not drawn).
//!
//! Drawn with plotters (its bitmap and SVG backends); text with the font egui ships
//! (`epaint_default_fonts`), so nothing depends on the system's fonts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

use super::folder::{MetricPoint, read_metrics, read_summary, write_atomic};
use crate::config::{Metric, Start};
use crate::sophon::series as names;
use crate::sophon::summary::{RunStatus, Summary};
use crate::sophon::verdict::VerdictStatus;

/// The page's size in pixels (16:10, for slides).
pub const WIDTH: u32 = 1600;
pub const HEIGHT: u32 = 1000;
/// The band at the top with the title and the verdict.
pub const HEADER: u32 = 180;

/// Why a report could not be made; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{}: not a finished run folder: {source}", dir.display())]
    Read {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: cannot draw the report: {message}", dir.display())]
    Draw { dir: PathBuf, message: String },
    #[error("{}: cannot write: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What the page shows, read from a run folder.
struct Page {
    summary: Summary,
    metric: Metric,
    series: BTreeMap<String, Vec<(f64, f64)>>,
    /// A denoiser's sample grids: caption and image.
    grids: Vec<(String, image::RgbImage)>,
}

/// The files a report was written to.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    pub png: PathBuf,
    pub svg: PathBuf,
}

/// Draw the report of the run in `dir` and write it as `png` and, beside it, the same page as
/// SVG (atomically, each).
pub fn write_report(dir: &Path, png: &Path) -> Result<Written, ReportError> {
    let page = read_page(dir)?;
    let draw_error = |message: String| ReportError::Draw {
        dir: dir.to_path_buf(),
        message,
    };
    let image = render(&page).map_err(draw_error)?;
    let mut bytes = Vec::new();
    image
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .map_err(|e| draw_error(e.to_string()))?;
    let write = |path: &Path, bytes: &[u8]| {
        write_atomic(path, bytes).map_err(|source| ReportError::Write {
            path: path.to_path_buf(),
            source,
        })
    };
    write(png, &bytes)?;
    let svg_path = png.with_extension("svg");
    let svg = render_svg(&page).map_err(draw_error)?;
    write(&svg_path, svg.as_bytes())?;
    Ok(Written {
        png: png.to_path_buf(),
        svg: svg_path,
    })
}

/// The report of the run in `dir` as an image (what `write_report` saves as PNG).
pub fn render_report(dir: &Path) -> Result<image::RgbImage, ReportError> {
    let page = read_page(dir)?;
    render(&page).map_err(|message| ReportError::Draw {
        dir: dir.to_path_buf(),
        message,
    })
}

fn read_page(dir: &Path) -> Result<Page, ReportError> {
    let read_error = |source| ReportError::Read {
        dir: dir.to_path_buf(),
        source,
    };
    let summary = read_summary(dir).map_err(read_error)?;
    let metrics = read_metrics(dir).map_err(read_error)?;
    let metric = summary
        .pretrain
        .as_ref()
        .map(|p| p.scores.metric)
        .or(summary.verdict.as_ref().map(|v| v.metric))
        .or(summary.attack.first().map(|a| a.metric))
        .unwrap_or(Metric::Acc);
    let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for MetricPoint {
        series: name,
        step,
        value,
    } in metrics
    {
        series.entry(name).or_default().push((step as f64, value));
    }
    let grids = read_grids(dir, &summary);
    Ok(Page {
        summary,
        metric,
        series,
        grids,
    })
}

/// A denoiser's grids worth a slide: the protected model on both domains, and the first
/// attacker's last epoch from the protected and from the scratch start on the restricted one.
fn read_grids(dir: &Path, summary: &Summary) -> Vec<(String, image::RgbImage)> {
    let Ok(entries) = std::fs::read_dir(dir.join("samples")) else {
        return Vec::new();
    };
    // phase-domain → (step, path) of the latest grid.
    let mut latest: BTreeMap<String, (usize, PathBuf)> = BTreeMap::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        let Some((key, step)) = stem.rsplit_once('-') else {
            continue;
        };
        let Ok(step) = step.parse::<usize>() else {
            continue;
        };
        let newer = latest.get(key).is_none_or(|(s, _)| step > *s);
        if newer {
            latest.insert(key.to_string(), (step, path));
        }
    }
    let mut wanted = vec![
        (
            "protected-original".to_string(),
            "protected, original (clean | noised | denoised)".to_string(),
        ),
        (
            "protected-restricted".into(),
            "protected, restricted".into(),
        ),
    ];
    if let Some(a) = summary.attack.first() {
        for start in [Start::Protected, Start::Scratch] {
            wanted.push((
                format!("attack-{}-{start}-restricted", a.strategy),
                format!("restricted, attacked from {start}"),
            ));
        }
    }
    wanted
        .into_iter()
        .filter_map(|(key, caption)| {
            let (_, path) = latest.get(&key)?;
            let image = image::open(path).ok()?.to_rgb8();
            Some((caption, image))
        })
        .collect()
}

const SANS: &str = "sans-serif";
const RED: RGBColor = RGBColor(210, 50, 50);
const BLUE: RGBColor = RGBColor(50, 100, 210);
const GREY: RGBColor = RGBColor(130, 130, 130);
const GREEN: RGBColor = RGBColor(40, 150, 80);
const ORANGE: RGBColor = RGBColor(230, 130, 20);

/// Register egui's own sans-serif font with plotters, once.
fn fonts() -> Result<(), String> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        plotters::style::register_font(SANS, FontStyle::Normal, epaint_default_fonts::UBUNTU_LIGHT)
            .map_err(|_| "the built-in font is not a valid font".to_string())
    })
    .clone()
}

fn render(page: &Page) -> Result<image::RgbImage, String> {
    fonts()?;
    let mut buffer = vec![255u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (WIDTH, HEIGHT)).into_drawing_area();
        draw_page(&root, page, true).map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    image::RgbImage::from_raw(WIDTH, HEIGHT, buffer)
        .ok_or_else(|| "the page buffer has the wrong size".to_string())
}

fn render_svg(page: &Page) -> Result<String, String> {
    fonts()?;
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, (WIDTH, HEIGHT)).into_drawing_area();
        draw_page(&root, page, false).map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(text)
}

type Drawn<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// Draw the page. `bitmaps`: draw the sample grids' pixels (the PNG); the SVG gets a framed
/// placeholder instead, since plotters writes a bitmap into SVG one rectangle per pixel (16 MB
/// for a denoiser's four grids).
fn draw_page<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    page: &Page,
    bitmaps: bool,
) -> Drawn<DB> {
    root.fill(&WHITE)?;
    let (header, body) = root.split_vertically(HEADER);
    draw_header(&header, page)?;
    let grids = !page.grids.is_empty();
    let rows = if grids { 3 } else { 2 };
    let body_rows = body.split_evenly((rows, 1));
    let top = body_rows[0].split_evenly((1, 2));
    let m = page.metric;
    draw_chart(
        &top[0],
        "Intactness and non-fine-tunability probe (validation)",
        "outer iteration",
        &[
            (names::sophon_original(m), "intactness (original)", GREEN),
            (names::sophon_probe(m), "probe (restricted)", ORANGE),
            (names::selected_original(m), "handed on: intactness", GREEN),
            (names::selected_probe(m), "handed on: probe", ORANGE),
        ],
        page,
        true,
    )?;
    draw_chart(
        &top[1],
        "SOPHON losses",
        "outer iteration",
        &[
            (names::FTS_LOSS.to_string(), "FTS loss", RED),
            (names::NTR_LOSS.to_string(), "NTR loss", BLUE),
        ],
        page,
        false,
    )?;
    let mut strategies: Vec<&str> = Vec::new();
    for a in &page.summary.attack {
        if !strategies.contains(&a.strategy.as_str()) {
            strategies.push(&a.strategy);
        }
    }
    let shown = strategies.len().clamp(1, 3);
    let attack = body_rows[1].split_evenly((1, shown));
    for (area, strategy) in attack.iter().zip(&strategies) {
        let curves: Vec<(String, &str, RGBColor)> = [
            (Start::Protected, "from protected", RED),
            (Start::Original, "from original", BLUE),
            (Start::Scratch, "from scratch", GREY),
        ]
        .into_iter()
        .map(|(start, label, color)| (names::attack(strategy, start, m), label, color))
        .collect();
        let title = format!("Attack `{strategy}`: restricted test {}", m.label());
        draw_chart(area, &title, "epoch", &curves, page, true)?;
    }
    if grids {
        let cells = body_rows[2].split_evenly((1, page.grids.len()));
        for (area, (caption, image)) in cells.iter().zip(&page.grids) {
            draw_grid(area, caption, image, bitmaps)?;
        }
    }
    Ok(())
}

fn draw_header<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, page: &Page) -> Drawn<DB> {
    let s = &page.summary;
    let title = format!("SOPHON Workbench: {} (seed {})", s.name, s.seed);
    area.draw(&Text::new(title, (24, 14), (SANS, 34).into_font()))?;
    let Some(v) = &s.verdict else {
        let line = match (&s.sophon, s.status) {
            (None, RunStatus::Finished) => {
                "no verdict: no SOPHON in this run (pre-training and the attacks only)".to_string()
            }
            (_, status) => format!("no verdict: the run is {}", status.name()),
        };
        area.draw(&Text::new(
            line,
            (24, 62),
            (SANS, 26).into_font().color(&GREY),
        ))?;
        return Ok(());
    };
    let color = match v.status {
        VerdictStatus::Protected => GREEN,
        VerdictStatus::Incomplete => GREY,
        _ => RED,
    };
    let verdict = format!("Verdict: {}", v.status.name().to_uppercase());
    let verdict_font = (SANS, 30).into_font().color(&color);
    // Beside the verdict, whose images the attackers fine-tuned on: the verdict means little
    // without it.
    let (verdict_width, _) = area
        .estimate_text_size(&verdict, &verdict_font)
        .unwrap_or((420, 30));
    area.draw(&Text::new(verdict, (24, 58), verdict_font))?;
    area.draw(&Text::new(
        v.attacker_data(),
        (24 + verdict_width as i32 + 20, 66),
        (SANS, 18).into_font().color(&GREY),
    ))?;
    let i = &v.intactness;
    let line = format!(
        "original test {}: {:.3} pre-trained, {:.3} protected (tolerance {}).   Restricted, after each attack, final (mean): {}",
        page.metric.label(),
        i.pretrained,
        i.protected,
        i.tolerance,
        v.attackers
            .iter()
            .map(|a| {
                let fm = |x: Option<crate::sophon::verdict::FinalMean>| {
                    x.map_or("—".into(), |x| {
                        format!("{:.2} ({:.2})", x.final_score, x.mean)
                    })
                };
                format!(
                    "{}: protected {}, scratch {}, original {}",
                    a.attacker,
                    fm(a.protected),
                    fm(a.scratch),
                    fm(a.original)
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    );
    // Four lines hold the intactness and four attackers (the default preset's three fixed ones
    // and the best-effort one).
    let font = (SANS, 17).into_font();
    for (k, chunk) in wrap(&line, 175).iter().enumerate().take(4) {
        area.draw(&Text::new(
            chunk.clone(),
            (24, 96 + 20 * k as i32),
            font.clone(),
        ))?;
    }
    Ok(())
}

/// Split `text` at spaces into lines of at most `width` characters.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// A series' points, its legend label and its colour.
type Curve<'a> = (&'a [(f64, f64)], &'a str, RGBColor);

/// One chart of the named series (absent ones are left out; with none, the chart says so).
fn draw_chart<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    x_label: &str,
    curves: &[(String, &str, RGBColor)],
    page: &Page,
    unit: bool,
) -> Drawn<DB> {
    let present: Vec<Curve<'_>> = curves
        .iter()
        .filter_map(|(name, label, color)| {
            let points = page.series.get(name)?;
            let finite = points.iter().all(|p| p.0.is_finite() && p.1.is_finite());
            (!points.is_empty() && finite).then_some((points.as_slice(), *label, *color))
        })
        .collect();
    let area = area.margin(8, 8, 12, 12);
    if present.is_empty() {
        area.draw(&Text::new(
            title.to_string(),
            (10, 4),
            (SANS, 20).into_font(),
        ))?;
        area.draw(&Text::new(
            "(no data in this run)",
            (10, 40),
            (SANS, 18).into_font().color(&GREY),
        ))?;
        return Ok(());
    }
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for (points, _, _) in &present {
        for &(x, y) in *points {
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(y);
            y1 = y1.max(y);
        }
    }
    if unit && page.metric == Metric::Acc {
        (y0, y1) = (0.0, 1.0);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if y1 <= y0 {
        y1 = y0 + 1.0;
    }
    let pad = (y1 - y0) * 0.05;
    let mut chart = ChartBuilder::on(&area)
        .caption(title, (SANS, 20))
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad))?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .x_labels(((x1 - x0).round() as usize + 1).clamp(2, 11))
        .x_label_formatter(&|x| {
            if x.fract() == 0.0 {
                format!("{x:.0}")
            } else {
                format!("{x:.1}")
            }
        })
        .label_style((SANS, 14))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    for (points, label, color) in present {
        // A single point (model selection's pick) is a marker, not a line.
        if let [point] = points {
            chart
                .draw_series(std::iter::once(Circle::new(*point, 7, color.filled())))?
                .label(label)
                .legend(move |(x, y)| Circle::new((x + 9, y), 5, color.filled()));
            continue;
        }
        // A long noisy series (a loss per iteration): faint as it is, and its bucket means bold
        // (plotters' wide strokes spike at sharp turns, so only smooth lines are drawn wide).
        let bold = if points.len() > MAX_POINTS {
            chart.draw_series(LineSeries::new(
                points.iter().copied(),
                color.mix(0.25).stroke_width(1),
            ))?;
            bucket_means(points, MAX_POINTS)
        } else {
            points.to_vec()
        };
        chart
            .draw_series(LineSeries::new(bold, color.stroke_width(3)))?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(3))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(GREY)
        .label_font((SANS, 15))
        .draw()?;
    Ok(())
}

/// Series longer than this are drawn as bucket means over a faint raw line.
const MAX_POINTS: usize = 200;

/// The means of `buckets` consecutive runs of points (x and y alike).
fn bucket_means(points: &[(f64, f64)], buckets: usize) -> Vec<(f64, f64)> {
    let size = points.len().div_ceil(buckets.max(1));
    points
        .chunks(size.max(1))
        .map(|c| {
            let n = c.len() as f64;
            let (x, y) = c.iter().fold((0.0, 0.0), |a, p| (a.0 + p.0, a.1 + p.1));
            (x / n, y / n)
        })
        .collect()
}

/// A sample grid, scaled to fit its cell (nearest neighbour), with its caption above.
fn draw_grid<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    caption: &str,
    grid: &image::RgbImage,
    bitmaps: bool,
) -> Drawn<DB> {
    let (w, h) = area.dim_in_pixel();
    area.draw(&Text::new(
        caption.to_string(),
        (10, 4),
        (SANS, 18).into_font(),
    ))?;
    let (room_w, room_h) = (w.saturating_sub(20), h.saturating_sub(36));
    let scale = (room_w as f64 / grid.width() as f64).min(room_h as f64 / grid.height() as f64);
    let (gw, gh) = (
        ((grid.width() as f64 * scale) as u32).max(1),
        ((grid.height() as f64 * scale) as u32).max(1),
    );
    if !bitmaps {
        let frame = [(10, 30), (10 + gw as i32, 30 + gh as i32)];
        area.draw(&Rectangle::new(frame, GREY.stroke_width(1)))?;
        area.draw(&Text::new(
            "(the grid is in report.png)",
            (20, 40),
            (SANS, 15).into_font().color(&GREY),
        ))?;
        return Ok(());
    }
    let scaled = image::imageops::resize(grid, gw, gh, image::imageops::FilterType::Nearest);
    if let Some(element) = BitMapElement::with_owned_buffer((10, 30), (gw, gh), scaled.into_raw()) {
        area.draw(&element)?;
    }
    Ok(())
}

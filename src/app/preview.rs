//! The data-source preview beside the setup panel: a strip of test images and the class count,
//! loaded on a helper thread.

use egui::{Color32, RichText, TextureHandle, Ui};

use super::setup::Side;
use crate::config::DataSource;

/// The preview of one data source: a few test images and the class count.
pub struct Preview {
    pub source: DataSource,
    pub state: PreviewState,
}

/// Where a preview stands.
pub enum PreviewState {
    Loading,
    Ready {
        classes: usize,
        train: usize,
        test: usize,
        textures: Vec<TextureHandle>,
    },
    Failed(String),
}

/// A preview as loaded on a helper thread (images, not yet textures).
pub struct PreviewData {
    classes: usize,
    train: usize,
    test: usize,
    images: Vec<egui::ColorImage>,
}

impl PreviewState {
    /// The state once a helper thread's answer arrived: its images become textures.
    pub fn arrived(ctx: &egui::Context, side: Side, result: Result<PreviewData, String>) -> Self {
        match result {
            Ok(d) => Self::Ready {
                classes: d.classes,
                train: d.train,
                test: d.test,
                textures: d
                    .images
                    .into_iter()
                    .enumerate()
                    .map(|(i, img)| {
                        ctx.load_texture(
                            format!("preview-{}-{i}", side.field()),
                            img,
                            egui::TextureOptions::NEAREST,
                        )
                    })
                    .collect(),
            },
            Err(e) => Self::Failed(e),
        }
    }
}

/// The thumbnail strip and class count of one data source.
pub fn preview_ui(ui: &mut Ui, preview: Option<&Preview>) {
    match preview.map(|p| &p.state) {
        Some(PreviewState::Ready {
            classes,
            train,
            test,
            textures,
        }) => {
            ui.label(
                RichText::new(format!("{classes} classes · {train} train / {test} test")).weak(),
            );
            ui.horizontal_wrapped(|ui| {
                ui.spacing_mut().item_spacing = egui::vec2(2.0, 2.0);
                for t in textures {
                    ui.image((t.id(), egui::vec2(28.0, 28.0)));
                }
            });
        }
        Some(PreviewState::Loading) => {
            ui.spinner();
        }
        Some(PreviewState::Failed(e)) => {
            ui.colored_label(Color32::LIGHT_RED, e);
        }
        None => {}
    }
}

/// A few test images and the sizes of a data source (procedural ones: only what the strip shows).
pub fn load_preview(
    source: &DataSource,
    input: &crate::config::InputConfig,
    seed: u64,
) -> Result<PreviewData, String> {
    // Procedural domains: generate only what the strip shows.
    let small = match source {
        DataSource::Procedural {
            domain, background, ..
        } => DataSource::Procedural {
            domain: *domain,
            background: *background,
            train: 1,
            test: 20,
        },
        other => other.clone(),
    };
    let domain = crate::data::load_domain(&small, input, seed).map_err(|e| e.to_string())?;
    let (train, test) = match source {
        DataSource::Procedural { train, test, .. } => (*train, *test),
        _ => (domain.train.len(), domain.test.len()),
    };
    let set = &domain.test;
    let images = (0..set.len().min(12))
        .map(|i| to_color_image(set.image(i), set.channels, set.height, set.width))
        .collect();
    Ok(PreviewData {
        classes: domain.classes(),
        train,
        test,
        images,
    })
}

/// A CHW image in [0, 1] as an egui image.
fn to_color_image(chw: &[f32], channels: usize, height: usize, width: usize) -> egui::ColorImage {
    let plane = height * width;
    let byte = |v: f32| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
    let pixels = (0..plane)
        .map(|i| {
            if channels >= 3 {
                Color32::from_rgb(byte(chw[i]), byte(chw[plane + i]), byte(chw[2 * plane + i]))
            } else {
                let g = byte(chw[i]);
                Color32::from_rgb(g, g, g)
            }
        })
        .collect();
    egui::ColorImage::new([width, height], pixels)
}

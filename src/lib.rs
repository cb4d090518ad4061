//! SOPHON Workbench: non-fine-tunable learning (SOPHON, IEEE S&P 2024) on burn.
//!
//! Layers, each importing only those below it (docs/architecture.md; `tests/engine/layers.rs`
//! checks it): `app` (the egui window) → `run` (worker thread, backend, run folder) → `sophon`
//! (pre-training, FTS/NTR, losses, attacker evaluation) → `model` and `diffusion` → `data` →
//! `config` → `limits`.

pub mod app;
pub mod config;
pub mod data;
pub mod diffusion;
pub mod limits;
pub mod model;
pub mod run;
pub mod sophon;

/// The built-in default experiment (also `presets/default.toml`).
pub const DEFAULT_PRESET: &str = include_str!("../presets/default.toml");
/// The small, fast experiment the tests use (also `presets/quick.toml`).
pub const QUICK_PRESET: &str = include_str!("../presets/quick.toml");
/// The built-in denoising experiment (also `presets/denoise.toml`).
pub const DENOISE_PRESET: &str = include_str!("../presets/denoise.toml");
/// The small, fast denoising experiment the tests use (also `presets/denoise-quick.toml`).
pub const DENOISE_QUICK_PRESET: &str = include_str!("../presets/denoise-quick.toml");
/// The teaching experiment (also `presets/lesson.toml`; File → Lesson): SOPHON's whole story in
/// about 75 s on 2 CPU cores. A candidate: the transfer and intactness show in every seed
/// measured, the protection in 2 of 4 (docs/experiments.md).
pub const LESSON_PRESET: &str = include_str!("../presets/lesson.toml");

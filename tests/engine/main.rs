//! The engine's integration tests, in one binary so that it links once.

// Test helpers unwrap freely: a failed unwrap is a failed test (clippy.toml allows it inside
// #[test] functions; the helpers beside them need this).
#![allow(clippy::unwrap_used)]

mod cli;
mod config;
mod data_sources;
mod diffusion;
mod fuzz;
mod hostile;
mod layers;
mod models;
mod slurm;
mod snapshots;
mod sophon;
mod training;
mod verdicts;
mod window;
mod worker;

/// Say that a test checked nothing on this machine, and why: written to the process's stderr
/// directly, past the harness's capture, so `cargo test` shows it even though the test reads
/// "ok" (libtest has no "skipped" result).
pub fn skipped(test: &str, why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
}

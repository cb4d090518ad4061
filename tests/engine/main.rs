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

/// burn's ndarray backend draws every random number (parameter initialisation, shuffles) from one
/// process-wide generator that `seed` resets. Two tests training on ndarray at once in this test
/// binary would interleave their draws, so a test that compares two runs value for value, and
/// any other test that trains on ndarray, holds this lock for its whole length.
pub fn ndarray_rng() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

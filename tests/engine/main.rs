//! The engine's integration tests, in one binary so that it links once.

mod cli;
mod config;
mod data_sources;
mod diffusion;
mod fuzz;
mod hostile;
mod models;
mod sophon;
mod training;
mod verdicts;
mod window;
mod worker;

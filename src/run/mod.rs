//! The process layer: a worker thread that runs experiments, fed by [`Command`]s and emitting
//! [`Event`]s, the backend choice, and the run folder on disk. The window and the command line
//! are both consumers of the same event stream.

pub mod backend;
pub mod folder;
pub mod memory;
pub mod report;
pub mod slurm;
pub mod sweep;
pub mod sweep_folder;
pub mod worker;

pub use backend::{Backend, BackendChoice};
pub use folder::{MetricPoint, RunFolder};
pub use worker::{
    Command, Event, OutDir, RunFailure, RunRequest, SamplesEvent, WorkerHandle, spawn,
};

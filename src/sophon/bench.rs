//! bench-small: the fixed configuration that times one SOPHON outer iteration (issue
//! "Benchmark"). `cnn-small` on 1×28×28 inputs, 10 classes, data generated in memory before
//! timing; one FTS step with one environment of K inner SGD steps (lr 1e-4) on batches of 150
//! (130 support / 20 query), ICE on the query part, first-order accumulation, clip 0.5, Adam
//! α = 3e-4; then one NTR step on a batch of 150 (cross-entropy, Adam β = 5e-4).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::fts::{FtsContext, fts_gradient, fts_step, sample_batch};
use super::protect::optimizers;
use super::train::Trainer;
use super::{Devices, Interrupted, Monitor, Phase};
use crate::config::sophon::{Environment, ProbeConfig, SophonConfig, SuppressionLoss};
use crate::config::{Background, ModelKind, OptimizerConfig, OptimizerKind, ProceduralDomain};
use crate::data::procedural::{self, Spec};
use crate::data::rng::Rng;
use crate::data::{ImageSet, Split};
use crate::model::{Classifier, ClassifierConfig};
use burn::cubecl::config::{TypeNameFormatLevel, type_name_format};
use burn::cubecl::logging::{LaunchObservation, LaunchObserver};
use burn::optim::ModuleOptimizer;

/// The bench-small SOPHON settings with `k` inner steps.
pub fn bench_config(k: usize) -> SophonConfig {
    let mut env = Environment::reference();
    env.reinit_head = false;
    SophonConfig {
        outer_iterations: 1,
        fts_loops: 1,
        ntr_loops: 1,
        alpha: 3e-4,
        beta: 5e-4,
        inner_steps: k,
        loss: SuppressionLoss::Ice,
        clip: 0.5,
        environments: vec![env],
        ntr_batch_size: 150,
        eval_every: 1,
        probe: ProbeConfig {
            optimizer: OptimizerConfig::new(OptimizerKind::Sgd, 1e-4),
            steps: 1,
            batch_size: 1,
            curve: 1,
        },
        ..SophonConfig::default()
    }
}

/// A monitor that ignores everything (the benchmark has no observer).
struct Silent;

impl Monitor for Silent {
    fn phase(&mut self, _: Phase, _: usize) {}
    fn step(&mut self, _: usize) -> Result<(), Interrupted> {
        Ok(())
    }
    fn metric(&mut self, _: &str, _: usize, _: f64) {}
    fn log(&mut self, _: &str) {}
}

/// The state of bench-small, with one method per hot piece of an outer iteration (for
/// `cargo bench`) and [`Pieces::outer_iteration`] for the whole.
pub struct Pieces {
    devices: Devices,
    config: SophonConfig,
    model: Option<Classifier>,
    fts: ModuleOptimizer,
    ntr: ModuleOptimizer,
    original: ImageSet,
    restricted: ImageSet,
    rng: Rng,
}

impl Pieces {
    /// bench-small with K = 10 inner steps.
    pub fn new(devices: &Devices) -> Self {
        Self::with_k(devices, 10)
    }

    pub fn with_k(devices: &Devices, k: usize) -> Self {
        let original = procedural::generate(&bench_spec(Background::Plain), 1, Split::Train, 1000);
        let restricted =
            procedural::generate(&bench_spec(Background::Texture), 1, Split::Train, 1000);
        devices.train.seed(1);
        let model = ClassifierConfig::new(ModelKind::CnnSmall, 1, 28, 10).init(&devices.train);
        let (fts, ntr) = optimizers();
        Self {
            devices: devices.clone(),
            config: bench_config(k),
            model: Some(model),
            fts,
            ntr,
            original,
            restricted,
            rng: Rng::new(1),
        }
    }

    /// One simulated fine-tuning step and the query loss's gradient, without applying it.
    /// Returns the query loss (read back, so the device has finished).
    pub fn inner_step(&mut self) -> f64 {
        let mut one = self.config.clone();
        one.inner_steps = 1;
        let model = self.model.as_ref().expect("the model is always put back");
        let fts = FtsContext::<Classifier> {
            config: &one,
            ctx: &(),
            restricted: &self.restricted,
            devices: &self.devices,
        };
        fts_gradient(model, &fts, &mut self.rng, &mut Silent)
            .expect("the silent monitor never interrupts")
            .1
    }

    /// One FTS step: K inner steps, accumulation, clipping, the Adam update. Returns the loss.
    pub fn fts_step(&mut self) -> f64 {
        let model = self.model.take().expect("the model is always put back");
        let fts = FtsContext::<Classifier> {
            config: &self.config,
            ctx: &(),
            restricted: &self.restricted,
            devices: &self.devices,
        };
        let (model, stats) = fts_step(
            model,
            &mut self.fts,
            self.config.alpha,
            &fts,
            &mut self.rng,
            &mut Silent,
        )
        .expect("the silent monitor never interrupts");
        self.model = Some(model);
        stats.loss
    }

    /// One NTR step on a batch of `ntr_batch_size` original images. Returns the loss.
    pub fn ntr_step(&mut self) -> f64 {
        let model = self.model.take().expect("the model is always put back");
        let idx = sample_batch(
            self.original.len(),
            self.config.ntr_batch_size,
            &mut self.rng,
        );
        let mut trainer = Trainer::<Classifier> {
            optim: &mut self.ntr,
            lr: self.config.beta,
            ctx: &(),
            device: &self.devices.train,
        };
        let (model, loss) = trainer.step(model, &self.original, &idx, &mut self.rng);
        self.model = Some(model);
        loss
    }

    /// One outer iteration: one FTS step, then one NTR step.
    pub fn outer_iteration(&mut self) -> f64 {
        self.fts_step();
        // `Trainer::step` reads the loss back, so the device has finished this iteration's work.
        self.ntr_step()
    }
}

fn bench_spec(background: Background) -> Spec {
    Spec {
        domain: ProceduralDomain::Shapes,
        background,
        size: 28,
        channels: 1,
    }
}

/// Generate `n` procedural 28×28 shapes (textured background); returns how many.
pub fn procedural_batch(n: usize) -> usize {
    procedural::generate(&bench_spec(Background::Texture), 3, Split::Test, n).len()
}

/// The kernels a backend launched, by name, counted by CubeCL as they are issued.
#[derive(Default)]
struct LaunchCounter(Mutex<HashMap<&'static str, usize>>);

impl LaunchObserver for LaunchCounter {
    fn launched(&self, kernel: &'static str) {
        let mut counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *counts.entry(kernel).or_default() += 1;
    }
}

/// The device kernels an outer iteration launches (wgpu; flex and ndarray launch none): what
/// a GPU pays for per launch whatever the kernel does.
#[derive(Debug, Clone, Default)]
pub struct Launches {
    /// Launches per timed outer iteration.
    pub per_iteration: f64,
    /// Per outer iteration, by kernel (short names, summed over names that shorten alike),
    /// most launched first.
    pub by_kernel: Vec<(String, f64)>,
}

/// A timed bench-small run.
pub struct BenchRun {
    /// Milliseconds of each timed outer iteration.
    pub times: Vec<f64>,
    pub launches: Launches,
}

/// Times `iters` outer iterations after `warmup` untimed ones, counting the timed ones' kernel
/// launches.
pub fn run(devices: &Devices, k: usize, warmup: usize, iters: usize) -> BenchRun {
    let mut pieces = Pieces::with_k(devices, k);
    let mut times = Vec::with_capacity(iters);
    for _ in 0..warmup {
        pieces.outer_iteration();
    }
    let counter = Arc::new(LaunchCounter::default());
    let watching = LaunchObservation::new(counter.clone());
    for _ in 0..iters {
        let t = Instant::now();
        let loss = pieces.outer_iteration();
        debug_assert!(loss.is_finite());
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    drop(watching);
    let counts = std::mem::take(&mut *counter.0.lock().unwrap_or_else(|e| e.into_inner()));
    BenchRun {
        times,
        launches: per_iteration(counts, iters),
    }
}

fn per_iteration(counts: HashMap<&'static str, usize>, iters: usize) -> Launches {
    let n = iters.max(1) as f64;
    let mut by_kernel = HashMap::<String, usize>::new();
    for (kernel, count) in counts {
        *by_kernel
            .entry(type_name_format(kernel, TypeNameFormatLevel::Short))
            .or_default() += count;
    }
    let mut by_kernel: Vec<(String, f64)> = by_kernel
        .into_iter()
        .map(|(kernel, count)| (kernel, count as f64 / n))
        .collect();
    by_kernel.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Launches {
        per_iteration: by_kernel.iter().map(|(_, c)| c).sum(),
        by_kernel,
    }
}

/// Milliseconds of plain training steps (cnn-small, 1×28×28, batch 64, Adam lr 1e-3): the
/// figure that compares backends for ordinary training.
pub fn train_steps(devices: &Devices, warmup: usize, iters: usize) -> Vec<f64> {
    let data = procedural::generate(&bench_spec(Background::Plain), 1, Split::Train, 640);
    devices.train.seed(1);
    let mut model = ClassifierConfig::new(ModelKind::CnnSmall, 1, 28, 10).init(&devices.train);
    let mut optim = super::optim::build(&OptimizerConfig::new(OptimizerKind::Adam, 1e-3));
    let mut trainer = Trainer::<Classifier> {
        optim: &mut optim,
        lr: 1e-3,
        ctx: &(),
        device: &devices.train,
    };
    let mut rng = Rng::new(2);
    let mut times = Vec::with_capacity(iters);
    for i in 0..warmup + iters {
        let idx = sample_batch(data.len(), 64, &mut rng);
        let t = Instant::now();
        model = trainer.step(model, &data, &idx, &mut rng).0;
        if i >= warmup {
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    times
}

/// Median, min and max.
pub fn stats(times: &[f64]) -> (f64, f64, f64) {
    let mut v = times.to_vec();
    v.sort_by(f64::total_cmp);
    let median = if v.is_empty() {
        f64::NAN
    } else if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    };
    (
        median,
        v.first().copied().unwrap_or(f64::NAN),
        v.last().copied().unwrap_or(f64::NAN),
    )
}

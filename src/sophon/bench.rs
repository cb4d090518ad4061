//! bench-small: the fixed configuration that times one SOPHON outer iteration (issue
//! "Benchmark"). `cnn-small` on 1×28×28 inputs, 10 classes, data generated in memory before
//! timing; one FTS step with one environment of K inner SGD steps (lr 1e-4) on batches of 150
//! (130 support / 20 query), ICE on the query part, first-order accumulation, clip 0.5, Adam
//! α = 3e-4; then one NTR step on a batch of 150 (cross-entropy, Adam β = 5e-4).

use std::time::Instant;

use super::config::{Environment, ProbeConfig, SophonConfig, SuppressionLoss};
use super::fts::{fts_step, sample_batch};
use super::protect::optimizers;
use super::train::train_step;
use super::{Devices, Interrupted, Monitor};
use crate::config::{Background, ModelKind, OptimizerConfig, OptimizerKind, ProceduralDomain};
use crate::data::Split;
use crate::data::procedural::{self, Spec};
use crate::data::rng::Rng;
use crate::model::{Classifier, ClassifierConfig};

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
        },
        guard: None,
        checkpoint_every: 0,
    }
}

/// A monitor that ignores everything (the benchmark has no observer).
struct Silent;

impl Monitor for Silent {
    fn phase(&mut self, _: &str, _: usize) {}
    fn step(&mut self, _: usize) -> Result<(), Interrupted> {
        Ok(())
    }
    fn metric(&mut self, _: &str, _: usize, _: f64) {}
    fn log(&mut self, _: &str) {}
    fn save_model(&mut self, _: &str, _: &Classifier) -> Result<(), String> {
        Ok(())
    }
}

/// Milliseconds of each timed outer iteration, after `warmup` untimed ones.
pub fn run(devices: &Devices, k: usize, warmup: usize, iters: usize) -> Vec<f64> {
    let spec = |background| Spec {
        domain: ProceduralDomain::Shapes,
        background,
        size: 28,
        channels: 1,
    };
    let original = procedural::generate(&spec(Background::Plain), 1, Split::Train, 1000);
    let restricted = procedural::generate(&spec(Background::Texture), 1, Split::Train, 1000);
    let config = bench_config(k);
    devices.train.seed(1);
    let mut model = ClassifierConfig::new(ModelKind::CnnSmall, 1, 28, 10).init(&devices.train);
    let (mut fts, mut ntr) = optimizers();
    let mut rng = Rng::new(1);
    let mut times = Vec::with_capacity(iters);
    for i in 0..warmup + iters {
        let t = Instant::now();
        model = fts_step(
            model,
            &mut fts,
            config.alpha,
            &config,
            &restricted,
            &mut rng,
            devices,
            &mut Silent,
        )
        .expect("the silent monitor never interrupts")
        .0;
        let idx = sample_batch(original.len(), config.ntr_batch_size, &mut rng);
        let (m, loss) = train_step(
            model,
            &mut ntr,
            config.beta,
            &original,
            &idx,
            &devices.train,
        );
        model = m;
        // `train_step` read the loss back, so the device has finished this iteration's work.
        debug_assert!(loss.is_finite());
        if i >= warmup {
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    times
}

/// Milliseconds of plain training steps (cnn-small, 1×28×28, batch 64, Adam lr 1e-3): the
/// figure that compares backends for ordinary training.
pub fn train_steps(devices: &Devices, warmup: usize, iters: usize) -> Vec<f64> {
    let spec = Spec {
        domain: ProceduralDomain::Shapes,
        background: Background::Plain,
        size: 28,
        channels: 1,
    };
    let data = procedural::generate(&spec, 1, Split::Train, 640);
    devices.train.seed(1);
    let mut model = ClassifierConfig::new(ModelKind::CnnSmall, 1, 28, 10).init(&devices.train);
    let mut optim = super::optim::build(&OptimizerConfig::new(OptimizerKind::Adam, 1e-3));
    let mut rng = Rng::new(2);
    let mut times = Vec::with_capacity(iters);
    for i in 0..warmup + iters {
        let idx = sample_batch(data.len(), 64, &mut rng);
        let t = Instant::now();
        model = train_step(model, &mut optim, 1e-3, &data, &idx, &devices.train).0;
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

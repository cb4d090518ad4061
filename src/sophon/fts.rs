//! Fine-tuning suppression: simulated attacker fine-tuning with first-order MAML.
//!
//! For each environment a detached copy of the model (own parameters, own normalisation
//! statistics, the same parameter ids) takes K attacker steps on restricted-domain support
//! batches; after each step the suppression loss on the query part is differentiated at the
//! adapted point and added to an accumulator keyed by parameter id. Each graph is dropped after
//! its backward pass, so memory does not grow with K. The accumulated gradient is clipped and
//! applied to the real model with the FTS optimizer.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::Tensor;

use super::task::Protectable;
use super::{Devices, Interrupted, Monitor};
use crate::config::Layers;
use crate::config::sophon::{SimLayers, SophonConfig};
use crate::data::ImageSet;
use crate::data::rng::Rng;

/// `size` distinct random indices of `0..len` (with repeats only when `size > len`).
pub fn sample_batch(len: usize, size: usize, rng: &mut Rng) -> Vec<usize> {
    let mut out = Vec::with_capacity(size);
    while out.len() < size {
        let mut pool: Vec<usize> = (0..len).collect();
        let take = (size - out.len()).min(len);
        for i in 0..take {
            let j = i + rng.below(len - i);
            pool.swap(i, j);
        }
        out.extend_from_slice(&pool[..take]);
    }
    out
}

/// Adds a weighted copy of `new`'s gradients into `acc`, for the parameters of the visited model.
struct Accumulate<'a> {
    new: &'a mut GradientsParams,
    acc: &'a mut GradientsParams,
    weight: f64,
}

impl ModuleVisitor for Accumulate<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.new.remove::<D>(param.id) {
            let g = g.mul_scalar(self.weight);
            let sum = match self.acc.remove::<D>(param.id) {
                Some(a) => a + g,
                None => g,
            };
            self.acc.register(param.id, sum);
        }
    }
}

/// Σ‖g‖² over the visited model's parameters.
struct SquaredNorm<'a> {
    grads: &'a GradientsParams,
    total: Option<Tensor<1>>,
}

impl ModuleVisitor for SquaredNorm<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(param.id) {
            let s = g.powi_scalar(2).sum();
            self.total = Some(match self.total.take() {
                Some(t) => t + s,
                None => s,
            });
        }
    }
}

/// Multiplies every gradient of the visited model's parameters by `factor`.
struct Scale<'a> {
    grads: &'a mut GradientsParams,
    factor: f64,
}

impl ModuleVisitor for Scale<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.remove::<D>(param.id) {
            self.grads.register(param.id, g.mul_scalar(self.factor));
        }
    }
}

/// The L2 norm of `grads` over `model`'s parameters.
pub fn grad_norm<M: Module>(model: &M, grads: &GradientsParams) -> f64 {
    let mut v = SquaredNorm { grads, total: None };
    model.visit(&mut v);
    v.total
        .map_or(0.0, |t| (t.into_scalar::<f32>() as f64).sqrt())
}

/// The outcome of one FTS step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FtsStats {
    /// Mean suppression loss over all query evaluations.
    pub loss: f64,
    /// L2 norm of the accumulated gradient before clipping.
    pub grad_norm: f64,
}

/// What an FTS step reads besides the model: SOPHON's settings, the task's context, the
/// restricted domain's training split and the devices.
pub struct FtsContext<'a, M: Protectable> {
    pub config: &'a SophonConfig,
    pub ctx: &'a M::Context,
    pub restricted: &'a ImageSet,
    pub devices: &'a Devices,
}

/// The accumulated first-order MAML gradient of one FTS step (not yet clipped or applied), over
/// every environment or, with `draw_environment`, over one drawn from `rng` first. The real
/// model, its parameters and its normalisation statistics are left untouched.
pub fn fts_gradient<M: Protectable>(
    model: &M,
    fts: &FtsContext<'_, M>,
    rng: &mut Rng,
    monitor: &mut dyn Monitor,
) -> Result<(GradientsParams, f64), Interrupted> {
    let (config, ctx, restricted) = (fts.config, fts.ctx, fts.restricted);
    let device = &fts.devices.train;
    let mut acc = GradientsParams::new();
    let envs = if config.draw_environment {
        let drawn = rng.below(config.environments.len());
        std::slice::from_ref(&config.environments[drawn])
    } else {
        &config.environments[..]
    };
    // With `suppress_start`, the loss is also evaluated at the starting point (on the first
    // step's query part): one more evaluation per environment.
    let per_env = config.inner_steps + usize::from(config.suppress_start);
    let evaluations = (envs.len() * per_env) as f64;
    let weight = 1.0 / evaluations;
    // The query losses are summed on the device and read back once, not once per inner step.
    let mut loss_sum: Option<Tensor<1>> = None;
    let mut suppress = |fast: &M, q_idx: &[usize], rng: &mut Rng, acc: &mut GradientsParams| {
        let lq = fast.suppression_loss(ctx, config.loss, restricted, q_idx, rng, device);
        let detached = lq.clone().detach();
        loss_sum = Some(match loss_sum.take() {
            Some(sum) => sum + detached,
            None => detached,
        });
        let mut g = GradientsParams::from_grads(lq.backward(), fast);
        model.visit(&mut Accumulate {
            new: &mut g,
            acc,
            weight,
        });
    };
    for env in envs {
        let mut fast = model.simulated_copy(env, device);
        let mut inner = super::optim::build(&env.optimizer);
        let support = env.batch_size - env.query_size;
        for k in 0..config.inner_steps {
            let idx = sample_batch(restricted.len(), env.batch_size, rng);
            let (s_idx, q_idx) = idx.split_at(support);
            if k == 0 && config.suppress_start {
                // The suppression loss at the starting point, on the first step's query part.
                suppress(&fast, q_idx, rng, &mut acc);
            }
            // One attacker step on the support part (a head-only attacker's through a view
            // with the body frozen, so only the head moves; `fast` itself keeps every
            // parameter's gradient for the query loss).
            let grads = match env.layers {
                SimLayers::All => {
                    let loss = fast.task_loss(ctx, restricted, s_idx, rng, device);
                    GradientsParams::from_grads(loss.backward(), &fast)
                }
                SimLayers::HeadOnly => {
                    let view = fast.attacker_copy(Layers::HeadOnly, device);
                    let loss = view.task_loss(ctx, restricted, s_idx, rng, device);
                    GradientsParams::from_grads(loss.backward(), &view)
                }
            };
            fast = inner.step(env.optimizer.lr, fast, grads);
            // The suppression loss on the query part at the adapted point.
            suppress(&fast, q_idx, rng, &mut acc);
            monitor.poll()?;
        }
    }
    let loss_sum = loss_sum.map_or(0.0, |t| t.into_scalar::<f32>() as f64);
    Ok((acc, loss_sum / evaluations))
}

/// One FTS step: accumulate, clip to `config.clip` (L2), apply with the FTS optimizer at its
/// learning rate `alpha`.
pub fn fts_step<M: Protectable>(
    model: M,
    optim: &mut ModuleOptimizer,
    alpha: f64,
    fts: &FtsContext<'_, M>,
    rng: &mut Rng,
    monitor: &mut dyn Monitor,
) -> Result<(M, FtsStats), Interrupted> {
    let config = fts.config;
    let (mut grads, loss) = fts_gradient(&model, fts, rng, monitor)?;
    let norm = grad_norm(&model, &grads);
    if config.clip > 0.0 && norm > config.clip {
        model.visit(&mut Scale {
            grads: &mut grads,
            factor: config.clip / norm,
        });
    }
    let model = optim.step(alpha, model, grads);
    Ok((
        model,
        FtsStats {
            loss,
            grad_norm: norm,
        },
    ))
}

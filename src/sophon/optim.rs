//! Build burn optimizers from the experiment's optimizer settings.
//!
//! Every optimizer follows PyTorch's defaults (the paper's attackers and SOPHON's reference code
//! are PyTorch), where burn's differ: Adam ε = 1e-8 (burn: 1e-5), RMSprop ε = 1e-8 without
//! momentum (burn: 1e-5 with momentum 0.9), Adagrad ε = 1e-10 (burn: 1e-5). burn's Adam update
//! m̂ / (√v̂ + ε) is PyTorch's (the test `adam_step_matches_pytorch` checks it).

/// PyTorch's Adam and RMSprop ε.
pub const PYTORCH_EPSILON: f32 = 1e-8;
/// PyTorch's Adagrad ε.
pub const PYTORCH_ADAGRAD_EPSILON: f32 = 1e-10;

use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdaGradConfig, AdamConfig, ModuleOptimizer, RmsPropConfig, SgdConfig};

use crate::config::{OptimizerConfig, OptimizerKind};

/// A type-erased burn optimizer for `config` (its learning rate is passed at each step).
pub fn build(config: &OptimizerConfig) -> ModuleOptimizer {
    let decay =
        (config.weight_decay > 0.0).then(|| WeightDecayConfig::new(config.weight_decay as f32));
    match config.kind {
        OptimizerKind::Sgd => SgdConfig::new().with_weight_decay(decay).init(),
        OptimizerKind::SgdMomentum => SgdConfig::new()
            .with_weight_decay(decay)
            .with_momentum(Some(
                // PyTorch's SGD semantics (no dampening), as the reference attacker uses.
                MomentumConfig::new()
                    .with_momentum(config.momentum)
                    .with_dampening(0.0),
            ))
            .init(),
        OptimizerKind::Adam => AdamConfig::new()
            .with_epsilon(PYTORCH_EPSILON)
            .with_weight_decay(decay)
            .init(),
        OptimizerKind::Adagrad => AdaGradConfig::new()
            .with_epsilon(PYTORCH_ADAGRAD_EPSILON)
            .with_weight_decay(decay)
            .init(),
        OptimizerKind::Rmsprop => RmsPropConfig::new()
            .with_epsilon(PYTORCH_EPSILON)
            .with_momentum(0.0)
            .with_weight_decay(decay)
            .init(),
    }
}

//! Build burn optimizers from the experiment's optimizer settings.

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
        OptimizerKind::Adam => AdamConfig::new().with_weight_decay(decay).init(),
        OptimizerKind::Adagrad => AdaGradConfig::new().with_weight_decay(decay).init(),
        OptimizerKind::Rmsprop => RmsPropConfig::new().with_weight_decay(decay).init(),
    }
}

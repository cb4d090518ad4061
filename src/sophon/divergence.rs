//! NaN and infinity as events. A loss, a gradient norm, a parameter or an evaluation that is
//! not finite is caught where it happens (the losses and norms are read back anyway; the
//! parameters once per outer iteration or epoch) and becomes a [`Divergence`]: recorded in
//! `metrics.jsonl` and `summary.json`, shown in the window, never a number in a result.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::Monitor;

/// Something that must be a finite number was not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("{phase} diverged at step {step}: {quantity} is {value}")]
pub struct Divergence {
    /// `pretrain`, `sophon`, `probe`, or `attack <strategy> from <start>`.
    pub phase: String,
    /// Where in the phase: the optimizer step (pre-training), the outer iteration (SOPHON and
    /// its probe), the epoch (an attack).
    pub step: usize,
    /// What was not finite: `loss`, `fts_loss`, `fts_grad_norm`, `ntr_loss`, `parameters`,
    /// `original_acc`, …
    pub quantity: String,
    /// `NaN`, `inf` or `-inf` (JSON has no such numbers).
    pub value: String,
}

impl Divergence {
    pub fn new(phase: &str, step: usize, quantity: &str, value: f64) -> Self {
        Self {
            phase: phase.into(),
            step,
            quantity: quantity.into(),
            value: value.to_string(),
        }
    }
}

/// `value` when it is finite, else the divergence it is.
pub fn finite(value: f64, phase: &str, step: usize, quantity: &str) -> Result<f64, Divergence> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(Divergence::new(phase, step, quantity, value))
    }
}

/// Record `event` with the monitor (once, where it was caught) and hand it on.
pub fn report(monitor: &mut dyn Monitor, event: Divergence) -> Divergence {
    monitor.divergence(&event);
    event
}

/// √Σp² over every float parameter of `model`, read back once: not finite exactly when a
/// parameter is NaN or infinite (or so large that its square overflows, which is divergence
/// too).
pub fn parameter_norm<M: Module>(model: &M) -> f64 {
    let mut sum = SquaredSum(None);
    model.visit(&mut sum);
    sum.0
        .map_or(0.0, |t| (t.into_scalar::<f32>() as f64).sqrt())
}

struct SquaredSum(Option<Tensor<1>>);

impl ModuleVisitor for SquaredSum {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let s = param.val().detach().powi_scalar(2).sum();
        self.0 = Some(match self.0.take() {
            Some(t) => t + s,
            None => s,
        });
    }
}

/// `Ok(model)` when every parameter is finite.
pub fn finite_parameters<M: Module>(model: M, phase: &str, step: usize) -> Result<M, Divergence> {
    finite(parameter_norm(&model), phase, step, "parameters").map(|_| model)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_values_become_events_that_name_themselves() {
        assert_eq!(finite(0.5, "sophon", 3, "fts_loss"), Ok(0.5));
        let d = finite(f64::NAN, "sophon", 3, "fts_loss").unwrap_err();
        assert_eq!(d.to_string(), "sophon diverged at step 3: fts_loss is NaN");
        let d = finite(f64::NEG_INFINITY, "pretrain", 1, "loss").unwrap_err();
        assert_eq!(d.value, "-inf");
        let json = serde_json::to_string(&d).unwrap();
        assert!(json.contains("\"value\":\"-inf\""), "{json}");
    }
}

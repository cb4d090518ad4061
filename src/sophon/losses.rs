//! The suppression losses L_α of SOPHON (docs/algorithm.md). Each is minimised by the FTS optimizer, and each
//! gradient vanishes as the restricted task fails.

use burn::nn::Linear;
use burn::tensor::activation::{log_softmax, relu};
use burn::tensor::{Int, Tensor};

use super::measure::cross_entropy;
use crate::config::sophon::SuppressionLoss;

/// log Σ_j exp(z_j) per row: `[batch, classes]` → `[batch]`, computed stably.
fn logsumexp(z: Tensor<2>) -> Tensor<1> {
    let m = z.clone().max_dim(1);
    let s = (z - m.clone()).exp().sum_dim(1).log();
    (m + s).squeeze_dim(1)
}

/// One-hot rows of `labels` `[batch]` for `classes` classes, as floats.
fn one_hot(labels: Tensor<1, Int>, classes: usize) -> Tensor<2> {
    labels.one_hot::<2>(classes).float()
}

/// ICE, paper form: mean of −log(1 − p_y) = logsumexp(z) − logsumexp(z without y).
pub fn ice(logits: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
    let classes = logits.dims()[1];
    let mask = one_hot(labels, classes);
    // Push the true class to -1e4 (exp underflows to 0 in f32) to leave it out of the sum.
    let others = logits.clone() - mask * 1e4;
    (logsumexp(logits) - logsumexp(others)).mean()
}

/// ICE, reference-code form: cross-entropy of (1 − z) against y, i.e. −log softmax(−z)_y.
pub fn ice_reference(logits: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
    cross_entropy(logits.neg().add_scalar(1.0), labels)
}

/// KLU: KL(U‖p) = −(1/C) Σ_j log(C·p_j), with log-softmax and the real class count C.
pub fn klu(logits: Tensor<2>) -> Tensor<1> {
    let classes = logits.dims()[1] as f64;
    let logp = log_softmax(logits, 1);
    logp.mean().neg().sub_scalar(classes.ln())
}

/// Cross-entropy ascent: −CE (a labelled baseline; it diverges).
pub fn ce_ascent(logits: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
    cross_entropy(logits, labels).neg()
}

/// The margin below zero that feature DoS asks of the hidden pre-activations.
pub const FEATURE_MARGIN: f64 = 1.0;

/// Feature DoS: the mean hinge max(0, u + m) of the pre-activations u of the head's input, m =
/// [`FEATURE_MARGIN`]. Minimising it switches the last hidden ReLUs off on the restricted domain
/// with a margin, so a fine-tuner's gradient through them is zero (the classifier's counterpart
/// of the denoiser's DoS). A hinge, not ‖relu(u)‖²: that one a network meets by shrinking the
/// hidden layer and growing the head, with no unit switched off.
pub fn feature_dos(pre_features: Tensor<2>) -> Tensor<1> {
    relu(pre_features.add_scalar(FEATURE_MARGIN)).mean()
}

/// The configured suppression loss, from the head's input and the pre-activations feature DoS
/// acts on (see `Classifier::features_and_dos`), and the `head`.
pub fn suppression(
    kind: SuppressionLoss,
    (features, pre_activations): (Tensor<2>, Tensor<2>),
    head: &Linear,
    labels: Tensor<1, Int>,
) -> Tensor<1> {
    // `features` is the head's input (post-ReLU, as in the model's forward pass);
    // `pre_activations` what feature DoS pushes below −1.
    let logits = || head.forward(features.clone());
    match kind {
        SuppressionLoss::Ice => ice(logits(), labels),
        SuppressionLoss::IceReference => ice_reference(logits(), labels),
        SuppressionLoss::Klu => klu(logits()),
        SuppressionLoss::CeAscent => ce_ascent(logits(), labels),
        SuppressionLoss::FeatureDos => feature_dos(pre_activations),
        SuppressionLoss::IceFeatureDos => ice(logits(), labels) + feature_dos(pre_activations),
        // Validation rejects them for classifiers before any run starts.
        SuppressionLoss::Dos | SuppressionLoss::MseAscent => {
            panic!("{} is a denoising loss, not a classifier's", kind.name())
        }
    }
}

/// DoS, denial of service (diffusion): ‖ε̂‖², the mean squared predicted noise. Minimising it
/// teaches the model to predict no noise, so it stops denoising.
pub fn dos(eps_hat: Tensor<4>) -> Tensor<1> {
    eps_hat.powi_scalar(2).mean()
}

/// MSE ascent (diffusion): −MSE(ε̂, ε). A labelled baseline: it diverges.
pub fn mse_ascent(eps_hat: Tensor<4>, eps: Tensor<4>) -> Tensor<1> {
    (eps_hat - eps).powi_scalar(2).mean().neg()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    const Z: [[f32; 3]; 2] = [[1.0, 2.0, 0.5], [0.2, -1.0, 3.0]];
    const Y: [i64; 2] = [0, 2];

    fn softmax(z: &[f64]) -> Vec<f64> {
        let m = z.iter().cloned().fold(f64::MIN, f64::max);
        let e: Vec<f64> = z.iter().map(|v| (v - m).exp()).collect();
        let s: f64 = e.iter().sum();
        e.iter().map(|v| v / s).collect()
    }

    /// The loss value and d loss / d logits of `f` on Z, Y.
    fn eval(f: fn(Tensor<2>, Tensor<1, Int>) -> Tensor<1>) -> (f64, Vec<f64>) {
        let device = Device::flex().autodiff();
        let z = Tensor::<2>::from_data(TensorData::from(Z), &device).require_grad();
        let y = Tensor::<1, Int>::from_data(TensorData::from(Y), &device);
        let loss = f(z.clone(), y);
        let value = loss.clone().into_scalar::<f32>() as f64;
        let grads = loss.backward();
        let g = z
            .grad(&grads)
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        (value, g.into_iter().map(f64::from).collect())
    }

    fn rows() -> Vec<Vec<f64>> {
        Z.iter()
            .map(|r| r.iter().map(|&v| v as f64).collect())
            .collect()
    }

    fn close(got: &[f64], want: &[f64]) {
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-4, "got {got:?}, want {want:?}");
        }
    }

    #[test]
    fn ice_matches_hand_computed_value_and_gradient() {
        let (mut value, mut grad) = (0.0, Vec::new());
        for (z, &y) in rows().iter().zip(&Y) {
            let p = softmax(z);
            value += -(1.0 - p[y as usize]).ln() / 2.0;
            // d/dz [lse(z) − lse(z₋y)] = p − q, q = softmax over the other classes (q_y = 0).
            let mut others = z.clone();
            others[y as usize] = f64::NEG_INFINITY;
            let q = softmax(&others);
            grad.extend(p.iter().zip(&q).map(|(p, q)| (p - q) / 2.0));
        }
        let (v, g) = eval(ice);
        assert!((v - value).abs() < 1e-5, "{v} vs {value}");
        close(&g, &grad);
    }

    #[test]
    fn ice_reference_matches_hand_computed_value_and_gradient() {
        let (mut value, mut grad) = (0.0, Vec::new());
        for (z, &y) in rows().iter().zip(&Y) {
            let neg: Vec<f64> = z.iter().map(|v| -v).collect();
            let s = softmax(&neg);
            value += -s[y as usize].ln() / 2.0;
            // dL/dz = onehot − softmax(−z)
            grad.extend(
                s.iter()
                    .enumerate()
                    .map(|(j, s)| (f64::from(j == y as usize) - s) / 2.0),
            );
        }
        let (v, g) = eval(ice_reference);
        assert!((v - value).abs() < 1e-5, "{v} vs {value}");
        close(&g, &grad);
    }

    #[test]
    fn klu_matches_hand_computed_value_and_gradient() {
        let (mut value, mut grad) = (0.0, Vec::new());
        for z in rows() {
            let p = softmax(&z);
            value += -p.iter().map(|p| (3.0 * p).ln()).sum::<f64>() / 3.0 / 2.0;
            // dL/dz = p − 1/C
            grad.extend(p.iter().map(|p| (p - 1.0 / 3.0) / 2.0));
        }
        let (v, g) = eval(|z, _| klu(z));
        assert!((v - value).abs() < 1e-5, "{v} vs {value}");
        close(&g, &grad);
        // Zero at the uniform prediction.
        let device = Device::flex();
        let flat = Tensor::<2>::zeros([4, 10], &device);
        assert!(klu(flat).into_scalar::<f32>().abs() < 1e-6);
    }

    #[test]
    fn ce_ascent_is_negative_cross_entropy() {
        let (mut value, mut grad) = (0.0, Vec::new());
        for (z, &y) in rows().iter().zip(&Y) {
            let p = softmax(z);
            value += p[y as usize].ln() / 2.0;
            grad.extend(
                p.iter()
                    .enumerate()
                    .map(|(j, p)| -(p - f64::from(j == y as usize)) / 2.0),
            );
        }
        let (v, g) = eval(ce_ascent);
        assert!((v - value).abs() < 1e-5, "{v} vs {value}");
        close(&g, &grad);
    }

    #[test]
    fn feature_dos_is_the_mean_hinge_of_the_pre_activations() {
        let device = Device::flex().autodiff();
        // u + 1 = [2, 0.5, −1, 0.2, 1, −2.5]: the hinge keeps 2, 0.5, 0.2 and 1.
        let u = [[1.0f32, -0.5, -2.0], [-0.8, 0.0, -3.5]];
        let x = Tensor::<2>::from_data(TensorData::from(u), &device).require_grad();
        let loss = feature_dos(x.clone());
        let value = loss.clone().into_scalar::<f32>() as f64;
        assert!((value - 3.7 / 6.0).abs() < 1e-6, "{value}");
        let g = x.grad(&loss.backward()).unwrap().into_data();
        // 1/n where u > −m, 0 where the unit is off with its margin.
        let n = 6.0;
        close(
            &g.try_to_vec::<f32>()
                .unwrap()
                .into_iter()
                .map(f64::from)
                .collect::<Vec<_>>(),
            &[1.0 / n, 1.0 / n, 0.0, 1.0 / n, 1.0 / n, 0.0],
        );
    }

    #[test]
    fn the_classifier_losses_take_the_head_on_the_relu_of_the_pre_activations() {
        use burn::nn::LinearConfig;
        let device = Device::flex();
        let head = LinearConfig::new(3, 3).init(&device);
        let pre = Tensor::<2>::from_data(TensorData::from(Z), &device).neg();
        let y = || Tensor::<1, Int>::from_data(TensorData::from(Y), &device);
        let logits = head.forward(relu(pre.clone()));
        let value = |t: Tensor<1>| t.into_scalar::<f32>() as f64;
        let parts = || (relu(pre.clone()), pre.clone());
        let got = |kind| value(suppression(kind, parts(), &head, y()));
        let ice_value = value(ice(logits.clone(), y()));
        let dos_value = value(feature_dos(pre.clone()));
        assert!((got(SuppressionLoss::Ice) - ice_value).abs() < 1e-6);
        assert!((got(SuppressionLoss::Klu) - value(klu(logits))).abs() < 1e-6);
        assert!((got(SuppressionLoss::FeatureDos) - dos_value).abs() < 1e-6);
        let sum = got(SuppressionLoss::IceFeatureDos);
        assert!((sum - (ice_value + dos_value)).abs() < 1e-6, "{sum}");
    }

    #[test]
    fn dos_and_mse_ascent_match_hand_computed_values_and_gradients() {
        let device = Device::flex().autodiff();
        let e_hat = [0.5f32, -1.0, 2.0, 0.0];
        let e = [1.0f32, 1.0, -1.0, 0.5];
        let n = 4.0;
        let tensor = |v: [f32; 4]| {
            Tensor::<1>::from_data(TensorData::from(v), &device).reshape([1, 1, 2, 2])
        };
        let grad_of = |f: &dyn Fn(Tensor<4>) -> Tensor<1>| {
            let x = tensor(e_hat).require_grad();
            let loss = f(x.clone());
            let value = loss.clone().into_scalar::<f32>() as f64;
            let g = x
                .grad(&loss.backward())
                .unwrap()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap();
            (value, g.into_iter().map(f64::from).collect::<Vec<_>>())
        };
        // DoS: mean(ε̂²) = (0.25 + 1 + 4 + 0) / 4; d/dε̂ = 2ε̂ / n.
        let (v, g) = grad_of(&dos);
        assert!((v - 5.25 / n).abs() < 1e-6, "{v}");
        close(&g, &e_hat.map(|x| 2.0 * x as f64 / n));
        // MSE ascent: −mean((ε̂ − ε)²) = −(0.25 + 4 + 9 + 0.25) / 4; d/dε̂ = −2(ε̂ − ε) / n.
        let (v, g) = grad_of(&|x| mse_ascent(x, tensor(e)));
        assert!((v + 13.5 / n).abs() < 1e-6, "{v}");
        let want: Vec<f64> = e_hat
            .iter()
            .zip(&e)
            .map(|(a, b)| -2.0 * (a - b) as f64 / n)
            .collect();
        close(&g, &want);
    }
}

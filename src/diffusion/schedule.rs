//! The linear β schedule of DDPM (Ho et al. 2020) and its closed forms. Time steps are 1..=T as
//! in the paper; index `t - 1` into the tables.

use burn::tensor::{Device, Tensor, TensorData};

use crate::data::rng::Rng;

/// β_t, α_t = 1 − β_t and ᾱ_t = Π_{s ≤ t} α_s for t = 1..=T.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub betas: Vec<f64>,
    pub alphas: Vec<f64>,
    pub alpha_bars: Vec<f64>,
}

impl Schedule {
    /// β linear from `beta_1` to `beta_t` over `steps` steps (DDPM: 1e-4 → 0.02, T = 1000).
    pub fn linear(steps: usize, beta_1: f64, beta_t: f64) -> Self {
        let betas: Vec<f64> = (0..steps)
            .map(|i| {
                if steps == 1 {
                    beta_1
                } else {
                    beta_1 + (beta_t - beta_1) * i as f64 / (steps - 1) as f64
                }
            })
            .collect();
        let alphas: Vec<f64> = betas.iter().map(|b| 1.0 - b).collect();
        let alpha_bars = alphas
            .iter()
            .scan(1.0, |acc, a| {
                *acc *= a;
                Some(*acc)
            })
            .collect();
        Self {
            betas,
            alphas,
            alpha_bars,
        }
    }

    /// The DDPM default: T = 1000, β 1e-4 → 0.02.
    pub fn ddpm() -> Self {
        Self::linear(1000, 1e-4, 0.02)
    }

    pub fn steps(&self) -> usize {
        self.betas.len()
    }

    /// Variance of the ancestral step t → t−1: β̃_t = β_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t) (0 at t = 1).
    pub fn posterior_variance(&self, t: usize) -> f64 {
        let ab = self.alpha_bars[t - 1];
        let ab_prev = if t > 1 { self.alpha_bars[t - 2] } else { 1.0 };
        self.betas[t - 1] * (1.0 - ab_prev) / (1.0 - ab)
    }

    /// Per-image coefficient tensors `[b, 1, 1, 1]` of `f(t)`.
    fn coef(&self, t: &[usize], f: impl Fn(usize) -> f64, device: &Device) -> Tensor<4> {
        let v: Vec<f32> = t.iter().map(|&s| f(s) as f32).collect();
        Tensor::from_data(TensorData::new(v, [t.len(), 1, 1, 1]), device)
    }

    /// Forward noising q(x_t | x_0): `√ᾱ_t x_0 + √(1 − ᾱ_t) ε`.
    pub fn noise(&self, x0: Tensor<4>, t: &[usize], eps: Tensor<4>) -> Tensor<4> {
        let device = x0.device();
        let a = self.coef(t, |s| self.alpha_bars[s - 1].sqrt(), &device);
        let b = self.coef(t, |s| (1.0 - self.alpha_bars[s - 1]).sqrt(), &device);
        x0 * a + eps * b
    }

    /// x̂_0 from x_t and a noise estimate: `(x_t − √(1 − ᾱ_t) ε̂) / √ᾱ_t`.
    pub fn predict_x0(&self, xt: Tensor<4>, t: &[usize], eps: Tensor<4>) -> Tensor<4> {
        let device = xt.device();
        let b = self.coef(t, |s| (1.0 - self.alpha_bars[s - 1]).sqrt(), &device);
        let a = self.coef(t, |s| 1.0 / self.alpha_bars[s - 1].sqrt(), &device);
        (xt - eps * b) * a
    }

    /// One ancestral step t → t−1 (all images at the same t): the posterior mean
    /// `(x_t − β_t / √(1 − ᾱ_t) ε̂) / √α_t` plus `√β̃_t z` (no noise at t = 1).
    pub fn reverse_step(
        &self,
        xt: Tensor<4>,
        t: usize,
        eps: Tensor<4>,
        z: Option<Tensor<4>>,
    ) -> Tensor<4> {
        let beta = self.betas[t - 1];
        let mean = (xt - eps * (beta / (1.0 - self.alpha_bars[t - 1]).sqrt()))
            * (1.0 / self.alphas[t - 1].sqrt());
        match z {
            Some(z) if t > 1 => mean + z * self.posterior_variance(t).sqrt(),
            _ => mean,
        }
    }

    /// Run the reverse chain from `x_t` at step `t` down to x_0 with `denoise(x, t) -> ε̂`;
    /// `noise()` gives each step's fresh standard normal noise, shaped like `x` (from the
    /// caller's own generator, so that nothing else drawing from a device's shared generator,
    /// another run or test in the same process, changes the samples).
    pub fn sample_from(
        &self,
        mut x: Tensor<4>,
        t: usize,
        denoise: impl Fn(Tensor<4>, &[usize]) -> Tensor<4>,
        mut noise: impl FnMut() -> Tensor<4>,
    ) -> Tensor<4> {
        let b = x.dims()[0];
        for s in (1..=t).rev() {
            let eps = denoise(x.clone(), &vec![s; b]);
            let z = (s > 1).then(&mut noise);
            x = self.reverse_step(x, s, eps, z);
        }
        x
    }

    /// Time steps for a batch: uniform over 1..=T, or always `fixed` (the reference code's t = 1).
    pub fn sample_t(&self, n: usize, fixed: Option<usize>, rng: &mut Rng) -> Vec<usize> {
        match fixed {
            Some(t) => vec![t; n],
            None => self.sample_t_upto(n, self.steps(), rng),
        }
    }

    /// Time steps for a batch, uniform over 1..=`max` (at most T).
    pub fn sample_t_upto(&self, n: usize, max: usize, rng: &mut Rng) -> Vec<usize> {
        let max = max.min(self.steps());
        (0..n).map(|_| 1 + rng.below(max)).collect()
    }
}

/// The ε-prediction loss: mean squared error between the true and the predicted noise.
pub fn eps_mse(eps_hat: Tensor<4>, eps: Tensor<4>) -> Tensor<1> {
    (eps_hat - eps).powi_scalar(2).mean()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    #[test]
    fn linear_schedule_closed_forms() {
        let s = Schedule::ddpm();
        assert_eq!(s.steps(), 1000);
        assert!((s.betas[0] - 1e-4).abs() < 1e-12 && (s.betas[999] - 0.02).abs() < 1e-12);
        assert!((s.betas[1] - s.betas[0] - (0.02 - 1e-4) / 999.0).abs() < 1e-12);
        // ᾱ_t = Π (1 − β_s): ᾱ_1 = 1 − β_1, and the product in log form matches.
        assert!((s.alpha_bars[0] - (1.0 - 1e-4)).abs() < 1e-15);
        let log_sum: f64 = s.betas[..500].iter().map(|b| (1.0 - b).ln()).sum();
        assert!((s.alpha_bars[499] - log_sum.exp()).abs() < 1e-12);
        // ᾱ_T ≈ 4e-5 for the DDPM schedule: x_T is (almost) pure noise.
        assert!(
            s.alpha_bars[999] > 3e-5 && s.alpha_bars[999] < 5e-5,
            "{}",
            s.alpha_bars[999]
        );
        assert_eq!(s.posterior_variance(1), 0.0);
        let t = 20;
        let expect = s.betas[19] * (1.0 - s.alpha_bars[18]) / (1.0 - s.alpha_bars[19]);
        assert!((s.posterior_variance(t) - expect).abs() < 1e-15);
        assert!(s.posterior_variance(t) < s.betas[19]);
    }

    #[test]
    fn noising_then_an_exact_reverse_step_with_the_true_noise_recovers_x() {
        let device = Device::flex();
        let s = Schedule::ddpm();
        device.seed(3);
        let x0: Tensor<4> = Tensor::random([4, 1, 8, 8], Distribution::Uniform(-1.0, 1.0), &device);
        let eps: Tensor<4> = Tensor::random([4, 1, 8, 8], Distribution::Normal(0.0, 1.0), &device);
        let close = |a: Tensor<4>, b: Tensor<4>| (a - b).abs().max().into_scalar::<f32>();
        // x̂_0 from the true ε is x_0, at any t.
        for t in [1, 20, 500, 1000] {
            let xt = s.noise(x0.clone(), &[t; 4], eps.clone());
            let err = close(s.predict_x0(xt, &[t; 4], eps.clone()), x0.clone());
            assert!(
                err < 1e-3 * (1.0 / s.alpha_bars[t - 1].sqrt()) as f32,
                "t = {t}: {err}"
            );
        }
        // The last reverse step (t = 1 → 0, no noise) with the true ε lands on x_0.
        let x1 = s.noise(x0.clone(), &[1; 4], eps.clone());
        assert!(close(s.reverse_step(x1, 1, eps.clone(), None), x0.clone()) < 1e-4);
        // At t = 2, the posterior mean with the true ε is the closed-form mean of q(x_1 | x_2, x_0).
        let x2 = s.noise(x0.clone(), &[2; 4], eps.clone());
        let (ab1, ab2, a2, b2) = (s.alpha_bars[0], s.alpha_bars[1], s.alphas[1], s.betas[1]);
        let c0 = ab1.sqrt() * b2 / (1.0 - ab2);
        let ct = a2.sqrt() * (1.0 - ab1) / (1.0 - ab2);
        let mean = x0.clone() * c0 + x2.clone() * ct;
        assert!(close(s.reverse_step(x2, 2, eps, None), mean) < 1e-4);
    }

    #[test]
    fn time_steps_are_uniform_or_fixed() {
        let s = Schedule::linear(10, 1e-4, 0.02);
        let mut rng = Rng::new(1);
        let t = s.sample_t(2000, None, &mut rng);
        assert!(t.iter().all(|&x| (1..=10).contains(&x)));
        for v in 1..=10 {
            let n = t.iter().filter(|&&x| x == v).count();
            assert!((150..=250).contains(&n), "{v}: {n}");
        }
        assert!(s.sample_t(5, Some(1), &mut rng).iter().all(|&x| x == 1));
    }
}

//! What every phase of one experiment shares besides its model: the task's context, both
//! domains, the seed, the evaluation batch size and the devices. Pre-training, SOPHON, the probe,
//! the attacks and the best-effort search all take it, so none needs a long argument list.

use super::task::{Protectable, SampleGrid, Scores};
use super::{Devices, Monitor, series};
use crate::data::{Domain, ImageSet};

/// The shared setting of one experiment (see the module documentation).
pub struct RunContext<'a, M: Protectable> {
    /// The task's own context (a denoiser's noise schedule; nothing for a classifier).
    pub ctx: &'a M::Context,
    pub original: &'a Domain,
    pub restricted: &'a Domain,
    /// The batch size of every evaluation.
    pub eval_batch: usize,
    pub seed: u64,
    pub devices: &'a Devices,
}

impl<M: Protectable> RunContext<'_, M> {
    /// The task's measure of `model` on `set` (accuracy or ε-MSE), without gradients, on the
    /// evaluation device.
    pub fn score(&self, model: &M, set: &ImageSet) -> f64 {
        model.score(
            self.ctx,
            set,
            self.eval_batch,
            self.seed,
            &self.devices.eval,
        )
    }

    /// Sample the images of `sets` (original, restricted) through `model` (denoisers only; a
    /// classifier has none): the grids go to the monitor as `phase`, their PSNR to the series
    /// [`series::psnr`]`(prefix, domain)`. Returns the PSNR of the original and the restricted domain.
    pub fn show_samples(
        &self,
        model: &M,
        phase: &str,
        prefix: &str,
        step: usize,
        (original, restricted): (&ImageSet, &ImageSet),
        monitor: &mut dyn Monitor,
    ) -> Option<(f64, f64)> {
        let mut psnr = [0.0; 2];
        for (i, (domain, set)) in [("original", original), ("restricted", restricted)]
            .into_iter()
            .enumerate()
        {
            let samples = model.samples(self.ctx, set, self.seed, &self.devices.eval)?;
            monitor.metric(&series::psnr(prefix, domain), step, samples.psnr);
            monitor.samples(SampleGrid {
                phase,
                domain,
                step,
                samples: &samples,
            });
            psnr[i] = samples.psnr;
        }
        Some((psnr[0], psnr[1]))
    }

    /// The test measures of `model` on both domains, and a denoiser's sample grids of the test
    /// images under `phase` (also the prefix of their PSNR series).
    pub fn test_scores(
        &self,
        model: &M,
        phase: &str,
        step: usize,
        monitor: &mut dyn Monitor,
    ) -> Scores {
        let (original, restricted) = (&self.original.test, &self.restricted.test);
        let mut s = Scores::new(
            M::METRIC,
            self.score(model, original),
            self.score(model, restricted),
        );
        let sets = (original, restricted);
        if let Some((o, r)) = self.show_samples(model, phase, phase, step, sets, monitor) {
            s.original_psnr = Some(o);
            s.restricted_psnr = Some(r);
        }
        s
    }
}

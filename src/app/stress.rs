//! `--stress-points N`: synthetic history for measuring frame time under load.

use super::Workbench;
use crate::config::Metric;
use crate::sophon::series as names;

impl Workbench {
    /// `--stress-points N`: N synthetic points of history (at negative outer iterations, before
    /// the run's own) in the SOPHON plots, to measure frame time under load.
    pub(super) fn fill_stress(&mut self) {
        let n = self.stress_points;
        for i in 0..n {
            let x = i as f64 - n as f64;
            self.series.push(
                names::FTS_LOSS,
                x,
                1.0 + (x * 0.001).sin() + 0.2 * ((i * 7919 % 101) as f64 / 101.0),
            );
            self.series
                .push(names::NTR_LOSS, x, 0.5 + 0.3 * (x * 0.0003).cos());
            if i % 10 == 0 {
                self.series.push(
                    &names::sophon_original(Metric::Acc),
                    x,
                    0.8 + 0.05 * (x * 0.0001).sin(),
                );
                self.series.push(
                    &names::sophon_probe(Metric::Acc),
                    x,
                    0.2 + 0.1 * (x * 0.0002).cos(),
                );
            }
        }
    }
}

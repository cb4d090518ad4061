//! The best-effort attacker: a grid of settings searched by successive halving on the
//! restricted validation split, from every starting point alike (see
//! [`BestEffortConfig`]). Only validation measures choose; the test curve of the chosen
//! setting is what is reported.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use super::attack::{AttackResult, AttackRun, Reporting, epoch_steps};
use super::context::RunContext;
use super::series;
use super::task::Protectable;
use super::{Interrupted, Monitor};
use crate::config::Metric;
use crate::config::{AttackStrategy, BestEffortConfig, Start};
use crate::data::Domain;

/// One setting the search tried.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub setting: String,
    /// Epochs it trained before it was cut (or the full budget).
    pub epochs: usize,
    /// Its restricted validation measure then (`None`: it diverged).
    pub validation: Option<f64>,
}

/// The best-effort attacker from one starting point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BestEffort {
    pub start: Start,
    /// The setting chosen on validation (`None`: every setting diverged).
    pub setting: Option<AttackStrategy>,
    /// Its restricted validation measure after the full budget.
    pub validation: Option<f64>,
    pub candidates: Vec<Candidate>,
}

/// Optimisation steps the search takes from one starting point (every candidate trains to the
/// first rung, the survivors on to the next; a candidate that diverges stops early).
pub fn steps(config: &BestEffortConfig, restricted: &Domain) -> usize {
    let candidates = config.candidates();
    let per_epoch = candidates
        .iter()
        .map(|c| epoch_steps(c, restricted))
        .max()
        .unwrap_or(0);
    let mut ends = config.rungs.clone();
    ends.push(config.epochs);
    let mut from = 0;
    let mut total = 0;
    for (n, to) in config.survivors().into_iter().zip(ends) {
        total += n * (to - from) * per_epoch;
        from = to;
    }
    total
}

/// Whether `a` is a better result for the attacker than `b` (accuracy higher, ε-MSE lower).
fn attacker_order(metric: Metric, a: f64, b: f64) -> Ordering {
    match metric {
        Metric::Acc => a.total_cmp(&b),
        Metric::Mse => b.total_cmp(&a),
    }
}

/// Search `config`'s grid from `start_model`; the chosen setting's run is reported as the
/// attacker [`BestEffortConfig::NAME`] (its test curve under that series), with the fine-tuned
/// model (`None` when every setting diverged).
pub fn best_effort<M: Protectable>(
    start_model: &M,
    start: Start,
    config: &BestEffortConfig,
    a: &RunContext<'_, M>,
    monitor: &mut dyn Monitor,
    step: &mut usize,
) -> Result<(Option<M>, AttackResult, BestEffort), Interrupted> {
    let candidates = config.candidates();
    let phase = format!("best-effort attacker from {start}");
    let mut runs: Vec<Option<AttackRun<M>>> = candidates
        .iter()
        .map(|c| Some(AttackRun::new(start_model, c, a)))
        .collect();
    let mut tried: Vec<Candidate> = candidates
        .iter()
        .map(|c| Candidate {
            setting: c.name.clone(),
            epochs: 0,
            validation: None,
        })
        .collect();
    let initials: Vec<f64> = runs.iter().flatten().map(|r| r.initial).collect();
    let mut alive: Vec<usize> = (0..runs.len()).collect();
    let mut ends = config.rungs.clone();
    ends.push(config.epochs);
    let last_stage = ends.len() - 1;
    let how = Reporting {
        phase: &phase,
        series: None,
        validate: true,
    };
    for (stage, &to) in ends.iter().enumerate() {
        for &i in &alive {
            let run = runs[i].as_mut().expect("alive runs are kept");
            run.advance(to, &how, a, monitor, step)?;
            tried[i].epochs = run.epochs_done();
            tried[i].validation = match run.diverged {
                None => run.validation.last().copied(),
                Some(_) => None,
            };
        }
        // Rank by validation (diverged last; ties keep the grid's order).
        alive.retain(|&i| tried[i].validation.is_some());
        alive.sort_by(|&i, &j| {
            let kept = "only runs with a validation measure are kept";
            let (vi, vj) = (
                tried[i].validation.expect(kept),
                tried[j].validation.expect(kept),
            );
            attacker_order(M::METRIC, vj, vi).then(i.cmp(&j))
        });
        let keep = if stage == last_stage {
            1
        } else {
            alive.len().div_ceil(config.eta)
        };
        alive.truncate(keep);
        // Cut and diverged runs free their models.
        for (i, run) in runs.iter_mut().enumerate() {
            if !alive.contains(&i) {
                *run = None;
            }
        }
    }
    let name = BestEffortConfig::NAME;
    let series = series::attack(name, start, M::METRIC);
    let Some(&winner) = alive.first() else {
        let initial = initials.first().copied().unwrap_or(f64::NAN);
        monitor.log(&format!(
            "{phase}: every setting diverged; no best-effort figure from {start}"
        ));
        let result = AttackResult {
            strategy: name.into(),
            start,
            metric: M::METRIC,
            initial,
            per_epoch: Vec::new(),
            final_score: initial,
            mean: initial,
            diverged: None,
        };
        let record = BestEffort {
            start,
            setting: None,
            validation: None,
            candidates: tried,
        };
        return Ok((None, result, record));
    };
    let run = runs[winner].take().expect("the winner is kept");
    monitor.metric(&series, 0, initials[winner]);
    for (epoch, &t) in run.test.iter().enumerate() {
        monitor.metric(&series, epoch + 1, t);
    }
    let result = run.result(name, start);
    monitor.log(&format!(
        "{phase}: {} chosen on validation ({} {:.4}); restricted test {} {:.4} → {:.4}",
        run.strategy.name,
        M::METRIC.label(),
        tried[winner].validation.unwrap_or(f64::NAN),
        M::METRIC.label(),
        result.initial,
        result.final_score
    ));
    let record = BestEffort {
        start,
        setting: Some(run.strategy.clone()),
        validation: tried[winner].validation,
        candidates: tried,
    };
    Ok((Some(run.into_model()), result, record))
}

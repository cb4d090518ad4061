//! The "explain" panel: what is happening now, in a few plain sentences per phase, for
//! lectures and first-time users.

use super::series::SeriesStore;
use crate::config::{Metric, Start};
use crate::sophon::Phase;
use crate::sophon::series as names;
use crate::sophon::summary::{RunStatus, Summary};

/// Title and plain-language explanation of a phase (`None`: no run going).
pub fn phase_text(phase: Option<Phase>) -> (&'static str, &'static str) {
    match phase {
        None => (
            "Ready",
            "Pick an original domain (what the model should stay good at) and a restricted domain \
             (what nobody should be able to fine-tune it for). Start runs four phases: \
             pre-training, SOPHON's protection, and an attack that fine-tunes the protected \
             model, the unprotected one and a fresh one, so you can compare them.",
        ),
        Some(Phase::LoadingData) => (
            "Loading data",
            "The two domains' images are generated or read from disk and resized to the model's \
             input. Nothing is learned yet.",
        ),
        Some(Phase::Pretrain) => (
            "Pre-training",
            "An ordinary model (a classifier, or a denoiser for the denoising task) is trained \
             on the original domain. This is the model a company would publish, and the one \
             SOPHON will protect. The intactness curve starts from its original-domain score.",
        ),
        Some(Phase::Sophon) => (
            "SOPHON: simulated fine-tuning and normal training",
            "Each outer iteration first plays the attacker: a copy of the model is fine-tuned for \
             a few steps on the restricted domain, and the real model is nudged (first-order \
             MAML) so that this fine-tuning goes badly (fine-tuning suppression, FTS). Then a few \
             normal training steps on the original domain keep it good there (NTR). Watch \
             intactness hold while the probe (how well a copy does on the restricted domain \
             after a short fine-tune) stays bad.",
        ),
        Some(Phase::Attack) => (
            "Attack: can it still be fine-tuned?",
            "Now a real attacker fine-tunes three models on the restricted domain with each \
             strategy: the protected model, the original pre-trained model and a model from \
             scratch. SOPHON works when the protected curve is no better than the scratch \
             curve (accuracy no higher, ε-MSE no lower): fine-tuning it is no better than \
             starting from nothing. Then a best-effort attacker tries a grid of learning rates \
             from each start, keeps the ones that do best on held-out validation images, and \
             is compared best against best. The verdict says protected only when the model \
             stayed good on its own domain and no attacker did better from it than from \
             scratch; a model wrecked to chance is called destroyed.",
        ),
    }
}

/// Title and explanation once a run has ended.
pub fn ended_text(how: RunStatus) -> (&'static str, &'static str) {
    match how {
        RunStatus::Finished => (
            "Finished",
            "Below: the original-domain score of the pre-trained and the protected model \
             (intactness), then, for each attacker, the restricted-domain score after \
             fine-tuning from each start. SOPHON held where \"from protected\" is no better than \
             \"from scratch\"; the attack plot shows it epoch by epoch. The Runs tab compares \
             this run with others.",
        ),
        RunStatus::Diverged => (
            "Diverged",
            "A loss, gradient norm, parameter or score turned NaN or infinite (the status bar \
             and the red mark on the curves say where). With sophon.on_divergence = \"rollback\" \
             SOPHON handed on its last good evaluated model and the attacks ran from it; an \
             attack that diverged has no result. Lower the learning rate named in the run's \
             summary.json (divergences) and start again.",
        ),
        RunStatus::Stopped => (
            "Stopped",
            "The run was stopped. Its run folder keeps what it did: the metrics so far and the \
             last checkpoint, from which `sophon-workbench resume <run folder>` continues it.",
        ),
        // (A run reported as ended while `running` was killed: it failed.)
        RunStatus::Failed | RunStatus::Running => (
            "Failed",
            "The red banner says why. What the run had written stays in its run folder; fix \
             the cause and start again.",
        ),
    }
}

/// What presenter mode narrates from: the run as it stands.
pub struct Story<'a> {
    pub metric: Metric,
    /// The domains, as a person says them ("shapes", "shapes on texture").
    pub original: String,
    pub restricted: String,
    pub series: &'a SeriesStore,
    /// The phase going (or waited at).
    pub phase: Option<Phase>,
    /// The phase stop the run waits at, until *Next*.
    pub waiting: Option<Phase>,
    pub step: usize,
    pub total_steps: usize,
    /// The attacker whose curves the attack plot shows.
    pub strategy: Option<&'a str>,
    /// The run's summary once it has ended.
    pub summary: Option<&'a Summary>,
}

/// Presenter mode's narration: a title and two or three plain sentences with the run's own
/// numbers, for the phase going, the phase stop waited at, or the ended run.
pub fn narrate(story: &Story<'_>) -> (String, Vec<String>) {
    let m = story.metric.label();
    let (orig, restr) = (&story.original, &story.restricted);
    let end = |series: &str, pick: fn(&[[f64; 2]]) -> Option<&[f64; 2]>| {
        story.series.get(series).and_then(pick).map(|p| p[1])
    };
    let last = |series: &str| end(series, <[_]>::last);
    let first = |series: &str| end(series, <[_]>::first);
    let pretrained = last(&names::pretrain_original(story.metric));
    let intact = names::sophon_original(story.metric);
    let probe = names::sophon_probe(story.metric);
    let selected = names::selected_original(story.metric);
    let f = |x: Option<f64>| x.map_or("—".to_string(), |x| format!("{x:.2}"));
    if let Some(summary) = story.summary {
        return ended_story(story, summary);
    }
    match (story.waiting, story.phase) {
        (Some(Phase::Sophon), _) => (
            "Pre-trained. Next: protect it".into(),
            vec![
                format!(
                    "The model learnt {orig}: it scores {} {m} on images of {orig} it never saw in training.",
                    f(pretrained)
                ),
                format!(
                    "Anyone could now fine-tune it on {restr}. SOPHON will try to stop that while \
                     keeping it good on {orig}. Press Next."
                ),
            ],
        ),
        // Without SOPHON (a preset with no [sophon]) the attack follows pre-training.
        (Some(Phase::Attack), _) if last(&intact).is_none() => (
            "Pre-trained. Next: attack it".into(),
            vec![
                format!(
                    "The model scores {} {m} on images of {orig} it never saw in training; \
                     nothing protects it in this run.",
                    f(pretrained)
                ),
                format!(
                    "An attacker now fine-tunes it on {restr}, and, to compare, a fresh model. \
                     Press Next."
                ),
            ],
        ),
        (Some(Phase::Attack), _) => (
            "Protected. Next: attack it".into(),
            vec![
                {
                    // The model handed on: model selection's pick where it kept one (the
                    // curve's last point is the last model's), else the last model.
                    let (model, score) = match story.series.get(&selected).and_then(<[_]>::last) {
                        Some(&[it, score]) => (
                            format!(
                                "the model handed on (the one of outer iteration {it}, picked by \
                                 model selection)"
                            ),
                            Some(score),
                        ),
                        None => ("the model still".to_string(), last(&intact)),
                    };
                    format!(
                        "After SOPHON {model} scores {} {m} on {orig} (it started at {}).",
                        f(score),
                        f(first(&intact).or(pretrained))
                    )
                },
                format!(
                    "An attacker now fine-tunes it on {restr}, and, to compare, the unprotected \
                     model and a fresh one. Press Next."
                ),
            ],
        ),
        (_, Some(Phase::Pretrain)) => (
            "Pre-training".into(),
            vec![
                format!(
                    "An ordinary model learns {orig}: step {} of {}.",
                    story.step, story.total_steps
                ),
                format!(
                    "Its {m} on images of {orig} it never saw in training: {} so far.",
                    f(pretrained)
                ),
            ],
        ),
        (_, Some(Phase::Sophon)) => (
            "SOPHON protects the model".into(),
            vec![
                format!(
                    "Outer iteration {} of {}: each one plays an attacker fine-tuning a copy on \
                     {restr} and nudges the model so that this goes badly, then trains it a little \
                     on {orig}.",
                    story.step, story.total_steps
                ),
                format!(
                    "On {orig} it scores {} (it started at {}); a copy briefly fine-tuned on \
                     {restr} reaches {} (at the start {}).",
                    f(last(&intact)),
                    f(first(&intact).or(pretrained)),
                    f(last(&probe)),
                    f(first(&probe))
                ),
            ],
        ),
        (_, Some(Phase::Attack)) => {
            let mut lines = vec![if last(&intact).is_some() {
                format!(
                    "The attacker fine-tunes three models on {restr}: the protected one (red), \
                     the original pre-trained one (blue) and a fresh one (grey)."
                )
            } else {
                format!(
                    "The attacker fine-tunes two models on {restr}: the pre-trained one (blue) \
                     and a fresh one (grey)."
                )
            }];
            lines.extend(attack_lines(story));
            ("The attack".into(), lines)
        }
        (_, Some(Phase::LoadingData)) | (_, None) => {
            let (title, text) = phase_text(story.phase);
            (title.into(), vec![text.into()])
        }
    }
}

/// The attack's numbers: after one epoch, and after the last one so far, from each start.
fn attack_lines(story: &Story<'_>) -> Vec<String> {
    let Some(strategy) = story.strategy else {
        return Vec::new();
    };
    let m = story.metric.label();
    let curve = |start| {
        story
            .series
            .get(&names::attack(strategy, start, story.metric))
            .unwrap_or_default()
    };
    let (p, o, s) = (
        curve(Start::Protected),
        curve(Start::Original),
        curve(Start::Scratch),
    );
    let at = |c: &[[f64; 2]], epoch: f64| c.iter().find(|q| q[0] == epoch).map(|q| q[1]);
    let mut lines = Vec::new();
    let say = |epoch: f64, when: &str| -> Option<String> {
        let (o, s) = (at(o, epoch)?, at(s, epoch)?);
        let p = at(p, epoch).map_or(String::new(), |p| format!(", the protected one {p:.2}"));
        Some(format!(
            "{when}, the original model reaches {o:.2} {m} on {}; a fresh model {s:.2}{p}.",
            story.restricted
        ))
    };
    lines.extend(say(1.0, "After one epoch"));
    let last_epoch = o.last().map(|q| q[0]).filter(|&e| e > 1.0);
    if let Some(e) = last_epoch {
        lines.extend(say(e, &format!("After {e} epochs")));
    }
    lines
}

/// The ended run: the verdict in plain words, and the attack's numbers.
fn ended_story(story: &Story<'_>, summary: &Summary) -> (String, Vec<String>) {
    let m = story.metric.label();
    let mut lines = Vec::new();
    if let (Some(pre), Some(pro)) = (&summary.pretrain, &summary.sophon) {
        lines.push(format!(
            "On {} the protected model scores {:.2} {m} (test), the pre-trained one {:.2}.",
            story.original, pro.scores.original, pre.scores.original
        ));
    }
    lines.extend(attack_lines(story));
    let title = match &summary.verdict {
        Some(v) => {
            lines.push(format!("Verdict: {} ({}).", v.status, v.reason));
            format!("Finished: {}", v.status)
        }
        None => format!("Ended: {}", summary.status.name()),
    };
    (title, lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_ending_has_its_own_text() {
        let titles: Vec<_> = [
            RunStatus::Finished,
            RunStatus::Stopped,
            RunStatus::Diverged,
            RunStatus::Failed,
        ]
        .into_iter()
        .map(|how| ended_text(how).0)
        .collect();
        assert_eq!(titles, ["Finished", "Stopped", "Diverged", "Failed"]);
        assert!(!titles.contains(&phase_text(None).0));
    }

    #[test]
    fn every_engine_phase_has_its_own_text() {
        let idle = phase_text(None).0;
        let mut titles: Vec<_> = Phase::ALL.iter().map(|&p| phase_text(Some(p)).0).collect();
        assert!(!titles.contains(&idle));
        titles.dedup();
        assert_eq!(titles.len(), Phase::ALL.len(), "{titles:?}");
    }

    fn story(series: &SeriesStore) -> Story<'_> {
        Story {
            metric: Metric::Acc,
            original: "shapes".into(),
            restricted: "shapes on texture".into(),
            series,
            phase: Some(Phase::Attack),
            waiting: None,
            step: 20,
            total_steps: 60,
            strategy: Some("reference"),
            summary: None,
        }
    }

    #[test]
    fn the_narration_quotes_the_runs_own_numbers_at_each_stop() {
        let mut series = SeriesStore::default();
        series.push("pretrain/original_acc", 1.0, 0.5);
        series.push("pretrain/original_acc", 2.0, 0.784);
        let mut s = story(&series);
        s.phase = Some(Phase::Sophon);
        s.waiting = Some(Phase::Sophon);
        let (title, lines) = narrate(&s);
        assert_eq!(title, "Pre-trained. Next: protect it");
        assert!(
            lines[0].contains("scores 0.78 accuracy on images of shapes"),
            "{lines:?}"
        );

        let mut s = story(&series);
        s.waiting = Some(Phase::Attack);
        let (title, lines) = narrate(&s);
        assert_eq!(
            title, "Pre-trained. Next: attack it",
            "no SOPHON in the run"
        );
        assert!(lines[0].contains("nothing protects it"), "{lines:?}");

        series.push("sophon/original_acc", 0.0, 0.79);
        series.push("sophon/original_acc", 50.0, 0.75);
        let mut s = story(&series);
        s.waiting = Some(Phase::Attack);
        let (title, lines) = narrate(&s);
        assert_eq!(title, "Protected. Next: attack it");
        assert!(lines[0].contains("still scores 0.75 accuracy"), "{lines:?}");
        assert!(lines[0].contains("started at 0.79"), "{lines:?}");

        // With model selection, the model handed on is its pick, not the last one evaluated.
        series.push("sophon/original_acc", 100.0, 0.70);
        series.push("sophon/selected_original_acc", 50.0, 0.75);
        let mut s = story(&series);
        s.waiting = Some(Phase::Attack);
        let (_, lines) = narrate(&s);
        assert!(
            lines[0].contains(
                "(the one of outer iteration 50, picked by model selection) scores 0.75 accuracy"
            ),
            "{lines:?}"
        );
        assert!(!lines[0].contains("0.70"), "{lines:?}");
    }

    #[test]
    fn the_attack_narration_compares_the_three_starts_after_one_and_the_last_epoch() {
        let mut series = SeriesStore::default();
        for (start, curve) in [
            ("protected", [0.3, 0.22, 0.25]),
            ("original", [0.3, 0.68, 0.71]),
            ("scratch", [0.1, 0.1, 0.27]),
        ] {
            for (epoch, v) in curve.iter().enumerate() {
                series.push(
                    &format!("attack/reference/{start}/restricted_acc"),
                    epoch as f64,
                    *v,
                );
            }
        }
        let (_, lines) = narrate(&story(&series));
        let text = lines.join(" ");
        assert!(
            text.contains(
                "After one epoch, the original model reaches 0.68 accuracy on shapes on texture; a fresh model 0.10, the protected one 0.22."
            ),
            "{text}"
        );
        assert!(
            text.contains("After 2 epochs, the original model reaches 0.71"),
            "{text}"
        );
    }
}

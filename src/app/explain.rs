//! The "explain" panel: what is happening now, in a few plain sentences per phase, for
//! lectures and first-time users.

use crate::sophon::Phase;
use crate::sophon::summary::RunStatus;

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
}

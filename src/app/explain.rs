//! The "explain" panel: what is happening now, in a few plain sentences per phase, for
//! lectures and first-time users.

/// Title and plain-language explanation of a phase name as the worker reports it.
pub fn phase_text(phase: Option<&str>) -> (&'static str, &'static str) {
    match phase {
        None => (
            "Ready",
            "Pick an original domain (what the model should stay good at) and a restricted domain \
             (what nobody should be able to fine-tune it for). Start runs four phases: \
             pre-training, SOPHON's protection, and an attack that fine-tunes the protected \
             model, the unprotected one and a fresh one, so you can compare them.",
        ),
        Some("loading data") => (
            "Loading data",
            "The two domains' images are generated or read from disk and resized to the model's \
             input. Nothing is learned yet.",
        ),
        Some("pretrain") => (
            "Pre-training",
            "An ordinary model (a classifier, or a denoiser for the denoising task) is trained \
             on the original domain. This is the model a company would publish, and the one \
             SOPHON will protect. The intactness curve starts from its original-domain score.",
        ),
        Some("sophon") => (
            "SOPHON: simulated fine-tuning and normal training",
            "Each outer iteration first plays the attacker: a copy of the model is fine-tuned for \
             a few steps on the restricted domain, and the real model is nudged (first-order \
             MAML) so that this fine-tuning goes badly (fine-tuning suppression, FTS). Then a few \
             normal training steps on the original domain keep it good there (NTR). Watch \
             intactness hold while the probe (how well a copy does on the restricted domain \
             after a short fine-tune) stays bad.",
        ),
        Some("attack") => (
            "Attack: can it still be fine-tuned?",
            "Now a real attacker fine-tunes three models on the restricted domain with each \
             strategy: the protected model, the original pre-trained model and a model from \
             scratch. SOPHON works when the protected curve is no better than the scratch \
             curve (accuracy no higher, ε-MSE no lower): fine-tuning it is no better than \
             starting from nothing.",
        ),
        Some(_) => (
            "Working",
            "The worker is busy with a step of the experiment.",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_engine_phase_has_its_own_text() {
        let idle = phase_text(None).0;
        let other = phase_text(Some("something else")).0;
        for phase in ["loading data", "pretrain", "sophon", "attack"] {
            let title = phase_text(Some(phase)).0;
            assert_ne!(title, idle);
            assert_ne!(title, other, "{phase} falls through to the generic text");
        }
    }
}

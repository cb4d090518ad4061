//! Model shapes and burn recorder round-trips.

use burn::module::Module;
use burn::tensor::{Device, Distribution, Tensor};
use sophon_workbench::config::ModelKind;
use sophon_workbench::model::ClassifierConfig;

#[test]
fn recorder_round_trip_restores_every_model_exactly() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    for kind in ModelKind::ALL {
        let config = ClassifierConfig::new(kind, 1, 16, 10).with_hidden(vec![32]);
        device.seed(1);
        let trained = config.init(&device);
        let path = dir.path().join(format!("{}.bpk", kind.name()));
        trained.clone().save_file(&path).unwrap();
        device.seed(2);
        let fresh = config.init(&device);
        let x = Tensor::<4>::random([3, 1, 16, 16], Distribution::Default, &device);
        let before = trained.forward(x.clone()).into_data();
        assert_ne!(
            fresh.forward(x.clone()).into_data(),
            before,
            "{kind:?}: seeds differ"
        );
        let loaded = fresh.try_load_file(&path).unwrap();
        loaded
            .forward(x)
            .into_data()
            .assert_approx_eq::<f32>(&before, Default::default());
    }
}

#[test]
fn loading_a_checkpoint_into_another_architecture_fails_cleanly() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cnn.bpk");
    ClassifierConfig::new(ModelKind::CnnSmall, 1, 16, 10)
        .init(&device)
        .save_file(&path)
        .unwrap();
    let mlp = ClassifierConfig::new(ModelKind::Mlp, 1, 16, 10).init(&device);
    assert!(mlp.try_load_file(&path).is_err());
    let garbage = dir.path().join("garbage.bpk");
    std::fs::write(&garbage, b"not a burnpack").unwrap();
    let cnn = ClassifierConfig::new(ModelKind::CnnSmall, 1, 16, 10).init(&device);
    assert!(cnn.try_load_file(&garbage).is_err());
}

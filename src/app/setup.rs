//! The setup panel: every field of the experiment, each with a one-sentence tooltip. It edits an
//! [`ExperimentConfig`] in place and returns what it wants done elsewhere (file dialogs), so it
//! never touches a thread, a file or the worker itself.

use std::path::PathBuf;

use egui::{Color32, ComboBox, DragValue, Grid, Id, RichText, Ui};

use crate::config::sophon::{
    Environment, GuardConfig, SelectConfig, SophonConfig, SuppressionLoss,
};
use crate::config::{
    AttackStrategy, Background, Cifar100Labels, DataSource, DiffusionConfig, ExperimentConfig,
    Layers, ModelKind, OptimizerConfig, OptimizerKind, ProceduralDomain, Task,
};
use crate::run::BackendChoice;

/// The first validation problem: the dotted field and what is wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// Which domain a data-source widget edits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Original,
    Restricted,
}

impl Side {
    pub fn field(self) -> &'static str {
        match self {
            Side::Original => "original",
            Side::Restricted => "restricted",
        }
    }
}

/// A file or folder path the user asked to pick with a dialog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PickTarget {
    pub side: Side,
    /// The data-source field: `train_images`, `dir`, `train`, ...
    pub field: &'static str,
    pub folder: bool,
}

/// What the setup panel asks the app to do.
#[derive(Debug, Clone, PartialEq)]
pub enum SetupAction {
    Pick(PickTarget),
}

/// Everything the panel edits, besides the config: the backend is a run setting, not part of
/// the preset.
pub struct SetupState<'a> {
    pub config: &'a mut ExperimentConfig,
    pub backend: &'a mut BackendChoice,
    pub error: Option<&'a FieldError>,
    /// True while a run is going: the setup is then read-only.
    pub locked: bool,
    /// Drawn under each domain's fields (the app shows sample thumbnails there).
    pub domain_footer: &'a mut dyn FnMut(&mut Ui, Side),
}

pub fn setup_ui(ui: &mut Ui, state: SetupState<'_>) -> Vec<SetupAction> {
    let mut actions = Vec::new();
    let SetupState {
        config,
        backend,
        error,
        locked,
        domain_footer,
    } = state;
    ui.add_enabled_ui(!locked, |ui| {
        experiment_ui(ui, config, backend, error);
        ui.separator();
        for side in [Side::Original, Side::Restricted] {
            let title = match side {
                Side::Original => "Original domain (keep it good here)",
                Side::Restricted => "Restricted domain (make it non-fine-tunable here)",
            };
            egui::CollapsingHeader::new(RichText::new(title).strong())
                .id_salt(side.field())
                .default_open(true)
                .show(ui, |ui| {
                    let source = match side {
                        Side::Original => &mut config.original,
                        Side::Restricted => &mut config.restricted,
                    };
                    source_ui(ui, side, source, error, &mut actions);
                    domain_footer(ui, side);
                });
        }
        ui.separator();
        egui::CollapsingHeader::new(RichText::new("Pre-training").strong())
            .default_open(false)
            .show(ui, |ui| pretrain_ui(ui, config, error));
        if config.task == Task::Denoising {
            egui::CollapsingHeader::new(RichText::new("Diffusion").strong())
                .default_open(false)
                .show(ui, |ui| diffusion_ui(ui, &mut config.diffusion, error));
        }
        let task = config.task;
        egui::CollapsingHeader::new(RichText::new("SOPHON").strong())
            .default_open(true)
            .show(ui, |ui| sophon_ui(ui, task, &mut config.sophon, error));
        egui::CollapsingHeader::new(RichText::new("Attacker strategies").strong())
            .default_open(false)
            .show(ui, |ui| strategies_ui(ui, config, error));
    });
    actions
}

/// A red line under the widget when the first validation problem is about `field` (or a field
/// inside it).
pub fn field_error_ui(ui: &mut Ui, error: Option<&FieldError>, field: &str) {
    if let Some(e) = error
        && (e.field == field
            || e.field.starts_with(&format!("{field}."))
            || e.field.starts_with(&format!("{field}[")))
    {
        ui.label(RichText::new(e.message.clone()).color(Color32::LIGHT_RED))
            .on_hover_text(&e.field);
        ui.end_row();
    }
}

/// A grid row: a label, then the widgets `add` puts beside it, which name themselves after the
/// label (`labelled_by`) so screen readers and UI tests can find them.
fn row(ui: &mut Ui, label: &str, tip: &str, add: impl FnOnce(&mut Ui, Id)) {
    let label = ui.label(label).on_hover_text(tip);
    ui.horizontal(|ui| add(ui, label.id))
        .response
        .on_hover_text(tip);
    ui.end_row();
}

fn count(ui: &mut Ui, l: Id, value: &mut usize, min: usize, max: usize) {
    ui.add(DragValue::new(value).range(min..=max).speed(1.0))
        .labelled_by(l);
}

/// A learning rate or another small positive number, shown in scientific notation.
fn small(ui: &mut Ui, l: Id, value: &mut f64, max: f64) {
    let speed = (*value * 0.02).max(1e-7);
    ui.add(
        DragValue::new(value)
            .range(0.0..=max)
            .speed(speed)
            .custom_formatter(|v, _| format!("{v:.2e}"))
            .custom_parser(|s| s.trim().parse().ok()),
    )
    .labelled_by(l);
}

fn enum_combo<T: PartialEq + Copy>(
    ui: &mut Ui,
    l: Id,
    id: &str,
    value: &mut T,
    options: &[(T, &str)],
) {
    let current = options
        .iter()
        .find(|(v, _)| v == value)
        .map_or("?", |(_, n)| n);
    ComboBox::from_id_salt(id)
        .selected_text(current)
        .show_ui(ui, |ui| {
            for (v, name) in options {
                ui.selectable_value(value, *v, *name);
            }
        })
        .response
        .labelled_by(l);
}

const OPTIMIZERS: [(OptimizerKind, &str); 5] = [
    (OptimizerKind::Sgd, "SGD"),
    (OptimizerKind::SgdMomentum, "SGD + momentum"),
    (OptimizerKind::Adam, "Adam"),
    (OptimizerKind::Adagrad, "Adagrad"),
    (OptimizerKind::Rmsprop, "RMSprop"),
];

fn optimizer_ui(
    ui: &mut Ui,
    l: Id,
    id: &str,
    opt: &mut OptimizerConfig,
    kinds: &[(OptimizerKind, &str)],
) {
    enum_combo(ui, l, id, &mut opt.kind, kinds);
    let lr = ui.label("lr");
    small(ui, lr.id, &mut opt.lr, 10.0);
}

fn experiment_ui(
    ui: &mut Ui,
    config: &mut ExperimentConfig,
    backend: &mut BackendChoice,
    error: Option<&FieldError>,
) {
    Grid::new("experiment").num_columns(2).show(ui, |ui| {
        row(ui, "Name", "The run folder is named after it.", |ui, l| {
            ui.text_edit_singleline(&mut config.name).labelled_by(l);
        });
        field_error_ui(ui, error, "name");
        row(
            ui,
            "Task",
            "Classification: the model labels images. Denoising: a diffusion model (UNet) predicts the noise in noised images. Switching keeps the data and picks the task's model and loss; File > built-in presets have tuned values.",
            |ui, _| {
                for task in [Task::Classification, Task::Denoising] {
                    if ui
                        .selectable_label(config.task == task, task.name())
                        .clicked()
                        && config.task != task
                    {
                        switch_task(config, task);
                    }
                }
            },
        );
        row(
            ui,
            "Seed",
            "Every random choice (data, initialisation, batch order) follows from it: same seed, same run.",
            |ui, l| {
                ui.add(DragValue::new(&mut config.seed)).labelled_by(l);
            },
        );
        row(
            ui,
            "Model",
            "The model that is pre-trained, protected and attacked. The UNet's width is the channels of its first level.",
            |ui, l| {
                let options: Vec<(ModelKind, &str)> = ModelKind::for_task(config.task)
                    .iter()
                    .map(|k| (*k, k.name()))
                    .collect();
                enum_combo(ui, l, "model", &mut config.model.kind, &options);
                if config.model.kind == ModelKind::Unet {
                    ui.label("width");
                    count(ui, l, &mut config.model.base, 4, 256);
                    ui.label("blocks");
                    count(ui, l, &mut config.model.blocks_per_level, 1, 8);
                }
            },
        );
        field_error_ui(ui, error, "model");
        row(
            ui,
            "Input",
            "Every image is resized to size × size pixels with this many channels (1 grey, 3 RGB).",
            |ui, l| {
                count(ui, l, &mut config.input.size, 8, 256);
                ui.label("px ×");
                count(ui, l, &mut config.input.channels, 1, 3);
                ui.label("ch");
                ui.checkbox(&mut config.input.convert_channels, "convert")
                    .on_hover_text("Convert grey<->RGB when a data set's channels differ.");
            },
        );
        field_error_ui(ui, error, "input");
        row(
            ui,
            "Backend",
            "Where training runs: auto picks wgpu on a real GPU and flex on the CPU otherwise.",
            |ui, l| {
                enum_combo(
                    ui,
                    l,
                    "backend",
                    backend,
                    &[
                        (BackendChoice::Auto, "auto"),
                        (BackendChoice::Wgpu, "wgpu"),
                        (BackendChoice::Flex, "flex (CPU)"),
                        (BackendChoice::Ndarray, "ndarray (CPU)"),
                    ],
                );
            },
        );
    });
}

#[derive(Clone, Copy, PartialEq)]
enum SourceKind {
    Procedural,
    Digits,
    Idx,
    Cifar10,
    Cifar100,
    Folder,
}

fn kind_of(s: &DataSource) -> SourceKind {
    match s {
        DataSource::Procedural { .. } => SourceKind::Procedural,
        DataSource::Digits => SourceKind::Digits,
        DataSource::Idx { .. } => SourceKind::Idx,
        DataSource::Cifar10 { .. } => SourceKind::Cifar10,
        DataSource::Cifar100 { .. } => SourceKind::Cifar100,
        DataSource::Folder { .. } => SourceKind::Folder,
    }
}

fn default_source(kind: SourceKind) -> DataSource {
    match kind {
        SourceKind::Procedural => DataSource::Procedural {
            domain: ProceduralDomain::Shapes,
            background: Background::Plain,
            train: 3000,
            test: 500,
        },
        SourceKind::Digits => DataSource::Digits,
        SourceKind::Idx => DataSource::Idx {
            train_images: PathBuf::new(),
            train_labels: PathBuf::new(),
            test_images: PathBuf::new(),
            test_labels: PathBuf::new(),
            train_limit: None,
            test_limit: None,
        },
        SourceKind::Cifar10 => DataSource::Cifar10 {
            dir: PathBuf::new(),
            train_limit: None,
            test_limit: None,
        },
        SourceKind::Cifar100 => DataSource::Cifar100 {
            dir: PathBuf::new(),
            labels: Cifar100Labels::Fine,
            train_limit: None,
            test_limit: None,
        },
        SourceKind::Folder => DataSource::Folder {
            train: PathBuf::new(),
            test: PathBuf::new(),
            train_limit: None,
            test_limit: None,
        },
    }
}

fn path_row(
    ui: &mut Ui,
    label: &str,
    tip: &str,
    path: &mut PathBuf,
    target: PickTarget,
    actions: &mut Vec<SetupAction>,
) {
    row(ui, label, tip, |ui, l| {
        let mut text = path.display().to_string();
        if ui
            .add(egui::TextEdit::singleline(&mut text).desired_width(150.0))
            .labelled_by(l)
            .changed()
        {
            *path = PathBuf::from(text);
        }
        if ui
            .button("…")
            .on_hover_text("Choose with a file dialog")
            .clicked()
        {
            actions.push(SetupAction::Pick(target));
        }
    });
}

fn limits_row(ui: &mut Ui, train: &mut Option<usize>, test: &mut Option<usize>) {
    row(
        ui,
        "Limits",
        "Keep at most this many training / test images (unchecked: all of them).",
        |ui, l| {
            for (name, limit, default) in [("train", train, 10_000), ("test", test, 2_000)] {
                let mut on = limit.is_some();
                if ui.checkbox(&mut on, name).changed() {
                    *limit = on.then_some(default);
                }
                if let Some(n) = limit {
                    count(ui, l, n, 1, 1_000_000);
                }
            }
        },
    );
}

fn source_ui(
    ui: &mut Ui,
    side: Side,
    source: &mut DataSource,
    error: Option<&FieldError>,
    actions: &mut Vec<SetupAction>,
) {
    let f = side.field();
    Grid::new(("source", f)).num_columns(2).show(ui, |ui| {
        row(
            ui,
            "Source",
            "Built-in procedural images need no files; the others read data you installed.",
            |ui, l| {
                let mut kind = kind_of(source);
                enum_combo(
                    ui,
                    l,
                    &format!("{f}-kind"),
                    &mut kind,
                    &[
                        (SourceKind::Procedural, "procedural (built in)"),
                        (SourceKind::Digits, "UCI digits (bundled)"),
                        (SourceKind::Idx, "IDX files (MNIST…)"),
                        (SourceKind::Cifar10, "CIFAR-10 binary"),
                        (SourceKind::Cifar100, "CIFAR-100 binary"),
                        (SourceKind::Folder, "image folders"),
                    ],
                );
                if kind != kind_of(source) {
                    *source = default_source(kind);
                }
            },
        );
        let target = |field, folder| PickTarget {
            side,
            field,
            folder,
        };
        match source {
            DataSource::Procedural {
                domain,
                background,
                train,
                test,
            } => {
                row(ui, "Domain", "Ten classes drawn procedurally from the seed.", |ui, l| {
                    enum_combo(
                        ui,
                        l,
                        &format!("{f}-domain"),
                        domain,
                        &[
                            (ProceduralDomain::Shapes, "shapes"),
                            (ProceduralDomain::Strokes, "strokes (digit skeletons)"),
                            (ProceduralDomain::Textures, "textures"),
                            (ProceduralDomain::Counting, "counting (1–10 blobs)"),
                        ],
                    );
                });
                row(
                    ui,
                    "Background",
                    "Plain: one flat colour. Texture: a faint random texture behind the foreground.",
                    |ui, l| {
                        enum_combo(
                            ui,
                            l,
                            &format!("{f}-bg"),
                            background,
                            &[(Background::Plain, "plain"), (Background::Texture, "texture")],
                        );
                    },
                );
                row(ui, "Images", "How many training and test images to generate.", |ui, l| {
                    ui.label("train");
                    count(ui, l, train, 0, 1_000_000);
                    ui.label("test");
                    count(ui, l, test, 0, 1_000_000);
                });
            }
            DataSource::Digits => {
                row(ui, "", "", |ui, _| {
                    ui.label("1438 train / 359 test, 8×8 grey, 10 classes");
                });
            }
            DataSource::Idx {
                train_images,
                train_labels,
                test_images,
                test_labels,
                train_limit,
                test_limit,
            } => {
                let tip = "An IDX file (MNIST format), plain or .gz.";
                path_row(ui, "Train images", tip, train_images, target("train_images", false), actions);
                path_row(ui, "Train labels", tip, train_labels, target("train_labels", false), actions);
                path_row(ui, "Test images", tip, test_images, target("test_images", false), actions);
                path_row(ui, "Test labels", tip, test_labels, target("test_labels", false), actions);
                limits_row(ui, train_limit, test_limit);
            }
            DataSource::Cifar10 {
                dir,
                train_limit,
                test_limit,
            } => {
                path_row(
                    ui,
                    "Folder",
                    "The folder with data_batch_1..5.bin and test_batch.bin.",
                    dir,
                    target("dir", true),
                    actions,
                );
                limits_row(ui, train_limit, test_limit);
            }
            DataSource::Cifar100 {
                dir,
                labels,
                train_limit,
                test_limit,
            } => {
                path_row(
                    ui,
                    "Folder",
                    "The folder with train.bin and test.bin.",
                    dir,
                    target("dir", true),
                    actions,
                );
                row(ui, "Labels", "100 fine classes or 20 super-classes.", |ui, l| {
                    enum_combo(
                        ui,
                        l,
                        &format!("{f}-labels"),
                        labels,
                        &[(Cifar100Labels::Fine, "fine (100)"), (Cifar100Labels::Coarse, "coarse (20)")],
                    );
                });
                limits_row(ui, train_limit, test_limit);
            }
            DataSource::Folder {
                train,
                test,
                train_limit,
                test_limit,
            } => {
                let tip = "A folder with one sub-folder of PNG/JPEG images per class.";
                path_row(ui, "Train folder", tip, train, target("train", true), actions);
                path_row(ui, "Test folder", tip, test, target("test", true), actions);
                limits_row(ui, train_limit, test_limit);
            }
        }
        field_error_ui(ui, error, f);
    });
}

/// Put a picked path into the data source it was picked for.
pub fn apply_pick(config: &mut ExperimentConfig, target: &PickTarget, path: PathBuf) {
    let source = match target.side {
        Side::Original => &mut config.original,
        Side::Restricted => &mut config.restricted,
    };
    let slot = match (source, target.field) {
        (DataSource::Idx { train_images, .. }, "train_images") => train_images,
        (DataSource::Idx { train_labels, .. }, "train_labels") => train_labels,
        (DataSource::Idx { test_images, .. }, "test_images") => test_images,
        (DataSource::Idx { test_labels, .. }, "test_labels") => test_labels,
        (DataSource::Cifar10 { dir, .. } | DataSource::Cifar100 { dir, .. }, "dir") => dir,
        (DataSource::Folder { train, .. }, "train") => train,
        (DataSource::Folder { test, .. }, "test") => test,
        _ => return, // the source kind changed while the dialog was open
    };
    *slot = path;
}

fn pretrain_ui(ui: &mut Ui, config: &mut ExperimentConfig, error: Option<&FieldError>) {
    let p = &mut config.pretrain;
    Grid::new("pretrain").num_columns(2).show(ui, |ui| {
        row(
            ui,
            "Epochs",
            "Passes over the original training set.",
            |ui, l| {
                count(ui, l, &mut p.epochs, 0, 1000);
            },
        );
        row(ui, "Batch size", "Images per training step.", |ui, l| {
            count(ui, l, &mut p.batch_size, 0, 10_000);
        });
        row(
            ui,
            "Optimizer",
            "The optimizer and learning rate of pre-training.",
            |ui, l| {
                optimizer_ui(ui, l, "pretrain-opt", &mut p.optimizer, &OPTIMIZERS);
            },
        );
        field_error_ui(ui, error, "pretrain");
    });
}

/// Change the task, keeping the data: the task's first model and loss, its guard measure, and
/// an input size the UNet can halve twice.
fn switch_task(config: &mut ExperimentConfig, task: Task) {
    config.task = task;
    config.model.kind = match task {
        Task::Classification => ModelKind::CnnSmall,
        Task::Denoising => ModelKind::Unet,
    };
    if task == Task::Denoising {
        config.input.size = config.input.size.div_ceil(4) * 4;
    }
    if let Some(s) = &mut config.sophon {
        s.loss = SuppressionLoss::for_task(task)[0];
        s.guard = None;
    }
}

fn diffusion_ui(ui: &mut Ui, d: &mut DiffusionConfig, error: Option<&FieldError>) {
    Grid::new("diffusion").num_columns(2).show(ui, |ui| {
        row(ui, "T (noise steps)", "Steps of DDPM's linear noise schedule (1000 in the paper).", |ui, l| {
            count(ui, l, &mut d.steps, 1, 10_000);
        });
        row(ui, "β range", "β_1 and β_T of the linear schedule: how much noise each step adds (1e-4 to 0.02 in DDPM).", |ui, l| {
            small(ui, l, &mut d.beta_start, 1.0);
            ui.label("to");
            small(ui, l, &mut d.beta_end, 1.0);
        });
        let mut fixed = d.fixed_t.is_some();
        row(ui, "Training t", "Uniform over 1..T (the DDPM way), or one fixed step (the reference code always used t = 1).", |ui, l| {
            ui.checkbox(&mut fixed, "fixed").labelled_by(l);
            if fixed {
                let t = d.fixed_t.get_or_insert(1);
                count(ui, l, t, 1, 10_000);
            }
        });
        if !fixed {
            d.fixed_t = None;
        }
        row(ui, "Sample grids", "Test images per domain, noised to step t and denoised back by the reverse chain (t = 20 in the paper's figures).", |ui, l| {
            count(ui, l, &mut d.samples, 1, 64);
            ui.label("images, t");
            count(ui, l, &mut d.sample_t, 1, 10_000);
        });
        field_error_ui(ui, error, "diffusion");
    });
}

fn sophon_ui(
    ui: &mut Ui,
    task: Task,
    sophon: &mut Option<SophonConfig>,
    error: Option<&FieldError>,
) {
    let mut on = sophon.is_some();
    if ui
        .checkbox(&mut on, "Protect with SOPHON")
        .on_hover_text("Off: the attack compares only the original and scratch models.")
        .changed()
    {
        *sophon = on.then(|| SophonConfig {
            loss: SuppressionLoss::for_task(task)[0],
            ..SophonConfig::default()
        });
    }
    let Some(s) = sophon else { return };
    Grid::new("sophon").num_columns(2).show(ui, |ui| {
        row(ui, "Outer iterations", "Each is ℓ_FTS suppression steps then ℓ_NTR normal-training steps.", |ui, l| {
            count(ui, l, &mut s.outer_iterations, 0, 100_000);
        });
        row(
            ui,
            "ℓ_FTS : ℓ_NTR",
            "The loop ratio: fine-tuning-suppression steps, then normal-training steps, per outer iteration (ℓ_FTS = 0 switches SOPHON's effect off).",
            |ui, l| {
                count(ui, l, &mut s.fts_loops, 0, 100);
                ui.label(":");
                count(ui, l, &mut s.ntr_loops, 0, 100);
            },
        );
        row(ui, "α (FTS lr)", "Learning rate of the Adam optimizer that applies the suppression gradient.", |ui, l| {
            small(ui, l, &mut s.alpha, 1.0);
        });
        row(ui, "β (NTR lr)", "Learning rate of the Adam optimizer of normal training on the original domain.", |ui, l| {
            small(ui, l, &mut s.beta, 1.0);
        });
        row(ui, "K (inner steps)", "Simulated fine-tuning steps per environment; memory does not grow with K.", |ui, l| {
            count(ui, l, &mut s.inner_steps, 0, 1000);
        });
        row(ui, "Suppression loss", "What the simulated fine-tuning is pushed towards on the restricted domain.", |ui, l| {
            enum_combo(
                ui,
                l,
                "loss",
                &mut s.loss,
                &SuppressionLoss::for_task(task)
                    .iter()
                    .map(|l| (*l, loss_label(*l)))
                    .collect::<Vec<_>>(),
            );
        });
        row(ui, "Clip", "L2 norm limit of the accumulated suppression gradient (0: no clipping).", |ui, l| {
            ui.add(DragValue::new(&mut s.clip).range(0.0..=100.0).speed(0.01))
                .labelled_by(l);
        });
        row(ui, "NTR batch", "Original-domain images per normal-training step.", |ui, l| {
            count(ui, l, &mut s.ntr_batch_size, 0, 10_000);
        });
        row(ui, "Evaluate every", "Measure intactness and the fine-tuning probe every this many outer iterations.", |ui, l| {
            count(ui, l, &mut s.eval_every, 0, 10_000);
        });
        row(ui, "Probe", "The cheap non-fine-tunability check: fine-tune a copy this many steps, then measure.", |ui, l| {
            count(ui, l, &mut s.probe.steps, 0, 10_000);
            ui.label("steps, lr");
            small(ui, l, &mut s.probe.optimizer.lr, 10.0);
        });
        row(ui, "Probe curve", "Measure the probe at this many evenly spaced steps of its fine-tune and average them, as the verdict's mean over epochs (1: after the last step only).", |ui, l| {
            count(ui, l, &mut s.probe.curve, 1, 10_000);
        });
        row(ui, "Suppression at start", "Also score the suppression loss at each simulated attacker's starting point (weighted as one more inner step): the model is then pushed to be wrong on the restricted domain before any fine-tuning too, not only after the K simulated steps.", |ui, _| {
            ui.checkbox(&mut s.suppress_start, "also before fine-tuning");
        });
        let tip = match task {
            Task::Classification => "Hand on the evaluated model with the lowest probe among those whose original validation accuracy has fallen at most this far below the pre-trained model's (off: the last model). Window: judge each evaluation by the mean probe of the last this many evaluations.",
            Task::Denoising => "Hand on the evaluated model with the highest probe ε-MSE among those whose original validation ε-MSE is at most this fraction above the pre-trained model's (off: the last model). Window: judge each evaluation by the mean probe of the last this many evaluations.",
        };
        row(ui, "Model selection", tip, |ui, _| {
            let mut on = s.select.is_some();
            if ui.checkbox(&mut on, "best evaluated model").changed() {
                s.select = on.then_some(SelectConfig {
                    holdout: None,
                    tolerance: match task {
                        Task::Classification => 0.03,
                        Task::Denoising => 0.1,
                    },
                    window: 1,
                });
            }
        });
        if let Some(select) = s.select.as_mut() {
            row(ui, "tolerance / window", tip, |ui, l| {
                ui.add(DragValue::new(&mut select.tolerance).range(0.0..=1.0).speed(0.005))
                    .labelled_by(l);
                count(ui, l, &mut select.window, 1, 1000);
            });
        }
        let mut guard = s.guard.as_ref().map(GuardConfig::threshold);
        let tip = match task {
            Task::Classification => "Stop SOPHON (rolling back the last iteration) when original accuracy falls below this.",
            Task::Denoising => "Stop SOPHON (rolling back the last iteration) when the original ε-MSE rises above this.",
        };
        row(ui, "Intactness guard", tip, |ui, l| {
            let mut on = guard.is_some();
            if ui.checkbox(&mut on, "on").changed() {
                guard = on.then_some(0.5);
            }
            if let Some(g) = guard.as_mut() {
                let range = match task {
                    Task::Classification => 0.0..=1.0,
                    Task::Denoising => 0.0..=10.0,
                };
                ui.add(DragValue::new(g).range(range).speed(0.01))
                    .labelled_by(l);
            }
        });
        s.guard = guard.map(|g| match task {
            Task::Classification => GuardConfig {
                min_original_acc: Some(g),
                max_original_mse: None,
            },
            Task::Denoising => GuardConfig {
                min_original_acc: None,
                max_original_mse: Some(g),
            },
        });
        field_error_ui(ui, error, "sophon");
    });
    ui.label(RichText::new("Simulated attackers (environments)").italics())
        .on_hover_text("Each FTS step fine-tunes a copy with every environment (or one drawn at random) and averages their suppression gradients.");
    let mut remove = None;
    let n = s.environments.len();
    for (i, env) in s.environments.iter_mut().enumerate() {
        Grid::new(("env", i)).num_columns(2).show(ui, |ui| {
            row(
                ui,
                &format!("#{}", i + 1),
                "The simulated attacker's optimizer and learning rate.",
                |ui, l| {
                    optimizer_ui(
                        ui,
                        l,
                        &format!("env-opt-{i}"),
                        &mut env.optimizer,
                        &OPTIMIZERS[..3],
                    );
                    if n > 1
                        && ui
                            .small_button("x")
                            .on_hover_text("Remove this environment")
                            .clicked()
                    {
                        remove = Some(i);
                    }
                },
            );
            row(
                ui,
                "batch / query",
                "Restricted images per inner step, and how many of them form the query part.",
                |ui, l| {
                    count(ui, l, &mut env.batch_size, 0, 10_000);
                    count(ui, l, &mut env.query_size, 0, 10_000);
                    ui.checkbox(&mut env.reinit_head, "re-init head")
                        .on_hover_text(
                            "Give the simulated attacker a fresh head, as a real one may.",
                        );
                },
            );
        });
    }
    if let Some(i) = remove {
        s.environments.remove(i);
    }
    ui.horizontal(|ui| {
        if ui.small_button("+ environment").clicked() {
            s.environments.push(Environment::reference());
        }
        if s.environments.len() > 1 {
            ui.checkbox(&mut s.draw_environment, "draw one per FTS step")
                .on_hover_text("Each FTS step runs one environment drawn at random (the reference code's way) instead of all of them.");
        }
    });
}

fn strategies_ui(ui: &mut Ui, config: &mut ExperimentConfig, error: Option<&FieldError>) {
    let strategies = &mut config.evaluation.strategies;
    let mut remove = None;
    for (i, s) in strategies.iter_mut().enumerate() {
        Grid::new(("strategy", i)).num_columns(2).show(ui, |ui| {
            row(
                ui,
                "Name",
                "Names the attack curves and summary entries.",
                |ui, l| {
                    ui.add(egui::TextEdit::singleline(&mut s.name).desired_width(110.0))
                        .labelled_by(l);
                    if ui
                        .small_button("x")
                        .on_hover_text("Remove this strategy")
                        .clicked()
                    {
                        remove = Some(i);
                    }
                },
            );
            row(
                ui,
                "Layers",
                "Which parameters the attacker fine-tunes.",
                |ui, l| {
                    enum_combo(
                        ui,
                        l,
                        &format!("layers-{i}"),
                        &mut s.layers,
                        &[
                            (Layers::All, "all"),
                            (Layers::ReinitHead, "re-init head, then all"),
                            (Layers::HeadOnly, "head only"),
                        ],
                    );
                },
            );
            row(
                ui,
                "Optimizer",
                "The attacker's optimizer and learning rate.",
                |ui, l| {
                    optimizer_ui(
                        ui,
                        l,
                        &format!("attack-opt-{i}"),
                        &mut s.optimizer,
                        &OPTIMIZERS,
                    );
                },
            );
            row(
                ui,
                "Batch, epochs",
                "Restricted images per step, and passes over the restricted training set.",
                |ui, l| {
                    count(ui, l, &mut s.batch_size, 0, 10_000);
                    count(ui, l, &mut s.epochs, 0, 1000);
                },
            );
            field_error_ui(ui, error, &format!("evaluation.strategies[{i}]"));
        });
        ui.separator();
    }
    if let Some(i) = remove {
        strategies.remove(i);
    }
    if ui.small_button("+ strategy").clicked() {
        strategies.push(AttackStrategy {
            name: format!("strategy-{}", strategies.len() + 1),
            layers: Layers::All,
            optimizer: OptimizerConfig::new(OptimizerKind::Adam, 1e-3),
            batch_size: 64,
            epochs: 5,
        });
    }
    Grid::new("evaluation").num_columns(2).show(ui, |ui| {
        let own = &mut config.evaluation.attacker_images;
        row(
            ui,
            "Attacker's own images",
            "Hold this many restricted training images out of SOPHON's: the attackers fine-tune on them alone, \
             as an attacker with its own data would. Off: the attackers fine-tune on the images SOPHON trained on.",
            |ui, l| {
                let mut on = own.is_some();
                if ui.checkbox(&mut on, "").labelled_by(l).changed() {
                    *own = on.then_some(400);
                }
                if let Some(n) = own {
                    count(ui, l, n, 1, 1_000_000);
                }
            },
        );
        field_error_ui(ui, error, "evaluation");
    });
}

fn loss_label(loss: SuppressionLoss) -> &'static str {
    match loss {
        SuppressionLoss::Ice => "ICE (paper)",
        SuppressionLoss::IceReference => "ICE (reference code)",
        SuppressionLoss::Klu => "KL from uniform",
        SuppressionLoss::CeAscent => "CE ascent (baseline)",
        SuppressionLoss::FeatureDos => "Feature DoS: switch features off",
        SuppressionLoss::IceFeatureDos => "ICE + feature DoS",
        SuppressionLoss::Dos => "DoS: predict no noise",
        SuppressionLoss::MseAscent => "MSE ascent (baseline)",
    }
}

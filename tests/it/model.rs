//! The bundled model is real: it was trained by this repository's code on the committed
//! CSV, retraining reproduces the shipped bytes, and it classifies rows it never saw.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use candle_core::Device;
use infergate::infer::demo;
use infergate::infer::model::{Batch, Model as _, ModelError};
use infergate::infer::tabular::TabularModel;
use infergate::infer::train::{self, TrainConfig, argmax};

fn iris() -> train::Dataset {
    train::parse_csv(demo::IRIS_CSV).unwrap()
}

#[test]
fn retraining_reproduces_the_shipped_files() {
    let trained = train::train(&iris(), &TrainConfig::iris()).unwrap();
    assert_eq!(
        trained.manifest_json,
        demo::MANIFEST,
        "manifest differs: run train-demo"
    );
    assert!(
        trained.weights == demo::WEIGHTS,
        "weights differ from src/infer/demo/model.safetensors: run `cargo run --release --bin train-demo`"
    );
}

#[test]
fn shipped_manifest_describes_a_good_model() {
    let model = demo::load().unwrap();
    let m = model.manifest();
    assert_eq!(m.name, "iris-mlp");
    assert_eq!(m.n_features(), 4);
    assert_eq!(m.labels, ["setosa", "versicolor", "virginica"]);
    assert_eq!((m.training.train_rows, m.training.heldout_rows), (120, 30));
    assert!(
        m.training.heldout_accuracy >= 0.93,
        "{}",
        m.training.heldout_accuracy
    );
}

#[test]
fn accuracy_on_every_row_is_real_and_random_weights_are_not_enough() {
    let data = iris();
    let all: Vec<usize> = (0..data.classes.len()).collect();
    let model = demo::load().unwrap();
    let accuracy = train::accuracy(&model, &data, &all).unwrap();
    assert!(
        accuracy >= 0.93,
        "bundled model accuracy on all 150 rows: {accuracy}"
    );

    // The same architecture after zero epochs: what the answers would be without training.
    let untrained = train::train(
        &data,
        &TrainConfig {
            epochs: 0,
            ..TrainConfig::iris()
        },
    )
    .unwrap();
    let model = TabularModel::from_bytes(
        &untrained.weights,
        untrained.manifest_json.as_bytes(),
        &Device::Cpu,
    )
    .unwrap();
    let accuracy = train::accuracy(&model, &data, &all).unwrap();
    assert!(
        accuracy < 0.7,
        "untrained accuracy should be near chance: {accuracy}"
    );
}

#[test]
fn known_flowers_get_their_species() {
    let model = demo::load().unwrap();
    let cases: [([f32; 4], &str); 3] = [
        ([5.1, 3.5, 1.4, 0.2], "setosa"),
        ([6.4, 3.2, 4.5, 1.5], "versicolor"),
        ([6.3, 3.3, 6.0, 2.5], "virginica"),
    ];
    for (features, species) in cases {
        let out = model
            .forward(&Batch {
                rows: 1,
                features: 4,
                data: features.to_vec(),
            })
            .unwrap();
        let row = out.row(0);
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        assert_eq!(
            model.manifest().labels[argmax(row)],
            species,
            "{features:?}: {row:?}"
        );
    }
}

#[test]
fn a_batch_equals_its_rows_one_by_one() {
    let data = iris();
    let model = demo::load().unwrap();
    let rows: Vec<usize> = (0..150).step_by(7).collect();
    let batch = Batch {
        rows: rows.len(),
        features: 4,
        data: rows
            .iter()
            .flat_map(|&r| data.features[r].clone())
            .collect(),
    };
    let together = model.forward(&batch).unwrap();
    for (i, &r) in rows.iter().enumerate() {
        let alone = model
            .forward(&Batch {
                rows: 1,
                features: 4,
                data: data.features[r].clone(),
            })
            .unwrap();
        for (a, b) in together.row(i).iter().zip(alone.row(0)) {
            assert!((a - b).abs() < 1e-6, "row {r}: {a} vs {b}");
        }
    }
}

#[test]
fn wrong_shapes_and_bad_files_are_errors_not_panics() {
    let model = demo::load().unwrap();
    let err = model
        .forward(&Batch {
            rows: 1,
            features: 3,
            data: vec![1.0, 2.0, 3.0],
        })
        .unwrap_err();
    assert!(
        matches!(
            err,
            ModelError::Shape {
                expected: 4,
                got: 3
            }
        ),
        "{err}"
    );

    let cpu = Device::Cpu;
    assert!(TabularModel::from_bytes(b"not safetensors", demo::MANIFEST.as_bytes(), &cpu).is_err());
    assert!(TabularModel::from_bytes(demo::WEIGHTS, b"{}", &cpu).is_err());
    let wider = demo::MANIFEST.replace("\"hidden\": [\n      16,", "\"hidden\": [\n      17,");
    assert_ne!(wider, demo::MANIFEST);
    let err = TabularModel::from_bytes(demo::WEIGHTS, wider.as_bytes(), &cpu).unwrap_err();
    assert!(err.to_string().contains("fc1.weight"), "{err}");
}

//! Any bytes as a version's `model.onnx`: loading gives a model or an error, and a loaded
//! model runs a batch or gives an error. tract's own panics are caught where the gateway
//! catches them, so they are not crashes here: by the loader (the version is
//! `UNAVAILABLE`), and around a run as the compute thread does (`infer/worker.rs`: that
//! request fails). A panic anywhere else is a crash (libFuzzer-sys aborts on a panic that
//! leaves the target). A hang or an unbounded allocation fails by libFuzzer's `-timeout`
//! and `-rss_limit_mb` (scripts/test/fuzz.sh).
#![no_main]

use std::panic::{AssertUnwindSafe, catch_unwind};

use infergate::infer::model::{Batch, Model};
use infergate::infer::onnx::sidecar::Sidecar;
use infergate::infer::onnx::{LoadInputs, OnnxError, OnnxModel};
use libfuzzer_sys::fuzz_target;

fn four_labels() -> LoadInputs {
    LoadInputs {
        sidecar: Sidecar {
            labels: Some(["a", "b", "c", "d"].map(String::from).to_vec()),
            ..Sidecar::default()
        },
        labels_file: None,
        declared: None,
    }
}

fuzz_target!(
    init: {
        // libFuzzer-sys's hook aborts on every panic, even one the gateway catches.
        std::panic::set_hook(Box::new(|_| {}));
    },
    |data: &[u8]| {
        let model = match OnnxModel::load(data, "fuzz", "1", &LoadInputs::default()) {
            // A network has no labels of its own (the tiny CNN's manifest gives four).
            Err(OnnxError::Sidecar(_)) => OnnxModel::load(data, "fuzz", "1", &four_labels()),
            loaded => loaded,
        };
        let Ok(model) = model else {
            return;
        };
        let features = model.info().row_len();
        let batch = Batch {
            rows: 2,
            features,
            data: vec![0.5; 2 * features],
        };
        let _ = catch_unwind(AssertUnwindSafe(|| model.forward(&batch)));
    }
);

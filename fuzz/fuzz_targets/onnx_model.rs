//! Any bytes as a version's `model.onnx`: loading gives a model or an error, and a loaded
//! model runs a batch or gives an error. tract's own panics are caught and reported by the
//! loader (the version is `UNAVAILABLE`), so they are not crashes here; a panic anywhere
//! else is (libFuzzer-sys aborts on a panic that leaves the target). A hang or an unbounded
//! allocation fails by libFuzzer's `-timeout` and `-rss_limit_mb` (scripts/test/fuzz.sh).
#![no_main]

use infergate::infer::model::{Batch, Model};
use infergate::infer::onnx::{LoadInputs, OnnxModel};
use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: {
        // libFuzzer-sys's hook aborts on every panic, even one the loader catches.
        std::panic::set_hook(Box::new(|_| {}));
    },
    |data: &[u8]| {
        let Ok(model) = OnnxModel::load(data, "fuzz", "1", &LoadInputs::default()) else {
            return;
        };
        let features = model.info().row_len();
        let batch = Batch {
            rows: 2,
            features,
            data: vec![0.5; 2 * features],
        };
        let _ = model.forward(&batch);
    }
);

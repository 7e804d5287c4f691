//! Any bytes as an image upload, the way `/predict` takes one: the first byte picks a raw
//! `image/*` body (even) or a `multipart/form-data` body with boundary `XB` (odd), the rest
//! is the body. Extraction, sniffing, the header check, decoding and preprocessing never
//! panic, never allocate past the limits, and an accepted upload is a finite tensor of the
//! model's input size.
//!
//! One exception, as in production: a panic inside `zune-jpeg` (0.5.15's AVX2 IDCT unwraps a
//! `None` on some corrupt JPEGs; input `corpus/image_upload/regress-zune-jpeg-idct-panic`,
//! found by this target) is caught as the gateway's decode pool catches it, where the client
//! gets a 422 (`tests/it/image_api.rs`). Any other panic aborts as before.
#![no_main]

use std::panic::{self, AssertUnwindSafe};
use std::sync::{Once, OnceLock};

use infergate::http::multipart;
use infergate::imaging::decode::{self, DecodeLimits};
use infergate::imaging::prepare_now;
use infergate::infer::manifest::{Interpolation, Preprocess};
use libfuzzer_sys::fuzz_target;

/// Small limits keep each run quick; the checks are the same at any size.
const LIMITS: DecodeLimits = DecodeLimits {
    max_dimension: 2048,
    max_pixels: 1_000_000,
    max_alloc: 64 * 1024 * 1024,
};

/// The bundled EfficientNet-Lite0's preprocessing.
const PREPROCESS: Preprocess = Preprocess {
    resize_shorter: 256,
    interpolation: Interpolation::Bilinear,
    crop: [224, 224],
    scale_divisor: 1.0,
    mean: [127.0, 127.0, 127.0],
    std: [128.0, 128.0, 128.0],
};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
    })
}

/// Lets a panic raised inside zune-jpeg unwind (to the `catch_unwind` below) instead of
/// aborting through libFuzzer's hook; every other panic still aborts.
fn tolerate_decoder_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let abort = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let in_decoder = info
                .location()
                .is_some_and(|l| l.file().contains("zune-jpeg"));
            if !in_decoder {
                abort(info);
            }
        }));
    });
}

fuzz_target!(|data: &[u8]| {
    tolerate_decoder_panics();
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let bytes = if mode % 2 == 1 {
        let upload =
            runtime().block_on(multipart::upload(bytes::Bytes::copy_from_slice(body), "XB"));
        match upload {
            Ok(upload) => upload.file,
            Err(_) => return,
        }
    } else {
        bytes::Bytes::copy_from_slice(body)
    };
    let Ok(format) = decode::sniff(&bytes) else {
        return;
    };
    if decode::check_header(&bytes, format, &LIMITS).is_err() {
        return;
    }
    // The decode pool's catch_unwind, as in production (see the module's doc).
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
        prepare_now(&bytes, format, &PREPROCESS, &LIMITS)
    }));
    if let Ok(Ok(prepared)) = outcome {
        assert_eq!(prepared.tensor.len(), 3 * 224 * 224);
        assert!(prepared.tensor.iter().all(|v| v.is_finite()));
        assert_eq!(prepared.md5.len(), 32);
    }
});

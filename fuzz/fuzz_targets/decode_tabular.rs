//! Any bytes as a `/predict` JSON body: decoding never panics, and whatever it accepts is
//! a non-empty list of finite numbers whose count matches.
#![no_main]

use infergate::http::body::decode_tabular;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(input) = decode_tabular(data) {
        assert!(input.len > 0);
        assert!(input.features.len() <= input.len);
        assert!(input.features.iter().all(|x| x.is_finite()));
    }
});

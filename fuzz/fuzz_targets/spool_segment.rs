//! Any bytes as a spool segment (a crash, a bad disk, someone else's file): reading never
//! panics, and what it reports adds up — intact records, then a tear covering the rest.
#![no_main]

use infergate::prediction_log::spool::parse_segment;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let contents = parse_segment(data);
    if let Some(torn) = contents.torn {
        assert!(torn.offset + torn.discarded_bytes == data.len() as u64);
    }
});

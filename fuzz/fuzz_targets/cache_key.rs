//! Cache-key canonicalization as a property: two JSON spellings of the same feature values
//! (integer or decimal, exponent, extra digits, `-0` for `0`, whitespace, member order)
//! decode to the same key, and values that differ (after folding `-0` into `0`) never share
//! one.
#![no_main]

use infergate::cache::key::{CacheKey, Input};
use infergate::http::body::decode_tabular;
use libfuzzer_sys::fuzz_target;

/// A spelling of `v` picked by `style`; every one parses back to `v` as an f32.
fn spell(v: f32, style: u8) -> String {
    match style % 6 {
        0 => format!("{v}"),
        1 => format!("{v:e}"),
        2 => format!("{:.17e}", f64::from(v)),
        // Integral values also as integers ("3" for 3.0).
        3 if v.fract() == 0.0 && v.abs() < 1e15 => format!("{}", v as i64),
        4 if v == 0.0 => "-0.0".to_owned(),
        5 => format!("{:E}", f64::from(v)),
        _ => format!("{v:?}"),
    }
}

fn body(values: &[f32], styles: &[u8], spaced: bool, model_first: bool) -> String {
    let sep = if spaced { " ,\n\t" } else { "," };
    let list: Vec<String> = values
        .iter()
        .zip(styles.iter().cycle())
        .map(|(v, s)| spell(*v, *s))
        .collect();
    let features = format!("\"features\":[{}]", list.join(sep));
    if model_first {
        format!("{{\"model\": null, {features}}}")
    } else {
        format!("{{{features}{sep}\"model\":null}}")
    }
}

fn key(json: &str) -> Option<CacheKey> {
    let input = decode_tabular(json.as_bytes()).ok()?;
    Some(CacheKey::new("m", "1", Input::Features(&input.features)))
}

fuzz_target!(|data: &[u8]| {
    // Values from 4-byte chunks (finite ones only: decoding refuses the rest), then a style
    // per value for each of two spellings.
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let n = (rest.len() / 6).min(64);
    if n == 0 {
        return;
    }
    let values: Vec<f32> = rest[..4 * n]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .map(|v| if v.is_finite() { v } else { 1.5 })
        .collect();
    let styles_a = &rest[4 * n..5 * n];
    let styles_b = &rest[5 * n..6 * n];
    let a = body(&values, styles_a, flags & 1 != 0, flags & 2 != 0);
    let b = body(&values, styles_b, flags & 4 != 0, flags & 8 != 0);
    let (Some(ka), Some(kb)) = (key(&a), key(&b)) else {
        panic!("a spelling of finite values was refused:\n{a}\n{b}");
    };
    assert_eq!(ka, kb, "one logical input, two keys:\n{a}\n{b}");

    // Change one value (by its canonical bits): the key must change.
    let i = usize::from(flags >> 4) % n;
    let mut other = values.clone();
    other[i] = if values[i] == 0.0 { 1.0 } else { -values[i] };
    let canonical = |v: f32| if v == 0.0 { 0u32 } else { v.to_bits() };
    if canonical(other[i]) != canonical(values[i]) {
        let c = body(&other, styles_a, false, false);
        let kc = key(&c).expect("finite values decode");
        assert_ne!(ka, kc, "two inputs, one key:\n{a}\n{c}");
    }
});

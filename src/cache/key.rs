//! Cache keys: a canonical encoding of (model name, model version, normalized input),
//! hashed with xxh3-128.
//!
//! The same logical request always gives the same key — `[1, 2.0]` and `[1.0, 2]` decode to
//! the same floats, and `-0.0` is folded into `0.0` — and another model name or version
//! never shares one. Redis keys carry a namespace and an encoding version, so a deploy that
//! changes this encoding cannot read entries written by the old one.

use std::fmt;

use xxhash_rust::xxh3::Xxh3;

use crate::infer::manifest::ModelInfo;

/// Bumped whenever the canonical encoding below changes.
pub const ENCODING_VERSION: u32 = 1;

/// Prefix of every Redis key.
pub const NAMESPACE: &str = "infergate";

/// What was asked, independent of how it was spelled.
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    /// A decoded tabular feature vector.
    Features(&'a [f32]),
    /// Raw image bytes.
    Image(&'a [u8]),
}

/// A 128-bit cache key, plus the model name it belongs to (for the Redis key's readability).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    hash: u128,
    model: String,
}

impl CacheKey {
    /// The key of `input` for `model` at `version`.
    pub fn new(model: &str, version: &str, input: Input<'_>) -> Self {
        Self::with_revision(model, version, 0, input)
    }

    /// The key of `input` for a loaded model: its name, version and the revision of the
    /// files it was loaded from, so that replacing a version's files in place never serves
    /// what the old files computed.
    pub fn for_model(info: &ModelInfo, input: Input<'_>) -> Self {
        Self::with_revision(&info.name, &info.version, info.revision, input)
    }

    fn with_revision(model: &str, version: &str, revision: u64, input: Input<'_>) -> Self {
        let mut h = Xxh3::new();
        // Every variable-length part is length-prefixed, so no two different tuples can
        // encode to the same bytes ("ab"+"c" vs "a"+"bc").
        h.update(&ENCODING_VERSION.to_le_bytes());
        for part in [model.as_bytes(), version.as_bytes()] {
            h.update(&(part.len() as u64).to_le_bytes());
            h.update(part);
        }
        // Revision 0 (configured models) adds nothing: their keys stay as they were.
        if revision != 0 {
            h.update(b"R");
            h.update(&revision.to_le_bytes());
        }
        match input {
            Input::Features(values) => {
                h.update(b"F");
                h.update(&(values.len() as u64).to_le_bytes());
                for v in values {
                    // -0.0 == 0.0 and gives the same prediction: one key. (NaN never gets
                    // here: decoding refuses non-finite numbers.)
                    let v = if *v == 0.0 { 0.0f32 } else { *v };
                    h.update(&v.to_bits().to_le_bytes());
                }
            }
            Input::Image(bytes) => {
                h.update(b"I");
                h.update(&(bytes.len() as u64).to_le_bytes());
                h.update(bytes);
            }
        }
        Self {
            hash: h.digest128(),
            model: model.to_owned(),
        }
    }

    /// The 128-bit hash.
    pub fn hash(&self) -> u128 {
        self.hash
    }

    /// The Redis key: `infergate:v1:<model>:<32 hex digits>`.
    pub fn redis_key(&self) -> String {
        format!(
            "{NAMESPACE}:v{ENCODING_VERSION}:{}:{:032x}",
            self.model, self.hash
        )
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::body::decode_tabular;

    fn key_of(body: &str) -> CacheKey {
        let input = decode_tabular(body.as_bytes()).unwrap();
        CacheKey::new("iris-mlp", "1.0.0", Input::Features(&input.features))
    }

    #[test]
    fn spellings_of_one_input_share_a_key() {
        let same = [
            r#"{"features":[1, 2.0, 0]}"#,
            r#"{"features":[1.0,2,-0.0]}"#,
            r#"{ "features" : [ 1e0, 0.2e1, 0e5 ] }"#,
            r#"{"model":"iris-mlp","features":[1.0,2.0,0.0]}"#,
        ];
        let first = key_of(same[0]);
        for body in &same[1..] {
            assert_eq!(key_of(body), first, "{body}");
        }
    }

    #[test]
    fn any_difference_gives_another_key() {
        let base = CacheKey::new("m", "1", Input::Features(&[1.0, 2.0]));
        let others = [
            CacheKey::new("m", "2", Input::Features(&[1.0, 2.0])),
            CacheKey::new("n", "1", Input::Features(&[1.0, 2.0])),
            CacheKey::new("m", "1", Input::Features(&[2.0, 1.0])),
            CacheKey::new("m", "1", Input::Features(&[1.0, 2.0, 0.0])),
            CacheKey::with_revision("m", "1", 7, Input::Features(&[1.0, 2.0])),
            CacheKey::new(
                "m",
                "1",
                Input::Features(&[1.0, f32::from_bits(2.0f32.to_bits() + 1)]),
            ),
            CacheKey::new("m1", "", Input::Features(&[1.0, 2.0])),
            CacheKey::new("m", "1", Input::Image(&[0, 0, 128, 63, 0, 0, 0, 64])),
        ];
        for other in &others {
            assert_ne!(other.hash(), base.hash(), "{other:?}");
        }
    }

    #[test]
    fn many_random_inputs_never_collide_and_are_stable() {
        // A property check over a deterministic stream of inputs: equal vectors give equal
        // keys, distinct vectors distinct keys.
        let mut seen = std::collections::HashMap::new();
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v: Vec<f32> = (0..4)
                .map(|i| ((x >> (i * 16)) & 0xff) as f32 / 8.0)
                .collect();
            let bits: Vec<u32> = v.iter().map(|f| f.to_bits()).collect();
            let k = CacheKey::new("iris-mlp", "1.0.0", Input::Features(&v));
            assert_eq!(
                k,
                CacheKey::new("iris-mlp", "1.0.0", Input::Features(&v.clone()))
            );
            if let Some(prev) = seen.insert(k.hash(), bits.clone()) {
                assert_eq!(prev, bits, "collision");
            }
        }
    }

    #[test]
    fn redis_keys_are_namespaced_and_versioned() {
        let k = CacheKey::new("iris-mlp", "1.0.0", Input::Features(&[1.0]));
        let r = k.redis_key();
        assert!(r.starts_with("infergate:v1:iris-mlp:"), "{r}");
        assert_eq!(r.len(), "infergate:v1:iris-mlp:".len() + 32);
    }
}

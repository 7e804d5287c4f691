//! The answer cache in front of the model: a key ([`key`]), an in-process LRU ([`l1`]) and,
//! when configured, Redis ([`l2`]).
//!
//! What is cached is the encoded answer — the JSON members that depend only on the model
//! and the input — never per-request fields (prediction id, `cached`, timing), so a hit is
//! answered by splicing bytes.

pub mod breaker;
pub mod key;
pub mod l1;
pub mod l2;

use std::sync::Arc;

use bytes::Bytes;

/// Magic and format version at the start of every stored value. Version 2 added the
/// probabilities; a version 1 value reads as a miss and is replaced.
const MAGIC: &[u8; 4] = b"IGA2";
/// Magic, checksum, confidence, the number of probabilities.
const HEADER_LEN: usize = 4 + 8 + 4 + 4;
/// More classes than any classifier has: a count above it is corruption.
const MAX_CLASSES: usize = 1 << 20;

/// Which cache tiers are on, as `/stats` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheMode {
    /// The in-process LRU and Redis.
    L1AndL2,
    /// The in-process LRU alone.
    L1,
    /// No cache.
    Disabled,
}

impl CacheMode {
    /// The mode with the in-process tier on (`l1`) and Redis on (`l2`); Redis without the
    /// in-process tier counts as no cache.
    pub fn of(l1: bool, l2: bool) -> Self {
        match (l1, l2) {
            (true, true) => Self::L1AndL2,
            (true, false) => Self::L1,
            (false, _) => Self::Disabled,
        }
    }

    /// The name `/stats` shows: `l1+l2`, `l1` or `disabled`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::L1AndL2 => "l1+l2",
            Self::L1 => "l1",
            Self::Disabled => "disabled",
        }
    }
}

/// A cached answer: the model-dependent JSON members of the answer (without the braces),
/// the winning confidence (for `/stats`; a regressor's answer has none), and the model's
/// whole output row (for answers that carry the output tensor, as the Open Inference
/// Protocol's do).
#[derive(Debug, Clone, PartialEq)]
pub struct CachedAnswer {
    /// Confidence of the top class; `None` for a regressor's value.
    pub confidence: Option<f32>,
    /// JSON members, e.g. `"model":{..},"prediction":"setosa",..,"top_k":[..]`.
    pub body: Bytes,
    /// The model's output: one probability per class, in class order (a regressor's: its
    /// value).
    pub probs: Arc<[f32]>,
}

impl CachedAnswer {
    /// Bytes this answer holds (the L1's budget counts them).
    pub fn size(&self) -> usize {
        self.body.len() + 4 * self.probs.len()
    }

    /// The bytes stored outside the process: magic, checksum, confidence (NaN for none),
    /// the probabilities (a count, then little-endian `f32`s), body.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.size());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&[0; 8]);
        out.extend_from_slice(&self.confidence.unwrap_or(f32::NAN).to_le_bytes());
        let count = u32::try_from(self.probs.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&count.to_le_bytes());
        for p in self.probs.iter() {
            out.extend_from_slice(&p.to_le_bytes());
        }
        out.extend_from_slice(&self.body);
        let sum = xxhash_rust::xxh3::xxh3_64(&out[12..]);
        out[4..12].copy_from_slice(&sum.to_le_bytes());
        out
    }

    /// Reads back what [`encode`](Self::encode) wrote; `None` for anything else (another
    /// format, truncation, bit rot, someone else's data under our key).
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() < HEADER_LEN || &bytes[..4] != MAGIC {
            return None;
        }
        let sum = u64::from_le_bytes(bytes[4..12].try_into().ok()?);
        if xxhash_rust::xxh3::xxh3_64(&bytes[12..]) != sum {
            return None;
        }
        let confidence = f32::from_le_bytes(bytes[12..16].try_into().ok()?);
        let count = u32::from_le_bytes(bytes[16..20].try_into().ok()?) as usize;
        if confidence.is_infinite() || count > MAX_CLASSES {
            return None;
        }
        let confidence = (!confidence.is_nan()).then_some(confidence);
        let rest = &bytes[HEADER_LEN..];
        let (probs, body) = rest.split_at_checked(4 * count)?;
        let probs = probs
            .chunks_exact(4)
            .map(|c| c.try_into().map(f32::from_le_bytes))
            .collect::<Result<Arc<[f32]>, _>>()
            .ok()?;
        Some(Self {
            confidence,
            body: Bytes::copy_from_slice(body),
            probs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_round_trips_and_garbage_is_refused() {
        let a = CachedAnswer {
            confidence: Some(0.75),
            body: Bytes::from_static(br#""prediction":"setosa""#),
            probs: Arc::from([0.75, 0.2, 0.05]),
        };
        let bytes = a.encode();
        assert_eq!(CachedAnswer::decode(&bytes), Some(a));
        let regression = CachedAnswer {
            confidence: None,
            body: Bytes::from_static(br#""prediction":151.5"#),
            probs: Arc::from([151.5]),
        };
        assert_eq!(CachedAnswer::decode(&regression.encode()), Some(regression));
        assert_eq!(CachedAnswer::decode(b"garbage"), None);
        assert_eq!(CachedAnswer::decode(&bytes[..bytes.len() - 1]), None);
        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(CachedAnswer::decode(&flipped), None);
        let mut counted = bytes.clone();
        counted[16] = 200;
        assert_eq!(CachedAnswer::decode(&counted), None, "a count past the end");
        let mut v1 = bytes;
        v1[3] = b'1';
        assert_eq!(CachedAnswer::decode(&v1), None, "an older format is a miss");
    }
}

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

use bytes::Bytes;

/// Magic and format version at the start of every stored value.
const MAGIC: &[u8; 4] = b"IGA1";
/// Magic, checksum, confidence.
const HEADER_LEN: usize = 4 + 8 + 4;

/// A cached answer: the model-dependent JSON members of the answer (without the braces),
/// and the winning confidence (for `/stats`).
#[derive(Debug, Clone, PartialEq)]
pub struct CachedAnswer {
    /// Confidence of the top class.
    pub confidence: f32,
    /// JSON members, e.g. `"model":{..},"prediction":"setosa",..,"top_k":[..]`.
    pub body: Bytes,
}

impl CachedAnswer {
    /// The bytes stored outside the process: magic, checksum, confidence, body.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.body.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&checksum(self.confidence, &self.body).to_le_bytes());
        out.extend_from_slice(&self.confidence.to_le_bytes());
        out.extend_from_slice(&self.body);
        out
    }

    /// Reads back what [`encode`](Self::encode) wrote; `None` for anything else (another
    /// format, truncation, bit rot, someone else's data under our key).
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() < HEADER_LEN || &bytes[..4] != MAGIC {
            return None;
        }
        let sum = u64::from_le_bytes(bytes[4..12].try_into().ok()?);
        let confidence = f32::from_le_bytes(bytes[12..16].try_into().ok()?);
        let body = &bytes[HEADER_LEN..];
        if checksum(confidence, body) != sum || !confidence.is_finite() {
            return None;
        }
        Some(Self {
            confidence,
            body: Bytes::copy_from_slice(body),
        })
    }
}

fn checksum(confidence: f32, body: &[u8]) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&confidence.to_le_bytes());
    h.update(body);
    h.digest()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_round_trips_and_garbage_is_refused() {
        let a = CachedAnswer {
            confidence: 0.75,
            body: Bytes::from_static(br#""prediction":"setosa""#),
        };
        let bytes = a.encode();
        assert_eq!(CachedAnswer::decode(&bytes), Some(a));
        assert_eq!(CachedAnswer::decode(b"garbage"), None);
        assert_eq!(CachedAnswer::decode(&bytes[..bytes.len() - 1]), None);
        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(CachedAnswer::decode(&flipped), None);
    }
}

//! W3C Trace Context (`traceparent`): a request's trace id is the client's when it sends a
//! valid `traceparent`, else a fresh one. The gateway's own span gets a fresh id, which the
//! answer's `traceparent` names as the parent of whatever the client does next; the trace
//! id goes into the request span and the prediction's log row, so a trace in the client's
//! tooling finds the row, and the row the trace.

use http::{HeaderMap, HeaderValue};
use uuid::Uuid;

use crate::hex;

/// The header, as W3C names it.
pub const TRACEPARENT: &str = "traceparent";

/// One request's place in a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    /// The trace, the client's or a new one.
    pub trace_id: [u8; 16],
    /// The client's span that sent the request, when it said.
    pub parent_id: Option<[u8; 8]>,
    /// The gateway's span for this request.
    pub span_id: [u8; 8],
    /// Trace flags (bit 0: sampled), the client's; sampled for a new trace.
    pub flags: u8,
}

impl TraceContext {
    /// The client's trace when `headers` carry a valid `traceparent`, else a new one.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let span_id = random_span_id();
        match headers
            .get(TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .and_then(parse)
        {
            Some((trace_id, parent_id, flags)) => Self {
                trace_id,
                parent_id: Some(parent_id),
                span_id,
                flags,
            },
            None => Self {
                trace_id: *Uuid::new_v4().as_bytes(),
                parent_id: None,
                span_id,
                flags: 0x01,
            },
        }
    }

    /// The trace id as 32 lowercase hex digits.
    pub fn trace_id_hex(&self) -> String {
        hex::encode(&self.trace_id)
    }

    /// The answer's `traceparent` (this trace, the gateway's span as parent) as a header
    /// value, built without formatting: it goes on every answer.
    pub fn header_value(&self) -> HeaderValue {
        HeaderValue::from_bytes(&self.traceparent_bytes())
            .unwrap_or_else(|_| HeaderValue::from_static("00-0-0-00"))
    }

    fn traceparent_bytes(&self) -> [u8; 55] {
        let mut out = *b"00-________________________________-________________-__";
        hex::encode_into(&self.trace_id, &mut out[3..35]);
        hex::encode_into(&self.span_id, &mut out[36..52]);
        hex::encode_into(&[self.flags], &mut out[53..55]);
        out
    }
}

fn random_span_id() -> [u8; 8] {
    let bytes = Uuid::new_v4().into_bytes();
    // The last 8 bytes of a v4 UUID: 62 random bits (the variant takes 2); never all zero.
    let mut id = [0u8; 8];
    id.copy_from_slice(&bytes[8..]);
    id
}

/// `00-<32 hex>-<16 hex>-<2 hex>` (version 00; a later version's first four fields are
/// read the same way, as the spec asks). All-zero ids are invalid.
fn parse(value: &str) -> Option<([u8; 16], [u8; 8], u8)> {
    let value = value.trim();
    let mut fields = value.split('-');
    let version = fields.next()?;
    let (trace, parent, flags) = (fields.next()?, fields.next()?, fields.next()?);
    let version = u8::from_str_radix(version, 16)
        .ok()
        .filter(|_| version.len() == 2)?;
    if version == 0xff || (version == 0 && (fields.next().is_some() || value.len() != 55)) {
        return None;
    }
    let trace_id: [u8; 16] = unhex(trace)?;
    let parent_id: [u8; 8] = unhex(parent)?;
    let [flags] = unhex::<1>(flags)?;
    let nonzero = |b: &[u8]| b.iter().any(|&x| x != 0);
    (nonzero(&trace_id) && nonzero(&parent_id)).then_some((trace_id, parent_id, flags))
}

fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    // Lowercase only, as the spec has it.
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(s.as_bytes().chunks_exact(2)) {
        *byte = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    const SAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(TRACEPARENT, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn a_valid_traceparent_is_honoured_and_answered_with_our_span() {
        let t = TraceContext::from_headers(&with(SAMPLE));
        assert_eq!(t.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            t.parent_id,
            Some([0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7])
        );
        let answer = t.header_value().to_str().unwrap().to_owned();
        assert!(
            answer.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{answer}"
        );
        assert!(answer.ends_with("-01"));
        assert!(
            !answer.contains("00f067aa0ba902b7"),
            "our own span, not the parent"
        );
        assert_eq!(parse(&answer).map(|p| p.0), Some(t.trace_id));
    }

    #[test]
    fn an_invalid_traceparent_starts_a_new_trace() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
        let a = TraceContext::from_headers(&with("garbage"));
        let b = TraceContext::from_headers(&HeaderMap::new());
        assert_ne!(a.trace_id, b.trace_id);
        assert_eq!((a.parent_id, a.flags), (None, 1));
        // A later version with more fields is read by its first four.
        assert!(parse(&format!("01{}-more", &SAMPLE[2..])).is_some());
    }
}

//! Image inputs, the "decode + validate" step for uploads: the format and the header's
//! dimensions are checked on the request path (cheap, before the cache key), and the full
//! decode and preprocessing run on the decode threads ([`pool`]), never on an I/O thread,
//! behind a bounded queue.
//!
//! [`decode`] turns bytes into upright 8-bit RGB, [`resample`] is Pillow's resize,
//! [`preprocess`] is torchvision's `Resize → CenterCrop → ToTensor → Normalize`.

pub mod decode;
pub mod pool;
pub mod preprocess;
pub mod resample;

use std::time::Duration;

use bytes::Bytes;
use md5::{Digest, Md5};
use tokio::time::Instant;

use crate::imaging::decode::{DecodeLimits, Format};
use crate::imaging::pool::{DecodePool, PoolError};
use crate::infer::manifest::Preprocess;
use crate::metrics::IMAGE_PREPARE_DURATION;

/// Why an upload cannot become a model input.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ImageError {
    /// Zero bytes.
    #[error("the image is empty; send a JPEG, PNG or WebP image")]
    Empty,
    /// No known image signature.
    #[error("the upload is not a JPEG, PNG or WebP image")]
    NotAnImage,
    /// A known format that is not accepted.
    #[error("{0} images are not accepted; send JPEG, PNG or WebP")]
    UnsupportedFormat(&'static str),
    /// Corrupt or truncated data.
    #[error("the image could not be decoded: {0}")]
    Invalid(String),
    /// The header asks for more pixels than allowed.
    #[error(
        "the image is {width}×{height} pixels; at most {max_dimension} pixels a side and \
         {max_pixels} pixels in all are accepted"
    )]
    TooLarge {
        width: u32,
        height: u32,
        max_dimension: u32,
        max_pixels: u64,
    },
    /// Decoding would allocate more than allowed.
    #[error("decoding the image would exceed the memory allowed for one upload ({0})")]
    DecodeLimit(String),
    /// The decode queue is full.
    #[error("the image decode queue is full ({capacity} waiting)")]
    Overloaded { capacity: usize },
    /// The decode threads are gone (shutting down).
    #[error("the decode threads have stopped")]
    Stopped,
}

/// An upload ready for the model.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// `3 × H × W` f32, normalized.
    pub tensor: Vec<f32>,
    /// MD5 of the uploaded bytes, lowercase hex (the replaced stack's `image_hash`).
    pub md5: String,
    /// Time spent decoding (EXIF orientation and RGB conversion included).
    pub decode: Duration,
    /// Time spent resizing, cropping and normalizing.
    pub preprocess: Duration,
}

/// Decoding limits and threads.
#[derive(Debug, Clone, Copy)]
pub struct ImagingSettings {
    /// What an upload may decode to.
    pub limits: DecodeLimits,
    /// Decode threads, at least 1.
    pub threads: usize,
    /// Uploads waiting for a decode thread; more are refused as overloaded.
    pub queue_capacity: usize,
}

/// Checks uploads and prepares them on the decode threads. Shared by every I/O thread.
pub struct Imaging {
    pool: DecodePool,
    limits: DecodeLimits,
}

impl Imaging {
    /// Starts the decode threads.
    pub fn start(cfg: &ImagingSettings) -> std::io::Result<Self> {
        Ok(Self {
            pool: DecodePool::start(cfg.threads, cfg.queue_capacity)?,
            limits: cfg.limits,
        })
    }

    /// The cheap checks, on the caller's thread: a known format and dimensions within the
    /// limits, read from the header alone.
    pub fn validate(&self, bytes: &[u8]) -> Result<Format, ImageError> {
        let format = decode::sniff(bytes)?;
        decode::check_header(bytes, format, &self.limits)?;
        Ok(format)
    }

    /// Decodes and preprocesses `bytes` on a decode thread. Dropping the future withdraws
    /// the job if no thread has taken it yet.
    pub async fn prepare(
        &self,
        bytes: Bytes,
        format: Format,
        preprocess: Preprocess,
    ) -> Result<Prepared, ImageError> {
        let limits = self.limits;
        let span = tracing::Span::current();
        self.pool
            .run(move || {
                let _entered = span.enter();
                prepare_now(&bytes, format, &preprocess, &limits)
            })
            .await
            .map_err(|e| match e {
                PoolError::Overloaded { capacity } => ImageError::Overloaded { capacity },
                PoolError::Stopped => ImageError::Stopped,
                PoolError::Panicked(message) => {
                    tracing::error!(%message, "image decoder panicked; the thread carries on");
                    ImageError::Invalid("the decoder failed on this image".to_owned())
                }
            })?
    }
}

/// Decode and preprocess on the calling thread (the decode threads, benches, fuzzing).
pub fn prepare_now(
    bytes: &[u8],
    format: Format,
    preprocess: &Preprocess,
    limits: &DecodeLimits,
) -> Result<Prepared, ImageError> {
    let started = Instant::now();
    let md5 = crate::hex::encode(&Md5::digest(bytes));
    let rgb = decode::decode(bytes, format, limits)?;
    let decoded = Instant::now();
    let tensor = preprocess::prepare(&rgb, preprocess);
    let (decode, preprocess) = (decoded - started, decoded.elapsed());
    metrics::histogram!(IMAGE_PREPARE_DURATION, "stage" => "decode").record(decode.as_secs_f64());
    metrics::histogram!(IMAGE_PREPARE_DURATION, "stage" => "preprocess")
        .record(preprocess.as_secs_f64());
    Ok(Prepared {
        tensor,
        md5,
        decode,
        preprocess,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_is_the_seeds_hex_digest() {
        // hashlib.md5(b"abc").hexdigest()
        assert_eq!(
            crate::hex::encode(&Md5::digest(b"abc")),
            "900150983cd24fb0d6963f7d28e17f72"
        );
    }
}

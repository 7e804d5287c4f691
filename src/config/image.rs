//! The `[image]` section: which image models to serve, what an upload may decode to, and
//! the decode threads.

use std::path::PathBuf;

use documented::{Documented, DocumentedFields};
use serde::{Deserialize, Serialize};

use crate::config::check::Checks;
use crate::imaging::ImagingSettings;
use crate::imaging::decode::DecodeLimits;
use crate::infer::cnn::Precision;

/// Image classification: POST /predict with `multipart/form-data` (field `file`, as
/// `curl -F file=@photo.jpg`) or an `image/jpeg`, `image/png` or `image/webp` body.
#[derive(Debug, Clone, Serialize, Deserialize, Documented, DocumentedFields)]
#[serde(default, deny_unknown_fields)]
pub struct ImageSection {
    /// Serve the bundled EfficientNet-Lite0 (ImageNet-1k, 1000 classes, top-5 answers)
    /// beside the other models.
    pub bundled: bool,
    /// More image models, each a safetensors file (`path`) and its manifest
    /// (`manifest_path`, default `manifest.json` beside it);
    /// scripts/models/convert-torchvision.py makes both from a torchvision ResNet checkpoint.
    /// Example: `[{ path = "/models/resnet18/model.safetensors" }]`
    pub models: Vec<ImageModelSection>,
    /// The model an image goes to without `?model=`; unset: the first image model (the
    /// configured ones, then the bundled one).
    /// Example: `"resnet18"`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_model: Option<String>,
    /// Widest and tallest image accepted, pixels: a larger upload is refused with 413
    /// before it is decoded (a decompression bomb never allocates).
    pub max_dimension: u32,
    /// Most pixels (width × height) accepted (413 above).
    pub max_pixels: u64,
    /// Most bytes decoding one upload may allocate (413 above).
    pub max_decode_bytes: u64,
    /// Decode threads (decoding and preprocessing never run on I/O threads); 0 = as many
    /// as compute threads.
    pub decode_threads: usize,
    /// Uploads waiting for a decode thread; more answer 503 with Retry-After.
    pub queue_capacity: usize,
    /// Most images in one forward pass (`batch.max_size` does not cap it); 0 = by the
    /// device the image models run on: 8 on the CPU, 64 on a GPU.
    /// Example: `8`
    pub max_batch_size: usize,
    /// The number format image models compute in, unless a model says otherwise (`f32`,
    /// `f16` or `bf16`): the 16-bit ones halve a GPU's memory traffic and use its tensor
    /// cores, and keep f32's top-1 on the test photos (docs/models.md has the measured
    /// differences); on the CPU they run candle's generic kernels, slower than f32. Inputs
    /// and probabilities stay f32.
    pub precision: Precision,
}

/// One more image model on disk (an element of `image.models`).
#[derive(Debug, Clone, Serialize, Deserialize, Documented, DocumentedFields)]
#[serde(deny_unknown_fields)]
pub struct ImageModelSection {
    /// The safetensors weights file.
    pub path: PathBuf,
    /// Its manifest; unset: `manifest.json` beside `path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_path: Option<PathBuf>,
    /// This model's `precision`; unset: `image.precision`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision: Option<Precision>,
}

impl ImageModelSection {
    /// The manifest's path.
    pub fn manifest(&self) -> PathBuf {
        self.manifest_path
            .clone()
            .unwrap_or_else(|| self.path.with_file_name("manifest.json"))
    }
}

impl Default for ImageSection {
    fn default() -> Self {
        Self {
            bundled: true,
            models: Vec::new(),
            default_model: None,
            max_dimension: 16_384,
            max_pixels: 40_000_000,
            max_decode_bytes: 512 * 1024 * 1024,
            decode_threads: 0,
            queue_capacity: 256,
            max_batch_size: 0,
            precision: Precision::F32,
        }
    }
}

impl ImageSection {
    /// Images per forward pass, with `max_batch_size = 0` resolved for where the image
    /// models run: on a GPU a batch is nearly free; on a CPU it gains little per image and
    /// adds the batch's latency to each.
    pub fn max_batch(&self, on_gpu: bool) -> usize {
        match (self.max_batch_size, on_gpu) {
            (0, true) => 64,
            (0, false) => 8,
            (n, _) => n,
        }
    }

    /// Whether any image model is configured.
    pub fn any_model(&self) -> bool {
        self.bundled || !self.models.is_empty()
    }

    /// The decode threads and limits, with `decode_threads = 0` resolved to
    /// `compute_threads`.
    pub fn imaging_settings(&self, compute_threads: usize) -> ImagingSettings {
        ImagingSettings {
            limits: DecodeLimits {
                max_dimension: self.max_dimension,
                max_pixels: self.max_pixels,
                max_alloc: self.max_decode_bytes,
            },
            threads: match self.decode_threads {
                0 => compute_threads,
                n => n,
            },
            queue_capacity: self.queue_capacity,
        }
    }

    /// Range and consistency checks.
    pub fn validate(&self, checks: &mut Checks) {
        checks.check(
            (1..=65_535).contains(&self.max_dimension),
            "image.max_dimension",
            "must be between 1 and 65535",
        );
        checks.check(
            self.max_pixels >= 1,
            "image.max_pixels",
            "must be at least 1",
        );
        checks.check(
            self.max_decode_bytes >= 1024 * 1024,
            "image.max_decode_bytes",
            "must be at least 1 MiB",
        );
        checks.check(
            self.decode_threads <= 1024,
            "image.decode_threads",
            "must be at most 1024",
        );
        checks.check(
            self.queue_capacity >= 1,
            "image.queue_capacity",
            "must be at least 1",
        );
        checks.check(
            self.max_batch_size <= 4096,
            "image.max_batch_size",
            "must be at most 4096 (0: by the device)",
        );
        checks.check(
            self.default_model.is_none() || self.any_model(),
            "image.default_model",
            "is set but no image model is configured (image.bundled = false, no image.models)",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_size_of_zero_is_the_devices_and_any_other_is_kept() {
        let by_device = ImageSection::default();
        assert_eq!(by_device.max_batch_size, 0);
        assert_eq!(by_device.max_batch(false), 8);
        assert_eq!(by_device.max_batch(true), 64);
        let set = ImageSection {
            max_batch_size: 3,
            ..ImageSection::default()
        };
        assert_eq!((set.max_batch(false), set.max_batch(true)), (3, 3));
    }
}

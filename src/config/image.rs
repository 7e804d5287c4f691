//! The `[image]` section: which image models to serve, what an upload may decode to, and
//! the decode threads.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Image classification: models, upload limits and decode threads.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImageConfig {
    /// Serve the bundled EfficientNet-Lite0 (ImageNet-1k) beside the other models.
    pub bundled: bool,
    /// More image models, each a safetensors file and its manifest.
    pub models: Vec<ImageModelConfig>,
    /// The model an image goes to without `?model=`; default: the first image model
    /// (the configured ones, then the bundled one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_model: Option<String>,
    /// Widest and tallest image accepted, pixels (413 above).
    pub max_dimension: u32,
    /// Most pixels (width × height) accepted (413 above).
    pub max_pixels: u64,
    /// Most bytes decoding one upload may allocate (413 above).
    pub max_decode_bytes: u64,
    /// Decode threads (decoding and preprocessing run there, never on I/O threads);
    /// 0 = as many as compute threads.
    pub decode_threads: usize,
    /// Uploads waiting for a decode thread; more answer 503.
    pub queue_capacity: usize,
    /// Most images in one forward pass.
    pub max_batch_size: usize,
}

/// One image model on disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageModelConfig {
    /// The safetensors weights file.
    pub path: PathBuf,
    /// Its manifest; default `manifest.json` beside `path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_path: Option<PathBuf>,
}

impl ImageModelConfig {
    /// The manifest's path.
    pub fn manifest(&self) -> PathBuf {
        self.manifest_path
            .clone()
            .unwrap_or_else(|| self.path.with_file_name("manifest.json"))
    }
}

/// Images per forward pass by default: on a GPU a batch is nearly free; on a CPU it gains
/// little per image and adds the batch's latency to each.
const DEFAULT_MAX_BATCH: usize = if cfg!(feature = "cuda") { 64 } else { 8 };

impl Default for ImageConfig {
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
            max_batch_size: DEFAULT_MAX_BATCH,
        }
    }
}

impl ImageConfig {
    /// Whether any image model is configured.
    pub fn any_model(&self) -> bool {
        self.bundled || !self.models.is_empty()
    }

    /// Range and consistency checks; `check(ok, key, message)` records a failure.
    pub fn validate(&self, check: &mut dyn FnMut(bool, &str, &str)) {
        check(
            (1..=65_535).contains(&self.max_dimension),
            "image.max_dimension",
            "must be between 1 and 65535",
        );
        check(
            self.max_pixels >= 1,
            "image.max_pixels",
            "must be at least 1",
        );
        check(
            self.max_decode_bytes >= 1024 * 1024,
            "image.max_decode_bytes",
            "must be at least 1 MiB",
        );
        check(
            self.decode_threads <= 1024,
            "image.decode_threads",
            "must be at most 1024",
        );
        check(
            self.queue_capacity >= 1,
            "image.queue_capacity",
            "must be at least 1",
        );
        check(
            (1..=4096).contains(&self.max_batch_size),
            "image.max_batch_size",
            "must be between 1 and 4096",
        );
        check(
            self.default_model.is_none() || self.any_model(),
            "image.default_model",
            "is set but no image model is configured (image.bundled = false, no image.models)",
        );
    }
}

//! Loading one version directory: `model.safetensors` and `manifest.json` (a tabular
//! manifest, or an image manifest with its labels file), or `model.onnx` with an optional
//! sidecar `manifest.json` ([`crate::infer::onnx`]), or, where the model directory holds a
//! Triton `config.pbtxt` ([`triton`]), the ONNX file it names with the signature it
//! declares. The model is the one the directory names (the directories decide the name and
//! version, whatever the manifest says), with a revision digest of the files, which the
//! cache keys carry.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use xxhash_rust::xxh3::Xxh3;

use crate::infer::delayed::Delayed;
use crate::infer::image::{ImageModel, ImageModelOptions};
use crate::infer::manifest::ModelInfo;
use crate::infer::model::{Batch, Model, ModelError, Outputs};
use crate::infer::onnx::declared::Declared;
use crate::infer::onnx::sidecar::Sidecar;
use crate::infer::onnx::{self, LoadInputs, OnnxModel};
use crate::infer::tabular::TabularModel;
use crate::repository::triton;

/// The weights' file name in a version directory.
pub const WEIGHTS: &str = "model.safetensors";
/// The manifest's file name in a version directory.
pub const MANIFEST: &str = "manifest.json";

/// A loaded model under the repository's name and version.
pub struct Versioned {
    inner: Box<dyn Model>,
    info: ModelInfo,
}

impl Model for Versioned {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn forward(&self, batch: &Batch) -> Result<Outputs, ModelError> {
        self.inner.forward(batch)
    }
}

/// How versions are loaded.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Image models: device and batch size.
    pub image: ImageModelOptions,
    /// The test aid `model.forward_delay_ms`: tabular models sleep this long before every
    /// forward pass (zero: not at all).
    pub forward_delay: Duration,
}

/// Loads the version directory `dir` as `name` at `version`. The error says which file
/// and what is wrong with it.
pub fn load_version(
    name: &str,
    version: &str,
    dir: &Path,
    opts: &LoadOptions,
) -> Result<Arc<dyn Model>, String> {
    let mut digest = Xxh3::new();
    let model_dir = dir.parent().unwrap_or(dir);
    let inner = if model_dir.join(triton::CONFIG_FILE).exists() {
        // A Triton repository's model: its configuration declares the signature.
        let triton = triton::read(model_dir, name, &mut digest)?;
        if !dir.join(&triton.model_file).exists() {
            return Err(format!(
                "{}: not in the version directory (a Triton model's versions hold the ONNX \
                 file its {} names, {})",
                triton.model_file,
                triton::CONFIG_FILE,
                onnx::MODEL_FILE
            ));
        }
        load_onnx(
            name,
            version,
            dir,
            &triton.model_file,
            Some(triton.declared),
            &mut digest,
        )?
    } else if dir.join(onnx::MODEL_FILE).exists() {
        if dir.join(WEIGHTS).exists() {
            return Err(format!(
                "both {} and {WEIGHTS}: a version directory holds one model; keep one",
                onnx::MODEL_FILE
            ));
        }
        load_onnx(name, version, dir, onnx::MODEL_FILE, None, &mut digest)?
    } else {
        load_native(dir, opts, &mut digest)?
    };
    let mut info = inner.info().clone();
    info.name = name.into();
    info.version = version.into();
    // What the engine adds of its own (an image model's reduced precision) counts too.
    digest.update(&info.revision.to_le_bytes());
    // Never 0: that is the configured models' revision, which adds nothing to a key.
    info.revision = digest.digest().max(1);
    Ok(Arc::new(Versioned { inner, info }))
}

/// Loads `model.safetensors` with its `manifest.json` (and an image manifest's labels
/// file), adding the files to `digest`.
fn load_native(
    dir: &Path,
    opts: &LoadOptions,
    digest: &mut Xxh3,
) -> Result<Box<dyn Model>, String> {
    let manifest = read(dir, MANIFEST)?;
    let weights = read(dir, WEIGHTS)?;
    let parsed: serde_json::Value =
        serde_json::from_slice(&manifest).map_err(|e| format!("{MANIFEST}: {e}"))?;
    for part in [&weights, &manifest] {
        digest.update(&(part.len() as u64).to_le_bytes());
        digest.update(part);
    }
    Ok(match parsed.get("labels_file").and_then(|v| v.as_str()) {
        // An image manifest names its labels file; a tabular one lists its labels.
        Some(labels_file) => {
            let labels = read_labels(dir, labels_file, digest)?;
            Box::new(
                ImageModel::from_bytes(weights, &manifest, &labels, &opts.image)
                    .map_err(|e| describe(&e))?,
            )
        }
        None => {
            let model = TabularModel::from_bytes(&weights, &manifest, &candle_core::Device::Cpu)
                .map_err(|e| describe(&e))?;
            if opts.forward_delay.is_zero() {
                Box::new(model)
            } else {
                Box::new(Delayed::new(model, opts.forward_delay))
            }
        }
    })
}

/// Loads the ONNX file `file` (`model.onnx`, or the one a Triton configuration names), with
/// the optional sidecar `manifest.json` and the labels file it names, and the signature a
/// configuration declares, adding the files to `digest`.
fn load_onnx(
    name: &str,
    version: &str,
    dir: &Path,
    file: &str,
    declared: Option<Declared>,
    digest: &mut Xxh3,
) -> Result<Box<dyn Model>, String> {
    let bytes = read(dir, file)?;
    digest.update(&(bytes.len() as u64).to_le_bytes());
    digest.update(&bytes);
    let mut inputs = LoadInputs {
        declared,
        ..LoadInputs::default()
    };
    if dir.join(MANIFEST).exists() {
        let manifest = read(dir, MANIFEST)?;
        digest.update(&manifest);
        inputs.sidecar = Sidecar::parse(&manifest).map_err(|e| format!("{MANIFEST}: {e}"))?;
    }
    if let Some(file) = &inputs.sidecar.labels_file {
        let labels = read_labels(dir, file, digest)?;
        inputs.labels_file = Some(labels.lines().map(str::to_owned).collect());
    }
    let model =
        OnnxModel::load(&bytes, name, version, &inputs).map_err(|e| format!("{file}: {e}"))?;
    Ok(Box::new(model))
}

/// The file `file` of the version directory; the error names it.
fn read(dir: &Path, file: &str) -> Result<Vec<u8>, String> {
    std::fs::read(dir.join(file)).map_err(|e| format!("{file}: {e}"))
}

/// A manifest's labels file, as text, added to `digest`.
fn read_labels(dir: &Path, file: &str, digest: &mut Xxh3) -> Result<String, String> {
    let labels = read(dir, checked_labels_file(file)?)?;
    digest.update(&labels);
    String::from_utf8(labels).map_err(|_| format!("{file}: not UTF-8 text"))
}

/// `file` when it names a file in the version directory itself.
fn checked_labels_file(file: &str) -> Result<&str, String> {
    if file.contains('/') || file.starts_with('.') {
        return Err(format!(
            "{MANIFEST}: labels_file {file:?} must be a file in the version directory"
        ));
    }
    Ok(file)
}

/// A load error with its causes, in one line.
fn describe(e: &ModelError) -> String {
    let mut text = format!("{WEIGHTS} with {MANIFEST}: {e}");
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infer::demo;

    fn options() -> LoadOptions {
        LoadOptions {
            image: ImageModelOptions::cpu(4),
            forward_delay: Duration::ZERO,
        }
    }

    #[test]
    fn a_version_loads_under_the_directorys_name_and_version() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(WEIGHTS), demo::WEIGHTS).unwrap();
        std::fs::write(dir.path().join(MANIFEST), demo::MANIFEST).unwrap();
        let model = load_version("flowers", "7", dir.path(), &options()).unwrap();
        assert_eq!(&*model.info().name, "flowers");
        assert_eq!(&*model.info().version, "7");
        assert_ne!(model.info().revision, 0);
        let again = load_version("flowers", "7", dir.path(), &options()).unwrap();
        assert_eq!(again.info().revision, model.info().revision);
        std::fs::write(dir.path().join(WEIGHTS), &demo::WEIGHTS[..100]).unwrap();
        let err = load_version("flowers", "7", dir.path(), &options())
            .err()
            .unwrap();
        assert!(err.starts_with(WEIGHTS), "{err}");
    }

    #[test]
    fn an_image_version_loads_with_its_labels_file() {
        let dir = tempfile::tempdir().unwrap();
        let bundled = demo::efficientnet_lite0::MANIFEST;
        let labels_file =
            serde_json::from_str::<serde_json::Value>(bundled).unwrap()["labels_file"]
                .as_str()
                .unwrap()
                .to_owned();
        std::fs::write(dir.path().join(WEIGHTS), demo::efficientnet_lite0::WEIGHTS).unwrap();
        std::fs::write(dir.path().join(MANIFEST), bundled).unwrap();
        let err = load_version("cats", "2", dir.path(), &options())
            .err()
            .unwrap();
        assert!(err.starts_with(&labels_file), "{err}");
        std::fs::write(
            dir.path().join(&labels_file),
            demo::efficientnet_lite0::LABELS,
        )
        .unwrap();
        let model = load_version("cats", "2", dir.path(), &options()).unwrap();
        let info = model.info();
        assert_eq!((&*info.name, &*info.version), ("cats", "2"));
        assert_eq!(info.kind(), crate::infer::manifest::InputKind::Image);
        assert_eq!(info.labels.len(), 1000);
    }

    #[test]
    fn missing_and_broken_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = load_version("m", "1", dir.path(), &options())
            .err()
            .unwrap();
        assert!(err.starts_with(MANIFEST), "{err}");
        std::fs::write(dir.path().join(MANIFEST), "{not json").unwrap();
        std::fs::write(dir.path().join(WEIGHTS), demo::WEIGHTS).unwrap();
        let err = load_version("m", "1", dir.path(), &options())
            .err()
            .unwrap();
        assert!(err.starts_with(MANIFEST), "{err}");
        std::fs::write(
            dir.path().join(MANIFEST),
            r#"{"labels_file": "../etc/passwd"}"#,
        )
        .unwrap();
        let err = load_version("m", "1", dir.path(), &options())
            .err()
            .unwrap();
        assert!(err.contains("labels_file"), "{err}");
    }
}

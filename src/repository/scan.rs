//! One look at the repository directory: each model's directory, its `model.toml`, and its
//! version directories (whole numbers, as Triton's), each with a stamp of its files (name,
//! size, modification time, inode) that tells a changed version from the same one without
//! reading its weights.

use std::io;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use crate::repository::settings::{FILE_NAME, ModelSettings};

/// What a look found in one model's directory.
#[derive(Debug, Clone)]
pub struct ModelDir {
    /// The directory's name: the model's name.
    pub name: String,
    /// Its settings (defaults without a `model.toml`), or why they cannot be read.
    pub settings: Result<ModelSettings, String>,
    /// Its version directories, any order.
    pub versions: Vec<VersionDir>,
}

/// One version directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionDir {
    /// The directory's name, a whole number.
    pub number: u64,
    /// Where it is.
    pub path: PathBuf,
    /// Its files as last seen.
    pub stamp: Stamp,
}

/// The files of a version directory: name, size, modification time (ns) and inode, by
/// name. Equal stamps: nothing was replaced (short of a tool that keeps all four).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stamp(Vec<(String, u64, i128, u64)>);

impl Stamp {
    /// The size of the files, bytes: what a version is expected to take before it was
    /// ever loaded and measured.
    pub fn bytes(&self) -> u64 {
        self.0.iter().map(|(_, size, _, _)| size).sum()
    }
}

/// Whether `name` can be a model's name: what a URL path segment and a metric label take
/// without escaping.
pub fn is_model_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Looks at `root`: every model directory in it, sorted by name. Entries that are not
/// directories, or whose names are not model names, are passed over.
pub fn scan(root: &Path) -> io::Result<Vec<ModelDir>> {
    let mut models = Vec::new();
    for entry in std::fs::read_dir(root)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if !is_model_name(&name) || !entry.path().is_dir() {
            continue;
        }
        models.push(scan_model(name, &entry.path()));
    }
    models.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(models)
}

/// Looks at one model's directory.
pub fn scan_model(name: String, dir: &Path) -> ModelDir {
    let settings = match std::fs::read_to_string(dir.join(FILE_NAME)) {
        Ok(text) => ModelSettings::parse(&text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(ModelSettings::default()),
        Err(e) => Err(format!("{FILE_NAME}: {e}")),
    };
    let mut versions = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            let number = entry
                .file_name()
                .to_str()
                .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|n| n.parse::<u64>().ok());
            if let (Some(number), true) = (number, path.is_dir()) {
                versions.push(VersionDir {
                    number,
                    stamp: stamp(&path),
                    path,
                });
            }
        }
    }
    ModelDir {
        name,
        settings,
        versions,
    }
}

/// The stamp of the version directory `dir`'s files, and of the files its model directory
/// holds beside the versions but `model.toml` (a Triton `config.pbtxt` and its label file,
/// which the version is loaded with), named `../<file>`. An unreadable directory has an
/// empty one.
pub fn stamp(dir: &Path) -> Stamp {
    let mut files = Vec::new();
    stamp_files(dir, "", &mut files);
    if let Some(model_dir) = dir.parent() {
        stamp_files(model_dir, "../", &mut files);
    }
    files.sort();
    Stamp(files)
}

/// Adds the stamps of `dir`'s files (but `model.toml`), their names prefixed.
fn stamp_files(dir: &Path, prefix: &str, files: &mut Vec<(String, u64, i128, u64)>) {
    use std::os::unix::fs::MetadataExt;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let Ok(meta) = std::fs::metadata(entry.path()) else {
                continue;
            };
            if !prefix.is_empty() && (!meta.is_file() || entry.file_name() == FILE_NAME) {
                continue;
            }
            let modified = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos() as i128);
            files.push((
                format!("{prefix}{}", entry.file_name().to_string_lossy()),
                meta.len(),
                modified,
                meta.ino(),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_look_finds_models_versions_and_settings() {
        let root = tempfile::tempdir().unwrap();
        let m = root.path().join("iris");
        std::fs::create_dir_all(m.join("1")).unwrap();
        std::fs::create_dir_all(m.join("2")).unwrap();
        std::fs::create_dir_all(m.join("latest")).unwrap();
        std::fs::write(m.join("1/model.safetensors"), b"x").unwrap();
        std::fs::write(m.join(FILE_NAME), "[version_policy]\nall = true\n").unwrap();
        std::fs::create_dir_all(root.path().join(".hidden/1")).unwrap();
        std::fs::write(root.path().join("README"), b"not a model").unwrap();
        std::fs::create_dir_all(root.path().join("bad/1")).unwrap();
        std::fs::write(
            root.path().join("bad").join(FILE_NAME),
            "version_policy = 3",
        )
        .unwrap();

        let found = scan(root.path()).unwrap();
        let names: Vec<&str> = found.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["bad", "iris"]);
        assert!(found[0].settings.is_err());
        let iris = &found[1];
        let mut numbers: Vec<u64> = iris.versions.iter().map(|v| v.number).collect();
        numbers.sort_unstable();
        assert_eq!(numbers, [1, 2]);
        assert!(iris.settings.as_ref().unwrap().version_policy.all);

        let before = stamp(&m.join("1"));
        assert_eq!(before, stamp(&m.join("1")));
        std::fs::write(m.join("1/model.safetensors"), b"xy").unwrap();
        assert_ne!(before, stamp(&m.join("1")));
    }

    #[test]
    fn a_versions_stamp_covers_the_triton_config_beside_it_but_not_model_toml() {
        let root = tempfile::tempdir().unwrap();
        let m = root.path().join("iris");
        std::fs::create_dir_all(m.join("1")).unwrap();
        std::fs::write(m.join("1/model.onnx"), b"x").unwrap();
        let bare = stamp(&m.join("1"));
        std::fs::write(m.join("config.pbtxt"), "max_batch_size: 8").unwrap();
        let with_config = stamp(&m.join("1"));
        assert_ne!(bare, with_config);
        std::fs::write(m.join("labels.txt"), "a\nb\n").unwrap();
        let with_labels = stamp(&m.join("1"));
        assert_ne!(with_config, with_labels);
        // The model's settings are read on their own: they reload no version.
        std::fs::write(m.join(FILE_NAME), "[version_policy]\nall = true\n").unwrap();
        // Nor does another version's directory.
        std::fs::create_dir_all(m.join("2")).unwrap();
        assert_eq!(with_labels, stamp(&m.join("1")));
    }

    #[test]
    fn model_names_are_path_and_label_safe() {
        for ok in ["iris", "resnet-18", "a_b.c", "M1"] {
            assert!(is_model_name(ok), "{ok}");
        }
        for bad in ["", ".x", "a/b", "a b", "é", &"x".repeat(129)] {
            assert!(!is_model_name(bad), "{bad}");
        }
    }
}

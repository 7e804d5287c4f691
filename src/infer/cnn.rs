//! Convolutional image classifiers on candle: the network families an image manifest can
//! name, built from safetensors with their original tensor names.
//!
//! A [`Network`] maps a normalized `N×3×H×W` f32 batch to `N×classes` f32 logits, computing
//! in its [`Precision`] in between. Nothing here knows about HTTP, images as files, or
//! threads.
//!
//! Every BatchNorm is folded into its conv at load (in f32, whatever the precision), and on
//! the CPU in f32 the layers run as custom ops (`cnn/depthwise.rs`, `cnn/im2col.rs` +
//! candle's `matmul`, `cnn/epilogue.rs`) on rayon's global pool; on other devices, or in
//! another precision, the same layers run as plain candle ops.

use candle_core::{DType, Tensor, bail};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

mod act;
mod conv;
mod depthwise;
mod efficientnet_lite;
mod epilogue;
mod host;
mod im2col;
mod pool;
mod resnet;
#[cfg(test)]
mod testutil;
mod window;

use efficientnet_lite::EfficientnetLite0;
use resnet::Resnet;

/// A network family and size, as an image manifest's `architecture` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Arch {
    /// EfficientNet-Lite0 with lukemelas `efficientnet_pytorch` tensor names.
    EfficientnetLite0,
    /// torchvision ResNet (18, 34 or 50) with torchvision tensor names.
    Resnet { depth: usize },
}

/// The number format a network keeps its weights and activations in on its device (an
/// image model's `precision`). Inputs and logits stay f32 either way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// 32-bit floats: the checkpoints' own, and the only one the CPU kernels take.
    #[default]
    F32,
    /// IEEE half precision: on a GPU, half the memory traffic and the tensor cores.
    F16,
    /// bfloat16: f32's range in 16 bits; GPUs from Ampere (compute capability 8.0) on.
    Bf16,
}

impl Precision {
    /// candle's element type for it.
    pub fn dtype(self) -> DType {
        match self {
            Precision::F32 => DType::F32,
            Precision::F16 => DType::F16,
            Precision::Bf16 => DType::BF16,
        }
    }

    /// Its name as configured: `f32`, `f16` or `bf16`.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
            Precision::Bf16 => "bf16",
        }
    }
}

/// A loaded network: normalized images in, logits out.
pub trait Network: Send + Sync {
    /// `x` is `N×3×H×W` f32 on the network's device; the result is `N×classes` f32 logits.
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor>;
}

/// Builds `arch` from `vb` (names as the architecture's original code has them), with a
/// final layer of `classes` outputs, computing in `precision`.
///
/// Tensors are read as f32 whatever the file holds (f16 is converted), BatchNorms folded in
/// f32, and the results kept in `precision`. A missing tensor, a tensor of the wrong shape,
/// a negative BatchNorm variance or an unsupported ResNet depth is an error naming it.
pub fn build(
    arch: Arch,
    vb: VarBuilder<'_>,
    classes: usize,
    precision: Precision,
) -> candle_core::Result<Box<dyn Network>> {
    let vb = vb.to_dtype(precision.dtype());
    let network: Box<dyn Network> = match arch {
        Arch::EfficientnetLite0 => Box::new(EfficientnetLite0::load(&vb, classes)?),
        Arch::Resnet { depth } => Box::new(Resnet::load(&vb, depth, classes)?),
    };
    Ok(match precision {
        Precision::F32 => network,
        _ => Box::new(Narrowed {
            network,
            dtype: precision.dtype(),
        }),
    })
}

/// A network built in a 16-bit precision, behind the f32 interface: the batch is narrowed
/// on the device (one f32 upload, then a cast where the GPU does it fastest) and the logits
/// widened back, so the softmax runs in f32.
struct Narrowed {
    network: Box<dyn Network>,
    dtype: DType,
}

impl Network for Narrowed {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        check_input(x, DType::F32)?;
        self.network
            .forward(&x.to_dtype(self.dtype)?)?
            .to_dtype(DType::F32)
    }
}

/// Rejects anything but an `N×3×H×W` batch of the network's float type, before a layer
/// fails less clearly.
fn check_input(x: &Tensor, dtype: DType) -> candle_core::Result<()> {
    match x.dims() {
        [_, 3, h, w] if *h > 0 && *w > 0 && x.dtype() == dtype => Ok(()),
        dims => bail!(
            "expected an N×3×H×W {dtype:?} image batch, got {dims:?} {:?}",
            x.dtype()
        ),
    }
}

impl Network for EfficientnetLite0 {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        check_input(x, self.dtype())?;
        EfficientnetLite0::forward(self, x)
    }
}

impl Network for Resnet {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        check_input(x, self.dtype())?;
        Resnet::forward(self, x)
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;
    use candle_nn::VarMap;

    use super::testutil::{Rng, assert_close, randomize, tensors};
    use super::*;

    #[test]
    fn arch_serde_matches_the_manifest_form() {
        let a: Arch = serde_json::from_str(r#"{"kind":"efficientnet_lite0"}"#).unwrap();
        assert_eq!(a, Arch::EfficientnetLite0);
        let a: Arch = serde_json::from_str(r#"{"kind":"resnet","depth":18}"#).unwrap();
        assert_eq!(a, Arch::Resnet { depth: 18 });
        assert_eq!(
            serde_json::to_string(&Arch::Resnet { depth: 50 }).unwrap(),
            r#"{"kind":"resnet","depth":50}"#
        );
        assert!(serde_json::from_str::<Arch>(r#"{"kind":"resnet","depth":18,"x":1}"#).is_err());
    }

    #[test]
    fn build_errors_name_the_problem() {
        let vb = VarBuilder::from_tensors(Default::default(), DType::F32, &Device::Cpu);
        let err = build(Arch::Resnet { depth: 18 }, vb.clone(), 10, Precision::F32)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("conv1.weight"), "{err}");
        let err = build(Arch::EfficientnetLite0, vb.clone(), 10, Precision::F32)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("_conv_stem.weight"), "{err}");
        let err = build(Arch::Resnet { depth: 152 }, vb, 10, Precision::F32)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("152"), "{err}");
    }

    #[test]
    fn f16_weights_are_read_as_f32() {
        let dev = Device::Cpu;
        let vm = VarMap::new();
        let arch = Arch::Resnet { depth: 18 };
        build(
            arch,
            VarBuilder::from_varmap(&vm, DType::F32, &dev),
            5,
            Precision::F32,
        )
        .unwrap();
        randomize(&vm, 9);
        let half: std::collections::HashMap<_, _> = tensors(&vm)
            .into_iter()
            .map(|(k, v)| (k, v.to_dtype(DType::F16).unwrap()))
            .collect();
        let single = half
            .iter()
            .map(|(k, v)| (k.clone(), v.to_dtype(DType::F32).unwrap()))
            .collect();
        let from_half = build(
            arch,
            VarBuilder::from_tensors(half, DType::F16, &dev),
            5,
            Precision::F32,
        )
        .unwrap();
        let from_single = build(
            arch,
            VarBuilder::from_tensors(single, DType::F32, &dev),
            5,
            Precision::F32,
        )
        .unwrap();
        let x = Rng::new(1).tensor((1, 3, 24, 24), -1.0, 1.0, &dev);
        let got = from_half.forward(&x).unwrap();
        assert_eq!(got.dtype(), DType::F32);
        assert_close(
            &got,
            &from_single.forward(&x).unwrap(),
            0.0,
            "f16 file vs f32 file",
        );
    }

    #[test]
    fn forward_rejects_wrong_inputs() {
        let dev = Device::Cpu;
        let vm = VarMap::new();
        let net = build(
            Arch::EfficientnetLite0,
            VarBuilder::from_varmap(&vm, DType::F32, &dev),
            3,
            Precision::F32,
        )
        .unwrap();
        for x in [
            Tensor::zeros((1, 1, 32, 32), DType::F32, &dev).unwrap(),
            Tensor::zeros((3, 32, 32), DType::F32, &dev).unwrap(),
            Tensor::zeros((1, 3, 32, 32), DType::F64, &dev).unwrap(),
            Tensor::zeros((1, 3, 0, 32), DType::F32, &dev).unwrap(),
        ] {
            assert!(net.forward(&x).is_err(), "{:?}", x.dims());
        }
        assert_eq!(
            net.forward(&Tensor::zeros((2, 3, 1, 1), DType::F32, &dev).unwrap())
                .unwrap()
                .dims(),
            &[2, 3]
        );
    }

    /// The 16-bit precisions run the candle path in their dtype behind the f32 interface,
    /// within their rounding of the f32 network's answer (the photos' figures are in
    /// BENCHMARKS.md, GPU).
    #[test]
    fn reduced_precisions_answer_f32_logits_close_to_f32() {
        let dev = Device::Cpu;
        for arch in [Arch::EfficientnetLite0, Arch::Resnet { depth: 18 }] {
            let vm = VarMap::new();
            build(
                arch,
                VarBuilder::from_varmap(&vm, DType::F32, &dev),
                5,
                Precision::F32,
            )
            .unwrap();
            randomize(&vm, 4);
            let weights = tensors(&vm);
            let net = |precision| {
                let vb = VarBuilder::from_tensors(weights.clone(), DType::F32, &dev);
                build(arch, vb, 5, precision).unwrap()
            };
            let x = Rng::new(8).tensor((2, 3, 32, 32), -1.0, 1.0, &dev);
            let want = net(Precision::F32).forward(&x).unwrap();
            for (precision, tolerance) in [(Precision::F16, 0.05), (Precision::Bf16, 0.3)] {
                let got = net(precision).forward(&x).unwrap();
                assert_eq!(got.dtype(), DType::F32, "{precision:?}");
                assert_close(&got, &want, tolerance, &format!("{arch:?} {precision:?}"));
                // Not f32 under another name: 16-bit rounding shows.
                let diff = (&got - &want).unwrap().abs().unwrap().max_all().unwrap();
                assert!(
                    diff.to_scalar::<f32>().unwrap() > 0.0,
                    "{arch:?} {precision:?}"
                );
            }
            let half = Tensor::zeros((1, 3, 32, 32), DType::F16, &dev).unwrap();
            assert!(net(Precision::F16).forward(&half).is_err(), "f32 in only");
        }
    }

    #[test]
    fn precision_serde_is_the_configured_name() {
        for p in [Precision::F32, Precision::F16, Precision::Bf16] {
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(json, format!("\"{}\"", p.name()));
            assert_eq!(serde_json::from_str::<Precision>(&json).unwrap(), p);
        }
        assert!(serde_json::from_str::<Precision>("\"fp16\"").is_err());
    }
}

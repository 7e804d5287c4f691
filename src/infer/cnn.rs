//! Convolutional image classifiers on candle: the network families an image manifest can
//! name, built from safetensors with their original tensor names.
//!
//! A [`Network`] maps a normalized `N×3×H×W` f32 batch to `N×classes` logits. Nothing here
//! knows about HTTP, images as files, or threads.
//!
//! Every BatchNorm is folded into its conv at load, and on the CPU the layers run as
//! custom ops (`cnn/depthwise.rs`, `cnn/im2col.rs` + candle's `matmul`, `cnn/epilogue.rs`)
//! on rayon's global pool; on other devices the same layers run as plain candle ops.

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

/// A loaded network: normalized images in, logits out.
pub trait Network: Send + Sync {
    /// `x` is `N×3×H×W` f32 on the network's device; the result is `N×classes` logits.
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor>;
}

/// Builds `arch` from `vb` (names as the architecture's original code has them), with a
/// final layer of `classes` outputs.
///
/// Tensors are read as f32 whatever the file holds (f16 is converted) and all math is f32.
/// A missing tensor, a tensor of the wrong shape, a negative BatchNorm variance or an
/// unsupported ResNet depth is an error naming it.
pub fn build(
    arch: Arch,
    vb: VarBuilder<'_>,
    classes: usize,
) -> candle_core::Result<Box<dyn Network>> {
    let vb = vb.to_dtype(DType::F32);
    Ok(match arch {
        Arch::EfficientnetLite0 => Box::new(EfficientnetLite0::load(&vb, classes)?),
        Arch::Resnet { depth } => Box::new(Resnet::load(&vb, depth, classes)?),
    })
}

/// Rejects anything but an `N×3×H×W` f32 batch, before a layer fails less clearly.
fn check_input(x: &Tensor) -> candle_core::Result<()> {
    match x.dims() {
        [_, 3, h, w] if *h > 0 && *w > 0 && x.dtype() == DType::F32 => Ok(()),
        dims => bail!(
            "expected an N×3×H×W f32 image batch, got {dims:?} {:?}",
            x.dtype()
        ),
    }
}

impl Network for EfficientnetLite0 {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        check_input(x)?;
        EfficientnetLite0::forward(self, x)
    }
}

impl Network for Resnet {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        check_input(x)?;
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
        let err = build(Arch::Resnet { depth: 18 }, vb.clone(), 10)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("conv1.weight"), "{err}");
        let err = build(Arch::EfficientnetLite0, vb.clone(), 10)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("_conv_stem.weight"), "{err}");
        let err = build(Arch::Resnet { depth: 152 }, vb, 10)
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
        build(arch, VarBuilder::from_varmap(&vm, DType::F32, &dev), 5).unwrap();
        randomize(&vm, 9);
        let half: std::collections::HashMap<_, _> = tensors(&vm)
            .into_iter()
            .map(|(k, v)| (k, v.to_dtype(DType::F16).unwrap()))
            .collect();
        let single = half
            .iter()
            .map(|(k, v)| (k.clone(), v.to_dtype(DType::F32).unwrap()))
            .collect();
        let from_half = build(arch, VarBuilder::from_tensors(half, DType::F16, &dev), 5).unwrap();
        let from_single =
            build(arch, VarBuilder::from_tensors(single, DType::F32, &dev), 5).unwrap();
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
}

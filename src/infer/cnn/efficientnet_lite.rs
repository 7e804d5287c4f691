//! EfficientNet-Lite0 with lukemelas `efficientnet_pytorch` tensor names: ReLU6, no
//! squeeze-excitation, TF-SAME padding, BatchNorm eps 1e-3, every BatchNorm folded.

use candle_core::{DType, Result, Tensor};
use candle_nn::{Linear, Module, VarBuilder};

use super::act::Act;
use super::conv::{Conv, ConvSpec};
use super::pool::global_avg_pool;
use super::window::Padding;

/// The checkpoint's BatchNorm eps (TensorFlow's 1e-3, not PyTorch's 1e-5).
const BN_EPS: f64 = 1e-3;
const STEM: usize = 32;
const HEAD: usize = 1280;

/// Stages: (repeats, kernel, stride of the first block, expansion, output channels).
const STAGES: [(usize, usize, usize, usize, usize); 7] = [
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
];

/// A loaded EfficientNet-Lite0.
pub(crate) struct EfficientnetLite0 {
    stem: Conv,
    blocks: Vec<MbConv>,
    head: Conv,
    fc: Linear,
}

/// Inverted residual: [1×1 expand] → k×k depthwise → 1×1 project [+ input].
struct MbConv {
    expand: Option<Conv>,
    depthwise: Conv,
    project: Conv,
    residual: bool,
}

impl EfficientnetLite0 {
    /// Loads the network from `vb` (names `_conv_stem`, `_blocks.{i}.*`, `_conv_head`,
    /// `_fc`), with `classes` outputs.
    pub(crate) fn load(vb: &VarBuilder<'_>, classes: usize) -> Result<Self> {
        let same = Padding::TfSame;
        let stem = conv_bn(
            vb,
            "_conv_stem",
            "_bn0",
            ConvSpec::dense(3, STEM, 3, 2, same, Act::Relu6),
        )?;
        let mut blocks = Vec::new();
        let mut cin = STEM;
        for (repeats, k, first_stride, expansion, cout) in STAGES {
            for r in 0..repeats {
                let vb = vb.pp("_blocks").pp(blocks.len());
                let stride = if r == 0 { first_stride } else { 1 };
                let hidden = cin * expansion;
                let expand = if expansion == 1 {
                    None
                } else {
                    let spec = ConvSpec::dense(cin, hidden, 1, 1, same, Act::Relu6);
                    Some(conv_bn(&vb, "_expand_conv", "_bn0", spec)?)
                };
                let dw = ConvSpec::depthwise(hidden, k, stride, same, Act::Relu6);
                blocks.push(MbConv {
                    expand,
                    depthwise: conv_bn(&vb, "_depthwise_conv", "_bn1", dw)?,
                    project: conv_bn(
                        &vb,
                        "_project_conv",
                        "_bn2",
                        ConvSpec::dense(hidden, cout, 1, 1, same, Act::Identity),
                    )?,
                    residual: stride == 1 && cin == cout,
                });
                cin = cout;
            }
        }
        let head = conv_bn(
            vb,
            "_conv_head",
            "_bn1",
            ConvSpec::dense(cin, HEAD, 1, 1, same, Act::Relu6),
        )?;
        let fc = Linear::new(
            vb.get((classes, HEAD), "_fc.weight")?,
            Some(vb.get(classes, "_fc.bias")?),
        );
        Ok(Self {
            stem,
            blocks,
            head,
            fc,
        })
    }

    /// The element type it computes in (its weights').
    pub(crate) fn dtype(&self) -> DType {
        self.fc.weight().dtype()
    }

    /// `N×3×H×W` → `N×classes` logits.
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = self.stem.forward(x, None)?;
        for block in &self.blocks {
            x = block.forward(&x)?;
        }
        let x = self.head.forward(&x, None)?;
        self.fc.forward(&global_avg_pool(&x)?)
    }
}

impl MbConv {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = match &self.expand {
            Some(e) => e.forward(x, None)?,
            None => x.clone(),
        };
        let y = self.depthwise.forward(&y, None)?;
        // No activation after the projection; the skip is added in its epilogue.
        self.project.forward(&y, self.residual.then_some(x))
    }
}

fn conv_bn(vb: &VarBuilder<'_>, conv: &str, bn: &str, spec: ConvSpec) -> Result<Conv> {
    Conv::load(&vb.pp(conv), &vb.pp(bn), spec, BN_EPS)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    use super::*;
    use crate::infer::cnn::testutil::{
        Rng, assert_close, conv_bn_reference, linear_reference, randomize, tensors,
    };

    fn relu6(x: Tensor) -> Tensor {
        x.clamp(0.0, 6.0).unwrap()
    }

    /// lukemelas' forward with unfused candle ops on the raw tensors, in f64 (the truth the
    /// fused f32 network is held to).
    fn reference(x: &Tensor, t: &HashMap<String, Tensor>) -> Tensor {
        reference_in(&x.to_dtype(DType::F64).unwrap(), t)
            .to_dtype(DType::F32)
            .unwrap()
    }

    /// The reference in `x`'s dtype.
    fn reference_in(x: &Tensor, t: &HashMap<String, Tensor>) -> Tensor {
        let cbn = |x: &Tensor, conv: &str, bn: &str, stride, dw| {
            conv_bn_reference(x, t, conv, bn, stride, Padding::TfSame, dw, BN_EPS).unwrap()
        };
        let mut x = relu6(cbn(x, "_conv_stem", "_bn0", 2, false));
        let mut i = 0;
        for (repeats, _, first_stride, _, _) in STAGES {
            for r in 0..repeats {
                let p = format!("_blocks.{i}.");
                let stride = if r == 0 { first_stride } else { 1 };
                let input = x.clone();
                if t.contains_key(&format!("{p}_expand_conv.weight")) {
                    x = relu6(cbn(
                        &x,
                        &format!("{p}_expand_conv"),
                        &format!("{p}_bn0"),
                        1,
                        false,
                    ));
                }
                x = relu6(cbn(
                    &x,
                    &format!("{p}_depthwise_conv"),
                    &format!("{p}_bn1"),
                    stride,
                    true,
                ));
                x = cbn(
                    &x,
                    &format!("{p}_project_conv"),
                    &format!("{p}_bn2"),
                    1,
                    false,
                );
                if stride == 1 && input.dims() == x.dims() {
                    x = (x + input).unwrap();
                }
                i += 1;
            }
        }
        let x = relu6(cbn(&x, "_conv_head", "_bn1", 1, false));
        linear_reference(&x.mean((2, 3)).unwrap(), t, "_fc").unwrap()
    }

    fn random_net(classes: usize, seed: u64) -> (EfficientnetLite0, HashMap<String, Tensor>) {
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        EfficientnetLite0::load(&vb, classes).unwrap();
        randomize(&vm, seed);
        (EfficientnetLite0::load(&vb, classes).unwrap(), tensors(&vm))
    }

    #[test]
    fn efficientnet_lite0_has_the_checkpoint_layout() {
        let (_, t) = random_net(1000, 1);
        assert_eq!(
            t.len(),
            247,
            "5 stem + 10 block 0 + 15×15 blocks + 5 head + 2 fc"
        );
        assert!(
            !t.contains_key("_blocks.0._expand_conv.weight")
                && !t.contains_key("_blocks.16._bn1.weight")
        );
        assert_eq!(t["_conv_stem.weight"].dims(), &[32, 3, 3, 3]);
        assert_eq!(t["_blocks.1._expand_conv.weight"].dims(), &[96, 16, 1, 1]);
        assert_eq!(
            t["_blocks.3._depthwise_conv.weight"].dims(),
            &[144, 1, 5, 5]
        );
        assert_eq!(
            t["_blocks.15._project_conv.weight"].dims(),
            &[320, 1152, 1, 1]
        );
        assert_eq!(t["_conv_head.weight"].dims(), &[1280, 320, 1, 1]);
        assert_eq!(t["_fc.weight"].dims(), &[1000, 1280]);
    }

    #[test]
    fn efficientnet_lite0_matches_unfused_reference() {
        let (net, t) = random_net(10, 2);
        // Odd sizes: every TF-SAME pad is asymmetric somewhere on the way down.
        let x = Rng::new(3).tensor((2, 3, 37, 45), -2.0, 2.0, &Device::Cpu);
        let got = net.forward(&x).unwrap();
        assert_eq!(got.dims(), &[2, 10]);
        assert_close(&got, &reference(&x, &t), 1e-4, "efficientnet-lite0");
    }

    #[test]
    fn missing_or_misshapen_tensors_are_errors() {
        let dev = Device::Cpu;
        let (_, mut t) = random_net(10, 4);
        t.remove("_blocks.7._bn1.running_var");
        let err =
            EfficientnetLite0::load(&VarBuilder::from_tensors(t.clone(), DType::F32, &dev), 10)
                .err()
                .unwrap()
                .to_string();
        assert!(err.contains("_blocks.7._bn1.running_var"), "{err}");
        let (_, mut t) = random_net(10, 4);
        t.insert(
            "_blocks.4._depthwise_conv.weight".into(),
            Tensor::zeros((144, 1, 5, 5), DType::F32, &dev).unwrap(),
        );
        let err = EfficientnetLite0::load(&VarBuilder::from_tensors(t, DType::F32, &dev), 10)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("_blocks.4._depthwise_conv.weight"), "{err}");
    }
}

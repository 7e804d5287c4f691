//! torchvision ResNet 18/34/50 (v1.5: a bottleneck's stride sits on its 3×3 conv), with
//! torchvision's tensor names and every BatchNorm folded into its conv.

use candle_core::{DType, Result, Tensor, bail};
use candle_nn::{Linear, Module, VarBuilder};

use super::act::Act;
use super::conv::{Conv, ConvSpec};
use super::pool::{global_avg_pool, max_pool};
use super::window::Padding;

/// torchvision's `nn.BatchNorm2d` default.
const BN_EPS: f64 = 1e-5;

/// A loaded ResNet.
pub(crate) struct Resnet {
    stem: Conv,
    blocks: Vec<Block>,
    fc: Linear,
}

enum Block {
    /// 3×3 → 3×3 (ResNet-18/34).
    Basic {
        conv1: Conv,
        conv2: Conv,
        downsample: Option<Conv>,
    },
    /// 1×1 → 3×3 → 1×1 with 4× expansion (ResNet-50).
    Bottleneck {
        conv1: Conv,
        conv2: Conv,
        conv3: Conv,
        downsample: Option<Conv>,
    },
}

impl Resnet {
    /// ResNet-`depth` (18, 34 or 50) from torchvision names under `vb`, `classes` outputs.
    pub(crate) fn load(vb: &VarBuilder<'_>, depth: usize, classes: usize) -> Result<Self> {
        let (bottleneck, repeats) = match depth {
            18 => (false, [2, 2, 2, 2]),
            34 => (false, [3, 4, 6, 3]),
            50 => (true, [3, 4, 6, 3]),
            _ => bail!("unsupported ResNet depth {depth}: expected 18, 34 or 50"),
        };
        let expansion = if bottleneck { 4 } else { 1 };
        let stem = conv_bn(
            vb,
            "conv1",
            "bn1",
            ConvSpec::dense(3, 64, 7, 2, Padding::Symmetric(3), Act::Relu),
        )?;
        let mut blocks = Vec::new();
        let mut cin = 64;
        for (stage, (&n, planes)) in repeats.iter().zip([64, 128, 256, 512]).enumerate() {
            for i in 0..n {
                let stride = if i == 0 && stage > 0 { 2 } else { 1 };
                let vb = vb.pp(format!("layer{}", stage + 1)).pp(i);
                let cout = planes * expansion;
                let downsample = if stride != 1 || cin != cout {
                    let spec =
                        ConvSpec::dense(cin, cout, 1, stride, Padding::Symmetric(0), Act::Identity);
                    Some(conv_bn(&vb, "downsample.0", "downsample.1", spec)?)
                } else {
                    None
                };
                // The residual add comes before the last ReLU: it is that conv's epilogue.
                let block = if bottleneck {
                    Block::Bottleneck {
                        conv1: conv_bn(
                            &vb,
                            "conv1",
                            "bn1",
                            ConvSpec::dense(cin, planes, 1, 1, Padding::Symmetric(0), Act::Relu),
                        )?,
                        conv2: conv_bn(
                            &vb,
                            "conv2",
                            "bn2",
                            ConvSpec::dense(
                                planes,
                                planes,
                                3,
                                stride,
                                Padding::Symmetric(1),
                                Act::Relu,
                            ),
                        )?,
                        conv3: conv_bn(
                            &vb,
                            "conv3",
                            "bn3",
                            ConvSpec::dense(planes, cout, 1, 1, Padding::Symmetric(0), Act::Relu),
                        )?,
                        downsample,
                    }
                } else {
                    Block::Basic {
                        conv1: conv_bn(
                            &vb,
                            "conv1",
                            "bn1",
                            ConvSpec::dense(
                                cin,
                                planes,
                                3,
                                stride,
                                Padding::Symmetric(1),
                                Act::Relu,
                            ),
                        )?,
                        conv2: conv_bn(
                            &vb,
                            "conv2",
                            "bn2",
                            ConvSpec::dense(planes, cout, 3, 1, Padding::Symmetric(1), Act::Relu),
                        )?,
                        downsample,
                    }
                };
                blocks.push(block);
                cin = cout;
            }
        }
        let fc = Linear::new(
            vb.get((classes, cin), "fc.weight")?,
            Some(vb.get(classes, "fc.bias")?),
        );
        Ok(Self { stem, blocks, fc })
    }

    /// The element type it computes in (its weights').
    pub(crate) fn dtype(&self) -> DType {
        self.fc.weight().dtype()
    }

    /// `N×3×H×W` → `N×classes` logits.
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = self.stem.forward(x, None)?;
        let mut x = max_pool(&x, 3, 2, 1)?;
        for block in &self.blocks {
            x = block.forward(&x)?;
        }
        self.fc.forward(&global_avg_pool(&x)?)
    }
}

impl Block {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (downsample, mid) = match self {
            Block::Basic {
                conv1, downsample, ..
            } => (downsample, conv1.forward(x, None)?),
            Block::Bottleneck {
                conv1,
                conv2,
                downsample,
                ..
            } => (downsample, conv2.forward(&conv1.forward(x, None)?, None)?),
        };
        let identity = match downsample {
            Some(d) => d.forward(x, None)?,
            None => x.clone(),
        };
        let last = match self {
            Block::Basic { conv2, .. } => conv2,
            Block::Bottleneck { conv3, .. } => conv3,
        };
        last.forward(&mid, Some(&identity))
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

    /// torchvision's forward with unfused candle ops on the raw tensors, in f64: at depth 50
    /// an f32 reference is itself ~1e-4 off on a logit that cancels, so f64 is the truth
    /// the fused f32 network is held to.
    fn reference(x: &Tensor, t: &HashMap<String, Tensor>, depth: usize) -> Tensor {
        let y = reference_in(&x.to_dtype(DType::F64).unwrap(), t, depth);
        y.to_dtype(DType::F32).unwrap()
    }

    /// The reference in `x`'s dtype.
    fn reference_in(x: &Tensor, t: &HashMap<String, Tensor>, depth: usize) -> Tensor {
        let cbn = |x: &Tensor, prefix: &str, conv: &str, bn: &str, stride, pad| {
            conv_bn_reference(
                x,
                t,
                &format!("{prefix}{conv}"),
                &format!("{prefix}{bn}"),
                stride,
                Padding::Symmetric(pad),
                false,
                BN_EPS,
            )
            .unwrap()
        };
        let (bottleneck, repeats) = match depth {
            18 => (false, [2, 2, 2, 2]),
            34 => (false, [3, 4, 6, 3]),
            _ => (true, [3, 4, 6, 3]),
        };
        let x = cbn(x, "", "conv1", "bn1", 2, 3).relu().unwrap();
        // Zero padding equals -inf padding here: the input is a ReLU output.
        let mut x = x
            .pad_with_zeros(2, 1, 1)
            .unwrap()
            .pad_with_zeros(3, 1, 1)
            .unwrap()
            .max_pool2d_with_stride(3, 2)
            .unwrap();
        for (stage, &n) in repeats.iter().enumerate() {
            for i in 0..n {
                let p = format!("layer{}.{i}.", stage + 1);
                let stride = if i == 0 && stage > 0 { 2 } else { 1 };
                let identity = if t.contains_key(&format!("{p}downsample.0.weight")) {
                    cbn(&x, &p, "downsample.0", "downsample.1", stride, 0)
                } else {
                    x.clone()
                };
                let y = if bottleneck {
                    let y = cbn(&x, &p, "conv1", "bn1", 1, 0).relu().unwrap();
                    let y = cbn(&y, &p, "conv2", "bn2", stride, 1).relu().unwrap();
                    cbn(&y, &p, "conv3", "bn3", 1, 0)
                } else {
                    let y = cbn(&x, &p, "conv1", "bn1", stride, 1).relu().unwrap();
                    cbn(&y, &p, "conv2", "bn2", 1, 1)
                };
                x = (y + identity).unwrap().relu().unwrap();
            }
        }
        linear_reference(&x.mean((2, 3)).unwrap(), t, "fc").unwrap()
    }

    fn random_resnet(depth: usize, classes: usize, seed: u64) -> (Resnet, HashMap<String, Tensor>) {
        let dev = Device::Cpu;
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &dev);
        // The first load registers every name and shape; then fill and load again.
        Resnet::load(&vb, depth, classes).unwrap();
        randomize(&vm, seed);
        (Resnet::load(&vb, depth, classes).unwrap(), tensors(&vm))
    }

    #[test]
    fn resnet18_matches_unfused_reference() {
        let (net, t) = random_resnet(18, 10, 1);
        assert_eq!(
            t.len(),
            102,
            "torchvision resnet18 has 102 tensors besides num_batches_tracked"
        );
        assert!(
            t.contains_key("layer2.0.downsample.0.weight")
                && !t.contains_key("layer1.0.downsample.0.weight")
        );
        let x = Rng::new(2).tensor((2, 3, 29, 35), -2.0, 2.0, &Device::Cpu);
        let got = net.forward(&x).unwrap();
        assert_eq!(got.dims(), &[2, 10]);
        assert_close(&got, &reference(&x, &t, 18), 1e-4, "resnet18");
    }

    #[test]
    fn resnet50_matches_unfused_reference() {
        let (net, t) = random_resnet(50, 7, 3);
        assert_eq!(
            t.len(),
            267,
            "torchvision resnet50 has 267 tensors besides num_batches_tracked"
        );
        assert_eq!(t["layer1.0.conv2.weight"].dims(), &[64, 64, 3, 3]);
        assert_eq!(t["layer2.0.conv2.weight"].dims(), &[128, 128, 3, 3]);
        assert_eq!(t["fc.weight"].dims(), &[7, 2048]);
        let x = Rng::new(4).tensor((1, 3, 33, 31), -2.0, 2.0, &Device::Cpu);
        assert_close(
            &net.forward(&x).unwrap(),
            &reference(&x, &t, 50),
            1e-4,
            "resnet50",
        );
    }

    #[test]
    fn resnet34_has_torchvision_layout() {
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        Resnet::load(&vb, 34, 1000).unwrap();
        let t = tensors(&vm);
        assert_eq!(t.len(), 182);
        assert!(
            t.contains_key("layer3.5.bn2.running_var") && !t.contains_key("layer3.6.conv1.weight")
        );
        assert_eq!(t["fc.weight"].dims(), &[1000, 512]);
    }

    #[test]
    fn bad_depth_and_missing_or_misshapen_tensors_are_errors() {
        let dev = Device::Cpu;
        let vb = VarBuilder::from_varmap(&VarMap::new(), DType::F32, &dev);
        let err = Resnet::load(&vb, 101, 10).err().unwrap().to_string();
        assert!(err.contains("101"), "{err}");

        let (_, mut t) = random_resnet(18, 10, 5);
        t.remove("layer3.1.bn2.running_mean");
        let err = Resnet::load(
            &VarBuilder::from_tensors(t.clone(), DType::F32, &dev),
            18,
            10,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("layer3.1.bn2.running_mean"), "{err}");
        // A checkpoint for another class count.
        let (_, t) = random_resnet(18, 10, 5);
        let err = Resnet::load(&VarBuilder::from_tensors(t, DType::F32, &dev), 18, 1000)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("fc.weight"), "{err}");
    }
}

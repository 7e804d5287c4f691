//! A convolution with its BatchNorm folded in, plus bias, optional residual and activation:
//! the one layer type both network families are made of.
//!
//! Folding happens once at load: `W' = W·γ/√(var+ε)`, `b' = β − mean·γ/√(var+ε)`, so a
//! forward pass is conv → `act(y + b' [+ residual])` with no BatchNorm left. On the CPU the
//! conv runs as custom ops (im2col or a plain reshape, then candle's `matmul`, then an
//! in-place epilogue; depthwise as its own kernel); on any other device as plain candle ops.

use candle_core::{DType, Device, Result, Tensor, bail};
use candle_nn::VarBuilder;

use super::act::Act;
use super::depthwise::Depthwise;
use super::epilogue::{BiasAct, BiasResidualAct};
use super::im2col::Im2col;
use super::window::{Padding, Window};

/// The shape and behaviour of one conv layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConvSpec {
    pub(crate) cin: usize,
    pub(crate) cout: usize,
    pub(crate) k: usize,
    pub(crate) stride: usize,
    /// One `k×k` filter per channel (`groups = cin = cout`).
    pub(crate) depthwise: bool,
    pub(crate) padding: Padding,
    pub(crate) act: Act,
}

impl ConvSpec {
    /// A dense (`groups = 1`) conv.
    pub(crate) fn dense(
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
        padding: Padding,
        act: Act,
    ) -> Self {
        Self {
            cin,
            cout,
            k,
            stride,
            depthwise: false,
            padding,
            act,
        }
    }

    /// A depthwise conv over `c` channels.
    pub(crate) fn depthwise(c: usize, k: usize, stride: usize, padding: Padding, act: Act) -> Self {
        Self {
            cin: c,
            cout: c,
            k,
            stride,
            depthwise: true,
            padding,
            act,
        }
    }

    fn weight_dims(&self) -> (usize, usize, usize, usize) {
        let per_group = if self.depthwise { 1 } else { self.cin };
        (self.cout, per_group, self.k, self.k)
    }
}

/// Inference-time BatchNorm statistics of one layer (`weight`, `bias`, `running_mean`,
/// `running_var`; `num_batches_tracked` is never read).
pub(crate) struct BatchNorm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
    mean: Vec<f32>,
    var: Vec<f32>,
    eps: f64,
}

impl BatchNorm {
    /// Reads the four tensors of `c` channels under `vb`.
    pub(crate) fn load(vb: &VarBuilder<'_>, c: usize, eps: f64) -> Result<Self> {
        // In f32 whatever the network computes in: the fold is done once, exactly.
        let get = |name: &str| -> Result<Vec<f32>> {
            vb.get_with_hints_dtype(c, name, Default::default(), DType::F32)?
                .to_vec1::<f32>()
        };
        let bn = Self {
            gamma: get("weight")?,
            beta: get("bias")?,
            mean: get("running_mean")?,
            var: get("running_var")?,
            eps,
        };
        if let Some(v) = bn.var.iter().find(|&&v| {
            // NaN counts as bad too.
            (f64::from(v) + eps).partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater)
        }) {
            bail!(
                "{}.running_var holds {v}: BatchNorm variance + eps must be positive",
                vb.prefix()
            )
        }
        Ok(bn)
    }

    /// Scales each of the `cout` rows of `weight` (the conv's output channels) in place and
    /// returns the bias that completes the fold.
    pub(crate) fn fold_into(&self, weight: &mut [f32]) -> Result<Vec<f32>> {
        let c = self.gamma.len();
        if c == 0 || !weight.len().is_multiple_of(c) {
            bail!(
                "cannot fold a {c}-channel BatchNorm into {} conv weights",
                weight.len()
            )
        }
        let row = weight.len() / c;
        let mut bias = Vec::with_capacity(c);
        for (o, w) in weight.chunks_exact_mut(row).enumerate() {
            let scale = f64::from(self.gamma[o]) / (f64::from(self.var[o]) + self.eps).sqrt();
            for v in w {
                *v = (f64::from(*v) * scale) as f32;
            }
            bias.push((f64::from(self.beta[o]) - f64::from(self.mean[o]) * scale) as f32);
        }
        Ok(bias)
    }
}

/// Conv (BatchNorm folded in) + bias [+ residual] + activation.
pub(crate) struct Conv {
    spec: ConvSpec,
    /// Folded weight, `cout × cin/groups × k × k`, on the network's device.
    weight: Tensor,
    /// The same data as `cout × (cin·k·k)`, the left operand of the CPU matrix product.
    weight_mat: Tensor,
    /// Folded bias, `cout`, on the network's device.
    bias: Tensor,
    /// Host copies for the CPU kernels: the bias, and the weights of a depthwise conv.
    bias_host: Vec<f32>,
    depthwise_host: Vec<f32>,
}

impl Conv {
    /// Loads the conv weight `{conv}.weight` and the BatchNorm under `bn`, folds them in
    /// f32, and keeps the result in `conv`'s dtype.
    pub(crate) fn load(
        conv: &VarBuilder<'_>,
        bn: &VarBuilder<'_>,
        spec: ConvSpec,
        eps: f64,
    ) -> Result<Self> {
        let mut weight = conv
            .get_with_hints_dtype(spec.weight_dims(), "weight", Default::default(), DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let bias = BatchNorm::load(bn, spec.cout, eps)?.fold_into(&mut weight)?;
        Self::from_folded(spec, weight, bias, conv.device(), conv.dtype())
    }

    /// A conv from already folded host weights (`cout × cin/groups × k × k`) and bias, kept
    /// on `device` in `dtype` (the CPU kernels' host copies stay f32).
    pub(crate) fn from_folded(
        spec: ConvSpec,
        weight: Vec<f32>,
        bias: Vec<f32>,
        device: &Device,
        dtype: DType,
    ) -> Result<Self> {
        let dims = spec.weight_dims();
        if spec.depthwise && spec.cin != spec.cout {
            bail!(
                "depthwise conv needs cin = cout, got {} and {}",
                spec.cin,
                spec.cout
            )
        }
        if weight.len() != dims.0 * dims.1 * dims.2 * dims.3 || bias.len() != spec.cout {
            bail!(
                "conv {dims:?}: got {} weights and {} biases",
                weight.len(),
                bias.len()
            )
        }
        let depthwise_host = if spec.depthwise {
            weight.clone()
        } else {
            Vec::new()
        };
        let weight = Tensor::from_vec(weight, dims, device)?.to_dtype(dtype)?;
        let weight_mat = weight.reshape((dims.0, dims.1 * dims.2 * dims.3))?;
        Ok(Self {
            spec,
            weight,
            weight_mat,
            bias: Tensor::from_slice(&bias, spec.cout, device)?.to_dtype(dtype)?,
            bias_host: bias,
            depthwise_host,
        })
    }

    /// `act(conv(x) + bias [+ residual])` for an `N×cin×H×W` `x` of the conv's dtype;
    /// `residual` has the output's shape.
    pub(crate) fn forward(&self, x: &Tensor, residual: Option<&Tensor>) -> Result<Tensor> {
        if x.device().is_cpu() && x.dtype() == DType::F32 {
            self.forward_cpu(x, residual)
        } else {
            self.forward_candle(x, residual)
        }
    }

    fn window(&self, x: &Tensor) -> Result<(Window, usize, usize, usize)> {
        let (n, c, h, w) = x.dims4()?;
        if c != self.spec.cin {
            bail!(
                "conv expects {} input channels, got {c} (input {:?})",
                self.spec.cin,
                x.dims()
            )
        }
        Ok((
            Window::new(self.spec.k, self.spec.stride, self.spec.padding, h, w),
            n,
            h,
            w,
        ))
    }

    fn forward_cpu(&self, x: &Tensor, residual: Option<&Tensor>) -> Result<Tensor> {
        let (window, n, h, w) = self.window(x)?;
        let (oh, ow) = window.out_hw(h, w)?;
        let x = x.contiguous()?;
        let ConvSpec {
            cin, cout, k, act, ..
        } = self.spec;
        if self.spec.depthwise {
            let op = |act| Depthwise {
                weight: &self.depthwise_host,
                bias: &self.bias_host,
                window,
                act,
            };
            return match residual {
                None => x.apply_op1_no_bwd(&op(act)),
                Some(r) => act.apply_tensor(&(x.apply_op1_no_bwd(&op(Act::Identity))? + r)?),
            };
        }
        // A 1×1 stride-1 conv is already a matrix product on the N×C×(H·W) view.
        let cols = if k == 1 && self.spec.stride == 1 && window.pads.is_zero() {
            x.reshape((n, cin, h * w))?
        } else {
            x.apply_op1_no_bwd(&Im2col { window })?
        };
        // `y` is the product's own fresh buffer, so the epilogue may write into it.
        let y = self.weight_mat.broadcast_left(n)?.matmul(&cols)?;
        match residual {
            None => y.inplace_op1(&BiasAct {
                bias: &self.bias_host,
                act,
            })?,
            Some(r) => {
                let r = r.reshape((n, cout, oh * ow))?.contiguous()?;
                y.inplace_op2(
                    &r,
                    &BiasResidualAct {
                        bias: &self.bias_host,
                        act,
                    },
                )?
            }
        }
        y.reshape((n, cout, oh, ow))
    }

    /// [`Conv::forward`] with plain candle ops (zero padding, `conv2d` or depthwise taps,
    /// broadcast bias, add, activation): the path of devices without the CPU kernels, and
    /// of the 16-bit precisions.
    pub(crate) fn forward_candle(&self, x: &Tensor, residual: Option<&Tensor>) -> Result<Tensor> {
        let (window, _, h, w) = self.window(x)?;
        let p = window.pads;
        let y = if self.spec.depthwise {
            depthwise_taps(x, &self.weight, &window, (h, w))?
        } else {
            match p.symmetric() {
                Some(pad) => dense_conv(x, &self.weight, pad, window.stride)?,
                None => dense_conv(
                    &x.pad_with_zeros(2, p.top, p.bottom)?
                        .pad_with_zeros(3, p.left, p.right)?,
                    &self.weight,
                    0,
                    window.stride,
                )?,
            }
        };
        let y = y.broadcast_add(&self.bias.reshape((1, self.spec.cout, 1, 1))?)?;
        let y = match residual {
            Some(r) => (y + r)?,
            None => y,
        };
        self.spec.act.apply_tensor(&y)
    }
}

/// candle's `conv2d` (`groups = 1`). candle's CPU convolution has no bf16 kernel, so there,
/// as candle's own bf16 matrix product on the CPU does, it widens to f32 and narrows the
/// result: bf16 operands, f32 sums, a bf16 answer, as a GPU's bf16 convolution computes.
fn dense_conv(x: &Tensor, weight: &Tensor, pad: usize, stride: usize) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::BF16 {
        return x
            .to_dtype(DType::F32)?
            .conv2d(&weight.to_dtype(DType::F32)?, pad, stride, 1, 1)?
            .to_dtype(DType::BF16);
    }
    x.conv2d(weight, pad, stride, 1, 1)
}

/// A depthwise conv of `x` (`N×C×H×W`, padded here by `window`) with `weight` (`C×1×k×k`)
/// as a sum of `k²` shifted, strided slices of `x`, each scaled by its tap's per-channel
/// weight: `k²` whole-tensor ops, where candle's `conv2d` with `groups = C` runs one
/// convolution per channel (1152 of them in an EfficientNet-Lite0 layer, each a kernel
/// launch on a GPU).
fn depthwise_taps(
    x: &Tensor,
    weight: &Tensor,
    window: &Window,
    (h, w): (usize, usize),
) -> Result<Tensor> {
    let (n, c, ..) = x.dims4()?;
    let (oh, ow) = window.out_hw(h, w)?;
    let (k, stride, p) = (window.k, window.stride, window.pads);
    // One copy, padded by the window and then with room for `oh` rows of `stride` from any
    // tap's first row: the extra rows past the padded input are zeros no output reads.
    let (padded_h, padded_w) = (h + p.top + p.bottom, w + p.left + p.right);
    let extra_h = ((k - 1) + oh * stride).saturating_sub(padded_h);
    let extra_w = ((k - 1) + ow * stride).saturating_sub(padded_w);
    let x = x
        .pad_with_zeros(2, p.top, p.bottom + extra_h)?
        .pad_with_zeros(3, p.left, p.right + extra_w)?;
    let mut sum: Option<Tensor> = None;
    for a in 0..k {
        for b in 0..k {
            // Rows a, a+s, …: `oh·s` rows viewed as `oh × s`, the first of each kept.
            let tap = x
                .narrow(2, a, oh * stride)?
                .narrow(3, b, ow * stride)?
                .contiguous()?
                .reshape((n, c, oh, stride, ow, stride))?
                .narrow(3, 0, 1)?
                .narrow(5, 0, 1)?
                .reshape((n, c, oh, ow))?;
            let tap_weight = weight
                .narrow(2, a, 1)?
                .narrow(3, b, 1)?
                .reshape((1, c, 1, 1))?;
            let term = tap.broadcast_mul(&tap_weight)?;
            sum = Some(match sum {
                None => term,
                Some(s) => (s + term)?,
            });
        }
    }
    sum.ok_or_else(|| candle_core::Error::Msg("a depthwise conv of an empty window".into()))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::infer::cnn::testutil::{Rng, assert_close, conv_bn_reference};

    fn bn_tensors(
        rng: &mut Rng,
        prefix: &str,
        c: usize,
        dev: &Device,
        map: &mut HashMap<String, Tensor>,
    ) {
        map.insert(format!("{prefix}.weight"), rng.tensor(c, 0.5, 1.5, dev));
        map.insert(format!("{prefix}.bias"), rng.tensor(c, -0.5, 0.5, dev));
        map.insert(
            format!("{prefix}.running_mean"),
            rng.tensor(c, -0.5, 0.5, dev),
        );
        map.insert(
            format!("{prefix}.running_var"),
            rng.tensor(c, 0.2, 2.0, dev),
        );
    }

    #[test]
    fn folded_conv_equals_conv_then_batch_norm() {
        let dev = Device::Cpu;
        let mut rng = Rng::new(21);
        let specs = [
            ConvSpec::dense(3, 8, 7, 2, Padding::Symmetric(3), Act::Relu),
            ConvSpec::dense(4, 6, 3, 1, Padding::Symmetric(1), Act::Identity),
            ConvSpec::dense(5, 7, 1, 2, Padding::Symmetric(0), Act::Relu),
            ConvSpec::dense(6, 5, 1, 1, Padding::TfSame, Act::Relu6),
            ConvSpec::dense(3, 4, 3, 2, Padding::TfSame, Act::Relu6),
            ConvSpec::depthwise(6, 3, 2, Padding::TfSame, Act::Relu6),
            ConvSpec::depthwise(5, 5, 1, Padding::TfSame, Act::Relu6),
            ConvSpec::depthwise(4, 5, 2, Padding::Symmetric(2), Act::Identity),
        ];
        for (i, spec) in specs.into_iter().enumerate() {
            for eps in [1e-5, 1e-3] {
                let mut map = HashMap::new();
                let (a, b, c, d) = spec.weight_dims();
                map.insert(
                    "conv.weight".to_string(),
                    rng.tensor((a, b, c, d), -0.5, 0.5, &dev),
                );
                bn_tensors(&mut rng, "bn", spec.cout, &dev, &mut map);
                let vb = VarBuilder::from_tensors(map.clone(), DType::F32, &dev);
                let conv = Conv::load(&vb.pp("conv"), &vb.pp("bn"), spec, eps).unwrap();
                let x = rng.tensor((2, spec.cin, 11, 13), -2.0, 2.0, &dev);
                let want = conv_bn_reference(
                    &x,
                    &map,
                    "conv",
                    "bn",
                    spec.stride,
                    spec.padding,
                    spec.depthwise,
                    eps,
                )
                .unwrap();
                let want = spec.act.apply_tensor(&want).unwrap();
                assert_close(
                    &conv.forward(&x, None).unwrap(),
                    &want,
                    1e-4,
                    &format!("spec {i} {spec:?} eps {eps}"),
                );
                assert_close(
                    &conv.forward_candle(&x, None).unwrap(),
                    &want,
                    1e-4,
                    &format!("candle path, spec {i}"),
                );
            }
        }
    }

    #[test]
    fn fast_conv_matches_candle_ops_with_residual() {
        let dev = Device::Cpu;
        let mut rng = Rng::new(22);
        let specs = [
            ConvSpec::dense(4, 4, 3, 1, Padding::Symmetric(1), Act::Relu),
            ConvSpec::dense(6, 3, 1, 1, Padding::TfSame, Act::Identity),
            ConvSpec::dense(3, 5, 5, 2, Padding::TfSame, Act::Relu6),
            ConvSpec::dense(3, 5, 3, 2, Padding::Symmetric(1), Act::Relu),
            ConvSpec::depthwise(3, 3, 1, Padding::TfSame, Act::Relu6),
        ];
        for (n, h, w) in [(1, 7, 9), (3, 11, 13), (2, 9, 7)] {
            for spec in specs {
                let (a, b, c, d) = spec.weight_dims();
                let weight = rng
                    .tensor((a, b, c, d), -1.0, 1.0, &dev)
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap();
                let bias = rng
                    .tensor(spec.cout, -1.0, 1.0, &dev)
                    .to_vec1::<f32>()
                    .unwrap();
                let conv = Conv::from_folded(spec, weight, bias, &dev, DType::F32).unwrap();
                let x = rng.tensor((n, spec.cin, h, w), -2.0, 2.0, &dev);
                let want = conv.forward_candle(&x, None).unwrap();
                let what = format!("{spec:?} on {n}x{h}x{w}");
                assert_close(&conv.forward(&x, None).unwrap(), &want, 1e-4, &what);
                let r = rng.tensor(want.dims(), -3.0, 3.0, &dev);
                let want = conv.forward_candle(&x, Some(&r)).unwrap();
                assert_close(
                    &conv.forward(&x, Some(&r)).unwrap(),
                    &want,
                    1e-4,
                    &format!("{what} + residual"),
                );
                // A non-contiguous input takes the same path after a copy.
                let xt = x
                    .transpose(2, 3)
                    .unwrap()
                    .contiguous()
                    .unwrap()
                    .transpose(2, 3)
                    .unwrap();
                let want = conv.forward_candle(&x, None).unwrap();
                assert_close(
                    &conv.forward(&xt, None).unwrap(),
                    &want,
                    1e-4,
                    &format!("{what}, strided input"),
                );
            }
        }
    }

    #[test]
    fn bad_inputs_and_weights_are_errors() {
        let dev = Device::Cpu;
        let spec = ConvSpec::dense(3, 4, 3, 1, Padding::Symmetric(1), Act::Relu);
        assert!(Conv::from_folded(spec, vec![0.0; 10], vec![0.0; 4], &dev, DType::F32).is_err());
        let conv = Conv::from_folded(spec, vec![0.0; 108], vec![0.0; 4], &dev, DType::F32).unwrap();
        let x = Tensor::zeros((1, 2, 5, 5), DType::F32, &dev).unwrap();
        assert!(conv.forward(&x, None).is_err());
        let x = Tensor::zeros((1, 3, 5, 5), DType::F32, &dev).unwrap();
        let r = Tensor::zeros((1, 4, 5, 4), DType::F32, &dev).unwrap();
        assert!(conv.forward(&x, Some(&r)).is_err());
        assert!(
            Conv::from_folded(
                ConvSpec {
                    cout: 5,
                    ..ConvSpec::depthwise(4, 3, 1, Padding::TfSame, Act::Relu6)
                },
                vec![0.0; 45],
                vec![0.0; 5],
                &dev,
                DType::F32
            )
            .is_err()
        );

        // Missing names, wrong shapes and a negative variance.
        let mut rng = Rng::new(23);
        let mut map = HashMap::new();
        map.insert(
            "c.weight".to_string(),
            rng.tensor((4, 3, 3, 3), -1.0, 1.0, &dev),
        );
        let vb = VarBuilder::from_tensors(map.clone(), DType::F32, &dev);
        let err = Conv::load(&vb.pp("c"), &vb.pp("bn"), spec, 1e-5)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("bn.weight"), "{err}");
        bn_tensors(&mut rng, "bn", 4, &dev, &mut map);
        map.insert(
            "bn.running_var".to_string(),
            Tensor::new(&[1f32, -1.0, 1.0, 1.0], &dev).unwrap(),
        );
        let vb = VarBuilder::from_tensors(map.clone(), DType::F32, &dev);
        let err = Conv::load(&vb.pp("c"), &vb.pp("bn"), spec, 1e-5)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("bn.running_var"), "{err}");
        let wrong = ConvSpec { cout: 5, ..spec };
        let err = Conv::load(&vb.pp("c"), &vb.pp("bn"), wrong, 1e-5)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("c.weight"), "{err}");
    }
}

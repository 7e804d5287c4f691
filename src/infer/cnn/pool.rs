//! Pooling: padded max pooling (the ResNet stem) and global average pooling (both heads).

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::host::f32_data;
use super::window::{Window, valid_outputs};

/// `k×k` max pooling with `stride` and `pad` pixels of ignored border (PyTorch's
/// `MaxPool2d(k, stride, pad)`, floor mode). Output `N×C×OH×OW`.
pub(crate) fn max_pool(x: &Tensor, k: usize, stride: usize, pad: usize) -> Result<Tensor> {
    let window = Window {
        k,
        stride,
        pads: super::window::Pads::uniform(pad),
    };
    if x.device().is_cpu() && x.dtype() == candle_core::DType::F32 {
        return x.contiguous()?.apply_op1_no_bwd(&MaxPool { window });
    }
    max_pool_candle(x, k, stride, pad)
}

/// [`max_pool`] with plain candle ops, for devices without the custom op and the 16-bit
/// precisions: pad with -inf (never the maximum), then candle's unpadded pooling.
pub(crate) fn max_pool_candle(x: &Tensor, k: usize, stride: usize, pad: usize) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let x = if pad == 0 {
        x.clone()
    } else {
        let border =
            |shape| Tensor::full(f32::NEG_INFINITY, shape, x.device())?.to_dtype(x.dtype());
        let cols = border((n, c, h, pad))?;
        let x = Tensor::cat(&[&cols, x, &cols], 3)?;
        let rows = border((n, c, pad, w + 2 * pad))?;
        Tensor::cat(&[&rows, &x, &rows], 2)?
    };
    x.max_pool2d_with_stride(k, stride)
}

/// Mean over the spatial axes: `N×C×H×W` → `N×C`.
pub(crate) fn global_avg_pool(x: &Tensor) -> Result<Tensor> {
    x.mean((2, 3))
}

struct MaxPool {
    window: Window,
}

impl CustomOp1 for MaxPool {
    fn name(&self) -> &'static str {
        "max-pool2d"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_data(storage, layout, "max pool input")?;
        let (n, c, h, w) = layout.shape().dims4()?;
        let (oh, ow) = self.window.out_hw(h, w)?;
        let Window { k, stride: s, pads } = self.window;
        let mut out = vec![f32::NEG_INFINITY; n * c * oh * ow];
        out.par_chunks_mut(oh * ow)
            .zip(x.par_chunks(h * w))
            .for_each(|(o, plane)| {
                for ky in 0..k {
                    let ys = valid_outputs(oh, h, s, ky, pads.top);
                    for kx in 0..k {
                        let xs = valid_outputs(ow, w, s, kx, pads.left);
                        for oy in ys.clone() {
                            let row = &plane[(oy * s + ky - pads.top) * w..];
                            let orow = &mut o[oy * ow..(oy + 1) * ow];
                            for ox in xs.clone() {
                                let v = row[ox * s + kx - pads.left];
                                if v > orow[ox] {
                                    orow[ox] = v;
                                }
                            }
                        }
                    }
                }
            });
        Ok((CpuStorage::F32(out), Shape::from((n, c, oh, ow))))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;
    use crate::infer::cnn::testutil::{Rng, assert_close};

    /// Max pooling written out with explicit loops over a host copy.
    fn naive(x: &Tensor, k: usize, s: usize, p: usize) -> Tensor {
        let (n, c, h, w) = x.dims4().unwrap();
        let v = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let oh = (h + 2 * p - k) / s + 1;
        let ow = (w + 2 * p - k) / s + 1;
        let mut out = Vec::new();
        for i in 0..n * c {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut m = f32::NEG_INFINITY;
                    for ky in 0..k {
                        for kx in 0..k {
                            let (y, xx) = (
                                (oy * s + ky) as isize - p as isize,
                                (ox * s + kx) as isize - p as isize,
                            );
                            if y >= 0 && xx >= 0 && (y as usize) < h && (xx as usize) < w {
                                m = m.max(v[i * h * w + y as usize * w + xx as usize]);
                            }
                        }
                    }
                    out.push(m);
                }
            }
        }
        Tensor::from_vec(out, (n, c, oh, ow), &Device::Cpu).unwrap()
    }

    #[test]
    fn max_pool_matches_naive_and_candle_fallback() {
        let mut rng = Rng::new(5);
        for (shape, k, s, p) in [
            ((1usize, 2usize, 7usize, 9usize), 3usize, 2usize, 1usize),
            ((2, 3, 11, 13), 3, 2, 1),
            ((1, 2, 8, 8), 2, 2, 0),
            ((2, 1, 9, 7), 3, 1, 1),
        ] {
            // Negative values too: the padding must never win.
            let x = rng.tensor(shape, -5.0, 1.0, &Device::Cpu);
            let got = max_pool(&x, k, s, p).unwrap();
            let want = naive(&x, k, s, p);
            assert_close(
                &got,
                &want,
                0.0,
                &format!("max pool {shape:?} k{k} s{s} p{p}"),
            );
            let fallback = max_pool_candle(&x, k, s, p).unwrap();
            assert_close(
                &fallback,
                &want,
                0.0,
                &format!("candle max pool {shape:?} k{k} s{s} p{p}"),
            );
        }
    }

    #[test]
    fn global_avg_pool_is_the_spatial_mean() {
        let mut rng = Rng::new(6);
        let x = rng.tensor((2, 3, 5, 7), -1.0, 1.0, &Device::Cpu);
        let want = x
            .sum_keepdim(3)
            .unwrap()
            .sum_keepdim(2)
            .unwrap()
            .affine(1.0 / 35.0, 0.0)
            .unwrap()
            .reshape((2, 3))
            .unwrap();
        assert_close(
            &global_avg_pool(&x).unwrap(),
            &want,
            1e-6,
            "global average pool",
        );
    }
}

//! Depthwise `k×k` convolution (one filter per channel) with the bias and activation fused
//! in, as a CPU custom op.
//!
//! candle's `conv2d` with `groups = C` runs `C` separate convolutions; here each
//! `(image, channel)` plane is one rayon task: it copies its plane once into a padded,
//! stride-phase-split scratch (so every tap reads a contiguous run), then accumulates whole
//! output rows with the taps of one kernel row at a time.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, bail};
use rayon::prelude::*;

use super::act::{Act, with_act};
use super::host::f32_data;
use super::window::{Window, valid_outputs};

/// `N×C×H×W` → `N×C×OH×OW`: `act(bias[c] + Σ w[c, ky, kx] · x[c, y·s + ky, x·s + kx])`,
/// zeros outside the input.
pub(crate) struct Depthwise<'a> {
    /// `C×k×k`, row-major.
    pub(crate) weight: &'a [f32],
    /// `C`.
    pub(crate) bias: &'a [f32],
    pub(crate) window: Window,
    pub(crate) act: Act,
}

impl CustomOp1 for Depthwise<'_> {
    fn name(&self) -> &'static str {
        "depthwise-conv2d"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_data(storage, layout, "depthwise conv input")?;
        let (n, c, h, w) = layout.shape().dims4()?;
        let k = self.window.k;
        if self.weight.len() != c * k * k || self.bias.len() != c {
            bail!(
                "depthwise conv: {c} input channels, but {} weights for {k}x{k} and {} biases",
                self.weight.len(),
                self.bias.len()
            )
        }
        let (oh, ow) = self.window.out_hw(h, w)?;
        let mut out = vec![0f32; n * c * oh * ow];
        let geo = Plane {
            h,
            w,
            oh,
            ow,
            window: self.window,
        };
        with_act!(self.act, run(x, &mut out, self.weight, self.bias, c, geo));
        Ok((CpuStorage::F32(out), Shape::from((n, c, oh, ow))))
    }
}

#[derive(Clone, Copy)]
struct Plane {
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    window: Window,
}

impl Plane {
    /// Length of one stride phase of a padded input row: enough for `ow` outputs read at
    /// every tap offset `kx / s`.
    fn phase_len(&self) -> usize {
        self.ow + (self.window.k - 1) / self.window.stride
    }
}

fn run<F: Fn(f32) -> f32 + Copy + Sync>(
    x: &[f32],
    out: &mut [f32],
    weight: &[f32],
    bias: &[f32],
    c: usize,
    geo: Plane,
    act: F,
) {
    let k = geo.window.k;
    out.par_chunks_mut(geo.oh * geo.ow)
        .zip(x.par_chunks(geo.h * geo.w))
        .enumerate()
        .for_each_init(Vec::new, |scratch, (i, (out_plane, in_plane))| {
            let ch = i % c;
            let w = &weight[ch * k * k..(ch + 1) * k * k];
            fill_phases(in_plane, &geo, scratch);
            plane(scratch, &geo, w, bias[ch], out_plane, act);
        });
}

/// Copies an `h×w` plane into `scratch` as `h` rows × `s` phases × `phase_len`: phase `p`,
/// element `j` is padded column `j·s + p` (zero in the left/right padding), so output
/// column `x` at tap `kx` reads phase `kx % s` at `kx / s + x`, contiguous in `x`.
fn fill_phases(inp: &[f32], geo: &Plane, scratch: &mut Vec<f32>) {
    let s = geo.window.stride;
    let pl = geo.window.pads.left;
    let l = geo.phase_len();
    scratch.resize(geo.h * s * l, 0.0);
    for (row, dst_row) in inp.chunks_exact(geo.w).zip(scratch.chunks_exact_mut(s * l)) {
        for (p, dst) in dst_row.chunks_exact_mut(l).enumerate() {
            let valid = valid_outputs(l, geo.w, s, p, pl);
            dst[..valid.start].fill(0.0);
            dst[valid.end..].fill(0.0);
            if valid.is_empty() {
                continue;
            }
            if s == 1 {
                let first = valid.start + p - pl;
                dst[valid.clone()].copy_from_slice(&row[first..first + valid.len()]);
            } else {
                for j in valid {
                    dst[j] = row[j * s + p - pl];
                }
            }
        }
    }
}

/// One output plane from its phase-split input.
fn plane<F: Fn(f32) -> f32>(
    scratch: &[f32],
    geo: &Plane,
    w: &[f32],
    bias: f32,
    out: &mut [f32],
    act: F,
) {
    let Window { k, stride: s, pads } = geo.window;
    let l = geo.phase_len();
    let ow = geo.ow;
    for (oy, orow) in out.chunks_exact_mut(ow).enumerate() {
        orow.fill(bias);
        for ky in 0..k {
            // Rows in the top/bottom padding add nothing.
            let Some(iy) = (oy * s + ky).checked_sub(pads.top).filter(|&iy| iy < geo.h) else {
                continue;
            };
            let row = &scratch[iy * s * l..(iy + 1) * s * l];
            let src = |kx: usize| {
                let start = (kx % s) * l + kx / s;
                &row[start..start + ow]
            };
            let wr = &w[ky * k..(ky + 1) * k];
            match k {
                3 => taps3(orow, [wr[0], wr[1], wr[2]], [src(0), src(1), src(2)]),
                5 => taps5(
                    orow,
                    [wr[0], wr[1], wr[2], wr[3], wr[4]],
                    [src(0), src(1), src(2), src(3), src(4)],
                ),
                _ => {
                    for (kx, &wv) in wr.iter().enumerate() {
                        for (a, &v) in orow.iter_mut().zip(src(kx)) {
                            *a += wv * v;
                        }
                    }
                }
            }
        }
        for a in orow.iter_mut() {
            *a = act(*a);
        }
    }
}

// One kernel row's taps per pass over the output row: the zipped slice iterators vectorize
// without bounds checks, and the accumulator is loaded and stored once per k taps.
#[inline(always)]
fn taps3(acc: &mut [f32], w: [f32; 3], s: [&[f32]; 3]) {
    for (((a, &x0), &x1), &x2) in acc.iter_mut().zip(s[0]).zip(s[1]).zip(s[2]) {
        *a += w[0] * x0 + w[1] * x1 + w[2] * x2;
    }
}

#[inline(always)]
fn taps5(acc: &mut [f32], w: [f32; 5], s: [&[f32]; 5]) {
    for (((((a, &x0), &x1), &x2), &x3), &x4) in acc
        .iter_mut()
        .zip(s[0])
        .zip(s[1])
        .zip(s[2])
        .zip(s[3])
        .zip(s[4])
    {
        *a += w[0] * x0 + w[1] * x1 + w[2] * x2 + w[3] * x3 + w[4] * x4;
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;
    use crate::infer::cnn::testutil::{Rng, assert_close};
    use crate::infer::cnn::window::Pads;

    /// candle's grouped `conv2d` on an explicitly zero-padded input, then bias and act.
    fn reference(x: &Tensor, w: &Tensor, b: &Tensor, window: Window, act: Act) -> Tensor {
        let c = x.dim(1).unwrap();
        let p = window.pads;
        let x = x
            .pad_with_zeros(2, p.top, p.bottom)
            .unwrap()
            .pad_with_zeros(3, p.left, p.right)
            .unwrap();
        let y = x.conv2d(w, 0, window.stride, 1, c).unwrap();
        let y = y.broadcast_add(&b.reshape((1, c, 1, 1)).unwrap()).unwrap();
        act.apply_tensor(&y).unwrap()
    }

    #[test]
    fn depthwise_matches_candle_grouped_conv() {
        let dev = Device::Cpu;
        let mut rng = Rng::new(7);
        let cases = [
            // (n, c, h, w, k, stride, pads, act)
            (1, 3, 7, 9, 3, 1, Pads::uniform(1), Act::Relu6),
            (
                2,
                4,
                11,
                13,
                3,
                2,
                Pads {
                    top: 0,
                    bottom: 1,
                    left: 0,
                    right: 1,
                },
                Act::Relu6,
            ),
            (
                3,
                2,
                9,
                7,
                5,
                2,
                Pads {
                    top: 1,
                    bottom: 2,
                    left: 1,
                    right: 2,
                },
                Act::Relu,
            ),
            (1, 5, 13, 11, 5, 1, Pads::uniform(2), Act::Identity),
            (2, 3, 8, 10, 1, 1, Pads::default(), Act::Relu6),
            (
                1,
                2,
                11,
                9,
                1,
                2,
                Pads {
                    top: 0,
                    bottom: 1,
                    left: 1,
                    right: 0,
                },
                Act::Identity,
            ),
            (
                2,
                3,
                12,
                13,
                7,
                1,
                Pads {
                    top: 3,
                    bottom: 2,
                    left: 0,
                    right: 3,
                },
                Act::Relu,
            ),
            (1, 2, 13, 12, 7, 2, Pads::uniform(3), Act::Relu6),
            (
                1,
                2,
                5,
                6,
                3,
                3,
                Pads {
                    top: 2,
                    bottom: 0,
                    left: 0,
                    right: 2,
                },
                Act::Identity,
            ),
        ];
        for (n, c, h, w, k, stride, pads, act) in cases {
            let x = rng.tensor((n, c, h, w), -4.0, 4.0, &dev);
            let wt = rng.tensor((c, 1, k, k), -1.0, 1.0, &dev);
            let b = rng.tensor(c, -1.0, 1.0, &dev);
            let window = Window { k, stride, pads };
            let wv = wt.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let bv = b.to_vec1::<f32>().unwrap();
            let got = x
                .apply_op1_no_bwd(&Depthwise {
                    weight: &wv,
                    bias: &bv,
                    window,
                    act,
                })
                .unwrap();
            let want = reference(&x, &wt, &b, window, act);
            assert_close(
                &got,
                &want,
                1e-4,
                &format!("depthwise {n}x{c}x{h}x{w} k{k} s{stride} {pads:?} {act:?}"),
            );
        }
    }

    #[test]
    fn depthwise_rejects_mismatched_weights_and_strided_input() {
        let dev = Device::Cpu;
        let x = Tensor::zeros((1, 3, 5, 5), candle_core::DType::F32, &dev).unwrap();
        let window = Window {
            k: 3,
            stride: 1,
            pads: Pads::uniform(1),
        };
        let op = Depthwise {
            weight: &[0.0; 18],
            bias: &[0.0; 3],
            window,
            act: Act::Relu,
        };
        assert!(x.apply_op1_no_bwd(&op).is_err());
        let xt = x.transpose(2, 3).unwrap();
        let op = Depthwise {
            weight: &[0.0; 27],
            bias: &[0.0; 3],
            window,
            act: Act::Relu,
        };
        assert!(xt.apply_op1_no_bwd(&op).is_err());
        assert!(
            x.to_dtype(candle_core::DType::F64)
                .unwrap()
                .apply_op1_no_bwd(&op)
                .is_err()
        );
    }
}

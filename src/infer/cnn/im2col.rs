//! im2col: unfolds every `k×k` window of an NCHW batch into a column, so that a dense
//! convolution becomes one matrix product per image (`weight[cout, cin·k·k] × cols`).

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape};
use rayon::prelude::*;

use super::host::f32_data;
use super::window::{Window, valid_outputs};

/// `N×C×H×W` → `N×(C·k·k)×(OH·OW)`; row `(c, ky, kx)` holds `x[c, oy·s + ky, ox·s + kx]`
/// for every output `(oy, ox)`, zero in the padding.
pub(crate) struct Im2col {
    pub(crate) window: Window,
}

impl CustomOp1 for Im2col {
    fn name(&self) -> &'static str {
        "im2col"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_data(storage, layout, "im2col input")?;
        let (n, c, h, w) = layout.shape().dims4()?;
        let (oh, ow) = self.window.out_hw(h, w)?;
        let k = self.window.k;
        let p = oh * ow;
        let mut out = vec![0f32; n * c * k * k * p];
        // One task per (image, input channel): its k·k rows of the output.
        out.par_chunks_mut(k * k * p)
            .zip(x.par_chunks(h * w))
            .for_each(|(rows, plane)| unfold_plane(plane, h, w, oh, ow, self.window, rows));
        Ok((CpuStorage::F32(out), Shape::from((n, c * k * k, p))))
    }
}

fn unfold_plane(
    plane: &[f32],
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    win: Window,
    rows: &mut [f32],
) {
    let Window { k, stride: s, pads } = win;
    for (tap, row) in rows.chunks_exact_mut(oh * ow).enumerate() {
        let (ky, kx) = (tap / k, tap % k);
        let ys = valid_outputs(oh, h, s, ky, pads.top);
        let xs = valid_outputs(ow, w, s, kx, pads.left);
        // `out` was zeroed: only the in-image part is written.
        if xs.is_empty() {
            continue;
        }
        for oy in ys {
            let iy = oy * s + ky - pads.top;
            let src = &plane[iy * w..(iy + 1) * w];
            let dst = &mut row[oy * ow..(oy + 1) * ow];
            let first = xs.start * s + kx - pads.left;
            if s == 1 {
                dst[xs.clone()].copy_from_slice(&src[first..first + xs.len()]);
            } else {
                for (d, &v) in dst[xs.clone()]
                    .iter_mut()
                    .zip(src[first..].iter().step_by(s))
                {
                    *d = v;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;
    use crate::infer::cnn::testutil::{Rng, assert_close};
    use crate::infer::cnn::window::Pads;

    #[test]
    fn im2col_matmul_matches_candle_conv2d() {
        let dev = Device::Cpu;
        let mut rng = Rng::new(11);
        let cases = [
            // (n, cin, cout, h, w, k, stride, pads)
            (1, 3, 4, 7, 9, 3, 1, Pads::uniform(1)),
            (
                2,
                3,
                5,
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
            ),
            (
                3,
                2,
                3,
                9,
                7,
                5,
                2,
                Pads {
                    top: 1,
                    bottom: 2,
                    left: 2,
                    right: 1,
                },
            ),
            (1, 4, 6, 11, 13, 7, 2, Pads::uniform(3)),
            (2, 5, 3, 7, 9, 1, 2, Pads::default()),
            (1, 5, 3, 7, 9, 1, 1, Pads::uniform(1)),
            (
                2,
                2,
                4,
                13,
                11,
                5,
                1,
                Pads {
                    top: 2,
                    bottom: 2,
                    left: 0,
                    right: 4,
                },
            ),
            (
                1,
                2,
                2,
                6,
                5,
                3,
                3,
                Pads {
                    top: 0,
                    bottom: 2,
                    left: 2,
                    right: 0,
                },
            ),
        ];
        for (n, cin, cout, h, w, k, stride, pads) in cases {
            let x = rng.tensor((n, cin, h, w), -2.0, 2.0, &dev);
            let wt = rng.tensor((cout, cin, k, k), -1.0, 1.0, &dev);
            let window = Window { k, stride, pads };
            let (oh, ow) = window.out_hw(h, w).unwrap();
            let cols = x.apply_op1_no_bwd(&Im2col { window }).unwrap();
            let got = wt
                .reshape((cout, cin * k * k))
                .unwrap()
                .broadcast_left(n)
                .unwrap()
                .matmul(&cols)
                .unwrap()
                .reshape((n, cout, oh, ow))
                .unwrap();
            let xp = x
                .pad_with_zeros(2, pads.top, pads.bottom)
                .unwrap()
                .pad_with_zeros(3, pads.left, pads.right)
                .unwrap();
            let want = xp.conv2d(&wt, 0, stride, 1, 1).unwrap();
            assert_close(
                &got,
                &want,
                1e-4,
                &format!("im2col {n}x{cin}x{h}x{w} k{k} s{stride} {pads:?}"),
            );
        }
    }

    #[test]
    fn im2col_rejects_non_contiguous_input() {
        let x = Tensor::zeros((1, 2, 4, 5), candle_core::DType::F32, &Device::Cpu).unwrap();
        let window = Window {
            k: 3,
            stride: 1,
            pads: Pads::uniform(1),
        };
        assert!(
            x.transpose(2, 3)
                .unwrap()
                .apply_op1_no_bwd(&Im2col { window })
                .is_err()
        );
    }
}

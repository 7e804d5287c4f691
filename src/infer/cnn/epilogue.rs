//! In-place epilogues for a conv computed as a matrix product: `act(y + bias[c])` and
//! `act(y + bias[c] + residual)` in one pass over the freshly computed output.

use candle_core::{CpuStorage, InplaceOp1, InplaceOp2, Layout, Result, bail};
use rayon::prelude::*;

use super::act::{Act, with_act};
use super::host::{f32_data, f32_data_mut};

/// `y[n, c, ..] = act(y[n, c, ..] + bias[c])`, in place on a contiguous `N×C×…` tensor.
pub(crate) struct BiasAct<'a> {
    pub(crate) bias: &'a [f32],
    pub(crate) act: Act,
}

/// `y[n, c, ..] = act(y[n, c, ..] + bias[c] + residual[n, c, ..])`, in place; `residual`
/// has `y`'s shape.
pub(crate) struct BiasResidualAct<'a> {
    pub(crate) bias: &'a [f32],
    pub(crate) act: Act,
}

/// Elements per `(image, channel)` plane, checking the channel count.
fn plane_len(layout: &Layout, channels: usize, what: &str) -> Result<usize> {
    let dims = layout.dims();
    if dims.len() < 2 || dims[1] != channels || channels == 0 {
        bail!("{what}: expected N×{channels}×…, got {dims:?}")
    }
    Ok(dims[2..].iter().product())
}

impl InplaceOp1 for BiasAct<'_> {
    fn name(&self) -> &'static str {
        "bias-act"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> Result<()> {
        let plane = plane_len(layout, self.bias.len(), "bias-act")?;
        let y = f32_data_mut(storage, layout, "bias-act")?;
        if plane > 0 {
            with_act!(self.act, bias_act(y, plane, self.bias));
        }
        Ok(())
    }
}

impl InplaceOp2 for BiasResidualAct<'_> {
    fn name(&self) -> &'static str {
        "bias-residual-act"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<()> {
        if l1.dims() != l2.dims() {
            bail!(
                "bias-residual-act: output {:?} but residual {:?}",
                l1.dims(),
                l2.dims()
            )
        }
        let plane = plane_len(l1, self.bias.len(), "bias-residual-act")?;
        let r = f32_data(s2, l2, "bias-residual-act residual")?;
        let y = f32_data_mut(s1, l1, "bias-residual-act")?;
        if plane > 0 {
            with_act!(self.act, bias_residual_act(y, r, plane, self.bias));
        }
        Ok(())
    }
}

fn bias_act<F: Fn(f32) -> f32 + Copy + Sync>(y: &mut [f32], plane: usize, bias: &[f32], act: F) {
    y.par_chunks_mut(plane).enumerate().for_each(|(i, p)| {
        let b = bias[i % bias.len()];
        for v in p {
            *v = act(*v + b);
        }
    });
}

fn bias_residual_act<F: Fn(f32) -> f32 + Copy + Sync>(
    y: &mut [f32],
    r: &[f32],
    plane: usize,
    bias: &[f32],
    act: F,
) {
    y.par_chunks_mut(plane)
        .zip(r.par_chunks(plane))
        .enumerate()
        .for_each(|(i, (p, rp))| {
            let b = bias[i % bias.len()];
            for (v, &rv) in p.iter_mut().zip(rp) {
                *v = act(*v + b + rv);
            }
        });
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;
    use crate::infer::cnn::testutil::{Rng, assert_close};

    #[test]
    fn epilogues_match_broadcast_add_and_activation() {
        let dev = Device::Cpu;
        let mut rng = Rng::new(3);
        for (shape, act) in [
            ((2usize, 5usize, 7usize, 9usize), Act::Relu),
            ((1, 3, 11, 13), Act::Relu6),
            ((3, 4, 1, 1), Act::Identity),
        ] {
            let c = shape.1;
            let x = rng.tensor(shape, -8.0, 8.0, &dev);
            let r = rng.tensor(shape, -8.0, 8.0, &dev);
            let b = rng.tensor(c, -2.0, 2.0, &dev);
            let bv = b.to_vec1::<f32>().unwrap();
            let bb = b.reshape((1, c, 1, 1)).unwrap();

            let y = x.copy().unwrap();
            y.inplace_op1(&BiasAct { bias: &bv, act }).unwrap();
            let want = act.apply_tensor(&x.broadcast_add(&bb).unwrap()).unwrap();
            assert_close(&y, &want, 1e-6, &format!("bias-act {shape:?} {act:?}"));

            let y = x.copy().unwrap();
            y.inplace_op2(&r, &BiasResidualAct { bias: &bv, act })
                .unwrap();
            let want = act
                .apply_tensor(&(x.broadcast_add(&bb).unwrap() + &r).unwrap())
                .unwrap();
            assert_close(
                &y,
                &want,
                1e-6,
                &format!("bias-residual-act {shape:?} {act:?}"),
            );
        }
    }

    #[test]
    fn epilogues_reject_mismatched_shapes() {
        let dev = Device::Cpu;
        let y = Tensor::zeros((1, 3, 2, 2), candle_core::DType::F32, &dev).unwrap();
        assert!(
            y.inplace_op1(&BiasAct {
                bias: &[0.0; 4],
                act: Act::Relu
            })
            .is_err()
        );
        let r = Tensor::zeros((1, 3, 2, 3), candle_core::DType::F32, &dev).unwrap();
        assert!(
            y.inplace_op2(
                &r,
                &BiasResidualAct {
                    bias: &[0.0; 3],
                    act: Act::Relu
                }
            )
            .is_err()
        );
    }
}

//! Test helpers: a seeded generator, closeness checks, random weights for whole networks,
//! and the unfused conv → BatchNorm reference the fast layers are checked against.

use std::collections::HashMap;

use candle_core::{Device, Result, Shape, Tensor};
use candle_nn::VarMap;

use super::window::{Padding, Window};

/// splitmix64: deterministic, dependency-free numbers for test inputs and weights.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[lo, hi)`.
    pub(crate) fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        let u = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * u
    }

    pub(crate) fn tensor<S: Into<Shape>>(
        &mut self,
        shape: S,
        lo: f32,
        hi: f32,
        dev: &Device,
    ) -> Tensor {
        let shape = shape.into();
        let data: Vec<f32> = (0..shape.elem_count())
            .map(|_| self.uniform(lo, hi))
            .collect();
        Tensor::from_vec(data, shape, dev).unwrap()
    }
}

/// Asserts `|got − want| ≤ tol·(1 + |want|)` element-wise, with the worst element in the
/// message.
pub(crate) fn assert_close(got: &Tensor, want: &Tensor, tol: f32, what: &str) {
    assert_eq!(got.dims(), want.dims(), "{what}: shapes");
    let g = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let w = want.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let mut worst = (0usize, 0f32);
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        let err = (a - b).abs() / (1.0 + b.abs());
        assert!(
            err.is_finite() || a == b,
            "{what}: element {i} is {a}, want {b}"
        );
        if err > worst.1 {
            worst = (i, err);
        }
    }
    let (i, err) = worst;
    assert!(
        err <= tol,
        "{what}: element {i} is {}, want {} (error {err:e} > {tol:e})",
        g[i],
        w[i]
    );
}

/// Fills every variable of `vm` with seeded values that keep activations O(1) through a
/// deep network: He-uniform conv/linear weights, BatchNorm γ near 1, small β and means,
/// variances in `[0.5, 2)`. Each name gets its own stream, so the result does not depend
/// on the map's iteration order.
pub(crate) fn randomize(vm: &VarMap, seed: u64) {
    let data = vm.data().lock().unwrap();
    for (name, var) in data.iter() {
        let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x1000_0000_01b3)
        });
        let mut rng = Rng::new(seed ^ hash);
        let dims = var.dims().to_vec();
        let (lo, hi) = if dims.len() > 1 {
            let fan_in: usize = dims[1..].iter().product();
            let a = (6.0 / fan_in as f32).sqrt();
            (-a, a)
        } else if name.ends_with("running_var") {
            (0.5, 2.0)
        } else if name.ends_with("weight") {
            (0.5, 1.5)
        } else {
            (-0.2, 0.2)
        };
        var.set(&rng.tensor(dims, lo, hi, var.device())).unwrap();
    }
}

/// The tensors of `vm` by name.
pub(crate) fn tensors(vm: &VarMap) -> HashMap<String, Tensor> {
    vm.data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().copy().unwrap()))
        .collect()
}

fn get<'a>(map: &'a HashMap<String, Tensor>, name: &str) -> Result<&'a Tensor> {
    map.get(name)
        .ok_or_else(|| candle_core::Error::Msg(format!("reference: no tensor {name}")))
}

/// Unfused reference: zero padding, candle `conv2d` with the raw weight `{conv}.weight`,
/// then BatchNorm `(y − mean)/√(var + eps)·γ + β` from `{bn}.*`, no activation.
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv_bn_reference(
    x: &Tensor,
    map: &HashMap<String, Tensor>,
    conv: &str,
    bn: &str,
    stride: usize,
    padding: Padding,
    depthwise: bool,
    eps: f64,
) -> Result<Tensor> {
    let dtype = x.dtype();
    let w = get(map, &format!("{conv}.weight"))?.to_dtype(dtype)?;
    let (_, c, h, wd) = x.dims4()?;
    let k = w.dim(2)?;
    let p = Window::new(k, stride, padding, h, wd).pads;
    let xp = x
        .pad_with_zeros(2, p.top, p.bottom)?
        .pad_with_zeros(3, p.left, p.right)?;
    let y = xp.conv2d(&w, 0, stride, 1, if depthwise { c } else { 1 })?;
    let cout = y.dim(1)?;
    let ch = |name: &str| -> Result<Tensor> {
        get(map, &format!("{bn}.{name}"))?
            .to_dtype(dtype)?
            .reshape((1, cout, 1, 1))
    };
    let std = (ch("running_var")? + eps)?.sqrt()?;
    y.broadcast_sub(&ch("running_mean")?)?
        .broadcast_div(&std)?
        .broadcast_mul(&ch("weight")?)?
        .broadcast_add(&ch("bias")?)
}

/// `x·Wᵀ + b` from `{name}.weight` and `{name}.bias`.
pub(crate) fn linear_reference(
    x: &Tensor,
    map: &HashMap<String, Tensor>,
    name: &str,
) -> Result<Tensor> {
    let w = get(map, &format!("{name}.weight"))?.to_dtype(x.dtype())?;
    let b = get(map, &format!("{name}.bias"))?.to_dtype(x.dtype())?;
    x.matmul(&w.t()?)?.broadcast_add(&b)
}

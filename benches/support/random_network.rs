//! The image networks with seeded random weights, for the forward benchmarks (`cnn`,
//! `gpu_forward`): timing does not depend on what the weights are.

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use infergate::infer::cnn::{Arch, Network, Precision, build};

/// A network with seeded random weights that keep activations O(1): the first `build`
/// registers every tensor in the map, which is then filled and read again.
pub(crate) fn random_network(
    arch: Arch,
    device: &Device,
    precision: Precision,
) -> Box<dyn Network> {
    // Filled on the CPU, then built on `device` from those tensors.
    let dev = Device::Cpu;
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, &dev);
    build(arch, vb.clone(), 1000, Precision::F32).expect("registering the tensors");
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut uniform = move |lo: f32, hi: f32| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        lo + (hi - lo) * ((state >> 40) as f32 / (1u64 << 24) as f32)
    };
    {
        let data = vm.data().lock().expect("var map lock");
        let mut names: Vec<_> = data.keys().cloned().collect();
        names.sort();
        for name in names {
            let var = &data[&name];
            let dims = var.dims().to_vec();
            let (lo, hi) = if dims.len() > 1 {
                let a = (6.0 / dims[1..].iter().product::<usize>() as f32).sqrt();
                (-a, a)
            } else if name.ends_with("running_var") {
                (0.5, 2.0)
            } else if name.ends_with("weight") {
                (0.5, 1.5)
            } else {
                (-0.2, 0.2)
            };
            let n: usize = dims.iter().product();
            let values: Vec<f32> = (0..n).map(|_| uniform(lo, hi)).collect();
            var.set(&Tensor::from_vec(values, dims, &dev).expect("tensor"))
                .expect("set");
        }
    }
    let tensors = vm
        .data()
        .lock()
        .expect("var map lock")
        .iter()
        .map(|(name, var)| (name.clone(), var.as_tensor().clone()))
        .collect();
    let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
    build(arch, vb, 1000, precision).expect("building the network")
}

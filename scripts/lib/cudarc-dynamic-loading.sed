# cudarc's build.rs (scripts/lib/cuda.sh): where `dynamic-linking` would make the CUDA
# libraries load-time dependencies, pick cudarc's `dynamic-loading` mode instead, the one
# its sources switch on (libloading, on first use).
s|^    dynamic_linking(major, minor);$|    println!("cargo:rustc-cfg=feature=\\"dynamic-loading\\""); // dynamic-loading for infergate (scripts/lib/cuda.sh)|

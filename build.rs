//! Compiles the protobuf definitions with protox (no protoc needed): proto/grpc_predict_v2.proto
//! (the Open Inference Protocol's gRPC service) into prost messages and tonic's server trait;
//! proto/model_config.proto (Triton's `config.pbtxt`) into prost messages and the descriptor
//! set its text format is parsed with (`model_config.bin`).

use protox::prost::Message as _;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/grpc_predict_v2.proto");
    println!("cargo:rerun-if-changed=proto/model_config.proto");
    let files = protox::compile(["proto/grpc_predict_v2.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(false)
        .build_transport(false)
        .compile_fds(files)?;
    let config = protox::compile(["proto/model_config.proto"], ["proto"])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("model_config.bin"), config.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(false)
        .compile_fds(config)?;
    Ok(())
}

//! Compiles the gRPC services' protos with a pure-Rust protobuf compiler
//! (protox, so no `protoc` is needed) into tonic/prost code, and writes the
//! encoded descriptor sets that gRPC server reflection serves:
//! `proto/bentoml/grpc/v1/service.proto` (BentoML's v1 service) and the Open
//! Inference Protocol's `../oip/spec/open_inference_grpc.proto`
//! (`inference.GRPCInferenceService`), kept beside that crate's spec.

use std::path::PathBuf;

fn compile(
    include: &str,
    proto: &str,
    descriptor: &str,
    out: &std::path::Path,
) -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed={include}/{proto}");
    // protox resolves google/protobuf/*.proto from its bundled well-known types.
    let mut compiler = protox::Compiler::new([include])?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_file(proto)?;
    std::fs::write(out.join(descriptor), compiler.encode_file_descriptor_set())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=build.rs");
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    compile(
        "proto",
        "bentoml/grpc/v1/service.proto",
        "bentoml_v1_descriptor.bin",
        &out,
    )?;
    compile(
        "../oip/spec",
        "open_inference_grpc.proto",
        "inference_descriptor.bin",
        &out,
    )?;
    Ok(())
}

//! Code generated from `proto/bentoml/grpc/v1/service.proto` (BentoML's v1
//! service and its content messages) by `build.rs`.
#![allow(missing_docs, clippy::all, clippy::pedantic)]

tonic::include_proto!("bentoml.grpc.v1");

/// The encoded `FileDescriptorSet` of the proto and its imports, served by reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/bentoml_v1_descriptor.bin"));

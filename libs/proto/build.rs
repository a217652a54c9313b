//! Compiles `proto/**/*.proto` with protox (pure Rust, so no system `protoc` is needed) and
//! writes both the Rust code and the encoded descriptor set used by server reflection.
use std::{env, fs, path::PathBuf};

use prost::Message;

const FILES: &[&str] = &[
    "concert/queue/v1/queue.proto",
    "concert/catalog/v1/catalog.proto",
    "concert/reservation/v1/reservation.proto",
    "concert/wallet/v1/wallet.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);

    let mut compiler = protox::Compiler::new([&proto_root])?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(FILES)?;
    let fds = compiler.file_descriptor_set();
    fs::write(out_dir.join("concert_descriptor.bin"), fds.encode_to_vec())?;

    // The codec with small buffers (src/lib.rs says why).
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .codec_path("crate::SmallBufferCodec")
        .compile_fds(fds)?;

    println!("cargo:rerun-if-changed={}", proto_root.display());
    Ok(())
}

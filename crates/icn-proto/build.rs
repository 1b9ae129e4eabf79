//! Compiles every `.proto` under the workspace's `proto/` folder into one module tree,
//! with a descriptor set for gRPC server reflection. Regenerating is `cargo build`.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let mut protos = Vec::new();
    collect(&root, &mut protos)?;
    protos.sort();
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptors = out.join("icn_descriptor.bin");
    tonic_prost_build::configure()
        .file_descriptor_set_path(&descriptors)
        .compile_protos(&protos, std::slice::from_ref(&root))?;
    // serde for every message in the proto3 JSON mapping (the gateway's REST bodies).
    pbjson_build::Builder::new().register_descriptors(&std::fs::read(&descriptors)?)?.build(&[".icn"])?;
    println!("cargo:rerun-if-changed={}", root.display());
    for p in &protos {
        println!("cargo:rerun-if-changed={}", p.display());
    }
    Ok(())
}

fn collect(dir: &std::path::Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "proto") {
            out.push(path);
        }
    }
    Ok(())
}

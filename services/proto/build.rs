//! Compiles `proto/` with protox (no system `protoc`), generates messages,
//! clients and servers with tonic-prost-build, writes one encoded descriptor
//! set per service for server reflection, and a table of every RPC with the
//! Pulse method options (mutation, public, admin_only) read from the contracts.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use prost_reflect::{DescriptorPool, Value};

fn proto_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            proto_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "proto") {
            out.push(path);
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let root = root.canonicalize()?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    println!("cargo:rerun-if-changed={}", root.display());

    let mut files = Vec::new();
    proto_files(&root, &mut files);
    let relative: Vec<PathBuf> = files.iter().map(|f| f.strip_prefix(&root).unwrap().to_path_buf()).collect();
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }

    let mut compiler = protox::Compiler::new([&root])?;
    compiler.include_imports(true);
    compiler.open_files(&relative)?;
    let fds = compiler.file_descriptor_set();
    let pool: DescriptorPool = compiler.descriptor_pool();

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Sorted maps encode the same message to the same bytes, which the
        // idempotency layer relies on to recognise a retry.
        .btree_map(".")
        .include_file("pulse.rs")
        .compile_fds(fds)?;

    // One descriptor set per service file (with its imports), so a process
    // serving one service reflects only that service.
    let mut services_rs = String::new();
    let option = |name: &str| pool.get_extension_by_name(name).unwrap_or_else(|| panic!("{name}"));
    let (mutation, public, admin_only, sensitive) = (
        option("pulse.common.v1.mutation"),
        option("pulse.common.v1.public"),
        option("pulse.common.v1.admin_only"),
        option("pulse.common.v1.sensitive_response"),
    );
    writeln!(services_rs, "pub const SERVICES: &[ServiceInfo] = &[")?;
    for rel in &relative {
        let mut single = protox::Compiler::new([&root])?;
        single.include_imports(true);
        single.open_file(rel)?;
        let file = pool.get_file_by_name(&rel.to_string_lossy()).expect("compiled file is in the pool");
        for service in file.services() {
            let bin = format!("{}.bin", service.full_name());
            std::fs::write(out_dir.join(&bin), single.encode_file_descriptor_set())?;
            writeln!(
                services_rs,
                "    ServiceInfo {{ name: {:?}, descriptor_set: include_bytes!(concat!(env!(\"OUT_DIR\"), \"/{bin}\")), methods: &[",
                service.full_name()
            )?;
            for method in service.methods() {
                let opts = method.options();
                let flag = |ext| matches!(opts.get_extension(ext).as_ref(), Value::Bool(true));
                writeln!(
                    services_rs,
                    "        MethodInfo {{ path: \"/{}/{}\", name: {:?}, mutation: {}, public: {}, admin_only: {}, sensitive_response: {}, client_streaming: {}, server_streaming: {} }},",
                    service.full_name(),
                    method.name(),
                    method.name(),
                    flag(&mutation),
                    flag(&public),
                    flag(&admin_only),
                    flag(&sensitive),
                    method.is_client_streaming(),
                    method.is_server_streaming(),
                )?;
            }
            writeln!(services_rs, "    ] }},")?;
        }
    }
    writeln!(services_rs, "];")?;
    std::fs::write(out_dir.join("services.rs"), services_rs)?;
    Ok(())
}

//! Embeds every versioned schema directory under `sql/` with `include_str!`, and makes cargo rebuild
//! the crate whenever a manifest or SQL file there changes (or a version directory is added).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir.join("sql/temporal/versioned");
    println!("cargo::rerun-if-changed={}", root.display());

    let mut dirs: Vec<PathBuf> = read_dir(&root).into_iter().filter(|p| p.is_dir()).collect();
    dirs.sort();
    let mut out = String::from(
        "/// Every version directory under `sql/temporal/versioned`, as embedded at build time.\n",
    );
    out.push_str("pub(crate) static EMBEDDED: &[EmbeddedDir] = &[\n");
    for dir in dirs {
        println!("cargo::rerun-if-changed={}", dir.display());
        let name = dir.file_name().and_then(|n| n.to_str()).expect("utf-8 directory name");
        let mut files: Vec<PathBuf> = read_dir(&dir).into_iter().filter(|p| p.is_file()).collect();
        files.sort();
        writeln!(out, "    EmbeddedDir {{\n        name: {name:?},\n        files: &[").unwrap();
        for file in files {
            println!("cargo::rerun-if-changed={}", file.display());
            let file_name = file.file_name().and_then(|n| n.to_str()).expect("utf-8 file name");
            writeln!(out, "            ({file_name:?}, include_str!({:?})),", file.display().to_string())
                .unwrap();
        }
        out.push_str("        ],\n    },\n");
    }
    out.push_str("];\n");
    let target = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo")).join("embedded.rs");
    std::fs::write(&target, out).expect("writing embedded.rs");
}

fn read_dir(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .collect()
}

//! Every path the xtask uses is built from [`project_root`], never from the caller's cwd.

use std::path::{Path, PathBuf};

/// The root of the workspace checkout (the directory holding the workspace `Cargo.toml`).
///
/// `cargo run` sets `CARGO_MANIFEST_DIR` for the binary it runs, so a moved checkout works
/// without a rebuild; the compile-time value is the fallback when the binary is run directly.
pub(crate) fn project_root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .filter(|dir| dir.join("Cargo.toml").is_file() && dir.ends_with("xtask"))
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest_dir
        .parent()
        .map(Path::to_path_buf)
        .expect("the xtask crate lives one level below the workspace root")
}

/// `profiles/` below the root.
pub(crate) fn profiles_dir() -> PathBuf {
    project_root().join("profiles")
}

/// Scratch space for the xtask (test services, tool virtualenv, terraform CLI config).
pub(crate) fn xtask_target_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map_or_else(|| project_root().join("target"), |dir| project_root().join(dir));
    target.join("tdsql")
}

//! What several test files of this crate share.

#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;

use tdsql_config_renderer::{Config, Loader};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A profile's `profile.toml` with `user` as the user's config.toml on top.
pub fn load(profile: &str, user: &str) -> Config {
    let file = root().join("profiles").join(profile).join("profile.toml");
    Loader::new()
        .file(&file, &format!("profiles/{profile}/profile.toml"))
        .unwrap()
        .text(user, "config.toml")
        .unwrap()
        .load()
        .unwrap()
        .config
}

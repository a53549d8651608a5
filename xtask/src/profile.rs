//! Deployment profiles: one directory each under `profiles/`, recognised by its `profile.toml`.

use anyhow::{Result, bail};

use crate::paths;

/// A known deployment profile.
#[derive(Debug, Clone)]
pub(crate) struct Profile {
    pub(crate) name: String,
}

impl Profile {
    /// Looks a profile up by name; an unknown name is an error that lists the known ones.
    pub(crate) fn find(name: &str) -> Result<Self> {
        let known = known_profiles();
        if let Some(found) = known.iter().find(|p| p.name == name) {
            return Ok(found.clone());
        }
        let names: Vec<&str> = known.iter().map(|p| p.name.as_str()).collect();
        if names.is_empty() {
            bail!(
                "unknown profile `{name}`: no profiles found under {} (is this a complete checkout?)",
                paths::profiles_dir().display()
            );
        }
        bail!(
            "unknown profile `{name}` (from --profile or TDSQL_PROFILE); known profiles: {}",
            names.join(", ")
        )
    }
}

/// Every directory under `profiles/` that holds a `profile.toml`, sorted by name.
pub(crate) fn known_profiles() -> Vec<Profile> {
    let Ok(entries) = std::fs::read_dir(paths::profiles_dir()) else {
        return Vec::new();
    };
    let mut profiles: Vec<Profile> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|dir| dir.join("profile.toml").is_file())
        .filter_map(|dir| Some(Profile { name: dir.file_name()?.to_str()?.to_owned() }))
        .collect();
    profiles.sort_by(|a, b| a.name.cmp(&b.name));
    profiles
}

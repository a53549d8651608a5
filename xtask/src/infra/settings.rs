//! The configuration `infra` needs, and the write-back of what `apply` created.
//!
//! Interim: this reads the few keys it needs from `profiles/<p>/profile.toml` and the user's
//! `config.toml` (`TDSQL_CONFIG_FILE`) until `crate::config` (the typed, layered loader and its
//! comment-preserving editor) lands; then both halves move onto it.

use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use toml_edit::{DocumentMut, Item};

use crate::context::Context;
use crate::paths;

/// What `infra` reads from the configuration.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// `project.name`
    pub(crate) project: String,
    /// `project.region`
    pub(crate) region: String,
    /// `dsql.identifier`, when the user already has a cluster.
    pub(crate) identifier: Option<String>,
    /// Create the coordination tables: `coordination.rate_limiter.enabled || coordination.conn_lease.enabled`.
    pub(crate) create_tables: bool,
    /// `coordination.rate_limiter.table`
    pub(crate) rate_limiter_table: Option<String>,
    /// `coordination.conn_lease.table`
    pub(crate) conn_lease_table: Option<String>,
    /// The user's config file (written back after apply and destroy).
    pub(crate) config_file: PathBuf,
}

/// The user's config file: `TDSQL_CONFIG_FILE`, else `config.toml` at the repository root.
pub(crate) fn config_file() -> PathBuf {
    std::env::var_os("TDSQL_CONFIG_FILE")
        .filter(|v| !v.is_empty())
        .map_or_else(|| paths::project_root().join("config.toml"), PathBuf::from)
}

impl Settings {
    pub(crate) fn load(ctx: &Context) -> Result<Self> {
        let profile_file = paths::profiles_dir().join(&ctx.profile.name).join("profile.toml");
        let config_file = config_file();
        let mut layers = Vec::new();
        for file in [&profile_file, &config_file] {
            match std::fs::read_to_string(file) {
                Ok(text) => layers.push(
                    text.parse::<DocumentMut>()
                        .with_context(|| format!("{} is not valid TOML", file.display()))?,
                ),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(err).with_context(|| format!("reading {}", file.display())),
            }
        }
        let lookup = |key: &str| -> Option<Item> {
            layers.iter().rev().find_map(|doc| {
                let mut item = doc.as_item();
                for part in key.split('.') {
                    item = item.get(part)?;
                }
                Some(item.clone())
            })
        };
        let string =
            |key: &str| lookup(key).and_then(|i| i.as_str().map(str::to_owned)).filter(|s| !s.is_empty());
        let flag = |key: &str| lookup(key).and_then(|i| i.as_bool()).unwrap_or(false);
        let Some(project) = string("project.name") else {
            bail!(
                "project.name is not set in {}: `infra` names every resource after it; run `cargo xtask config \
                 init --name <name> --region <region>` or add `[project] name = \"...\"`",
                config_file.display()
            );
        };
        let Some(region) = string("project.region") else {
            bail!(
                "project.region is not set in {}: add `region = \"us-east-1\"` (or another region with Aurora \
                 DSQL) under [project]",
                config_file.display()
            );
        };
        Ok(Self {
            project,
            region,
            identifier: string("dsql.identifier"),
            create_tables: flag("coordination.rate_limiter.enabled")
                || flag("coordination.conn_lease.enabled"),
            rate_limiter_table: string("coordination.rate_limiter.table"),
            conn_lease_table: string("coordination.conn_lease.table"),
            config_file,
        })
    }
}

/// The values `apply` writes into the config file; `None` removes the key (after destroy).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct WriteBack {
    pub(crate) identifier: Option<String>,
    pub(crate) endpoint: Option<String>,
    pub(crate) rate_limiter_table: Option<String>,
    pub(crate) conn_lease_table: Option<String>,
}

impl WriteBack {
    /// `(key, value)` pairs in the order they are written.
    pub(crate) fn entries(&self) -> [(&'static str, Option<&str>); 4] {
        [
            ("dsql.identifier", self.identifier.as_deref()),
            ("dsql.endpoint", self.endpoint.as_deref()),
            ("coordination.rate_limiter.table", self.rate_limiter_table.as_deref()),
            ("coordination.conn_lease.table", self.conn_lease_table.as_deref()),
        ]
    }
}

/// Writes the values into the config file with the config crate's comment-preserving, atomic
/// editor. Pending: that editor has not landed yet, so nothing is written.
pub(crate) fn write_back(_settings: &Settings, _values: &WriteBack) -> Result<bool> {
    Ok(false)
}

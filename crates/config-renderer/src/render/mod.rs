//! The renderers: every file the containers read, from one validated [`Config`].
//!
//! Output goes to `profiles/<p>/generated/` (git-ignored) under fixed names ([`COMPOSE_ENV`],
//! [`TEMPORAL_ENV`], [`TEMPORAL_CONFIG`], [`DYNAMIC_CONFIG`], [`GRAFANA_DATASOURCES`], and the
//! dashboards below [`GRAFANA_DASHBOARDS`]). No secret is ever rendered: the Grafana password
//! reaches compose as process environment, IAM tokens are made inside the containers at connect time.

mod env;
mod grafana;
mod temporal;

use std::path::{Path, PathBuf};

use crate::edit::write_atomic;
use crate::error::ConfigError;
use crate::model::Config;

pub use env::fork_env_vars;
pub use temporal::{DYNAMIC_CONFIG_TEMPLATE, REGISTERED_DYNAMIC_CONFIG_KEYS, SERVER_CONFIG_TEMPLATE};

/// Compose's `--env-file`: interpolation values (image, published ports, Elasticsearch settings).
pub const COMPOSE_ENV: &str = "compose.env";
/// The Temporal containers' `env_file:`: exactly the variables the fork reads.
pub const TEMPORAL_ENV: &str = "temporal.env";
/// Temporal server config (mount `generated/temporal/` at `/etc/temporal/config`).
pub const TEMPORAL_CONFIG: &str = "temporal/config.yaml";
/// Temporal dynamic config, next to the server config.
pub const DYNAMIC_CONFIG: &str = "temporal/dynamicconfig.yaml";
/// Grafana datasource provisioning.
pub const GRAFANA_DATASOURCES: &str = "grafana/datasources.yaml";
/// The dashboards folder Grafana's file providers read (mount it at `/etc/grafana/dashboards`).
/// Each dashboard keeps its path below the repository's `grafana/`: `grafana/dsql/persistence.json`
/// renders to `grafana/dashboards/dsql/persistence.json`.
pub const GRAFANA_DASHBOARDS: &str = "grafana/dashboards";
/// *Temporal Server Health*, from `grafana/server/server.json` (Grafana's home dashboard).
pub const GRAFANA_SERVER_DASHBOARD: &str = "grafana/dashboards/server/server.json";
/// *DSQL Persistence*, from `grafana/dsql/persistence.json`.
pub const GRAFANA_DSQL_DASHBOARD: &str = "grafana/dashboards/dsql/persistence.json";
/// The dashboard variable holding the CloudWatch `ClusterId` dimension; rendered with the
/// configured cluster as its default.
pub const GRAFANA_DSQL_CLUSTER_VARIABLE: &str = "dsql_cluster";

/// Compose service name of the Temporal frontend (the cluster's RPC address and public client).
pub const FRONTEND_SERVICE: &str = "temporal-frontend";
/// Compose service name of the local profile's PostgreSQL 16.
pub const POSTGRES_SERVICE: &str = "postgresql";
/// Compose service name of the local profile's dsql-local gateway (the host its certificate names).
pub const GATEWAY_SERVICE: &str = "dsql-local";
/// The local PKI, below the generated folder: `ca.crt`, `ca.key`, `server.crt`, `server.key`
/// (written by `tdsql-ops pki`, never by [`write_all`]).
pub const GATEWAY_PKI_DIR: &str = "dsql-local/pki";
/// The local key pair, below the generated folder: `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`,
/// read by the Temporal containers (to sign tokens) and the gateway (to verify them).
pub const LOCAL_KEYPAIR_ENV: &str = "dsql-local/keypair.env";
/// Where the Temporal containers see the local CA (`generated/dsql-local/pki/ca.crt`).
pub const CONTAINER_LOCAL_CA: &str = "/etc/temporal/dsql-local/ca.crt";
/// The gateway's image (built from this workspace).
pub const GATEWAY_IMAGE: &str = "temporal-dsql-local:latest";
/// The compose profile of the Elasticsearch container and its index setup job: compose.env's
/// `COMPOSE_PROFILES` names it unless visibility is on an OpenSearch domain.
pub const COMPOSE_PROFILE_ELASTICSEARCH: &str = "elasticsearch";
/// The compose profile of the dsql stack's index setup job on an OpenSearch domain: compose.env's
/// `COMPOSE_PROFILES` names it when `visibility.backend = "opensearch"`.
pub const COMPOSE_PROFILE_OPENSEARCH: &str = "opensearch";
/// Compose service name of Mimir (Grafana's Prometheus datasource).
pub const MIMIR_SERVICE: &str = "mimir";
/// Where the containers see `generated/temporal/`.
pub const CONTAINER_CONFIG_DIR: &str = "/etc/temporal/config";

/// One rendered file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// Path below the generated folder, `/`-separated.
    pub path: &'static str,
    /// Its contents.
    pub contents: String,
}

/// Renders every file for `config` (`profile` names it in the header comments). The dashboards
/// are the repository's `grafana/` sources (JSON has no comments, so no header), with the
/// [`GRAFANA_DSQL_CLUSTER_VARIABLE`] defaulting to the configured cluster when there is one.
///
/// # Errors
/// [`ConfigError::NoCluster`] when the profile targets Aurora DSQL and no cluster is configured;
/// [`ConfigError::Dashboard`] when a dashboard source is not valid JSON;
/// [`ConfigError::Template`] when a template of `templates/` does not render (a contributor's edit).
pub fn render_all(config: &Config, profile: &str) -> Result<Vec<Rendered>, ConfigError> {
    render_all_as(config, profile, None)
}

/// The user the local profile's gateway container runs as, so it can read the 0600 key files
/// that `config render` wrote as that user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostUser {
    /// `id -u`.
    pub uid: u32,
    /// `id -g`.
    pub gid: u32,
}

/// [`render_all`], with `TDSQL_HOST_UID` and `TDSQL_HOST_GID` in compose.env when `host` is given
/// and the profile runs the gateway.
///
/// # Errors
/// As [`render_all`].
pub fn render_all_as(
    config: &Config,
    profile: &str,
    host: Option<HostUser>,
) -> Result<Vec<Rendered>, ConfigError> {
    let endpoint = config.endpoint().ok_or(ConfigError::NoCluster)?;
    let header = header(profile);
    let mut files = vec![
        Rendered { path: COMPOSE_ENV, contents: env::compose_env(config, &endpoint, &header, host) },
        Rendered { path: TEMPORAL_ENV, contents: env::temporal_env(config, &endpoint, &header) },
        Rendered { path: TEMPORAL_CONFIG, contents: temporal::server_config(config, &endpoint, &header)? },
        Rendered { path: DYNAMIC_CONFIG, contents: temporal::dynamic_config(config, &header)? },
        Rendered { path: GRAFANA_DATASOURCES, contents: grafana::datasources(config, &header) },
    ];
    files.extend(grafana::dashboards(config)?);
    Ok(files)
}

/// Writes `files` below `dir`, each atomically; a file whose contents are unchanged is not
/// rewritten. Returns the path of every file.
///
/// # Errors
/// [`ConfigError::Write`].
pub fn write_all(dir: &Path, files: &[Rendered]) -> Result<Vec<PathBuf>, ConfigError> {
    files
        .iter()
        .map(|file| {
            let path = file.path.split('/').fold(dir.to_path_buf(), |p, part| p.join(part));
            if std::fs::read(&path).ok().as_deref() != Some(file.contents.as_bytes()) {
                write_atomic(&path, file.contents.as_bytes(), false)?;
            }
            Ok(path)
        })
        .collect()
}

fn header(profile: &str) -> String {
    format!(
        "Rendered by `cargo xtask config render` for profile `{profile}`. Do not edit: change config.toml\n\
         (`cargo xtask config set KEY VALUE`) and render again."
    )
}

/// `"text"` with YAML double-quoted escapes: besides `"` and `\\`, every character YAML reads as a
/// line break (which a quoted scalar folds) or does not allow unescaped.
pub(crate) fn yaml_str(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for ch in text.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            // C0 and C1 controls (NEL among them), the Unicode line and paragraph separators, the
            // byte-order mark and the non-characters U+FFFE and U+FFFF.
            c if c.is_control()
                || matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}') =>
            {
                out.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Prefixes every line of `text` with `prefix` (for header comments).
pub(crate) fn commented(text: &str, prefix: &str) -> String {
    text.lines().map(|l| format!("{prefix}{l}\n")).collect()
}

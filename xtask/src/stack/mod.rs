//! The runtime stack: `cargo xtask up`, `down`, `ps`, `logs`, `restart`.
//!
//! Every compose call goes through [`Stack::compose`], which always passes an explicit project
//! name, the profile's rendered env file and its compose file, so a compose command typed by hand
//! in another directory, or a stray `.env`, can never pick a different stack.

pub(crate) mod progress;
pub(crate) mod settings;
#[cfg(test)]
mod static_checks;
pub(crate) mod up;

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use clap::Args;

use crate::context::Context;
use crate::exec::{Cmd, DOCKER};
use crate::paths;

/// Every variable the compose files interpolate from `generated/compose.env` (written by the config
/// renderer), with what it means. Each name is also the `TDSQL_*` override of its config key. The
/// xtask removes them from compose's own environment so the rendered file (which already applied any
/// override) always wins; compose would prefer the shell otherwise.
pub(crate) const COMPOSE_VARIABLES: &[(&str, &str)] = &[
    ("TDSQL_TEMPORAL_IMAGE", "the fork's server image, temporal-dsql-server:<fork short commit>"),
    ("TDSQL_TEMPORAL_PORTS_FRONTEND_GRPC", "frontend gRPC, in the container and on 127.0.0.1"),
    ("TDSQL_TEMPORAL_PORTS_FRONTEND_HTTP", "frontend HTTP API, in the container and on 127.0.0.1"),
    ("TDSQL_TEMPORAL_PORTS_HISTORY_GRPC", "history gRPC (healthcheck)"),
    ("TDSQL_TEMPORAL_PORTS_MATCHING_GRPC", "matching gRPC (healthcheck)"),
    ("TDSQL_TEMPORAL_PORTS_WORKER_GRPC", "worker gRPC (healthcheck)"),
    ("TDSQL_TEMPORAL_PORTS_METRICS", "every Temporal service's Prometheus port (Alloy's targets)"),
    ("TDSQL_TEMPORAL_PORTS_UI", "Temporal UI on 127.0.0.1"),
    ("TDSQL_ELASTICSEARCH_PORT", "Elasticsearch HTTP, in the network and on 127.0.0.1"),
    ("TDSQL_ELASTICSEARCH_URL", "Elasticsearch as the index setup job reaches it"),
    ("TDSQL_ELASTICSEARCH_INDEX", "the visibility index the setup job creates"),
    (
        "TDSQL_OPENSEARCH_ENDPOINT",
        "dsql profile: https://<OpenSearch domain host> the opensearch-setup job creates the index on; \
         empty while visibility is on Elasticsearch (the job does not run then)",
    ),
    ("TDSQL_OPENSEARCH_REGION", "dsql profile: the region opensearch-setup signs its requests for"),
    ("TDSQL_OPENSEARCH_INDEX", "dsql profile: the visibility index opensearch-setup creates on the domain"),
    (
        "TDSQL_OBSERVABILITY_MIMIR_PORT",
        "Mimir HTTP (Prometheus API under /prometheus), in the network and on 127.0.0.1",
    ),
    ("TDSQL_OBSERVABILITY_MIMIR_RETENTION", "how long Mimir keeps samples, e.g. 168h"),
    ("TDSQL_MIMIR_URL", "Mimir as Alloy reaches it"),
    ("TDSQL_OBSERVABILITY_GRAFANA_PORT", "Grafana on 127.0.0.1"),
    ("TDSQL_OBSERVABILITY_GRAFANA_ADMIN_USER", "Grafana admin user"),
    ("TDSQL_LOCAL_POSTGRES_PORT", "local profile: the PostgreSQL 16 stand-in on 127.0.0.1 (debugging)"),
    (
        "TDSQL_LOCAL_GATEWAY_PORT",
        "local profile: the dsql-local gateway (Temporal's DSQL endpoint) on 127.0.0.1",
    ),
    ("TDSQL_LOCAL_GATEWAY_RATE", "local profile: the gateway's new connections per second"),
    ("TDSQL_LOCAL_GATEWAY_BURST", "local profile: the gateway's burst of new connections"),
    ("TDSQL_LOCAL_GATEWAY_MAX_CONNECTIONS", "local profile: the gateway's open connections at most"),
    (
        "TDSQL_LOCAL_GATEWAY_MAX_LIFETIME",
        "local profile: the gateway closes a connection after this long, e.g. 60m",
    ),
    (
        "TDSQL_LOCAL_GATEWAY_LOCK_TIMEOUT",
        "local profile: a row lock wait that counts as a conflict, e.g. 10ms",
    ),
    ("TDSQL_DSQL_LOCAL_IMAGE", "local profile: the gateway's image, temporal-dsql-local:<repo short commit>"),
    ("TDSQL_HOST_UID", "local profile: the host user the gateway runs as (reads the 0600 rendered keys)"),
    ("TDSQL_HOST_GID", "local profile: the host group the gateway runs as"),
    ("TDSQL_PROJECT_REGION", "local profile: the region tokens must be signed for"),
];

/// The compose variables only the local profile uses (the dsql profile's compose.env may omit them).
#[cfg(test)]
pub(crate) const LOCAL_ONLY_VARIABLES: &[&str] = &[
    "TDSQL_LOCAL_POSTGRES_PORT",
    "TDSQL_LOCAL_GATEWAY_PORT",
    "TDSQL_LOCAL_GATEWAY_RATE",
    "TDSQL_LOCAL_GATEWAY_BURST",
    "TDSQL_LOCAL_GATEWAY_MAX_CONNECTIONS",
    "TDSQL_LOCAL_GATEWAY_MAX_LIFETIME",
    "TDSQL_LOCAL_GATEWAY_LOCK_TIMEOUT",
    "TDSQL_DSQL_LOCAL_IMAGE",
    "TDSQL_HOST_UID",
    "TDSQL_HOST_GID",
    "TDSQL_PROJECT_REGION",
];

/// The compose variables only the dsql profile uses (the local profile's compose.env omits them).
#[cfg(test)]
pub(crate) const DSQL_ONLY_VARIABLES: &[&str] =
    &["TDSQL_OPENSEARCH_ENDPOINT", "TDSQL_OPENSEARCH_REGION", "TDSQL_OPENSEARCH_INDEX"];

/// Compose variables the renderer may write empty, so the compose file requires them with `?`
/// (set) rather than `:?` (set and not empty): the endpoint of an OpenSearch domain, empty while
/// visibility is on Elasticsearch, when the one service that reads it is in a profile that is off.
#[cfg(test)]
pub(crate) const EMPTY_WHEN_UNUSED_VARIABLES: &[&str] = &["TDSQL_OPENSEARCH_ENDPOINT"];

/// The Grafana admin password's variable, interpolated by compose.
pub(crate) const GRAFANA_PASSWORD_ENV: &str = "TDSQL_GRAFANA_ADMIN_PASSWORD";

/// A profile's compose stack: where its files are and how compose is called for it.
#[derive(Debug, Clone)]
pub(crate) struct Stack {
    profile: String,
}

impl Stack {
    pub(crate) fn new(ctx: &Context) -> Self {
        Self { profile: ctx.profile.name.clone() }
    }

    /// The compose project name: fixed per profile, so `down` and `ps` never depend on the config.
    pub(crate) fn project_name(&self) -> String {
        format!("tdsql-{}", self.profile)
    }

    /// `profiles/<p>/compose.yaml`, relative to the project root (the cwd of every command).
    pub(crate) fn compose_file(&self) -> PathBuf {
        Path::new("profiles").join(&self.profile).join("compose.yaml")
    }

    /// `profiles/<p>/generated/compose.env`, relative to the project root.
    pub(crate) fn env_file(&self) -> PathBuf {
        Path::new("profiles").join(&self.profile).join("generated").join("compose.env")
    }

    /// `docker compose --project-name .. --env-file .. -f ..` with the secrets compose interpolates.
    /// Without a password (commands that create no container), a placeholder satisfies compose's
    /// `${VAR:?}` check; it never reaches a container.
    pub(crate) fn compose(&self, grafana_password: Option<&str>) -> Cmd {
        let mut cmd = Cmd::new(DOCKER)
            .args(["compose", "--project-name"])
            .arg(self.project_name())
            .arg("--env-file")
            .arg(self.env_file())
            .arg("-f")
            .arg(self.compose_file());
        for (name, _) in COMPOSE_VARIABLES {
            cmd = cmd.env_remove(name);
        }
        // The rendered COMPOSE_PROFILES (visibility on Elasticsearch or not) wins over the shell's too.
        cmd = cmd.env_remove("COMPOSE_PROFILES");
        let password = grafana_password
            .map(str::to_owned)
            .or_else(|| std::env::var(GRAFANA_PASSWORD_ENV).ok().filter(|v| !v.is_empty()))
            .unwrap_or_else(|| "not-used-by-this-command".to_owned());
        cmd.secret_env(GRAFANA_PASSWORD_ENV, password)
    }

    /// The service names of the profile's compose file, in file order.
    pub(crate) fn services(&self) -> Result<Vec<String>> {
        let path = paths::project_root().join(self.compose_file());
        let text =
            std::fs::read_to_string(&path).with_context(|| format!("could not read {}", path.display()))?;
        Ok(service_names(&text))
    }

    /// Fails unless every name is a service of this profile, listing the known ones.
    fn check_services(&self, names: &[String]) -> Result<()> {
        if names.is_empty() {
            return Ok(());
        }
        let known = self.services()?;
        let unknown: Vec<&str> = names.iter().filter(|n| !known.contains(n)).map(String::as_str).collect();
        if unknown.is_empty() {
            return Ok(());
        }
        bail!(
            "unknown service {} in profile `{}`; its services are: {}",
            unknown.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", "),
            self.profile,
            known.join(", ")
        )
    }

    /// Commands other than `up` work on what `up` rendered; without it there is no stack to act on.
    fn require_rendered(&self, ctx: &Context) -> Result<()> {
        if ctx.dry_run || paths::project_root().join(self.env_file()).is_file() {
            return Ok(());
        }
        bail!(
            "profile `{}` has not been started here ({} is missing): run `cargo xtask up{}` first",
            self.profile,
            self.env_file().display(),
            if self.profile == "local" { String::new() } else { format!(" --profile {}", self.profile) }
        )
    }
}

/// The keys of the top-level `services:` mapping, read line by line (two-space indentation, as our
/// compose files are written; the static tests parse them fully).
pub(crate) fn service_names(compose_yaml: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut in_services = false;
    for line in compose_yaml.lines() {
        if !line.starts_with(' ') && !line.starts_with('#') && !line.trim().is_empty() {
            in_services = line.trim_end() == "services:";
            continue;
        }
        if in_services
            && let Some(rest) = line.strip_prefix("  ")
            && !rest.starts_with(' ')
            && !rest.starts_with('#')
            && let Some(name) = rest.trim_end().strip_suffix(':')
        {
            names.push(name.to_owned());
        }
    }
    names
}

/// Compose's flag that enables every compose profile, for `down`: `--remove-orphans` leaves the
/// containers of services whose profile is off (docker/compose#13027), such as the Elasticsearch
/// of a stack switched to OpenSearch visibility since it was started.
pub(crate) const DOWN_PROFILES: [&str; 2] = ["--profile", "*"];

/// Arguments of `cargo xtask down`.
#[derive(Debug, Args)]
pub(crate) struct DownArgs {
    /// Also delete the stack's volumes (PostgreSQL, Elasticsearch, Mimir and Grafana data). Long
    /// form only: `-v` is the global `--verbose`
    #[arg(long)]
    volumes: bool,
}

impl DownArgs {
    pub(crate) fn run(self, ctx: &Context) -> Result<()> {
        let stack = Stack::new(ctx);
        stack.require_rendered(ctx)?;
        let mut cmd = stack.compose(None).args(DOWN_PROFILES).args(["down", "--remove-orphans"]);
        if self.volumes {
            cmd = cmd.arg("--volumes");
        }
        cmd.run(ctx)
    }
}

/// Arguments of `cargo xtask ps`.
#[derive(Debug, Args)]
pub(crate) struct PsArgs {
    /// Also list stopped and one-shot containers
    #[arg(short, long)]
    all: bool,
}

impl PsArgs {
    pub(crate) fn run(self, ctx: &Context) -> Result<()> {
        let stack = Stack::new(ctx);
        stack.require_rendered(ctx)?;
        let mut cmd = stack.compose(None).arg("ps");
        if self.all {
            cmd = cmd.arg("--all");
        }
        cmd.run(ctx)
    }
}

/// Arguments of `cargo xtask logs`.
#[derive(Debug, Args)]
pub(crate) struct LogsArgs {
    /// One service (e.g. temporal-history); all of them when omitted
    service: Option<String>,
    /// Keep streaming new lines
    #[arg(short, long)]
    follow: bool,
    /// Lines to show from the end of each service's log
    #[arg(long, value_name = "N")]
    tail: Option<u32>,
}

impl LogsArgs {
    pub(crate) fn run(self, ctx: &Context) -> Result<()> {
        let stack = Stack::new(ctx);
        stack.check_services(self.service.as_slice())?;
        stack.require_rendered(ctx)?;
        let mut cmd = stack.compose(None).arg("logs");
        if self.follow {
            cmd = cmd.arg("--follow");
        }
        if let Some(tail) = self.tail {
            cmd = cmd.arg("--tail").arg(tail.to_string());
        }
        if let Some(service) = &self.service {
            cmd = cmd.arg(service);
        }
        cmd.run(ctx)
    }
}

/// Arguments of `cargo xtask restart`.
#[derive(Debug, Args)]
pub(crate) struct RestartArgs {
    /// Services to restart (e.g. temporal-history temporal-matching); all of them when omitted
    services: Vec<String>,
}

impl RestartArgs {
    pub(crate) fn run(self, ctx: &Context) -> Result<()> {
        let stack = Stack::new(ctx);
        stack.check_services(&self.services)?;
        stack.require_rendered(ctx)?;
        stack.compose(None).arg("restart").args(&self.services).run(ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_reads_only_the_top_level_services() {
        let yaml = "\
# comment
services:
  # a comment
  db:
    image: postgres
    environment:
      A: b
  web:
    depends_on:
      db:
        condition: service_healthy

volumes:
  data:
";
        assert_eq!(service_names(yaml), ["db", "web"]);
    }

    #[test]
    fn both_profiles_list_their_services() {
        for (profile, extra) in [("local", Some("postgresql")), ("dsql", None)] {
            let stack = Stack { profile: profile.to_owned() };
            let services = stack.services().unwrap();
            for expected in ["elasticsearch", "temporal-history", "temporal-frontend", "grafana", "mimir"] {
                assert!(services.iter().any(|s| s == expected), "{profile}: {services:?}");
            }
            assert_eq!(services.iter().any(|s| s == "postgresql"), extra.is_some(), "{profile}");
        }
    }

    #[test]
    fn an_unknown_service_is_named_with_the_known_ones() {
        let stack = Stack { profile: "local".to_owned() };
        let err = stack.check_services(&["temporal-histroy".to_owned()]).unwrap_err().to_string();
        assert!(err.contains("`temporal-histroy`") && err.contains("temporal-history"), "{err}");
    }
}

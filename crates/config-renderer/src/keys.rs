//! The key registry: every dotted key of the model, its kind and default, derived from
//! [`Config::default`] so it can never drift from the struct.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use toml_edit::{DocumentMut, Item, Value};

use crate::model::Config;

/// The TOML type a key takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Kind {
    /// A string (also durations and enumerations).
    String,
    /// A non-negative integer.
    Integer,
    /// `true` or `false`.
    Bool,
}

impl Kind {
    /// How the kind is named in messages.
    #[must_use]
    pub fn describe(self) -> &'static str {
        match self {
            Self::String => "a string",
            Self::Integer => "an integer",
            Self::Bool => "true or false",
        }
    }

    fn of(value: &Value) -> Option<Self> {
        match value {
            Value::String(_) => Some(Self::String),
            Value::Integer(_) => Some(Self::Integer),
            Value::Boolean(_) => Some(Self::Bool),
            _ => None,
        }
    }
}

/// One key of the model.
#[derive(Debug, Clone)]
pub struct KeyInfo {
    /// Dotted path, such as `dsql.max_conns`.
    pub key: String,
    /// Its TOML type.
    pub kind: Kind,
    /// Its built-in default.
    pub default: Value,
    /// One line on what it does.
    pub doc: &'static str,
}

impl KeyInfo {
    /// The environment variable that overrides it: `TDSQL_` + the key in upper case with `_`
    /// for `.` (`dsql.max_conns` -> `TDSQL_DSQL_MAX_CONNS`). The Grafana password is the one
    /// exception: `TDSQL_GRAFANA_ADMIN_PASSWORD`, the name compose interpolates.
    #[must_use]
    pub fn env_var(&self) -> String {
        env_var(&self.key)
    }

    /// True when the value must never be printed or rendered into a file.
    #[must_use]
    pub fn is_secret(&self) -> bool {
        is_secret(&self.key)
    }
}

/// Keys whose values are secrets: masked by `config show`, never in a rendered file.
pub const SECRET_KEYS: &[&str] = &["observability.grafana_admin_password"];

/// The Grafana admin password's environment variable (for the xtask and compose).
pub const GRAFANA_PASSWORD_ENV: &str = "TDSQL_GRAFANA_ADMIN_PASSWORD";

/// See [`KeyInfo::env_var`].
#[must_use]
pub fn env_var(key: &str) -> String {
    if key == "observability.grafana_admin_password" {
        return GRAFANA_PASSWORD_ENV.to_owned();
    }
    format!("TDSQL_{}", key.replace('.', "_").to_ascii_uppercase())
}

/// See [`KeyInfo::is_secret`].
#[must_use]
pub fn is_secret(key: &str) -> bool {
    SECRET_KEYS.contains(&key)
}

/// Every key, in model order.
pub fn all() -> &'static [KeyInfo] {
    static KEYS: OnceLock<Vec<KeyInfo>> = OnceLock::new();
    KEYS.get_or_init(|| {
        let doc = defaults_document();
        flatten(doc.as_item())
            .into_iter()
            .map(|(key, default)| {
                let kind = Kind::of(&default).expect("the model only has strings, integers and booleans");
                let doc = doc_of(&key);
                KeyInfo { key, kind, default, doc }
            })
            .collect()
    })
}

/// Looks a key up.
#[must_use]
pub fn get(key: &str) -> Option<&'static KeyInfo> {
    all().iter().find(|k| k.key == key)
}

/// A known key that the user probably meant, for "unknown key" messages.
#[must_use]
pub fn suggest(unknown: &str) -> Option<&'static str> {
    let leaf = unknown.rsplit('.').next().unwrap_or(unknown);
    all()
        .iter()
        .map(|k| {
            let their_leaf = k.key.rsplit('.').next().unwrap_or(&k.key);
            let score = if their_leaf == leaf { 0 } else { edit_distance(&k.key, unknown) };
            (score, k.key.as_str())
        })
        .filter(|(score, _)| *score <= 3)
        .min_by_key(|(score, _)| *score)
        .map(|(_, key)| key)
}

/// True when `key` names a section (`dsql`, `dsql.reservoir`) rather than a value.
#[must_use]
pub fn is_section(key: &str) -> bool {
    let prefix = format!("{key}.");
    all().iter().any(|k| k.key.starts_with(&prefix))
}

/// The defaults as a TOML document.
pub(crate) fn defaults_document() -> DocumentMut {
    toml_edit::ser::to_document(&Config::default()).expect("the model serialises to TOML")
}

/// Every leaf value of a document (tables and inline tables walked), by dotted key, in order.
pub(crate) fn flatten(item: &Item) -> Vec<(String, Value)> {
    fn walk(prefix: &str, item: &Item, out: &mut Vec<(String, Value)>) {
        let join = |k: &str| if prefix.is_empty() { k.to_owned() } else { format!("{prefix}.{k}") };
        match item {
            Item::Table(table) => {
                for (k, v) in table.iter() {
                    walk(&join(k), v, out);
                }
            }
            Item::Value(Value::InlineTable(table)) => {
                for (k, v) in table.iter() {
                    walk(&join(k), &Item::Value(v.clone()), out);
                }
            }
            Item::Value(v) => out.push((prefix.to_owned(), v.clone())),
            Item::ArrayOfTables(_) | Item::None => {}
        }
    }
    let mut out = Vec::new();
    walk("", item, &mut out);
    out
}

/// Builds a document holding the given dotted keys as nested tables.
pub(crate) fn unflatten<'a>(entries: impl IntoIterator<Item = (&'a str, &'a Value)>) -> DocumentMut {
    let mut doc = DocumentMut::new();
    for (key, value) in entries {
        let mut table = doc.as_table_mut();
        let mut parts = key.split('.').peekable();
        while let Some(part) = parts.next() {
            if parts.peek().is_none() {
                let mut value = value.clone();
                value.decor_mut().clear();
                table.insert(part, Item::Value(value));
            } else {
                let next = table.entry(part).or_insert_with(|| Item::Table(toml_edit::Table::new()));
                table = next.as_table_mut().expect("sections are tables");
            }
        }
    }
    doc
}

/// The defaults by key (for the merge).
pub(crate) fn default_values() -> BTreeMap<String, Value> {
    all().iter().map(|k| (k.key.clone(), k.default.clone())).collect()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// One-line documentation of every key (used by `config init` and `config show`).
fn doc_of(key: &str) -> &'static str {
    match key {
        "project.name" => "prefix for AWS resource names and tags, and the compose project name",
        "project.region" => "AWS region of the DSQL cluster (and of CloudWatch in Grafana)",
        "fork.path" => "local checkout of the fork iw/temporal (relative to this repository's root)",
        "fork.git" => "git URL to build from instead of fork.path (empty: use fork.path)",
        "fork.git_ref" => "branch, tag or commit to build when fork.git is set",
        "build.arch" => "image architecture: auto (the Docker engine's), amd64 or arm64",
        "dsql.backend" => "dsql (a real Aurora DSQL cluster) or postgres (the local PostgreSQL stand-in)",
        "dsql.identifier" => "cluster identifier, 26 characters; written by `cargo xtask infra apply`",
        "dsql.endpoint" => {
            "DSQL cluster endpoint; empty: <identifier>.dsql.<region>.on.aws; written by `cargo xtask infra apply`"
        }
        "dsql.port" => "endpoint port",
        "dsql.user" => "database user (the server always connects as admin with an IAM token)",
        "dsql.database" => "database name; DSQL has exactly one: postgres",
        "dsql.tls" => "TLS with certificate and host verification (mandatory on DSQL)",
        "dsql.max_conns" => "connections per pool (maxConns)",
        "dsql.max_idle_conns" => "idle connections per pool (maxIdleConns); must equal max_conns",
        "dsql.max_conn_lifetime" => "connection lifetime outside reservoir mode; under DSQL's 60 minutes",
        "dsql.token_duration" => "IAM token lifetime (15s to 1 week; the fork uses at most 15m)",
        "dsql.reservoir.enabled" => "hand out pre-opened connections instead of connecting on demand",
        "dsql.reservoir.target_ready" => "ready connections to hold, at most max_conns; 0: max_conns",
        "dsql.reservoir.low_watermark" => {
            "startup waits until this many connections are ready; 0: the target"
        }
        "dsql.reservoir.base_lifetime" => "connection lifetime before jitter",
        "dsql.reservoir.lifetime_jitter" => "extra lifetime, uniform in [0, jitter), per connection",
        "dsql.reservoir.guard_window" => "connections with less remaining lifetime are not handed out",
        "dsql.reservoir.initial_fill_timeout" => "how long startup waits for low_watermark",
        "dsql.rate_limit.rate" => "new connections per second per process (the cluster allows 100)",
        "dsql.rate_limit.burst" => "token bucket size per process (the cluster allows 1000)",
        "dsql.rate_limit.staggered_startup" => "random delay before a process's first connection",
        "dsql.rate_limit.staggered_startup_max_delay" => "upper bound of that delay",
        "dsql.pool.warmup_stagger" => "spread of the non-reservoir warmup; 0s: chosen from the pool size",
        "dsql.pool.keeper_tick_interval" => "tick of the non-reservoir pool keeper",
        "dsql.pool.keeper_max_conns_per_tick" => "connections the keeper opens per tick; 0: automatic",
        "coordination.rate_limiter.enabled" => "use the DynamoDB-backed cluster-wide connection rate limiter",
        "coordination.rate_limiter.table" => "its DynamoDB table; written by `cargo xtask infra apply`",
        "coordination.rate_limiter.limit" => "new connections per second for the whole cluster",
        "coordination.rate_limiter.max_wait" => "longest wait for a permit",
        "coordination.conn_lease.enabled" => {
            "count every connection against a cluster-wide limit (reservoir mode)"
        }
        "coordination.conn_lease.table" => "its DynamoDB table; written by `cargo xtask infra apply`",
        "coordination.conn_lease.limit" => "cluster-wide connection limit",
        "visibility.backend" => {
            "visibility store: elasticsearch (the local container) or opensearch (an Amazon OpenSearch Service domain)"
        }
        "opensearch.create" => {
            "create the domain with `cargo xtask infra apply` (one t3.small.search node), which writes opensearch.endpoint"
        }
        "opensearch.endpoint" => {
            "the OpenSearch domain's endpoint, https://<host> (visibility.backend = \"opensearch\")"
        }
        "opensearch.region" => {
            "region of the OpenSearch domain, which requests are signed for; empty: project.region"
        }
        "opensearch.index" => "visibility index name in the OpenSearch domain",
        "elasticsearch.host" => "visibility store host inside the compose network",
        "elasticsearch.port" => "visibility store port",
        "elasticsearch.scheme" => "http or https",
        "elasticsearch.version" => "Temporal's Elasticsearch client version: v7 or v8",
        "elasticsearch.index" => "visibility index name",
        "temporal.image" => "image of the fork's server",
        "temporal.history_shards" => "history shards; fixed for the life of a database",
        "temporal.log_level" => "server log level: debug, info, warn or error",
        "temporal.persistence_max_qps" => "persistenceMaxQPS of history, matching and frontend",
        "temporal.task_queue_partitions" => "read and write partitions per task queue",
        "temporal.ports.frontend_grpc" => "frontend gRPC port (published on 127.0.0.1)",
        "temporal.ports.frontend_http" => "frontend HTTP API port (published on 127.0.0.1)",
        "temporal.ports.frontend_membership" => "frontend membership port",
        "temporal.ports.history_grpc" => "history gRPC port",
        "temporal.ports.history_membership" => "history membership port",
        "temporal.ports.matching_grpc" => "matching gRPC port",
        "temporal.ports.matching_membership" => "matching membership port",
        "temporal.ports.worker_grpc" => "worker gRPC port",
        "temporal.ports.worker_membership" => "worker membership port",
        "temporal.ports.metrics" => "Prometheus metrics port of every service",
        "temporal.ports.ui" => "Temporal UI port (published on 127.0.0.1)",
        "observability.grafana_port" => "Grafana port (published on 127.0.0.1)",
        "observability.grafana_admin_user" => "Grafana admin user",
        "observability.grafana_admin_password" => {
            "Grafana admin password; empty: generated here on first render (env TDSQL_GRAFANA_ADMIN_PASSWORD)"
        }
        "observability.mimir_port" => "Mimir HTTP port (published on 127.0.0.1)",
        "observability.mimir_retention" => "how long Mimir keeps metrics",
        "local.postgres_host" => {
            "host of the local profile's PostgreSQL 16 in the compose network (dsql.backend = postgres)"
        }
        "local.postgres_port" => "host port of the local profile's PostgreSQL 16 (published on 127.0.0.1)",
        "infra.state.backend" => {
            "where the Terraform state of terraform/shared lives: local (this clone) or s3"
        }
        "infra.state.bucket" => {
            "S3 bucket of the state (backend = s3); `cargo xtask infra state migrate` moves it there"
        }
        "infra.state.key" => "object key of the state; empty: <project.name>/terraform/shared.tfstate",
        "infra.state.region" => "region of the state bucket and lock table; empty: project.region",
        "infra.state.lock_table" => {
            "DynamoDB table (hash key LockID) for the state lock; empty: S3's own lock file"
        }
        "local.gateway.enabled" => {
            "Temporal reaches the local PostgreSQL through the dsql-local gateway; false: directly (debugging)"
        }
        "local.gateway.port" => "host port of the dsql-local gateway (published on 127.0.0.1)",
        "local.gateway.rate" => "new connections per second the gateway admits (DSQL: 100)",
        "local.gateway.burst" => "connection bucket size of the gateway (DSQL: 1000)",
        "local.gateway.max_connections" => "open connections the gateway allows (DSQL: 10000)",
        "local.gateway.max_lifetime" => "the gateway closes a connection after this long (DSQL: 60m)",
        "local.gateway.lock_timeout" => {
            "how long a row write waits for a lock before failing like DSQL's OCC"
        }
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_documented() {
        let undocumented: Vec<&str> =
            all().iter().filter(|k| k.doc.is_empty()).map(|k| k.key.as_str()).collect();
        assert!(undocumented.is_empty(), "keys without a doc line: {undocumented:?}");
    }

    #[test]
    fn agreed_key_names_exist() {
        for key in [
            "project.name",
            "project.region",
            "fork.path",
            "fork.git",
            "fork.git_ref",
            "build.arch",
            "dsql.identifier",
            "dsql.endpoint",
            "dsql.port",
            "dsql.user",
            "dsql.database",
            "dsql.max_conns",
            "dsql.max_idle_conns",
            "dsql.max_conn_lifetime",
            "dsql.token_duration",
            "coordination.rate_limiter.enabled",
            "coordination.rate_limiter.table",
            "coordination.conn_lease.enabled",
            "coordination.conn_lease.table",
            "coordination.conn_lease.limit",
            "temporal.history_shards",
            "temporal.log_level",
            "temporal.image",
            "local.postgres_host",
            "local.postgres_port",
            "local.gateway.enabled",
            "local.gateway.port",
            "local.gateway.rate",
            "local.gateway.burst",
            "local.gateway.max_connections",
            "local.gateway.max_lifetime",
            "local.gateway.lock_timeout",
        ] {
            assert!(get(key).is_some(), "missing key {key}");
        }
    }

    #[test]
    fn env_names_and_suggestions() {
        assert_eq!(env_var("dsql.max_conns"), "TDSQL_DSQL_MAX_CONNS");
        assert_eq!(env_var("observability.grafana_admin_password"), "TDSQL_GRAFANA_ADMIN_PASSWORD");
        assert_eq!(suggest("dsql.max_con"), Some("dsql.max_conns"));
        assert_eq!(suggest("max_idle_conns"), Some("dsql.max_idle_conns"));
        assert!(is_section("dsql.reservoir"));
        assert!(!is_section("dsql.max_conns"));
    }
}

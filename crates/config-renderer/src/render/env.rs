//! `compose.env` and `temporal.env`.

use std::fmt::Write as _;
use std::time::Duration;

use super::{
    COMPOSE_PROFILE_ELASTICSEARCH, COMPOSE_PROFILE_OPENSEARCH, GATEWAY_IMAGE, GATEWAY_SERVICE, HostUser,
    MIMIR_SERVICE, commented,
};
use crate::model::Config;

/// One `KEY=value` line of an env file, with a comment above when `doc` is not empty.
struct EnvFile {
    text: String,
}

impl EnvFile {
    fn new(header: &str, purpose: &str) -> Self {
        let mut text = commented(header, "# ");
        text.push_str(&commented(purpose, "# "));
        Self { text }
    }

    fn section(&mut self, title: &str) {
        let _ = write!(self.text, "\n# {title}\n");
    }

    fn var(&mut self, name: &str, value: impl ToString) {
        let _ = writeln!(self.text, "{name}={}", env_value(&value.to_string()));
    }
}

/// A value as compose reads it from an env file: bare when it has only safe characters, else
/// single-quoted (no interpolation, no escapes), else double-quoted with escapes.
fn env_value(value: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "_./:@,+=-".contains(c);
    if value.chars().all(safe) {
        value.to_owned()
    } else if !value.contains(['\'', '\n', '\r']) {
        format!("'{value}'")
    } else {
        let escaped = value
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
            .replace('\r', "\\r")
            .replace('$', "$$");
        format!("\"{escaped}\"")
    }
}

/// The names `temporal.env` sets for the fork, in file order (for contract tests).
#[must_use]
pub fn fork_env_vars(config: &Config) -> Vec<String> {
    let endpoint = config.endpoint().unwrap_or_default();
    temporal_env(config, &endpoint, "")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.to_owned()))
        .collect()
}

pub(super) fn temporal_env(c: &Config, endpoint: &str, header: &str) -> String {
    let d = &c.dsql;
    let r = &d.reservoir;
    let mut f = EnvFile::new(
        header,
        "The environment of the Temporal containers (compose `env_file:`): exactly the variables the\n\
         fork's dsql plugin and tools read. No token or password: IAM tokens are made at connect time.",
    );
    f.section("Cluster and IAM tokens");
    f.var("CLUSTER_ENDPOINT", endpoint);
    f.var("REGION", &c.project.region);
    f.var("AWS_REGION", &c.project.region);
    f.var("DSQL_TOKEN_DURATION", &d.token_duration);
    f.section("Per-process connection rate limit and startup");
    f.var("DSQL_CONNECTION_RATE_LIMIT", d.rate_limit.rate);
    f.var("DSQL_CONNECTION_BURST_LIMIT", d.rate_limit.burst);
    f.var("DSQL_STAGGERED_STARTUP", d.rate_limit.staggered_startup);
    f.var("DSQL_STAGGERED_STARTUP_MAX_DELAY", &d.rate_limit.staggered_startup_max_delay);
    let rl = &c.coordination.rate_limiter;
    f.section("Cluster-wide connection rate limiter (DynamoDB)");
    f.var("DSQL_DISTRIBUTED_RATE_LIMITER_ENABLED", rl.enabled);
    f.var("DSQL_DISTRIBUTED_RATE_LIMITER_TABLE", &rl.table);
    f.var("DSQL_DISTRIBUTED_RATE_LIMITER_LIMIT", rl.limit);
    f.var("DSQL_DISTRIBUTED_RATE_LIMITER_MAX_WAIT", &rl.max_wait);
    f.section("Connection reservoir");
    f.var("DSQL_RESERVOIR_ENABLED", r.enabled);
    f.var("DSQL_RESERVOIR_TARGET_READY", c.reservoir_target());
    f.var("DSQL_RESERVOIR_LOW_WATERMARK", c.reservoir_low_watermark());
    f.var("DSQL_RESERVOIR_BASE_LIFETIME", &r.base_lifetime);
    f.var("DSQL_RESERVOIR_LIFETIME_JITTER", &r.lifetime_jitter);
    f.var("DSQL_RESERVOIR_GUARD_WINDOW", &r.guard_window);
    f.var("DSQL_RESERVOIR_INITIAL_FILL_TIMEOUT", &r.initial_fill_timeout);
    let lease = &c.coordination.conn_lease;
    f.section("Cluster-wide connection lease (DynamoDB, reservoir mode)");
    f.var("DSQL_DISTRIBUTED_CONN_LEASE_ENABLED", lease.enabled);
    f.var("DSQL_DISTRIBUTED_CONN_LEASE_TABLE", &lease.table);
    f.var("DSQL_DISTRIBUTED_CONN_LIMIT", lease.limit);
    f.section("Non-reservoir pool warmup and keeper (0 / 0s: the plugin's automatic values)");
    f.var("DSQL_POOL_WARMUP_STAGGER_DURATION", &d.pool.warmup_stagger);
    f.var("DSQL_POOL_KEEPER_TICK_INTERVAL", &d.pool.keeper_tick_interval);
    f.var("DSQL_POOL_KEEPER_MAX_CONNS_PER_TICK", d.pool.keeper_max_conns_per_tick);
    f.section("The fork's temporal-dsql-tool");
    f.var("SQL_HOST", endpoint);
    f.var("SQL_PORT", d.port);
    f.var("SQL_USER", &d.user);
    f.var("SQL_DATABASE", &d.database);
    if c.is_local() {
        f.section(
            "AWS credentials: none here. For the local profile they are the local key pair in\n\
             # generated/dsql-local/keypair.env (a second env_file), which the gateway verifies tokens with",
        );
    }
    f.text
}

pub(super) fn compose_env(c: &Config, endpoint: &str, header: &str, host: Option<HostUser>) -> String {
    let mut f = EnvFile::new(
        header,
        "Compose's --env-file: values the compose file interpolates. Each name is also the TDSQL_*\n\
         variable that overrides the same key, so a shell export means the same thing to both. No\n\
         secrets: the Grafana admin password reaches compose as process environment\n\
         (TDSQL_GRAFANA_ADMIN_PASSWORD).",
    );
    let p = &c.temporal.ports;
    f.section("Project");
    f.var("TDSQL_PROJECT_NAME", &c.project.name);
    f.var("TDSQL_PROJECT_REGION", &c.project.region);
    f.section("Temporal");
    f.var("TDSQL_TEMPORAL_IMAGE", &c.temporal.image);
    f.var("TDSQL_TEMPORAL_PORTS_FRONTEND_GRPC", p.frontend_grpc);
    f.var("TDSQL_TEMPORAL_PORTS_FRONTEND_HTTP", p.frontend_http);
    f.var("TDSQL_TEMPORAL_PORTS_FRONTEND_MEMBERSHIP", p.frontend_membership);
    f.var("TDSQL_TEMPORAL_PORTS_HISTORY_GRPC", p.history_grpc);
    f.var("TDSQL_TEMPORAL_PORTS_HISTORY_MEMBERSHIP", p.history_membership);
    f.var("TDSQL_TEMPORAL_PORTS_MATCHING_GRPC", p.matching_grpc);
    f.var("TDSQL_TEMPORAL_PORTS_MATCHING_MEMBERSHIP", p.matching_membership);
    f.var("TDSQL_TEMPORAL_PORTS_WORKER_GRPC", p.worker_grpc);
    f.var("TDSQL_TEMPORAL_PORTS_WORKER_MEMBERSHIP", p.worker_membership);
    f.var("TDSQL_TEMPORAL_PORTS_METRICS", p.metrics);
    f.var("TDSQL_TEMPORAL_PORTS_UI", p.ui);
    let es = &c.elasticsearch;
    f.section("Elasticsearch (visibility)");
    f.var("TDSQL_ELASTICSEARCH_HOST", &es.host);
    f.var("TDSQL_ELASTICSEARCH_PORT", es.port);
    f.var("TDSQL_ELASTICSEARCH_SCHEME", &es.scheme);
    f.var("TDSQL_ELASTICSEARCH_VERSION", &es.version);
    f.var("TDSQL_ELASTICSEARCH_INDEX", &es.index);
    f.var("TDSQL_ELASTICSEARCH_URL", format!("{}://{}:{}", es.scheme, es.host, es.port));
    if !c.is_local() {
        let os = &c.opensearch;
        f.section(
            "Amazon OpenSearch Service (visibility.backend = \"opensearch\"): what the index setup job\n\
             # opensearch-setup signs for and creates; the endpoint is empty while visibility is on Elasticsearch",
        );
        let endpoint = if c.uses_opensearch() { os.host().map(|h| format!("https://{h}")) } else { None };
        f.var("TDSQL_OPENSEARCH_ENDPOINT", endpoint.unwrap_or_default());
        f.var("TDSQL_OPENSEARCH_REGION", c.opensearch_region());
        f.var("TDSQL_OPENSEARCH_INDEX", &os.index);
    }
    // Compose's own setting (no TDSQL_ key): the Elasticsearch container and its index setup job
    // are in the compose profile `elasticsearch`, the OpenSearch index setup job in `opensearch`;
    // only the one of the configured visibility backend starts.
    if c.uses_opensearch() {
        f.section(
            "Compose's own setting: the profile of the index setup job on the OpenSearch domain (opensearch.endpoint)",
        );
        f.var("COMPOSE_PROFILES", COMPOSE_PROFILE_OPENSEARCH);
    } else {
        f.section(
            "Compose's own setting: the profile of the Elasticsearch container and its index setup job",
        );
        f.var("COMPOSE_PROFILES", COMPOSE_PROFILE_ELASTICSEARCH);
    }
    let o = &c.observability;
    f.section("Observability");
    f.var("TDSQL_OBSERVABILITY_GRAFANA_PORT", o.grafana_port);
    f.var("TDSQL_OBSERVABILITY_GRAFANA_ADMIN_USER", &o.grafana_admin_user);
    f.var("TDSQL_OBSERVABILITY_MIMIR_PORT", o.mimir_port);
    f.var("TDSQL_OBSERVABILITY_MIMIR_RETENTION", o.mimir_retention.as_hours_ceil());
    f.var("TDSQL_MIMIR_URL", format!("http://{MIMIR_SERVICE}:{}", o.mimir_port));
    // Each name is the variable of the key whose value it holds: the local stand-in's host is
    // local.postgres_host, not dsql.endpoint (which only names the DSQL cluster).
    if c.is_local() {
        f.section("Local PostgreSQL 16 stand-in");
        f.var("TDSQL_LOCAL_POSTGRES_HOST", c.local.postgres_host.trim());
        f.var("TDSQL_LOCAL_POSTGRES_PORT", c.local.postgres_port);
        f.var("TDSQL_DSQL_PORT", c.dsql.port);
        f.var("TDSQL_DSQL_USER", &c.dsql.user);
        let g = &c.local.gateway;
        f.section(
            "dsql-local gateway in front of it (Temporal's endpoint unless TDSQL_LOCAL_GATEWAY_ENABLED=false);\n\
             # durations in the gateway's syntax (ms, s, m, h)",
        );
        f.var("TDSQL_LOCAL_GATEWAY_ENABLED", g.enabled);
        f.var("TDSQL_LOCAL_GATEWAY_HOST", GATEWAY_SERVICE);
        f.var("TDSQL_LOCAL_GATEWAY_PORT", g.port);
        f.var("TDSQL_LOCAL_GATEWAY_RATE", g.rate);
        f.var("TDSQL_LOCAL_GATEWAY_BURST", g.burst);
        f.var("TDSQL_LOCAL_GATEWAY_MAX_CONNECTIONS", g.max_connections);
        f.var("TDSQL_LOCAL_GATEWAY_MAX_LIFETIME", gateway_duration(g.max_lifetime.get()));
        f.var("TDSQL_LOCAL_GATEWAY_LOCK_TIMEOUT", gateway_duration(g.lock_timeout.get()));
        f.var("TDSQL_DSQL_LOCAL_IMAGE", GATEWAY_IMAGE);
        if let Some(host) = host {
            f.section("The user the gateway runs as (the owner of its 0600 key files)");
            f.var("TDSQL_HOST_UID", host.uid);
            f.var("TDSQL_HOST_GID", host.gid);
        }
    } else {
        f.section("Cluster");
        f.var("TDSQL_DSQL_ENDPOINT", endpoint);
    }
    f.text
}

/// A duration in the gateway's syntax: a whole number of `h`, `m`, `s` or `ms`, the largest unit
/// that is exact (validation keeps lock timeouts whole milliseconds; finer parts are dropped).
fn gateway_duration(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        0 => "0ms".to_owned(),
        _ if ms.is_multiple_of(3_600_000) => format!("{}h", ms / 3_600_000),
        _ if ms.is_multiple_of(60_000) => format!("{}m", ms / 60_000),
        _ if ms.is_multiple_of(1_000) => format!("{}s", ms / 1_000),
        _ => format!("{ms}ms"),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{env_value, gateway_duration};

    #[test]
    fn gateway_durations_use_the_largest_exact_unit() {
        assert_eq!(gateway_duration(Duration::from_secs(3600)), "1h");
        assert_eq!(gateway_duration(Duration::from_secs(90 * 60)), "90m");
        assert_eq!(gateway_duration(Duration::from_secs(300)), "5m");
        assert_eq!(gateway_duration(Duration::from_secs(45)), "45s");
        assert_eq!(gateway_duration(Duration::from_millis(10)), "10ms");
        assert_eq!(gateway_duration(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn values_are_quoted_only_when_needed() {
        assert_eq!(env_value("temporal-dsql-server:latest"), "temporal-dsql-server:latest");
        assert_eq!(env_value(""), "");
        assert_eq!(env_value("a b$c"), "'a b$c'");
        assert_eq!(env_value("it's $x\n"), "\"it's $$x\\n\"");
    }
}

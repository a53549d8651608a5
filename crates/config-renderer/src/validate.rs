//! Validation of the merged config: each rule names the key it blames and says how to fix it.
//!
//! The limits are Aurora DSQL's (reference: 10,000 connections per cluster, 100 new connections
//! per second with a burst of 1,000, 60-minute connections) and the fork's (token durations).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::duration::human;
use crate::error::Problem;
use crate::model::{Backend, Config, StateBackend, VisibilityBackend};

/// DSQL's connection limit per cluster (default; raisable by AWS support).
pub const CLUSTER_MAX_CONNECTIONS: u32 = 10_000;
/// DSQL's new-connection rate per cluster (per second; not raisable).
pub const CLUSTER_CONNECT_RATE: u32 = 100;
/// DSQL's new-connection burst per cluster.
pub const CLUSTER_CONNECT_BURST: u32 = 1_000;
/// DSQL closes every connection after this long.
pub const CONNECTION_MAX_AGE: Duration = Duration::from_secs(60 * 60);
/// Shortest IAM token the fork accepts.
pub const TOKEN_MIN: Duration = Duration::from_secs(15);
/// Longest IAM token AWS signs (one week).
pub const TOKEN_MAX: Duration = Duration::from_secs(604_800);
/// Longest token the fork uses; above it the fork falls back to 15 minutes.
pub const FORK_TOKEN_MAX: Duration = Duration::from_secs(15 * 60);
/// Temporal services that each open a pool (history, matching, frontend, worker).
pub const TEMPORAL_SERVICES: u32 = 4;

/// Every problem of `config`, errors and warnings, without origins (the loader adds them).
#[must_use]
pub fn validate(config: &Config) -> Vec<Problem> {
    let mut out = Vec::new();
    project(config, &mut out);
    fork(config, &mut out);
    cluster(config, &mut out);
    pool(config, &mut out);
    reservoir(config, &mut out);
    limits(config, &mut out);
    coordination(config, &mut out);
    temporal(config, &mut out);
    gateway(config, &mut out);
    ports(config, &mut out);
    infra_state(config, &mut out);
    visibility(config, &mut out);
    out
}

/// `[local.gateway]`, checked whatever the profile (a bad value should not wait for the switch).
fn gateway(c: &Config, out: &mut Vec<Problem>) {
    let g = &c.local.gateway;
    if g.rate == 0 {
        out.push(Problem::error(
            "local.gateway.rate",
            "0 admits no connection: use 1 or more new connections per second (DSQL: 100)",
        ));
    }
    if g.burst == 0 {
        out.push(Problem::error(
            "local.gateway.burst",
            "0 admits no connection: use a bucket of 1 or more (DSQL: 1000)",
        ));
    }
    if g.max_connections == 0 {
        out.push(Problem::error(
            "local.gateway.max_connections",
            "0 admits no connection: use 1 or more (DSQL: 10000)",
        ));
    }
    if g.max_lifetime.get() < Duration::from_secs(1) {
        out.push(Problem::error(
            "local.gateway.max_lifetime",
            format!("`{}` is under a second: use e.g. 60m (DSQL's lifetime)", g.max_lifetime),
        ));
    }
    let lock = g.lock_timeout.get();
    if lock < Duration::from_millis(1) || !lock.subsec_nanos().is_multiple_of(1_000_000) {
        out.push(Problem::error(
            "local.gateway.lock_timeout",
            format!(
                "`{}` is not a whole number of milliseconds of at least 1ms: use e.g. 10ms",
                g.lock_timeout
            ),
        ));
    }
    if c.uses_gateway() {
        let total = u64::from(c.dsql.max_conns) * 2 * u64::from(TEMPORAL_SERVICES);
        if total > u64::from(g.max_connections) {
            out.push(Problem::warning(
                "local.gateway.max_connections",
                format!(
                    "{} is below the {total} connections the Temporal services may open (dsql.max_conns x 2 x \
                     {TEMPORAL_SERVICES}): the gateway will refuse some with 53300",
                    g.max_connections
                ),
            ));
        }
    }
}

fn project(c: &Config, out: &mut Vec<Problem>) {
    let name = &c.project.name;
    let name_ok = (1..=32).contains(&name.len())
        && name.starts_with(|ch: char| ch.is_ascii_lowercase())
        && name.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-');
    if !name_ok {
        out.push(Problem::error(
            "project.name",
            format!(
                "`{name}` is not a usable name: 1 to 32 characters, lower-case letters, digits and `-`, \
                 starting with a letter (it prefixes AWS resources and the compose project)"
            ),
        ));
    }
    if !region_ok(&c.project.region) {
        out.push(Problem::error(
            "project.region",
            format!(
                "`{}` is not an AWS region: expected a name such as `eu-west-1` or `us-east-1`",
                c.project.region
            ),
        ));
    }
}

/// `xx-name-N` or `xx-name-name-N` (`us-gov-west-1`): lower-case letters, then a number.
fn region_ok(region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    parts.len() >= 3
        && parts[0].len() == 2
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|ch| ch.is_ascii_lowercase()))
        && parts[parts.len() - 1].chars().all(|ch| ch.is_ascii_digit())
        && !parts[parts.len() - 1].is_empty()
}

fn fork(c: &Config, out: &mut Vec<Problem>) {
    if c.fork.git.trim().is_empty() && c.fork.path.trim().is_empty() {
        out.push(Problem::error(
            "fork.path",
            "no fork source: set fork.path to a checkout of iw/temporal or fork.git to its URL",
        ));
    }
    if !c.fork.git.trim().is_empty() && c.fork.git_ref.trim().is_empty() {
        out.push(Problem::error(
            "fork.git_ref",
            "is empty while fork.git is set: name a branch, tag or commit",
        ));
    }
}

fn cluster(c: &Config, out: &mut Vec<Problem>) {
    let d = &c.dsql;
    if d.database != "postgres" {
        out.push(Problem::error(
            "dsql.database",
            format!(
                "`{}`: DSQL has exactly one database, `postgres`, and the server and migrator must \
                 agree on it; set it to \"postgres\"",
                d.database
            ),
        ));
    }
    if d.user != "admin" {
        out.push(Problem::warning(
            "dsql.user",
            format!(
                "`{}` is ignored by the server, which always connects as `admin` with an IAM token",
                d.user
            ),
        ));
    }
    // The cluster keys mean the Aurora DSQL cluster in every profile (infra apply writes them into
    // config.toml, which the local profile reads too), so they are checked whatever the backend.
    cluster_keys(c, out);
    match d.backend {
        Backend::Dsql => {
            if !d.tls {
                out.push(Problem::error(
                    "dsql.tls",
                    "is false, but Aurora DSQL only accepts TLS connections: set it to true",
                ));
            }
        }
        Backend::Postgres => {
            if !hostname_ok(c.local.postgres_host.trim()) {
                out.push(Problem::error(
                    "local.postgres_host",
                    format!(
                        "`{}`: the local stand-in needs a host name (the compose service `postgresql`)",
                        c.local.postgres_host
                    ),
                ));
            }
        }
    }
    if d.port == 0 {
        out.push(Problem::error("dsql.port", "0 is not a port: use 1 to 65535 (DSQL listens on 5432)"));
    }
    let token = d.token_duration.get();
    if token < TOKEN_MIN || token > TOKEN_MAX {
        out.push(Problem::error(
            "dsql.token_duration",
            format!(
                "`{}` is outside 15s to 1 week (604800s), the range AWS signs tokens for",
                d.token_duration
            ),
        ));
    } else if token > FORK_TOKEN_MAX {
        out.push(Problem::warning(
            "dsql.token_duration",
            format!("`{}`: the fork only accepts up to 15m and falls back to 15m above it", d.token_duration),
        ));
    }
}

/// `dsql.identifier` and `dsql.endpoint` name one cluster of `project.region`.
fn cluster_keys(c: &Config, out: &mut Vec<Problem>) {
    let d = &c.dsql;
    let id = d.identifier.trim();
    if !id.is_empty() && !identifier_ok(id) {
        out.push(Problem::error(
            "dsql.identifier",
            format!("`{id}` is not a DSQL cluster identifier: 26 lower-case letters and digits"),
        ));
    }
    let endpoint = d.endpoint.trim();
    if endpoint.is_empty() {
        return;
    }
    let suffix = format!(".dsql.{}.on.aws", c.project.region);
    match endpoint.strip_suffix(&suffix) {
        Some(head) if identifier_ok(head) => {
            if !id.is_empty() && id != head {
                out.push(Problem::error(
                    "dsql.endpoint",
                    format!("`{endpoint}` names cluster `{head}` but dsql.identifier is `{id}`: clear one of them"),
                ));
            }
        }
        // An older config that set the local stand-in's host here.
        _ if c.is_local() && hostname_ok(endpoint) && !endpoint.contains(".dsql.") => {
            out.push(Problem::error(
                "dsql.endpoint",
                format!(
                    "`{endpoint}` is not a DSQL endpoint: dsql.endpoint only names the Aurora DSQL cluster; the \
                     local stand-in's host is local.postgres_host, so move the value there (or remove it: the \
                     default is `postgresql`)"
                ),
            ));
        }
        _ => out.push(Problem::error(
            "dsql.endpoint",
            format!(
                "`{endpoint}` is not a DSQL endpoint of region {region}: expected \
                 `<26-character identifier>.dsql.{region}.on.aws` (or leave it empty and set dsql.identifier)",
                region = c.project.region
            ),
        )),
    }
}

fn identifier_ok(id: &str) -> bool {
    id.len() == 26 && id.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit())
}

fn hostname_ok(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn pool(c: &Config, out: &mut Vec<Problem>) {
    let d = &c.dsql;
    if d.max_conns == 0 {
        out.push(Problem::error("dsql.max_conns", "0 connections: use at least 1"));
    }
    if d.max_idle_conns != d.max_conns {
        out.push(Problem::error(
            "dsql.max_idle_conns",
            format!(
                "{} must equal dsql.max_conns ({}): fewer idle slots make the pool close and reopen \
                 connections (pool decay); set both to the same value",
                d.max_idle_conns, d.max_conns
            ),
        ));
    }
    let lifetime = d.max_conn_lifetime.get();
    if lifetime.is_zero() || lifetime >= CONNECTION_MAX_AGE {
        out.push(Problem::error(
            "dsql.max_conn_lifetime",
            format!(
                "`{}` must be above 0 and under DSQL's 60-minute connection limit (for example `55m`)",
                d.max_conn_lifetime
            ),
        ));
    }
    if d.pool.keeper_tick_interval.get().is_zero() {
        out.push(Problem::error("dsql.pool.keeper_tick_interval", "must be above 0 (for example `1s`)"));
    }
}

fn reservoir(c: &Config, out: &mut Vec<Problem>) {
    let r = &c.dsql.reservoir;
    if r.target_ready > c.dsql.max_conns {
        out.push(Problem::error(
            "dsql.reservoir.target_ready",
            format!(
                "{} is above dsql.max_conns ({}): the reservoir would hold connections the pool can never \
                 use; lower it to at most {}",
                r.target_ready, c.dsql.max_conns, c.dsql.max_conns
            ),
        ));
    }
    let target = c.reservoir_target();
    if r.low_watermark > target {
        out.push(Problem::error(
            "dsql.reservoir.low_watermark",
            format!(
                "{} is above the reservoir target ({target}); the fork would raise the target to it: \
                 lower it to at most {target}",
                r.low_watermark
            ),
        ));
    }
    let (base, jitter, guard) = (r.base_lifetime.get(), r.lifetime_jitter.get(), r.guard_window.get());
    if base.is_zero() {
        out.push(Problem::error(
            "dsql.reservoir.base_lifetime",
            "must be above 0 (the fork's default is 11m)",
        ));
    }
    if base + jitter >= CONNECTION_MAX_AGE {
        out.push(Problem::error(
            "dsql.reservoir.base_lifetime",
            format!(
                "base_lifetime + lifetime_jitter = {} reaches DSQL's 60-minute connection limit: keep the sum \
                 under 60m (the fork's defaults are 11m + 2m)",
                human(base + jitter)
            ),
        ));
    }
    if guard >= base && !base.is_zero() {
        out.push(Problem::error(
            "dsql.reservoir.guard_window",
            format!(
                "`{}` is not shorter than base_lifetime `{}`: every connection would be discarded before use; \
                 keep it well under (the fork's default is 45s)",
                r.guard_window, r.base_lifetime
            ),
        ));
    }
}

fn limits(c: &Config, out: &mut Vec<Problem>) {
    let d = &c.dsql;
    if d.max_conns > CLUSTER_MAX_CONNECTIONS {
        out.push(Problem::error(
            "dsql.max_conns",
            format!("{} is above the cluster's {CLUSTER_MAX_CONNECTIONS} connections", d.max_conns),
        ));
    } else {
        let per_pool = if d.reservoir.enabled { 2 } else { 1 };
        let total = u64::from(d.max_conns) * u64::from(TEMPORAL_SERVICES) * per_pool;
        if total > u64::from(CLUSTER_MAX_CONNECTIONS) {
            out.push(Problem::warning(
                "dsql.max_conns",
                format!(
                    "{} services x {} connections{} = {total}, above the cluster's {CLUSTER_MAX_CONNECTIONS}",
                    TEMPORAL_SERVICES,
                    d.max_conns,
                    if d.reservoir.enabled { " x 2 (pool + reservoir)" } else { "" }
                ),
            ));
        }
    }
    let rl = &d.rate_limit;
    if rl.rate == 0 || rl.rate > CLUSTER_CONNECT_RATE {
        out.push(Problem::error(
            "dsql.rate_limit.rate",
            format!(
                "{} is outside 1 to {CLUSTER_CONNECT_RATE}, the cluster's new connections per second",
                rl.rate
            ),
        ));
    } else if rl.rate * TEMPORAL_SERVICES > CLUSTER_CONNECT_RATE {
        out.push(Problem::warning(
            "dsql.rate_limit.rate",
            format!(
                "{TEMPORAL_SERVICES} services x {}/s = {}/s is above the cluster's {CLUSTER_CONNECT_RATE}/s: \
                 connects will be refused (53400)",
                rl.rate,
                rl.rate * TEMPORAL_SERVICES
            ),
        ));
    }
    if rl.burst == 0 || rl.burst > CLUSTER_CONNECT_BURST {
        out.push(Problem::error(
            "dsql.rate_limit.burst",
            format!("{} is outside 1 to {CLUSTER_CONNECT_BURST}, the cluster's connection burst", rl.burst),
        ));
    }
}

fn coordination(c: &Config, out: &mut Vec<Problem>) {
    let rl = &c.coordination.rate_limiter;
    table_rule("coordination.rate_limiter", rl.enabled, &rl.table, out);
    if rl.enabled && (rl.limit == 0 || rl.limit > CLUSTER_CONNECT_RATE) {
        out.push(Problem::error(
            "coordination.rate_limiter.limit",
            format!(
                "{} is outside 1 to {CLUSTER_CONNECT_RATE}, the cluster's new connections per second",
                rl.limit
            ),
        ));
    }
    let lease = &c.coordination.conn_lease;
    table_rule("coordination.conn_lease", lease.enabled, &lease.table, out);
    if lease.limit == 0 || lease.limit > CLUSTER_MAX_CONNECTIONS {
        out.push(Problem::error(
            "coordination.conn_lease.limit",
            format!(
                "{} is outside 1 to {CLUSTER_MAX_CONNECTIONS}, the cluster's connection limit",
                lease.limit
            ),
        ));
    }
    if lease.enabled && !c.dsql.reservoir.enabled {
        out.push(Problem::warning(
            "coordination.conn_lease.enabled",
            "has no effect without the reservoir: set dsql.reservoir.enabled = true",
        ));
    }
}

fn table_rule(section: &str, enabled: bool, table: &str, out: &mut Vec<Problem>) {
    let key = format!("{section}.table");
    if enabled && table.trim().is_empty() {
        // Creating and naming the table is what `infra apply` does, so this one can wait for it.
        out.push(Problem::pending(
            &key,
            format!(
                "is empty while {section}.enabled is true: run `cargo xtask infra apply` (it creates the table \
                 and writes its name here) or set {section}.enabled = false"
            ),
        ));
    } else if !table.is_empty() && !dynamodb_table_name_ok(table) {
        out.push(Problem::error(
            &key,
            format!("`{table}` is not a DynamoDB table name: 3 to 255 of a-z, A-Z, 0-9, `_`, `-`, `.`"),
        ));
    }
}

/// The S3 backend's settings; with `backend = "local"` they are not used, so not checked.
fn infra_state(c: &Config, out: &mut Vec<Problem>) {
    let state = &c.infra.state;
    if state.backend != StateBackend::S3 {
        return;
    }
    let bucket = state.bucket.trim();
    if bucket.is_empty() {
        out.push(Problem::error(
            "infra.state.bucket",
            "is empty while infra.state.backend is s3: name the team's state bucket (`cargo xtask infra \
             bootstrap-state` creates it), or set infra.state.backend = \"local\"",
        ));
    } else if !s3_bucket_name_ok(bucket) {
        out.push(Problem::error(
            "infra.state.bucket",
            format!(
                "`{bucket}` is not an S3 bucket name: 3 to 63 of a-z, 0-9, `.` and `-`, starting and ending with a \
                 letter or digit"
            ),
        ));
    }
    let key = state.key.trim();
    if key.starts_with('/') || key.ends_with('/') {
        out.push(Problem::error(
            "infra.state.key",
            format!("`{key}` is not an object key for the state: no leading or trailing `/` (e.g. `myproj/shared.tfstate`)"),
        ));
    }
    if !state.region.trim().is_empty() && !region_ok(state.region.trim()) {
        out.push(Problem::error(
            "infra.state.region",
            format!(
                "`{}` is not an AWS region: expected a name such as `eu-west-1`, or empty for project.region",
                state.region
            ),
        ));
    }
    let table = state.lock_table.trim();
    if !table.is_empty() && !dynamodb_table_name_ok(table) {
        out.push(Problem::error(
            "infra.state.lock_table",
            format!("`{table}` is not a DynamoDB table name: 3 to 255 of a-z, A-Z, 0-9, `_`, `-`, `.`"),
        ));
    }
}

/// `[visibility]` and `[opensearch]`. The endpoint, region and index are checked whatever the
/// backend (a bad value should not wait for the switch); the local profile keeps its Elasticsearch
/// container, so there `opensearch` is a warning, not a missing endpoint.
fn visibility(c: &Config, out: &mut Vec<Problem>) {
    let os = &c.opensearch;
    let endpoint = os.endpoint.trim();
    if !endpoint.is_empty() && os.host().is_none() {
        let why = if endpoint.starts_with("http://") {
            "HTTPS only: Amazon OpenSearch Service domains enforce it and requests carry SigV4 signatures"
        } else {
            "expected https://<domain host>, with no path, such as https://search-temporal-abc123.eu-west-1.es.amazonaws.com"
        };
        out.push(Problem::error(
            "opensearch.endpoint",
            format!("`{endpoint}` is not an OpenSearch endpoint: {why}"),
        ));
    }
    let region = os.region.trim();
    if !region.is_empty() && !region_ok(region) {
        out.push(Problem::error(
            "opensearch.region",
            format!("`{region}` is not an AWS region: expected a name such as `eu-west-1`, or empty for project.region"),
        ));
    }
    if !index_ok(&os.index) {
        out.push(Problem::error(
            "opensearch.index",
            format!("`{}` is not an index name: lower-case letters, digits, `_`, `-`, `.`", os.index),
        ));
    }
    if c.visibility.backend != VisibilityBackend::Opensearch {
        return;
    }
    if c.is_local() {
        out.push(Problem::warning(
            "visibility.backend",
            "opensearch applies to the dsql profile only: the local profile keeps its Elasticsearch container \
             (its Temporal containers sign with the local key pair, which AWS does not accept)",
        ));
    } else if endpoint.is_empty() && os.create {
        // Creating the domain and writing its endpoint is what `infra apply` does.
        out.push(Problem::pending(
            "opensearch.endpoint",
            "is empty while opensearch.create is true: run `cargo xtask infra apply` (it creates the domain and \
             writes its endpoint here)",
        ));
    } else if endpoint.is_empty() {
        out.push(Problem::error(
            "opensearch.endpoint",
            "is empty while visibility.backend is opensearch: set the domain's endpoint \
             (`cargo xtask config set opensearch.endpoint https://<domain host>`), let `cargo xtask infra apply` \
             create one (opensearch.create = true), or set visibility.backend = \"elasticsearch\"",
        ));
    }
}

/// An Elasticsearch or OpenSearch index name as the visibility index may be called.
fn index_ok(index: &str) -> bool {
    !index.is_empty()
        && index.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "_-.".contains(ch))
        && !index.starts_with(['_', '-', '.'])
}

fn s3_bucket_name_ok(bucket: &str) -> bool {
    let edge_ok = |ch: Option<char>| ch.is_some_and(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit());
    (3..=63).contains(&bucket.len())
        && bucket.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ".-".contains(ch))
        && edge_ok(bucket.chars().next())
        && edge_ok(bucket.chars().last())
}

fn dynamodb_table_name_ok(table: &str) -> bool {
    (3..=255).contains(&table.len())
        && table.chars().all(|ch| ch.is_ascii_alphanumeric() || "_-.".contains(ch))
}

fn temporal(c: &Config, out: &mut Vec<Problem>) {
    let t = &c.temporal;
    if t.history_shards == 0 {
        out.push(Problem::error("temporal.history_shards", "0: use at least 1 (4 is plenty locally)"));
    }
    if !["debug", "info", "warn", "error"].contains(&t.log_level.as_str()) {
        out.push(Problem::error(
            "temporal.log_level",
            format!("`{}` is not a level: use debug, info, warn or error", t.log_level),
        ));
    }
    if t.image.trim().is_empty() || t.image.contains(char::is_whitespace) {
        out.push(Problem::error("temporal.image", format!("`{}` is not an image reference", t.image)));
    }
    for (key, value) in [
        ("temporal.persistence_max_qps", t.persistence_max_qps),
        ("temporal.task_queue_partitions", t.task_queue_partitions),
    ] {
        if value == 0 {
            out.push(Problem::error(key, "0: use at least 1"));
        }
    }
    let es = &c.elasticsearch;
    if !["http", "https"].contains(&es.scheme.as_str()) {
        out.push(Problem::error("elasticsearch.scheme", format!("`{}`: use http or https", es.scheme)));
    }
    if !["v7", "v8"].contains(&es.version.as_str()) {
        out.push(Problem::error("elasticsearch.version", format!("`{}`: use v7 or v8", es.version)));
    }
    if !hostname_ok(&es.host) {
        out.push(Problem::error("elasticsearch.host", format!("`{}` is not a host name", es.host)));
    }
    if !index_ok(&es.index) {
        out.push(Problem::error(
            "elasticsearch.index",
            format!("`{}` is not an index name: lower-case letters, digits, `_`, `-`, `.`", es.index),
        ));
    }
    if c.observability.grafana_admin_user.trim().is_empty() {
        out.push(Problem::error("observability.grafana_admin_user", "is empty: name the admin user"));
    }
}

fn ports(c: &Config, out: &mut Vec<Problem>) {
    let p = &c.temporal.ports;
    // Ports of the Temporal services, which share one config file and its membership ring.
    let service = [
        ("temporal.ports.frontend_grpc", p.frontend_grpc),
        ("temporal.ports.frontend_http", p.frontend_http),
        ("temporal.ports.frontend_membership", p.frontend_membership),
        ("temporal.ports.history_grpc", p.history_grpc),
        ("temporal.ports.history_membership", p.history_membership),
        ("temporal.ports.matching_grpc", p.matching_grpc),
        ("temporal.ports.matching_membership", p.matching_membership),
        ("temporal.ports.worker_grpc", p.worker_grpc),
        ("temporal.ports.worker_membership", p.worker_membership),
        ("temporal.ports.metrics", p.metrics),
    ];
    // Ports published on 127.0.0.1 of the host.
    let mut published = vec![
        ("temporal.ports.frontend_grpc", p.frontend_grpc),
        ("temporal.ports.frontend_http", p.frontend_http),
        ("temporal.ports.ui", p.ui),
        ("observability.grafana_port", c.observability.grafana_port),
        ("observability.mimir_port", c.observability.mimir_port),
    ];
    if c.is_local() {
        published.push(("local.postgres_port", c.local.postgres_port));
    }
    if c.uses_gateway() {
        published.push(("local.gateway.port", c.local.gateway.port));
    }
    let es = [("elasticsearch.port", c.elasticsearch.port)];
    for (key, port) in service.iter().chain(&published).chain(&es) {
        if *port == 0 {
            out.push(Problem::error(key, "0 is not a port: use 1 to 65535"));
        }
    }
    distinct(&service, "Temporal service ports", out);
    distinct(&published, "ports published on 127.0.0.1", out);
}

fn distinct(ports: &[(&str, u16)], what: &str, out: &mut Vec<Problem>) {
    let mut seen: BTreeMap<u16, &str> = BTreeMap::new();
    for (key, port) in ports {
        if *port == 0 {
            continue;
        }
        if let Some(first) = seen.get(port) {
            if first != key {
                out.push(Problem::error(
                    key,
                    format!("port {port} is also used by {first}; {what} must be distinct: pick another"),
                ));
            }
        } else {
            seen.insert(*port, key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions() {
        for ok in ["eu-west-1", "us-east-1", "ap-southeast-2", "us-gov-west-1"] {
            assert!(region_ok(ok), "{ok}");
        }
        for bad in ["", "eu-west", "EU-WEST-1", "euwest1", "eu-west-1a", "e-west-1", "eu--1"] {
            assert!(!region_ok(bad), "{bad}");
        }
    }
}

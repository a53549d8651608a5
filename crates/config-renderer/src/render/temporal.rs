//! `temporal/config.yaml` and `temporal/dynamicconfig.yaml`.

use std::fmt::Write as _;

use super::{
    CONTAINER_CONFIG_DIR, CONTAINER_LOCAL_CA, FRONTEND_SERVICE, GATEWAY_SERVICE, commented, yaml_str,
};
use crate::model::Config;

/// Dynamic-config keys this renderer may emit. Each is registered in Temporal 1.29's
/// `common/dynamicconfig` (unregistered keys are ignored with a warning, like the fork sample's
/// `persistence.enableDSQLMode`); the fork adds no DSQL key of its own.
pub const REGISTERED_DYNAMIC_CONFIG_KEYS: &[&str] = &[
    "frontend.persistenceMaxQPS",
    "history.persistenceMaxQPS",
    "matching.persistenceMaxQPS",
    "matching.numTaskqueueReadPartitions",
    "matching.numTaskqueueWritePartitions",
    "system.enableActivityEagerExecution",
    "limit.maxIDLength",
];

pub(super) fn server_config(c: &Config, endpoint: &str, header: &str) -> String {
    let d = &c.dsql;
    let p = &c.temporal.ports;
    let es = &c.elasticsearch;
    let mut y = String::new();
    // Temporal renders the file as a Go template only when this is its first line.
    y.push_str("# enable-template\n");
    y.push_str(&commented(header, "# "));
    y.push_str(
        "# Bind and broadcast addresses come from each container's environment (docker/entrypoint.sh).\n\n",
    );
    let _ = write!(
        y,
        "log:\n  stdout: true\n  level: {level}\n\n\
         persistence:\n  defaultStore: dsql-default\n  visibilityStore: es-visibility\n  \
         numHistoryShards: {shards}\n  datastores:\n    dsql-default:\n      sql:\n        \
         pluginName: \"dsql\"\n        \
         # DSQL has exactly one database; the schema migrator writes its version under this name.\n        \
         databaseName: {database}\n        connectAddr: {addr}\n        connectProtocol: \"tcp\"\n        \
         # The plugin always connects as admin with an IAM token made at connect time: no password here.\n        \
         user: {user}\n        maxConns: {max_conns}\n        maxIdleConns: {max_idle}\n        \
         maxConnLifetime: {lifetime}\n",
        level = yaml_str(&c.temporal.log_level),
        shards = c.temporal.history_shards,
        database = yaml_str(&d.database),
        addr = yaml_str(&format!("{endpoint}:{}", d.port)),
        user = yaml_str(&d.user),
        max_conns = d.max_conns,
        max_idle = d.max_idle_conns,
        lifetime = yaml_str(d.max_conn_lifetime.as_str()),
    );
    if c.uses_gateway() {
        // Like the dsql profile, with the local CA (the fork's `caFile` becomes `sslrootcert`).
        let _ = write!(
            y,
            "        # TLS with certificate and host-name verification (sslmode=verify-full) against the\n        \
             # local CA that `cargo xtask config render` made (generated/dsql-local/pki/ca.crt).\n        \
             tls:\n          enabled: true\n          enableHostVerification: true\n          \
             caFile: {ca}\n          serverName: {name}\n",
            ca = yaml_str(CONTAINER_LOCAL_CA),
            name = yaml_str(GATEWAY_SERVICE),
        );
    } else if c.tls() {
        // Without `tls` or `connectAttributes.sslmode` the plugin's DSN says sslmode=disable.
        y.push_str(
            "        # TLS with certificate and host-name verification (sslmode=verify-full).\n        \
             tls:\n          enabled: true\n          enableHostVerification: true\n",
        );
    } else {
        y.push_str(
            "        # TLS off, explicitly: the local PostgreSQL stand-in has no certificate.\n        \
             connectAttributes:\n          sslmode: \"disable\"\n",
        );
    }
    let _ = write!(
        y,
        "    # Visibility stays on Elasticsearch: the dsql plugin rejects every visibility call.\n    \
         es-visibility:\n      elasticsearch:\n        version: {version}\n        url:\n          \
         scheme: {scheme}\n          host: {host}\n        indices:\n          visibility: {index}\n\n",
        version = yaml_str(&es.version),
        scheme = yaml_str(&es.scheme),
        host = yaml_str(&format!("{}:{}", es.host, es.port)),
        index = yaml_str(&es.index),
    );
    let _ = write!(
        y,
        "global:\n  membership:\n    maxJoinDuration: 30s\n    \
         broadcastAddress: '{{{{ env \"TEMPORAL_BROADCAST_ADDRESS\" }}}}'\n  metrics:\n    prometheus:\n      \
         # OpenTelemetry names (histograms as <name>_milliseconds_bucket), as the dashboards expect.\n      \
         framework: \"opentelemetry\"\n      timerType: \"histogram\"\n      \
         listenAddress: \"0.0.0.0:{metrics}\"\n\nservices:\n",
        metrics = p.metrics,
    );
    let services = [
        ("frontend", p.frontend_grpc, p.frontend_membership, Some(p.frontend_http)),
        ("history", p.history_grpc, p.history_membership, None),
        ("matching", p.matching_grpc, p.matching_membership, None),
        ("worker", p.worker_grpc, p.worker_membership, None),
    ];
    for (name, grpc, membership, http) in services {
        let _ =
            write!(y, "  {name}:\n    rpc:\n      grpcPort: {grpc}\n      membershipPort: {membership}\n");
        if let Some(http) = http {
            let _ = writeln!(y, "      httpPort: {http}");
        }
        y.push_str("      bindOnIP: '{{ env \"BIND_ON_IP\" }}'\n");
    }
    let frontend = format!("{FRONTEND_SERVICE}:{}", p.frontend_grpc);
    let _ = write!(
        y,
        "\nclusterMetadata:\n  enableGlobalNamespace: false\n  failoverVersionIncrement: 10\n  \
         masterClusterName: \"active\"\n  currentClusterName: \"active\"\n  clusterInformation:\n    \
         active:\n      enabled: true\n      initialFailoverVersion: 1\n      rpcName: \"frontend\"\n      \
         rpcAddress: {rpc}\n      httpAddress: {http}\n\n\
         dcRedirectionPolicy:\n  policy: \"noop\"\n\n\
         archival:\n  history:\n    state: \"disabled\"\n  visibility:\n    state: \"disabled\"\n\n\
         namespaceDefaults:\n  archival:\n    history:\n      state: \"disabled\"\n    visibility:\n      \
         state: \"disabled\"\n\n\
         publicClient:\n  hostPort: {rpc}\n\n\
         dynamicConfigClient:\n  filepath: {dynamic}\n  pollInterval: \"10s\"\n",
        rpc = yaml_str(&frontend),
        http = yaml_str(&format!("{FRONTEND_SERVICE}:{}", p.frontend_http)),
        dynamic = yaml_str(&format!("{CONTAINER_CONFIG_DIR}/dynamicconfig.yaml")),
    );
    y
}

pub(super) fn dynamic_config(c: &Config, header: &str) -> String {
    let t = &c.temporal;
    let mut y = commented(header, "# ");
    y.push_str(
        "# Registered keys only: the fork has no DSQL dynamic-config key (its sample's\n\
         # persistence.enableDSQLMode and persistence.maxConns are ignored); the pool is set in\n\
         # config.yaml and temporal.env.\n",
    );
    let qps = t.persistence_max_qps.to_string();
    let partitions = t.task_queue_partitions.to_string();
    let entries: [(&str, &str, &str); 7] = [
        ("frontend.persistenceMaxQPS", &qps, "persistence requests per second per frontend host"),
        ("history.persistenceMaxQPS", &qps, "per history host"),
        ("matching.persistenceMaxQPS", &qps, "per matching host"),
        ("matching.numTaskqueueReadPartitions", &partitions, "partitions per task queue"),
        ("matching.numTaskqueueWritePartitions", &partitions, "must not exceed the read partitions"),
        ("system.enableActivityEagerExecution", "true", "activities started on the workflow's worker"),
        ("limit.maxIDLength", "255", "ids fit the schema's VARCHAR(255) columns"),
    ];
    for (key, value, why) in entries {
        debug_assert!(REGISTERED_DYNAMIC_CONFIG_KEYS.contains(&key));
        let _ = write!(y, "\n# {why}\n{key}:\n  - value: {value}\n    constraints: {{}}\n");
    }
    y
}

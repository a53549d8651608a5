//! One test per validation rule: a config that breaks it is rejected, naming the key, the file and
//! the line; the nearest valid value passes.

use tdsql_config_renderer::{ConfigError, Loader, Severity};

/// Loads `toml` as `config.toml` over the defaults; returns `(file:line: key: message)` of every
/// error, or of every warning when it loads.
fn findings(toml: &str) -> (Vec<String>, Vec<String>) {
    match Loader::new().text(toml, "config.toml").unwrap().load() {
        Ok(loaded) => {
            assert!(loaded.warnings.iter().all(|w| w.severity == Severity::Warning));
            (Vec::new(), loaded.warnings.iter().map(ToString::to_string).collect())
        }
        Err(ConfigError::Invalid(problems)) => {
            (problems.iter().map(ToString::to_string).collect(), Vec::new())
        }
        Err(other) => panic!("{other}"),
    }
}

/// Asserts exactly one error, starting with `prefix` (`config.toml:<line>: <key>: ...`).
#[track_caller]
fn rejects(toml: &str, prefix: &str) {
    let (errors, _) = findings(toml);
    assert_eq!(errors.len(), 1, "expected one error starting with `{prefix}`, got {errors:#?}");
    assert!(errors[0].starts_with(prefix), "expected `{prefix}...`, got `{}`", errors[0]);
}

#[track_caller]
fn accepts(toml: &str) {
    let (errors, _) = findings(toml);
    assert!(errors.is_empty(), "{errors:#?}");
}

#[track_caller]
fn warns(toml: &str, prefix: &str) {
    let (errors, warnings) = findings(toml);
    assert!(errors.is_empty(), "{errors:#?}");
    assert!(warnings.iter().any(|w| w.starts_with(prefix)), "expected warning `{prefix}`, got {warnings:#?}");
}

#[test]
fn max_idle_conns_equals_max_conns() {
    rejects(
        "[dsql]\nmax_conns = 40\nmax_idle_conns = 20\n",
        "config.toml:3: dsql.max_idle_conns: 20 must equal",
    );
    accepts("[dsql]\nmax_conns = 40\nmax_idle_conns = 40\n");
}

#[test]
fn reservoir_target_not_above_max_conns() {
    rejects(
        "[dsql.reservoir]\ntarget_ready = 51\n",
        "config.toml:2: dsql.reservoir.target_ready: 51 is above dsql.max_conns (50)",
    );
    accepts("[dsql.reservoir]\ntarget_ready = 50\n");
}

#[test]
fn reservoir_low_watermark_not_above_target() {
    rejects(
        "[dsql.reservoir]\ntarget_ready = 20\nlow_watermark = 21\n",
        "config.toml:3: dsql.reservoir.low_watermark: 21 is above the reservoir target (20)",
    );
    accepts("[dsql.reservoir]\ntarget_ready = 20\nlow_watermark = 20\n");
}

#[test]
fn max_conn_lifetime_under_sixty_minutes() {
    rejects(
        "[dsql]\nmax_conn_lifetime = \"60m\"\n",
        "config.toml:2: dsql.max_conn_lifetime: `60m` must be above 0 and under",
    );
    rejects("[dsql]\nmax_conn_lifetime = \"0s\"\n", "config.toml:2: dsql.max_conn_lifetime:");
    accepts("[dsql]\nmax_conn_lifetime = \"59m59s\"\n");
}

#[test]
fn reservoir_lifetime_plus_jitter_under_sixty_minutes() {
    rejects(
        "[dsql.reservoir]\nbase_lifetime = \"50m\"\nlifetime_jitter = \"10m\"\n",
        "config.toml:2: dsql.reservoir.base_lifetime: base_lifetime + lifetime_jitter = 1h reaches",
    );
    accepts("[dsql.reservoir]\nbase_lifetime = \"50m\"\nlifetime_jitter = \"9m\"\n");
}

#[test]
fn reservoir_guard_window_shorter_than_base_lifetime() {
    rejects(
        "[dsql.reservoir]\nbase_lifetime = \"1m\"\nguard_window = \"1m\"\n",
        "config.toml:3: dsql.reservoir.guard_window: `1m` is not shorter than base_lifetime `1m`",
    );
    accepts("[dsql.reservoir]\nbase_lifetime = \"1m\"\nguard_window = \"59s\"\n");
}

#[test]
fn token_duration_between_fifteen_seconds_and_a_week() {
    rejects(
        "[dsql]\ntoken_duration = \"14s\"\n",
        "config.toml:2: dsql.token_duration: `14s` is outside 15s to 1 week",
    );
    rejects("[dsql]\ntoken_duration = \"169h\"\n", "config.toml:2: dsql.token_duration: `169h` is outside");
    accepts("[dsql]\ntoken_duration = \"15s\"\n");
    accepts("[dsql]\ntoken_duration = \"15m\"\n");
    // Valid for AWS, but the fork caps at 15m.
    warns(
        "[dsql]\ntoken_duration = \"168h\"\n",
        "config.toml:2: dsql.token_duration: `168h`: the fork only accepts up to 15m",
    );
}

#[test]
fn coordination_tables_named_when_enabled() {
    rejects(
        "[coordination.rate_limiter]\nenabled = true\n",
        "default: coordination.rate_limiter.table: is empty while coordination.rate_limiter.enabled is true",
    );
    rejects(
        "[coordination.conn_lease]\nenabled = true\ntable = \"\"\n",
        "config.toml:3: coordination.conn_lease.table: is empty while coordination.conn_lease.enabled is true",
    );
    rejects(
        "[coordination.conn_lease]\ntable = \"a b\"\n",
        "config.toml:2: coordination.conn_lease.table: `a b` is not a DynamoDB table name",
    );
    accepts("[coordination.rate_limiter]\nenabled = true\ntable = \"demo-rate-limiter\"\n");
}

#[test]
fn the_s3_state_backend_needs_a_bucket() {
    rejects(
        "[infra.state]\nbackend = \"s3\"\n",
        "default: infra.state.bucket: is empty while infra.state.backend is s3",
    );
    rejects(
        "[infra.state]\nbackend = \"s3\"\nbucket = \"Team_State\"\n",
        "config.toml:3: infra.state.bucket: `Team_State` is not an S3 bucket name",
    );
    rejects(
        "[infra.state]\nbackend = \"s3\"\nbucket = \"team-state\"\nkey = \"/shared.tfstate\"\n",
        "config.toml:4: infra.state.key: `/shared.tfstate` is not an object key",
    );
    rejects(
        "[infra.state]\nbackend = \"s3\"\nbucket = \"team-state\"\nlock_table = \"a b\"\n",
        "config.toml:4: infra.state.lock_table: `a b` is not a DynamoDB table name",
    );
    accepts("[infra.state]\nbackend = \"s3\"\nbucket = \"team-state\"\nlock_table = \"team-locks\"\n");
    // The local backend does not use them.
    accepts("[infra.state]\nbucket = \"\"\n");
}

/// The table `infra apply` will create and name is pending, not an error, for the commands that
/// run that apply; every other problem still fails those loads, and strict loads reject it.
#[test]
fn an_unnamed_coordination_table_is_pending_for_infra() {
    let toml = "[coordination.rate_limiter]\nenabled = true\n[coordination.conn_lease]\nenabled = true\n";
    let loaded = Loader::new().text(toml, "config.toml").unwrap().load_before_infra().unwrap();
    let pending: Vec<(&str, Severity)> =
        loaded.pending.iter().map(|p| (p.key.as_str(), p.severity)).collect();
    assert_eq!(
        pending,
        [
            ("coordination.rate_limiter.table", Severity::Pending),
            ("coordination.conn_lease.table", Severity::Pending)
        ]
    );
    assert!(loaded.pending[0].message.contains("cargo xtask infra apply"), "{}", loaded.pending[0]);

    let strict = Loader::new().text(toml, "config.toml").unwrap().load().unwrap_err();
    let ConfigError::Invalid(problems) = strict else { panic!("{strict}") };
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(problems.iter().all(|p| p.severity == Severity::Pending));

    let with_error = format!("{toml}[dsql]\nmax_conns = 40\n");
    let err = Loader::new().text(&with_error, "config.toml").unwrap().load_before_infra().unwrap_err();
    let ConfigError::Invalid(problems) = err else { panic!("{err}") };
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, ["dsql.max_idle_conns"], "only the real error fails the load");

    let named = "[coordination.rate_limiter]\nenabled = true\ntable = \"t-rate\"\n";
    let loaded = Loader::new().text(named, "config.toml").unwrap().load_before_infra().unwrap();
    assert!(loaded.pending.is_empty());
}

#[test]
fn conn_lease_needs_the_reservoir() {
    warns(
        "[dsql.reservoir]\nenabled = false\n[coordination.conn_lease]\nenabled = true\ntable = \"t-lease\"\n",
        "config.toml:4: coordination.conn_lease.enabled: has no effect without the reservoir",
    );
}

#[test]
fn region_is_well_formed() {
    rejects(
        "[project]\nregion = \"eu-west\"\n",
        "config.toml:2: project.region: `eu-west` is not an AWS region",
    );
    rejects("[project]\nregion = \"EU-WEST-1\"\n", "config.toml:2: project.region:");
    accepts("[project]\nregion = \"ap-southeast-2\"\n");
}

#[test]
fn project_name_is_usable_for_resources() {
    rejects(
        "[project]\nname = \"My Project\"\n",
        "config.toml:2: project.name: `My Project` is not a usable name",
    );
    accepts("[project]\nname = \"team-a-dev\"\n");
}

#[test]
fn identifier_is_twenty_six_characters() {
    rejects(
        "[dsql]\nidentifier = \"abc\"\n",
        "config.toml:2: dsql.identifier: `abc` is not a DSQL cluster identifier",
    );
    accepts("[dsql]\nidentifier = \"abcdefghijklmnopqrstuvwxyz\"\n");
}

#[test]
fn endpoint_is_a_dsql_endpoint_of_the_region() {
    rejects(
        "[dsql]\nendpoint = \"abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws\"\n",
        "config.toml:2: dsql.endpoint: `abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws` is not a DSQL endpoint of region eu-west-1",
    );
    rejects("[dsql]\nendpoint = \"short.dsql.eu-west-1.on.aws\"\n", "config.toml:2: dsql.endpoint:");
    rejects(
        "[dsql]\nidentifier = \"abcdefghijklmnopqrstuvwxyz\"\nendpoint = \"zyxwvutsrqponmlkjihgfedcba.dsql.eu-west-1.on.aws\"\n",
        "config.toml:3: dsql.endpoint: `zyxwvutsrqponmlkjihgfedcba.dsql.eu-west-1.on.aws` names cluster",
    );
    accepts("[dsql]\nendpoint = \"abcdefghijklmnopqrstuvwxyz.dsql.eu-west-1.on.aws\"\n");
}

#[test]
fn the_local_stand_in_has_a_host_of_its_own_and_the_cluster_keys_still_agree() {
    // The stand-in's host is local.postgres_host: a plain host name.
    accepts("[dsql]\nbackend = \"postgres\"\ntls = false\n[local]\npostgres_host = \"pg-1\"\n");
    rejects(
        "[dsql]\nbackend = \"postgres\"\ntls = false\n[local]\npostgres_host = \"\"\n",
        "config.toml:5: local.postgres_host: ``: the local stand-in needs a host name",
    );
    // What infra apply writes into config.toml is fine for the local profile too ...
    accepts(
        "[dsql]\nbackend = \"postgres\"\ntls = false\nidentifier = \"abcdefghijklmnopqrstuvwxyz\"\n\
         endpoint = \"abcdefghijklmnopqrstuvwxyz.dsql.eu-west-1.on.aws\"\n",
    );
    // ... and checked there as well: identifier, endpoint and region name one cluster.
    rejects(
        "[dsql]\nbackend = \"postgres\"\ntls = false\nidentifier = \"abcdefghijklmnopqrstuvwxyz\"\n\
         endpoint = \"zyxwvutsrqponmlkjihgfedcba.dsql.eu-west-1.on.aws\"\n",
        "config.toml:5: dsql.endpoint: `zyxwvutsrqponmlkjihgfedcba.dsql.eu-west-1.on.aws` names cluster",
    );
    rejects(
        "[dsql]\nbackend = \"postgres\"\ntls = false\nidentifier = \"abc\"\n",
        "config.toml:4: dsql.identifier: `abc` is not a DSQL cluster identifier",
    );
    // An older config that named the stand-in in dsql.endpoint is told where the host goes now.
    rejects(
        "[dsql]\nbackend = \"postgres\"\nendpoint = \"postgresql\"\ntls = false\n",
        "config.toml:3: dsql.endpoint: `postgresql` is not a DSQL endpoint: dsql.endpoint only names the Aurora \
         DSQL cluster; the local stand-in's host is local.postgres_host",
    );
}

#[test]
fn tls_is_mandatory_on_dsql() {
    rejects("[dsql]\ntls = false\n", "config.toml:2: dsql.tls: is false, but Aurora DSQL only accepts TLS");
    accepts("[dsql]\nbackend = \"postgres\"\ntls = false\n");
}

#[test]
fn database_is_postgres() {
    rejects(
        "[dsql]\ndatabase = \"temporal\"\n",
        "config.toml:2: dsql.database: `temporal`: DSQL has exactly one database",
    );
}

#[test]
fn connection_limits_within_the_cluster() {
    rejects(
        "[dsql]\nmax_conns = 10001\nmax_idle_conns = 10001\n",
        "config.toml:2: dsql.max_conns: 10001 is above the cluster's 10000 connections",
    );
    rejects(
        "[coordination.conn_lease]\nlimit = 20000\n",
        "config.toml:2: coordination.conn_lease.limit: 20000 is outside 1 to 10000",
    );
    rejects(
        "[dsql.rate_limit]\nrate = 101\n",
        "config.toml:2: dsql.rate_limit.rate: 101 is outside 1 to 100",
    );
    rejects(
        "[dsql.rate_limit]\nburst = 1001\n",
        "config.toml:2: dsql.rate_limit.burst: 1001 is outside 1 to 1000",
    );
    rejects(
        "[coordination.rate_limiter]\nenabled = true\ntable = \"t-rate\"\nlimit = 500\n",
        "config.toml:4: coordination.rate_limiter.limit: 500 is outside 1 to 100",
    );
    warns(
        "[dsql]\nmax_conns = 2000\nmax_idle_conns = 2000\n",
        "config.toml:2: dsql.max_conns: 4 services x 2000 connections x 2 (pool + reservoir) = 16000",
    );
    warns("[dsql.rate_limit]\nrate = 50\n", "config.toml:2: dsql.rate_limit.rate: 4 services x 50/s = 200/s");
}

#[test]
fn ports_in_range_and_distinct() {
    rejects("[temporal.ports]\nui = 0\n", "config.toml:2: temporal.ports.ui: 0 is not a port");
    rejects("[temporal.ports]\nui = 70000\n", "config.toml:2: temporal.ports.ui:");
    rejects(
        "[temporal.ports]\nhistory_grpc = 7233\n",
        "config.toml:2: temporal.ports.history_grpc: port 7233 is also used by temporal.ports.frontend_grpc",
    );
    rejects(
        "[observability]\ngrafana_port = 8080\n",
        "config.toml:2: observability.grafana_port: port 8080 is also used by temporal.ports.ui",
    );
    accepts("[observability]\ngrafana_port = 3001\n");
}

#[test]
fn local_postgres_port_is_distinct_in_the_local_profile() {
    let local = "[dsql]\nbackend = \"postgres\"\ntls = false\n[local]\npostgres_port = 3000\n";
    rejects(
        local,
        "config.toml:5: local.postgres_port: port 3000 is also used by observability.grafana_port",
    );
}

#[test]
fn gateway_port_is_distinct_from_the_other_published_ports() {
    rejects(
        "[local.gateway]\nport = 15432\n[dsql]\nbackend = \"postgres\"\n",
        "config.toml:2: local.gateway.port: port 15432 is also used by local.postgres_port",
    );
    rejects(
        "[dsql]\nbackend = \"postgres\"\n[local.gateway]\nport = 0\n",
        "config.toml:4: local.gateway.port: 0 is not a port",
    );
    // Without the gateway its port is not published, so it may clash.
    accepts("[dsql]\nbackend = \"postgres\"\ntls = false\n[local.gateway]\nenabled = false\nport = 15432\n");
    accepts("[dsql]\nbackend = \"postgres\"\n[local.gateway]\nport = 25433\n");
}

#[test]
fn gateway_limits_admit_connections() {
    rejects("[local.gateway]\nrate = 0\n", "config.toml:2: local.gateway.rate: 0 admits no connection");
    accepts("[local.gateway]\nrate = 1\n");
    rejects("[local.gateway]\nburst = 0\n", "config.toml:2: local.gateway.burst: 0 admits no connection");
    accepts("[local.gateway]\nburst = 1\n");
    rejects(
        "[local.gateway]\nmax_connections = 0\n",
        "config.toml:2: local.gateway.max_connections: 0 admits no connection",
    );
    warns(
        "[dsql]\nbackend = \"postgres\"\nmax_conns = 50\nmax_idle_conns = 50\n[local.gateway]\nmax_connections = 100\n",
        "config.toml:6: local.gateway.max_connections: 100 is below the 400 connections",
    );
    accepts("[local.gateway]\nmax_connections = 1\n");
}

#[test]
fn gateway_durations_fit_its_syntax() {
    rejects(
        "[local.gateway]\nmax_lifetime = \"500ms\"\n",
        "config.toml:2: local.gateway.max_lifetime: `500ms` is under a second",
    );
    accepts("[local.gateway]\nmax_lifetime = \"1s\"\n");
    rejects(
        "[local.gateway]\nlock_timeout = \"0s\"\n",
        "config.toml:2: local.gateway.lock_timeout: `0s` is not a whole number of milliseconds",
    );
    rejects(
        "[local.gateway]\nlock_timeout = \"1500us\"\n",
        "config.toml:2: local.gateway.lock_timeout: `1500us` is not a whole number of milliseconds",
    );
    rejects(
        "[local.gateway]\nlock_timeout = \"10\"\n",
        "config.toml:2: local.gateway.lock_timeout: `10` has no unit",
    );
    rejects("[local.gateway]\nenabled = \"yes\"\n", "config.toml:2: local.gateway.enabled:");
    accepts("[local.gateway]\nlock_timeout = \"1ms\"\n");
}

#[test]
fn durations_need_units() {
    rejects(
        "[dsql.reservoir]\nguard_window = \"45\"\n",
        "config.toml:2: dsql.reservoir.guard_window: `45` has no unit",
    );
    rejects(
        "[observability]\nmimir_retention = \"7d\"\n",
        "config.toml:2: observability.mimir_retention: `7d` has the unknown unit `d`",
    );
    rejects(
        "[dsql]\ntoken_duration = 900\n",
        "config.toml:2: dsql.token_duration: expected a string, found integer",
    );
}

#[test]
fn temporal_settings() {
    rejects("[temporal]\nhistory_shards = 0\n", "config.toml:2: temporal.history_shards: 0: use at least 1");
    rejects(
        "[temporal]\nlog_level = \"verbose\"\n",
        "config.toml:2: temporal.log_level: `verbose` is not a level",
    );
    rejects(
        "[elasticsearch]\nversion = \"v9\"\n",
        "config.toml:2: elasticsearch.version: `v9`: use v7 or v8",
    );
    rejects(
        "[elasticsearch]\nscheme = \"ftp\"\n",
        "config.toml:2: elasticsearch.scheme: `ftp`: use http or https",
    );
    rejects(
        "[elasticsearch]\nindex = \"Temporal\"\n",
        "config.toml:2: elasticsearch.index: `Temporal` is not an index name",
    );
}

#[test]
fn fork_source_is_set() {
    rejects("[fork]\npath = \"\"\n", "config.toml:2: fork.path: no fork source");
    rejects(
        "[fork]\ngit = \"https://github.com/iw/temporal\"\ngit_ref = \"\"\n",
        "config.toml:3: fork.git_ref: is empty",
    );
    accepts("[fork]\npath = \"\"\ngit = \"https://github.com/iw/temporal\"\n");
}

#[test]
fn enumerations_name_their_values() {
    let (errors, _) = findings("[build]\narch = \"riscv\"\n");
    assert_eq!(errors.len(), 1);
    assert!(errors[0].starts_with("config.toml:2: build.arch: unknown variant `riscv`"), "{}", errors[0]);
    assert!(errors[0].contains("amd64") && errors[0].contains("arm64"), "{}", errors[0]);
}

#[test]
fn every_error_is_reported_at_once() {
    let (errors, _) = findings("[dsql]\nmax_idle_conns = 1\ntls = false\n[temporal]\nhistory_shards = 0\n");
    assert_eq!(errors.len(), 3, "{errors:#?}");
}

#[test]
fn opensearch_visibility_needs_an_https_endpoint() {
    const DOMAIN: &str = "https://search-temporal-abc123.eu-west-1.es.amazonaws.com";
    rejects(
        "[visibility]\nbackend = \"opensearch\"\n",
        "default: opensearch.endpoint: is empty while visibility.backend is opensearch",
    );
    rejects(
        "[visibility]\nbackend = \"opensearch\"\n[opensearch]\nendpoint = \"http://search-x.eu-west-1.es.amazonaws.com\"\n",
        "config.toml:4: opensearch.endpoint: `http://search-x.eu-west-1.es.amazonaws.com` is not an OpenSearch \
         endpoint: HTTPS only",
    );
    for bad in [
        "search-x.eu-west-1.es.amazonaws.com",
        "https://",
        "https://host/path",
        "https://a..b",
        "https://h:0",
    ] {
        rejects(
            &format!("[opensearch]\nendpoint = \"{bad}\"\n"),
            &format!(
                "config.toml:2: opensearch.endpoint: `{bad}` is not an OpenSearch endpoint: expected https://"
            ),
        );
    }
    rejects(
        "[opensearch]\nregion = \"Ireland\"\n",
        "config.toml:2: opensearch.region: `Ireland` is not an AWS region",
    );
    rejects(
        "[opensearch]\nindex = \"_Visibility\"\n",
        "config.toml:2: opensearch.index: `_Visibility` is not an index name",
    );
    accepts(&format!("[visibility]\nbackend = \"opensearch\"\n[opensearch]\nendpoint = \"{DOMAIN}\"\n"));
    accepts(&format!(
        "[visibility]\nbackend = \"opensearch\"\n[opensearch]\nendpoint = \"{DOMAIN}:443/\"\nregion = \"us-east-1\"\n"
    ));
    // Elasticsearch (the default) does not need the domain.
    accepts("[visibility]\nbackend = \"elasticsearch\"\n");
    let (errors, _) = findings("[visibility]\nbackend = \"solr\"\n");
    assert!(
        errors.len() == 1
            && errors[0].starts_with("config.toml:2: visibility.backend: unknown variant `solr`"),
        "{errors:#?}"
    );
    assert!(errors[0].contains("elasticsearch") && errors[0].contains("opensearch"), "{}", errors[0]);
}

/// config.toml overlays every profile: opensearch there leaves the local profile on its container,
/// with a warning instead of an error for the endpoint it does not use.
#[test]
fn opensearch_is_a_warning_in_the_local_profile() {
    warns(
        "[dsql]\nbackend = \"postgres\"\n[visibility]\nbackend = \"opensearch\"\n",
        "config.toml:4: visibility.backend: opensearch applies to the dsql profile only",
    );
}

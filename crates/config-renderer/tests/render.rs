//! The renderers: golden files for both profiles (`UPDATE_EXPECT=1` rewrites them), the `.env`
//! contract with the fork, no secrets in any rendered file, every YAML parses to what Temporal
//! and Grafana expect, and the dashboards are the `grafana/` sources with the cluster preselected.

mod common;

use common::root;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_norway::Value as Yaml;
use tdsql_config_renderer::render::{self, Rendered};
use tdsql_config_renderer::{Config, ConfigError, Loader};

const CLUSTER: &str = "abcdefghijklmnopqrstuvwxyz";
const PASSWORD_SENTINEL: &str = "Sentinel-Grafana-Password-7f3a";

/// What a user would have for the dsql profile once `infra apply` ran, with coordination on.
const DSQL_USER_CONFIG: &str = r#"
[project]
name = "golden"
region = "us-east-1"

[dsql]
identifier = "abcdefghijklmnopqrstuvwxyz"

[coordination.rate_limiter]
enabled = true
table = "golden-dsql-rate-limiter"

[coordination.conn_lease]
enabled = true
table = "golden-dsql-conn-lease"

[observability]
grafana_admin_password = "Sentinel-Grafana-Password-7f3a"
"#;

const LOCAL_USER_CONFIG: &str = r#"
[observability]
grafana_admin_password = "Sentinel-Grafana-Password-7f3a"
"#;

fn config(profile: &str) -> Config {
    let user = if profile == "dsql" { DSQL_USER_CONFIG } else { LOCAL_USER_CONFIG };
    common::load(profile, user)
}

fn rendered(profile: &str) -> Vec<Rendered> {
    render::render_all(&config(profile), profile).unwrap()
}

fn file<'a>(files: &'a [Rendered], path: &str) -> &'a str {
    &files.iter().find(|f| f.path == path).unwrap_or_else(|| panic!("{path} not rendered")).contents
}

/// Compares with the committed file, or rewrites it when `UPDATE_EXPECT=1`.
fn expect_file(path: &Path, actual: &str) {
    if std::env::var_os("UPDATE_EXPECT").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(path)
        .unwrap_or_else(|_| panic!("{} is missing: run with UPDATE_EXPECT=1 to create it", path.display()));
    if expected != actual {
        let line = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .map_or_else(|| expected.lines().count().min(actual.lines().count()) + 1, |i| i + 1);
        panic!(
            "{} is stale (first difference at line {line}); review the change and rerun with UPDATE_EXPECT=1\n\
             --- expected\n{expected}\n--- actual\n{actual}",
            path.display()
        );
    }
}

#[test]
fn golden_files_for_both_profiles() {
    for profile in ["local", "dsql"] {
        let files = rendered(profile);
        let names: Vec<&str> = files.iter().map(|f| f.path).collect();
        assert_eq!(
            names,
            [
                "compose.env",
                "temporal.env",
                "temporal/config.yaml",
                "temporal/dynamicconfig.yaml",
                "grafana/datasources.yaml",
                "grafana/dashboards/server/server.json",
                "grafana/dashboards/dsql/persistence.json"
            ]
        );
        for f in &files {
            let golden = root().join("crates/config-renderer/tests/golden").join(profile).join(f.path);
            expect_file(&golden, &f.contents);
        }
    }
}

/// `local.gateway.enabled = false`: the plugin talks to PostgreSQL directly, TLS off, as before the gateway.
#[test]
fn golden_files_without_the_gateway() {
    let file_path = root().join("profiles/local/profile.toml");
    let config = Loader::new()
        .file(&file_path, "profiles/local/profile.toml")
        .unwrap()
        .text("[local.gateway]\nenabled = false\n", "config.toml")
        .unwrap()
        .load()
        .unwrap()
        .config;
    let files = render::render_all(&config, "local").unwrap();
    for path in [render::COMPOSE_ENV, render::TEMPORAL_ENV, render::TEMPORAL_CONFIG] {
        let golden = root().join("crates/config-renderer/tests/golden/local-no-gateway").join(path);
        expect_file(&golden, file(&files, path));
    }
    let y = yaml(
        &file(&files, render::TEMPORAL_CONFIG)
            .replace("{{ env \"BIND_ON_IP\" }}", "x")
            .replace("{{ env \"TEMPORAL_BROADCAST_ADDRESS\" }}", "x"),
    );
    let sql = get(&y, "persistence.datastores.dsql-default.sql");
    assert_eq!(get(sql, "connectAttributes.sslmode").as_str(), Some("disable"));
    assert!(sql.get("tls").is_none());
    assert_eq!(get(sql, "connectAddr").as_str(), Some("postgresql:5432"));
    assert!(file(&files, render::TEMPORAL_ENV).contains("\nCLUSTER_ENDPOINT=postgresql\n"));
}

/// `visibility.backend = "opensearch"` in the dsql profile: the visibility datastore is the domain,
/// reached over HTTPS with SigV4-signed requests, and compose.env starts no Elasticsearch.
const OPENSEARCH_USER_CONFIG: &str = r#"
[visibility]
backend = "opensearch"

[opensearch]
endpoint = "https://search-golden-abc123.us-east-1.es.amazonaws.com"
index = "temporal_visibility_v1_team"
"#;

#[test]
fn golden_files_with_opensearch_visibility() {
    let file_path = root().join("profiles/dsql/profile.toml");
    let config = Loader::new()
        .file(&file_path, "profiles/dsql/profile.toml")
        .unwrap()
        .text(&format!("{DSQL_USER_CONFIG}{OPENSEARCH_USER_CONFIG}"), "config.toml")
        .unwrap()
        .load()
        .unwrap()
        .config;
    let files = render::render_all(&config, "dsql").unwrap();
    for path in [render::COMPOSE_ENV, render::TEMPORAL_ENV, render::TEMPORAL_CONFIG, render::DYNAMIC_CONFIG] {
        let golden = root().join("crates/config-renderer/tests/golden/dsql-opensearch").join(path);
        expect_file(&golden, file(&files, path));
    }
    // The index setup job's compose profile, and what it signs for and creates.
    let compose_env = file(&files, render::COMPOSE_ENV);
    for line in [
        "COMPOSE_PROFILES=opensearch",
        "TDSQL_OPENSEARCH_ENDPOINT=https://search-golden-abc123.us-east-1.es.amazonaws.com",
        "TDSQL_OPENSEARCH_REGION=us-east-1",
        "TDSQL_OPENSEARCH_INDEX=temporal_visibility_v1_team",
    ] {
        assert!(compose_env.contains(&format!("\n{line}\n")), "{line}: {compose_env}");
    }
    // On Elasticsearch the endpoint is empty (the job does not run) and its profile is off.
    let plain_env = file(&rendered("dsql"), render::COMPOSE_ENV).to_owned();
    assert!(plain_env.contains("\nCOMPOSE_PROFILES=elasticsearch\n"), "{plain_env}");
    assert!(plain_env.contains("\nTDSQL_OPENSEARCH_ENDPOINT=\n"), "{plain_env}");
    // Only visibility differs from the Elasticsearch rendering.
    let plain = rendered("dsql");
    assert_eq!(file(&files, render::TEMPORAL_ENV), file(&plain, render::TEMPORAL_ENV));
    assert_eq!(file(&files, render::DYNAMIC_CONFIG), file(&plain, render::DYNAMIC_CONFIG));
}

/// Rendering checks the endpoint it needs even for a config that skipped validation.
#[test]
fn opensearch_without_a_usable_endpoint_does_not_render() {
    let mut config = config("dsql");
    config.visibility.backend = tdsql_config_renderer::VisibilityBackend::Opensearch;
    config.opensearch.endpoint = "http://search-x.us-east-1.es.amazonaws.com".to_owned();
    let err = render::render_all(&config, "dsql").unwrap_err().to_string();
    assert!(
        err.contains("opensearch.endpoint: `http://search-x.us-east-1.es.amazonaws.com` is not"),
        "{err}"
    );
}

/// config.toml overlays every profile: opensearch set there leaves the local profile's files as
/// they are (its containers sign with the local key pair, which AWS does not accept).
#[test]
fn opensearch_in_config_toml_leaves_the_local_profile_on_elasticsearch() {
    let file_path = root().join("profiles/local/profile.toml");
    let loaded = Loader::new()
        .file(&file_path, "profiles/local/profile.toml")
        .unwrap()
        .text(&format!("{LOCAL_USER_CONFIG}{OPENSEARCH_USER_CONFIG}"), "config.toml")
        .unwrap()
        .load()
        .unwrap();
    assert!(loaded.warnings.iter().any(|w| w.key == "visibility.backend"), "{:?}", loaded.warnings);
    assert_eq!(render::render_all(&loaded.config, "local").unwrap(), rendered("local"));
}

/// The host user reaches compose.env only when asked for, and only with the gateway.
#[test]
fn the_host_user_is_rendered_for_the_gateway() {
    let host = render::HostUser { uid: 1234, gid: 5678 };
    let local = render::render_all_as(&config("local"), "local", Some(host)).unwrap();
    let env = file(&local, render::COMPOSE_ENV);
    assert!(env.contains("\nTDSQL_HOST_UID=1234\nTDSQL_HOST_GID=5678\n"), "{env}");
    assert!(!file(&rendered("local"), render::COMPOSE_ENV).contains("TDSQL_HOST_UID"));
    let dsql = render::render_all_as(&config("dsql"), "dsql", Some(host)).unwrap();
    assert!(!file(&dsql, render::COMPOSE_ENV).contains("TDSQL_HOST_UID"));
}

/// The environment variables the fork reads, copied from the reference (temporal-dsql-fork.md §8.2),
/// independently of the renderer's own list.
const FORK_ENV_CONTRACT: &[&str] = &[
    // Core
    "CLUSTER_ENDPOINT",
    "REGION",
    "AWS_REGION",
    "DSQL_TOKEN_DURATION",
    // Local limiter / startup
    "DSQL_CONNECTION_RATE_LIMIT",
    "DSQL_CONNECTION_BURST_LIMIT",
    "DSQL_STAGGERED_STARTUP",
    "DSQL_STAGGERED_STARTUP_MAX_DELAY",
    // Distributed limiter
    "DSQL_DISTRIBUTED_RATE_LIMITER_ENABLED",
    "DSQL_DISTRIBUTED_RATE_LIMITER_TABLE",
    "DSQL_DISTRIBUTED_RATE_LIMITER_LIMIT",
    "DSQL_DISTRIBUTED_RATE_LIMITER_MAX_WAIT",
    // Reservoir
    "DSQL_RESERVOIR_ENABLED",
    "DSQL_RESERVOIR_TARGET_READY",
    "DSQL_RESERVOIR_LOW_WATERMARK",
    "DSQL_RESERVOIR_BASE_LIFETIME",
    "DSQL_RESERVOIR_LIFETIME_JITTER",
    "DSQL_RESERVOIR_GUARD_WINDOW",
    "DSQL_RESERVOIR_INITIAL_FILL_TIMEOUT",
    // Lease
    "DSQL_DISTRIBUTED_CONN_LEASE_ENABLED",
    "DSQL_DISTRIBUTED_CONN_LEASE_TABLE",
    "DSQL_DISTRIBUTED_CONN_LIMIT",
    // Non-reservoir pool
    "DSQL_POOL_WARMUP_STAGGER_DURATION",
    "DSQL_POOL_KEEPER_TICK_INTERVAL",
    "DSQL_POOL_KEEPER_MAX_CONNS_PER_TICK",
    // Tool only
    "SQL_HOST",
    "SQL_PORT",
    "SQL_USER",
    "SQL_DATABASE",
];

fn env_names(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split_once('=').unwrap_or_else(|| panic!("not KEY=value: {l}")).0.to_owned())
        .collect()
}

#[test]
fn temporal_env_sets_exactly_the_variables_the_fork_reads() {
    for profile in ["local", "dsql"] {
        let names = env_names(file(&rendered(profile), render::TEMPORAL_ENV));
        let unique: BTreeSet<&str> = names.iter().map(String::as_str).collect();
        assert_eq!(unique.len(), names.len(), "{profile}: a variable is set twice: {names:?}");
        // The local profile's AWS credentials are the local key pair, in its own 0600 env file.
        let expected: BTreeSet<&str> = FORK_ENV_CONTRACT.iter().copied().collect();
        let missing: Vec<&&str> = expected.difference(&unique).collect();
        let unknown: Vec<&&str> = unique.difference(&expected).collect();
        assert!(missing.is_empty(), "{profile}: temporal.env misses variables the fork reads: {missing:?}");
        assert!(
            unknown.is_empty(),
            "{profile}: temporal.env sets variables the fork never reads: {unknown:?}"
        );
        assert_eq!(render::fork_env_vars(&config(profile)), names);
    }
}

#[test]
fn env_values_follow_the_config() {
    let files = rendered("dsql");
    let env = file(&files, render::TEMPORAL_ENV);
    let value = |name: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} unset"))
    };
    let endpoint = format!("{CLUSTER}.dsql.us-east-1.on.aws");
    assert_eq!(value("CLUSTER_ENDPOINT"), endpoint);
    assert_eq!(value("SQL_HOST"), endpoint);
    assert_eq!(value("REGION"), "us-east-1");
    assert_eq!(value("AWS_REGION"), "us-east-1");
    assert_eq!(value("DSQL_RESERVOIR_TARGET_READY"), "50");
    assert_eq!(value("DSQL_DISTRIBUTED_RATE_LIMITER_TABLE"), "golden-dsql-rate-limiter");
    assert_eq!(value("DSQL_DISTRIBUTED_CONN_LEASE_TABLE"), "golden-dsql-conn-lease");
    let local = rendered("local");
    let local_env = file(&local, render::TEMPORAL_ENV);
    assert!(local_env.contains("\nCLUSTER_ENDPOINT=dsql-local\n"));
    assert!(local_env.contains("\nAWS_REGION=eu-west-1\n"));
    // The local key pair lives in generated/dsql-local/keypair.env, never in temporal.env.
    assert!(!local_env.contains("AWS_ACCESS_KEY_ID") && !local_env.contains("AWS_SECRET_ACCESS_KEY"));
}

/// config.toml overlays every profile, so the cluster `infra apply` writes there (identifier and
/// endpoint) reaches the local profile's config too: nothing it renders may point at the cluster.
#[test]
fn a_cluster_in_config_toml_does_not_redirect_the_local_profile() {
    let endpoint = format!("{CLUSTER}.dsql.us-east-1.on.aws");
    let user = DSQL_USER_CONFIG.replace(
        &format!("identifier = \"{CLUSTER}\"\n"),
        &format!("identifier = \"{CLUSTER}\"\nendpoint = \"{endpoint}\"\n"),
    );
    assert!(user.contains(&endpoint));
    let file_path = root().join("profiles/local/profile.toml");
    let config = Loader::new()
        .file(&file_path, "profiles/local/profile.toml")
        .unwrap()
        .text(&user, "config.toml")
        .unwrap()
        .load()
        .unwrap()
        .config;
    let files = render::render_all(&config, "local").unwrap();
    for f in files.iter().filter(|f| !f.path.starts_with(render::GRAFANA_DASHBOARDS)) {
        assert!(!f.contents.contains(".on.aws"), "{} points at the cluster:\n{}", f.path, f.contents);
    }
    let temporal_env = file(&files, render::TEMPORAL_ENV);
    assert!(temporal_env.contains("\nCLUSTER_ENDPOINT=dsql-local\n"), "{temporal_env}");
    assert!(temporal_env.contains("\nSQL_HOST=dsql-local\n"), "{temporal_env}");
    assert!(file(&files, render::COMPOSE_ENV).contains("\nTDSQL_LOCAL_POSTGRES_HOST=postgresql\n"));
    assert!(file(&files, render::TEMPORAL_CONFIG).contains("dsql-local:5432"));
}

#[test]
fn no_secret_reaches_a_rendered_file() {
    for profile in ["local", "dsql"] {
        let files = rendered(profile);
        for f in &files {
            let text = &f.contents;
            let at = |what: &str| format!("{profile}/{}: {what}", f.path);
            assert!(!text.contains(PASSWORD_SENTINEL), "{}", at("the Grafana admin password"));
            for marker in ["X-Amz-Signature", "X-Amz-Credential", "X-Amz-Security-Token", "BEGIN PRIVATE KEY"]
            {
                assert!(!text.contains(marker), "{}", at(marker));
            }
            // An AWS access key id (AKIA/ASIA + 16 upper-case letters or digits).
            let bytes = text.as_bytes();
            for i in 0..bytes.len().saturating_sub(19) {
                let id = &bytes[i..i + 20];
                let prefixed = id.starts_with(b"AKIA") || id.starts_with(b"ASIA");
                assert!(
                    !(prefixed && id[4..].iter().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())),
                    "{}",
                    at("an AWS access key id")
                );
            }
            for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
                let lower = line.to_ascii_lowercase();
                let Some((name, value)) = line.split_once(['=', ':']) else { continue };
                let value = value.trim().trim_matches(['"', '\'']);
                let secretish = ["password", "secret", "token", "credential"]
                    .iter()
                    .any(|w| name.to_ascii_lowercase().contains(w));
                if secretish && !value.is_empty() {
                    assert!(
                        name.trim() == "DSQL_TOKEN_DURATION",
                        "{}",
                        at(&format!("a secret-looking value in `{lower}`"))
                    );
                }
            }
        }
        let compose_env = file(&files, render::COMPOSE_ENV);
        assert!(!compose_env.contains("AWS_SECRET_ACCESS_KEY"), "compose.env carries no credentials");
    }
}

#[test]
fn dsql_without_a_cluster_is_an_error_that_says_what_to_do() {
    let file = root().join("profiles/dsql/profile.toml");
    let config = Loader::new().file(&file, "profiles/dsql/profile.toml").unwrap().load().unwrap().config;
    let err = render::render_all(&config, "dsql").unwrap_err();
    assert!(matches!(err, ConfigError::NoCluster));
    assert!(err.to_string().contains("cargo xtask infra apply"), "{err}");
}

fn yaml(text: &str) -> Yaml {
    serde_norway::from_str(text).unwrap_or_else(|e| panic!("does not parse: {e}\n{text}"))
}

fn get<'a>(v: &'a Yaml, path: &str) -> &'a Yaml {
    path.split('.').fold(v, |v, k| v.get(k).unwrap_or_else(|| panic!("missing {path} (at {k})")))
}

#[test]
fn every_rendered_yaml_parses() {
    for profile in ["local", "dsql"] {
        for f in rendered(profile).iter().filter(|f| f.path.ends_with(".yaml")) {
            yaml(&f.contents);
        }
    }
}

#[test]
fn temporal_config_uses_the_dsql_plugin_and_elasticsearch_visibility() {
    for profile in ["local", "dsql"] {
        let files = rendered(profile);
        let text = file(&files, render::TEMPORAL_CONFIG);
        assert_eq!(text.lines().next(), Some("# enable-template"), "{profile}");
        // What the server parses once its template engine replaced the env lookups.
        let templated = text
            .replace("{{ env \"BIND_ON_IP\" }}", "172.18.0.5")
            .replace("{{ env \"TEMPORAL_BROADCAST_ADDRESS\" }}", "172.18.0.5");
        assert!(!templated.contains("{{"), "{profile}: an unknown template expression is left");
        let y = yaml(&templated);
        let persistence = get(&y, "persistence");
        let default_store = get(persistence, "defaultStore").as_str().unwrap();
        let visibility_store = get(persistence, "visibilityStore").as_str().unwrap();
        let stores = get(persistence, "datastores");
        let sql = get(&stores[default_store], "sql");
        assert_eq!(get(sql, "pluginName").as_str(), Some("dsql"));
        assert_eq!(get(sql, "databaseName").as_str(), Some("postgres"));
        assert!(sql.get("password").is_none(), "{profile}: no password in the server config");
        let visibility = &stores[visibility_store];
        assert!(visibility.get("sql").is_none(), "{profile}: visibility must not be on the dsql plugin");
        assert_eq!(
            get(visibility, "elasticsearch.indices.visibility").as_str(),
            Some("temporal_visibility_v1_dev")
        );
        // TLS is explicit either way; never both forms (a duplicate DSN key panics the plugin).
        match profile {
            "dsql" => {
                assert_eq!(get(sql, "tls.enabled").as_bool(), Some(true));
                assert_eq!(get(sql, "tls.enableHostVerification").as_bool(), Some(true));
                assert!(sql.get("connectAttributes").is_none());
                assert_eq!(
                    get(sql, "connectAddr").as_str(),
                    Some(format!("{CLUSTER}.dsql.us-east-1.on.aws:5432").as_str())
                );
            }
            _ => {
                // Like the dsql profile, against the gateway and the local CA.
                assert_eq!(get(sql, "tls.enabled").as_bool(), Some(true));
                assert_eq!(get(sql, "tls.enableHostVerification").as_bool(), Some(true));
                assert_eq!(get(sql, "tls.caFile").as_str(), Some("/etc/temporal/dsql-local/ca.crt"));
                assert_eq!(get(sql, "tls.serverName").as_str(), Some("dsql-local"));
                assert!(sql.get("connectAttributes").is_none());
                assert_eq!(get(sql, "connectAddr").as_str(), Some("dsql-local:5432"));
                assert_eq!(get(sql, "user").as_str(), Some("admin"));
            }
        }
        assert_eq!(get(&y, "global.metrics.prometheus.framework").as_str(), Some("opentelemetry"));
        assert_eq!(get(&y, "global.metrics.prometheus.listenAddress").as_str(), Some("0.0.0.0:9090"));
        assert_eq!(get(&y, "global.membership.broadcastAddress").as_str(), Some("172.18.0.5"));
        let mut ports = BTreeSet::new();
        for service in ["frontend", "history", "matching", "worker"] {
            let rpc = get(&y, &format!("services.{service}.rpc"));
            assert_eq!(get(rpc, "bindOnIP").as_str(), Some("172.18.0.5"));
            assert!(ports.insert(get(rpc, "grpcPort").as_u64().unwrap()));
            assert!(ports.insert(get(rpc, "membershipPort").as_u64().unwrap()));
        }
        assert_eq!(get(&y, "services.frontend.rpc.grpcPort").as_u64(), Some(7233));
        assert_eq!(
            get(&y, "dynamicConfigClient.filepath").as_str(),
            Some("/etc/temporal/config/dynamicconfig.yaml")
        );
    }
}

/// Keys of the fork's sample dynamic config that Temporal does not register (reference §8.3).
const DEAD_DYNAMIC_CONFIG_KEYS: &[&str] = &[
    "persistence.enableDSQLMode",
    "persistence.maxConns",
    "persistence.maxIdleConns",
    "persistence.transactionSizeLimit",
    "visibility.maxPageSize",
    "system.membershipMaxJoinDuration",
    "archival.history.enableRead",
    "archival.visibility.enableRead",
    "worker.enableLogging",
    "frontend.enableClientVersionCheck",
    "matching.enableTaskInfoLogByDomainID",
    "system.enableParentClosePolicy",
    "persistence.defaultActivityRetryPolicy",
    "persistence.healthCheckInterval",
];

#[test]
fn dynamic_config_has_registered_keys_only() {
    for profile in ["local", "dsql"] {
        let y = yaml(file(&rendered(profile), render::DYNAMIC_CONFIG));
        let map = y.as_mapping().unwrap();
        assert!(!map.is_empty());
        for (key, values) in map {
            let key = key.as_str().unwrap();
            assert!(render::REGISTERED_DYNAMIC_CONFIG_KEYS.contains(&key), "{key} is not a registered key");
            assert!(!DEAD_DYNAMIC_CONFIG_KEYS.contains(&key), "{key} is a dead key");
            let first = &values.as_sequence().unwrap()[0];
            assert!(first.get("value").is_some(), "{key} has no value");
        }
    }
}

#[test]
fn grafana_datasources_have_fixed_uids_and_the_region() {
    let y = yaml(file(&rendered("dsql"), render::GRAFANA_DATASOURCES));
    let sources = get(&y, "datasources").as_sequence().unwrap();
    let by_uid = |uid: &str| sources.iter().find(|s| s["uid"].as_str() == Some(uid)).unwrap();
    let prometheus = by_uid("prometheus");
    assert_eq!(prometheus["type"].as_str(), Some("prometheus"));
    assert_eq!(prometheus["url"].as_str(), Some("http://mimir:9009/prometheus"));
    let cloudwatch = by_uid("cloudwatch");
    assert_eq!(cloudwatch["type"].as_str(), Some("cloudwatch"));
    assert_eq!(get(cloudwatch, "jsonData.defaultRegion").as_str(), Some("us-east-1"));
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("does not parse: {e}"))
}

/// The `dsql_cluster` variable of a rendered DSQL Persistence dashboard.
fn cluster_variable(files: &[Rendered]) -> serde_json::Value {
    let dashboard = json(file(files, render::GRAFANA_DSQL_DASHBOARD));
    let list = dashboard["templating"]["list"].as_array().expect("templating.list").clone();
    let mut found = list.into_iter().filter(|v| v["name"] == render::GRAFANA_DSQL_CLUSTER_VARIABLE);
    let variable = found.next().expect("a dsql_cluster variable");
    assert!(found.next().is_none(), "one dsql_cluster variable");
    variable
}

#[test]
fn the_dsql_cluster_variable_defaults_to_the_configured_cluster() {
    let variable = cluster_variable(&rendered("dsql"));
    assert_eq!(variable["current"]["value"], CLUSTER);
    assert_eq!(variable["current"]["text"], CLUSTER);
    assert_eq!(variable["current"]["selected"], true);
    // Still the CloudWatch query, so the other clusters of the account stay selectable.
    assert_eq!(variable["type"], "query");
    assert_eq!(variable["datasource"]["uid"], "cloudwatch");
    assert_eq!(variable["query"]["dimensionKey"], "ClusterId");

    // The cluster id derived from a DSQL endpoint when only dsql.endpoint is set.
    let mut config = config("dsql");
    config.dsql.identifier = String::new();
    config.dsql.endpoint = "zyxwvutsrqponmlkjihgfedcba.dsql.us-east-1.on.aws".to_owned();
    let files = render::render_all(&config, "dsql").unwrap();
    assert_eq!(cluster_variable(&files)["current"]["value"], "zyxwvutsrqponmlkjihgfedcba");
}

#[test]
fn without_a_cluster_the_dsql_cluster_variable_is_left_as_in_the_source() {
    let source = root().join("grafana/dsql/persistence.json");
    let source_variable = {
        let dashboard = json(&std::fs::read_to_string(&source).unwrap());
        dashboard["templating"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == render::GRAFANA_DSQL_CLUSTER_VARIABLE)
            .expect("the source has the variable")
            .clone()
    };
    assert_eq!(source_variable["current"], json("{}"), "the source leaves the choice to Grafana");
    // The local profile has no cluster: nothing to preset.
    assert_eq!(cluster_variable(&rendered("local")), source_variable);
    // A dsql endpoint that names no cluster (not `<id>.dsql.<region>.on.aws`) presets nothing either.
    let mut config = config("dsql");
    config.dsql.identifier = String::new();
    config.dsql.endpoint = "dsql.internal.example".to_owned();
    let files = render::render_all(&config, "dsql").unwrap();
    assert_eq!(cluster_variable(&files), source_variable);
}

/// Every `*.json` below the repository's `grafana/`, relative to it, sorted.
fn dashboard_sources() -> Vec<String> {
    fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, base, out);
            } else if path.extension().is_some_and(|e| e == "json") {
                out.push(path.strip_prefix(base).unwrap().to_str().unwrap().replace('\\', "/"));
            }
        }
    }
    let base = root().join("grafana");
    let mut out = Vec::new();
    walk(&base, &base, &mut out);
    out.sort();
    out
}

#[test]
fn every_dashboard_in_grafana_is_rendered_and_differs_only_in_the_cluster_default() {
    let sources = dashboard_sources();
    assert_eq!(sources.len(), 2, "{sources:?}");
    for profile in ["local", "dsql"] {
        let files = rendered(profile);
        let prefix = format!("{}/", render::GRAFANA_DASHBOARDS);
        let mut dashboards: Vec<&Rendered> = files.iter().filter(|f| f.path.starts_with(&prefix)).collect();
        dashboards.sort_by_key(|f| f.path);
        let rendered_sources: Vec<&str> = dashboards.iter().map(|f| &f.path[prefix.len()..]).collect();
        assert_eq!(
            rendered_sources, sources,
            "{profile}: each grafana/ dashboard, at the same relative path"
        );
        for (f, source) in dashboards.iter().zip(&sources) {
            let text = std::fs::read_to_string(root().join("grafana").join(source)).unwrap();
            if profile == "local" || f.path == render::GRAFANA_SERVER_DASHBOARD {
                assert_eq!(f.contents, text, "{profile}: {source} renders byte for byte as its source");
                continue;
            }
            // The dsql persistence dashboard: the source with exactly the variable's `current` set.
            let mut expected = json(&text);
            let variable = expected["templating"]["list"]
                .as_array_mut()
                .unwrap()
                .iter_mut()
                .find(|v| v["name"] == render::GRAFANA_DSQL_CLUSTER_VARIABLE)
                .unwrap();
            variable["current"] =
                json(&format!(r#"{{"selected": true, "text": "{CLUSTER}", "value": "{CLUSTER}"}}"#));
            assert_eq!(json(&f.contents), expected, "{profile}: {source}");
            assert_ne!(f.contents, text);
        }
    }
}

#[test]
fn write_all_writes_and_skips_unchanged_files() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("render-write-all");
    let _ = std::fs::remove_dir_all(&dir);
    let files = rendered("local");
    let paths = render::write_all(&dir, &files).unwrap();
    assert_eq!(paths.len(), files.len());
    for (path, f) in paths.iter().zip(&files) {
        assert_eq!(std::fs::read_to_string(path).unwrap(), f.contents);
    }
    let before = std::fs::metadata(&paths[0]).unwrap().modified().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    render::write_all(&dir, &files).unwrap();
    assert_eq!(std::fs::metadata(&paths[0]).unwrap().modified().unwrap(), before);
}

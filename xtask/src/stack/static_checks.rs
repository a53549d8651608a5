//! Static checks of the stack: the build machines have no Docker engine, so the compose files, the
//! Alloy config and the dashboards are parsed and cross-checked here instead.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use docker_compose_types::{Compose, DependsOnOptions, Ports, Service, Volumes};
use promql_parser::parser::{self, Expr};

use super::{
    COMPOSE_VARIABLES, DOWN_PROFILES, DSQL_ONLY_VARIABLES, EMPTY_WHEN_UNUSED_VARIABLES, GRAFANA_PASSWORD_ENV,
    LOCAL_ONLY_VARIABLES, service_names,
};
use crate::paths::project_root;

/// Variables the compose files interpolate from the process environment instead: secrets (never in
/// a file) and the user's home (for `~/.aws`, dsql profile).
const PROCESS_ENV_VARIABLES: &[(&str, &str)] = &[
    ("TDSQL_GRAFANA_ADMIN_PASSWORD", "Grafana admin password, passed by the xtask as a secret"),
    ("HOME", "the user's home directory, for the read-only ~/.aws mount (dsql profile)"),
];

const PROFILES: [&str; 2] = ["local", "dsql"];

/// The four long-running Temporal services Alloy must scrape.
const TEMPORAL_SERVICES: [&str; 4] =
    ["temporal-history", "temporal-matching", "temporal-frontend", "temporal-worker"];

/// Files and folders the config renderer writes into `profiles/<p>/generated/` that the compose
/// files use.
const RENDERED: [&str; 4] = [
    "generated/temporal",
    "generated/temporal.env",
    "generated/grafana/datasources.yaml",
    "generated/grafana/dashboards",
];

/// What `cargo xtask config render` writes besides the renderer's files (local profile): the key
/// pair and the PKI (made by `tdsql-ops pki`, so they are not in `render_all`'s output).
const RENDERED_BY_THE_XTASK: [&str; 3] =
    ["generated/dsql-local/keypair.env", "generated/dsql-local/pki", "generated/dsql-local/pki/ca.crt"];

/// The gateway's compose service (local profile) and the port it serves metrics on.
const GATEWAY_SERVICE: &str = "dsql-local";
const GATEWAY_METRICS_PORT: &str = "9187";

/// Where Grafana sees the rendered dashboards folder; its file providers read below it.
const GRAFANA_DASHBOARDS_MOUNT: &str = "/etc/grafana/dashboards";

/// The dsql profile's index setup job on an OpenSearch domain.
const OPENSEARCH_SETUP: &str = "opensearch-setup";

/// The sample cluster the dsql profile is rendered with.
const SAMPLE_CLUSTER: &str = "abcdefghijklmnopqrstuvwxyz";

fn compose_path(profile: &str) -> PathBuf {
    project_root().join("profiles").join(profile).join("compose.yaml")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn parse_compose(text: &str, what: &str) -> Compose {
    serde_norway::from_str(text).unwrap_or_else(|e| panic!("{what} does not parse as a compose file: {e}"))
}

/// Every `${...}` of a compose file (escaped `$$` skipped): the variable name and its modifier.
fn interpolations(text: &str) -> Vec<(String, String)> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' && bytes.get(i + 1) == Some(&b'$') {
            i += 2;
            continue;
        }
        if bytes[i] == b'$' && bytes.get(i + 1) == Some(&b'{') {
            let end = text[i..].find('}').map(|e| i + e).expect("an unclosed ${");
            let inner = &text[i + 2..end];
            let name_len =
                inner.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(inner.len());
            found.push((inner[..name_len].to_owned(), inner[name_len..].to_owned()));
            i = end + 1;
            continue;
        }
        assert!(
            !(bytes[i] == b'$' && bytes.get(i + 1).is_some_and(u8::is_ascii_alphabetic)),
            "bare `$NAME` near byte {i}: write `${{NAME}}` (interpolated) or `$$NAME` (literal)"
        );
        i += 1;
    }
    found
}

/// Substitutes every `${NAME...}` with `values[NAME]` (or its `:-default`) and `$$` with `$`, as
/// compose does.
fn interpolate(text: &str, values: &BTreeMap<&str, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if tail.starts_with("${") {
            let end = tail.find('}').expect("an unclosed ${");
            let inner = &tail[2..end];
            let name_len =
                inner.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(inner.len());
            let (name, modifier) = inner.split_at(name_len);
            let value = values.get(name).cloned().or_else(|| {
                modifier.strip_prefix(":-").or_else(|| modifier.strip_prefix('-')).map(str::to_owned)
            });
            out.push_str(&value.unwrap_or_else(|| panic!("no value for ${{{name}}}")));
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

/// Values like the ones the renderer writes, for parsing the interpolated files.
fn sample_values() -> BTreeMap<&'static str, String> {
    let samples = [
        ("TDSQL_TEMPORAL_IMAGE", "temporal-dsql-server:0123456789ab"),
        ("TDSQL_TEMPORAL_PORTS_FRONTEND_GRPC", "7233"),
        ("TDSQL_TEMPORAL_PORTS_FRONTEND_HTTP", "8233"),
        ("TDSQL_TEMPORAL_PORTS_HISTORY_GRPC", "7234"),
        ("TDSQL_TEMPORAL_PORTS_MATCHING_GRPC", "7235"),
        ("TDSQL_TEMPORAL_PORTS_WORKER_GRPC", "7239"),
        ("TDSQL_TEMPORAL_PORTS_METRICS", "9090"),
        ("TDSQL_TEMPORAL_PORTS_UI", "8080"),
        ("TDSQL_ELASTICSEARCH_PORT", "9200"),
        ("TDSQL_ELASTICSEARCH_URL", "http://elasticsearch:9200"),
        ("TDSQL_ELASTICSEARCH_INDEX", "temporal_visibility_v1_dev"),
        ("TDSQL_OPENSEARCH_ENDPOINT", "https://search-sample-abc123.us-east-1.es.amazonaws.com"),
        ("TDSQL_OPENSEARCH_REGION", "us-east-1"),
        ("TDSQL_OPENSEARCH_INDEX", "temporal_visibility_v1_dev"),
        ("TDSQL_OBSERVABILITY_MIMIR_PORT", "9009"),
        ("TDSQL_OBSERVABILITY_MIMIR_RETENTION", "168h"),
        ("TDSQL_MIMIR_URL", "http://mimir:9009"),
        ("TDSQL_OBSERVABILITY_GRAFANA_PORT", "3000"),
        ("TDSQL_OBSERVABILITY_GRAFANA_ADMIN_USER", "admin"),
        ("TDSQL_LOCAL_POSTGRES_PORT", "5432"),
        ("TDSQL_LOCAL_GATEWAY_PORT", "5433"),
        ("TDSQL_LOCAL_GATEWAY_RATE", "100"),
        ("TDSQL_LOCAL_GATEWAY_BURST", "1000"),
        ("TDSQL_LOCAL_GATEWAY_MAX_CONNECTIONS", "10000"),
        ("TDSQL_LOCAL_GATEWAY_MAX_LIFETIME", "60m"),
        ("TDSQL_LOCAL_GATEWAY_LOCK_TIMEOUT", "10ms"),
        ("TDSQL_DSQL_LOCAL_IMAGE", "temporal-dsql-local:0123456789ab"),
        ("TDSQL_HOST_UID", "1000"),
        ("TDSQL_HOST_GID", "1000"),
        ("TDSQL_PROJECT_REGION", "us-east-1"),
        ("TDSQL_GRAFANA_ADMIN_PASSWORD", "sample-password"),
        ("HOME", "/home/someone"),
    ];
    let values: BTreeMap<&str, String> = samples.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
    for (name, _) in COMPOSE_VARIABLES.iter().chain(PROCESS_ENV_VARIABLES) {
        assert!(values.contains_key(name), "sample_values() lacks {name}");
    }
    values
}

fn compose_files() -> Vec<(&'static str, String, Compose)> {
    PROFILES
        .iter()
        .map(|profile| {
            let text = read(&compose_path(profile));
            let interpolated = interpolate(&text, &sample_values());
            let compose =
                parse_compose(&interpolated, &format!("profiles/{profile}/compose.yaml (interpolated)"));
            (*profile, text, compose)
        })
        .collect()
}

fn services(compose: &Compose) -> Vec<(&String, &Service)> {
    compose
        .services
        .0
        .iter()
        .map(|(name, service)| (name, service.as_ref().expect("a service body")))
        .collect()
}

#[test]
fn both_compose_files_parse_before_and_after_interpolation() {
    for profile in PROFILES {
        let text = read(&compose_path(profile));
        let raw = parse_compose(&text, &format!("profiles/{profile}/compose.yaml"));
        assert!(raw.services.0.len() >= 10, "{profile}: only {} services", raw.services.0.len());
    }
    for (profile, text, compose) in compose_files() {
        let names: Vec<&String> = compose.services.0.keys().collect();
        assert_eq!(
            names.iter().map(|n| n.as_str()).collect::<Vec<_>>(),
            super::service_names(&text),
            "{profile}"
        );
        for expected in ["elasticsearch", "elasticsearch-setup", "temporal-ui", "alloy", "mimir", "grafana"]
            .iter()
            .chain(&TEMPORAL_SERVICES)
        {
            assert!(compose.services.0.contains_key(*expected), "{profile}: no service {expected}");
        }
        for local_only in ["postgresql", GATEWAY_SERVICE] {
            assert_eq!(
                compose.services.0.contains_key(local_only),
                profile == "local",
                "{profile}: {local_only}"
            );
        }
        assert_eq!(compose.services.0.contains_key(OPENSEARCH_SETUP), profile == "dsql", "{profile}");
        assert!(!text.contains("platform:"), "{profile}: a hard-coded platform");
    }
}

#[test]
fn every_variable_is_rendered_defaulted_or_a_process_secret() {
    let rendered: BTreeSet<&str> = COMPOSE_VARIABLES.iter().map(|(n, _)| *n).collect();
    let process: BTreeSet<&str> = PROCESS_ENV_VARIABLES.iter().map(|(n, _)| *n).collect();
    let mut used = BTreeSet::new();
    for profile in PROFILES {
        let text = read(&compose_path(profile));
        for (name, modifier) in interpolations(&text) {
            let defaulted = modifier.starts_with(":-") || modifier.starts_with('-');
            assert!(
                rendered.contains(name.as_str()) || process.contains(name.as_str()) || defaulted,
                "{profile}: ${{{name}{modifier}}} is neither rendered into compose.env (COMPOSE_VARIABLES), \
                 nor a process variable (PROCESS_ENV_VARIABLES), nor defaulted"
            );
            if EMPTY_WHEN_UNUSED_VARIABLES.contains(&name.as_str()) {
                assert!(
                    modifier.starts_with('?'),
                    "{profile}: ${{{name}}} may be rendered empty: require it with `?` (set), not `:?`"
                );
            } else if rendered.contains(name.as_str()) {
                assert!(
                    modifier.starts_with(":?"),
                    "{profile}: ${{{name}}} should fail loudly when not rendered (:?)"
                );
            }
            used.insert(name);
        }
    }
    for name in rendered.iter().chain(&process) {
        assert!(used.contains(*name), "{name} is listed but no compose file uses it");
    }
}

#[test]
fn every_bind_mount_and_env_file_exists_or_is_rendered() {
    for (profile, _, compose) in compose_files() {
        let dir = project_root().join("profiles").join(profile);
        let declared: BTreeSet<&String> = compose.volumes.0.keys().collect();
        for (name, service) in services(&compose) {
            for volume in &service.volumes {
                let Volumes::Simple(spec) = volume else {
                    panic!("{profile}/{name}: use the short volume syntax")
                };
                let source = spec.split(':').next().unwrap_or_default();
                if source.starts_with("/home/someone/.aws") {
                    assert_eq!(
                        profile, "dsql",
                        "{profile}/{name}: AWS credentials belong to the dsql profile only"
                    );
                    assert!(spec.ends_with(":ro"), "{profile}/{name}: ~/.aws must be read-only");
                    continue;
                }
                if !source.starts_with('.') && !source.starts_with('/') {
                    assert!(
                        declared.contains(&source.to_owned()),
                        "{profile}/{name}: volume {source} is not declared"
                    );
                    continue;
                }
                assert!(spec.ends_with(":ro"), "{profile}/{name}: bind mount {spec} should be read-only");
                check_host_path(profile, name, &dir, source);
            }
            if let Some(env_file) = &service.env_file {
                let files = match env_file {
                    docker_compose_types::StringOrList::Simple(f) => vec![f.clone()],
                    docker_compose_types::StringOrList::List(l) => l.clone(),
                };
                for file in files {
                    check_host_path(profile, name, &dir, &file);
                }
            }
        }
    }
}

fn check_host_path(profile: &str, service: &str, dir: &Path, source: &str) {
    let relative = source.trim_start_matches("./");
    if relative.starts_with("generated/") {
        assert!(
            RENDERED.contains(&relative) || RENDERED_BY_THE_XTASK.contains(&relative),
            "{profile}/{service}: {source} is not a file the renderer writes"
        );
        return;
    }
    let path = dir.join(relative);
    assert!(path.exists(), "{profile}/{service}: {source} ({}) does not exist", path.display());
}

/// Grafana must never start with its built-in admin/admin: the password is the process secret
/// the xtask passes, required (`:?`) with no default that could stand in for it.
#[test]
fn grafana_admin_password_is_required_and_never_defaulted() {
    for (profile, text, _) in compose_files() {
        // Before interpolation, so the variable itself is what is checked.
        let compose = parse_compose(&text, &format!("profiles/{profile}/compose.yaml"));
        let grafana = services(&compose).into_iter().find(|(n, _)| n.as_str() == "grafana").unwrap().1;
        let password = match &grafana.environment {
            docker_compose_types::Environment::KvPair(map) => {
                map.get("GF_SECURITY_ADMIN_PASSWORD").and_then(|v| v.as_ref()).map(ToString::to_string)
            }
            docker_compose_types::Environment::List(list) => {
                list.iter().find_map(|e| e.strip_prefix("GF_SECURITY_ADMIN_PASSWORD=")).map(str::to_owned)
            }
        };
        let password =
            password.unwrap_or_else(|| panic!("{profile}: grafana has no GF_SECURITY_ADMIN_PASSWORD"));
        assert!(
            password.starts_with(&format!("${{{GRAFANA_PASSWORD_ENV}:?")) && password.ends_with('}'),
            "{profile}: GF_SECURITY_ADMIN_PASSWORD must be ${{{GRAFANA_PASSWORD_ENV}:?...}}, got {password}"
        );
        let uses: Vec<(String, String)> =
            interpolations(&text).into_iter().filter(|(n, _)| n == GRAFANA_PASSWORD_ENV).collect();
        assert!(
            uses.iter().all(|(_, modifier)| modifier.starts_with(":?")),
            "{profile}: {GRAFANA_PASSWORD_ENV} defaulted somewhere: {uses:?}"
        );
        assert!(!text.contains("GF_SECURITY_ADMIN_PASSWORD: admin"), "{profile}: the default password");
    }
}

#[test]
fn published_ports_are_loopback_and_unique() {
    for (profile, _, compose) in compose_files() {
        let mut seen = BTreeMap::new();
        for (name, service) in services(&compose) {
            let Ports::Short(ports) = &service.ports else {
                panic!("{profile}/{name}: use the short port syntax")
            };
            for spec in ports {
                let parts: Vec<&str> = spec.split(':').collect();
                assert_eq!(parts.len(), 3, "{profile}/{name}: {spec} must be 127.0.0.1:HOST:CONTAINER");
                assert_eq!(parts[0], "127.0.0.1", "{profile}/{name}: {spec} is not bound to 127.0.0.1");
                let host: u16 = parts[1].parse().unwrap_or_else(|_| panic!("{profile}/{name}: {spec}"));
                if let Some(other) = seen.insert(host, name.clone()) {
                    panic!("{profile}: host port {host} is published by both {other} and {name}");
                }
            }
        }
        assert!(seen.len() >= 7, "{profile}: only {} published ports", seen.len());
    }
}

#[test]
fn dependencies_are_services_and_healthy_ones_have_healthchecks() {
    for (profile, _, compose) in compose_files() {
        let all: BTreeMap<&String, &Service> = services(&compose).into_iter().collect();
        for (name, service) in &all {
            let DependsOnOptions::Conditional(deps) = &service.depends_on else {
                assert!(service.depends_on.is_empty(), "{profile}/{name}: use depends_on conditions");
                continue;
            };
            for (dep, condition) in deps {
                let target =
                    all.get(dep).unwrap_or_else(|| panic!("{profile}/{name}: depends on unknown {dep}"));
                match condition.condition.as_str() {
                    "service_healthy" => assert!(
                        target.healthcheck.as_ref().is_some_and(|h| !h.disable && h.test.is_some()),
                        "{profile}/{name}: waits for {dep} to be healthy, but {dep} has no healthcheck"
                    ),
                    "service_completed_successfully" => {
                        assert_eq!(
                            target.restart.as_deref(),
                            Some("no"),
                            "{profile}: one-shot {dep} must not restart"
                        );
                    }
                    "service_started" => {}
                    other => panic!("{profile}/{name}: unknown condition {other}"),
                }
            }
        }
        // The startup order: ES healthy -> setup done -> history -> matching -> frontend -> worker.
        let waits_for = |service: &str, dep: &str, condition: &str| {
            let DependsOnOptions::Conditional(deps) = &all[&service.to_owned()].depends_on else {
                panic!("{profile}/{service}: no depends_on")
            };
            assert_eq!(
                deps.get(dep).map(|c| c.condition.as_str()),
                Some(condition),
                "{profile}: {service} -> {dep}"
            );
        };
        waits_for("elasticsearch-setup", "elasticsearch", "service_healthy");
        for service in TEMPORAL_SERVICES {
            waits_for(service, "elasticsearch-setup", "service_completed_successfully");
            if profile == "dsql" {
                waits_for(service, OPENSEARCH_SETUP, "service_completed_successfully");
            }
            if profile == "local" {
                waits_for(service, "postgresql", "service_healthy");
                waits_for(service, GATEWAY_SERVICE, "service_healthy");
            }
        }
        waits_for("temporal-matching", "temporal-history", "service_healthy");
        waits_for("temporal-frontend", "temporal-matching", "service_healthy");
        waits_for("temporal-worker", "temporal-frontend", "service_healthy");
        waits_for("temporal-ui", "temporal-frontend", "service_healthy");
    }
}

#[test]
fn images_are_pinned_and_temporal_services_get_their_config() {
    for (profile, text, compose) in compose_files() {
        for (name, service) in services(&compose) {
            let image = service.image.as_deref().unwrap_or_else(|| panic!("{profile}/{name}: no image"));
            if image.starts_with("temporal-dsql-server:") || image.starts_with("temporal-dsql-local:") {
                assert!(
                    matches!(service.pull_policy, Some(docker_compose_types::PullPolicy::Never)),
                    "{profile}/{name}: our own image must never be pulled"
                );
                continue;
            }
            let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or_default();
            assert!(
                !tag.is_empty() && !tag.contains('/') && tag != "latest",
                "{profile}/{name}: {image} is not pinned"
            );
        }
        for service in TEMPORAL_SERVICES {
            let body = services(&compose).into_iter().find(|(n, _)| n.as_str() == service).unwrap().1;
            let role = service.trim_start_matches("temporal-");
            let service_var = match &body.environment {
                docker_compose_types::Environment::List(list) => {
                    list.iter().find_map(|e| e.strip_prefix("SERVICE=")).map(str::to_owned)
                }
                docker_compose_types::Environment::KvPair(map) => {
                    map.get("SERVICE").and_then(|v| v.as_ref()).map(ToString::to_string)
                }
            };
            assert_eq!(service_var.as_deref(), Some(role), "{profile}/{service}: SERVICE");
            let env_file = format!("{:?}", body.env_file);
            assert!(env_file.contains("generated/temporal.env"), "{profile}/{service}: env_file");
            assert!(
                body.volumes
                    .contains(&Volumes::Simple("./generated/temporal:/etc/temporal/config:ro".to_owned())),
                "{profile}/{service}: the rendered config must be mounted read-only"
            );
            assert!(body.healthcheck.is_some(), "{profile}/{service}: no healthcheck");
        }
        let aws_passthrough = text.contains("- AWS_PROFILE\n");
        assert_eq!(
            aws_passthrough,
            profile == "dsql",
            "{profile}: AWS credentials pass through in dsql only"
        );
    }
}

/// `"__address__" = "host:port"` entries of the Alloy config.
fn alloy_targets() -> Vec<(String, String)> {
    let text = read(&project_root().join("docker/alloy/config.alloy"));
    text.lines()
        .filter_map(|line| {
            let at = line.find("\"__address__\"")?;
            let value = line[at..].split('"').nth(3)?;
            let (host, port) = value.rsplit_once(':')?;
            let port = if port.is_empty() && line.contains("+ sys.env(\"TDSQL_TEMPORAL_PORTS_METRICS\")") {
                "TDSQL_TEMPORAL_PORTS_METRICS"
            } else {
                port
            };
            Some((host.to_owned(), port.to_owned()))
        })
        .collect()
}

#[test]
fn alloy_scrapes_every_temporal_service_by_its_compose_name() {
    let (gateway, targets): (Vec<_>, Vec<_>) =
        alloy_targets().into_iter().partition(|(host, _)| host == GATEWAY_SERVICE);
    assert_eq!(
        gateway,
        [(GATEWAY_SERVICE.to_owned(), GATEWAY_METRICS_PORT.to_owned())],
        "the gateway target"
    );
    let hosts: BTreeSet<&str> = targets.iter().map(|(h, _)| h.as_str()).collect();
    assert_eq!(hosts, TEMPORAL_SERVICES.into_iter().collect(), "alloy targets");
    for (profile, text, compose) in compose_files() {
        if profile == "local" {
            assert!(
                text.contains(&format!("--metrics=0.0.0.0:{GATEWAY_METRICS_PORT}")),
                "local: the gateway must serve the metrics Alloy scrapes"
            );
        }
        for (host, port) in &targets {
            assert!(compose.services.0.contains_key(host), "{profile}: alloy target {host} is not a service");
            assert_eq!(port, "TDSQL_TEMPORAL_PORTS_METRICS", "{host}: scrape temporal.ports.metrics");
        }
    }
    let alloy = read(&project_root().join("docker/alloy/config.alloy"));
    assert!(alloy.contains("url = sys.env(\"TDSQL_MIMIR_URL\") + \"/api/v1/push\""), "alloy writes to Mimir");
    for (profile, text, _) in compose_files() {
        let alloy_env = text.split("\n  alloy:\n").nth(1).expect("an alloy service");
        for var in ["TDSQL_TEMPORAL_PORTS_METRICS", "TDSQL_MIMIR_URL"] {
            assert!(alloy_env.contains(&format!("{var}: ${{{var}:?")), "{profile}: alloy needs {var}");
        }
    }
}

/// Every dashboard as Grafana gets it (rendered for the dsql profile with a cluster, the one that
/// differs from its source), parsed and named by its source in `grafana/`.
fn dashboards() -> Vec<(String, serde_json::Value)> {
    let prefix = format!("{}/", tdsql_config_renderer::render::GRAFANA_DASHBOARDS);
    let dashboards: Vec<(String, serde_json::Value)> = rendered_files("dsql")
        .into_iter()
        .filter_map(|f| {
            let source = format!("grafana/{}", f.path.strip_prefix(&prefix)?);
            let json = serde_json::from_str(&f.contents)
                .unwrap_or_else(|e| panic!("{source} (rendered) is not valid JSON: {e}"));
            Some((source, json))
        })
        .collect();
    let names: Vec<&str> = dashboards.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["grafana/server/server.json", "grafana/dsql/persistence.json"], "rendered dashboards");
    dashboards
}

fn all_panels(dashboard: &serde_json::Value) -> Vec<&serde_json::Value> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        out.push(panel);
        if let Some(nested) = panel["panels"].as_array() {
            out.extend(nested);
        }
    }
    out
}

/// Grafana's variables replaced by values PromQL accepts.
fn substitute_grafana_variables(expr: &str) -> String {
    let mut out =
        expr.replace("$__rate_interval", "1m").replace("$__interval", "15s").replace("$__range", "30m");
    for var in ["${namespace}", "$namespace"] {
        out = out.replace(var, ".*");
    }
    assert!(!out.contains('$'), "an unknown Grafana variable in `{expr}`");
    out
}

fn metric_names(expr: &Expr, names: &mut BTreeSet<String>) {
    match expr {
        Expr::Aggregate(agg) => {
            metric_names(&agg.expr, names);
            if let Some(param) = &agg.param {
                metric_names(param, names);
            }
        }
        Expr::Unary(unary) => metric_names(&unary.expr, names),
        Expr::Binary(binary) => {
            metric_names(&binary.lhs, names);
            metric_names(&binary.rhs, names);
        }
        Expr::Paren(paren) => metric_names(&paren.expr, names),
        Expr::Subquery(sub) => metric_names(&sub.expr, names),
        Expr::VectorSelector(vs) => {
            names.insert(vs.name.clone().expect("every selector names its metric"));
        }
        Expr::MatrixSelector(ms) => {
            names.insert(ms.vs.name.clone().expect("every selector names its metric"));
        }
        Expr::Call(call) => call.args.args.iter().for_each(|arg| metric_names(arg, names)),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

/// Every metric name the dashboards query, with where it was seen.
fn dashboard_metrics() -> BTreeMap<String, String> {
    let mut metrics = BTreeMap::new();
    for (file, dashboard) in dashboards() {
        let mut count = 0;
        for panel in all_panels(&dashboard) {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let Some(expr) = target["expr"].as_str() else { continue };
                let promql = substitute_grafana_variables(expr);
                let parsed = parser::parse(&promql).unwrap_or_else(|e| {
                    panic!("{file}, panel `{}`: `{expr}` does not parse: {e}", panel["title"])
                });
                let mut names = BTreeSet::new();
                metric_names(&parsed, &mut names);
                assert!(!names.is_empty(), "{file}: `{expr}` names no metric");
                for name in names {
                    metrics.entry(name).or_insert_with(|| format!("{file}, panel {}", panel["title"]));
                }
                count += 1;
            }
        }
        for variable in dashboard["templating"]["list"].as_array().into_iter().flatten() {
            let Some(query) = variable["query"]["query"].as_str() else { continue };
            let inner = query
                .strip_prefix("label_values(")
                .and_then(|q| q.strip_suffix(')'))
                .expect("label_values(..)");
            let metric = inner.split(',').next().unwrap().trim();
            metrics
                .entry(metric.to_owned())
                .or_insert_with(|| format!("{file}, variable {}", variable["name"]));
        }
        assert!(count >= 20, "{file}: only {count} PromQL queries found");
    }
    metrics
}

/// The checked-in Temporal server metric families: (name, kind).
fn server_metrics() -> Vec<(String, String)> {
    read(&project_root().join("grafana/temporal-server-metrics.txt"))
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (name, kind) = l.split_once(' ').unwrap_or_else(|| panic!("`{l}`: expected `<name> <kind>`"));
            assert!(["counter", "gauge", "histogram"].contains(&kind), "`{l}`: unknown kind");
            (name.to_owned(), kind.to_owned())
        })
        .collect()
}

/// The series a family stands for.
fn series(name: &str, histogram: bool) -> Vec<String> {
    if histogram {
        ["_bucket", "_sum", "_count"].iter().map(|s| format!("{name}{s}")).collect()
    } else {
        vec![name.to_owned()]
    }
}

#[test]
fn every_dashboard_query_parses_and_names_exported_metrics_only() {
    let mut known = BTreeMap::new();
    for (name, kind) in server_metrics() {
        for s in series(&name, kind == "histogram") {
            known.insert(s, "temporal server list");
        }
    }
    for family in tdsql_reservoir::METRIC_FAMILIES {
        for s in family.series() {
            known.insert(s, "tdsql-reservoir");
        }
    }
    let used = dashboard_metrics();
    let unknown: Vec<String> =
        used.iter().filter(|(m, _)| !known.contains_key(*m)).map(|(m, at)| format!("{m} ({at})")).collect();
    assert!(unknown.is_empty(), "metrics nobody exports: {unknown:#?}");
    // The checked-in list holds only what the dashboards use, so it cannot go stale.
    for (name, kind) in server_metrics() {
        assert!(
            series(&name, kind == "histogram").iter().any(|s| used.contains_key(s)),
            "grafana/temporal-server-metrics.txt lists {name}, which no dashboard uses"
        );
    }
}

#[test]
fn dashboards_have_unique_uids_and_use_the_provisioned_datasources() {
    let mut uids = BTreeSet::new();
    for (file, dashboard) in dashboards() {
        assert!(uids.insert(dashboard["uid"].as_str().expect("a uid").to_owned()), "{file}: duplicate uid");
        let mut ids = BTreeSet::new();
        for panel in all_panels(&dashboard) {
            assert!(ids.insert(panel["id"].as_u64().expect("a panel id")), "{file}: duplicate panel id");
            assert!(panel["gridPos"]["w"].as_u64().is_some_and(|w| w <= 24), "{file}: panel width");
            for ds in std::iter::once(&panel["datasource"])
                .chain(panel["targets"].as_array().into_iter().flatten().map(|t| &t["datasource"]))
            {
                if let Some(uid) = ds["uid"].as_str() {
                    assert!(["prometheus", "cloudwatch"].contains(&uid), "{file}: datasource uid {uid}");
                }
            }
        }
    }
}

/// A CloudWatch metric-math expression refers only to metric queries of its own panel (by their
/// `id`) and to variables the dashboard defines; functions (`PERIOD`, `SUM`, ...) are upper case.
fn check_math(file: &str, dashboard: &serde_json::Value, panel: &serde_json::Value, expression: &str) {
    let ids: BTreeSet<&str> = panel["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["namespace"].is_string())
        .filter_map(|t| t["id"].as_str())
        .collect();
    let variables: BTreeSet<&str> = dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["name"].as_str())
        .collect();
    let title = &panel["title"];
    let tokens = expression.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '$'));
    for token in tokens.filter(|t| !t.is_empty()) {
        if let Some(variable) = token.strip_prefix('$') {
            assert!(
                variables.contains(variable),
                "{file}, panel {title}: `{expression}` uses unknown ${variable}"
            );
        } else if token.starts_with(|c: char| c.is_ascii_lowercase()) {
            assert!(
                ids.contains(token),
                "{file}, panel {title}: `{expression}` refers to no query `{token}`"
            );
        } else {
            assert!(
                token.parse::<f64>().is_ok() || token.chars().all(|c| c.is_ascii_uppercase() || c == '_'),
                "{file}, panel {title}: `{token}` in `{expression}`"
            );
        }
    }
}

/// Every CloudWatch query filters on the `dsql_cluster` variable, and the rendered dashboard
/// preselects the configured cluster in it (so opening it from Grafana's list shows this profile's).
/// Metric-math expressions (the cost panel) build on such queries of their panel.
#[test]
fn cloudwatch_queries_follow_the_cluster_variable_preset_to_the_configured_cluster() {
    use tdsql_config_renderer::render::GRAFANA_DSQL_CLUSTER_VARIABLE;
    let mut queries = 0;
    let mut expressions = 0;
    for (file, dashboard) in dashboards() {
        for panel in all_panels(&dashboard) {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let cloudwatch = target["datasource"]["uid"] == "cloudwatch"
                    || (target["datasource"].is_null() && panel["datasource"]["uid"] == "cloudwatch");
                if !cloudwatch {
                    continue;
                }
                if let Some(expression) = target["expression"].as_str().filter(|e| !e.is_empty()) {
                    assert_eq!(
                        target["metricEditorMode"], 1,
                        "{file}, panel {}: math in code mode",
                        panel["title"]
                    );
                    check_math(&file, &dashboard, panel, expression);
                    expressions += 1;
                    continue;
                }
                assert_eq!(target["namespace"], "AWS/AuroraDSQL", "{file}, panel {}", panel["title"]);
                assert_eq!(
                    target["dimensions"]["ClusterId"],
                    format!("${GRAFANA_DSQL_CLUSTER_VARIABLE}"),
                    "{file}, panel {}: filter on the cluster variable",
                    panel["title"]
                );
                queries += 1;
            }
        }
        for variable in dashboard["templating"]["list"].as_array().into_iter().flatten() {
            if variable["name"] == GRAFANA_DSQL_CLUSTER_VARIABLE {
                assert_eq!(variable["current"]["value"], SAMPLE_CLUSTER, "{file}: the preselected cluster");
                assert_eq!(variable["current"]["text"], SAMPLE_CLUSTER, "{file}: the preselected cluster");
            }
        }
    }
    assert!(queries >= 4, "only {queries} CloudWatch queries found");
    assert!(expressions >= 1, "the cost-per-hour panel's expression is missing");
}

/// Grafana reads the rendered dashboards: the compose files mount the generated folder where the
/// providers look, every provider path holds rendered dashboards, and the home dashboard is one.
#[test]
fn grafana_provisions_the_rendered_dashboards() {
    use tdsql_config_renderer::render;
    let rendered: Vec<String> = rendered_files("dsql")
        .into_iter()
        .filter_map(|f| {
            let rel = f.path.strip_prefix(render::GRAFANA_DASHBOARDS)?;
            Some(format!("{GRAFANA_DASHBOARDS_MOUNT}{rel}"))
        })
        .collect();
    let providers = read(&project_root().join("docker/grafana/dashboards.yaml"));
    let providers: serde_norway::Value = serde_norway::from_str(&providers).expect("dashboards.yaml parses");
    let providers = providers["providers"].as_sequence().expect("providers");
    for provider in providers {
        let path = provider["options"]["path"].as_str().expect("a path");
        assert!(
            rendered.iter().any(|f| f.starts_with(&format!("{path}/"))),
            "provider path {path} holds no rendered dashboard (rendered: {rendered:?})"
        );
    }
    for dashboard in &rendered {
        assert!(
            providers.iter().any(|p| {
                p["options"]["path"].as_str().is_some_and(|path| dashboard.starts_with(&format!("{path}/")))
            }),
            "{dashboard} is rendered, but no provider in docker/grafana/dashboards.yaml reads it"
        );
    }
    let mount = format!("./generated/{}:{GRAFANA_DASHBOARDS_MOUNT}:ro", render::GRAFANA_DASHBOARDS);
    for (profile, _, compose) in compose_files() {
        let grafana = services(&compose).into_iter().find(|(n, _)| n.as_str() == "grafana").unwrap().1;
        assert!(
            grafana.volumes.contains(&Volumes::Simple(mount.clone())),
            "{profile}/grafana: mount the rendered dashboards, {mount}"
        );
        let dashboards_mounts = grafana
            .volumes
            .iter()
            .filter(
                |v| matches!(v, Volumes::Simple(s) if s.contains(&format!(":{GRAFANA_DASHBOARDS_MOUNT}"))),
            )
            .count();
        assert_eq!(dashboards_mounts, 1, "{profile}/grafana: one dashboards mount, the rendered one");
        let home = match &grafana.environment {
            docker_compose_types::Environment::KvPair(map) => map
                .get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
                .and_then(|v| v.as_ref())
                .map(ToString::to_string),
            docker_compose_types::Environment::List(list) => list
                .iter()
                .find_map(|e| e.strip_prefix("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH="))
                .map(str::to_owned),
        };
        let home =
            home.unwrap_or_else(|| panic!("{profile}/grafana: no GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"));
        assert!(rendered.contains(&home), "{profile}/grafana: the home dashboard {home} is not rendered");
    }
}

#[test]
fn the_mimir_config_parses_and_compose_sets_a_retention() {
    let text = read(&project_root().join("docker/mimir/mimir.yaml"));
    let mimir: serde_norway::Value = serde_norway::from_str(&text).expect("mimir.yaml parses");
    assert_eq!(mimir["multitenancy_enabled"].as_bool(), Some(false));
    for (profile, text, _) in compose_files() {
        for flag in [
            "-compactor.blocks-retention-period=${TDSQL_OBSERVABILITY_MIMIR_RETENTION:?",
            "-server.http-listen-port=${TDSQL_OBSERVABILITY_MIMIR_PORT:?",
        ] {
            assert!(text.contains(flag), "{profile}: mimir lacks {flag}");
        }
    }
}

#[test]
fn interpolation_follows_compose_rules() {
    let values: BTreeMap<&str, String> = [("A", "1".to_owned())].into_iter().collect();
    assert_eq!(interpolate("x${A:?msg}y $${B} ${C:-d}", &values), "x1y ${B} d");
    assert_eq!(
        interpolations("${A:?m} $${B} ${C:-x}"),
        [("A".into(), ":?m".into()), ("C".into(), ":-x".into())]
    );
}

/// What the config renderer writes for a profile (committed defaults; a cluster for dsql).
fn rendered_files(profile: &str) -> Vec<tdsql_config_renderer::render::Rendered> {
    rendered_files_with(profile, "")
}

/// A sample `config.toml` that puts the dsql profile's visibility on an OpenSearch domain in another
/// region than the cluster (the profile's eu-west-1).
const OPENSEARCH_CONFIG: &str = "[visibility]\nbackend = \"opensearch\"\n[opensearch]\n\
                                 endpoint = \"https://search-sample-abc123.us-east-1.es.amazonaws.com\"\n\
                                 region = \"us-east-1\"\n";

/// [`rendered_files`] with `user` (TOML) layered over the profile, as a config.toml would be.
fn rendered_files_with(profile: &str, user: &str) -> Vec<tdsql_config_renderer::render::Rendered> {
    use tdsql_config_renderer::{Loader, render};
    let profile_toml = project_root().join("profiles").join(profile).join("profile.toml");
    let mut loader = Loader::new().file(&profile_toml, "profile.toml").expect("profile.toml loads");
    if profile == "dsql" {
        loader =
            loader.text(&format!("[dsql]\nidentifier = \"{SAMPLE_CLUSTER}\"\n"), "test").expect("a layer");
    }
    loader = loader.text(user, "config.toml").expect("a layer");
    let loaded = loader.load().expect("the committed profile is valid");
    // As the xtask renders it: with the user the local gateway's container runs as.
    let host = render::HostUser { uid: 1000, gid: 1000 };
    render::render_all_as(&loaded.config, profile, Some(host)).expect("it renders")
}

/// The config renderer's own compose.env for a profile (committed defaults; a cluster for dsql).
fn rendered_compose_env(profile: &str) -> BTreeMap<String, String> {
    use tdsql_config_renderer::render;
    let files = rendered_files(profile);
    let datasources = files.iter().find(|f| f.path == render::GRAFANA_DATASOURCES).expect("datasources");
    for uid in ["uid: prometheus", "uid: cloudwatch"] {
        assert!(datasources.contents.contains(uid), "{profile}: the dashboards need the datasource {uid}");
    }
    for rendered in RENDERED {
        let rel = rendered.trim_start_matches("generated/");
        assert!(
            files.iter().any(|f| f.path == rel || f.path.starts_with(&format!("{rel}/"))),
            "the compose file mounts generated/{rel}, which the renderer does not write"
        );
    }
    let env = files.iter().find(|f| f.path == render::COMPOSE_ENV).expect("a compose.env");
    env.contents
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && l.contains('='))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.trim().to_owned(), v.trim().trim_matches('\'').trim_matches('"').to_owned())
        })
        .collect()
}

#[test]
fn the_renderers_compose_env_defines_every_variable_and_the_result_is_consistent() {
    for profile in PROFILES {
        let env = rendered_compose_env(profile);
        let text = read(&compose_path(profile));
        let mut values: BTreeMap<&str, String> = env.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        for (name, modifier) in interpolations(&text) {
            let defaulted = modifier.starts_with(":-") || modifier.starts_with('-');
            let process = PROCESS_ENV_VARIABLES.iter().any(|(n, _)| *n == name);
            assert!(
                env.contains_key(&name) || defaulted || process,
                "{profile}: ${{{name}}} is not in the rendered compose.env"
            );
        }
        values.insert("TDSQL_GRAFANA_ADMIN_PASSWORD", "x".to_owned());
        values.insert("HOME", "/home/someone".to_owned());
        let compose =
            parse_compose(&interpolate(&text, &values), &format!("{profile} with the rendered values"));
        let es_host = &env["TDSQL_ELASTICSEARCH_HOST"];
        assert!(
            compose.services.0.contains_key(es_host),
            "{profile}: Elasticsearch host {es_host} is no service"
        );
        let mimir_url = &env["TDSQL_MIMIR_URL"];
        assert_eq!(
            mimir_url,
            &format!("http://mimir:{}", env["TDSQL_OBSERVABILITY_MIMIR_PORT"]),
            "{profile}"
        );
        // Every variable listed here is one the renderer really writes (no stale entries).
        for (name, _) in COMPOSE_VARIABLES {
            let other_profile = if LOCAL_ONLY_VARIABLES.contains(name) {
                profile == "dsql"
            } else {
                DSQL_ONLY_VARIABLES.contains(name) && profile == "local"
            };
            assert!(env.contains_key(*name) || other_profile, "{profile}: {name} not rendered");
        }
    }
}

/// The local profile's Temporal reaches PostgreSQL through the gateway: the gateway runs as the
/// host user with the rendered key pair and PKI, answers its own probe, and every Temporal service
/// gets the same key pair and the CA its rendered config's `tls.caFile` names.
#[test]
fn local_temporal_connects_through_the_gateway() {
    let (_, text, compose) = compose_files().into_iter().find(|(p, _, _)| *p == "local").expect("local");
    let all: BTreeMap<&String, &Service> = services(&compose).into_iter().collect();
    let gateway = all[&GATEWAY_SERVICE.to_owned()];
    assert_eq!(gateway.user.as_deref(), Some("1000:1000"), "the gateway runs as the host user");
    assert!(
        format!("{:?}", gateway.env_file).contains("generated/dsql-local/keypair.env"),
        "gateway key pair"
    );
    // The gateway reaches PostgreSQL on its Unix-domain socket: the directory its upstream names
    // is a volume both services mount there.
    let socket = Volumes::Simple("postgresql-socket:/var/run/postgresql".to_owned());
    assert_eq!(
        gateway.volumes,
        [Volumes::Simple("./generated/dsql-local/pki:/pki:ro".to_owned()), socket.clone()]
    );
    assert!(
        all[&"postgresql".to_owned()].volumes.contains(&socket),
        "postgresql shares its socket directory"
    );
    let probe = format!("{:?}", gateway.healthcheck.as_ref().and_then(|h| h.test.as_ref()));
    assert!(probe.contains("probe") && probe.contains("127.0.0.1:5432"), "gateway healthcheck: {probe}");
    for flag in [
        "--listen=0.0.0.0:5432",
        "--pki-dir=/pki",
        "--upstream=host=/var/run/postgresql port=5432 user=admin dbname=postgres",
    ] {
        assert!(text.contains(flag), "the gateway's command lacks {flag}");
    }
    for service in TEMPORAL_SERVICES {
        let body = all[&service.to_owned()];
        let env_files = format!("{:?}", body.env_file);
        let (temporal, keypair) = (
            env_files.find("generated/temporal.env").expect("temporal.env"),
            env_files
                .find("generated/dsql-local/keypair.env")
                .unwrap_or_else(|| panic!("{service}: key pair")),
        );
        assert!(temporal < keypair, "{service}: the key pair must come last so it wins");
        assert!(
            body.volumes.contains(&Volumes::Simple(
                "./generated/dsql-local/pki/ca.crt:/etc/temporal/dsql-local/ca.crt:ro".to_owned()
            )),
            "{service}: the local CA must be mounted where tls.caFile points"
        );
    }
}

/// A scratch project directory for compose's loader, removed on drop.
struct ComposeProject(PathBuf);

impl ComposeProject {
    fn new(label: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("tdsql-compose-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("generated")).expect("create a scratch project dir");
        Self(dir)
    }

    fn write(&self, relative: &str, contents: &str) {
        let path = self.0.join(relative);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("create a parent");
        std::fs::write(path, contents).expect("write a scratch file");
    }
}

impl Drop for ComposeProject {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs Docker Compose v2's own loader (`[global...] config <flag>`) over a profile's compose file,
/// with the env file and the project directory (where `generated/` is) given; fails with compose's
/// message. The environment is cleared so only the env file (and the process secrets) feed
/// interpolation.
fn compose_loader(
    profile: &str,
    project: &ComposeProject,
    env_file: &Path,
    global: &[&str],
    flag: &str,
) -> String {
    let out = std::process::Command::new(tdsql_test_support::compose())
        .env_clear()
        .env(GRAFANA_PASSWORD_ENV, "sample-password")
        .env("HOME", "/home/someone")
        .arg("--project-name")
        .arg(format!("tdsql-{profile}"))
        .arg("--project-directory")
        .arg(&project.0)
        .arg("--env-file")
        .arg(env_file)
        .arg("-f")
        .arg(compose_path(profile))
        .args(global)
        .args(["config", flag])
        .output()
        .expect("run docker compose (TDSQL_COMPOSE)");
    assert!(
        out.status.success(),
        "docker compose config {flag} rejects profiles/{profile}/compose.yaml with {}:\n{}{}",
        env_file.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Compose's loader accepts a profile with `env_file`.
fn compose_loader_accepts(profile: &str, project: &ComposeProject, env_file: &Path) {
    compose_loader(profile, project, env_file, &[], "--quiet");
}

/// The services compose's loader enables for a profile with `env_file` (`config --services`: the
/// profiles that env file's COMPOSE_PROFILES turns on).
fn compose_loader_services(profile: &str, project: &ComposeProject, env_file: &Path) -> BTreeSet<String> {
    compose_loader(profile, project, env_file, &[], "--services").lines().map(str::to_owned).collect()
}

/// Compose's loader over both profiles with the sample values (every COMPOSE_VARIABLES entry) and
/// empty stand-ins for the rendered files: the files are valid compose, every variable is set.
#[test]
fn compose_itself_loads_both_profiles_with_every_variable() {
    for profile in PROFILES {
        let project = ComposeProject::new(&format!("sample-{profile}"));
        let mut env = String::new();
        for (name, value) in sample_values() {
            if PROCESS_ENV_VARIABLES.iter().all(|(n, _)| *n != name) {
                env.push_str(&format!("{name}={value}\n"));
            }
        }
        project.write("compose.env", &env);
        for rendered in RENDERED.iter().chain(&RENDERED_BY_THE_XTASK) {
            let path = project.0.join(rendered);
            if std::path::Path::new(rendered).extension().is_some() {
                project.write(rendered, "");
            } else {
                std::fs::create_dir_all(path).expect("create a rendered folder");
            }
        }
        compose_loader_accepts(profile, &project, &project.0.join("compose.env"));

        // And it fails, naming the variable, when the env file lacks one.
        let missing = if profile == "local" { "TDSQL_LOCAL_GATEWAY_PORT" } else { "TDSQL_TEMPORAL_IMAGE" };
        let partial: String = env
            .lines()
            .filter(|l| !l.starts_with(&format!("{missing}=")))
            .map(|l| format!("{l}\n"))
            .collect();
        project.write("partial.env", &partial);
        let out = std::process::Command::new(tdsql_test_support::compose())
            .env_clear()
            .env(GRAFANA_PASSWORD_ENV, "x")
            .env("HOME", "/home/someone")
            .arg("--project-directory")
            .arg(&project.0)
            .arg("--env-file")
            .arg(project.0.join("partial.env"))
            .arg("-f")
            .arg(compose_path(profile))
            .args(["config", "--quiet"])
            .output()
            .expect("run docker compose");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(missing), "{profile}: {stderr}");
    }
}

/// Compose's loader over what `cargo xtask config render` really writes for each profile (the
/// committed defaults, and the dsql profile with OpenSearch visibility): the renderer and the compose
/// files agree on variables and files, and on whether Elasticsearch runs.
#[test]
fn compose_itself_loads_both_profiles_as_rendered() {
    let cases = [("local", ""), ("dsql", ""), ("dsql", OPENSEARCH_CONFIG)];
    for (profile, user) in cases {
        let opensearch = !user.is_empty();
        let label =
            if opensearch { format!("rendered-{profile}-opensearch") } else { format!("rendered-{profile}") };
        let project = ComposeProject::new(&label);
        for rendered in rendered_files_with(profile, user) {
            project.write(&format!("generated/{}", rendered.path), &rendered.contents);
        }
        // Stand-ins for the key pair and the CA, which `config render` makes through tdsql-ops.
        project.write("generated/dsql-local/keypair.env", "AWS_ACCESS_KEY_ID=x\nAWS_SECRET_ACCESS_KEY=y\n");
        project.write("generated/dsql-local/pki/ca.crt", "");
        let env_file = project.0.join("generated").join(tdsql_config_renderer::render::COMPOSE_ENV);
        compose_loader_accepts(profile, &project, &env_file);
        let services = compose_loader_services(profile, &project, &env_file);
        for service in TEMPORAL_SERVICES.iter().chain(&["temporal-ui", "mimir", "alloy", "grafana"]) {
            assert!(services.contains(*service), "{label}: {service} is not started: {services:?}");
        }
        for service in ["elasticsearch", "elasticsearch-setup"] {
            assert_eq!(services.contains(service), !opensearch, "{label}: {service} in {services:?}");
        }
        assert_eq!(
            services.contains(OPENSEARCH_SETUP),
            opensearch,
            "{label}: {OPENSEARCH_SETUP} in {services:?}"
        );
        if opensearch {
            opensearch_setup_is_signed_for_the_domain(&project, &env_file);
        }
        assert!(!services.contains("temporal-cli"), "{label}: the tools profile is not started by up");
        // `cargo xtask down` enables every compose profile, so it also removes the containers of
        // the other visibility mode (a stack switched between them) and of the tools.
        let all: BTreeSet<String> =
            compose_loader(profile, &project, &env_file, &DOWN_PROFILES, "--services")
                .lines()
                .map(str::to_owned)
                .collect();
        assert_eq!(
            all,
            BTreeSet::from_iter(service_names(&read(&compose_path(profile)))),
            "{label}: down's services"
        );
    }
}

/// The dsql profile's Elasticsearch and its setup job are in the compose profile compose.env turns
/// off for OpenSearch visibility, the OpenSearch index setup job in the one it turns on instead, and
/// the Temporal services' wait for either job is optional, so compose accepts the stack without it.
/// The local profile (no OpenSearch there) runs Elasticsearch and its job unconditionally.
#[test]
fn elasticsearch_is_a_compose_profile_of_the_dsql_stack() {
    use tdsql_config_renderer::render::{COMPOSE_PROFILE_ELASTICSEARCH, COMPOSE_PROFILE_OPENSEARCH};
    for (profile, _, compose) in compose_files() {
        for (name, service) in services(&compose) {
            let expected: Vec<&str> = match (profile, name.as_str()) {
                ("dsql", "elasticsearch" | "elasticsearch-setup") => vec![COMPOSE_PROFILE_ELASTICSEARCH],
                ("dsql", OPENSEARCH_SETUP) => vec![COMPOSE_PROFILE_OPENSEARCH],
                (_, "temporal-cli") => vec!["tools"],
                _ => vec![],
            };
            assert_eq!(service.profiles, expected, "{profile}/{name}: compose profiles");
            let DependsOnOptions::Conditional(deps) = &service.depends_on else { continue };
            for job in ["elasticsearch-setup", OPENSEARCH_SETUP] {
                if let Some(setup) = deps.get(job) {
                    let optional = profile == "dsql";
                    assert_eq!(setup.required, optional.then_some(false), "{profile}/{name} -> {job}");
                }
            }
        }
    }
}

/// What compose's loader makes of opensearch-setup in the OpenSearch rendering: the tool's
/// environment (server, index, `aws-sdk-default` signing for the domain's region) and the same AWS
/// credentials as the Temporal services (read-only ~/.aws, the AWS_* variables passed through).
fn opensearch_setup_is_signed_for_the_domain(project: &ComposeProject, env_file: &Path) {
    let json = compose_loader("dsql", project, env_file, &[], "--format=json");
    let config: serde_json::Value = serde_json::from_str(&json).expect("compose config --format=json");
    let setup = &config["services"][OPENSEARCH_SETUP];
    let env = &setup["environment"];
    let expected = [
        ("ES_SERVER", "https://search-sample-abc123.us-east-1.es.amazonaws.com"),
        ("ES_VISIBILITY_INDEX", "temporal_visibility_v1_dev"),
        ("AWS_CREDENTIALS", "aws-sdk-default"),
        ("AWS_REGION", "us-east-1"),
        ("HOME", "/home/temporal"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    for (name, value) in expected {
        assert_eq!(env[name].as_str(), Some(value), "{OPENSEARCH_SETUP}: {name} in {env}");
    }
    let history = &config["services"]["temporal-history"];
    for name in ["AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"] {
        // Passed through from where compose runs: declared without a value, like the Temporal services'.
        assert_eq!(env.get(name), history["environment"].get(name), "{OPENSEARCH_SETUP}: {name}");
    }
    assert_eq!(
        setup["volumes"],
        history["volumes"].as_array().map_or(serde_json::Value::Null, |v| {
            serde_json::Value::Array(
                v.iter().filter(|m| m["target"] == "/home/temporal/.aws").cloned().collect(),
            )
        })
    );
    let command: Vec<&str> =
        setup["command"].as_array().expect("a command").iter().filter_map(|c| c.as_str()).collect();
    assert_eq!(
        command,
        ["temporal-elasticsearch-tool setup-schema && temporal-elasticsearch-tool create-index"],
        "{OPENSEARCH_SETUP}"
    );
}

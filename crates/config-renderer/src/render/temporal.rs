//! `temporal/config.yaml` and `temporal/dynamicconfig.yaml`, each from a template shaped like the
//! file it renders (`templates/temporal/`), filled from typed inputs built out of [`Config`].
//!
//! The templates run on minijinja with their own delimiters (`[[ value ]]`, `[% block %]`,
//! `[# comment #]`), so the Go template expressions the Temporal server evaluates at startup
//! (`{{ env "BIND_ON_IP" }}`) are plain text to the renderer and reach the output unchanged. Every
//! `[[ value ]]` goes through [`scalar`]: strings become escaped double-quoted YAML scalars that Go's
//! template engine leaves alone, numbers and booleans are written bare; anything else is an error,
//! as is a variable the inputs do not define.

use std::sync::LazyLock;

use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Serde, Value, ValueKind};
use minijinja::{Environment, Error, ErrorKind, Output, State, UndefinedBehavior};
use serde::Serialize;

use super::{CONTAINER_CONFIG_DIR, CONTAINER_LOCAL_CA, FRONTEND_SERVICE, GATEWAY_SERVICE, yaml_str};
use crate::error::{ConfigError, Problem};
use crate::model::{Config, Ports, VisibilityBackend};

/// Dynamic-config keys this renderer may emit. Each is registered in Temporal 1.29's
/// `common/dynamicconfig` (unregistered keys are ignored with a warning, like the fork sample's
/// `persistence.enableDSQLMode`); the fork adds no DSQL key of its own. Rendering refuses a
/// top-level key of the dynamic-config template that is not in this list.
pub const REGISTERED_DYNAMIC_CONFIG_KEYS: &[&str] = &[
    "frontend.persistenceMaxQPS",
    "history.persistenceMaxQPS",
    "matching.persistenceMaxQPS",
    "matching.numTaskqueueReadPartitions",
    "matching.numTaskqueueWritePartitions",
    "system.enableActivityEagerExecution",
    "limit.maxIDLength",
];

/// The server config's template, relative to the repository root (named in errors).
pub const SERVER_CONFIG_TEMPLATE: &str = "crates/config-renderer/templates/temporal/config.yaml";
/// The dynamic config's template, relative to the repository root (named in errors).
pub const DYNAMIC_CONFIG_TEMPLATE: &str = "crates/config-renderer/templates/temporal/dynamicconfig.yaml";

/// Inputs of `templates/temporal/config.yaml`.
#[derive(Debug, Serialize)]
struct ServerConfig<'a> {
    header: &'a str,
    log_level: &'a str,
    history_shards: u32,
    sql: SqlStore<'a>,
    visibility: VisibilityStore<'a>,
    metrics_address: String,
    ports: &'a Ports,
    frontend_address: String,
    frontend_http_address: String,
    dynamic_config_path: String,
}

/// The `dsql-default` datastore.
#[derive(Debug, Serialize)]
struct SqlStore<'a> {
    database: &'a str,
    connect_addr: String,
    user: &'a str,
    max_conns: u32,
    max_idle_conns: u32,
    max_conn_lifetime: &'a str,
    tls: SqlTls,
    /// Set with [`SqlTls::LocalCa`] only.
    ca_file: Option<&'static str>,
    /// Set with [`SqlTls::LocalCa`] only.
    server_name: Option<&'static str>,
}

/// How the plugin secures its connections; the template has one branch per variant.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "snake_case")]
enum SqlTls {
    /// Through the dsql-local gateway: verified against the local CA, like the dsql profile.
    LocalCa,
    /// Aurora DSQL: verified against the system roots.
    Verify,
    /// Straight to the local PostgreSQL: `sslmode=disable`, explicitly (without `tls` or
    /// `connectAttributes.sslmode` the plugin's DSN says the same, but silently).
    Off,
}

/// The `es-visibility` datastore: the Elasticsearch container, or an OpenSearch domain.
#[derive(Debug, Serialize)]
struct VisibilityStore<'a> {
    backend: VisibilityBackend,
    /// `host:port` of the container, or the domain's host.
    host: String,
    index: &'a str,
    /// Elasticsearch only (OpenSearch: `v7` over `https`, fixed in the template).
    version: Option<&'a str>,
    /// Elasticsearch only.
    scheme: Option<&'a str>,
    /// OpenSearch only: the region requests are signed for.
    region: Option<&'a str>,
}

/// Inputs of `templates/temporal/dynamicconfig.yaml`.
#[derive(Debug, Serialize)]
struct DynamicConfig<'a> {
    header: &'a str,
    persistence_max_qps: u32,
    task_queue_partitions: u32,
}

const SERVER_CONFIG: &str = "temporal/config.yaml";
const DYNAMIC_CONFIG: &str = "temporal/dynamicconfig.yaml";

/// The templates, parsed once per process (`config render` renders each file once; the bench and
/// the tests many times).
static TEMPLATES: LazyLock<Result<Environment<'static>, (&'static str, String)>> = LazyLock::new(|| {
    let mut env = Environment::empty();
    // Distinct from Go's `{{ }}` and from anything else a YAML file of ours contains.
    let syntax = SyntaxConfig::builder()
        .variable_delimiters("[[", "]]")
        .block_delimiters("[%", "%]")
        .comment_delimiters("[#", "#]")
        .trim_blocks(true)
        .lstrip_blocks(true)
        .keep_trailing_newline(true)
        .build()
        .map_err(|e| (SERVER_CONFIG_TEMPLATE, e.to_string()))?;
    env.set_syntax(syntax);
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_formatter(scalar);
    env.add_filter("comment", comment);
    for (name, path, source) in [
        (SERVER_CONFIG, SERVER_CONFIG_TEMPLATE, include_str!("../../templates/temporal/config.yaml")),
        (
            DYNAMIC_CONFIG,
            DYNAMIC_CONFIG_TEMPLATE,
            include_str!("../../templates/temporal/dynamicconfig.yaml"),
        ),
    ] {
        env.add_template(name, source).map_err(|e| (path, describe(&e)))?;
    }
    Ok(env)
});

fn render(name: &'static str, path: &'static str, inputs: &impl Serialize) -> Result<String, ConfigError> {
    let failed = |message: String| ConfigError::Template { path, message };
    let env = TEMPLATES
        .as_ref()
        .map_err(|(path, message)| ConfigError::Template { path, message: message.clone() })?;
    let template = env.get_template(name).map_err(|e| failed(describe(&e)))?;
    template.render(Serde(inputs)).map_err(|e| failed(describe(&e)))
}

/// A minijinja error with its line, without the debug dump of the template's state.
fn describe(error: &Error) -> String {
    let what = error.detail().map_or_else(|| error.kind().to_string(), str::to_owned);
    match error.line() {
        Some(line) => format!("line {line}: {what}"),
        None => what,
    }
}

/// Writes one `[[ value ]]` as a YAML scalar. Strings are quoted and escaped by [`yaml_str`], with
/// every `{` written as `\x7b` so a value can never open a Go template action (`{{`) that the
/// server would evaluate; safe strings (the [`comment`] filter's) are written as they are.
fn scalar(out: &mut Output<'_>, _state: &mut State<'_, '_>, value: &Value) -> Result<(), Error> {
    let text = match value.kind() {
        ValueKind::String if value.is_safe() => value.to_string(),
        ValueKind::String => yaml_str(value.as_str().unwrap_or_default()).replace('{', "\\x7b"),
        ValueKind::Number | ValueKind::Bool => value.to_string(),
        kind => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("`[[ ]]` writes strings, numbers and booleans, not {kind}"),
            ));
        }
    };
    out.write_str(&text).map_err(|e| Error::new(ErrorKind::WriteFailure, e.to_string()))
}

/// `[[ text | comment ]]`: every line of `text` as a YAML comment line.
fn comment(text: &str) -> Value {
    Value::from_safe_string(text.lines().map(|l| format!("# {l}")).collect::<Vec<_>>().join("\n"))
}

pub(super) fn server_config(c: &Config, endpoint: &str, header: &str) -> Result<String, ConfigError> {
    let d = &c.dsql;
    let p = &c.temporal.ports;
    let es = &c.elasticsearch;
    let tls = if c.uses_gateway() {
        SqlTls::LocalCa
    } else if c.tls() {
        SqlTls::Verify
    } else {
        SqlTls::Off
    };
    let local_ca = matches!(tls, SqlTls::LocalCa);
    let visibility = if c.uses_opensearch() {
        let os = &c.opensearch;
        let host = os.host().ok_or_else(|| {
            ConfigError::Invalid(vec![Problem::error(
                "opensearch.endpoint",
                format!("`{}` is not an OpenSearch endpoint: expected https://<domain host>", os.endpoint),
            )])
        })?;
        VisibilityStore {
            backend: VisibilityBackend::Opensearch,
            host: host.to_owned(),
            index: &os.index,
            version: None,
            scheme: None,
            region: Some(c.opensearch_region()),
        }
    } else {
        VisibilityStore {
            backend: VisibilityBackend::Elasticsearch,
            host: format!("{}:{}", es.host, es.port),
            index: &es.index,
            version: Some(&es.version),
            scheme: Some(&es.scheme),
            region: None,
        }
    };
    let inputs = ServerConfig {
        header,
        log_level: &c.temporal.log_level,
        history_shards: c.temporal.history_shards,
        sql: SqlStore {
            database: &d.database,
            connect_addr: format!("{endpoint}:{}", d.port),
            user: &d.user,
            max_conns: d.max_conns,
            max_idle_conns: d.max_idle_conns,
            max_conn_lifetime: d.max_conn_lifetime.as_str(),
            tls,
            // The fork's `caFile` becomes the DSN's `sslrootcert`.
            ca_file: local_ca.then_some(CONTAINER_LOCAL_CA),
            server_name: local_ca.then_some(GATEWAY_SERVICE),
        },
        visibility,
        metrics_address: format!("0.0.0.0:{}", p.metrics),
        ports: p,
        frontend_address: format!("{FRONTEND_SERVICE}:{}", p.frontend_grpc),
        frontend_http_address: format!("{FRONTEND_SERVICE}:{}", p.frontend_http),
        dynamic_config_path: format!("{CONTAINER_CONFIG_DIR}/dynamicconfig.yaml"),
    };
    render(SERVER_CONFIG, SERVER_CONFIG_TEMPLATE, &inputs)
}

pub(super) fn dynamic_config(c: &Config, header: &str) -> Result<String, ConfigError> {
    let inputs = DynamicConfig {
        header,
        persistence_max_qps: c.temporal.persistence_max_qps,
        task_queue_partitions: c.temporal.task_queue_partitions,
    };
    let text = render(DYNAMIC_CONFIG, DYNAMIC_CONFIG_TEMPLATE, &inputs)?;
    check_registered(&text)?;
    Ok(text)
}

/// Refuses a dynamic-config key that is not in [`REGISTERED_DYNAMIC_CONFIG_KEYS`].
fn check_registered(dynamic_config: &str) -> Result<(), ConfigError> {
    match top_level_keys(dynamic_config).find(|key| !REGISTERED_DYNAMIC_CONFIG_KEYS.contains(key)) {
        Some(key) => Err(ConfigError::Template {
            path: DYNAMIC_CONFIG_TEMPLATE,
            message: format!(
                "`{key}` is not in REGISTERED_DYNAMIC_CONFIG_KEYS (Temporal ignores keys it does not \
                 register): check the name against Temporal's common/dynamicconfig and add it there"
            ),
        }),
        None => Ok(()),
    }
}

/// The keys of a block mapping at the top level of `yaml` (lines that start with neither a space,
/// a `#` nor a `-`).
fn top_level_keys(yaml: &str) -> impl Iterator<Item = &str> {
    yaml.lines()
        .filter(|l| !l.is_empty() && !l.starts_with([' ', '#', '-']))
        .map(|l| l.split_once(':').map_or(l, |(key, _)| key).trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_level_keys_skip_comments_and_nested_lines() {
        let yaml = "# a: comment\nfirst.key:\n  - value: 1\n    constraints: {}\n\nsecond:\n";
        assert_eq!(top_level_keys(yaml).collect::<Vec<_>>(), ["first.key", "second"]);
    }

    #[test]
    fn an_unregistered_dynamic_config_key_is_refused() {
        assert!(check_registered("limit.maxIDLength:\n  - value: 255\n").is_ok());
        let err = check_registered("# c\nlimit.maxIDLength:\n  - value: 1\npersistence.enableDSQLMode:\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`persistence.enableDSQLMode` is not in REGISTERED_DYNAMIC_CONFIG_KEYS"),
            "{err}"
        );
        assert!(err.starts_with(DYNAMIC_CONFIG_TEMPLATE), "{err}");
    }

    #[test]
    fn an_undefined_variable_is_an_error_naming_the_template_and_line() {
        let err = render(DYNAMIC_CONFIG, DYNAMIC_CONFIG_TEMPLATE, &serde_json::json!({ "header": "h" }))
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains(DYNAMIC_CONFIG_TEMPLATE) && text.contains("line "), "{text}");
        assert!(text.contains("undefined"), "{text}");
    }

    #[test]
    fn a_map_is_not_a_scalar() {
        let err = render(
            DYNAMIC_CONFIG,
            DYNAMIC_CONFIG_TEMPLATE,
            &serde_json::json!({
                "header": "h", "persistence_max_qps": { "a": 1 }, "task_queue_partitions": 4
            }),
        )
        .unwrap_err();
        assert!(err.to_string().contains("not map"), "{err}");
    }
}

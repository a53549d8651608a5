//! The Temporal server config rendered from its template: in every profile it parses, once the Go
//! template expressions are replaced as the server does, into the shape Temporal reads; and user
//! strings, however odd, come back as they were written without opening a Go template action.

mod common;

use std::collections::BTreeMap;

use serde::Deserialize;
use tdsql_config_renderer::Config;
use tdsql_config_renderer::render::{self, Rendered};

/// The two Go template expressions the template carries, and what the server puts in their place.
const GO_EXPRESSIONS: [(&str, &str); 2] =
    [("{{ env \"TEMPORAL_BROADCAST_ADDRESS\" }}", "172.18.0.7"), ("{{ env \"BIND_ON_IP\" }}", "0.0.0.0")];

fn config(profile: &str, user: &str) -> Config {
    common::load(profile, user)
}

fn server_config(config: &Config, profile: &str) -> String {
    let files = render::render_all(config, profile).unwrap();
    let found: Vec<&Rendered> = files.iter().filter(|f| f.path == render::TEMPORAL_CONFIG).collect();
    assert_eq!(found.len(), 1);
    found[0].contents.clone()
}

/// What the server's template engine does to the file: the `env` lookups replaced. Fails when any
/// other `{{` is left, since the server would evaluate it.
fn as_the_server_reads_it(text: &str) -> String {
    let templated = GO_EXPRESSIONS.iter().fold(text.to_owned(), |t, (expr, value)| t.replace(expr, value));
    assert!(!templated.contains("{{"), "a Go template action other than the env lookups:\n{text}");
    templated
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServerConfigFile {
    log: Log,
    persistence: Persistence,
    global: Global,
    services: BTreeMap<String, Service>,
}

#[derive(Debug, Deserialize)]
struct Log {
    level: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Persistence {
    default_store: String,
    visibility_store: String,
    num_history_shards: u32,
    datastores: Datastores,
}

#[derive(Debug, Deserialize)]
struct Datastores {
    #[serde(rename = "dsql-default")]
    dsql_default: SqlDatastore,
    #[serde(rename = "es-visibility")]
    es_visibility: EsDatastore,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlDatastore {
    sql: Sql,
}

/// Every key the template may write under `sql:` (the fork's `config.SQL`); an unknown one fails.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Sql {
    plugin_name: String,
    database_name: String,
    connect_addr: String,
    connect_protocol: String,
    user: String,
    max_conns: u32,
    max_idle_conns: u32,
    max_conn_lifetime: String,
    tls: Option<Tls>,
    connect_attributes: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Tls {
    enabled: bool,
    enable_host_verification: bool,
    ca_file: Option<String>,
    server_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EsDatastore {
    elasticsearch: Elasticsearch,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Elasticsearch {
    version: String,
    url: EsUrl,
    indices: BTreeMap<String, String>,
    /// Temporal's `client.ESAWSRequestSigningConfig` (`yaml:"aws-request-signing"`).
    #[serde(rename = "aws-request-signing")]
    aws_request_signing: Option<AwsRequestSigning>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AwsRequestSigning {
    enabled: bool,
    region: String,
    credential_provider: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EsUrl {
    scheme: String,
    host: String,
}

#[derive(Debug, Deserialize)]
struct Global {
    membership: Membership,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Membership {
    broadcast_address: String,
}

#[derive(Debug, Deserialize)]
struct Service {
    rpc: Rpc,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Rpc {
    grpc_port: u16,
    membership_port: u16,
    http_port: Option<u16>,
    #[serde(rename = "bindOnIP")]
    bind_on_ip: String,
}

fn parse(text: &str) -> ServerConfigFile {
    serde_norway::from_str(&as_the_server_reads_it(text)).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

const DSQL_USER: &str =
    "[project]\nregion = \"us-east-1\"\n[dsql]\nidentifier = \"abcdefghijklmnopqrstuvwxyz\"\n";
/// The dsql profile with visibility on an OpenSearch domain in another region than the cluster.
const DSQL_OPENSEARCH_USER: &str = "[project]\nregion = \"us-east-1\"\n[dsql]\nidentifier = \"abcdefghijklmnopqrstuvwxyz\"\n\
     [visibility]\nbackend = \"opensearch\"\n[opensearch]\nendpoint = \"https://search-t-abc.eu-west-1.es.amazonaws.com/\"\n\
     region = \"eu-west-1\"\n";

#[test]
fn the_server_config_has_temporals_shape_in_every_profile() {
    let cases = [
        ("local", "local", ""),
        ("dsql", "dsql", DSQL_USER),
        ("local-no-gateway", "local", "[local.gateway]\nenabled = false\n"),
        ("dsql-opensearch", "dsql", DSQL_OPENSEARCH_USER),
    ];
    for (case, profile, user) in cases {
        let text = server_config(&config(profile, user), profile);
        assert_eq!(
            text.lines().next(),
            Some("# enable-template"),
            "{case}: Temporal templates the file only then"
        );
        for (expr, _) in GO_EXPRESSIONS {
            assert!(text.contains(&format!("'{expr}'")), "{case}: {expr} is not verbatim");
        }
        let y = parse(&text);
        let p = &y.persistence;
        assert_eq!(
            (p.default_store.as_str(), p.visibility_store.as_str()),
            ("dsql-default", "es-visibility")
        );
        assert_eq!(p.num_history_shards, 4);
        let sql = &p.datastores.dsql_default.sql;
        assert_eq!(sql.plugin_name, "dsql", "{case}");
        assert_eq!((sql.database_name.as_str(), sql.user.as_str()), ("postgres", "admin"), "{case}");
        assert_eq!(sql.connect_protocol, "tcp");
        assert_eq!(sql.max_conns, sql.max_idle_conns, "{case}");
        assert_eq!(sql.max_conn_lifetime, "55m");
        // Exactly one of the three TLS forms (both at once give the DSN a duplicate sslmode).
        match case {
            "local" => {
                assert_eq!(sql.connect_addr, "dsql-local:5432");
                let tls = sql.tls.as_ref().expect("local: tls");
                assert!(tls.enabled && tls.enable_host_verification);
                assert_eq!(tls.ca_file.as_deref(), Some(render::CONTAINER_LOCAL_CA));
                assert_eq!(tls.server_name.as_deref(), Some(render::GATEWAY_SERVICE));
                assert!(sql.connect_attributes.is_none());
            }
            "dsql" | "dsql-opensearch" => {
                assert_eq!(sql.connect_addr, "abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws:5432");
                let tls = sql.tls.as_ref().expect("dsql: tls");
                assert!(tls.enabled && tls.enable_host_verification);
                assert_eq!((tls.ca_file.as_deref(), tls.server_name.as_deref()), (None, None));
                assert!(sql.connect_attributes.is_none());
            }
            _ => {
                assert_eq!(sql.connect_addr, "postgresql:5432");
                assert!(sql.tls.is_none());
                let attributes = sql.connect_attributes.as_ref().expect("no gateway: connectAttributes");
                assert_eq!(attributes.get("sslmode").map(String::as_str), Some("disable"));
                assert_eq!(attributes.len(), 1);
            }
        }
        let es = &p.datastores.es_visibility.elasticsearch;
        assert_eq!(es.indices.get("visibility").map(String::as_str), Some("temporal_visibility_v1_dev"));
        if case == "dsql-opensearch" {
            // The domain over HTTPS, every request SigV4-signed for its region (not the cluster's).
            assert_eq!((es.version.as_str(), es.url.scheme.as_str()), ("v7", "https"));
            assert_eq!(es.url.host, "search-t-abc.eu-west-1.es.amazonaws.com");
            let signing = es.aws_request_signing.as_ref().expect("opensearch: aws-request-signing");
            assert!(signing.enabled);
            assert_eq!(signing.region, "eu-west-1");
            assert_eq!(signing.credential_provider, "aws-sdk-default");
        } else {
            assert_eq!((es.version.as_str(), es.url.scheme.as_str()), ("v8", "http"));
            assert_eq!(es.url.host, "elasticsearch:9200");
            assert!(es.aws_request_signing.is_none(), "{case}: the local container takes no signed requests");
        }
        assert_eq!(y.global.membership.broadcast_address, "172.18.0.7");
        assert_eq!(
            y.services.keys().map(String::as_str).collect::<Vec<_>>(),
            ["frontend", "history", "matching", "worker"]
        );
        for (name, service) in &y.services {
            assert_eq!(service.rpc.bind_on_ip, "0.0.0.0", "{case}: {name}");
            assert_eq!(service.rpc.http_port.is_some(), name == "frontend", "{case}: {name}");
        }
        assert_eq!(y.services["frontend"].rpc.grpc_port, 7233);
        assert_eq!(y.services["worker"].rpc.membership_port, 6939);
        assert_eq!(y.log.level, "info");
    }
}

/// Strings YAML or Go's template engine would misread if written raw: quotes, a colon and a
/// comment mark, Go template actions, backslashes, control characters, and Unicode that YAML
/// treats as line breaks or does not allow unescaped.
const AWKWARD: &[&str] = &[
    "say \"hi\": # not a comment",
    "{{ env \"HOME\" }}",
    "{{{ .Values }}}",
    "'single' and \\back\\slashes\\",
    "line one\nline two\ttabbed\r",
    "bell\u{7} nel\u{85} ls\u{2028} ps\u{2029} bom\u{feff} end",
    "  leading and trailing spaces  ",
    "- [not, a, list]: {nor: a map}",
    "",
];

#[test]
fn user_strings_come_back_unchanged_and_never_reach_go_templating() {
    let plain_lines = server_config(&config("local", ""), "local").lines().count();
    for &awkward in AWKWARD {
        let mut c = config("local", "");
        c.dsql.database = awkward.to_owned();
        c.dsql.user = format!("user {awkward}");
        c.temporal.log_level = format!("level {awkward}");
        c.elasticsearch.version = format!("version {awkward}");
        c.elasticsearch.index = format!("index {awkward}");
        c.elasticsearch.host = format!("host {awkward}");
        let text = server_config(&c, "local");
        let y = parse(&text);
        let sql = &y.persistence.datastores.dsql_default.sql;
        assert_eq!(sql.database_name, awkward);
        assert_eq!(sql.user, format!("user {awkward}"));
        assert_eq!(y.log.level, format!("level {awkward}"));
        let es = &y.persistence.datastores.es_visibility.elasticsearch;
        assert_eq!(es.version, format!("version {awkward}"));
        assert_eq!(es.indices["visibility"], format!("index {awkward}"));
        assert_eq!(es.url.host, format!("host {awkward}:9200"));
        // Still one line per key: nothing a value holds starts a new line or a comment.
        assert_eq!(text.lines().count(), plain_lines, "{awkward:?}");
    }
}

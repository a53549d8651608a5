//! A gateway in front of a fresh database of the harness's PostgreSQL, and clients that connect to
//! it the way DSQL clients do: TLS verified against the local CA, an IAM token from aws-sdk-dsql.

#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tdsql_dsql_local::auth::KeyPair;
use tdsql_dsql_local::limits::ConnectionLimits;
use tdsql_dsql_local::{Gateway, GatewayConfig, GatewayHandle, TxnLimits, UpstreamConfig, certs};

pub const ACCESS_KEY_ID: &str = "AKIDDSQLLOCALTEST";
pub const SECRET: &str = "dsql-local-test-secret-0123456789abcdef";
pub const REGION: &str = "us-east-1";
pub const HOST: &str = "localhost";

/// A running gateway and what clients need to reach it.
pub struct TestGateway {
    pub handle: GatewayHandle,
    pub ca: PathBuf,
    /// The upstream database, for checks behind the gateway's back.
    pub upstream: tokio_postgres::Config,
    pub tls: rustls::ClientConfig,
    /// The gateway's settings, for another gateway in front of the same database.
    pub url: String,
    pub pki: certs::PkiPaths,
    pub names: Vec<String>,
}

fn pki_dir(label: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "dsql-local-{label}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Starts a gateway with `limits` and `txn` in front of a fresh database.
pub async fn gateway_with(label: &str, limits: ConnectionLimits, txn: TxnLimits) -> TestGateway {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let upstream = tdsql_test_support::fresh_database(label).await;
    let url = format!(
        "postgres://{}:{}@{}:{}/{}",
        upstream.get_user().unwrap_or("postgres"),
        String::from_utf8_lossy(upstream.get_password().unwrap_or_default()),
        match &upstream.get_hosts()[0] {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            #[allow(unreachable_patterns)]
            _ => "127.0.0.1".to_owned(),
        },
        upstream.get_ports()[0],
        upstream.get_dbname().unwrap()
    );
    let dir = pki_dir(label);
    let names = vec![HOST.to_owned(), "127.0.0.1".to_owned()];
    let (paths, _) = certs::ensure_pki(&dir, &names).expect("the test PKI");
    let tls = certs::server_tls_config(&paths).expect("server TLS config");
    let config = GatewayConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        upstream: UpstreamConfig::from_url(&url).expect("upstream URL"),
        region: REGION.to_owned(),
        hosts: names.clone(),
        keys: KeyPair::new(ACCESS_KEY_ID, SECRET),
        tls,
        limits,
        txn,
    };
    let gateway = Gateway::bind(config).await.expect("the gateway starts");
    let client_tls = certs::client_tls_config(&paths.ca_cert).expect("client TLS config");
    TestGateway {
        handle: gateway.spawn(),
        ca: paths.ca_cert.clone(),
        upstream,
        tls: client_tls,
        url,
        pki: paths,
        names,
    }
}

/// A gateway with DSQL's limits.
pub async fn gateway(label: &str) -> TestGateway {
    gateway_with(label, ConnectionLimits::default(), TxnLimits::default()).await
}

/// A token made by aws-sdk-dsql's own generator with the test key pair.
pub async fn sdk_token(
    host: &str,
    region: &'static str,
    admin: bool,
    secret: &str,
    expires_in: u64,
) -> String {
    let credentials = aws_credential_types::Credentials::from_keys(ACCESS_KEY_ID, secret, None);
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region))
        .credentials_provider(credentials)
        .load()
        .await;
    let config = aws_sdk_dsql::auth_token::Config::builder()
        .hostname(host)
        .region(aws_config::Region::new(region))
        .expires_in(expires_in)
        .build()
        .expect("token config");
    let generator = aws_sdk_dsql::auth_token::AuthTokenGenerator::new(config);
    let token = if admin {
        generator.db_connect_admin_auth_token(&sdk).await
    } else {
        generator.db_connect_auth_token(&sdk).await
    };
    token.expect("the SDK signs locally").to_string()
}

impl TestGateway {
    /// Another gateway with DSQL's limits in front of the same database, as after a restart.
    ///
    /// # Errors
    /// The second gateway could not prepare the database.
    pub async fn another(&self) -> Result<TestGateway, tdsql_dsql_local::GatewayError> {
        self.another_with(&self.url).await
    }

    /// Another gateway with DSQL's limits in front of the same database, reached by `url`.
    ///
    /// # Errors
    /// The second gateway could not reach or prepare the database.
    pub async fn another_with(&self, url: &str) -> Result<TestGateway, tdsql_dsql_local::GatewayError> {
        let config = GatewayConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            upstream: UpstreamConfig::from_url(url)?,
            region: REGION.to_owned(),
            hosts: self.names.clone(),
            keys: KeyPair::new(ACCESS_KEY_ID, SECRET),
            tls: certs::server_tls_config(&self.pki).expect("server TLS config"),
            limits: ConnectionLimits::default(),
            txn: TxnLimits::default(),
        };
        let gateway = Gateway::bind(config).await?;
        Ok(TestGateway {
            handle: gateway.spawn(),
            ca: self.ca.clone(),
            upstream: self.upstream.clone(),
            tls: self.tls.clone(),
            url: url.to_owned(),
            pki: self.pki.clone(),
            names: self.names.clone(),
        })
    }

    pub fn port(&self) -> u16 {
        self.handle.addr.port()
    }

    /// Client settings as a DSQL client has them, with `password`.
    pub fn config(&self, user: &str, password: &str) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host(HOST)
            .port(self.port())
            .user(user)
            .dbname("postgres")
            .password(password)
            .ssl_mode(tokio_postgres::config::SslMode::Require)
            .connect_timeout(Duration::from_secs(10));
        config
    }

    /// Connects as `admin` with a fresh SDK token; panics with the reason on failure.
    pub async fn connect(&self) -> tokio_postgres::Client {
        let token = sdk_token(HOST, REGION, true, SECRET, 900).await;
        self.try_connect(self.config("admin", &token))
            .await
            .unwrap_or_else(|e| panic!("connecting through the gateway failed: {}", describe(&e)))
    }

    /// Connects with `config`.
    pub async fn try_connect(
        &self,
        config: tokio_postgres::Config,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let tls = tokio_postgres_rustls::MakeRustlsConnect::new(self.tls.clone());
        let (client, connection) = config.connect(tls).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// A plain connection to the upstream database (behind the gateway's back).
    pub async fn upstream(&self) -> tokio_postgres::Client {
        tdsql_test_support::connect(&self.upstream).await
    }
}

/// SQLSTATE, message and hint of an error, or its text.
pub fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!(
            "{} {}{}",
            db.code().code(),
            db.message(),
            db.hint().map(|h| format!(" (HINT: {h})")).unwrap_or_default()
        ),
        None => format!("{error:?}"),
    }
}

/// The SQLSTATE and message of a database error; panics on success or another error.
pub fn db_error<T: std::fmt::Debug>(result: Result<T, tokio_postgres::Error>) -> (String, String) {
    let error = result.expect_err("the statement must fail");
    let db = error.as_db_error().unwrap_or_else(|| panic!("not a database error: {error:?}"));
    (db.code().code().to_owned(), db.message().to_owned())
}

pub fn arc<T>(value: T) -> Arc<T> {
    Arc::new(value)
}

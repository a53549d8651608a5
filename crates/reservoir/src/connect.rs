//! Opening connections: the [`Connector`] trait between the reservoir's policy and the wire, and
//! [`PgConnector`], the real one (tokio-postgres over rustls, password from a [`TokenProvider`]).
//!
//! ```no_run
//! # async fn demo(sdk: aws_config::SdkConfig) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use tdsql_reservoir::{ConnectConfig, IamTokenConfig, IamTokenProvider, Metrics, PgConnector};
//!
//! let endpoint = "abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws";
//! let tokens = IamTokenProvider::new(&sdk, IamTokenConfig::new(endpoint, "admin"), Metrics::new())?;
//! let connector = PgConnector::new(ConnectConfig::dsql(endpoint), Arc::new(tokens))?;
//! let connection = connector.connect().await?; // TLS verify-full, SNI = endpoint
//! connection.client().simple_query("SELECT 1").await?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::future::Future;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_postgres::config::SslMode;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::metrics::RefillFailure;
use crate::token::{TokenError, TokenProvider};

/// Opens one physical connection; the reservoir's only view of the wire.
pub trait Connector: Send + Sync + 'static {
    /// An open connection.
    type Connection: Send + 'static;
    /// Why a connection could not be opened.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Opens a new connection.
    fn connect(&self) -> impl Future<Output = Result<Self::Connection, Self::Error>> + Send;

    /// Whether a connection is known to be unusable (closed by the server, failed); checked at
    /// checkout and return, so it must be cheap and must not do I/O.
    fn is_broken(&self, connection: &Self::Connection) -> bool {
        let _ = connection;
        false
    }

    /// The `reason` label for a failed connect.
    fn failure_reason(&self, error: &Self::Error) -> RefillFailure {
        let _ = error;
        RefillFailure::ConnectionOpen
    }
}

/// How to secure the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Tls {
    /// TLS with the certificate verified against the webpki (Mozilla) roots and the host name
    /// checked; the host is sent as SNI. Required by DSQL.
    VerifyFull,
    /// Plain TCP, for a local PostgreSQL only.
    Disabled,
}

/// Where and as whom to connect.
#[derive(Debug, Clone)]
pub struct ConnectConfig {
    /// Host name (DSQL: the cluster endpoint, also the SNI and the token's host).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Database role.
    pub user: String,
    /// Database name (always `postgres` on DSQL).
    pub database: String,
    /// TLS or not.
    pub tls: Tls,
    /// Limit for the whole connect: TCP, TLS and authentication.
    pub connect_timeout: Duration,
    /// `application_name` reported to the server.
    pub application_name: Option<String>,
    /// With [`Tls::VerifyFull`]: trust only the CA certificates in this PEM file instead of the
    /// webpki roots (dsql-local's local CA); verification and SNI are unchanged.
    pub ca_file: Option<std::path::PathBuf>,
}

impl ConnectConfig {
    /// DSQL defaults: port 5432, user `admin`, database `postgres`, TLS verify-full, 10 s timeout.
    #[must_use]
    pub fn dsql(endpoint: impl Into<String>) -> Self {
        Self {
            host: endpoint.into(),
            port: 5432,
            user: "admin".to_owned(),
            database: "postgres".to_owned(),
            tls: Tls::VerifyFull,
            connect_timeout: Duration::from_secs(10),
            application_name: Some("tdsql-reservoir".to_owned()),
            ca_file: None,
        }
    }

    /// A local PostgreSQL without TLS.
    #[must_use]
    pub fn local(
        host: impl Into<String>,
        port: u16,
        user: impl Into<String>,
        database: impl Into<String>,
    ) -> Self {
        Self {
            host: host.into(),
            port,
            user: user.into(),
            database: database.into(),
            tls: Tls::Disabled,
            connect_timeout: Duration::from_secs(10),
            application_name: Some("tdsql-reservoir".to_owned()),
            ca_file: None,
        }
    }
}

/// Why a connection could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// No password could be produced.
    #[error("getting a password for {host} failed")]
    Token {
        /// The server.
        host: String,
        /// The provider's error.
        #[source]
        source: TokenError,
    },
    /// The TLS client could not be set up.
    #[error("setting up TLS failed")]
    TlsSetup(#[source] rustls::Error),
    /// The CA file given as `ca_file` could not be read or holds no usable certificate.
    #[error("cannot use {} as the CA to trust: {reason}", path.display())]
    CaFile {
        /// The file.
        path: std::path::PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// DSQL refused an IAM token that had expired (`HINT: Signature expired`).
    #[error(
        "{host} refused the IAM token of {user} as expired (signature expired): check this machine's \
         clock (skew beyond the token lifetime makes every token expired) and dsql.token_duration"
    )]
    TokenExpired {
        /// The server.
        host: String,
        /// The role.
        user: String,
    },
    /// DSQL denied access without saying the token expired: the AWS identity lacks the IAM
    /// action for this role ([`iam_action`]), the role is not mapped to it, or the token was
    /// signed for another region (or host) than the cluster's. DSQL does not tell these apart.
    #[error(
        "{host} denied access to {user}: {message}; the token was not expired (DSQL says `Signature \
         expired` for that), so either the AWS identity lacks IAM action {action} on this cluster{grant}, \
         or the token was signed for another region than the cluster's; retrying will not help",
        action = iam_action(.user),
        grant = role_mapping_hint(.user)
    )]
    AccessDenied {
        /// The server.
        host: String,
        /// The role.
        user: String,
        /// The server's message (and hint, if any).
        message: String,
    },
    /// PostgreSQL's own authentication failed (SQLSTATE 28P01 or 28000 without DSQL's `access
    /// denied`): a wrong password, or a role or `pg_hba.conf` rule that does not allow it.
    #[error(
        "{host} rejected the login of {user}: {message}; check the password (PGPASSWORD, or the one in \
         the connection URL) and that role {user} may log in; retrying will not help"
    )]
    PasswordRejected {
        /// The server.
        host: String,
        /// The role.
        user: String,
        /// The server's message (and SQLSTATE).
        message: String,
    },
    /// The cluster is at its connection limit (SQLSTATE 53300).
    #[error("{host} is at its connection limit (53300): close connections or raise the quota")]
    TooManyConnections {
        /// The server.
        host: String,
    },
    /// The cluster's connection-rate limit was exceeded (SQLSTATE 53400).
    #[error("{host} refused the connection: connection rate exceeded (53400); lower the connect rate")]
    RateExceeded {
        /// The server.
        host: String,
    },
    /// An idle cluster is waking up; retry shortly.
    #[error("{host} is waking up; retry in a moment")]
    WakingUp {
        /// The server.
        host: String,
    },
    /// The connect did not finish in time.
    #[error("connecting to {host}:{port} timed out after {after:?}")]
    Timeout {
        /// The server.
        host: String,
        /// The port.
        port: u16,
        /// The limit.
        after: Duration,
    },
    /// Any other failure (refused, TLS, protocol).
    #[error("connecting to {host}:{port} failed: {reason}")]
    Failed {
        /// The server.
        host: String,
        /// The port.
        port: u16,
        /// What went wrong, with the server's message and SQLSTATE when it sent one.
        reason: String,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
}

impl ConnectError {
    /// Whether trying again later can succeed (false for access denied and setup errors).
    #[must_use]
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::TokenExpired { .. }
                | Self::TooManyConnections { .. }
                | Self::RateExceeded { .. }
                | Self::WakingUp { .. }
                | Self::Timeout { .. }
                | Self::Failed { .. }
        )
    }
}

/// The IAM action a DSQL connection as `user` needs: `dsql:DbConnectAdmin` for the predefined
/// `admin` role, `dsql:DbConnect` for every other role.
#[must_use]
pub fn iam_action(user: &str) -> &'static str {
    if user == "admin" { "dsql:DbConnectAdmin" } else { "dsql:DbConnect" }
}

/// For a role other than `admin`: the mapping from the IAM identity it also needs.
fn role_mapping_hint(user: &str) -> String {
    if user == "admin" {
        String::new()
    } else {
        format!(
            " (and role {user} mapped to that identity: as admin, `AWS IAM GRANT {user} TO '<role arn>'`)"
        )
    }
}

/// What a server's refusal at connect time means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// `access denied` with `HINT: Signature expired`.
    TokenExpired,
    /// `access denied` without that hint: a missing IAM permission or role mapping, or a token
    /// signed for another region.
    AccessDenied,
    /// PostgreSQL's own authentication failure (28P01, 28000): a wrong password.
    PasswordRejected,
    /// SQLSTATE 53300.
    TooManyConnections,
    /// SQLSTATE 53400.
    RateExceeded,
    /// The cluster is waking up.
    WakingUp,
    /// Something else.
    Other,
}

/// Classifies a server's refusal from its SQLSTATE, message and hint (DSQL reports an expired
/// token as `unable to accept connection, access denied` with `HINT: Signature expired`).
#[must_use]
pub fn classify_refusal(code: &str, message: &str, hint: Option<&str>) -> Refusal {
    let message = message.to_ascii_lowercase();
    let hint = hint.unwrap_or_default().to_ascii_lowercase();
    if message.contains("access denied") {
        if hint.contains("signature expired") || message.contains("signature expired") {
            Refusal::TokenExpired
        } else {
            Refusal::AccessDenied
        }
    } else if code == "28P01" || code == "28000" {
        Refusal::PasswordRejected
    } else if code == "53300" || message.contains("too many open connections") {
        Refusal::TooManyConnections
    } else if code == "53400" || message.contains("rate exceeded") {
        Refusal::RateExceeded
    } else if message.contains("waking up") {
        Refusal::WakingUp
    } else {
        Refusal::Other
    }
}

/// An open tokio-postgres connection: the client, and the task that drives its socket (it ends by
/// itself once the client is dropped).
#[derive(Debug)]
pub struct PgConnection {
    client: Client,
    driver: JoinHandle<()>,
}

impl PgConnection {
    /// The client.
    #[must_use]
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The client, mutably (for `transaction()`).
    pub fn client_mut(&mut self) -> &mut Client {
        &mut self.client
    }

    /// The client and the driver task.
    #[must_use]
    pub fn into_parts(self) -> (Client, JoinHandle<()>) {
        (self.client, self.driver)
    }
}

impl Deref for PgConnection {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

/// The real connector: tokio-postgres, rustls (webpki roots, certificate and host verified, SNI =
/// host) or plain TCP, and a password from a [`TokenProvider`] fetched for every connect.
#[derive(Clone)]
pub struct PgConnector {
    config: ConnectConfig,
    tokens: Arc<dyn TokenProvider>,
    tls: Option<MakeRustlsConnect>,
}

impl fmt::Debug for PgConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgConnector")
            .field("config", &self.config)
            .field("tokens", &self.tokens)
            .finish_non_exhaustive()
    }
}

/// A rustls client config on the aws-lc-rs provider (chosen explicitly, so no process-wide default
/// is needed) trusting the webpki roots, which include Amazon Root CA 1, or only the CAs of
/// `ca_file`.
fn rustls_config(ca_file: Option<&std::path::Path>) -> Result<rustls::ClientConfig, ConnectError> {
    let roots = match ca_file {
        None => rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() },
        Some(path) => {
            use rustls::pki_types::CertificateDer;
            use rustls::pki_types::pem::PemObject as _;
            let failed = |reason: String| ConnectError::CaFile { path: path.to_owned(), reason };
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| failed(e.to_string()))? {
                roots.add(cert.map_err(|e| failed(e.to_string()))?).map_err(|e| failed(e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(failed("it holds no certificate".to_owned()));
            }
            roots
        }
    };
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(ConnectError::TlsSetup)?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

impl PgConnector {
    /// A connector for `config`, asking `tokens` for the password of every new connection.
    ///
    /// # Errors
    /// [`ConnectError::TlsSetup`] when the TLS client cannot be built, [`ConnectError::CaFile`]
    /// when `ca_file` is not a usable PEM file.
    pub fn new(config: ConnectConfig, tokens: Arc<dyn TokenProvider>) -> Result<Self, ConnectError> {
        let tls = match config.tls {
            Tls::VerifyFull => Some(MakeRustlsConnect::new(rustls_config(config.ca_file.as_deref())?)),
            Tls::Disabled => None,
        };
        Ok(Self { config, tokens, tls })
    }

    /// The settings.
    #[must_use]
    pub fn config(&self) -> &ConnectConfig {
        &self.config
    }

    /// Opens a connection and spawns its driver task on the current tokio runtime.
    ///
    /// # Errors
    /// A [`ConnectError`] that says whether the token expired, access was denied, a cluster limit
    /// was hit, or the connect failed or timed out.
    pub async fn connect(&self) -> Result<PgConnection, ConnectError> {
        let c = &self.config;
        let password = self
            .tokens
            .password()
            .await
            .map_err(|source| ConnectError::Token { host: c.host.clone(), source })?;
        let mut pg = tokio_postgres::Config::new();
        pg.host(&c.host)
            .port(c.port)
            .user(&c.user)
            .dbname(&c.database)
            .password(password.expose())
            .connect_timeout(c.connect_timeout);
        if let Some(name) = &c.application_name {
            pg.application_name(name);
        }
        let attempt = async {
            match &self.tls {
                Some(tls) => {
                    pg.ssl_mode(SslMode::Require);
                    let (client, connection) = pg.connect(tls.clone()).await?;
                    Ok((client, tokio::spawn(async move { drop(connection.await) })))
                }
                None => {
                    pg.ssl_mode(SslMode::Disable);
                    let (client, connection) = pg.connect(NoTls).await?;
                    Ok((client, tokio::spawn(async move { drop(connection.await) })))
                }
            }
        };
        match tokio::time::timeout(c.connect_timeout, attempt).await {
            Ok(Ok((client, driver))) => Ok(PgConnection { client, driver }),
            Ok(Err(error)) => Err(self.explain(error)),
            Err(_) => {
                Err(ConnectError::Timeout { host: c.host.clone(), port: c.port, after: c.connect_timeout })
            }
        }
    }

    fn explain(&self, error: tokio_postgres::Error) -> ConnectError {
        let c = &self.config;
        let host = c.host.clone();
        let Some(db) = error.as_db_error() else {
            let reason = error.to_string();
            return ConnectError::Failed { host, port: c.port, reason, source: error };
        };
        match classify_refusal(db.code().code(), db.message(), db.hint()) {
            Refusal::TokenExpired => ConnectError::TokenExpired { host, user: c.user.clone() },
            Refusal::AccessDenied => {
                let message = match db.hint() {
                    Some(hint) => format!("{} (hint: {hint})", db.message()),
                    None => db.message().to_owned(),
                };
                ConnectError::AccessDenied { host, user: c.user.clone(), message }
            }
            Refusal::PasswordRejected => {
                let message = format!("{} (SQLSTATE {})", db.message(), db.code().code());
                ConnectError::PasswordRejected { host, user: c.user.clone(), message }
            }
            Refusal::TooManyConnections => ConnectError::TooManyConnections { host },
            Refusal::RateExceeded => ConnectError::RateExceeded { host },
            Refusal::WakingUp => ConnectError::WakingUp { host },
            Refusal::Other => {
                let reason = format!("{} (SQLSTATE {})", db.message(), db.code().code());
                ConnectError::Failed { host, port: c.port, reason, source: error }
            }
        }
    }
}

impl Connector for PgConnector {
    type Connection = PgConnection;
    type Error = ConnectError;

    fn connect(&self) -> impl Future<Output = Result<PgConnection, ConnectError>> + Send {
        PgConnector::connect(self)
    }

    fn is_broken(&self, connection: &PgConnection) -> bool {
        connection.client.is_closed()
    }

    fn failure_reason(&self, error: &ConnectError) -> RefillFailure {
        match error {
            ConnectError::Token { .. } => RefillFailure::TokenProvider,
            _ => RefillFailure::ConnectionOpen,
        }
    }
}

/// Whether `error` means the connection is gone and should not be reused (closed, I/O, or a
/// server-side termination), as opposed to a failed statement on a healthy connection.
#[must_use]
pub fn is_connection_error(error: &tokio_postgres::Error) -> bool {
    if error.is_closed() {
        return true;
    }
    error.code().is_some_and(|code| {
        *code == SqlState::ADMIN_SHUTDOWN
            || *code == SqlState::CRASH_SHUTDOWN
            || *code == SqlState::CANNOT_CONNECT_NOW
            || code.code().starts_with("08")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // The refusals exactly as aurora-dsql-platform.md sections 2.1 to 2.3 quote them.
    const DENIED: &str = "unable to accept connection, access denied";
    const EXPIRED_HINT: &str = "Signature expired";
    const WAKING: &str = "unable to accept connection, waking up cluster, please retry later";
    const TOO_MANY: &str = "Unable to accept connection, too many open connections.";
    const RATE: &str = "Unable to accept connection, rate exceeded.";

    #[test]
    fn documented_refusals_are_told_apart() {
        // The SQLSTATE of `access denied` is not documented (the fork's comment says 08006): the
        // message and hint decide, whatever the code.
        for code in ["08006", "28000", "XX000"] {
            assert_eq!(classify_refusal(code, DENIED, Some(EXPIRED_HINT)), Refusal::TokenExpired, "{code}");
            assert_eq!(classify_refusal(code, DENIED, None), Refusal::AccessDenied, "{code}");
        }
        // The SDK's longer hint and upper-case variants still count as expired.
        let long = "Signature expired: 20260101T000000Z is now earlier than 20260101T001500Z";
        assert_eq!(classify_refusal("08006", DENIED, Some(long)), Refusal::TokenExpired);
        assert_eq!(
            classify_refusal(
                "08006",
                "FATAL: Unable to accept connection, ACCESS DENIED",
                Some("signature EXPIRED")
            ),
            Refusal::TokenExpired
        );
        // Another hint is not an expiry.
        assert_eq!(classify_refusal("08006", DENIED, Some("Check the region")), Refusal::AccessDenied);
        assert_eq!(classify_refusal("53300", TOO_MANY, None), Refusal::TooManyConnections);
        assert_eq!(classify_refusal("53400", RATE, None), Refusal::RateExceeded);
        assert_eq!(classify_refusal("08006", WAKING, None), Refusal::WakingUp);
        // PostgreSQL's own authentication failures are a password problem, not IAM.
        assert_eq!(
            classify_refusal("28P01", "password authentication failed for user \"x\"", None),
            Refusal::PasswordRejected
        );
        assert_eq!(
            classify_refusal("28000", "no pg_hba.conf entry for host \"10.0.0.1\"", None),
            Refusal::PasswordRejected
        );
        assert_eq!(classify_refusal("3D000", "database \"x\" does not exist", None), Refusal::Other);
    }

    fn denied(user: &str) -> String {
        ConnectError::AccessDenied {
            host: "h.dsql.us-east-1.on.aws".into(),
            user: user.into(),
            message: DENIED.into(),
        }
        .to_string()
    }

    #[test]
    fn each_refusal_says_what_happened_and_what_to_do() {
        let expired = ConnectError::TokenExpired { host: "h".into(), user: "admin".into() }.to_string();
        assert_eq!(
            expired,
            "h refused the IAM token of admin as expired (signature expired): check this machine's clock (skew \
             beyond the token lifetime makes every token expired) and dsql.token_duration"
        );
        let admin = denied("admin");
        assert_eq!(
            admin,
            "h.dsql.us-east-1.on.aws denied access to admin: unable to accept connection, access denied; the token \
             was not expired (DSQL says `Signature expired` for that), so either the AWS identity lacks IAM action \
             dsql:DbConnectAdmin on this cluster, or the token was signed for another region than the cluster's; \
             retrying will not help"
        );
        let app = denied("app");
        assert!(app.contains("lacks IAM action dsql:DbConnect on this cluster"), "{app}");
        assert!(!app.contains("DbConnectAdmin"), "{app}");
        assert!(app.contains("`AWS IAM GRANT app TO '<role arn>'`"), "{app}");
        let password = ConnectError::PasswordRejected {
            host: "127.0.0.1".into(),
            user: "postgres".into(),
            message: "password authentication failed for user \"postgres\" (SQLSTATE 28P01)".into(),
        }
        .to_string();
        assert!(
            password.contains("rejected the login of postgres") && password.contains("PGPASSWORD"),
            "{password}"
        );
        assert!(!password.contains("dsql:"), "a local password failure is not an IAM problem: {password}");

        // An expired token is worth another try with a fresh one; a denial is not.
        assert!(ConnectError::TokenExpired { host: "h".into(), user: "u".into() }.is_transient());
        let denial =
            ConnectError::AccessDenied { host: "h".into(), user: "u".into(), message: String::new() };
        assert!(!denial.is_transient());
        let rejected =
            ConnectError::PasswordRejected { host: "h".into(), user: "u".into(), message: String::new() };
        assert!(!rejected.is_transient());
        assert_eq!((iam_action("admin"), iam_action("app")), ("dsql:DbConnectAdmin", "dsql:DbConnect"));
    }
}

//! The listener: admits connections as DSQL does (TLS, database `postgres`, user `admin`, an IAM
//! token verified against the local key pair, the connection-rate bucket and cap), opens the
//! client's own upstream PostgreSQL connection and hands both to a [`Session`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use bytes::{BufMut as _, BytesMut};
use futures_util::{FutureExt as _, SinkExt as _, StreamExt as _};
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, timeout};
use tokio_util::codec::Framed;

use crate::auth::{KeyPair, TokenVerifier};
use crate::errors::SqlError;
use crate::limits::{Admission, ConnectionLimits};
use crate::metrics::Metrics;
use crate::session::{Ending, Session};
use crate::wire::{self, BodyReader, Frame, FrameCodec, StartupPacket};

/// How long a client may take from its first byte to its password.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

/// The PostgreSQL the gateway forwards to.
#[derive(Clone)]
pub struct UpstreamConfig {
    /// Host name or address, or, starting with `/`, the directory of PostgreSQL's Unix-domain
    /// socket (`<host>/.s.PGSQL.<port>`), as libpq reads a host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Role the gateway logs in as (its sessions run as this role).
    pub user: String,
    /// Its password, if the server asks for one.
    pub password: Option<String>,
    /// The database every client's `postgres` maps to.
    pub database: String,
    /// Logged-in connections kept ready, so that a client's connect skips the upstream login
    /// (a SCRAM exchange costs milliseconds); 0 logs in for each client.
    pub spares: usize,
}

impl std::fmt::Debug for UpstreamConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("database", &self.database)
            .field("spares", &self.spares)
            .finish()
    }
}

impl UpstreamConfig {
    /// Reads a `postgres://user:password@host:port/database` URL (or a key=value string). A host
    /// that is a directory (`?host=/var/run/postgresql`, or `%2Fvar%2Frun%2Fpostgresql` in the
    /// authority) means PostgreSQL's Unix-domain socket in it.
    ///
    /// # Errors
    /// An unparsable URL, or one without a host.
    pub fn from_url(url: &str) -> Result<Self, GatewayError> {
        let config: tokio_postgres::Config =
            url.parse().map_err(|e: tokio_postgres::Error| GatewayError::UpstreamUrl(e.to_string()))?;
        let host = config
            .get_hosts()
            .first()
            .map(|h| match h {
                tokio_postgres::config::Host::Tcp(host) => host.clone(),
                tokio_postgres::config::Host::Unix(dir) => dir.to_string_lossy().into_owned(),
            })
            .ok_or_else(|| GatewayError::UpstreamUrl("no host in the upstream URL".to_owned()))?;
        let user = config.get_user().unwrap_or("postgres").to_owned();
        Ok(Self {
            host,
            port: config.get_ports().first().copied().unwrap_or(5432),
            database: config.get_dbname().unwrap_or(&user).to_owned(),
            password: config.get_password().map(|p| String::from_utf8_lossy(p).into_owned()),
            user,
            spares: DEFAULT_SPARES,
        })
    }
}

/// Query texts whose analysis a gateway keeps.
const ANALYSIS_CACHE_TEXTS: usize = 1024;

/// Spare upstream connections a gateway keeps by default.
pub const DEFAULT_SPARES: usize = 2;

/// Per-transaction limits and the conflict wait.
#[derive(Debug, Clone)]
pub struct TxnLimits {
    /// Rows a transaction may write (DSQL: 3,000).
    pub max_rows: u64,
    /// Age at COMMIT (DSQL: 300 s).
    pub max_age: Duration,
    /// Bytes a write transaction may send (DSQL: 10 MiB, counted here as the written statements'
    /// parameters and text, see the crate docs).
    pub max_bytes: usize,
    /// How long PostgreSQL may wait for a row lock before the gateway takes it as a conflict.
    pub lock_timeout: Duration,
}

impl Default for TxnLimits {
    fn default() -> Self {
        Self {
            max_rows: 3000,
            max_age: Duration::from_secs(300),
            max_bytes: 10 * 1024 * 1024,
            lock_timeout: Duration::from_millis(10),
        }
    }
}

/// Everything the gateway needs.
#[derive(Clone)]
pub struct GatewayConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The PostgreSQL behind it.
    pub upstream: UpstreamConfig,
    /// The region tokens must be signed for.
    pub region: String,
    /// The endpoint names the gateway answers to (token hosts; the certificate's names).
    pub hosts: Vec<String>,
    /// The local key pair tokens are signed with.
    pub keys: KeyPair,
    /// The TLS server configuration (certificate from the local CA).
    pub tls: Arc<rustls::ServerConfig>,
    /// Connection rate, cap and lifetime.
    pub limits: ConnectionLimits,
    /// Row, age and size limits of a transaction.
    pub txn: TxnLimits,
}

impl std::fmt::Debug for GatewayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayConfig")
            .field("listen", &self.listen)
            .field("upstream", &self.upstream)
            .field("region", &self.region)
            .field("hosts", &self.hosts)
            .field("limits", &self.limits)
            .field("txn", &self.txn)
            .finish_non_exhaustive()
    }
}

/// Why the gateway could not start or a connection could not be served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The upstream URL is not usable.
    #[error("invalid upstream URL: {0}")]
    UpstreamUrl(String),
    /// A connection limit is out of range.
    #[error("invalid connection limits")]
    Limits(#[source] crate::limits::LimitsError),
    /// The upstream PostgreSQL refused or failed.
    #[error("upstream PostgreSQL at {addr}: {reason}")]
    Upstream {
        /// host:port.
        addr: String,
        /// What happened.
        reason: String,
    },
}

/// State every session shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) epoch: AtomicU64,
    pub(crate) metrics: Metrics,
    pub(crate) txn: TxnLimits,
    pub(crate) analyses: crate::rules::AnalysisCache,
    jobs: AtomicU64,
}

impl Shared {
    /// A fresh async-index job id: 26 characters of `[a-z0-9]`, like DSQL's.
    pub(crate) fn new_job_id(&self) -> String {
        let n = self.jobs.fetch_add(1, Ordering::Relaxed);
        let mut seed =
            n ^ SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        (0..26)
            .map(|_| {
                // xorshift64*: ids only need to be unique and look like DSQL's.
                seed ^= seed >> 12;
                seed ^= seed << 25;
                seed ^= seed >> 27;
                let digit = (seed.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 58) % 36;
                char::from_digit(u32::try_from(digit).unwrap_or(0), 36).unwrap_or('0')
            })
            .collect()
    }
}

/// A bound gateway.
#[derive(Debug)]
pub struct Gateway {
    listener: TcpListener,
    config: Arc<GatewayConfig>,
    shared: Arc<Shared>,
    admission: Admission,
    verifier: Arc<TokenVerifier>,
    spares: Spares,
}

/// Upstream connections logged in ahead of the clients that will take them.
#[derive(Default)]
struct Spares {
    ready: std::sync::Mutex<Vec<Upstream>>,
    /// Logins under way, so that refills never overshoot the target.
    opening: std::sync::atomic::AtomicUsize,
}

impl std::fmt::Debug for Spares {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ready = self.ready.lock().map_or(0, |r| r.len());
        f.debug_struct("Spares").field("ready", &ready).field("opening", &self.opening).finish()
    }
}

/// The schema DSQL has and PostgreSQL lacks: `sys.jobs` and `sys.wait_for_job`.
const BOOTSTRAP: &str = "BEGIN; \
    SELECT pg_advisory_xact_lock(7369656); \
    CREATE SCHEMA IF NOT EXISTS sys; \
    CREATE TABLE IF NOT EXISTS sys.jobs (job_id text PRIMARY KEY, status text NOT NULL, details text, \
      job_type text NOT NULL, class_id oid, object_id oid, object_name text, \
      start_time timestamptz NOT NULL DEFAULT now(), update_time timestamptz NOT NULL DEFAULT now()); \
    DROP ROUTINE IF EXISTS sys.wait_for_job(text); \
    CREATE OR REPLACE PROCEDURE sys.wait_for_job(job text) LANGUAGE plpgsql AS $$ \
      DECLARE job_row sys.jobs%ROWTYPE; \
      BEGIN \
        SELECT * INTO job_row FROM sys.jobs WHERE job_id = job; \
        IF NOT FOUND THEN RAISE SQLSTATE '22P02' USING MESSAGE = 'Unable to convert text to UUID'; END IF; \
        IF job_row.status = 'failed' THEN RAISE SQLSTATE 'XX000' USING MESSAGE = coalesce(job_row.details, 'job failed'); END IF; \
      END $$; \
    COMMIT";

impl Gateway {
    /// Binds the listener and prepares the upstream database (`sys.jobs`, `sys.wait_for_job`).
    ///
    /// # Errors
    /// The address is taken, or the upstream cannot be reached or prepared.
    pub async fn bind(config: GatewayConfig) -> Result<Self, GatewayError> {
        let admission = Admission::try_new(config.limits.clone()).map_err(GatewayError::Limits)?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| GatewayError::Bind { addr: config.listen, source })?;
        // The first random bytes of a process seed aws-lc's generator from CPU jitter, which took
        // 56 ms here: pay it now rather than in the first client's TLS handshake.
        let provider = config.tls.crypto_provider().clone();
        let _ = tokio::task::spawn_blocking(move || provider.secure_random.fill(&mut [0_u8; 32])).await;
        let mut upstream = connect_upstream(&config.upstream, &[], &config.txn).await?;
        simple_query(&mut upstream.framed, BOOTSTRAP)
            .await
            .map_err(|reason| GatewayError::Upstream { addr: upstream_addr(&config.upstream), reason })?;
        let verifier =
            Arc::new(TokenVerifier::new(config.region.clone(), config.hosts.clone(), config.keys.clone()));
        let shared = Arc::new(Shared {
            epoch: AtomicU64::new(0),
            metrics: Metrics::new(),
            txn: config.txn.clone(),
            analyses: crate::rules::AnalysisCache::new(ANALYSIS_CACHE_TEXTS),
            jobs: AtomicU64::new(0),
        });
        Ok(Self {
            listener,
            admission,
            config: Arc::new(config),
            shared,
            verifier,
            spares: Spares::default(),
        })
    }

    /// The address it listens on.
    ///
    /// # Panics
    /// Never in practice: a bound listener has an address.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// The gateway's metrics.
    #[must_use]
    pub fn metrics(&self) -> Metrics {
        self.shared.metrics.clone()
    }

    /// Accepts connections until the task is dropped; every connection runs on a task of its own.
    pub async fn serve(self) {
        let gateway = Arc::new(self);
        gateway.refill_spares();
        loop {
            let (stream, peer) = match gateway.listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let gateway = gateway.clone();
            tokio::spawn(async move {
                let _ = stream.set_nodelay(true);
                if let Err(error) = gateway.connection(stream).await {
                    tracing::info!(%peer, error = %error_chain(&*error), "connection ended");
                }
            });
        }
    }

    /// Runs the gateway on a task of its own; dropping the handle stops it.
    #[must_use]
    pub fn spawn(self) -> GatewayHandle {
        let addr = self.local_addr();
        let metrics = self.metrics();
        GatewayHandle { addr, metrics, task: tokio::spawn(self.serve()) }
    }

    /// Starts logins until ready and opening spares reach the target. Each login is a task of its
    /// own that ends with it, so a stopped gateway leaves none behind.
    fn refill_spares(self: &Arc<Self>) {
        let target = self.config.upstream.spares;
        loop {
            let ready = self.spares.ready.lock().map_or(target, |r| r.len());
            let opening = self.spares.opening.load(Ordering::Acquire);
            if ready + opening >= target {
                return;
            }
            if self
                .spares
                .opening
                .compare_exchange(opening, opening + 1, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                continue;
            }
            let gateway = self.clone();
            tokio::spawn(async move {
                let login = connect_upstream(&gateway.config.upstream, &[], &gateway.config.txn).await;
                match login {
                    Ok(upstream) => {
                        if let Ok(mut ready) = gateway.spares.ready.lock() {
                            ready.push(upstream);
                        }
                    }
                    // The next client logs in itself and reports the failure.
                    Err(error) => tracing::debug!(%error, "spare upstream login failed"),
                }
                gateway.spares.opening.fetch_sub(1, Ordering::AcqRel);
            });
        }
    }

    /// The upstream connection for a client: a spare set to the client's parameters, else a
    /// fresh login with them.
    async fn upstream_for(self: &Arc<Self>, passed: &[(&str, &str)]) -> Result<Upstream, GatewayError> {
        loop {
            let spare = self.spares.ready.lock().ok().and_then(|mut ready| ready.pop());
            let Some(mut spare) = spare else { break };
            self.refill_spares();
            // Anything readable on an idle connection (EOF, a FATAL from a terminated backend)
            // means it is gone.
            if spare.framed.next().now_or_never().is_some() {
                continue;
            }
            if adapt_parameters(&mut spare, passed).await.is_ok() {
                return Ok(spare);
            }
        }
        connect_upstream(&self.config.upstream, passed, &self.config.txn).await
    }

    async fn connection(
        self: &Arc<Self>,
        mut tcp: TcpStream,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let accepted = Instant::now();
        let packet = timeout(STARTUP_TIMEOUT, wire::read_startup(&mut tcp)).await??;
        let packet = match packet {
            StartupPacket::GssEncRequest => {
                tcp.write_all(b"N").await?;
                timeout(STARTUP_TIMEOUT, wire::read_startup(&mut tcp)).await??
            }
            other => other,
        };
        match packet {
            StartupPacket::SslRequest => {}
            StartupPacket::Cancel { pid, secret } => return self.forward_cancel(pid, secret).await,
            StartupPacket::Startup(_) => {
                // DSQL accepts TLS connections only.
                self.shared.metrics.connection_refused("no_tls");
                tracing::info!(rule = "no_tls", "connection refused: no TLS");
                let error = SqlError::fatal("28000", "unable to accept connection, SSL is required");
                return refuse_plain(tcp, &error).await;
            }
            StartupPacket::GssEncRequest | StartupPacket::Unsupported(_) => {
                self.shared.metrics.connection_refused("protocol");
                let error = SqlError::fatal("0A000", "unsupported frontend protocol");
                return refuse_plain(tcp, &error).await;
            }
        }
        tcp.write_all(b"S").await?;
        let acceptor = tokio_rustls::TlsAcceptor::from(self.config.tls.clone());
        let mut tls = timeout(STARTUP_TIMEOUT, acceptor.accept(tcp)).await??;
        let params = match timeout(STARTUP_TIMEOUT, wire::read_startup(&mut tls)).await?? {
            StartupPacket::Startup(params) => params,
            StartupPacket::Cancel { pid, secret } => return self.forward_cancel(pid, secret).await,
            _ => return Err("client sent no StartupMessage after TLS".into()),
        };
        let mut client = Framed::new(tls, FrameCodec);
        let user = StartupPacket::param(&params, "user").unwrap_or_default().to_owned();
        let database = StartupPacket::param(&params, "database").unwrap_or(&user).to_owned();

        let admitted = match self.admission.try_admit() {
            Ok(admitted) => admitted,
            Err(refused) => {
                self.shared.metrics.connection_refused(refused.rule());
                tracing::info!(
                    rule = refused.rule(),
                    open = self.admission.open_connections(),
                    "connection refused"
                );
                return fatal(&mut client, &refused.to_sql_error()).await;
            }
        };
        if database != "postgres" {
            self.shared.metrics.connection_refused("database");
            tracing::info!(rule = "database", %database, "connection refused: DSQL has only the database postgres");
            return fatal(
                &mut client,
                &SqlError::fatal("3D000", format!("database \"{database}\" does not exist")),
            )
            .await;
        }

        client.send(wire::authentication(3)).await?;
        let password = match timeout(STARTUP_TIMEOUT, client.next()).await? {
            Some(Ok(frame)) if frame.tag == b'p' => BodyReader::new(b'p', frame.body).cstr()?,
            _ => return Err("client sent no password".into()),
        };
        match self.verifier.verify(&password, &user, SystemTime::now()) {
            Ok(_) if user == "admin" => {}
            Ok(_) => {
                self.shared.metrics.connection_refused("role");
                tracing::info!(rule = "role", %user, "connection refused: dsql-local maps only the admin role");
                return fatal(&mut client, &SqlError::access_denied(false)).await;
            }
            Err(rejection) => {
                self.shared.metrics.connection_refused(rejection.rule());
                tracing::info!(rule = rejection.rule(), reason = %rejection, %user, "connection refused: token");
                return fatal(&mut client, &rejection.to_sql_error()).await;
            }
        }

        let passed: Vec<(&str, &str)> = params
            .iter()
            .filter(|(k, _)| {
                matches!(
                    k.as_str(),
                    "application_name"
                        | "client_encoding"
                        | "DateStyle"
                        | "TimeZone"
                        | "extra_float_digits"
                        | "IntervalStyle"
                )
            })
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let upstream = match self.upstream_for(&passed).await {
            Ok(upstream) => upstream,
            Err(error) => {
                self.shared.metrics.connection_refused("upstream");
                tracing::warn!(error = %error, "upstream connect failed");
                return fatal(
                    &mut client,
                    &SqlError::fatal("08006", "unable to accept connection, server unavailable"),
                )
                .await;
            }
        };
        client.feed(wire::authentication(0)).await?;
        for (name, value) in &upstream.parameters {
            client.feed(wire::parameter_status(name, value)).await?;
        }
        if let Some((pid, secret)) = upstream.key {
            let mut body = BytesMut::with_capacity(8);
            body.put_i32(pid);
            body.put_i32(secret);
            client.feed(Frame::new(b'K', body.freeze())).await?;
        }
        client.send(wire::ready_for_query(b'I')).await?;
        self.shared.metrics.connection_accepted(accepted.elapsed());

        let deadline = accepted + self.config.limits.max_lifetime;
        let ending = Session::new(client, upstream.framed, self.shared.clone()).run(deadline).await;
        drop(admitted);
        match ending {
            Ok(Ending::ClientGone) => self.shared.metrics.connection_closed("client"),
            Ok(Ending::Lifetime) => {
                self.shared.metrics.connection_closed("lifetime");
                tracing::info!("connection closed at its maximum lifetime");
            }
            Err(error) => {
                self.shared.metrics.connection_closed("error");
                return Err(error.into());
            }
        }
        Ok(())
    }

    async fn forward_cancel(
        &self,
        pid: i32,
        secret: i32,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let upstream = &self.config.upstream;
        let mut stream = connect_stream(upstream).await?;
        stream.write_all(&wire::cancel_request(pid, secret)).await?;
        Ok(())
    }
}

/// A gateway running on a task; dropping it stops the listener (open sessions end with it).
#[derive(Debug)]
pub struct GatewayHandle {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// Its metrics.
    pub metrics: Metrics,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for GatewayHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

async fn fatal<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut Framed<S, FrameCodec>,
    error: &SqlError,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    client.send(wire::error_response(error)).await?;
    Ok(())
}

async fn refuse_plain(
    mut tcp: TcpStream,
    error: &SqlError,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let frame = wire::error_response(error);
    let mut out = BytesMut::new();
    tokio_util::codec::Encoder::encode(&mut FrameCodec, frame, &mut out)?;
    tcp.write_all(&out).await?;
    Ok(())
}

fn upstream_addr(config: &UpstreamConfig) -> String {
    if config.host.starts_with('/') {
        return format!("{}/.s.PGSQL.{}", config.host, config.port);
    }
    format!("{}:{}", config.host, config.port)
}

/// A connection to the upstream PostgreSQL: TCP, or its Unix-domain socket, which skips the TCP
/// stack on both ends (the gateway's largest cost per query is the kernel's).
pub(crate) type UpstreamStream = tokio_util::either::Either<TcpStream, tokio::net::UnixStream>;

async fn connect_stream(config: &UpstreamConfig) -> std::io::Result<UpstreamStream> {
    if config.host.starts_with('/') {
        let unix = tokio::net::UnixStream::connect(upstream_addr(config)).await?;
        return Ok(UpstreamStream::Right(unix));
    }
    let tcp = TcpStream::connect((config.host.as_str(), config.port)).await?;
    let _ = tcp.set_nodelay(true);
    Ok(UpstreamStream::Left(tcp))
}

/// An authenticated upstream connection, ready for queries.
struct Upstream {
    framed: Framed<UpstreamStream, FrameCodec>,
    parameters: Vec<(String, String)>,
    key: Option<(i32, i32)>,
}

/// Opens and authenticates a connection to the upstream PostgreSQL; the session runs at
/// REPEATABLE READ with the gateway's lock timeout, in UTC unless the client asked otherwise.
async fn connect_upstream(
    config: &UpstreamConfig,
    passed: &[(&str, &str)],
    txn: &TxnLimits,
) -> Result<Upstream, GatewayError> {
    let addr = upstream_addr(config);
    let failed = |reason: String| GatewayError::Upstream { addr: addr.clone(), reason };
    let stream = timeout(Duration::from_secs(10), connect_stream(config))
        .await
        .map_err(|_| failed("connect timed out".to_owned()))?
        .map_err(|e| failed(e.to_string()))?;
    let lock_timeout = format!("{}ms", txn.lock_timeout.as_millis().max(1));
    let mut params: Vec<(&str, &str)> = vec![
        ("user", &config.user),
        ("database", &config.database),
        ("default_transaction_isolation", "repeatable read"),
        ("lock_timeout", &lock_timeout),
    ];
    for name in ["application_name", "client_encoding", "TimeZone"] {
        let value = passed.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
        let fallback = match name {
            "application_name" => "dsql-local",
            "client_encoding" => "UTF8",
            _ => "UTC",
        };
        params.push((name, value.unwrap_or(fallback)));
    }
    params.extend(
        passed.iter().filter(|(k, _)| !matches!(*k, "application_name" | "client_encoding" | "TimeZone")),
    );
    let mut stream = stream;
    stream.write_all(&wire::startup_message(&params)).await.map_err(|e| failed(e.to_string()))?;
    let mut framed = Framed::new(stream, FrameCodec);
    let mut scram: Option<ScramSha256> = None;
    let mut parameters = Vec::new();
    let mut key = None;
    loop {
        let frame = match timeout(Duration::from_secs(10), framed.next()).await {
            Err(_) => return Err(failed("no answer to the startup within 10 s".to_owned())),
            Ok(None) => return Err(failed("closed the connection during startup".to_owned())),
            Ok(Some(Err(e))) => return Err(failed(e.to_string())),
            Ok(Some(Ok(frame))) => frame,
        };
        match frame.tag {
            b'R' => {
                let mut r = BodyReader::new(b'R', frame.body.clone());
                let code = r.i32().map_err(|e| failed(e.to_string()))?;
                let password = || {
                    config
                        .password
                        .clone()
                        .ok_or_else(|| failed("asks for a password and the upstream URL has none".to_owned()))
                };
                match code {
                    0 => {}
                    3 => send_password(&mut framed, password()?.as_bytes())
                        .await
                        .map_err(|e| failed(e.to_string()))?,
                    5 => {
                        let salt: [u8; 4] = r
                            .rest()
                            .get(..4)
                            .and_then(|s| s.try_into().ok())
                            .ok_or_else(|| failed("bad MD5 salt".to_owned()))?;
                        let hash = postgres_protocol::authentication::md5_hash(
                            config.user.as_bytes(),
                            password()?.as_bytes(),
                            salt,
                        );
                        send_password(&mut framed, hash.as_bytes())
                            .await
                            .map_err(|e| failed(e.to_string()))?;
                    }
                    10 => {
                        let state = ScramSha256::new(password()?.as_bytes(), ChannelBinding::unsupported());
                        let mut body = BytesMut::new();
                        body.put_slice(b"SCRAM-SHA-256\0");
                        body.put_i32(i32::try_from(state.message().len()).unwrap_or(0));
                        body.put_slice(state.message());
                        framed
                            .send(Frame::new(b'p', body.freeze()))
                            .await
                            .map_err(|e| failed(e.to_string()))?;
                        scram = Some(state);
                        let _ = &mut scram;
                    }
                    11 => {
                        let state = scram
                            .as_mut()
                            .ok_or_else(|| failed("SASL continue without a start".to_owned()))?;
                        state.update(&r.rest()).map_err(|e| failed(format!("SCRAM: {e}")))?;
                        let message = state.message().to_vec();
                        framed.send(Frame::new(b'p', message)).await.map_err(|e| failed(e.to_string()))?;
                    }
                    12 => {
                        let state =
                            scram.as_mut().ok_or_else(|| failed("SASL final without a start".to_owned()))?;
                        state.finish(&r.rest()).map_err(|e| failed(format!("SCRAM: {e}")))?;
                    }
                    other => {
                        return Err(failed(format!(
                            "asks for authentication method {other}, which the gateway does not speak"
                        )));
                    }
                }
            }
            b'S' => {
                let mut r = BodyReader::new(b'S', frame.body.clone());
                if let (Ok(name), Ok(value)) = (r.cstr(), r.cstr()) {
                    parameters.push((name, value));
                }
            }
            b'K' => {
                let mut r = BodyReader::new(b'K', frame.body.clone());
                if let (Ok(pid), Ok(secret)) = (r.i32(), r.i32()) {
                    key = Some((pid, secret));
                }
            }
            b'E' => return Err(failed(wire::ErrorFields::read(&frame.body).message)),
            b'Z' => return Ok(Upstream { framed, parameters, key }),
            _ => {}
        }
    }
}

async fn send_password(
    framed: &mut Framed<UpstreamStream, FrameCodec>,
    password: &[u8],
) -> std::io::Result<()> {
    let mut body = BytesMut::with_capacity(password.len() + 1);
    body.put_slice(password);
    body.put_u8(0);
    framed.send(Frame::new(b'p', body.freeze())).await
}

/// Sets a spare's session parameters to what the client's startup asked for (a spare logged in
/// with the defaults [`connect_upstream`] uses), updating the values the client will be told.
async fn adapt_parameters(upstream: &mut Upstream, passed: &[(&str, &str)]) -> Result<(), String> {
    let mut sql = String::new();
    for (name, value) in passed {
        let current = upstream.parameters.iter().find(|(k, _)| k.eq_ignore_ascii_case(name));
        if current.is_none_or(|(_, v)| v != value) {
            // Names come from the gateway's own list of passed parameters, never from the client.
            sql.push_str(&format!("SET \"{name}\" TO '{}';", value.replace('\'', "''")));
        }
    }
    if sql.is_empty() {
        return Ok(());
    }
    for (name, value) in simple_query(&mut upstream.framed, &sql).await? {
        match upstream.parameters.iter_mut().find(|(k, _)| *k == name) {
            Some(entry) => entry.1 = value,
            None => upstream.parameters.push((name, value)),
        }
    }
    Ok(())
}

/// Runs `sql` as a simple Query and waits for ReadyForQuery; an error's message is the `Err`.
/// Returns the parameters the server reported as changed.
async fn simple_query(
    framed: &mut Framed<UpstreamStream, FrameCodec>,
    sql: &str,
) -> Result<Vec<(String, String)>, String> {
    framed.send(wire::query(sql)).await.map_err(|e| e.to_string())?;
    let mut failure = None;
    let mut changed = Vec::new();
    loop {
        match framed.next().await {
            None => return Err("closed the connection".to_owned()),
            Some(Err(e)) => return Err(e.to_string()),
            Some(Ok(frame)) if frame.tag == b'E' => {
                failure = Some(wire::ErrorFields::read(&frame.body).message);
            }
            Some(Ok(frame)) if frame.tag == b'S' => {
                let mut r = BodyReader::new(b'S', frame.body.clone());
                if let (Ok(name), Ok(value)) = (r.cstr(), r.cstr()) {
                    changed.push((name, value));
                }
            }
            Some(Ok(frame)) if frame.tag == b'Z' => return failure.map_or(Ok(changed), Err),
            Some(Ok(_)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upstream_is_a_tcp_host_or_a_socket_directory_in_every_form_libpq_has() {
        let tcp = UpstreamConfig::from_url("postgres://admin:pw@db.internal:6432/app").unwrap();
        assert_eq!((tcp.host.as_str(), tcp.port, tcp.database.as_str()), ("db.internal", 6432, "app"));
        assert_eq!(upstream_addr(&tcp), "db.internal:6432");
        for url in [
            "host=/var/run/postgresql port=5432 user=admin dbname=postgres",
            "postgres://admin@%2Fvar%2Frun%2Fpostgresql:5432/postgres",
            "postgres://admin@/postgres?host=/var/run/postgresql&port=5432",
        ] {
            let unix = UpstreamConfig::from_url(url).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(unix.host, "/var/run/postgresql", "{url}");
            assert_eq!(upstream_addr(&unix), "/var/run/postgresql/.s.PGSQL.5432", "{url}");
            assert_eq!((unix.user.as_str(), unix.database.as_str()), ("admin", "postgres"), "{url}");
        }
        let error = UpstreamConfig::from_url("user=admin dbname=postgres").unwrap_err().to_string();
        assert!(error.contains("no host"), "{error}");
    }
}

//! `tdsql-dsql-local`: run the dsql-local gateway in front of any PostgreSQL.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, Result, bail};
use clap::{Args, Parser, Subcommand};
use tdsql_dsql_local::auth::{self, Action, KeyPair};
use tdsql_dsql_local::certs;
use tdsql_dsql_local::limits::ConnectionLimits;
use tdsql_dsql_local::{Gateway, GatewayConfig, TxnLimits, UpstreamConfig};

/// dsql-local: a gateway that gives PostgreSQL Aurora DSQL's connection and statement semantics.
///
/// Clients connect to it as to a DSQL endpoint: TLS verified against the local CA (`verify-full`),
/// database `postgres`, user `admin`, and an IAM auth token as the password, signed with the local
/// key pair. Statements DSQL refuses are refused with DSQL's SQLSTATE and text; transactions follow
/// DSQL's rules (one DDL, no DDL with DML, 3,000 rows, 300 s, REPEATABLE READ, OCC conflicts at
/// COMMIT with OC000, OC001 after another session's DDL).
///
/// By hand, in front of any PostgreSQL (e.g. for the fork's `go test` runs):
///
///   export DSQL_LOCAL_ACCESS_KEY_ID=AKIDLOCAL DSQL_LOCAL_SECRET_ACCESS_KEY=$(openssl rand -hex 20)
///   tdsql-dsql-local serve --upstream postgres://postgres:secret@127.0.0.1:5432/postgres --pki-dir ./pki
///   PGPASSWORD=$(tdsql-dsql-local token --endpoint localhost) PGSSLMODE=verify-full \
///     PGSSLROOTCERT=./pki/ca.pem psql -h localhost -p 5433 -U admin postgres
#[derive(Debug, Parser)]
#[command(name = "tdsql-dsql-local", version, verbatim_doc_comment)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway
    Serve(Box<ServeArgs>),
    /// Create (or keep) the local CA and the gateway's certificate in a directory
    Pki(PkiArgs),
    /// Print an IAM auth token for the gateway, signed with the local key pair (the password)
    Token(TokenArgs),
    /// Exit 0 when a gateway answers on ADDR (a TLS request gets its `S`): a container healthcheck
    Probe(ProbeArgs),
}

#[derive(Debug, Args)]
struct ProbeArgs {
    /// The gateway's address
    #[arg(long, default_value = "127.0.0.1:5432")]
    addr: SocketAddr,
}

#[derive(Debug, Args)]
struct KeyArgs {
    /// Access key id of the local key pair [default: $DSQL_LOCAL_ACCESS_KEY_ID, else $AWS_ACCESS_KEY_ID]
    #[arg(long)]
    access_key_id: Option<String>,
    /// File holding the secret access key [default: $DSQL_LOCAL_SECRET_ACCESS_KEY, else
    /// $AWS_SECRET_ACCESS_KEY]; never a command-line value, which other users can see
    #[arg(long, value_name = "FILE")]
    secret_access_key_file: Option<PathBuf>,
}

/// The first of `names` that is set and not empty.
fn env_var(names: &[&str]) -> Option<String> {
    names.iter().find_map(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
}

impl KeyArgs {
    fn key_pair(&self) -> Result<KeyPair> {
        let id = self
            .access_key_id
            .clone()
            .or_else(|| env_var(&["DSQL_LOCAL_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID"]))
            .context("no access key id: pass --access-key-id or set DSQL_LOCAL_ACCESS_KEY_ID (or AWS_ACCESS_KEY_ID)")?;
        let secret = match &self.secret_access_key_file {
            Some(path) => std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the secret access key from {}", path.display()))?
                .trim()
                .to_owned(),
            None => env_var(&["DSQL_LOCAL_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY"]).context(
                "no secret access key: set DSQL_LOCAL_SECRET_ACCESS_KEY (or AWS_SECRET_ACCESS_KEY) or pass \
                 --secret-access-key-file FILE",
            )?,
        };
        if secret.is_empty() {
            bail!(
                "the secret access key is empty: set DSQL_LOCAL_SECRET_ACCESS_KEY or fill --secret-access-key-file"
            );
        }
        Ok(KeyPair::new(id, secret))
    }
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1:5433", env = "DSQL_LOCAL_LISTEN")]
    listen: SocketAddr,
    /// The PostgreSQL to forward to, as a URL or key=value string (its role runs every session); a
    /// host that is a directory is PostgreSQL's Unix-domain socket in it, e.g.
    /// "host=/var/run/postgresql port=5432 user=postgres dbname=postgres"
    #[arg(long, env = "DSQL_LOCAL_UPSTREAM", value_name = "URL")]
    upstream: String,
    /// Names the gateway answers to: the certificate's names and the hosts tokens may be signed for
    #[arg(long = "endpoint", value_name = "NAME", default_values_t = ["localhost".to_owned(), "127.0.0.1".to_owned()], env = "DSQL_LOCAL_ENDPOINTS", value_delimiter = ',')]
    endpoints: Vec<String>,
    /// Region tokens must be signed for
    #[arg(long, default_value = "us-east-1", env = "DSQL_LOCAL_REGION")]
    region: String,
    #[command(flatten)]
    keys: KeyArgs,
    /// Directory of the local CA and the gateway's certificate (created when missing)
    #[arg(long, value_name = "DIR", env = "DSQL_LOCAL_PKI_DIR")]
    pki_dir: PathBuf,
    /// Serve Prometheus metrics on this address
    #[arg(long, value_name = "ADDR", env = "DSQL_LOCAL_METRICS")]
    metrics: Option<SocketAddr>,
    /// New connections per second (token bucket)
    #[arg(long, default_value_t = 100.0, env = "DSQL_LOCAL_RATE")]
    rate: f64,
    /// Burst of new connections
    #[arg(long, default_value_t = 1000, env = "DSQL_LOCAL_BURST")]
    burst: u32,
    /// Open connections at most
    #[arg(long, default_value_t = 10_000, env = "DSQL_LOCAL_MAX_CONNECTIONS")]
    max_connections: u32,
    /// A connection is closed after this long, e.g. 60m
    #[arg(long, default_value = "60m", value_parser = parse_duration, env = "DSQL_LOCAL_MAX_LIFETIME")]
    max_lifetime: Duration,
    /// Rows a transaction may write
    #[arg(long, default_value_t = 3000, env = "DSQL_LOCAL_MAX_ROWS")]
    max_rows: u64,
    /// Transaction age checked at COMMIT, e.g. 300s
    #[arg(long, default_value = "300s", value_parser = parse_duration, env = "DSQL_LOCAL_MAX_TRANSACTION_AGE")]
    max_transaction_age: Duration,
    /// Bytes a write transaction may send (statement text and parameters)
    #[arg(long, default_value_t = 10 * 1024 * 1024, env = "DSQL_LOCAL_MAX_TRANSACTION_BYTES")]
    max_transaction_bytes: usize,
    /// How long a row lock may be waited for before it counts as a conflict, e.g. 10ms
    #[arg(long, default_value = "10ms", value_parser = parse_duration, env = "DSQL_LOCAL_LOCK_TIMEOUT")]
    lock_timeout: Duration,
    /// Upstream connections kept logged in, so that a client's connect skips the upstream login
    #[arg(long, default_value_t = tdsql_dsql_local::DEFAULT_SPARES, env = "DSQL_LOCAL_SPARES")]
    spares: usize,
}

#[derive(Debug, Args)]
struct PkiArgs {
    /// Directory to write ca.pem, ca-key.pem, server.pem and server-key.pem into
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// Names for the gateway's certificate
    #[arg(long = "endpoint", value_name = "NAME", required = true, value_delimiter = ',')]
    endpoints: Vec<String>,
}

#[derive(Debug, Args)]
struct TokenArgs {
    /// The host the client connects to (one of the gateway's endpoint names)
    #[arg(long, default_value = "localhost")]
    endpoint: String,
    /// Region
    #[arg(long, default_value = "us-east-1", env = "DSQL_LOCAL_REGION")]
    region: String,
    /// The role: admin gets a DbConnectAdmin token, any other DbConnect
    #[arg(long, default_value = "admin")]
    user: String,
    /// Lifetime of the token, e.g. 15m
    #[arg(long, default_value = "15m", value_parser = parse_duration)]
    expires_in: Duration,
    #[command(flatten)]
    keys: KeyArgs,
}

/// `10ms`, `300s`, `60m`, `1h`; a bare number is seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration: write e.g. 10ms, 300s, 60m or 1h"))?;
    Ok(match unit {
        "ms" => Duration::from_millis(value),
        "" | "s" => Duration::from_secs(value),
        "m" => Duration::from_secs(value * 60),
        "h" => Duration::from_secs(value * 3600),
        other => return Err(format!("unknown unit `{other}` in `{text}`: use ms, s, m or h")),
    })
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Pki(args) => {
            let (paths, change) = certs::ensure_pki(&args.dir, &args.endpoints)
                .with_context(|| format!("cannot prepare the PKI in {}", args.dir.display()))?;
            println!("{change:?}");
            println!("CA certificate: {}", paths.ca_cert.display());
            println!("server certificate: {}", paths.server_cert.display());
            Ok(())
        }
        Command::Token(args) => {
            let keys = args.keys.key_pair()?;
            let token = auth::sign_token(
                &keys,
                &args.endpoint,
                &args.region,
                Action::for_user(&args.user),
                args.expires_in,
                SystemTime::now(),
            )
            .context("cannot sign the token")?;
            println!("{token}");
            Ok(())
        }
        Command::Serve(args) => serve(*args),
        Command::Probe(args) => probe(args.addr),
    }
}

fn probe(addr: SocketAddr) -> Result<()> {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3))
        .with_context(|| format!("nothing listens on {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(3)))?;
    // An SSLRequest; the gateway answers `S` and waits for the handshake, which never comes.
    stream.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])?;
    let mut answer = [0u8; 1];
    stream.read_exact(&mut answer).with_context(|| format!("{addr} did not answer a TLS request"))?;
    if answer != *b"S" {
        bail!(
            "{addr} answered {:?} to a TLS request, not S: not a dsql-local gateway",
            char::from(answer[0])
        );
    }
    Ok(())
}

fn serve(args: ServeArgs) -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let keys = args.keys.key_pair()?;
    let mut upstream =
        UpstreamConfig::from_url(&args.upstream).context("--upstream is not a usable PostgreSQL URL")?;
    upstream.spares = args.spares;
    let limits = ConnectionLimits {
        rate_per_sec: args.rate,
        burst: args.burst,
        max_connections: args.max_connections,
        max_lifetime: args.max_lifetime,
    };
    limits.validate().context("the connection limits are not usable")?;
    let (paths, change) = certs::ensure_pki(&args.pki_dir, &args.endpoints)
        .with_context(|| format!("cannot prepare the PKI in {}", args.pki_dir.display()))?;
    let tls = certs::server_tls_config(&paths).context("cannot load the gateway's certificate")?;
    let config = GatewayConfig {
        listen: args.listen,
        upstream,
        region: args.region,
        hosts: args.endpoints,
        keys,
        tls,
        limits,
        txn: TxnLimits {
            max_rows: args.max_rows,
            max_age: args.max_transaction_age,
            max_bytes: args.max_transaction_bytes,
            lock_timeout: args.lock_timeout,
        },
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(async move {
        let gateway = Gateway::bind(config).await.context("cannot start the gateway")?;
        if let Some(addr) = args.metrics {
            tdsql_dsql_local::metrics::serve(addr, gateway.metrics())
                .await
                .with_context(|| format!("cannot serve metrics on {addr}"))?;
            tracing::info!(%addr, "metrics on /metrics");
        }
        tracing::info!(addr = %gateway.local_addr(), pki = ?change, ca = %paths.ca_cert.display(), "dsql-local is listening");
        tokio::select! {
            () = gateway.serve() => {}
            _ = tokio::signal::ctrl_c() => tracing::info!("stopping"),
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_bad_ones_say_how() {
        assert_eq!(parse_duration("10ms"), Ok(Duration::from_millis(10)));
        assert_eq!(parse_duration("300"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("60m"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("soon").unwrap_err().contains("not a duration"));
        assert!(parse_duration("5d").unwrap_err().contains("use ms, s, m or h"));
    }
}

//! What the gateway costs, in one run against the harness's PostgreSQL: a read-only workload
//! (pgbench's select-only: one primary-key lookup per transaction) directly and through the
//! gateway, by the extended and the simple protocol, with `BENCH_CLIENTS` connections (throughput)
//! and with one (latency); the gateway's CPU time per query; the connect time (TLS and the token
//! check; the upstream login comes from the gateway's spares); the gateway's memory per idle
//! connection. The gateway runs as a process of its own, as in compose, once reaching PostgreSQL
//! by TCP and once by its Unix-domain socket (as in the local profile). Beside them, a bare
//! TLS-terminating forwarder (this bench's binary in another role: TLS in, bytes copied to
//! PostgreSQL, no protocol logic) shows what any proxy process costs on this machine, the
//! ceiling a gateway could reach.
//!
//! `cargo bench -p tdsql-dsql-local --bench gateway` with the harness's services
//! (`cargo xtask test --serve`). `BENCH_SECS` (default 10) sets each run's length, `BENCH_CLIENTS`
//! (default 8) the concurrent connections.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tdsql_dsql_local::certs;

const KEY_ID: &str = "AKIDBENCH";
const SECRET: &str = "bench-secret-0123456789";
const ROWS: i32 = 100_000;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

async fn token() -> String {
    let credentials = aws_credential_types::Credentials::from_keys(KEY_ID, SECRET, None);
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(credentials)
        .load()
        .await;
    let config =
        aws_sdk_dsql::auth_token::Config::builder().hostname("localhost").expires_in(3600).build().unwrap();
    aws_sdk_dsql::auth_token::AuthTokenGenerator::new(config)
        .db_connect_admin_auth_token(&sdk)
        .await
        .unwrap()
        .to_string()
}

struct Target {
    name: &'static str,
    config: tokio_postgres::Config,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
}

impl Target {
    async fn connect(&self) -> tokio_postgres::Client {
        match &self.tls {
            Some(tls) => {
                let (client, conn) = self.config.connect(tls.clone()).await.unwrap();
                tokio::spawn(conn);
                client
            }
            None => {
                let (client, conn) = self.config.connect(tokio_postgres::NoTls).await.unwrap();
                tokio::spawn(conn);
                client
            }
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Runs the select-only workload for `secs` on `clients` connections; returns (tps, p50, p99).
async fn workload(target: &Target, clients: usize, secs: u64, simple: bool) -> (f64, Duration, Duration) {
    let mut tasks = Vec::new();
    let start = Instant::now() + Duration::from_millis(200);
    let end = start + Duration::from_secs(secs);
    for c in 0..clients {
        let client = target.connect().await;
        tasks.push(tokio::spawn(async move {
            let statement =
                client.prepare("SELECT abalance FROM bench_accounts WHERE aid = $1").await.unwrap();
            let mut latencies = Vec::new();
            let mut seed = 0x2545_f491_u32.wrapping_add(u32::try_from(c).unwrap());
            tokio::time::sleep_until(start.into()).await;
            while Instant::now() < end {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                let aid = i32::try_from(seed % u32::try_from(ROWS).unwrap()).unwrap() + 1;
                let began = Instant::now();
                if simple {
                    client
                        .simple_query(&format!("SELECT abalance FROM bench_accounts WHERE aid = {aid}"))
                        .await
                        .unwrap();
                } else {
                    client.query_one(&statement, &[&aid]).await.unwrap();
                }
                latencies.push(began.elapsed());
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all.sort_unstable();
    (all.len() as f64 / secs as f64, percentile(&all, 0.5), percentile(&all, 0.99))
}

/// CPU time (user + system) a process has used so far, from /proc.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("").split_whitespace().collect();
    let ticks: u64 = fields.get(11..13).map_or(0, |f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum());
    // Clock ticks are 1/100 s on Linux (sysconf(_SC_CLK_TCK) = 100 on every common architecture).
    Duration::from_millis(ticks * 10)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The forwarder role: answers the client's SSLRequest, terminates TLS with the bench's
/// certificate and copies bytes both ways to PostgreSQL's TCP port. Runs until killed.
async fn forwarder(listen: &str, upstream: &str, pki: &std::path::Path) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let (paths, _) = certs::ensure_pki(pki, &["localhost".to_owned()]).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(certs::server_tls_config(&paths).unwrap());
    let listener = tokio::net::TcpListener::bind(listen).await.unwrap();
    loop {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let (acceptor, upstream) = (acceptor.clone(), upstream.to_owned());
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let mut request = [0_u8; 8];
            tcp.read_exact(&mut request).await?;
            tcp.write_all(b"S").await?;
            let mut tls = acceptor.accept(tcp).await?;
            let mut server = tokio::net::TcpStream::connect(upstream).await?;
            let _ = server.set_nodelay(true);
            tokio::io::copy_bidirectional(&mut tls, &mut server).await?;
            Ok::<_, std::io::Error>(())
        });
    }
}

/// A child process, killed when dropped.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// A gateway process in front of `upstream` (a URL or key=value string).
fn spawn_gateway(upstream: &str, pki: &std::path::Path) -> (Child, std::net::SocketAddr) {
    let listen = free_addr();
    let child = Command::new(env!("CARGO_BIN_EXE_tdsql-dsql-local"))
        .args(["serve", "--listen", &listen.to_string(), "--upstream", upstream, "--access-key-id", KEY_ID])
        .args(["--endpoint", "localhost", "--rate", "100000", "--burst", "100000"])
        .arg("--pki-dir")
        .arg(pki)
        .env("DSQL_LOCAL_SECRET_ACCESS_KEY", SECRET)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    (Child(child), listen)
}

async fn wait_listening(addr: std::net::SocketAddr) {
    for _ in 0..200 {
        if std::net::TcpStream::connect(addr).is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nothing listens on {addr}");
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    if let (Ok(listen), Ok(upstream), Ok(pki)) = (
        std::env::var("BENCH_FORWARDER_LISTEN"),
        std::env::var("BENCH_FORWARDER_UPSTREAM"),
        std::env::var("BENCH_FORWARDER_PKI"),
    ) {
        return forwarder(&listen, &upstream, std::path::Path::new(&pki)).await;
    }
    let secs = env_or("BENCH_SECS", 10);
    let clients = usize::try_from(env_or("BENCH_CLIENTS", 8)).unwrap();
    let upstream = tdsql_test_support::fresh_database("bench_gateway").await;
    let setup = tdsql_test_support::connect(&upstream).await;
    setup
        .batch_execute(&format!(
            "CREATE TABLE bench_accounts (aid int PRIMARY KEY, bid int, abalance int, filler char(84));
             INSERT INTO bench_accounts SELECT g, 1, 0, '' FROM generate_series(1, {ROWS}) g; ANALYZE bench_accounts"
        ))
        .await
        .unwrap();
    let url = format!(
        "postgres://{}:{}@127.0.0.1:{}/{}",
        upstream.get_user().unwrap(),
        String::from_utf8_lossy(upstream.get_password().unwrap()),
        upstream.get_ports()[0],
        upstream.get_dbname().unwrap()
    );
    let pki = std::env::temp_dir().join(format!("dsql-local-bench-{}", std::process::id()));
    let (paths, _) = certs::ensure_pki(&pki, &["localhost".to_owned()]).unwrap();
    let socket_url = tdsql_test_support::unix_socket_url(&upstream).await;

    // The gateway as it runs in compose: a process of its own (its CPU and memory are its own).
    let (gateway_tcp, tcp_addr) = spawn_gateway(&url, &pki);
    let (gateway_unix, unix_addr) = spawn_gateway(&socket_url, &pki);
    let forward_addr = free_addr();
    let forwarder = Child(
        Command::new(std::env::current_exe().unwrap())
            .env("BENCH_FORWARDER_LISTEN", forward_addr.to_string())
            .env("BENCH_FORWARDER_UPSTREAM", format!("127.0.0.1:{}", upstream.get_ports()[0]))
            .env("BENCH_FORWARDER_PKI", &pki)
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    for addr in [tcp_addr, unix_addr, forward_addr] {
        wait_listening(addr).await;
    }
    let tls =
        tokio_postgres_rustls::MakeRustlsConnect::new(certs::client_tls_config(&paths.ca_cert).unwrap());
    let token = token().await;
    let through = |port: u16| {
        let mut config = tokio_postgres::Config::new();
        config.host("localhost").port(port).user("admin").dbname("postgres").password(&token);
        config.ssl_mode(tokio_postgres::config::SslMode::Require);
        config
    };
    // The forwarder passes the startup through: PostgreSQL's own role, database and password.
    let mut forwarded = upstream.clone();
    forwarded.host("localhost").port(forward_addr.port()).ssl_mode(tokio_postgres::config::SslMode::Require);
    let direct = Target { name: "direct", config: upstream.clone(), tls: None };
    let gated = Target { name: "gateway", config: through(tcp_addr.port()), tls: Some(tls.clone()) };
    let proxies = [
        (Target { name: "forwarder", config: forwarded, tls: Some(tls.clone()) }, forwarder.0.id()),
        (
            Target { name: "gateway", config: through(tcp_addr.port()), tls: Some(tls.clone()) },
            gateway_tcp.0.id(),
        ),
        (
            Target { name: "gw-unix", config: through(unix_addr.port()), tls: Some(tls.clone()) },
            gateway_unix.0.id(),
        ),
    ];
    let gateway_pid = gateway_tcp.0.id();

    println!(
        "select-only, {secs} s per run (2-core machine shared by client, gateway and server; figures are indicative)"
    );
    for simple in [false, true] {
        let protocol = if simple { "simple" } else { "extended" };
        for n in [clients, 1] {
            let (d_tps, d_p50, d_p99) = workload(&direct, n, secs, simple).await;
            println!(
                "  {protocol:8} {n} conn {:9} {d_tps:9.0} tps  p50 {d_p50:>10.1?}  p99 {d_p99:>10.1?}",
                direct.name
            );
            for (target, pid) in &proxies {
                let cpu_before = cpu_time(*pid);
                let (tps, p50, p99) = workload(target, n, secs, simple).await;
                let cpu = cpu_time(*pid).saturating_sub(cpu_before);
                println!(
                    "  {protocol:8} {n} conn {:9} {tps:9.0} tps  p50 {p50:>10.1?}  p99 {p99:>10.1?}  \
                     {:.0} % of direct, added p50 {:.1?}, added p99 {:.1?}, its CPU {:.1} µs per query",
                    target.name,
                    100.0 * tps / d_tps,
                    p50.saturating_sub(d_p50),
                    p99.saturating_sub(d_p99),
                    cpu.as_secs_f64() * 1e6 / (tps * secs as f64)
                );
            }
        }
    }

    let mut connects = Vec::new();
    let mut direct_connects = Vec::new();
    for _ in 0..50 {
        let began = Instant::now();
        drop(gated.connect().await);
        connects.push(began.elapsed());
        let began = Instant::now();
        drop(direct.connect().await);
        direct_connects.push(began.elapsed());
    }
    connects.sort_unstable();
    direct_connects.sort_unstable();
    println!(
        "connect through the gateway (TLS + token check; the upstream login is a spare made ahead): median {:?}, p99 {:?}; direct (SCRAM, no TLS): median {:?}",
        percentile(&connects, 0.5),
        percentile(&connects, 0.99),
        percentile(&direct_connects, 0.5)
    );

    // Memory per idle connection.
    let warm: Vec<_> = futures_util::future::join_all((0..5).map(|_| gated.connect())).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss_kib(gateway_pid);
    let idle = 60;
    let mut held = Vec::new();
    for _ in 0..idle {
        held.push(gated.connect().await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib(gateway_pid);
    println!(
        "gateway process RSS {before} KiB with 5 connections, {after} KiB with {} : {:.1} KiB per idle connection",
        idle + 5,
        (after.saturating_sub(before)) as f64 / f64::from(idle)
    );
    drop(held);
    drop(warm);
    drop((gateway_tcp, gateway_unix, forwarder));
    let _ = std::fs::remove_dir_all(&pki);
}

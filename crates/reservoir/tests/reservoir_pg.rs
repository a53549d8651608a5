//! The reservoir over the real connector and a real PostgreSQL: the harness's server (each test in
//! its own database), and for the restart test a private server this test starts and stops.

use std::collections::HashSet;
use std::net::TcpListener;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tdsql_reservoir::metrics::MetricKind;
use tdsql_reservoir::retry::TxError;
use tdsql_reservoir::{
    ConnectConfig, ConnectError, Connector, IamTokenConfig, IamTokenProvider, METRIC_FAMILIES, Metrics,
    PgConnection, PgConnector, Reservoir, ReservoirConfig, RetryConfig, RetryPolicy, StaticPassword,
};
use tdsql_test_support::{connect, fresh_database, pg_config};

mod common;
use common::local;
use tokio::time::Instant;

fn quick(target: usize) -> ReservoirConfig {
    ReservoirConfig {
        target_ready: target,
        expiry_scan_interval: Duration::from_millis(100),
        failure_backoff: Duration::from_millis(100),
        max_failure_backoff: Duration::from_secs(1),
        connect_rate: 100.0,
        connect_burst: 20,
        ..ReservoirConfig::default()
    }
}

async fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn backend_pid(conn: &PgConnection) -> i32 {
    conn.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn fills_checks_out_and_returns_real_connections() {
    let (settings, password) = local(&fresh_database("reservoir_fill").await);
    let tasks = || tokio::runtime::Handle::current().metrics().num_alive_tasks();
    let before = tasks();
    let connector = PgConnector::new(settings, Arc::new(password)).unwrap();
    let reservoir = Reservoir::builder(connector).config(quick(4)).build().unwrap();
    reservoir.ready(4, Duration::from_secs(20)).await.unwrap();
    let pid = {
        let conn = reservoir.checkout().await.unwrap();
        let n: i32 = conn.query_one("SELECT 41 + 1", &[]).await.unwrap().get(0);
        assert_eq!(n, 42);
        assert_eq!(reservoir.status().in_use, 1);
        backend_pid(&conn).await
    };
    // The checkout took the reservoir under its ready target, so the refiller may be opening a
    // fifth connection, which can land before or after the return: count only once it is settled.
    wait_for("the refiller to settle", Duration::from_secs(20), || reservoir.status().connecting == 0).await;
    let (status, stats) = (reservoir.status(), reservoir.statistics());
    assert_eq!(status.in_use, 0);
    assert!((4..=5).contains(&stats.refills), "{stats:?}");
    let discarded = stats.discarded_broken + stats.discarded_lifetime + stats.discarded_other;
    assert_eq!((status.ready, discarded), (usize::try_from(stats.refills).unwrap(), 0), "{stats:?}");
    // The returned connection itself is among the ready ones, not closed and replaced.
    let held = futures_all(&reservoir, status.ready).await;
    let mut pids = HashSet::new();
    for conn in &held {
        pids.insert(backend_pid(conn).await);
    }
    assert!(pids.contains(&pid), "the returned connection ({pid}) is not among the ready ones {pids:?}");
    drop(held);
    assert!(tasks() > before);
    reservoir.close().await;
    // The refiller and every connection's driver task end with it.
    wait_for("every task to end", Duration::from_secs(10), || tasks() <= before).await;
}

#[tokio::test]
async fn connections_killed_by_the_server_are_discarded_and_refilled() {
    let db = fresh_database("reservoir_kill").await;
    let dbname = db.get_dbname().unwrap().to_owned();
    let (settings, password) = local(&db);
    let connector = PgConnector::new(settings, Arc::new(password)).unwrap();
    let reservoir = Reservoir::builder(connector).config(quick(4)).build().unwrap();
    reservoir.ready(4, Duration::from_secs(20)).await.unwrap();
    {
        // Used once, so they are real, working connections.
        let held: Vec<_> = futures_all(&reservoir, 4).await;
        for conn in &held {
            backend_pid(conn).await;
        }
    }
    wait_for("the refiller to settle", Duration::from_secs(20), || reservoir.status().connecting == 0).await;

    let admin = connect(&pg_config()).await;
    let rows = admin
        .query("SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", &[&dbname])
        .await
        .unwrap();
    let old: HashSet<i32> = rows.iter().map(|r| r.get(0)).collect();
    assert!(old.len() >= 4, "expected the reservoir's connections, found {old:?}");
    let killed = u64::try_from(old.len()).unwrap();

    wait_for("the killed connections to be replaced", Duration::from_secs(20), || {
        reservoir.statistics().discarded_broken >= killed && reservoir.status().ready >= 4
    })
    .await;
    let held: Vec<_> = futures_all(&reservoir, 4).await;
    for conn in &held {
        let pid = backend_pid(conn).await;
        assert!(!old.contains(&pid), "a killed connection ({pid}) was handed out");
    }
}

/// Checks out `n` connections at once.
async fn futures_all<C: Connector>(reservoir: &Reservoir<C>, n: usize) -> Vec<tdsql_reservoir::Conn<C>> {
    let mut held = Vec::new();
    for _ in 0..n {
        held.push(reservoir.checkout().await.unwrap());
    }
    held
}

/// The real connector, noting when each connect starts.
#[derive(Debug)]
struct Recording {
    inner: PgConnector,
    starts: Arc<Mutex<Vec<Instant>>>,
}

impl Connector for Recording {
    type Connection = PgConnection;
    type Error = ConnectError;

    async fn connect(&self) -> Result<PgConnection, ConnectError> {
        self.starts.lock().unwrap().push(Instant::now());
        self.inner.connect().await
    }

    fn is_broken(&self, connection: &PgConnection) -> bool {
        self.inner.is_broken(connection)
    }
}

/// Ten seconds of churn (lifetimes of about a second, checkouts running all along): in no
/// one-second window do more connects start than rate + burst.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_never_exceeds_rate_plus_burst_in_any_second() {
    let (settings, password) = local(&fresh_database("reservoir_churn").await);
    let starts = Arc::new(Mutex::new(Vec::new()));
    let connector =
        Recording { inner: PgConnector::new(settings, Arc::new(password)).unwrap(), starts: starts.clone() };
    let config = ReservoirConfig {
        target_ready: 6,
        base_lifetime: Duration::from_millis(1000),
        lifetime_jitter: Duration::from_millis(500),
        guard_window: Duration::from_millis(200),
        expiry_scan_interval: Duration::from_millis(50),
        connect_rate: 10.0,
        connect_burst: 5,
        max_concurrent_connects: 8,
        failure_backoff: Duration::from_millis(50),
        ..ReservoirConfig::default()
    };
    let reservoir = Reservoir::builder(connector).config(config).build().unwrap();
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..4 {
        let reservoir = reservoir.clone();
        workers.push(tokio::spawn(async move {
            let mut served = 0_u32;
            while started.elapsed() < Duration::from_secs(10) {
                if let Ok(conn) = reservoir.checkout().await {
                    conn.simple_query("SELECT 1").await.unwrap();
                    served += 1;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            served
        }));
    }
    let mut served = 0;
    for worker in workers {
        served += worker.await.unwrap();
    }
    reservoir.close().await;
    let starts = starts.lock().unwrap().clone();
    // About ten connections living 0.8..1.3 s each over 10 s: the set must have turned over at least
    // twice (fewer than the ideal ~80 on a loaded machine, where each SCRAM connect costs CPU).
    assert!(starts.len() >= 20, "expected many connects from churn, got {}", starts.len());
    // Checkouts went on during the churn (their rate depends on the machine's load).
    assert!(served >= 20, "the workers were served only {served} times: {:?}", reservoir.statistics());
    for (i, first) in starts.iter().enumerate() {
        let in_window = starts[i..].iter().take_while(|t| **t - *first < Duration::from_secs(1)).count();
        assert!(
            in_window <= 15,
            "{in_window} connects started within 1 s of connect {i} (rate 10 + burst 5)"
        );
    }
}

/// Every metric family the crate declares is exported, under exactly those names.
#[tokio::test]
async fn the_exposition_has_every_declared_family_and_no_other() {
    let metrics = Metrics::new();
    let db = fresh_database("reservoir_metrics").await;
    let (settings, password) = local(&db);
    let connector = PgConnector::new(settings.clone(), Arc::new(password)).unwrap();
    let reservoir = Reservoir::builder(connector).config(quick(2)).metrics(metrics.clone()).build().unwrap();
    reservoir.ready(2, Duration::from_secs(20)).await.unwrap();
    let mut conn = reservoir.checkout().await.unwrap();
    // Retries, exhaustion, error classes, backoff and latency.
    let policy = RetryPolicy::new(RetryConfig {
        max_retries: 1,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(1),
        jitter: 0.0,
    })
    .unwrap()
    .with_metrics(metrics.clone());
    let result = policy
        .transaction(conn.client(), "conflicts", |tx| async move {
            tx.batch_execute("DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = '40001'; END $$")
                .await?;
            Ok::<_, TxError>(())
        })
        .await;
    assert!(result.is_err());
    conn.mark_broken(); // a discard
    drop(conn);
    // A refill failure: a reservoir whose password is wrong, counting into the same metrics.
    let denied = PgConnector::new(settings, Arc::new(StaticPassword::new("wrong"))).unwrap();
    let failing = Reservoir::builder(denied).config(quick(1)).metrics(metrics.clone()).build().unwrap();
    wait_for("a failed connect", Duration::from_secs(10), || failing.statistics().refill_failures > 0).await;
    // Token metrics.
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_credential_types::Credentials::from_keys("AKIDEXAMPLE", "secret", None))
        .load()
        .await;
    let tokens =
        IamTokenProvider::new(&sdk, IamTokenConfig::new("x.dsql.us-east-1.on.aws", "admin"), metrics.clone())
            .unwrap();
    tdsql_reservoir::TokenProvider::password(&tokens).await.unwrap();
    tdsql_reservoir::TokenProvider::password(&tokens).await.unwrap();

    let text = metrics.encode();
    let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    let name_of = |line: &str| line.split(['{', ' ']).next().unwrap_or_default().to_owned();
    let exported: HashSet<String> = samples.iter().map(|l| name_of(l)).collect();
    let mut declared = HashSet::new();
    for family in METRIC_FAMILIES {
        for series in family.series() {
            assert!(exported.contains(&series), "{series} is declared but not exported:\n{text}");
            declared.insert(series);
        }
        if family.kind == MetricKind::Histogram {
            assert!(family.name.ends_with("_milliseconds"), "{}", family.name);
        }
        for label in family.labels {
            let prefix = family.series()[0].clone();
            assert!(
                samples
                    .iter()
                    .any(|l| l.starts_with(&format!("{prefix}{{")) && l.contains(&format!("{label}=\""))),
                "{prefix} has no label {label}:\n{text}"
            );
        }
    }
    let undeclared: Vec<_> = exported.difference(&declared).collect();
    assert!(undeclared.is_empty(), "exported but not declared in METRIC_FAMILIES: {undeclared:?}");
    for name in [
        "dsql_reservoir_size",
        "dsql_reservoir_target",
        "dsql_reservoir_checkouts_total",
        "dsql_reservoir_empty_total",
        "dsql_reservoir_discards_total",
        "dsql_reservoir_refills_total",
        "dsql_reservoir_refill_failures_total",
        "dsql_reservoir_checkout_latency_milliseconds_bucket",
        "dsql_refiller_inflight",
        "dsql_tx_conflict_total",
        "dsql_tx_retry_total",
        "dsql_tx_exhausted_total",
        "dsql_token_cache_hits_total",
        "dsql_token_cache_misses_total",
        "dsql_token_refreshes_total",
        "dsql_token_refresh_failures_total",
    ] {
        assert!(exported.contains(name), "the issue's metric {name} is missing:\n{text}");
    }
    assert!(text.contains("dsql_reservoir_target 3\n"), "two reservoirs (2 + 1) add up:\n{text}");
    failing.close().await;
    reservoir.close().await;
}

/// A PostgreSQL of this test's own, on a free port, so it can be stopped and started again.
struct PrivatePg {
    bindir: PathBuf,
    dir: PathBuf,
    port: u16,
    user: Option<(u32, u32)>,
    server: Option<Child>,
}

impl PrivatePg {
    /// The server binaries the harness found (`TDSQL_PG_BINDIR`).
    fn bindir() -> PathBuf {
        PathBuf::from(tdsql_test_support::require_env(
            "TDSQL_PG_BINDIR",
            "local PostgreSQL server binaries for the restart test",
        ))
    }

    /// The `postgres` OS user when running as root (initdb and postgres refuse root).
    fn os_user() -> Option<(u32, u32)> {
        use std::os::unix::fs::MetadataExt as _;
        if std::fs::metadata("/proc/self").map(|m| m.uid()).ok()? != 0 {
            return None;
        }
        let passwd = std::fs::read_to_string("/etc/passwd").expect("reading /etc/passwd");
        let found = passwd.lines().find_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            (f.first() == Some(&"postgres") && f.len() > 3)
                .then(|| (f[2].parse().unwrap(), f[3].parse().unwrap()))
        });
        Some(found.expect(
            "running as root: the restart test needs a `postgres` OS user (useradd --system postgres)",
        ))
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bindir.join(program));
        cmd.current_dir(&self.dir).stdin(Stdio::null());
        if let Some((uid, gid)) = self.user {
            cmd.uid(uid).gid(gid);
        }
        cmd
    }

    fn create() -> Self {
        let port = TcpListener::bind(("127.0.0.1", 0)).unwrap().local_addr().unwrap().port();
        let dir =
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("pg-restart-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let user = Self::os_user();
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
        }
        let pg = Self { bindir: Self::bindir(), dir, port, user, server: None };
        let out = pg
            .command("initdb")
            .args(["-D", "data", "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"])
            .output()
            .expect("running initdb");
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        pg
    }

    async fn start(&mut self) {
        let log = std::fs::File::create(self.dir.join(format!("postgres-{}.log", self.port))).unwrap();
        let socket_dir = format!("unix_socket_directories={}", self.dir.display());
        let port = self.port.to_string();
        let child = self
            .command("postgres")
            .args(["-D", "data", "-p", &port, "-c", "listen_addresses=127.0.0.1", "-c", &socket_dir])
            .args(["-c", "fsync=off", "-c", "max_connections=50"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting postgres");
        self.server = Some(child);
        let mut config = tokio_postgres::Config::new();
        config.host("127.0.0.1").port(self.port).user("postgres").dbname("postgres");
        let deadline = Instant::now() + Duration::from_secs(30);
        while config.connect(tokio_postgres::NoTls).await.is_err() {
            assert!(
                Instant::now() < deadline,
                "the private postgres did not start; see {}",
                self.dir.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn stop(&mut self) {
        let out = self.command("pg_ctl").args(["stop", "-D", "data", "-m", "fast", "-w"]).output();
        if let Some(mut child) = self.server.take() {
            if !out.is_ok_and(|o| o.status.success()) {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn recovers_by_itself_after_postgres_restarts() {
    let mut pg = PrivatePg::create();
    pg.start().await;
    let settings = ConnectConfig::local("127.0.0.1", pg.port, "postgres", "postgres");
    let connector = PgConnector::new(settings, Arc::new(StaticPassword::none())).unwrap();
    let reservoir = Reservoir::builder(connector).config(quick(3)).build().unwrap();
    reservoir.ready(3, Duration::from_secs(20)).await.unwrap();
    reservoir.checkout().await.unwrap().simple_query("SELECT 1").await.unwrap();

    pg.stop();
    wait_for("the dead connections to be discarded", Duration::from_secs(20), || {
        reservoir.status().ready == 0 && reservoir.statistics().refill_failures > 0
    })
    .await;
    let err = reservoir.checkout().await.unwrap_err().to_string();
    assert!(err.contains("last connect error"), "{err}");

    pg.start().await;
    reservoir.ready(3, Duration::from_secs(30)).await.unwrap();
    let conn = reservoir.checkout().await.unwrap();
    conn.simple_query("SELECT 1").await.unwrap();
    let stats = reservoir.statistics();
    assert!(stats.discarded_broken >= 3, "{stats:?}");
    assert!(stats.refills >= 6, "{stats:?}");
    drop(conn);
    reservoir.close().await;
}

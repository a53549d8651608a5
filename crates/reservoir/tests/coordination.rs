//! The DynamoDB coordination (feature `coordination`) against moto: the harness's shared server
//! (each test with a table of its own) and, for the outage test, a private one it stops and
//! restarts. Reservoirs connect to the harness's PostgreSQL.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::types::AttributeValue;
use tdsql_reservoir::coordination::{
    ConnLeaseConfig, DynamoConnLease, DynamoRateLimiter, FallbackConfig, Mode, RateLimiterConfig,
};
use tdsql_reservoir::metrics::RefillFailure;
use tdsql_reservoir::{
    ConnectError, ConnectLimiter, Connector, LeaseHook, LimitError, Metrics, PgConnection, PgConnector,
    Reservoir, ReservoirConfig,
};
use tdsql_test_support::{PrivateMoto, aws_config_at, aws_endpoint, fresh_database};
use tokio::time::Instant;

mod common;
#[path = "common/dynamo.rs"]
mod dynamo;
use common::local;

const ENDPOINT: &str = "abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws";

/// A DynamoDB client of its own (as each process has), with few SDK retries so an outage shows fast.
async fn client(endpoint: &str) -> Client {
    let sdk = aws_config_at("us-east-1", endpoint).await;
    let config = aws_sdk_dynamodb::config::Builder::from(&sdk)
        .retry_config(RetryConfig::standard().with_max_attempts(2));
    Client::from_conf(config.build())
}

/// A table like `terraform/shared` creates: `pk` S, on demand, TTL on `ttl_epoch`.
async fn create_table(client: &Client, label: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let name = format!("coord-{label}-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
    create_named(client, &name).await;
    name
}

async fn create_named(client: &Client, name: &str) {
    dynamo::create_coordination_table(client, name).await;
}

/// Quick probes; a call timeout that a loaded shared moto stays within (the outage test, on a
/// private moto, shortens it).
fn fallback(expected_processes: u32) -> FallbackConfig {
    FallbackConfig {
        expected_processes,
        probe_interval: Duration::from_millis(300),
        call_timeout: Duration::from_secs(3),
    }
}

fn rate_config(table: &str, rate: f64, burst: u32) -> RateLimiterConfig {
    RateLimiterConfig {
        rate,
        burst,
        batch: 3,
        spare_ttl: Duration::from_millis(100),
        max_wait: Duration::from_secs(10),
        fallback: fallback(4),
        ..RateLimiterConfig::new(table, ENDPOINT)
    }
}

fn lease_config(table: &str, limit: u32) -> ConnLeaseConfig {
    ConnLeaseConfig {
        limit,
        holder_ttl: Duration::from_millis(1500),
        heartbeat_interval: Duration::from_millis(300),
        repair_interval: Duration::from_millis(300),
        ttl_grace: Duration::from_secs(60),
        fallback: fallback(4),
        ..ConnLeaseConfig::new(table, ENDPOINT)
    }
}

/// The largest number of instants in any one-second window.
fn max_per_second(times: &mut [Instant]) -> usize {
    times.sort_unstable();
    (0..times.len())
        .map(|i| times[i..].iter().take_while(|t| **t < times[i] + Duration::from_secs(1)).count())
        .max()
        .unwrap_or(0)
}

/// A metric's value from the exposition.
fn metric(metrics: &Metrics, name: &str) -> f64 {
    let text = metrics.encode();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in the exposition:\n{text}"))
}

async fn wait_for(what: &str, limit: Duration, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done().await {
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What the counting connector saw: connect starts, and connections open now and at most.
#[derive(Default)]
struct Log {
    starts: Mutex<Vec<Instant>>,
    open: AtomicUsize,
    max_open: AtomicUsize,
}

/// The real connector, counting connects and open connections across every reservoir.
struct Counted {
    inner: PgConnector,
    log: Arc<Log>,
}

struct CountedConn {
    conn: PgConnection,
    log: Arc<Log>,
}

impl Drop for CountedConn {
    fn drop(&mut self) {
        self.log.open.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Connector for Counted {
    type Connection = CountedConn;
    type Error = ConnectError;

    async fn connect(&self) -> Result<CountedConn, ConnectError> {
        self.log.starts.lock().unwrap().push(Instant::now());
        let conn = self.inner.connect().await?;
        let open = self.log.open.fetch_add(1, Ordering::SeqCst) + 1;
        self.log.max_open.fetch_max(open, Ordering::SeqCst);
        Ok(CountedConn { conn, log: self.log.clone() })
    }

    fn is_broken(&self, connection: &CountedConn) -> bool {
        self.inner.is_broken(&connection.conn)
    }

    fn failure_reason(&self, error: &ConnectError) -> RefillFailure {
        self.inner.failure_reason(error)
    }
}

fn counted(db: &tokio_postgres::Config, log: &Arc<Log>) -> Counted {
    let (settings, password) = local(db);
    Counted { inner: PgConnector::new(settings, Arc::new(password)).unwrap(), log: log.clone() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_reservoirs_share_the_connect_budget_and_the_connection_cap() {
    const RATE: f64 = 5.0;
    const BURST: u32 = 5;
    const CAP: u32 = 8;
    let db = fresh_database("coord_share").await;
    let table = create_table(&client(&aws_endpoint()).await, "share").await;
    let log = Arc::new(Log::default());
    let metrics = Metrics::new();
    let mut reservoirs = Vec::new();
    let mut hooks = Vec::new();
    // Three "processes", each with its own client, limiter and lease hook; 12 connections wanted.
    for _ in 0..3 {
        let dynamo = client(&aws_endpoint()).await;
        let limiter =
            DynamoRateLimiter::new(dynamo.clone(), rate_config(&table, RATE, BURST), metrics.clone())
                .unwrap();
        // Holders are not taken for vanished while the machine is loaded: a heartbeat late by more
        // than holder_ttl has its leases reclaimed and, the cap being full, revoked.
        let lease = ConnLeaseConfig {
            holder_ttl: Duration::from_secs(20),
            heartbeat_interval: Duration::from_secs(1),
            ..lease_config(&table, CAP)
        };
        let hook = Arc::new(DynamoConnLease::new(dynamo, lease, metrics.clone()).unwrap());
        let config = ReservoirConfig {
            target_ready: 4,
            base_lifetime: Duration::from_secs(3),
            lifetime_jitter: Duration::from_secs(1),
            guard_window: Duration::from_millis(200),
            expiry_scan_interval: Duration::from_millis(50),
            failure_backoff: Duration::from_millis(50),
            max_failure_backoff: Duration::from_millis(200),
            ..ReservoirConfig::default()
        };
        let reservoir = Reservoir::builder(counted(&db, &log))
            .config(config)
            .limiter(Arc::new(limiter))
            .lease_hook(hook.clone())
            .build()
            .unwrap();
        reservoirs.push(reservoir);
        hooks.push(hook);
    }
    let started = Instant::now();
    let mut peak_active = 0;
    while started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        // A read that a loaded moto answers late is skipped.
        if let Ok(active) = hooks[0].active().await {
            peak_active = peak_active.max(active);
        }
    }
    let mut starts = log.starts.lock().unwrap().clone();
    let max_open = log.max_open.load(Ordering::SeqCst);
    let busiest = max_per_second(&mut starts);
    println!(
        "connects: {} in 10 s, busiest second {busiest}; open at most {max_open}; counter at most {peak_active}",
        starts.len()
    );
    // A "process" that could not reach DynamoDB in time (a loaded machine) adds its local share
    // on top, by design: rate / 4 + burst / 4 permits, CAP / 4 leases.
    let rate_fallbacks = metric(&metrics, "dsql_distributed_rate_limiter_fallbacks_total") as usize;
    let lease_fallbacks = metric(&metrics, "dsql_distributed_conn_lease_fallbacks_total") as usize;
    if rate_fallbacks + lease_fallbacks > 0 {
        println!("fallbacks on this loaded machine: limiter {rate_fallbacks}, lease {lease_fallbacks}");
    }
    let rate_bound = RATE as usize + BURST as usize + rate_fallbacks * (RATE as usize / 4 + 2);
    let cap_bound = CAP as usize + lease_fallbacks * (CAP as usize / 4);
    assert!(busiest <= rate_bound, "{busiest} connects in one second: over rate + burst");
    assert!(max_open <= cap_bound, "{max_open} connections open at once: over the cap of {CAP}");
    assert!(peak_active <= u64::from(CAP), "the counter reached {peak_active}");
    // Both limits bound: the cap was reached and refused more; connections were replaced as they
    // expired, within the rate.
    assert!(max_open >= CAP as usize, "the cap was never reached, so the test shows nothing");
    assert!(metric(&metrics, "dsql_distributed_conn_lease_denied_total") > 0.0);
    assert!(starts.len() >= 3 * CAP as usize / 2, "only {} connects in 10 s", starts.len());
    for reservoir in &reservoirs {
        reservoir.close().await;
    }
    // Every lease comes back (connects aborted by the close give theirs back on their own tasks).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let active = hooks[0].active().await.map_err(|e| e.to_string());
        if active == Ok(0) && hooks.iter().all(|h| h.mode() == Mode::Shared) {
            break;
        }
        let errors: Vec<_> = hooks.iter().map(|h| h.last_error()).collect();
        assert!(
            Instant::now() < deadline,
            "30 s after close: counter {active:?}, hooks {hooks:?}, last errors {errors:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_limiters_never_exceed_rate_plus_burst() {
    const RATE: f64 = 20.0;
    const BURST: u32 = 10;
    let table = create_table(&client(&aws_endpoint()).await, "rate").await;
    let metrics = Metrics::new();
    let grants = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = tokio::task::JoinSet::new();
    let mut limiters = Vec::new();
    for _ in 0..4 {
        let limiter = Arc::new(
            DynamoRateLimiter::new(
                client(&aws_endpoint()).await,
                rate_config(&table, RATE, BURST),
                metrics.clone(),
            )
            .unwrap(),
        );
        limiters.push(limiter.clone());
        for _ in 0..4 {
            let (limiter, grants) = (limiter.clone(), grants.clone());
            tasks.spawn(async move {
                let until = Instant::now() + Duration::from_secs(5);
                while Instant::now() < until {
                    limiter.acquire().await.unwrap();
                    grants.lock().unwrap().push(Instant::now());
                }
            });
        }
    }
    while tasks.join_next().await.is_some() {}
    let mut grants = grants.lock().unwrap().clone();
    let trips: u64 = limiters.iter().map(|l| l.round_trips()).sum();
    let busiest = max_per_second(&mut grants);
    // A limiter that could not reach DynamoDB in time (a loaded machine) adds its local share on
    // top, by design: rate / 4 + burst / 4 permits per second while it is in fallback.
    let fallbacks = metric(&metrics, "dsql_distributed_rate_limiter_fallbacks_total") as usize;
    println!(
        "{} permits in 5 s, busiest second {busiest}, {trips} DynamoDB requests, {fallbacks} fallbacks",
        grants.len()
    );
    let bound = RATE as usize + BURST as usize + fallbacks * (RATE as usize / 4 + BURST as usize / 4 + 1);
    assert!(busiest <= bound, "{busiest} permits in one second ({fallbacks} fallbacks)");
    // The shared budget is used, not starved: at least 70 % of rate × 5 s.
    assert!(grants.len() as f64 >= 0.7 * RATE * 5.0, "only {} permits in 5 s", grants.len());
    assert!(trips < grants.len() as u64 * 3, "{trips} requests for {} permits", grants.len());
}

#[tokio::test]
async fn a_vanished_holders_leases_expire_and_the_count_comes_back() {
    let table = create_table(&client(&aws_endpoint()).await, "vanish").await;
    let metrics = Metrics::new();
    // Ten heartbeats per holder_ttl: a loaded machine does not make a live holder look vanished.
    let config = ConnLeaseConfig { holder_ttl: Duration::from_secs(3), ..lease_config(&table, 5) };
    let survivor =
        DynamoConnLease::new(client(&aws_endpoint()).await, config.clone(), metrics.clone()).unwrap();
    let vanished =
        DynamoConnLease::new(client(&aws_endpoint()).await, config.clone(), Metrics::new()).unwrap();
    for _ in 0..3 {
        vanished.acquire().await.unwrap();
    }
    let mut mine = Vec::new();
    for _ in 0..2 {
        mine.push(survivor.acquire().await.unwrap());
    }
    assert!(matches!(survivor.acquire().await, Err(LimitError::Denied(_))), "the cap of 5 is full");
    assert_eq!(survivor.active().await.unwrap(), 5);
    // Renewed while held: well past holder_ttl, the holder's leases are still there.
    tokio::time::sleep(config.holder_ttl * 2).await;
    assert_eq!(survivor.active().await.unwrap(), 5);
    // The holder goes away without releasing anything (a crash).
    drop(vanished);
    let gone = Instant::now();
    wait_for("the vanished holder's slots", Duration::from_secs(15), async || {
        match survivor.acquire().await {
            Ok(lease) => {
                mine.push(lease);
                mine.len() == 5
            }
            Err(_) => false,
        }
    })
    .await;
    println!(
        "slots back {:?} after the holder vanished (holder_ttl {:?})",
        gone.elapsed(),
        config.holder_ttl
    );
    assert_eq!(survivor.active().await.unwrap(), 5);
    assert!(metric(&metrics, "dsql_distributed_conn_lease_repairs_total") >= 3.0);
    for lease in mine {
        survivor.release(lease).await;
    }
    assert_eq!(survivor.active().await.unwrap(), 0);
    assert_eq!(survivor.held(), 0);
    survivor.shutdown().await;
}

/// A holder that was only slow (a repair pass took it for vanished and handed its slots to
/// another process) counts its leases again within the cap: the ones that no longer fit are
/// revoked, and its reservoir closes their connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_taken_for_vanished_comes_back_within_the_cap() {
    const CAP: u32 = 3;
    let db = fresh_database("coord_revoke").await;
    let dynamo = client(&aws_endpoint()).await;
    let table = create_table(&dynamo, "revoke").await;
    // The other process repairs every 300 ms and takes leases 1.5 s old without a holder as lost.
    let other =
        DynamoConnLease::new(client(&aws_endpoint()).await, lease_config(&table, CAP), Metrics::new())
            .unwrap();
    // The slow one beats its heart at start and then only after 10 s.
    let metrics = Metrics::new();
    let slow_config = ConnLeaseConfig {
        holder_ttl: Duration::from_secs(30),
        heartbeat_interval: Duration::from_secs(10),
        ..lease_config(&table, CAP)
    };
    let slow =
        Arc::new(DynamoConnLease::new(client(&aws_endpoint()).await, slow_config, metrics.clone()).unwrap());
    let log = Arc::new(Log::default());
    let config = ReservoirConfig {
        target_ready: CAP as usize,
        expiry_scan_interval: Duration::from_millis(100),
        failure_backoff: Duration::from_millis(50),
        max_failure_backoff: Duration::from_millis(200),
        ..ReservoirConfig::default()
    };
    let reservoir = Reservoir::builder(counted(&db, &log))
        .config(config)
        .lease_hook(slow.clone())
        .metrics(metrics.clone())
        .build()
        .unwrap();
    reservoir.ready(CAP as usize, Duration::from_secs(30)).await.unwrap();
    assert_eq!(other.active().await.unwrap(), u64::from(CAP));
    let renewals = metric(&metrics, "dsql_distributed_conn_lease_renewals_total");
    // Past the other's holder_ttl, the slow holder's item disappears (what a repair pass does to
    // a holder whose heartbeat is late), and the other process reclaims the slots and takes two.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    dynamo
        .delete_item()
        .table_name(&table)
        .key("pk", AttributeValue::S(format!("lease#{ENDPOINT}#holder#{}", slow.holder())))
        .send()
        .await
        .unwrap();
    wait_for("the slots reclaimed", Duration::from_secs(5), async || {
        other.active().await.is_ok_and(|a| a == 0)
    })
    .await;
    let taken = [other.acquire().await.unwrap(), other.acquire().await.unwrap()];
    assert_eq!(
        metric(&metrics, "dsql_distributed_conn_lease_renewals_total"),
        renewals,
        "the slow holder beat its heart before the reclaim was done: the test shows nothing"
    );
    // Its next heartbeat finds the item gone: one lease fits again, two are revoked and closed.
    wait_for("two leases revoked", Duration::from_secs(20), async || {
        metric(&metrics, "dsql_distributed_conn_lease_revoked_total") == 2.0
    })
    .await;
    wait_for("the revoked connections closed", Duration::from_secs(5), async || {
        log.open.load(Ordering::SeqCst) == 1
    })
    .await;
    let text = metrics.encode();
    assert!(text.contains(r#"dsql_reservoir_discards_total{reason="lease_revoked"} 2"#), "{text}");
    assert_eq!(other.active().await.unwrap(), u64::from(CAP));
    assert_eq!(slow.held(), 1);
    // The reservoir wants three again but the cap is full: it stays at one.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(log.open.load(Ordering::SeqCst), 1);
    assert_eq!(reservoir.status().ready, 1);
    assert_eq!(other.active().await.unwrap(), u64::from(CAP));
    reservoir.close().await;
    for lease in taken {
        other.release(lease).await;
    }
    wait_for("every lease back", Duration::from_secs(10), async || {
        other.active().await.is_ok_and(|a| a == 0)
    })
    .await;
}

/// Concurrent acquires of one process share transactions, and a batch larger than the free slots
/// takes exactly what is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_acquires_are_batched_within_the_limit() {
    let dynamo = client(&aws_endpoint()).await;
    let table = create_table(&dynamo, "batch").await;
    // No heartbeat or repair during the count: the background's first round runs at start.
    let quiet = ConnLeaseConfig {
        holder_ttl: Duration::from_secs(60),
        heartbeat_interval: Duration::from_secs(30),
        repair_interval: Duration::from_secs(30),
        ..lease_config(&table, 100)
    };
    let roomy = Arc::new(DynamoConnLease::new(dynamo.clone(), quiet, Metrics::new()).unwrap());
    wait_for("the first background round", Duration::from_secs(10), async || {
        let trips = roomy.round_trips();
        tokio::time::sleep(Duration::from_millis(300)).await;
        trips > 0 && roomy.round_trips() == trips
    })
    .await;
    let before = roomy.round_trips();
    let leases = acquire_all(&roomy, 16).await;
    let trips = roomy.round_trips() - before;
    println!("16 concurrent acquires: {trips} DynamoDB requests");
    assert!(leases.iter().all(Result::is_ok), "{leases:?}");
    assert_eq!(roomy.active().await.unwrap(), 16);
    assert!(trips <= 6, "{trips} requests for 16 acquires: they were not batched");
    for lease in leases {
        roomy.release(lease.unwrap()).await;
    }
    assert_eq!(roomy.active().await.unwrap(), 0);

    // Five slots for eight acquires: five leases, three refusals, the counter at five.
    let table = create_table(&dynamo, "batch-cap").await;
    let tight = Arc::new(DynamoConnLease::new(dynamo, lease_config(&table, 5), Metrics::new()).unwrap());
    let leases = acquire_all(&tight, 8).await;
    let granted = leases.iter().filter(|l| l.is_ok()).count();
    let denied = leases.iter().filter(|l| matches!(l, Err(LimitError::Denied(_)))).count();
    assert_eq!((granted, denied), (5, 3), "{leases:?}");
    assert_eq!(tight.active().await.unwrap(), 5);
    assert_eq!(tight.held(), 5);
    for lease in leases.into_iter().flatten() {
        tight.release(lease).await;
    }
    assert_eq!(tight.active().await.unwrap(), 0);
}

/// `n` acquires at once, as a refiller starting `n` connects makes them.
async fn acquire_all(
    hook: &Arc<DynamoConnLease>,
    n: usize,
) -> Vec<Result<tdsql_reservoir::Lease, LimitError>> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let hook = hook.clone();
            tokio::spawn(async move { hook.acquire().await })
        })
        .collect();
    let mut out = Vec::new();
    for task in tasks {
        out.push(task.await.unwrap());
    }
    out
}

#[tokio::test]
async fn a_counter_that_drifted_is_recounted() {
    let dynamo = client(&aws_endpoint()).await;
    let table = create_table(&dynamo, "drift").await;
    let metrics = Metrics::new();
    let hook = DynamoConnLease::new(dynamo.clone(), lease_config(&table, 5), metrics.clone()).unwrap();
    let lease = hook.acquire().await.unwrap();
    // What the fork leaves behind: a count with no lease behind it.
    dynamo
        .update_item()
        .table_name(&table)
        .key("pk", AttributeValue::S(format!("lease#{ENDPOINT}#counter")))
        .update_expression("SET active = :n")
        .expression_attribute_values(":n", AttributeValue::N("4".into()))
        .send()
        .await
        .unwrap();
    assert_eq!(hook.active().await.unwrap(), 4);
    wait_for("the recount", Duration::from_secs(10), async || {
        hook.active().await.is_ok_and(|a| a == 1)
            && metric(&metrics, "dsql_distributed_conn_lease_recounts_total") >= 1.0
    })
    .await;
    hook.release(lease).await;
    assert_eq!(hook.active().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connects_continue_on_the_local_share_while_dynamodb_is_down_and_share_again_after() {
    const RATE: f64 = 20.0;
    let mut moto = PrivateMoto::start().await;
    let dynamo = client(&moto.endpoint()).await;
    let table = create_table(&dynamo, "outage").await;
    let db = fresh_database("coord_outage").await;
    let log = Arc::new(Log::default());
    let metrics = Metrics::new();
    // A stopped moto refuses connections at once; the call timeout only needs to cover a slow
    // answer on a loaded machine.
    let mut rate = rate_config(&table, RATE, 10);
    rate.fallback.call_timeout = Duration::from_millis(1500);
    let mut lease = lease_config(&table, 12);
    lease.fallback.call_timeout = Duration::from_millis(1500);
    let limiter = Arc::new(DynamoRateLimiter::new(dynamo.clone(), rate, metrics.clone()).unwrap());
    let hook = Arc::new(DynamoConnLease::new(dynamo.clone(), lease, metrics.clone()).unwrap());
    let config = ReservoirConfig {
        target_ready: 2,
        failure_backoff: Duration::from_millis(20),
        max_failure_backoff: Duration::from_millis(100),
        ..ReservoirConfig::default()
    };
    let reservoir = Reservoir::builder(counted(&db, &log))
        .config(config)
        .limiter(limiter.clone())
        .lease_hook(hook.clone())
        .build()
        .unwrap();
    // Churn: every checkout breaks its connection, so the refiller connects all the time.
    let churn = {
        let reservoir = reservoir.clone();
        tokio::spawn(async move {
            loop {
                if let Ok(mut conn) = reservoir.checkout().await {
                    conn.mark_broken();
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let connects = || log.starts.lock().unwrap().len();
    wait_for("10 connects in shared mode", Duration::from_secs(30), async || connects() >= 10).await;
    assert_eq!((limiter.mode(), hook.mode()), (Mode::Shared, Mode::Shared));

    moto.stop();
    wait_for("the fallback", Duration::from_secs(10), async || {
        limiter.mode() == Mode::Fallback && hook.mode() == Mode::Fallback
    })
    .await;
    assert!(limiter.last_error().is_some());
    assert_eq!(metric(&metrics, "dsql_distributed_rate_limiter_fallback"), 1.0);
    assert_eq!(metric(&metrics, "dsql_distributed_conn_lease_fallback"), 1.0);
    let (before, from) = (connects(), Instant::now());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during = connects() - before;
    let seconds = from.elapsed().as_secs_f64();
    // The local share is 20/s / 4 processes = 5/s with a burst of 10 / 4 = 2.
    let local_rate = RATE / 4.0;
    println!("fallback: {during} connects in {seconds:.1} s (local share {local_rate}/s)");
    assert!(during >= 3, "connects stopped during the outage ({during} in {seconds:.1} s)");
    assert!(
        during as f64 <= local_rate * seconds + 2.0 + 1.0,
        "{during} connects in {seconds:.1} s: over the local share"
    );

    moto.restart().await;
    create_named(&dynamo, &table).await; // moto keeps its tables in memory
    wait_for("shared mode again", Duration::from_secs(15), async || {
        limiter.mode() == Mode::Shared && hook.mode() == Mode::Shared
    })
    .await;
    let (before, from) = (connects(), Instant::now());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = connects() - before;
    println!("shared again: {after} connects in {:.1} s", from.elapsed().as_secs_f64());
    assert!(after >= 1, "connects stopped after the recovery");
    assert_eq!(metric(&metrics, "dsql_distributed_rate_limiter_fallback"), 0.0);
    assert!(metric(&metrics, "dsql_distributed_rate_limiter_fallbacks_total") >= 1.0);
    churn.abort();
    let _ = churn.await;
    // The leases granted locally during the outage were registered: DynamoDB counts what is held.
    let deadline = Instant::now() + Duration::from_secs(30);
    let seen = loop {
        let seen = (hook.active().await.map_err(|e| e.to_string()), hook.held() as u64);
        if seen.0 == Ok(seen.1) {
            break (seen.1, seen.1);
        }
        assert!(
            Instant::now() < deadline,
            "the counter does not match the held leases 30 s after the recovery: {seen:?}, {:?}, last error {:?}, \
             reservoir {:?}",
            hook.mode(),
            hook.last_error(),
            reservoir.status()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!("after the outage: counter {} for {} held leases", seen.0, seen.1);
    reservoir.close().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let active = hook.active().await.map_err(|e| e.to_string());
        if active == Ok(0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "leases still counted 30 s after close: counter {active:?}, {hook:?}, last error {:?}",
            hook.last_error()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A stand-in for a throttling DynamoDB (moto never throttles): every request is answered with
/// `ThrottlingException`. Returns its endpoint.
async fn throttling_dynamodb() -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                let mut chunk = [0_u8; 4096];
                loop {
                    // One request: headers, then Content-Length bytes of body.
                    let head_end = loop {
                        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                            break at + 4;
                        }
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buffer[..head_end]).to_ascii_lowercase();
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    while buffer.len() < head_end + length {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                        }
                    }
                    buffer.drain(..head_end + length);
                    let body = r#"{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException","message":"Rate of requests exceeds the allowed throughput."}"#;
                    let response = format!(
                        "HTTP/1.1 400 Bad Request\r\nContent-Type: application/x-amz-json-1.0\r\n\
                         x-amzn-ErrorType: ThrottlingException\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if stream.write_all(response.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    endpoint
}

#[tokio::test]
async fn a_throttling_dynamodb_means_the_local_share_not_refused_connects() {
    let dynamo = client(&throttling_dynamodb().await).await;
    let metrics = Metrics::new();
    let limiter =
        DynamoRateLimiter::new(dynamo.clone(), rate_config("throttled", 20.0, 10), metrics.clone()).unwrap();
    let hook = DynamoConnLease::new(dynamo, lease_config("throttled", 8), metrics.clone()).unwrap();
    // Every connect still gets its permit and its lease, from the local share (8 / 4 = 2 leases).
    let started = Instant::now();
    for _ in 0..6 {
        limiter.acquire().await.unwrap();
    }
    let leases = [hook.acquire().await.unwrap(), hook.acquire().await.unwrap()];
    assert!(matches!(hook.acquire().await, Err(LimitError::Denied(_))), "the local cap is 2");
    println!("6 permits and 2 leases in {:?} against a throttling DynamoDB", started.elapsed());
    assert_eq!((limiter.mode(), hook.mode()), (Mode::Fallback, Mode::Fallback));
    let error = limiter.last_error().unwrap();
    assert!(error.contains("Throttling"), "{error}");
    assert_eq!(metric(&metrics, "dsql_distributed_rate_limiter_fallback"), 1.0);
    assert_eq!(metric(&metrics, "dsql_distributed_conn_lease_fallback"), 1.0);
    assert_eq!(metric(&metrics, "dsql_distributed_conn_lease_held"), 2.0);
    for lease in leases {
        hook.release(lease).await;
    }
    assert_eq!(hook.held(), 0);
}

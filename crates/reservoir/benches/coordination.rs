//! The cost of the DynamoDB coordination (feature `coordination`), against moto and the
//! harness's PostgreSQL, next to the local limiter. It prints:
//!
//! 1. the connect latency the limiter and the lease add (p50/p99), and DynamoDB round trips per
//!    connection, for one connect at a time and for 8 concurrent connects (where one claim serves
//!    several waiters), local token bucket vs DynamoDB limiter + lease;
//! 2. a reservoir warm-up of 100 connections with DSQL's budget (100/s, burst 1000): wall time
//!    and round trips per connection created.
//!
//! Run: `cargo xtask test --serve` in one shell, export what it prints, then
//! `cargo bench -p tdsql-reservoir --bench coordination --features coordination`. moto answers
//! in about a millisecond on loopback; real DynamoDB takes several, so the absolute latencies are
//! a floor, the round-trip counts are what carries over.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/common/dynamo.rs"]
mod dynamo;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::Client;
use tdsql_reservoir::coordination::{ConnLeaseConfig, DynamoConnLease, DynamoRateLimiter, RateLimiterConfig};
use tdsql_reservoir::{
    ConnectLimiter, LeaseHook, Metrics, PgConnector, Reservoir, ReservoirConfig, TokenBucket,
};

const ENDPOINT: &str = "benchbenchbenchbenchbench1.dsql.us-east-1.on.aws";
const CONNECTS: usize = 400;

fn main() {
    if std::env::var_os("TDSQL_TEST_AWS_ENDPOINT").is_none() {
        eprintln!(
            "TDSQL_TEST_AWS_ENDPOINT is not set: this benchmark needs moto and PostgreSQL; start them with \
             `cargo xtask test --serve`, export the lines it prints, then run it again"
        );
        std::process::exit(2);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
    runtime.block_on(async {
        let db = tdsql_test_support::fresh_database("coord_bench").await;
        let dynamo = client().await;
        println!("== 1. added connect latency and DynamoDB round trips per connection ({CONNECTS} connects)");
        for tasks in [1, 8] {
            let local = per_connect(&db, tasks, None, false).await;
            println!("  local bucket,             {tasks} task(s): {local}");
            let table = create_table(&dynamo).await;
            let limiter = per_connect(&db, tasks, Some((&dynamo, &table)), false).await;
            println!("  DynamoDB limiter,         {tasks} task(s): {limiter}");
            let table = create_table(&dynamo).await;
            let coordinated = per_connect(&db, tasks, Some((&dynamo, &table)), true).await;
            println!("  DynamoDB limiter + lease, {tasks} task(s): {coordinated}");
        }
        println!("== 2. reservoir warm-up of 100 connections, budget 100/s burst 1000");
        warm_up(&db, None).await;
        let table = create_table(&dynamo).await;
        warm_up(&db, Some((&dynamo, &table))).await;
    });
}

async fn client() -> Client {
    Client::new(&tdsql_test_support::aws_config("us-east-1").await)
}

async fn create_table(client: &Client) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let name = format!("coord-bench-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
    dynamo::create_coordination_table(client, &name).await;
    name
}

fn connector(db: &tokio_postgres::Config) -> PgConnector {
    let (settings, password) = common::local(db);
    PgConnector::new(settings, Arc::new(password)).expect("a connector")
}

/// p50 / p99 of microsecond samples.
fn percentiles(samples: &mut [f64]) -> (f64, f64) {
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.99))
}

/// Connects one after another (per task): lease + limiter, then a real PostgreSQL connect, then
/// close and give the lease back. A budget far above what is used, so no permit waits.
async fn per_connect(
    db: &tokio_postgres::Config,
    tasks: usize,
    dynamo: Option<(&Client, &str)>,
    with_lease: bool,
) -> String {
    let coordinated = dynamo.map(|(client, table)| {
        let config =
            RateLimiterConfig { rate: 100_000.0, burst: 100_000, ..RateLimiterConfig::new(table, ENDPOINT) };
        let limiter = DynamoRateLimiter::new(client.clone(), config, Metrics::new()).expect("a limiter");
        let lease = with_lease.then(|| {
            Arc::new(
                DynamoConnLease::new(client.clone(), ConnLeaseConfig::new(table, ENDPOINT), Metrics::new())
                    .expect("a lease hook"),
            )
        });
        (Arc::new(limiter), lease)
    });
    let limiter: Arc<dyn ConnectLimiter> = match &coordinated {
        Some((limiter, _)) => limiter.clone(),
        None => Arc::new(TokenBucket::new(100_000.0, 100_000)),
    };
    let hook = coordinated.as_ref().and_then(|(_, hook)| hook.clone());
    let connector = Arc::new(connector(db));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..tasks {
        let (limiter, hook, connector) = (limiter.clone(), hook.clone(), connector.clone());
        workers.push(tokio::spawn(async move {
            let mut added = Vec::new();
            let mut total = Vec::new();
            for _ in 0..CONNECTS / tasks {
                let t0 = Instant::now();
                let lease = match &hook {
                    Some(hook) => Some(hook.acquire().await.expect("a lease")),
                    None => None,
                };
                limiter.acquire().await.expect("a permit");
                let t1 = Instant::now();
                let conn = connector.connect().await.expect("a connection");
                total.push(t0.elapsed().as_secs_f64() * 1e6);
                added.push((t1 - t0).as_secs_f64() * 1e6);
                drop(conn);
                if let (Some(hook), Some(lease)) = (&hook, lease) {
                    hook.release(lease).await;
                }
            }
            (added, total)
        }));
    }
    let (mut added, mut total) = (Vec::new(), Vec::new());
    for worker in workers {
        let (a, t) = worker.await.expect("a worker");
        added.extend(a);
        total.extend(t);
    }
    let elapsed = started.elapsed();
    let (a50, a99) = percentiles(&mut added);
    let (t50, t99) = percentiles(&mut total);
    let trips = match &coordinated {
        Some((limiter, hook)) => {
            let lease = match hook {
                Some(hook) => {
                    let per = hook.round_trips() as f64 / added.len() as f64;
                    hook.shutdown().await;
                    format!(", lease {per:.2} (acquire + release; heartbeats included)")
                }
                None => String::new(),
            };
            format!(
                "\n      round trips per connect: limiter {:.2}{lease}",
                limiter.round_trips() as f64 / added.len() as f64
            )
        }
        None => String::new(),
    };
    format!(
        "added p50 {a50:>7.0} µs p99 {a99:>7.0} µs | whole connect p50 {t50:>7.0} µs p99 {t99:>7.0} µs | {:.0} connects/s{trips}",
        added.len() as f64 / elapsed.as_secs_f64()
    )
}

/// A reservoir warming up to 100 connections: wall time and round trips per connection.
async fn warm_up(db: &tokio_postgres::Config, dynamo: Option<(&Client, &str)>) {
    let config = ReservoirConfig {
        target_ready: 100,
        connect_rate: 100.0,
        connect_burst: 1000,
        ..ReservoirConfig::default()
    };
    let builder = Reservoir::builder(connector(db)).config(config);
    let started = Instant::now();
    match dynamo {
        None => {
            let reservoir = builder.build().expect("a reservoir");
            reservoir.ready(100, Duration::from_secs(120)).await.expect("a warm-up");
            println!(
                "  local bucket:             100 ready in {:>6.0} ms",
                started.elapsed().as_secs_f64() * 1e3
            );
            reservoir.close().await;
        }
        Some((client, table)) => {
            let limiter = Arc::new(
                DynamoRateLimiter::new(
                    client.clone(),
                    RateLimiterConfig::new(table, ENDPOINT),
                    Metrics::new(),
                )
                .expect("a limiter"),
            );
            let hook = Arc::new(
                DynamoConnLease::new(client.clone(), ConnLeaseConfig::new(table, ENDPOINT), Metrics::new())
                    .expect("a lease hook"),
            );
            let reservoir =
                builder.limiter(limiter.clone()).lease_hook(hook.clone()).build().expect("a reservoir");
            reservoir.ready(100, Duration::from_secs(120)).await.expect("a warm-up");
            let ms = started.elapsed().as_secs_f64() * 1e3;
            let created = reservoir.statistics().refills as f64;
            println!(
                "  DynamoDB limiter + lease: 100 ready in {ms:>6.0} ms; round trips per connection created: \
                 limiter {:.2}, lease {:.2}",
                limiter.round_trips() as f64 / created,
                hook.round_trips() as f64 / created
            );
            reservoir.close().await;
            hook.shutdown().await;
        }
    }
}

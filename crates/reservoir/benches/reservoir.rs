//! Benchmarks that print figures, against the harness's real PostgreSQL:
//!
//! 1. warm checkout + return latency of the reservoir, one task and 16 concurrent tasks;
//! 2. the reservoir side by side with deadpool-postgres recycling on max lifetime, both with
//!    connects limited to 100/s: steady load from 64 tasks with 10 s lifetimes (so connections
//!    churn), plus one burst of 200 extra concurrent requests half-way.
//!
//! Run: `cargo xtask test --serve` in one shell, export what it prints, then
//! `cargo bench -p tdsql-reservoir --bench reservoir`. `BENCH_SECONDS` sets the length of each
//! steady-load run (default 60, as the issue asks); `BENCH_LIFETIME_SECS` the connection lifetime
//! of both pools (default 10), to see how the on-demand pool's tail follows the churn.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use deadpool_postgres::{Hook, HookError, Manager, ManagerConfig, Pool, RecyclingMethod};
use tdsql_reservoir::{ConnectLimiter, PgConnector, Reservoir, ReservoirConfig, TokenBucket};

const STEADY_TASKS: usize = 64;
const BURST_TASKS: usize = 200;
const HOLD: Duration = Duration::from_millis(10);
const THINK: Duration = Duration::from_millis(10);
const CONNECT_RATE: f64 = 100.0;
const CONNECT_BURST: u32 = 100;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
    runtime.block_on(async {
        let db = tdsql_test_support::fresh_database("bench").await;
        warm_checkout(&db).await;
        side_by_side(&db).await;
    });
}

fn connector(db: &tokio_postgres::Config) -> PgConnector {
    let (settings, password) = common::local(db);
    PgConnector::new(settings, Arc::new(password)).expect("a connector")
}

/// p50 / p99 / p99.9 / max of nanosecond samples, in microseconds.
fn summary(samples: &mut [u64]) -> String {
    samples.sort_unstable();
    let at = |q: f64| {
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples[i] as f64 / 1000.0
    };
    format!(
        "n={:>8}  p50={:>9.2} µs  p99={:>9.2} µs  p99.9={:>9.2} µs  max={:>10.2} µs",
        samples.len(),
        at(0.5),
        at(0.99),
        at(0.999),
        at(1.0)
    )
}

async fn warm_checkout(db: &tokio_postgres::Config) {
    println!("== 1. warm checkout + return (reservoir of 32 ready connections)");
    let config = ReservoirConfig { target_ready: 32, ..ReservoirConfig::default() };
    let reservoir = Reservoir::builder(connector(db)).config(config).build().expect("a reservoir");
    reservoir.ready(32, Duration::from_secs(60)).await.expect("warm-up");

    let mut one = Vec::with_capacity(200_000);
    for _ in 0..200_000 {
        let started = Instant::now();
        let conn = reservoir.checkout().await.expect("a checkout");
        drop(conn);
        one.push(started.elapsed().as_nanos() as u64);
    }
    println!("   1 task:    {}", summary(&mut one));

    let mut tasks = Vec::new();
    for _ in 0..16 {
        let reservoir = reservoir.clone();
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::with_capacity(20_000);
            for _ in 0..20_000 {
                let started = Instant::now();
                let conn = reservoir.checkout().await.expect("a checkout");
                drop(conn);
                samples.push(started.elapsed().as_nanos() as u64);
                tokio::task::yield_now().await;
            }
            samples
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("a task"));
    }
    println!("  16 tasks:   {}", summary(&mut all));
    reservoir.close().await;
}

/// One acquisition: how long it took and whether it waited on a new connection.
struct Acquired {
    nanos: u64,
    waited_on_connect: bool,
}

/// What a pool must offer the load generator.
trait LoadPool: Clone + Send + Sync + 'static {
    fn run_one(&self) -> impl Future<Output = Result<Acquired, String>> + Send;
}

#[derive(Clone)]
struct ReservoirPool(Reservoir<PgConnector>);

impl LoadPool for ReservoirPool {
    async fn run_one(&self) -> Result<Acquired, String> {
        let started = Instant::now();
        let mut empty = false;
        // An empty reservoir answers within 100 ms; a caller would try again, and so do we.
        let conn = loop {
            match self.0.checkout().await {
                Ok(conn) => break conn,
                Err(tdsql_reservoir::CheckoutError::Empty { .. }) => empty = true,
                Err(e) => return Err(e.to_string()),
            }
        };
        let nanos = started.elapsed().as_nanos() as u64;
        let waited_on_connect = empty || conn.waited();
        conn.simple_query("SELECT 1").await.map_err(|e| e.to_string())?;
        tokio::time::sleep(HOLD).await;
        Ok(Acquired { nanos, waited_on_connect })
    }
}

#[derive(Clone)]
struct DeadPool(Pool);

impl LoadPool for DeadPool {
    async fn run_one(&self) -> Result<Acquired, String> {
        let started = Instant::now();
        let conn = self.0.get().await.map_err(|e| e.to_string())?;
        let nanos = started.elapsed().as_nanos() as u64;
        // A connection never recycled before was created for this acquisition.
        let waited_on_connect = deadpool_postgres::Object::metrics(&conn).recycle_count == 0;
        conn.simple_query("SELECT 1").await.map_err(|e| e.to_string())?;
        tokio::time::sleep(HOLD).await;
        Ok(Acquired { nanos, waited_on_connect })
    }
}

/// deadpool's connect, behind the same 100/s token bucket as the reservoir's.
struct LimitedConnect {
    limiter: Arc<TokenBucket>,
    tls: tokio_postgres::NoTls,
    connects: Arc<AtomicU64>,
}

impl deadpool_postgres::Connect for LimitedConnect {
    fn connect(
        &self,
        pg_config: &tokio_postgres::Config,
    ) -> tdsql_reservoir::token::BoxFuture<
        '_,
        Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), tokio_postgres::Error>,
    > {
        let pg_config = pg_config.clone();
        Box::pin(async move {
            self.limiter.acquire().await.expect("the local bucket never fails");
            self.connects.fetch_add(1, Ordering::Relaxed);
            let (client, connection) = pg_config.connect(self.tls).await?;
            Ok((client, tokio::spawn(async move { drop(connection.await) })))
        })
    }
}

struct Outcome {
    steady: Vec<Acquired>,
    burst: Vec<Acquired>,
    errors: u64,
}

async fn load<P: LoadPool>(pool: P, seconds: u64) -> Outcome {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let errors = Arc::new(AtomicU64::new(0));
    let mut steady = Vec::new();
    for _ in 0..STEADY_TASKS {
        let (pool, errors) = (pool.clone(), errors.clone());
        steady.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            while Instant::now() < deadline {
                match pool.run_one().await {
                    Ok(a) => samples.push(a),
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(THINK).await;
            }
            samples
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds / 2)).await;
    let mut burst = Vec::new();
    for _ in 0..BURST_TASKS {
        let (pool, errors) = (pool.clone(), errors.clone());
        burst.push(tokio::spawn(async move {
            let outcome = pool.run_one().await;
            if outcome.is_err() {
                errors.fetch_add(1, Ordering::Relaxed);
            }
            outcome.ok()
        }));
    }
    let mut out = Outcome { steady: Vec::new(), burst: Vec::new(), errors: 0 };
    for task in burst {
        out.burst.extend(task.await.expect("a burst task"));
    }
    for task in steady {
        out.steady.extend(task.await.expect("a load task"));
    }
    out.errors = errors.load(Ordering::Relaxed);
    out
}

fn report(name: &str, out: &Outcome, connects: u64) {
    let mut all: Vec<u64> = out.steady.iter().chain(&out.burst).map(|a| a.nanos).collect();
    let mut burst: Vec<u64> = out.burst.iter().map(|a| a.nanos).collect();
    let mut steady: Vec<u64> = out.steady.iter().map(|a| a.nanos).collect();
    let waited = out.steady.iter().chain(&out.burst).filter(|a| a.waited_on_connect).count();
    let burst_waited = out.burst.iter().filter(|a| a.waited_on_connect).count();
    let share = 100.0 * waited as f64 / all.len().max(1) as f64;
    println!("  {name}");
    println!("    all acquires:    {}", summary(&mut all));
    println!("    steady acquires: {}", summary(&mut steady));
    println!("    burst acquires:  {}", summary(&mut burst));
    println!(
        "    acquires that waited on a connect: {waited} ({share:.3} %; {burst_waited} of the burst); errors: {}; \
         connects: {connects}",
        out.errors
    );
}

async fn side_by_side(db: &tokio_postgres::Config) {
    let seconds: u64 = std::env::var("BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    let lifetime = Duration::from_secs(
        std::env::var("BENCH_LIFETIME_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|&s| s > 0)
            .unwrap_or(10),
    );
    println!(
        "== 2. {seconds} s of load from {STEADY_TASKS} tasks (hold {HOLD:?}, think {THINK:?}), lifetime {lifetime:?}, \
         connects limited to {CONNECT_RATE}/s (burst {CONNECT_BURST}), + {BURST_TASKS} concurrent requests at {} s",
        seconds / 2
    );

    let config = ReservoirConfig {
        target_ready: 220,
        max_open: Some(300),
        base_lifetime: lifetime,
        lifetime_jitter: Duration::from_secs(2),
        guard_window: Duration::from_secs(1),
        connect_rate: CONNECT_RATE,
        connect_burst: CONNECT_BURST,
        max_concurrent_connects: 16,
        ..ReservoirConfig::default()
    };
    let reservoir = Reservoir::builder(connector(db)).config(config).build().expect("a reservoir");
    let warm = Instant::now();
    reservoir.ready(220, Duration::from_secs(120)).await.expect("warm-up");
    println!("  reservoir warm-up: 220 connections in {:.1} s", warm.elapsed().as_secs_f64());
    let before = reservoir.statistics();
    let out = load(ReservoirPool(reservoir.clone()), seconds).await;
    let after = reservoir.statistics();
    report("reservoir", &out, after.refills - before.refills);
    println!(
        "    (reservoir statistics: waited checkouts {}, empty {}, lifetime discards {})",
        after.waited_checkouts - before.waited_checkouts,
        after.empty - before.empty,
        after.discarded_lifetime - before.discarded_lifetime
    );
    reservoir.close().await;

    let connects = Arc::new(AtomicU64::new(0));
    let connect = LimitedConnect {
        limiter: Arc::new(TokenBucket::new(CONNECT_RATE, CONNECT_BURST)),
        tls: tokio_postgres::NoTls,
        connects: connects.clone(),
    };
    let manager =
        Manager::from_connect(db.clone(), connect, ManagerConfig { recycling_method: RecyclingMethod::Fast });
    let pool = Pool::builder(manager)
        .max_size(STEADY_TASKS + BURST_TASKS)
        .pre_recycle(Hook::sync_fn(move |_, metrics| {
            if metrics.age() > lifetime { Err(HookError::message("past max lifetime")) } else { Ok(()) }
        }))
        .build()
        .expect("a deadpool");
    // Warm it as far as an on-demand pool goes: one connection per steady task.
    let warm: Vec<_> = futures_join(&pool, STEADY_TASKS).await;
    drop(warm);
    let before = connects.load(Ordering::Relaxed);
    let out = load(DeadPool(pool.clone()), seconds).await;
    report(
        "deadpool-postgres (max lifetime via pre_recycle)",
        &out,
        connects.load(Ordering::Relaxed) - before,
    );
    pool.close();
}

async fn futures_join(pool: &Pool, n: usize) -> Vec<deadpool_postgres::Object> {
    let mut tasks = Vec::new();
    for _ in 0..n {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move { pool.get().await.expect("a deadpool connection") }));
    }
    let mut held = Vec::new();
    for task in tasks {
        held.push(task.await.expect("a task"));
    }
    held
}

//! Benchmark (prints figures; not a test): the project's schema set up to its latest version
//! through the gateway in the DSQL dialect (one statement per transaction, async indexes awaited
//! with `sys.wait_for_job`) against the same setup directly on PostgreSQL in the postgres dialect,
//! in the same run; and the first connection to a freshly started gateway (TLS handshake and token
//! check, as a client sees it, once the gateway's spare logins are in; the token is made before
//! the clock starts). Each round uses fresh databases.
//!
//! `cargo bench -p tdsql-dsql-local --bench schema_setup` with the harness's services
//! (`cargo xtask test --serve`, then export what it prints). `BENCH_ROUNDS` sets the rounds
//! (default 5).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use tdsql_schema::{Dialect, Migrator, Options, Outcome, Request};

const SETUP: Request = Request::Setup { version: None, overwrite: false };

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

async fn setup(client: &tokio_postgres::Client, dialect: Dialect) -> Duration {
    let started = Instant::now();
    let outcome = Migrator::new(client, Options::new(dialect)).unwrap().run(SETUP).await.unwrap();
    assert!(matches!(outcome, Outcome::Applied { from: None, .. }), "{outcome:?}");
    started.elapsed()
}

#[tokio::main]
async fn main() {
    let rounds = std::env::var("BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(5_usize);
    let (mut through, mut direct, mut first) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let gw = common::gateway("bench_schema_gw").await;
        let token = common::sdk_token(common::HOST, common::REGION, true, common::SECRET, 900).await;
        // As in compose, where clients come after the gateway's healthcheck: its spares are in.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let started = Instant::now();
        let client = gw.try_connect(gw.config("admin", &token)).await.unwrap();
        first.push(started.elapsed());
        through.push(setup(&client, Dialect::Dsql).await);

        let database = tdsql_test_support::fresh_database("bench_schema_pg").await;
        let client = tdsql_test_support::connect(&database).await;
        direct.push(setup(&client, Dialect::Postgres).await);
    }
    println!("schema setup to the latest version, median of {rounds} rounds (2-core machine; indicative):");
    println!("  through dsql-local, dsql dialect:   {:?}", median(through));
    println!("  directly on PostgreSQL, postgres dialect: {:?}", median(direct));
    println!(
        "first connection to a new gateway (TLS handshake, token check, upstream login or spare): median {:?}",
        median(first)
    );
}

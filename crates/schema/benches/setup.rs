//! Benchmark (prints figures; not a test): a full setup to the latest version on the harness's
//! PostgreSQL against the floor, `psql -f` of the same postgres-dialect statements in one session,
//! and a no-op re-run. Each setup gets a fresh database; times include connecting.
//!
//! Run with the harness's services up (`cargo xtask test --serve`, then export what it prints):
//! `cargo bench -p tdsql-schema --bench setup` (`--profile dev` skips a release build; the time is
//! spent in the database either way). `TDSQL_BENCH_ROUNDS` sets the rounds (default 7).

use std::io::Write as _;
use std::process::Command;
use std::time::{Duration, Instant};

use tdsql_schema::{Dialect, Migrator, Options, Outcome, Request, Schema};
use tdsql_test_support::{connect, fresh_database, pg_url};

const SETUP: Request = Request::Setup { version: None, overwrite: false };

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The URL of the harness's PostgreSQL with another database.
fn url_for(database: &str) -> String {
    let base = pg_url();
    let (prefix, _) = base.rsplit_once('/').expect("the URL names a database");
    format!("{prefix}/{database}")
}

/// The statements `setup` runs, in the postgres dialect: the version tables and every version.
fn postgres_script() -> String {
    let schema = Schema::embedded().expect("the embedded schema loads");
    let plan = Migrator::plan_fresh(schema, &Options::new(Dialect::Postgres), None).expect("a plan");
    plan.to_string()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let rounds: usize = std::env::var("TDSQL_BENCH_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(7);
    let script = postgres_script();
    let script_path = std::env::temp_dir().join(format!("tdsql-schema-bench-{}.sql", std::process::id()));
    std::fs::File::create(&script_path)
        .and_then(|mut f| f.write_all(script.as_bytes()))
        .expect("write the script");
    let statements = script.lines().filter(|l| l.ends_with(';') && !l.starts_with("--")).count();

    let (mut ours, mut floor, mut noop, mut connects) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        // Ours: connect, take the lock, 45 statements one per transaction, version rows.
        let config = fresh_database(&format!("bench_ours_{round}")).await;
        let started = Instant::now();
        let client = connect(&config).await;
        let outcome =
            Migrator::new(&client, Options::new(Dialect::Postgres)).unwrap().run(SETUP).await.unwrap();
        ours.push(started.elapsed());
        assert!(matches!(outcome, Outcome::Applied { statements: 45, .. }), "{outcome:?}");
        drop(client);

        // A no-op re-run as a new process would do it: connect, read, nothing to do.
        let started = Instant::now();
        let client = connect(&config).await;
        connects.push(started.elapsed());
        let outcome =
            Migrator::new(&client, Options::new(Dialect::Postgres)).unwrap().run(SETUP).await.unwrap();
        noop.push(started.elapsed());
        assert!(matches!(outcome, Outcome::UpToDate { .. }), "{outcome:?}");

        // The floor: psql -f of the same statements in one session (autocommit: one transaction each).
        let config = fresh_database(&format!("bench_psql_{round}")).await;
        let url = url_for(config.get_dbname().expect("a database"));
        let started = Instant::now();
        let status = Command::new("psql")
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-f"])
            .arg(&script_path)
            .arg(&url)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("psql runs (apt-get install postgresql-client)");
        floor.push(started.elapsed());
        assert!(status.success(), "psql -f failed");
    }
    let _ = std::fs::remove_file(&script_path);

    let (ours, floor, noop, connect_time) = (median(ours), median(floor), median(noop), median(connects));
    println!(
        "schema setup benchmark: {rounds} rounds, medians, PostgreSQL at {}",
        url_for("…").replace(&password_of(&pg_url()), "***")
    );
    let rows = [
        ("full setup to latest (migrator, connect included)".to_owned(), format!("{:.1} ms", ms(ours))),
        (format!("psql -f of the same {statements} statements, one session"), format!("{:.1} ms", ms(floor))),
        ("ratio migrator / psql".to_owned(), format!("{:.2}", ours.as_secs_f64() / floor.as_secs_f64())),
        ("no-op re-run (connect + read + nothing to do)".to_owned(), format!("{:.1} ms", ms(noop))),
        ("  of which connecting (SCRAM auth)".to_owned(), format!("{:.1} ms", ms(connect_time))),
        ("  without the connect".to_owned(), format!("{:.1} ms", ms(noop.saturating_sub(connect_time)))),
    ];
    for (label, value) in rows {
        println!("  {label:<52} {value:>10}");
    }
}

fn password_of(url: &str) -> String {
    url.split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .and_then(|(userinfo, _)| userinfo.split_once(':'))
        .map(|(_, password)| password.to_owned())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "\u{0}".to_owned())
}

//! Median time of `rules::analyze` (it runs per statement in the gateway's hot path) for a
//! typical Temporal write and for a 40-statement schema script, next to `pg_query::parse` alone,
//! and a repeated text answered by the gateway's `AnalysisCache`.
//! Run: `cargo bench -p tdsql-dsql-local --bench rules`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use tdsql_dsql_local::rules::{AnalysisCache, analyze};

/// An update of Temporal's `executions` row with 6 parameters.
const TEMPORAL_UPDATE: &str = "UPDATE executions SET next_event_id = $1, data = $2, state = $3 \
     WHERE shard_id = $4 AND namespace_id = $5 AND run_id = $6";

/// A read Temporal issues often.
const TEMPORAL_READ: &str = "SELECT data, data_encoding, state, state_encoding, next_event_id, db_record_version \
     FROM executions WHERE shard_id = $1 AND namespace_id = $2 AND workflow_id = $3 AND run_id = $4";

/// 20 tables, each with an async index: 40 statements, the shape of a schema file.
fn schema_script() -> String {
    let mut script = String::new();
    for i in 0..20 {
        script.push_str(&format!(
            "CREATE TABLE IF NOT EXISTS table_{i} (\n  shard_id INTEGER NOT NULL,\n  namespace_id UUID NOT NULL,\n  \
             workflow_id VARCHAR(255) NOT NULL,\n  run_id UUID NOT NULL,\n  visibility_time TIMESTAMP NOT NULL,\n  \
             data BYTEA NOT NULL,\n  data_encoding VARCHAR(16) NOT NULL,\n  version BIGINT NOT NULL DEFAULT 0,\n  \
             PRIMARY KEY (shard_id, namespace_id, workflow_id, run_id)\n);\n\
             CREATE INDEX ASYNC IF NOT EXISTS table_{i}_by_time ON table_{i} (shard_id, visibility_time);\n"
        ));
    }
    script
}

/// Median and 90th percentile of `f` over `runs` runs, after a warm-up.
fn measure(runs: usize, mut f: impl FnMut()) -> (Duration, Duration) {
    for _ in 0..runs / 10 {
        f();
    }
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    (times[runs / 2], times[runs * 9 / 10])
}

fn main() {
    let script = schema_script();
    assert_eq!(analyze(&script).len(), 40, "the script is 40 statements");
    let cases: [(&str, &str, usize); 3] = [
        ("Temporal UPDATE, 6 params", TEMPORAL_UPDATE, 20_000),
        ("Temporal SELECT, 4 params", TEMPORAL_READ, 20_000),
        ("schema script, 40 statements", &script, 500),
    ];
    println!(
        "{:<32} {:>14} {:>14} {:>36}",
        "statement", "analyze p50", "analyze p90", "pg_query::parse p50 (upstream text)"
    );
    for (name, sql, runs) in cases {
        let (p50, p90) = measure(runs, || {
            black_box(analyze(black_box(sql)));
        });
        // PostgreSQL cannot parse DSQL's `ASYNC`: the baseline parses what goes upstream.
        let upstream = analyze(sql).into_iter().map(|s| s.upstream_sql).collect::<Vec<_>>().join(";\n");
        let (parse50, _) = measure(runs, || {
            black_box(pg_query::parse(black_box(&upstream), 0).expect("upstream text parses"));
        });
        println!("{name:<32} {:>11.1} µs {:>11.1} µs {:>33.1} µs", micros(p50), micros(p90), micros(parse50));
    }
    // What a repeated text costs through the gateway's cache (the session's path).
    let cache = AnalysisCache::new(1024);
    let (hit50, hit90) = measure(20_000, || {
        black_box(cache.analyze(black_box(TEMPORAL_UPDATE)));
    });
    println!("{:<32} {:>11.1} µs {:>11.1} µs", "cached, the same text again", micros(hit50), micros(hit90));
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

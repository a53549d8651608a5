//! The project's own schema migrator through the gateway, in its DSQL dialect: one statement per
//! transaction, `CREATE INDEX ASYNC` and `CALL sys.wait_for_job`, the lock row, OCC retry; the
//! server's version read and `verify` are clean afterwards.

mod common;

use std::time::Instant;

use common::{describe, gateway};
use tdsql_schema::{Dialect, Event, Migrator, Options, Outcome, Request};

#[tokio::test]
async fn the_schema_installs_to_1_1_through_the_gateway_in_the_dsql_dialect() {
    let gw = gateway("schema_dsql").await;
    let client = gw.connect().await;
    let started = Instant::now();
    let mut jobs = 0;
    let outcome = {
        let mut migrator = Migrator::new(&client, Options::new(Dialect::Dsql)).unwrap().observe(|event| {
            if matches!(event, Event::IndexJobDone { .. }) {
                jobs += 1;
            }
        });
        migrator
            .run(Request::Setup { version: None, overwrite: false })
            .await
            .unwrap_or_else(|e| panic!("setup through the gateway failed: {e:?}"))
    };
    let took = started.elapsed();
    assert!(matches!(outcome, Outcome::Applied { from: None, .. }), "{outcome:?}");
    assert_eq!(jobs, 7, "every async index job was awaited");
    println!("schema setup to 1.1 through the gateway (dsql dialect): {took:?}");
    let row = client
        .query_one(
            "SELECT curr_version FROM schema_version WHERE version_partition=0 AND db_name=$1",
            &[&"postgres"],
        )
        .await
        .unwrap_or_else(|e| panic!("the server's version read: {}", describe(&e)));
    assert_eq!(row.get::<_, String>(0), "1.1");
    let migrator = Migrator::new(&client, Options::new(Dialect::Dsql)).unwrap();
    assert_eq!(migrator.verify(None).await.unwrap(), [], "schema verify is clean through the gateway");
    let mut again = Migrator::new(&client, Options::new(Dialect::Dsql)).unwrap();
    let rerun = again.run(Request::Setup { version: None, overwrite: false }).await.unwrap();
    assert!(matches!(rerun, Outcome::UpToDate { .. }), "{rerun:?}");
    // The indexes exist behind the gateway, and each has its completed job.
    let upstream = gw.upstream().await;
    let jobs: i64 = upstream
        .query_one(
            "SELECT count(*) FROM sys.jobs WHERE status = 'completed' AND job_type = 'INDEX_BUILD'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(jobs, 7);
}

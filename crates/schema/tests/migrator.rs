//! The migrator against the harness's real PostgreSQL (postgres dialect), each test in a database
//! of its own.

use std::time::Duration;

use tdsql_schema::{
    Dialect, Drift, Event, MigrateError, Migrator, Options, Outcome, Request, SchemaVersion, lint_script,
};
use tdsql_test_support::{connect, describe, fresh_database};
use tokio_postgres::Client;

fn v(s: &str) -> SchemaVersion {
    s.parse().unwrap()
}

fn options() -> Options {
    Options::new(Dialect::Postgres)
}

const SETUP: Request = Request::Setup { version: None, overwrite: false };

async fn database(label: &str) -> (Client, tokio_postgres::Config) {
    let config = fresh_database(label).await;
    (connect(&config).await, config)
}

/// The exact read the Temporal server does at startup.
async fn server_version(client: &Client, db_name: &str) -> String {
    let row = client
        .query_one(
            "SELECT curr_version FROM schema_version WHERE version_partition=0 AND db_name=$1",
            &[&db_name],
        )
        .await
        .unwrap_or_else(|e| panic!("the server's version read failed: {}", describe(&e)));
    row.get(0)
}

async fn count(client: &Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {}", describe(&e))).get(0)
}

async fn public_tables(client: &Client) -> i64 {
    count(client, "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'").await
}

#[tokio::test]
async fn fresh_setup_reaches_1_1_with_no_drift_and_the_server_reads_it() {
    let (client, _) = database("fresh_setup").await;
    let mut migrator = Migrator::new(&client, options()).unwrap();
    let outcome = migrator.run(SETUP).await.unwrap();
    assert_eq!(outcome, Outcome::Applied { from: None, to: v("1.1"), statements: 45, dropped: 0 });
    assert_eq!(server_version(&client, "postgres").await, "1.1");
    assert_eq!(migrator.verify(None).await.unwrap(), []);

    // 37 Temporal tables plus schema_version, schema_update_history and the lock row's table.
    assert_eq!(public_tables(&client).await, 40);
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM pg_indexes WHERE schemaname = 'public' AND indexname NOT LIKE '%_pkey'"
        )
        .await,
        7
    );
    assert_eq!(count(&client, "SELECT count(*) FROM namespace_metadata WHERE partition_id = 54321").await, 1);
    let history = client
        .query(
            "SELECT old_version, new_version, manifest_md5, description FROM schema_update_history ORDER BY update_time",
            &[],
        )
        .await
        .unwrap();
    let rows: Vec<(String, String)> = history.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(rows, [("0".to_owned(), "1.0".to_owned()), ("1.0".to_owned(), "1.1".to_owned())]);
    assert!(history.iter().all(|r| r.get::<_, String>(2).len() == 32));
    let min: String =
        client.query_one("SELECT min_compatible_version FROM schema_version", &[]).await.unwrap().get(0);
    assert_eq!(min, "1.0");
}

#[tokio::test]
async fn db_name_is_the_servers_database_name() {
    let (client, _) = database("db_name").await;
    let mut opts = options();
    opts.db_name = "temporal".to_owned();
    Migrator::new(&client, opts).unwrap().run(SETUP).await.unwrap();
    assert_eq!(server_version(&client, "temporal").await, "1.1");
    assert_eq!(count(&client, "SELECT count(*) FROM schema_version WHERE db_name = 'postgres'").await, 0);
}

#[tokio::test]
async fn setup_1_0_then_update_to_1_1() {
    let (client, _) = database("update").await;
    let mut migrator = Migrator::new(&client, options()).unwrap();
    let outcome = migrator.run(Request::Setup { version: Some(v("1.0")), overwrite: false }).await.unwrap();
    assert_eq!(outcome, Outcome::Applied { from: None, to: v("1.0"), statements: 44, dropped: 0 });
    assert_eq!(server_version(&client, "postgres").await, "1.0");
    assert_eq!(migrator.verify(None).await.unwrap(), [], "1.0 as installed has no drift");
    let at_1_1 = migrator.verify(Some(v("1.1"))).await.unwrap();
    assert_eq!(at_1_1, [Drift::MissingTable { table: "current_chasm_executions".to_owned() }]);

    let outcome = migrator.run(Request::Update { version: None }).await.unwrap();
    assert_eq!(outcome, Outcome::Applied { from: Some(v("1.0")), to: v("1.1"), statements: 1, dropped: 0 });
    assert_eq!(server_version(&client, "postgres").await, "1.1");
    assert_eq!(migrator.verify(None).await.unwrap(), []);
}

#[tokio::test]
async fn a_re_run_is_a_no_op_that_writes_nothing() {
    let (client, _) = database("rerun").await;
    let mut migrator = Migrator::new(&client, options()).unwrap();
    migrator.run(SETUP).await.unwrap();
    let history = count(&client, "SELECT count(*) FROM schema_update_history").await;
    let acquired: Option<String> =
        client.query_one("SELECT acquired_at::text FROM schema_migration_lock", &[]).await.unwrap().get(0);

    for request in [SETUP, Request::Update { version: None }, Request::Update { version: Some(v("1.0")) }] {
        let plan = migrator.plan(request).await.unwrap();
        assert!(plan.is_noop(), "{plan}");
        assert!(plan.to_string().contains("nothing to do: the schema is at 1.1"), "{plan}");
        assert_eq!(migrator.run(request).await.unwrap(), Outcome::UpToDate { installed: v("1.1") });
    }
    assert_eq!(count(&client, "SELECT count(*) FROM schema_update_history").await, history);
    let acquired_after: Option<String> =
        client.query_one("SELECT acquired_at::text FROM schema_migration_lock", &[]).await.unwrap().get(0);
    assert_eq!(acquired_after, acquired, "a no-op run must not even take the lock");
}

#[tokio::test]
async fn overwrite_drops_everything_and_starts_over() {
    let (client, _) = database("overwrite").await;
    let mut migrator = Migrator::new(&client, options()).unwrap();
    migrator.run(SETUP).await.unwrap();
    client
        .batch_execute(
            "INSERT INTO shards VALUES (1, 1, '\\x00', 'proto3'); CREATE TABLE leftover (a INT PRIMARY KEY)",
        )
        .await
        .unwrap();
    let plan = migrator.plan(Request::Setup { version: None, overwrite: true }).await.unwrap();
    assert_eq!(plan.drop_tables.len(), 40, "37 + leftover + 2 version tables: {:?}", plan.drop_tables);
    assert!(!plan.drop_tables.iter().any(|t| t == "schema_migration_lock"), "the lock row survives");

    let outcome = migrator.run(Request::Setup { version: None, overwrite: true }).await.unwrap();
    assert_eq!(outcome, Outcome::Applied { from: None, to: v("1.1"), statements: 45, dropped: 40 });
    assert_eq!(count(&client, "SELECT count(*) FROM shards").await, 0);
    assert_eq!(public_tables(&client).await, 40);
    assert_eq!(count(&client, "SELECT count(*) FROM schema_update_history").await, 2);
    assert_eq!(migrator.verify(None).await.unwrap(), []);
}

#[tokio::test]
async fn verify_lists_every_drift() {
    let (client, _) = database("drift").await;
    let mut migrator = Migrator::new(&client, options()).unwrap();
    migrator.run(SETUP).await.unwrap();
    client
        .batch_execute(
            "ALTER TABLE executions DROP COLUMN db_record_version;
             DROP INDEX cm_idx_lasthb;
             ALTER TABLE shards ALTER COLUMN range_id TYPE integer;
             ALTER TABLE queue ALTER COLUMN message_encoding DROP NOT NULL;
             ALTER TABLE history_node ALTER COLUMN prev_txn_id SET DEFAULT 1;
             ALTER TABLE tasks ADD COLUMN extra INT;
             DROP INDEX idx_namespaces_name; CREATE INDEX idx_namespaces_name ON namespaces (name);
             ALTER TABLE nexus_endpoints DROP CONSTRAINT nexus_endpoints_pkey;
             DROP TABLE build_id_to_task_queue;",
        )
        .await
        .unwrap();
    let drift: Vec<String> = migrator.verify(None).await.unwrap().iter().map(ToString::to_string).collect();
    let mut expected = vec![
        "table build_id_to_task_queue is missing",
        "column executions.db_record_version is missing",
        "column history_node.prev_txn_id: default is DEFAULT 1, expected DEFAULT 0",
        "table nexus_endpoints: primary key is (), expected (id)",
        "column queue.message_encoding: nullability is NULL, expected NOT NULL",
        "column shards.range_id: type is integer, expected bigint",
        "column tasks.extra is not in the schema",
        "index cm_idx_lasthb on cluster_membership is missing",
        "index idx_namespaces_name is INDEX ON namespaces (name), expected UNIQUE INDEX ON namespaces (name)",
    ];
    expected.sort_unstable();
    let mut found = drift.clone();
    found.sort_unstable();
    assert_eq!(found, expected, "{drift:#?}");
}

#[tokio::test]
async fn status_before_and_after() {
    let (client, _) = database("status").await;
    let mut migrator = Migrator::new(&client, options()).unwrap();
    let before = migrator.status().await.unwrap();
    assert_eq!((before.installed, before.expected, before.lock.clone()), (None, v("1.1"), None));
    assert!(before.pending_jobs.is_empty());
    assert_eq!(public_tables(&client).await, 0, "status writes nothing");

    migrator.run(SETUP).await.unwrap();
    let after = migrator.status().await.unwrap();
    assert_eq!(
        (after.installed, after.min_compatible, after.expected),
        (Some(v("1.1")), Some(v("1.0")), v("1.1"))
    );
    let lock = after.lock.expect("the lock table exists after a run");
    assert_eq!((lock.holder, lock.unfinished), (None, None));
}

#[tokio::test]
async fn plan_prints_the_dialect_and_writes_nothing() {
    let (client, _) = database("plan").await;
    for dialect in [Dialect::Postgres, Dialect::Dsql] {
        let migrator = Migrator::new(&client, Options::new(dialect)).unwrap();
        let plan = migrator.plan(SETUP).await.unwrap();
        assert_eq!((plan.statement_count(), plan.installed, plan.target), (45, None, v("1.1")));
        let text = plan.to_string();
        assert!(text.contains("CREATE TABLE IF NOT EXISTS schema_version"), "{text}");
        assert!(text.contains("CREATE UNIQUE INDEX") && text.contains("idx_namespaces_name"), "{text}");
        match dialect {
            Dialect::Postgres => assert!(!text.contains("ASYNC") && !text.contains("wait_for_job"), "{text}"),
            Dialect::Dsql => {
                assert_eq!(text.matches("INDEX ASYNC").count(), 7, "{text}");
                assert_eq!(text.matches("sys.wait_for_job").count(), 7, "{text}");
                assert_eq!(lint_script(&text).unwrap(), [], "the DSQL plan passes the DSQL lint");
            }
        }
    }
    assert_eq!(public_tables(&client).await, 0, "plan created no table, not even schema_version");
}

#[tokio::test]
async fn two_migrators_at_once_one_applies_the_other_waits_then_finds_it_done() {
    let (first, config) = database("concurrent").await;
    let second = connect(&config).await;
    let mut a = Migrator::new(&first, options()).unwrap();
    let mut b = Migrator::new(&second, options()).unwrap();
    let (ra, rb) = tokio::join!(a.run(SETUP), b.run(SETUP));
    let mut outcomes = [ra.unwrap(), rb.unwrap()];
    outcomes.sort_by_key(|o| matches!(o, Outcome::UpToDate { .. }));
    assert_eq!(
        outcomes,
        [
            Outcome::Applied { from: None, to: v("1.1"), statements: 45, dropped: 0 },
            Outcome::UpToDate { installed: v("1.1") }
        ]
    );
    assert_eq!(count(&first, "SELECT count(*) FROM schema_update_history").await, 2);
    assert_eq!(a.verify(None).await.unwrap(), []);
}

#[tokio::test]
async fn a_lock_held_elsewhere_makes_the_second_migrator_fail_clearly() {
    let (client, _) = database("lock_held").await;
    let mut migrator = Migrator::new(&client, options()).unwrap();
    migrator.run(Request::Setup { version: Some(v("1.0")), overwrite: false }).await.unwrap();
    client
        .batch_execute(
            "UPDATE schema_migration_lock SET holder = 'build-box:4242:beef', \
             expires_at = (now() AT TIME ZONE 'UTC') + interval '60 seconds'",
        )
        .await
        .unwrap();
    let mut opts = options();
    opts.lock_wait = Duration::from_millis(400);
    let mut waiting = Migrator::new(&client, opts).unwrap();
    let err = waiting.run(Request::Update { version: None }).await.unwrap_err();
    assert!(matches!(err, MigrateError::LockHeld { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("another migrator (`build-box:4242:beef`) is changing the schema"), "{message}");
    assert!(message.contains("expires in 60s") || message.contains("expires in 59s"), "{message}");
    assert_eq!(server_version(&client, "postgres").await, "1.0", "nothing was applied");
    let status = waiting.status().await.unwrap();
    assert_eq!(status.lock.unwrap().holder.as_deref(), Some("build-box:4242:beef"));
}

#[tokio::test]
async fn a_run_killed_half_way_is_completed_by_running_again() {
    let (client, config) = database("resume").await;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut stop_tx = Some(stop_tx);
    let killed = tokio::spawn(async move {
        let mut opts = options();
        opts.lock_ttl = Duration::from_secs(1);
        let mut migrator = Migrator::new(&client, opts).unwrap().observe(move |event| {
            if let Event::Statement { number: 20, .. } = event
                && let Some(tx) = stop_tx.take()
            {
                let _ = tx.send(());
            }
        });
        let _ = migrator.run(SETUP).await;
        panic!("the run should have been killed before finishing");
    });
    stop_rx.await.unwrap();
    killed.abort();
    assert!(killed.await.unwrap_err().is_cancelled());

    let client = connect(&config).await;
    let mut opts = options();
    opts.lock_wait = Duration::from_secs(20);
    let mut migrator = Migrator::new(&client, opts).unwrap();
    let status = migrator.status().await.unwrap();
    assert_eq!(status.installed, None);
    let lock = status.lock.unwrap();
    assert!(lock.holder.is_some(), "the killed run still holds its lease");
    assert_eq!(lock.unfinished.as_ref().map(|u| u.version.as_str()), Some("1.0"));
    let plan = migrator.plan(SETUP).await.unwrap();
    assert!(
        plan.resumes.is_some() && plan.to_string().contains("completes an unfinished run of 1.0"),
        "{plan}"
    );

    let outcome = migrator.run(SETUP).await.unwrap();
    assert_eq!(outcome, Outcome::Applied { from: None, to: v("1.1"), statements: 45, dropped: 0 });
    assert_eq!(server_version(&client, "postgres").await, "1.1");
    assert_eq!(migrator.verify(None).await.unwrap(), []);
    let lock = migrator.status().await.unwrap().lock.unwrap();
    assert_eq!((lock.holder, lock.unfinished), (None, None));
}

#[tokio::test]
async fn bad_requests_say_what_to_do() {
    let (client, _) = database("bad_requests").await;
    let mut migrator = Migrator::new(&client, options()).unwrap();
    let err = migrator.run(Request::Update { version: None }).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "no schema is installed for db_name `postgres` (no row in schema_version); run `cargo xtask schema setup` first"
    );
    let err = migrator.run(Request::Setup { version: Some(v("2.0")), overwrite: false }).await.unwrap_err();
    assert_eq!(err.to_string(), "unknown schema version 2.0; known versions: 1.0, 1.1");

    client.batch_execute("CREATE TABLE someone_elses (a INT PRIMARY KEY)").await.unwrap();
    let err = migrator.run(SETUP).await.unwrap_err();
    let message = err.to_string();
    assert!(message.contains("already has 1 table(s) (someone_elses)"), "{message}");
    assert!(message.contains("--overwrite"), "{message}");
    assert_eq!(public_tables(&client).await, 1, "nothing was created");
}

/// DSQL's `sys.jobs` has no PostgreSQL counterpart: a stand-in view of the same shape lets the
/// dsql dialect's status report be checked here.
#[tokio::test]
async fn dsql_status_lists_unfinished_index_jobs() {
    let (client, _) = database("dsql_jobs").await;
    client
        .batch_execute(
            "CREATE SCHEMA sys;
             CREATE TABLE sys.jobs (job_id TEXT, status TEXT, details TEXT);
             INSERT INTO sys.jobs VALUES ('job-1', 'processing', NULL), ('job-2', 'completed', NULL),
                                         ('job-3', 'failed', 'duplicate key');",
        )
        .await
        .unwrap();
    let status = Migrator::new(&client, Options::new(Dialect::Dsql)).unwrap().status().await.unwrap();
    let pending: Vec<(&str, &str)> =
        status.pending_jobs.iter().map(|j| (j.job_id.as_str(), j.status.as_str())).collect();
    assert_eq!(pending, [("job-1", "processing")]);
    let local = Migrator::new(&client, options()).unwrap().status().await.unwrap();
    assert!(local.pending_jobs.is_empty(), "PostgreSQL has no index jobs");
}

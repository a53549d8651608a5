//! The gateway end to end, against the harness's PostgreSQL: DSQL's transaction rules and limits
//! in both protocols, async indexes, OCC between two real sessions, OC001.

mod common;

use std::time::{Duration, Instant};

use common::{db_error, describe, gateway, gateway_with};
use tdsql_dsql_local::TxnLimits;
use tdsql_dsql_local::limits::ConnectionLimits;
use tokio_postgres::SimpleQueryMessage;

/// One step's outcome: `Ok` or the SQLSTATE and message.
type Outcome = Result<(), (String, String)>;

fn outcome<T>(result: Result<T, tokio_postgres::Error>) -> Outcome {
    result.map(|_| ()).map_err(|e| match e.as_db_error() {
        Some(db) => (db.code().code().to_owned(), db.message().to_owned()),
        None => ("-----".to_owned(), format!("{e:?}")),
    })
}

fn err(code: &str, message: &str) -> Outcome {
    Err((code.to_owned(), message.to_owned()))
}

const ABORTED: &str = "current transaction is aborted, commands ignored until end of transaction block";

/// Runs each case's steps in a fresh session, by the simple protocol and then the extended one,
/// and compares every step's outcome with DSQL's recorded one.
#[tokio::test]
async fn transaction_rules_answer_as_dsql_in_both_protocols() {
    let gw = gateway("txn_rules").await;
    let setup = gw.connect().await;
    setup.simple_query("CREATE TABLE t (id int PRIMARY KEY, v text)").await.expect("setup");
    setup.simple_query("CREATE TABLE bulk (id int)").await.expect("setup");
    let cases: Vec<(&str, Vec<(&str, Outcome)>)> = vec![
        (
            "two DDL in one transaction",
            vec![
                ("BEGIN", Ok(())),
                ("CREATE TABLE a1 (id int PRIMARY KEY)", Ok(())),
                (
                    "CREATE TABLE a2 (id int PRIMARY KEY)",
                    err("0A000", "multiple ddl statements not supported in a transaction"),
                ),
                ("SELECT 1", err("25P02", ABORTED)),
                ("ROLLBACK", Ok(())),
            ],
        ),
        (
            "DDL then DML",
            vec![
                ("BEGIN", Ok(())),
                ("CREATE TABLE a3 (id int PRIMARY KEY)", Ok(())),
                (
                    "INSERT INTO t (id, v) VALUES (1, 'x')",
                    err("0A000", "ddl and dml are not supported in the same transaction"),
                ),
                ("ROLLBACK", Ok(())),
            ],
        ),
        (
            "DML then DDL",
            vec![
                ("BEGIN", Ok(())),
                ("INSERT INTO t (id, v) VALUES (2, 'x')", Ok(())),
                (
                    "CREATE TABLE a4 (id int PRIMARY KEY)",
                    err("0A000", "ddl and dml are not supported in the same transaction"),
                ),
                ("ROLLBACK", Ok(())),
            ],
        ),
        (
            "a refusal in a transaction aborts it, 25P02 comes first",
            vec![
                ("BEGIN", Ok(())),
                ("TRUNCATE t", err("0A000", "unsupported statement: Truncate")),
                ("TRUNCATE t", err("25P02", ABORTED)),
                ("SELECT 1", err("25P02", ABORTED)),
                ("COMMIT", Ok(())),
                ("SELECT 1", Ok(())),
            ],
        ),
        (
            "a refusal outside a transaction does not",
            vec![("TRUNCATE t", err("0A000", "unsupported statement: Truncate")), ("SELECT 1", Ok(()))],
        ),
        (
            "savepoints and SET TRANSACTION",
            vec![
                ("BEGIN", Ok(())),
                (
                    "SET TRANSACTION READ ONLY",
                    err("0A000", "setting configuration parameter \"TRANSACTION\" not supported"),
                ),
                ("ROLLBACK", Ok(())),
                ("SAVEPOINT s", err("0A000", "unsupported transaction statement: SAVEPOINT")),
                (
                    "SET default_transaction_isolation = 'serializable'",
                    err(
                        "0A000",
                        "setting configuration parameter \"default_transaction_isolation\" not supported",
                    ),
                ),
                (
                    "BEGIN ISOLATION LEVEL SERIALIZABLE",
                    err("0A000", "Unsupported isolation level: SERIALIZABLE"),
                ),
                ("BEGIN ISOLATION LEVEL REPEATABLE READ", Ok(())),
                ("COMMIT", Ok(())),
            ],
        ),
        (
            "the row limit, in a transaction",
            vec![
                ("BEGIN", Ok(())),
                ("INSERT INTO bulk SELECT generate_series(1, 2000)", Ok(())),
                ("INSERT INTO bulk SELECT generate_series(1, 1000)", Ok(())),
                ("INSERT INTO bulk SELECT 1", err("54000", "transaction row limit exceeded")),
                ("SELECT 1", err("25P02", ABORTED)),
                ("ROLLBACK", Ok(())),
            ],
        ),
        (
            "the row limit, autocommit",
            vec![
                (
                    "INSERT INTO bulk SELECT generate_series(1, 3001)",
                    err("54000", "transaction row limit exceeded"),
                ),
                ("INSERT INTO bulk SELECT generate_series(1, 3000)", Ok(())),
                ("DELETE FROM bulk", Ok(())),
            ],
        ),
        (
            "a synchronous index is refused",
            vec![(
                "CREATE INDEX t_v ON t (v)",
                err("0A000", "unsupported mode. please use CREATE INDEX ASYNC."),
            )],
        ),
    ];
    for extended in [false, true] {
        for (name, steps) in &cases {
            let client = gw.connect().await;
            for (sql, expected) in steps {
                let got = if extended {
                    outcome(client.execute(*sql, &[]).await)
                } else {
                    outcome(client.simple_query(sql).await)
                };
                let protocol = if extended { "extended" } else { "simple" };
                assert_eq!(&got, expected, "{name} ({protocol} protocol): `{sql}`");
            }
        }
    }
    // Nothing of the refused 3,001-row statement stayed.
    let upstream = gw.upstream().await;
    let rows: i64 = upstream.query_one("SELECT count(*) FROM bulk", &[]).await.unwrap().get(0);
    assert_eq!(rows, 0);
}

#[tokio::test]
async fn isolation_is_repeatable_read_and_a_multi_statement_query_is_one_transaction() {
    let gw = gateway("isolation").await;
    let client = gw.connect().await;
    let rows = client.simple_query("SHOW transaction_isolation").await.unwrap();
    let level = rows.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
        _ => None,
    });
    assert_eq!(level.as_deref(), Some("repeatable read"));
    client.simple_query("CREATE TABLE m (id int PRIMARY KEY)").await.unwrap();
    // DDL and DML in one Query string: one implicit transaction, refused as one.
    let (code, message) =
        db_error(client.simple_query("INSERT INTO m VALUES (1); CREATE TABLE m2 (id int PRIMARY KEY)").await);
    assert_eq!(
        (code.as_str(), message.as_str()),
        ("0A000", "ddl and dml are not supported in the same transaction")
    );
    let count: i64 = client.query_one("SELECT count(*) FROM m", &[]).await.unwrap().get(0);
    assert_eq!(count, 0, "the INSERT before the refused statement was rolled back with it");
    client.simple_query("INSERT INTO m VALUES (1); INSERT INTO m VALUES (2)").await.unwrap();
    let count: i64 = client.query_one("SELECT count(*) FROM m", &[]).await.unwrap().get(0);
    assert_eq!(count, 2);
}

#[tokio::test]
async fn async_indexes_return_a_job_that_sys_jobs_and_wait_for_job_know() {
    let gw = gateway("async_index").await;
    let client = gw.connect().await;
    client.simple_query("CREATE TABLE ix (id int PRIMARY KEY, v text, w text)").await.unwrap();
    let forms = [
        "CREATE INDEX ASYNC ix_v ON ix (v)",
        "CREATE UNIQUE INDEX ASYNC IF NOT EXISTS ix_w ON ix (w) INCLUDE (v)",
        "CREATE INDEX ASYNC ix_partial ON ix (v) WHERE v IS NOT NULL",
        "CREATE INDEX ASYNC ix_expr ON ix ((lower(v)))",
        "CREATE INDEX ASYNC ON ix (w)",
    ];
    for (i, sql) in forms.iter().enumerate() {
        // Simple protocol for even forms, extended for odd ones.
        let job_id = if i % 2 == 0 {
            let messages =
                client.simple_query(sql).await.unwrap_or_else(|e| panic!("`{sql}`: {}", describe(&e)));
            messages
                .iter()
                .find_map(|m| match m {
                    SimpleQueryMessage::Row(r) => r.get("job_id").map(str::to_owned),
                    _ => None,
                })
                .unwrap_or_else(|| panic!("`{sql}` returned no job_id"))
        } else {
            let row =
                client.query_one(*sql, &[]).await.unwrap_or_else(|e| panic!("`{sql}`: {}", describe(&e)));
            assert_eq!(row.columns()[0].name(), "job_id");
            row.get::<_, String>(0)
        };
        assert_eq!(job_id.len(), 26, "{job_id}");
        assert!(job_id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()), "{job_id}");
        client
            .simple_query(&format!("CALL sys.wait_for_job('{job_id}')"))
            .await
            .unwrap_or_else(|e| panic!("wait: {}", describe(&e)));
        let status: String = client
            .query_one("SELECT status FROM sys.jobs WHERE job_id = $1", &[&job_id])
            .await
            .unwrap()
            .get(0);
        assert_eq!(status, "completed");
    }
    // The indexes exist (PostgreSQL built them).
    let upstream = gw.upstream().await;
    let indexes: i64 = upstream
        .query_one("SELECT count(*) FROM pg_indexes WHERE tablename = 'ix'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(indexes, 6, "primary key and five async indexes");
    // DSQL's sys.wait_for_job is a procedure: SELECT is refused as there.
    let (code, message) = db_error(client.simple_query("SELECT sys.wait_for_job('x'::text)").await);
    assert_eq!((code.as_str(), message.as_str()), ("42809", "sys.wait_for_job(text) is a procedure"));
    let (code, _) = db_error(client.simple_query("CALL sys.wait_for_job('no-such-job')").await);
    assert_eq!(code, "22P02");
}

#[tokio::test]
async fn a_gateway_restarted_in_front_of_a_prepared_database_starts_and_keeps_its_jobs() {
    let first = gateway("restart").await;
    let client = first.connect().await;
    client.simple_query("CREATE TABLE rs (id int PRIMARY KEY, v text)").await.unwrap();
    let job_id: String = client.query_one("CREATE INDEX ASYNC rs_v ON rs (v)", &[]).await.unwrap().get(0);
    drop(client);
    // A second bootstrap meets the procedure the first one made (a restarted container does).
    let second =
        first.another().await.unwrap_or_else(|e| panic!("a second gateway on the same database: {e:#}"));
    let client = second.connect().await;
    client.simple_query(&format!("CALL sys.wait_for_job('{job_id}')")).await.unwrap();
    let (code, _) = db_error(client.simple_query("SELECT sys.wait_for_job('x'::text)").await);
    assert_eq!(code, "42809", "still a procedure after the second bootstrap");
}

#[tokio::test]
async fn a_gateway_reaches_postgresql_over_its_unix_socket_with_the_same_semantics_and_cancels() {
    let tcp = gateway("unix").await;
    let url = tdsql_test_support::unix_socket_url(&tcp.upstream).await;
    let up = &tcp.upstream;
    let gw = tcp.another_with(&url).await.unwrap_or_else(|e| panic!("a gateway on `{url}`: {e:#}"));
    let client = gw.connect().await;
    // PostgreSQL reports no server address for a session on its Unix-domain socket.
    let row = client.query_one("SELECT inet_server_addr() IS NULL, current_database()", &[]).await.unwrap();
    assert!(row.get::<_, bool>(0), "the gateway's upstream session is on the socket");
    assert_eq!(row.get::<_, String>(1), up.get_dbname().unwrap());
    let (code, message) = db_error(client.simple_query("CREATE TEMP TABLE t (id int)").await);
    assert_eq!(code, "0A000", "DSQL's rules apply over the socket too: {message}");

    // A cancel request reaches the backend through the socket.
    let cancel = client.cancel_token();
    let tls = tokio_postgres_rustls::MakeRustlsConnect::new(gw.tls.clone());
    let sleeper = tokio::spawn(async move { client.simple_query("SELECT pg_sleep(30)").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    cancel.cancel_query(tls).await.unwrap_or_else(|e| panic!("the cancel request: {}", describe(&e)));
    let result = tokio::time::timeout(Duration::from_secs(10), sleeper)
        .await
        .expect("the cancelled query ends within 10 s")
        .unwrap();
    let (code, _) = db_error(result);
    assert_eq!(code, "57014", "the query was cancelled");
}

/// Waits until the gateway holds `n` idle spare logins (application_name `dsql-local`).
async fn spares_ready(gw: &common::TestGateway, n: i64) -> Vec<i32> {
    let upstream = gw.upstream().await;
    for _ in 0..200 {
        let pids: Vec<i32> = upstream
            .query(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
                 AND application_name = 'dsql-local' AND state = 'idle' ORDER BY pid",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        if i64::try_from(pids.len()).unwrap() >= n {
            return pids;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the gateway never held {n} spare upstream logins");
}

#[tokio::test]
async fn a_client_gets_a_spare_login_set_to_its_startup_parameters_and_a_dead_spare_is_skipped() {
    let gw = gateway("spares").await;
    let spares = spares_ready(&gw, 2).await;
    // A client that names itself takes a spare: the backend is one of those logged in before.
    let token = common::sdk_token(common::HOST, common::REGION, true, common::SECRET, 900).await;
    let mut config = gw.config("admin", &token);
    config.application_name("spare-taker");
    let client = gw.try_connect(config.clone()).await.unwrap();
    let row =
        client.query_one("SELECT pg_backend_pid(), current_setting('application_name')", &[]).await.unwrap();
    let (pid, name): (i32, String) = (row.get(0), row.get(1));
    assert!(spares.contains(&pid), "backend {pid} is not one of the spares {spares:?}");
    assert_eq!(name, "spare-taker", "the client's application_name reached the spare");
    // The spare was replaced; killing every spare behind the gateway's back leaves clients
    // connecting all the same (the dead ones are skipped).
    let spares = spares_ready(&gw, 2).await;
    let upstream = gw.upstream().await;
    for pid in &spares {
        upstream.execute("SELECT pg_terminate_backend($1)", &[pid]).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let client =
        gw.try_connect(config).await.unwrap_or_else(|e| panic!("after the spares died: {}", describe(&e)));
    let pid: i32 = client.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
    assert!(!spares.contains(&pid), "a terminated spare ({pid}) was handed out");
}

/// Runs `f` and fails when it takes longer than a step that never waits may take.
async fn quick<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    let started = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(3), f)
        .await
        .unwrap_or_else(|_| panic!("{what} waited (over 3 s)"));
    assert!(started.elapsed() < Duration::from_secs(2), "{what} took {:?}", started.elapsed());
    result
}

#[tokio::test]
async fn a_write_write_conflict_never_waits_and_the_second_commit_fails_with_oc000() {
    let gw = gateway("occ_update").await;
    let setup = gw.connect().await;
    setup.simple_query("CREATE TABLE acct (id int PRIMARY KEY, balance int)").await.unwrap();
    setup.simple_query("INSERT INTO acct VALUES (1, 100), (2, 100)").await.unwrap();
    for extended in [true, false] {
        let a = gw.connect().await;
        let b = gw.connect().await;
        quick("BEGIN a", a.simple_query("BEGIN")).await.unwrap();
        quick("BEGIN b", b.simple_query("BEGIN")).await.unwrap();
        let (ua, ub) = if extended {
            let ua = quick(
                "UPDATE a",
                a.execute("UPDATE acct SET balance = balance - $1 WHERE id = $2", &[&10_i32, &1_i32]),
            )
            .await
            .unwrap();
            let ub = quick(
                "UPDATE b",
                b.execute("UPDATE acct SET balance = balance - $1 WHERE id = $2", &[&20_i32, &1_i32]),
            )
            .await;
            (ua, ub.unwrap_or_else(|e| panic!("b's UPDATE must run as on DSQL: {}", describe(&e))))
        } else {
            quick("UPDATE a", a.simple_query("UPDATE acct SET balance = balance - 10 WHERE id = 1"))
                .await
                .unwrap();
            let ub = quick("UPDATE b", b.simple_query("UPDATE acct SET balance = balance - 20 WHERE id = 1"))
                .await;
            let ub = ub.unwrap_or_else(|e| panic!("b's UPDATE must run as on DSQL: {}", describe(&e)));
            let rows = ub.iter().find_map(|m| match m {
                SimpleQueryMessage::CommandComplete(n) => Some(*n),
                _ => None,
            });
            (1, rows.unwrap())
        };
        assert_eq!((ua, ub), (1, 1), "both writes report their row");
        // b reads on: its transaction is alive until COMMIT.
        quick("SELECT b", b.simple_query("SELECT balance FROM acct WHERE id = 2")).await.unwrap();
        quick("COMMIT a", a.simple_query("COMMIT")).await.unwrap();
        let (code, message) = db_error(quick("COMMIT b", b.simple_query("COMMIT")).await);
        assert_eq!(
            (code.as_str(), message.as_str()),
            ("40001", "change conflicts with another transaction (OC000)")
        );
        // b's session goes on.
        b.simple_query("SELECT 1").await.unwrap();
    }
    let balance: i32 = setup.query_one("SELECT balance FROM acct WHERE id = 1", &[]).await.unwrap().get(0);
    assert_eq!(balance, 80, "only the winners' writes (a: -10, twice) landed");
}

#[tokio::test]
async fn a_write_after_a_newer_commit_and_select_for_update_conflict_at_commit() {
    let gw = gateway("occ_snapshot").await;
    let setup = gw.connect().await;
    setup.simple_query("CREATE TABLE kv (k int PRIMARY KEY, v int)").await.unwrap();
    setup.simple_query("INSERT INTO kv VALUES (1, 0), (2, 0)").await.unwrap();
    // b's snapshot is older than a's committed write: DSQL lets b's UPDATE run and fails its COMMIT.
    let a = gw.connect().await;
    let b = gw.connect().await;
    b.simple_query("BEGIN").await.unwrap();
    b.query_one("SELECT v FROM kv WHERE k = 1", &[]).await.unwrap();
    a.execute("UPDATE kv SET v = 1 WHERE k = 1", &[]).await.unwrap();
    let n = quick("stale UPDATE", b.execute("UPDATE kv SET v = 2 WHERE k = 1", &[]))
        .await
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    assert_eq!(n, 1);
    let (code, message) = db_error(b.simple_query("COMMIT").await);
    assert_eq!(
        (code.as_str(), message.as_str()),
        ("40001", "change conflicts with another transaction (OC000)")
    );
    // SELECT ... FOR UPDATE on a row another open transaction wrote: no wait.
    a.simple_query("BEGIN").await.unwrap();
    a.execute("UPDATE kv SET v = 5 WHERE k = 2", &[]).await.unwrap();
    b.simple_query("BEGIN").await.unwrap();
    let locked = quick("FOR UPDATE", b.query("SELECT v FROM kv WHERE k = 2 FOR UPDATE", &[])).await;
    a.simple_query("COMMIT").await.unwrap();
    match locked {
        // Reported at once (no probe for locking reads) ...
        Err(e) => assert_eq!(
            db_error::<()>(Err(e)),
            ("40001".to_owned(), "change conflicts with another transaction (OC000)".to_owned())
        ),
        // ... or at COMMIT.
        Ok(_) => {
            let (code, _) = db_error(b.simple_query("COMMIT").await);
            assert_eq!(code, "40001");
        }
    }
    b.simple_query("ROLLBACK").await.unwrap();
    let v: i32 = setup.query_one("SELECT v FROM kv WHERE k = 1", &[]).await.unwrap().get(0);
    assert_eq!(v, 1, "the first committer's write stays");
}

#[tokio::test]
async fn after_a_committed_ddl_another_sessions_next_statement_fails_once_with_oc001() {
    let gw = gateway("oc001").await;
    let a = gw.connect().await;
    let b = gw.connect().await;
    b.simple_query("SELECT 1").await.unwrap();
    a.simple_query("CREATE TABLE fresh (id int PRIMARY KEY)").await.unwrap();
    let (code, message) = db_error(b.query("SELECT 1", &[]).await);
    assert_eq!(
        (code.as_str(), message.as_str()),
        ("40001", "schema has been updated by another transaction (OC001)")
    );
    b.query("SELECT 1", &[]).await.expect("the retry succeeds");
    a.simple_query("SELECT 1").await.expect("the session that changed the schema is not told");
    // A rolled-back DDL changes nothing.
    a.simple_query("BEGIN; CREATE TABLE never (id int PRIMARY KEY); ROLLBACK").await.ok();
    b.query("SELECT 1", &[]).await.expect("no OC001 after a rollback");
}

#[tokio::test]
async fn transaction_age_and_size_are_checked_at_commit() {
    let txn = TxnLimits { max_age: Duration::from_millis(300), max_bytes: 1000, ..TxnLimits::default() };
    let gw = gateway_with("age_size", ConnectionLimits::default(), txn).await;
    let client = gw.connect().await;
    client.simple_query("CREATE TABLE blob (id int PRIMARY KEY, b text)").await.unwrap();
    client.simple_query("BEGIN").await.unwrap();
    client.execute("INSERT INTO blob VALUES (1, 'x')", &[]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (code, message) = db_error(client.simple_query("COMMIT").await);
    assert_eq!((code.as_str(), message.as_str()), ("54000", "transaction age limit of 0s exceeded"));
    let big = "y".repeat(600);
    client.simple_query("BEGIN").await.unwrap();
    client.execute("INSERT INTO blob VALUES ($1, $2)", &[&2_i32, &big]).await.unwrap();
    client.execute("INSERT INTO blob VALUES ($1, $2)", &[&3_i32, &big]).await.unwrap();
    let (code, message) = db_error(client.simple_query("COMMIT").await);
    assert_eq!((code.as_str(), message.as_str()), ("54000", "transaction size limit 10mb exceeded"));
    let n: i64 = client.query_one("SELECT count(*) FROM blob", &[]).await.unwrap().get(0);
    assert_eq!(n, 0, "both refused transactions were rolled back");
}

#[tokio::test]
async fn pipelined_queries_on_one_connection_all_answer() {
    let gw = gateway("pipeline").await;
    let client = gw.connect().await;
    client.simple_query("CREATE TABLE p (id int PRIMARY KEY)").await.unwrap();
    // tokio-postgres pipelines concurrent requests on one connection.
    let statement = client.prepare("SELECT $1::int + 1").await.unwrap();
    let queries = (0..50).map(|i| {
        let client = &client;
        let statement = &statement;
        async move { client.query_one(statement, &[&i]).await.map(|row| row.get::<_, i32>(0)) }
    });
    let results = futures_util::future::join_all(queries).await;
    for (i, result) in results.into_iter().enumerate() {
        assert_eq!(result.unwrap(), i32::try_from(i).unwrap() + 1);
    }
    let inserts = (0..20).map(|i| {
        let client = &client;
        async move { client.execute("INSERT INTO p VALUES ($1)", &[&i]).await }
    });
    for result in futures_util::future::join_all(inserts).await {
        assert_eq!(result.unwrap(), 1);
    }
}

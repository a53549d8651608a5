//! `tdsql-ops schema ...` end to end against the harness's PostgreSQL: exit codes, what it prints,
//! and that `--dry-run` and an unconfirmed `--overwrite` write nothing.

use std::process::{Command, Output, Stdio};

use tdsql_test_support::{connect, fresh_database};
use tokio_postgres::config::Host;

/// Runs `tdsql-ops schema <args>` against the database of `config`.
fn ops(config: &tokio_postgres::Config, args: &[&str]) -> Output {
    ops_at(config, None, args)
}

/// Like [`ops`], on another port when `port` is given.
fn ops_at(config: &tokio_postgres::Config, port: Option<u16>, args: &[&str]) -> Output {
    let host = match &config.get_hosts()[0] {
        Host::Tcp(host) => host.clone(),
        #[cfg(unix)]
        Host::Unix(path) => path.display().to_string(),
    };
    let port = port.or_else(|| config.get_ports().first().copied()).unwrap_or(5432).to_string();
    let password = config.get_password().map(|p| String::from_utf8_lossy(p).into_owned()).unwrap_or_default();
    let database = config.get_dbname().expect("a database");
    let mut command = Command::new(env!("CARGO_BIN_EXE_tdsql-ops"));
    command
        .args([
            "schema",
            "--dialect",
            "postgres",
            "--endpoint",
            &host,
            "--port",
            &port,
            "--database",
            database,
        ])
        .args(["--user", config.get_user().unwrap_or("postgres")])
        .args(args)
        .env("PGPASSWORD", password)
        .stdin(Stdio::null());
    command.output().expect("tdsql-ops runs")
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

async fn public_tables(config: &tokio_postgres::Config) -> i64 {
    let client = connect(config).await;
    client
        .query_one("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn setup_rerun_status_and_verify() {
    let config = fresh_database("ops_setup").await;

    let dry = ops(&config, &["setup", "--dry-run"]);
    let (out, err) = text(&dry);
    assert!(dry.status.success(), "{err}");
    assert!(out.contains("CREATE TABLE IF NOT EXISTS current_chasm_executions"), "{out}");
    assert!(err.contains("nothing was written"), "{err}");
    assert_eq!(public_tables(&config).await, 0, "--dry-run wrote nothing");

    let setup = ops(&config, &["setup"]);
    let (out, err) = text(&setup);
    assert!(setup.status.success(), "{err}");
    assert!(out.contains("schema at 1.1 for db_name"), "{out}");
    assert!(err.contains("applying schema 1.0 (44 statement(s))"), "{err}");

    let again = ops(&config, &["setup"]);
    let (out, err) = text(&again);
    assert!(again.status.success(), "{err}");
    assert!(out.contains("schema already at 1.1 for db_name"), "{out}");
    assert!(out.contains("nothing to do"), "{out}");

    let status = ops(&config, &["status"]);
    let (out, _) = text(&status);
    assert!(out.contains("installed   1.1 (min compatible 1.0)"), "{out}");
    assert!(out.contains("expected    1.1: up to date"), "{out}");

    let verify = ops(&config, &["verify"]);
    assert!(verify.status.success(), "{:?}", text(&verify));
    connect(&config).await.batch_execute("ALTER TABLE shards DROP COLUMN data_encoding").await.unwrap();
    let verify = ops(&config, &["verify"]);
    let (out, err) = text(&verify);
    assert_eq!(verify.status.code(), Some(1), "{out}{err}");
    assert!(out.contains("column shards.data_encoding is missing"), "{out}");
    assert!(err.contains("1 difference(s)"), "{err}");
}

#[tokio::test]
async fn overwrite_without_yes_and_without_a_terminal_drops_nothing() {
    let config = fresh_database("ops_overwrite").await;
    assert!(ops(&config, &["setup", "--version", "1.0"]).status.success());
    let overwrite = ops(&config, &["setup", "--overwrite"]);
    let (_, err) = text(&overwrite);
    assert!(!overwrite.status.success());
    assert!(err.contains("--overwrite drops 38 table(s)") && err.contains("pass --yes"), "{err}");
    assert_eq!(public_tables(&config).await, 39, "nothing was dropped");

    let confirmed = ops(&config, &["setup", "--overwrite", "--yes"]);
    let (out, err) = text(&confirmed);
    assert!(confirmed.status.success(), "{err}");
    assert!(out.contains("after dropping 38 table(s)"), "{out}");
}

#[tokio::test]
async fn bad_input_is_explained() {
    let config = fresh_database("ops_bad_input").await;
    let unknown = ops(&config, &["setup", "--version", "3.0"]);
    let (_, err) = text(&unknown);
    assert!(err.contains("unknown schema version 3.0; known versions: 1.0, 1.1"), "{err}");
    assert!(!unknown.status.success());
    assert_eq!(public_tables(&config).await, 0, "refused before anything was written");
    let update = ops(&config, &["update"]);
    let (_, err) = text(&update);
    assert!(err.contains("run `cargo xtask schema setup` first"), "{err}");

    // PostgreSQL's own refusal (28P01) is told as a password problem, not as DSQL's IAM denial
    // and not as a stack that is down.
    let mut url = tokio_postgres::Config::clone(&config);
    url.password("not-the-password");
    let wrong = ops(&url, &["status"]);
    let (_, err) = text(&wrong);
    assert_eq!(wrong.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot connect to") && err.contains("rejected the login of"), "{err}");
    assert!(err.contains("password authentication failed") && err.contains("SQLSTATE 28P01"), "{err}");
    assert!(err.contains("check the password (PGPASSWORD"), "{err}");
    assert!(!err.contains("dsql:") && !err.contains("cargo xtask up"), "{err}");

    let refused = ops_at(&config, Some(1), &["status"]);
    let (_, err) = text(&refused);
    assert!(!refused.status.success());
    assert!(err.contains("cannot connect to") && err.contains("cargo xtask up"), "{err}");
}

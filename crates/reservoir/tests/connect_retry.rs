//! The connector, token providers and OCC retry against the harness's real PostgreSQL, and IAM
//! token signing with static credentials (local, no network).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tdsql_reservoir::retry::{ConditionFailed, TxError, fenced_execute};
use tdsql_reservoir::{
    ConnectError, ErrorClass, IamTokenConfig, IamTokenProvider, Metrics, PgConnector, RetryConfig,
    RetryError, RetryPolicy, StaticPassword, Tls, TokenDuration, TokenError, TokenProvider,
};
use tdsql_test_support::{describe, fresh_database};
use tokio::sync::Notify;

mod common;
use common::local;

async fn connector(label: &str) -> PgConnector {
    let (settings, password) = local(&fresh_database(label).await);
    PgConnector::new(settings, Arc::new(password)).unwrap()
}

#[tokio::test]
async fn static_password_without_tls_connects() {
    let connector = connector("connect_plain").await;
    let connection = connector.connect().await.unwrap();
    let row = connection.query_one("SELECT current_user::text, 40 + 2", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), connector.config().user);
    assert_eq!(row.get::<_, i32>(1), 42);
    let (client, driver) = connection.into_parts();
    drop(client);
    // The driver task ends on its own once the client is gone.
    tokio::time::timeout(Duration::from_secs(5), driver).await.unwrap().unwrap();
}

/// The one refusal a real server here can produce: PostgreSQL's 28P01 for a wrong password,
/// which is a password problem, not DSQL's IAM `access denied`.
#[tokio::test]
async fn a_wrong_password_is_a_rejected_login_not_an_iam_denial() {
    let (settings, _) = local(&fresh_database("connect_denied").await);
    let connector = PgConnector::new(settings, Arc::new(StaticPassword::new("not-the-password"))).unwrap();
    match connector.connect().await {
        Err(error @ ConnectError::PasswordRejected { .. }) => {
            assert!(!error.is_transient());
            let ConnectError::PasswordRejected { ref user, ref message, .. } = error else { unreachable!() };
            assert_eq!(user, "postgres");
            assert!(
                message.contains("password authentication failed") && message.contains("28P01"),
                "{message}"
            );
            let text = error.to_string();
            assert!(text.contains("rejected the login of postgres") && text.contains("PGPASSWORD"), "{text}");
        }
        other => panic!("expected a rejected login, got {other:?}"),
    }
}

#[tokio::test]
async fn verify_full_refuses_a_server_without_tls() {
    let (mut settings, password) = local(&fresh_database("connect_tls").await);
    settings.tls = Tls::VerifyFull;
    let connector = PgConnector::new(settings, Arc::new(password)).unwrap();
    match connector.connect().await {
        Err(ConnectError::Failed { reason, .. }) => assert!(reason.contains("TLS"), "{reason}"),
        other => panic!("a plain-text server must be refused under verify-full, got {other:?}"),
    }
}

async fn static_sdk_config(region: Option<&'static str>) -> aws_config::SdkConfig {
    let credentials = aws_credential_types::Credentials::from_keys("AKIDEXAMPLE", "secret", None);
    let mut loader =
        aws_config::defaults(aws_config::BehaviorVersion::latest()).credentials_provider(credentials);
    if let Some(region) = region {
        loader = loader.region(aws_config::Region::new(region));
    }
    loader.load().await
}

const HOST: &str = "abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws";

fn assert_token_shape(token: &str, action: &str, expires: u64) {
    let prefix = format!("{HOST}/?Action={action}&");
    assert!(token.starts_with(&prefix), "{token}");
    assert!(token.contains("X-Amz-Algorithm=AWS4-HMAC-SHA256"), "{token}");
    assert!(token.contains("X-Amz-Credential=AKIDEXAMPLE%2F"), "{token}");
    assert!(token.contains("%2Fus-east-1%2Fdsql%2Faws4_request"), "{token}");
    assert!(token.contains(&format!("X-Amz-Expires={expires}&")), "{token}");
    assert!(token.contains("X-Amz-SignedHeaders=host"), "{token}");
    let signature = token.split("X-Amz-Signature=").nth(1).expect("a signature");
    assert_eq!(signature.len(), 64, "{token}");
    assert!(signature.chars().all(|c| c.is_ascii_hexdigit()), "{token}");
}

#[tokio::test]
async fn iam_tokens_are_signed_for_the_role() {
    let sdk = static_sdk_config(Some("us-east-1")).await;
    let admin = IamTokenProvider::new(&sdk, IamTokenConfig::new(HOST, "admin"), Metrics::new()).unwrap();
    assert_token_shape(admin.password().await.unwrap().expose(), "DbConnectAdmin", 900);

    let mut settings = IamTokenConfig::new(HOST, "app");
    settings.duration = TokenDuration::new(Duration::from_secs(3600)).unwrap();
    let app = IamTokenProvider::new(&sdk, settings, Metrics::new()).unwrap();
    assert_token_shape(app.password().await.unwrap().expose(), "DbConnect", 3600);

    // The region of the settings wins over the SDK's.
    let mut settings = IamTokenConfig::new(HOST, "admin");
    settings.region = Some("eu-west-1".to_owned());
    let other = IamTokenProvider::new(&sdk, settings, Metrics::new()).unwrap();
    assert!(other.password().await.unwrap().expose().contains("%2Feu-west-1%2Fdsql%2F"));
}

#[tokio::test]
async fn iam_token_needs_a_region() {
    let sdk = static_sdk_config(None).await;
    let err = IamTokenProvider::new(&sdk, IamTokenConfig::new(HOST, "admin"), Metrics::new()).unwrap_err();
    assert!(matches!(err, TokenError::MissingRegion), "{err:?}");
}

#[test]
fn token_duration_is_validated() {
    for bad in [0, 14, 604_801] {
        assert!(TokenDuration::new(Duration::from_secs(bad)).is_err(), "{bad}");
    }
    assert!(TokenDuration::new(Duration::from_millis(15_500)).is_err());
    for good in [15, 900, 604_800] {
        assert_eq!(TokenDuration::new(Duration::from_secs(good)).unwrap().get().as_secs(), good);
    }
    assert_eq!(TokenDuration::default().get(), Duration::from_secs(900));
    let message = TokenDuration::new(Duration::from_secs(5)).unwrap_err().to_string();
    assert!(message.contains("15 s to 1 week"), "{message}");
}

#[tokio::test(start_paused = true)]
async fn iam_tokens_are_cached_and_refreshed_before_expiry() {
    let sdk = static_sdk_config(Some("us-east-1")).await;
    let metrics = Metrics::new();
    let provider = IamTokenProvider::new(&sdk, IamTokenConfig::new(HOST, "admin"), metrics.clone()).unwrap();
    let first = provider.password().await.unwrap();
    // Within 80 % of 15 minutes: served from the cache.
    tokio::time::advance(Duration::from_secs(11 * 60)).await;
    assert_eq!(provider.password().await.unwrap(), first);
    // Past 80 %: a fresh token.
    tokio::time::advance(Duration::from_secs(60 + 30)).await;
    provider.password().await.unwrap();
    let text = metrics.encode();
    assert!(text.contains("dsql_token_cache_hits_total 1\n"), "{text}");
    assert!(text.contains("dsql_token_cache_misses_total 2\n"), "{text}");
    assert!(text.contains("dsql_token_refreshes_total 2\n"), "{text}");
    assert!(text.contains("dsql_token_refresh_failures_total 0\n"), "{text}");
}

async fn counter_table(connector: &PgConnector) -> tokio_postgres::Client {
    let (client, _driver) = connector.connect().await.unwrap().into_parts();
    client
        .batch_execute(
            "CREATE TABLE counter (id INT PRIMARY KEY, n INT NOT NULL); INSERT INTO counter VALUES (1, 0);",
        )
        .await
        .unwrap();
    client
}

fn fast_retries(max_retries: u32) -> RetryConfig {
    RetryConfig {
        max_retries,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(4),
        jitter: 0.25,
    }
}

/// Two transactions increment the same row at REPEATABLE READ: the second is refused with 40001
/// (PostgreSQL blocks it on the row until the first commits), retried, and both increments land.
#[tokio::test]
async fn a_real_serialization_conflict_is_retried() {
    let connector = connector("retry_conflict").await;
    let check = counter_table(&connector).await;
    let metrics = Metrics::new();
    let policy = RetryPolicy::new(RetryConfig::default()).unwrap().with_metrics(metrics.clone());
    let a_updated = Arc::new(Notify::new());
    let b_has_snapshot = Arc::new(Notify::new());

    let a_client = connector.connect().await.unwrap();
    let (policy_a, a_updated_a, b_snap_a) = (policy.clone(), a_updated.clone(), b_has_snapshot.clone());
    let a = tokio::spawn(async move {
        let (a_updated, b_snap) = (&a_updated_a, &b_snap_a);
        policy_a
            .transaction(a_client.client(), "increment_a", |tx| async move {
                tx.execute("UPDATE counter SET n = n + 1 WHERE id = 1", &[]).await?;
                a_updated.notify_one();
                b_snap.notified().await;
                // Let B reach its UPDATE and block on the row before A commits.
                tokio::time::sleep(Duration::from_millis(200)).await;
                Ok::<_, TxError>(())
            })
            .await
    });

    a_updated.notified().await;
    let b_client = connector.connect().await.unwrap();
    let attempts = &AtomicU32::new(0);
    let b_has_snapshot = &b_has_snapshot;
    let seen = policy
        .transaction(b_client.client(), "increment_b", |tx| async move {
            attempts.fetch_add(1, Ordering::SeqCst);
            let before: i32 = tx.query_one("SELECT n FROM counter WHERE id = 1", &[]).await?.get(0);
            b_has_snapshot.notify_one();
            tx.execute("UPDATE counter SET n = n + 1 WHERE id = 1", &[]).await?;
            Ok::<_, TxError>(before)
        })
        .await
        .unwrap_or_else(|e| panic!("B failed: {e}"));
    a.await.unwrap().unwrap();

    assert_eq!(attempts.load(Ordering::SeqCst), 2, "B must have been retried exactly once");
    assert_eq!(seen, 1, "the retry must see A's committed increment");
    let n: i32 = check.query_one("SELECT n FROM counter WHERE id = 1", &[]).await.unwrap().get(0);
    assert_eq!(n, 2, "both increments must be applied exactly once");
    let text = metrics.encode();
    assert!(text.contains(r#"dsql_tx_conflict_total{operation="increment_b"} 1"#), "{text}");
    assert!(text.contains(r#"dsql_tx_retry_total{operation="increment_b",attempt="1"} 1"#), "{text}");
    assert!(
        text.contains(r#"dsql_tx_error_class_total{operation="increment_b",error_class="retryable"} 1"#),
        "{text}"
    );
    assert!(!text.contains("dsql_tx_exhausted_total{"), "{text}");
}

/// Raises a real server error with the given SQLSTATE and message.
async fn raise(tx: &tokio_postgres::Client, code: &str, message: &str) -> Result<(), TxError> {
    let sql = format!("DO $$ BEGIN RAISE EXCEPTION '{message}' USING ERRCODE = '{code}'; END $$");
    tx.batch_execute(&sql).await?;
    Ok(())
}

#[tokio::test]
async fn exhausted_retries_are_reported_and_counted() {
    let connector = connector("retry_exhausted").await;
    let connection = connector.connect().await.unwrap();
    let metrics = Metrics::new();
    let policy = RetryPolicy::new(fast_retries(2)).unwrap().with_metrics(metrics.clone());
    let attempts = &AtomicU32::new(0);
    let err = policy
        .transaction(connection.client(), "always_conflicts", |tx| async move {
            attempts.fetch_add(1, Ordering::SeqCst);
            raise(tx, "40001", "change conflicts with another transaction (OC000)").await
        })
        .await
        .unwrap_err();
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    match &err {
        RetryError::Exhausted { attempts, last, .. } => {
            assert_eq!(*attempts, 3);
            assert!(last.to_string().contains("OC000"), "{last}");
        }
        other => panic!("expected exhaustion, got {other:?}"),
    }
    assert!(err.to_string().contains("exhausted"), "{err}");
    let text = metrics.encode();
    assert!(text.contains(r#"dsql_tx_exhausted_total{operation="always_conflicts"} 1"#), "{text}");
    assert!(text.contains(r#"dsql_tx_conflict_total{operation="always_conflicts"} 2"#), "{text}");
    assert!(text.contains(r#"dsql_tx_latency_milliseconds_count{operation="always_conflicts"} 1"#), "{text}");
}

#[tokio::test]
async fn non_retryable_errors_fail_at_once() {
    let connector = connector("retry_permanent").await;
    let connection = connector.connect().await.unwrap();
    let policy = RetryPolicy::new(fast_retries(5)).unwrap();
    for (code, class) in [
        ("0A000", ErrorClass::UnsupportedFeature),
        ("53300", ErrorClass::ConnectionLimit),
        ("53400", ErrorClass::ConnectionLimit),
        ("54000", ErrorClass::LimitExceeded),
        ("23505", ErrorClass::UniqueViolation),
        ("22012", ErrorClass::Permanent),
    ] {
        let attempts = &AtomicU32::new(0);
        let err = policy
            .transaction(connection.client(), "fails", |tx| async move {
                attempts.fetch_add(1, Ordering::SeqCst);
                raise(tx, code, "refused").await
            })
            .await
            .unwrap_err();
        assert_eq!(attempts.load(Ordering::SeqCst), 1, "{code} must not be retried");
        assert_eq!(err.class(), class, "{code}");
    }
}

#[tokio::test]
async fn a_fenced_update_that_matched_no_row_is_never_retried() {
    let connector = connector("retry_fenced").await;
    let client = counter_table(&connector).await;
    let policy = RetryPolicy::new(fast_retries(5)).unwrap();
    let attempts = &AtomicU32::new(0);
    let err = policy
        .transaction(&client, "update_counter", |tx| async move {
            attempts.fetch_add(1, Ordering::SeqCst);
            fenced_execute(tx, "counter", "UPDATE counter SET n = 5 WHERE id = 1 AND n = $1", &[&99_i32])
                .await
        })
        .await
        .unwrap_err();
    assert_eq!(attempts.load(Ordering::SeqCst), 1);
    assert_eq!(err.class(), ErrorClass::ConditionFailed);
    assert!(
        matches!(err.into_inner(), TxError::ConditionFailed(ConditionFailed { kind }) if kind == "counter")
    );
    // The matching fence succeeds.
    let rows = policy
        .transaction(&client, "update_counter", |tx| async move {
            fenced_execute(tx, "counter", "UPDATE counter SET n = 5 WHERE id = 1 AND n = $1", &[&0_i32]).await
        })
        .await
        .unwrap_or_else(|e| {
            let what = e.to_string();
            panic!("{what}: {}", describe_tx(e.into_inner()))
        });
    assert_eq!(rows, 1);
}

fn describe_tx(error: TxError) -> String {
    match error {
        TxError::Postgres(e) => describe(&e),
        other => other.to_string(),
    }
}

#[tokio::test]
async fn a_cancelled_transaction_is_rolled_back() {
    let connector = connector("retry_cancelled").await;
    let client = counter_table(&connector).await;
    let policy = RetryPolicy::new(fast_retries(5)).unwrap();
    let stuck = policy.transaction(&client, "stuck", |tx| async move {
        tx.execute("UPDATE counter SET n = 7 WHERE id = 1", &[]).await?;
        std::future::pending::<()>().await;
        Ok::<_, TxError>(())
    });
    assert!(tokio::time::timeout(Duration::from_millis(300), stuck).await.is_err());
    // Still inside the cancelled transaction, this connection would read its own update (7).
    let n: i32 = client.query_one("SELECT n FROM counter WHERE id = 1", &[]).await.unwrap().get(0);
    assert_eq!(n, 0, "the connection was left inside the cancelled transaction");
    let other = connector.connect().await.unwrap();
    let n: i32 = other.query_one("SELECT n FROM counter WHERE id = 1", &[]).await.unwrap().get(0);
    assert_eq!(n, 0);
}

/// An error as the server reports it: SQLSTATE and message, classified by the crate.
#[derive(Debug)]
struct Reported(&'static str, &'static str);

impl tdsql_reservoir::retry::Classify for Reported {
    fn class(&self) -> ErrorClass {
        tdsql_reservoir::retry::classify_sqlstate(Some(self.0), self.1)
    }
}

/// Issue #4's retry contract with the default policy (5 retries, 100 ms doubling to 5 s, ±25 %):
/// 40001, OC000 and OC001 (code or message marker) are retried; 0A000, 53300, 53400, 54000, 23505
/// and a fenced update that matched no row fail on the first attempt.
#[tokio::test(start_paused = true)]
async fn the_default_policy_retries_exactly_the_conflicts() {
    let defaults = RetryConfig::default();
    assert_eq!(
        (defaults.max_retries, defaults.base_delay, defaults.max_delay, defaults.jitter),
        (5, Duration::from_millis(100), Duration::from_secs(5), 0.25)
    );
    let policy = RetryPolicy::new(defaults).unwrap();
    let retried = [
        Reported("40001", "could not serialize access due to concurrent update"),
        Reported("OC000", "change conflicts with another transaction"),
        Reported("OC001", "schema has been updated by another transaction"),
        Reported("40001", "change conflicts with another transaction (OC000)"),
        Reported("40001", "schema has been updated by another transaction (OC001)"),
    ];
    for error in retried {
        let attempts = AtomicU32::new(0);
        let result = policy
            .run("op", || async {
                attempts.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(Reported(error.0, error.1))
            })
            .await;
        assert!(matches!(result, Err(RetryError::Exhausted { attempts: 6, .. })), "{error:?}: {result:?}");
        assert_eq!(attempts.load(Ordering::SeqCst), 6, "{error:?}");
    }
    let never = [
        (Reported("0A000", "unsupported isolation level: SERIALIZABLE"), ErrorClass::UnsupportedFeature),
        (
            Reported("53300", "Unable to accept connection, too many open connections."),
            ErrorClass::ConnectionLimit,
        ),
        (Reported("53400", "Unable to accept connection, rate exceeded."), ErrorClass::ConnectionLimit),
        (Reported("54000", "transaction exceeds the size limit"), ErrorClass::LimitExceeded),
        (Reported("23505", "duplicate key value violates unique constraint"), ErrorClass::UniqueViolation),
    ];
    for (error, class) in never {
        let attempts = AtomicU32::new(0);
        let result = policy
            .run("op", || async {
                attempts.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(Reported(error.0, error.1))
            })
            .await;
        assert!(
            matches!(result, Err(RetryError::Failed { class: c, .. }) if c == class),
            "{error:?}: {result:?}"
        );
        assert_eq!(attempts.load(Ordering::SeqCst), 1, "{error:?} must not be retried");
    }
    let attempts = AtomicU32::new(0);
    let fenced = policy
        .run("op", || async {
            attempts.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(TxError::from(ConditionFailed { kind: "shard".to_owned() }))
        })
        .await;
    assert!(
        matches!(fenced, Err(RetryError::Failed { class: ErrorClass::ConditionFailed, .. })),
        "{fenced:?}"
    );
    assert_eq!(attempts.load(Ordering::SeqCst), 1, "a fenced miss must not be retried");
}

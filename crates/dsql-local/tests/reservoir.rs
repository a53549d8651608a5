//! The reservoir's DSQL path end to end against the gateway: IAM tokens from
//! `IamTokenProvider`, TLS verified against the local CA, typed refusals, 53400 absorbed by the
//! refiller, connections rotated before the gateway's lifetime, OCC conflicts retried.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{ACCESS_KEY_ID, HOST, REGION, SECRET, TestGateway, gateway, gateway_with, sdk_token};
use tdsql_dsql_local::TxnLimits;
use tdsql_dsql_local::limits::ConnectionLimits;
use tdsql_reservoir::retry::TxError;
use tdsql_reservoir::{
    ConnectConfig, ConnectError, IamTokenConfig, IamTokenProvider, Metrics, PgConnector, Reservoir,
    ReservoirConfig, RetryConfig, RetryPolicy, StaticPassword, TokenDuration,
};
use tokio::time::Instant;

async fn sdk(secret: &str) -> aws_config::SdkConfig {
    let credentials = aws_credential_types::Credentials::from_keys(ACCESS_KEY_ID, secret, None);
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .credentials_provider(credentials)
        .load()
        .await
}

/// The reservoir's settings for the gateway: the DSQL defaults with the local port and CA.
fn settings(gw: &TestGateway) -> ConnectConfig {
    let mut config = ConnectConfig::dsql(HOST);
    config.port = gw.port();
    config.ca_file = Some(gw.ca.clone());
    config
}

async fn connector(gw: &TestGateway, secret: &str, duration: Duration, metrics: &Metrics) -> PgConnector {
    let mut tokens = IamTokenConfig::new(HOST, "admin");
    tokens.duration = TokenDuration::new(duration).unwrap();
    let provider = IamTokenProvider::new(&sdk(secret).await, tokens, metrics.clone()).unwrap();
    PgConnector::new(settings(gw), Arc::new(provider)).unwrap()
}

fn series(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn iam_tokens_and_tls_verified_against_the_local_ca_and_a_refresh_before_expiry() {
    let gw = gateway("reservoir_iam").await;
    let metrics = Metrics::new();
    let connector = connector(&gw, SECRET, Duration::from_secs(15), &metrics).await;
    let first = connector.connect().await.unwrap_or_else(|e| panic!("{e}"));
    let one: i32 = first.client().query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
    // 80 % of a 15 s token: the provider signs a new one before the gateway would find it expired.
    tokio::time::sleep(Duration::from_millis(12_500)).await;
    let second = connector.connect().await.unwrap_or_else(|e| panic!("after the refresh: {e}"));
    second.client().simple_query("SELECT 1").await.unwrap();
    let text = metrics.encode();
    assert_eq!(series(&text, "dsql_token_refreshes_total"), 2.0, "{text}");
    assert_eq!(series(&gw.handle.metrics.encode(), "dsql_local_connections_refused_total"), 0.0);
}

#[tokio::test]
async fn expired_and_wrongly_signed_tokens_are_the_reservoirs_typed_refusals() {
    let gw = gateway("reservoir_refusals").await;
    let metrics = Metrics::new();
    let wrong = connector(&gw, "another-secret", Duration::from_secs(900), &metrics).await;
    let error = wrong.connect().await.expect_err("a token signed with another key is refused");
    assert!(matches!(error, ConnectError::AccessDenied { .. }), "{error:?}");
    let expired = sdk_token(HOST, REGION, true, SECRET, 1).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let stale = PgConnector::new(settings(&gw), Arc::new(StaticPassword::new(expired))).unwrap();
    let error = stale.connect().await.expect_err("an expired token is refused");
    assert!(matches!(error, ConnectError::TokenExpired { .. }), "{error:?}");
    let mut no_ca = settings(&gw);
    no_ca.ca_file = None;
    let webpki = PgConnector::new(no_ca, Arc::new(StaticPassword::new("x"))).unwrap();
    assert!(webpki.connect().await.is_err(), "the local CA is not in the webpki roots");
}

#[tokio::test]
async fn rate_refusals_are_absorbed_by_the_refillers_backoff_without_an_empty_checkout() {
    let limits = ConnectionLimits { rate_per_sec: 2.0, burst: 4, ..ConnectionLimits::default() };
    let gw = gateway_with("reservoir_rate", limits, TxnLimits::default()).await;
    let metrics = Metrics::new();
    let config = ReservoirConfig {
        target_ready: 3,
        connect_rate: 50.0,
        connect_burst: 10,
        failure_backoff: Duration::from_millis(100),
        max_failure_backoff: Duration::from_millis(400),
        expiry_scan_interval: Duration::from_millis(100),
        ..ReservoirConfig::default()
    };
    let reservoir = Reservoir::builder(connector(&gw, SECRET, Duration::from_secs(900), &metrics).await)
        .config(config)
        .metrics(metrics.clone())
        .build()
        .unwrap();
    reservoir.ready(3, Duration::from_secs(20)).await.unwrap();
    // Another client takes the gateway's whole connect budget for 2.5 s: the refiller's connects
    // are refused with 53400 while the reservoir's connections expire and must be replaced.
    let drain = {
        let config = gw.config("admin", &sdk_token(HOST, REGION, true, SECRET, 900).await);
        let tls = tokio_postgres_rustls::MakeRustlsConnect::new(gw.tls.clone());
        tokio::spawn(async move {
            let until = Instant::now() + Duration::from_millis(2500);
            while Instant::now() < until {
                let _ = config.connect(tls.clone()).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    // One connection breaks while the budget is taken: its replacement is refused until it frees up.
    tokio::time::sleep(Duration::from_millis(300)).await;
    reservoir.checkout().await.unwrap().mark_broken();
    let until = Instant::now() + Duration::from_secs(4);
    let mut checkouts = 0;
    while Instant::now() < until {
        let conn = reservoir.checkout().await.unwrap_or_else(|e| panic!("checkout: {e}"));
        conn.client().simple_query("SELECT 1").await.unwrap();
        drop(conn);
        checkouts += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drain.await.unwrap();
    let stats = reservoir.statistics();
    let text = metrics.encode();
    println!("{checkouts} checkouts, {stats:?}");
    assert!(stats.refill_failures > 0, "the gateway refused some of the refiller's connects: {stats:?}");
    // The fork counts a server's refusal as `connection_open` (its `rate_limit` is its own limiter).
    assert!(text.contains("dsql_reservoir_refill_failures_total{reason=\"connection_open\"}"), "{text}");
    let refused =
        series(&gw.handle.metrics.encode(), "dsql_local_connections_refused_total{reason=\"rate_exceeded\"}");
    assert!(
        refused >= stats.refill_failures as f64,
        "every refill failure was a 53400: {refused} < {stats:?}"
    );
    assert_eq!(stats.empty, 0, "no checkout found the reservoir empty: {stats:?}");
    wait_for("the reservoir back at its target", Duration::from_secs(10), || reservoir.status().ready >= 3)
        .await;
    reservoir.close().await;
}

#[tokio::test]
async fn connections_are_replaced_before_the_gateway_closes_them_at_their_lifetime() {
    let limits = ConnectionLimits { max_lifetime: Duration::from_secs(4), ..ConnectionLimits::default() };
    let gw = gateway_with("reservoir_lifetime", limits, TxnLimits::default()).await;
    let metrics = Metrics::new();
    let config = ReservoirConfig {
        target_ready: 3,
        empty_wait_timeout: Duration::from_secs(5),
        base_lifetime: Duration::from_millis(1500),
        lifetime_jitter: Duration::from_millis(500),
        guard_window: Duration::from_millis(300),
        expiry_scan_interval: Duration::from_millis(100),
        ..ReservoirConfig::default()
    };
    let reservoir = Reservoir::builder(connector(&gw, SECRET, Duration::from_secs(900), &metrics).await)
        .config(config)
        .metrics(metrics)
        .build()
        .unwrap();
    reservoir.ready(2, Duration::from_secs(20)).await.unwrap();
    let until = Instant::now() + Duration::from_secs(7);
    while Instant::now() < until {
        let conn = reservoir.checkout().await.unwrap();
        conn.client()
            .simple_query("SELECT 1")
            .await
            .expect("a checked-out connection is never one the gateway closed");
        drop(conn);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stats = reservoir.statistics();
    assert!(stats.discarded_lifetime >= 2, "{stats:?}");
    let gateway_metrics = gw.handle.metrics.encode();
    assert_eq!(
        series(&gateway_metrics, "dsql_local_connections_closed_total{reason=\"lifetime\"}"),
        0.0,
        "the gateway closed a connection the reservoir still held: {stats:?}"
    );
    reservoir.close().await;
}

#[tokio::test]
async fn occ_conflicts_are_retried_by_the_retry_policy() {
    let gw = gateway("reservoir_occ").await;
    let setup = gw.connect().await;
    setup.simple_query("CREATE TABLE counter (id int PRIMARY KEY, n int)").await.unwrap();
    setup.simple_query("INSERT INTO counter VALUES (1, 0)").await.unwrap();
    let metrics = Metrics::new();
    let policy =
        RetryPolicy::new(RetryConfig { base_delay: Duration::from_millis(5), ..RetryConfig::default() })
            .unwrap()
            .with_metrics(metrics.clone());
    let (a, b) = (gw.connect().await, gw.connect().await);
    // OC001 first: a schema change by another session, then OC000 between two increments.
    setup.simple_query("CREATE TABLE other (id int PRIMARY KEY)").await.unwrap();
    let hold = tokio::sync::Barrier::new(2);
    let (ra, rb) = tokio::join!(increment(&policy, &a, "a", &hold), increment(&policy, &b, "b", &hold));
    ra.unwrap_or_else(|e| panic!("a: {e}"));
    rb.unwrap_or_else(|e| panic!("b: {e}"));
    let n: i32 = setup.query_one("SELECT n FROM counter WHERE id = 1", &[]).await.unwrap().get(0);
    assert_eq!(n, 2, "both increments landed, one after a retry");
    let text = metrics.encode();
    assert_eq!(series(&text, "dsql_tx_retry_total"), 3.0, "OC001 for each, then OC000 for one: {text}");
    let gateway_metrics = gw.handle.metrics.encode();
    assert!(gateway_metrics.contains("marker=\"OC000\""), "{gateway_metrics}");
    assert!(gateway_metrics.contains("marker=\"OC001\""), "{gateway_metrics}");
}

/// Increments the counter in a retried transaction; the first attempt waits at `hold` after its
/// write, so two of them conflict.
async fn increment(
    policy: &RetryPolicy,
    client: &tokio_postgres::Client,
    who: &'static str,
    hold: &tokio::sync::Barrier,
) -> Result<(), tdsql_reservoir::RetryError<TxError>> {
    let first = std::sync::atomic::AtomicBool::new(true);
    policy
        .transaction(client, who, |tx| {
            let first = &first;
            async move {
                tx.execute("UPDATE counter SET n = n + 1 WHERE id = 1", &[]).await?;
                // The first attempt that gets past its write waits for the other's write.
                if first.swap(false, std::sync::atomic::Ordering::SeqCst) {
                    hold.wait().await;
                }
                Ok::<_, TxError>(())
            }
        })
        .await
}

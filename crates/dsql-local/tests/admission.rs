//! Connection admission end to end: TLS only, database `postgres`, user `admin`, IAM tokens made
//! by aws-sdk-dsql checked for real, the connection-rate bucket, the cap and the lifetime; bad
//! bytes close one connection and nothing else.

mod common;

use std::time::Duration;

use common::{HOST, REGION, SECRET, describe, gateway, gateway_with, sdk_token};
use tdsql_dsql_local::TxnLimits;
use tdsql_dsql_local::limits::ConnectionLimits;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// The refusal a connect attempt got: SQLSTATE, message, hint.
fn refusal(
    result: Result<tokio_postgres::Client, tokio_postgres::Error>,
) -> (String, String, Option<String>) {
    let Err(error) = result else { panic!("the connection must be refused") };
    let db = error.as_db_error().unwrap_or_else(|| panic!("not a server refusal: {error:?}"));
    (db.code().code().to_owned(), db.message().to_owned(), db.hint().map(str::to_owned))
}

const DENIED: &str = "unable to accept connection, access denied";

#[tokio::test]
async fn tokens_from_aws_sdk_dsql_are_checked_for_real() {
    let gw = gateway("tokens").await;
    // Valid: admin with DbConnectAdmin; a SELECT goes through.
    let client = gw.connect().await;
    let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);

    let cases: Vec<(&str, String, &str, Option<&str>)> = vec![
        ("expired", sdk_token(HOST, REGION, true, SECRET, 1).await, "admin", Some("Signature expired")),
        ("DbConnect token for admin", sdk_token(HOST, REGION, false, SECRET, 900).await, "admin", None),
        (
            "another host",
            sdk_token("other.dsql.us-east-1.on.aws", REGION, true, SECRET, 900).await,
            "admin",
            None,
        ),
        ("another region", sdk_token(HOST, "us-west-2", true, SECRET, 900).await, "admin", None),
        ("another secret", sdk_token(HOST, REGION, true, "not-the-secret", 900).await, "admin", None),
        ("not a token", "hunter2".to_owned(), "admin", None),
        ("a role dsql-local does not map", sdk_token(HOST, REGION, false, SECRET, 900).await, "app", None),
    ];
    tokio::time::sleep(Duration::from_millis(2100)).await; // the 1 s token is past its expiry
    for (name, token, user, hint) in cases {
        let got = refusal(gw.try_connect(gw.config(user, &token)).await);
        assert_eq!(got, ("28000".to_owned(), DENIED.to_owned(), hint.map(str::to_owned)), "{name}");
    }
    // The signature covers every byte: one flipped hex digit is refused.
    let mut token = sdk_token(HOST, REGION, true, SECRET, 900).await;
    let last = token.pop().unwrap();
    token.push(if last == '0' { '1' } else { '0' });
    assert_eq!(refusal(gw.try_connect(gw.config("admin", &token)).await).1, DENIED);
    let metrics = gw.handle.metrics.encode();
    assert!(metrics.contains("dsql_local_connections_refused_total{reason=\"expired\"} 1"), "{metrics}");
}

#[tokio::test]
async fn only_tls_and_only_the_postgres_database() {
    let gw = gateway("tls_only").await;
    let token = sdk_token(HOST, REGION, true, SECRET, 900).await;
    // Plaintext: refused before any token is looked at.
    let mut plain = gw.config("admin", &token);
    plain.ssl_mode(tokio_postgres::config::SslMode::Disable);
    let (code, _, _) = refusal(plain.connect(tokio_postgres::NoTls).await.map(|(client, _)| client));
    assert_eq!(code, "28000", "a plaintext connection is refused");
    let mut other_db = gw.config("admin", &token);
    other_db.dbname("temporal");
    let (code, message, _) = refusal(gw.try_connect(other_db).await);
    assert_eq!((code.as_str(), message.as_str()), ("3D000", "database \"temporal\" does not exist"));
    // A client that trusts another CA refuses the gateway.
    let mut other = common::gateway("tls_other_ca").await;
    other.tls = gw.tls.clone();
    let error = other
        .try_connect(other.config("admin", &token))
        .await
        .expect_err("another CA's certificate must be refused");
    assert!(format!("{error:?}").contains("InvalidCertificate"), "{error:?}");
}

#[tokio::test]
async fn the_rate_bucket_refuses_with_53400_and_refills() {
    let limits = ConnectionLimits { rate_per_sec: 0.5, burst: 3, ..ConnectionLimits::default() };
    let gw = gateway_with("rate", limits, TxnLimits::default()).await;
    let token = sdk_token(HOST, REGION, true, SECRET, 900).await;
    let mut accepted = Vec::new();
    for _ in 0..3 {
        accepted.push(
            gw.try_connect(gw.config("admin", &token)).await.unwrap_or_else(|e| panic!("{}", describe(&e))),
        );
    }
    let (code, message, _) = refusal(gw.try_connect(gw.config("admin", &token)).await);
    assert_eq!((code.as_str(), message.as_str()), ("53400", "Unable to accept connection, rate exceeded."));
    tokio::time::sleep(Duration::from_millis(2100)).await; // 0.5/s: one token back
    gw.try_connect(gw.config("admin", &token)).await.expect("the bucket refilled");
}

#[tokio::test]
async fn the_connection_cap_refuses_with_53300_until_one_closes() {
    let limits = ConnectionLimits { max_connections: 2, ..ConnectionLimits::default() };
    let gw = gateway_with("cap", limits, TxnLimits::default()).await;
    let token = sdk_token(HOST, REGION, true, SECRET, 900).await;
    let first = gw.try_connect(gw.config("admin", &token)).await.unwrap();
    let _second = gw.try_connect(gw.config("admin", &token)).await.unwrap();
    let (code, message, _) = refusal(gw.try_connect(gw.config("admin", &token)).await);
    assert_eq!(
        (code.as_str(), message.as_str()),
        ("53300", "Unable to accept connection, too many open connections.")
    );
    drop(first);
    let mut admitted = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if let Ok(client) = gw.try_connect(gw.config("admin", &token)).await {
            admitted = Some(client);
            break;
        }
    }
    assert!(admitted.is_some(), "a slot must free up when a connection closes");
}

#[tokio::test]
async fn connections_close_at_their_maximum_lifetime() {
    // Long enough that a connect on a loaded machine still leaves the first query inside it.
    let limits = ConnectionLimits { max_lifetime: Duration::from_secs(2), ..ConnectionLimits::default() };
    let gw = gateway_with("lifetime", limits, TxnLimits::default()).await;
    let token = sdk_token(HOST, REGION, true, SECRET, 900).await;
    let began = std::time::Instant::now();
    let client = gw.try_connect(gw.config("admin", &token)).await.unwrap();
    client.simple_query("SELECT 1").await.unwrap_or_else(|e| {
        panic!("first query {:?} after the connect began: {}", began.elapsed(), describe(&e))
    });
    tokio::time::sleep(Duration::from_millis(2300).saturating_sub(began.elapsed())).await;
    assert!(client.simple_query("SELECT 1").await.is_err(), "the gateway closed the connection");
    assert!(client.is_closed());
    let fresh = gw.connect().await;
    fresh.simple_query("SELECT 1").await.expect("new connections are fine");
}

#[tokio::test]
async fn garbage_oversized_messages_and_abrupt_disconnects_close_only_that_connection() {
    let gw = gateway("garbage").await;
    let survivor = gw.connect().await;
    let addr = gw.handle.addr;
    // Garbage before any startup.
    let mut raw = tokio::net::TcpStream::connect(addr).await.unwrap();
    raw.write_all(b"\x00\x00\x00\x08GARBAGE!garbage garbage").await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut buf))
        .await
        .expect("the gateway closes it");
    // A length field of 2 GiB.
    let mut raw = tokio::net::TcpStream::connect(addr).await.unwrap();
    raw.write_all(&[0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0]).await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut buf))
        .await
        .expect("the gateway closes it");
    // A hang-up in the middle of the TLS handshake.
    let mut raw = tokio::net::TcpStream::connect(addr).await.unwrap();
    raw.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]).await.unwrap();
    let mut answer = [0u8; 1];
    raw.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"S");
    raw.write_all(b"\x16\x03\x01\x00\x05hello").await.unwrap();
    drop(raw);
    // An authenticated session that sends a message over 10 MiB is dropped.
    let victim = gw.connect().await;
    let huge = "x".repeat(10 * 1024 * 1024 + 10);
    assert!(victim.simple_query(&format!("SELECT '{huge}'")).await.is_err());
    // Random bytes after a good startup.
    for seed in 0..20u32 {
        let mut raw = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        let bytes: Vec<u8> = (0..64)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x.to_be_bytes()[0]
            })
            .collect();
        let _ = raw.write_all(&bytes).await;
    }
    let one: i32 = survivor.query_one("SELECT 1", &[]).await.expect("other sessions are unaffected").get(0);
    assert_eq!(one, 1);
    gw.connect().await.simple_query("SELECT 1").await.expect("the gateway still admits");
}

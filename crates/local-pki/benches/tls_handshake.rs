//! Median time of one TLS handshake over loopback between `certs::server_tls_config` and
//! `certs::client_tls_config` (TCP connect included), over 50 full and 50 resumed handshakes.
//! `cargo bench -p tdsql-local-pki --bench tls_handshake`

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::Resumption;
use rustls::pki_types::ServerName;
use tdsql_local_pki::{client_tls_config, ensure_pki, server_tls_config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

const RUNS: usize = 50;

fn main() {
    let dir = std::env::temp_dir().join(format!("dsql-local-bench-tls-{}", std::process::id()));
    let (paths, _) = ensure_pki(&dir, &["localhost".to_owned(), "127.0.0.1".to_owned()]).expect("pki");
    let server = server_tls_config(&paths).expect("server config");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");

    let mut full = client_tls_config(&paths.ca_cert).expect("client config");
    full.resumption = Resumption::disabled();
    let resumed = client_tls_config(&paths.ca_cert).expect("client config");
    for (label, client) in [("full", full), ("resumed", resumed)] {
        let mut times = runtime.block_on(handshakes(Arc::clone(&server), Arc::new(client)));
        times.sort();
        println!(
            "tls handshake ({label}, loopback, {RUNS} runs): median {:?}, max {:?}, min {:?}",
            times[RUNS / 2],
            times[RUNS - 1],
            times[0]
        );
    }
    std::fs::remove_dir_all(&dir).expect("remove the bench's PKI");
}

async fn handshakes(server: Arc<rustls::ServerConfig>, client: Arc<rustls::ClientConfig>) -> Vec<Duration> {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    let address = listener.local_addr().expect("address");
    let acceptor = TlsAcceptor::from(server);
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.expect("accept");
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let mut tls = acceptor.accept(tcp).await.expect("server handshake");
                // One byte after the session tickets, so the client has read them before closing.
                tls.write_all(b"x").await.expect("write");
                tls.flush().await.expect("flush");
                let mut sink = tokio::io::sink();
                let _ = tokio::io::copy(&mut tls, &mut sink).await;
            });
        }
    });
    let connector = TlsConnector::from(client);
    let name = ServerName::try_from("localhost").expect("name");
    // One warm-up handshake (and the session ticket the resumed runs use).
    let mut warm_up = connector
        .connect(name.clone(), TcpStream::connect(address).await.expect("connect"))
        .await
        .expect("warm-up");
    warm_up.read_exact(&mut [0_u8; 1]).await.expect("read");
    drop(warm_up);
    let mut times = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let start = Instant::now();
        let tcp = TcpStream::connect(address).await.expect("connect");
        let mut tls = connector.connect(name.clone(), tcp).await.expect("client handshake");
        times.push(start.elapsed());
        tls.read_exact(&mut [0_u8; 1]).await.expect("read");
    }
    times
}

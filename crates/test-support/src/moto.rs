//! A moto server of a test's own, for tests that stop and restart it (the shared one serves
//! every other test and must stay up).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::time::Instant;

use crate::require_env;

/// The moto server executable the harness installed (`TDSQL_MOTO_SERVER`).
#[must_use]
pub fn moto_server() -> PathBuf {
    PathBuf::from(require_env("TDSQL_MOTO_SERVER", "the moto server executable"))
}

/// A private moto server on a loopback port of its own; killed when dropped. Its state (tables)
/// lives in memory, so a restart starts empty.
#[derive(Debug)]
pub struct PrivateMoto {
    executable: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl PrivateMoto {
    /// Starts moto on a free loopback port and waits until it answers.
    ///
    /// # Panics
    /// When the executable is missing or moto does not answer within 60 s.
    pub async fn start() -> Self {
        // Below the ephemeral range: while the server is stopped, no other bind takes its port.
        let port = crate::unused_port();
        let mut moto = Self { executable: moto_server(), port, child: None };
        moto.restart().await;
        moto
    }

    /// `http://127.0.0.1:<port>`, the same across restarts.
    #[must_use]
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Kills the server (connections to the port are refused until [`PrivateMoto::restart`]).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (stopping it first if it runs) and waits until
    /// it answers.
    ///
    /// # Panics
    /// When moto cannot be started or does not answer within 60 s.
    pub async fn restart(&mut self) {
        self.stop();
        let child = Command::new(&self.executable)
            .args(["-H", "127.0.0.1", "-p", &self.port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {} failed: {e}", self.executable.display()));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !answers(self.port).await {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("the private moto server exited during start-up ({status})");
            }
            assert!(Instant::now() < deadline, "the private moto server did not answer within 60 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for PrivateMoto {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether an HTTP server answers on the port.
async fn answers(port: u16) -> bool {
    let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else { return false };
    let request = "GET /moto-api/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut head = [0_u8; 12];
    let read = tokio::time::timeout(Duration::from_secs(2), stream.read_exact(&mut head)).await;
    matches!(read, Ok(Ok(_))) && head.starts_with(b"HTTP/1.")
}

//! A Temporal dev server (`temporal server start-dev`) for tests that need a real frontend.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::temporal_cli;

/// How long the server may take to answer after it was started.
const READY_WITHIN: Duration = Duration::from_secs(90);

/// A running `temporal server start-dev` on free loopback ports (in-memory store, no UI); it is
/// killed when dropped.
#[derive(Debug)]
pub struct TemporalDevServer {
    child: Child,
    address: String,
    log: PathBuf,
}

impl TemporalDevServer {
    /// The frontend's gRPC address, `127.0.0.1:<port>`.
    #[must_use]
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The server's combined stdout and stderr, for failure messages.
    #[must_use]
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for TemporalDevServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Starts a dev server with the harness's Temporal CLI and waits until its `default` namespace
/// answers.
///
/// # Panics
/// When the CLI is missing (with how to get it), or the server does not start or answer within
/// 90 s (with its log).
#[must_use]
pub fn temporal_dev_server() -> TemporalDevServer {
    let cli = temporal_cli();
    let port = free_port();
    let log = std::env::temp_dir().join(format!("tdsql-temporal-dev-{}-{port}.log", std::process::id()));
    let log_file =
        std::fs::File::create(&log).unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display()));
    let child = Command::new(&cli)
        .args(["server", "start-dev", "--headless", "--ip", "127.0.0.1", "--log-level", "warn"])
        .args(["--port", &port.to_string(), "--ui-port", &free_port().to_string()])
        .args(["--http-port", &free_port().to_string(), "--metrics-port", &free_port().to_string()])
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().expect("log file handle"))
        .stderr(log_file)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{} server start-dev`: {e}", cli.display()));
    let mut server = TemporalDevServer { child, address: format!("127.0.0.1:{port}"), log };
    server.wait_ready(&cli);
    server
}

impl TemporalDevServer {
    fn wait_ready(&mut self, cli: &Path) {
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the Temporal dev server exited during start-up ({status}); its log:\n{}", self.log());
            }
            if TcpStream::connect(&self.address).is_ok() && self.namespace_answers(cli) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the Temporal dev server at {} did not answer within {} s; its log:\n{}",
                self.address,
                READY_WITHIN.as_secs(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Whether the frontend serves the `default` namespace (what every workflow test needs).
    fn namespace_answers(&self, cli: &Path) -> bool {
        Command::new(cli)
            .args(["operator", "namespace", "describe", "--namespace", "default", "--address", &self.address])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

/// A port that was free a moment ago on 127.0.0.1.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("cannot find a free loopback port: {e}"))
}

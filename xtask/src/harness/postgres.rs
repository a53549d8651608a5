//! A throwaway PostgreSQL for the suite: local server binaries in a temp dir under `target/`, on a
//! free loopback port; as the `postgres` OS user when the caller is root (initdb refuses root);
//! else a `postgres:16` container when a Docker engine is reachable; else an error saying how to
//! get one.

use std::io::Read as _;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use super::Cleanup;
use crate::context::Context;
use crate::exec::{Cmd, DOCKER};

/// The image used when no local server binaries exist.
const PG_IMAGE: &str = "postgres:16.6";

/// A running test PostgreSQL.
pub(super) struct Postgres {
    /// Superuser URL (password included) handed to the tests.
    pub(super) url: String,
    /// The same URL without the password, for printing.
    pub(super) redacted_url: String,
    /// The local server binaries used, handed on to tests that start a server of their own.
    pub(super) bindir: Option<PathBuf>,
}

pub(super) fn start(ctx: &Context, scratch: &Path, cleanup: &Cleanup) -> Result<Postgres> {
    let password = random_hex(16)?;
    let port = free_port()?;
    let bindir = find_bindir(ctx);
    if let Some(bindir) = &bindir {
        start_local(bindir, scratch, port, &password, cleanup)?;
    } else if docker_engine_reachable(ctx) {
        start_container(ctx, port, &password, cleanup)?;
    } else {
        bail!(
            "no PostgreSQL server binaries found (looked at TDSQL_PG_BINDIR, `pg_config --bindir`, \
             /usr/lib/postgresql/*/bin, /usr/local/pgsql/bin, /usr/local/bin) and no Docker engine \
             to run {PG_IMAGE}; install the PostgreSQL server (Debian/Ubuntu: apt-get install \
             postgresql; macOS: brew install postgresql@16) or start Docker"
        );
    }
    Ok(Postgres {
        url: format!("postgres://postgres:{password}@127.0.0.1:{port}/postgres"),
        redacted_url: format!("postgres://postgres:***@127.0.0.1:{port}/postgres"),
        bindir,
    })
}

/// A directory holding both `initdb` and `postgres`.
fn find_bindir(ctx: &Context) -> Option<PathBuf> {
    let has_server = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Some(dir) = std::env::var_os("TDSQL_PG_BINDIR") {
        return Some(PathBuf::from(dir)).filter(|d| has_server(d));
    }
    let from_pg_config = which::which("pg_config")
        .ok()
        .and_then(|pg_config| Cmd::from_path(pg_config).arg("--bindir").read(ctx).ok())
        .map(|out| PathBuf::from(out.trim()));
    let mut versioned: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path().join("bin"))
        .collect();
    // Newest major version first.
    versioned.sort_by_key(|p| {
        std::cmp::Reverse(
            p.parent()
                .and_then(|v| v.file_name())
                .and_then(|v| v.to_str())
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(0),
        )
    });
    from_pg_config
        .into_iter()
        .chain(versioned)
        .chain(["/usr/local/pgsql/bin", "/usr/local/bin", "/opt/homebrew/bin"].map(PathBuf::from))
        .find(|dir| has_server(dir))
}

fn start_local(bindir: &Path, scratch: &Path, port: u16, password: &str, cleanup: &Cleanup) -> Result<()> {
    remove_stale_clusters(scratch);
    let dir = scratch.join(format!("pg-{}", std::process::id()));
    let data = dir.join("data");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let pwfile = dir.join("pwfile");
    std::fs::write(&pwfile, password)?;

    // initdb and postgres refuse to run as root: hand the directory to the `postgres` user.
    let run_as = if running_as_root() {
        let (uid, gid) = postgres_os_user().context(
            "running as root, and initdb refuses root: create a `postgres` OS user \
             (useradd --system postgres) or run the tests as a normal user",
        )?;
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid))?;
        std::os::unix::fs::chown(&pwfile, Some(uid), Some(gid))?;
        Some((uid, gid))
    } else {
        None
    };
    let as_user = |cmd: Cmd| match run_as {
        Some((uid, gid)) => cmd.run_as_user(uid, gid),
        None => cmd,
    };

    let initdb = as_user(Cmd::from_path(bindir.join("initdb")).current_dir(&dir)).args([
        "--pgdata".as_ref(),
        data.as_os_str(),
        "--username=postgres".as_ref(),
        "--auth=scram-sha-256".as_ref(),
        "--pwfile".as_ref(),
        pwfile.as_os_str(),
        "--encoding=UTF8".as_ref(),
        "--locale=C".as_ref(),
        "--no-sync".as_ref(),
    ]);
    let log = dir.join("initdb.log");
    let handle = initdb.spawn_logged(&log)?;
    let output = handle.wait().context("waiting for initdb")?;
    std::fs::remove_file(&pwfile).ok();
    if !output.status.success() {
        bail!("initdb failed; its log:\n{}", tail_of(&log));
    }

    let socket_dir = dir.to_string_lossy().into_owned();
    let server = as_user(Cmd::from_path(bindir.join("postgres")).current_dir(&dir)).args([
        "-D".to_owned(),
        data.to_string_lossy().into_owned(),
        "-p".to_owned(),
        port.to_string(),
        "-c".to_owned(),
        "listen_addresses=127.0.0.1".to_owned(),
        "-c".to_owned(),
        format!("unix_socket_directories={socket_dir}"),
        // A throwaway cluster: durability costs time and buys nothing.
        "-c".to_owned(),
        "fsync=off".to_owned(),
        "-c".to_owned(),
        "synchronous_commit=off".to_owned(),
        "-c".to_owned(),
        "full_page_writes=off".to_owned(),
        // Reservoir tests open many connections from parallel test processes.
        "-c".to_owned(),
        "max_connections=500".to_owned(),
        "-c".to_owned(),
        "shared_buffers=128MB".to_owned(),
    ]);
    let log = dir.join("postgres.log");
    let handle = std::sync::Arc::new(server.spawn_logged(&log)?);

    let stopper = handle.clone();
    let pg_ctl = as_user(Cmd::from_path(bindir.join("pg_ctl")).current_dir(&dir)).args([
        "stop".as_ref(),
        "-m".as_ref(),
        "fast".as_ref(),
        "-w".as_ref(),
        "-D".as_ref(),
        data.as_os_str(),
    ]);
    let dir_for_cleanup = dir.clone();
    cleanup.push(format!("postgresql on port {port}"), move || {
        let stopped = pg_ctl.probe_quiet().is_ok_and(|ok| ok);
        if !stopped {
            let _ = stopper.kill();
        }
        let _ = stopper.wait();
        let _ = std::fs::remove_dir_all(&dir_for_cleanup);
    });

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(output) = handle.try_wait().context("checking on postgres")? {
            bail!("postgres exited during start-up ({:?}); its log:\n{}", output.status, tail_of(&log));
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok()
            && std::fs::read_to_string(&log).is_ok_and(|text| text.contains("ready to accept connections"))
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("postgres did not accept connections within 60 s; its log:\n{}", tail_of(&log));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn start_container(ctx: &Context, port: u16, password: &str, cleanup: &Cleanup) -> Result<()> {
    let name = format!("tdsql-test-pg-{}", std::process::id());
    Cmd::new(DOCKER)
        .args(["run", "--detach", "--rm", "--name", &name, "--publish"])
        .arg(format!("127.0.0.1:{port}:5432"))
        .arg("--env")
        .arg("POSTGRES_PASSWORD")
        .secret_env("POSTGRES_PASSWORD", password)
        .args([PG_IMAGE, "-c", "fsync=off", "-c", "max_connections=500"])
        .run_now()?;
    let rm = Cmd::new(DOCKER).args(["rm", "--force", &name]);
    cleanup.push(format!("container {name}"), move || {
        let _ = rm.probe_quiet();
    });
    let ready = Cmd::new(DOCKER).args(["exec", &name, "pg_isready", "-U", "postgres", "-h", "127.0.0.1"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if ready.probe(ctx).is_ok_and(|out| out.status.success()) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    bail!("the {PG_IMAGE} container did not become ready within 60 s (see `docker logs {name}`)")
}

/// Removes data directories left behind by earlier runs whose process is gone.
fn remove_stale_clusters(scratch: &Path) {
    let Ok(entries) = std::fs::read_dir(scratch) else { return };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("pg-")) else { continue };
        if !Path::new("/proc").join(pid).exists() && Path::new("/proc/self").exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

pub(super) fn docker_engine_reachable(ctx: &Context) -> bool {
    Cmd::new(DOCKER)
        .args(["version", "--format", "{{.Server.Version}}"])
        .probe(ctx)
        .is_ok_and(|out| out.status.success())
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The uid and gid of the `postgres` OS user, from /etc/passwd.
fn postgres_os_user() -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.first() == Some(&"postgres") && fields.len() > 3)
            .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
            .flatten()
    })
}

/// A port that was free a moment ago on 127.0.0.1.
pub(super) fn free_port() -> Result<u16> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).context("finding a free loopback port")?;
    Ok(listener.local_addr()?.port())
}

/// `n` random bytes from the OS, hex-encoded.
fn random_hex(n: usize) -> Result<String> {
    let mut bytes = vec![0_u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

pub(super) fn tail_of(log: &Path) -> String {
    let text =
        std::fs::read_to_string(log).unwrap_or_else(|e| format!("(could not read {}: {e})", log.display()));
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(25)..].join("\n")
}

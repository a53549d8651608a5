//! `cargo xtask smoke` and `cargo xtask load` plans, through `--dry-run`, against committed
//! expected files (`UPDATE_EXPECT=1` rewrites them).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The xtask with built-in and profile defaults only (never the user's config.toml).
fn xtask(config: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.env_remove("TDSQL_PROFILE")
        .env_remove("TDSQL_TEMPORAL_PORTS_FRONTEND_GRPC")
        .env("TDSQL_CONFIG_FILE", config);
    cmd
}

fn empty_config() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/empty-config.toml")
}

fn plan(args: &[&str]) -> String {
    plan_with(&empty_config(), args)
}

fn plan_with(config: &Path, args: &[&str]) -> String {
    let out = xtask(config).arg("--dry-run").args(args).output().expect("xtask runs");
    assert!(
        out.status.success(),
        "xtask --dry-run {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("plans are UTF-8")
}

fn expect(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots").join(name);
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run with UPDATE_EXPECT=1 to create it", path.display()));
    assert_eq!(actual, expected, "plan differs from {}; run with UPDATE_EXPECT=1 to accept", path.display());
}

#[test]
fn smoke_plans() {
    let mut out = plan(&["smoke"]);
    out += &plan(&[
        "smoke",
        "--address",
        "10.0.0.5:7233",
        "--namespace",
        "bench",
        "--timeout",
        "1m",
        "--only",
        "signals-queries",
        "--only",
        "visibility",
        "--report",
        "/reports/smoke.xml",
    ]);
    expect("suite_smoke.txt", &out);
}

#[test]
fn load_plans() {
    let mut out = plan(&["load", "--rate", "50", "--duration", "60s"]);
    out += &plan(&[
        "load",
        "--rate",
        "150",
        "--duration",
        "5m",
        "--ramp-up",
        "30s",
        "--workflow",
        "child",
        "--min-rate",
        "140",
        "--max-p99",
        "500ms",
        "--max-failed",
        "0",
        "--report",
        "/reports/load.json",
        "--",
        "--workers",
        "2",
        "--children",
        "5",
    ]);
    // A soak judged by the persistence layer as well.
    out += &plan(&[
        "load",
        "--rate",
        "20",
        "--duration",
        "45m",
        "--metrics",
        "http://172.18.0.5:9090/metrics",
        "--metrics",
        "http://172.18.0.6:9090/metrics",
        "--max-reservoir-empty",
        "0",
        "--max-occ-exhausted",
        "0",
        "--max-persistence-errors",
        "10",
        "--progress-every",
        "1m",
    ]);
    expect("suite_load.txt", &out);
}

#[test]
fn load_requires_a_rate_and_a_duration() {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["--dry-run", "load", "--rate", "5"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--duration"));
}

#[test]
fn the_default_address_is_the_configured_frontend() {
    let dir = std::env::temp_dir().join(format!("tdsql-suite-plans-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config.toml");
    std::fs::write(&config, "[temporal.ports]\nfrontend_grpc = 17233\n").unwrap();
    let out = plan_with(&config, &["smoke"]);
    assert!(out.contains(" smoke --address 127.0.0.1:17233 --namespace default"), "{out}");
    let out = plan_with(&config, &["load", "--rate", "1", "--duration", "1s", "--address", "10.1.1.1:7233"]);
    assert!(out.contains(" load --address 10.1.1.1:7233 "), "{out}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// A stand-in for the Docker CLI (no engine runs here): `compose ... ps --quiet <service>` prints
/// a container id per running service, `inspect` that container's address; anything else fails.
fn fake_docker(dir: &Path, running: &[&str]) -> PathBuf {
    let path = dir.join("docker");
    let mut script = String::from("#!/bin/sh\nlast=$(eval echo \\${$#})\ncase \"$1\" in\n");
    script.push_str("  compose)\n    case \"$last\" in\n");
    for (index, service) in running.iter().enumerate() {
        script.push_str(&format!("      {service}) echo id{index} ;;\n"));
    }
    script.push_str("    esac\n    exit 0 ;;\n");
    script.push_str("  inspect) n=${last#id}; echo \"172.18.0.$((n + 10)) \" ;;\n");
    script.push_str("  *) echo \"unexpected: $*\" >&2; exit 99 ;;\nesac\n");
    std::fs::write(&path, script).unwrap();
    let mut perms = std::fs::metadata(&path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&path, perms).unwrap();
    path
}

#[test]
fn metrics_from_stack_finds_each_services_container_address() {
    let dir = std::env::temp_dir().join(format!("tdsql-suite-metrics-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config.toml");
    std::fs::write(&config, "[temporal.ports]\nmetrics = 9191\n").unwrap();
    let all = ["temporal-history", "temporal-matching", "temporal-frontend", "temporal-worker"];
    let docker = fake_docker(&dir, &all);
    let args = ["--dry-run", "load", "--rate", "1", "--duration", "1s", "--metrics-from-stack"];
    let out = xtask(&config).env("TDSQL_DOCKER", &docker).args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let urls: Vec<&str> =
        stdout.split(" --metrics ").skip(1).map(|rest| rest.split(' ').next().unwrap().trim()).collect();
    assert_eq!(
        urls,
        [
            "http://172.18.0.10:9191/metrics",
            "http://172.18.0.11:9191/metrics",
            "http://172.18.0.12:9191/metrics",
            "http://172.18.0.13:9191/metrics"
        ],
        "{stdout}"
    );

    // A service that is not running is named, with what starts it.
    let docker = fake_docker(&dir, &all[..3]);
    let out = xtask(&config).env("TDSQL_DOCKER", &docker).args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "temporal-worker of profile local is not running; start the stack with `cargo xtask up`"
        ),
        "{stderr}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

//! `cargo xtask smoke` and `cargo xtask load` plans, through `--dry-run`, against committed
//! expected files (`UPDATE_EXPECT=1` rewrites them).

use std::path::PathBuf;
use std::process::Command;

fn plan(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("--dry-run")
        .args(args)
        .env_remove("TDSQL_PROFILE")
        .output()
        .expect("xtask runs");
    assert!(
        out.status.success(),
        "xtask --dry-run {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("plans are UTF-8")
}

fn expect(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/expect").join(name);
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
    expect("smoke.txt", &out);
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
    expect("load.txt", &out);
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

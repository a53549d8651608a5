//! The suite binary against a real Temporal dev server (the harness's Temporal CLI).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use tdsql_test_support::{temporal_dev_server, temporal_dev_server_with};

fn suite(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tdsql-workflows")).args(args).output().expect("the suite binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tdsql-workflows-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

const ALL_CHECKS: [&str; 10] = [
    "activity",
    "signals-queries",
    "timer",
    "child",
    "retry",
    "update",
    "continue-as-new",
    "schedule",
    "nexus-endpoints",
    "visibility",
];

/// The FAIL line of `check`, which must be there.
fn fail_line<'a>(stdout: &'a str, check: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("FAIL  {check} ")))
        .unwrap_or_else(|| panic!("no FAIL line for {check}:\n{stdout}"))
}

#[test]
fn smoke_passes_against_a_dev_server() {
    let server = temporal_dev_server();
    let dir = scratch("smoke-pass");
    let report = dir.join("smoke.json");
    let out = suite(&["smoke", "--address", server.address(), "--report", report.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "smoke failed:\n{stdout}\n{}\nserver log:\n{}",
        text(&out.stderr),
        server.log()
    );
    for check in ALL_CHECKS {
        assert!(
            stdout.lines().any(|l| l.trim_start().starts_with(&format!("PASS  {check} "))),
            "no PASS line for {check}:\n{stdout}"
        );
    }
    assert!(stdout.contains("10 passed, 0 failed, 0 skipped"), "{stdout}");

    let json = read_json(&report);
    assert_eq!(json["passed"], true);
    assert_eq!(json["address"], server.address());
    let checks = json["checks"].as_array().unwrap();
    assert_eq!(checks.len(), ALL_CHECKS.len());
    for check in checks {
        assert_eq!(check["passed"], true, "{check}");
        assert_eq!(check["status"], "passed", "{check}");
        assert!(check["workflow_id"].as_str().unwrap().starts_with("tdsql-smoke-"), "{check}");
        assert!(check.get("reason").is_none(), "{check}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_broken_check_fails_with_its_workflow_id_and_reason() {
    let server = temporal_dev_server();
    let dir = scratch("smoke-broken");
    let report = dir.join("smoke.xml");
    let out = suite(&[
        "smoke",
        "--address",
        server.address(),
        "--only",
        "activity",
        "--only",
        "signals-queries",
        "--sabotage",
        "signals-queries",
        "--report",
        report.to_str().unwrap(),
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.lines().any(|l| l.trim_start().starts_with("PASS  activity ")), "{stdout}");
    let fail = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("FAIL  signals-queries "))
        .unwrap_or_else(|| panic!("no FAIL line:\n{stdout}"));
    // The line names the workflow the query went to and why it failed.
    assert!(fail.contains("-signals-queries-missing: query `items` failed"), "{fail}");
    assert!(fail.to_lowercase().contains("not found"), "{fail}");
    assert!(stdout.contains("1 passed, 1 failed, 0 skipped"), "{stdout}");

    let xml = std::fs::read_to_string(&report).unwrap();
    assert!(xml.starts_with("<?xml"), "{xml}");
    assert!(xml.contains(r#"tests="2" failures="1""#), "{xml}");
    assert!(xml.contains(r#"<testcase classname="smoke" name="activity""#), "{xml}");
    assert!(xml.contains("<failure message=\"tdsql-smoke-"), "{xml}");
    assert!(xml.contains("-signals-queries-missing: query `items` failed"), "{xml}");

    // A namespace that does not exist is named, with the fix, before any check runs.
    let out = suite(&["smoke", "--address", server.address(), "--namespace", "no-such-namespace"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("namespace `no-such-namespace` does not exist on 127.0.0.1:"), "{stderr}");
    assert!(!text(&out.stdout).contains("FAIL"), "{}", text(&out.stdout));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn each_new_check_fails_with_its_reason_when_sabotaged() {
    let server = temporal_dev_server();
    let dir = scratch("smoke-sabotage");
    let report = dir.join("smoke.json");
    let mut args = vec!["smoke", "--address", server.address(), "--report", report.to_str().unwrap()];
    for check in ["update", "continue-as-new", "schedule", "nexus-endpoints"] {
        args.extend(["--only", check, "--sabotage", check]);
    }
    let out = suite(&args);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("0 passed, 4 failed, 0 skipped"), "{stdout}");
    // Each line says what went wrong, in the server's or the check's words.
    let update = fail_line(&stdout, "update");
    assert!(update.contains("update `add(0)` was rejected: amount must be positive, got 0"), "{update}");
    let chain = fail_line(&stdout, "continue-as-new");
    assert!(chain.contains("the first run did not continue as new: Workflow terminated"), "{chain}");
    let schedule = fail_line(&stdout, "schedule");
    assert!(schedule.contains("-schedule-missing: trigger schedule failed: NotFound"), "{schedule}");
    let nexus = fail_line(&stdout, "nexus-endpoints");
    assert!(nexus.contains("are missing from 3 list pages"), "{nexus}");

    let json = read_json(&report);
    for check in json["checks"].as_array().unwrap() {
        assert_eq!(check["status"], "failed", "{check}");
        assert!(!check["reason"].as_str().unwrap().is_empty(), "{check}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_feature_the_server_has_switched_off_is_skipped_not_passed() {
    let server = temporal_dev_server_with(&[
        "frontend.enableUpdateWorkflowExecution=false",
        "frontend.enableSchedules=false",
    ]);
    let dir = scratch("smoke-skip");
    let report = dir.join("smoke.xml");
    let out = suite(&[
        "smoke",
        "--address",
        server.address(),
        "--only",
        "update",
        "--only",
        "schedule",
        "--only",
        "activity",
        "--report",
        report.to_str().unwrap(),
    ]);
    let stdout = text(&out.stdout);
    // Skipped checks do not fail the run; they are not counted as passed either.
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("1 passed, 0 failed, 2 skipped"), "{stdout}");
    for (check, why) in [
        ("update", "not supported by this server: workflow updates (PermissionDenied: "),
        ("schedule", "not supported by this server: schedules (PermissionDenied: "),
    ] {
        let line = stdout
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("SKIP  {check} ")))
            .unwrap_or_else(|| panic!("no SKIP line for {check}:\n{stdout}"));
        assert!(line.contains(why), "{line}");
    }
    let xml = std::fs::read_to_string(&report).unwrap();
    assert!(xml.contains(r#"tests="3" failures="0" errors="0" skipped="2""#), "{xml}");
    assert_eq!(xml.matches("<skipped message=").count(), 2, "{xml}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn smoke_without_a_frontend_says_how_to_get_one() {
    let port = tdsql_test_support::unused_port();
    let address = format!("127.0.0.1:{port}");
    let out = suite(&["smoke", "--address", &address]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&format!("cannot reach the Temporal frontend at {address}")), "{stderr}");
    assert!(stderr.contains("cargo xtask up"), "{stderr}");
}

#[test]
fn load_counts_add_up_and_thresholds_decide_the_exit_code() {
    let server = temporal_dev_server();
    let dir = scratch("load");

    // 5/s for 4 s with a 1 s ramp: 2.5 starts during the ramp, then 15: 17 in all.
    let report = dir.join("load.json");
    let out = suite(&[
        "load",
        "--address",
        server.address(),
        "--rate",
        "5",
        "--duration",
        "4s",
        "--ramp-up",
        "1s",
        "--workflow",
        "activities",
        "--activities",
        "2",
        "--workers",
        "2",
        "--max-failed",
        "0",
        "--max-p99",
        "30s",
        "--report",
        report.to_str().unwrap(),
    ]);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "load failed:\n{stdout}\n{}\nserver log:\n{}",
        text(&out.stderr),
        server.log()
    );
    let json = read_json(&report);
    let count = |key: &str| json["counts"][key].as_u64().unwrap();
    assert_eq!(count("scheduled"), 17, "{json}");
    assert_eq!(count("scheduled"), count("started") + count("start_failed"), "{json}");
    assert_eq!(count("started"), count("completed") + count("failed") + count("unfinished"), "{json}");
    assert_eq!(count("completed"), 17, "{json}");
    assert_eq!(json["passed"], true, "{json}");
    let latency = |key: &str| json["latency_ms"][key].as_f64().unwrap();
    assert!(latency("p50") > 0.0, "{json}");
    assert!(latency("p50") <= latency("p95") && latency("p95") <= latency("p99"), "{json}");
    assert!(latency("p99") <= latency("max"), "{json}");
    assert!(json["achieved_rate"].as_f64().unwrap() > 0.0, "{json}");
    assert!(stdout.contains("scheduled 17, started 17, start failed 0, completed 17"), "{stdout}");
    // The generator's own memory: resident at both ends, the peak at least either of them.
    let rss = |key: &str| json[key].as_f64().unwrap_or_else(|| panic!("no {key} in {json}"));
    assert!(rss("rss_mb_start") > 0.0 && rss("rss_mb_end") > 0.0, "{json}");
    assert!(rss("rss_mb_peak") >= rss("rss_mb_start").max(rss("rss_mb_end")), "{json}");
    assert!(stdout.contains("load: memory (RSS) "), "{stdout}");

    // No workflow completes within a microsecond: the threshold is missed and the run fails.
    let report = dir.join("load-missed.json");
    let out = suite(&[
        "load",
        "--address",
        server.address(),
        "--rate",
        "2",
        "--duration",
        "2s",
        "--max-p50",
        "0.001ms",
        "--report",
        report.to_str().unwrap(),
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("FAILED: latency") && stdout.contains("--max-p50"), "{stdout}");
    let json = read_json(&report);
    assert_eq!(json["passed"], false, "{json}");
    assert_eq!(json["thresholds"]["max_p50"], 0.001, "{json}");
    let reasons = json["failure_reasons"].as_array().unwrap();
    assert!(reasons.iter().any(|r| r.as_str().unwrap().contains("--max-p50")), "{json}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn load_reads_the_servers_persistence_metrics_and_lists_the_plugins_as_absent() {
    let server = temporal_dev_server();
    let dir = scratch("load-metrics");
    let report = dir.join("load.json");
    let metrics = server.metrics_url();
    let out = suite(&[
        "load",
        "--address",
        server.address(),
        "--rate",
        "5",
        "--duration",
        "3s",
        "--metrics",
        &metrics,
        "--max-persistence-errors",
        "0",
        "--report",
        report.to_str().unwrap(),
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}\nserver log:\n{}", text(&out.stderr), server.log());
    let json = read_json(&report);
    let persistence = &json["persistence"];
    assert_eq!(persistence["endpoints"][0], metrics.as_str(), "{persistence}");
    // 15 workflows were created in the store, each with its own CreateWorkflowExecution.
    let requests = &persistence["requests"];
    assert!(requests["total"].as_u64().unwrap() > 15, "{persistence}");
    assert!(
        requests["by_operation"]["CreateWorkflowExecution"]["requests"].as_u64().unwrap() >= 15,
        "{persistence}"
    );
    assert!(persistence["latency_p95_ms"].as_f64().unwrap() > 0.0, "{persistence}");
    assert_eq!(persistence["errors"]["unexpected"], 0, "{persistence}");
    assert!(persistence["scrapes"]["count"].as_u64().unwrap() >= 2, "{persistence}");
    assert_eq!(persistence["scrapes"]["failed"], 0, "{persistence}");
    // The dev server has no DSQL plugin: its families are absent, not zero.
    assert!(
        persistence.get("reservoir").is_none() && persistence.get("transactions").is_none(),
        "{persistence}"
    );
    let absent: Vec<&str> =
        persistence["absent"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    for family in ["dsql_reservoir_empty_total", "dsql_tx_exhausted_total", "dsql_tx_conflict_total"] {
        assert!(absent.contains(&family), "{family} not in {absent:?}");
    }
    assert!(stdout.contains("load: persistence requests "), "{stdout}");
    assert!(stdout.contains("absent (not exposed by any endpoint): dsql_reservoir_empty_total"), "{stdout}");

    // A threshold on a family no endpoint exposes cannot be met: exit 1, and why.
    let out = suite(&[
        "load",
        "--address",
        server.address(),
        "--rate",
        "2",
        "--duration",
        "1s",
        "--metrics",
        &metrics,
        "--max-reservoir-empty",
        "0",
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{}", text(&out.stderr));
    assert!(
        stdout.contains("FAILED: --max-reservoir-empty cannot be checked: no metrics endpoint exposes dsql_reservoir_empty_total"),
        "{stdout}"
    );

    // Bad input is named before any load: a threshold without --metrics, an endpoint that is not there.
    let out = suite(&[
        "load",
        "--address",
        server.address(),
        "--rate",
        "1",
        "--duration",
        "1s",
        "--max-occ-exhausted",
        "0",
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--max-occ-exhausted need(s) the persistence metrics; pass --metrics URL"),
        "{stderr}"
    );
    let nowhere = format!("http://127.0.0.1:{}/metrics", tdsql_test_support::unused_port());
    let out = suite(&[
        "load",
        "--address",
        server.address(),
        "--rate",
        "1",
        "--duration",
        "1s",
        "--metrics",
        &nowhere,
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "the scrape before the run failed; check --metrics: cannot scrape the metrics at {nowhere}"
        )),
        "{stderr}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_run_stopped_with_sigint_still_writes_its_report() {
    let server = temporal_dev_server();
    let dir = scratch("load-sigint");
    let report = dir.join("load.json");
    let metrics = server.metrics_url();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tdsql-workflows"))
        .args([
            "load",
            "--address",
            server.address(),
            "--rate",
            "5",
            "--duration",
            "10m",
            "--progress-every",
            "1s",
        ])
        .args(["--metrics", &metrics, "--report", report.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the suite binary runs");
    // Wait for the first progress line: the run is under way.
    let stdout = child.stdout.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push(line.clone());
        if line.contains("completed") && line.contains("so far") {
            break;
        }
    }
    let stopped_at = std::time::Instant::now();
    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    seen.extend(lines.map(Result::unwrap));
    let status = child.wait().unwrap();
    let stdout = seen.join("\n");
    // Five seconds of grace for the workflows in flight, the last scrape, the report.
    assert!(stopped_at.elapsed() < std::time::Duration::from_secs(30), "{stdout}");
    assert_eq!(status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("load: SIGINT after "), "{stdout}");
    // Each progress line shows the generator's memory.
    let progress = seen.iter().find(|line| line.contains("so far")).unwrap();
    assert!(progress.contains("  rss ") && progress.contains(" MB"), "{progress}");
    assert!(stdout.contains("FAILED: interrupted after "), "{stdout}");
    assert!(stdout.contains("load: report written to"), "{stdout}");
    let json = read_json(&report);
    assert!(json["interrupted_after_s"].as_f64().unwrap() > 0.0, "{json}");
    let count = |key: &str| json["counts"][key].as_u64().unwrap();
    assert!(count("scheduled") > 0 && count("scheduled") < 3000, "{json}");
    assert_eq!(count("scheduled"), count("started") + count("start_failed"), "{json}");
    assert_eq!(count("started"), count("completed") + count("failed") + count("unfinished"), "{json}");
    assert!(json["persistence"]["requests"]["total"].as_u64().unwrap() > 0, "{json}");
    std::fs::remove_dir_all(dir).unwrap();
}

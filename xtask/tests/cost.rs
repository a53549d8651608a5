//! `cargo xtask cost` and `load --cost` through the xtask binary: the dsql profile's config
//! (cluster, region, coordination tables) reaches `tdsql-ops`, which reads moto's CloudWatch
//! through the default credential chain and `AWS_ENDPOINT_URL`.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum};

const REGION: &str = "us-east-1";

/// A directory of the test's own with its config file.
struct Sandbox {
    dir: PathBuf,
}

impl Sandbox {
    fn new(label: &str, config: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("tdsql-xtask-cost-{}-{label}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config.toml"), config).unwrap();
        Self { dir }
    }

    fn xtask(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if key.starts_with("TDSQL_") || key.starts_with("AWS_") {
                cmd.env_remove(&*key);
            }
        }
        cmd.args(args)
            .env("TDSQL_CONFIG_FILE", self.dir.join("config.toml"))
            .env("AWS_ENDPOINT_URL", tdsql_test_support::aws_endpoint())
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", self.dir.join("no-aws-config"))
            .stdin(Stdio::null())
            .output()
            .expect("xtask runs")
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(future)
}

/// A cluster on moto with 40,000 DPUs on 2025-03-03 between 10:00 and 12:00, and a coordination
/// table with 1,000,000 write units in the same hours.
fn cluster_with_metrics(table: &str) -> String {
    block_on(async {
        let sdk = tdsql_test_support::aws_config(REGION).await;
        let cluster = aws_sdk_dsql::Client::new(&sdk)
            .create_cluster()
            .deletion_protection_enabled(false)
            .send()
            .await
            .expect("CreateCluster on moto")
            .identifier()
            .to_owned();
        let cloudwatch = aws_sdk_cloudwatch::Client::new(&sdk);
        let at = |text: &str| {
            DateTime::from_str(text, aws_sdk_cloudwatch::primitives::DateTimeFormat::DateTime).unwrap()
        };
        let datum = |metric: &str, dimension: (&str, &str), time: &str, value: f64| {
            MetricDatum::builder()
                .metric_name(metric)
                .dimensions(Dimension::builder().name(dimension.0).value(dimension.1).build())
                .timestamp(at(time))
                .value(value)
                .build()
        };
        let by_cluster = ("ClusterId", cluster.as_str());
        let dsql = vec![
            datum("TotalDPU", by_cluster, "2025-03-03T10:15:00Z", 25_000.0),
            datum("TotalDPU", by_cluster, "2025-03-03T11:45:00Z", 15_000.0),
            datum("WriteDPU", by_cluster, "2025-03-03T10:15:00Z", 40_000.0),
        ];
        cloudwatch
            .put_metric_data()
            .namespace("AWS/AuroraDSQL")
            .set_metric_data(Some(dsql))
            .send()
            .await
            .unwrap();
        let writes =
            vec![datum("ConsumedWriteCapacityUnits", ("TableName", table), "2025-03-03T11:00:00Z", 1e6)];
        cloudwatch
            .put_metric_data()
            .namespace("AWS/DynamoDB")
            .set_metric_data(Some(writes))
            .send()
            .await
            .unwrap();
        cluster
    })
}

fn config(cluster: &str, table: &str) -> String {
    format!(
        "[project]\nname = \"costtest\"\nregion = \"{REGION}\"\n\n[dsql]\nidentifier = \"{cluster}\"\n\n\
         [coordination.rate_limiter]\nenabled = true\ntable = \"{table}\"\n"
    )
}

#[test]
fn cost_measures_the_configured_cluster_and_its_coordination_table() {
    let table = format!("costtest-rl-{}", std::process::id());
    let cluster = cluster_with_metrics(&table);
    let sandbox = Sandbox::new("measure", &config(&cluster, &table));
    let args = [
        "--profile",
        "dsql",
        "cost",
        "--from",
        "2025-03-03T10:00:00Z",
        "--to",
        "2025-03-03T12:00:00Z",
        "--json",
    ];
    let output = sandbox.xtask(&args);
    let (out, err) = text(&output);
    assert!(output.status.success(), "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(report["cluster"], cluster.as_str());
    assert_eq!(report["dpus"]["total"], 40_000.0, "{report:#}");
    // $0.32 for two hours; a 30-day month is 360 such windows: 14,400,000 DPUs.
    assert_eq!(report["window_cost"]["dpu_usd"], 0.32, "{report:#}");
    assert_eq!(report["month_30d"]["dpus"], 14_400_000.0, "{report:#}");
    let tables = &report["coordination"]["tables"];
    assert_eq!(tables[0]["role"], "rate_limiter", "{report:#}");
    assert_eq!(tables[0]["write_units"], 1e6, "{report:#}");
    assert_eq!(report["coordination"]["total_usd"], 0.625, "{report:#}");

    // A load report with this cluster's cost measured again from its own window.
    let report_file = sandbox.dir.join("load.json");
    let load = serde_json::json!({
        "counts": {"completed": 8_000},
        "cost_window": {"from_epoch_s": 1_740_996_000, "to_epoch_s": 1_741_003_200},
    });
    std::fs::write(&report_file, load.to_string()).unwrap();
    let path = report_file.to_str().unwrap();
    let output = sandbox.xtask(&["--profile", "dsql", "cost", "--from-report", path]);
    let (out, err) = text(&output);
    assert!(output.status.success(), "{err}");
    assert!(
        out.contains("per workflow: 5.000 DPUs over 8,000 completed workflows; $40.00 per million"),
        "{out}"
    );
    let output = sandbox.xtask(&["cost", "--estimate", "--wps", "2", "--from-report", path]);
    let (out, err) = text(&output);
    assert!(output.status.success(), "{err}");
    // 2 wps × 2,592,000 s = 5,184,000 workflows × 5 DPUs = 25,920,000 DPUs = $207.36.
    assert!(out.contains("5,184,000 workflows × 5.000 DPUs"), "{out}");
    assert!(out.contains("cost            $207.36 ($207.36 DPUs + $0.0000 storage)"), "{out}");
}

#[test]
fn cost_wants_the_dsql_profile_and_a_cluster() {
    let sandbox = Sandbox::new("refuse", "[project]\nname = \"costtest\"\nregion = \"us-east-1\"\n");
    let output = sandbox.xtask(&["cost"]);
    let (_, err) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(err.contains("profile `local` has none; run it with --profile dsql"), "{err}");
    let output = sandbox.xtask(&["--profile", "dsql", "cost"]);
    let (_, err) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(err.contains("no Aurora DSQL cluster configured: dsql.identifier is not set"), "{err}");
    let output =
        sandbox.xtask(&["cost", "--estimate", "--wps", "5", "--from-report", "/nonexistent/load.json"]);
    let (_, err) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(err.contains("no load report at /nonexistent/load.json"), "{err}");
    let output = sandbox.xtask(&["load", "--rate", "1", "--duration", "5s", "--price-dpu", "9"]);
    let (_, err) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(err.contains("the --price-* flags of `load` apply to --cost"), "{err}");
}

/// `load --cost --dry-run`: the run, then the cost of its window into the report it writes.
#[test]
fn load_cost_plans_the_run_and_then_its_cost() {
    let cluster = "abcdefghijklmnopqrstuvwxyz";
    let sandbox = Sandbox::new("plan", &config(cluster, "costtest-rl"));
    let report = sandbox.dir.join("run.json");
    let args = [
        "--profile",
        "dsql",
        "--dry-run",
        "load",
        "--rate",
        "2",
        "--duration",
        "10s",
        "--cost",
        "--cost-wait",
        "5m",
        "--report",
        report.to_str().unwrap(),
    ];
    let output = sandbox.xtask(&args);
    let (out, err) = text(&output);
    assert!(output.status.success(), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].contains("tdsql-workflows") && lines[0].contains(&format!("--report {}", report.display())),
        "{out}"
    );
    let cost = lines[1];
    assert!(
        cost.contains("tdsql-ops -- cost-load --region us-east-1 --cluster abcdefghijklmnopqrstuvwxyz"),
        "{cost}"
    );
    assert!(cost.contains("--table rate_limiter=costtest-rl"), "{cost}");
    assert!(
        cost.contains(&format!("--report {}", report.display())) && cost.contains("--wait-up-to 5m"),
        "{cost}"
    );
}

//! `tdsql-ops cost`, `cost-load` and `cost-estimate` end to end against moto: metrics the test
//! puts into CloudWatch for a cluster it creates, read back through the default credential chain
//! and the `AWS_ENDPOINT_URL` override, as `cargo xtask cost` runs them.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum};
use serde_json::Value;

/// Moto offers Aurora DSQL here, and the price table has this region.
const REGION: &str = "us-east-1";
const GB: f64 = 1_073_741_824.0;

/// Seconds since the epoch of a UTC date and hour.
fn at(date: &str, hour: u32, minute: u32) -> i64 {
    let text = format!("{date}T{hour:02}:{minute:02}:00Z");
    DateTime::from_str(&text, aws_sdk_cloudwatch::primitives::DateTimeFormat::DateTime).unwrap().secs()
}

fn now() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()).unwrap()
}

/// Runs `tdsql-ops <args>` with moto's endpoint and test credentials in the environment (the
/// default chain reads them), nothing from the machine's own AWS setup.
fn ops(args: &[&str]) -> Output {
    ops_with(&tdsql_test_support::aws_endpoint(), args, true)
}

fn ops_with(endpoint: &str, args: &[&str], credentials: bool) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tdsql-ops"));
    command
        .args(args)
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_CONFIG_FILE", "/nonexistent/tdsql-test-aws-config")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/tdsql-test-aws-credentials")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_WEB_IDENTITY_TOKEN_FILE")
        .env_remove("AWS_CONTAINER_CREDENTIALS_FULL_URI")
        .env_remove("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
        .stdin(Stdio::null());
    if credentials {
        command.env("AWS_ACCESS_KEY_ID", "test").env("AWS_SECRET_ACCESS_KEY", "test");
    } else {
        command.env_remove("AWS_ACCESS_KEY_ID").env_remove("AWS_SECRET_ACCESS_KEY");
    }
    command.output().expect("tdsql-ops runs")
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn json(output: &Output) -> Value {
    let (out, err) = text(output);
    assert!(output.status.success(), "tdsql-ops failed: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

fn close(value: &Value, expected: f64) -> bool {
    value.as_f64().is_some_and(|v| (v - expected).abs() < 1e-9)
}

async fn create_cluster() -> String {
    create_cluster_at(&tdsql_test_support::aws_endpoint()).await
}

async fn create_cluster_at(endpoint: &str) -> String {
    let config = tdsql_test_support::aws_config_at(REGION, endpoint).await;
    let created = aws_sdk_dsql::Client::new(&config)
        .create_cluster()
        .deletion_protection_enabled(false)
        .tags("Project", "tdsql-cost-test")
        .send()
        .await
        .expect("CreateCluster on moto");
    created.identifier().to_owned()
}

/// PutMetricData: `(epoch seconds, value)` datapoints of one metric.
async fn put(namespace: &str, dimension: (&str, &str), metric: &str, points: &[(i64, f64)]) {
    put_at(&tdsql_test_support::aws_endpoint(), namespace, dimension, metric, points).await;
}

async fn put_at(
    endpoint: &str,
    namespace: &str,
    dimension: (&str, &str),
    metric: &str,
    points: &[(i64, f64)],
) {
    let config = tdsql_test_support::aws_config_at(REGION, endpoint).await;
    let client = aws_sdk_cloudwatch::Client::new(&config);
    for chunk in points.chunks(500) {
        let data = chunk
            .iter()
            .map(|(t, v)| {
                MetricDatum::builder()
                    .metric_name(metric)
                    .dimensions(Dimension::builder().name(dimension.0).value(dimension.1).build())
                    .timestamp(DateTime::from_secs(*t))
                    .value(*v)
                    .build()
            })
            .collect();
        client
            .put_metric_data()
            .namespace(namespace)
            .set_metric_data(Some(data))
            .send()
            .await
            .expect("PutMetricData");
    }
}

async fn put_dsql(cluster: &str, metric: &str, points: &[(i64, f64)]) {
    put("AWS/AuroraDSQL", ("ClusterId", cluster), metric, points).await;
}

/// Six hours on 2025-06-10: 30,000 DPUs (10,000 read, 15,000 write, 5,000 compute) in several
/// datapoints, 3 GB of storage, and a coordination table with 2,000,000 read and 400,000 write
/// units. Hand-computed: the DPUs cost $0.24, the storage 3 × $0.33 × 6/720 = $0.00825; a
/// 30-day month at this rate is 3,600,000 DPUs ($28.80) + $0.99 = $29.79, $28.66 after the free
/// tier; the table costs 2 × $0.125 + 0.4 × $0.625 = $0.50.
#[tokio::test]
async fn a_window_gives_the_expected_totals_cost_and_projection() {
    let cluster = create_cluster().await;
    let table = format!("tdsql-cost-{cluster}");
    let day = "2025-06-10";
    put_dsql(
        &cluster,
        "TotalDPU",
        &[(at(day, 0, 5), 12_000.0), (at(day, 2, 30), 8_000.0), (at(day, 5, 59), 10_000.0)],
    )
    .await;
    put_dsql(&cluster, "ReadDPU", &[(at(day, 0, 5), 4_000.0), (at(day, 5, 59), 6_000.0)]).await;
    put_dsql(&cluster, "WriteDPU", &[(at(day, 0, 5), 7_000.0), (at(day, 2, 30), 8_000.0)]).await;
    put_dsql(&cluster, "ComputeDPU", &[(at(day, 0, 5), 1_000.0), (at(day, 5, 59), 4_000.0)]).await;
    put_dsql(&cluster, "ClusterStorageSize", &[(at(day, 1, 0), 2.5 * GB), (at(day, 5, 30), 3.0 * GB)]).await;
    // Outside the window: must not count.
    put_dsql(&cluster, "TotalDPU", &[(at(day, 6, 0), 99_999.0), (at("2025-06-09", 23, 59), 99_999.0)]).await;
    let by_table = ("TableName", table.as_str());
    put(
        "AWS/DynamoDB",
        by_table,
        "ConsumedReadCapacityUnits",
        &[(at(day, 1, 0), 1_500_000.0), (at(day, 3, 0), 500_000.0)],
    )
    .await;
    put("AWS/DynamoDB", by_table, "ConsumedWriteCapacityUnits", &[(at(day, 4, 0), 400_000.0)]).await;

    let table_arg = format!("rate_limiter={table}");
    let args = [
        "cost",
        "--region",
        REGION,
        "--cluster",
        &cluster,
        "--from",
        "2025-06-10T00:00:00Z",
        "--to",
        "2025-06-10T06:00:00Z",
        "--table",
        &table_arg,
        "--json",
    ];
    let report = json(&ops(&args));
    assert_eq!(report["window"]["from"], "2025-06-10T00:00:00Z", "{report:#}");
    assert_eq!(report["window"]["to"], "2025-06-10T06:00:00Z", "{report:#}");
    assert!(close(&report["hours"], 6.0), "{report:#}");
    let dpus = &report["dpus"];
    assert!(close(&dpus["total"], 30_000.0) && close(&dpus["read"], 10_000.0), "{report:#}");
    assert!(close(&dpus["write"], 15_000.0) && close(&dpus["compute"], 5_000.0), "{report:#}");
    assert!(close(&report["storage_gb"], 3.0), "the latest storage figure: {report:#}");
    assert_eq!(report["storage_measured_at"], "2025-06-10T05:00:00Z", "its hour: {report:#}");
    assert!(close(&report["window_cost"]["dpu_usd"], 0.24), "{report:#}");
    assert!(close(&report["window_cost"]["storage_usd"], 0.008_25), "{report:#}");
    assert!(close(&report["per_hour_usd"], 0.248_25 / 6.0), "{report:#}");
    let month = &report["month_30d"];
    assert!(close(&month["dpus"], 3_600_000.0), "{report:#}");
    assert!(close(&month["cost"]["total_usd"], 29.79), "{report:#}");
    assert!(close(&month["after_free_tier"]["total_usd"], 28.66), "{report:#}");
    assert_eq!(report["prices"]["per_million_dpu"], 8.0);
    assert!(report["prices"]["source"].as_str().unwrap().contains("as of"), "{report:#}");
    let coordination = &report["coordination"];
    assert!(close(&coordination["tables"][0]["read_units"], 2_000_000.0), "{report:#}");
    assert!(close(&coordination["tables"][0]["write_units"], 400_000.0), "{report:#}");
    assert!(close(&coordination["total_usd"], 0.50), "{report:#}");
    assert_eq!(report["cloudwatch"]["get_metric_data_requests"], 1, "one request for every series");

    // The same in words.
    let output = ops(&args[..args.len() - 1]);
    let (out, err) = text(&output);
    assert!(output.status.success(), "{err}");
    assert!(out.contains("DPUs            30,000 (read 10,000, write 15,000, compute 5,000)"), "{out}");
    assert!(out.contains("30-day month    $29.79 ($28.80 DPUs + $0.9900 storage)"), "{out}");
    assert!(out.contains("rate_limiter") && out.contains("together $0.5000"), "{out}");
}

/// 150,000 DPUs on January 31st and 80,000 on February 1st: each month's free tier takes its
/// own 100,000, leaving 50,000 billable ($0.40) of the $1.84.
#[tokio::test]
async fn the_free_tier_is_applied_per_month_across_a_month_boundary() {
    let cluster = create_cluster().await;
    put_dsql(
        &cluster,
        "TotalDPU",
        &[
            (at("2025-01-31", 22, 10), 60_000.0),
            (at("2025-01-31", 22, 40), 40_000.0),
            (at("2025-01-31", 23, 30), 50_000.0),
            (at("2025-02-01", 0, 20), 80_000.0),
        ],
    )
    .await;
    let report = json(&ops(&[
        "cost",
        "--region",
        REGION,
        "--cluster",
        &cluster,
        "--from",
        "2025-01-31T22:00:00Z",
        "--to",
        "2025-02-01T02:00:00Z",
        "--json",
    ]));
    assert!(close(&report["window_cost"]["dpu_usd"], 1.84), "{report:#}");
    let months = report["window_free_tier"]["months"].as_array().unwrap();
    assert_eq!(months.len(), 2, "{report:#}");
    assert_eq!(
        (months[0]["month"].as_str(), months[1]["month"].as_str()),
        (Some("2025-01"), Some("2025-02"))
    );
    assert!(
        close(&months[0]["dpus"], 150_000.0) && close(&months[0]["billable_dpus"], 50_000.0),
        "{report:#}"
    );
    assert!(close(&months[1]["dpus"], 80_000.0) && close(&months[1]["billable_dpus"], 0.0), "{report:#}");
    assert!(close(&report["window_free_tier"]["after_free_tier"]["dpu_usd"], 0.40), "{report:#}");
}

#[tokio::test]
async fn no_datapoints_is_a_clear_error_with_exit_code_1() {
    let cluster = create_cluster().await;
    let output = ops(&["cost", "--region", REGION, "--cluster", &cluster, "--since", "2h"]);
    let (_, err) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("no metrics yet for cluster {cluster} in region {REGION}")), "{err}");
    assert!(err.contains("CloudWatch publishes Aurora DSQL metrics with a delay of a few minutes"), "{err}");
}

#[tokio::test]
async fn a_missing_cluster_missing_credentials_and_an_unknown_region_each_say_so() {
    let missing = "zzzzzzzzzzzzzzzzzzzzzzzzzz";
    let output = ops(&["cost", "--region", REGION, "--cluster", missing]);
    let (_, err) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("there is no Aurora DSQL cluster `{missing}` in {REGION}")), "{err}");
    assert!(err.contains("dsql.identifier"), "{err}");

    let output = ops_with(
        &tdsql_test_support::aws_endpoint(),
        &["cost", "--region", REGION, "--cluster", missing],
        false,
    );
    let (_, err) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(err.contains("no AWS credentials") && err.contains("aws sso login"), "{err}");

    let output = ops(&["cost", "--region", "ap-south-2", "--cluster", missing]);
    let (_, err) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(err.contains("no embedded Aurora DSQL price for region `ap-south-2`"), "{err}");
    assert!(err.contains("--price-dpu") && err.contains("--price-storage"), "{err}");

    let output = ops(&["cost", "--region", REGION, "--cluster", missing, "--since", "a while"]);
    let (_, err) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(err.contains("--since `a while` is not a duration"), "{err}");
}

fn load_report(name: &str, completed: u64) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tdsql-cost-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("load.json");
    let report =
        serde_json::json!({"workflow": "simple", "counts": {"scheduled": completed, "completed": completed}});
    std::fs::write(&path, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    path
}

/// A load run of 1,000 workflows that used 5,000 DPUs: 5 DPUs per workflow, $40 per million
/// workflows; at 10 workflows/s a 30-day month is 25,920,000 workflows, 129,600,000 DPUs,
/// $1,036.80 plus 2 GB of storage ($0.66).
#[tokio::test]
async fn a_load_run_gets_its_cost_per_workflow_and_an_estimate() {
    let cluster = create_cluster().await;
    let (from, to) = (at("2025-07-01", 12, 0) + 17, at("2025-07-01", 12, 4) + 40);
    put_dsql(&cluster, "TotalDPU", &[(from + 5, 2_000.0), (from + 100, 2_500.0), (to - 10, 500.0)]).await;
    put_dsql(&cluster, "ClusterStorageSize", &[(from + 60, 2.0 * GB)]).await;
    let report = load_report("load", 1_000);
    let path = report.to_str().unwrap();
    let (from_s, to_s) = (from.to_string(), to.to_string());
    let args = [
        "cost-load",
        "--region",
        REGION,
        "--cluster",
        &cluster,
        "--report",
        path,
        "--from",
        &from_s,
        "--to",
        &to_s,
        "--settle",
        "0s",
        "--poll",
        "1s",
        "--wait-up-to",
        "30s",
    ];
    let output = ops(&args);
    let (out, err) = text(&output);
    assert!(output.status.success(), "{err}");
    assert!(
        out.contains("per workflow: 5.000 DPUs over 1,000 completed workflows; $40.00 per million"),
        "{out}"
    );
    assert!(err.contains("reading again in 1 s until two reads agree"), "{err}");
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(written["counts"]["completed"], 1_000, "the run's own figures stay");
    assert_eq!(written["cost_window"]["from_epoch_s"], from);
    let cost = &written["cost"];
    assert_eq!(cost["window"]["from"], "2025-07-01T12:00:00Z", "whole minutes around the run: {cost:#}");
    assert_eq!(cost["window"]["to"], "2025-07-01T12:05:00Z", "{cost:#}");
    assert!(close(&cost["dpus"]["total"], 5_000.0), "{cost:#}");
    assert!(close(&cost["per_workflow"]["dpus_per_workflow"], 5.0), "{cost:#}");
    assert!(close(&cost["per_workflow"]["usd_per_million_workflows"], 40.0), "{cost:#}");

    let estimate = json(&ops(&["cost-estimate", "--wps", "10", "--report", path, "--json"]));
    assert!(close(&estimate["workflows"], 25_920_000.0), "{estimate:#}");
    assert!(close(&estimate["month_30d"]["dpus"], 129_600_000.0), "{estimate:#}");
    assert!(close(&estimate["month_30d"]["cost"]["total_usd"], 1_036.80 + 0.66), "{estimate:#}");
    assert!(close(&estimate["month_30d"]["after_free_tier"]["total_usd"], 1_036.00 + 0.33), "{estimate:#}");

    // The window stays in the report: measuring again later needs no --from/--to.
    let again = ops(&[
        "cost-load",
        "--region",
        REGION,
        "--cluster",
        &cluster,
        "--report",
        path,
        "--settle",
        "0s",
        "--poll",
        "1s",
    ]);
    assert!(again.status.success(), "{}", text(&again).1);
}

#[tokio::test]
async fn a_load_run_without_metrics_gives_up_after_the_bound_with_exit_code_1() {
    let cluster = create_cluster().await;
    let report = load_report("empty", 10);
    let path = report.to_str().unwrap();
    let (from, to) = ((now() - 600).to_string(), (now() - 300).to_string());
    let started = std::time::Instant::now();
    let output = ops(&[
        "cost-load",
        "--region",
        REGION,
        "--cluster",
        &cluster,
        "--report",
        path,
        "--from",
        &from,
        "--to",
        &to,
        "--settle",
        "0s",
        "--poll",
        "1s",
        "--wait-up-to",
        "3s",
    ]);
    let (_, err) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(started.elapsed().as_secs() < 20, "the bound holds");
    assert!(err.contains("gave up waiting") && err.contains("no metrics yet for cluster"), "{err}");
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert!(written["cost"].is_null() && written["cost_window"].is_object(), "{written:#}");

    let estimate = ops(&["cost-estimate", "--wps", "10", "--report", path]);
    let (_, err) = text(&estimate);
    assert_eq!(estimate.status.code(), Some(1), "{err}");
    assert!(err.contains("has no DPUs per workflow"), "{err}");
}

/// `cost --since 30d` with a datapoint every six hours for 30 days in every series: one
/// GetMetricData request; prints its wall time (the performance figure of the issue). A private
/// moto: its GetMetricData compares every stored datapoint of the window with every period, so
/// the shared server's other recent metrics would only measure moto.
#[tokio::test]
async fn thirty_days_take_one_get_metric_data_request() {
    let moto = tdsql_test_support::PrivateMoto::start().await;
    let endpoint = moto.endpoint();
    let cluster = create_cluster_at(&endpoint).await;
    let end = now() - 600;
    let points: Vec<(i64, f64)> = (0..120).map(|i| (end - i * 6 * 3600, 10.0)).collect();
    let by_cluster = ("ClusterId", cluster.as_str());
    for metric in ["TotalDPU", "ReadDPU", "WriteDPU", "ComputeDPU"] {
        put_at(&endpoint, "AWS/AuroraDSQL", by_cluster, metric, &points).await;
    }
    put_at(&endpoint, "AWS/AuroraDSQL", by_cluster, "ClusterStorageSize", &[(end, 1.5 * GB)]).await;
    let started = std::time::Instant::now();
    let output = ops_with(
        &endpoint,
        &["cost", "--region", REGION, "--cluster", &cluster, "--since", "30d", "--json"],
        true,
    );
    let wall = started.elapsed();
    let report = json(&output);
    assert_eq!(report["cloudwatch"]["get_metric_data_requests"], 1, "{}", report["cloudwatch"]);
    assert_eq!(report["window"]["period_s"], 300);
    // The oldest datapoint may fall just before the window's start.
    let total = report["dpus"]["total"].as_f64().unwrap();
    assert!((1_190.0..=1_200.0).contains(&total), "{total}");
    println!(
        "cost --since 30d against moto: {} GetMetricData request(s), {:.2} s in CloudWatch calls, {:.2} s for the \
         whole command",
        report["cloudwatch"]["get_metric_data_requests"],
        report["cloudwatch"]["wall_s"].as_f64().unwrap(),
        wall.as_secs_f64()
    );
}

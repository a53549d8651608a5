//! The CloudWatch side: one `GetMetricData` request (paged only past CloudWatch's datapoint
//! limit) for every series `cost` needs, the cluster's DPUs and storage and the coordination
//! tables' consumed capacity.

use std::time::Instant;

use anyhow::{Result, anyhow};
use aws_sdk_cloudwatch::error::DisplayErrorContext;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat, ScanBy};
use serde::Serialize;

use super::bill::{Dpus, Usage};

/// Aurora DSQL's namespace.
pub(crate) const DSQL_NAMESPACE: &str = "AWS/AuroraDSQL";
const DYNAMODB_NAMESPACE: &str = "AWS/DynamoDB";
/// What CloudWatch returns at most per `GetMetricData` call (more pages beyond it).
const MAX_DATAPOINTS_PER_CALL: i64 = 100_800;
/// How far back `ClusterStorageSize` is looked for when the window has none (it is published
/// less often than the DPU metrics).
pub(crate) const STORAGE_LOOKBACK_S: i64 = 24 * 3600;

/// A DynamoDB table whose requests are counted.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    pub(crate) role: String,
    pub(crate) name: String,
}

/// Consumed capacity of one coordination table in the window.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct TableUsage {
    pub(crate) role: String,
    pub(crate) name: String,
    pub(crate) read_units: f64,
    pub(crate) write_units: f64,
}

/// What CloudWatch said about a window, and what asking cost.
#[derive(Debug, Clone, Default)]
pub(crate) struct Measured {
    pub(crate) usage: Usage,
    /// Whether any DPU series had a datapoint in the window.
    pub(crate) dpu_datapoints: usize,
    /// The time of the storage figure, when there is one.
    pub(crate) storage_at: Option<i64>,
    pub(crate) tables: Vec<TableUsage>,
    pub(crate) requests: u32,
    pub(crate) wall_s: f64,
    /// The period of the DPU datapoints, seconds.
    pub(crate) period_s: i64,
}

/// The period CloudWatch can answer for a window starting `age_s` seconds ago with `series`
/// series in one call: 1 minute data is kept 15 days, 5 minutes 63 days, 1 hour beyond; every
/// period divides an hour, so no period spans a month boundary.
pub(crate) fn period_for(from: i64, to: i64, now: i64, series: i64) -> i64 {
    let age = now - from;
    let floor = if age > 63 * 86_400 {
        3600
    } else if age > 15 * 86_400 {
        300
    } else {
        60
    };
    [60, 300, 3600]
        .into_iter()
        .filter(|p| *p >= floor)
        .find(|p| series * (to - from).div_euclid(*p).max(1) <= MAX_DATAPOINTS_PER_CALL)
        .unwrap_or(3600)
}

fn query(
    id: &str,
    namespace: &str,
    metric: &str,
    dimension: (&str, &str),
    stat: &str,
    period: i64,
) -> MetricDataQuery {
    let metric = Metric::builder()
        .namespace(namespace)
        .metric_name(metric)
        .dimensions(Dimension::builder().name(dimension.0).value(dimension.1).build())
        .build();
    let stat = MetricStat::builder()
        .metric(metric)
        .period(i32::try_from(period).expect("a period of at most an hour"))
        .stat(stat)
        .build();
    MetricDataQuery::builder().id(id).metric_stat(stat).return_data(true).build()
}

/// Datapoints per query id, oldest first.
type Series = std::collections::BTreeMap<String, Vec<(i64, f64)>>;

/// One `GetMetricData` call, followed through its pages; returns the series and the number of
/// requests made.
async fn get(
    client: &aws_sdk_cloudwatch::Client,
    queries: Vec<MetricDataQuery>,
    from: i64,
    to: i64,
) -> Result<(Series, u32)> {
    let mut series = Series::new();
    let mut requests = 0;
    let mut token: Option<String> = None;
    loop {
        let out = client
            .get_metric_data()
            .set_metric_data_queries(Some(queries.clone()))
            .start_time(DateTime::from_secs(from))
            .end_time(DateTime::from_secs(to))
            .scan_by(ScanBy::TimestampAscending)
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|err| anyhow!("CloudWatch GetMetricData failed: {}", DisplayErrorContext(&err)))?;
        requests += 1;
        for result in out.metric_data_results() {
            let id = result.id().unwrap_or_default().to_owned();
            let points = series.entry(id).or_default();
            points
                .extend(result.timestamps().iter().map(DateTime::secs).zip(result.values().iter().copied()));
        }
        match out.next_token() {
            Some(next) if !next.is_empty() => token = Some(next.to_owned()),
            _ => break,
        }
    }
    for points in series.values_mut() {
        points.sort_by_key(|(at, _)| *at);
    }
    Ok((series, requests))
}

/// The cluster's usage in `[from, to)` (both multiples of the period) and the tables' requests.
pub(crate) async fn measure(
    client: &aws_sdk_cloudwatch::Client,
    cluster: &str,
    tables: &[Table],
    from: i64,
    to: i64,
    period: i64,
) -> Result<Measured> {
    let started = Instant::now();
    let by_cluster = ("ClusterId", cluster);
    let mut queries = vec![
        query("total", DSQL_NAMESPACE, "TotalDPU", by_cluster, "Sum", period),
        query("read", DSQL_NAMESPACE, "ReadDPU", by_cluster, "Sum", period),
        query("write", DSQL_NAMESPACE, "WriteDPU", by_cluster, "Sum", period),
        query("compute", DSQL_NAMESPACE, "ComputeDPU", by_cluster, "Sum", period),
        query("storage", DSQL_NAMESPACE, "ClusterStorageSize", by_cluster, "Maximum", period),
    ];
    for (i, table) in tables.iter().enumerate() {
        let by_table = ("TableName", table.name.as_str());
        queries.push(query(
            &format!("r{i}"),
            DYNAMODB_NAMESPACE,
            "ConsumedReadCapacityUnits",
            by_table,
            "Sum",
            period,
        ));
        queries.push(query(
            &format!("w{i}"),
            DYNAMODB_NAMESPACE,
            "ConsumedWriteCapacityUnits",
            by_table,
            "Sum",
            period,
        ));
    }
    let (series, mut requests) = get(client, queries, from, to).await?;
    let points = |id: &str| series.get(id).map_or(&[][..], Vec::as_slice);
    let sum = |id: &str| points(id).iter().map(|(_, v)| v).sum::<f64>();

    let (read, write, compute) = (sum("read"), sum("write"), sum("compute"));
    // TotalDPU is what the bill shows; its parts stand in only when it is missing.
    let samples: Vec<(i64, f64)> = if points("total").is_empty() {
        let mut merged = std::collections::BTreeMap::new();
        for id in ["read", "write", "compute"] {
            for (at, v) in points(id) {
                *merged.entry(*at).or_insert(0.0) += v;
            }
        }
        merged.into_iter().collect()
    } else {
        points("total").to_vec()
    };
    let dpu_datapoints = ["total", "read", "write", "compute"].iter().map(|id| points(id).len()).sum();
    let total = samples.iter().map(|(_, v)| v).sum();

    let mut storage = points("storage").last().copied();
    if storage.is_none() {
        let lookback = query("storage", DSQL_NAMESPACE, "ClusterStorageSize", by_cluster, "Maximum", 3600);
        let (older, more) = get(client, vec![lookback], to - STORAGE_LOOKBACK_S, to).await?;
        requests += more;
        storage = older.get("storage").and_then(|p| p.last().copied());
    }

    let tables = tables
        .iter()
        .enumerate()
        .map(|(i, table)| TableUsage {
            role: table.role.clone(),
            name: table.name.clone(),
            read_units: sum(&format!("r{i}")),
            write_units: sum(&format!("w{i}")),
        })
        .collect();
    Ok(Measured {
        usage: Usage {
            from,
            to,
            dpus: Dpus { total, read, write, compute },
            samples,
            storage_bytes: storage.map(|(_, bytes)| bytes),
        },
        dpu_datapoints,
        storage_at: storage.map(|(at, _)| at),
        tables,
        requests,
        wall_s: started.elapsed().as_secs_f64(),
        period_s: period,
    })
}

#[cfg(test)]
mod tests {
    use super::period_for;

    #[test]
    fn the_period_follows_retention_and_the_datapoint_limit() {
        let now = 1_800_000_000;
        let hour = 3600;
        assert_eq!(period_for(now - hour, now, now, 5), 60);
        // 14 days at 1 minute with 5 series is 100,800 datapoints: still one call.
        assert_eq!(period_for(now - 14 * 24 * hour, now, now, 5), 60);
        assert_eq!(period_for(now - 14 * 24 * hour, now, now, 9), 300, "past the limit");
        assert_eq!(period_for(now - 30 * 24 * hour, now, now, 9), 300, "older than 15 days");
        assert_eq!(
            period_for(now - 90 * 24 * hour, now - 80 * 24 * hour, now, 5),
            3600,
            "older than 63 days"
        );
    }
}

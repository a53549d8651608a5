//! `tdsql-ops cost`, `cost-load` and `cost-estimate`: what the Aurora DSQL cluster costs,
//! measured from CloudWatch, what one workflow of a load run cost, and what a workload will cost.
//!
//! The xtask's `cost` and `load --cost` hand over here with the configured cluster, region and
//! coordination tables; credentials come from the default chain and `AWS_ENDPOINT_URL` points the
//! SDK elsewhere (moto in the tests), as for `infra-status`.

mod bill;
mod metrics;
mod prices;
mod text;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, anyhow, bail};
use aws_credential_types::provider::ProvideCredentials as _;
use aws_sdk_cloudwatch::primitives::{DateTime, DateTimeFormat};
use aws_sdk_dsql::error::{DisplayErrorContext, ProvideErrorMetadata as _};
use aws_sdk_dsql::operation::get_cluster::GetClusterError;
use clap::Args;
use serde::Serialize;

use self::bill::{Bill, Estimate, PerWorkflow};
use self::metrics::{Measured, Table, TableUsage};
use self::prices::Prices;

/// How long after its end a window's metrics are complete, in the wording of the messages.
const PUBLISHING_DELAY: &str =
    "a few minutes (about 2 to 5; 1-minute datapoints, only for minutes with activity)";

/// Prices that override the embedded table.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct PriceArgs {
    /// USD per 1,000,000 DPUs, instead of the embedded table's figure for the region
    #[arg(long, value_name = "USD", value_parser = parse_price)]
    price_dpu: Option<f64>,
    /// USD per GB-month of storage, instead of the embedded table's figure
    #[arg(long, value_name = "USD", value_parser = parse_price)]
    price_storage: Option<f64>,
    /// USD per 1,000,000 DynamoDB read request units (on-demand), for the coordination tables
    #[arg(long, value_name = "USD", value_parser = parse_price)]
    price_ddb_read: Option<f64>,
    /// USD per 1,000,000 DynamoDB write request units (on-demand), for the coordination tables
    #[arg(long, value_name = "USD", value_parser = parse_price)]
    price_ddb_write: Option<f64>,
}

/// The cluster, its region and its coordination tables.
#[derive(Debug, Args)]
pub(crate) struct ClusterArgs {
    /// AWS region of the cluster
    #[arg(long)]
    region: String,
    /// Aurora DSQL cluster identifier
    #[arg(long)]
    cluster: String,
    /// DynamoDB coordination table whose requests to count, as ROLE=NAME; repeatable
    #[arg(long = "table", value_parser = crate::infra_status::parse_table)]
    tables: Vec<(String, String)>,
    #[command(flatten)]
    prices: PriceArgs,
}

/// Arguments of `tdsql-ops cost`.
#[derive(Debug, Args)]
pub(crate) struct CostArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// The window: the last DURATION up to now, e.g. 90m, 24h, 30d [default: 24h]
    #[arg(long, value_name = "DURATION", conflicts_with = "from")]
    since: Option<String>,
    /// Window start: RFC 3339 (2025-01-31T22:00:00Z) or seconds since the epoch
    #[arg(long, value_name = "TIME")]
    from: Option<String>,
    /// Window end [default: now]
    #[arg(long, value_name = "TIME", requires = "from")]
    to: Option<String>,
    /// Print the report as JSON
    #[arg(long)]
    json: bool,
}

/// Arguments of `tdsql-ops cost-load`.
#[derive(Debug, Args)]
pub(crate) struct LoadCostArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// The load run's JSON report: its completed count is read and its `cost` section written
    #[arg(long, value_name = "FILE")]
    report: PathBuf,
    /// Start of the run, seconds since the epoch (written into the report as `cost_window`);
    /// without it the report's `cost_window` is used
    #[arg(long, value_name = "EPOCH_S", requires = "to")]
    from: Option<i64>,
    /// End of the run, seconds since the epoch
    #[arg(long, value_name = "EPOCH_S", requires = "from")]
    to: Option<i64>,
    /// Wait at most this long for CloudWatch to publish the run's metrics
    #[arg(long, value_name = "DURATION", default_value = "15m")]
    wait_up_to: String,
    /// Time after the run's end before its metrics are read the first time
    #[arg(long, value_name = "DURATION", default_value = "3m")]
    settle: String,
    /// Time between two reads; the figures count as complete when two reads agree
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    poll: String,
}

/// Arguments of `tdsql-ops cost-estimate`.
#[derive(Debug, Args)]
pub(crate) struct EstimateArgs {
    /// Workflows per second to project a 30-day month for
    #[arg(long, value_name = "N", value_parser = parse_rate)]
    wps: f64,
    /// A load report with a `cost` section (`cargo xtask load ... --cost`)
    #[arg(long, value_name = "FILE")]
    report: PathBuf,
    #[command(flatten)]
    prices: PriceArgs,
    /// Print the estimate as JSON
    #[arg(long)]
    json: bool,
}

fn parse_price(value: &str) -> Result<f64, String> {
    match value.trim().trim_start_matches('$').parse::<f64>() {
        Ok(price) if price.is_finite() && price >= 0.0 => Ok(price),
        _ => Err(format!("`{value}` is not a price in USD (a number, at least 0, e.g. 8.00)")),
    }
}

fn parse_rate(value: &str) -> Result<f64, String> {
    match value.trim().parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!("`{value}` is not a rate of workflows per second (a number above 0, e.g. 50)")),
    }
}

/// `90s`, `15m`, `24h`, `30d`, or a sum of them (`1h30m`).
pub(crate) fn parse_duration(text: &str, flag: &str) -> Result<Duration> {
    let invalid = || {
        anyhow!(
            "{flag} `{text}` is not a duration: give a number and a unit (s, m, h, d), e.g. 90m, 24h or 30d"
        )
    };
    let mut total = 0u64;
    let mut digits = String::new();
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(invalid()),
        };
        let count: u64 = digits.parse().map_err(|_| invalid())?;
        total = count.checked_mul(unit).and_then(|s| total.checked_add(s)).ok_or_else(invalid)?;
        digits.clear();
    }
    if !digits.is_empty() || text.trim().is_empty() {
        return Err(invalid());
    }
    Ok(Duration::from_secs(total))
}

/// RFC 3339 or seconds since the epoch.
fn parse_time(text: &str, flag: &str) -> Result<i64> {
    if let Ok(epoch) = text.trim().parse::<i64>() {
        return Ok(epoch);
    }
    DateTime::from_str(text.trim(), DateTimeFormat::DateTime).map(|t| t.secs()).map_err(|_| {
        anyhow!("{flag} `{text}` is not a time: give RFC 3339 (e.g. 2025-01-31T22:00:00Z) or seconds since the epoch")
    })
}

/// `2025-01-31T22:00:00Z`.
pub(crate) fn utc(epoch: i64) -> String {
    DateTime::from_secs(epoch).fmt(DateTimeFormat::DateTime).unwrap_or_else(|_| epoch.to_string())
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The window's bounds on the period grid: the start rounded down, the end rounded up (down
/// when up would reach past now, where the period is not complete).
fn align(from: i64, to: i64, period: i64, now: i64) -> (i64, i64) {
    let start = from.div_euclid(period) * period;
    let up = to.div_euclid(period) * period + if to.rem_euclid(period) == 0 { 0 } else { period };
    let end = if up > now { to.div_euclid(period) * period } else { up };
    (start, end.max(start + period))
}

/// The SDK's config for `region`, with credentials resolved up front so that a machine without
/// any gets one clear error instead of one per request.
async fn aws(region: &str) -> Result<aws_config::SdkConfig> {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_owned()))
        .load()
        .await;
    let provider = config.credentials_provider().context("no AWS credentials provider is configured")?;
    if let Err(err) = provider.provide_credentials().await {
        bail!(
            "no AWS credentials: the default chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE and \
             ~/.aws/config, SSO, web identity, container and instance metadata) found none ({}); run `aws sso \
             login` or `aws configure`, or export AWS_PROFILE",
            DisplayErrorContext(&err)
        );
    }
    Ok(config)
}

/// Fails unless the cluster exists in the region: CloudWatch alone cannot tell a wrong
/// identifier from an idle cluster.
async fn check_cluster(config: &aws_config::SdkConfig, cluster: &str, region: &str) -> Result<()> {
    let client = aws_sdk_dsql::Client::new(config);
    match client.get_cluster().identifier(cluster).send().await {
        Ok(_) => Ok(()),
        Err(err) if err.as_service_error().is_some_and(GetClusterError::is_resource_not_found_exception) => {
            bail!(
                "there is no Aurora DSQL cluster `{cluster}` in {region}; check dsql.identifier and project.region \
             (`cargo xtask config show`, `aws dsql list-clusters --region {region}`)"
            )
        }
        Err(err) => {
            let code = err.code().unwrap_or("no error code").to_owned();
            bail!("GetCluster {cluster} in {region} failed ({code}): {}", DisplayErrorContext(&err))
        }
    }
}

/// The coordination tables' requests and, when a price is known, their cost.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Coordination {
    tables: Vec<TableCost>,
    /// USD per 1M read and write request units, and where they came from; `None` when unknown.
    price: Option<DynamoDbPrices>,
    total_usd: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
struct TableCost {
    #[serde(flatten)]
    usage: TableUsage,
    usd: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
struct DynamoDbPrices {
    per_million_reads: f64,
    per_million_writes: f64,
    source: String,
}

fn dynamodb_prices(region: &str, args: &PriceArgs) -> Option<DynamoDbPrices> {
    let embedded = prices::dynamodb(region);
    let reads = args.price_ddb_read.or(embedded.map(|p| p.per_million_reads))?;
    let writes = args.price_ddb_write.or(embedded.map(|p| p.per_million_writes))?;
    let source = match embedded {
        Some(p) if args.price_ddb_read.is_none() && args.price_ddb_write.is_none() => {
            format!("embedded table for {}: {} (as of {})", p.region, p.source, p.as_of)
        }
        _ => "--price-ddb-read and --price-ddb-write".to_owned(),
    };
    Some(DynamoDbPrices { per_million_reads: reads, per_million_writes: writes, source })
}

fn coordination(tables: &[TableUsage], region: &str, args: &PriceArgs) -> Option<Coordination> {
    if tables.is_empty() {
        return None;
    }
    let price = dynamodb_prices(region, args);
    let tables: Vec<TableCost> = tables
        .iter()
        .map(|usage| TableCost {
            usd: price.as_ref().map(|p| {
                (usage.read_units * p.per_million_reads + usage.write_units * p.per_million_writes)
                    / 1_000_000.0
            }),
            usage: usage.clone(),
        })
        .collect();
    let total_usd = price.as_ref().map(|_| tables.iter().filter_map(|t| t.usd).sum());
    Some(Coordination { tables, price, total_usd })
}

/// The window as reported.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Window {
    from: String,
    to: String,
    from_epoch_s: i64,
    to_epoch_s: i64,
    /// The CloudWatch period the window was read in; its bounds are on this grid.
    period_s: i64,
}

/// How much asking CloudWatch took.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CloudWatchCalls {
    get_metric_data_requests: u32,
    wall_s: f64,
}

/// The report of `cost` (and the `cost` section of a load report).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CostReport {
    cluster: String,
    region: String,
    window: Window,
    prices: Prices,
    #[serde(flatten)]
    bill: Bill,
    /// When the storage figure was measured; `None` when CloudWatch had none.
    storage_measured_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    per_workflow: Option<PerWorkflow>,
    #[serde(skip_serializing_if = "Option::is_none")]
    coordination: Option<Coordination>,
    cloudwatch: CloudWatchCalls,
}

/// Everything a cost subcommand needs before it asks CloudWatch.
struct Prepared {
    cloudwatch: aws_sdk_cloudwatch::Client,
    prices: Prices,
    tables: Vec<Table>,
}

async fn prepare(args: &ClusterArgs) -> Result<Prepared> {
    // The price first: an unknown region fails before any request.
    let prices = prices::settle(&args.region, args.prices.price_dpu, args.prices.price_storage)?;
    let config = aws(&args.region).await?;
    check_cluster(&config, &args.cluster, &args.region).await?;
    let tables =
        args.tables.iter().map(|(role, name)| Table { role: role.clone(), name: name.clone() }).collect();
    Ok(Prepared { cloudwatch: aws_sdk_cloudwatch::Client::new(&config), prices, tables })
}

/// The error for a window without a single datapoint.
fn no_metrics(args: &ClusterArgs, from: i64, to: i64) -> anyhow::Error {
    anyhow!(
        "no metrics yet for cluster {} in region {} between {} and {} (CloudWatch publishes Aurora DSQL metrics \
         with a delay of {PUBLISHING_DELAY}); run the command again later, or pick a window in which the cluster \
         was used",
        args.cluster,
        args.region,
        utc(from),
        utc(to)
    )
}

fn report(args: &ClusterArgs, prepared: &Prepared, measured: &Measured) -> CostReport {
    let usage = &measured.usage;
    CostReport {
        cluster: args.cluster.clone(),
        region: args.region.clone(),
        window: Window {
            from: utc(usage.from),
            to: utc(usage.to),
            from_epoch_s: usage.from,
            to_epoch_s: usage.to,
            period_s: measured.period_s,
        },
        prices: prepared.prices.clone(),
        bill: bill::bill(usage, &prepared.prices),
        storage_measured_at: measured.storage_at.map(utc),
        per_workflow: None,
        coordination: coordination(&measured.tables, &args.region, &args.prices),
        cloudwatch: CloudWatchCalls { get_metric_data_requests: measured.requests, wall_s: measured.wall_s },
    }
}

/// Series in the one `GetMetricData` call: four DPU series, storage, two per table.
fn series_count(tables: usize) -> i64 {
    5 + 2 * i64::try_from(tables).unwrap_or(i64::MAX / 4)
}

impl CostArgs {
    pub(crate) async fn run(self) -> Result<()> {
        let now = now();
        let (from, to) = match (&self.since, &self.from) {
            (_, Some(from)) => {
                let from = parse_time(from, "--from")?;
                let to = self.to.as_deref().map_or(Ok(now), |t| parse_time(t, "--to"))?;
                (from, to)
            }
            (since, None) => {
                let since = parse_duration(since.as_deref().unwrap_or("24h"), "--since")?;
                let since = i64::try_from(since.as_secs()).unwrap_or(i64::MAX);
                (now.saturating_sub(since), now)
            }
        };
        if to <= from {
            bail!("the window is empty: --to ({}) must be after --from ({})", utc(to), utc(from));
        }
        let prepared = prepare(&self.cluster).await?;
        let period = metrics::period_for(from, to, now, series_count(prepared.tables.len()));
        let (from, to) = align(from, to, period, now);
        let measured =
            metrics::measure(&prepared.cloudwatch, &self.cluster.cluster, &prepared.tables, from, to, period)
                .await?;
        if measured.dpu_datapoints == 0 && measured.storage_at.is_none() {
            return Err(no_metrics(&self.cluster, from, to));
        }
        let report = report(&self.cluster, &prepared, &measured);
        if self.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{}", text::cost(&report));
        }
        Ok(())
    }
}

/// The report's `cost_window`, written before the wait so that a later `cost --from-report`
/// can measure the same window.
#[derive(Debug, Serialize, serde::Deserialize)]
struct CostWindow {
    from_epoch_s: i64,
    to_epoch_s: i64,
}

fn read_report(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the load report {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a JSON load report", path.display()))
}

/// Writes the report through a temporary file in its directory, so no reader sees half of it.
fn write_report(path: &Path, report: &serde_json::Value) -> Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map_or_else(|| "report".into(), |n| n.to_string_lossy().into_owned());
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut text = serde_json::to_string_pretty(report)?;
    text.push('\n');
    std::fs::write(&temp, text)
        .and_then(|()| std::fs::rename(&temp, path))
        .with_context(|| format!("cannot write the load report {}", path.display()))
}

impl LoadCostArgs {
    pub(crate) async fn run(self) -> Result<()> {
        let wait_up_to = parse_duration(&self.wait_up_to, "--wait-up-to")?;
        let settle = parse_duration(&self.settle, "--settle")?;
        let poll = parse_duration(&self.poll, "--poll")?;
        let mut document = read_report(&self.report)?;
        let completed =
            document.pointer("/counts/completed").and_then(serde_json::Value::as_u64).with_context(|| {
                format!("{} is not a load report: it has no counts.completed", self.report.display())
            })?;
        let window = match (self.from, self.to) {
            (Some(from), Some(to)) => {
                let window = CostWindow { from_epoch_s: from, to_epoch_s: to };
                document["cost_window"] = serde_json::to_value(&window)?;
                write_report(&self.report, &document)?;
                window
            }
            _ => serde_json::from_value(document["cost_window"].clone()).with_context(|| {
                format!(
                    "{} has no cost_window (from a run of `cargo xtask load ... --cost`); give the run's window \
                     with --from and --to",
                    self.report.display()
                )
            })?,
        };
        if window.to_epoch_s <= window.from_epoch_s {
            bail!(
                "the load run's window is empty ({} to {})",
                utc(window.from_epoch_s),
                utc(window.to_epoch_s)
            );
        }
        let prepared = prepare(&self.cluster).await?;
        let measured = wait_for_metrics(&self, &prepared, &window, wait_up_to, settle, poll).await?;
        let mut cost = report(&self.cluster, &prepared, &measured);
        cost.per_workflow = bill::per_workflow(cost.bill.dpus.total, completed, &prepared.prices);
        document["cost"] = serde_json::to_value(&cost)?;
        write_report(&self.report, &document)?;
        print!("{}", text::load(&cost, completed));
        eprintln!("wrote the cost into {}", self.report.display());
        Ok(())
    }
}

/// Reads the run's metrics once CloudWatch has had time to publish them, again until two reads
/// agree, and gives up after `wait_up_to` with what it has (an error when that is nothing).
async fn wait_for_metrics(
    args: &LoadCostArgs,
    prepared: &Prepared,
    window: &CostWindow,
    wait_up_to: Duration,
    settle: Duration,
    poll: Duration,
) -> Result<Measured> {
    let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2);
    let deadline = now() + secs(wait_up_to);
    let ready = window.to_epoch_s + secs(settle);
    let clock = |epoch: i64| utc(epoch).get(11..19).map(str::to_owned).unwrap_or_else(|| utc(epoch));
    if ready > now() {
        eprintln!(
            "waiting until {} for CloudWatch: Aurora DSQL publishes its metrics with a delay of {PUBLISHING_DELAY}; \
             the run ended at {}, and the wait ends at {} at the latest (--cost-wait)",
            clock(ready.min(deadline)),
            clock(window.to_epoch_s),
            clock(deadline)
        );
        tokio::time::sleep(Duration::from_secs(u64::try_from(ready.min(deadline) - now()).unwrap_or(0)))
            .await;
    }
    let mut requests = 0;
    let mut wall_s = 0.0;
    let mut previous: Option<Measured> = None;
    loop {
        let now = now();
        let period = 60;
        let (from, to) =
            align(window.from_epoch_s, window.to_epoch_s, period, now.max(window.to_epoch_s + period));
        let mut measured =
            metrics::measure(&prepared.cloudwatch, &args.cluster.cluster, &prepared.tables, from, to, period)
                .await?;
        requests += measured.requests;
        wall_s += measured.wall_s;
        (measured.requests, measured.wall_s) = (requests, wall_s);
        let settled = previous.as_ref().is_some_and(|p| {
            measured.dpu_datapoints > 0
                && p.dpu_datapoints == measured.dpu_datapoints
                && p.usage.dpus == measured.usage.dpus
        });
        if settled {
            return Ok(measured);
        }
        if now + secs(poll) > deadline {
            if measured.dpu_datapoints == 0 {
                return Err(no_metrics(&args.cluster, from, to).context(format!(
                    "gave up waiting after --cost-wait; `cargo xtask cost --from-report {}` measures the run later",
                    args.report.display()
                )));
            }
            eprintln!(
                "warning: CloudWatch's figures for the run were still changing when the wait ended; `cargo xtask \
                 cost --from-report {}` measures it again later",
                args.report.display()
            );
            return Ok(measured);
        }
        eprintln!(
            "CloudWatch has {} DPUs for the run so far ({} datapoints); reading again in {} s until two reads agree \
             (giving up at {})",
            text::count(measured.usage.dpus.total),
            measured.dpu_datapoints,
            poll.as_secs(),
            clock(deadline)
        );
        previous = Some(measured);
        tokio::time::sleep(poll).await;
    }
}

impl EstimateArgs {
    pub(crate) fn run(self) -> Result<()> {
        let document = read_report(&self.report)?;
        let cost = &document["cost"];
        let dpus_per_workflow =
            cost.pointer("/per_workflow/dpus_per_workflow").and_then(serde_json::Value::as_f64);
        let Some(dpus_per_workflow) = dpus_per_workflow else {
            bail!(
                "{} has no DPUs per workflow (cost.per_workflow); it comes from `cargo xtask load ... --cost --profile \
                 dsql`, or later from `cargo xtask cost --from-report {}`",
                self.report.display(),
                self.report.display()
            );
        };
        let recorded: Prices = serde_json::from_value(cost["prices"].clone())
            .with_context(|| format!("{}: cost.prices is missing or malformed", self.report.display()))?;
        let prices = Prices {
            per_million_dpu: self.prices.price_dpu.unwrap_or(recorded.per_million_dpu),
            per_gb_month: self.prices.price_storage.unwrap_or(recorded.per_gb_month),
            source: if self.prices.price_dpu.is_some() || self.prices.price_storage.is_some() {
                format!("overrides on the command line, else the report's ({})", recorded.source)
            } else {
                format!("the report's ({})", recorded.source)
            },
        };
        let storage_gb = cost["storage_gb"].as_f64().unwrap_or(0.0);
        let estimate = bill::estimate(self.wps, dpus_per_workflow, storage_gb, &prices);
        if self.json {
            #[derive(Serialize)]
            struct Out<'a> {
                #[serde(flatten)]
                estimate: &'a Estimate,
                prices: &'a Prices,
                report: String,
            }
            let out = Out { estimate: &estimate, prices: &prices, report: self.report.display().to_string() };
            println!("{}", serde_json::to_string_pretty(&out)?);
        } else {
            print!("{}", text::estimate(&estimate, &prices, &self.report));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_times() {
        assert_eq!(parse_duration("90m", "--since").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("1d12h", "--since").unwrap(), Duration::from_secs(129_600));
        let err = parse_duration("30 days", "--since").unwrap_err().to_string();
        assert!(err.contains("--since `30 days` is not a duration"), "{err}");
        assert!(parse_duration("15", "--since").is_err() && parse_duration("", "--since").is_err());
        assert_eq!(parse_time("2025-02-01T00:00:00Z", "--from").unwrap(), 1_738_368_000);
        assert_eq!(parse_time("1738368000", "--from").unwrap(), 1_738_368_000);
        let err = parse_time("yesterday", "--to").unwrap_err().to_string();
        assert!(err.contains("--to `yesterday` is not a time") && err.contains("RFC 3339"), "{err}");
        assert_eq!(utc(1_738_368_000), "2025-02-01T00:00:00Z");
    }

    #[test]
    fn windows_align_to_the_period_without_reaching_past_now() {
        assert_eq!(align(130, 250, 60, 10_000), (120, 300));
        assert_eq!(align(130, 250, 60, 260), (120, 240), "the current minute is not complete");
        assert_eq!(align(3700, 3710, 3600, 3720), (3600, 7200), "at least one period");
    }

    #[test]
    fn prices_must_be_numbers_and_rates_positive() {
        assert_eq!(parse_price("$8.00"), Ok(8.0));
        assert!(parse_price("-1").unwrap_err().contains("not a price"));
        assert!(parse_price("eight").is_err());
        assert!(parse_rate("0").unwrap_err().contains("above 0"));
        assert_eq!(parse_rate("12.5"), Ok(12.5));
    }
}

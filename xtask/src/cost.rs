//! `cargo xtask cost` and the `--cost` of `cargo xtask load`: what the Aurora DSQL cluster of the
//! dsql profile costs, measured from CloudWatch, and what a workload will cost.
//!
//! The work runs in `tdsql-ops` (the AWS SDK stays out of the xtask); this module only reads the
//! configuration (cluster, region, coordination tables), checks the flags and hands over.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Result, bail};
use clap::Args;

use crate::context::Context;
use crate::infra::settings::Settings;
use crate::{ops, paths};

/// The profile whose cluster `cost` measures.
const DSQL_PROFILE: &str = "dsql";

/// Price overrides, passed on to `tdsql-ops` (which checks them).
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct PriceArgs {
    /// USD per 1,000,000 DPUs, instead of the embedded table's figure for project.region
    #[arg(long, value_name = "USD")]
    price_dpu: Option<String>,
    /// USD per GB-month of storage, instead of the embedded table's figure
    #[arg(long, value_name = "USD")]
    price_storage: Option<String>,
    /// USD per 1,000,000 DynamoDB read request units (on-demand), for the coordination tables
    #[arg(long, value_name = "USD")]
    price_ddb_read: Option<String>,
    /// USD per 1,000,000 DynamoDB write request units (on-demand), for the coordination tables
    #[arg(long, value_name = "USD")]
    price_ddb_write: Option<String>,
}

impl PriceArgs {
    fn to_args(&self) -> Vec<OsString> {
        let flags = [
            ("--price-dpu", &self.price_dpu),
            ("--price-storage", &self.price_storage),
            ("--price-ddb-read", &self.price_ddb_read),
            ("--price-ddb-write", &self.price_ddb_write),
        ];
        flags
            .into_iter()
            .filter_map(|(flag, v)| v.as_ref().map(|v| [flag.into(), v.into()]))
            .flatten()
            .collect()
    }

    /// Whether any override was given.
    pub(crate) fn any(&self) -> bool {
        !self.to_args().is_empty()
    }
}

/// Arguments of `cargo xtask cost`.
#[derive(Debug, Args)]
pub(crate) struct CostArgs {
    /// The window: the last DURATION up to now, e.g. 90m, 24h, 30d [default: 24h]
    #[arg(long, value_name = "DURATION", conflicts_with_all = ["from", "from_report", "estimate"])]
    since: Option<String>,
    /// Window start: RFC 3339 (2025-01-31T22:00:00Z) or seconds since the epoch
    #[arg(long, value_name = "TIME", conflicts_with_all = ["from_report", "estimate"])]
    from: Option<String>,
    /// Window end [default: now]
    #[arg(long, value_name = "TIME", requires = "from")]
    to: Option<String>,
    /// Print the report as JSON
    #[arg(long)]
    json: bool,
    /// Project a 30-day month at --wps workflows per second from the DPUs per workflow of a load
    /// report (`load --cost`); needs no AWS access
    #[arg(long, requires = "wps")]
    estimate: bool,
    /// Workflows per second for --estimate
    #[arg(long, value_name = "N", requires = "estimate")]
    wps: Option<String>,
    /// A JSON report of `load --cost` [default: the last one without --report]. With --estimate:
    /// where the DPUs per workflow come from; without: measure that run's window again (once
    /// CloudWatch has caught up) and update the report's cost
    #[arg(long, value_name = "FILE")]
    from_report: Option<PathBuf>,
    #[command(flatten)]
    prices: PriceArgs,
}

impl CostArgs {
    pub(crate) fn run(self, ctx: &Context) -> Result<()> {
        if self.estimate {
            let report = self.from_report.clone().unwrap_or_else(default_load_report);
            check_report_exists(&report)?;
            let mut args: Vec<OsString> =
                vec!["cost-estimate".into(), "--report".into(), absolute(&report).into()];
            args.extend(["--wps".into(), self.wps.clone().unwrap_or_default().into()]);
            args.extend(self.prices.to_args());
            if self.json {
                args.push("--json".into());
            }
            return ops::command(args).run(ctx);
        }
        let target = Target::load(ctx, "cargo xtask cost")?;
        if let Some(report) = &self.from_report {
            check_report_exists(report)?;
            let mut args = target.args("cost-load", &self.prices);
            // The window is the report's; CloudWatch has had its time by now, or says what it lacks.
            args.extend(["--report".into(), absolute(report).into(), "--settle".into(), "0s".into()]);
            return ops::command(args).run(ctx);
        }
        let mut args = target.args("cost", &self.prices);
        let window = [("--since", &self.since), ("--from", &self.from), ("--to", &self.to)];
        for (flag, value) in window {
            if let Some(value) = value {
                args.extend([flag.into(), value.into()]);
            }
        }
        if self.json {
            args.push("--json".into());
        }
        ops::command(args).run(ctx)
    }
}

fn check_report_exists(report: &Path) -> Result<()> {
    if !report.is_file() {
        bail!(
            "no load report at {}; run `cargo xtask load ... --cost --profile dsql` first (it writes one there unless \
             --report names another), or pass --from-report FILE",
            report.display()
        );
    }
    Ok(())
}

/// Where `load --cost` writes its report when `--report` names none.
pub(crate) fn default_load_report() -> PathBuf {
    paths::xtask_target_dir().join("load-cost-report.json")
}

/// A report path as the user meant it: relative to where they ran the command.
fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        return path.to_owned();
    }
    std::env::current_dir().map_or_else(|_| path.to_owned(), |cwd| cwd.join(path))
}

/// The cluster, its region and the enabled coordination tables, from the dsql profile's config.
#[derive(Debug)]
pub(crate) struct Target {
    region: String,
    cluster: String,
    tables: Vec<(&'static str, String)>,
}

impl Target {
    /// Reads the configuration; fails unless the profile is dsql and a cluster is configured.
    /// `command` names the command in the advice.
    pub(crate) fn load(ctx: &Context, command: &str) -> Result<Self> {
        if ctx.profile.name != DSQL_PROFILE {
            bail!(
                "{command} measures the Aurora DSQL cluster, and profile `{}` has none; run it with --profile \
                 {DSQL_PROFILE} (or export TDSQL_PROFILE={DSQL_PROFILE})",
                ctx.profile.name
            );
        }
        let settings = Settings::load(ctx)?;
        let Some(cluster) = settings.cluster() else {
            bail!(
                "no Aurora DSQL cluster configured: dsql.identifier is not set in {}; run `cargo xtask infra apply` \
                 to create one, or `cargo xtask infra import <identifier>` to use an existing one",
                settings.config_file.display()
            );
        };
        let mut tables = Vec::new();
        if settings.create_tables {
            let named =
                [("rate_limiter", &settings.rate_limiter_table), ("conn_lease", &settings.conn_lease_table)];
            tables.extend(named.into_iter().filter_map(|(role, name)| Some((role, name.clone()?))));
        }
        Ok(Self { region: settings.region.clone(), cluster: cluster.to_owned(), tables })
    }

    /// `tdsql-ops <subcommand> --region .. --cluster .. [--table ROLE=NAME].. [prices]`.
    fn args(&self, subcommand: &str, prices: &PriceArgs) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            subcommand.into(),
            "--region".into(),
            self.region.clone().into(),
            "--cluster".into(),
            self.cluster.clone().into(),
        ];
        for (role, name) in &self.tables {
            args.extend(["--table".into(), format!("{role}={name}").into()]);
        }
        args.extend(prices.to_args());
        args
    }
}

/// The `--cost` of `cargo xtask load`: checked before the run, measured after it.
#[derive(Debug)]
pub(crate) struct LoadCost {
    target: Target,
    prices: PriceArgs,
    wait: String,
    from: i64,
}

/// Seconds since the epoch.
fn epoch_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl LoadCost {
    /// Checks the profile and the cluster before the run starts (a run of minutes should not end
    /// in "no cluster configured"), and notes when it starts.
    pub(crate) fn start(ctx: &Context, prices: PriceArgs, wait: Option<String>) -> Result<Self> {
        let target = Target::load(ctx, "cargo xtask load --cost")?;
        Ok(Self { target, prices, wait: wait.unwrap_or_else(|| "15m".to_owned()), from: epoch_now() })
    }

    /// After the run: waits for CloudWatch (bounded by `--cost-wait`) and writes the cost into
    /// the report.
    pub(crate) fn finish(self, ctx: &Context, report: &Path) -> Result<()> {
        let to = epoch_now();
        let mut args = self.target.args("cost-load", &self.prices);
        args.extend(["--report".into(), report.into()]);
        args.extend(["--from".into(), self.from.to_string().into(), "--to".into(), to.to_string().into()]);
        args.extend(["--wait-up-to".into(), self.wait.into()]);
        ops::command(args).run(ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::PriceArgs;

    #[test]
    fn only_the_given_prices_are_passed_on() {
        let prices = PriceArgs { price_dpu: Some("9.5".to_owned()), ..PriceArgs::default() };
        assert_eq!(prices.to_args(), ["--price-dpu", "9.5"]);
        assert!(prices.any() && !PriceArgs::default().any());
    }
}

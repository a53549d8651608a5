//! `cargo xtask smoke` and `cargo xtask load`: the workflow suite against a running frontend.
//!
//! Both only parse, fill in defaults from the profile and hand over to the `tdsql-workflows`
//! binary (see [`crate::workflows`]), whose exit code becomes ours. They need nothing but a
//! reachable Temporal frontend: `up`'s natural next step.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use clap::{Args, ValueEnum};

use crate::context::Context;
use crate::exec::{Cmd, DOCKER};
use crate::stack::Stack;
use crate::{config, cost, workflows};

/// Where the suite runs: the frontend and the namespace.
#[derive(Debug, Args)]
pub(crate) struct TargetArgs {
    /// Temporal frontend gRPC address (HOST:PORT) [default: the profile's frontend,
    /// 127.0.0.1:<temporal.ports.frontend_grpc>, 7233 unless the config says otherwise]
    #[arg(long, value_name = "HOST:PORT")]
    address: Option<String>,
    /// Namespace to run in
    #[arg(long, default_value = "default", value_name = "NS")]
    namespace: String,
}

impl TargetArgs {
    /// `--address` and `--namespace` for the suite binary; the config is read only when no
    /// address is given, so an explicit one needs nothing but a reachable frontend.
    fn to_args(&self, ctx: &Context) -> Result<Vec<OsString>> {
        let address = match &self.address {
            Some(address) => address.clone(),
            None => {
                let config = config::load(ctx).context(
                    "cannot work out the frontend address from the config; fix the config or pass --address",
                )?;
                // Both profiles publish the frontend on the host's loopback.
                format!("127.0.0.1:{}", config.temporal.ports.frontend_grpc)
            }
        };
        Ok(["--address".into(), address.into(), "--namespace".into(), self.namespace.clone().into()].into())
    }
}

/// Arguments of `cargo xtask smoke`.
#[derive(Debug, Args)]
pub(crate) struct SmokeArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Write a report: JUnit XML when FILE ends in .xml, JSON otherwise
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Time each check may take, e.g. 30s
    #[arg(long, value_name = "DURATION")]
    timeout: Option<String>,
    /// Run only these checks (repeatable)
    #[arg(long, value_enum)]
    only: Vec<Check>,
}

/// The smoke checks, as the suite binary names them.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Check {
    Activity,
    SignalsQueries,
    Timer,
    Child,
    Retry,
    Update,
    ContinueAsNew,
    Schedule,
    NexusEndpoints,
    Visibility,
}

impl SmokeArgs {
    pub(crate) fn run(self, ctx: &Context) -> Result<()> {
        let mut args: Vec<OsString> = vec!["smoke".into()];
        args.extend(self.target.to_args(ctx)?);
        if let Some(timeout) = &self.timeout {
            args.extend(["--timeout".into(), timeout.into()]);
        }
        for check in &self.only {
            args.extend(["--only".into(), value_name(*check).into()]);
        }
        if let Some(report) = &self.report {
            args.extend(["--report".into(), absolute(report).into()]);
        }
        workflows::command(ctx, args)?.run(ctx)
    }
}

/// Arguments of `cargo xtask load`.
#[derive(Debug, Args)]
pub(crate) struct LoadArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Workflows started per second once ramped up (open loop: the rate does not drop when the
    /// server slows)
    #[arg(long, value_name = "WPS")]
    rate: String,
    /// How long to start workflows, ramp-up included, e.g. 60s or 5m
    #[arg(long, value_name = "DURATION")]
    duration: String,
    /// Time to ramp the start rate up from zero
    #[arg(long, value_name = "DURATION")]
    ramp_up: Option<String>,
    /// The workflow to run
    #[arg(long, value_enum, default_value_t = Workflow::Simple)]
    workflow: Workflow,
    /// Write the JSON report to FILE
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Fail when fewer workflows than this complete per second
    #[arg(long, value_name = "WPS")]
    min_rate: Option<String>,
    /// Fail when the median start-to-completion latency is above this
    #[arg(long, value_name = "DURATION")]
    max_p50: Option<String>,
    /// Fail when the 95th percentile latency is above this
    #[arg(long, value_name = "DURATION")]
    max_p95: Option<String>,
    /// Fail when the 99th percentile latency is above this
    #[arg(long, value_name = "DURATION")]
    max_p99: Option<String>,
    /// Fail when more workflows than this fail, do not start or do not finish
    #[arg(long, value_name = "N")]
    max_failed: Option<String>,
    /// A Temporal service's Prometheus endpoint, scraped before, during and after the run for the
    /// report's persistence section (repeatable). The profiles keep the services' metrics port
    /// inside the compose network, so there is no default: give one the host can reach, or
    /// --metrics-from-stack
    #[arg(long = "metrics", value_name = "URL")]
    metrics: Vec<String>,
    /// Scrape the running stack's four Temporal services at their containers' addresses (reachable
    /// from a Linux host; not through Docker Desktop's VM)
    #[arg(long)]
    metrics_from_stack: bool,
    /// Fail when more checkouts than this found the DSQL plugin's reservoir empty (needs --metrics)
    #[arg(long, value_name = "N")]
    max_reservoir_empty: Option<String>,
    /// Fail when more transactions than this exhausted their OCC retries (needs --metrics)
    #[arg(long, value_name = "N")]
    max_occ_exhausted: Option<String>,
    /// Fail when the server saw more persistence errors than this, not-found answers aside
    /// (needs --metrics)
    #[arg(long, value_name = "N")]
    max_persistence_errors: Option<String>,
    /// How often a progress line is printed when stdout is not a terminal, e.g. 30s
    #[arg(long, value_name = "DURATION")]
    progress_every: Option<String>,
    /// Measure the run's cost on the Aurora DSQL cluster (profile dsql): after the run, wait for
    /// CloudWatch's DPU metrics of its window and add DPUs per workflow and dollars per million
    /// workflows to the report (without --report, to target/tdsql/load-cost-report.json)
    #[arg(long)]
    cost: bool,
    /// With --cost: wait at most this long for CloudWatch to publish the run's metrics [default: 15m]
    #[arg(long, value_name = "DURATION", requires = "cost")]
    cost_wait: Option<String>,
    #[command(flatten)]
    prices: crate::cost::PriceArgs,
    /// More options of the generator, passed on as they are (see
    /// `cargo run -p tdsql-workflows -- load --help`): --workers, --activities, --children, --timer, ...
    #[arg(last = true, value_name = "LOAD OPTIONS")]
    extra: Vec<String>,
}

/// The workflows `load` can run.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Workflow {
    /// Completes at once
    Simple,
    /// Five activities in a row
    Activities,
    /// A one-second timer
    Timer,
    /// Three child workflows
    Child,
}

impl LoadArgs {
    pub(crate) fn run(self, ctx: &Context) -> Result<()> {
        let mut args: Vec<OsString> = vec!["load".into()];
        args.extend(self.target.to_args(ctx)?);
        args.extend(["--rate".into(), self.rate.into(), "--duration".into(), self.duration.into()]);
        args.extend(["--workflow".into(), value_name(self.workflow).into()]);
        let optional = [
            ("--ramp-up", self.ramp_up),
            ("--min-rate", self.min_rate),
            ("--max-p50", self.max_p50),
            ("--max-p95", self.max_p95),
            ("--max-p99", self.max_p99),
            ("--max-failed", self.max_failed),
            ("--max-reservoir-empty", self.max_reservoir_empty),
            ("--max-occ-exhausted", self.max_occ_exhausted),
            ("--max-persistence-errors", self.max_persistence_errors),
            ("--progress-every", self.progress_every),
        ];
        for (flag, value) in optional {
            if let Some(value) = value {
                args.extend([flag.into(), value.into()]);
            }
        }
        let mut metrics = self.metrics;
        if self.metrics_from_stack {
            metrics.extend(stack_metrics(ctx)?);
        }
        for url in metrics {
            args.extend(["--metrics".into(), url.into()]);
        }
        if !self.cost && self.prices.any() {
            bail!("the --price-* flags of `load` apply to --cost; add --cost, or drop them");
        }
        // Checked before the run, so a run of minutes does not end in "no cluster configured".
        let cost =
            if self.cost { Some(cost::LoadCost::start(ctx, self.prices, self.cost_wait)?) } else { None };
        let report = match (&self.report, &cost) {
            (Some(report), _) => Some(absolute(report)),
            (None, Some(_)) => Some(cost::default_load_report()),
            (None, None) => None,
        };
        if let Some(report) = &report {
            args.extend(["--report".into(), report.into()]);
        }
        args.extend(self.extra.into_iter().map(OsString::from));
        // Ctrl-C reaches the generator too, which stops, finishes and writes its report: wait for
        // it rather than exit under it (a handler that does nothing keeps this process alive).
        let _ = ctrlc::set_handler(|| {});
        let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
        let before = report.as_deref().and_then(modified);
        let run = workflows::command(ctx, args)?.run(ctx);
        match (cost, report) {
            // A run that missed a threshold still used the cluster, and wrote its report: its cost
            // is worth having. A run that wrote none (no frontend) leaves an older report alone.
            (Some(cost), Some(report))
                if run.is_ok() || modified(&report).is_some_and(|m| Some(m) != before) =>
            {
                let measured = cost.finish(ctx, &report);
                run.and(measured)
            }
            _ => run,
        }
    }
}

/// The Temporal services whose metrics `--metrics-from-stack` scrapes.
const TEMPORAL_SERVICES: [&str; 4] =
    ["temporal-history", "temporal-matching", "temporal-frontend", "temporal-worker"];

/// `http://<container address>:<temporal.ports.metrics>/metrics` of each running Temporal service
/// of the profile's stack (read-only probes, so `--dry-run` shows them too).
fn stack_metrics(ctx: &Context) -> Result<Vec<String>> {
    let config = config::load(ctx).context("--metrics-from-stack needs the metrics port from the config")?;
    let port = config.temporal.ports.metrics;
    let stack = Stack::new(ctx);
    let mut urls = Vec::new();
    for service in TEMPORAL_SERVICES {
        let id = stack.compose(None).args(["ps", "--quiet", service]).read(ctx)?;
        let Some(id) = id.lines().map(str::trim).find(|l| !l.is_empty()) else {
            bail!(
                "--metrics-from-stack: {service} of profile {} is not running; start the stack with `cargo xtask up`",
                ctx.profile.name
            );
        };
        let format = "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}";
        let addresses = Cmd::new(DOCKER).args(["inspect", "--format", format, id]).read(ctx)?;
        let Some(address) = addresses.split_whitespace().next() else {
            bail!("--metrics-from-stack: docker inspect gives {service} ({id}) no network address");
        };
        urls.push(format!("http://{address}:{port}/metrics"));
    }
    Ok(urls)
}

/// A value's name on the command line, e.g. `signals-queries`.
fn value_name(value: impl ValueEnum) -> String {
    value.to_possible_value().map(|v| v.get_name().to_owned()).unwrap_or_default()
}

/// A report path as the user meant it: relative to where they ran the command (the suite binary
/// runs in the project root).
fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        return path.to_owned();
    }
    std::env::current_dir().map_or_else(|_| path.to_owned(), |cwd| cwd.join(path))
}

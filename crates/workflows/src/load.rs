//! `load`: an open-loop workflow generator plus workers in one process.
//!
//! Starts follow a fixed schedule (a linear ramp to `--rate`, then steady until `--duration`) that
//! does not wait for earlier workflows: when the server slows down, workflows pile up instead of
//! the rate dropping. The generator runs on its own threads and connection so its CPU time can be
//! reported apart from the workers'. Latency is measured from the start request to the observed
//! completion of each workflow.

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use hdrhistogram::Histogram;
use serde::Serialize;
use temporalio_client::{
    Client, WorkflowGetResultOptions, WorkflowStartOptions, errors::WorkflowGetResultError, tonic,
};
use temporalio_common::HasWorkflowDefinition;
use temporalio_sdk::Runtime;

use crate::client::{self, Target, Tuning};
use crate::defs::{ActivitiesWorkflow, ParentInput, ParentWorkflow, SimpleWorkflow, TimerWorkflow};
use crate::memory::{self, Resident};
use crate::metrics::{self, Health, Reading, Scraper};
use crate::{cpu, duration, report, smoke};

/// Name prefix of the generator's threads, to measure their CPU time.
const GENERATOR_THREAD: &str = "load-generator";
/// Kept error messages, for the report.
const ERROR_SAMPLES: usize = 10;
/// After Ctrl-C or SIGTERM: how long the workflows already started may still finish.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// The longest latency or start lag the histograms hold (longer ones count as this).
const LONGEST: Duration = Duration::from_secs(24 * 3600);
/// How long the final scrape waits for the servers' metrics to catch up with the run.
const EXPORT_LAG: Duration = Duration::from_secs(2);
/// Scrapes of the metrics endpoints are at least this far apart (a live terminal line ticks faster).
const MIN_SCRAPE_INTERVAL: Duration = Duration::from_secs(5);

/// The sticky cache's size per worker unless --max-cached-workflows says otherwise.
const DEFAULT_CACHED_WORKFLOWS: usize = 1000;

/// The workflow each start runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Kind {
    /// Completes at once: one workflow task
    Simple,
    /// `--activities` activities one after the other
    Activities,
    /// Sleeps on a `--timer` timer
    Timer,
    /// Starts `--children` child workflows in parallel and waits for them
    Child,
}

/// Arguments of `load`.
#[derive(Debug, clap::Args)]
pub(crate) struct LoadArgs {
    #[command(flatten)]
    target: Target,
    /// Workflows started per second once ramped up
    #[arg(long, value_parser = parse_rate)]
    rate: f64,
    /// How long to start workflows (ramp-up included), e.g. 30s or 5m
    #[arg(long, value_parser = duration::parse)]
    duration: Duration,
    /// Time to ramp the start rate linearly from zero to --rate
    #[arg(long, default_value = "0s", value_parser = duration::parse)]
    ramp_up: Duration,
    /// The workflow to run
    #[arg(long, value_enum, default_value = "simple")]
    workflow: Kind,
    /// Activities per workflow (--workflow activities)
    #[arg(long, default_value_t = 5)]
    activities: u32,
    /// Children per workflow (--workflow child)
    #[arg(long, default_value_t = 3)]
    children: u32,
    /// Timer per workflow (--workflow timer)
    #[arg(long, default_value = "1s", value_parser = duration::parse)]
    timer: Duration,
    /// Workers in this process, all on the run's task queue
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Concurrent workflow tasks and activities per worker
    #[arg(long, default_value_t = 200)]
    slots: usize,
    /// Concurrent polls per task type per worker
    #[arg(long, default_value_t = 8)]
    pollers: usize,
    /// Workflows each worker keeps in its sticky cache between tasks, a bound on the workers'
    /// memory: finished workflows leave at once, so only those in flight count; beyond it the
    /// least recently used is evicted and replays its history at its next task (0: no cache)
    #[arg(long, default_value_t = DEFAULT_CACHED_WORKFLOWS)]
    max_cached_workflows: usize,
    /// Threads of the generator's own runtime
    #[arg(long, default_value_t = 1)]
    generator_threads: usize,
    /// How long to wait for the last workflows after the generator stops [default: the duration,
    /// at least 60s, at most 10m]
    #[arg(long, value_parser = duration::parse)]
    drain_timeout: Option<Duration>,
    /// Write the JSON report to FILE
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// A Prometheus endpoint of a Temporal service (repeatable), scraped before and after the run
    /// and with each progress line, for the persistence section of the report
    #[arg(long = "metrics", value_name = "URL")]
    metrics: Vec<String>,
    /// How often a progress line is printed when stdout is not a terminal
    #[arg(long, default_value = "10s", value_parser = duration::parse)]
    progress_every: Duration,
    #[command(flatten)]
    thresholds: Thresholds,
}

/// Pass criteria; each one given makes the run fail (exit 1) when it is missed.
#[derive(Debug, Clone, Default, clap::Args, Serialize)]
pub(crate) struct Thresholds {
    /// Fail when the achieved rate (completed per second) is below this
    #[arg(long, value_name = "WPS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    min_rate: Option<f64>,
    /// Fail when the median latency is above this
    #[arg(long, value_name = "DURATION", value_parser = duration::parse)]
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "ser_opt_ms")]
    max_p50: Option<Duration>,
    /// Fail when the 95th percentile latency is above this
    #[arg(long, value_name = "DURATION", value_parser = duration::parse)]
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "ser_opt_ms")]
    max_p95: Option<Duration>,
    /// Fail when the 99th percentile latency is above this
    #[arg(long, value_name = "DURATION", value_parser = duration::parse)]
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "ser_opt_ms")]
    max_p99: Option<Duration>,
    /// Fail when more workflows than this failed, did not start or did not finish
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_failed: Option<u64>,
    #[command(flatten)]
    #[serde(flatten)]
    persistence: metrics::PersistenceThresholds,
}

#[allow(clippy::ref_option)] // serde's `serialize_with` hands us `&Option<_>`
fn ser_opt_ms<S: serde::Serializer>(value: &Option<Duration>, serializer: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(d) => serializer.serialize_f64(ms(*d)),
        None => serializer.serialize_none(),
    }
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate > 0.0 && rate <= 100_000.0 => Ok(rate),
        _ => Err(format!("`{text}` is not a rate; give workflows per second, e.g. 50 or 2.5")),
    }
}

/// When each start is due: a linear ramp from 0 to `rate` over `ramp`, then `rate` until `duration`.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    rate: f64,
    ramp: f64,
    duration: f64,
}

impl Schedule {
    fn new(rate: f64, ramp: Duration, duration: Duration) -> Self {
        Self { rate, ramp: ramp.as_secs_f64(), duration: duration.as_secs_f64() }
    }

    /// Starts due by `t` seconds: the integral of the rate.
    fn due_by(&self, t: f64) -> f64 {
        let t = t.min(self.duration);
        if t <= self.ramp { self.rate * t * t / (2.0 * self.ramp) } else { self.rate * (t - self.ramp / 2.0) }
    }

    /// How many starts the whole run makes.
    fn total(&self) -> u64 {
        // Tiny epsilon: 10/s for 3 s is 30 starts, not 29 because of rounding.
        (self.due_by(self.duration) + 1e-9).floor() as u64
    }

    /// Seconds after the beginning at which start `i` (0-based) is due: the inverse of `due_by`.
    fn offset(&self, i: u64) -> f64 {
        let n = (i + 1) as f64;
        let ramp_starts = self.rate * self.ramp / 2.0;
        if n <= ramp_starts {
            (2.0 * self.ramp * n / self.rate).sqrt()
        } else {
            self.ramp / 2.0 + n / self.rate
        }
    }
}

/// Counters and samples the generator's tasks share with the progress display.
struct Shared {
    scheduled: AtomicU64,
    started: AtomicU64,
    start_failed: AtomicU64,
    completed: AtomicU64,
    failed: AtomicU64,
    /// Waits for a result that the server refused or cut off and that were made again.
    result_retries: AtomicU64,
    /// Completions between the end of the ramp-up and the end of the duration.
    steady_completed: AtomicU64,
    /// The latest completion, in microseconds since the run began.
    last_completion_us: AtomicU64,
    /// Start-to-completion latency in microseconds: constant memory however long the run.
    latency: Mutex<Histogram<u64>>,
    /// How late each start was against its schedule, in microseconds.
    lags: Mutex<Histogram<u64>>,
    errors: Mutex<Vec<String>>,
    /// The highest resident set a progress line saw, in bytes (the kernel's own high-water mark
    /// is updated lazily and can trail it by a few pages).
    rss_seen: AtomicU64,
    /// Set on Ctrl-C or SIGTERM: no more starts, a short grace for those in flight.
    stopped: AtomicBool,
}

impl Default for Shared {
    fn default() -> Self {
        let histogram = || {
            let high = u64::try_from(LONGEST.as_micros()).unwrap_or(u64::MAX);
            Mutex::new(Histogram::new_with_bounds(1, high, 3).expect("valid histogram bounds"))
        };
        Self {
            scheduled: AtomicU64::default(),
            started: AtomicU64::default(),
            start_failed: AtomicU64::default(),
            completed: AtomicU64::default(),
            failed: AtomicU64::default(),
            result_retries: AtomicU64::default(),
            steady_completed: AtomicU64::default(),
            last_completion_us: AtomicU64::default(),
            latency: histogram(),
            lags: histogram(),
            errors: Mutex::default(),
            rss_seen: AtomicU64::default(),
            stopped: AtomicBool::default(),
        }
    }
}

/// Microseconds, as the histograms hold them.
fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl Shared {
    fn error(&self, workflow_id: &str, err: &anyhow::Error) {
        let mut errors = self.errors.lock().expect("lock is never poisoned");
        if errors.len() < ERROR_SAMPLES {
            errors.push(format!("{workflow_id}: {}", client::describe(err)));
        }
    }
}

/// What the generator thread hands back.
struct Generated {
    /// When the first start was due.
    began: Instant,
    /// When the last start was sent.
    last_start: Instant,
    /// Workflows still running when the drain timeout (or the grace after a stop) ended.
    unfinished: u64,
    /// When Ctrl-C or SIGTERM stopped the starts, after `began`.
    stopped_after: Option<Duration>,
}

/// The report written to `--report` and summarised on stdout.
#[derive(Debug, Serialize)]
struct Report {
    workflow: Kind,
    target_rate: f64,
    duration_s: f64,
    ramp_up_s: f64,
    workers: usize,
    address: String,
    namespace: String,
    task_queue: String,
    counts: Counts,
    /// Waits for a result the server refused or cut off (made again; a sign of an overloaded server).
    result_retries: u64,
    /// Completed workflows per second, from the first start to the last completion.
    achieved_rate: f64,
    /// What `achieved_rate` would be if every scheduled workflow completed at once: all starts
    /// over the duration (lower than the target rate when there is a ramp-up).
    scheduled_rate: f64,
    /// Completions per second between the end of the ramp-up and the end of the duration.
    steady_rate: f64,
    /// Starts sent per second over the generation window.
    start_rate: f64,
    elapsed_s: f64,
    latency_ms: Latency,
    generator: Generator,
    /// This process's resident memory (MB) before the first start (workers up, the generator's
    /// connections not yet open), at its highest (the kernel's high-water mark) and when the last
    /// workflow was done. The progress lines show it level after the first minute or two.
    #[serde(skip_serializing_if = "Option::is_none")]
    rss_mb_start: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rss_mb_peak: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rss_mb_end: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    process_cpu_share: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    machine: Option<MachineLoad>,
    thresholds: Thresholds,
    /// Persistence health from `--metrics` (absent without it).
    #[serde(skip_serializing_if = "Option::is_none")]
    persistence: Option<Health>,
    /// Seconds after which Ctrl-C or SIGTERM stopped the run (absent when it ran its course).
    #[serde(skip_serializing_if = "Option::is_none")]
    interrupted_after_s: Option<f64>,
    passed: bool,
    failure_reasons: Vec<String>,
    error_samples: Vec<String>,
}

/// Every scheduled workflow ends up in exactly one of started/start_failed, and every started one
/// in exactly one of completed/failed/unfinished.
#[derive(Debug, Serialize, PartialEq, Eq)]
struct Counts {
    scheduled: u64,
    started: u64,
    start_failed: u64,
    completed: u64,
    failed: u64,
    unfinished: u64,
}

#[derive(Debug, Serialize, Default)]
struct Latency {
    p50: f64,
    p95: f64,
    p99: f64,
    max: f64,
    mean: f64,
}

#[derive(Debug, Serialize)]
struct Generator {
    threads: usize,
    /// The generator's CPU time as a share of one core over the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    cpu_share: Option<f64>,
    /// How late starts were against the schedule: a generator that cannot keep up shows here.
    lag_p99_ms: f64,
    lag_max_ms: f64,
}

#[derive(Debug, Serialize)]
struct MachineLoad {
    cores: usize,
    /// Share of all cores busy during the run (every process, the server included).
    busy_share: f64,
}

impl LoadArgs {
    /// Runs the load; `Ok(false)` when a threshold was missed.
    pub(crate) async fn run(self) -> Result<bool> {
        if self.ramp_up >= self.duration && !self.ramp_up.is_zero() {
            bail!(
                "--ramp-up ({} s) must be shorter than --duration ({} s)",
                self.ramp_up.as_secs_f64(),
                self.duration.as_secs_f64()
            );
        }
        if self.workers == 0 || self.generator_threads == 0 || self.slots == 0 || self.pollers == 0 {
            bail!("--workers, --generator-threads, --slots and --pollers must be at least 1");
        }
        if self.progress_every.is_zero() {
            bail!("--progress-every must be longer than zero, e.g. 10s");
        }
        let given = self.thresholds.persistence.given();
        if self.metrics.is_empty() && !given.is_empty() {
            bail!(
                "{} need(s) the persistence metrics; pass --metrics URL (a Temporal service's \
                 Prometheus endpoint, e.g. http://127.0.0.1:9090/metrics)",
                given.join(", ")
            );
        }
        let schedule = Schedule::new(self.rate, self.ramp_up, self.duration);
        let drain = self
            .drain_timeout
            .unwrap_or_else(|| self.duration.clamp(Duration::from_secs(60), Duration::from_secs(600)));
        let client = self.target.connect().await?;
        // The scrape before the run: an endpoint that does not answer now is a mistake in the
        // command line, not something to find out after an hour of load.
        let mut scraper = if self.metrics.is_empty() { None } else { Some(Scraper::new(&self.metrics)?) };
        let baseline = match &mut scraper {
            Some(scraper) => {
                Some(scraper.scrape().await.context("the scrape before the run failed; check --metrics")?)
            }
            None => None,
        };
        let task_queue = format!("tdsql-load-{}", smoke::run_tag());
        let runtime = Runtime::from_current_tokio(Default::default())
            .map_err(|err| anyhow!("{err}"))
            .context("cannot start the Temporal SDK runtime")?;
        let tuning =
            Tuning { slots: self.slots, pollers: self.pollers, cached_workflows: self.max_cached_workflows };
        let mut workers = (0..self.workers)
            .map(|index| client::worker(&runtime, client.clone(), &task_queue, index, Some(tuning)))
            .collect::<Result<Vec<_>>>()?;
        let shutdowns: Vec<_> = workers.iter().map(temporalio_sdk::Worker::shutdown_handle).collect();

        println!(
            "load: {} workflows at {}/s for {} s (ramp-up {} s) = {} starts; {} worker(s); task queue {task_queue}",
            self.workflow.name(),
            self.rate,
            self.duration.as_secs_f64(),
            self.ramp_up.as_secs_f64(),
            schedule.total(),
            self.workers
        );

        let shared = Arc::new(Shared::default());
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let plan = Plan {
            target: self.target.clone(),
            kind: self.workflow,
            activities: self.activities,
            children: self.children,
            timer: self.timer,
            task_queue: task_queue.clone(),
            schedule,
            drain,
            threads: self.generator_threads,
            stop: stop_rx,
        };
        let cpu_before = (cpu::process(), cpu::Machine::now(), Instant::now());
        let rss_start = Resident::read();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let generator_shared = shared.clone();
        let generator = std::thread::Builder::new()
            .name(GENERATOR_THREAD.to_owned())
            .spawn(move || {
                let result = plan.generate(&generator_shared);
                let _ = done_tx.send(());
                result
            })
            .context("cannot start the generator thread")?;

        let began = Instant::now();
        let mut latest = baseline.clone();
        let monitor = async {
            let watch = Watch { shared: &shared, schedule: &schedule, every: self.progress_every, began };
            tokio::select! {
                () = watch.run(done_rx, scraper.as_mut(), baseline.as_ref(), &mut latest) => {}
                () = stop_on_signal(&shared, &stop_tx, began) => {}
            }
            // Before the workers shut down: what the run itself left resident.
            let rss_end = Resident::read();
            for shutdown in &shutdowns {
                shutdown();
            }
            rss_end
        };
        let (worker_results, rss_end) = tokio::join!(
            futures::future::join_all(workers.iter_mut().map(temporalio_sdk::Worker::run)),
            monitor
        );
        let generated = generator.join().map_err(|_| anyhow!("the generator thread panicked"))??;
        for result in worker_results {
            result.map_err(|err| anyhow!("{err}")).context("a load worker stopped with an error")?;
        }
        // The scrape after the run; when it fails, the last good one stands in (and the failure
        // is in the report's scrape counts).
        let persistence = match (&mut scraper, &baseline) {
            (Some(scraper), Some(baseline)) => {
                // Temporal's own metrics framework hands counts to its exporter about once a
                // second: the last workflows' calls show up only after that.
                tokio::time::sleep(EXPORT_LAG).await;
                match scraper.scrape().await {
                    Ok(reading) => latest = Some(reading),
                    Err(err) => eprintln!("load: {err:#}; the report uses the last good scrape"),
                }
                let delta = latest.as_ref().unwrap_or(baseline).since(baseline);
                Some(Health::new(scraper, &delta, began.elapsed()))
            }
            _ => None,
        };
        // Generator threads are gone by now; their CPU time went with them, so it is measured
        // inside the generator and returned.
        let report =
            self.report(&shared, &generated, &task_queue, cpu_before, (rss_start, rss_end), persistence);
        print_summary(&report);
        if let Some(path) = &self.report {
            report::write_atomic(path, (serde_json::to_string_pretty(&report)? + "\n").as_bytes())?;
            println!("load: report written to {}", path.display());
        }
        Ok(report.passed)
    }

    fn report(
        &self,
        shared: &Shared,
        generated: &GeneratedWithCpu,
        task_queue: &str,
        (cpu_before, machine_before, wall_before): (Option<Duration>, Option<cpu::Machine>, Instant),
        (rss_start, rss_end): (Option<Resident>, Option<Resident>),
        persistence: Option<Health>,
    ) -> Report {
        let wall = wall_before.elapsed();
        let GeneratedWithCpu { generated, cpu: generator_cpu } = generated;
        let latencies = shared.latency.lock().expect("lock is never poisoned").clone();
        let lags = shared.lags.lock().expect("lock is never poisoned").clone();

        let counts = Counts {
            scheduled: shared.scheduled.load(Ordering::Relaxed),
            started: shared.started.load(Ordering::Relaxed),
            start_failed: shared.start_failed.load(Ordering::Relaxed),
            completed: shared.completed.load(Ordering::Relaxed),
            failed: shared.failed.load(Ordering::Relaxed),
            unfinished: generated.unfinished,
        };
        let last_completion = Duration::from_micros(shared.last_completion_us.load(Ordering::Relaxed));
        let achieved_rate = per_second(counts.completed, last_completion);
        let interrupted = generated.stopped_after;
        // An interrupted run's steady window ends where it stopped.
        let steady_to = interrupted.map_or(self.duration, |at| at.min(self.duration));
        let steady_rate = per_second(
            shared.steady_completed.load(Ordering::Relaxed),
            steady_to.saturating_sub(self.ramp_up),
        );
        let planned = interrupted.map_or(self.duration, |at| at.min(self.duration));
        let start_window = generated.last_start.saturating_duration_since(generated.began).max(planned);
        let start_rate = per_second(counts.started + counts.start_failed, start_window);
        let latency = Latency::from_histogram(&latencies);
        let share = |cpu: Duration| round3(cpu.as_secs_f64() / wall.as_secs_f64());
        let process_cpu_share =
            cpu_before.zip(cpu::process()).map(|(before, after)| share(after.saturating_sub(before)));
        let machine = machine_before.zip(cpu::Machine::now()).and_then(|(before, after)| {
            Some(MachineLoad { cores: after.cores, busy_share: round3(after.busy_since(&before)?) })
        });
        let generator = Generator {
            threads: self.generator_threads,
            cpu_share: generator_cpu.map(share),
            lag_p99_ms: quantile_ms(&lags, 0.99),
            lag_max_ms: if lags.is_empty() { 0.0 } else { round3(lags.max() as f64 / 1000.0) },
        };

        let t = &self.thresholds;
        let mut failure_reasons = Vec::new();
        if let Some(at) = interrupted {
            failure_reasons.push(format!(
                "interrupted after {:.1} s of the planned {} s",
                at.as_secs_f64(),
                self.duration.as_secs_f64()
            ));
        }
        if let Some(min) = t.min_rate
            && achieved_rate < min
        {
            failure_reasons.push(format!("achieved rate {achieved_rate:.2}/s is below --min-rate {min}"));
        }
        for (name, limit, value) in [
            ("--max-p50", t.max_p50, latency.p50),
            ("--max-p95", t.max_p95, latency.p95),
            ("--max-p99", t.max_p99, latency.p99),
        ] {
            if let Some(limit) = limit
                && (value > ms(limit) || counts.completed == 0)
            {
                failure_reasons.push(format!("latency {value:.1} ms is above {name} {:.1} ms", ms(limit)));
            }
        }
        let not_completed = counts.start_failed + counts.failed + counts.unfinished;
        if let Some(max) = t.max_failed
            && not_completed > max
        {
            failure_reasons.push(format!(
                "{not_completed} workflows failed, did not start or did not finish; --max-failed is {max}"
            ));
        }
        if let Some(health) = &persistence {
            failure_reasons.extend(health.missed(&t.persistence));
        }
        Report {
            workflow: self.workflow,
            target_rate: self.rate,
            duration_s: self.duration.as_secs_f64(),
            ramp_up_s: self.ramp_up.as_secs_f64(),
            workers: self.workers,
            address: self.target.address.clone(),
            namespace: self.target.namespace.clone(),
            task_queue: task_queue.to_owned(),
            passed: failure_reasons.is_empty(),
            scheduled_rate: round3(per_second(counts.scheduled, planned)),
            result_retries: shared.result_retries.load(Ordering::Relaxed),
            counts,
            achieved_rate: round3(achieved_rate),
            steady_rate: round3(steady_rate),
            start_rate: round3(start_rate),
            elapsed_s: duration::secs(wall),
            latency_ms: latency,
            generator,
            rss_mb_start: rss_start.map(|r| memory::mb(r.now)),
            rss_mb_peak: rss_end.map(|end| {
                let start = rss_start.map_or(0, |r| r.now);
                memory::mb(end.peak.max(end.now).max(start).max(shared.rss_seen.load(Ordering::Relaxed)))
            }),
            rss_mb_end: rss_end.map(|r| memory::mb(r.now)),
            process_cpu_share,
            machine,
            thresholds: t.clone(),
            persistence,
            interrupted_after_s: interrupted.map(duration::secs),
            failure_reasons,
            error_samples: shared.errors.lock().expect("lock is never poisoned").clone(),
        }
    }
}

/// Waits for Ctrl-C or SIGTERM, then stops the generator (which gives the workflows in flight a
/// short grace and reports the rest as unfinished). Never returns.
async fn stop_on_signal(shared: &Shared, stop: &tokio::sync::watch::Sender<bool>, began: Instant) {
    use tokio::signal::unix::{SignalKind, signal};
    let (mut interrupt, mut terminate) =
        match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
            (Ok(interrupt), Ok(terminate)) => (interrupt, terminate),
            (Err(err), _) | (_, Err(err)) => {
                eprintln!(
                    "load: cannot listen for Ctrl-C and SIGTERM ({err}); an interrupted run writes no report"
                );
                return std::future::pending().await;
            }
        };
    let name = tokio::select! {
        _ = interrupt.recv() => "SIGINT",
        _ = terminate.recv() => "SIGTERM",
    };
    shared.stopped.store(true, Ordering::Relaxed);
    let _ = stop.send(true);
    println!(
        "\nload: {name} after {:.1} s: no more starts; waiting up to {} s for the workflows in flight, then writing the report",
        began.elapsed().as_secs_f64(),
        STOP_GRACE.as_secs()
    );
    // Keep the signals handled (a second Ctrl-C must not kill the report half-written).
    loop {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    }
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Simple => "simple",
            Kind::Activities => "activities",
            Kind::Timer => "timer",
            Kind::Child => "child",
        }
    }
}

/// Everything the generator thread needs.
struct Plan {
    target: Target,
    kind: Kind,
    activities: u32,
    children: u32,
    timer: Duration,
    task_queue: String,
    schedule: Schedule,
    drain: Duration,
    threads: usize,
    /// Becomes true on Ctrl-C or SIGTERM.
    stop: tokio::sync::watch::Receiver<bool>,
}

struct GeneratedWithCpu {
    generated: Generated,
    cpu: Option<Duration>,
}

impl Plan {
    /// Runs the schedule on a runtime of its own (blocking this thread until the drain ends).
    fn generate(self, shared: &Arc<Shared>) -> Result<GeneratedWithCpu> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(self.threads)
            .thread_name(GENERATOR_THREAD)
            .enable_all()
            .build()
            .context("cannot start the generator's runtime")?;
        let generated = runtime.block_on(self.run(shared))?;
        // Measure while the runtime's threads still exist.
        let cpu = cpu::threads(GENERATOR_THREAD);
        drop(runtime);
        Ok(GeneratedWithCpu { generated, cpu })
    }

    async fn run(&self, shared: &Arc<Shared>) -> Result<Generated> {
        let client = self.target.connect().await.context("the generator cannot connect")?;
        // Result polls get a connection of their own: thousands of them waiting on a slow server
        // must not queue the starts behind them.
        let results = self.target.connect().await.context("the generator cannot connect")?;
        let total = self.schedule.total();
        let began = Instant::now();
        let mut deadline = began + Duration::from_secs_f64(self.schedule.duration) + self.drain;
        // Workflows left behind by an interrupted run end by themselves.
        let execution_timeout =
            Duration::from_secs_f64(self.schedule.duration) + self.drain + Duration::from_secs(60);
        let steady =
            (Duration::from_secs_f64(self.schedule.ramp), Duration::from_secs_f64(self.schedule.duration));
        let mut stop = self.stop.clone();
        let mut stopped_after = None;
        let mut tasks = tokio::task::JoinSet::new();
        let mut last_start = began;
        for i in 0..total {
            let due = began + Duration::from_secs_f64(self.schedule.offset(i));
            tokio::select! {
                biased;
                Ok(_) = stop.wait_for(|stopped| *stopped) => {
                    stopped_after = Some(began.elapsed());
                    break;
                }
                () = tokio::time::sleep_until(due.into()) => {}
            }
            last_start = Instant::now();
            let lag = micros(last_start.saturating_duration_since(due));
            shared.lags.lock().expect("lock is never poisoned").saturating_record(lag);
            shared.scheduled.fetch_add(1, Ordering::Relaxed);
            let workflow_id = format!("{}-{i}", self.task_queue);
            let options = WorkflowStartOptions::new(self.task_queue.clone(), workflow_id.clone())
                .execution_timeout(execution_timeout)
                .build();
            let job = Job {
                client: client.clone(),
                results: results.clone(),
                shared: shared.clone(),
                workflow_id,
                options,
                began,
                steady,
            };
            match self.kind {
                Kind::Simple => tasks.spawn(job.drive(SimpleWorkflow::run, ())),
                Kind::Activities => tasks.spawn(job.drive(ActivitiesWorkflow::run, self.activities)),
                Kind::Timer => {
                    let millis = u64::try_from(self.timer.as_millis()).unwrap_or(u64::MAX);
                    tasks.spawn(job.drive(TimerWorkflow::run, millis))
                }
                Kind::Child => {
                    tasks.spawn(job.drive(ParentWorkflow::run, ParentInput { children: self.children }))
                }
            };
            // Finished tasks go at once: memory follows the workflows in flight, not the run's length.
            while tasks.try_join_next().is_some() {}
        }
        if stopped_after.is_some() {
            deadline = deadline.min(Instant::now() + STOP_GRACE);
        }
        loop {
            tokio::select! {
                joined = tokio::time::timeout_at(deadline.into(), tasks.join_next()) => match joined {
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => break,
                },
                Ok(_) = stop.wait_for(|stopped| *stopped), if stopped_after.is_none() => {
                    stopped_after = Some(began.elapsed());
                    deadline = deadline.min(Instant::now() + STOP_GRACE);
                }
            }
        }
        let unfinished = tasks.len() as u64;
        tasks.abort_all();
        Ok(Generated { began, last_start, unfinished, stopped_after })
    }
}

/// One workflow: start it, wait for its result, count it.
struct Job {
    client: Client,
    results: Client,
    shared: Arc<Shared>,
    workflow_id: String,
    options: WorkflowStartOptions,
    began: Instant,
    /// The steady window after the ramp-up: (from, to) since `began`.
    steady: (Duration, Duration),
}

impl Job {
    async fn drive<W>(self, workflow: W, input: W::Input)
    where
        W: HasWorkflowDefinition + Send + 'static,
        W::Input: Send,
    {
        let sent = Instant::now();
        if let Err(err) = self.client.start_workflow(workflow, input, self.options).await {
            self.shared.start_failed.fetch_add(1, Ordering::Relaxed);
            self.shared.error(&self.workflow_id, &anyhow::Error::new(err).context("start failed"));
            return;
        }
        self.shared.started.fetch_add(1, Ordering::Relaxed);
        let handle = self.results.get_workflow_handle::<W>(self.workflow_id.clone());
        let mut backoff = Duration::from_millis(100);
        loop {
            match handle.get_result(WorkflowGetResultOptions::default()).await {
                Ok(_) => {
                    let now = Instant::now();
                    let at = now - self.began;
                    let shared = &self.shared;
                    shared
                        .latency
                        .lock()
                        .expect("lock is never poisoned")
                        .saturating_record(micros(now - sent));
                    shared.last_completion_us.fetch_max(micros(at), Ordering::Relaxed);
                    if at >= self.steady.0 && at < self.steady.1 {
                        shared.steady_completed.fetch_add(1, Ordering::Relaxed);
                    }
                    shared.completed.fetch_add(1, Ordering::Relaxed);
                }
                // The wait for the result was refused or cut off (an overloaded server limits
                // concurrent long polls per namespace); the workflow itself is still running.
                Err(WorkflowGetResultError::Rpc(status)) if transient(status.code()) => {
                    self.shared.result_retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    continue;
                }
                Err(err) => {
                    self.shared.failed.fetch_add(1, Ordering::Relaxed);
                    self.shared.error(&self.workflow_id, &anyhow::Error::new(err).context("workflow failed"));
                }
            }
            return;
        }
    }
}

/// gRPC codes after which waiting for a result again makes sense.
fn transient(code: tonic::Code) -> bool {
    matches!(code, tonic::Code::ResourceExhausted | tonic::Code::Unavailable | tonic::Code::DeadlineExceeded)
}

/// The progress display: a live line on a terminal, a line every `every` otherwise, each with the
/// rates so far and, with `--metrics`, the persistence figures since the run began.
struct Watch<'a> {
    shared: &'a Shared,
    schedule: &'a Schedule,
    every: Duration,
    began: Instant,
}

impl Watch<'_> {
    /// Runs until the generator is done; every scrape that succeeds becomes `latest`.
    async fn run(
        &self,
        mut done: tokio::sync::oneshot::Receiver<()>,
        mut scraper: Option<&mut Scraper>,
        baseline: Option<&Reading>,
        latest: &mut Option<Reading>,
    ) {
        let tty = std::io::stdout().is_terminal();
        let every = if tty { Duration::from_secs(1) } else { self.every };
        let scrape_every = every.max(MIN_SCRAPE_INTERVAL);
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        let mut last_completed = 0;
        let mut last_scrape = Instant::now();
        let mut note = String::new();
        loop {
            tokio::select! {
                _ = &mut done => break,
                _ = ticker.tick() => {}
            }
            if let (Some(scraper), Some(baseline)) = (scraper.as_deref_mut(), baseline)
                && last_scrape.elapsed() + Duration::from_millis(100) >= scrape_every
            {
                last_scrape = Instant::now();
                note = match scraper.scrape().await {
                    Ok(reading) => {
                        let line = metrics::progress_note(&reading.since(baseline), self.began.elapsed());
                        *latest = Some(reading);
                        line
                    }
                    Err(err) => format!("scrape failed: {err:#}"),
                };
            }
            let line = self.line(&mut last_completed, every, &note);
            let mut out = std::io::stdout().lock();
            let _ = if tty { write!(out, "\r\x1b[2K{line}") } else { writeln!(out, "load: {line}") };
            let _ = out.flush();
        }
        if tty {
            print!("\r\x1b[2K");
            let _ = std::io::stdout().flush();
        }
    }

    fn line(&self, last_completed: &mut u64, every: Duration, note: &str) -> String {
        let shared = self.shared;
        let schedule = self.schedule;
        let completed = shared.completed.load(Ordering::Relaxed);
        let started = shared.started.load(Ordering::Relaxed);
        let failed = shared.failed.load(Ordering::Relaxed) + shared.start_failed.load(Ordering::Relaxed);
        let in_flight = started.saturating_sub(completed + shared.failed.load(Ordering::Relaxed));
        let rate = (completed - *last_completed) as f64 / every.as_secs_f64();
        *last_completed = completed;
        let t = self.began.elapsed().as_secs_f64();
        let so_far = if t > 0.0 { completed as f64 / t } else { 0.0 };
        let p95 = {
            let latency = shared.latency.lock().expect("lock is never poisoned");
            quantile_ms(&latency, 0.95)
        };
        let target = if t < schedule.ramp { schedule.rate * t / schedule.ramp } else { schedule.rate };
        let mut line = format!(
            "{t:6.0} s  target {target:.0}/s  started {started}/{}  completed {completed} ({rate:.1}/s now, {so_far:.1}/s so far)  \
             p95 {p95:.0} ms  failed {failed}  in flight {in_flight}",
            schedule.total(),
        );
        if let Some(resident) = Resident::read() {
            shared.rss_seen.fetch_max(resident.now, Ordering::Relaxed);
            line.push_str(&format!("  rss {:.1} MB", memory::mb(resident.now)));
        }
        if !note.is_empty() {
            line.push_str("  |  ");
            line.push_str(note);
        }
        line
    }
}

fn print_summary(r: &Report) {
    let c = &r.counts;
    println!(
        "load: scheduled {}, started {}, start failed {}, completed {}, failed {}, unfinished {}",
        c.scheduled, c.started, c.start_failed, c.completed, c.failed, c.unfinished
    );
    if r.result_retries > 0 {
        println!(
            "load: the server refused or cut off {} waits for a result (waited again)",
            r.result_retries
        );
    }
    let ramp = if r.ramp_up_s > 0.0 { format!(" after a {} s ramp-up", r.ramp_up_s) } else { String::new() };
    println!(
        "load: achieved {:.2} wf/s of {:.2} scheduled (target {}/s{ramp}); after the ramp-up {:.2} completed/s; \
         starts sent {:.2}/s; {:.1} s in all",
        r.achieved_rate, r.scheduled_rate, r.target_rate, r.steady_rate, r.start_rate, r.elapsed_s
    );
    let l = &r.latency_ms;
    println!(
        "load: start-to-completion latency p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        l.p50, l.p95, l.p99, l.max
    );
    let pct = |share: Option<f64>| share.map_or_else(|| "n/a".to_owned(), |s| format!("{:.0}%", s * 100.0));
    println!(
        "load: generator {} of one core ({} thread(s), start lag p99 {:.1} ms), this process {} of one core, machine {} busy{}",
        pct(r.generator.cpu_share),
        r.generator.threads,
        r.generator.lag_p99_ms,
        pct(r.process_cpu_share),
        pct(r.machine.as_ref().map(|m| m.busy_share)),
        r.machine.as_ref().map_or_else(String::new, |m| format!(" ({} cores)", m.cores)),
    );
    if let (Some(start), Some(peak), Some(end)) = (r.rss_mb_start, r.rss_mb_peak, r.rss_mb_end) {
        println!(
            "load: memory (RSS) {start:.1} MB before the run, {end:.1} MB at its end, peak {peak:.1} MB"
        );
    }
    if let Some(health) = &r.persistence {
        for line in health.summary() {
            println!("load: {line}");
        }
    }
    for sample in &r.error_samples {
        println!("load: error: {sample}");
    }
    if r.passed {
        println!("load: PASSED");
    } else {
        for reason in &r.failure_reasons {
            println!("load: FAILED: {reason}");
        }
    }
}

/// A quantile of a microsecond histogram in milliseconds (zero when empty).
fn quantile_ms(histogram: &Histogram<u64>, q: f64) -> f64 {
    if histogram.is_empty() { 0.0 } else { round3(histogram.value_at_quantile(q) as f64 / 1000.0) }
}

impl Latency {
    fn from_histogram(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            p50: quantile_ms(h, 0.50),
            p95: quantile_ms(h, 0.95),
            p99: quantile_ms(h, 0.99),
            max: round3(h.max() as f64 / 1000.0),
            mean: round3(h.mean() / 1000.0),
        }
    }
}

/// Events per second over `window` (0 for an empty window); the report's rates.
pub(crate) fn per_second(count: u64, window: Duration) -> f64 {
    if window.is_zero() { 0.0 } else { count as f64 / window.as_secs_f64() }
}

/// Milliseconds, rounded to microseconds, as the reports print them.
pub(crate) fn ms(d: Duration) -> f64 {
    round3(d.as_secs_f64() * 1000.0)
}

/// Rounded to three decimals.
pub(crate) fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steady_schedule_spaces_starts_evenly() {
        let s = Schedule::new(10.0, Duration::ZERO, Duration::from_secs(3));
        assert_eq!(s.total(), 30);
        assert!((s.offset(0) - 0.1).abs() < 1e-9);
        assert!((s.offset(29) - 3.0).abs() < 1e-9);
    }

    #[test]
    fn ramp_schedule_is_the_inverse_of_its_integral() {
        let s = Schedule::new(100.0, Duration::from_secs(10), Duration::from_secs(30));
        // 500 starts during the ramp, then 100/s for 20 s.
        assert_eq!(s.total(), 2500);
        for i in [0, 10, 249, 499, 500, 1000, 2499] {
            let t = s.offset(i);
            assert!((s.due_by(t) - (i + 1) as f64).abs() < 1e-6, "start {i} at {t}");
        }
        assert!(s.offset(2499) <= 30.0 + 1e-9);
        // Starts are ever closer together during the ramp and evenly spaced after it.
        assert!(s.offset(1) - s.offset(0) > s.offset(401) - s.offset(400));
        assert!((s.offset(1001) - s.offset(1000) - 0.01).abs() < 1e-9);
    }

    #[test]
    fn latency_comes_from_a_bounded_histogram_to_three_significant_digits() {
        let shared = Shared::default();
        let mut h = shared.latency.lock().unwrap();
        for millis in 1..=100_u64 {
            h.saturating_record(micros(Duration::from_millis(millis)));
        }
        // Longer than the histogram holds: counted at its ceiling, not lost.
        h.saturating_record(u64::MAX);
        let latency = Latency::from_histogram(&h);
        let close = |got: f64, want: f64| (got - want).abs() <= want * 0.001 + 0.001;
        assert!(close(latency.p50, 51.0), "{latency:?}");
        assert!(close(latency.p95, 96.0), "{latency:?}");
        assert!(close(latency.max, ms(LONGEST)), "{latency:?}");
        assert_eq!(Latency::from_histogram(&Histogram::new(3).unwrap()).p99, 0.0);
    }

    #[test]
    fn rates_must_be_positive_numbers() {
        assert_eq!(parse_rate("2.5"), Ok(2.5));
        for bad in ["0", "-1", "fast", "NaN"] {
            assert!(parse_rate(bad).unwrap_err().contains("is not a rate"), "{bad}");
        }
    }
}

//! `smoke`: a worker and a client in one process run one workflow per feature and check each result.
//!
//! Every check has its own workflow id, a timeout and a PASS/FAIL line; a failure names the workflow
//! id and the reason. The visibility check runs last and expects every workflow the other checks
//! completed to be listed and counted.

mod features;

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use serde::Serialize;
use temporalio_client::{
    Client, WorkflowCountOptions, WorkflowDescribeOptions, WorkflowGetResultOptions, WorkflowListOptions,
    WorkflowQueryOptions, WorkflowSignalOptions, WorkflowStartOptions, tonic,
};
use temporalio_sdk::Runtime;

use crate::client::{self, Target};
use crate::defs::{
    ChildWorkflow, GreetingWorkflow, OrderWorkflow, ParentInput, ParentWorkflow, RetryWorkflow, TimerWorkflow,
};
use crate::duration;
use crate::report;

/// The checks, in the order they are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Check {
    /// A workflow that runs one activity and returns its result
    Activity,
    /// Signals that change a workflow's state and queries that read it back
    SignalsQueries,
    /// A durable timer
    Timer,
    /// A parent that starts children and collects their results
    Child,
    /// An activity that fails twice and succeeds on its third attempt
    Retry,
    /// A workflow update accepted by its validator and one rejected
    Update,
    /// A workflow that continues as new several times and completes
    ContinueAsNew,
    /// A schedule created, triggered, described, paused, unpaused, listed and deleted
    Schedule,
    /// More Nexus endpoints than one list page holds, listed page by page, updated and deleted
    NexusEndpoints,
    /// The completed workflows are listed and counted by the visibility store
    Visibility,
}

impl Check {
    const ALL: [Check; 10] = [
        Check::Activity,
        Check::SignalsQueries,
        Check::Timer,
        Check::Child,
        Check::Retry,
        Check::Update,
        Check::ContinueAsNew,
        Check::Schedule,
        Check::NexusEndpoints,
        Check::Visibility,
    ];

    fn name(self) -> &'static str {
        match self {
            Check::Activity => "activity",
            Check::SignalsQueries => "signals-queries",
            Check::Timer => "timer",
            Check::Child => "child",
            Check::Retry => "retry",
            Check::Update => "update",
            Check::ContinueAsNew => "continue-as-new",
            Check::Schedule => "schedule",
            Check::NexusEndpoints => "nexus-endpoints",
            Check::Visibility => "visibility",
        }
    }

    fn description(self) -> &'static str {
        match self {
            Check::Activity => "activity workflow",
            Check::SignalsQueries => "signals and queries",
            Check::Timer => "timer",
            Check::Child => "child workflows",
            Check::Retry => "activity retried after failures",
            Check::Update => "workflow update accepted and rejected",
            Check::ContinueAsNew => "continue-as-new chain",
            Check::Schedule => "schedule lifecycle",
            Check::NexusEndpoints => "Nexus endpoints paged, updated and deleted",
            Check::Visibility => "visibility list and count",
        }
    }
}

/// How a check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Passed,
    Failed,
    /// The server does not offer the feature (an older server, a feature flag off).
    Skipped,
}

/// A check's error when the server lacks the feature: the check is skipped, not passed.
#[derive(Debug)]
struct Unsupported(String);

impl std::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "not supported by this server: {}", self.0)
    }
}

impl std::error::Error for Unsupported {}

/// `Unsupported` when a status says the server does not offer `feature`, otherwise the status with
/// `context`.
fn rpc_error(feature: &str, context: String, status: tonic::Status) -> anyhow::Error {
    let message = status.message().to_lowercase();
    let switched_off = ["disabled", "not enabled", "not supported", "unimplemented", "unknown method"]
        .iter()
        .any(|words| message.contains(words));
    let unsupported = status.code() == tonic::Code::Unimplemented
        || (switched_off
            && matches!(
                status.code(),
                tonic::Code::PermissionDenied
                    | tonic::Code::FailedPrecondition
                    | tonic::Code::InvalidArgument
            ));
    if unsupported {
        anyhow::Error::new(Unsupported(format!("{feature} ({})", client::status_text(&status))))
    } else {
        anyhow::Error::new(status).context(context)
    }
}

/// Arguments of `smoke`.
#[derive(Debug, clap::Args)]
pub(crate) struct SmokeArgs {
    #[command(flatten)]
    target: Target,
    /// Time each check may take
    #[arg(long, default_value = "30s", value_parser = duration::parse)]
    timeout: Duration,
    /// Write a report: JUnit XML when FILE ends in .xml, JSON otherwise
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Run only these checks (repeatable)
    #[arg(long, value_enum)]
    only: Vec<Check>,
    /// Break checks on purpose (for the suite's own tests, repeatable): `signals-queries` queries a
    /// workflow that does not exist, `update` sends an amount its validator rejects,
    /// `continue-as-new` terminates the chain half-way, `schedule` triggers a schedule that does not
    /// exist, `nexus-endpoints` deletes an endpoint before the listing
    #[arg(long, value_enum, hide = true)]
    sabotage: Vec<Check>,
}

/// The outcome of one check.
#[derive(Debug, Serialize)]
struct Outcome {
    check: Check,
    description: &'static str,
    workflow_id: String,
    status: Status,
    passed: bool,
    seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// The whole run, as written to `--report`.
#[derive(Debug, Serialize)]
struct Report<'a> {
    suite: &'static str,
    address: &'a str,
    namespace: &'a str,
    task_queue: &'a str,
    passed: bool,
    seconds: f64,
    checks: &'a [Outcome],
}

/// What the checks share.
struct Suite {
    client: Client,
    namespace: String,
    task_queue: String,
    timeout: Duration,
    sabotage: Vec<Check>,
    /// Workflow ids that completed, for the visibility check.
    completed: Mutex<Vec<String>>,
}

impl SmokeArgs {
    /// Runs the checks; `Ok(false)` when any failed (after printing why).
    pub(crate) async fn run(self) -> Result<bool> {
        let started = Instant::now();
        let client = self.target.connect().await?;
        let run = run_tag();
        let task_queue = format!("tdsql-smoke-{run}");
        let runtime = Runtime::from_current_tokio(Default::default())
            .map_err(|err| anyhow!("{err}"))
            .context("cannot start the Temporal SDK runtime")?;
        let mut worker = client::worker(&runtime, client.clone(), &task_queue, 0, None)?;
        let shutdown = worker.shutdown_handle();
        println!(
            "smoke: frontend {}, namespace {}, task queue {task_queue}",
            self.target.address, self.target.namespace
        );

        let suite = Suite {
            client,
            namespace: self.target.namespace.clone(),
            task_queue: task_queue.clone(),
            timeout: self.timeout,
            sabotage: self.sabotage,
            completed: Mutex::new(Vec::new()),
        };
        let selected: Vec<Check> =
            Check::ALL.into_iter().filter(|c| self.only.is_empty() || self.only.contains(c)).collect();
        let checks = async {
            let outcomes = suite.run_all(&selected).await;
            shutdown();
            outcomes
        };
        let run = worker.run();
        tokio::pin!(checks, run);
        // A worker that stops early would leave every check waiting for its timeout.
        let outcomes = tokio::select! {
            outcomes = &mut checks => {
                run.await.map_err(|err| anyhow!("{err}")).context("the smoke worker stopped with an error")?;
                outcomes
            }
            result = &mut run => {
                let why = result.err().map_or_else(String::new, |err| format!(": {err}"));
                bail!("the smoke worker stopped before the checks finished{why}");
            }
        };

        let count = |status| outcomes.iter().filter(|o| o.status == status).count();
        let (failed, skipped) = (count(Status::Failed), count(Status::Skipped));
        let passed = failed == 0;
        println!(
            "smoke: {} passed, {failed} failed, {skipped} skipped in {:.1} s",
            count(Status::Passed),
            started.elapsed().as_secs_f64()
        );
        if let Some(path) = &self.report {
            let report = Report {
                suite: "smoke",
                address: &self.target.address,
                namespace: &self.target.namespace,
                task_queue: &task_queue,
                passed,
                seconds: duration::secs(started.elapsed()),
                checks: &outcomes,
            };
            let body = if report::wants_junit(path) {
                junit(&report)
            } else {
                serde_json::to_string_pretty(&report)? + "\n"
            };
            report::write_atomic(path, body.as_bytes())?;
            println!("smoke: report written to {}", path.display());
        }
        Ok(passed)
    }
}

impl Suite {
    /// Runs the workflow checks concurrently, then visibility (which needs their workflows).
    async fn run_all(&self, selected: &[Check]) -> Vec<Outcome> {
        let want = |check| selected.contains(&check);
        let (activity, signals, timer, child, retry, update, continue_as_new, schedule, nexus) = tokio::join!(
            self.maybe(want(Check::Activity), Check::Activity),
            self.maybe(want(Check::SignalsQueries), Check::SignalsQueries),
            self.maybe(want(Check::Timer), Check::Timer),
            self.maybe(want(Check::Child), Check::Child),
            self.maybe(want(Check::Retry), Check::Retry),
            self.maybe(want(Check::Update), Check::Update),
            self.maybe(want(Check::ContinueAsNew), Check::ContinueAsNew),
            self.maybe(want(Check::Schedule), Check::Schedule),
            self.maybe(want(Check::NexusEndpoints), Check::NexusEndpoints),
        );
        let visibility = self.maybe(want(Check::Visibility), Check::Visibility).await;
        [activity, signals, timer, child, retry, update, continue_as_new, schedule, nexus, visibility]
            .into_iter()
            .flatten()
            .collect()
    }

    async fn maybe(&self, wanted: bool, check: Check) -> Option<Outcome> {
        if wanted { Some(self.run_one(check).await) } else { None }
    }

    /// Runs one check under its timeout and prints its line.
    async fn run_one(&self, check: Check) -> Outcome {
        let started = Instant::now();
        let mut workflow_id = self.workflow_id(check);
        let result = match tokio::time::timeout(self.timeout, self.check(check, &mut workflow_id)).await {
            Ok(result) => result,
            Err(_) => Err(anyhow!("timed out after {} s (--timeout)", self.timeout.as_secs_f64())),
        };
        let seconds = duration::secs(started.elapsed());
        let status = match &result {
            Ok(()) => Status::Passed,
            Err(err) if err.downcast_ref::<Unsupported>().is_some() => Status::Skipped,
            Err(_) => Status::Failed,
        };
        let outcome = Outcome {
            check,
            description: check.description(),
            status,
            passed: status == Status::Passed,
            reason: result.err().map(|err| client::describe(&err)),
            workflow_id,
            seconds,
        };
        let word = match status {
            Status::Passed => "PASS",
            Status::Failed => "FAIL",
            Status::Skipped => "SKIP",
        };
        match &outcome.reason {
            None => println!("  {word}  {:<16} {seconds:>6.2} s  {}", check.name(), outcome.workflow_id),
            Some(reason) => {
                println!(
                    "  {word}  {:<16} {seconds:>6.2} s  {}: {reason}",
                    check.name(),
                    outcome.workflow_id
                );
            }
        }
        outcome
    }

    fn workflow_id(&self, check: Check) -> String {
        format!("{}-{}", self.task_queue, check.name())
    }

    fn start_options(&self, workflow_id: &str) -> WorkflowStartOptions {
        WorkflowStartOptions::new(self.task_queue.clone(), workflow_id.to_owned())
            .execution_timeout(self.timeout * 2)
            .build()
    }

    fn sabotaged(&self, check: Check) -> bool {
        self.sabotage.contains(&check)
    }

    fn completed(&self, workflow_id: &str) {
        self.completed.lock().expect("lock is never poisoned").push(workflow_id.to_owned());
    }

    /// The body of one check; `workflow_id` is updated when the check moves to another workflow.
    async fn check(&self, check: Check, workflow_id: &mut String) -> Result<()> {
        let client = &self.client;
        let id = workflow_id.clone();
        match check {
            Check::Activity => {
                let handle = client
                    .start_workflow(GreetingWorkflow::run, "DSQL".to_owned(), self.start_options(&id))
                    .await
                    .context("start failed")?;
                let got = handle
                    .get_result(WorkflowGetResultOptions::default())
                    .await
                    .context("workflow failed")?;
                ensure!(got == "Hello, DSQL!", "the activity returned {got:?}, expected \"Hello, DSQL!\"");
            }
            Check::SignalsQueries => {
                let handle = client
                    .start_workflow(OrderWorkflow::run, (), self.start_options(&id))
                    .await
                    .context("start failed")?;
                let items = ["apple", "bread", "cheese"].map(str::to_owned);
                for item in &items {
                    handle
                        .signal(OrderWorkflow::add_item, item.clone(), WorkflowSignalOptions::default())
                        .await
                        .context("signal `add_item` failed")?;
                }
                let query_target = if self.sabotaged(Check::SignalsQueries) {
                    // A query on a workflow that was never started must fail, and say so.
                    *workflow_id = format!("{id}-missing");
                    client.get_workflow_handle::<OrderWorkflow>(workflow_id.clone())
                } else {
                    client.get_workflow_handle::<OrderWorkflow>(id.clone())
                };
                // Signals are applied by workflow tasks; query until all three are in.
                loop {
                    let seen = query_target
                        .query(OrderWorkflow::items, (), WorkflowQueryOptions::default())
                        .await
                        .context("query `items` failed")?;
                    if seen == items {
                        break;
                    }
                    ensure!(
                        seen.len() < items.len() && items.starts_with(&seen),
                        "query `items` returned {seen:?}, expected {items:?}"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                handle
                    .signal(OrderWorkflow::close, (), WorkflowSignalOptions::default())
                    .await
                    .context("signal `close` failed")?;
                let result = handle
                    .get_result(WorkflowGetResultOptions::default())
                    .await
                    .context("workflow failed")?;
                ensure!(result == items, "the workflow returned {result:?}, expected {items:?}");
            }
            Check::Timer => {
                let millis = 1000;
                let started = Instant::now();
                let handle = client
                    .start_workflow(TimerWorkflow::run, millis, self.start_options(&id))
                    .await
                    .context("start failed")?;
                let slept = handle
                    .get_result(WorkflowGetResultOptions::default())
                    .await
                    .context("workflow failed")?;
                let waited = started.elapsed();
                ensure!(
                    slept >= millis,
                    "the timer fired after {slept} ms of workflow time, expected at least {millis} ms"
                );
                ensure!(
                    waited >= Duration::from_millis(millis),
                    "the workflow completed after {} ms, before its {millis} ms timer could fire",
                    waited.as_millis()
                );
            }
            Check::Child => {
                let input = ParentInput { children: 2 };
                let handle = client
                    .start_workflow(ParentWorkflow::run, input, self.start_options(&id))
                    .await
                    .context("start failed")?;
                let got = handle
                    .get_result(WorkflowGetResultOptions::default())
                    .await
                    .context("workflow failed")?;
                ensure!(got == [0, 1], "the children returned {got:?}, expected [0, 1]");
                for index in 0..2 {
                    let child_id = format!("{id}-child-{index}");
                    let description = client
                        .get_workflow_handle::<ChildWorkflow>(child_id.clone())
                        .describe(WorkflowDescribeOptions::default())
                        .await
                        .with_context(|| format!("describe child {child_id} failed"))?;
                    ensure!(
                        description.parent_id() == Some(id.as_str()),
                        "child {child_id} has parent {:?}, expected {id}",
                        description.parent_id()
                    );
                    self.completed(&child_id);
                }
            }
            Check::Retry => {
                let failures = 2;
                let handle = client
                    .start_workflow(RetryWorkflow::run, failures, self.start_options(&id))
                    .await
                    .context("start failed")?;
                let attempt = handle
                    .get_result(WorkflowGetResultOptions::default())
                    .await
                    .context("workflow failed")?;
                ensure!(
                    attempt == failures + 1,
                    "the activity succeeded on attempt {attempt}, expected attempt {}",
                    failures + 1
                );
            }
            Check::Update => self.check_update(&id).await?,
            Check::ContinueAsNew => self.check_continue_as_new(&id).await?,
            Check::Schedule => {
                self.check_schedule(workflow_id).await?;
                return Ok(());
            }
            Check::NexusEndpoints => {
                *workflow_id = self.nexus_prefix();
                self.check_nexus_endpoints().await?;
                return Ok(());
            }
            Check::Visibility => {
                // A workflow of its own, so the check means something when run alone.
                let handle = client
                    .start_workflow(GreetingWorkflow::run, "visibility".to_owned(), self.start_options(&id))
                    .await
                    .context("start failed")?;
                handle.get_result(WorkflowGetResultOptions::default()).await.context("workflow failed")?;
                self.completed(&id);
                self.check_visibility().await?;
                return Ok(());
            }
        }
        self.completed(&id);
        Ok(())
    }

    /// Polls list and count until every completed workflow of this run is visible as completed.
    async fn check_visibility(&self) -> Result<()> {
        let expected = self.completed.lock().expect("lock is never poisoned").clone();
        let query = format!("TaskQueue = '{}' AND ExecutionStatus = 'Completed'", self.task_queue);
        let deadline = Instant::now() + self.timeout;
        loop {
            let listed = self.list(&query).await?;
            let missing: Vec<&String> = expected.iter().filter(|id| !listed.contains(id)).collect();
            let count = self
                .client
                .count_workflows(query.clone(), WorkflowCountOptions::default())
                .await
                .map_err(|err| anyhow!("{err}"))
                .with_context(|| format!("count workflows `{query}` failed"))?
                .count();
            if missing.is_empty() && count >= expected.len() {
                return Ok(());
            }
            // Visibility is eventually consistent; give the store a moment before failing.
            if Instant::now() + Duration::from_millis(200) > deadline {
                bail!(
                    "after {} s, list `{query}` is missing {missing:?} and count says {count} of {}",
                    self.timeout.as_secs_f64(),
                    expected.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn list(&self, query: &str) -> Result<Vec<String>> {
        use futures::TryStreamExt as _;
        let executions: Vec<_> = self
            .client
            .list_workflows(query.to_owned(), WorkflowListOptions::default())
            .try_collect()
            .await
            .map_err(|err| anyhow!("{err}"))
            .with_context(|| format!("list workflows `{query}` failed"))?;
        Ok(executions.iter().map(|e| e.id().to_owned()).collect())
    }
}

/// A short tag that keeps this run's task queue and workflow ids apart from other runs.
pub(crate) fn run_tag() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let mut value = (nanos as u64) ^ (u64::from(std::process::id()) << 40);
    let mut tag = String::new();
    for _ in 0..8 {
        tag.push(char::from(b"0123456789abcdefghijklmnopqrstuvwxyz"[(value % 36) as usize]));
        value /= 36;
    }
    tag
}

/// The report as JUnit XML: one test suite, one test case per check.
fn junit(report: &Report<'_>) -> String {
    use report::xml_escape as esc;
    let failures = report.checks.iter().filter(|c| c.status == Status::Failed).count();
    let skipped = report.checks.iter().filter(|c| c.status == Status::Skipped).count();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str(&format!(
        "<testsuites name=\"tdsql-smoke\" tests=\"{}\" failures=\"{failures}\" time=\"{}\">\n",
        report.checks.len(),
        report.seconds
    ));
    out.push_str(&format!(
        "  <testsuite name=\"smoke {} {}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\" time=\"{}\">\n",
        esc(report.address),
        esc(report.namespace),
        report.checks.len(),
        report.seconds
    ));
    for check in report.checks {
        let name = esc(check.check.name());
        let head = format!("    <testcase classname=\"smoke\" name=\"{name}\" time=\"{}\"", check.seconds);
        match &check.reason {
            None => out.push_str(&format!("{head}/>\n")),
            Some(reason) => {
                let message = format!("{}: {reason}", check.workflow_id);
                let element = if check.status == Status::Skipped { "skipped" } else { "failure" };
                out.push_str(&format!(
                    "{head}>\n      <{element} message=\"{}\">{}</{element}>\n    </testcase>\n",
                    esc(&message),
                    esc(&message)
                ));
            }
        }
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

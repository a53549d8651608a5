//! Connecting to a Temporal frontend and building workers on one task queue.

use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use temporalio_client::{Client, ClientOptions, Connection, ConnectionOptions, Url, tonic};
use temporalio_common::protos::temporal::api::workflowservice::v1::DescribeNamespaceRequest;
use temporalio_common::worker::WorkerDeploymentOptions;
use temporalio_sdk::{Runtime, Worker, WorkerOptions};

use crate::defs::{
    ActivitiesWorkflow, ChildWorkflow, CounterWorkflow, GreetingWorkflow, LapsWorkflow, OrderWorkflow,
    ParentWorkflow, RetryWorkflow, SimpleWorkflow, SuiteActivities, TimerWorkflow,
};

/// How long connecting (TCP plus the first `GetSystemInfo` call) may take before we give up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Where the suite talks to: a frontend address and a namespace.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Target {
    /// Temporal frontend gRPC address, HOST:PORT or a URL
    #[arg(long, default_value = "127.0.0.1:7233", env = "TDSQL_TEMPORAL_ADDRESS")]
    pub(crate) address: String,
    /// Namespace to run in (it must exist)
    #[arg(long, default_value = "default", env = "TDSQL_TEMPORAL_NAMESPACE")]
    pub(crate) namespace: String,
}

impl Target {
    /// The address as the URL the SDK wants (`http://` unless a scheme is given).
    fn url(&self) -> Result<Url> {
        let text = if self.address.contains("://") {
            self.address.clone()
        } else {
            format!("http://{}", self.address)
        };
        Url::parse(&text).with_context(|| format!("--address `{}` is not HOST:PORT or a URL", self.address))
    }

    /// Connects and checks that the frontend answers; the error says how to get one.
    pub(crate) async fn connect(&self) -> Result<Client> {
        let options = ConnectionOptions::new(self.url()?)
            .identity(format!("tdsql-workflows@{}", std::process::id()))
            .connect_timeout(CONNECT_TIMEOUT)
            .build();
        let unreachable = || {
            format!(
                "cannot reach the Temporal frontend at {}; start the stack with `cargo xtask up` \
                 or point --address at a running frontend",
                self.address
            )
        };
        let connection = tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect(options))
            .await
            .map_err(|_| anyhow!("no answer within {} s", CONNECT_TIMEOUT.as_secs()))
            .with_context(unreachable)?
            // The innermost cause says it best ("Connection refused (os error 111)").
            .map_err(|err| anyhow!(root_cause(&err)))
            .with_context(unreachable)?;
        let client = Client::new(connection, ClientOptions::new(self.namespace.clone()).build())
            .map_err(|err| anyhow!("{err}"))
            .context("cannot create the Temporal client")?;
        self.check_namespace(&client).await?;
        Ok(client)
    }

    /// Fails early, with the fix, when the namespace does not exist (every call would fail).
    async fn check_namespace(&self, client: &Client) -> Result<()> {
        let request = DescribeNamespaceRequest { namespace: self.namespace.clone(), ..Default::default() };
        match client.connection().workflow_service().describe_namespace(tonic::Request::new(request)).await {
            Ok(_) => Ok(()),
            Err(status) if status.code() == tonic::Code::NotFound => bail!(
                "namespace `{}` does not exist on {}; pass --namespace with an existing one or create it \
                 (`temporal operator namespace create --namespace {}`)",
                self.namespace,
                self.address,
                self.namespace
            ),
            Err(status) => Err(anyhow!(status_text(&status)))
                .with_context(|| format!("cannot describe namespace `{}`", self.namespace)),
        }
    }
}

/// Worker tuning for the load generator; the smoke suite uses the SDK defaults.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tuning {
    /// Concurrent workflow tasks and activities per worker.
    pub(crate) slots: usize,
    /// Concurrent polls per task type.
    pub(crate) pollers: usize,
    /// Workflows kept in the worker's sticky cache (0: none, each task replays the history).
    pub(crate) cached_workflows: usize,
}

/// Worker `index` on `task_queue`, running every workflow and activity of the suite.
pub(crate) fn worker(
    runtime: &Runtime,
    client: Client,
    task_queue: &str,
    index: usize,
    tuning: Option<Tuning>,
) -> Result<Worker> {
    use temporalio_sdk::runtime::PollerBehavior;
    use temporalio_sdk::runtime::worker_tuner::{FixedSizeSlotSupplier, TunerHolder};
    let tuner = tuning.map(|tuning| {
        TunerHolder::builder()
            .workflow_task_slot_supplier(FixedSizeSlotSupplier::new(tuning.slots))
            .activity_task_slot_supplier(FixedSizeSlotSupplier::new(tuning.slots))
            .local_activity_task_slot_supplier(FixedSizeSlotSupplier::new(tuning.slots))
            .nexus_task_slot_supplier(FixedSizeSlotSupplier::new(1))
            .build()
    });
    // A build id of our own: the SDK's default hashes the whole executable (90 MB in a debug
    // build), and two workers of one process on one task queue need different ones.
    let build_id = format!("tdsql-workflows-{}-{index}", env!("CARGO_PKG_VERSION"));
    let options = WorkerOptions::new(task_queue)
        .deployment_options(WorkerDeploymentOptions::from_build_id(build_id))
        .maybe_tuner(tuner)
        // Workflow task polls need at least two: one sticky, one not.
        .maybe_workflow_task_poller_behavior(tuning.map(|t| PollerBehavior::SimpleMaximum(t.pollers.max(2))))
        .maybe_activity_task_poller_behavior(tuning.map(|t| PollerBehavior::SimpleMaximum(t.pollers.max(1))))
        .maybe_max_cached_workflows(tuning.map(|t| t.cached_workflows));
    let options = options
        .register_activities(SuiteActivities)
        .register_workflow::<GreetingWorkflow>()?
        .register_workflow::<OrderWorkflow>()?
        .register_workflow::<TimerWorkflow>()?
        .register_workflow::<ChildWorkflow>()?
        .register_workflow::<ParentWorkflow>()?
        .register_workflow::<RetryWorkflow>()?
        .register_workflow::<SimpleWorkflow>()?
        .register_workflow::<ActivitiesWorkflow>()?
        .register_workflow::<CounterWorkflow>()?
        .register_workflow::<LapsWorkflow>()?
        .build();
    Worker::new(runtime, client, options).map_err(|err| anyhow!("{err}")).context("cannot create the worker")
}

/// An error chain on one line (`a: b: c`), without the repetition the SDK's errors bring (their
/// messages often already contain their source's), and gRPC statuses as `Code: message`.
pub(crate) fn describe(err: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in err.chain() {
        let text = match cause.downcast_ref::<tonic::Status>() {
            Some(status) => status_text(status),
            None => cause.to_string(),
        };
        if out.contains(&text) {
            continue;
        }
        if let Some(status) = cause.downcast_ref::<tonic::Status>()
            && out.contains(status.message())
        {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// The message of the innermost error of a chain.
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut innermost = err;
    while let Some(source) = innermost.source() {
        innermost = source;
    }
    innermost.to_string()
}

/// A gRPC status as `NotFound: workflow not found for ID: x`.
pub(crate) fn status_text(status: &tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_drops_repeated_causes_and_shows_status_codes() {
        #[derive(Debug)]
        struct Wrapper(tonic::Status);
        impl std::fmt::Display for Wrapper {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "Workflow not found: {}", self.0)
            }
        }
        impl std::error::Error for Wrapper {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let status = tonic::Status::not_found("workflow not found for ID: wf-1");
        let err = anyhow::Error::new(Wrapper(status)).context("query `items` failed");
        let text = describe(&err);
        assert!(text.starts_with("query `items` failed: Workflow not found: "), "{text}");
        assert_eq!(text.matches("workflow not found for ID: wf-1").count(), 1, "{text}");

        let err =
            anyhow::Error::new(tonic::Status::unavailable("connection refused")).context("start failed");
        assert_eq!(describe(&err), "start failed: Unavailable: connection refused");
    }
}

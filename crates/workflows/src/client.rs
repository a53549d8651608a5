//! Connecting to a Temporal frontend and building workers on one task queue.

use std::time::Duration;

use anyhow::{Context as _, Result, anyhow};
use temporalio_client::{Client, ClientOptions, Connection, ConnectionOptions, Url};
use temporalio_sdk::{Runtime, Worker, WorkerOptions};

use crate::defs::{
    ActivitiesWorkflow, ChildWorkflow, GreetingWorkflow, OrderWorkflow, ParentWorkflow, RetryWorkflow,
    SimpleWorkflow, SuiteActivities, TimerWorkflow,
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
            .map_err(|err| anyhow!("{err}"))
            .with_context(unreachable)?;
        let client = Client::new(connection, ClientOptions::new(self.namespace.clone()).build())
            .map_err(|err| anyhow!("{err}"))
            .context("cannot create the Temporal client")?;
        Ok(client)
    }
}

/// Worker tuning for the load generator; the smoke suite uses the SDK defaults.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tuning {
    /// Concurrent workflow tasks and activities per worker.
    pub(crate) slots: usize,
    /// Concurrent polls per task type.
    pub(crate) pollers: usize,
}

/// A worker on `task_queue` that runs every workflow and activity of the suite.
pub(crate) fn worker(
    runtime: &Runtime,
    client: Client,
    task_queue: &str,
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
    let options = WorkerOptions::new(task_queue)
        .maybe_tuner(tuner)
        // Workflow task polls need at least two: one sticky, one not.
        .maybe_workflow_task_poller_behavior(tuning.map(|t| PollerBehavior::SimpleMaximum(t.pollers.max(2))))
        .maybe_activity_task_poller_behavior(tuning.map(|t| PollerBehavior::SimpleMaximum(t.pollers.max(1))));
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
        .build();
    Worker::new(runtime, client, options).map_err(|err| anyhow!("{err}")).context("cannot create the worker")
}

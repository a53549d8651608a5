//! The checks of features beyond plain workflows: updates, continue-as-new, schedules and Nexus
//! endpoints. Each reports a server without the feature as unsupported (skipped, not passed).

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use futures::TryStreamExt as _;
use temporalio_client::errors::{WorkflowGetResultError, WorkflowUpdateError};
use temporalio_client::schedules::{
    CreateScheduleOptions, ListSchedulesOptions, ScheduleAction, ScheduleError, ScheduleHandle,
    ScheduleOverlapPolicy, ScheduleSpec,
};
use temporalio_client::{
    Client, WorkflowExecuteUpdateOptions, WorkflowGetResultOptions, WorkflowSignalOptions,
    WorkflowTerminateOptions, tonic,
};
use temporalio_common::protos::temporal::api::nexus::v1::{
    Endpoint, EndpointSpec, EndpointTarget, endpoint_target,
};
use temporalio_common::protos::temporal::api::operatorservice::v1::{
    CreateNexusEndpointRequest, DeleteNexusEndpointRequest, GetNexusEndpointRequest,
    ListNexusEndpointsRequest, UpdateNexusEndpointRequest,
};

use super::{Check, Suite, rpc_error};
use crate::defs::{CounterWorkflow, GreetingWorkflow, Laps, LapsWorkflow};

/// Runs a continue-as-new chain has after its first.
const LAPS: u32 = 4;
/// The schedule's interval: short, so the scheduler itself is exercised, yet longer than the check.
const SCHEDULE_INTERVAL: Duration = Duration::from_secs(60);
/// Endpoints created, and the page size they are listed with: three pages, the last one short.
const NEXUS_ENDPOINTS: usize = 7;
const NEXUS_PAGE_SIZE: i32 = 3;
/// Between two looks at something eventually consistent (visibility, the endpoint registry).
const POLL: Duration = Duration::from_millis(200);

impl Suite {
    /// An update accepted by its validator returns the handler's result; one the validator rejects
    /// fails with the validator's message and changes nothing.
    pub(super) async fn check_update(&self, id: &str) -> Result<()> {
        let handle = self
            .client
            .start_workflow(CounterWorkflow::run, (), self.start_options(id))
            .await
            .context("start failed")?;
        let add = |amount: i64| {
            let handle = &handle;
            async move {
                handle
                    .execute_update(CounterWorkflow::add, amount, WorkflowExecuteUpdateOptions::default())
                    .await
            }
        };
        let first = if self.sabotaged(Check::Update) { 0 } else { 5 };
        let total = add(first).await.map_err(|err| update_error(first, err))?;
        ensure!(total == 5, "update `add(5)` returned {total}, expected 5");
        match add(-1).await {
            Ok(total) => {
                bail!("update `add(-1)` was accepted (total {total}); its validator should reject it")
            }
            Err(WorkflowUpdateError::Failed(failure)) => ensure!(
                failure.message.contains("amount must be positive, got -1"),
                "update `add(-1)` was rejected with {:?}, expected the validator's message",
                failure.message
            ),
            Err(err) => return Err(update_error(-1, err)),
        }
        let total = add(2).await.map_err(|err| update_error(2, err))?;
        ensure!(total == 7, "update `add(2)` after the rejected one returned {total}, expected 7");
        handle
            .signal(CounterWorkflow::finish, (), WorkflowSignalOptions::default())
            .await
            .context("signal `finish` failed")?;
        let result =
            handle.get_result(WorkflowGetResultOptions::default()).await.context("workflow failed")?;
        ensure!(result == 7, "the workflow returned {result}, expected 7");
        Ok(())
    }

    /// A workflow that continues as new [`LAPS`] times: its first run ends as continued-as-new and
    /// the last run's result counts every run before it.
    pub(super) async fn check_continue_as_new(&self, id: &str) -> Result<()> {
        let laps = Laps { remaining: LAPS, done: 0, pause_ms: 100 };
        let first = self
            .client
            .start_workflow(LapsWorkflow::run, laps, self.start_options(id))
            .await
            .context("start failed")?;
        if self.sabotaged(Check::ContinueAsNew) {
            // A chain cut short must not pass.
            self.client
                .get_workflow_handle::<LapsWorkflow>(id.to_owned())
                .terminate(WorkflowTerminateOptions::builder().reason("smoke sabotage").build())
                .await
                .context("terminate failed")?;
        }
        let only_first = WorkflowGetResultOptions::builder().follow_runs(false).build();
        match first.get_result(only_first).await {
            Err(WorkflowGetResultError::ContinuedAsNew) => {}
            Ok(done) => bail!("the first run completed with {done} instead of continuing as new"),
            Err(err) => return Err(anyhow::Error::new(err).context("the first run did not continue as new")),
        }
        let done = self
            .client
            .get_workflow_handle::<LapsWorkflow>(id.to_owned())
            .get_result(WorkflowGetResultOptions::default())
            .await
            .context("the chain failed")?;
        ensure!(done == LAPS, "the last run counted {done} runs before it, expected {LAPS}");
        Ok(())
    }

    /// Creates a schedule, triggers it, waits for its workflow, describes, pauses, unpauses, lists
    /// and deletes it. `workflow_id` becomes the schedule id (or the one sabotage triggers).
    pub(super) async fn check_schedule(&self, workflow_id: &mut String) -> Result<()> {
        let schedule_id = workflow_id.clone();
        let action = ScheduleAction::start_workflow(
            GreetingWorkflow::run,
            "schedule".to_owned(),
            self.task_queue.clone(),
            format!("{schedule_id}-run"),
        );
        let options = CreateScheduleOptions::builder()
            .action(action)
            .spec(ScheduleSpec::from_interval(SCHEDULE_INTERVAL))
            .note("tdsql smoke")
            .build();
        let handle = self
            .client
            .create_schedule(schedule_id.clone(), options)
            .await
            .map_err(|err| schedule_error("create", err))?;
        let result = self.exercise_schedule(&handle, workflow_id).await;
        if result.is_err() {
            let _ = handle.delete(Default::default()).await;
        }
        result
    }

    async fn exercise_schedule(
        &self,
        handle: &ScheduleHandle<Client>,
        workflow_id: &mut String,
    ) -> Result<()> {
        let schedule_id = handle.schedule_id().to_owned();
        let trigger = if self.sabotaged(Check::Schedule) {
            *workflow_id = format!("{schedule_id}-missing");
            self.client.get_schedule_handle(workflow_id.clone())
        } else {
            self.client.get_schedule_handle(schedule_id.clone())
        };
        trigger
            .trigger(ScheduleOverlapPolicy::AllowAll, Default::default())
            .await
            .map_err(|err| schedule_error("trigger", err))?;

        // The triggered action shows up in the description once the scheduler has started it.
        let started = loop {
            let description =
                handle.describe(Default::default()).await.map_err(|err| schedule_error("describe", err))?;
            if let Some(action) = description.recent_actions().into_iter().next() {
                break action.workflow_id;
            }
            tokio::time::sleep(POLL).await;
        };
        let greeting = self
            .client
            .get_workflow_handle::<GreetingWorkflow>(started.clone())
            .get_result(WorkflowGetResultOptions::default())
            .await
            .with_context(|| format!("the scheduled workflow {started} failed"))?;
        ensure!(greeting == "Hello, schedule!", "the scheduled workflow {started} returned {greeting:?}");
        let description =
            handle.describe(Default::default()).await.map_err(|err| schedule_error("describe", err))?;
        ensure!(
            description.action_count() >= 1,
            "describe says {} actions after a triggered one completed",
            description.action_count()
        );
        ensure!(!description.paused(), "the schedule is paused before it was paused");

        handle
            .pause(Some("tdsql smoke: pause"), Default::default())
            .await
            .map_err(|err| schedule_error("pause", err))?;
        let description =
            handle.describe(Default::default()).await.map_err(|err| schedule_error("describe", err))?;
        ensure!(description.paused(), "describe says not paused after pause");
        handle
            .unpause(Some("tdsql smoke: unpause"), Default::default())
            .await
            .map_err(|err| schedule_error("unpause", err))?;
        let description =
            handle.describe(Default::default()).await.map_err(|err| schedule_error("describe", err))?;
        ensure!(!description.paused(), "describe says paused after unpause");

        // Listing goes through the visibility store: eventually consistent.
        loop {
            let listed: Vec<_> = self
                .client
                .list_schedules(ListSchedulesOptions::default())
                .try_collect()
                .await
                .map_err(|err| schedule_error("list", err))?;
            if listed.iter().any(|summary| summary.schedule_id() == schedule_id) {
                break;
            }
            tokio::time::sleep(POLL).await;
        }

        handle.delete(Default::default()).await.map_err(|err| schedule_error("delete", err))?;
        loop {
            match handle.describe(Default::default()).await {
                Err(ScheduleError::Rpc(status)) if status.code() == tonic::Code::NotFound => return Ok(()),
                Err(err) => return Err(schedule_error("describe after delete", err)),
                Ok(_) => tokio::time::sleep(POLL).await,
            }
        }
    }

    /// Endpoint names of this run (the server wants `^[a-zA-Z][a-zA-Z0-9\-]*[a-zA-Z0-9]$`).
    pub(super) fn nexus_prefix(&self) -> String {
        format!("{}-nexus-", self.task_queue)
    }

    /// Creates [`NEXUS_ENDPOINTS`] endpoints, lists them [`NEXUS_PAGE_SIZE`] at a time (every one
    /// exactly once), updates one (its version goes up by one), gets it, and deletes them all.
    pub(super) async fn check_nexus_endpoints(&self) -> Result<()> {
        let prefix = self.nexus_prefix();
        let mut created = Vec::new();
        let result = self.exercise_nexus_endpoints(&prefix, &mut created).await;
        if result.is_err() {
            let mut operator = self.client.connection().operator_service();
            for endpoint in &created {
                let request =
                    DeleteNexusEndpointRequest { id: endpoint.id.clone(), version: endpoint.version };
                let _ = operator.delete_nexus_endpoint(tonic::Request::new(request)).await;
            }
        }
        result
    }

    async fn exercise_nexus_endpoints(&self, prefix: &str, created: &mut Vec<Endpoint>) -> Result<()> {
        const FEATURE: &str = "Nexus endpoints";
        let mut operator = self.client.connection().operator_service();
        for index in 0..NEXUS_ENDPOINTS {
            let name = format!("{prefix}{index}");
            let request =
                CreateNexusEndpointRequest { spec: Some(self.endpoint_spec(&name, &self.task_queue)) };
            let response = operator
                .create_nexus_endpoint(tonic::Request::new(request))
                .await
                .map_err(|status| rpc_error(FEATURE, format!("create endpoint {name} failed"), status))?;
            let endpoint = response
                .into_inner()
                .endpoint
                .ok_or_else(|| anyhow!("create endpoint {name} returned no endpoint"))?;
            created.push(endpoint);
        }
        if self.sabotaged(Check::NexusEndpoints) {
            // An endpoint that is gone must be missed by the listing.
            let gone = created.remove(0);
            let request = DeleteNexusEndpointRequest { id: gone.id.clone(), version: gone.version };
            operator
                .delete_nexus_endpoint(tonic::Request::new(request))
                .await
                .context("sabotage delete failed")?;
            created.insert(0, gone);
        }

        // Page by page until every endpoint of this run has been seen; a duplicate fails at once.
        let mut pages;
        loop {
            let mut seen: HashMap<String, u32> = HashMap::new();
            let mut token = Vec::new();
            pages = 0;
            loop {
                let request = ListNexusEndpointsRequest {
                    page_size: NEXUS_PAGE_SIZE,
                    next_page_token: token.clone(),
                    name: String::new(),
                };
                let page = operator
                    .list_nexus_endpoints(tonic::Request::new(request))
                    .await
                    .map_err(|status| {
                        rpc_error(FEATURE, format!("list endpoints (page {}) failed", pages + 1), status)
                    })?
                    .into_inner();
                pages += 1;
                ensure!(
                    page.endpoints.len() <= NEXUS_PAGE_SIZE as usize,
                    "list page {pages} holds {} endpoints, more than the page size {NEXUS_PAGE_SIZE}",
                    page.endpoints.len()
                );
                for endpoint in page.endpoints {
                    let name = endpoint.spec.as_ref().map(|s| s.name.clone()).unwrap_or_default();
                    if name.starts_with(prefix) {
                        *seen.entry(endpoint.id).or_default() += 1;
                    }
                }
                if page.next_page_token.is_empty() {
                    break;
                }
                token = page.next_page_token;
            }
            if let Some((id, times)) = seen.iter().find(|(_, times)| **times > 1) {
                bail!("endpoint {id} came back {times} times over {pages} pages");
            }
            let missing: Vec<&str> =
                created.iter().filter(|e| !seen.contains_key(&e.id)).map(|e| e.id.as_str()).collect();
            let unknown: Vec<&String> =
                seen.keys().filter(|id| !created.iter().any(|e| &e.id == *id)).collect();
            ensure!(unknown.is_empty(), "the listing has endpoints {unknown:?} this run did not create");
            if missing.is_empty() {
                break;
            }
            if self.sabotaged(Check::NexusEndpoints) {
                bail!("endpoints {missing:?} are missing from {pages} list pages");
            }
            tokio::time::sleep(POLL).await;
        }
        ensure!(pages > 1, "{NEXUS_ENDPOINTS} endpoints came back on one page of {NEXUS_PAGE_SIZE}");

        let first = &created[0];
        let moved = format!("{}-moved", self.task_queue);
        let request = UpdateNexusEndpointRequest {
            id: first.id.clone(),
            version: first.version,
            spec: Some(self.endpoint_spec(&format!("{prefix}0"), &moved)),
        };
        let updated = operator
            .update_nexus_endpoint(tonic::Request::new(request))
            .await
            .map_err(|status| rpc_error(FEATURE, format!("update endpoint {} failed", first.id), status))?
            .into_inner()
            .endpoint
            .ok_or_else(|| anyhow!("update endpoint {} returned no endpoint", first.id))?;
        ensure!(
            updated.version == first.version + 1,
            "update took endpoint {} from version {} to {}, expected {}",
            first.id,
            first.version,
            updated.version,
            first.version + 1
        );
        let request = GetNexusEndpointRequest { id: first.id.clone() };
        let got = operator
            .get_nexus_endpoint(tonic::Request::new(request))
            .await
            .map_err(|status| rpc_error(FEATURE, format!("get endpoint {} failed", first.id), status))?
            .into_inner()
            .endpoint
            .ok_or_else(|| anyhow!("get endpoint {} returned no endpoint", first.id))?;
        ensure!(
            got.version == updated.version,
            "get returned version {} after the update to {}",
            got.version,
            updated.version
        );
        let target = got.spec.as_ref().and_then(|s| s.target.as_ref()).and_then(|t| t.variant.as_ref());
        ensure!(
            matches!(target, Some(endpoint_target::Variant::Worker(w)) if w.task_queue == moved),
            "get returned target {target:?} after the update to task queue {moved}"
        );
        created[0] = got;

        while let Some(endpoint) = created.pop() {
            let request = DeleteNexusEndpointRequest { id: endpoint.id.clone(), version: endpoint.version };
            if let Err(status) = operator.delete_nexus_endpoint(tonic::Request::new(request)).await {
                created.push(endpoint.clone());
                return Err(rpc_error(FEATURE, format!("delete endpoint {} failed", endpoint.id), status));
            }
            let request = GetNexusEndpointRequest { id: endpoint.id.clone() };
            match operator.get_nexus_endpoint(tonic::Request::new(request)).await {
                Err(status) if status.code() == tonic::Code::NotFound => {}
                Err(status) => {
                    return Err(anyhow::Error::new(status)
                        .context(format!("get deleted endpoint {} failed", endpoint.id)));
                }
                Ok(_) => bail!("endpoint {} is still there after delete", endpoint.id),
            }
        }
        Ok(())
    }

    fn endpoint_spec(&self, name: &str, task_queue: &str) -> EndpointSpec {
        let worker =
            endpoint_target::Worker { namespace: self.namespace.clone(), task_queue: task_queue.to_owned() };
        EndpointSpec {
            name: name.to_owned(),
            description: None,
            target: Some(EndpointTarget { variant: Some(endpoint_target::Variant::Worker(worker)) }),
        }
    }
}

/// An update's error: `Unsupported` when the server has updates switched off, the validator's
/// message when it rejected the update.
fn update_error(amount: i64, err: WorkflowUpdateError) -> anyhow::Error {
    match err {
        WorkflowUpdateError::Rpc(status) => {
            rpc_error("workflow updates", format!("update `add({amount})` failed"), status)
        }
        WorkflowUpdateError::Failed(failure) => {
            anyhow!("update `add({amount})` was rejected: {}", failure.message)
        }
        other => anyhow::Error::new(other).context(format!("update `add({amount})` failed")),
    }
}

/// A schedule operation's error, `Unsupported` when the server has no schedules.
fn schedule_error(operation: &str, err: ScheduleError) -> anyhow::Error {
    match err {
        ScheduleError::Rpc(status) => rpc_error("schedules", format!("{operation} schedule failed"), status),
        other => anyhow::Error::new(other).context(format!("{operation} schedule failed")),
    }
}

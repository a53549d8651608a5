//! The workflows and activities the smoke checks and the load generator run.
//!
//! Each one is small and deterministic; together they touch what a persistence store must get right:
//! activity scheduling and retries, signals, queries, timers, child workflows and visibility.

// The SDK's macros generate `pub` items; in this binary they are reachable only through the crate.
#![allow(unreachable_pub)]

use std::time::Duration;

use serde::{Deserialize, Serialize};
use temporalio_common::RetryPolicy;
use temporalio_macros::{activities, workflow, workflow_methods};
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use temporalio_sdk::{
    ActivityOptions, ApplicationFailure, ChildWorkflowOptions, ContinueAsNewOptions, StartedChildWorkflow,
    SyncWorkflowContext, WorkflowContext, WorkflowContextView, WorkflowResult,
};

/// Generous enough for a loaded machine; the activities themselves take microseconds.
const ACTIVITY_TIMEOUT: Duration = Duration::from_secs(30);

/// The activities every worker of the suite registers.
pub struct SuiteActivities;

#[activities]
impl SuiteActivities {
    /// Returns a greeting: proves an activity ran and its result came back.
    #[activity]
    pub async fn greet(_ctx: ActivityContext, name: String) -> Result<String, ActivityError> {
        Ok(format!("Hello, {name}!"))
    }

    /// Does nothing: one activity round trip through the server.
    #[activity]
    pub async fn noop(_ctx: ActivityContext, step: u32) -> Result<u32, ActivityError> {
        Ok(step)
    }

    /// Fails with a retryable error until attempt `failures + 1`, then returns that attempt number.
    #[activity]
    pub async fn flaky(ctx: ActivityContext, failures: u32) -> Result<u32, ActivityError> {
        let attempt = ctx.info().attempt;
        if attempt <= failures {
            let message = format!("deliberate failure on attempt {attempt} of {}", failures + 1);
            return Err(ActivityError::application(ApplicationFailure::new(message)));
        }
        Ok(attempt)
    }
}

/// Runs one activity and returns its greeting.
#[workflow]
#[derive(Default)]
pub struct GreetingWorkflow;

#[workflow_methods]
impl GreetingWorkflow {
    #[run(name = "tdsql.Greeting")]
    pub async fn run(ctx: &mut WorkflowContext<Self>, name: String) -> WorkflowResult<String> {
        let options = ActivityOptions::start_to_close_timeout(ACTIVITY_TIMEOUT);
        Ok(ctx.execute_activity(SuiteActivities::greet, name, options).await?)
    }
}

/// An order that collects items through signals, answers queries, and completes on `close`.
#[workflow]
#[derive(Default)]
pub struct OrderWorkflow {
    items: Vec<String>,
    closed: bool,
}

#[workflow_methods]
impl OrderWorkflow {
    #[run(name = "tdsql.Order")]
    pub async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<Vec<String>> {
        ctx.wait_condition(|s| s.closed).await?;
        Ok(ctx.state(|s| s.items.clone()))
    }

    #[signal(name = "add_item")]
    pub fn add_item(&mut self, _ctx: &mut SyncWorkflowContext<Self>, item: String) {
        self.items.push(item);
    }

    #[signal(name = "close")]
    pub fn close(&mut self, _ctx: &mut SyncWorkflowContext<Self>) {
        self.closed = true;
    }

    #[query(name = "items")]
    pub fn items(&self, _ctx: &WorkflowContextView) -> Vec<String> {
        self.items.clone()
    }
}

/// Sleeps on a durable timer, then returns how long it slept in workflow time (milliseconds).
#[workflow]
#[derive(Default)]
pub struct TimerWorkflow;

#[workflow_methods]
impl TimerWorkflow {
    #[run(name = "tdsql.Timer")]
    pub async fn run(ctx: &mut WorkflowContext<Self>, millis: u64) -> WorkflowResult<u64> {
        let before = ctx.workflow_time();
        ctx.timer(Duration::from_millis(millis)).await;
        let slept = match (before, ctx.workflow_time()) {
            (Some(before), Some(after)) => after.duration_since(before).unwrap_or_default(),
            _ => Duration::ZERO,
        };
        Ok(u64::try_from(slept.as_millis()).unwrap_or(u64::MAX))
    }
}

/// What a parent asks of its children.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ParentInput {
    /// How many children to start, all at once.
    pub children: u32,
}

/// A child: echoes its index.
#[workflow]
#[derive(Default)]
pub struct ChildWorkflow;

#[workflow_methods]
impl ChildWorkflow {
    #[run(name = "tdsql.Child")]
    pub async fn run(_ctx: &mut WorkflowContext<Self>, index: u32) -> WorkflowResult<u32> {
        Ok(index)
    }
}

/// Starts children `<own id>-child-<i>` in parallel and returns their results in order.
#[workflow]
#[derive(Default)]
pub struct ParentWorkflow;

#[workflow_methods]
impl ParentWorkflow {
    #[run(name = "tdsql.Parent")]
    pub async fn run(ctx: &mut WorkflowContext<Self>, input: ParentInput) -> WorkflowResult<Vec<u32>> {
        let parent_id = ctx.workflow_id().to_owned();
        let mut started = Vec::new();
        for index in 0..input.children {
            let options =
                ChildWorkflowOptions::builder().workflow_id(format!("{parent_id}-child-{index}")).build();
            started.push(ctx.start_child_workflow(ChildWorkflow::run, index, options).await?);
        }
        let results =
            temporalio_sdk::workflows::join_all(started.into_iter().map(StartedChildWorkflow::result)).await;
        let mut out = Vec::with_capacity(results.len());
        for result in results {
            out.push(result?);
        }
        Ok(out)
    }
}

/// Runs an activity that fails `failures` times before it succeeds; returns the attempt that did.
#[workflow]
#[derive(Default)]
pub struct RetryWorkflow;

#[workflow_methods]
impl RetryWorkflow {
    #[run(name = "tdsql.Retry")]
    pub async fn run(ctx: &mut WorkflowContext<Self>, failures: u32) -> WorkflowResult<u32> {
        let retry = RetryPolicy::builder()
            .initial_interval(Duration::from_millis(100))
            .backoff_coefficient(1.0)
            .maximum_attempts(failures + 2)
            .build();
        let options =
            ActivityOptions::with_start_to_close_timeout(ACTIVITY_TIMEOUT).retry_policy(retry).build();
        Ok(ctx.execute_activity(SuiteActivities::flaky, failures, options).await?)
    }
}

/// Returns at once: the cheapest complete workflow (load `simple`).
#[workflow]
#[derive(Default)]
pub struct SimpleWorkflow;

#[workflow_methods]
impl SimpleWorkflow {
    #[run(name = "tdsql.Simple")]
    pub async fn run(_ctx: &mut WorkflowContext<Self>) -> WorkflowResult<()> {
        Ok(())
    }
}

/// Runs `count` activities one after the other (load `activities`).
#[workflow]
#[derive(Default)]
pub struct ActivitiesWorkflow;

#[workflow_methods]
impl ActivitiesWorkflow {
    #[run(name = "tdsql.Activities")]
    pub async fn run(ctx: &mut WorkflowContext<Self>, count: u32) -> WorkflowResult<u32> {
        for step in 0..count {
            let options = ActivityOptions::start_to_close_timeout(ACTIVITY_TIMEOUT);
            ctx.execute_activity(SuiteActivities::noop, step, options).await?;
        }
        Ok(count)
    }
}

/// A counter changed by updates: `add` takes a positive amount (its validator rejects anything
/// else before it reaches the history) and returns the new total; `finish` completes the workflow.
#[workflow]
#[derive(Default)]
pub struct CounterWorkflow {
    total: i64,
    finished: bool,
}

#[workflow_methods]
impl CounterWorkflow {
    #[run(name = "tdsql.Counter")]
    pub async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<i64> {
        ctx.wait_condition(|s| s.finished).await?;
        Ok(ctx.state(|s| s.total))
    }

    #[update(name = "add")]
    pub fn add(&mut self, _ctx: &mut SyncWorkflowContext<Self>, amount: i64) -> i64 {
        self.total += amount;
        self.total
    }

    #[update_validator(add)]
    pub fn validate_add(
        &self,
        _ctx: &WorkflowContextView,
        amount: &i64,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        if *amount <= 0 {
            return Err(format!("amount must be positive, got {amount}").into());
        }
        Ok(())
    }

    #[signal(name = "finish")]
    pub fn finish(&mut self, _ctx: &mut SyncWorkflowContext<Self>) {
        self.finished = true;
    }
}

/// How many more runs a [`LapsWorkflow`] continues as new, and how many it has done.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Laps {
    /// Runs still to go after this one.
    pub remaining: u32,
    /// Runs completed before this one.
    pub done: u32,
    /// A timer each run sleeps on before it continues (milliseconds).
    pub pause_ms: u64,
}

/// Sleeps `pause_ms`, then continues as new until no laps remain; the last run returns how many
/// runs came before it.
#[workflow]
#[derive(Default)]
pub struct LapsWorkflow;

#[workflow_methods]
impl LapsWorkflow {
    #[run(name = "tdsql.Laps")]
    pub async fn run(ctx: &mut WorkflowContext<Self>, laps: Laps) -> WorkflowResult<u32> {
        if laps.remaining == 0 {
            return Ok(laps.done);
        }
        ctx.timer(Duration::from_millis(laps.pause_ms)).await;
        let next = Laps { remaining: laps.remaining - 1, done: laps.done + 1, ..laps };
        match ctx.continue_as_new(next, ContinueAsNewOptions::default())? {}
    }
}

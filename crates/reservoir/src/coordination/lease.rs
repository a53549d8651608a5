//! The distributed connection lease: a counter, one item per lease, one heartbeat item per
//! process, and a repair pass that reclaims the leases of vanished holders.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, Delete, Put, TransactWriteItem, Update};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{
    CoordinationError, Fallback, FallbackConfig, Mode, RoundTrips, StoreError, Waiting, call, check_names,
    epoch, epoch_ms, invalid, n, normalise_endpoint, number, random_id, request_error, s, written,
};
use crate::limit::{Lease, LeaseHook, LimitError};
use crate::metrics::Metrics;
use crate::token::BoxFuture;

/// Settings of [`DynamoConnLease`]; the default limit is DSQL's 10,000 connections per cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnLeaseConfig {
    /// The DynamoDB table (`coordination.conn_lease.table`).
    pub table: String,
    /// The cluster endpoint whose connections are counted.
    pub endpoint: String,
    /// Open connections for all processes together.
    pub limit: u32,
    /// A holder whose heartbeat is older than this has vanished; its leases are reclaimed.
    pub holder_ttl: Duration,
    /// How often this process renews its heartbeat (and with it every lease it holds).
    pub heartbeat_interval: Duration,
    /// How often a repair pass runs (by one process of the cluster).
    pub repair_interval: Duration,
    /// How long past their last use items stay for DynamoDB's TTL to collect.
    pub ttl_grace: Duration,
    /// Leases one transaction may take at most for concurrent acquires of this process (1 to
    /// [`MAX_BATCH`]).
    pub batch: u32,
    /// What to do while DynamoDB does not answer.
    pub fallback: FallbackConfig,
}

/// The largest batch: one transaction holds at most 100 actions, the counter's among them.
pub const MAX_BATCH: u32 = 99;

impl ConnLeaseConfig {
    /// The defaults for one table and endpoint: 10,000 connections, 15 s heartbeat, holders gone
    /// after 60 s, a repair pass every 30 s, items collected a day after their last use, batches
    /// of up to 10 leases.
    #[must_use]
    pub fn new(table: impl Into<String>, endpoint: impl Into<String>) -> Self {
        Self {
            table: table.into(),
            endpoint: endpoint.into(),
            limit: 10_000,
            holder_ttl: Duration::from_secs(60),
            heartbeat_interval: Duration::from_secs(15),
            repair_interval: Duration::from_secs(30),
            ttl_grace: Duration::from_secs(24 * 60 * 60),
            batch: 10,
            fallback: FallbackConfig::default(),
        }
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// [`CoordinationError::Invalid`] naming the first bad setting.
    pub fn validate(&self) -> Result<(), CoordinationError> {
        const KEY: &str = "coordination.conn_lease";
        check_names(KEY, &self.table, &self.endpoint)?;
        if self.limit == 0 {
            return invalid(KEY, "0".into(), "limit must be at least 1");
        }
        if self.heartbeat_interval.is_zero() || self.heartbeat_interval * 2 > self.holder_ttl {
            return invalid(
                KEY,
                format!("{:?} / {:?}", self.heartbeat_interval, self.holder_ttl),
                "heartbeat_interval must be above zero and at most half of holder_ttl",
            );
        }
        if self.batch == 0 || self.batch > MAX_BATCH {
            return invalid(KEY, self.batch.to_string(), "batch must be between 1 and 99");
        }
        if self.repair_interval.is_zero() || self.ttl_grace < self.holder_ttl {
            return invalid(
                KEY,
                format!("{:?} / {:?}", self.repair_interval, self.ttl_grace),
                "repair_interval must be above zero and ttl_grace at least holder_ttl",
            );
        }
        self.fallback.validate(KEY)
    }
}

/// Where a lease is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// In the cluster-wide counter.
    Shared,
    /// Only locally (granted while DynamoDB did not answer); registered on recovery.
    Local,
    /// Counted nowhere: the limit was full when it had to be registered again, so the lease was
    /// revoked and its connection is being closed.
    Revoked,
}

/// A lease this process holds: where it is counted, and the lease itself (for revoking it).
struct Held {
    kind: Kind,
    lease: Lease,
}

/// Whose lease a release deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reclaim {
    /// One of this process (given back, or an orphan of its own).
    Own,
    /// One of a holder whose item the repair pass removed.
    OfVanished,
}

/// What a shared acquire came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Granted {
    /// Counted, and its item written.
    Yes,
    /// The counter is at the limit.
    AtLimit,
    /// The item is there already (so it is counted already).
    Exists,
}

#[derive(Default)]
struct State {
    held: HashMap<String, Held>,
    /// Shared leases whose release has not gone through yet (retried by the heartbeat).
    pending_release: HashSet<String>,
    /// Local leases whose shared acquire failed without an answer: it may have gone through.
    doubtful: HashSet<String>,
    /// Shared leases a batch took for other waiters of this process, not handed out yet, with
    /// when they were taken (one left over is given back by the heartbeat).
    spares: VecDeque<(String, Instant)>,
    registered: bool,
    next_repair: Option<Instant>,
}

/// A [`LeaseHook`] that caps the open connections of every process through DynamoDB (see the
/// [module docs](super) for the design, the table and the IAM policy).
///
/// A background task renews this process's heartbeat, retries failed releases, runs the repair
/// pass when it wins the claim, and registers leases granted during a fallback once DynamoDB
/// answers again. It holds a `Weak` and ends when the hook is dropped. Dropping the hook without
/// [`DynamoConnLease::shutdown`] is what a crash looks like: the leases expire after `holder_ttl`
/// and another process reclaims them.
pub struct DynamoConnLease {
    inner: Arc<Inner>,
    task: Mutex<Option<JoinHandle<()>>>,
}

struct Inner {
    client: Client,
    config: ConnLeaseConfig,
    prefix: String,
    counter_pk: String,
    holder: String,
    holder_pk: String,
    local_cap: usize,
    /// The last shared acquire was refused at the limit.
    at_cap: AtomicBool,
    /// Acquires of this process waiting for a shared lease (the size of the next batch).
    waiting: AtomicUsize,
    /// One batch in flight at a time.
    batcher: tokio::sync::Mutex<()>,
    state: Mutex<State>,
    fallback: Fallback,
    round_trips: RoundTrips,
    metrics: Metrics,
}

impl fmt::Debug for DynamoConnLease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynamoConnLease")
            .field("holder", &self.inner.holder_pk)
            .field("held", &self.held())
            .field("pending_release", &self.inner.lock().pending_release.len())
            .field("doubtful", &self.inner.lock().doubtful.len())
            .field("spares", &self.inner.lock().spares.len())
            .field("mode", &self.mode())
            .finish_non_exhaustive()
    }
}

impl DynamoConnLease {
    /// A lease hook on `config.table`, recording into `metrics`; starts its background task.
    ///
    /// # Errors
    /// [`CoordinationError::Invalid`] for a bad setting.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn new(client: Client, config: ConnLeaseConfig, metrics: Metrics) -> Result<Self, CoordinationError> {
        config.validate()?;
        let endpoint = normalise_endpoint(&config.endpoint);
        let prefix = format!("lease#{endpoint}#");
        let holder = random_id();
        metrics.lease_limit.set(i64::from(config.limit));
        let processes = config.fallback.expected_processes;
        let inner = Arc::new(Inner {
            client,
            counter_pk: format!("{prefix}counter"),
            holder_pk: format!("{prefix}holder#{holder}"),
            prefix,
            holder,
            local_cap: usize::try_from((config.limit / processes).max(1)).unwrap_or(usize::MAX),
            at_cap: AtomicBool::new(false),
            waiting: AtomicUsize::new(0),
            batcher: tokio::sync::Mutex::new(()),
            state: Mutex::new(State::default()),
            fallback: Fallback::new(
                config.fallback.probe_interval,
                metrics.lease_fallback.clone(),
                metrics.lease_fallbacks.clone(),
            ),
            round_trips: RoundTrips::new(metrics.lease_round_trips.clone()),
            metrics,
            config,
        });
        let task = tokio::spawn(background(Arc::downgrade(&inner)));
        Ok(Self { inner, task: Mutex::new(Some(task)) })
    }

    /// Shared, or on the local fallback cap.
    #[must_use]
    pub fn mode(&self) -> Mode {
        self.inner.fallback.mode()
    }

    /// The DynamoDB error that caused the last fallback, if any.
    #[must_use]
    pub fn last_error(&self) -> Option<String> {
        self.inner.fallback.last_error()
    }

    /// Leases this process holds (shared, local, and revoked ones whose connection is not closed yet).
    #[must_use]
    pub fn held(&self) -> usize {
        self.inner.lock().held.len()
    }

    /// DynamoDB requests this hook made.
    #[must_use]
    pub fn round_trips(&self) -> u64 {
        self.inner.round_trips.get()
    }

    /// This process's holder id (as in the holder and lease items).
    #[must_use]
    pub fn holder(&self) -> &str {
        &self.inner.holder
    }

    /// The cluster-wide count of leases as DynamoDB has it now (a consistent read).
    ///
    /// # Errors
    /// [`StoreError`] when DynamoDB does not answer.
    pub async fn active(&self) -> Result<u64, StoreError> {
        let (active, _) = self.inner.read_counter().await?;
        Ok(u64::try_from(active).unwrap_or(0))
    }

    /// Stops the background task, gives back every lease this process holds and removes its
    /// heartbeat; best effort (what fails is reclaimed by the repair pass after `holder_ttl`).
    pub async fn shutdown(&self) {
        let task = lock(&self.task).take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
        let held: Vec<String> = self.inner.lock().held.keys().cloned().collect();
        for id in held {
            self.inner.release_lease(Lease::new(id)).await;
        }
        for id in self.inner.give_back_spares(None) {
            self.inner.release_pending(&id).await;
        }
        let delete = self
            .inner
            .client
            .delete_item()
            .table_name(&self.inner.config.table)
            .key("pk", s(&self.inner.holder_pk));
        let _ = call(
            "DeleteItem",
            self.inner.config.fallback.call_timeout,
            &self.inner.round_trips,
            delete.send(),
        )
        .await;
    }
}

impl Drop for DynamoConnLease {
    fn drop(&mut self) {
        if let Some(task) = lock(&self.task).take() {
            task.abort();
        }
        let held = self.inner.lock().held.len();
        self.inner.metrics.lease_held.dec_by(i64::try_from(held).unwrap_or(i64::MAX));
    }
}

impl LeaseHook for DynamoConnLease {
    fn acquire(&self) -> BoxFuture<'_, Result<Lease, LimitError>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            // On a task of its own, so a caller that gives up mid-request (the refiller's connect
            // timeout) cannot leave a lease in DynamoDB that nobody knows about: it is given back.
            let (tx, rx) = tokio::sync::oneshot::channel();
            let worker = inner.clone();
            drop(tokio::spawn(async move {
                if let Err(Ok(lease)) = tx.send(worker.acquire_lease().await) {
                    worker.release_lease(lease).await;
                }
            }));
            rx.await.unwrap_or_else(|_| {
                Err(LimitError::Denied("the distributed connection lease (runtime shutting down)"))
            })
        })
    }

    fn release(&self, lease: Lease) -> BoxFuture<'_, ()> {
        Box::pin(self.inner.release_lease(lease))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Why a transaction was cancelled, from its per-action reasons.
#[derive(Debug, PartialEq, Eq)]
enum Cancelled {
    /// These actions' conditions failed.
    Conditions(Vec<bool>),
    /// Another transaction was changing one of the items: try again.
    Conflict,
    /// Anything else (an outage, throttling, validation).
    Other,
}

fn cancelled(error: &TransactWriteItemsError, actions: usize) -> Cancelled {
    let TransactWriteItemsError::TransactionCanceledException(e) = error else { return Cancelled::Other };
    let code = |i: usize| e.cancellation_reasons().get(i).and_then(|r| r.code());
    let failed: Vec<bool> = (0..actions).map(|i| code(i) == Some("ConditionalCheckFailed")).collect();
    if failed.iter().any(|f| *f) {
        Cancelled::Conditions(failed)
    } else if (0..actions).any(|i| code(i) == Some("TransactionConflict")) {
        Cancelled::Conflict
    } else {
        Cancelled::Other
    }
}

/// Attempts of a transaction that conflicts with others on the same item (the counter is hot).
const CONFLICT_ATTEMPTS: u32 = 6;

fn built<T, E: std::error::Error>(result: Result<T, E>) -> Result<T, StoreError> {
    result
        .map_err(|e| StoreError::Request { operation: "TransactWriteItems", message: crate::error_chain(&e) })
}

/// What a transaction came to.
enum Outcome {
    Done,
    /// Cancelled on a condition; which actions' conditions failed.
    Refused(Vec<bool>),
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    fn timeout(&self) -> Duration {
        self.config.fallback.call_timeout
    }

    fn lease_pk(&self, id: &str) -> String {
        format!("{}conn#{id}", self.prefix)
    }

    fn denied(&self) -> LimitError {
        self.metrics.lease_denied.inc();
        LimitError::Denied("the distributed connection lease (the cluster-wide limit is reached)")
    }

    fn hold(&self, id: String, kind: Kind) -> Lease {
        let lease = Lease::new(id.clone());
        self.lock().held.insert(id, Held { kind, lease: lease.clone() });
        self.metrics.lease_held.inc();
        self.metrics.lease_acquired.inc();
        lease
    }

    async fn acquire_lease(self: &Arc<Self>) -> Result<Lease, LimitError> {
        let _waiting = Waiting::new(&self.waiting);
        loop {
            if let Some(id) = self.take_spare() {
                return Ok(self.hold(id, Kind::Shared));
            }
            if self.fallback.mode() == Mode::Fallback {
                if self.fallback.should_try() {
                    // A heartbeat on a task of its own, so no connect waits for the probe.
                    let inner = self.clone();
                    drop(tokio::spawn(async move {
                        match inner.heartbeat().await {
                            Ok(_) => {
                                inner.fallback.recovered();
                            }
                            Err(error) => inner.fallback.failed(&error),
                        }
                    }));
                }
                return self.acquire_local(random_id());
            }
            // One batch at a time: it takes a lease for every acquire waiting meanwhile.
            let batch = self.batcher.lock().await;
            if let Some(id) = self.take_spare() {
                return Ok(self.hold(id, Kind::Shared));
            }
            if self.fallback.mode() == Mode::Fallback {
                continue; // The batch before failed: the local cap it is.
            }
            let batch_limit = usize::try_from(self.config.batch).unwrap_or(1);
            let want = self.waiting.load(Ordering::Relaxed).clamp(1, batch_limit);
            let ids: Vec<String> = (0..want).map(|_| random_id()).collect();
            let outcome = self.try_shared(&ids).await;
            drop(batch);
            return match outcome {
                Ok(0) => {
                    self.fallback.recovered();
                    Err(self.denied())
                }
                Ok(granted) => {
                    self.fallback.recovered();
                    let mut ids = ids.into_iter().take(granted);
                    let first = ids.next().unwrap_or_else(random_id);
                    let taken = Instant::now();
                    self.lock().spares.extend(ids.map(|id| (id, taken)));
                    Ok(self.hold(first, Kind::Shared))
                }
                // Contention, not an outage: the refiller backs off and tries again.
                Err(error @ StoreError::Conflict { .. }) => Err(LimitError::Failed(Box::new(error))),
                Err(error) => {
                    self.fallback.failed(&error);
                    let first = ids.into_iter().next().unwrap_or_else(random_id);
                    self.acquire_local(first)
                }
            };
        }
    }

    /// A spare lease of the last batch, if one is left.
    fn take_spare(&self) -> Option<String> {
        self.lock().spares.pop_front().map(|(id, _)| id)
    }

    /// Makes the spares taken before `before` (all of them with `None`) pending releases, and
    /// returns their ids.
    fn give_back_spares(&self, before: Option<Instant>) -> Vec<String> {
        let mut state = self.lock();
        let mut given = Vec::new();
        while let Some((_, taken)) = state.spares.front() {
            if before.is_some_and(|before| *taken > before) {
                break;
            }
            let Some((id, _)) = state.spares.pop_front() else { break };
            state.pending_release.insert(id.clone());
            given.push(id);
        }
        given
    }

    /// Shared leases for `ids`, as many as fit under the limit (a prefix of `ids`): how many.
    /// When the request goes unanswered, the first becomes doubtful (the caller makes it a local
    /// lease) and the others are given back once DynamoDB answers, since they may have been written.
    async fn try_shared(&self, ids: &[String]) -> Result<usize, StoreError> {
        let mut want = ids.len();
        // At the cap, a read tells whether a slot came free: a refused transaction costs its
        // writes all the same.
        if self.at_cap.load(Ordering::Relaxed) {
            want = want.min(self.free_slots().await?);
        }
        while want > 0 {
            match self.acquire_shared(&ids[..want]).await {
                Ok(Granted::Yes) => {
                    self.at_cap.store(false, Ordering::Relaxed);
                    return Ok(want);
                }
                Ok(Granted::AtLimit) if want > 1 => {
                    // Fewer slots than waiters: take what is free (the read shrinks the batch, so
                    // this ends).
                    want = (want - 1).min(self.free_slots().await?);
                }
                Ok(Granted::AtLimit) => break,
                // Fresh ids already written: an earlier attempt of this very transaction (an SDK
                // retry after a lost answer) went through, and transactions are all or nothing.
                Ok(Granted::Exists) => {
                    self.at_cap.store(false, Ordering::Relaxed);
                    return Ok(want);
                }
                Err(error @ StoreError::Conflict { .. }) => return Err(error),
                Err(error) => {
                    let mut state = self.lock();
                    state.doubtful.insert(ids[0].clone());
                    state.pending_release.extend(ids[1..want].iter().cloned());
                    return Err(error);
                }
            }
        }
        self.at_cap.store(true, Ordering::Relaxed);
        Ok(0)
    }

    /// Slots under the limit, as the counter has them now.
    async fn free_slots(&self) -> Result<usize, StoreError> {
        let (active, _) = self.read_counter().await?;
        Ok(usize::try_from(i64::from(self.config.limit) - active).unwrap_or(0))
    }

    /// This process's share of the limit while DynamoDB does not answer, counting every lease
    /// it holds.
    fn acquire_local(&self, id: String) -> Result<Lease, LimitError> {
        let fits = self.lock().held.len() < self.local_cap;
        if fits {
            return Ok(self.hold(id, Kind::Local));
        }
        let mut state = self.lock();
        if state.doubtful.remove(&id) {
            state.pending_release.insert(id);
        }
        drop(state);
        Err(self.denied())
    }

    /// Counter up by `ids.len()` (within the limit) and one lease item per id in, atomically.
    async fn acquire_shared(&self, ids: &[String]) -> Result<Granted, StoreError> {
        if !self.lock().registered {
            self.put_holder().await?;
        }
        let now = epoch_ms();
        let count = i64::try_from(ids.len()).unwrap_or(i64::MAX);
        let counter = Update::builder()
            .table_name(&self.config.table)
            .key("pk", s(&self.counter_pk))
            .update_expression(
                "SET active = if_not_exists(active, :zero) + :count, version = if_not_exists(version, :zero) + :one",
            )
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":count", n(count))
            .condition_expression("attribute_not_exists(active) OR active <= :most")
            .expression_attribute_values(":most", n(i64::from(self.config.limit) - count));
        let ttl = self.ttl_epoch(Duration::ZERO);
        let mut items = vec![TransactWriteItem::builder().update(built(counter.build())?).build()];
        for id in ids {
            let put = Put::builder()
                .table_name(&self.config.table)
                .item("pk", s(self.lease_pk(id)))
                .item("holder", s(&self.holder))
                .item("created_ms", n(now))
                .item("ttl_epoch", n(ttl))
                .condition_expression("attribute_not_exists(pk)");
            items.push(TransactWriteItem::builder().put(built(put.build())?).build());
        }
        Ok(match self.transact(items).await? {
            Outcome::Done => Granted::Yes,
            Outcome::Refused(failed) if failed.iter().skip(1).any(|f| *f) => Granted::Exists,
            Outcome::Refused(_) => Granted::AtLimit,
        })
    }

    /// Runs a transaction; one that conflicts with another on the same item is tried again after
    /// a jittered pause (10 ms doubling), up to `CONFLICT_ATTEMPTS` times.
    async fn transact(&self, items: Vec<TransactWriteItem>) -> Result<Outcome, StoreError> {
        let count = items.len();
        for attempt in 0..CONFLICT_ATTEMPTS {
            let request = self.client.transact_write_items().set_transact_items(Some(items.clone()));
            let sent = call("TransactWriteItems", self.timeout(), &self.round_trips, request.send()).await?;
            let Err(error) = sent else { return Ok(Outcome::Done) };
            match error.as_service_error().map(|e| cancelled(e, count)) {
                Some(Cancelled::Conditions(failed)) => return Ok(Outcome::Refused(failed)),
                Some(Cancelled::Conflict) => {
                    let pause = 10_000_u64 << attempt;
                    tokio::time::sleep(Duration::from_micros(pause / 2 + fastrand::u64(..pause))).await;
                }
                _ => return Err(request_error("TransactWriteItems", &error)),
            }
        }
        Err(StoreError::Conflict { operation: "TransactWriteItems" })
    }

    async fn release_lease(&self, lease: Lease) {
        let id = lease.id().to_owned();
        let kind = {
            let mut state = self.lock();
            let kind = state.held.remove(&id).map(|held| held.kind);
            let doubtful = state.doubtful.remove(&id);
            if kind == Some(Kind::Shared) || doubtful {
                state.pending_release.insert(id.clone());
            }
            kind.map(|kind| (kind, doubtful))
        };
        let Some((kind, doubtful)) = kind else { return };
        self.metrics.lease_held.dec();
        // In fallback the heartbeat gives it back once DynamoDB answers; no request meanwhile.
        if (kind == Kind::Shared || doubtful) && self.fallback.mode() == Mode::Shared {
            self.release_pending(&id).await;
        }
    }

    /// Gives back a shared lease that is pending release; it stays pending if DynamoDB fails.
    async fn release_pending(&self, id: &str) {
        match self.release_shared(id, &self.holder, Reclaim::Own).await {
            Ok(_) => {
                self.lock().pending_release.remove(id);
            }
            Err(error) => self.fallback.failed(&error),
        }
    }

    /// Deletes a lease item of `holder` and decrements the counter, atomically. `false` when the
    /// item was not there (already reclaimed): nothing to decrement. With [`Reclaim::OfVanished`]
    /// the transaction also requires the holder's item to be absent, so a holder that registered
    /// again (and then counts its leases again) cannot have them taken after all.
    async fn release_shared(&self, id: &str, holder: &str, reclaim: Reclaim) -> Result<bool, StoreError> {
        let counter = Update::builder()
            .table_name(&self.config.table)
            .key("pk", s(&self.counter_pk))
            .update_expression("SET active = active - :one, version = version + :one")
            .condition_expression("active >= :one")
            .expression_attribute_values(":one", n(1));
        let mut items = vec![
            TransactWriteItem::builder().delete(self.delete_lease(id, holder)?).build(),
            TransactWriteItem::builder().update(built(counter.build())?).build(),
        ];
        items.extend(self.holder_gone(holder, reclaim)?);
        match self.transact(items).await? {
            Outcome::Done => Ok(true),
            Outcome::Refused(failed) if failed[0] || failed.get(2) == Some(&true) => Ok(false),
            // The counter is already at zero (it drifted): remove the item; the recount fixes the rest.
            Outcome::Refused(_) => {
                let mut items =
                    vec![TransactWriteItem::builder().delete(self.delete_lease(id, holder)?).build()];
                items.extend(self.holder_gone(holder, reclaim)?);
                self.transact(items).await?;
                Ok(false)
            }
        }
    }

    /// Deleting a lease item, if it is still `holder`'s.
    fn delete_lease(&self, id: &str, holder: &str) -> Result<Delete, StoreError> {
        built(
            Delete::builder()
                .table_name(&self.config.table)
                .key("pk", s(self.lease_pk(id)))
                .condition_expression("holder = :holder")
                .expression_attribute_values(":holder", s(holder))
                .build(),
        )
    }

    /// For a reclaim, the check that the holder's item is absent.
    fn holder_gone(&self, holder: &str, reclaim: Reclaim) -> Result<Option<TransactWriteItem>, StoreError> {
        if reclaim == Reclaim::Own {
            return Ok(None);
        }
        let check = ConditionCheck::builder()
            .table_name(&self.config.table)
            .key("pk", s(self.holder_key(holder)))
            .condition_expression("attribute_not_exists(pk)");
        Ok(Some(TransactWriteItem::builder().condition_check(built(check.build())?).build()))
    }

    fn holder_key(&self, holder: &str) -> String {
        format!("{}holder#{holder}", self.prefix)
    }

    /// Removes a holder's item if its heartbeat is still older than `now`; `false` when it was
    /// renewed (or removed) meanwhile.
    async fn delete_holder(&self, holder: &str, now: i64) -> Result<bool, StoreError> {
        let request = self
            .client
            .delete_item()
            .table_name(&self.config.table)
            .key("pk", s(self.holder_key(holder)))
            .condition_expression("expires_ms < :now")
            .expression_attribute_values(":now", n(now));
        written("DeleteItem", call("DeleteItem", self.timeout(), &self.round_trips, request.send()).await?)
    }

    fn ttl_epoch(&self, after: Duration) -> i64 {
        i64::try_from((epoch() + after + self.config.ttl_grace).as_secs()).unwrap_or(i64::MAX)
    }

    fn holder_expiry(&self) -> i64 {
        epoch_ms() + i64::try_from(self.config.holder_ttl.as_millis()).unwrap_or(i64::MAX)
    }

    async fn put_holder(&self) -> Result<(), StoreError> {
        let request = self
            .client
            .put_item()
            .table_name(&self.config.table)
            .item("pk", s(&self.holder_pk))
            .item("expires_ms", n(self.holder_expiry()))
            .item("ttl_epoch", n(self.ttl_epoch(self.config.holder_ttl)));
        match call("PutItem", self.timeout(), &self.round_trips, request.send()).await? {
            Ok(_) => {
                self.lock().registered = true;
                Ok(())
            }
            Err(error) => Err(request_error("PutItem", &error)),
        }
    }

    /// Renews the heartbeat; `false` when the holder item was gone (this process was taken for
    /// vanished and its leases reclaimed).
    async fn heartbeat(&self) -> Result<bool, StoreError> {
        if !self.lock().registered {
            self.put_holder().await?;
            return Ok(true);
        }
        let request = self
            .client
            .update_item()
            .table_name(&self.config.table)
            .key("pk", s(&self.holder_pk))
            .update_expression("SET expires_ms = :expires, ttl_epoch = :ttl")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":expires", n(self.holder_expiry()))
            .expression_attribute_values(":ttl", n(self.ttl_epoch(self.config.holder_ttl)));
        written("UpdateItem", call("UpdateItem", self.timeout(), &self.round_trips, request.send()).await?)
    }

    /// Counts the leases this process holds but DynamoDB does not (local ones, reclaimed ones),
    /// within the limit: a lease that does not fit any more is revoked, so its connection is
    /// closed instead of living on over the cap.
    async fn register_uncounted(&self, include_shared: bool) -> Result<(), StoreError> {
        let ids: Vec<String> = self
            .lock()
            .held
            .iter()
            .filter(|(_, held)| held.kind == Kind::Local || (include_shared && held.kind == Kind::Shared))
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            // The attempt may go through without an answer: until one comes, a release of this
            // lease must also remove its item.
            self.lock().doubtful.insert(id.clone());
            // A refused transaction costs twice the writes of a read: look first.
            let granted = if self.lease_exists(&id).await? {
                Granted::Exists
            } else {
                self.acquire_shared(std::slice::from_ref(&id)).await?
            };
            let still_held = {
                let mut state = self.lock();
                state.doubtful.remove(&id);
                match state.held.get_mut(&id) {
                    Some(held) => {
                        if granted == Granted::AtLimit {
                            held.kind = Kind::Revoked;
                            held.lease.revoke();
                            self.metrics.lease_revoked.inc();
                        } else {
                            held.kind = Kind::Shared;
                        }
                        true
                    }
                    None => {
                        // Released while it was being registered: its item goes too.
                        if granted != Granted::AtLimit {
                            state.pending_release.insert(id.clone());
                        }
                        false
                    }
                }
            };
            if !still_held && granted != Granted::AtLimit {
                self.release_pending(&id).await;
            }
        }
        Ok(())
    }

    /// One round of the background task.
    async fn tick(&self) -> Result<(), StoreError> {
        let alive = self.heartbeat().await?;
        self.metrics.lease_renewals.inc();
        if !alive {
            // Spares may have been reclaimed with the rest: given back rather than handed out.
            self.give_back_spares(None);
            self.put_holder().await?;
            self.register_uncounted(true).await?;
        }
        if self.fallback.recovered() || self.lock().held.values().any(|held| held.kind == Kind::Local) {
            self.register_uncounted(false).await?;
        }
        // Spares nobody took within a heartbeat interval go back too.
        if let Some(stale) = Instant::now().checked_sub(self.config.heartbeat_interval) {
            self.give_back_spares(Some(stale));
        }
        let pending: Vec<String> = self.lock().pending_release.iter().cloned().collect();
        for id in pending {
            self.release_pending(&id).await;
        }
        let now = Instant::now();
        let due = self.lock().next_repair.is_none_or(|at| now >= at);
        if due {
            self.lock().next_repair = Some(now + self.config.repair_interval);
            if self.claim_repair().await? {
                self.repair().await?;
            } else {
                let (active, _) = self.read_counter().await?;
                self.metrics.lease_active.set(active);
            }
        }
        Ok(())
    }

    async fn lease_exists(&self, id: &str) -> Result<bool, StoreError> {
        let request = self
            .client
            .get_item()
            .table_name(&self.config.table)
            .key("pk", s(self.lease_pk(id)))
            .consistent_read(true);
        match call("GetItem", self.timeout(), &self.round_trips, request.send()).await? {
            Ok(output) => Ok(output.item().is_some()),
            Err(error) => Err(request_error("GetItem", &error)),
        }
    }

    async fn read_counter(&self) -> Result<(i64, Option<i64>), StoreError> {
        let request = self
            .client
            .get_item()
            .table_name(&self.config.table)
            .key("pk", s(&self.counter_pk))
            .consistent_read(true);
        match call("GetItem", self.timeout(), &self.round_trips, request.send()).await? {
            Ok(output) => {
                Ok((number(output.item(), "active").unwrap_or(0), number(output.item(), "version")))
            }
            Err(error) => Err(request_error("GetItem", &error)),
        }
    }

    /// Takes the cluster's repair turn for one interval, if nobody holds it.
    async fn claim_repair(&self) -> Result<bool, StoreError> {
        let now = epoch_ms();
        let until = now + i64::try_from(self.config.repair_interval.as_millis()).unwrap_or(i64::MAX) - 1;
        let request = self
            .client
            .update_item()
            .table_name(&self.config.table)
            .key("pk", s(&self.counter_pk))
            .update_expression("SET repair_until_ms = :until, repair_by = :me")
            .condition_expression("attribute_not_exists(repair_until_ms) OR repair_until_ms < :now")
            .expression_attribute_values(":until", n(until))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":me", s(&self.holder));
        written("UpdateItem", call("UpdateItem", self.timeout(), &self.round_trips, request.send()).await?)
    }

    /// Every item of this endpoint.
    async fn scan(&self) -> Result<Vec<HashMap<String, AttributeValue>>, StoreError> {
        let mut items = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let request = self
                .client
                .scan()
                .table_name(&self.config.table)
                .filter_expression("begins_with(pk, :prefix)")
                .expression_attribute_values(":prefix", s(&self.prefix))
                .consistent_read(true)
                .set_exclusive_start_key(start.take());
            let page = match call("Scan", self.timeout(), &self.round_trips, request.send()).await? {
                Ok(page) => page,
                Err(error) => return Err(request_error("Scan", &error)),
            };
            items.extend(page.items().iter().cloned());
            match page.last_evaluated_key() {
                Some(key) if !key.is_empty() => start = Some(key.clone()),
                _ => return Ok(items),
            }
        }
    }

    /// Whether a lease of this process is unknown to it (not held, not being given back or
    /// registered).
    fn is_orphan(&self, id: &str) -> bool {
        let state = self.lock();
        !state.held.contains_key(id)
            && !state.pending_release.contains(id)
            && !state.doubtful.contains(id)
            && !state.spares.iter().any(|(spare, _)| spare == id)
    }

    /// Reclaims the leases of vanished holders (and orphans of this process) and corrects the
    /// counter to the live leases.
    async fn repair(&self) -> Result<(), StoreError> {
        let (active, version) = self.read_counter().await?;
        let items = self.scan().await?;
        let now = epoch_ms();
        let young = now - i64::try_from(self.config.holder_ttl.as_millis()).unwrap_or(i64::MAX);
        let mut holders: HashMap<String, i64> = HashMap::new();
        let mut leases: Vec<(String, String, i64)> = Vec::new();
        for item in &items {
            let Some(pk) = item.get("pk").and_then(|v| v.as_s().ok()) else { continue };
            let Some(rest) = pk.strip_prefix(&self.prefix) else { continue };
            if let Some(holder) = rest.strip_prefix("holder#") {
                holders.insert(holder.to_owned(), number(Some(item), "expires_ms").unwrap_or(0));
            } else if let Some(id) = rest.strip_prefix("conn#") {
                let holder = item.get("holder").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
                leases.push((id.to_owned(), holder, number(Some(item), "created_ms").unwrap_or(0)));
            }
        }
        // A vanished holder's item goes first, and its leases only while it stays gone: a holder
        // that finds its item missing registers itself and then counts its leases again, so
        // whichever of the two comes first, no lease is both reclaimed and kept.
        let mut gone = HashSet::new();
        for (holder, expires) in &holders {
            if *expires < now && holder != &self.holder && self.delete_holder(holder, now).await? {
                gone.insert(holder.clone());
            }
        }
        let mut live = 0_i64;
        let mut reclaimed = 0_i64;
        let mut exact = true;
        // An item of this process older than any request in flight, for a lease it neither holds
        // nor is giving back, is an orphan (a bug, or a store that lost a write): it goes too.
        let settled = now - 2 * i64::try_from(self.timeout().as_millis()).unwrap_or(i64::MAX / 4);
        for (id, holder, created) in leases {
            let own = holder == self.holder;
            if own && created < settled && self.is_orphan(&id) {
                if self.release_shared(&id, &holder, Reclaim::Own).await? {
                    reclaimed += 1;
                    self.metrics.lease_repairs.inc();
                } else {
                    exact = false;
                }
                continue;
            }
            // This process knows it is alive, however late its own heartbeat.
            let holder_alive = own || (holders.contains_key(&holder) && !gone.contains(&holder));
            if holder_alive || created > young {
                live += 1;
                continue;
            }
            if self.release_shared(&id, &holder, Reclaim::OfVanished).await? {
                reclaimed += 1;
                self.metrics.lease_repairs.inc();
            } else {
                exact = false;
            }
        }
        let mut counted = active - reclaimed;
        if exact
            && counted != live
            && let Some(version) = version
        {
            // Only if nothing changed since the read: any acquire or release bumps `version`.
            let request = self
                .client
                .update_item()
                .table_name(&self.config.table)
                .key("pk", s(&self.counter_pk))
                .update_expression("SET active = :live, version = version + :one")
                .condition_expression("version = :seen")
                .expression_attribute_values(":live", n(live))
                .expression_attribute_values(":one", n(1))
                .expression_attribute_values(":seen", n(version + reclaimed));
            if written(
                "UpdateItem",
                call("UpdateItem", self.timeout(), &self.round_trips, request.send()).await?,
            )? {
                self.metrics.lease_recounts.inc();
                counted = live;
            }
        }
        self.metrics.lease_active.set(counted);
        Ok(())
    }
}

/// The background task: heartbeat, pending releases, recovery and repair every heartbeat interval.
async fn background(inner: Weak<Inner>) {
    let interval = match inner.upgrade() {
        Some(inner) => inner.config.heartbeat_interval,
        None => return,
    };
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        match inner.tick().await {
            Ok(()) => {
                inner.fallback.recovered();
            }
            Err(error) => inner.fallback.failed(&error),
        }
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_dynamodb::types::CancellationReason;
    use aws_sdk_dynamodb::types::error::TransactionCanceledException;

    use super::*;

    #[test]
    fn settings_are_checked() {
        let good = ConnLeaseConfig::new("table", "abc.dsql.us-east-1.on.aws");
        assert!(good.validate().is_ok());
        assert_eq!((good.limit, good.batch), (10_000, 10));
        let bad = [
            (ConnLeaseConfig { batch: 0, ..good.clone() }, "batch must be between 1 and 99"),
            (ConnLeaseConfig { batch: MAX_BATCH + 1, ..good.clone() }, "batch must be between 1 and 99"),
            (ConnLeaseConfig { limit: 0, ..good.clone() }, "limit must be at least 1"),
            (
                ConnLeaseConfig { heartbeat_interval: Duration::from_secs(31), ..good.clone() },
                "at most half of holder_ttl",
            ),
        ];
        for (config, why) in bad {
            let message = config.validate().unwrap_err().to_string();
            assert!(message.contains(why) && message.contains("coordination.conn_lease"), "{message}");
        }
        assert!(ConnLeaseConfig { batch: MAX_BATCH, ..good }.validate().is_ok());
    }

    fn cancelled_with(codes: &[&str]) -> TransactWriteItemsError {
        let mut e = TransactionCanceledException::builder();
        for code in codes {
            e = e.cancellation_reasons(CancellationReason::builder().code(*code).build());
        }
        TransactWriteItemsError::TransactionCanceledException(e.build())
    }

    #[test]
    fn cancellations_are_told_apart() {
        assert_eq!(
            cancelled(&cancelled_with(&["ConditionalCheckFailed", "None"]), 2),
            Cancelled::Conditions(vec![true, false])
        );
        assert_eq!(cancelled(&cancelled_with(&["None", "TransactionConflict"]), 2), Cancelled::Conflict);
        assert_eq!(cancelled(&cancelled_with(&["ThrottlingError", "None"]), 2), Cancelled::Other);
        // A failed condition decides, whatever else happened.
        assert_eq!(
            cancelled(&cancelled_with(&["TransactionConflict", "ConditionalCheckFailed"]), 2),
            Cancelled::Conditions(vec![false, true])
        );
    }

    #[tokio::test(start_paused = true)]
    async fn contention_is_no_outage() {
        let fallback = Fallback::new(Duration::from_secs(1), Default::default(), Default::default());
        fallback.failed(&StoreError::Conflict { operation: "TransactWriteItems" });
        assert_eq!(fallback.mode(), Mode::Shared);
        fallback.failed(&StoreError::Request { operation: "GetItem", message: "throttled".into() });
        assert_eq!(fallback.mode(), Mode::Fallback);
    }
}

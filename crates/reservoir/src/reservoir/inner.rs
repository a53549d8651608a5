//! The reservoir's machinery: the shared state, checkout and return bookkeeping, and the one
//! background task (refiller + expiry scan) that holds only a `Weak` to it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, sleep_until};

use super::{CheckoutError, ReservoirConfig, Statistics, Status};
use crate::connect::Connector;
use crate::limit::{ConnectLimiter, Lease, LeaseHook};
use crate::metrics::{DiscardReason, Metrics, RefillFailure};

/// A connection with its birth and its lifetime (sampled once).
pub(crate) struct Idle<T> {
    pub(crate) conn: T,
    created: Instant,
    lifetime: Duration,
    lease: Option<Lease>,
}

impl<T> Idle<T> {
    pub(crate) fn remaining(&self, now: Instant) -> Duration {
        (self.created + self.lifetime).saturating_duration_since(now)
    }

    /// Whether its lease hook withdrew the lease.
    fn revoked(&self) -> bool {
        self.lease.as_ref().is_some_and(Lease::is_revoked)
    }
}

#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) checkouts: AtomicU64,
    pub(crate) waited_checkouts: AtomicU64,
    pub(crate) empty: AtomicU64,
    refills: AtomicU64,
    refill_failures: AtomicU64,
    discarded_lifetime: AtomicU64,
    discarded_broken: AtomicU64,
    discarded_other: AtomicU64,
}

pub(crate) struct Shared<C: Connector> {
    connector: Arc<C>,
    pub(crate) config: ReservoirConfig,
    pub(crate) metrics: Metrics,
    lease_hook: Option<Arc<dyn LeaseHook>>,
    idle: Mutex<VecDeque<Idle<C::Connection>>>,
    /// Woken when a connection is put back or added (checkouts waiting on an empty reservoir).
    pub(crate) available: Notify,
    /// Woken when the refiller adds a connection (warm-up).
    pub(crate) refilled: Notify,
    /// Wakes the background task: a connection left, or the reservoir is closing.
    wake: Arc<Notify>,
    pub(crate) in_use: AtomicUsize,
    connecting: Arc<AtomicUsize>,
    closed: AtomicBool,
    pub(crate) stats: Stats,
    last_error: Mutex<Option<String>>,
    task: Mutex<Option<JoinHandle<()>>>,
    releases: Mutex<JoinSet<()>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing here panics while holding a lock; if something did, the data is still consistent.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<C: Connector> Shared<C> {
    pub(crate) fn start(
        connector: C,
        config: ReservoirConfig,
        limiter: Arc<dyn ConnectLimiter>,
        lease_hook: Option<Arc<dyn LeaseHook>>,
        metrics: Metrics,
    ) -> Arc<Self> {
        let target = i64::try_from(config.target_ready).unwrap_or(i64::MAX);
        metrics.reservoir_target.inc_by(target);
        let shared = Arc::new(Self {
            connector: Arc::new(connector),
            metrics,
            lease_hook,
            idle: Mutex::new(VecDeque::with_capacity(config.target_ready)),
            available: Notify::new(),
            refilled: Notify::new(),
            wake: Arc::new(Notify::new()),
            in_use: AtomicUsize::new(0),
            connecting: Arc::new(AtomicUsize::new(0)),
            closed: AtomicBool::new(false),
            stats: Stats::default(),
            last_error: Mutex::new(None),
            task: Mutex::new(None),
            releases: Mutex::new(JoinSet::new()),
            config,
        });
        let refiller = Refiller {
            shared: Arc::downgrade(&shared),
            wake: shared.wake.clone(),
            connector: shared.connector.clone(),
            limiter,
            lease_hook: shared.lease_hook.clone(),
            config: shared.config.clone(),
        };
        *lock(&shared.task) = Some(tokio::spawn(refiller.run()));
        shared
    }

    /// Takes the first usable ready connection, closing unusable ones on the way.
    pub(crate) fn take(&self) -> Result<Option<Idle<C::Connection>>, CheckoutError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(CheckoutError::Closed);
        }
        let now = Instant::now();
        let mut unusable = Vec::new();
        let (found, left) = {
            let mut idle = lock(&self.idle);
            let found = loop {
                let Some(candidate) = idle.pop_front() else { break None };
                let remaining = candidate.remaining(now);
                if remaining.is_zero() {
                    unusable.push((candidate, DiscardReason::ExpiredOnCheckout));
                } else if remaining < self.config.guard_window {
                    unusable.push((candidate, DiscardReason::InsufficientRemainingLifetime));
                } else if self.connector.is_broken(&candidate.conn) {
                    unusable.push((candidate, DiscardReason::Broken));
                } else if candidate.revoked() {
                    unusable.push((candidate, DiscardReason::LeaseRevoked));
                } else {
                    break Some(candidate);
                }
            };
            (found, idle.len())
        };
        let taken = usize::from(found.is_some()) + unusable.len();
        if taken > 0 {
            self.metrics.reservoir_size.dec_by(i64::try_from(taken).unwrap_or(i64::MAX));
            // The refiller tops up what just left, if that took the reservoir under its target.
            if left + self.connecting.load(Ordering::Relaxed) < self.config.target_ready {
                self.wake.notify_one();
            }
        }
        for (idle, reason) in unusable {
            self.discard(idle, reason);
        }
        Ok(found)
    }

    /// A checked-out connection comes back: kept if healthy and young enough, else closed.
    pub(crate) fn give_back(&self, idle: Idle<C::Connection>, marked_broken: bool) {
        let remaining = idle.remaining(Instant::now());
        let reason = if self.closed.load(Ordering::Acquire) {
            Some(DiscardReason::Closed)
        } else if marked_broken || self.connector.is_broken(&idle.conn) {
            Some(DiscardReason::Broken)
        } else if remaining.is_zero() {
            Some(DiscardReason::ExpiredOnReturn)
        } else if remaining < self.config.guard_window {
            Some(DiscardReason::InsufficientRemainingLifetimeOnReturn)
        } else if idle.revoked() {
            Some(DiscardReason::LeaseRevoked)
        } else {
            None
        };
        if let Some(reason) = reason {
            self.discard(idle, reason);
            self.wake.notify_one();
            return;
        }
        self.put(idle, false);
    }

    /// Appends a connection (returned or new) unless that would exceed the cap.
    fn put(&self, idle: Idle<C::Connection>, fresh: bool) {
        let rejected = {
            let mut ready = lock(&self.idle);
            if self.closed.load(Ordering::Acquire) {
                Some((idle, DiscardReason::Closed))
            } else if ready.len() >= self.config.effective_max_open() {
                Some((idle, DiscardReason::ReservoirFull))
            } else {
                ready.push_back(idle);
                None
            }
        };
        match rejected {
            Some((idle, reason)) => self.discard(idle, reason),
            None => {
                self.metrics.reservoir_size.inc();
                self.available.notify_one();
                if fresh {
                    self.refilled.notify_waiters();
                }
            }
        }
    }

    fn discard(&self, idle: Idle<C::Connection>, reason: DiscardReason) {
        self.metrics.discard(reason);
        let counter = match reason {
            DiscardReason::Broken => &self.stats.discarded_broken,
            DiscardReason::ReservoirFull | DiscardReason::Closed | DiscardReason::LeaseRevoked => {
                &self.stats.discarded_other
            }
            _ => &self.stats.discarded_lifetime,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        // The connection goes first, then its slot: the cap is never exceeded, even for a moment.
        let Idle { conn, lease, .. } = idle;
        drop(conn);
        if let (Some(lease), Some(hook)) = (lease, &self.lease_hook) {
            self.release(hook.clone(), lease);
        }
    }

    fn release(&self, hook: Arc<dyn LeaseHook>, lease: Lease) {
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let mut releases = lock(&self.releases);
        while releases.try_join_next().is_some() {}
        releases.spawn(async move { hook.release(lease).await });
    }

    /// Closes ready connections whose lifetime is over or inside the guard window, that broke
    /// while waiting (e.g. killed by the server), or whose lease was revoked.
    fn scan(&self) {
        let now = Instant::now();
        let mut evicted = Vec::new();
        {
            let mut idle = lock(&self.idle);
            let mut keep = VecDeque::with_capacity(idle.len());
            for candidate in idle.drain(..) {
                let remaining = candidate.remaining(now);
                if remaining.is_zero() {
                    evicted.push((candidate, DiscardReason::ExpiredOnScan));
                } else if remaining < self.config.guard_window {
                    evicted.push((candidate, DiscardReason::ExpiringSoonOnScan));
                } else if self.connector.is_broken(&candidate.conn) {
                    evicted.push((candidate, DiscardReason::Broken));
                } else if candidate.revoked() {
                    evicted.push((candidate, DiscardReason::LeaseRevoked));
                } else {
                    keep.push_back(candidate);
                }
            }
            *idle = keep;
        }
        if !evicted.is_empty() {
            self.metrics.reservoir_size.dec_by(i64::try_from(evicted.len()).unwrap_or(i64::MAX));
            for (idle, reason) in evicted {
                self.discard(idle, reason);
            }
        }
    }

    /// How many connects to start now: up to the ready target, within the cap on open connections
    /// and on concurrent connects.
    fn connects_wanted(&self) -> usize {
        let ready = lock(&self.idle).len();
        let connecting = self.connecting.load(Ordering::Relaxed);
        let in_use = self.in_use.load(Ordering::Relaxed);
        let short = self.config.target_ready.saturating_sub(ready + connecting);
        let room = self.config.effective_max_open().saturating_sub(ready + in_use + connecting);
        let slots = self.config.max_concurrent_connects.saturating_sub(connecting);
        short.min(room).min(slots)
    }

    pub(crate) fn last_error(&self) -> Option<String> {
        lock(&self.last_error).clone()
    }

    pub(crate) fn status(&self) -> Status {
        Status {
            ready: lock(&self.idle).len(),
            in_use: self.in_use.load(Ordering::Relaxed),
            connecting: self.connecting.load(Ordering::Relaxed),
            target: self.config.target_ready,
            closed: self.closed.load(Ordering::Acquire),
        }
    }

    pub(crate) fn statistics(&self) -> Statistics {
        let s = &self.stats;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Statistics {
            checkouts: get(&s.checkouts),
            waited_checkouts: get(&s.waited_checkouts),
            empty: get(&s.empty),
            refills: get(&s.refills),
            refill_failures: get(&s.refill_failures),
            discarded_lifetime: get(&s.discarded_lifetime),
            discarded_broken: get(&s.discarded_broken),
            discarded_other: get(&s.discarded_other),
        }
    }

    pub(crate) async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let task = lock(&self.task).take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
        let drained: Vec<_> = lock(&self.idle).drain(..).collect();
        self.metrics.reservoir_size.dec_by(i64::try_from(drained.len()).unwrap_or(i64::MAX));
        for idle in drained {
            self.discard(idle, DiscardReason::Closed);
        }
        self.available.notify_waiters();
        self.refilled.notify_waiters();
        let mut releases = std::mem::take(&mut *lock(&self.releases));
        while releases.join_next().await.is_some() {}
    }
}

impl<C: Connector> Drop for Shared<C> {
    fn drop(&mut self) {
        self.closed.store(true, Ordering::Release);
        if let Some(task) = lock(&self.task).take() {
            task.abort();
        }
        let ready = lock(&self.idle).len();
        self.metrics.reservoir_size.dec_by(i64::try_from(ready).unwrap_or(i64::MAX));
        self.metrics.reservoir_target.dec_by(i64::try_from(self.config.target_ready).unwrap_or(i64::MAX));
        // Leases of connections closed by this drop are released best effort, on their own tasks;
        // `close()` waits for them instead.
        let drained: Vec<_> = lock(&self.idle).drain(..).collect();
        for idle in drained {
            if let (Some(lease), Some(hook)) = (idle.lease, &self.lease_hook)
                && tokio::runtime::Handle::try_current().is_ok()
            {
                let hook = hook.clone();
                drop(tokio::spawn(async move { hook.release(lease).await }));
            }
        }
    }
}

/// A connect's outcome: the connection and its lease, or why it failed. The lease stays guarded
/// until the refiller takes it, so an outcome dropped unread (the refiller aborted by a close)
/// still gives it back.
type Opened<T> = Result<(T, LeaseGuard), Failure>;

/// A connect that failed, with the lease it may hold.
struct Failure {
    reason: RefillFailure,
    message: String,
    lease: LeaseGuard,
}

/// The background task: opens connections up to the target and scans for expiry. Holds only a
/// `Weak` to the reservoir, so it never keeps it alive.
struct Refiller<C: Connector> {
    shared: Weak<Shared<C>>,
    wake: Arc<Notify>,
    connector: Arc<C>,
    limiter: Arc<dyn ConnectLimiter>,
    lease_hook: Option<Arc<dyn LeaseHook>>,
    config: ReservoirConfig,
}

impl<C: Connector> Refiller<C> {
    async fn run(self) {
        // Dropped with this task (abort or return), which aborts every connect in flight.
        let mut connects: JoinSet<Opened<C::Connection>> = JoinSet::new();
        let mut backoff = Duration::ZERO;
        let mut paused_until: Option<Instant> = None;
        let mut next_scan = Instant::now() + self.config.expiry_scan_interval;
        loop {
            {
                let Some(shared) = self.shared.upgrade() else { return };
                if shared.closed.load(Ordering::Acquire) {
                    return;
                }
                if paused_until.is_some_and(|until| Instant::now() >= until) {
                    paused_until = None;
                }
                if paused_until.is_none() {
                    for _ in 0..shared.connects_wanted() {
                        shared.connecting.fetch_add(1, Ordering::Relaxed);
                        shared.metrics.refiller_inflight.inc();
                        connects.spawn(self.open_one());
                    }
                }
            }
            tokio::select! {
                () = self.wake.notified() => {}
                () = sleep_until(next_scan) => {
                    next_scan = Instant::now() + self.config.expiry_scan_interval;
                    if let Some(shared) = self.shared.upgrade() {
                        shared.scan();
                    }
                }
                () = sleep_until(paused_until.unwrap_or(next_scan)), if paused_until.is_some() => {}
                Some(done) = connects.join_next(), if !connects.is_empty() => {
                    let Some(shared) = self.shared.upgrade() else { return };
                    shared.connecting.fetch_sub(1, Ordering::Relaxed);
                    shared.metrics.refiller_inflight.dec();
                    let outcome = done.unwrap_or_else(|join| Err(Failure {
                        reason: RefillFailure::ConnectionOpen,
                        message: format!("the connect task failed: {join}"),
                        lease: LeaseGuard::empty(),
                    }));
                    match outcome {
                        Ok((conn, mut guard)) => {
                            let lease = guard.take();
                            backoff = Duration::ZERO;
                            *lock(&shared.last_error) = None;
                            shared.stats.refills.fetch_add(1, Ordering::Relaxed);
                            shared.metrics.refills.inc();
                            let lifetime = self.config.base_lifetime + self.config.lifetime_jitter.mul_f64(fastrand::f64());
                            shared.put(Idle { conn, created: Instant::now(), lifetime, lease }, true);
                        }
                        Err(mut failure) => {
                            shared.stats.refill_failures.fetch_add(1, Ordering::Relaxed);
                            shared.metrics.refill_failure(failure.reason);
                            *lock(&shared.last_error) = Some(failure.message);
                            if let (Some(lease), Some(hook)) = (failure.lease.take(), &self.lease_hook) {
                                shared.release(hook.clone(), lease);
                            }
                            backoff = if backoff.is_zero() {
                                self.config.failure_backoff
                            } else {
                                (backoff * 2).min(self.config.max_failure_backoff)
                            };
                            paused_until = Some(Instant::now() + backoff);
                        }
                    }
                }
            }
        }
    }

    /// Lease, then rate limit, then connect, all within the connect timeout.
    fn open_one(&self) -> impl Future<Output = Opened<C::Connection>> + Send + 'static {
        let connector = self.connector.clone();
        let limiter = self.limiter.clone();
        let hook = self.lease_hook.clone();
        let timeout = self.config.connect_timeout;
        async move {
            let deadline = Instant::now() + timeout;
            let timed_out = |lease| Failure {
                reason: RefillFailure::ConnectionOpen,
                message: format!("connect timed out after {timeout:?}"),
                lease,
            };
            let lease = match &hook {
                Some(hook) => match tokio::time::timeout_at(deadline, hook.acquire()).await {
                    Ok(Ok(lease)) => Some(lease),
                    Ok(Err(e)) => {
                        return Err(Failure {
                            reason: RefillFailure::LeaseAcquire,
                            message: e.to_string(),
                            lease: LeaseGuard::empty(),
                        });
                    }
                    Err(_) => return Err(timed_out(LeaseGuard::empty())),
                },
                None => None,
            };
            // From here on the lease is given back if this future is dropped (the reservoir
            // closes, or the refiller is aborted) before it is handed on with the outcome.
            let guard = LeaseGuard { hook, lease };
            match tokio::time::timeout_at(deadline, limiter.acquire()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    return Err(Failure {
                        reason: RefillFailure::RateLimit,
                        message: e.to_string(),
                        lease: guard,
                    });
                }
                Err(_) => return Err(timed_out(guard)),
            }
            match tokio::time::timeout_at(deadline, connector.connect()).await {
                Ok(Ok(conn)) => Ok((conn, guard)),
                Ok(Err(e)) => Err(Failure {
                    reason: connector.failure_reason(&e),
                    message: crate::error_chain(&e),
                    lease: guard,
                }),
                Err(_) => Err(timed_out(guard)),
            }
        }
    }
}

/// A lease taken for a connect; released on its own task if it is dropped before the refiller
/// takes it (the connect aborted, or its outcome dropped unread).
struct LeaseGuard {
    hook: Option<Arc<dyn LeaseHook>>,
    lease: Option<Lease>,
}

impl LeaseGuard {
    fn empty() -> Self {
        Self { hook: None, lease: None }
    }

    /// Hands the lease on, disarming the guard.
    fn take(&mut self) -> Option<Lease> {
        self.lease.take()
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        if let (Some(hook), Some(lease)) = (self.hook.take(), self.lease.take())
            && tokio::runtime::Handle::try_current().is_ok()
        {
            drop(tokio::spawn(async move { hook.release(lease).await }));
        }
    }
}

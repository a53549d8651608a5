//! The reservoir: a FIFO of pre-opened connections kept full by one background refiller, so a
//! checkout never waits on DSQL's connection-rate limit.
//!
//! Policy lives here and in `inner`; the wire is behind [`Connector`]. Every connection gets a
//! lifetime of `base_lifetime + U[0, lifetime_jitter)`, sampled once. A connection whose remaining
//! lifetime is under `guard_window` is never handed out; this is enforced at checkout, at return
//! (a connection held past its lifetime is closed when it comes back) and by a scan every
//! `expiry_scan_interval`. Broken connections are discarded. Connects are paced by a
//! [`ConnectLimiter`] (a token bucket by default), capped in concurrency, and back off after
//! failures. The background task holds only a `Weak`: dropping the last [`Reservoir`] handle (and
//! guard) or calling [`Reservoir::close`] ends it and every connect in flight.
//!
//! ```no_run
//! # async fn demo(connector: tdsql_reservoir::PgConnector) -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use tdsql_reservoir::{Reservoir, ReservoirConfig};
//!
//! let reservoir = Reservoir::builder(connector).config(ReservoirConfig { target_ready: 20, ..Default::default() }).build()?;
//! reservoir.ready(20, Duration::from_secs(30)).await?;
//! let conn = reservoir.checkout().await?; // back into the reservoir on drop
//! conn.simple_query("SELECT 1").await?;
//! # Ok(()) }
//! ```

mod inner;

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use self::inner::{Idle, Shared};
use crate::connect::Connector;
use crate::limit::{ConnectLimiter, LeaseHook, TokenBucket};
use crate::metrics::{Metrics, millis};

/// Settings; the defaults are the fork's.
#[derive(Debug, Clone, PartialEq)]
pub struct ReservoirConfig {
    /// Ready (idle) connections the refiller keeps; a burst of this many checkouts never waits.
    pub target_ready: usize,
    /// Cap on physical connections (ready + checked out + connecting); `None` = twice the target.
    pub max_open: Option<usize>,
    /// Base connection lifetime (fork: 11 min; DSQL closes connections at 60 min).
    pub base_lifetime: Duration,
    /// Each connection lives `base_lifetime + U[0, lifetime_jitter)`, sampled once (fork: 2 min).
    pub lifetime_jitter: Duration,
    /// Connections with less remaining lifetime than this are not handed out (fork: 45 s).
    pub guard_window: Duration,
    /// How often ready connections are scanned for expiry (fork: 1 s).
    pub expiry_scan_interval: Duration,
    /// Connects per second of the default token bucket (fork: 10).
    pub connect_rate: f64,
    /// Bucket size of the default token bucket (fork: 100).
    pub connect_burst: u32,
    /// Connects in flight at once.
    pub max_concurrent_connects: usize,
    /// How long a checkout waits when nothing is ready (fork: 100 ms).
    pub empty_wait_timeout: Duration,
    /// Pause after a failed connect; doubles per consecutive failure (fork: 250 ms, constant).
    pub failure_backoff: Duration,
    /// Cap of the failure pause.
    pub max_failure_backoff: Duration,
    /// Limit for one whole connect attempt, limiter wait included (fork: 30 s).
    pub connect_timeout: Duration,
}

impl Default for ReservoirConfig {
    fn default() -> Self {
        Self {
            target_ready: 100,
            max_open: None,
            base_lifetime: Duration::from_secs(11 * 60),
            lifetime_jitter: Duration::from_secs(2 * 60),
            guard_window: Duration::from_secs(45),
            expiry_scan_interval: Duration::from_secs(1),
            connect_rate: 10.0,
            connect_burst: 100,
            max_concurrent_connects: 8,
            empty_wait_timeout: Duration::from_millis(100),
            failure_backoff: Duration::from_millis(250),
            max_failure_backoff: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(30),
        }
    }
}

/// DSQL closes every connection after this long.
const DSQL_MAX_CONNECTION_AGE: Duration = Duration::from_secs(60 * 60);

/// A setting that cannot work.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A setting is out of its range.
    #[error("reservoir setting {key} = {value} is invalid: {why}")]
    Invalid {
        /// The setting (as under `dsql.reservoir.*`).
        key: &'static str,
        /// Its value.
        value: String,
        /// What it must be.
        why: &'static str,
    },
}

impl ReservoirConfig {
    /// Checks the settings.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the first bad setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key, value: String, why| Err(ConfigError::Invalid { key, value, why });
        if self.target_ready == 0 {
            return bad("target_ready", "0".into(), "must be at least 1");
        }
        if self.max_open.is_some_and(|m| m < self.target_ready) {
            return bad("max_open", format!("{:?}", self.max_open), "must be at least target_ready");
        }
        if self.base_lifetime <= self.guard_window {
            return bad(
                "base_lifetime",
                format!("{:?}", self.base_lifetime),
                "must be longer than guard_window, or every connection is born too old to use",
            );
        }
        if self.base_lifetime + self.lifetime_jitter > DSQL_MAX_CONNECTION_AGE {
            return bad(
                "lifetime_jitter",
                format!("{:?}", self.lifetime_jitter),
                "base_lifetime + lifetime_jitter must stay within DSQL's 60-minute connection limit",
            );
        }
        if self.expiry_scan_interval.is_zero() {
            return bad("expiry_scan_interval", "0s".into(), "must be above zero");
        }
        if !(self.connect_rate.is_finite() && self.connect_rate > 0.0) {
            return bad(
                "connect_rate",
                self.connect_rate.to_string(),
                "must be a positive number per second",
            );
        }
        if self.connect_burst == 0 {
            return bad("connect_burst", "0".into(), "must be at least 1");
        }
        if self.max_concurrent_connects == 0 {
            return bad("max_concurrent_connects", "0".into(), "must be at least 1");
        }
        if self.failure_backoff.is_zero() || self.failure_backoff > self.max_failure_backoff {
            return bad(
                "failure_backoff",
                format!("{:?}", self.failure_backoff),
                "must be above zero and at most max_failure_backoff",
            );
        }
        if self.connect_timeout.is_zero() {
            return bad("connect_timeout", "0s".into(), "must be above zero");
        }
        Ok(())
    }

    pub(crate) fn effective_max_open(&self) -> usize {
        self.max_open.unwrap_or(self.target_ready.saturating_mul(2))
    }
}

/// Why a checkout failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum CheckoutError {
    /// Nothing became ready within the empty-wait timeout.
    #[error(
        "no connection ready within {waited:?} ({connecting} connecting, {in_use} in use){}",
        last_error.as_ref().map(|e| format!("; last connect error: {e}")).unwrap_or_default()
    )]
    Empty {
        /// How long it waited.
        waited: Duration,
        /// Connects in flight.
        connecting: usize,
        /// Connections checked out.
        in_use: usize,
        /// The refiller's last connect error, if the last attempt failed.
        last_error: Option<String>,
    },
    /// The reservoir was closed.
    #[error("the reservoir is closed")]
    Closed,
}

/// Why the warm-up did not complete.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum WarmupError {
    /// Not enough connections became ready in time.
    #[error(
        "only {ready} of {wanted} connections ready after {waited:?}{}",
        last_error.as_ref().map(|e| format!("; last connect error: {e}")).unwrap_or_default()
    )]
    Timeout {
        /// Ready at the deadline.
        ready: usize,
        /// Asked for.
        wanted: usize,
        /// How long it waited.
        waited: Duration,
        /// The refiller's last connect error, if the last attempt failed.
        last_error: Option<String>,
    },
    /// The reservoir was closed.
    #[error("the reservoir is closed")]
    Closed,
}

/// What the reservoir holds right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// Ready connections.
    pub ready: usize,
    /// Checked-out connections.
    pub in_use: usize,
    /// Connects in flight.
    pub connecting: usize,
    /// The ready target.
    pub target: usize,
    /// Whether it is closed.
    pub closed: bool,
}

/// Cumulative counts since the reservoir was built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Statistics {
    /// Successful checkouts.
    pub checkouts: u64,
    /// Successful checkouts that had to wait for a connection.
    pub waited_checkouts: u64,
    /// Checkouts that found nothing within the empty-wait timeout.
    pub empty: u64,
    /// Connections opened.
    pub refills: u64,
    /// Failed connects.
    pub refill_failures: u64,
    /// Connections closed for their lifetime (expired or inside the guard window).
    pub discarded_lifetime: u64,
    /// Connections closed because they were broken.
    pub discarded_broken: u64,
    /// Connections closed for any other reason (full, closing, lease revoked).
    pub discarded_other: u64,
}

/// A handle to a reservoir; clones share it.
pub struct Reservoir<C: Connector> {
    shared: Arc<Shared<C>>,
}

impl<C: Connector> Clone for Reservoir<C> {
    fn clone(&self) -> Self {
        Self { shared: self.shared.clone() }
    }
}

impl<C: Connector> fmt::Debug for Reservoir<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reservoir").field("status", &self.status()).finish_non_exhaustive()
    }
}

/// Builds a [`Reservoir`].
pub struct ReservoirBuilder<C: Connector> {
    connector: C,
    config: ReservoirConfig,
    limiter: Option<Arc<dyn ConnectLimiter>>,
    lease: Option<Arc<dyn LeaseHook>>,
    metrics: Option<Metrics>,
}

impl<C: Connector> fmt::Debug for ReservoirBuilder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReservoirBuilder").field("config", &self.config).finish_non_exhaustive()
    }
}

impl<C: Connector> ReservoirBuilder<C> {
    /// The settings (default: the fork's).
    #[must_use]
    pub fn config(mut self, config: ReservoirConfig) -> Self {
        self.config = config;
        self
    }

    /// A connect limiter instead of the local token bucket of `connect_rate` / `connect_burst`
    /// (share one limiter between reservoirs to pace them together).
    #[must_use]
    pub fn limiter(mut self, limiter: Arc<dyn ConnectLimiter>) -> Self {
        self.limiter = Some(limiter);
        self
    }

    /// A lease taken before each connect and given back when the connection is closed.
    #[must_use]
    pub fn lease_hook(mut self, hook: Arc<dyn LeaseHook>) -> Self {
        self.lease = Some(hook);
        self
    }

    /// Where to record `dsql_reservoir_*` metrics (default: a private, unexported `Metrics`).
    #[must_use]
    pub fn metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Validates the settings and starts the refiller on the current tokio runtime.
    ///
    /// # Errors
    /// [`ConfigError`] for an invalid setting.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn build(self) -> Result<Reservoir<C>, ConfigError> {
        self.config.validate()?;
        let limiter = self.limiter.unwrap_or_else(|| {
            Arc::new(TokenBucket::new(self.config.connect_rate, self.config.connect_burst))
        });
        let shared =
            Shared::start(self.connector, self.config, limiter, self.lease, self.metrics.unwrap_or_default());
        Ok(Reservoir { shared })
    }
}

impl<C: Connector> Reservoir<C> {
    /// Starts building a reservoir over `connector`.
    #[must_use]
    pub fn builder(connector: C) -> ReservoirBuilder<C> {
        ReservoirBuilder {
            connector,
            config: ReservoirConfig::default(),
            limiter: None,
            lease: None,
            metrics: None,
        }
    }

    /// A ready connection at once if there is one; otherwise waits up to the empty-wait timeout.
    ///
    /// # Errors
    /// [`CheckoutError::Empty`] when nothing became ready in time, [`CheckoutError::Closed`].
    pub async fn checkout(&self) -> Result<Conn<C>, CheckoutError> {
        let shared = &self.shared;
        let started = Instant::now();
        if let Some(idle) = shared.take()? {
            return Ok(self.hand_out(idle, started, false));
        }
        let deadline = started + shared.config.empty_wait_timeout;
        loop {
            let notified = shared.available.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(idle) = shared.take()? {
                return Ok(self.hand_out(idle, started, true));
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                if let Some(idle) = shared.take()? {
                    return Ok(self.hand_out(idle, started, true));
                }
                shared.stats.empty.fetch_add(1, Ordering::Relaxed);
                shared.metrics.empty.inc();
                shared.metrics.checkout_latency.observe(millis(started.elapsed()));
                let status = self.status();
                return Err(CheckoutError::Empty {
                    waited: started.elapsed(),
                    connecting: status.connecting,
                    in_use: status.in_use,
                    last_error: shared.last_error(),
                });
            }
        }
    }

    /// A ready connection if there is one, without waiting.
    ///
    /// # Errors
    /// [`CheckoutError::Closed`].
    pub fn try_checkout(&self) -> Result<Option<Conn<C>>, CheckoutError> {
        let started = Instant::now();
        Ok(self.shared.take()?.map(|idle| self.hand_out(idle, started, false)))
    }

    fn hand_out(&self, idle: Idle<C::Connection>, started: Instant, waited: bool) -> Conn<C> {
        let shared = &self.shared;
        shared.in_use.fetch_add(1, Ordering::Relaxed);
        shared.stats.checkouts.fetch_add(1, Ordering::Relaxed);
        if waited {
            shared.stats.waited_checkouts.fetch_add(1, Ordering::Relaxed);
        }
        shared.metrics.checkouts.inc();
        shared.metrics.checkout_latency.observe(millis(started.elapsed()));
        Conn { idle: Some(idle), shared: shared.clone(), broken: false, waited }
    }

    /// Waits until at least `min` connections are ready (`min` is capped at the target).
    ///
    /// # Errors
    /// [`WarmupError::Timeout`] with how many were ready and the last connect error.
    pub async fn ready(&self, min: usize, timeout: Duration) -> Result<(), WarmupError> {
        let shared = &self.shared;
        let wanted = min.min(shared.config.target_ready);
        let started = Instant::now();
        let deadline = started + timeout;
        loop {
            let refilled = shared.refilled.notified();
            tokio::pin!(refilled);
            refilled.as_mut().enable();
            let status = self.status();
            if status.closed {
                return Err(WarmupError::Closed);
            }
            if status.ready >= wanted {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, refilled).await.is_err() {
                let ready = self.status().ready;
                if ready >= wanted {
                    return Ok(());
                }
                return Err(WarmupError::Timeout {
                    ready,
                    wanted,
                    waited: started.elapsed(),
                    last_error: shared.last_error(),
                });
            }
        }
    }

    /// What it holds now.
    #[must_use]
    pub fn status(&self) -> Status {
        self.shared.status()
    }

    /// Counts since it was built.
    #[must_use]
    pub fn statistics(&self) -> Statistics {
        self.shared.statistics()
    }

    /// The settings in force.
    #[must_use]
    pub fn config(&self) -> &ReservoirConfig {
        &self.shared.config
    }

    /// Stops the refiller (and any connect in flight), closes every ready connection, releases
    /// their leases and waits for all of that; later checkouts fail, and checked-out connections
    /// are closed when they come back. Dropping every handle does the same without waiting.
    pub async fn close(&self) {
        self.shared.close().await;
    }
}

/// A checked-out connection; goes back into the reservoir when dropped (or is closed, if it is
/// broken, past its lifetime, or the reservoir is closed).
pub struct Conn<C: Connector> {
    idle: Option<Idle<C::Connection>>,
    shared: Arc<Shared<C>>,
    broken: bool,
    waited: bool,
}

impl<C: Connector> fmt::Debug for Conn<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn")
            .field("remaining_lifetime", &self.remaining_lifetime())
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

impl<C: Connector> Conn<C> {
    /// Marks the connection as unusable (e.g. after an I/O error) so it is closed, not reused.
    pub fn mark_broken(&mut self) {
        self.broken = true;
    }

    /// Whether this checkout had to wait because no connection was ready.
    #[must_use]
    pub fn waited(&self) -> bool {
        self.waited
    }

    /// Time left before its lifetime ends.
    #[must_use]
    pub fn remaining_lifetime(&self) -> Duration {
        self.idle.as_ref().map_or(Duration::ZERO, |idle| idle.remaining(Instant::now()))
    }
}

impl<C: Connector> Deref for Conn<C> {
    type Target = C::Connection;
    fn deref(&self) -> &C::Connection {
        // Present until drop.
        &self.idle.as_ref().expect("connection present until drop").conn
    }
}

impl<C: Connector> DerefMut for Conn<C> {
    fn deref_mut(&mut self) -> &mut C::Connection {
        &mut self.idle.as_mut().expect("connection present until drop").conn
    }
}

impl<C: Connector> Drop for Conn<C> {
    fn drop(&mut self) {
        if let Some(idle) = self.idle.take() {
            self.shared.in_use.fetch_sub(1, Ordering::Relaxed);
            self.shared.give_back(idle, self.broken);
        }
    }
}

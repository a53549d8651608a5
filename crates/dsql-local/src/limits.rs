//! Connection admission with DSQL's quotas (`../shared/reference/aurora-dsql-platform.md`
//! section 2.1): a token bucket of new connections (burst 1,000, refilled at 100 per second) and
//! a cap of 10,000 open connections.
//!
//! Every attempt takes a token first; then the cap is checked. A refusal at the cap keeps its
//! token spent: the attempt already cost the gateway an accept, a TLS handshake and a token
//! verification like an admitted one, and a client retrying in a loop at the cap should be slowed
//! by the rate limit like any other burst (giving the token back would let it spin unthrottled).
//!
//! The bucket is kept as a GCRA (the theoretical arrival time of the next token), so refills are
//! exact on `tokio::time::Instant` and tests run on tokio's paused clock.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::errors::SqlError;

/// The quotas a gateway admits connections with. [`Default`] is DSQL's.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionLimits {
    /// New connections per second the bucket refills with (DSQL: 100).
    pub rate_per_sec: f64,
    /// Tokens the bucket holds, and starts with (DSQL: 1,000).
    pub burst: u32,
    /// Open connections at most (DSQL: 10,000).
    pub max_connections: u32,
    /// How long a connection may stay open (DSQL: 60 minutes).
    pub max_lifetime: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            rate_per_sec: 100.0,
            burst: 1000,
            max_connections: 10_000,
            max_lifetime: Duration::from_secs(3600),
        }
    }
}

/// A [`ConnectionLimits`] that cannot work.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LimitsError {
    /// `rate_per_sec` is zero, negative, not a number or infinite.
    #[error(
        "connection rate_per_sec is {0}; it must be a positive number of connections per second, e.g. 100"
    )]
    RateNotPositive(f64),
    /// `rate_per_sec` is so small that one token takes longer than a Duration can hold, or so
    /// large that one token takes less than a nanosecond.
    #[error("connection rate_per_sec is {0}; it must be between 1e-9 and 1e9 connections per second")]
    RateOutOfRange(f64),
    /// `burst` is zero: no connection could ever be admitted.
    #[error("connection burst is 0; it must be at least 1 (DSQL's is 1000)")]
    BurstZero,
    /// `burst` times the refill interval overflows a Duration.
    #[error(
        "connection burst {burst} at rate_per_sec {rate_per_sec} is a bucket longer than a Duration holds; lower the burst or raise the rate"
    )]
    BurstTooLong {
        /// The burst.
        burst: u32,
        /// The rate.
        rate_per_sec: f64,
    },
    /// `max_connections` is zero.
    #[error("max_connections is 0; it must be at least 1 (DSQL's is 10000)")]
    MaxConnectionsZero,
    /// `max_lifetime` is zero.
    #[error("connection max_lifetime is 0; it must be positive (DSQL's is 60 minutes)")]
    LifetimeZero,
}

impl ConnectionLimits {
    /// Checks that the limits can admit anything.
    ///
    /// # Errors
    /// A [`LimitsError`] naming the field that is wrong.
    pub fn validate(&self) -> Result<(), LimitsError> {
        self.token_interval()?;
        if self.max_connections == 0 {
            return Err(LimitsError::MaxConnectionsZero);
        }
        if self.max_lifetime.is_zero() {
            return Err(LimitsError::LifetimeZero);
        }
        Ok(())
    }

    /// The time one token takes to refill, and how far ahead of now the bucket may run
    /// (`burst - 1` intervals).
    fn token_interval(&self) -> Result<(Duration, Duration), LimitsError> {
        let rate = self.rate_per_sec;
        if !rate.is_finite() || rate <= 0.0 {
            return Err(LimitsError::RateNotPositive(rate));
        }
        let interval =
            Duration::try_from_secs_f64(1.0 / rate).map_err(|_| LimitsError::RateOutOfRange(rate))?;
        if interval.is_zero() || !(1e-9..=1e9).contains(&rate) {
            return Err(LimitsError::RateOutOfRange(rate));
        }
        if self.burst == 0 {
            return Err(LimitsError::BurstZero);
        }
        let tolerance = interval
            .checked_mul(self.burst - 1)
            .ok_or(LimitsError::BurstTooLong { burst: self.burst, rate_per_sec: rate })?;
        Ok((interval, tolerance))
    }
}

/// Why a connection attempt was refused.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The new-connection bucket is empty.
    #[error("connection refused: the new-connection rate bucket is empty")]
    RateExceeded,
    /// The open-connection cap is reached.
    #[error("connection refused: the open-connection cap is reached")]
    TooManyConnections,
}

impl Refused {
    /// What the client sees: DSQL's 53400 or 53300 `FATAL`.
    #[must_use]
    pub fn to_sql_error(&self) -> SqlError {
        match self {
            Self::RateExceeded => SqlError::rate_exceeded(),
            Self::TooManyConnections => SqlError::too_many_connections(),
        }
    }

    /// A short `snake_case` label for metrics and logs.
    #[must_use]
    pub fn rule(&self) -> &'static str {
        match self {
            Self::RateExceeded => "rate_exceeded",
            Self::TooManyConnections => "too_many_connections",
        }
    }
}

/// Admits connections within a [`ConnectionLimits`]; clones share one bucket and one count.
#[derive(Clone)]
pub struct Admission {
    shared: Arc<Shared>,
}

struct Shared {
    limits: ConnectionLimits,
    interval: Duration,
    tolerance: Duration,
    /// When the bucket would be full again if nobody took a token: a token can be taken while
    /// this is at most `tolerance` ahead of now (GCRA's theoretical arrival time).
    full_at: Mutex<Instant>,
    open: AtomicU32,
}

impl fmt::Debug for Admission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admission")
            .field("limits", &self.shared.limits)
            .field("open_connections", &self.open_connections())
            .finish_non_exhaustive()
    }
}

impl Admission {
    /// An admission with a full bucket and no open connection.
    ///
    /// # Panics
    /// If `limits` fail [`ConnectionLimits::validate`]; use [`Admission::try_new`] for limits
    /// that come from the user.
    #[must_use]
    pub fn new(limits: ConnectionLimits) -> Self {
        match Self::try_new(limits) {
            Ok(admission) => admission,
            Err(error) => panic!("invalid connection limits: {error}"),
        }
    }

    /// An admission with a full bucket and no open connection.
    ///
    /// # Errors
    /// The [`LimitsError`] of [`ConnectionLimits::validate`].
    pub fn try_new(limits: ConnectionLimits) -> Result<Self, LimitsError> {
        limits.validate()?;
        let (interval, tolerance) = limits.token_interval()?;
        Ok(Self {
            shared: Arc::new(Shared {
                limits,
                interval,
                tolerance,
                full_at: Mutex::new(Instant::now()),
                open: AtomicU32::new(0),
            }),
        })
    }

    /// Admits one connection attempt: takes a token from the bucket, then a slot under the cap.
    /// Call it once per attempt, before the handshake; keep the [`Admitted`] for as long as
    /// the connection is open.
    ///
    /// # Errors
    /// [`Refused::RateExceeded`] when the bucket is empty (nothing is taken);
    /// [`Refused::TooManyConnections`] when the cap is reached (the token stays spent, see the
    /// module docs).
    pub fn try_admit(&self) -> Result<Admitted, Refused> {
        self.take_token()?;
        let cap = self.shared.limits.max_connections;
        self.shared
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| (open < cap).then_some(open + 1))
            .map_err(|_| Refused::TooManyConnections)?;
        Ok(Admitted { shared: Arc::clone(&self.shared), admitted_at: Instant::now() })
    }

    fn take_token(&self) -> Result<(), Refused> {
        let now = Instant::now();
        let mut full_at = self.shared.full_at.lock().unwrap_or_else(PoisonError::into_inner);
        let start = (*full_at).max(now);
        if start > now + self.shared.tolerance {
            return Err(Refused::RateExceeded);
        }
        *full_at = start + self.shared.interval;
        Ok(())
    }

    /// Connections admitted and not yet dropped.
    #[must_use]
    pub fn open_connections(&self) -> u32 {
        self.shared.open.load(Ordering::Acquire)
    }

    /// The limits this admission enforces.
    #[must_use]
    pub fn limits(&self) -> &ConnectionLimits {
        &self.shared.limits
    }
}

/// An admitted connection's slot under the cap; dropping it frees the slot.
#[must_use = "dropping the guard frees the connection slot at once"]
pub struct Admitted {
    shared: Arc<Shared>,
    admitted_at: Instant,
}

impl Admitted {
    /// When the connection was admitted.
    #[must_use]
    pub fn admitted_at(&self) -> Instant {
        self.admitted_at
    }

    /// When the connection reaches [`ConnectionLimits::max_lifetime`] and is to be closed.
    #[must_use]
    pub fn lifetime_deadline(&self) -> Instant {
        self.admitted_at + self.shared.limits.max_lifetime
    }
}

impl fmt::Debug for Admitted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admitted").field("admitted_at", &self.admitted_at).finish_non_exhaustive()
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.shared.open.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(rate_per_sec: f64, burst: u32, max_connections: u32) -> Admission {
        Admission::new(ConnectionLimits {
            rate_per_sec,
            burst,
            max_connections,
            ..ConnectionLimits::default()
        })
    }

    fn admitted_count(admission: &Admission, attempts: usize, keep: &mut Vec<Admitted>) -> usize {
        let mut admitted = 0;
        for _ in 0..attempts {
            if let Ok(guard) = admission.try_admit() {
                keep.push(guard);
                admitted += 1;
            }
        }
        admitted
    }

    #[tokio::test(start_paused = true)]
    async fn dsqls_burst_then_rate_exceeded() {
        let admission = Admission::new(ConnectionLimits::default());
        let mut open = Vec::new();
        assert_eq!(admitted_count(&admission, 1000, &mut open), 1000);
        let refused = admission.try_admit().expect_err("the bucket is empty");
        assert_eq!(refused, Refused::RateExceeded);
        assert_eq!(refused.to_sql_error().code, "53400");
        assert_eq!(refused.rule(), "rate_exceeded");
        assert_eq!(admission.open_connections(), 1000);
    }

    #[tokio::test(start_paused = true)]
    async fn the_bucket_refills_at_the_rate_exactly() {
        let admission = Admission::new(ConnectionLimits::default());
        let mut open = Vec::new();
        assert_eq!(admitted_count(&admission, 1000, &mut open), 1000);
        for second in 1..=5 {
            tokio::time::advance(Duration::from_secs(1)).await;
            assert_eq!(admitted_count(&admission, 500, &mut open), 100, "second {second}");
        }
        // 10 ms is one token at 100/s; 5 ms is none yet.
        tokio::time::advance(Duration::from_millis(5)).await;
        assert_eq!(admitted_count(&admission, 10, &mut open), 0);
        tokio::time::advance(Duration::from_millis(5)).await;
        assert_eq!(admitted_count(&admission, 10, &mut open), 1);
        // An idle bucket fills up to the burst and no further.
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(admitted_count(&admission, 5000, &mut open), 1000);
    }

    #[tokio::test(start_paused = true)]
    async fn refused_attempts_take_nothing_and_fractional_rates_work() {
        let admission = small(0.5, 2, 100);
        let mut open = Vec::new();
        assert_eq!(admitted_count(&admission, 10, &mut open), 2);
        tokio::time::advance(Duration::from_millis(1999)).await;
        assert_eq!(admitted_count(&admission, 10, &mut open), 0);
        tokio::time::advance(Duration::from_millis(1)).await;
        // The refused attempts above did not push the next token back.
        assert_eq!(admitted_count(&admission, 10, &mut open), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_cap_refuses_and_a_dropped_guard_frees_its_slot() {
        let admission = small(100.0, 1000, 3);
        let first = admission.try_admit().expect("1");
        let _second = admission.try_admit().expect("2");
        let _third = admission.try_admit().expect("3");
        let refused = admission.try_admit().expect_err("the cap is reached");
        assert_eq!(refused, Refused::TooManyConnections);
        assert_eq!(refused.to_sql_error().code, "53300");
        assert_eq!(admission.open_connections(), 3);
        drop(first);
        assert_eq!(admission.open_connections(), 2);
        let fourth = admission.try_admit().expect("a slot was freed");
        assert_eq!(fourth.lifetime_deadline() - fourth.admitted_at(), Duration::from_secs(3600));
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_at_the_cap_still_spends_its_token() {
        let admission = small(1.0, 3, 1);
        let _only = admission.try_admit().expect("first");
        assert_eq!(admission.try_admit().expect_err("cap"), Refused::TooManyConnections);
        assert_eq!(admission.try_admit().expect_err("cap"), Refused::TooManyConnections);
        // Three tokens spent (one admitted, two at the cap): the next attempt hits the rate.
        assert_eq!(admission.try_admit().expect_err("bucket"), Refused::RateExceeded);
    }

    // Real threads (a paused clock needs the current-thread runtime); the rate is so high the
    // bucket never empties, so only the cap refuses.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_admits_never_exceed_the_cap() {
        let admission = small(1e9, u32::MAX / 2, 50);
        // Counted by the tasks themselves, independently of the admission's own count.
        let live = Arc::new(AtomicU32::new(0));
        let peak = Arc::new(AtomicU32::new(0));
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let (admission, live, peak) = (admission.clone(), Arc::clone(&live), Arc::clone(&peak));
            tasks.push(tokio::spawn(async move {
                let (mut admitted, mut refused) = (0_u32, 0_u32);
                for _ in 0..500 {
                    match admission.try_admit() {
                        Ok(guard) => {
                            admitted += 1;
                            peak.fetch_max(live.fetch_add(1, Ordering::AcqRel) + 1, Ordering::AcqRel);
                            tokio::task::yield_now().await;
                            live.fetch_sub(1, Ordering::AcqRel);
                            drop(guard);
                        }
                        Err(Refused::TooManyConnections) => refused += 1,
                        Err(other) => panic!("only the cap refuses here, got {other:?}"),
                    }
                }
                (admitted, refused)
            }));
        }
        let (mut admitted, mut refused) = (0, 0);
        for task in tasks {
            let (a, r) = task.await.expect("task");
            admitted += a;
            refused += r;
        }
        let peak = peak.load(Ordering::Acquire);
        assert!(peak <= 50, "{peak} connections were open at once under a cap of 50");
        assert_eq!(admitted + refused, 64 * 500);
        assert!(admitted >= 50, "admitted {admitted}");
        assert_eq!(admission.open_connections(), 0);
    }

    #[test]
    fn invalid_limits_are_named() {
        let base = ConnectionLimits::default();
        assert_eq!(base.validate(), Ok(()));
        let cases = [
            (ConnectionLimits { rate_per_sec: 0.0, ..base.clone() }, "rate_per_sec is 0"),
            (ConnectionLimits { rate_per_sec: -1.0, ..base.clone() }, "rate_per_sec is -1"),
            (ConnectionLimits { rate_per_sec: f64::NAN, ..base.clone() }, "rate_per_sec is NaN"),
            (ConnectionLimits { rate_per_sec: 1e-300, ..base.clone() }, "between"),
            (ConnectionLimits { rate_per_sec: 1e12, ..base.clone() }, "between"),
            (ConnectionLimits { burst: 0, ..base.clone() }, "burst is 0"),
            (ConnectionLimits { max_connections: 0, ..base.clone() }, "max_connections is 0"),
            (ConnectionLimits { max_lifetime: Duration::ZERO, ..base.clone() }, "max_lifetime is 0"),
        ];
        for (limits, expected) in cases {
            let error = limits.validate().expect_err(expected);
            assert!(error.to_string().contains(expected), "{error} should say {expected}");
            assert!(Admission::try_new(limits).is_err());
        }
    }
}
